//! Raw bulk records (current generation): a frame whose flags are exactly
//! [`super::FLAG_BULK`] carries no CBOR but a fixed 12-byte header and the
//! payload:
//!
//! ```text
//! [kind: 1 fs | 2 tcp][flow: 1 host->guest | 2 guest->host][0 0][offset: u64 BE][payload]
//! ```
//!
//! The relay checks the header and forwards the frame untouched.

use super::be_u32;

/// Bytes of a bulk record's header, before its payload.
pub(crate) const BULK_HEADER_LEN: usize = 12;
/// The largest payload one bulk record may carry (3 MiB, as 0.7.13).
pub const MAX_BULK_PAYLOAD: usize = 3 << 20;

/// A bulk record's header, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkHeader {
    /// 1: a filesystem flow; 2: a tcp flow.
    pub kind: u8,
    /// 1: host to guest; 2: guest to host.
    pub flow: u8,
    /// The payload's offset in its flow.
    pub offset: u64,
    /// The payload's size.
    pub payload_len: usize,
}

impl BulkHeader {
    /// The flow value of records the host sends.
    pub const HOST_TO_GUEST: u8 = 1;
    /// The flow value of records the guest sends.
    pub const GUEST_TO_HOST: u8 = 2;
}

/// Why a bulk record's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkError {
    /// The body is too short for a header and one payload byte.
    TooShort {
        /// Bytes of body.
        len: usize,
    },
    /// The two reserved bytes are not zero.
    Reserved,
    /// The kind is neither 1 (fs) nor 2 (tcp).
    Kind(u8),
    /// The flow is neither 1 nor 2.
    Flow(u8),
    /// The payload is over [`MAX_BULK_PAYLOAD`].
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// Offset plus payload size overflows.
    OffsetOverflow,
}

impl std::fmt::Display for BulkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            BulkError::TooShort { len } => write!(
                f,
                "bulk record of {len} bytes has no payload after its {BULK_HEADER_LEN}-byte header"
            ),
            BulkError::Reserved => f.write_str("bulk record's reserved bytes are not zero"),
            BulkError::Kind(k) => write!(f, "bulk record kind {k} is neither 1 (fs) nor 2 (tcp)"),
            BulkError::Flow(x) => write!(f, "bulk record flow {x} is neither 1 nor 2"),
            BulkError::TooLarge { len } => write!(
                f,
                "bulk record payload of {len} bytes is over the {MAX_BULK_PAYLOAD}-byte limit"
            ),
            BulkError::OffsetOverflow => f.write_str("bulk record offset overflows"),
        }
    }
}

impl std::error::Error for BulkError {}

/// Reads and checks the header of a bulk record's body (the bytes after the
/// frame's flags).
pub fn bulk_header(body: &[u8]) -> Result<BulkHeader, BulkError> {
    if body.len() <= BULK_HEADER_LEN {
        return Err(BulkError::TooShort { len: body.len() });
    }
    if body[2..4] != [0, 0] {
        return Err(BulkError::Reserved);
    }
    let (kind, flow) = (body[0], body[1]);
    if !matches!(kind, 1 | 2) {
        return Err(BulkError::Kind(kind));
    }
    if !matches!(flow, 1 | 2) {
        return Err(BulkError::Flow(flow));
    }
    let payload_len = body.len() - BULK_HEADER_LEN;
    if payload_len > MAX_BULK_PAYLOAD {
        return Err(BulkError::TooLarge { len: payload_len });
    }
    let hi = u64::from(be_u32(body, 4).unwrap_or_default());
    let lo = u64::from(be_u32(body, 8).unwrap_or_default());
    let offset = hi << 32 | lo;
    offset
        .checked_add(payload_len as u64)
        .ok_or(BulkError::OffsetOverflow)?;
    Ok(BulkHeader {
        kind,
        flow,
        offset,
        payload_len,
    })
}

/// Whether `body` could open a bulk record: judged on the bytes there are
/// (a resync candidate may be short).
pub(crate) fn plausible_bulk(body: &[u8]) -> bool {
    let ok = |i: usize, f: fn(u8) -> bool| body.get(i).is_none_or(|&b| f(b));
    ok(0, |k| matches!(k, 1 | 2))
        && ok(1, |x| matches!(x, 1 | 2))
        && ok(2, |r| r == 0)
        && ok(3, |r| r == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resync candidate is judged on each of the four opening bytes it
    /// has: kind, flow, and both reserved bytes zero.
    #[test]
    fn plausible_bulk_judges_each_opening_byte() {
        let good = [2u8, 1, 0, 0, 0xff];
        for n in 0..=good.len() {
            assert!(plausible_bulk(&good[..n]), "{n} bytes");
        }
        for (at, bad) in [(0, 3u8), (0, 0), (1, 0), (1, 3), (2, 1), (3, 1)] {
            let mut b = good;
            b[at] = bad;
            assert!(!plausible_bulk(&b), "byte {at} = {bad}");
        }
    }

    fn record(kind: u8, flow: u8, offset: u64, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![kind, flow, 0, 0];
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn wire_bulk_header_reads_every_field() {
        let h = bulk_header(&record(2, 1, 0x0102_0304_0506_0708, b"abc")).unwrap();
        assert_eq!(
            h,
            BulkHeader {
                kind: 2,
                flow: 1,
                offset: 0x0102_0304_0506_0708,
                payload_len: 3
            }
        );
    }

    #[test]
    fn wire_bulk_header_refusals_name_the_field() {
        assert_eq!(
            bulk_header(&record(1, 1, 0, b"")),
            Err(BulkError::TooShort { len: 12 })
        );
        let mut r = record(1, 1, 0, b"x");
        r[3] = 1;
        assert_eq!(bulk_header(&r), Err(BulkError::Reserved));
        assert_eq!(bulk_header(&record(3, 1, 0, b"x")), Err(BulkError::Kind(3)));
        assert_eq!(bulk_header(&record(1, 0, 0, b"x")), Err(BulkError::Flow(0)));
        assert_eq!(
            bulk_header(&record(1, 1, u64::MAX, b"x")),
            Err(BulkError::OffsetOverflow)
        );
        let big = vec![0u8; MAX_BULK_PAYLOAD + 1];
        assert_eq!(
            bulk_header(&record(1, 1, 0, &big)),
            Err(BulkError::TooLarge {
                len: MAX_BULK_PAYLOAD + 1
            })
        );
        assert!(
            bulk_header(&record(1, 1, 0, &big[1..])).is_ok(),
            "3 MiB exactly"
        );
    }
}
