//! The message table: every fact about a message type in one row (its wire
//! name, the flags its frames carry, who may send it, whether it overtakes
//! queued data toward the guest, what session it opens, whether protocol
//! 0.4.4 has it). Every question the rest of the crate asks about a type is
//! answered from [`MsgType::info`]; its `match` has no catch-all arm, so a new
//! variant cannot compile without a whole row.

use super::{FLAG_SESSION_START, FLAG_SHUTDOWN, FLAG_TERMINAL};

/// Every message type of protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(strum::EnumIter))]
pub enum MsgType {
    /// `core.ready`: the guest agent is up (guest -> host).
    Ready,
    /// `core.shutdown`: drain the sandbox (host -> guest).
    Shutdown,
    /// `core.exec.request`: start a process (opens a session).
    ExecRequest,
    /// `core.exec.started`: the process runs, with its pid.
    ExecStarted,
    /// `core.exec.stdin`: bytes for the process's stdin.
    ExecStdin,
    /// `core.exec.stdout`: bytes from the process's stdout (or its pty).
    ExecStdout,
    /// `core.exec.stderr`: bytes from the process's stderr.
    ExecStderr,
    /// `core.exec.exited`: the process exited (ends the session).
    ExecExited,
    /// `core.exec.failed`: the process could not start (ends the session).
    ExecFailed,
    /// `core.exec.resize`: new pty size.
    ExecResize,
    /// `core.exec.signal`: deliver a signal to the process.
    ExecSignal,
    /// `core.fs.request`: a filesystem operation (opens a session).
    FsRequest,
    /// `core.fs.response`: its result (ends the session).
    FsResponse,
    /// `core.fs.data`: a chunk of file content, either way.
    FsData,
}

/// Who may put a message type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Senders {
    /// The guest agent, toward the host.
    pub guest: bool,
    /// A host SDK client, toward the guest.
    pub client: bool,
    /// The relay itself, toward the guest (its kills).
    pub relay: bool,
}

/// The session a message type opens (its frames carry SESSION_START).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opens {
    /// Nothing: the type opens no session.
    Nothing,
    /// An exec session, whose output the tap logs and which a departure kills.
    Exec,
    /// A filesystem session.
    Fs,
}

/// One row of the message table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgInfo {
    /// The type's name on the wire.
    pub name: &'static str,
    /// The header flags a frame of this type carries.
    pub flags: u8,
    /// Who may send it.
    pub senders: Senders,
    /// It overtakes queued data frames of other sessions toward the guest
    /// (rule `control_overtakes_data`).
    pub overtakes: bool,
    /// The session it opens.
    pub opens: Opens,
    /// Protocol 0.4.4 defines it.
    pub legacy: bool,
}

const GUEST: Senders = Senders {
    guest: true,
    client: false,
    relay: false,
};
const CLIENT: Senders = Senders {
    guest: false,
    client: true,
    relay: false,
};
const BOTH: Senders = Senders {
    guest: true,
    client: true,
    relay: false,
};
/// Clients send it, and the relay does too (the kills of a departed client).
const CLIENT_AND_RELAY: Senders = Senders {
    guest: false,
    client: true,
    relay: true,
};

/// A row; `overtakes` and `opens` are given by the callers that need them.
const fn row(name: &'static str, flags: u8, senders: Senders) -> MsgInfo {
    MsgInfo {
        name,
        flags,
        senders,
        overtakes: false,
        opens: Opens::Nothing,
        legacy: true,
    }
}

const fn overtaking(info: MsgInfo) -> MsgInfo {
    MsgInfo {
        overtakes: true,
        ..info
    }
}

const fn opening(info: MsgInfo, opens: Opens) -> MsgInfo {
    MsgInfo { opens, ..info }
}

impl MsgType {
    /// All types, in declaration order.
    pub const ALL: [MsgType; 14] = [
        MsgType::Ready,
        MsgType::Shutdown,
        MsgType::ExecRequest,
        MsgType::ExecStarted,
        MsgType::ExecStdin,
        MsgType::ExecStdout,
        MsgType::ExecStderr,
        MsgType::ExecExited,
        MsgType::ExecFailed,
        MsgType::ExecResize,
        MsgType::ExecSignal,
        MsgType::FsRequest,
        MsgType::FsResponse,
        MsgType::FsData,
    ];

    /// The type's row in the message table.
    pub const fn info(self) -> MsgInfo {
        use MsgType as M;
        const T: u8 = FLAG_TERMINAL;
        const S: u8 = FLAG_SESSION_START;
        match self {
            M::Ready => row("core.ready", 0, GUEST),
            M::Shutdown => overtaking(row("core.shutdown", FLAG_SHUTDOWN, CLIENT)),
            M::ExecRequest => opening(row("core.exec.request", S, CLIENT), Opens::Exec),
            M::ExecStarted => row("core.exec.started", 0, GUEST),
            M::ExecStdin => row("core.exec.stdin", 0, CLIENT),
            M::ExecStdout => row("core.exec.stdout", 0, GUEST),
            M::ExecStderr => row("core.exec.stderr", 0, GUEST),
            M::ExecExited => row("core.exec.exited", T, GUEST),
            M::ExecFailed => row("core.exec.failed", T, GUEST),
            M::ExecResize => overtaking(row("core.exec.resize", 0, CLIENT)),
            M::ExecSignal => overtaking(row("core.exec.signal", 0, CLIENT_AND_RELAY)),
            M::FsRequest => opening(row("core.fs.request", S, CLIENT), Opens::Fs),
            M::FsResponse => row("core.fs.response", T, GUEST),
            M::FsData => row("core.fs.data", 0, BOTH),
        }
    }

    /// The type's name on the wire.
    pub const fn as_str(self) -> &'static str {
        self.info().name
    }

    /// Parses a wire name; `None` for a name protocol v1 does not define.
    pub fn from_wire(name: &[u8]) -> Option<MsgType> {
        MsgType::ALL
            .into_iter()
            .find(|t| t.as_str().as_bytes() == name)
    }

    /// The header flags a frame of this type must carry.
    pub const fn flags(self) -> u8 {
        self.info().flags
    }

    /// True for the types a host client may send to the guest.
    pub const fn client_may_send(self) -> bool {
        self.info().senders.client
    }

    /// Control frames overtake queued data frames of other sessions on the
    /// way to the guest (rule `control_overtakes_data`).
    pub const fn is_control(self) -> bool {
        self.info().overtakes
    }

    /// The session a frame of this type opens.
    pub const fn opens(self) -> Opens {
        self.info().opens
    }
}

impl std::fmt::Display for MsgType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn wire_msg_all_lists_every_variant_in_order() {
        let every: Vec<MsgType> = MsgType::iter().collect();
        assert_eq!(every, MsgType::ALL, "MsgType::ALL must list every variant");
    }

    #[test]
    fn wire_msg_names_round_trip_and_are_unique() {
        for t in MsgType::ALL {
            assert_eq!(MsgType::from_wire(t.as_str().as_bytes()), Some(t));
        }
        let mut names: Vec<&str> = MsgType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MsgType::ALL.len());
    }

    /// A session opener carries SESSION_START and nothing else does; every
    /// type has a sender; what overtakes is something a client sends.
    #[test]
    fn wire_msg_table_is_consistent() {
        for t in MsgType::ALL {
            let i = t.info();
            assert_eq!(
                i.opens != Opens::Nothing,
                i.flags & FLAG_SESSION_START != 0,
                "{t}"
            );
            assert!(super::super::flags_defined(i.flags), "{t}");
            assert!(
                i.senders.guest || i.senders.client || i.senders.relay,
                "{t}"
            );
            assert!(!i.overtakes || i.senders.client, "{t}");
            assert!(i.legacy, "{t}: protocol v1 defines only 0.4.4's types");
        }
    }
}
