//! The protocol facts the model judges by, spelled out here from
//! `docs/ARCHITECTURE.md`, `shared/PROTOCOL-CURRENT.md` and `ref/FACTS.md`
//! (P4/message.rs for the 0.4.4 inventory, P7/message.rs for the 0.7.13
//! flags and credit classes, RT/relay.rs for who may send what), rather than
//! taken from the wire layer's message table, so that a mistake there cannot
//! fool the model and the core alike.

use agent_relay::wire::MsgType;

use super::current::Class;

/// What a frame of a type opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `core.exec.request`.
    Exec,
    /// `core.fs.request`.
    Fs,
    /// `core.tcp.connect`.
    Tcp,
    /// Current generation: any other frame on an id with nothing open, until
    /// the guest's terminal reply.
    Request,
}

impl Kind {
    pub fn is_exec(self) -> bool {
        self == Kind::Exec
    }
}

/// The flags each type's frames carry.
pub fn flags(t: MsgType) -> u8 {
    use MsgType as M;
    match t {
        M::ExecExited
        | M::ExecFailed
        | M::FsResponse
        | M::TcpClosed
        | M::TcpFailed
        | M::Pong
        | M::Touched
        | M::CoreError
        | M::WorkloadFrozen
        | M::WorkloadThawed
        | M::RootDiskState => 0x01,
        M::ExecRequest | M::FsRequest | M::TcpConnect => 0x02,
        M::Shutdown => 0x04,
        _ => 0,
    }
}

/// The session a type opens.
pub fn opens(t: MsgType) -> Option<Kind> {
    match t {
        MsgType::ExecRequest => Some(Kind::Exec),
        MsgType::FsRequest => Some(Kind::Fs),
        MsgType::TcpConnect => Some(Kind::Tcp),
        _ => None,
    }
}

/// The 14 types of protocol 0.4.4.
pub fn legacy(t: MsgType) -> bool {
    use MsgType as M;
    matches!(
        t,
        M::Ready
            | M::Shutdown
            | M::ExecRequest
            | M::ExecStarted
            | M::ExecStdin
            | M::ExecStdout
            | M::ExecStderr
            | M::ExecExited
            | M::ExecFailed
            | M::ExecResize
            | M::ExecSignal
            | M::FsRequest
            | M::FsResponse
            | M::FsData
    )
}

/// The types a host client may send: the 0.4.4 ones, and in the current
/// generation the requests, acks, tcp and bulk control of 0.7.13. Never
/// what only the guest, the relay (init acks, notices, the clock) or the
/// runtime (bootstrap, workload freeze and thaw) sends.
pub fn client_may_send(t: MsgType, current: bool) -> bool {
    use MsgType as M;
    let legacy = matches!(
        t,
        M::Shutdown
            | M::ExecRequest
            | M::ExecStdin
            | M::ExecResize
            | M::ExecSignal
            | M::FsRequest
            | M::FsData
    );
    legacy
        || current
            && matches!(
                t,
                M::ExecOutputAck
                    | M::TcpConnect
                    | M::TcpData
                    | M::TcpEof
                    | M::TcpClose
                    | M::Ping
                    | M::Touch
                    | M::RootDiskPrepare
                    | M::RootDiskGrow
                    | M::BulkCredit
                    | M::BulkFinish
                    | M::BulkCancel
            )
}

/// The credit class of a known type (a BULK record is data too).
pub fn class(t: MsgType) -> Class {
    use MsgType as M;
    match t {
        M::ExecStdin | M::FsData | M::TcpData | M::TcpEof => Class::Data,
        _ => Class::Control,
    }
}

/// Legacy: the control frames that overtake other sessions' queued data.
pub fn overtakes_legacy(t: MsgType) -> bool {
    matches!(
        t,
        MsgType::ExecSignal | MsgType::ExecResize | MsgType::Shutdown
    )
}

/// Current: the control frames that pass even their own session's queued
/// data (signal, resize, shutdown, the output ack; the relay's kills too).
pub fn overtakes_current(t: MsgType) -> bool {
    overtakes_legacy(t) || t == MsgType::ExecOutputAck
}

/// Current: a request whose guest answers on the requester's id (a client
/// waits for that terminal reply).
pub fn answered(t: Option<MsgType>) -> bool {
    matches!(t, Some(MsgType::Ping | MsgType::Touch))
}

/// Current: the oldest envelope generation a current guest takes from a
/// client. agentd answers a payload it cannot read with `core.error`, which
/// it can send only to generation 5 and later (P7/message.rs
/// `min_protocol_version`); an older sender's unreadable payload ends its
/// loop instead, so the relay refuses those senders outright.
pub const MIN_CURRENT_V: u64 = 5;

/// The five flags values the current generation defines.
pub fn flags_defined(flags: u8) -> bool {
    matches!(flags, 0 | 1 | 2 | 4 | 8)
}

/// 4 MiB, the protocol's frame limit, spelled out independently of the wire layer.
pub const MAX_FRAME_LEN: u32 = 4_194_304;

/// A raw bulk record's header as the current generation lays it out:
/// `[kind: 1|2][flow: 1|2][0 0][offset u64 BE]` and 1 to 3 MiB of payload,
/// the offset plus the payload not overflowing. Returns (kind, flow).
pub fn bulk_header(body: &[u8]) -> Option<(u8, u8)> {
    let (head, payload) = (body.get(..12)?, &body[12.min(body.len())..]);
    let offset = u64::from_be_bytes(head[4..12].try_into().ok()?);
    let ok = matches!(head[0], 1 | 2)
        && matches!(head[1], 1 | 2)
        && head[2..4] == [0, 0]
        && !payload.is_empty()
        && payload.len() <= 3 << 20
        && offset.checked_add(payload.len() as u64).is_some();
    ok.then_some((head[0], head[1]))
}
