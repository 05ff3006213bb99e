//! `inv_routing`: every frame a client receives was emitted by the guest
//! with an id in that client's range, for a session that client opened, in
//! guest order, and no routed frame waits while a later one is delivered to
//! someone else. Also the guest stream's own rules: the first `core.ready`
//! yields one `Ready`, every corrupt stretch is reported, and after
//! corruption the decoder never waits on a candidate that cannot start a
//! frame (which would withhold every valid frame behind it).

use agent_relay::core::{Action, ClientId};
use agent_relay::wire::PREFIX_LEN;
use bytes::Bytes;

use super::super::invariant::Invariant;
use super::super::model::{Fact, MAX_FRAME_LEN, Model, State, frame_id};
use super::{Check, Verdict};

/// The envelope opening the 0.4.4 encoders write: `map(3) "v" 1 "t"` (the
/// 0.7.13 ones write another one-byte `v`).
const ENVELOPE_OPENING: [u8; 6] = [0xa3, 0x61, b'v', 0x01, 0x61, b't'];

const MIN_PLAUSIBLE_LEN: u32 = 5 + ENVELOPE_OPENING.len() as u32;

/// What the event owes: its first ready's `Ready`, and its corrupt
/// stretches reported.
#[derive(Debug, Default)]
pub struct Routing {
    ready_due: bool,
    corrupt_due: u64,
    corrupt_seen: u64,
}

impl Check for Routing {
    const INVARIANT: Invariant = Invariant::Routing;
    const WANTS: u64 = Fact::EVENT
        | Fact::CORRUPT
        | Fact::ACTION
        | Fact::FIRST_READY
        | Fact::READY
        | Fact::GUEST_FRAMED
        | Fact::TO_CLIENT;

    fn new(_m: &Model) -> Self {
        Routing::default()
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::Event(_) => *self = Routing::default(),
            Fact::Corrupt => self.corrupt_due += 1,
            Fact::Action(Action::GuestCorrupt { .. }) => self.corrupt_seen += 1,
            Fact::FirstReady => self.ready_due = true,
            Fact::Ready => {
                if !self.ready_due {
                    v.fail::<Self>("Ready emitted without a first core.ready".into());
                }
                self.ready_due = false;
            }
            Fact::GuestFramed => resync_candidate(m, v),
            Fact::ToClient { c, frame, next } => to_client(m, c, frame, next, v),
            _ => {}
        }
    }

    fn settled(&mut self, _m: &Model, v: &mut Verdict) {
        if self.ready_due {
            return v.fail::<Self>("first core.ready without a Ready action".into());
        }
        if self.corrupt_due != self.corrupt_seen {
            let why = format!(
                "the guest stream held {} corrupt stretches in this event, the core reported {}",
                self.corrupt_due, self.corrupt_seen
            );
            v.fail::<Self>(why);
        }
    }
}

/// A frame to `c`: the next guest frame routed to it, with none routed
/// earlier to another client still waiting.
fn to_client(m: &Model, c: ClientId, frame: &Bytes, next: bool, v: &mut Verdict) {
    // Frames are routed only to clients the event touched.
    if let Some(other) = m
        .touched
        .iter()
        .copied()
        .filter(|&o| o != c && m.clients.get(&o).is_some_and(|k| !k.to_client.is_empty()))
        .min()
    {
        let why = format!(
            "{c} got frame id {} while an earlier guest frame for {other} was not delivered",
            frame_id(frame)
        );
        return v.fail::<Routing>(why);
    }
    let Some(k) = m.clients.get(&c) else {
        return v.fail::<Routing>(format!("frame to unknown {c}"));
    };
    if k.state != State::Live {
        return v.fail::<Routing>(format!("frame to {c} which is {:?}", k.state));
    }
    match k.to_client.front() {
        _ if next => {}
        Some(want) => {
            let why = format!(
                "{c} got frame id {} ({} bytes), but the next guest frame for its sessions is id {} ({} bytes)",
                frame_id(frame),
                frame.len(),
                frame_id(want),
                want.len()
            );
            v.fail::<Routing>(why);
        }
        None => {
            let why = format!(
                "{c} got frame id {} that is not the guest's next frame for a session it opened",
                frame_id(frame)
            );
            v.fail::<Routing>(why);
        }
    }
}

/// After corruption the decoder resynchronises on the next offset whose
/// header and envelope opening validate; waiting on a candidate that
/// cannot start a frame withholds every frame behind it.
fn resync_candidate(m: &Model, v: &mut Verdict) {
    let pending = m.guest.pending();
    if m.resyncing && pending.len() >= PREFIX_LEN + ENVELOPE_OPENING.len() && !plausible(pending) {
        let why = format!(
            "after corrupt guest input the decoder waits on a candidate that cannot start a frame (header {:02x?}); {} guest bytes held, valid frames behind it withheld",
            &pending[..PREFIX_LEN + ENVELOPE_OPENING.len()],
            pending.len()
        );
        v.fail::<Routing>(why);
    }
}

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
        return (5 + 13..=MAX_FRAME_LEN).contains(&len) && header;
    }
    (MIN_PLAUSIBLE_LEN..=MAX_FRAME_LEN).contains(&len)
        && matches!(b[8], 0 | 1 | 2 | 4)
        && opening(|v| v <= 0x17)
}
