//! The wire layer: the microsandbox protocol v1 frame format, as the crates.io
//! package `microsandbox-protocol` 0.4.4 speaks it.
//!
//! ```text
//! [len: u32 BE][id: u32 BE][flags: u8][CBOR envelope {v: 1, t: "core.exec.stdout", p: <bytes>}]
//! ```
//!
//! This layer owns byte layouts only: framing ([`FrameDecoder`]), a cheap look
//! inside the envelope ([`peek_envelope`]), and the few payloads the relay
//! builds or reads ([`payload`]). It never routes, never decides policy and
//! never does I/O.

mod envelope;
mod frame;
pub mod payload;

pub use envelope::{Envelope, EnvelopeError, decode_envelope_full, encode_envelope, peek_envelope};
pub use frame::{Frame, FrameDecoder, FrameError, ZERO_COPY_MIN, check_len, whole_frame_len};

/// Protocol version carried in every envelope's `v` field.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Bytes between the length prefix and the CBOR envelope: `[id: u32][flags: u8]`.
pub const HEADER_LEN: usize = 5;
/// Bytes of the whole fixed prefix: length, id and flags.
pub const PREFIX_LEN: usize = LEN_PREFIX + HEADER_LEN;
/// Smallest legal value of the length field (an empty envelope).
pub const MIN_FRAME_LEN: u32 = HEADER_LEN as u32;
/// Largest legal value of the length field (4 MiB).
pub const MAX_FRAME_LEN: u32 = 4 * 1024 * 1024;

/// Flag bit: the last frame of a session (exec.exited, exec.failed, fs.response).
pub const FLAG_TERMINAL: u8 = 0x01;
/// Flag bit: the first frame of a session (exec.request, fs.request).
pub const FLAG_SESSION_START: u8 = 0x02;
/// Flag bit: the sandbox should drain (core.shutdown).
pub const FLAG_SHUTDOWN: u8 = 0x04;

/// Every message type of protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

    /// The type's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            MsgType::Ready => "core.ready",
            MsgType::Shutdown => "core.shutdown",
            MsgType::ExecRequest => "core.exec.request",
            MsgType::ExecStarted => "core.exec.started",
            MsgType::ExecStdin => "core.exec.stdin",
            MsgType::ExecStdout => "core.exec.stdout",
            MsgType::ExecStderr => "core.exec.stderr",
            MsgType::ExecExited => "core.exec.exited",
            MsgType::ExecFailed => "core.exec.failed",
            MsgType::ExecResize => "core.exec.resize",
            MsgType::ExecSignal => "core.exec.signal",
            MsgType::FsRequest => "core.fs.request",
            MsgType::FsResponse => "core.fs.response",
            MsgType::FsData => "core.fs.data",
        }
    }

    /// Parses a wire name; `None` for a name protocol v1 does not define.
    pub fn from_wire(name: &[u8]) -> Option<MsgType> {
        MsgType::ALL
            .into_iter()
            .find(|t| t.as_str().as_bytes() == name)
    }

    /// The header flags a frame of this type must carry.
    pub const fn flags(self) -> u8 {
        match self {
            MsgType::ExecExited | MsgType::ExecFailed | MsgType::FsResponse => FLAG_TERMINAL,
            MsgType::ExecRequest | MsgType::FsRequest => FLAG_SESSION_START,
            MsgType::Shutdown => FLAG_SHUTDOWN,
            _ => 0,
        }
    }

    /// True for the types a host client may send to the guest.
    pub const fn client_may_send(self) -> bool {
        matches!(
            self,
            MsgType::Shutdown
                | MsgType::ExecRequest
                | MsgType::ExecStdin
                | MsgType::ExecResize
                | MsgType::ExecSignal
                | MsgType::FsRequest
                | MsgType::FsData
        )
    }

    /// Control frames overtake queued data frames of other sessions on the
    /// way to the guest (ARCHITECTURE rule 8).
    pub const fn is_control(self) -> bool {
        matches!(
            self,
            MsgType::ExecSignal | MsgType::ExecResize | MsgType::Shutdown
        )
    }
}

impl std::fmt::Display for MsgType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
