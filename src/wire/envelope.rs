//! The CBOR envelope `{v, t: "<type>", p: <bytes>}` inside every frame.
//!
//! [`peek_parts`] reads the generation, the type name and borrows the payload
//! bytes without building owned structures when the envelope has the layout
//! our encoders write (0.4.4 and 0.7.13 alike: a definite map, keys `v`, `t`,
//! `p` in that order); any other layout falls back to the full serde decode,
//! so the two agree on every input. [`peek_envelope`] does the same for the
//! types the relay knows. Neither checks `v`: it is the sender's generation,
//! and a relay must never reject a frame for it. Our decode is stricter than
//! the crates' in one deliberate way: the CBOR item must fill the frame
//! exactly (trailing bytes mean a wrong length prefix).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{ENVELOPE_MAP_V, ENVELOPE_T_KEY, LEGACY_VERSION, MsgType};

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The bytes are not a CBOR map with `v`, `t` and `p`.
    Malformed(String),
    /// `t` names no message type the relay knows.
    UnknownType(String),
    /// The CBOR item ends before the frame does.
    TrailingBytes(usize),
    /// The map nests deeper than the relay follows.
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// `t` names a type the `control.` prefix reserves for the runtime.
    Reserved(String),
    /// A field agentd's decoder needs is missing, repeated or of another
    /// kind (current generation: `v` an unsigned integer up to 255, `t` a
    /// known type's name, `p` a byte string, each exactly once).
    Field {
        /// `v`, `t` or `p`.
        field: &'static str,
        /// What is wrong with it.
        why: FieldFault,
    },
}

/// What is wrong with an envelope field (see [`EnvelopeError::Field`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFault {
    /// It is not there.
    Missing,
    /// It is there more than once.
    Repeated,
    /// It is not of the kind the field takes.
    WrongKind,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::Malformed(why) => write!(f, "envelope does not decode: {why}"),
            EnvelopeError::UnknownType(t) => write!(f, "unknown message type {t:?}"),
            EnvelopeError::TrailingBytes(n) => {
                write!(f, "{n} bytes follow the envelope inside the frame")
            }
            EnvelopeError::TooDeep { max } => {
                write!(f, "envelope nests deeper than {max} levels")
            }
            EnvelopeError::Reserved(t) => {
                write!(f, "message type {t:?} is reserved for the runtime")
            }
            EnvelopeError::Field { field, why } => {
                let kind = match *field {
                    "v" => "an unsigned integer up to 255",
                    "t" => "a text naming a message type",
                    _ => "a byte string",
                };
                match why {
                    FieldFault::Missing => write!(f, "envelope has no `{field}`"),
                    FieldFault::Repeated => write!(f, "envelope has `{field}` more than once"),
                    FieldFault::WrongKind => write!(f, "envelope's `{field}` is not {kind}"),
                }
            }
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// What a CBOR decode error means, in words: ciborium's `Display` shows its
/// enum (`Semantic(None, "missing field `p`")`) even for valid CBOR that
/// lacks a field.
pub fn cbor_error(e: ciborium::de::Error<std::io::Error>) -> EnvelopeError {
    use ciborium::de::Error as E;
    EnvelopeError::Malformed(match e {
        E::Io(_) => "the CBOR ends early".to_owned(),
        E::Syntax(at) => format!("not valid CBOR at byte {at}"),
        E::Semantic(_, why) => why,
        E::RecursionLimitExceeded => "the CBOR nests too deeply".to_owned(),
    })
}

/// A decoded envelope of a known type; `payload` borrows the frame on the
/// fast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The message type.
    pub t: MsgType,
    /// The payload's CBOR bytes.
    pub payload: Cow<'a, [u8]>,
}

/// A decoded envelope whose type may be one the relay does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The sender's generation.
    pub v: u8,
    /// The message type; `None` for a name the relay does not know.
    pub t: Option<MsgType>,
    /// The payload's CBOR bytes.
    pub payload: Cow<'a, [u8]>,
}

/// Reads an envelope of a known type, cheaply when it has the canonical
/// layout.
pub fn peek_envelope(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    match fast_envelope(body) {
        Some(parts) => known(parts, body),
        None => decode_envelope_full(body),
    }
}

/// Reads an envelope of any type name, cheaply when it has the canonical
/// layout.
pub fn peek_parts(body: &[u8]) -> Result<Parts<'_>, EnvelopeError> {
    match fast_envelope(body) {
        Some(parts) => Ok(parts),
        None => decode_parts_full(body),
    }
}

/// The fast path's parts, as an envelope of a known type.
fn known<'a>(parts: Parts<'a>, body: &[u8]) -> Result<Envelope<'a>, EnvelopeError> {
    match parts.t {
        Some(t) => Ok(Envelope {
            t,
            payload: parts.payload,
        }),
        None => decode_envelope_full(body).map(|e| Envelope {
            t: e.t,
            payload: Cow::Owned(e.payload.into_owned()),
        }),
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

/// The reference decode of any type name: serde + ciborium over the whole
/// envelope.
fn decode_parts_full(body: &[u8]) -> Result<Parts<'static>, EnvelopeError> {
    let mut rest = body;
    let env: OwnedEnvelope = ciborium::from_reader(&mut rest).map_err(cbor_error)?;
    if !rest.is_empty() {
        return Err(EnvelopeError::TrailingBytes(rest.len()));
    }
    Ok(Parts {
        v: env.v,
        t: MsgType::from_wire(env.t.as_bytes()),
        payload: Cow::Owned(env.p),
    })
}

/// The reference decode: serde + ciborium over the whole envelope, the type
/// one the relay knows.
pub fn decode_envelope_full(body: &[u8]) -> Result<Envelope<'static>, EnvelopeError> {
    let mut rest = body;
    let env: OwnedEnvelope = ciborium::from_reader(&mut rest).map_err(cbor_error)?;
    let t = MsgType::from_wire(env.t.as_bytes()).ok_or(EnvelopeError::UnknownType(env.t))?;
    if !rest.is_empty() {
        return Err(EnvelopeError::TrailingBytes(rest.len()));
    }
    Ok(Envelope {
        t,
        payload: Cow::Owned(env.p),
    })
}

/// Encodes an envelope exactly as 0.4.4 does (fields `v`, `t`, `p` in order,
/// `v` = 1).
pub fn encode_envelope(t: MsgType, payload: &[u8]) -> Vec<u8> {
    encode_envelope_v(LEGACY_VERSION, t, payload)
}

/// Encodes an envelope as 0.4.4 and 0.7.13 do, with generation `v`.
pub fn encode_envelope_v(v: u8, t: MsgType, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 40);
    let env = BorrowedEnvelope {
        v,
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
fn fast_envelope(body: &[u8]) -> Option<Parts<'_>> {
    let rest = body.strip_prefix(&ENVELOPE_MAP_V)?;
    let (v, head) = cbor_head(rest, 0)?;
    let v = u8::try_from(v).ok()?;
    let rest = rest.get(head..)?.strip_prefix(&ENVELOPE_T_KEY)?;
    let (name, rest) = cbor_string(rest, 3)?;
    let t = MsgType::from_wire(name);
    // The full decode reads `t` as UTF-8 text; so must this path (a known
    // name is ASCII).
    if t.is_none() {
        std::str::from_utf8(name).ok()?;
    }
    let rest = rest.strip_prefix(&[0x61, b'p'])?;
    let (p, rest) = cbor_string(rest, 2)?;
    rest.is_empty().then_some(Parts {
        v,
        t,
        payload: Cow::Borrowed(p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: valid CBOR that lacks a field read "not valid CBOR:
    /// Semantic(None, ...)"; it says what is missing now, and broken CBOR
    /// says where.
    #[test]
    fn wire_envelope_errors_say_what_in_words() {
        // {"v": 1, "t": "core.exec.stdin"}: no `p`.
        let mut no_p = vec![0xa2, 0x61, b'v', 0x01, 0x61, b't', 0x6f];
        no_p.extend_from_slice(b"core.exec.stdin");
        let e = decode_envelope_full(&no_p).unwrap_err().to_string();
        assert_eq!(e, "envelope does not decode: missing field `p`");
        let e = decode_envelope_full(&[0xa3, 0x61]).unwrap_err().to_string();
        assert_eq!(e, "envelope does not decode: the CBOR ends early");
    }

    #[test]
    fn wire_envelope_roundtrip_fast_path() {
        let body = encode_envelope(MsgType::ExecStdout, b"\xa1\x64data\x41x");
        let parts = fast_envelope(&body).expect("canonical");
        assert_eq!(parts.t, Some(MsgType::ExecStdout));
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

    /// Any generation is read, never refused; the two paths agree on it.
    #[test]
    fn wire_envelope_any_generation_accepted() {
        for v in [0u8, 1, 2, 10, 23, 24, 255] {
            let body = encode_envelope_v(v, MsgType::ExecStdin, b"\xa0");
            let parts = peek_parts(&body).unwrap();
            assert_eq!((parts.v, parts.t), (v, Some(MsgType::ExecStdin)), "v {v}");
            assert_eq!(decode_parts_full(&body).unwrap().v, v);
            assert_eq!(peek_envelope(&body).unwrap().t, MsgType::ExecStdin);
        }
    }

    #[test]
    fn wire_envelope_unknown_names_are_parts_not_envelopes() {
        let body = ciborium_body(10, "core.from.the.future", b"\xa0");
        let parts = peek_parts(&body).unwrap();
        assert_eq!((parts.v, parts.t), (10, None));
        assert_eq!(
            peek_envelope(&body),
            Err(EnvelopeError::UnknownType("core.from.the.future".into()))
        );
    }

    #[test]
    fn wire_envelope_rejects_trailing_bytes() {
        let mut body = encode_envelope(MsgType::ExecStdin, b"");
        body.push(0);
        assert_eq!(peek_envelope(&body), Err(EnvelopeError::TrailingBytes(1)));
        assert_eq!(peek_parts(&body), Err(EnvelopeError::TrailingBytes(1)));
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

    fn ciborium_body(v: u8, t: &str, p: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let env = BorrowedEnvelope { v, t, p };
        ciborium::into_writer(&env, &mut out).unwrap();
        out
    }
}
