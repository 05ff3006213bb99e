//! Slots, the sessions they own, and the frames they queue toward the guest.
//!
//! Slot `k` owns the ids `[k*step, (k+1)*step)`. A slot outlives its client:
//! after a client departs, the slot keeps its live sessions (quarantine) and
//! its queued frames until both are gone, so a new client never receives the
//! previous owner's late frames and never races its leftover input.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

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

#[derive(Debug)]
pub(crate) struct Session {
    pub kind: SessionKind,
    /// Relay-unique number for exec.log (exec sessions only).
    pub number: u64,
    /// A SIGKILL was queued for it when its client departed.
    pub killed: bool,
    /// Unfinished UTF-8 of stdout (or pty output) and stderr.
    pub carry: [Utf8Carry; 2],
}

/// A frame waiting for room toward the guest.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub slot: u32,
    pub id: u32,
    pub frame: Bytes,
    /// Emit [`super::Action::Drain`] once this frame is handed to the guest.
    pub drain: bool,
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
    pub paused: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub conn: Option<Conn>,
    pub sessions: BTreeMap<u32, Session>,
    /// Data frames (and whatever must stay behind them) toward the guest.
    pub inbox: VecDeque<Outbound>,
    /// How many inbox frames each id has, so a control frame never overtakes
    /// a data frame of its own session.
    pub inbox_ids: HashMap<u32, u32>,
    /// Bytes of this slot's frames queued toward the guest (inbox and control queue).
    pub to_guest: usize,
    /// A departed client's sessions are given up at this time.
    pub quarantine_until: Option<Millis>,
}

impl Slot {
    /// Whether a new client may take this slot.
    pub fn is_free(&self) -> bool {
        self.conn.is_none() && self.sessions.is_empty() && self.to_guest == 0
    }

    /// Departed, still waiting for sessions or queued frames.
    pub fn is_quarantined(&self) -> bool {
        self.conn.is_none() && !self.is_free()
    }
}
