//! `inv_bounded_wait`: a stalled client delays any other client's next
//! frame by at most one grace period (plus the driver's scheduling step to
//! the tick). Rule `backpressure_bounded_wait`, judged by the model of
//! `budget.rs` after every event:
//!
//! 1. the guest is paused exactly while a client is over its soft budget or
//!    the sum's grace period runs, never once the guest is gone; each
//!    `PauseGuest` and `ResumeGuest` changes the state;
//! 2. while paused, `poll_timeout` is no later than the earliest deadline
//!    running (a client's grace period, the sum's), so a driver that ticks
//!    when told does not miss it;
//! 3. after a tick at `now`, no deadline at or before `now` is left: the
//!    client is closed or no longer over, the sum's period ended or renewed;
//! 4. after a tick, a pause has made progress within one grace period: the
//!    latest of its start, a cause starting (a client going over, the sum
//!    passing its mark) and a slow consumer's close is less than `grace` ago;
//! 5. the core's `guest_pauses` and `guest_paused_ms` equal the model's.
//!
//! The driver's side of the contract (no `GuestBytes` while paused) is
//! `driver_contract`'s.

use agent_relay::core::{Action, Relay};

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model, State};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct BoundedWait;

impl Check for BoundedWait {
    const INVARIANT: Invariant = Invariant::BoundedWait;
    const WANTS: u64 = Fact::ACTION;

    fn new(_m: &Model) -> Self {
        BoundedWait
    }

    /// `PauseGuest` (`pause`) or `ResumeGuest`: each only when the guest is
    /// not paused, resp. paused; none once the guest is gone.
    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        let pause = match *f {
            Fact::Action(Action::PauseGuest) => true,
            Fact::Action(Action::ResumeGuest) => false,
            _ => return,
        };
        if pause == m.budget.paused {
            let why = if pause {
                "PauseGuest while the guest is paused already"
            } else {
                "ResumeGuest while the guest is not paused"
            };
            v.fail::<Self>(why.into());
        } else if pause && m.guest_gone {
            v.fail::<Self>("PauseGuest after the guest went away".into());
        }
    }

    /// The pause and its deadlines after an event.
    fn after_event(&mut self, m: &Model, relay: &Relay, v: &mut Verdict) {
        debug_assert!(
            over_count_matches(m),
            "the model's count of clients over budget"
        );
        let due = m.pause_due();
        let b = &m.budget;
        if b.paused != due {
            let why = format!(
                "the guest is {} but the rule has it {}: {} clients over their soft budget, the sum {} bytes (global cap {}, its grace period since {:?})",
                if b.paused { "paused" } else { "read" },
                if due { "paused" } else { "read" },
                b.over,
                m.sum_queued,
                m.cfg.global_cap,
                b.global_since,
            );
            return v.fail::<Self>(why);
        }
        let c = relay.counters();
        if (c.guest_pauses, c.guest_paused_ms) != (b.pauses, b.paused_ms) {
            let why = format!(
                "the core counts {} pauses of {} ms, the model {} of {} ms",
                c.guest_pauses, c.guest_paused_ms, b.pauses, b.paused_ms
            );
            return v.fail::<Self>(why);
        }
        if !b.paused {
            return;
        }
        let Some((deadline, whose)) = m.earliest_deadline() else {
            return;
        };
        let whose = whose.map_or("the sum's".to_owned(), |c| format!("{c}'s"));
        let now = m.now;
        if relay.poll_timeout().is_none_or(|t| t.at > deadline) {
            let why = format!(
                "paused, {whose} grace period ends at {deadline}, but poll_timeout is {:?}",
                relay.poll_timeout()
            );
            return v.fail::<Self>(why);
        }
        if !m.tick {
            return;
        }
        if deadline <= now {
            let why = format!(
                "{whose} grace period ended at {deadline}, and at the tick at {now} nothing was done about it"
            );
            return v.fail::<Self>(why);
        }
        if b.mark + m.cfg.grace <= now {
            let why = format!(
                "the guest is paused since {}, with no progress since {}: more than the grace period {} at {now}",
                b.since, b.mark, m.cfg.grace
            );
            v.fail::<Self>(why);
        }
    }
}

/// Whether the count of clients over their soft budget is the number of
/// live clients with a grace period running (a departed one is never over).
fn over_count_matches(m: &Model) -> bool {
    let n = m
        .clients
        .values()
        .filter(|k| k.over_since.is_some() && k.state == State::Live)
        .count();
    n == m.budget.over
}
