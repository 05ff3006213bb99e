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

use agent_relay::core::{ClientId, SlowLimit};

use super::{Checker, Invariant};

impl Checker {
    /// Judges a slow-consumer close of `c` at `limit` by the promise; false
    /// if it broke it.
    pub(super) fn no_loss_on_slow_close(&mut self, c: ClientId, limit: SlowLimit) -> bool {
        let stats = &mut self.budget.stats;
        match (limit, self.tick) {
            (SlowLimit::Grace, _) => stats.grace_closes += 1,
            (SlowLimit::HardCap, _) => stats.hard_closes += 1,
            (SlowLimit::GlobalCap, true) => stats.global_grace_closes += 1,
            (SlowLimit::GlobalCap, false) => stats.global_cap_closes += 1,
        }
        let m = &self.clients[&c];
        let (now, grace, soft) = (self.now, self.cfg.grace, self.cfg.client_soft_budget);
        if m.over_since.is_some_and(|t| t + grace <= now) {
            return true; // it did not keep pace
        }
        let overshoot = self.read_max + self.budget.largest_from_guest;
        let allowed = match limit {
            SlowLimit::Grace => false,
            SlowLimit::HardCap => self.cfg.client_hard_cap < soft + overshoot,
            SlowLimit::GlobalCap if self.tick => {
                m.emptied_at < self.budget.global_event && m.queued > 0
            }
            SlowLimit::GlobalCap => self.cfg.global_cap < 2 * overshoot,
        };
        if !allowed {
            let why = format!(
                "{c} closed as slow ({limit:?}) while keeping pace: {} bytes queued, over its soft budget {soft} since {:?}, grace {grace}, now {now}, last written empty in event #{}, the sum {} (its grace since {:?}), caps hard {} global {}, read {} + largest frame {}",
                m.queued,
                m.over_since,
                m.emptied_at,
                self.sum_queued,
                self.budget.global_since,
                self.cfg.client_hard_cap,
                self.cfg.global_cap,
                self.read_max,
                self.budget.largest_from_guest
            );
            self.fail(Invariant::NoLossWhileReading, why);
        }
        allowed
    }
}
