//! [`LogText`]: the text of an exec.log record as the core hands it over.
//! The tap must not cost the routing thread a copy of every output byte, so
//! a record holds the frames' payload bytes themselves (refcounted slices,
//! no copy) and the writer decodes them: bytes that are not UTF-8 become
//! U+FFFD, exactly as `String::from_utf8_lossy` of the pieces joined. The
//! core's part is the carry decision (rule `whole_characters`): a record's
//! bytes never end inside a character; the unfinished tail waits for the next
//! frame of its stream.

use bytes::{Bytes, BytesMut};

/// One piece of a record's text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Bytes, decoded with the pieces around them as one stream.
    Bytes(Bytes),
    /// One U+FFFD: a stream ended inside a character.
    Replacement,
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

    /// Appends bytes (no copy).
    pub fn push_bytes(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.pieces.push(Piece::Bytes(b));
        }
    }

    /// Appends one U+FFFD.
    pub fn push_replacement(&mut self) {
        self.len += REPLACEMENT.len();
        self.pieces.push(Piece::Replacement);
    }

    /// The bytes to decode, joined (borrowed when there is one piece).
    pub fn joined(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.pieces[..] {
            [] => std::borrow::Cow::Borrowed(&[][..]),
            [Piece::Bytes(b)] => std::borrow::Cow::Borrowed(&b[..]),
            pieces => {
                let mut out = BytesMut::with_capacity(self.len);
                for p in pieces {
                    match p {
                        Piece::Bytes(b) => out.extend_from_slice(b),
                        Piece::Replacement => out.extend_from_slice(REPLACEMENT),
                    }
                }
                std::borrow::Cow::Owned(out.to_vec())
            }
        }
    }
}

impl From<String> for LogText {
    fn from(s: String) -> LogText {
        let mut t = LogText::new();
        t.push_bytes(Bytes::from(s));
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
        t.push_bytes(euro.slice(..2));
        t.push_bytes(euro.slice(2..));
        t.push_replacement();
        assert_eq!(t.to_string(), "a€b\u{FFFD}");
        assert_eq!(t.byte_len(), 5 + 3);
    }
}
