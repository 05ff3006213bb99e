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

use std::collections::BTreeMap;

use agent_relay::core::ClientId;

use super::super::invariant::Invariant;
use super::super::model::{Fact, Lane, Model};
use super::{Check, Verdict};

/// One client's place in the round robin.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// Its frames (and kills) queued in the express lane.
    express: usize,
    /// Its frames (and kills) queued in the turn lane.
    turns: usize,
    /// The turn after which its current wait in the turn lane began.
    since: u64,
    /// The last turn it got (0: none yet).
    last_turn: u64,
    /// The lane its kills wait in.
    kill_lane: Lane,
}

impl Default for Place {
    fn default() -> Place {
        Place {
            express: 0,
            turns: 0,
            since: 0,
            last_turn: 0,
            kill_lane: Lane::Express,
        }
    }
}

/// The lanes as the relay must serve them. See the module docs.
#[derive(Debug, Default)]
pub struct Fairness {
    /// Turn-lane frames handed to the guest so far.
    turn_seq: u64,
    /// Express-lane frames queued, of clients not closed for a violation.
    express_queued: usize,
    /// Clients with turn-lane frames queued, not closed for a violation.
    waiting: Vec<ClientId>,
    places: BTreeMap<ClientId, Place>,
}

impl Check for Fairness {
    const INVARIANT: Invariant = Invariant::Fairness;
    const WANTS: u64 =
        Fact::QUEUED | Fact::DROPPED | Fact::DEPARTED | Fact::OUT_HANDED | Fact::KILL_HANDED;

    fn new(_m: &Model) -> Self {
        Fairness::default()
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::Queued { c, lane } => self.joined(c, lane, 1),
            Fact::Dropped { c, frames } if !m.client(c).violated => {
                let p = self.places.entry(c).or_default();
                p.turns -= frames;
                if p.turns == 0 {
                    self.waiting.retain(|&w| w != c);
                }
            }
            Fact::Departed(c) => self.kills_joined(m, c),
            Fact::OutHanded { c, lane, .. } => self.served(m, c, lane, v),
            Fact::KillHanded { c, .. } => {
                let lane = self.places.entry(c).or_default().kill_lane;
                self.served(m, c, lane, v);
            }
            _ => {}
        }
    }
}

impl Fairness {
    /// `n` frames of `c` joined `lane`.
    fn joined(&mut self, c: ClientId, lane: Lane, n: usize) {
        if n == 0 {
            return;
        }
        let p = self.places.entry(c).or_default();
        match lane {
            Lane::Express => {
                p.express += n;
                self.express_queued += n;
            }
            Lane::Turn => {
                if p.turns == 0 {
                    p.since = self.turn_seq;
                    self.waiting.push(c);
                }
                p.turns += n;
            }
        }
    }

    /// `c` departed: its kills queue behind its turn frames if it has any,
    /// else they are express; a violator leaves the check.
    fn kills_joined(&mut self, m: &Model, c: ClientId) {
        let k = m.client(c);
        let p = self.places.entry(c).or_default();
        if k.violated {
            self.express_queued -= std::mem::take(&mut p.express);
            p.turns = 0;
            self.waiting.retain(|&w| w != c);
            return;
        }
        // Current generation: kills always join the control queue.
        p.kill_lane = if p.turns > 0 && m.current.is_none() {
            Lane::Turn
        } else {
            Lane::Express
        };
        let lane = p.kill_lane;
        self.joined(c, lane, k.kills.len());
    }

    /// A frame of `c` from `lane` was handed to the guest.
    fn served(&mut self, m: &Model, c: ClientId, lane: Lane, v: &mut Verdict) {
        if m.client(c).violated {
            return;
        }
        match lane {
            Lane::Express => {
                self.places.entry(c).or_default().express -= 1;
                self.express_queued -= 1;
            }
            Lane::Turn => self.turn_served(m, c, v),
        }
    }

    /// With input credit, a client whose head frame may not leave yet (no
    /// credit for it, or over its fair share) is not passed over: the round
    /// robin skips it, and its wait restarts.
    fn restart_blocked_waits(&mut self, m: &Model, b: ClientId, before: u64) {
        let Some(cur) = m.current.as_ref().filter(|c| c.credit.is_some()) else {
            return;
        };
        let active = Some(cur.active());
        for &a in &self.waiting {
            if a == b {
                continue;
            }
            let k = m.client(a);
            let blocked = k
                .turn_head()
                .is_some_and(|o| !cur.admits_among(o.class, o.frame.len(), Some(k.slot), active));
            if blocked {
                self.places.get_mut(&a).expect("waiting").since = before;
            }
        }
    }

    fn turn_served(&mut self, m: &Model, b: ClientId, v: &mut Verdict) {
        self.turn_seq += 1;
        let seq = self.turn_seq;
        let express = match &m.current {
            Some(cur) => cur.ctl.len(),
            None => self.express_queued,
        };
        if express > 0 {
            let why = format!(
                "a queued frame of {b} went to the guest (turn #{seq}) while {express} control frames that overtake data were queued"
            );
            v.fail::<Self>(why);
        }
        let prev = self.places.entry(b).or_default().last_turn;
        self.restart_blocked_waits(m, b, seq - 1);
        if let Some(&a) = self
            .waiting
            .iter()
            .find(|&&a| a != b && self.places[&a].since < prev)
        {
            let p = &self.places[&a];
            let why = format!(
                "{a} has {} frames waiting for their turn since turn #{}, and {b} got turns #{prev} and #{seq}: the round robin passed {a} over",
                p.turns, p.since
            );
            v.fail::<Self>(why);
        }
        let p = self.places.get_mut(&b).expect("served");
        p.last_turn = seq;
        p.turns -= 1;
        if p.turns == 0 {
            self.waiting.retain(|&w| w != b);
        } else {
            p.since = seq;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Exact scripts: two clients queue frames, and the test plays the
    //! order a scheduler would hand them to the guest. The checker alone is
    //! driven (no relay), so any order can be played, including the order
    //! of the mutant scheduler that restarts its scan at slot 0.

    use agent_relay::core::{Action, ClientId, Config, Event, LegacySettings};
    use agent_relay::wire::LEGACY_VERSION as L;
    use bytes::Bytes;

    use super::super::super::{Checker, Invariant};
    use agent_relay::testkit::frames;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);

    /// A checker with `A` in slot 0 and `B` in slot 1, both handshaken.
    fn two_clients() -> (Checker, u32) {
        let cfg = Config {
            legacy: LegacySettings {
                max_clients: 2,
                ..LegacySettings::default()
            },
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
