//! Rule `range_leases` (current generation, when the guest's `core.ready`
//! offers `relay_lease` format 1, as 0.7.13 agentd always does): each
//! ownership period of a slot has an incarnation, 16 bytes drawn from a
//! seeded source (`Config::incarnation_seed`: the shell seeds it from the
//! operating system, the simulator from its seed), never zero and never equal
//! to that of a live owner or of one whose departure the guest has not yet
//! acknowledged.
//!
//! - A client's *connected* record goes to the guest ahead of its prologue,
//!   and so ahead of every frame it sends, through the control queue and
//!   charged to control credit (agentd charges it 41 bytes and one frame).
//! - Its departure's notice names the incarnation; the slot then waits for
//!   the guest's *disconnected ack*, which agentd sends once that owner's
//!   sessions are killed and its queued output gone. No timer: agentd never
//!   sends `core.exec.exited` for the sessions it killed, and a slot reused
//!   before the ack ends agentd's loop.
//! - At the ack the slot, every correlation still open on it and the
//!   executions they held are released. An ack for an incarnation the slot
//!   does not await is counted and ignored.

use super::relay::Relay;
use super::scheduler::{Mark, Outbound};
use super::types::Action;
use super::violation::GuestCorruption;
use crate::wire::CreditClass;
use crate::wire::lease::{Incarnation, LeaseEvent, LeaseRecord};

/// The lease state of the relay: whether the guest reads leases, and the
/// source incarnations are drawn from.
#[derive(Debug)]
pub(crate) struct Leases {
    /// The guest's ready offered format 1.
    pub on: bool,
    /// splitmix64 state.
    state: u64,
}

impl Leases {
    pub fn new(seed: u64) -> Leases {
        Leases {
            on: false,
            state: seed,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A nonzero incarnation for which `taken` is false.
    fn draw(&mut self, taken: impl Fn(&Incarnation) -> bool) -> Incarnation {
        loop {
            let mut inc = [0u8; 16];
            inc[..8].copy_from_slice(&self.next_u64().to_be_bytes());
            inc[8..].copy_from_slice(&self.next_u64().to_be_bytes());
            if inc != [0; 16] && !taken(&inc) {
                return inc;
            }
        }
    }
}

impl Relay {
    /// The client of `slot` is about to get its prologue: with leases, it
    /// gets an incarnation and its connected record is queued first.
    pub(super) fn lease_connect(&mut self, slot: usize) {
        if !self.leases.on {
            return;
        }
        let Some(layout) = self.layout else {
            return;
        };
        let slots = &self.slots;
        let inc = self.leases.draw(|inc| {
            slots
                .iter()
                .any(|s| s.incarnation.as_ref() == Some(inc) || s.awaiting.as_ref() == Some(inc))
        });
        self.slots[slot].incarnation = Some(inc);
        let range = layout.range(slot as u32);
        let record = LeaseRecord {
            event: LeaseEvent::Connected,
            id_start: range.start,
            id_end: range.end,
            incarnation: inc,
        };
        self.counters.leases_granted += 1;
        let out = Outbound {
            slot: Some(slot as u32),
            id: 0,
            frame: bytes::Bytes::copy_from_slice(&record.encode()),
            class: CreditClass::Control,
            charged: true,
            mark: Mark::Plain,
        };
        self.enqueue(out, true);
        self.pump_guest();
    }

    /// The departing owner's incarnation for its notice; from now on the
    /// slot awaits the guest's acknowledgement of it.
    pub(super) fn lease_depart(&mut self, slot: usize) -> Option<Incarnation> {
        let s = &mut self.slots[slot];
        let inc = s.incarnation.take()?;
        s.awaiting = Some(inc);
        Some(inc)
    }

    /// A lease record from the guest (its bytes, magic seen).
    pub(super) fn on_lease_record(&mut self, bytes: &[u8]) {
        let record = match LeaseRecord::decode(bytes) {
            Ok(r) if r.event == LeaseEvent::DisconnectedAck => r,
            Ok(_) => return self.lease_corrupt(GuestCorruption::LeaseConnected, bytes.len()),
            Err(e) => return self.lease_corrupt(GuestCorruption::Lease(e), bytes.len()),
        };
        let slot = self
            .layout
            .and_then(|l| l.slot_of(record.id_start))
            .filter(|&s| {
                let range = self.layout.map(|l| l.range(s as u32));
                range.is_some_and(|r| (r.start, r.end) == (record.id_start, record.id_end))
            });
        match slot {
            Some(slot) if self.slots[slot].awaiting == Some(record.incarnation) => {
                self.lease_release(slot)
            }
            _ => self.counters.lease_acks_ignored += 1,
        }
    }

    fn lease_corrupt(&mut self, error: GuestCorruption, skipped: usize) {
        self.counters.guest_corrupt += 1;
        self.counters.guest_corrupt_bytes += skipped as u64;
        self.actions
            .push_back(Action::GuestCorrupt { error, skipped });
    }

    /// The guest let go of the departed owner of `slot`: so does the relay.
    fn lease_release(&mut self, slot: usize) {
        self.counters.lease_acks += 1;
        self.slots[slot].awaiting = None;
        self.give_up_slot(slot);
    }
}
