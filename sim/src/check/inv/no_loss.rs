//! `inv_no_loss_while_reading`: a client that keeps pace is never closed as
//! a slow consumer, so (with `inv_completeness`, which has every frame the
//! guest sent a live client handed to it in the event that brought it) it
//! receives every frame the guest sent it. Rule `backpressure_bounded_wait`
//! promises it; the checker judges it from events alone.
//!
//! A client *keeps pace* at `now` if every time its queue passed its soft
//! budget `S`, it took the queue down to `S/2` within the grace period:
//! `over_since + grace > now` while it is over. Such a client may be closed
//! as a slow consumer only
//!
//! - at its hard cap when the caps are tighter than the rule's bound
//!   (`client_hard_cap < S + R + F`, `R` the read size, `F` the largest
//!   guest frame seen), where the model expects the last line to cut it;
//! - at the global cap (a frame would pass it) when `global_cap < 2 (R + F)`;
//! - at the end of the sum's grace period if it held the most and had not
//!   written its queue down to empty since that period began: the sum must
//!   fall to a quarter of the cap, which no client's own pace guarantees
//!   (see `sim/README.md`), but a client that emptied its queue meanwhile
//!   holds only what the relay itself sent it since (the guest is paused),
//!   never the most while the sum is over a quarter.
//!
//! Never at the end of a grace period of its own.

use agent_relay::core::SlowLimit;

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct NoLossWhileReading;

impl Check for NoLossWhileReading {
    const INVARIANT: Invariant = Invariant::NoLossWhileReading;
    const WANTS: u64 = Fact::SLOW_CLOSE;

    fn new(_m: &Model) -> Self {
        NoLossWhileReading
    }

    /// Judges a slow-consumer close by the promise.
    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        let Fact::SlowClose { c, limit, .. } = *f else {
            return;
        };
        let k = m.client(c);
        let (now, grace, soft) = (m.now, m.cfg.grace, m.cfg.client_soft_budget);
        if k.over_since.is_some_and(|t| t + grace <= now) {
            return; // it did not keep pace
        }
        let overshoot = m.read_max + m.budget.largest_from_guest;
        let allowed = match limit {
            SlowLimit::Grace => false,
            SlowLimit::HardCap => m.cfg.client_hard_cap < soft + overshoot,
            SlowLimit::GlobalCap if m.tick => k.emptied_at < m.budget.global_event && k.queued > 0,
            SlowLimit::GlobalCap => m.cfg.global_cap < 2 * overshoot,
        };
        if !allowed {
            let why = format!(
                "{c} closed as slow ({limit:?}) while keeping pace: {} bytes queued, over its soft budget {soft} since {:?}, grace {grace}, now {now}, last written empty in event #{}, the sum {} (its grace since {:?}), caps hard {} global {}, read {} + largest frame {}",
                k.queued,
                k.over_since,
                k.emptied_at,
                m.sum_queued,
                m.budget.global_since,
                m.cfg.client_hard_cap,
                m.cfg.global_cap,
                m.read_max,
                m.budget.largest_from_guest
            );
            v.fail::<Self>(why);
        }
    }
}
