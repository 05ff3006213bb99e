//! [`LogText`]: the text of an exec.log record as the core hands it over.
//! The tap must not cost the routing thread more than the bytes are worth:
//! a long payload stays where it is (a refcounted slice of its frame, no
//! copy), while short ones are appended to one buffer the record owns, since
//! copying a few dozen bytes is cheaper than the shared reference a slice
//! takes (an allocation on the routing thread and a release on the
//! writer's) and the writer then finds one run instead of many. The writer
//! decodes the bytes: what is not UTF-8 becomes U+FFFD, exactly as
//! `String::from_utf8_lossy` of the pieces joined. The core's part is the
//! carry decision (rule `whole_characters`): a record's bytes never end
//! inside a character; the unfinished tail waits for the next frame of its
//! stream.

use std::borrow::Cow;

use bytes::Bytes;

/// Runs of output at least this long are kept as slices of their frame;
/// shorter ones are copied into the record's own buffer.
pub const SHARE_MIN: usize = 1024;

/// One piece of a record's text; the pieces decode as one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// A slice of a frame, shared with it.
    Shared(Bytes),
    /// Bytes copied into the record (short runs, U+FFFD, system text).
    Copied(Vec<u8>),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Shared(b) => b,
            Piece::Copied(v) => v,
        }
    }
}

/// The text of an exec.log record; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogText {
    pieces: Vec<Piece>,
    len: usize,
}

/// The UTF-8 of U+FFFD.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

impl LogText {
    /// No text.
    pub fn new() -> LogText {
        LogText::default()
    }

    /// Whether it holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Bytes it holds (before decoding), for memory accounting.
    pub fn byte_len(&self) -> usize {
        self.len
    }

    /// Appends `data`. When `data` lies inside `within` and is at least
    /// `SHARE_MIN` (1 KiB) bytes long it is kept as a slice of `within` (no copy);
    /// otherwise it is copied.
    pub fn push(&mut self, data: &[u8], within: Option<&Bytes>) {
        if data.is_empty() {
            return;
        }
        let shared = within
            .filter(|_| data.len() >= SHARE_MIN)
            .and_then(|b| slice_within(b, data));
        match shared {
            Some(slice) => {
                self.len += data.len();
                self.pieces.push(Piece::Shared(slice));
            }
            None => self.copy(data),
        }
    }

    /// Appends one U+FFFD.
    pub fn push_replacement(&mut self) {
        self.copy(REPLACEMENT);
    }

    fn copy(&mut self, data: &[u8]) {
        self.len += data.len();
        match self.pieces.last_mut() {
            Some(Piece::Copied(buf)) => buf.extend_from_slice(data),
            _ => self.pieces.push(Piece::Copied(data.to_vec())),
        }
    }

    /// Gives back what the copied bytes' buffer holds beyond them.
    pub fn shrink_to_fit(&mut self) {
        for p in &mut self.pieces {
            if let Piece::Copied(buf) = p {
                buf.shrink_to_fit();
            }
        }
    }

    /// The bytes in runs that decode one by one as they do joined: the
    /// pieces themselves when none but the last ends inside a character
    /// (the usual case: the tap cuts output between characters), otherwise
    /// all of them joined.
    pub fn runs(&self) -> Runs<'_> {
        let before = self.pieces.split_last().map_or(&[][..], |(_, b)| b);
        if before.iter().all(|p| unfinished_tail(p.bytes()) == 0) {
            Runs {
                joined: None,
                pieces: &self.pieces,
            }
        } else {
            Runs {
                joined: Some(self.joined().into_owned()),
                pieces: &[],
            }
        }
    }

    /// The bytes to decode, joined (borrowed when there is one piece).
    pub fn joined(&self) -> Cow<'_, [u8]> {
        match &self.pieces[..] {
            [] => Cow::Borrowed(&[][..]),
            [one] => Cow::Borrowed(one.bytes()),
            pieces => {
                let mut out = Vec::with_capacity(self.len);
                for p in pieces {
                    out.extend_from_slice(p.bytes());
                }
                Cow::Owned(out)
            }
        }
    }
}

/// A [`LogText`]'s bytes in runs that decode alone; see [`LogText::runs`].
#[derive(Debug)]
pub struct Runs<'a> {
    joined: Option<Vec<u8>>,
    pieces: &'a [Piece],
}

impl Runs<'_> {
    /// The runs, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let joined = self.joined.as_deref();
        joined
            .into_iter()
            .chain(self.pieces.iter().map(Piece::bytes))
    }
}

/// `data` as a slice of `whole`, when it lies inside it.
fn slice_within(whole: &Bytes, data: &[u8]) -> Option<Bytes> {
    let start = (data.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(data.len())?;
    (end <= whole.len()).then(|| whole.slice(start..end))
}

impl From<String> for LogText {
    fn from(s: String) -> LogText {
        let mut t = LogText::new();
        if !s.is_empty() {
            t.len = s.len();
            t.pieces.push(Piece::Copied(s.into_bytes()));
        }
        t
    }
}

impl From<&str> for LogText {
    fn from(s: &str) -> LogText {
        LogText::from(s.to_owned())
    }
}

impl std::fmt::Display for LogText {
    /// The decoded text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.joined()))
    }
}

/// How many bytes at the end of `b` are an unfinished character: a valid
/// prefix of a multi-byte sequence that more bytes could complete (0 to 3).
/// Only the last three bytes are looked at; whether the rest is UTF-8 is the
/// writer's business.
pub(crate) fn unfinished_tail(b: &[u8]) -> usize {
    let n = b.len();
    for k in 1..=n.min(3) {
        let lead = b[n - k];
        if lead & 0xc0 == 0x80 {
            continue; // a continuation byte: the sequence starts further back
        }
        let need = match lead {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 0,
        };
        let prefix = k < need
            && std::str::from_utf8(&b[n - k..])
                .err()
                .is_some_and(|e| e.valid_up_to() == 0 && e.error_len().is_none());
        return if prefix { k } else { 0 };
    }
    0
}

/// One of an exec session's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// stdout, or the whole output of a pty session.
    Stdout,
    /// stderr.
    Stderr,
}

/// Unfinished UTF-8 of each output stream of a session.
#[derive(Debug, Default)]
pub(crate) struct Carries {
    stdout: Utf8Carry,
    stderr: Utf8Carry,
}

impl Carries {
    pub fn of(&mut self, stream: Stream) -> &mut Utf8Carry {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }
}

/// Carries the unfinished tail of a UTF-8 stream between frames: at most
/// three bytes of a character the next frame of the stream completes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Utf8Carry {
    tail: [u8; 3],
    len: usize,
}

impl Utf8Carry {
    /// Appends `data` (which lies inside `within`, when that is given) after
    /// the carried tail to `out`, keeping back an unfinished character at
    /// its end; [`LogText::push`] decides whether the run is copied.
    pub fn push_into(&mut self, data: &[u8], within: Option<&Bytes>, out: &mut LogText) {
        let carried = &self.tail[..self.len];
        if data.len() < 3 && !carried.is_empty() {
            // The unfinished character may start in the carried bytes.
            let mut joined = [0u8; 5];
            let n = carried.len() + data.len();
            joined[..carried.len()].copy_from_slice(carried);
            joined[carried.len()..n].copy_from_slice(data);
            let done = n - unfinished_tail(&joined[..n]);
            self.save(&joined[done..n]);
            out.push(&joined[..done], None);
            return;
        }
        out.push(carried, None);
        let keep = unfinished_tail(data);
        self.save(&data[data.len() - keep..]);
        out.push(&data[..data.len() - keep], within);
    }

    fn save(&mut self, tail: &[u8]) {
        self.len = tail.len();
        self.tail[..tail.len()].copy_from_slice(tail);
    }

    /// Whether an unfinished character waits.
    pub fn is_carrying(&self) -> bool {
        self.len > 0
    }

    /// The stream ended: whatever is carried is not a character (one
    /// U+FFFD). True if there was something.
    pub fn finish(&mut self, out: &mut LogText) -> bool {
        let had = self.len > 0;
        if had {
            self.len = 0;
            out.push_replacement();
        }
        had
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_logtext_unfinished_tail_only_for_valid_prefixes() {
        let euro = "€".as_bytes();
        assert_eq!(unfinished_tail(b"abc"), 0);
        assert_eq!(unfinished_tail(&euro[..1]), 1);
        assert_eq!(unfinished_tail(&[b'a', euro[0], euro[1]]), 2);
        assert_eq!(unfinished_tail(euro), 0, "complete");
        assert_eq!(
            unfinished_tail(&[0xe2, 0x28]),
            0,
            "not a continuation: invalid now"
        );
        assert_eq!(unfinished_tail(&[0xe0, 0x80]), 0, "overlong: never valid");
        assert_eq!(unfinished_tail(&[0xf0, 0x9f, 0x98]), 3);
        assert_eq!(unfinished_tail(&[0x98]), 0, "a lone continuation");
        assert_eq!(unfinished_tail(&[0xff]), 0);
    }

    #[test]
    fn core_logtext_decodes_pieces_as_one_stream() {
        let euro = Bytes::from_static("a€b".as_bytes());
        let mut t = LogText::new();
        t.push(&euro[..2], Some(&euro));
        t.push(&euro[2..], Some(&euro));
        t.push_replacement();
        assert_eq!(t.to_string(), "a€b\u{FFFD}");
        assert_eq!(t.byte_len(), 5 + 3);
        assert_eq!(t.pieces.len(), 1, "short runs share one buffer");
    }

    /// A long run stays a slice of its frame; one that does not lie inside
    /// the bytes offered, or a short one, is copied; the text is the same.
    #[test]
    fn core_logtext_long_runs_are_shared_not_copied() {
        let frame = Bytes::from(vec![b'x'; 3 * SHARE_MIN]);
        let run = &frame[SHARE_MIN..2 * SHARE_MIN];
        let mut t = LogText::new();
        t.push(run, Some(&frame));
        t.push(b"yz", Some(&frame));
        t.push(run, None);
        match &t.pieces[..] {
            [Piece::Shared(a), Piece::Copied(b)] => {
                assert_eq!(a.as_ptr(), run.as_ptr(), "no copy");
                assert_eq!(b.len(), 2 + SHARE_MIN);
            }
            other => panic!("pieces {other:?}"),
        }
        let elsewhere = vec![b'w'; SHARE_MIN];
        t.push(&elsewhere, Some(&frame));
        assert_eq!(t.pieces.len(), 2, "not inside the frame: copied");
        assert_eq!(t.byte_len(), 3 * SHARE_MIN + 2);
        let want = [run, b"yz", run, &elsewhere[..]].concat();
        assert_eq!(&t.joined()[..], &want[..]);
    }

    /// A record's copied buffer is trimmed to its bytes before the writer's
    /// queue counts it.
    #[test]
    fn core_logtext_shrink_gives_back_the_slack() {
        let mut t = LogText::new();
        for _ in 0..100 {
            t.push(b"abc", None);
        }
        let cap = |t: &LogText| match &t.pieces[..] {
            [Piece::Copied(b)] => b.capacity(),
            other => panic!("pieces {other:?}"),
        };
        assert!(cap(&t) > 300, "grown by doubling");
        t.shrink_to_fit();
        assert_eq!(cap(&t), 300);
    }

    fn push(c: &mut Utf8Carry, data: &[u8]) -> String {
        let mut t = LogText::new();
        c.push_into(data, None, &mut t);
        t.to_string()
    }

    fn finish(c: &mut Utf8Carry) -> Option<String> {
        let mut t = LogText::new();
        c.finish(&mut t).then(|| t.to_string())
    }

    #[test]
    fn core_tap_split_character_emitted_whole() {
        let euro = "€".as_bytes(); // three bytes
        for cut in 1..euro.len() {
            let mut c = Utf8Carry::default();
            let a = push(&mut c, &[b"a", &euro[..cut]].concat());
            let b = push(&mut c, &[&euro[cut..], b"b"].concat());
            assert_eq!((a.as_str(), b.as_str()), ("a", "€b"), "cut {cut}");
            assert_eq!(finish(&mut c), None);
        }
    }

    /// Same text as the standard lossy decode of the whole stream, however
    /// it is cut.
    #[test]
    fn core_tap_matches_lossy_decode_of_whole_stream() {
        let stream: Vec<u8> = b"ok \xe2\x82\xac \xff\xfe \xf0\x9f\x98\x80 \xe2\x82 x \xc3"
            .iter()
            .copied()
            .cycle()
            .take(200)
            .collect();
        let whole = String::from_utf8_lossy(&stream);
        for step in 1..9 {
            let mut c = Utf8Carry::default();
            let mut got: String = stream.chunks(step).map(|ch| push(&mut c, ch)).collect();
            got.extend(finish(&mut c));
            assert_eq!(got, whole, "chunks of {step}");
        }
    }

    #[test]
    fn core_tap_invalid_bytes_become_replacement() {
        let mut c = Utf8Carry::default();
        assert_eq!(push(&mut c, b"x\xffy"), "x\u{fffd}y");
        assert_eq!(push(&mut c, b"\xe2\x82"), "");
        assert_eq!(finish(&mut c).as_deref(), Some("\u{fffd}"));
    }
}
