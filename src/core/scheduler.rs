//! The scheduler toward the guest: every client frame (and every frame the
//! relay makes) waits here until the guest port has room. It owns four rules:
//! - `backpressure_not_loss`: a frame is never dropped for lack of room; at
//!   most `guest_window` bytes are handed to the port unacknowledged, and a
//!   client whose queued frames pass `client_to_guest_cap` is no longer read
//!   (the relay pauses it; it resumes at half the bound).
//! - `control_overtakes_data`: frames in the control queue go out before any
//!   slot's queued frames. Which frames go there is the caller's call (the
//!   generation decides: see `Dialect::goes_first`), but a frame that must stay
//!   behind data of its own id is only ever put behind it.
//! - `round_robin`: a slot's queued frames leave one per slot in turn, so no
//!   client waits behind more than one frame of each other client.
//! - with input credit (`credit.rs`), a frame leaves only when its class has
//!   credit for it, and a data frame only within its client's fair share; a
//!   slot whose head cannot leave does not stop the others, a control queue
//!   whose head cannot leave stops everything (a later frame may depend on
//!   it).
//!
//! It never looks inside a frame.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::credit::Credit;
use super::types::{Counters, Millis};
use crate::wire::CreditClass;

/// What to do when a frame is handed to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Plain,
    /// Emit [`super::Action::Drain`] after it.
    Drain,
    /// It opened a correlation of its slot: note the hand-off number.
    Opens,
    /// A disconnect notice for its slot.
    Notice,
    /// A clock sync: its timestamp is written at hand-off.
    Clock,
}

/// A frame waiting for room toward the guest.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The slot it counts against; `None` for the relay's own frames.
    pub slot: Option<u32>,
    pub id: u32,
    pub frame: Bytes,
    pub class: CreditClass,
    /// Whether it counts against input credit (not before ready).
    pub charged: bool,
    pub mark: Mark,
}

impl Outbound {
    /// A frame of the relay's own on id 0, on no slot's account, charged to
    /// credit if `charged`.
    pub fn relay(frame: Bytes, charged: bool, mark: Mark) -> Outbound {
        Outbound {
            slot: None,
            id: 0,
            frame,
            class: CreditClass::Control,
            charged,
            mark,
        }
    }

    /// A frame on `id` counted against `slot`, charged to credit.
    pub fn of_slot(slot: usize, id: u32, frame: Bytes, class: CreditClass, mark: Mark) -> Outbound {
        Outbound {
            slot: Some(slot as u32),
            id,
            frame,
            class,
            charged: true,
            mark,
        }
    }
}

/// One slot's share of the queue.
#[derive(Debug, Default)]
struct SlotQueue {
    /// Data frames, and control frames that must stay behind one of them.
    frames: VecDeque<Outbound>,
    /// How many of `frames` each id has, so a frame that must not overtake
    /// its own id's queued frames is put behind them.
    per_id: HashMap<u32, u32>,
    /// Data-class frames among `frames`.
    data: usize,
    /// Bytes of this slot's frames queued anywhere here (its queue and the
    /// control queue).
    queued_bytes: usize,
}

/// Why nothing more goes to the guest now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Nothing is queued.
    Idle,
    /// The guest window is full (whether or not anything waits: the
    /// caller only tells credit apart from the rest).
    Window,
    /// Frames wait for credit (of this class, at least).
    Credit(CreditClass),
}

/// Which slots have frames queued: the round robin visits only those.
#[derive(Debug, Default)]
struct Occupied(Vec<u64>);

impl Occupied {
    fn resize(&mut self, slots: usize) {
        self.0.resize(slots.div_ceil(64), 0);
    }

    fn set(&mut self, i: usize, on: bool) {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if on {
            self.0[w] |= b;
        } else {
            self.0[w] &= !b;
        }
    }

    /// Occupied slots below `n`, from `start` round to `start - 1`.
    fn from(&self, start: usize, n: usize) -> impl Iterator<Item = usize> + '_ {
        let upto = move |lo: usize, hi: usize| {
            (lo / 64..hi.div_ceil(64)).flat_map(move |w| {
                let mut word = self.0.get(w).copied().unwrap_or(0);
                let base = w * 64;
                if base < lo {
                    word &= !0u64 << (lo - base);
                }
                std::iter::from_fn(move || {
                    (word != 0).then(|| {
                        let bit = word.trailing_zeros() as usize;
                        word &= word - 1;
                        base + bit
                    })
                })
                .filter(move |&i| i < hi)
            })
        };
        upto(start, n).chain(upto(0, start))
    }
}

/// Frames toward the guest; see the module docs.
#[derive(Debug)]
pub(crate) struct Scheduler {
    control: VecDeque<Outbound>,
    per_slot: Vec<SlotQueue>,
    occupied: Occupied,
    /// The next slot whose queue the round robin serves.
    cursor: usize,
    /// Bytes handed to the guest port and not yet reported written.
    inflight: usize,
    window: usize,
    /// Frames handed over so far (the last one's hand-off number).
    handed: u64,
    /// Bytes of slots' frames queued, in all.
    total: usize,
    /// Since when frames wait for credit, per class (control, data).
    blocked_since: [Option<Millis>; 2],
}

impl Scheduler {
    pub fn new(slots: usize, window: usize) -> Scheduler {
        let mut occupied = Occupied::default();
        occupied.resize(slots);
        Scheduler {
            control: VecDeque::new(),
            per_slot: (0..slots).map(|_| SlotQueue::default()).collect(),
            occupied,
            cursor: 0,
            inflight: 0,
            window,
            handed: 0,
            total: 0,
            blocked_since: [None; 2],
        }
    }

    /// The relay now has `slots` slots (the generation became known).
    pub fn set_slots(&mut self, slots: usize) {
        self.per_slot.resize_with(slots, SlotQueue::default);
        self.occupied.resize(slots);
        self.cursor = 0;
    }

    /// Bytes of slots' frames waiting here, in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The hand-off number of the last frame handed over.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// Bytes of `slot`'s frames waiting here.
    pub fn queued(&self, slot: usize) -> usize {
        self.per_slot.get(slot).map_or(0, |q| q.queued_bytes)
    }

    /// Whether `slot` has frames in its queue (a kill queued now must stay
    /// behind them, in the legacy generation).
    pub fn has_data_queued(&self, slot: usize) -> bool {
        !self.per_slot[slot].frames.is_empty()
    }

    /// Whether `slot`'s queue holds a frame of `id`.
    pub fn id_queued(&self, slot: usize, id: u32) -> bool {
        self.per_slot[slot].per_id.contains_key(&id)
    }

    /// Bytes handed to the guest port and not yet written.
    #[cfg(any(test, feature = "testing"))]
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Queues a frame: to the control queue if `control`, else behind the
    /// frames of its slot.
    pub fn enqueue(&mut self, out: Outbound, control: bool) {
        let Some(slot) = out.slot else {
            self.control.push_back(out);
            return;
        };
        let q = &mut self.per_slot[slot as usize];
        q.queued_bytes += out.frame.len();
        self.total += out.frame.len();
        if control {
            self.control.push_back(out);
        } else {
            *q.per_id.entry(out.id).or_default() += 1;
            q.data += usize::from(out.class == CreditClass::Data);
            q.frames.push_back(out);
            self.occupied.set(slot as usize, true);
        }
    }

    /// Drops the frames still queued in `slot`'s queue (its client left):
    /// its data, and the control frames held behind it. Returns how many,
    /// and their bytes.
    pub fn drop_queued(&mut self, slot: usize) -> (usize, usize) {
        let q = &mut self.per_slot[slot];
        let frames = q.frames.len();
        let bytes: usize = q.frames.drain(..).map(|o| o.frame.len()).sum();
        q.per_id.clear();
        q.queued_bytes -= bytes;
        self.total -= bytes;
        q.data = 0;
        self.occupied.set(slot, false);
        (frames, bytes)
    }

    /// The guest port wrote `n` bytes of what it was handed.
    pub fn written(&mut self, n: usize) {
        self.inflight = self.inflight.saturating_sub(n);
    }

    /// The next frame to hand to the guest, with input `credit` if the
    /// guest grants it, or why there is none. The frame counts as in flight
    /// (and against its credit) from now on.
    pub fn next(&mut self, mut credit: Option<&mut Credit>) -> Result<Outbound, Stop> {
        if self.inflight >= self.window {
            return Err(Stop::Window);
        }
        let out = match self.control.front() {
            Some(head) if !self.admits(head, credit.as_deref()) => {
                return Err(Stop::Credit(head.class));
            }
            Some(_) => self.control.pop_front(),
            None => None,
        };
        let out = match out {
            Some(out) => out,
            None => self.next_queued(credit.as_deref())?,
        };
        if let Some(slot) = out.slot {
            self.per_slot[slot as usize].queued_bytes -= out.frame.len();
            self.total -= out.frame.len();
        }
        if out.charged
            && let Some(credit) = &mut credit
        {
            credit.charge(out.class, out.frame.len(), out.slot);
        }
        self.inflight += out.frame.len();
        self.handed += 1;
        Ok(out)
    }

    /// Whether `credit` (and the fair share) lets `out` go now.
    fn admits(&self, out: &Outbound, credit: Option<&Credit>) -> bool {
        let Some(credit) = credit.filter(|_| out.charged) else {
            return true;
        };
        let len = out.frame.len();
        if !credit.fits(out.class, len) {
            return false;
        }
        match (out.class, out.slot) {
            (CreditClass::Data, Some(slot)) => {
                let active = (0..self.per_slot.len())
                    .filter(|&s| self.per_slot[s].data > 0 || credit.holds(s))
                    .count();
                credit.fair(slot as usize, len, active)
            }
            _ => true,
        }
    }

    /// One slot's head, the slots taken in turn; a head that may not go yet
    /// leaves its slot's turn to the next.
    fn next_queued(&mut self, credit: Option<&Credit>) -> Result<Outbound, Stop> {
        let n = self.per_slot.len();
        let mut blocked = None;
        let pick = self.occupied.from(self.cursor, n).find(|&i| {
            let Some(head) = self.per_slot[i].frames.front() else {
                return false;
            };
            let ok = self.admits(head, credit);
            if !ok {
                blocked.get_or_insert(head.class);
            }
            ok
        });
        let Some(next) = pick else {
            return Err(blocked.map_or(Stop::Idle, Stop::Credit));
        };
        self.cursor = (next + 1) % n;
        let q = &mut self.per_slot[next];
        let out = q.frames.pop_front().ok_or(Stop::Idle)?;
        q.data -= usize::from(out.class == CreditClass::Data);
        if q.frames.is_empty() {
            self.occupied.set(next, false);
        }
        if let Some(count) = q.per_id.get_mut(&out.id) {
            *count -= 1;
            if *count == 0 {
                q.per_id.remove(&out.id);
            }
        }
        Ok(out)
    }

    /// Tracks how long frames wait for credit, per class, as of `now`, when
    /// `stop` says why nothing more goes.
    pub fn note_wait(&mut self, stop: Stop, now: Millis, c: &mut Counters) {
        let waiting = match stop {
            Stop::Credit(class) => Some(class),
            _ => None,
        };
        for (i, class) in [CreditClass::Control, CreditClass::Data]
            .into_iter()
            .enumerate()
        {
            let blocked = waiting == Some(class);
            match (blocked, self.blocked_since[i]) {
                (true, None) => self.blocked_since[i] = Some(now),
                (false, Some(since)) => {
                    let ms = now - since;
                    match class {
                        CreditClass::Control => c.credit_blocked_control_ms += ms,
                        CreditClass::Data => c.credit_blocked_data_ms += ms,
                    }
                    self.blocked_since[i] = None;
                }
                _ => {}
            }
        }
    }

    /// Asserts the scheduler's own bookkeeping (see `Relay::check`) and
    /// returns the bytes queued for slots in all.
    #[cfg(any(test, feature = "testing"))]
    pub fn check(&self) -> usize {
        // The control queue is short: its bytes per slot, gathered first.
        let mut control: Vec<(usize, usize)> = Vec::new();
        for o in &self.control {
            if let Some(slot) = o.slot {
                match control.iter_mut().find(|(s, _)| *s == slot as usize) {
                    Some((_, bytes)) => *bytes += o.frame.len(),
                    None => control.push((slot as usize, o.frame.len())),
                }
            }
        }
        let mut sum = 0;
        for (slot, q) in self.per_slot.iter().enumerate() {
            let in_control = control
                .iter()
                .find(|(s, _)| *s == slot)
                .map_or(0, |(_, bytes)| *bytes);
            let marked = self.occupied.from(slot, slot + 1).next() == Some(slot);
            assert_eq!(marked, !q.frames.is_empty(), "slot {slot} occupancy");
            if q.frames.is_empty() {
                // An empty queue counts nothing (`per_id` emptied, not scanned:
                // a map that once held many ids keeps its buckets).
                assert!(q.per_id.is_empty(), "slot {slot} per-id counts");
                assert_eq!(
                    (q.queued_bytes, q.data),
                    (in_control, 0),
                    "slot {slot} empty"
                );
                sum += in_control;
                continue;
            }
            let (mut bytes, mut data) = (in_control, 0);
            // Frames of one id come in runs: its count is looked up once a run.
            let mut last_id = None;
            for o in &q.frames {
                bytes += o.frame.len();
                data += usize::from(o.class == CreditClass::Data);
                assert_eq!(o.slot, Some(slot as u32), "frame in another slot's queue");
                if last_id != Some(o.id) {
                    assert!(q.per_id.contains_key(&o.id), "id {} uncounted", o.id);
                    last_id = Some(o.id);
                }
            }
            assert_eq!(q.queued_bytes, bytes, "slot {slot} queued bytes");
            let counted: u32 = q.per_id.values().sum();
            assert_eq!(
                counted as usize,
                q.frames.len(),
                "slot {slot} per-id counts"
            );
            assert!(q.per_id.values().all(|&n| n > 0), "slot {slot} zero count");
            assert_eq!(data, q.data, "slot {slot} data count");
            sum += bytes;
        }
        assert!(self.cursor < self.per_slot.len().max(1), "cursor in range");
        assert_eq!(self.total, sum, "bytes queued in all");
        sum
    }
}
