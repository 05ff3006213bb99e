//! Rule `canonical_ranges`: which ids a slot owns, by generation. Legacy:
//! slot `k` of `n` owns `[k*step, (k+1)*step)` with `step = u32::MAX / n`,
//! as the 0.4.4 SDK assumes. Current: slot `s` of at most 128 owns
//! `[s*STEP + 1, (s+1)*STEP)` with `STEP = u32::MAX / 128`, the ranges agentd
//! checks in a disconnect notice; id 0, every boundary `s*STEP` and the tail
//! from `128*STEP` belong to nobody, and `u32::MAX` is the runtime's
//! workload-control id. Only these ranges are ever handed out.

use bytes::{BufMut, Bytes, BytesMut};

/// The largest number of slots the current generation has (its canonical
/// ranges).
pub const CURRENT_SLOTS: u32 = 128;

/// Ids per slot in the current generation.
pub const CURRENT_STEP: u32 = u32::MAX / CURRENT_SLOTS;

/// The id of the runtime's workload control (input credit among it).
pub const WORKLOAD_CONTROL_ID: u32 = u32::MAX;

/// The slots of a generation and the ids each owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Legacy { slots: u32, step: u32 },
    Current { slots: u32 },
}

impl Layout {
    /// The prologue a client of slot `slot` gets before the cached ready
    /// frame `ready`: its range's start, then (current, or legacy when the
    /// configured form has `bounds`) its end.
    pub fn prologue(self, slot: u32, bounds: bool, ready: &[u8]) -> Bytes {
        let range = self.range(slot);
        let bounds = match self {
            Layout::Legacy { .. } => bounds,
            Layout::Current { .. } => true,
        };
        let mut bytes = BytesMut::with_capacity(8 + ready.len());
        bytes.put_u32(range.start);
        if bounds {
            bytes.put_u32(range.end);
        }
        bytes.extend_from_slice(ready);
        bytes.freeze()
    }

    pub fn legacy(max_clients: u32) -> Layout {
        Layout::Legacy {
            slots: max_clients,
            step: u32::MAX / max_clients.max(1),
        }
    }

    pub fn current(clients: u32) -> Layout {
        Layout::Current {
            slots: clients.clamp(1, CURRENT_SLOTS),
        }
    }

    pub fn slots(self) -> u32 {
        match self {
            Layout::Legacy { slots, .. } | Layout::Current { slots } => slots,
        }
    }

    /// The ids slot `slot` owns.
    pub fn range(self, slot: u32) -> IdRange {
        match self {
            Layout::Legacy { step, .. } => IdRange::of_slot(slot, step),
            Layout::Current { .. } => IdRange::current(slot),
        }
    }

    /// The slot that owns `id`, if any.
    pub fn slot_of(self, id: u32) -> Option<usize> {
        let (slot, slots) = match self {
            Layout::Legacy { slots, step } => (id / step, slots),
            Layout::Current { slots } => {
                if id.is_multiple_of(CURRENT_STEP) {
                    return None; // id 0 and every boundary
                }
                (id / CURRENT_STEP, slots)
            }
        };
        (slot < slots).then_some(slot as usize)
    }
}

/// The id range a slot owns, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id.
    pub start: u32,
    /// One past the last id.
    pub end: u32,
}

impl IdRange {
    /// The range of slot `slot` for `step` ids per slot.
    pub fn of_slot(slot: u32, step: u32) -> IdRange {
        IdRange {
            start: slot * step,
            end: slot * step + step,
        }
    }

    /// Whether `id` lies inside.
    pub fn contains(&self, id: u32) -> bool {
        (self.start..self.end).contains(&id)
    }
}

impl IdRange {
    /// The canonical current-generation range of slot `slot` (below 128).
    pub fn current(slot: u32) -> IdRange {
        IdRange {
            start: slot * CURRENT_STEP + 1,
            end: (slot + 1) * CURRENT_STEP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_current_ranges_are_canonical_and_nobody_owns_the_gaps() {
        let l = Layout::current(128);
        assert_eq!(CURRENT_STEP, 33_554_431);
        assert_eq!(
            l.range(0),
            IdRange {
                start: 1,
                end: 33_554_431
            }
        );
        assert_eq!(l.range(127).end, 4_294_967_168);
        for id in [
            0,
            CURRENT_STEP,
            5 * CURRENT_STEP,
            128 * CURRENT_STEP,
            u32::MAX,
        ] {
            assert_eq!(l.slot_of(id), None, "id {id}");
        }
        for s in [0u32, 1, 64, 127] {
            let r = l.range(s);
            assert_eq!(l.slot_of(r.start), Some(s as usize));
            assert_eq!(l.slot_of(r.end - 1), Some(s as usize));
        }
        // Fewer slots offered: the same ranges, the rest owned by nobody.
        let few = Layout::current(4);
        assert_eq!(few.range(3), l.range(3));
        assert_eq!(few.slot_of(l.range(4).start), None);
    }

    #[test]
    fn core_legacy_ranges_as_the_0_4_4_sdk_assumes() {
        let l = Layout::legacy(16);
        assert_eq!(
            l.range(1),
            IdRange {
                start: 268_435_455,
                end: 536_870_910
            }
        );
        assert_eq!(l.slot_of(0), Some(0));
        assert_eq!(l.slot_of(u32::MAX), None, "past the last slot");
    }
}
