//! The two protocol generations the bench measures: which of them a run
//! measures, the relay's configuration for each, and the input credit a
//! current-generation guest grants.
//!
//! Picking: the arguments `legacy` and `current` (`cargo bench --bench relay
//! -- 1 current`), else `RELAY_BENCH_GEN=legacy|current|both`, else both.
//! Scenarios without current-generation rows (3, 5, 6, 7) run only when the
//! legacy generation is picked.
//!
//! Credit (`workload_transport_barrier_version: 2`, as in
//! `src/demo_agent/current.rs`): the guest counts every frame it reads after
//! the relay's `core.init.ack` as the relay charges it (the whole frame, its
//! 4-byte length prefix included, one frame) in the frame's class: data for
//! raw bulk records and the types the message table marks data (stdin, fs
//! and tcp data, tcp end of stream), control for every other frame, unknown
//! types included. The bench guest consumes a frame as soon as it has
//! handled it, so after each batch of reads it grants back what it read:
//! the starting grants plus everything consumed, absolute and cumulative,
//! in one `core.workload.transport.credit` on id `u32::MAX`.

use agent_relay::core::{Config, Protocol};
use agent_relay::testkit::frames;
use agent_relay::wire::payload::WorkloadTransportCredit;
use agent_relay::wire::{CURRENT_VERSION, CreditClass, FLAG_BULK, Frame, LEGACY_VERSION, MsgType};
use bytes::Bytes;

/// The protocol's starting control grant: bytes, frames.
const START_CONTROL: (u64, u64) = (8 << 20, 256);
/// The protocol's starting data grant: bytes, frames.
const START_DATA: (u64, u64) = (32 << 20, 256);
/// What picks the generations when no argument does.
const ENV: &str = "RELAY_BENCH_GEN";

/// A protocol generation, as the bench guest and clients speak it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gen {
    /// Generation 1 (microsandbox-protocol 0.4.4): a `v = 1` ready, no credit.
    Legacy,
    /// Generation 10 (microsandbox 0.7.x): `core.init.resolved`, then a
    /// `v = 10` ready with barrier 2; input credit.
    Current,
}

impl Gen {
    /// The `v` of every envelope this generation writes.
    pub fn v(self) -> u8 {
        match self {
            Gen::Legacy => LEGACY_VERSION,
            Gen::Current => CURRENT_VERSION,
        }
    }

    /// `base` for this generation: unchanged for legacy (the relay detects
    /// it from the ready, as the scenarios always ran it), the current
    /// generation configured outright, so a guest that spoke the other one
    /// would stop the relay.
    pub fn config(self, base: Config) -> Config {
        match self {
            Gen::Legacy => base,
            Gen::Current => Config {
                protocol: Protocol::Current,
                ..base
            },
        }
    }
}

/// The generations a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gens {
    pub legacy: bool,
    pub current: bool,
}

impl Gens {
    /// From the bench's arguments (the words `legacy`, `current` and
    /// `both`), else from [`ENV`], else both. Other words are left alone (a
    /// criterion filter meant for `benches/core.rs`, say), as they always
    /// were.
    pub fn pick(words: &[String]) -> Gens {
        let from = |w: &str| match w {
            "legacy" => Some((true, false)),
            "current" => Some((false, true)),
            "both" => Some((true, true)),
            _ => None,
        };
        let mut gens = Gens {
            legacy: false,
            current: false,
        };
        for (l, c) in words.iter().filter_map(|w| from(w)) {
            gens.legacy |= l;
            gens.current |= c;
        }
        if gens.legacy || gens.current {
            return gens;
        }
        let (legacy, current) = match std::env::var(ENV) {
            Ok(v) => from(&v).unwrap_or_else(|| panic!("{ENV}={v:?}: legacy, current or both")),
            Err(_) => (true, true),
        };
        Gens { legacy, current }
    }

    pub fn describe(self) -> &'static str {
        match (self.legacy, self.current) {
            (true, true) => "legacy (v=1) and current (v=10) generations",
            (true, false) => "legacy (v=1) generation only",
            (false, true) => "current (v=10) generation only",
            (false, false) => "no generation",
        }
    }
}

/// What a current guest has consumed, per class: (bytes, frames).
#[derive(Debug, Default)]
pub struct Credit {
    used: [(u64, u64); 2],
    /// Consumed since the last grant.
    owed: bool,
}

impl Credit {
    /// One frame read and handled; `t` is its type, `None` for one the
    /// relay's table does not know.
    pub fn consumed(&mut self, frame: &Frame, t: Option<MsgType>) {
        let class = if frame.flags() == FLAG_BULK {
            CreditClass::Data
        } else {
            t.map_or(CreditClass::Control, MsgType::credit)
        };
        let u = &mut self.used[usize::from(class == CreditClass::Data)];
        u.0 += frame.len() as u64;
        u.1 += 1;
        self.owed = true;
    }

    /// The grant for everything consumed so far, if anything was since the
    /// last one.
    pub fn grant(&mut self) -> Option<Bytes> {
        if !std::mem::take(&mut self.owed) {
            return None;
        }
        let [(cb, cf), (db, df)] = self.used;
        let grant = WorkloadTransportCredit {
            control_bytes: START_CONTROL.0 + cb,
            control_frames: START_CONTROL.1 + cf,
            bulk_bytes: START_DATA.0 + db,
            bulk_frames: START_DATA.1 + df,
        };
        Some(frames::credit(CURRENT_VERSION, &grant))
    }
}
