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
        let mut joined;
        let bytes: &[u8] = if self.tail.is_empty() {
            data
        } else {
            joined = std::mem::take(&mut self.tail);
            joined.extend_from_slice(data);
            &joined
        };
        let mut out = String::with_capacity(bytes.len());
        let mut rest = bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // from_utf8 just validated `good`.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        None => {
                            self.tail = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
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

    #[test]
    fn core_tap_invalid_bytes_become_replacement() {
        let mut c = Utf8Carry::default();
        assert_eq!(c.push(b"x\xffy"), "x\u{fffd}y");
        assert_eq!(c.push(b"\xe2\x82"), "");
        assert_eq!(c.finish().as_deref(), Some("\u{fffd}"));
    }
}
