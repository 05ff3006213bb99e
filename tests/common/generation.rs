//! The generation a rule's test body runs in. [`each_gen`] runs a body once
//! per generation; [`Gen`] gives the body what differs between them: the
//! envelope's `v`, the ready frame, the slots' ids and prologues, what a
//! departure sends after its kills.

use agent_relay::core::{Config, CurrentSettings, Event, IdRange, Protocol};
use bytes::Bytes;

use super::current::{CSTEP, crange};
use super::*;

/// A protocol generation, as a test body sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gen {
    /// Generation 1 (0.4.4): 16 slots of `STEP` ids, the offset prologue.
    Legacy,
    /// Generation 10 (0.7.x): the canonical ranges, the bounds prologue,
    /// the disconnect notice; no credit, leases or exec limits unless the
    /// body's ready offers them.
    Current,
}

/// Both generations, legacy first.
pub const GENERATIONS: [Gen; 2] = [Gen::Legacy, Gen::Current];

/// Runs `body` once per generation. The generation is printed first, so a
/// failure's captured output names it.
pub fn each_gen(body: impl Fn(Gen)) {
    for g in GENERATIONS {
        eprintln!("--- {g:?} generation");
        body(g);
    }
}

impl Gen {
    /// The envelope's `v`: the first argument of the frame builders.
    pub fn v(self) -> u8 {
        match self {
            Gen::Legacy => V1,
            Gen::Current => V10,
        }
    }

    /// `cfg` speaking this generation only. The current generation's clock
    /// sync is off: it is rule `clock_sync`'s subject, and elsewhere it
    /// would only add a frame to the guest at ready and a timer.
    pub fn config(self, cfg: Config) -> Config {
        match self {
            Gen::Legacy => Config {
                protocol: Protocol::Legacy,
                ..cfg
            },
            Gen::Current => Config {
                protocol: Protocol::Current,
                current: CurrentSettings {
                    clock_sync: false,
                    ..cfg.current
                },
                ..cfg
            },
        }
    }

    /// The guest's `core.ready` (the current one offers no credit, no
    /// exec limits and no leases).
    pub fn ready(self) -> Bytes {
        match self {
            Gen::Legacy => ready(V1, 1),
            Gen::Current => ready_current(V10, 1, None, None),
        }
    }

    /// A relay of this generation whose guest is not ready yet.
    pub fn before_ready(self, cfg: Config) -> Harness {
        let mut h = Harness::new(self.config(cfg));
        if self == Gen::Current {
            h.ev(Event::WallClock(1_700_000_000_000_000_000));
        }
        h
    }

    /// A relay of this generation whose guest is ready with [`Gen::ready`].
    pub fn harness(self, cfg: Config) -> Harness {
        self.harness_with(cfg, &self.ready())
    }

    /// A relay of this generation whose guest is ready with `ready`.
    pub fn harness_with(self, cfg: Config, ready: &[u8]) -> Harness {
        let mut h = self.before_ready(cfg);
        h.guest(ready);
        assert!(h.relay.is_ready(), "the guest is ready");
        h
    }

    /// The id range of slot `s` (legacy: of 16 slots, the default).
    pub fn range(self, s: u32) -> IdRange {
        match self {
            Gen::Legacy => IdRange {
                start: s * STEP,
                end: (s + 1) * STEP,
            },
            Gen::Current => crange(s),
        }
    }

    /// The `k`-th id of slot `s` (`k = 0` is its first).
    pub fn id(self, s: u32, k: u32) -> u32 {
        self.range(s).start + k
    }

    /// Ids per slot.
    pub fn step(self) -> u32 {
        match self {
            Gen::Legacy => STEP,
            Gen::Current => CSTEP,
        }
    }

    /// The slots `cfg` offers.
    pub fn slots(self, cfg: &Config) -> u32 {
        match self {
            Gen::Legacy => cfg.legacy.max_clients,
            Gen::Current => cfg.current.clients,
        }
    }

    /// The prologue of slot `s` (the legacy offset form, the current bounds
    /// form), then `ready`.
    pub fn prologue(self, s: u32, ready: &[u8]) -> Bytes {
        let range = self.range(s);
        let mut b = range.start.to_be_bytes().to_vec();
        if self == Gen::Current {
            b.extend_from_slice(&range.end.to_be_bytes());
        }
        b.extend_from_slice(ready);
        Bytes::from(b)
    }

    /// The length of a handshake with [`Gen::ready`].
    pub fn handshake_len(self) -> usize {
        self.prologue(0, &self.ready()).len()
    }

    /// What a departure from slot `s` hands the guest after its kills:
    /// nothing in the legacy generation, the disconnect notice in the
    /// current one.
    pub fn after_kills(self, s: u32) -> Vec<Bytes> {
        match self {
            Gen::Legacy => Vec::new(),
            Gen::Current => vec![client_disconnected(V10, crange(s))],
        }
    }
}
