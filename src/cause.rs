//! [`io_cause`]: an I/O error's cause in words, for messages that already
//! name the path and the operation. It owns wording only.

use std::io;

/// The cause of `error` in words: the system's message without its
/// `(os error N)` suffix, with a hint for the common cases, or the text of
/// an error made with a message of its own.
pub fn io_cause(error: &io::Error) -> String {
    if error.raw_os_error().is_none() {
        return match error.get_ref() {
            Some(inner) => inner.to_string(),
            None => error.kind().to_string(),
        };
    }
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let mut words = text.chars();
    let text = match words.next() {
        Some(first) => first.to_lowercase().chain(words).collect(),
        None => text,
    };
    match error.kind() {
        io::ErrorKind::ConnectionRefused => format!("{text} (nothing is listening there)"),
        io::ErrorKind::NotFound => format!("{text} (it does not exist)"),
        _ => text,
    }
}

/// `error` with what was being done and the path it is about, in words:
/// `"{what} {path}: {cause}"`, keeping the error's kind.
#[cfg_attr(not(feature = "shell"), allow(dead_code))]
pub fn io_context(error: &io::Error, what: &str, path: &std::path::Path) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("{what} {}: {}", path.display(), io_cause(error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_cause_drops_the_errno_and_keeps_custom_text() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(
            io_cause(&e),
            "no such file or directory (it does not exist)"
        );
        let e = io::Error::from_raw_os_error(13);
        assert_eq!(io_cause(&e), "permission denied");
        let e = io::Error::other("in words already");
        assert_eq!(io_cause(&e), "in words already");
    }
}
