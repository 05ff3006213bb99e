//! Range-lease records (current generation, `core.ready` offering
//! `relay_lease {max_format: 1}`): 41 raw bytes that look like a frame on id
//! 0 with flags 0 but carry no CBOR. The relay writes one with event
//! *connected* before a client's prologue; the guest answers a disconnect
//! notice that named the slot's current incarnation with one of event
//! *disconnected ack* once that owner's state and output are gone.
//!
//! ```text
//! [0 0 0 37][0 0 0 0][0]['M' 'S' 'B' 'L'][format 1][event][0 0][id_start u32 BE][id_end u32 BE][incarnation: 16 bytes]
//! ```
//!
//! A reader recognises a record by the magic at bytes 9..13, before it tries
//! to read a frame there.

use super::{PREFIX_LEN, be_u32};

/// Bytes of a lease record, length prefix included.
pub const LEASE_RECORD_LEN: usize = 41;
/// The magic right after the frame-like prefix.
pub const LEASE_MAGIC: [u8; 4] = *b"MSBL";
/// The one record format the relay speaks.
pub const LEASE_FORMAT: u8 = 1;
/// Bytes of an incarnation.
pub const INCARNATION_LEN: usize = 16;

/// Who owns a range for one ownership period: random, never all zero.
pub type Incarnation = [u8; INCARNATION_LEN];

/// What a lease record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    /// Host to guest: a client took the range.
    Connected,
    /// Guest to host: the range's departed owner is gone.
    DisconnectedAck,
}

impl LeaseEvent {
    fn byte(self) -> u8 {
        match self {
            LeaseEvent::Connected => 1,
            LeaseEvent::DisconnectedAck => 2,
        }
    }
}

/// One lease record, read or to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    /// What it says.
    pub event: LeaseEvent,
    /// First id of the range.
    pub id_start: u32,
    /// One past the range's last id.
    pub id_end: u32,
    /// The ownership period.
    pub incarnation: Incarnation,
}

/// Why bytes that carry the lease magic are not a record the relay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseError {
    /// The length field is not 37, or the id or flags are not zero.
    Framing,
    /// A format other than 1.
    Format(u8),
    /// An event other than 1 or 2.
    Event(u8),
    /// The two reserved bytes are not zero.
    Reserved,
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            LeaseError::Framing => write!(
                f,
                "lease record is not {LEASE_RECORD_LEN} bytes on id 0 with flags 0"
            ),
            LeaseError::Format(x) => write!(f, "lease record format {x} (this relay reads 1)"),
            LeaseError::Event(x) => write!(f, "lease record event {x} is neither 1 nor 2"),
            LeaseError::Reserved => f.write_str("lease record's reserved bytes are not zero"),
        }
    }
}

impl std::error::Error for LeaseError {}

/// Whether `b` (a stream position) carries the lease magic where a frame's
/// body would start. Fewer bytes than that say no.
pub fn has_lease_magic(b: &[u8]) -> bool {
    b.get(PREFIX_LEN..PREFIX_LEN + LEASE_MAGIC.len()) == Some(&LEASE_MAGIC[..])
}

impl LeaseRecord {
    /// The record's 41 bytes.
    pub fn encode(&self) -> [u8; LEASE_RECORD_LEN] {
        let mut b = [0u8; LEASE_RECORD_LEN];
        b[..4].copy_from_slice(&((LEASE_RECORD_LEN - 4) as u32).to_be_bytes());
        b[9..13].copy_from_slice(&LEASE_MAGIC);
        b[13] = LEASE_FORMAT;
        b[14] = self.event.byte();
        b[17..21].copy_from_slice(&self.id_start.to_be_bytes());
        b[21..25].copy_from_slice(&self.id_end.to_be_bytes());
        b[25..].copy_from_slice(&self.incarnation);
        b
    }

    /// Reads a whole record (`b` is exactly its bytes, magic checked).
    pub fn decode(b: &[u8]) -> Result<LeaseRecord, LeaseError> {
        if b.len() != LEASE_RECORD_LEN
            || be_u32(b, 0) != Some((LEASE_RECORD_LEN - 4) as u32)
            || b[4..9] != [0; 5]
        {
            return Err(LeaseError::Framing);
        }
        if b[13] != LEASE_FORMAT {
            return Err(LeaseError::Format(b[13]));
        }
        let event = match b[14] {
            1 => LeaseEvent::Connected,
            2 => LeaseEvent::DisconnectedAck,
            x => return Err(LeaseError::Event(x)),
        };
        if b[15..17] != [0, 0] {
            return Err(LeaseError::Reserved);
        }
        let mut incarnation = [0u8; INCARNATION_LEN];
        incarnation.copy_from_slice(&b[25..]);
        Ok(LeaseRecord {
            event,
            id_start: be_u32(b, 17).unwrap_or_default(),
            id_end: be_u32(b, 21).unwrap_or_default(),
            incarnation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_lease_record_round_trips_and_names_each_fault() {
        let r = LeaseRecord {
            event: LeaseEvent::DisconnectedAck,
            id_start: 33_554_432,
            id_end: 67_108_862,
            incarnation: [7; 16],
        };
        let b = r.encode();
        assert_eq!(&b[..13], b"\0\0\0\x25\0\0\0\0\0MSBL");
        assert!(has_lease_magic(&b));
        assert!(!has_lease_magic(&b[..12]));
        assert_eq!(LeaseRecord::decode(&b), Ok(r));
        let bad = |at: usize, x: u8| {
            let mut c = b;
            c[at] = x;
            LeaseRecord::decode(&c)
        };
        assert_eq!(bad(3, 0x26), Err(LeaseError::Framing));
        assert_eq!(bad(7, 1), Err(LeaseError::Framing));
        assert_eq!(bad(8, 1), Err(LeaseError::Framing));
        assert_eq!(bad(13, 2), Err(LeaseError::Format(2)));
        assert_eq!(bad(14, 3), Err(LeaseError::Event(3)));
        assert_eq!(bad(16, 1), Err(LeaseError::Reserved));
        assert_eq!(LeaseRecord::decode(&b[..40]), Err(LeaseError::Framing));
    }
}
