//! Range leases (current generation): which incarnation owns each canonical
//! client slot, as 0.7.13 agentd keeps it.
//!
//! The relay names a slot's owner with a *connected* record (41 raw bytes
//! with the `MSBL` magic) before any frame of that client. A disconnect
//! notice that names the slot's current incarnation removes it; the agent
//! then answers with a *disconnected ack* record. A notice with another
//! (stale) incarnation changes nothing and gets no answer.
//!
//! Output is tagged with the [`Owner`] its session had when it was opened;
//! the writer drops tagged output whose owner is no longer current, so
//! nothing of a departed leased owner goes out after its acknowledgement
//! (the acknowledgement is queued after the owner was removed, and the
//! writer checks each frame as it takes it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::wire::lease::{Incarnation, LeaseEvent, LeaseRecord};

/// Client slots of the current generation.
const SLOTS: u32 = 128;
/// The width of a slot's range (`u32::MAX / 128`).
const STEP: u32 = u32::MAX / SLOTS;

/// The canonical range of `slot`: `[slot*STEP + 1, (slot+1)*STEP)`.
fn range_of(slot: u32) -> Option<(u32, u32)> {
    if slot >= SLOTS {
        return None;
    }
    let base = slot.checked_mul(STEP)?;
    Some((base.checked_add(1)?, base.checked_add(STEP)?))
}

/// The slot whose canonical range holds `id` (none for id 0, the
/// boundaries and the tail).
pub(super) fn slot_of(id: u32) -> Option<u32> {
    let slot = id / STEP;
    let (start, end) = range_of(slot)?;
    (start <= id && id < end).then_some(slot)
}

/// The slot whose canonical range is exactly `[id_start, id_end)`.
pub(super) fn canonical_slot(id_start: u32, id_end: u32) -> Option<u32> {
    let slot = slot_of(id_start)?;
    (range_of(slot) == Some((id_start, id_end))).then_some(slot)
}

/// One ownership period of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    slot: u32,
    incarnation: Incarnation,
}

/// What a disconnect notice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// It named an incarnation the slot no longer holds: ignored.
    Stale,
    /// The range's state goes; with the incarnation that was removed, if
    /// the slot was leased.
    Gone(Option<Incarnation>),
}

/// The slots' current owners, shared by the reader (which changes them)
/// and the writer (which checks tagged output against them).
#[derive(Debug, Clone, Default)]
pub(super) struct Leases {
    owners: Arc<Mutex<HashMap<u32, Incarnation>>>,
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Incarnation>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The owner of `id`'s slot now, if it is leased.
    pub(super) fn owner_of(&self, id: u32) -> Option<Owner> {
        let slot = slot_of(id)?;
        let incarnation = *self.lock().get(&slot)?;
        Some(Owner { slot, incarnation })
    }

    /// Whether `owner` still owns its slot.
    pub(super) fn is_current(&self, owner: &Owner) -> bool {
        self.lock().get(&owner.slot) == Some(&owner.incarnation)
    }

    /// A *connected* record; the error is why agentd's loop would end.
    pub(super) fn connect(&self, record: &LeaseRecord) -> Result<u32, String> {
        if record.event != LeaseEvent::Connected {
            return Err(
                "decode relay client lease: malformed relay client lease frame \
                 (event 2, the guest's acknowledgement, sent to the guest)"
                    .to_owned(),
            );
        }
        let slot = checked_range(record.id_start, record.id_end)?;
        if record.incarnation == [0; 16] {
            return Err("relay client incarnation cannot be zero".to_owned());
        }
        let mut owners = self.lock();
        if owners.get(&slot).is_some_and(|i| *i != record.incarnation) {
            return Err(format!(
                "relay client slot {slot} was replaced before acknowledged disconnect"
            ));
        }
        owners.insert(slot, record.incarnation);
        Ok(slot)
    }

    /// A disconnect notice for `[id_start, id_end)`, naming `incarnation`
    /// or not; the error is why agentd's loop would end.
    pub(super) fn disconnect(
        &self,
        id_start: u32,
        id_end: u32,
        incarnation: Option<Incarnation>,
    ) -> Result<Notice, String> {
        let slot = checked_range(id_start, id_end)?;
        let mut owners = self.lock();
        match incarnation {
            Some(named) if owners.get(&slot) != Some(&named) => Ok(Notice::Stale),
            Some(named) => {
                owners.remove(&slot);
                Ok(Notice::Gone(Some(named)))
            }
            None if owners.contains_key(&slot) => Err(format!(
                "the disconnect notice for leased slot {slot} omitted its incarnation"
            )),
            None => Ok(Notice::Gone(None)),
        }
    }
}

fn checked_range(id_start: u32, id_end: u32) -> Result<u32, String> {
    canonical_slot(id_start, id_end)
        .ok_or_else(|| format!("invalid relay client range [{id_start}, {id_end})"))
}

/// The 41-byte acknowledgement of the departure of `incarnation` from
/// `[id_start, id_end)`.
pub(super) fn disconnected_ack(id_start: u32, id_end: u32, incarnation: Incarnation) -> [u8; 41] {
    LeaseRecord {
        event: LeaseEvent::DisconnectedAck,
        id_start,
        id_end,
        incarnation,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_agent_slots_are_agentds_canonical_ranges() {
        assert_eq!(STEP, 33_554_431);
        assert_eq!(slot_of(0), None);
        assert_eq!(slot_of(1), Some(0));
        assert_eq!(slot_of(STEP - 1), Some(0));
        assert_eq!(slot_of(STEP), None, "a boundary belongs to nobody");
        assert_eq!(slot_of(STEP + 1), Some(1));
        assert_eq!(slot_of(128 * STEP + 1), None, "the tail");
        assert_eq!(slot_of(u32::MAX), None);
        assert_eq!(canonical_slot(STEP + 1, 2 * STEP), Some(1));
        assert_eq!(canonical_slot(STEP + 1, 2 * STEP - 1), None);
        assert_eq!(canonical_slot(STEP, 2 * STEP), None);
    }

    #[test]
    fn demo_agent_lease_table_follows_agentd() {
        let leases = Leases::default();
        let rec = |event, start, end, incarnation| LeaseRecord {
            event,
            id_start: start,
            id_end: end,
            incarnation,
        };
        let a = [1; 16];
        assert_eq!(
            leases.connect(&rec(LeaseEvent::Connected, 1, STEP, a)),
            Ok(0)
        );
        assert!(
            leases
                .connect(&rec(LeaseEvent::Connected, 1, STEP, a))
                .is_ok()
        );
        assert!(
            leases
                .connect(&rec(LeaseEvent::Connected, 1, STEP, [2; 16]))
                .is_err()
        );
        assert!(
            leases
                .connect(&rec(LeaseEvent::Connected, 2, STEP, [2; 16]))
                .is_err()
        );
        assert!(
            leases
                .connect(&rec(LeaseEvent::Connected, STEP + 1, 2 * STEP, [0; 16]))
                .is_err()
        );
        assert!(
            leases
                .connect(&rec(LeaseEvent::DisconnectedAck, 1, STEP, a))
                .is_err()
        );
        let owner = leases.owner_of(5).expect("leased");
        assert!(leases.is_current(&owner));
        assert_eq!(leases.disconnect(1, STEP, Some([9; 16])), Ok(Notice::Stale));
        assert!(leases.disconnect(1, STEP, None).is_err());
        assert_eq!(
            leases.disconnect(1, STEP, Some(a)),
            Ok(Notice::Gone(Some(a)))
        );
        assert!(!leases.is_current(&owner));
        assert_eq!(leases.disconnect(1, STEP, None), Ok(Notice::Gone(None)));
        assert_eq!(leases.disconnect(1, STEP, Some(a)), Ok(Notice::Stale));
    }
}
