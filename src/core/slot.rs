//! Slots and the sessions they own.
//!
//! Slot `k` owns the ids `[k*step, (k+1)*step)`. A slot outlives its client:
//! after a client departs, the slot keeps its live sessions (quarantine, see
//! `quarantine.rs`) and its frames still queued toward the guest until both
//! are gone, so a new client never receives the previous owner's late frames
//! and never races its leftover input.

use std::collections::BTreeMap;

use super::tap::Utf8Carry;
use super::types::{ClientId, Millis};
use crate::wire::FrameDecoder;

/// The id range a slot owns, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id.
    pub start: u32,
    /// One past the last id.
    pub end: u32,
}

impl IdRange {
    /// The range of slot `slot` for `step` ids per slot.
    pub fn of_slot(slot: u32, step: u32) -> IdRange {
        IdRange {
            start: slot * step,
            end: slot * step + step,
        }
    }

    /// Whether `id` lies inside.
    pub fn contains(&self, id: u32) -> bool {
        (self.start..self.end).contains(&id)
    }
}

/// What kind of session an id carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// `core.exec.request`; `tty` merges output into one `output` stream.
    Exec { tty: bool },
    /// `core.fs.request`.
    Fs,
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
pub(crate) struct Session {
    pub kind: SessionKind,
    /// Relay-unique number for exec.log (exec sessions only).
    pub number: u64,
    /// A SIGKILL was queued for it when its client departed.
    pub killed: bool,
    pub carries: Carries,
}

/// The connection currently holding a slot.
#[derive(Debug)]
pub(crate) struct Conn {
    pub client: ClientId,
    pub decoder: FrameDecoder,
    pub handshaken: bool,
    /// Bytes handed to the driver for this client and not yet written.
    pub queued: usize,
    /// When it must have made progress, while over its soft budget.
    pub grace_deadline: Option<Millis>,
    /// Not read while its frames toward the guest are over the bound.
    pub paused: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub conn: Option<Conn>,
    pub sessions: BTreeMap<u32, Session>,
    /// A departed client's sessions are given up at this time.
    pub quarantine_until: Option<Millis>,
}
