//! Why a party's input was refused, as values: [`Violation`] names the rule
//! a client broke (it costs that client its connection and nothing else;
//! rule `corrupt_client_isolated`), [`GuestCorruption`] what was wrong with
//! a stretch of guest input the relay skipped (rule `guest_resync`). The
//! `Display` text is what the log shows; tests and the simulator compare the
//! variants.

use crate::wire::lease::LeaseError;
use crate::wire::{BulkError, EnvelopeError, FrameError, MsgType};

use super::layout::IdRange;

/// The oldest envelope generation a current guest takes from a client: the
/// first that agentd answers with `core.error` when it cannot read a
/// payload (older senders' unreadable payloads end its loop).
pub const MIN_CURRENT_V: u64 = 5;

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
    /// Current generation: flags that are none of the five the protocol
    /// defines.
    UndefinedFlags {
        /// The frame's id.
        id: u32,
        /// The flags it carried.
        flags: u8,
    },
    /// A raw bulk record whose header does not check.
    BadBulk {
        /// The frame's id.
        id: u32,
        /// What is wrong with it.
        error: BulkError,
    },
    /// A raw bulk record that says it flows from the guest.
    BulkFlow {
        /// The frame's id.
        id: u32,
        /// The flow it named.
        flow: u8,
    },
    /// A raw bulk record for an id the sender has nothing open on.
    BulkWithoutCorrelation {
        /// The frame's id.
        id: u32,
    },
    /// More sessions open at once than the relay keeps for one client.
    TooManyCorrelations {
        /// The frame's id.
        id: u32,
        /// The bound.
        max: usize,
    },
    /// Current generation: a frame with no body (agentd cannot decode one).
    EmptyBody {
        /// The frame's id.
        id: u32,
    },
    /// Current generation: an envelope of a generation below 5, which agentd
    /// cannot answer with `core.error`, so a payload it cannot read would
    /// end its loop.
    OldGeneration {
        /// The frame's id.
        id: u32,
        /// The envelope's `v`.
        v: u64,
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
            Violation::BadExecRequest { id, error } => match error {
                EnvelopeError::Malformed(why) => write!(
                    f,
                    "{} frame {id}: payload does not decode: {why}",
                    MsgType::ExecRequest
                ),
                other => write!(f, "{} frame {id}: payload: {other}", MsgType::ExecRequest),
            },
            Violation::SessionAlreadyOpen { id, t } => {
                write!(f, "{t} frame {id}: session {id} is already open")
            }
            Violation::UndefinedFlags { id, flags } => write!(
                f,
                "frame {id} carries flags {flags:#04x}: not one of 0x00, 0x01, 0x02, 0x04, 0x08"
            ),
            Violation::BadBulk { id, error } => write!(f, "bulk frame {id}: {error}"),
            Violation::BulkFlow { id, flow } => write!(
                f,
                "bulk frame {id} names flow {flow}; a client may only send flow 1 (host to guest)"
            ),
            Violation::BulkWithoutCorrelation { id } => {
                write!(f, "bulk frame {id}: nothing is open on id {id}")
            }
            Violation::TooManyCorrelations { id, max } => write!(
                f,
                "frame {id} would open a session past the bound of {max} open correlations"
            ),
            Violation::EmptyBody { id } => write!(
                f,
                "frame {id} has no envelope; the guest agent cannot decode an empty body"
            ),
            Violation::OldGeneration { id, v } => write!(
                f,
                "frame {id} is of protocol generation {v}; a current guest takes generation {MIN_CURRENT_V} and later (it cannot answer an older sender's unreadable payload)"
            ),
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
    /// A current-generation frame whose flags are none the protocol defines.
    Flags(u8),
    /// A raw bulk record whose header does not check.
    Bulk(BulkError),
    /// A range-lease record that does not check.
    Lease(LeaseError),
    /// A range-lease record of event *connected*, which only the relay sends.
    LeaseConnected,
}

impl std::fmt::Display for GuestCorruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestCorruption::Frame(e) => write!(f, "{e}"),
            GuestCorruption::Envelope(e) => write!(f, "frame envelope: {e}"),
            GuestCorruption::Flags(flags) => {
                write!(f, "frame flags {flags:#04x} are none the protocol defines")
            }
            GuestCorruption::Bulk(e) => write!(f, "{e}"),
            GuestCorruption::Lease(e) => write!(f, "{e}"),
            GuestCorruption::LeaseConnected => {
                f.write_str("a connected lease record from the guest (only the relay sends one)")
            }
        }
    }
}

impl std::error::Error for GuestCorruption {}
