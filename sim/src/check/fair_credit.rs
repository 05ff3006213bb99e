//! `inv_fair_credit` (rule `fair_data_credit`): no client holds more than a
//! fair share of the data window, and a client's data waits only for its
//! share or for credit, never behind another client's.
//!
//! The guest's grants are not per client, so the share is judged on the
//! estimate `credit.rs` documents, which the model keeps from what it sees:
//! every data frame handed over is remembered for its slot, and the data
//! bytes each grant gives back come off the most recently sent frames first
//! (a frame all of whose bytes came back is no longer held); a departed
//! client's slot is forgotten once the guest took its notice or its
//! quarantine ended. With `n` slots holding or queueing data, a slot may
//! send a data frame when it holds nothing, or when its held bytes plus the
//! frame stay within `32 MiB / max(n, 2)` and its held frames under
//! `256 / max(n, 2)`. Two checks:
//!
//! 1. every client data frame that reaches the guest was within its share;
//! 2. after every event, with the guest window open and the control queue
//!    empty, no slot's head data frame that fits the credit and its share is
//!    left waiting (another client's data must not hold it up).

use super::current::Class;
use super::{Checker, Invariant};

impl Checker {
    /// A data frame of `slot` leaves now: it must be within its share.
    pub(super) fn judge_fair(&mut self, class: Class, len: usize, slot: Option<usize>) {
        let Some(cur) = &self.current else {
            return;
        };
        let (Some(credit), Class::Data, Some(slot)) = (&cur.credit, class, slot) else {
            return;
        };
        if credit.fits(class, len) && !cur.admits(class, len, Some(slot)) {
            let why = format!(
                "slot {slot}'s data frame of {len} bytes went to the guest while its estimate {:?} is at its share of {} active slots",
                credit.held_by(slot),
                cur.active()
            );
            self.fail(Invariant::FairCredit, why);
        }
    }

    /// Check 2 for one client's slot head (called by `inv_control_first`'s
    /// sweep, which owns the order of the end-of-event checks).
    pub(super) fn data_head_waits(&mut self, slot: usize, len: usize, id: u32) {
        let why = format!(
            "slot {slot}'s data frame id {id} ({len} bytes) waits although the window is open and it fits the credit and its share"
        );
        self.fail(Invariant::FairCredit, why);
    }
}
