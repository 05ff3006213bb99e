//! `inv_boundedness`: buffered bytes never exceed the configured budgets.
//! Per client the bytes handed to it stay under its hard cap, and over its
//! soft budget a grace deadline is armed (`poll_timeout` no later) and
//! enforced; all clients together stay under the global cap; a client over
//! its cap toward the guest is paused; the guest window holds; the core's
//! own counts equal the model's; the core's held bytes stay under the bound
//! derived from the configuration (see `sim/README.md`).

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

    /// `len` more bytes handed to `c`, within its hard cap and the global cap.
    pub(super) fn add_queued(&mut self, c: ClientId, len: usize) {
        let (now, soft, hard) = (
            self.now,
            self.cfg.client_soft_budget,
            self.cfg.client_hard_cap,
        );
        let m = self.clients.get_mut(&c).expect("known");
        m.queued += len;
        self.sum_queued += len;
        if m.queued > soft && m.over_since.is_none() {
            m.over_since = Some(now);
        }
        if m.queued > hard {
            let q = m.queued;
            self.fail(
                Invariant::Boundedness,
                format!("{c} has {q} bytes queued, over its hard cap {hard}"),
            );
        }
        if self.sum_queued > self.cfg.global_cap {
            let why = format!(
                "{} bytes queued for all clients, over the global cap {}",
                self.sum_queued, self.cfg.global_cap
            );
            self.fail(Invariant::Boundedness, why);
        }
        self.touch(c);
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
        if m.state == State::Live {
            if m.out_bytes > self.cfg.client_to_guest_cap && !m.paused {
                let why = format!(
                    "{c} has {} bytes queued toward the guest, over {}, and is not paused",
                    m.out_bytes, self.cfg.client_to_guest_cap
                );
                issues.push((Invariant::Boundedness, why));
            }
            if let Some(t) = m.over_since {
                let deadline = t + self.cfg.grace;
                if relay.poll_timeout().is_none_or(|x| x.at > deadline) {
                    let why = format!(
                        "{c} is over its soft budget since {t}; poll_timeout {:?} is later than its deadline {deadline}",
                        relay.poll_timeout()
                    );
                    issues.push((Invariant::Boundedness, why));
                }
            }
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
            return self.fail(Invariant::Boundedness, why);
        }
        if self.tick {
            let now = self.now;
            let grace = self.cfg.grace;
            if let Some((&c, _)) = self.clients.iter().find(|(_, m)| {
                m.state == State::Live && m.over_since.is_some_and(|t| t + grace <= now)
            }) {
                let why = format!("{c} outlived its grace period and was not closed");
                self.fail(Invariant::Boundedness, why);
            }
        }
    }
}
