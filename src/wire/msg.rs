//! The message table: every fact about a message type in one row (its wire
//! name, the flags its frames carry, who may send it, whether it overtakes
//! queued data toward the guest, what session it opens, whether protocol
//! 0.4.4 has it, its input-credit class, whether it is exec control). Every
//! question the rest of the crate asks about a type is answered from
//! [`MsgType::info`]; its `match` has no catch-all arm, so a new variant
//! cannot compile without a whole row.
//!
//! The rows are checked against `microsandbox-protocol` 0.7.13 (flags, credit
//! class, exec control) and 0.4.4 (the legacy inventory) by
//! `tests/wire_compat_current.rs`; who may send a type was read off the
//! crates' documentation and the upstream relay, by hand.

use super::{FLAG_SESSION_START, FLAG_SHUTDOWN, FLAG_TERMINAL};

/// Every message type the relay knows: the 14 of protocol 0.4.4 first, then
/// those the current generation added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(strum::EnumIter))]
pub enum MsgType {
    /// `core.ready`: the guest agent is up.
    Ready,
    /// `core.shutdown`: drain the sandbox.
    Shutdown,
    /// `core.exec.request`: start a process (opens an exec session).
    ExecRequest,
    /// `core.exec.started`: the process runs, with its pid.
    ExecStarted,
    /// `core.exec.stdin`: bytes for the process's stdin (empty: end of input).
    ExecStdin,
    /// `core.exec.stdout`: bytes from the process's stdout (or its pty).
    ExecStdout,
    /// `core.exec.stderr`: bytes from the process's stderr.
    ExecStderr,
    /// `core.exec.exited`: the process exited (ends the session).
    ExecExited,
    /// `core.exec.failed`: the process could not start (ends the session); the relay builds one for a request over the execution limit.
    ExecFailed,
    /// `core.exec.resize`: new pty size.
    ExecResize,
    /// `core.exec.signal`: deliver a signal to the process (the relay's kills too).
    ExecSignal,
    /// `core.fs.request`: a filesystem operation (opens an fs session).
    FsRequest,
    /// `core.fs.response`: its result (ends the session).
    FsResponse,
    /// `core.fs.data`: a chunk of file content, either way.
    FsData,
    /// `core.init.resolved`: the guest's init context, before ready.
    InitResolved,
    /// `core.init.ack`: the host took the init context (or saved an init failure).
    InitAck,
    /// `core.relay.client.disconnected`: the relay says one client's id range is gone.
    RelayClientDisconnected,
    /// `core.clock.sync`: the relay asks the guest to set its wall clock.
    ClockSync,
    /// `core.ping`: is the guest agent reachable? (answered on the same id).
    Ping,
    /// `core.pong`: the answer to a ping.
    Pong,
    /// `core.touch`: record sandbox activity (answered on the same id).
    Touch,
    /// `core.touched`: the answer to a touch.
    Touched,
    /// `core.workload.freeze`: freeze the workload (the runtime's, on the workload-control id).
    WorkloadFreeze,
    /// `core.workload.frozen`: the workload is frozen.
    WorkloadFrozen,
    /// `core.workload.thaw`: release a freeze (the runtime's, on the workload-control id).
    WorkloadThaw,
    /// `core.workload.thawed`: the workload runs again.
    WorkloadThawed,
    /// `core.workload.transport.credit`: cumulative input credit the guest grants the relay.
    WorkloadTransportCredit,
    /// `core.root_disk.prepare`: check root filesystem growth (answered with its state).
    RootDiskPrepare,
    /// `core.root_disk.grow`: grow the root filesystem (answered with its state).
    RootDiskGrow,
    /// `core.root_disk.state`: root filesystem and device capacities.
    RootDiskState,
    /// `core.error`: a recoverable protocol error (before ready on id 0: the guest failed to start).
    CoreError,
    /// `core.bulk.accepted`: the guest takes the raw-bulk offer of an operation.
    BulkAccepted,
    /// `core.bulk.credit`: a receiver's send limit for one bulk flow.
    BulkCredit,
    /// `core.bulk.finish`: a sender's final offset of one bulk flow.
    BulkFinish,
    /// `core.bulk.cancel`: stop a whole bulk correlation.
    BulkCancel,
    /// `core.exec.stdin.error`: a stdin write to the process failed (the session goes on).
    ExecStdinError,
    /// `core.exec.output.ack`: output window the client consumed.
    ExecOutputAck,
    /// `core.exec.stdin.ack`: stdin the process consumed.
    ExecStdinAck,
    /// `core.tcp.connect`: open a TCP connection inside the guest (opens a tcp session).
    TcpConnect,
    /// `core.tcp.connected`: the connection is open.
    TcpConnected,
    /// `core.tcp.data`: a chunk of the stream, either way.
    TcpData,
    /// `core.tcp.eof`: one side closed its write half.
    TcpEof,
    /// `core.tcp.close`: close the connection.
    TcpClose,
    /// `core.tcp.closed`: the connection is closed (ends the session).
    TcpClosed,
    /// `core.tcp.failed`: the connection failed (ends the session).
    TcpFailed,
    /// `core.bootstrap`: one-shot guest configuration, preloaded by the runtime.
    Bootstrap,
}

/// Who may put a message type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Senders {
    /// The guest agent, toward the host.
    pub guest: bool,
    /// A host SDK client, toward the guest, through the relay.
    pub client: bool,
    /// The relay itself (its kills, its notices, its clock).
    pub relay: bool,
    /// The runtime that owns the VM, on its own path (never through a client
    /// socket).
    pub runtime: bool,
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
    /// A TCP connection.
    Tcp,
}

/// The input-credit class of a frame toward a current-generation guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditClass {
    /// Requests, signals, acks, notices: everything that is not data.
    Control,
    /// Payload the guest may hold for a slow consumer: stdin, fs and tcp
    /// data, tcp end of stream (and every raw BULK frame).
    Data,
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
    /// It overtakes queued data frames toward the guest (rule
    /// `control_overtakes_data`).
    pub overtakes: bool,
    /// The session it opens.
    pub opens: Opens,
    /// Protocol 0.4.4 defines it.
    pub legacy: bool,
    /// Its input-credit class.
    pub credit: CreditClass,
    /// One of the current generation's bounded exec-control messages.
    pub exec_control: bool,
}

const fn senders(guest: bool, client: bool, relay: bool, runtime: bool) -> Senders {
    Senders {
        guest,
        client,
        relay,
        runtime,
    }
}

const GUEST: Senders = senders(true, false, false, false);
const CLIENT: Senders = senders(false, true, false, false);
const RELAY: Senders = senders(false, false, true, false);
const RUNTIME: Senders = senders(false, false, false, true);
/// Either end of a stream: guest and clients.
const BOTH: Senders = senders(true, true, false, false);
/// The guest, and the relay on its behalf toward a client.
const GUEST_RELAY: Senders = senders(true, false, true, false);
/// Clients, and the relay (the kills of a departed client).
const CLIENT_RELAY: Senders = senders(false, true, true, false);
/// Clients, and the runtime on its own path.
const CLIENT_RUNTIME: Senders = senders(false, true, false, true);

/// A legacy control row; the helpers below set the other columns.
const fn row(name: &'static str, flags: u8, senders: Senders) -> MsgInfo {
    MsgInfo {
        name,
        flags,
        senders,
        overtakes: false,
        opens: Opens::Nothing,
        legacy: true,
        credit: CreditClass::Control,
        exec_control: false,
    }
}

const fn current(info: MsgInfo) -> MsgInfo {
    MsgInfo {
        legacy: false,
        ..info
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

const fn data(info: MsgInfo) -> MsgInfo {
    MsgInfo {
        credit: CreditClass::Data,
        ..info
    }
}

const fn exec_control(info: MsgInfo) -> MsgInfo {
    MsgInfo {
        exec_control: true,
        ..info
    }
}

impl MsgType {
    /// All types, in declaration order.
    pub const ALL: [MsgType; 46] = [
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
        MsgType::InitResolved,
        MsgType::InitAck,
        MsgType::RelayClientDisconnected,
        MsgType::ClockSync,
        MsgType::Ping,
        MsgType::Pong,
        MsgType::Touch,
        MsgType::Touched,
        MsgType::WorkloadFreeze,
        MsgType::WorkloadFrozen,
        MsgType::WorkloadThaw,
        MsgType::WorkloadThawed,
        MsgType::WorkloadTransportCredit,
        MsgType::RootDiskPrepare,
        MsgType::RootDiskGrow,
        MsgType::RootDiskState,
        MsgType::CoreError,
        MsgType::BulkAccepted,
        MsgType::BulkCredit,
        MsgType::BulkFinish,
        MsgType::BulkCancel,
        MsgType::ExecStdinError,
        MsgType::ExecOutputAck,
        MsgType::ExecStdinAck,
        MsgType::TcpConnect,
        MsgType::TcpConnected,
        MsgType::TcpData,
        MsgType::TcpEof,
        MsgType::TcpClose,
        MsgType::TcpClosed,
        MsgType::TcpFailed,
        MsgType::Bootstrap,
    ];

    /// The type's row in the message table.
    pub const fn info(self) -> MsgInfo {
        use MsgType as M;
        const T: u8 = FLAG_TERMINAL;
        const S: u8 = FLAG_SESSION_START;
        match self {
            M::Ready => row("core.ready", 0, GUEST),
            M::Shutdown => overtaking(row("core.shutdown", FLAG_SHUTDOWN, CLIENT_RUNTIME)),
            M::ExecRequest => opening(row("core.exec.request", S, CLIENT), Opens::Exec),
            M::ExecStarted => row("core.exec.started", 0, GUEST),
            M::ExecStdin => data(row("core.exec.stdin", 0, CLIENT)),
            M::ExecStdout => row("core.exec.stdout", 0, GUEST),
            M::ExecStderr => row("core.exec.stderr", 0, GUEST),
            M::ExecExited => row("core.exec.exited", T, GUEST),
            M::ExecFailed => row("core.exec.failed", T, GUEST_RELAY),
            M::ExecResize => exec_control(overtaking(row("core.exec.resize", 0, CLIENT))),
            M::ExecSignal => exec_control(overtaking(row("core.exec.signal", 0, CLIENT_RELAY))),
            M::FsRequest => opening(row("core.fs.request", S, CLIENT), Opens::Fs),
            M::FsResponse => row("core.fs.response", T, GUEST),
            M::FsData => data(row("core.fs.data", 0, BOTH)),
            M::InitResolved => current(row("core.init.resolved", 0, GUEST)),
            M::InitAck => current(row("core.init.ack", 0, RELAY)),
            M::RelayClientDisconnected => current(row("core.relay.client.disconnected", 0, RELAY)),
            M::ClockSync => current(row("core.clock.sync", 0, RELAY)),
            M::Ping => current(row("core.ping", 0, CLIENT)),
            M::Pong => current(row("core.pong", T, GUEST)),
            M::Touch => current(row("core.touch", 0, CLIENT)),
            M::Touched => current(row("core.touched", T, GUEST)),
            M::WorkloadFreeze => current(row("core.workload.freeze", 0, RUNTIME)),
            M::WorkloadFrozen => current(row("core.workload.frozen", T, GUEST)),
            M::WorkloadThaw => current(row("core.workload.thaw", 0, RUNTIME)),
            M::WorkloadThawed => current(row("core.workload.thawed", T, GUEST)),
            M::WorkloadTransportCredit => current(row("core.workload.transport.credit", 0, GUEST)),
            M::RootDiskPrepare => current(row("core.root_disk.prepare", 0, CLIENT)),
            M::RootDiskGrow => current(row("core.root_disk.grow", 0, CLIENT)),
            M::RootDiskState => current(row("core.root_disk.state", T, GUEST)),
            M::CoreError => current(row("core.error", T, GUEST)),
            M::BulkAccepted => current(row("core.bulk.accepted", 0, GUEST)),
            M::BulkCredit => current(row("core.bulk.credit", 0, BOTH)),
            M::BulkFinish => current(row("core.bulk.finish", 0, BOTH)),
            M::BulkCancel => current(row("core.bulk.cancel", 0, BOTH)),
            M::ExecStdinError => current(row("core.exec.stdin.error", 0, GUEST)),
            M::ExecOutputAck => {
                exec_control(overtaking(current(row("core.exec.output.ack", 0, CLIENT))))
            }
            M::ExecStdinAck => exec_control(current(row("core.exec.stdin.ack", 0, GUEST))),
            M::TcpConnect => opening(current(row("core.tcp.connect", S, CLIENT)), Opens::Tcp),
            M::TcpConnected => current(row("core.tcp.connected", 0, GUEST)),
            M::TcpData => data(current(row("core.tcp.data", 0, BOTH))),
            M::TcpEof => data(current(row("core.tcp.eof", 0, BOTH))),
            M::TcpClose => current(row("core.tcp.close", 0, CLIENT)),
            M::TcpClosed => current(row("core.tcp.closed", T, GUEST)),
            M::TcpFailed => current(row("core.tcp.failed", T, GUEST)),
            M::Bootstrap => current(row("core.bootstrap", 0, RUNTIME)),
        }
    }

    /// The type's name on the wire.
    pub const fn as_str(self) -> &'static str {
        self.info().name
    }

    /// Parses a wire name; `None` for a name the relay does not know.
    ///
    /// Every frame's type is looked up, so the search compares one integer
    /// per type (the name's length and last eight bytes, unique across the
    /// table) and the whole name only once, for the one candidate.
    pub fn from_wire(name: &[u8]) -> Option<MsgType> {
        let key = name_key(name)?;
        let i = NAME_KEYS.iter().position(|&k| k == key)?;
        let t = MsgType::ALL[i];
        (t.as_str().as_bytes() == name).then_some(t)
    }

    /// The header flags a frame of this type must carry.
    pub const fn flags(self) -> u8 {
        self.info().flags
    }

    /// True for the types a host client may send to the guest.
    pub const fn client_may_send(self) -> bool {
        self.info().senders.client
    }

    /// Control frames overtake queued data frames on the way to the guest
    /// (rule `control_overtakes_data`).
    pub const fn is_control(self) -> bool {
        self.info().overtakes
    }

    /// The session a frame of this type opens.
    pub const fn opens(self) -> Opens {
        self.info().opens
    }

    /// The type's input-credit class.
    pub const fn credit(self) -> CreditClass {
        self.info().credit
    }
}

/// The shortest wire name (`core.ping`): every name has eight bytes to key on.
const MIN_NAME_LEN: usize = 9;

/// A name's search key: its length beside its last eight bytes.
const fn name_key(name: &[u8]) -> Option<(usize, u64)> {
    let len = name.len();
    if len < MIN_NAME_LEN {
        return None;
    }
    let mut last = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        last[i] = name[len - 8 + i];
        i += 1;
    }
    Some((len, u64::from_le_bytes(last)))
}

/// [`name_key`] of every type, in [`MsgType::ALL`]'s order.
const NAME_KEYS: [(usize, u64); MsgType::ALL.len()] = {
    let mut keys = [(0, 0); MsgType::ALL.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = match name_key(MsgType::ALL[i].as_str().as_bytes()) {
            Some(key) => key,
            None => panic!("a wire name shorter than MIN_NAME_LEN"),
        };
        i += 1;
    }
    keys
};

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
            let name = t.as_str().as_bytes();
            assert_eq!(MsgType::from_wire(name), Some(t));
            // A name that shares the key but not the rest is no type.
            let mut other = name.to_vec();
            other[0] = b'x';
            assert_eq!(MsgType::from_wire(&other), None, "{t}");
            assert_eq!(MsgType::from_wire(&name[1..]), None, "{t}");
        }
        let mut keys = NAME_KEYS.to_vec();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), MsgType::ALL.len(), "search keys are unique");
        assert_eq!(MsgType::from_wire(b"core.pin"), None);
        assert_eq!(MsgType::from_wire(b""), None);
        let mut names: Vec<&str> = MsgType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MsgType::ALL.len());
    }

    /// A session opener carries SESSION_START and nothing else does; every
    /// type has a sender; what overtakes is something a client sends; the 14
    /// legacy types come first.
    #[test]
    fn wire_msg_table_is_consistent() {
        for (i, t) in MsgType::ALL.into_iter().enumerate() {
            let info = t.info();
            assert_eq!(
                info.opens != Opens::Nothing,
                info.flags & FLAG_SESSION_START != 0,
                "{t}"
            );
            assert!(super::super::flags_defined(info.flags), "{t}");
            let s = info.senders;
            assert!(s.guest || s.client || s.relay || s.runtime, "{t}");
            assert!(!info.overtakes || info.senders.client, "{t}");
            assert_eq!(info.legacy, i < 14, "{t}: the 0.4.4 inventory comes first");
            assert!(
                !info.exec_control || info.name.starts_with("core.exec."),
                "{t}"
            );
        }
    }
}
