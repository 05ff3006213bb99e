//! Rule `range_leases` (current generation, when the guest's `core.ready`
//! offers `relay_lease` format 1, as 0.7.13 agentd always does): each
//! ownership period of a slot has an incarnation, 16 bytes drawn from a
//! seeded source (`CurrentSettings::incarnation_seed`: the shell seeds it from the
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

use bytes::Bytes;

use super::layout::{IdRange, Layout};
use super::violation::GuestCorruption;
use crate::wire::lease::{Incarnation, LeaseEvent, LeaseRecord};

/// Range leases: the source incarnations are drawn from, and per slot the
/// live owner's incarnation and the departed owner's awaiting the guest's
/// acknowledgement.
#[derive(Debug)]
pub(crate) struct Leases {
    /// splitmix64 state.
    state: u64,
    held: Vec<Option<Incarnation>>,
    awaiting: Vec<Option<Incarnation>>,
}

impl Leases {
    pub fn new(seed: u64, slots: usize) -> Leases {
        Leases {
            state: seed,
            held: vec![None; slots],
            awaiting: vec![None; slots],
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A nonzero incarnation no live or awaited owner has.
    fn draw(&mut self) -> Incarnation {
        loop {
            let mut inc = [0u8; 16];
            inc[..8].copy_from_slice(&self.next_u64().to_be_bytes());
            inc[8..].copy_from_slice(&self.next_u64().to_be_bytes());
            let taken = |v: &[Option<Incarnation>]| v.contains(&Some(inc));
            if inc != [0; 16] && !taken(&self.held) && !taken(&self.awaiting) {
                return inc;
            }
        }
    }

    /// The client of `slot`, about to get its prologue, gets an incarnation:
    /// its connected record (for its range `range`), to queue first.
    pub fn connect(&mut self, slot: usize, range: IdRange) -> Bytes {
        let inc = self.draw();
        self.held[slot] = Some(inc);
        let record = LeaseRecord {
            event: LeaseEvent::Connected,
            id_start: range.start,
            id_end: range.end,
            incarnation: inc,
        };
        Bytes::copy_from_slice(&record.encode())
    }

    /// The departing owner's incarnation for its notice; from now on the
    /// slot awaits the guest's acknowledgement of it.
    pub fn depart(&mut self, slot: usize) -> Option<Incarnation> {
        let inc = self.held[slot].take()?;
        self.awaiting[slot] = Some(inc);
        Some(inc)
    }

    /// Whether `slot` waits for the guest's acknowledgement.
    pub fn awaits(&self, slot: usize) -> bool {
        self.awaiting[slot].is_some()
    }

    /// The guest acknowledged `inc` on `slot`: true if the slot awaited it
    /// (it no longer does).
    pub fn acknowledged(&mut self, slot: usize, inc: Incarnation) -> bool {
        let hit = self.awaiting[slot] == Some(inc);
        if hit {
            self.awaiting[slot] = None;
        }
        hit
    }

    /// The incarnations of `slot`: its live owner's and the awaited one.
    #[cfg(any(test, feature = "testing"))]
    pub fn of_slot(&self, slot: usize) -> (Option<Incarnation>, Option<Incarnation>) {
        (self.held[slot], self.awaiting[slot])
    }
}

/// A lease record from the guest (its bytes, magic seen): the slot and
/// incarnation a disconnect acknowledgement names (no slot if its range is
/// none of `layout`'s), or why it is corrupt.
pub(super) fn read_ack(
    bytes: &[u8],
    layout: Option<Layout>,
) -> Result<(Option<usize>, Incarnation), GuestCorruption> {
    let record = match LeaseRecord::decode(bytes) {
        Ok(r) if r.event == LeaseEvent::DisconnectedAck => r,
        Ok(_) => return Err(GuestCorruption::LeaseConnected),
        Err(e) => return Err(GuestCorruption::Lease(e)),
    };
    let slot = layout
        .and_then(|l| l.slot_of(record.id_start))
        .filter(|&s| {
            let range = layout.map(|l| l.range(s as u32));
            range.is_some_and(|r| (r.start, r.end) == (record.id_start, record.id_end))
        });
    Ok((slot, record.incarnation))
}
