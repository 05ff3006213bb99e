//! The current generation's (`v = 10`) id ranges and credit grants, and its
//! harness; its frames come from `agent_relay::testkit::frames`.

use agent_relay::core::{Config, Event, IdRange};
use agent_relay::wire::payload::WorkloadTransportCredit;

use super::Harness;

/// Ids per slot in the current generation.
pub const CSTEP: u32 = u32::MAX / 128;

/// The canonical range of slot `s`.
pub fn crange(s: u32) -> IdRange {
    IdRange {
        start: s * CSTEP + 1,
        end: (s + 1) * CSTEP,
    }
}

/// The first id of slot `s` (what the SDK uses first).
pub fn cid(s: u32) -> u32 {
    crange(s).start
}

/// The absolute grants of a `core.workload.transport.credit`: control
/// (bytes, frames) and data (bytes, frames).
pub fn grant(control: (u64, u64), data: (u64, u64)) -> WorkloadTransportCredit {
    WorkloadTransportCredit {
        control_bytes: control.0,
        control_frames: control.1,
        bulk_bytes: data.0,
        bulk_frames: data.1,
    }
}

impl Harness {
    /// A current-generation relay whose guest is ready with this frame.
    pub fn current(cfg: Config, ready: &[u8]) -> Harness {
        let mut h = Harness::new(Config {
            protocol: agent_relay::core::Protocol::Current,
            ..cfg
        });
        h.ev(Event::WallClock(1_700_000_000_000_000_000));
        h.ev(Event::GuestBytes(ready));
        assert!(h.relay.is_ready(), "the guest is ready");
        h
    }
}
