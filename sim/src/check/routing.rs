//! `inv_routing`: every frame a client receives was emitted by the guest
//! with an id in that client's range, for a session that client opened, in
//! guest order, and no routed frame waits while a later one is delivered to
//! someone else. Also the guest stream's own rules: the first `core.ready`
//! yields one `Ready`, every corrupt stretch is reported, and after
//! corruption the decoder never waits on a candidate that cannot start a
//! frame (which would withhold every valid frame behind it).

use agent_relay::core::ClientId;
use agent_relay::wire::{FLAG_TERMINAL, PREFIX_LEN};
use bytes::Bytes;

use super::model::{State, frame_id};
use super::spec::MAX_FRAME_LEN as SPEC_MAX_FRAME_LEN;
use super::{Checker, Invariant};

/// The envelope opening the 0.4.4 encoders write: `map(3) "v" 1 "t"` (the
/// 0.7.13 ones write another one-byte `v`).
const ENVELOPE_OPENING: [u8; 6] = [0xa3, 0x61, b'v', 0x01, 0x61, b't'];

const MIN_PLAUSIBLE_LEN: u32 = 5 + ENVELOPE_OPENING.len() as u32;

/// Could a frame start here (enough bytes to judge assumed)? An envelope
/// opening with any one-byte generation (the relay never checks `v`, so a
/// frame of either generation is a frame), or the BULK flag with a
/// plausible record header (kind, flow, reserved zeros). The decoder knows
/// no generation: before ready and in the legacy generation it may wait on
/// a bulk record it will then skip as corrupt (bounded by that record's
/// length), which is accepted here.
fn plausible(b: &[u8]) -> bool {
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let body = &b[PREFIX_LEN..PREFIX_LEN + ENVELOPE_OPENING.len()];
    let opening = |v: fn(u8) -> bool| {
        body[..3] == ENVELOPE_OPENING[..3] && v(body[3]) && body[4..] == ENVELOPE_OPENING[4..]
    };
    if b[8] == 0x08 {
        let header = matches!(body[0], 1 | 2) && matches!(body[1], 1 | 2) && body[2..4] == [0, 0];
        return (5 + 13..=SPEC_MAX_FRAME_LEN).contains(&len) && header;
    }
    (MIN_PLAUSIBLE_LEN..=SPEC_MAX_FRAME_LEN).contains(&len)
        && matches!(b[8], 0 | 1 | 2 | 4)
        && opening(|v| v <= 0x17)
}

impl Checker {
    /// After corruption the decoder resynchronises on the next offset whose
    /// header and envelope opening validate; waiting on a candidate that
    /// cannot start a frame withholds every frame behind it.
    pub(super) fn check_resync_candidate(&mut self) {
        let pending = self.guest.pending();
        if self.resyncing
            && pending.len() >= PREFIX_LEN + ENVELOPE_OPENING.len()
            && !plausible(pending)
        {
            let why = format!(
                "after corrupt guest input the decoder waits on a candidate that cannot start a frame (header {:02x?}); {} guest bytes held, valid frames behind it withheld",
                &pending[..PREFIX_LEN + ENVELOPE_OPENING.len()],
                pending.len()
            );
            self.fail(Invariant::Routing, why);
        }
    }

    pub(super) fn on_ready(&mut self) {
        self.advance(|k| k.ready.is_some());
        if !self.ready_due {
            self.fail(
                Invariant::Routing,
                "Ready emitted without a first core.ready".into(),
            );
        }
        self.ready_due = false;
    }

    pub(super) fn on_to_client(&mut self, c: ClientId, frame: &Bytes) {
        self.advance(Checker::routed_waiting);
        if self.workload_to_client(c, frame) || self.late_to_client(c, frame) {
            return;
        }
        if let Some((&other, _)) = self
            .clients
            .iter()
            .find(|(o, m)| **o != c && !m.to_client.is_empty())
        {
            let why = format!(
                "{c} got frame id {} while an earlier guest frame for {other} was not delivered",
                frame_id(frame)
            );
            return self.fail(Invariant::Routing, why);
        }
        let Some(m) = self.clients.get_mut(&c) else {
            return self.fail(Invariant::Routing, format!("frame to unknown {c}"));
        };
        if m.state != State::Live {
            let why = format!("frame to {c} which is {:?}", m.state);
            return self.fail(Invariant::Routing, why);
        }
        match m.to_client.pop_front() {
            Some(want) if want == *frame => {}
            Some(want) => {
                let why = format!(
                    "{c} got frame id {} ({} bytes), but the next guest frame for its sessions is id {} ({} bytes)",
                    frame_id(frame),
                    frame.len(),
                    frame_id(&want),
                    want.len()
                );
                return self.fail(Invariant::Routing, why);
            }
            None => {
                let why = format!(
                    "{c} got frame id {} that is not the guest's next frame for a session it opened",
                    frame_id(frame)
                );
                return self.fail(Invariant::Routing, why);
            }
        }
        if frame.len() > 8 && frame[8] & FLAG_TERMINAL != 0 {
            m.awaiting.remove(&frame_id(frame));
        }
        let answered = m.to_client.is_empty();
        let own = !self.budget.guest_event;
        self.add_queued(c, frame.len(), own);
        if answered {
            self.resume_client(Some(c));
        }
    }

    /// The event's `core.ready` and corrupt stretches were all reported.
    pub(super) fn after_event_routing(&mut self) {
        if self.ready_due {
            return self.fail(
                Invariant::Routing,
                "first core.ready without a Ready action".into(),
            );
        }
        if self.corrupt_due != self.corrupt_seen {
            let why = format!(
                "the guest stream held {} corrupt stretches in this event, the core reported {}",
                self.corrupt_due, self.corrupt_seen
            );
            self.fail(Invariant::Routing, why);
        }
    }
}
