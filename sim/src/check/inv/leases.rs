//! `inv_range_leases` (rule `range_leases`, current generation, when the
//! guest's ready offers `relay_lease {max_format >= 1}`):
//!
//! 1. each client handshaken then gets one *connected* record naming its
//!    slot's canonical range; it joins the control queue at the handshake,
//!    so it reaches the guest ahead of every frame of that client (its own
//!    frames, kills and notice) and is charged to control credit; one that
//!    went just before its handshake names that handshake's range, and a
//!    record (or room made for one) is never left without its handshake;
//! 2. its incarnation is nonzero and differs from that of every owner live
//!    or awaiting the guest's acknowledgement;
//! 3. its departure's notice names that incarnation (the notice's place and
//!    the kills before it are `inv_notice_after_kills`');
//! 4. its slot goes to no new client before the guest's *disconnected ack*
//!    for it has been read (no quarantine timer: the ack ends the wait);
//! 5. the core's counts of records, acks and ignored acks equal the model's.

use agent_relay::core::Relay;

use super::super::invariant::Invariant;
use super::super::model::{Ctl, Fact, Model, Reached, Stray};
use super::{Check, Verdict, head_waits_why, stray_why};

/// See the module docs.
#[derive(Debug)]
pub struct RangeLeases;

impl Check for RangeLeases {
    const INVARIANT: Invariant = Invariant::RangeLeases;
    const WANTS: u64 = Fact::SLOT_AWAITS_ACK
        | Fact::EARLY_LEASE_MISMATCH
        | Fact::LEASE_HANDED
        | Fact::REACHED
        | Fact::UNMATCHED_CURRENT;

    fn new(_m: &Model) -> Self {
        RangeLeases
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::SlotAwaitsAck { c, slot, other } => v.fail::<Self>(format!(
                "{c} got slot {slot} before the guest acknowledged the departure of its leased owner {other}"
            )),
            Fact::EarlyLeaseMismatch {
                c,
                record: (s, e),
                range,
            } => v.fail::<Self>(format!(
                "a connected record for [{s}, {e}) went to the guest, then {c} got the range [{}, {})",
                range.start, range.end
            )),
            Fact::LeaseHanded { c, inc } => {
                if inc == [0; 16] {
                    v.fail::<Self>(format!(
                        "the connected record of {c} has a zero incarnation"
                    ));
                } else if let Some(o) = m.incarnation_held(c, inc) {
                    v.fail::<Self>(format!(
                        "the connected record of {c} reuses the incarnation of {o}, live or awaiting its acknowledgement"
                    ));
                }
            }
            Fact::Reached { c, what } => {
                let k = m.client(c);
                if k.leased && k.incarnation.is_none() {
                    let what = match what {
                        Reached::Frame => "a frame",
                        Reached::Kill => "a SIGKILL",
                        Reached::Notice => "the disconnect notice",
                    };
                    v.fail::<Self>(format!(
                        "{what} of {c} reached the guest before its connected record"
                    ));
                }
            }
            Fact::UnmatchedCurrent {
                frame,
                stray:
                    stray @ (Stray::LeaseNotFirst | Stray::LeaseOutOfPlace | Stray::WrongIncarnation),
                head,
            } => v.fail::<Self>(stray_why(frame, stray, head)),
            _ => {}
        }
    }

    fn after_event(&mut self, m: &Model, relay: &Relay, v: &mut Verdict) {
        if let Some((s, e)) = m.orphan_lease {
            return v.fail::<Self>(format!(
                "a connected record for [{s}, {e}) went to the guest with no handshake after it"
            ));
        }
        if m.lease_due_orphaned {
            return v.fail::<Self>(
                "a client was closed to make room for a handshake that did not follow".into(),
            );
        }
        let Some(cur) = &m.current else {
            return;
        };
        let k = relay.counters();
        let (want, got) = (
            cur.counts,
            (k.leases_granted, k.lease_acks, k.lease_acks_ignored),
        );
        if (want.granted, want.acks, want.acks_ignored) != got {
            let why = format!(
                "the core counts (records, acks, ignored acks) {got:?}, the model ({}, {}, {})",
                want.granted, want.acks, want.acks_ignored
            );
            return v.fail::<Self>(why);
        }
        if let Some((Ctl::Lease(_) | Ctl::LeaseDue, why)) = head_waits_why(m) {
            v.fail::<Self>(why);
        }
    }
}
