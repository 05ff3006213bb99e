//! JSON string escaping for exec.log, at memory speed: bytes that are not
//! UTF-8 become U+FFFD (as `String::from_utf8_lossy`), and the result is
//! escaped exactly as `serde_json` escapes a string (`"` and `\` with a
//! backslash, `\b \f \n \r \t`, other control characters as `\u00xx` in
//! lowercase hex, everything else as is). Runs that need no escaping are
//! found eight bytes at a time and copied in one go.
//!
//! `tests/exec_log_escape.rs` and the `json_escape` fuzz target hold it equal
//! to `serde_json::to_string(&String::from_utf8_lossy(bytes))`.

/// The UTF-8 of U+FFFD.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Appends `bytes`, decoded lossily and escaped, between double quotes.
pub fn push_string_lossy(bytes: &[u8], out: &mut Vec<u8>) {
    push_runs_lossy([bytes], out);
}

/// Appends the runs of bytes, decoded lossily and escaped one after the
/// other, between double quotes: one JSON string. Equal to
/// [`push_string_lossy`] of the runs joined when no run but the last ends
/// inside a character (a valid prefix of one), which the caller ensures.
pub fn push_runs_lossy<'a>(runs: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    out.push(b'"');
    for run in runs {
        push_lossy(run, out);
    }
    out.push(b'"');
}

/// Appends `bytes`, decoded lossily and escaped.
fn push_lossy(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    // `from_utf8` validates a run at memory speed; only where it stops does
    // the slower look at the invalid bytes happen.
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_escaped(s.as_bytes(), out);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                push_escaped(valid, out);
                out.extend_from_slice(REPLACEMENT);
                match e.error_len() {
                    Some(n) => rest = &after[n..],
                    None => break, // an unfinished character at the very end
                }
            }
        }
    }
}

/// Appends valid UTF-8, escaped.
fn push_escaped(s: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    while start < s.len() {
        let run = clean_run(&s[start..]);
        out.extend_from_slice(&s[start..start + run]);
        start += run;
        if let Some(&b) = s.get(start) {
            push_escape(b, out);
            start += 1;
        }
    }
}

/// How many leading bytes of `s` need no escaping.
fn clean_run(s: &[u8]) -> usize {
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        if needs_escape(w) {
            break;
        }
        i += 8;
    }
    while let Some(&b) = s.get(i) {
        if b < 0x20 || b == b'"' || b == b'\\' {
            break;
        }
        i += 1;
    }
    i
}

/// Whether any byte of `w` is below 0x20, a `"` or a `\` (the zero-byte
/// trick: a lane goes negative only if it was below the subtrahend).
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let zero_of = |x: u64| below(x, 1);
    below(w, 0x20) | zero_of(w ^ (ONES * u64::from(b'"'))) | zero_of(w ^ (ONES * u64::from(b'\\')))
        != 0
}

fn push_escape(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
            return;
        }
    };
    out.push(b'\\');
    out.push(short);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(b: &[u8]) -> String {
        let mut out = Vec::new();
        push_string_lossy(b, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_escapes_as_serde_json_does() {
        assert_eq!(
            esc(b"plain text, longer than a word"),
            "\"plain text, longer than a word\""
        );
        let want = "\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f\u{7f}\"";
        assert_eq!(esc(b"a\"b\\c\nd\te\x01\x1f\x7f"), want);
        assert_eq!(esc(b"\x08\x0c\r"), r#""\b\f\r""#);
        assert_eq!(
            esc(b"ok \xff \xe2\x82 \xe2\x82\xac"),
            "\"ok \u{FFFD} \u{FFFD} €\""
        );
    }

    #[test]
    fn json_word_scan_finds_every_special_byte_in_any_lane() {
        for special in [0u8, 0x1f, b'"', b'\\'] {
            for lane in 0..8 {
                let mut w = [b'a'; 8];
                w[lane] = special;
                assert!(
                    needs_escape(u64::from_le_bytes(w)),
                    "{special:#x} in lane {lane}"
                );
            }
        }
        for clean in [0x20u8, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
            assert!(!needs_escape(u64::from_le_bytes([clean; 8])), "{clean:#x}");
        }
    }
}
