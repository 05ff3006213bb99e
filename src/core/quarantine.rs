//! Rule `slot_quarantine`: a recycled slot never receives the previous
//! owner's late frames. A departed client's slot stays taken while any of its
//! sessions is open (a killed process can still print and exit after a new
//! client took the slot and reused the same ids) or any of its frames still
//! waits toward the guest, but at most `quarantine` milliseconds: a guest
//! that never ends a session must not cost the relay a slot forever.

use super::relay::Relay;
use super::slot::Slot;

impl Slot {
    /// Whether a new client may take this slot; `queued` is the bytes of its
    /// frames still waiting toward the guest.
    pub(crate) fn is_free(&self, queued: usize) -> bool {
        self.conn.is_none() && self.sessions.is_empty() && queued == 0
    }

    /// Departed, still waiting for sessions or queued frames.
    pub(crate) fn is_quarantined(&self, queued: usize) -> bool {
        self.conn.is_none() && !self.is_free(queued)
    }
}

impl Relay {
    /// The first slot a new client may take.
    pub(super) fn free_slot(&self) -> Option<usize> {
        (0..self.slots.len()).find(|&i| self.slots[i].is_free(self.sched.queued(i)))
    }

    /// Slots a departed client still holds.
    pub(super) fn quarantined(&self) -> u32 {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].is_quarantined(self.sched.queued(i)))
            .count() as u32
    }

    /// Its client left: the slot waits for its open sessions, for a while.
    pub(super) fn start_quarantine(&mut self, slot: usize) {
        if !self.slots[slot].sessions.is_empty() {
            self.slots[slot].quarantine_until = Some(self.now + self.cfg.quarantine);
        }
    }

    /// A session of `slot` ended; with the last one the wait is over.
    pub(super) fn session_ended(&mut self, slot: usize) {
        if self.slots[slot].sessions.is_empty() {
            self.slots[slot].quarantine_until = None;
        }
    }

    /// The guest never ended these sessions: give the slot back.
    pub(super) fn expire_quarantine(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if s.conn.is_none() && s.quarantine_until.is_some_and(|d| d <= self.now) {
            self.counters.live_sessions -= s.sessions.len() as u64;
            s.sessions.clear();
            s.quarantine_until = None;
        }
    }
}
