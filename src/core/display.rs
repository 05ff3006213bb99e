//! [`Event`] and [`Action`] in words, one line each, for traces and logs:
//! what a frame is (id, flags, type, size) rather than its bytes, and what a
//! record holds (session, source, size, its first characters). Text only:
//! nothing parses it, and no decision reads it.

use std::fmt;

use super::{Action, Event};
use crate::wire::{PREFIX_LEN, peek_envelope};

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::GuestBytes(b) => write!(f, "GuestBytes {}B", b.len()),
            Event::GuestWritten(n) => write!(f, "GuestWritten {n}"),
            Event::GuestClosed => f.write_str("GuestClosed"),
            Event::ClientConnected(c) => write!(f, "ClientConnected {c}"),
            Event::ClientBytes(c, b) => write!(f, "ClientBytes {c} {}B", b.len()),
            Event::ClientWritten(c, n) => write!(f, "ClientWritten {c} {n}"),
            Event::ClientDisconnected(c) => write!(f, "ClientDisconnected {c}"),
            Event::Tick => f.write_str("Tick"),
            Event::WallClock(w) => write!(f, "WallClock {w}"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Handshake { client, bytes } => {
                write!(f, "Handshake {client} {}B", bytes.len())
            }
            Action::ToClient { client, frame } => {
                write!(f, "ToClient {client} {}", FrameWords(frame))
            }
            Action::ToGuest { frame } => write!(f, "ToGuest {}", FrameWords(frame)),
            Action::Refuse { client, reason } => write!(f, "Refuse {client}: {reason}"),
            Action::CloseClient { client, reason } => write!(f, "CloseClient {client}: {reason}"),
            Action::PauseClient(c) => write!(f, "PauseClient {c}"),
            Action::ResumeClient(c) => write!(f, "ResumeClient {c}"),
            Action::Log(r) => {
                let text = r.text.to_string();
                let head: String = text.chars().take(24).collect();
                write!(
                    f,
                    "Log {:?} {} {}B {head:?}..",
                    r.session,
                    r.source.as_str(),
                    text.len()
                )
            }
            Action::GuestCorrupt { error, skipped } => {
                write!(f, "GuestCorrupt skipped {skipped}: {error}")
            }
            Action::Ready => f.write_str("Ready"),
            Action::Drain => f.write_str("Drain"),
            Action::FlushExpired { client } => write!(f, "FlushExpired {client}"),
            Action::StartupFailed(why) => write!(f, "StartupFailed: {why}"),
            Action::PauseGuest => f.write_str("PauseGuest"),
            Action::ResumeGuest => f.write_str("ResumeGuest"),
        }
    }
}

/// A whole frame in words: id, flags, type (`?` when its envelope does not
/// decode, as for a raw bulk record), size.
struct FrameWords<'a>(&'a [u8]);

impl fmt::Display for FrameWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.0;
        if frame.len() < PREFIX_LEN {
            return write!(f, "{} bytes", frame.len());
        }
        let id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        write!(f, "id={id} flags={:#x} ", frame[8])?;
        match peek_envelope(&frame[PREFIX_LEN..]) {
            Ok(e) => write!(f, "{}", e.t)?,
            Err(_) => f.write_str("?")?,
        }
        write!(f, " {}B", frame.len())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::core::{Action, ClientId, Event};

    #[test]
    fn events_and_actions_read_as_one_line_each() {
        let c = ClientId(3);
        assert_eq!(
            Event::ClientBytes(c, b"abc").to_string(),
            "ClientBytes client#3 3B"
        );
        assert_eq!(Event::Tick.to_string(), "Tick");
        let short = Action::ToGuest {
            frame: Bytes::from_static(&[0, 0, 0, 1]),
        };
        assert_eq!(short.to_string(), "ToGuest 4 bytes");
        let raw = Action::ToClient {
            client: c,
            frame: Bytes::from_static(&[0, 0, 0, 6, 0, 0, 0, 7, 8, 1, 2]),
        };
        assert_eq!(raw.to_string(), "ToClient client#3 id=7 flags=0x8 ? 11B");
        assert_eq!(Action::Drain.to_string(), "Drain");
    }
}
