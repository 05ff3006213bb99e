//! The exec.log tap: exec output becomes text records without ever splitting
//! a UTF-8 character. Each session stream keeps at most three bytes of an
//! unfinished character until the next frame of that stream completes it.

/// Carries the unfinished tail of a UTF-8 stream between frames.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Utf8Carry {
    tail: Vec<u8>,
}

impl Utf8Carry {
    /// Decodes `data` after the carried tail; an incomplete character at the
    /// end is kept for next time, truly invalid bytes become U+FFFD.
    pub fn push(&mut self, data: &[u8]) -> String {
        let mut out = String::new();
        self.push_into(data, &mut out);
        out
    }

    /// As [`Utf8Carry::push`], appending to `out` (no allocation of its own
    /// when `out` has room and no character was split).
    pub fn push_into(&mut self, data: &[u8], out: &mut String) {
        let mut joined;
        let bytes: &[u8] = if self.tail.is_empty() {
            data
        } else {
            joined = std::mem::take(&mut self.tail);
            joined.extend_from_slice(data);
            &joined
        };
        if let Ok(s) = std::str::from_utf8(bytes) {
            out.push_str(s);
            return;
        }
        let mut chunks = bytes.utf8_chunks().peekable();
        while let Some(chunk) = chunks.next() {
            out.push_str(chunk.valid());
            let bad = chunk.invalid();
            if bad.is_empty() {
                continue;
            }
            // Only the very end can be a character still arriving.
            let unfinished = chunks.peek().is_none()
                && std::str::from_utf8(bad).is_err_and(|e| e.error_len().is_none());
            if unfinished {
                self.tail = bad.to_vec();
            } else {
                out.push(char::REPLACEMENT_CHARACTER);
            }
        }
    }

    /// The stream ended: whatever is carried is not a character.
    pub fn finish(&mut self) -> Option<String> {
        (!self.tail.is_empty()).then(|| {
            self.tail.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_tap_split_character_emitted_whole() {
        let euro = "€".as_bytes(); // three bytes
        for cut in 1..euro.len() {
            let mut c = Utf8Carry::default();
            let a = c.push(&[b"a", &euro[..cut]].concat());
            let b = c.push(&[&euro[cut..], b"b"].concat());
            assert_eq!((a.as_str(), b.as_str()), ("a", "€b"), "cut {cut}");
            assert_eq!(c.finish(), None);
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
            let mut got: String = stream.chunks(step).map(|ch| c.push(ch)).collect();
            got.extend(c.finish());
            assert_eq!(got, whole, "chunks of {step}");
        }
    }

    #[test]
    fn core_tap_invalid_bytes_become_replacement() {
        let mut c = Utf8Carry::default();
        assert_eq!(c.push(b"x\xffy"), "x\u{fffd}y");
        assert_eq!(c.push(b"\xe2\x82"), "");
        assert_eq!(c.finish().as_deref(), Some("\u{fffd}"));
    }
}
