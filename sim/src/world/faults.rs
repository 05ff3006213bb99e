//! The swarm: the [`Fault`] kinds, which of them a seed switches on and how
//! often ([`Swarm`]), and the doors every injection goes through
//! ([`World::fault`], [`World::roll`], [`World::count`]), so a campaign's
//! injected counts say what the world did. The seed's draws happen here in
//! [`Fault::ALL`] order: reordering it, or adding a fault anywhere, changes
//! every world (and the campaign digest). A legacy world draws the first
//! [`Fault::LEGACY`] faults only (the current generation's come after them),
//! so adding current faults at the end leaves every legacy world as it was.

use super::super::rng::Rng;
use super::World;

/// A fault a seed may switch on (swarm testing, as in TigerBeetle's VOPR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Frames for ids nobody owns before `core.ready`.
    GuestNoise,
    /// Stretches of random bytes between guest frames.
    GuestCorrupt,
    /// Guest frames for ids no live session has.
    GuestStray,
    /// Output after a kill, before the exit.
    GuestLate,
    /// The guest stops reading its channel for a while.
    GuestStall,
    /// Large frames, both ways.
    Burst,
    /// A client leaves at any byte.
    ClientDrop,
    /// Several clients connect at once, some leave at once.
    ReconnectStorm,
    /// A client stops reading for up to three grace periods.
    SlowReader,
    /// A client sends frames the relay must refuse.
    Malicious,
    /// The clock jumps ahead by up to 10 s.
    TimeJump,
    /// Reads of 1 to 16 bytes.
    TinyChunks,
    /// Current: the guest holds its credit grants back for a while.
    CreditLate,
    /// Current: the guest sends a grant that would lower one (ignored).
    CreditLower,
    /// Current: an exec session never reads its stdin (its data credit stays
    /// held until it ends).
    StuckStdin,
    /// Current: workload-control frames on `u32::MAX`, and frames for ids
    /// nobody owns (0, the range boundaries, the tail).
    WorkloadNoise,
}

impl Fault {
    /// Every fault, in the order a seed draws them.
    pub const ALL: [Fault; 16] = [
        Fault::GuestNoise,
        Fault::GuestCorrupt,
        Fault::GuestStray,
        Fault::GuestLate,
        Fault::GuestStall,
        Fault::Burst,
        Fault::ClientDrop,
        Fault::ReconnectStorm,
        Fault::SlowReader,
        Fault::Malicious,
        Fault::TimeJump,
        Fault::TinyChunks,
        Fault::CreditLate,
        Fault::CreditLower,
        Fault::StuckStdin,
        Fault::WorkloadNoise,
    ];

    /// How many of [`Fault::ALL`] (the first ones) a legacy world draws.
    pub const LEGACY: usize = 12;

    /// How many faults there are.
    pub const COUNT: usize = Fault::ALL.len();

    /// Its name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::GuestNoise => "guest_noise",
            Fault::GuestCorrupt => "guest_corrupt",
            Fault::GuestStray => "guest_stray",
            Fault::GuestLate => "guest_late",
            Fault::GuestStall => "guest_stall",
            Fault::Burst => "burst",
            Fault::ClientDrop => "client_drop",
            Fault::ReconnectStorm => "reconnect_storm",
            Fault::SlowReader => "slow_reader",
            Fault::Malicious => "malicious",
            Fault::TimeJump => "time_jump",
            Fault::TinyChunks => "tiny_chunks",
            Fault::CreditLate => "credit_late",
            Fault::CreditLower => "credit_lower",
            Fault::StuckStdin => "stuck_stdin",
            Fault::WorkloadNoise => "workload_noise",
        }
    }

    /// The fault called `name`.
    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Its bit in [`super::RunOpts::disabled`].
    pub fn bit(self) -> u32 {
        1 << self.index()
    }

    /// Its position in [`Fault::ALL`] (and in [`FaultCounts`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How often each fault was injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts([u64; Fault::COUNT]);

impl FaultCounts {
    /// Injections of `f`.
    pub fn get(&self, f: Fault) -> u64 {
        self.0[f.index()]
    }

    /// Adds `n` injections of `f`.
    pub fn add(&mut self, f: Fault, n: u64) {
        self.0[f.index()] += n;
    }

    /// Every fault with its count, in [`Fault::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Fault, u64)> + '_ {
        Fault::ALL.into_iter().map(|f| (f, self.get(f)))
    }
}

/// The probability levels a switched-on fault draws from, in permille.
const LEVELS: [u32; 4] = [10, 50, 150, 400];

/// Per-seed fault probabilities in permille (0 = off).
#[derive(Debug, Clone)]
pub(super) struct Swarm {
    p: [u32; Fault::COUNT],
}

impl Swarm {
    /// Each fault is on for half the seeds, at one of [`LEVELS`]; a fault in
    /// `disabled` stays off but makes the same draws, so the rest of the
    /// world is the seed's usual one.
    pub(super) fn draw(rng: &mut Rng, disabled: u32, current: bool) -> Swarm {
        let mut p = [0; Fault::COUNT];
        let n = if current { Fault::COUNT } else { Fault::LEGACY };
        for f in Fault::ALL.into_iter().take(n) {
            let on = rng.chance(500);
            let level = rng.pick(&LEVELS);
            if on && disabled & f.bit() == 0 {
                p[f.index()] = level;
            }
        }
        Swarm { p }
    }

    /// The probability of `f` in permille (0 = off).
    pub(super) fn p(&self, f: Fault) -> u32 {
        self.p[f.index()]
    }
}

impl World {
    /// Injects `f` now? Draws only while the seed has it on and the faults
    /// have not healed; a hit is counted.
    pub(super) fn fault(&mut self, f: Fault) -> bool {
        let p = if self.heal { 0 } else { self.swarm.p(f) };
        let hit = p > 0 && self.rng.chance(p);
        if hit {
            self.injected.add(f, 1);
        }
        hit
    }

    /// Like [`World::fault`] but also after healing, and uncounted: for the
    /// callers that decide later whether the hit is used (then they
    /// [`World::count`] it) or never count it.
    pub(super) fn roll(&mut self, f: Fault) -> bool {
        let p = self.swarm.p(f);
        p > 0 && self.rng.chance(p)
    }

    /// Counts one injection of `f` decided elsewhere.
    pub(super) fn count(&mut self, f: Fault) {
        self.injected.add(f, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_all_in_declaration_order_with_unique_names() {
        for (i, f) in Fault::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i, "{f:?}");
            assert_eq!(Fault::from_name(f.name()), Some(f));
        }
        assert_eq!(Fault::from_name("no_such_fault"), None);
    }
}
