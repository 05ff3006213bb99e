//! [`Fact`]: what the model reports while it applies an event or an action,
//! the one vocabulary the invariants judge by. A fact names what happened
//! and what the model expected where the model needs that answer itself
//! (which frame a hand-off is, whether a handshake was due); the verdict is
//! always an invariant's. Facts about an action come before the model
//! applies it unless they say otherwise, so an invariant sees the state the
//! action met.

use agent_relay::core::{Action, ClientId, CloseReason, Event, IdRange, RefuseReason, SlowLimit};
use agent_relay::wire::MsgType;
use bytes::Bytes;

use super::client::Lane;
use super::current::{Class, Ctl};

/// Whether a handshake was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// To a client waiting for one, after ready.
    Yes,
    /// Before the guest's first `core.ready`.
    BeforeReady,
    /// To a client that was not waiting for one.
    Unexpected,
}

/// What a handshake's prologue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prologue {
    /// A slot's range, then the cached ready frame.
    Slot(IdRange),
    /// Not the prologue's form followed by the cached ready frame whole.
    NotRangeThenReady,
    /// A range that is no slot's (current: no canonical slot offered).
    NotASlot {
        /// Its first id.
        start: u32,
        /// Its end.
        end: u32,
    },
}

/// What a frame handed to a current guest is, when it is no frame the
/// model has queued where it may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stray {
    /// Not the connected record owed first (one is the control queue's head).
    LeaseNotFirst,
    /// A lease record no handshake owes, or out of its place.
    LeaseOutOfPlace,
    /// The head's disconnect notice, with another incarnation than its owner's.
    WrongIncarnation,
    /// A queued frame that is not the head of its queue.
    NotHead,
    /// A clock sync out of its place in the control queue.
    ClockOutOfPlace,
    /// A disconnect notice no departure owes, or out of its place.
    NoticeOutOfPlace,
    /// A SIGKILL no departed client's open exec session owes, or out of its place.
    KillOutOfPlace,
    /// No frame a client sent that is still due.
    Unknown,
}

/// What of a client reached a leased guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// One of its frames.
    Frame,
    /// A SIGKILL for one of its sessions.
    Kill,
    /// Its disconnect notice.
    Notice,
}

/// One thing the model saw. See the module docs.
#[derive(Debug, Clone, Copy)]
pub enum Fact<'a> {
    // ---- events ----------------------------------------------------------
    /// An event, before the model applies it.
    Event(&'a Event<'a>),
    /// The driver connected a client with a departed client's id.
    IdReused(ClientId),
    /// A live client's read was framed and judged: its length.
    ClientRead {
        /// The client.
        c: ClientId,
        /// Bytes in the read.
        len: usize,
    },
    /// A client's frame was queued toward the guest, in this lane.
    Queued {
        /// The client.
        c: ClientId,
        /// The lane.
        lane: Lane,
    },
    /// The guest stream held a corrupt stretch (the relay must report it).
    Corrupt,
    /// A client left (or was closed): its kills are owed (after the model
    /// applied the departure; current: before its notice is queued).
    Departed(ClientId),
    /// Current generation: a departed client's frames waiting in its slot's
    /// queue were dropped.
    Dropped {
        /// The client.
        c: ClientId,
        /// How many.
        frames: usize,
    },
    /// This event's guest bytes were framed.
    GuestFramed,
    /// The guest's first `core.ready` was applied: `Ready` is owed.
    FirstReady,

    // ---- actions ---------------------------------------------------------
    /// An action, before the model applies it.
    Action(&'a Action),
    /// `Ready`, the guest frames before the first ready applied.
    Ready,
    /// `ToClient`, the guest frames before it applied.
    ToClient {
        /// The client.
        c: ClientId,
        /// The frame.
        frame: &'a Bytes,
        /// It is the next guest frame routed to that client (a live one).
        next: bool,
    },
    /// Bytes were handed to a client (after the model counted them).
    OutputAdded(ClientId),
    /// `Handshake`, the guest frames before it applied.
    Handshake {
        /// The client.
        c: ClientId,
        /// Whether it was due.
        due: Due,
    },
    /// A due handshake's prologue.
    Prologue {
        /// The client.
        c: ClientId,
        /// What it says.
        found: Prologue,
    },
    /// A client got a slot whose departed leased owner awaits the guest's
    /// acknowledgement.
    SlotAwaitsAck {
        /// The new client.
        c: ClientId,
        /// The slot.
        slot: usize,
        /// The owner awaiting the acknowledgement.
        other: ClientId,
    },
    /// A client got a slot another client still holds.
    SlotHeld {
        /// The new client.
        c: ClientId,
        /// The slot.
        slot: usize,
        /// The holder.
        other: ClientId,
    },
    /// `Refuse`, the guest frames before ready applied.
    Refuse {
        /// The client.
        c: ClientId,
        /// Why.
        reason: &'a RefuseReason,
    },
    /// `CloseClient`.
    Close {
        /// The client.
        c: ClientId,
        /// Why.
        reason: &'a CloseReason,
    },
    /// A slow-consumer close names the bytes queued for the client.
    SlowCloseQueued {
        /// The client.
        c: ClientId,
        /// The bytes the core names.
        queued: usize,
    },
    /// A slow-consumer close of a client, the guest frames routed before it
    /// applied and its queue as the model has it.
    SlowClose {
        /// The client.
        c: ClientId,
        /// The bytes queued.
        queued: usize,
        /// The limit named.
        limit: SlowLimit,
    },
    /// `ToGuest`, before the model applies it.
    ToGuest(&'a Bytes),
    /// An init ack reached the guest: whether it is the one owed (`None`: none was).
    InitAckHanded(Option<bool>),
    /// Legacy: a frame handed to the guest has the id of a client's queued
    /// frame, the first with that id at `pos` of its queue.
    ClientFrameHanded {
        /// The client.
        c: ClientId,
        /// Its place in the client's queue.
        pos: usize,
        /// The frames are the same bytes.
        same: bool,
        /// The queued frame may pass earlier ones.
        control: bool,
        /// The id.
        id: u32,
    },
    /// A client's queued frame reached the guest (after the model removed it).
    OutHanded {
        /// The client.
        c: ClientId,
        /// The lane it waited in.
        lane: Lane,
        /// It is a shutdown frame.
        shutdown: bool,
    },
    /// A SIGKILL a departed client was owed reached the guest.
    KillHanded {
        /// The client.
        c: ClientId,
        /// The session.
        id: u32,
    },
    /// A SIGKILL nobody is owed reached the guest (legacy).
    UnowedKill(u32),
    /// A frame that matches nothing due reached a legacy guest.
    Unmatched(&'a Bytes),
    /// A frame that is no queued frame where it may leave reached a current
    /// guest.
    UnmatchedCurrent {
        /// The frame.
        frame: &'a Bytes,
        /// What it is.
        stray: Stray,
        /// The control queue's head then.
        head: Option<Ctl>,
    },
    /// A frame of this class and size, from this slot, leaves now (current
    /// generation; before it is charged).
    Charged {
        /// Its credit class.
        class: Class,
        /// Its bytes, prefix included.
        len: usize,
        /// Its slot, for a client's frame or the relay's frame for one.
        slot: Option<usize>,
    },
    /// Something of a client reached the guest (current generation).
    Reached {
        /// The client.
        c: ClientId,
        /// What.
        what: Reached,
    },
    /// The head of a client's slot queue reached the guest.
    TurnHanded {
        /// The client.
        c: ClientId,
        /// The frame's id.
        id: u32,
    },
    /// A departed client's disconnect notice reached the guest, as the
    /// control queue's head.
    NoticeHanded(ClientId),
    /// A client's connected record reached the guest with this incarnation.
    LeaseHanded {
        /// The client.
        c: ClientId,
        /// The incarnation.
        inc: [u8; 16],
    },
    /// A connected record went to the guest for one range, then a client
    /// got another.
    EarlyLeaseMismatch {
        /// The client handshaken.
        c: ClientId,
        /// The record's range.
        record: (u32, u32),
        /// The client's range.
        range: IdRange,
    },
    /// A clock sync reached the guest: what it carries, and the wall time of
    /// its hand-off.
    ClockHanded {
        /// Its `unix_time_nanos`, if it decodes.
        got: Option<u64>,
        /// The wall time, if a reading is known.
        want: Option<u64>,
    },
    /// An exec request opened a session (after the model opened it): the
    /// request frame's body (its envelope).
    ExecOpened {
        /// The client.
        c: ClientId,
        /// The session's id.
        id: u32,
        /// The request frame's body.
        body: &'a [u8],
    },
    /// A guest frame on an exec session its owner still has open reached
    /// the core, before the model applies it (the frame may end it).
    ExecFrame {
        /// The session's owner.
        c: ClientId,
        /// The session's id.
        id: u32,
        /// The frame's type (`None`: one the relay does not know).
        t: Option<MsgType>,
        /// Its flags.
        flags: u8,
        /// The whole frame, prefix included.
        frame: &'a Bytes,
    },
}

impl Fact<'_> {
    /// [`Fact::Event`]'s bit.
    pub const EVENT: u64 = 1 << 0;
    /// [`Fact::IdReused`]'s bit.
    pub const ID_REUSED: u64 = 1 << 1;
    /// [`Fact::ClientRead`]'s bit.
    pub const CLIENT_READ: u64 = 1 << 2;
    /// [`Fact::Queued`]'s bit.
    pub const QUEUED: u64 = 1 << 3;
    /// [`Fact::Corrupt`]'s bit.
    pub const CORRUPT: u64 = 1 << 4;
    /// [`Fact::Departed`]'s bit.
    pub const DEPARTED: u64 = 1 << 5;
    /// [`Fact::Dropped`]'s bit.
    pub const DROPPED: u64 = 1 << 6;
    /// [`Fact::GuestFramed`]'s bit.
    pub const GUEST_FRAMED: u64 = 1 << 7;
    /// [`Fact::FirstReady`]'s bit.
    pub const FIRST_READY: u64 = 1 << 8;
    /// [`Fact::Action`]'s bit.
    pub const ACTION: u64 = 1 << 9;
    /// [`Fact::Ready`]'s bit.
    pub const READY: u64 = 1 << 10;
    /// [`Fact::ToClient`]'s bit.
    pub const TO_CLIENT: u64 = 1 << 11;
    /// [`Fact::OutputAdded`]'s bit.
    pub const OUTPUT_ADDED: u64 = 1 << 12;
    /// [`Fact::Handshake`]'s bit.
    pub const HANDSHAKE: u64 = 1 << 13;
    /// [`Fact::Prologue`]'s bit.
    pub const PROLOGUE: u64 = 1 << 14;
    /// [`Fact::SlotAwaitsAck`]'s bit.
    pub const SLOT_AWAITS_ACK: u64 = 1 << 15;
    /// [`Fact::SlotHeld`]'s bit.
    pub const SLOT_HELD: u64 = 1 << 16;
    /// [`Fact::Refuse`]'s bit.
    pub const REFUSE: u64 = 1 << 17;
    /// [`Fact::Close`]'s bit.
    pub const CLOSE: u64 = 1 << 18;
    /// [`Fact::SlowCloseQueued`]'s bit.
    pub const SLOW_CLOSE_QUEUED: u64 = 1 << 19;
    /// [`Fact::SlowClose`]'s bit.
    pub const SLOW_CLOSE: u64 = 1 << 20;
    /// [`Fact::ToGuest`]'s bit.
    pub const TO_GUEST: u64 = 1 << 21;
    /// [`Fact::InitAckHanded`]'s bit.
    pub const INIT_ACK_HANDED: u64 = 1 << 22;
    /// [`Fact::ClientFrameHanded`]'s bit.
    pub const CLIENT_FRAME_HANDED: u64 = 1 << 23;
    /// [`Fact::OutHanded`]'s bit.
    pub const OUT_HANDED: u64 = 1 << 24;
    /// [`Fact::KillHanded`]'s bit.
    pub const KILL_HANDED: u64 = 1 << 25;
    /// [`Fact::UnowedKill`]'s bit.
    pub const UNOWED_KILL: u64 = 1 << 26;
    /// [`Fact::Unmatched`]'s bit.
    pub const UNMATCHED: u64 = 1 << 27;
    /// [`Fact::UnmatchedCurrent`]'s bit.
    pub const UNMATCHED_CURRENT: u64 = 1 << 28;
    /// [`Fact::Charged`]'s bit.
    pub const CHARGED: u64 = 1 << 29;
    /// [`Fact::Reached`]'s bit.
    pub const REACHED: u64 = 1 << 30;
    /// [`Fact::TurnHanded`]'s bit.
    pub const TURN_HANDED: u64 = 1 << 31;
    /// [`Fact::NoticeHanded`]'s bit.
    pub const NOTICE_HANDED: u64 = 1 << 32;
    /// [`Fact::LeaseHanded`]'s bit.
    pub const LEASE_HANDED: u64 = 1 << 33;
    /// [`Fact::EarlyLeaseMismatch`]'s bit.
    pub const EARLY_LEASE_MISMATCH: u64 = 1 << 34;
    /// [`Fact::ClockHanded`]'s bit.
    pub const CLOCK_HANDED: u64 = 1 << 35;
    /// [`Fact::ExecOpened`]'s bit.
    pub const EXEC_OPENED: u64 = 1 << 36;
    /// [`Fact::ExecFrame`]'s bit.
    pub const EXEC_FRAME: u64 = 1 << 37;

    /// Its bit, for the masks invariants say what they judge with
    /// (`Check::WANTS`).
    pub fn bit(&self) -> u64 {
        match self {
            Fact::Event(..) => Fact::EVENT,
            Fact::IdReused(..) => Fact::ID_REUSED,
            Fact::ClientRead { .. } => Fact::CLIENT_READ,
            Fact::Queued { .. } => Fact::QUEUED,
            Fact::Corrupt => Fact::CORRUPT,
            Fact::Departed(..) => Fact::DEPARTED,
            Fact::Dropped { .. } => Fact::DROPPED,
            Fact::GuestFramed => Fact::GUEST_FRAMED,
            Fact::FirstReady => Fact::FIRST_READY,
            Fact::Action(..) => Fact::ACTION,
            Fact::Ready => Fact::READY,
            Fact::ToClient { .. } => Fact::TO_CLIENT,
            Fact::OutputAdded(..) => Fact::OUTPUT_ADDED,
            Fact::Handshake { .. } => Fact::HANDSHAKE,
            Fact::Prologue { .. } => Fact::PROLOGUE,
            Fact::SlotAwaitsAck { .. } => Fact::SLOT_AWAITS_ACK,
            Fact::SlotHeld { .. } => Fact::SLOT_HELD,
            Fact::Refuse { .. } => Fact::REFUSE,
            Fact::Close { .. } => Fact::CLOSE,
            Fact::SlowCloseQueued { .. } => Fact::SLOW_CLOSE_QUEUED,
            Fact::SlowClose { .. } => Fact::SLOW_CLOSE,
            Fact::ToGuest(..) => Fact::TO_GUEST,
            Fact::InitAckHanded(..) => Fact::INIT_ACK_HANDED,
            Fact::ClientFrameHanded { .. } => Fact::CLIENT_FRAME_HANDED,
            Fact::OutHanded { .. } => Fact::OUT_HANDED,
            Fact::KillHanded { .. } => Fact::KILL_HANDED,
            Fact::UnowedKill(..) => Fact::UNOWED_KILL,
            Fact::Unmatched(..) => Fact::UNMATCHED,
            Fact::UnmatchedCurrent { .. } => Fact::UNMATCHED_CURRENT,
            Fact::Charged { .. } => Fact::CHARGED,
            Fact::Reached { .. } => Fact::REACHED,
            Fact::TurnHanded { .. } => Fact::TURN_HANDED,
            Fact::NoticeHanded(..) => Fact::NOTICE_HANDED,
            Fact::LeaseHanded { .. } => Fact::LEASE_HANDED,
            Fact::EarlyLeaseMismatch { .. } => Fact::EARLY_LEASE_MISMATCH,
            Fact::ClockHanded { .. } => Fact::CLOCK_HANDED,
            Fact::ExecOpened { .. } => Fact::EXEC_OPENED,
            Fact::ExecFrame { .. } => Fact::EXEC_FRAME,
        }
    }
}
