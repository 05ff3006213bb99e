//! `inv_canonical_ranges` (rule `canonical_ranges`, current generation):
//! every prologue the relay hands out is the bounds form `[id_start BE]
//! [id_end_exclusive BE]` of a canonical range, `[s*STEP + 1, (s+1)*STEP)`
//! with `STEP = u32::MAX / 128` and `s` below the slots offered, followed by
//! the cached ready frame whole.

use agent_relay::core::{ClientId, IdRange};
use bytes::Bytes;

use super::current::STEP;
use super::{Checker, Invariant};

impl Checker {
    /// The canonical range a current prologue names, or a violation.
    pub(super) fn canonical_range(&mut self, c: ClientId, bytes: &Bytes) -> Option<IdRange> {
        self.checks += 1;
        let ready = self.ready.clone()?;
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        if bytes.len() != 8 + ready.len() || bytes[8..] != ready[..] {
            let why =
                format!("handshake to {c} is not a bounds prologue then the cached ready frame");
            self.fail(Invariant::CanonicalRanges, why);
            return None;
        }
        let (start, end) = (word(0), word(4));
        let s = start.wrapping_sub(1) / STEP;
        let slots = self.layout.map_or(0, |l| l.slots()) as u32;
        if start != s * STEP + 1 || end != (s + 1) * STEP || s >= slots {
            let why = format!(
                "handshake to {c} gives range {start}..{end}, not a canonical one of {slots} slots"
            );
            self.fail(Invariant::CanonicalRanges, why);
            return None;
        }
        Some(IdRange { start, end })
    }
}
