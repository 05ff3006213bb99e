//! The model of rule `backpressure_bounded_wait` (written from the rule as
//! `src/core/budget.rs`'s module doc and `docs/ARCHITECTURE.md` state it,
//! not from its code): which clients are over their soft budget and since
//! when, the sum's grace period, whether the guest must be paused, when a
//! pause last made progress, and the relay's own bytes the pause cannot hold
//! back. The invariants that judge the core by it are `inv_boundedness`
//! (memory), `inv_bounded_wait` (the pause) and `inv_no_loss_while_reading`
//! (who may be closed); `inv_isolation` says which close each limit allows.
//!
//! - A client goes over when its queue (bytes handed to it as `Handshake`
//!   or `ToClient`, not yet reported by `ClientWritten`) passes
//!   `client_soft_budget`; its grace period starts then and is never moved.
//!   It stops being over when its queue is down to half the budget
//!   (progress), or when it leaves.
//! - The sum of all queues passing `global_cap / 2` starts the sum's grace
//!   period; falling to `global_cap / 4` ends it. When it ends at its
//!   deadline, the client holding the most is closed and, if the sum is
//!   still over a quarter, the sum gets another period from then.
//! - The guest is paused exactly while a client is over or the sum's period
//!   runs (and never once the guest is gone).

use agent_relay::core::{ClientId, Millis, SlowLimit};

use super::Model;
use super::client::State;

/// What the model knows of the rule beyond each client's own state.
#[derive(Debug, Default)]
pub struct Budget {
    /// Clients over their soft budget now.
    pub over: usize,
    /// Since when the sum of all queues is over half the global cap (its
    /// grace period's start), until it falls to a quarter.
    pub global_since: Option<Millis>,
    /// The number of the event in which that period began.
    pub global_event: u64,
    /// The core said `PauseGuest` and not `ResumeGuest` since.
    pub paused: bool,
    /// While paused: the latest moment the pause began or made progress (a
    /// cause started or a slow consumer was closed).
    pub mark: Millis,
    /// While paused: when it began.
    pub since: Millis,
    /// The relay's own bytes handed to clients since the sum was last within
    /// half the global cap.
    pub own_sum: usize,
    /// Pauses so far, and their milliseconds up to the last resume (the
    /// core's `guest_pauses`, `guest_paused_ms`).
    pub pauses: u64,
    pub paused_ms: u64,
    /// The event being judged is `GuestBytes` (what clients get in it is
    /// the guest's output; in any other event, the relay's own bytes).
    pub guest_event: bool,
    /// The largest whole guest frame seen so far (its prefix included).
    pub largest_from_guest: usize,
    /// What a campaign reports.
    pub stats: BudgetStats,
}

/// What the rule did in one run, for the campaign's summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    /// Slow-consumer closes at the end of a client's grace period.
    pub grace_closes: u64,
    /// Slow-consumer closes at the hard cap.
    pub hard_closes: u64,
    /// Slow-consumer closes at the end of the sum's grace period.
    pub global_grace_closes: u64,
    /// Slow-consumer closes at the global cap (a frame would pass it).
    pub global_cap_closes: u64,
    /// Times the sum passed half the global cap.
    pub global_marks: u64,
    /// The longest pause, in ms.
    pub longest_pause: u64,
    /// Clients that went over their soft budget and took their queue down
    /// to half of it within the grace period.
    pub recoveries: u64,
    /// The most a client's queue was over its soft budget, in bytes.
    pub peak_over_soft: u64,
    /// The most of the relay's own bytes a client over its soft budget held
    /// (its handshake, answers to its frames: the pause does not stop them).
    pub peak_own: u64,
}

impl Model {
    /// `c` was handed `len` more bytes: past its soft budget its grace
    /// period starts; the sum may pass its mark. The relay's own bytes are
    /// counted apart (the pause does not hold them back).
    pub fn budget_added(&mut self, c: ClientId, len: usize, own: bool) {
        let (now, soft) = (self.now, self.cfg.client_soft_budget);
        let m = self.clients.get_mut(&c).expect("known");
        if own {
            m.own_over += len;
            self.budget.own_sum += len;
        }
        if m.queued <= soft {
            m.own_over = 0;
        }
        if m.queued > soft {
            let stats = &mut self.budget.stats;
            stats.peak_over_soft = stats.peak_over_soft.max((m.queued - soft) as u64);
            stats.peak_own = stats.peak_own.max(m.own_over as u64);
        }
        if m.queued > soft && m.over_since.is_none() {
            m.over_since = Some(now);
            self.budget.over += 1;
            self.cause_started();
        }
        self.note_global();
    }

    /// `c` wrote some of its queue: down to half its budget it is no longer
    /// over (partial writes do not move its deadline).
    pub fn budget_written(&mut self, c: ClientId) {
        let (now, soft, grace) = (self.now, self.cfg.client_soft_budget, self.cfg.grace);
        let m = self.clients.get_mut(&c).expect("known");
        if m.queued <= soft / 2
            && let Some(t) = m.over_since.take()
        {
            self.budget.over -= 1;
            if now < t + grace {
                self.budget.stats.recoveries += 1;
            }
        }
        if m.queued <= soft {
            m.own_over = 0;
        }
        if m.queued == 0 {
            m.emptied_at = self.events;
        }
        self.note_global();
    }

    /// A client left (or was closed), holding no queue any more.
    pub fn budget_departed(&mut self, over: bool) {
        self.budget.over -= usize::from(over);
        self.note_global();
    }

    /// The sum over half the global cap starts its grace period; down to a
    /// quarter it ends.
    fn note_global(&mut self) {
        let total = self.sum_queued;
        let g = self.cfg.global_cap;
        match self.budget.global_since {
            None if total > g / 2 => {
                self.budget.global_since = Some(self.now);
                self.budget.global_event = self.events;
                self.budget.stats.global_marks += 1;
                self.cause_started();
            }
            Some(_) if total <= g / 4 => self.budget.global_since = None,
            _ => {}
        }
        if total <= g / 2 {
            self.budget.own_sum = 0;
        }
    }

    /// A client went over, or the sum passed its mark: during a pause,
    /// that is the latest moment the wait may be measured from.
    fn cause_started(&mut self) {
        if self.budget.paused {
            self.budget.mark = self.now;
        }
    }

    /// A slow consumer was closed at `limit` (already departed): during a
    /// pause that is progress; at the end of the sum's period, the sum gets
    /// another one if it is still over a quarter of the cap.
    pub fn budget_closed(&mut self, global_expiry: bool) {
        if self.budget.paused {
            self.budget.mark = self.now;
        }
        if !global_expiry {
            return;
        }
        let (total, g) = (self.sum_queued, self.cfg.global_cap);
        if total > g / 4 {
            self.budget.global_since = Some(self.now);
            self.budget.global_event = self.events;
            self.cause_started();
        } else {
            self.budget.global_since = None;
        }
    }

    /// Whether the rule has the guest paused now.
    pub fn pause_due(&self) -> bool {
        !self.guest_gone && (self.budget.over > 0 || self.budget.global_since.is_some())
    }

    /// `PauseGuest` (`pause`) or `ResumeGuest` (`inv_bounded_wait` judged
    /// it already): a pause starts, or ends and is counted.
    pub fn guest_pause(&mut self, pause: bool) {
        let b = &mut self.budget;
        if pause == b.paused {
            return;
        }
        b.paused = pause;
        if pause {
            b.pauses += 1;
            b.since = self.now;
            b.mark = self.now;
        } else {
            let ms = self.now - b.since;
            b.paused_ms += ms;
            b.stats.longest_pause = b.stats.longest_pause.max(ms);
        }
    }

    /// A slow-consumer close at `limit`, counted for the campaign.
    pub fn count_slow_close(&mut self, limit: SlowLimit) {
        let stats = &mut self.budget.stats;
        match (limit, self.tick) {
            (SlowLimit::Grace, _) => stats.grace_closes += 1,
            (SlowLimit::HardCap, _) => stats.hard_closes += 1,
            (SlowLimit::GlobalCap, true) => stats.global_grace_closes += 1,
            (SlowLimit::GlobalCap, false) => stats.global_cap_closes += 1,
        }
    }

    /// The earliest deadline the rule has running: a client's grace period
    /// (`Some(client)`) or the sum's (`None`).
    pub fn earliest_deadline(&self) -> Option<(Millis, Option<ClientId>)> {
        let grace = self.cfg.grace;
        let clients = (self.budget.over > 0)
            .then(|| {
                self.present.iter().filter_map(|&c| {
                    let m = &self.clients[&c];
                    m.over_since
                        .filter(|_| m.state == State::Live)
                        .map(|t| (t + grace, Some(c)))
                })
            })
            .into_iter()
            .flatten();
        let global = self.budget.global_since.map(|t| (t + grace, None));
        clients.chain(global).min_by_key(|(t, _)| *t)
    }
}
