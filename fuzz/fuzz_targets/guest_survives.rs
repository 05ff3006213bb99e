//! Differential, rule `guest_survives`: whatever bytes clients send, every
//! frame the core hands the guest is one the guest's own reader takes. In
//! the current generation that reader is 0.7.13 agentd's: a range-lease
//! record when the lease magic sits at bytes 9..13 (then it must be a whole,
//! well-formed connected record), else `codec::try_decode_frame_from_bytes`
//! of microsandbox-protocol 0.7.13 consuming exactly the frame; any failure
//! there ends agentd's loop and the VM with it. A sender below generation 5
//! counts as fatal too: agentd cannot answer it with `core.error`, so the
//! first payload or flags it cannot use end its loop (the oracle is stricter
//! than agentd here, as the relay is: it forwards none). In the legacy
//! generation the reader is 0.4.4's decoder.
//!
//! Clients send a mix of structured frames (envelopes of any type name the
//! table knows or an arbitrary one, any `v`, flags and payload bytes; ids
//! inside or outside their range; bulk records) and raw bytes, in any
//! chunking, then leave, so the relay's own kills and notices are judged
//! too.

#![no_main]

use agent_relay::core::{Action, ClientId, Config, Event, Relay};
use agent_relay::testkit::frames;
use agent_relay::wire::payload::ExecLimits;
use agent_relay::wire::{LEGACY_VERSION, MsgType};
use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// Ids per slot in the current generation.
const STEP: u32 = u32::MAX / 128;

#[derive(Arbitrary, Debug)]
enum Piece {
    /// An envelope: a type of the table (by index) or any name, any `v`,
    /// flags (the type's when `own_flags`), payload bytes, at an id offset
    /// into the sender's range (or anywhere).
    Envelope {
        t: u8,
        name: Option<String>,
        v: u8,
        own_flags: bool,
        flags: u8,
        payload: Vec<u8>,
        off: u16,
        anywhere: Option<u32>,
    },
    /// A raw bulk record on an id offset into the range.
    Bulk {
        kind: u8,
        flow: u8,
        offset: u64,
        payload: Vec<u8>,
        off: u16,
    },
    /// Any bytes.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    current: bool,
    leases: bool,
    pieces: Vec<(bool, Piece)>,
    chunk: u8,
}

fn start(current: bool, client: bool) -> u32 {
    let slot = u32::from(client);
    if current {
        slot * STEP + 1
    } else {
        slot * (u32::MAX / 16)
    }
}

fn bytes_of(p: &Piece, current: bool, client: bool) -> Vec<u8> {
    let base = start(current, client);
    match p {
        Piece::Envelope {
            t,
            name,
            v,
            own_flags,
            flags,
            payload,
            off,
            anywhere,
        } => {
            let id = anywhere.unwrap_or(base + u32::from(*off));
            let t = MsgType::ALL[usize::from(*t) % MsgType::ALL.len()];
            let flags = if *own_flags { t.flags() } else { *flags };
            let name = name.as_deref().unwrap_or(t.as_str());
            frames::named(*v, name, id, flags, payload).to_vec()
        }
        Piece::Bulk {
            kind,
            flow,
            offset,
            payload,
            off,
        } => frames::bulk(base + u32::from(*off), *kind, *flow, *offset, payload).to_vec(),
        Piece::Raw(b) => b.clone(),
    }
}

/// Why agentd 0.7.13's reader would end its loop on `frame`, if it would.
fn agentd_dies(frame: &[u8]) -> Option<String> {
    let mut buf = BytesMut::from(frame);
    if frame.get(9..13) == Some(b"MSBL") {
        return match msp7::transport::try_decode_relay_client_connected_from_bytes(&mut buf) {
            Ok(Some(r)) if buf.is_empty() && r.incarnation != [0; 16] => {
                msp7::transport::validate_relay_client_range(r.id_start, r.id_end_exclusive)
                    .is_none()
                    .then(|| "a lease record with a range that is not canonical".into())
            }
            other => Some(format!("lease record: {other:?}")),
        };
    }
    match msp7::codec::try_decode_frame_from_bytes(&mut buf) {
        Ok(Some(_)) if !buf.is_empty() => Some("the frame was not read whole".into()),
        Ok(Some(msp7::codec::DecodedFrame::Control(msg))) => (msg.v < 5).then(|| {
            format!(
                "a generation-{} {:?}: agentd cannot answer it with core.error, so any payload \
                 or flags it cannot use end its loop",
                msg.v, msg.t
            )
        }),
        Ok(Some(_)) => None,
        Ok(None) => Some("a partial frame".into()),
        Err(e) => Some(format!("decode frame: {e}")),
    }
}

/// Why 0.4.4's decoder would refuse `frame`, if it would.
fn legacy_refuses(frame: &[u8]) -> Option<String> {
    let mut buf = frame.to_vec();
    match microsandbox_protocol::codec::try_decode_from_buf(&mut buf) {
        Ok(Some(_)) if buf.is_empty() => None,
        other => Some(format!("{other:?}")),
    }
}

fuzz_target!(|input: Input| {
    let cfg = if input.current {
        Config::current()
    } else {
        Config::legacy()
    };
    let mut relay = Relay::new(cfg).checked();
    let ready = if input.current {
        let lease = input.leases.then_some(1);
        frames::ready_offering(10, 1, Some(2), Some(ExecLimits::default()), lease)
    } else {
        frames::ready(LEGACY_VERSION, 1)
    };
    let mut to_guest = Vec::new();
    let mut pump = |relay: &mut Relay, now: u64, ev: Event<'_>| {
        relay.handle(now, ev);
        while let Some(a) = relay.poll_action() {
            if let Action::ToGuest { frame } = a {
                relay.handle(now, Event::GuestWritten(frame.len()));
                to_guest.push(frame);
            }
        }
    };
    pump(&mut relay, 0, Event::GuestBytes(&ready));
    for c in [0, 1] {
        pump(&mut relay, 0, Event::ClientConnected(ClientId(c)));
    }
    let chunk = usize::from(input.chunk).max(1);
    for (client, piece) in &input.pieces {
        let bytes = bytes_of(piece, input.current, *client);
        for part in bytes.chunks(chunk) {
            pump(
                &mut relay,
                1,
                Event::ClientBytes(ClientId(u64::from(*client)), part),
            );
        }
    }
    for c in [0, 1] {
        pump(&mut relay, 2, Event::ClientDisconnected(ClientId(c)));
    }
    for frame in &to_guest {
        let why = if input.current {
            agentd_dies(frame)
        } else {
            legacy_refuses(frame)
        };
        if let Some(why) = why {
            panic!("the guest cannot read a frame the relay handed it ({why}): {frame:02x?}");
        }
    }
});
