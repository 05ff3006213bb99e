//! `inv_isolation`: no client sees another client's frames or affects its
//! sessions. A client gets a handshake (its own slot's range, then the
//! cached ready frame) or a refusal, never a slot another client still
//! holds; it is refused only when the relay is really full or the guest
//! gone; it is closed only for something it did (a violation it committed,
//! its own budgets, the guest leaving); it is paused only while live; and no
//! exec.log record appears with the tap off.

use std::collections::BTreeSet;

use agent_relay::core::{
    Action, ClientId, CloseReason, HandshakeForm, IdRange, RefuseReason, Relay, SlowLimit,
};
use bytes::Bytes;

use super::model::{Model, State};
use super::{Checker, Invariant, Issues};

impl Checker {
    pub(super) fn on_handshake(&mut self, c: ClientId, bytes: &Bytes) {
        self.advance(|k| k.ready.is_some());
        if !self.handshake_due(c) {
            return;
        }
        let range = if self.current.is_some() {
            self.canonical_range(c, bytes)
        } else {
            self.handshake_range(c, bytes)
        };
        let Some(range) = range else {
            return;
        };
        let slot = self
            .layout
            .and_then(|l| l.slot_of(range.start))
            .expect("a checked range belongs to a slot");
        let current = self.current.is_some();
        if current && !self.lease_slot_free(c, slot) {
            return;
        }
        for &other in &self.by_slot[slot] {
            let o = &self.clients[&other];
            let holds = if current {
                o.holds_slot_current()
            } else {
                o.holds_slot()
            };
            if other != c && o.range == Some(range) && holds {
                let why = format!(
                    "{c} got slot {slot} while {other} still holds it ({:?}, {} sessions, {} frames and {} kills toward the guest)",
                    o.state,
                    o.sessions.len(),
                    o.out.len(),
                    o.kills.len()
                );
                return self.fail(Invariant::Isolation, why);
            }
        }
        let clients = &self.clients;
        self.by_slot[slot].retain(|o| clients[o].holds_slot());
        self.by_slot[slot].push(c);
        let m = self.clients.get_mut(&c).expect("checked");
        m.state = State::Live;
        m.connecting = false;
        m.hs_due = false;
        m.range = Some(range);
        m.slot = slot;
        self.add_queued(c, bytes.len(), true);
        if current {
            self.lease_queued(c);
        }
    }

    /// A handshake to `c` is due: after ready, to a client waiting for one.
    fn handshake_due(&mut self, c: ClientId) -> bool {
        if self.ready.is_none() {
            let why = format!("handshake to {c} before core.ready");
            self.fail(Invariant::Isolation, why);
            return false;
        }
        match self.clients.get(&c) {
            Some(m) if m.state == State::Pending && (m.connecting || m.hs_due) => true,
            _ => {
                self.fail(Invariant::Isolation, format!("unexpected handshake to {c}"));
                false
            }
        }
    }

    /// The range a legacy handshake to `c` gives, if well formed: a slot's
    /// range, then the cached ready frame.
    fn handshake_range(&mut self, c: ClientId, bytes: &Bytes) -> Option<IdRange> {
        let max = self.cfg.max_clients;
        let step = u32::MAX / max.max(1);
        let prefix = match self.cfg.handshake {
            HandshakeForm::Offset => 4,
            HandshakeForm::Bounds => 8,
        };
        let ready = self.ready.clone()?;
        if bytes.len() != prefix + ready.len() || bytes[prefix..] != ready[..] {
            let why = format!("handshake to {c} is not its range then the cached ready frame");
            self.fail(Invariant::Isolation, why);
            return None;
        }
        let start = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let end = if prefix == 8 {
            u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])
        } else {
            start.wrapping_add(step)
        };
        let slot = start / step;
        if !start.is_multiple_of(step) || slot >= max || end != start + step {
            let why = format!("handshake to {c} gives range {start}..{end}, not a slot's");
            self.fail(Invariant::Isolation, why);
            return None;
        }
        Some(IdRange { start, end })
    }

    pub(super) fn on_refuse(&mut self, c: ClientId, reason: &RefuseReason) {
        // A client waits for ready when the relay detects the generation;
        // the excess is refused then.
        self.advance(|k| k.ready.is_some());
        match self.clients.get(&c) {
            Some(m) if m.connecting || m.hs_due => {}
            _ => {
                return self.fail(
                    Invariant::Isolation,
                    format!("refused {c} which was not connecting"),
                );
            }
        }
        match reason {
            RefuseReason::GuestGone if !self.guest_gone => {
                self.fail(
                    Invariant::Isolation,
                    format!("refused {c}: guest gone, but it is not"),
                );
            }
            RefuseReason::GuestGone => {}
            RefuseReason::Full { .. } => self.check_full(c),
            RefuseReason::StartupFailed => self.fail(
                Invariant::Isolation,
                format!("refused {c}: start-up failure, but the world's guest starts"),
            ),
        }
        self.clients.remove(&c);
    }

    /// Refusing `c` as full is right only if every slot is held.
    fn check_full(&mut self, c: ClientId) {
        let mut slots = BTreeSet::new();
        let mut pending = 0;
        for (&o, m) in &self.clients {
            if o == c {
                continue;
            }
            match (m.state, m.range) {
                (State::Pending, _) => pending += 1,
                (_, Some(r)) if m.holds_slot() => {
                    slots.insert(r.start);
                }
                _ => {}
            }
        }
        let held = slots.len() + pending;
        let max = self
            .layout
            .map_or(self.cfg.max_clients as usize, |l| l.slots());
        if held < max {
            let why = format!("refused {c} as full while only {held} of {max} slots are held");
            self.fail(Invariant::Isolation, why);
        }
    }

    pub(super) fn on_close(&mut self, c: ClientId, reason: &CloseReason) {
        let Some(m) = self.clients.get(&c) else {
            return self.fail(Invariant::Isolation, format!("closed unknown {c}"));
        };
        if m.state == State::Gone {
            return self.fail(Invariant::Isolation, format!("closed {c} twice"));
        }
        let mut violated = false;
        match reason {
            CloseReason::Violation(why) => {
                match m.bad {
                    None => {
                        let why = format!("{c} closed for a violation it did not commit: {why}");
                        return self.fail(Invariant::Isolation, why);
                    }
                    Some(expected) if !expected.matches(why) => {
                        let why =
                            format!("{c} closed for {why:?}; the rule it broke is {expected:?}");
                        return self.fail(Invariant::Isolation, why);
                    }
                    Some(_) => {}
                }
                violated = true;
            }
            CloseReason::GuestGone => {
                if !self.guest_gone {
                    return self.fail(
                        Invariant::Isolation,
                        format!("{c} closed: guest gone, but it is not"),
                    );
                }
            }
            CloseReason::SlowConsumer { queued, limit } => {
                if !self.slow_close_justified(c, *queued, *limit) {
                    return;
                }
                if *limit == SlowLimit::GlobalCap && self.current.is_some() {
                    self.lease_due_before_close();
                }
                self.depart(c, false);
                self.budget_closed(*limit == SlowLimit::GlobalCap && self.tick);
                return;
            }
        }
        self.depart(c, violated);
    }

    /// Closing `c` as a slow consumer at `limit` is what rule
    /// `backpressure_bounded_wait` says (`budget.rs`): at the end of its
    /// grace period (a tick at or after its deadline); at its hard cap (its
    /// next frame would pass it); at the end of the sum's grace period (a
    /// tick) or at the global cap (a frame would pass it), the client holding
    /// the most, ties going to the lowest slot. A close that takes a client
    /// keeping pace is judged first by `inv_no_loss_while_reading`.
    fn slow_close_justified(&mut self, c: ClientId, queued: usize, limit: SlowLimit) -> bool {
        self.advance(Checker::routed_waiting);
        if !self.slow_close_queued_matches(c, queued) {
            return false;
        }
        if !self.no_loss_on_slow_close(c, limit) {
            return false;
        }
        let m = &self.clients[&c];
        let next = self.next_frame_len(m);
        let (now, grace) = (self.now, self.cfg.grace);
        let fair = match limit {
            SlowLimit::HardCap => m.queued + next > self.cfg.client_hard_cap,
            SlowLimit::Grace => m.over_since.is_some_and(|t| self.tick && t + grace <= now),
            SlowLimit::GlobalCap => {
                let due = if self.tick {
                    self.budget.global_since.is_some_and(|t| t + grace <= now)
                } else {
                    let largest = self
                        .clients
                        .values()
                        .map(|o| self.next_frame_len(o))
                        .max()
                        .unwrap_or(0);
                    self.sum_queued + largest > self.cfg.global_cap
                };
                due && self.holds_the_most(c)
            }
        };
        if !fair {
            let why = format!(
                "{c} closed as slow ({limit:?}) with {queued} bytes queued, next frame {next} bytes, unjustified (sum {}, the sum's grace since {:?}, {c} over since {:?}, now {now})",
                self.sum_queued, self.budget.global_since, m.over_since
            );
            self.fail(Invariant::Isolation, why);
        }
        fair
    }

    /// The bytes the relay is about to hand `m`: the next guest frame routed
    /// to it, or its handshake.
    fn next_frame_len(&self, m: &Model) -> usize {
        match m.to_client.front() {
            Some(f) => f.len(),
            None if m.state == State::Pending && (m.connecting || m.hs_due) => {
                self.ready.as_ref().map_or(0, |r| r.len() + 8)
            }
            None => 0,
        }
    }

    /// `c` holds the most output of all clients with a slot, and of those
    /// holding as much, has the lowest slot.
    fn holds_the_most(&self, c: ClientId) -> bool {
        let m = &self.clients[&c];
        self.clients.iter().all(|(&o, om)| {
            o == c
                || om.state == State::Gone
                || om.queued < m.queued
                || (om.queued == m.queued && (om.state != State::Live || om.slot > m.slot))
        })
    }

    pub(super) fn on_pause(&mut self, c: ClientId, pause: bool, action: &Action) {
        match self.clients.get_mut(&c) {
            Some(m) if m.state == State::Live => m.paused = pause,
            _ => self.fail(
                Invariant::Isolation,
                format!("{action:?} for a client not live"),
            ),
        }
    }

    pub(super) fn on_log(&mut self) {
        if !self.cfg.exec_log {
            self.fail(
                Invariant::Isolation,
                "exec.log record with the tap off".into(),
            );
        }
    }

    /// A departed client lost its slot; a waiting one got an answer.
    pub(super) fn after_client_isolation(
        &self,
        c: ClientId,
        m: &Model,
        connecting: bool,
        relay: &Relay,
        issues: &mut Issues,
    ) {
        match m.state {
            State::Gone if relay.client_range(c).is_some() => {
                issues.push((
                    Invariant::Isolation,
                    format!("{c} left but still has a slot"),
                ));
            }
            State::Pending
                if m.bad.is_none() && (m.hs_due || (connecting && self.ready.is_some())) =>
            {
                issues.push((
                    Invariant::Isolation,
                    format!("{c} got neither a handshake nor a refusal"),
                ));
            }
            State::Gone | State::Pending | State::Live => {}
        }
    }
}
