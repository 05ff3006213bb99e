//! Why the model expects the relay to refuse a client: one [`Refusal`] per
//! rule a client frame can break, found by the model from the protocol (in
//! `model.rs`), and compared with the [`Violation`] variant the core chose
//! when it closes the client (`inv_isolation`). The comparison is by variant
//! and by the frame's id and flags, never by text.

use agent_relay::core::Violation;
use agent_relay::wire::MsgType;

/// The rule the model saw a client break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Bytes before its handshake.
    BeforeHandshake,
    /// A length field outside `5..=4 MiB`.
    BadLength,
    /// An id outside its range.
    OutOfRange { id: u32 },
    /// An envelope that does not decode (or, legacy, names a type 0.4.4
    /// lacks; current, one agentd's decoder cannot read: an unknown type, a
    /// `v` or `p` missing, repeated or of another kind).
    Envelope { id: u32 },
    /// A type only the guest, the relay or the runtime sends.
    NotClientType { id: u32, t: MsgType },
    /// Flags other than its type's.
    WrongFlags { id: u32, flags: u8 },
    /// An exec request whose payload does not decode.
    BadExecRequest { id: u32 },
    /// A session opened on an id that has one open.
    SessionAlreadyOpen { id: u32 },
    /// Current: flags none of the five defined values.
    UndefinedFlags { id: u32, flags: u8 },
    /// Current: a frame with no body (agentd cannot decode one).
    EmptyBody { id: u32 },
    /// Current: an envelope of a generation below 5 (agentd cannot answer
    /// such a sender with `core.error`).
    OldGeneration { id: u32 },
    /// Current: a raw bulk record whose header does not check.
    BadBulk { id: u32 },
    /// Current: a raw bulk record flowing from the guest.
    BulkFlow { id: u32, flow: u8 },
    /// Current: a raw bulk record on an id with nothing open.
    BulkWithoutCorrelation { id: u32 },
    /// More sessions open than the bound allows.
    TooManyCorrelations { id: u32 },
}

impl Refusal {
    /// Whether the core's `why` is this refusal: same variant, same id (and
    /// flags, where the variant names them).
    pub fn matches(self, why: &Violation) -> bool {
        use Refusal as R;
        match *why {
            Violation::BeforeHandshake { .. } => self == R::BeforeHandshake,
            Violation::BadLength(_) => self == R::BadLength,
            Violation::OutOfRange { id, .. } => self == R::OutOfRange { id },
            Violation::Envelope { id, .. } => self == R::Envelope { id },
            Violation::NotClientType { id, t } => self == R::NotClientType { id, t },
            Violation::WrongFlags { id, flags, .. } => self == R::WrongFlags { id, flags },
            Violation::BadExecRequest { id, .. } => self == R::BadExecRequest { id },
            Violation::SessionAlreadyOpen { id, .. } => self == R::SessionAlreadyOpen { id },
            Violation::UndefinedFlags { id, flags } => self == R::UndefinedFlags { id, flags },
            Violation::EmptyBody { id } => self == R::EmptyBody { id },
            Violation::OldGeneration { id, .. } => self == R::OldGeneration { id },
            Violation::BadBulk { id, .. } => self == R::BadBulk { id },
            Violation::BulkFlow { id, flow } => self == R::BulkFlow { id, flow },
            Violation::BulkWithoutCorrelation { id } => self == R::BulkWithoutCorrelation { id },
            Violation::TooManyCorrelations { id, .. } => self == R::TooManyCorrelations { id },
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_relay::core::{IdRange, Violation};
    use agent_relay::wire::{EnvelopeError, FrameError, MsgType};

    use super::Refusal;

    #[test]
    fn refusal_matches_its_variant_and_id_only() {
        let range = IdRange { start: 0, end: 10 };
        let out = Violation::OutOfRange { id: 12, range };
        assert!(Refusal::OutOfRange { id: 12 }.matches(&out));
        assert!(!Refusal::OutOfRange { id: 11 }.matches(&out));
        assert!(!Refusal::Envelope { id: 12 }.matches(&out));
        let flags = Violation::WrongFlags {
            id: 3,
            t: MsgType::ExecStdin,
            flags: 1,
            required: 0,
        };
        assert!(Refusal::WrongFlags { id: 3, flags: 1 }.matches(&flags));
        assert!(!Refusal::WrongFlags { id: 3, flags: 2 }.matches(&flags));
        let len = Violation::BadLength(FrameError::NoFrameStart);
        assert!(Refusal::BadLength.matches(&len));
        let env = Violation::Envelope {
            id: 1,
            error: EnvelopeError::TrailingBytes(1),
        };
        assert!(Refusal::Envelope { id: 1 }.matches(&env));
        assert!(!Refusal::BadExecRequest { id: 1 }.matches(&env));
    }
}
