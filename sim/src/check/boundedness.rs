//! `inv_boundedness`: memory stays within what the configuration and rule
//! `backpressure_bounded_wait` imply (derived in `sim/README.md`). With `S`
//! the soft budget, `G` the global cap, `R` the driver's read size (the
//! largest `GuestBytes` or `ClientBytes`) and `F` the largest guest frame
//! seen so far:
//!
//! - a client's queue (handed, not yet written) stays within its hard cap
//!   and within `S + R + F + own`, `own` being the relay's own bytes (its
//!   handshake, answers to its frames) handed to it since its queue was last
//!   within `S`: a guest read starts only with every queue within `S` (else
//!   the guest is paused), and adds at most the read and the partial frame
//!   it completes;
//! - the sum of the queues stays within the global cap and within
//!   `G/2 + R + F + own`, `own` counted since the sum was last within `G/2`;
//! - a client over its cap toward the guest is paused; the guest window
//!   holds; the core's own counts equal the model's; the core's held bytes
//!   stay within the bound derived from the configuration.

use agent_relay::core::{ClientId, Relay};
use bytes::Bytes;

use super::model::{Model, State};
use super::{Checker, Invariant, Issues};

impl Checker {
    /// A frame goes to the guest only while the window has room.
    pub(super) fn window_before_to_guest(&mut self, frame: &Bytes) {
        if self.inflight >= self.cfg.guest_window {
            let why = format!(
                "frame handed to the guest with {} bytes in flight, window {}",
                self.inflight, self.cfg.guest_window
            );
            self.fail(Invariant::Boundedness, why);
        }
        self.inflight += frame.len();
        self.handed_bytes += frame.len() as u64;
        self.largest_to_guest = self.largest_to_guest.max(frame.len());
    }

    /// `len` more bytes handed to `c` (the relay's own if `own`), within
    /// the caps and the bounds the rule implies.
    pub(super) fn add_queued(&mut self, c: ClientId, len: usize, own: bool) {
        let m = self.clients.get_mut(&c).expect("known");
        m.queued += len;
        self.sum_queued += len;
        self.budget_added(c, len, own);
        self.touch(c);
        let (soft, hard, global) = (
            self.cfg.client_soft_budget,
            self.cfg.client_hard_cap,
            self.cfg.global_cap,
        );
        let overshoot = self.read_max + self.budget.largest_from_guest;
        let m = &self.clients[&c];
        let (q, own) = (m.queued, m.own_over);
        if q > hard {
            let why = format!("{c} has {q} bytes queued, over its hard cap {hard}");
            return self.fail(Invariant::Boundedness, why);
        }
        if q > soft + overshoot + own {
            let why = format!(
                "{c} has {q} bytes queued, over its soft budget {soft} plus one read and the largest frame ({overshoot}) plus the relay's own bytes since it was within its budget ({own})"
            );
            return self.fail(Invariant::Boundedness, why);
        }
        let (sum, own) = (self.sum_queued, self.budget.own_sum);
        if sum > global {
            let why = format!("{sum} bytes queued for all clients, over the global cap {global}");
            return self.fail(Invariant::Boundedness, why);
        }
        if sum > global / 2 + overshoot + own {
            let why = format!(
                "{sum} bytes queued for all clients, over half the global cap {} plus one read and the largest frame ({overshoot}) plus the relay's own bytes since the sum was within half ({own})",
                global / 2
            );
            self.fail(Invariant::Boundedness, why);
        }
    }

    /// A slow-consumer close names the bytes the model has queued for `c`.
    pub(super) fn slow_close_queued_matches(&mut self, c: ClientId, queued: usize) -> bool {
        let have = self.clients[&c].queued;
        if queued != have {
            let why =
                format!("{c} closed as slow with {queued} bytes queued; the model has {have}");
            self.fail(Invariant::Boundedness, why);
        }
        queued == have
    }

    /// A client's budgets after an event.
    pub(super) fn after_client_boundedness(
        &self,
        c: ClientId,
        m: &Model,
        relay: &Relay,
        issues: &mut Issues,
    ) {
        if m.state == State::Gone {
            return;
        }
        if m.state == State::Live && m.out_bytes > self.cfg.client_to_guest_cap && !m.paused {
            let why = format!(
                "{c} has {} bytes queued toward the guest, over {}, and is not paused",
                m.out_bytes, self.cfg.client_to_guest_cap
            );
            issues.push((Invariant::Boundedness, why));
        }
        let have = relay.client_queued(c);
        // Detecting the generation, the relay seats no one before ready.
        let waiting = self.layout.is_none() && m.state == State::Pending && m.queued == 0;
        if have != Some(m.queued) && !(waiting && have.is_none()) {
            let why = format!(
                "core says {c} has {have:?} bytes queued, the model {}",
                m.queued
            );
            issues.push((Invariant::Boundedness, why));
        }
    }

    /// The whole relay's counts and bounds after an event.
    pub(super) fn after_event_boundedness(&mut self, relay: &Relay) {
        self.checks += 4;
        if relay.counters().queued_to_clients != self.sum_queued as u64 {
            let why = format!(
                "core counts {} bytes queued for clients, the model {}",
                relay.counters().queued_to_clients,
                self.sum_queued
            );
            return self.fail(Invariant::Boundedness, why);
        }
        if relay.guest_inflight() != self.inflight
            || self.inflight > self.cfg.guest_window + self.largest_to_guest
        {
            let why = format!(
                "guest in flight: core {}, model {}, window {}",
                relay.guest_inflight(),
                self.inflight,
                self.cfg.guest_window
            );
            return self.fail(Invariant::Boundedness, why);
        }
        // Held bytes only grow when bytes come in.
        let held = if self.bytes_in { relay.held_bytes() } else { 0 };
        if held > self.held_bound {
            let why = format!(
                "core holds {held} bytes, over the bound {}",
                self.held_bound
            );
            self.fail(Invariant::Boundedness, why);
        }
    }
}
