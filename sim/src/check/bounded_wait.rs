//! `inv_bounded_wait`: a stalled client delays any other client's next
//! frame by at most one grace period (plus the driver's scheduling step to
//! the tick). Rule `backpressure_bounded_wait`, judged by the model of
//! `budget.rs` after every event:
//!
//! 1. the guest is paused exactly while a client is over its soft budget or
//!    the sum's grace period runs, never once the guest is gone; each
//!    `PauseGuest` and `ResumeGuest` changes the state (`budget.rs`);
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

use agent_relay::core::Relay;

use super::model::State;
use super::{Checker, Invariant};

impl Checker {
    /// The pause and its deadlines after an event.
    pub(super) fn after_event_bounded_wait(&mut self, relay: &Relay) {
        self.checks += 1;
        debug_assert!(
            self.over_count_matches(),
            "the model's count of clients over budget"
        );
        let due = self.pause_due();
        if self.budget.paused != due {
            let why = format!(
                "the guest is {} but the rule has it {}: {} clients over their soft budget, the sum {} bytes (global cap {}, its grace period since {:?})",
                if self.budget.paused { "paused" } else { "read" },
                if due { "paused" } else { "read" },
                self.budget.over,
                self.sum_queued,
                self.cfg.global_cap,
                self.budget.global_since,
            );
            return self.fail(Invariant::BoundedWait, why);
        }
        let c = relay.counters();
        if (c.guest_pauses, c.guest_paused_ms) != (self.budget.pauses, self.budget.paused_ms) {
            let why = format!(
                "the core counts {} pauses of {} ms, the model {} of {} ms",
                c.guest_pauses, c.guest_paused_ms, self.budget.pauses, self.budget.paused_ms
            );
            return self.fail(Invariant::BoundedWait, why);
        }
        if !self.budget.paused {
            return;
        }
        let Some((deadline, whose)) = self.earliest_deadline() else {
            return;
        };
        let whose = whose.map_or("the sum's".to_owned(), |c| format!("{c}'s"));
        let now = self.now;
        if relay.poll_timeout().is_none_or(|t| t.at > deadline) {
            let why = format!(
                "paused, {whose} grace period ends at {deadline}, but poll_timeout is {:?}",
                relay.poll_timeout()
            );
            return self.fail(Invariant::BoundedWait, why);
        }
        if !self.tick {
            return;
        }
        if deadline <= now {
            let why = format!(
                "{whose} grace period ended at {deadline}, and at the tick at {now} nothing was done about it"
            );
            return self.fail(Invariant::BoundedWait, why);
        }
        let mark = self.budget.mark;
        if mark + self.cfg.grace <= now {
            let why = format!(
                "the guest is paused since {}, with no progress since {mark}: more than the grace period {} at {now}",
                self.budget.since, self.cfg.grace
            );
            self.fail(Invariant::BoundedWait, why);
        }
    }

    /// Whether the count of clients over their soft budget is the number of
    /// live clients with a grace period running (a departed one is never over).
    fn over_count_matches(&self) -> bool {
        let n = self
            .clients
            .values()
            .filter(|m| m.over_since.is_some() && m.state == State::Live)
            .count();
        n == self.budget.over
    }
}
