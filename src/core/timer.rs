//! Named deadlines. The core keeps every deadline itself (the shell arms one
//! timer for [`super::Relay::poll_timeout`] and sends `Event::Tick`); each
//! has a [`Timer`] saying which rule waits on it.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::types::{ClientId, Millis};

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A client over its soft budget must have taken its queue down to half
    /// the budget by then, or it is closed as a slow consumer (rule
    /// `backpressure_bounded_wait`).
    SlowConsumerGrace(ClientId),
    /// All queues together over half the global cap must have fallen to a
    /// quarter of it by then, or the client holding the most is closed (rule
    /// `backpressure_bounded_wait`).
    GlobalGrace,
    /// A departed client's slot gives up its sessions then (rule
    /// `slot_quarantine`).
    Quarantine {
        /// The slot.
        slot: u32,
    },
    /// A closed client's unwritten output is given up then (rule
    /// `output_outlives_guest`).
    CloseFlush(ClientId),
    /// The periodic `core.clock.sync` is due (rule `clock_sync`).
    ClockSync,
}

/// The next moment time matters, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// When (the driver's milliseconds).
    pub at: Millis,
    /// Which deadline.
    pub timer: Timer,
}

impl std::fmt::Display for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timer::SlowConsumerGrace(client) => write!(f, "slow-consumer grace of {client}"),
            Timer::GlobalGrace => f.write_str("grace of the global output cap"),
            Timer::Quarantine { slot } => write!(f, "quarantine of slot {slot}"),
            Timer::CloseFlush(client) => write!(f, "output flush of closed {client}"),
            Timer::ClockSync => f.write_str("periodic clock sync"),
        }
    }
}

/// Where a deadline stands among those due at the same moment: a slot's
/// first (the lowest slot first), then the global cap's, then a closed
/// client's flush (the lowest client first), the clock's last. A tick
/// handles the due deadlines in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key {
    /// The slot's client's grace, or the departed owner's quarantine (a
    /// slot has one or the other).
    Slot(u32, SlotDeadline),
    Global,
    Flush(ClientId),
    Clock,
}

/// Which of a slot's two deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SlotDeadline {
    Grace,
    Quarantine,
}

impl Key {
    /// Whether `self` and `other` are deadlines of one place (one slot's
    /// two count as one: a tick visits each slot once).
    fn same_place(self, other: Key) -> bool {
        match (self, other) {
            (Key::Slot(a, _), Key::Slot(b, _)) => a == b,
            _ => self == other,
        }
    }
}

/// Every deadline the core keeps, by [`Key`]: [`super::Relay::poll_timeout`]
/// is its earliest entry and a tick fires the due ones in key order. Adding
/// a deadline: a [`Timer`] and a [`Key`] here, `set`/`clear` where its rule
/// arms it, its arm of `Relay::on_deadline` (and of `check.rs`, which says
/// what state it waits on).
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    entries: BTreeMap<Key, Timeout>,
}

impl Deadlines {
    /// Arms (or moves) the deadline `key` for `timer` at `at`.
    pub fn set(&mut self, key: Key, at: Millis, timer: Timer) {
        self.entries.insert(key, Timeout { at, timer });
    }

    /// Disarms `key`.
    pub fn clear(&mut self, key: Key) {
        self.entries.remove(&key);
    }

    /// When `key` is due, if armed.
    #[inline]
    pub fn get(&self, key: Key) -> Option<Millis> {
        self.entries.get(&key).map(|t| t.at)
    }

    /// The earliest deadline (of those at the same moment, the first in key
    /// order).
    pub fn earliest(&self) -> Option<Timeout> {
        self.entries.values().min_by_key(|t| t.at).copied()
    }

    /// The first deadline after `after` in key order (past every deadline of
    /// its place) that is due at `now`.
    pub fn next_due(&self, after: Option<Key>, now: Millis) -> Option<(Key, Timer)> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.entries
            .range((from, Bound::Unbounded))
            .find(|(k, t)| t.at <= now && after.is_none_or(|a| !a.same_place(**k)))
            .map(|(&k, t)| (k, t.timer))
    }

    /// The armed deadlines, in key order.
    #[cfg(any(test, feature = "testing"))]
    pub fn iter(&self) -> impl Iterator<Item = (Key, Timeout)> + '_ {
        self.entries.iter().map(|(&k, &t)| (k, t))
    }
}
