//! The CBOR envelope `{v: 1, t: "<type>", p: <bytes>}` inside every frame.
//!
//! [`peek_envelope`] reads the type and borrows the payload bytes without
//! building owned structures when the envelope has the canonical layout the
//! 0.4.4 encoder writes; any other layout falls back to the full serde decode,
//! so the two agree on every input. Our decode is stricter than 0.4.4's in two
//! deliberate ways: the version must be 1, and the CBOR item must fill the
//! frame exactly (trailing bytes mean a wrong length prefix).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{ENVELOPE_OPENING, MsgType, PROTOCOL_VERSION};

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The bytes are not a CBOR map with `v`, `t` and `p`.
    Malformed(String),
    /// `t` names no protocol v1 message type.
    UnknownType(String),
    /// `v` is not protocol version 1.
    Version(u8),
    /// The CBOR item ends before the frame does.
    TrailingBytes(usize),
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::Malformed(why) => write!(f, "envelope is not valid CBOR: {why}"),
            EnvelopeError::UnknownType(t) => write!(f, "unknown message type {t:?}"),
            EnvelopeError::Version(v) => {
                write!(f, "protocol version {v}, expected {PROTOCOL_VERSION}")
            }
            EnvelopeError::TrailingBytes(n) => {
                write!(f, "{n} bytes follow the envelope inside the frame")
            }
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// A decoded envelope; `payload` borrows the frame on the fast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The message type.
    pub t: MsgType,
    /// The payload's CBOR bytes.
    pub payload: Cow<'a, [u8]>,
}

/// Reads an envelope, cheaply when it has the canonical layout.
pub fn peek_envelope(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    match fast_envelope(body) {
        Some(env) => Ok(env),
        None => decode_envelope_full(body),
    }
}

#[derive(Deserialize)]
struct OwnedEnvelope {
    v: u8,
    t: String,
    #[serde(with = "serde_bytes")]
    p: Vec<u8>,
}

#[derive(Serialize)]
struct BorrowedEnvelope<'a> {
    v: u8,
    t: &'a str,
    #[serde(with = "serde_bytes")]
    p: &'a [u8],
}

/// The reference decode: serde + ciborium over the whole envelope.
pub fn decode_envelope_full(body: &[u8]) -> Result<Envelope<'static>, EnvelopeError> {
    let mut rest = body;
    let env: OwnedEnvelope =
        ciborium::from_reader(&mut rest).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let t = MsgType::from_wire(env.t.as_bytes()).ok_or(EnvelopeError::UnknownType(env.t))?;
    if env.v != PROTOCOL_VERSION {
        return Err(EnvelopeError::Version(env.v));
    }
    if !rest.is_empty() {
        return Err(EnvelopeError::TrailingBytes(rest.len()));
    }
    Ok(Envelope {
        t,
        payload: Cow::Owned(env.p),
    })
}

/// Encodes an envelope exactly as 0.4.4 does (fields `v`, `t`, `p` in order).
pub fn encode_envelope(t: MsgType, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 32);
    let env = BorrowedEnvelope {
        v: PROTOCOL_VERSION,
        t: t.as_str(),
        p: payload,
    };
    // Writing into a Vec cannot fail, and these fields always serialise.
    if ciborium::into_writer(&env, &mut out).is_err() {
        unreachable!("CBOR encoding into a Vec failed");
    }
    out
}

/// Reads a CBOR head of major type `major`: `(argument, head length)`.
pub(super) fn cbor_head(b: &[u8], major: u8) -> Option<(u64, usize)> {
    let first = *b.first()?;
    if first >> 5 != major {
        return None;
    }
    match first & 0x1f {
        n @ 0..=23 => Some((u64::from(n), 1)),
        24 => Some((u64::from(*b.get(1)?), 2)),
        25 => Some((
            u64::from(u16::from_be_bytes(b.get(1..3)?.try_into().ok()?)),
            3,
        )),
        26 => Some((
            u64::from(u32::from_be_bytes(b.get(1..5)?.try_into().ok()?)),
            5,
        )),
        27 => Some((u64::from_be_bytes(b.get(1..9)?.try_into().ok()?), 9)),
        _ => None,
    }
}

/// A definite-length byte or text string of major type `major`: `(content, rest)`.
pub(super) fn cbor_string(b: &[u8], major: u8) -> Option<(&[u8], &[u8])> {
    let (len, head) = cbor_head(b, major)?;
    let len = usize::try_from(len).ok()?;
    let end = head.checked_add(len)?;
    Some((b.get(head..end)?, b.get(end..)?))
}

/// The canonical layout, or `None` to fall back to the full decode.
fn fast_envelope(body: &[u8]) -> Option<Envelope<'_>> {
    let rest = body.strip_prefix(&ENVELOPE_OPENING)?;
    let (t, rest) = cbor_string(rest, 3)?;
    let t = MsgType::from_wire(t)?;
    let rest = rest.strip_prefix(&[0x61, b'p'])?;
    let (p, rest) = cbor_string(rest, 2)?;
    rest.is_empty().then_some(Envelope {
        t,
        payload: Cow::Borrowed(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_envelope_roundtrip_fast_path() {
        let body = encode_envelope(MsgType::ExecStdout, b"\xa1\x64data\x41x");
        let env = fast_envelope(&body).expect("canonical");
        assert_eq!(env.t, MsgType::ExecStdout);
        assert_eq!(
            peek_envelope(&body).unwrap(),
            decode_envelope_full(&body).unwrap()
        );
    }

    /// Payloads of every CBOR length-head size take the borrowed fast path.
    #[test]
    fn wire_envelope_fast_path_for_every_length_head() {
        for len in [0usize, 23, 24, 255, 256, 65_535, 65_536, 300_000] {
            let payload = vec![7u8; len];
            let body = encode_envelope(MsgType::FsData, &payload);
            let env = peek_envelope(&body).unwrap();
            assert!(
                matches!(env.payload, Cow::Borrowed(_)),
                "payload of {len} bytes"
            );
            assert_eq!(env.payload.len(), len);
        }
        assert_eq!(
            cbor_head(&[0x1b, 0, 0, 0, 1, 0, 0, 0, 0], 0),
            Some((1 << 32, 9))
        );
        assert_eq!(cbor_head(&[0x1c], 0), None, "reserved additional info");
    }

    #[test]
    fn wire_envelope_rejects_trailing_bytes_and_bad_version() {
        let mut body = encode_envelope(MsgType::ExecStdin, b"");
        body.push(0);
        assert_eq!(peek_envelope(&body), Err(EnvelopeError::TrailingBytes(1)));
        let mut body = encode_envelope(MsgType::ExecStdin, b"");
        body[3] = 2;
        assert_eq!(peek_envelope(&body), Err(EnvelopeError::Version(2)));
    }

    #[test]
    fn wire_envelope_noncanonical_falls_back() {
        // Keys in another order: `{t, v, p}` still decodes.
        let mut body = vec![0xa3, 0x61, b't', 0x6a];
        body.extend_from_slice(b"core.ready");
        body.extend_from_slice(&[0x61, b'v', 0x01, 0x61, b'p', 0x40]);
        assert!(fast_envelope(&body).is_none());
        assert_eq!(peek_envelope(&body).unwrap().t, MsgType::Ready);
    }
}
