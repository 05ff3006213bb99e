//! The scheduler toward the guest: every client frame (and every kill the
//! relay makes) waits here until the guest port has room. It owns three
//! rules:
//! - `backpressure_not_loss`: a frame is never dropped for lack of room; at
//!   most `guest_window` bytes are handed to the port unacknowledged, and a
//!   client whose queued frames pass `client_to_guest_cap` is no longer read
//!   (the relay pauses it; it resumes at half the bound).
//! - `control_overtakes_data`: control frames (signal, resize, shutdown, the
//!   relay's kills) go out before queued data frames of other sessions, but
//!   never before a data frame of their own session.
//! - `round_robin`: data frames leave one per slot in turn, so no client
//!   waits behind more than one frame of each other client.
//!
//! It never looks inside a frame and never decides what is control: the
//! caller says so.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// A frame waiting for room toward the guest.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub slot: u32,
    pub id: u32,
    pub frame: Bytes,
    /// Emit [`super::Action::Drain`] once this frame is handed to the guest.
    pub drain: bool,
}

/// One slot's share of the queue.
#[derive(Debug, Default)]
struct SlotQueue {
    /// Data frames, and control frames that must stay behind one of them.
    frames: VecDeque<Outbound>,
    /// How many of `frames` each id has, so a control frame never overtakes
    /// a data frame of its own session.
    per_id: HashMap<u32, u32>,
    /// Bytes of this slot's frames queued anywhere here (queue and control
    /// queue).
    queued_bytes: usize,
}

/// Frames toward the guest; see the module docs.
#[derive(Debug)]
pub(crate) struct Scheduler {
    /// Control frames; served before any queue.
    control: VecDeque<Outbound>,
    per_slot: Vec<SlotQueue>,
    /// The next slot whose queue the round robin serves.
    cursor: usize,
    /// Bytes handed to the guest port and not yet reported written.
    inflight: usize,
    window: usize,
}

impl Scheduler {
    pub fn new(slots: usize, window: usize) -> Scheduler {
        Scheduler {
            control: VecDeque::new(),
            per_slot: (0..slots).map(|_| SlotQueue::default()).collect(),
            cursor: 0,
            inflight: 0,
            window,
        }
    }

    /// Bytes of `slot`'s frames waiting here.
    pub fn queued(&self, slot: usize) -> usize {
        self.per_slot[slot].queued_bytes
    }

    /// Whether `slot` has frames in its queue (a kill queued now must stay
    /// behind them).
    pub fn has_data_queued(&self, slot: usize) -> bool {
        !self.per_slot[slot].frames.is_empty()
    }

    /// Bytes handed to the guest port and not yet written.
    #[cfg(any(test, feature = "testing"))]
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Queues a frame. A control frame goes to the control queue unless a
    /// data frame of its own session is still queued, which it must not
    /// overtake.
    pub fn enqueue(&mut self, out: Outbound, control: bool) {
        let queue = &mut self.per_slot[out.slot as usize];
        queue.queued_bytes += out.frame.len();
        if control && !queue.per_id.contains_key(&out.id) {
            self.control.push_back(out);
        } else {
            *queue.per_id.entry(out.id).or_default() += 1;
            queue.frames.push_back(out);
        }
    }

    /// The guest port wrote `n` bytes of what it was handed.
    pub fn written(&mut self, n: usize) {
        self.inflight = self.inflight.saturating_sub(n);
    }

    /// The next frame to hand to the guest, if the window has room: control
    /// frames first, then one queue frame per slot in turn. The frame counts
    /// as in flight from now on.
    pub fn next(&mut self) -> Option<Outbound> {
        if self.inflight >= self.window {
            return None;
        }
        let out = match self.control.pop_front() {
            Some(out) => out,
            None => self.next_data()?,
        };
        self.per_slot[out.slot as usize].queued_bytes -= out.frame.len();
        self.inflight += out.frame.len();
        Some(out)
    }

    fn next_data(&mut self) -> Option<Outbound> {
        let n = self.per_slot.len();
        let next = (0..n)
            .map(|k| (self.cursor + k) % n)
            .find(|&i| !self.per_slot[i].frames.is_empty())?;
        self.cursor = (next + 1) % n;
        let queue = &mut self.per_slot[next];
        let out = queue.frames.pop_front()?;
        if let Some(count) = queue.per_id.get_mut(&out.id) {
            *count -= 1;
            if *count == 0 {
                queue.per_id.remove(&out.id);
            }
        }
        Some(out)
    }

    /// Asserts the scheduler's own bookkeeping (see `Relay::check`) and
    /// returns the bytes queued in all.
    #[cfg(any(test, feature = "testing"))]
    pub fn check(&self) -> usize {
        let mut bytes: Vec<usize> = self
            .per_slot
            .iter()
            .map(|queue| queue.frames.iter().map(|o| o.frame.len()).sum())
            .collect();
        for o in &self.control {
            bytes[o.slot as usize] += o.frame.len();
        }
        for (slot, queue) in self.per_slot.iter().enumerate() {
            assert_eq!(queue.queued_bytes, bytes[slot], "slot {slot} queued bytes");
            for o in &queue.frames {
                assert_eq!(o.slot as usize, slot, "frame in another slot's queue");
                assert!(queue.per_id.contains_key(&o.id), "id {} uncounted", o.id);
            }
            let counted: u32 = queue.per_id.values().sum();
            assert_eq!(
                counted as usize,
                queue.frames.len(),
                "slot {slot} per-id counts"
            );
            assert!(
                queue.per_id.values().all(|&n| n > 0),
                "slot {slot} zero count"
            );
        }
        assert!(self.cursor < self.per_slot.len().max(1), "cursor in range");
        bytes.iter().sum()
    }
}
