//! What one chaos step can do, and how often: the [`Move`] table. One
//! weighted draw per step picks the move; a move that needs a client picks
//! one with a second draw. The weights sum to 100, so the draw is the
//! `below(100)` the ranges of a `match` would make: reordering the table or
//! changing a weight changes every world (and the campaign digest).

use agent_relay::core::Event;

use super::faults::Fault;
use super::{Generation, World};

/// One step of the chaos phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    /// The guest writes some of its pending bytes to the relay.
    GuestSend,
    /// The guest reads some of the bytes the relay handed it.
    GuestRead,
    /// One guest session produces output or ends.
    GuestWork,
    /// A client writes some of its pending bytes.
    ClientSend,
    /// A client reads some of the bytes the relay handed it.
    ClientRead,
    /// A client opens a session, sends input, misbehaves or leaves.
    ClientAct,
    /// A client connects (a storm of them, if the swarm says so).
    Connect,
    /// A stray guest frame, if the seed has [`Fault::GuestStray`] on.
    Stray,
    /// A timer tick.
    Tick,
    /// Current worlds: the host's wall clock is read (and, with
    /// [`Fault::TimeJump`], stepped).
    Clock,
}

/// The moves and their weights (out of 100).
pub(super) const MOVES: [(Move, u64); 9] = [
    (Move::GuestSend, 15),
    (Move::GuestRead, 10),
    (Move::GuestWork, 15),
    (Move::ClientSend, 15),
    (Move::ClientRead, 15),
    (Move::ClientAct, 15),
    (Move::Connect, 8),
    (Move::Stray, 4),
    (Move::Tick, 3),
];

/// A current world's moves: the same, with wall-clock readings.
pub(super) const CURRENT_MOVES: [(Move, u64); 10] = [
    (Move::GuestSend, 15),
    (Move::GuestRead, 10),
    (Move::GuestWork, 15),
    (Move::ClientSend, 15),
    (Move::ClientRead, 15),
    (Move::ClientAct, 15),
    (Move::Connect, 7),
    (Move::Stray, 4),
    (Move::Tick, 2),
    (Move::Clock, 2),
];

impl World {
    /// Plays one move. A client move with no client connected is a tick.
    pub(super) fn play(&mut self, m: Move) {
        let n = self.actors.len() as u64;
        match m {
            Move::GuestSend => self.guest_send(),
            Move::GuestRead => self.guest_read(),
            Move::GuestWork => self.guest_work(),
            Move::ClientSend | Move::ClientRead | Move::ClientAct if n == 0 => {
                self.feed(Event::Tick);
            }
            Move::ClientSend => {
                let i = self.rng.below(n) as usize;
                self.client_send(i);
            }
            Move::ClientRead => {
                let i = self.rng.below(n) as usize;
                self.client_read(i);
            }
            Move::ClientAct => {
                let i = self.rng.below(n) as usize;
                self.client_act(i);
            }
            Move::Connect => self.connect(),
            Move::Stray => {
                if self.fault(Fault::GuestStray) {
                    self.guest_stray();
                }
                if self.generation == Generation::Current && self.fault(Fault::WorkloadNoise) {
                    self.agentd_noise();
                }
            }
            Move::Tick => self.feed(Event::Tick),
            Move::Clock => self.read_wall_clock(),
        }
    }

    /// Current worlds: the wall clock follows the virtual time, and a time
    /// jump steps it 10 s ahead or 1 s back now and then.
    pub(super) fn read_wall_clock(&mut self) {
        if self.fault(Fault::TimeJump) {
            if self.rng.chance(500) {
                self.wall += 10_000;
            } else {
                self.wall = self.wall.saturating_sub(1_000);
            }
        }
        let nanos = (self.wall + self.now) * 1_000_000;
        self.feed(Event::WallClock(nanos));
    }
}
