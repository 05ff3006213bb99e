//! The reference model's view of the current generation (0.7.x, agent
//! protocol 10), written from `shared/PROTOCOL-CURRENT.md`, `ref/FACTS.md` and
//! the rules the core's files document (`credit.rs`, `scheduler.rs`,
//! `sessions.rs`, `clock.rs`), never from their code: the canonical
//! layout, the control queue toward the guest (the relay's kills, notices and
//! clock syncs among the clients' control frames, first come first served),
//! input credit with the fair-share estimate, the disconnect notices the
//! guest has taken, and the clock. It judges nothing itself; the invariant
//! files ask it.

use std::collections::{BTreeMap, VecDeque};

use agent_relay::core::{ClientId, Millis};
use agent_relay::wire::payload::WorkloadTransportCredit;
use bytes::Bytes;

use super::super::super::current::START;
pub use super::super::super::current::{STEP, Window};

/// The runtime's workload-control id.
pub const WORKLOAD_ID: u32 = u32::MAX;

/// Which ids each slot owns, once the generation is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[k*step, (k+1)*step)`, `step = u32::MAX / slots`.
    Legacy { slots: u32, step: u32 },
    /// `[s*STEP + 1, (s+1)*STEP)` for `s < slots`.
    Current { slots: u32 },
}

impl Layout {
    pub fn legacy(slots: u32) -> Layout {
        Layout::Legacy {
            slots,
            step: u32::MAX / slots.max(1),
        }
    }

    pub fn current(slots: u32) -> Layout {
        Layout::Current {
            slots: slots.clamp(1, 128),
        }
    }

    pub fn slots(self) -> usize {
        match self {
            Layout::Legacy { slots, .. } | Layout::Current { slots } => slots as usize,
        }
    }

    /// The slot owning `id`, if any.
    pub fn slot_of(self, id: u32) -> Option<usize> {
        let (slot, slots) = match self {
            Layout::Legacy { slots, step } => (id / step, slots),
            Layout::Current { .. } if id.is_multiple_of(STEP) => return None,
            Layout::Current { slots } => (id / STEP, slots),
        };
        (slot < slots).then_some(slot as usize)
    }
}

/// The input-credit class of a frame toward the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Control,
    Data,
}

impl Class {
    fn index(self) -> usize {
        match self {
            Class::Control => 0,
            Class::Data => 1,
        }
    }
}

/// Input credit (barrier 2): grants, use, and the fair-share estimate of
/// what each slot's data the guest still holds.
#[derive(Debug)]
pub struct CreditModel {
    pub granted: [Window; 2],
    pub used: [Window; 2],
    /// Data frames handed and not given back, oldest first: (slot, bytes).
    held: VecDeque<(usize, u64)>,
    per_slot: Vec<Window>,
}

impl CreditModel {
    fn new(slots: usize) -> CreditModel {
        CreditModel {
            granted: START,
            used: [Window::default(); 2],
            held: VecDeque::new(),
            per_slot: vec![Window::default(); slots],
        }
    }

    /// A whole frame of `len` bytes (prefix included) fits its class.
    pub fn fits(&self, class: Class, len: usize) -> bool {
        let (g, u) = (self.granted[class.index()], self.used[class.index()]);
        u.bytes + len as u64 <= g.bytes && u.frames < g.frames
    }

    /// Slot `slot` may send `len` data bytes with `active` slots holding or
    /// queueing data: it holds nothing, or stays within the window's share.
    pub fn fair(&self, slot: usize, len: usize, active: usize) -> bool {
        let share = |total: u64| total / active.max(2) as u64;
        let mine = self.per_slot[slot];
        mine == Window::default()
            || mine.bytes + len as u64 <= share(START[1].bytes)
                && mine.frames < share(START[1].frames)
    }

    pub fn holds(&self, slot: usize) -> bool {
        self.per_slot[slot].frames > 0
    }

    /// The estimate for `slot`.
    pub fn held_by(&self, slot: usize) -> Window {
        self.per_slot[slot]
    }

    pub fn charge(&mut self, class: Class, len: usize, slot: Option<usize>) {
        let u = &mut self.used[class.index()];
        u.bytes += len as u64;
        u.frames += 1;
        if let (Class::Data, Some(slot)) = (class, slot) {
            self.held.push_back((slot, len as u64));
            self.per_slot[slot].bytes += len as u64;
            self.per_slot[slot].frames += 1;
        }
    }

    /// An absolute grant; ignored when it would lower any field. Data bytes
    /// given back come off the most recently sent frames first.
    pub fn grant(&mut self, g: &WorkloadTransportCredit) -> bool {
        let new = [
            Window {
                bytes: g.control_bytes,
                frames: g.control_frames,
            },
            Window {
                bytes: g.bulk_bytes,
                frames: g.bulk_frames,
            },
        ];
        if new
            .iter()
            .zip(&self.granted)
            .any(|(n, o)| n.bytes < o.bytes || n.frames < o.frames)
        {
            return false;
        }
        let mut back = new[1].bytes - self.granted[1].bytes;
        self.granted = new;
        while back > 0 {
            let Some(last) = self.held.back_mut() else {
                break;
            };
            let take = last.1.min(back);
            last.1 -= take;
            back -= take;
            let w = &mut self.per_slot[last.0];
            w.bytes -= take;
            if last.1 == 0 {
                w.frames -= 1;
                self.held.pop_back();
            }
        }
        true
    }

    /// The guest holds nothing more for `slot`'s departed client.
    pub fn forget_slot(&mut self, slot: usize) {
        self.held.retain(|h| h.0 != slot);
        self.per_slot[slot] = Window::default();
    }
}

/// Who an entry of the control queue belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// A client's control frame (its `Out::seq`).
    Client(ClientId, u64),
    /// The relay's SIGKILL for a departed client's exec session.
    Kill(ClientId, u32),
    /// The disconnect notice for a departed client.
    Notice(ClientId),
    /// The connected record of a leased client (`inv_range_leases`).
    Lease(ClientId),
    /// The connected record of the client whose handshake is under way:
    /// making room for its prologue closed another client, whose kills and
    /// notice the model saw first, but the record was queued before them.
    LeaseDue,
    /// A clock sync.
    Clock,
}

/// One frame in the control queue.
#[derive(Debug, Clone, Copy)]
pub struct CtlEntry {
    pub who: Ctl,
    pub len: usize,
    /// Its slot, for the relay's frames made for a client.
    pub slot: Option<usize>,
}

/// The clock-sync rule's state (`clock.rs`): the last wall reading, the last
/// sync handed over, whether one waits in the control queue.
#[derive(Debug, Default)]
pub struct ClockModel {
    reading: Option<(Millis, u64)>,
    last_sync: Option<Millis>,
    pub queued: bool,
}

impl ClockModel {
    /// A reading: true if it is 6 s or more ahead of the time passed since
    /// the last one, or behind it (by more than reading jitter, 2 ms).
    pub fn observe(&mut self, now: Millis, wall: u64) -> bool {
        let jumped = self.reading.is_some_and(|(then, was)| {
            let expected = was.saturating_add((now - then).saturating_mul(1_000_000));
            wall >= expected.saturating_add(6_000_000_000)
                || wall.saturating_add(2_000_000) < expected
        });
        self.reading = Some((now, wall));
        jumped
    }

    pub fn wall_at(&self, now: Millis) -> Option<u64> {
        let (then, was) = self.reading?;
        Some(was.saturating_add(now.saturating_sub(then).saturating_mul(1_000_000)))
    }

    /// When the next periodic sync is due (none before the first, none while
    /// one is queued).
    pub fn due(&self, period: Millis) -> Option<Millis> {
        self.last_sync
            .filter(|_| !self.queued)
            .map(|t| t.saturating_add(period))
    }

    pub fn sent(&mut self, now: Millis) {
        self.queued = false;
        self.last_sync = Some(now);
    }
}

/// Why a clock sync waits for the event's departures before it is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockLater {
    /// A tick: queued if the periodic sync is due.
    Tick,
    /// Ready: the first sync, after the handshakes.
    Ready,
}

/// Counts the model keeps of what the core counts too (`Counters`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LeaseCounts {
    pub granted: u64,
    pub acks: u64,
    pub acks_ignored: u64,
    pub executions_released: u64,
}

/// The model's current-generation state, from the guest's `core.ready` on.
#[derive(Debug)]
pub struct Current {
    /// The `v` of the guest's ready: every frame the relay builds carries it.
    pub v: u8,
    pub credit: Option<CreditModel>,
    /// `Ready.exec_limits.max_executions`.
    pub exec_limit: Option<u32>,
    /// `Ready.relay_lease.max_format >= 1`: range leases.
    pub leases: bool,
    /// What the core must count: connected records queued, acknowledgements
    /// that released a slot and ones ignored, and (without leases) killed
    /// executions released once the guest took their notice.
    pub counts: LeaseCounts,
    /// Exec sessions open sandbox-wide (with exec limits).
    pub active_execs: u32,
    /// Frames handed to the guest so far (the last one's hand-off number).
    pub handed: u64,
    /// The highest hand-off number of a session-opening frame the guest has
    /// answered: it has read every frame up to it.
    pub read_to: u64,
    /// Disconnect notices handed over and not yet known taken: hand-off
    /// number -> slot.
    pub fences: BTreeMap<u64, usize>,
    /// The control queue toward the guest, in order.
    pub ctl: VecDeque<CtlEntry>,
    /// Data frames queued per slot.
    pub slot_data: Vec<usize>,
    /// Guest frames of this event for a departed client's correlations.
    pub late: Vec<Bytes>,
    /// A clock sync this event queues after its departures (a tick's, due;
    /// ready's, once the waiting clients got their handshakes).
    pub clock_later: Option<ClockLater>,
}

impl Current {
    pub fn new(v: u8, barrier: bool, exec_limit: Option<u32>, slots: usize) -> Current {
        Current {
            v,
            credit: barrier.then(|| CreditModel::new(slots)),
            exec_limit,
            leases: false,
            counts: LeaseCounts::default(),
            active_execs: 0,
            handed: 0,
            read_to: 0,
            fences: BTreeMap::new(),
            ctl: VecDeque::new(),
            slot_data: vec![0; slots],
            late: Vec::new(),
            clock_later: None,
        }
    }

    /// Whether a charged frame of `class` and `len` bytes from `slot` may
    /// leave now: it fits its class and, for a client's data, its slot's
    /// fair share.
    pub fn admits(&self, class: Class, len: usize, slot: Option<usize>) -> bool {
        self.admits_among(class, len, slot, None)
    }

    /// [`Current::admits`], with the count of [`Current::active`] slots when
    /// the caller has it (it costs a pass over the slots).
    pub fn admits_among(
        &self,
        class: Class,
        len: usize,
        slot: Option<usize>,
        active: Option<usize>,
    ) -> bool {
        let Some(credit) = &self.credit else {
            return true;
        };
        if !credit.fits(class, len) {
            return false;
        }
        match (class, slot) {
            (Class::Data, Some(slot)) => {
                credit.fair(slot, len, active.unwrap_or_else(|| self.active()))
            }
            _ => true,
        }
    }

    /// Slots with data queued or held.
    pub fn active(&self) -> usize {
        let credit = self.credit.as_ref();
        (0..self.slot_data.len())
            .filter(|&s| self.slot_data[s] > 0 || credit.is_some_and(|c| c.holds(s)))
            .count()
    }
}
