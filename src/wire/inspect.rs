//! The generic envelope check for current-generation client frames: a type
//! the relay does not know passes when its envelope is one well-formed CBOR
//! map (tags, indefinite lengths and extra keys allowed) whose keys are text,
//! with exactly one `t` whose value is text, nesting at most
//! [`MAX_NESTING`] levels, and nothing after it. A `t` under the `control.`
//! prefix is the runtime's and never passes. `v` and `p` are read when they
//! are there; a `p` behind tags (as the TypeScript SDK may write it) is still
//! found.
//!
//! The walk never allocates for a definite `p`, never recurses deeper than the
//! limit, and every step consumes input, so any input ends in a verdict.

use std::borrow::Cow;

use super::envelope::FieldFault;
use super::{EnvelopeError, MsgType};

/// How deep maps, arrays and tags may nest inside an envelope.
pub const MAX_NESTING: usize = 64;

/// What the generic check found in an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected<'a> {
    /// The type name (owned only when it came in chunks).
    pub name: Cow<'a, str>,
    /// The type, when the relay knows it.
    pub t: Option<MsgType>,
    /// `v`, when present and an unsigned integer.
    pub v: Option<u64>,
    /// `p`'s bytes, when present and a byte string.
    pub payload: Option<Cow<'a, [u8]>>,
}

/// Checks an envelope of any type; see the module docs.
pub fn inspect_envelope(body: &[u8]) -> Result<Inspected<'_>, EnvelopeError> {
    walk(body).map(|(inspected, _)| inspected)
}

/// The check a current-generation client envelope must pass before it goes
/// to agentd, whose decoder ends its whole loop on an envelope it cannot
/// read (`Message {v: u8, t: MessageType, p: bytes}` through serde): on top
/// of [`inspect_envelope`], `t` names a type of the message table, `v` is
/// one unsigned integer up to 255 and `p` one byte string. Stricter than
/// agentd's decoder where that costs no real sender anything (no trailing
/// bytes, text keys only).
pub fn agentd_envelope(body: &[u8]) -> Result<Inspected<'_>, EnvelopeError> {
    let (inspected, seen) = walk(body)?;
    if inspected.t.is_none() {
        return Err(EnvelopeError::UnknownType(inspected.name.into_owned()));
    }
    let field = |field, why| Err(EnvelopeError::Field { field, why });
    for (name, count, value) in [
        ("v", seen.v, inspected.v.filter(|&v| v <= 255).is_some()),
        ("p", seen.p, inspected.payload.is_some()),
    ] {
        match count {
            0 => return field(name, FieldFault::Missing),
            1 if !value => return field(name, FieldFault::WrongKind),
            1 => {}
            _ => return field(name, FieldFault::Repeated),
        }
    }
    Ok(inspected)
}

/// How many `v` and `p` keys an envelope has.
#[derive(Default)]
struct Seen {
    v: u32,
    p: u32,
}

fn walk(body: &[u8]) -> Result<(Inspected<'_>, Seen), EnvelopeError> {
    let mut w = Walk { b: body, at: 0 };
    let mut found = Found::default();
    w.top_map(&mut found)?;
    if w.at != body.len() {
        return Err(EnvelopeError::TrailingBytes(body.len() - w.at));
    }
    let name = found.t.ok_or_else(|| bad("no text `t` key"))?;
    if name.starts_with("control.") {
        return Err(EnvelopeError::Reserved(name.into_owned()));
    }
    let inspected = Inspected {
        t: MsgType::from_wire(name.as_bytes()),
        name,
        v: found.v,
        payload: found.p,
    };
    Ok((inspected, found.seen))
}

fn bad(why: &str) -> EnvelopeError {
    EnvelopeError::Malformed(why.to_owned())
}

#[derive(Default)]
struct Found<'a> {
    t: Option<Cow<'a, str>>,
    v: Option<u64>,
    p: Option<Cow<'a, [u8]>>,
    seen: Seen,
}

/// A CBOR head: major type, additional info, argument.
struct Head {
    major: u8,
    info: u8,
    arg: u64,
}

struct Walk<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Walk<'a> {
    fn byte(&mut self) -> Result<u8, EnvelopeError> {
        let x = *self
            .b
            .get(self.at)
            .ok_or_else(|| bad("ends inside an item"))?;
        self.at += 1;
        Ok(x)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], EnvelopeError> {
        let n = usize::try_from(n).map_err(|_| bad("length beyond the frame"))?;
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| bad("length beyond the frame"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn head(&mut self) -> Result<Head, EnvelopeError> {
        let first = self.byte()?;
        let (major, info) = (first >> 5, first & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1u64 << (info - 24);
                self.take(n)?
                    .iter()
                    .fold(0u64, |acc, &x| acc << 8 | u64::from(x))
            }
            31 => 0, // indefinite length, or "break"; the caller judges
            _ => return Err(bad("reserved additional information")),
        };
        Ok(Head { major, info, arg })
    }

    fn at_break(&self) -> bool {
        self.b.get(self.at) == Some(&0xff)
    }

    /// The top item: a map, possibly behind tags.
    fn top_map(&mut self, found: &mut Found<'a>) -> Result<(), EnvelopeError> {
        let mut depth = 1;
        loop {
            let h = self.head()?;
            match h.major {
                6 => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(EnvelopeError::TooDeep { max: MAX_NESTING });
                    }
                }
                5 => return self.map_entries(&h, depth, found),
                _ => return Err(bad("the envelope is not a map")),
            }
        }
    }

    fn map_entries(
        &mut self,
        h: &Head,
        depth: usize,
        found: &mut Found<'a>,
    ) -> Result<(), EnvelopeError> {
        let mut left = (h.info != 31).then_some(h.arg);
        loop {
            match left {
                Some(0) => return Ok(()),
                Some(ref mut n) => *n -= 1,
                None if self.at_break() => {
                    self.at += 1;
                    return Ok(());
                }
                None => {}
            }
            let key = self.text_key()?;
            match &*key {
                "t" => {
                    if found.t.is_some() {
                        return Err(bad("more than one `t` key"));
                    }
                    found.t = Some(self.t_value()?);
                }
                "v" => {
                    found.seen.v += 1;
                    found.v = self.uint_or_skip(depth)?;
                }
                "p" => {
                    found.seen.p += 1;
                    found.p = self.bytes_or_skip(depth)?;
                }
                _ => self.item(depth + 1)?,
            }
        }
    }

    fn text_key(&mut self) -> Result<Cow<'a, str>, EnvelopeError> {
        self.text("a map key")
    }

    fn t_value(&mut self) -> Result<Cow<'a, str>, EnvelopeError> {
        self.text("`t`")
    }

    /// A text string (`what`, for the error): definite, borrowed; or in
    /// chunks, joined (as serde's reading through ciborium takes it).
    fn text(&mut self, what: &str) -> Result<Cow<'a, str>, EnvelopeError> {
        let not_utf8 = || bad(&format!("{what} is not UTF-8"));
        let h = self.head()?;
        if h.major != 3 {
            return Err(bad(&format!("{what} is not a text string")));
        }
        if h.info != 31 {
            let s = self.take(h.arg)?;
            return std::str::from_utf8(s)
                .map(Cow::Borrowed)
                .map_err(|_| not_utf8());
        }
        let mut joined = Vec::new();
        self.chunks(3, 0, Some(&mut joined))?;
        String::from_utf8(joined)
            .map(Cow::Owned)
            .map_err(|_| not_utf8())
    }

    fn uint_or_skip(&mut self, depth: usize) -> Result<Option<u64>, EnvelopeError> {
        let start = self.at;
        let h = self.head()?;
        if h.major == 0 && h.info != 31 {
            return Ok(Some(h.arg));
        }
        self.at = start;
        self.item(depth + 1)?;
        Ok(None)
    }

    /// `p`: a byte string behind any tags, or anything else (skipped).
    fn bytes_or_skip(&mut self, depth: usize) -> Result<Option<Cow<'a, [u8]>>, EnvelopeError> {
        let start = self.at;
        let mut tags = 0;
        loop {
            let h = self.head()?;
            match (h.major, h.info) {
                (6, _) if depth + tags < MAX_NESTING => tags += 1,
                (2, 31) => return self.byte_chunks().map(|v| Some(Cow::Owned(v))),
                (2, _) => return self.take(h.arg).map(|s| Some(Cow::Borrowed(s))),
                _ => {
                    self.at = start;
                    self.item(depth + 1)?;
                    return Ok(None);
                }
            }
        }
    }

    /// The chunks of an indefinite byte string, joined.
    fn byte_chunks(&mut self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        self.chunks(2, 0, Some(&mut out))?;
        Ok(out)
    }

    /// Skips one well-formed item at nesting `depth`.
    fn item(&mut self, depth: usize) -> Result<(), EnvelopeError> {
        if depth > MAX_NESTING {
            return Err(EnvelopeError::TooDeep { max: MAX_NESTING });
        }
        let h = self.head()?;
        match (h.major, h.info) {
            (0 | 1, 31) | (6, 31) => Err(bad("indefinite length on an integer or tag")),
            (0 | 1, _) => Ok(()),
            (2 | 3, 31) => self.chunks(h.major, depth, None),
            (2 | 3, _) => self.take(h.arg).map(|_| ()),
            (4, 31) => self.until_break(depth, 1),
            (4, _) => self.items(h.arg, depth),
            (5, 31) => self.until_break(depth, 2),
            (5, _) => self.items(h.arg.saturating_mul(2), depth),
            (6, _) => self.item(depth + 1),
            (7, 31) => Err(bad("a break outside an indefinite item")),
            (7, 24) if h.arg < 32 => Err(bad("a simple value in two bytes below 32")),
            (7, _) => Ok(()),
            _ => Err(bad("unknown major type")),
        }
    }

    fn items(&mut self, n: u64, depth: usize) -> Result<(), EnvelopeError> {
        for _ in 0..n {
            self.item(depth + 1)?;
        }
        Ok(())
    }

    fn until_break(&mut self, depth: usize, per_entry: usize) -> Result<(), EnvelopeError> {
        loop {
            if self.at_break() {
                self.at += 1;
                return Ok(());
            }
            for _ in 0..per_entry {
                self.item(depth + 1)?;
            }
        }
    }

    /// The chunks of an indefinite string of major type `major` (its head
    /// read), up to its break, appended to `out` when given. A chunk is a
    /// string of the same type, definite or itself in chunks (ciborium, and so
    /// agentd's serde reading, takes those too), nested at most
    /// [`MAX_NESTING`] deep.
    fn chunks(
        &mut self,
        major: u8,
        depth: usize,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<(), EnvelopeError> {
        if depth > MAX_NESTING {
            return Err(EnvelopeError::TooDeep { max: MAX_NESTING });
        }
        while !self.at_break() {
            let h = self.head()?;
            if h.major != major {
                return Err(bad("a string chunk of another type"));
            }
            if h.info == 31 {
                self.chunks(major, depth + 1, out.as_deref_mut())?;
                continue;
            }
            let chunk = self.take(h.arg)?;
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(chunk);
            }
        }
        self.at += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_envelope, encode_envelope_v};

    #[test]
    fn wire_inspect_reads_what_our_encoders_write() {
        let body = encode_envelope_v(10, MsgType::Ping, b"\xa0");
        let got = inspect_envelope(&body).unwrap();
        assert_eq!(got.t, Some(MsgType::Ping));
        assert_eq!(got.v, Some(10));
        assert_eq!(got.payload.as_deref(), Some(&b"\xa0"[..]));
        assert!(matches!(got.payload, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn wire_inspect_passes_unknown_names_tags_and_indefinite_forms() {
        // {_ "t": "x.future", "p": tag 64 (h'01'), "extra": [_ 1, {}] }
        let mut body = vec![0xbf, 0x61, b't', 0x68];
        body.extend_from_slice(b"x.future");
        body.extend_from_slice(&[0x61, b'p', 0xd8, 0x40, 0x41, 0x01]);
        body.extend_from_slice(&[0x65]);
        body.extend_from_slice(b"extra");
        body.extend_from_slice(&[0x9f, 0x01, 0xa0, 0xff, 0xff]);
        let got = inspect_envelope(&body).unwrap();
        assert_eq!((&*got.name, got.t, got.v), ("x.future", None, None));
        assert_eq!(got.payload.as_deref(), Some(&[1u8][..]));
    }

    #[test]
    fn wire_inspect_refusals() {
        let mut two_t = vec![0xa2, 0x61, b't', 0x61, b'a', 0x61, b't', 0x61, b'b'];
        assert!(matches!(
            inspect_envelope(&two_t),
            Err(EnvelopeError::Malformed(_))
        ));
        two_t.truncate(5);
        two_t[0] = 0xa1;
        two_t.push(0x00);
        assert_eq!(
            inspect_envelope(&two_t),
            Err(EnvelopeError::TrailingBytes(1))
        );
        let no_t = [0xa1, 0x61, b'v', 0x01];
        assert!(matches!(
            inspect_envelope(&no_t),
            Err(EnvelopeError::Malformed(_))
        ));
        let int_key = [0xa1, 0x01, 0x01];
        assert!(matches!(
            inspect_envelope(&int_key),
            Err(EnvelopeError::Malformed(_))
        ));
        let not_map = [0x80];
        assert!(matches!(
            inspect_envelope(&not_map),
            Err(EnvelopeError::Malformed(_))
        ));
        let control = encode_control();
        assert_eq!(
            inspect_envelope(&control),
            Err(EnvelopeError::Reserved("control.x".into()))
        );
        let truncated = &encode_envelope(MsgType::ExecStdin, b"\xa0")[..10];
        assert!(inspect_envelope(truncated).is_err());
    }

    #[test]
    fn wire_inspect_bounds_nesting() {
        let deep = |n: usize| {
            let mut b = vec![0xa2, 0x61, b't', 0x61, b'x', 0x61, b'y'];
            b.extend(std::iter::repeat_n(0x81, n));
            b.push(0x00);
            b
        };
        assert!(inspect_envelope(&deep(MAX_NESTING - 2)).is_ok());
        assert_eq!(
            inspect_envelope(&deep(MAX_NESTING)),
            Err(EnvelopeError::TooDeep { max: MAX_NESTING })
        );
        // Far deeper than the stack could follow: still a verdict.
        assert!(inspect_envelope(&deep(1_000_000)).is_err());
    }

    /// `v` that is not an unsigned integer is skipped whole (the keys after
    /// it still read); `p` as an indefinite byte string is its chunks joined.
    #[test]
    fn wire_inspect_odd_v_and_chunked_p() {
        // {"v": "ten", "p": (_ h'0102', h'03'), "t": "core.ping"}
        let mut body = vec![0xa3, 0x61, b'v', 0x63];
        body.extend_from_slice(b"ten");
        body.extend_from_slice(&[0x61, b'p', 0x5f, 0x42, 1, 2, 0x41, 3, 0xff]);
        body.extend_from_slice(&[0x61, b't', 0x69]);
        body.extend_from_slice(b"core.ping");
        let got = inspect_envelope(&body).unwrap();
        assert_eq!((&*got.name, got.v), ("core.ping", None));
        assert_eq!(got.payload.as_deref(), Some(&[1u8, 2, 3][..]));
    }

    /// Skipping an unknown key's value: an indefinite text string is its
    /// chunks up to the break (the keys after it still read), a chunk of
    /// another type is refused, and so is a two-byte simple value below 32.
    #[test]
    fn wire_inspect_skips_chunked_strings_refuses_odd_simple_values() {
        let with_x = |x: &[u8]| {
            let mut b = vec![0xa2, 0x61, b'x'];
            b.extend_from_slice(x);
            b.extend_from_slice(&[0x61, b't', 0x69]);
            b.extend_from_slice(b"core.ping");
            b
        };
        let chunked = with_x(&[0x7f, 0x62, b'a', b'b', 0x61, b'c', 0xff]);
        assert_eq!(
            inspect_envelope(&chunked).map(|g| g.name.into_owned()),
            Ok("core.ping".to_owned())
        );
        let mixed = with_x(&[0x7f, 0x62, b'a', b'b', 0x41, 0x01, 0xff]);
        assert!(matches!(
            inspect_envelope(&mixed),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(inspect_envelope(&with_x(&[0xf8, 0x20])).is_ok());
        for odd in [0x1f, 0x3f, 0xdf] {
            let indefinite = with_x(&[odd, 0x00]);
            assert!(
                matches!(
                    inspect_envelope(&indefinite),
                    Err(EnvelopeError::Malformed(_))
                ),
                "{odd:#x}: an integer or tag of indefinite length"
            );
        }
        let low = with_x(&[0xf8, 0x1f]);
        assert!(matches!(
            inspect_envelope(&low),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    /// The trailing-bytes error counts them; tags in front of the envelope's
    /// map count toward the nesting bound.
    #[test]
    fn wire_inspect_counts_trailing_bytes_and_bounds_tags_before_the_map() {
        let ping = encode_envelope(MsgType::Ping, b"\xa0");
        let mut trailing = ping.to_vec();
        trailing.extend_from_slice(&[0, 0, 0]);
        assert_eq!(
            inspect_envelope(&trailing),
            Err(EnvelopeError::TrailingBytes(3))
        );
        let tagged = |n: usize| {
            let mut b = vec![0xc6; n];
            b.extend_from_slice(&ping);
            b
        };
        assert!(inspect_envelope(&tagged(MAX_NESTING - 1)).is_ok());
        assert_eq!(
            inspect_envelope(&tagged(MAX_NESTING)),
            Err(EnvelopeError::TooDeep { max: MAX_NESTING })
        );
    }

    /// `p` under tags 2 and 3 (bignums to a CBOR value reader) is still the
    /// byte string, as serde's reading of bytes (agentd's) skips every tag.
    /// The `inspect_envelope` fuzz target's crash input of 2026-12-01.
    #[test]
    fn wire_inspect_p_under_bignum_tags_is_the_bytes() {
        // {"t": "x.y", "p": 64(3(h'01'))}
        let body = [
            0xa2, 0x61, b't', 0x63, b'x', b'.', b'y', 0x61, b'p', 0xd8, 0x40, 0xc3, 0x41, 0x01,
        ];
        let got = inspect_envelope(&body).unwrap();
        assert_eq!(got.payload.as_deref(), Some(&[1u8][..]));
    }

    /// Tags in front of `p` count toward the nesting bound from the map's
    /// own depth.
    #[test]
    fn wire_inspect_tags_before_p_bounded() {
        let tagged = |n: usize| {
            let mut b = vec![0xa2, 0x61, b't', 0x61, b'x', 0x61, b'p'];
            b.extend(std::iter::repeat_n(0xc6, n));
            b.extend_from_slice(&[0x41, 9]);
            b
        };
        let payload =
            |n: usize| inspect_envelope(&tagged(n)).map(|g| g.payload.map(|p| p.to_vec()));
        assert_eq!(payload(0), Ok(Some(vec![9])));
        assert_eq!(payload(MAX_NESTING - 1), Ok(Some(vec![9])));
        let too_deep = Err(EnvelopeError::TooDeep { max: MAX_NESTING });
        assert_eq!(payload(MAX_NESTING), too_deep);
        assert_eq!(payload(100_000), too_deep);
    }

    fn encode_control() -> Vec<u8> {
        let mut b = vec![0xa1, 0x61, b't', 0x69];
        b.extend_from_slice(b"control.x");
        b
    }

    /// Keys and `t` in chunks are joined, as serde's reading through
    /// ciborium takes them (the fuzz target's inputs `{_ "t": (_ )}`, an
    /// empty chunked `t`, and `t` with a chunk itself in chunks, among them);
    /// a chunk of another type is refused.
    #[test]
    fn wire_inspect_reads_chunked_keys_and_names() {
        let empty = [0xbf, 0x61, b't', 0x7f, 0xff, 0xff];
        let got = inspect_envelope(&empty).unwrap();
        assert_eq!((&*got.name, got.t), ("", None));
        let mut ping = vec![0xa1, 0x7f, 0x61, b't', 0xff, 0x7f, 0x65];
        ping.extend_from_slice(b"core.");
        ping.extend_from_slice(&[0x64]);
        ping.extend_from_slice(b"ping");
        ping.push(0xff);
        let got = inspect_envelope(&ping).unwrap();
        assert_eq!((&*got.name, got.t), ("core.ping", Some(MsgType::Ping)));
        assert!(matches!(got.name, Cow::Owned(_)), "joined");
        let nested = [
            0xa1, 0x61, b't', 0x7f, 0x7f, 0x61, b'a', 0xff, 0x61, b'b', 0xff,
        ];
        assert_eq!(&*inspect_envelope(&nested).unwrap().name, "ab");
        // A skipped value's chunks in chunks are walked to their break too.
        let mut skipped = vec![0xa2, 0x61, b'x', 0x7f, 0x7f, 0x61, b'a', 0xff, 0xff];
        skipped.extend_from_slice(&[0x61, b't', 0x69]);
        skipped.extend_from_slice(b"core.ping");
        assert_eq!(&*inspect_envelope(&skipped).unwrap().name, "core.ping");
        let bytes_in_text = [0xa1, 0x61, b't', 0x7f, 0x41, b'x', 0xff];
        assert!(matches!(
            inspect_envelope(&bytes_in_text),
            Err(EnvelopeError::Malformed(_))
        ));
        let control = [
            0xa1, 0x61, b't', 0x7f, 0x68, b'c', b'o', b'n', b't', b'r', b'o', b'l', b'.', 0xff,
        ];
        assert!(matches!(
            inspect_envelope(&control),
            Err(EnvelopeError::Reserved(_))
        ));
    }

    /// What agentd's decoder would end its loop on is refused by name: an
    /// unknown type, and a `v` or `p` missing, repeated or of another kind.
    #[test]
    fn wire_agentd_envelope_refuses_what_agentd_cannot_decode() {
        let ok = encode_envelope_v(10, MsgType::Ping, b"\xa0");
        assert_eq!(agentd_envelope(&ok).unwrap().t, Some(MsgType::Ping));
        // {"v": 10, "t": "core.bogus.type", "p": h''}
        let mut bogus = vec![0xa3, 0x61, b'v', 0x0a, 0x61, b't', 0x6f];
        bogus.extend_from_slice(b"core.bogus.type");
        bogus.extend_from_slice(&[0x61, b'p', 0x40]);
        assert!(inspect_envelope(&bogus).is_ok());
        assert_eq!(
            agentd_envelope(&bogus),
            Err(EnvelopeError::UnknownType("core.bogus.type".into()))
        );
        let fault = |field, why| Err(EnvelopeError::Field { field, why });
        let ping = |entries: &[&[u8]]| {
            let mut b = vec![0xa0 + entries.len() as u8 + 1, 0x61, b't', 0x69];
            b.extend_from_slice(b"core.ping");
            for e in entries {
                b.extend_from_slice(e);
            }
            b
        };
        let (v10, p0): (&[u8], &[u8]) = (&[0x61, b'v', 0x0a], &[0x61, b'p', 0x41, 0xa0]);
        assert!(agentd_envelope(&ping(&[v10, p0])).is_ok());
        assert_eq!(
            agentd_envelope(&ping(&[p0])),
            fault("v", FieldFault::Missing)
        );
        assert_eq!(
            agentd_envelope(&ping(&[v10])),
            fault("p", FieldFault::Missing)
        );
        let v256: &[u8] = &[0x61, b'v', 0x19, 0x01, 0x00];
        let v_text: &[u8] = &[0x61, b'v', 0x61, b'a'];
        let p_int: &[u8] = &[0x61, b'p', 0x01];
        assert_eq!(
            agentd_envelope(&ping(&[v256, p0])),
            fault("v", FieldFault::WrongKind)
        );
        assert_eq!(
            agentd_envelope(&ping(&[v_text, p0])),
            fault("v", FieldFault::WrongKind)
        );
        assert_eq!(
            agentd_envelope(&ping(&[v10, p_int])),
            fault("p", FieldFault::WrongKind)
        );
        assert_eq!(
            agentd_envelope(&ping(&[v10, v10, p0])),
            fault("v", FieldFault::Repeated)
        );
        assert_eq!(
            agentd_envelope(&ping(&[v10, p0, p0])),
            fault("p", FieldFault::Repeated)
        );
    }
}
