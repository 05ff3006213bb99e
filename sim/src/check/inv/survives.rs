//! `inv_guest_survives` (rule `guest_survives`): every frame the relay hands
//! the guest is one the guest's own reader takes, judged as that reader
//! judges it, in the order it reads them. One it cannot read ends its loop
//! (`agentd: agent loop error: decode frame: ...`) and the VM with it, so a
//! frame the guest cannot read counts as a killed guest.
//!
//! Current generation (0.7.13 agentd, `AD/agent.rs` 918-1050, 2365-2415):
//! 1. bytes 9..13 holding the lease magic make a range-lease record, read
//!    before frames: it must be a whole, well-formed *connected* record
//!    (microsandbox-protocol 0.7.13's
//!    `transport::try_decode_relay_client_connected_from_bytes` reading
//!    exactly its 41 bytes) for a canonical range, with a nonzero
//!    incarnation, and not for a slot that still holds a different
//!    incarnation (one whose disconnect was not acknowledged);
//! 2. anything else must decode with 0.7.13's
//!    `codec::try_decode_frame_from_bytes`, consuming exactly the frame;
//! 3. a sender agentd cannot answer with `core.error` (a `v` below that
//!    type's generation, 5) must not send what agentd answers with one: flags
//!    other than its type's, an execution control message over 4 KiB, or a
//!    payload its type's handler cannot decode;
//! 4. a disconnect notice must name a canonical range, and carry an
//!    incarnation if the slot holds one; naming the slot's incarnation it
//!    ends that lease (a stale one is ignored).
//!
//! The reader keeps agentd's own table of incarnations, slot by slot, from
//! the frames it was handed. Input credit is `inv_credit`'s.
//!
//! Legacy generation (every frame of a world configured legacy, before its
//! ready too): the frame must decode with microsandbox-protocol 0.4.4's
//! `codec::try_decode_from_buf`, consuming exactly the frame; above all its
//! type must be one of the 14 that 0.4.4's `MessageType` has
//! ([`LEGACY_TYPES`], written from P4/message.rs): a type only the 0.7.13
//! table has (a ping, a tcp connect, a bulk credit...) is an unknown variant
//! to that decoder.

use std::borrow::Cow;
use std::collections::HashMap;

use agent_relay::core::Protocol;
use bytes::BytesMut;
use msp7::codec::{DecodedFrame, try_decode_frame_from_bytes};
use msp7::message::{Message, MessageType};
use msp7::transport::{try_decode_relay_client_connected_from_bytes, validate_relay_client_range};

use super::super::super::cbor;
use super::super::invariant::Invariant;
use super::super::model::{Fact, Model, frame_id};
use super::{Check, Verdict};

/// The guest's own reader: agentd's incarnation of each leased slot, and a
/// buffer reused from frame to frame.
#[derive(Debug, Default)]
pub struct GuestSurvives {
    leases: HashMap<u32, [u8; 16]>,
    buf: BytesMut,
}

impl Check for GuestSurvives {
    const INVARIANT: Invariant = Invariant::GuestSurvives;
    const WANTS: u64 = Fact::TO_GUEST;

    fn new(_m: &Model) -> Self {
        GuestSurvives::default()
    }

    /// A frame is handed to the guest: its reader must take it.
    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        let Fact::ToGuest(frame) = *f else {
            return;
        };
        // Before any ready only a current guest gets frames (init acks); a
        // world configured legacy is judged as 0.4.4 reads, ready or not.
        let current = m.cfg.protocol != Protocol::Legacy && (!m.parse_ready || m.parse_current);
        let why = if current {
            self.agentd(frame)
        } else {
            self.legacy(frame)
        };
        if let Some(why) = why {
            let who = if current {
                "agentd 0.7.13"
            } else {
                "a 0.4.4 guest"
            };
            let why = format!(
                "{who} cannot take frame id {} ({} bytes, flags {:#04x}) and ends its loop: {why}",
                frame_id(frame),
                frame.len(),
                frame.get(8).copied().unwrap_or(0)
            );
            v.fail::<Self>(why);
        }
    }
}

impl GuestSurvives {
    /// Why agentd's reader would end its loop on `frame`, if it would.
    fn agentd(&mut self, frame: &[u8]) -> Option<String> {
        if frame.get(9..13) == Some(b"MSBL") {
            self.fill(frame);
            return self.connected(frame.len());
        }
        let flags = frame.get(8).copied().unwrap_or(0);
        let whole = frame.len() >= PREFIX_LEN && frame_len(frame) + 4 == frame.len();
        let msg = if flags & FLAG_BULK == 0 && whole {
            // What `try_decode_frame_from_bytes` does with a whole frame
            // without the BULK flag (`decode_message_frame` checks its
            // length), without copying it into a buffer first.
            match decode_message_frame(frame) {
                Ok(msg) => msg,
                Err(e) => return Some(format!("decode frame: {e}")),
            }
        } else {
            self.fill(frame);
            match try_decode_frame_from_bytes(&mut self.buf) {
                Ok(Some(_)) if !self.buf.is_empty() => return Some("read past the frame".into()),
                Ok(Some(DecodedFrame::Control(msg))) => Msg::from(msg),
                Ok(Some(_)) => return None, // a raw bulk record the decoder took
                Ok(None) => return Some("a partial frame".into()),
                Err(e) => return Some(format!("decode frame: {e}")),
            }
        };
        let mute = !MessageType::CoreError.is_available_at(msg.v);
        if mute {
            if msg.flags != msg.t.flags() {
                return Some(format!(
                    "flags {:#04x} from a generation {} sender",
                    msg.flags, msg.v
                ));
            }
            if msg.t.is_exec_control() && frame.len() > msp7::exec::MAX_EXEC_CONTROL_BYTES {
                return Some("an execution control message over 4 KiB".into());
            }
            if !payload_decodes(&msg) {
                return Some(format!(
                    "a {} payload it cannot decode from a generation {} sender",
                    msg.t.as_str(),
                    msg.v
                ));
            }
        }
        if msg.t == MessageType::RelayClientDisconnected && msg.flags == msg.t.flags() {
            return self.notice(&msg);
        }
        None
    }

    fn fill(&mut self, frame: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(frame);
    }

    /// A record with the lease magic, `len` bytes: a connected record.
    fn connected(&mut self, len: usize) -> Option<String> {
        let r = match try_decode_relay_client_connected_from_bytes(&mut self.buf) {
            Ok(Some(r)) if self.buf.is_empty() => r,
            Ok(Some(_)) => return Some(format!("a lease record of {len} bytes, not 41")),
            Ok(None) => return Some("a partial lease record".into()),
            Err(e) => return Some(format!("decode relay client lease: {e}")),
        };
        let Some(slot) = validate_relay_client_range(r.id_start, r.id_end_exclusive) else {
            return Some(format!(
                "a connected record for the range [{}, {}), not canonical",
                r.id_start, r.id_end_exclusive
            ));
        };
        if r.incarnation == [0; 16] {
            return Some("a connected record with a zero incarnation".into());
        }
        if self.leases.get(&slot).is_some_and(|&i| i != r.incarnation) {
            return Some(format!(
                "a connected record for slot {slot} while it still holds another incarnation (replaced before its disconnect was acknowledged)"
            ));
        }
        self.leases.insert(slot, r.incarnation);
        None
    }

    /// A disconnect notice whose flags agentd takes.
    fn notice(&mut self, msg: &Msg<'_>) -> Option<String> {
        // A payload it cannot decode gets a `core.error` (a mute sender's
        // was judged above).
        let n = cbor::payload::<msp7::core::RelayClientDisconnected>(&msg.p)?;
        let Some(slot) = validate_relay_client_range(n.id_start, n.id_end_exclusive) else {
            return Some(format!(
                "a disconnect notice for the range [{}, {}), not canonical",
                n.id_start, n.id_end_exclusive
            ));
        };
        match n.incarnation {
            Some(inc) if self.leases.get(&slot) == Some(&inc) => {
                self.leases.remove(&slot);
            }
            Some(_) => {} // stale: ignored, no acknowledgement
            None if self.leases.contains_key(&slot) => {
                return Some(format!(
                    "a disconnect notice without the incarnation of leased slot {slot}"
                ));
            }
            None => {}
        }
        None
    }

    /// Why a 0.4.4 guest's decoder would refuse `frame`, if it would: what
    /// `microsandbox_protocol::codec::try_decode_from_buf` does with a buffer
    /// holding just `frame`, read in place.
    fn legacy(&mut self, frame: &[u8]) -> Option<String> {
        use microsandbox_protocol::ProtocolError;
        use microsandbox_protocol::codec::MAX_FRAME_SIZE;
        use microsandbox_protocol::message::{FRAME_HEADER_SIZE, Message, MessageType};
        let Some(head) = frame.first_chunk::<4>() else {
            return Some("a partial frame".into());
        };
        let len = u32::from_be_bytes(*head);
        let error = if len > MAX_FRAME_SIZE {
            ProtocolError::FrameTooLarge {
                size: len,
                max: MAX_FRAME_SIZE,
            }
        } else if frame.len() < 4 + len as usize {
            return Some("a partial frame".into());
        } else if (len as usize) < FRAME_HEADER_SIZE {
            ProtocolError::FrameTooShort {
                size: len,
                min: FRAME_HEADER_SIZE as u32,
            }
        } else {
            let total = 4 + len as usize;
            let mut body = &frame[4 + FRAME_HEADER_SIZE..total];
            // The encoders' layout names its type: one 0.4.4 does not have
            // is an unknown variant to its decoder, refused whatever serde
            // says (in its words when it refuses too).
            let parts = cbor::parts(body);
            if let Some(p) = &parts
                && !LEGACY_TYPES.contains(&p.t)
            {
                let t = p.t;
                return Some(match cbor::from_reader::<Message>(&mut body) {
                    Err(e) => format!("decode: {}", ProtocolError::from(e)),
                    Ok(_) => format!("decode: 0.4.4 has no message type {t:?}"),
                });
            }
            // The encoders' layout with a type 0.4.4 knows is a message;
            // serde reads anything else.
            let read = if parts.is_some_and(|p| MessageType::from_wire_str(p.t).is_some()) {
                Ok(())
            } else {
                cbor::from_reader::<Message>(&mut body).map(drop)
            };
            match read {
                Ok(()) if total == frame.len() => return None,
                Ok(()) => return Some("read past the frame".into()),
                Err(e) => ProtocolError::from(e),
            }
        };
        Some(format!("decode: {error}"))
    }
}

/// The 14 message types of protocol 0.4.4 (P4/message.rs, `MessageType`'s
/// wire names), the only ones a 0.4.4 guest's decoder reads.
const LEGACY_TYPES: [&str; 14] = [
    "core.ready",
    "core.shutdown",
    "core.exec.request",
    "core.exec.started",
    "core.exec.stdin",
    "core.exec.stdout",
    "core.exec.stderr",
    "core.exec.exited",
    "core.exec.failed",
    "core.exec.resize",
    "core.exec.signal",
    "core.fs.request",
    "core.fs.response",
    "core.fs.data",
];

/// A message as agentd's reader takes it (`msp7::message::Message` but for
/// the payload, borrowed from the frame when it could be).
struct Msg<'a> {
    v: u8,
    t: MessageType,
    flags: u8,
    p: Cow<'a, [u8]>,
}

impl From<Message> for Msg<'_> {
    fn from(m: Message) -> Self {
        Msg {
            v: m.v,
            t: m.t,
            flags: m.flags,
            p: Cow::Owned(m.p),
        }
    }
}

/// What `msp7::codec::decode_message_frame` does with a whole frame, its
/// body read in place.
fn decode_message_frame(frame: &[u8]) -> msp7::ProtocolResult<Msg<'_>> {
    use msp7::ProtocolError;
    use msp7::codec::MAX_FRAME_SIZE;
    use msp7::message::FRAME_HEADER_SIZE;
    let Some(head) = frame.first_chunk::<4>() else {
        return Err(ProtocolError::UnexpectedEof);
    };
    let len = u32::from_be_bytes(*head);
    if len > MAX_FRAME_SIZE {
        return Err(ProtocolError::FrameTooLarge {
            size: len,
            max: MAX_FRAME_SIZE,
        });
    }
    let total = 4 + len as usize;
    if frame.len() < total {
        return Err(ProtocolError::UnexpectedEof);
    }
    if (len as usize) < FRAME_HEADER_SIZE {
        return Err(ProtocolError::FrameTooShort {
            size: len,
            min: FRAME_HEADER_SIZE as u32,
        });
    }
    let mut body = &frame[4 + FRAME_HEADER_SIZE..total];
    let flags = frame[8];
    // The encoders' layout with a type 0.7.13 knows is read by hand (what
    // follows the map is left unread, as `from_reader` leaves it); serde
    // reads anything else.
    if let Some(parts) = cbor::parts(body)
        && let Some(t) = MessageType::from_wire_str(parts.t)
    {
        let p = Cow::Borrowed(parts.p);
        return Ok(Msg {
            v: parts.v,
            t,
            flags,
            p,
        });
    }
    let mut msg: Message = cbor::from_reader(&mut body)?;
    msg.flags = flags;
    Ok(Msg::from(msg))
}

/// The length field of a frame (at least 4 bytes).
fn frame_len(frame: &[u8]) -> usize {
    u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize
}

/// Bytes before a frame's body: length, id, flags.
const PREFIX_LEN: usize = 9;
const FLAG_BULK: u8 = 0x08;

/// Whether the handler agentd runs for `msg`'s type can decode its payload
/// (the types whose handler decodes one, `AD/agent.rs` 2536-3250; the others
/// are ignored or take none).
fn payload_decodes(msg: &Msg<'_>) -> bool {
    use MessageType as T;
    use msp7::{bulk, core, exec, fs, tcp};
    /// `msg.payload::<P>().is_ok()`, read in place.
    fn ok<P: serde::de::DeserializeOwned>(msg: &Msg<'_>) -> bool {
        cbor::payload::<P>(&msg.p).is_some()
    }
    match msg.t {
        T::RootDiskPrepare | T::RootDiskGrow => ok::<core::RootDiskGrow>(msg),
        T::Ping => ok::<core::Ping>(msg),
        T::Touch => ok::<core::Touch>(msg),
        T::WorkloadFreeze => ok::<core::WorkloadFreeze>(msg),
        T::WorkloadThaw => ok::<core::WorkloadThaw>(msg),
        T::ExecRequest => ok::<exec::ExecRequest>(msg),
        T::ExecStdin => ok::<exec::ExecStdin>(msg),
        T::ExecOutputAck => ok::<exec::ExecOutputAck>(msg),
        T::ExecResize => ok::<exec::ExecResize>(msg),
        T::ExecSignal => ok::<exec::ExecSignal>(msg),
        T::FsRequest => ok::<fs::FsRequest>(msg),
        T::FsData => ok::<fs::FsData>(msg),
        T::BulkCredit => ok::<bulk::BulkCredit>(msg),
        T::BulkFinish => ok::<bulk::BulkFinish>(msg),
        T::BulkCancel => ok::<bulk::BulkCancel>(msg),
        T::TcpConnect => ok::<tcp::TcpConnect>(msg),
        T::TcpData => ok::<tcp::TcpData>(msg),
        T::TcpEof => ok::<tcp::TcpEof>(msg),
        T::TcpClose => ok::<tcp::TcpClose>(msg),
        T::RelayClientDisconnected => ok::<core::RelayClientDisconnected>(msg),
        T::ClockSync => ok::<core::ClockSync>(msg),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::GuestSurvives;
    use agent_relay::core::IdRange;
    use agent_relay::testkit::frames;
    use agent_relay::wire::MsgType;
    use agent_relay::wire::lease::LeaseEvent;

    const STEP: u32 = u32::MAX / 128;

    #[test]
    fn survives_judges_as_agentds_reader() {
        let mut r = GuestSurvives::default();
        let range = IdRange {
            start: STEP + 1,
            end: 2 * STEP,
        };
        // Frames agentd reads, and ones it dies on.
        assert_eq!(
            r.agentd(&frames::raw(10, MsgType::Ping, 5, 0, &[0xa0])),
            None
        );
        assert!(
            r.agentd(&frames::named(10, "core.bogus.type", 5, 0, &[0xa0]))
                .is_some()
        );
        assert!(r.agentd(&frames::body_frame(0, 0x04, &[])).is_some());
        // A generation-1 sender: flags and payload must be right.
        assert_eq!(
            r.agentd(&frames::raw(1, MsgType::Ping, 5, 0, &[0xa0])),
            None
        );
        assert!(
            r.agentd(&frames::raw(1, MsgType::Ping, 5, 0, &[0x01]))
                .is_some()
        );
        assert!(
            r.agentd(&frames::raw(1, MsgType::Ping, 5, 1, &[0xa0]))
                .is_some()
        );
        assert_eq!(
            r.agentd(&frames::raw(10, MsgType::Ping, 5, 0, &[0x01])),
            None
        );
        // Leases: a record, a second one for the slot, the notice.
        let rec = |inc| frames::lease_record(LeaseEvent::Connected, range, inc);
        assert_eq!(r.agentd(&rec([7; 16])), None);
        assert_eq!(r.agentd(&rec([7; 16])), None);
        assert!(r.agentd(&rec([8; 16])).is_some());
        assert!(r.agentd(&frames::client_disconnected(10, range)).is_some());
        let stale = frames::client_disconnected_leased(10, range, Some([9; 16]));
        assert_eq!(r.agentd(&stale), None);
        let own = frames::client_disconnected_leased(10, range, Some([7; 16]));
        assert_eq!(r.agentd(&own), None);
        assert_eq!(r.agentd(&rec([8; 16])), None);
        assert!(r.agentd(&rec([0; 16])).is_some());
        let odd = IdRange {
            start: STEP,
            end: 2 * STEP,
        };
        assert!(
            r.agentd(&frames::lease_record(LeaseEvent::Connected, odd, [1; 16]))
                .is_some()
        );
        let ack = frames::lease_record(LeaseEvent::DisconnectedAck, range, [8; 16]);
        assert!(r.agentd(&ack).is_some());
        // 0.4.4's reader: a current-only type is not a frame to it.
        assert_eq!(
            r.legacy(&frames::raw(1, MsgType::ExecSignal, 5, 0, &[0xa0])),
            None
        );
        assert!(
            r.legacy(&frames::raw(10, MsgType::Ping, 5, 0, &[0xa0]))
                .is_some()
        );
    }

    /// The 0.4.4 inventory is what 0.4.4's decoder reads: of every type of
    /// the 0.7.13 table, exactly the listed ones; a frame of any other is
    /// refused, before the decoder is asked.
    #[test]
    fn survives_legacy_inventory_is_0_4_4s() {
        use msp7::message::MessageType;
        use strum::IntoEnumIterator;
        let mut r = GuestSurvives::default();
        let mut known = 0;
        for t in MessageType::iter() {
            let name = t.as_str();
            let in_0_4_4 = microsandbox_protocol::message::MessageType::from_wire_str(name);
            assert_eq!(
                in_0_4_4.is_some(),
                super::LEGACY_TYPES.contains(&name),
                "{name}"
            );
            known += usize::from(in_0_4_4.is_some());
            let f = frames::named(1, name, 5, t.flags(), &[0xa0]);
            assert_eq!(r.legacy(&f).is_none(), in_0_4_4.is_some(), "{name}");
        }
        assert_eq!(known, super::LEGACY_TYPES.len());
    }

    /// The readers run in place say what the libraries' own say.
    #[test]
    fn survives_reads_in_place_as_the_codecs_do() {
        let mut frames_: Vec<Vec<u8>> = vec![
            frames::raw(
                1,
                MsgType::ExecSignal,
                5,
                0,
                &[0xa1, 0x66, b's', b'i', b'g', b'n', b'a', b'l', 0x09],
            )
            .to_vec(),
            frames::raw(10, MsgType::Ping, 5, 0, &[0xa0]).to_vec(),
            frames::named(10, "core.bogus.type", 5, 0, &[0xa0]).to_vec(),
            frames::body_frame(0, 0x04, &[]).to_vec(),
            frames::stdin(1, 7, &[b'x'; 9000]).to_vec(),
            vec![0, 0, 0, 3, 0, 0, 0],
            vec![0, 0x50, 0, 0, 0, 0, 0, 0, 0],
            vec![0, 0, 0],
        ];
        let mut trailing = frames::raw(1, MsgType::ExecResize, 5, 0, &[0xa0]).to_vec();
        trailing[3] += 1;
        trailing.push(0);
        frames_.push(trailing);
        let mut r = GuestSurvives::default();
        for f in &frames_ {
            let mut buf = f.clone();
            let want = match microsandbox_protocol::codec::try_decode_from_buf(&mut buf) {
                Ok(Some(_)) if buf.is_empty() => None,
                Ok(Some(_)) => Some("read past the frame".to_owned()),
                Ok(None) => Some("a partial frame".to_owned()),
                Err(e) => Some(format!("decode: {e}")),
            };
            assert_eq!(r.legacy(f), want, "{f:02x?}");
            let theirs = msp7::codec::decode_message_frame(f).map_err(|e| e.to_string());
            let ours = super::decode_message_frame(f).map_err(|e| e.to_string());
            assert_eq!(
                ours.map(|m| (m.v, m.t, m.flags, m.p.into_owned())),
                theirs.map(|m| (m.v, m.t, m.flags, m.p)),
                "{f:02x?}"
            );
        }
    }
}
