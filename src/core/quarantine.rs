//! Rule `slot_quarantine`: a recycled slot never receives the previous
//! owner's late frames. A departed client's slot stays taken while anything
//! of its is open (a killed process can still print and exit after a new
//! client took the slot and reused the same ids; clients allocate ids from
//! the start of their range, so reuse is the rule, not the exception) or any
//! of its frames still waits toward the guest, but at most `quarantine`
//! milliseconds: a guest that never ends a session must not cost the relay a
//! slot forever.
//!
//! Current generation: the disconnect notice ends the wait for everything
//! but exec sessions. Once the guest has taken the notice it keeps nothing of
//! that range's fs, tcp or request state, so no more frames come for them;
//! frames it sent before are ahead, in the one ordered stream, of anything it
//! sent after. The relay learns the guest took the notice when a guest frame
//! answers a frame handed over after it (each correlation remembers the
//! hand-off number of the frame that opened it); from then on no frame for
//! the old owner's fs, tcp or request ids can arrive, and they are retired.
//! Killed exec sessions stop counting against the guest's execution limit
//! then (agentd deletes them at the notice and never sends their exits), but
//! their correlations stay: output agentd had queued before it read the
//! notice may still come, so the slot stays quarantined, and so closed to a
//! new owner, until their exits or the quarantine's end. This assumes a
//! guest that handles its input in order, as agentd's one reader does. With
//! range leases (`lease.rs`) the guest's acknowledgement ends all of this at
//! once, without a timer.

use super::relay::Relay;
use super::slot::Slot;
use super::timer::{Key, SlotDeadline, Timer};

fn quarantine_key(slot: usize) -> Key {
    Key::Slot(slot as u32, SlotDeadline::Quarantine)
}

impl Slot {
    /// Whether a new client may take this slot; `queued` is the bytes of its
    /// frames still waiting toward the guest.
    pub(crate) fn is_free(&self, queued: usize) -> bool {
        self.conn.is_none() && self.open.is_empty() && queued == 0 && self.awaiting.is_none()
    }

    /// Departed, still waiting for correlations or queued frames.
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

    /// Its client left: the slot waits for what is open, for a while (with
    /// a range lease, for the guest's acknowledgement instead: `lease.rs`).
    pub(super) fn start_quarantine(&mut self, slot: usize) {
        if !self.slots[slot].open.is_empty() && self.slots[slot].awaiting.is_none() {
            let at = self.now + self.cfg.quarantine;
            let timer = Timer::Quarantine { slot: slot as u32 };
            self.deadlines.set(quarantine_key(slot), at, timer);
        }
    }

    /// A correlation of `slot` ended; with the last one the wait is over.
    pub(super) fn session_ended(&mut self, slot: usize) {
        if self.slots[slot].open.is_empty() {
            self.deadlines.clear(quarantine_key(slot));
            self.fences.retain(|_, s| *s as usize != slot);
        }
    }

    /// Everything a departed owner still holds on `slot` is forgotten: its
    /// correlations (and the executions they hold), its share of the data
    /// credit; the slot is free then, and data the share held back may go.
    pub(super) fn give_up_slot(&mut self, slot: usize) {
        let open = std::mem::take(&mut self.slots[slot].open);
        for corr in open.values() {
            self.forget(corr);
        }
        if let Some(credit) = &mut self.sched.credit {
            credit.forget_slot(slot);
        }
        self.session_ended(slot);
        self.pump_guest();
    }

    /// A guest frame answered the frame handed over as number `seq`: every
    /// disconnect notice handed over before it has been taken.
    pub(super) fn guest_read(&mut self, seq: u64) {
        if seq <= self.guest_read_to {
            return;
        }
        self.guest_read_to = seq;
        let mut retired = false;
        while let Some(entry) = self.fences.first_entry() {
            if *entry.key() >= seq {
                break;
            }
            let slot = entry.remove() as usize;
            self.retire(slot);
            retired = true;
        }
        if retired {
            // What the departed client held no longer counts against the
            // others' fair share: their waiting data may go now.
            self.pump_guest();
        }
    }

    /// The guest took `slot`'s notice: its fs, tcp and request correlations
    /// are over, and its killed executions no longer count against the
    /// guest's limit (agentd dropped them at the notice; their exits never
    /// come, so only the quarantine ends their correlations).
    fn retire(&mut self, slot: usize) {
        if self.slots[slot].conn.is_some() {
            return;
        }
        let leased = self.slots[slot].awaiting.is_some();
        for corr in self.slots[slot].open.values_mut() {
            if corr.killed && corr.counts && !leased {
                corr.counts = false;
                self.active_execs -= 1;
                self.counters.executions_released += 1;
            }
        }
        let open = &mut self.slots[slot].open;
        let gone: Vec<u32> = open
            .iter()
            .filter(|(_, c)| !c.kind.is_exec())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(corr) = self.slots[slot].open.remove(&id) {
                self.forget(&corr);
                self.counters.correlations_retired += 1;
            }
        }
        if let Some(credit) = &mut self.sched.credit {
            credit.forget_slot(slot);
        }
        self.session_ended(slot);
    }
}
