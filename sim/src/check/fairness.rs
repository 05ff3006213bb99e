//! `inv_fairness`: the order in which queued frames leave toward the guest.
//! The relay keeps two queues, and the model derives from the protocol rule
//! alone (control frames overtake other sessions' data, never their own)
//! which [`Lane`] each frame a client sent, and each kill the relay owes a
//! departed client, waits in:
//!
//! - **express**: a control frame (signal, resize, shutdown) with no frame
//!   of its own session waiting in its client's turn lane, and the kills of
//!   a client that left with nothing in its turn lane;
//! - **turn**: everything else (data frames, and the control frames and
//!   kills that must stay behind them).
//!
//! Two rules hold on every frame handed to the guest (so only while the
//! guest window is open; a closed window sends nothing and breaks nothing):
//!
//! 1. no turn frame goes while an express frame is queued;
//! 2. round robin: while a client has a turn frame waiting, no other client
//!    gets two turn frames. A client's wait starts when its turn lane
//!    becomes non-empty and restarts each time it is served, so its head
//!    frame waits behind at most one frame of each other client. Departed
//!    clients whose frames (or kills) still drain take part like any other.
//!
//! Express frames are first come, first served across clients, not round
//! robin. Current generation: express means the control queue (every
//! control-class frame not behind its own id's data, see
//! `inv_control_first`), and with input credit a client whose head frame
//! may not leave yet (credit, fair share) is skipped, not passed over: its
//! wait restarts at each turn it could not take. Pauses do not matter: a paused client's queued frames still leave.
//! A client closed for a protocol violation is left out from its close on
//! (the relay may have refused frames the model had queued for it).

use agent_relay::core::ClientId;

use super::{Checker, Invariant};

/// Which of the relay's two queues toward the guest a frame waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// Before any turn frame, first come first served.
    Express,
    /// One frame per client in turn.
    Turn,
}

impl Checker {
    /// `n` frames of `c` joined `lane`.
    pub(super) fn lane_joined(&mut self, c: ClientId, lane: Lane, n: usize) {
        if n == 0 {
            return;
        }
        let m = self.clients.get_mut(&c).expect("known");
        match lane {
            Lane::Express => {
                m.express += n;
                self.express_queued += n;
            }
            Lane::Turn => {
                if m.turns == 0 {
                    m.since = self.turn_seq;
                    self.waiting.push(c);
                }
                m.turns += n;
            }
        }
    }

    /// `c` departed: its kills queue behind its turn frames if it has any,
    /// else they are express; a violator leaves the check.
    pub(super) fn kills_joined(&mut self, c: ClientId) {
        let current = self.current.is_some();
        let m = self.clients.get_mut(&c).expect("known");
        if m.violated {
            self.express_queued -= std::mem::take(&mut m.express);
            m.turns = 0;
            self.waiting.retain(|&w| w != c);
            return;
        }
        // Current generation: kills always join the control queue.
        m.kill_lane = if m.turns > 0 && !current {
            Lane::Turn
        } else {
            Lane::Express
        };
        let (lane, n) = (m.kill_lane, m.kills.len());
        self.lane_joined(c, lane, n);
    }

    /// A frame of `c` from `lane` was handed to the guest.
    pub(super) fn lane_served(&mut self, c: ClientId, lane: Lane) {
        let m = self.clients.get_mut(&c).expect("known");
        if m.violated {
            return;
        }
        match lane {
            Lane::Express => {
                m.express -= 1;
                self.express_queued -= 1;
            }
            Lane::Turn => self.turn_served(c),
        }
    }

    /// With input credit, a client whose head frame may not leave yet (no
    /// credit for it, or over its fair share) is not passed over: the round
    /// robin skips it, and its wait restarts.
    fn restart_blocked_waits(&mut self, b: ClientId, before: u64) {
        let Some(cur) = self.current.as_ref().filter(|c| c.credit.is_some()) else {
            return;
        };
        let active = Some(cur.active());
        let blocked: Vec<ClientId> = self
            .waiting
            .iter()
            .copied()
            .filter(|&a| a != b)
            .filter(|a| {
                let m = &self.clients[a];
                m.turn_head().is_some_and(|o| {
                    !cur.admits_among(o.class, o.frame.len(), Some(m.slot), active)
                })
            })
            .collect();
        for a in blocked {
            self.clients.get_mut(&a).expect("waiting").since = before;
        }
    }

    fn turn_served(&mut self, b: ClientId) {
        self.checks += 1;
        self.turn_seq += 1;
        let seq = self.turn_seq;
        let express = match &self.current {
            Some(cur) => cur.ctl.len(),
            None => self.express_queued,
        };
        if express > 0 {
            let why = format!(
                "a queued frame of {b} went to the guest (turn #{seq}) while {express} control frames that overtake data were queued"
            );
            self.fail(Invariant::Fairness, why);
        }
        let prev = self.clients[&b].last_turn;
        self.restart_blocked_waits(b, seq - 1);
        if let Some(&a) = self
            .waiting
            .iter()
            .find(|&&a| a != b && self.clients[&a].since < prev)
        {
            let m = &self.clients[&a];
            let why = format!(
                "{a} has {} frames waiting for their turn since turn #{}, and {b} got turns #{prev} and #{seq}: the round robin passed {a} over",
                m.turns, m.since
            );
            self.fail(Invariant::Fairness, why);
        }
        let m = self.clients.get_mut(&b).expect("known");
        m.last_turn = seq;
        m.turns -= 1;
        if m.turns == 0 {
            self.waiting.retain(|&w| w != b);
        } else {
            m.since = seq;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Exact scripts: two clients queue frames, and the test plays the
    //! order a scheduler would hand them to the guest. The checker alone is
    //! driven (no relay), so any order can be played, including the order
    //! of the mutant scheduler that restarts its scan at slot 0.

    use agent_relay::core::{Action, ClientId, Config, Event};
    use agent_relay::wire::LEGACY_VERSION as L;
    use bytes::Bytes;

    use super::super::{Checker, Invariant};
    use agent_relay::testkit::frames;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);

    /// A checker with `A` in slot 0 and `B` in slot 1, both handshaken.
    fn two_clients() -> (Checker, u32) {
        let cfg = Config {
            max_clients: 2,
            ..Config::default()
        };
        let step = cfg.step();
        let mut k = Checker::new(cfg, 1 << 16);
        let ready = frames::ready(L, 1);
        k.before(0, &Event::GuestBytes(&ready));
        k.on_action(&Action::Ready);
        for (c, start) in [(A, 0u32), (B, step)] {
            k.before(0, &Event::ClientConnected(c));
            let mut bytes = start.to_be_bytes().to_vec();
            bytes.extend_from_slice(&ready);
            let bytes = Bytes::from(bytes);
            k.on_action(&Action::Handshake { client: c, bytes });
        }
        (k, step)
    }

    fn stdin(id: u32) -> Bytes {
        frames::stdin(L, id, b"x")
    }

    /// `c` sends `frames` in one read.
    fn send(k: &mut Checker, c: ClientId, frames: &[&[u8]]) {
        k.before(0, &Event::ClientBytes(c, &frames.concat()));
    }

    /// Hands `order` to the guest; the first broken invariant, if any.
    fn play(k: &mut Checker, order: &[&[u8]]) -> Option<Invariant> {
        k.before(0, &Event::GuestWritten(0));
        for f in order {
            let frame = Bytes::copy_from_slice(f);
            k.on_action(&Action::ToGuest { frame });
        }
        k.failure().map(|v| v.invariant)
    }

    #[test]
    fn inv_fairness_round_robin_order_passes() {
        let (mut k, step) = two_clients();
        let (a1, a2, a3) = (frames::exec_request(L, 1, false, 0), stdin(1), stdin(1));
        let (b1, b2) = (frames::exec_request(L, step, false, 0), stdin(step));
        send(&mut k, A, &[&a1, &a2, &a3]);
        send(&mut k, B, &[&b1, &b2]);
        assert_eq!(play(&mut k, &[&a1, &b1, &a2, &b2, &a3]), None);
    }

    #[test]
    fn inv_fairness_scan_from_slot_zero_caught() {
        let (mut k, step) = two_clients();
        let (a1, a2) = (frames::exec_request(L, 1, false, 0), stdin(1));
        let b1 = frames::exec_request(L, step, false, 0);
        send(&mut k, A, &[&a1, &a2]);
        send(&mut k, B, &[&b1]);
        // What the mutant scheduler does: slot 0 again while slot 1 waits.
        assert_eq!(play(&mut k, &[&a1, &a2]), Some(Invariant::Fairness));
    }

    #[test]
    fn inv_fairness_wait_starts_when_the_frame_is_queued() {
        let (mut k, step) = two_clients();
        let (a1, a2, a3) = (frames::exec_request(L, 1, false, 0), stdin(1), stdin(1));
        let b1 = frames::exec_request(L, step, false, 0);
        send(&mut k, A, &[&a1, &a2, &a3]);
        assert_eq!(play(&mut k, &[&a1]), None);
        send(&mut k, B, &[&b1]);
        // A's first turn came before B queued anything: A may have one more.
        assert_eq!(play(&mut k, &[&a2, &b1, &a3]), None);
    }

    #[test]
    fn inv_fairness_control_overtakes_other_sessions_data() {
        let (mut k, step) = two_clients();
        let (a1, a2) = (frames::exec_request(L, 1, false, 0), stdin(1));
        let (sig_own, sig_other) = (frames::signal(L, 1, 2), frames::signal(L, step, 2));
        send(&mut k, A, &[&a1, &a2, &sig_own]);
        send(&mut k, B, &[&sig_other]);
        // B's signal has no data of its session queued: it goes first. A's
        // signal stays behind A's data for session 1.
        assert_eq!(play(&mut k, &[&sig_other, &a1, &a2, &sig_own]), None);
    }

    #[test]
    fn inv_fairness_data_before_queued_control_caught() {
        let (mut k, step) = two_clients();
        let a1 = frames::exec_request(L, 1, false, 0);
        let sig = frames::signal(L, step, 2);
        send(&mut k, A, &[&a1]);
        send(&mut k, B, &[&sig]);
        assert_eq!(play(&mut k, &[&a1, &sig]), Some(Invariant::Fairness));
    }
}
