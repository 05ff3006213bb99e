//! Slots and the correlations they own.
//!
//! A slot owns one id range (`layout.rs`). A correlation is an id with
//! something open on it: a session (exec, fs, tcp) or, in the current generation, a request that
//! opened none (`core.ping`, `core.touch`, ...) until its terminal reply. A
//! slot outlives its client: after a client departs, the slot keeps its open
//! correlations (quarantine, see `quarantine.rs`) and its frames still queued
//! toward the guest until both are gone, so a new client never receives the
//! previous owner's late frames and never races its leftover input.

use std::collections::{BTreeMap, VecDeque};

use super::logtext::Utf8Carry;
use super::types::ClientId;
use crate::wire::FrameDecoder;
use crate::wire::lease::Incarnation;

/// What an id carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CorrKind {
    /// `core.exec.request`; `tty` merges output into one `output` stream.
    Exec { tty: bool },
    /// `core.fs.request`.
    Fs,
    /// `core.tcp.connect`.
    Tcp,
    /// A request that opened no session, until its terminal reply.
    Request,
}

impl CorrKind {
    /// Every kind but a request is a session.
    pub fn is_session(self) -> bool {
        self != CorrKind::Request
    }

    pub fn is_exec(self) -> bool {
        matches!(self, CorrKind::Exec { .. })
    }
}

/// One of an exec session's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// stdout, or the whole output of a pty session.
    Stdout,
    /// stderr.
    Stderr,
}

/// Unfinished UTF-8 of each output stream of a session.
#[derive(Debug, Default)]
pub(crate) struct Carries {
    stdout: Utf8Carry,
    stderr: Utf8Carry,
}

impl Carries {
    pub fn of(&mut self, stream: Stream) -> &mut Utf8Carry {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Correlation {
    pub kind: CorrKind,
    /// Relay-unique number for exec.log (exec sessions only).
    pub number: u64,
    /// A SIGKILL was queued for it when its client departed.
    pub killed: bool,
    pub carries: Carries,
    /// Which frame toward the guest opened it (its hand-off number), once
    /// handed over: a guest frame for it proves the guest had read that far.
    pub opened_at: Option<u64>,
    /// Relay-wide creation order, to find the oldest request to evict.
    pub order: u64,
    /// It holds one of the guest's executions (`Ready.exec_limits`).
    pub counts: bool,
}

/// The connection currently holding a slot.
#[derive(Debug)]
pub(crate) struct Conn {
    pub client: ClientId,
    pub decoder: FrameDecoder,
    pub handshaken: bool,
    /// Bytes handed to the driver for this client and not yet written.
    pub queued: usize,
    /// Over its soft budget: its grace period runs.
    pub over: bool,
    /// Not read while its frames toward the guest are over the bound.
    pub paused: bool,
}

/// Ended ids a slot remembers for late bulk records.
pub(crate) const RECENTLY_ENDED: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub conn: Option<Conn>,
    pub open: BTreeMap<u32, Correlation>,
    /// Ids of the current client whose correlation the guest ended lately
    /// (at most [`RECENTLY_ENDED`]): a raw bulk record for one of them is
    /// late, not a violation (the client could not have seen the end yet).
    pub ended: VecDeque<u32>,
    /// With range leases: the incarnation of the client holding the slot.
    pub incarnation: Option<Incarnation>,
    /// With range leases: the departed owner whose acknowledgement the slot
    /// waits for before anyone may take it.
    pub awaiting: Option<Incarnation>,
}
