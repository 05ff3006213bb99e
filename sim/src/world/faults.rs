//! The swarm: which faults a seed switches on and how often, and the one
//! door every fault injection goes through ([`World::fault`]), so the
//! injected counts in a campaign report match what the world did.

use super::World;

/// Fault kinds a seed may switch on (swarm testing), by index.
pub const FAULTS: [&str; 12] = [
    "guest_noise",
    "guest_corrupt",
    "guest_stray",
    "guest_late",
    "guest_stall",
    "burst",
    "client_drop",
    "reconnect_storm",
    "slow_reader",
    "malicious",
    "time_jump",
    "tiny_chunks",
];
pub(super) const F_NOISE: usize = 0;
pub(super) const F_CORRUPT: usize = 1;
pub(super) const F_STRAY: usize = 2;
pub(super) const F_LATE: usize = 3;
pub(super) const F_STALL: usize = 4;
pub(super) const F_BURST: usize = 5;
pub(super) const F_DROP: usize = 6;
pub(super) const F_STORM: usize = 7;
pub(super) const F_SLOW: usize = 8;
pub(super) const F_MALICIOUS: usize = 9;
pub(super) const F_JUMP: usize = 10;
pub(super) const F_TINY: usize = 11;

/// The [`RunOpts::disabled`] bit of the named fault.
pub fn fault_bit(name: &str) -> u32 {
    FAULTS.iter().position(|f| *f == name).map_or(0, |i| 1 << i)
}

/// Per-seed fault probabilities in permille (0 = off).
#[derive(Debug, Clone)]
pub(super) struct Faults {
    pub(super) p: [u32; FAULTS.len()],
}

impl World {
    pub(super) fn fault(&mut self, kind: usize) -> bool {
        let p = if self.heal { 0 } else { self.faults.p[kind] };
        let hit = p > 0 && self.rng.chance(p);
        if hit {
            self.injected[kind] += 1;
        }
        hit
    }
}
