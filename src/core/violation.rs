//! Why a party's input was refused, as values: [`Violation`] names the rule
//! a client broke (it costs that client its connection and nothing else;
//! rule `corrupt_client_isolated`), [`GuestCorruption`] what was wrong with
//! a stretch of guest input the relay skipped (rule `guest_resync`). The
//! `Display` text is what the log shows; tests and the simulator compare the
//! variants.

use crate::wire::{EnvelopeError, FrameError, MsgType};

use super::slot::IdRange;

/// The protocol rule a client broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// It sent bytes before its handshake (it cannot know its id range yet).
    BeforeHandshake {
        /// Bytes it sent.
        bytes: usize,
    },
    /// A length field outside the protocol limits.
    BadLength(FrameError),
    /// A frame id outside the client's own range (rule `own_range_only`).
    OutOfRange {
        /// The frame's id.
        id: u32,
        /// The range the client owns.
        range: IdRange,
    },
    /// An envelope that does not decode.
    Envelope {
        /// The frame's id.
        id: u32,
        /// What is wrong with it.
        error: EnvelopeError,
    },
    /// A message type only the guest may send.
    NotClientType {
        /// The frame's id.
        id: u32,
        /// The type.
        t: MsgType,
    },
    /// Header flags other than the type's.
    WrongFlags {
        /// The frame's id.
        id: u32,
        /// The type.
        t: MsgType,
        /// The flags it carried.
        flags: u8,
        /// The flags the type requires.
        required: u8,
    },
    /// A `core.exec.request` whose payload does not decode.
    BadExecRequest {
        /// The frame's id.
        id: u32,
        /// What is wrong with it.
        error: EnvelopeError,
    },
    /// A session-opening frame for an id whose session is still open.
    SessionAlreadyOpen {
        /// The frame's id.
        id: u32,
        /// The type.
        t: MsgType,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::BeforeHandshake { bytes } => {
                write!(f, "sent {bytes} bytes before its handshake")
            }
            Violation::BadLength(e) => write!(f, "{e}"),
            Violation::OutOfRange { id, range } => write!(
                f,
                "frame id {id} is outside its range {}..{}",
                range.start, range.end
            ),
            Violation::Envelope { id, error } => write!(f, "frame {id}: {error}"),
            Violation::NotClientType { id, t } => write!(f, "frame {id}: clients may not send {t}"),
            Violation::WrongFlags {
                id,
                t,
                flags,
                required,
            } => write!(
                f,
                "{t} frame {id} carries flags {flags:#04x}, the type requires {required:#04x}"
            ),
            Violation::BadExecRequest { id, error } => {
                write!(f, "{} frame {id}: payload: {error}", MsgType::ExecRequest)
            }
            Violation::SessionAlreadyOpen { id, t } => {
                write!(f, "{t} frame {id}: session {id} is already open")
            }
        }
    }
}

impl std::error::Error for Violation {}

/// What was wrong with guest input the relay skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestCorruption {
    /// A length field outside the limits, a resync candidate that was not a
    /// frame start, or the stream ending mid-frame.
    Frame(FrameError),
    /// A frame whose envelope does not decode.
    Envelope(EnvelopeError),
}

impl std::fmt::Display for GuestCorruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestCorruption::Frame(e) => write!(f, "{e}"),
            GuestCorruption::Envelope(e) => write!(f, "frame envelope: {e}"),
        }
    }
}

impl std::error::Error for GuestCorruption {}
