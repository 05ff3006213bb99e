//! `inv_canonical_ranges` (rule `canonical_ranges`, current generation):
//! every prologue the relay hands out is the bounds form `[id_start BE]
//! [id_end_exclusive BE]` of a canonical range, `[s*STEP + 1, (s+1)*STEP)`
//! with `STEP = u32::MAX / 128` and `s` below the slots offered, followed by
//! the cached ready frame whole.

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model, Prologue};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct CanonicalRanges;

impl Check for CanonicalRanges {
    const INVARIANT: Invariant = Invariant::CanonicalRanges;
    const WANTS: u64 = Fact::PROLOGUE;

    fn new(_m: &Model) -> Self {
        CanonicalRanges
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        let Fact::Prologue { c, found } = *f else {
            return;
        };
        if m.current.is_none() {
            return;
        }
        match found {
            Prologue::Slot(_) => {}
            Prologue::NotRangeThenReady => v.fail::<Self>(format!(
                "handshake to {c} is not a bounds prologue then the cached ready frame"
            )),
            Prologue::NotASlot { start, end } => {
                let slots = m.layout.map_or(0, |l| l.slots());
                v.fail::<Self>(format!(
                    "handshake to {c} gives range {start}..{end}, not a canonical one of {slots} slots"
                ));
            }
        }
    }
}
