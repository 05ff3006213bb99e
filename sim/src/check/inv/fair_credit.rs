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
//!    left waiting (another client's data must not hold it up). The slots'
//!    heads are swept in the order their queues became non-empty; the first
//!    that may leave is this invariant's if it is data, `inv_control_first`'s
//!    if it is control.

use agent_relay::core::Relay;

use super::super::invariant::Invariant;
use super::super::model::{Class, Fact, Model};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct FairCredit;

impl Check for FairCredit {
    const INVARIANT: Invariant = Invariant::FairCredit;
    const WANTS: u64 = Fact::CHARGED;

    fn new(_m: &Model) -> Self {
        FairCredit
    }

    /// Check 1: a data frame of a slot leaves now: it must be within its share.
    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        let Fact::Charged {
            class: Class::Data,
            len,
            slot: Some(slot),
        } = *f
        else {
            return;
        };
        let Some(cur) = &m.current else {
            return;
        };
        let Some(credit) = &cur.credit else {
            return;
        };
        if credit.fits(Class::Data, len) && !cur.admits(Class::Data, len, Some(slot)) {
            let why = format!(
                "slot {slot}'s data frame of {len} bytes went to the guest while its estimate {:?} is at its share of {} active slots",
                credit.held_by(slot),
                cur.active()
            );
            v.fail::<Self>(why);
        }
    }

    /// Check 2: no slot's head data frame that may leave waits.
    fn after_event(&mut self, m: &Model, _relay: &Relay, v: &mut Verdict) {
        if let Some(h) = m.slot_ready
            && h.class == Class::Data
        {
            let why = format!(
                "slot {}'s data frame id {} ({} bytes) waits although the window is open and it fits the credit and its share",
                h.slot, h.id, h.len
            );
            v.fail::<Self>(why);
        }
    }
}
