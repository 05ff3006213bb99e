//! CBOR reads as `ciborium::from_reader` makes them, with its 4 KiB of
//! scratch space kept between calls instead of zeroed anew for each (the
//! zeroing cost more than many a decode). The scratch's size is the same,
//! so every read accepts and refuses what `from_reader` does. Used for the
//! checker's reference decodes (`decode_envelope_full`'s and
//! `decode_payload`'s, spelled out here), the guests' own readers in
//! `inv_guest_survives` (0.7.13's `decode_message_frame`, 0.4.4's
//! `try_decode_from_buf`, whose bodies are one `from_reader` each), and
//! the world's guest reading an exec request. An
//! envelope in the encoders' own layout is read by hand first ([`parts`]);
//! serde reads the rest.

use std::borrow::Cow;
use std::cell::RefCell;

use agent_relay::wire::MsgType;
use agent_relay::wire::payload::ExecRequest;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `ciborium::from_reader`'s scratch size.
const SCRATCH: usize = 4096;

thread_local! {
    static BUF: RefCell<[u8; SCRATCH]> = const { RefCell::new([0; SCRATCH]) };
}

/// `ciborium::from_reader(bytes)`, reading from `bytes` (what it does not
/// read stays there).
pub fn from_reader<T: DeserializeOwned>(
    bytes: &mut &[u8],
) -> Result<T, ciborium::de::Error<std::io::Error>> {
    BUF.with_borrow_mut(|buf| ciborium::de::from_reader_with_buffer(bytes, buf))
}

/// A payload struct, as `agent_relay::wire::payload::decode_payload` reads
/// it (trailing bytes ignored).
pub fn payload<T: DeserializeOwned>(mut bytes: &[u8]) -> Option<T> {
    from_reader(&mut bytes).ok()
}

/// The envelope as `agent_relay::wire::decode_envelope_full` reads it.
#[derive(Deserialize)]
struct Envelope {
    #[allow(dead_code)]
    v: u8,
    t: String,
    #[serde(with = "serde_bytes")]
    p: Vec<u8>,
}

/// An envelope as the encoders lay it out: `map(3) "v" uint "t" text "p"
/// bytes`, every length definite and every head minimal. The three fields
/// each once, of the right kinds, so serde's derived reading of any struct
/// with `v: u8`, `t: String` and `p` as bytes takes it; anything else is
/// left to that reading.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The sender's generation.
    pub v: u8,
    /// The type's name.
    pub t: &'a str,
    /// The payload.
    pub p: &'a [u8],
    /// What follows the map.
    pub rest: &'a [u8],
}

/// The encoders' layout, if `body` opens with it (see [`Parts`]).
pub fn parts(body: &[u8]) -> Option<Parts<'_>> {
    let rest = body.strip_prefix(&[0xa3, 0x61, b'v'])?;
    let (v, rest) = head(rest, 0)?;
    let rest = rest.strip_prefix(&[0x61, b't'])?;
    let (len, rest) = head(rest, 3)?;
    let (t, rest) = split(rest, len)?;
    let t = std::str::from_utf8(t).ok()?;
    let rest = rest.strip_prefix(&[0x61, b'p'])?;
    let (len, rest) = head(rest, 2)?;
    let (p, rest) = split(rest, len)?;
    let v = u8::try_from(v).ok()?;
    Some(Parts { v, t, p, rest })
}

/// A minimal CBOR head of major type `major` (its argument: immediate, or
/// one, two or four bytes), and what follows.
fn head(b: &[u8], major: u8) -> Option<(u64, &[u8])> {
    let (&first, rest) = b.split_first()?;
    if first >> 5 != major {
        return None;
    }
    let arg = |n: usize, least: u64| {
        let (bytes, rest) = split(rest, n as u64)?;
        let value = bytes.iter().fold(0u64, |a, &x| a << 8 | u64::from(x));
        (value >= least).then_some((value, rest))
    };
    match first & 0x1f {
        small @ 0..=23 => Some((u64::from(small), rest)),
        24 => arg(1, 24),
        25 => arg(2, 0x100),
        26 => arg(4, 0x1_0000),
        _ => None,
    }
}

/// The first `n` bytes of `b`, and the rest.
fn split(b: &[u8], n: u64) -> Option<(&[u8], &[u8])> {
    let n = usize::try_from(n).ok()?;
    (n <= b.len()).then(|| b.split_at(n))
}

/// Whether an exec request's payload decodes (`decode_payload::<ExecRequest>`
/// takes it). The encoders' layout (map(9): `cmd` text, `args` and `env`
/// arrays of text, `cwd` and `user` text or null, `tty` bool, `rows` and
/// `cols` up to 65535, `rlimits` empty; definite lengths, minimal heads) is
/// checked by hand; serde reads anything else.
pub fn exec_request_reads(p: &[u8]) -> bool {
    exec_request_layout(p).is_some() || payload::<ExecRequest>(p).is_some()
}

/// An exec request's `tty`, as `agent_relay::wire::payload::exec_request_tty`
/// reads it (`None` if the payload does not decode).
pub fn exec_request_tty(p: &[u8]) -> Option<bool> {
    exec_request_layout(p).or_else(|| payload::<ExecRequest>(p).map(|r| r.tty))
}

/// Its `tty`, if `p` opens with the encoders' layout of an exec request.
fn exec_request_layout(p: &[u8]) -> Option<bool> {
    fn key<'a>(b: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let (len, rest) = head(b, 3)?;
        let (k, rest) = split(rest, len)?;
        (k == name.as_bytes()).then_some(rest)
    }
    fn text(b: &[u8]) -> Option<&[u8]> {
        let (len, rest) = head(b, 3)?;
        let (t, rest) = split(rest, len)?;
        std::str::from_utf8(t).ok().map(|_| rest)
    }
    fn texts(b: &[u8]) -> Option<&[u8]> {
        let (n, mut rest) = head(b, 4)?;
        for _ in 0..n {
            rest = text(rest)?;
        }
        Some(rest)
    }
    fn text_or_null(b: &[u8]) -> Option<&[u8]> {
        b.strip_prefix(&[0xf6]).or_else(|| text(b))
    }
    fn small(b: &[u8]) -> Option<&[u8]> {
        let (n, rest) = head(b, 0)?;
        (n <= u64::from(u16::MAX)).then_some(rest)
    }
    let rest = p.strip_prefix(&[0xa9])?;
    let rest = text(key(rest, "cmd")?)?;
    let rest = texts(key(rest, "args")?)?;
    let rest = texts(key(rest, "env")?)?;
    let rest = text_or_null(key(rest, "cwd")?)?;
    let rest = text_or_null(key(rest, "user")?)?;
    let rest = key(rest, "tty")?;
    let (tty, rest) = match rest.split_first()? {
        (0xf4, rest) => (false, rest),
        (0xf5, rest) => (true, rest),
        _ => return None,
    };
    let rest = small(key(rest, "rows")?)?;
    let rest = small(key(rest, "cols")?)?;
    key(rest, "rlimits")?.strip_prefix(&[0x80]).map(|_| tty)
}

/// The type and payload of a whole envelope, if `decode_envelope_full`
/// takes it: one CBOR map with `v`, `t` and `p`, a type the relay knows, no
/// trailing bytes.
pub fn envelope(body: &[u8]) -> Option<(MsgType, Cow<'_, [u8]>)> {
    if let Some(parts) = parts(body) {
        let t = MsgType::from_wire(parts.t.as_bytes())?;
        return parts.rest.is_empty().then_some((t, Cow::Borrowed(parts.p)));
    }
    let mut rest = body;
    let env: Envelope = from_reader(&mut rest).ok()?;
    let t = MsgType::from_wire(env.t.as_bytes())?;
    rest.is_empty().then_some((t, Cow::Owned(env.p)))
}

/// [`envelope`]'s type.
pub fn envelope_type(body: &[u8]) -> Option<MsgType> {
    envelope(body).map(|(t, _)| t)
}

#[cfg(test)]
mod tests {
    use agent_relay::testkit::frames;
    use agent_relay::wire::{LEGACY_VERSION, MsgType, PREFIX_LEN, decode_envelope_full};

    use super::{envelope, envelope_type};

    #[test]
    fn envelope_type_reads_as_decode_envelope_full() {
        let good = frames::raw(LEGACY_VERSION, MsgType::ExecSignal, 5, 0, &[0xa0]);
        let mut bodies = vec![good[PREFIX_LEN..].to_vec()];
        let mut trailing = good[PREFIX_LEN..].to_vec();
        trailing.push(0);
        bodies.push(trailing);
        bodies.push(frames::named(1, "core.bogus", 5, 0, &[0xa0])[PREFIX_LEN..].to_vec());
        bodies.push(vec![0xa1, 0x61, b'v', 0x01]);
        bodies.push(vec![0xff; 12]);
        let big = frames::stdin(LEGACY_VERSION, 5, &[b'x'; 9000]);
        bodies.push(big[PREFIX_LEN..].to_vec());
        // Non-minimal heads, another key order, a tag, an indefinite `p`:
        // serde's to read.
        bodies.push(vec![
            0xa3, 0x61, b'v', 0x18, 0x01, 0x61, b't', 0x60, 0x61, b'p', 0x40,
        ]);
        let mut reordered = vec![0xa3, 0x61, b't'];
        reordered.push(0x60 + 16);
        reordered.extend_from_slice(b"core.exec.signal");
        reordered.extend_from_slice(&[0x61, b'v', 0x01, 0x61, b'p', 0x41, 0xa0]);
        bodies.push(reordered);
        let mut indefinite = good[PREFIX_LEN..].to_vec();
        let at = indefinite.len() - 2;
        indefinite.splice(at..at + 2, [0x5f, 0x41, 0xa0, 0xff]);
        bodies.push(indefinite);
        for body in bodies {
            let want = decode_envelope_full(&body)
                .ok()
                .map(|e| (e.t, e.payload.into_owned()));
            let got = envelope(&body).map(|(t, p)| (t, p.into_owned()));
            assert_eq!(got, want, "{body:02x?}");
            assert_eq!(envelope_type(&body), want.map(|(t, _)| t), "{body:02x?}");
        }
        assert!(super::parts(&good[PREFIX_LEN..]).is_some());
    }

    #[test]
    fn exec_requests_read_as_decode_payload_does() {
        use agent_relay::wire::payload::{ExecRequest, decode_payload, encode_payload};
        let mut payloads = Vec::new();
        for tty in [false, true] {
            for argc in 0..3 {
                let f = frames::exec_request(10, 5, tty, argc);
                let p = agent_relay::wire::peek_parts(&f[PREFIX_LEN..])
                    .unwrap()
                    .payload
                    .into_owned();
                assert_eq!(super::exec_request_layout(&p), Some(tty), "{p:02x?}");
                payloads.push(p);
            }
        }
        let mut full = ExecRequest::new("sh");
        full.cwd = Some("/".into());
        full.user = Some("u".into());
        full.rows = 300;
        payloads.push(encode_payload(&full));
        let good = payloads[0].clone();
        for cut in [1, 5, good.len() - 1] {
            payloads.push(good[..cut].to_vec());
        }
        let mut bad_utf8 = good.clone();
        let at = good.windows(2).position(|w| w == b"sh").unwrap();
        bad_utf8[at] = 0xff;
        payloads.push(bad_utf8);
        payloads.push(vec![0xa1, 0x63, b'c', b'm', b'd', 0x62, b's', b'h']);
        payloads.push(vec![0xa0]);
        for p in payloads {
            let want = decode_payload::<ExecRequest>(&p).ok();
            assert_eq!(super::exec_request_reads(&p), want.is_some(), "{p:02x?}");
            assert_eq!(super::exec_request_tty(&p), want.map(|r| r.tty), "{p:02x?}");
        }
    }
}
