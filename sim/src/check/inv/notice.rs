//! `inv_notice_after_kills` (rule `kill_on_departure`, current generation):
//! each client that leaves after its handshake owes exactly one
//! `core.relay.client.disconnected {id_start, id_end_exclusive}` naming its
//! slot's canonical range (and, leased, its incarnation: `inv_range_leases`
//! judges which), on id 0 in the guest's generation; every SIGKILL
//! for its exec sessions reaches the guest before that notice, and nothing
//! else of that client's reaches the guest after it (the guest drops the
//! range's state on reading it). A notice nobody owes, or a second one, is a
//! failure, and so is an owed notice at the control queue's head that waits
//! while it may leave; a notice that never goes out is `live_cleanup_end`.

use agent_relay::core::Relay;

use super::super::invariant::Invariant;
use super::super::model::{Ctl, Fact, Model, State, Stray};
use super::{Check, Verdict, head_waits_why, stray_why};

/// See the module docs.
#[derive(Debug)]
pub struct NoticeAfterKills;

impl Check for NoticeAfterKills {
    const INVARIANT: Invariant = Invariant::NoticeAfterKills;
    const WANTS: u64 = Fact::NOTICE_HANDED | Fact::TURN_HANDED | Fact::UNMATCHED_CURRENT;

    fn new(_m: &Model) -> Self {
        NoticeAfterKills
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::NoticeHanded(c) => {
                let k = m.client(c);
                if !k.kills.is_empty() {
                    v.fail::<Self>(format!(
                        "the disconnect notice of {c} went to the guest before its SIGKILLs for {:?}",
                        k.kills
                    ));
                }
            }
            Fact::TurnHanded { c, id } => {
                let k = m.client(c);
                if k.state == State::Gone && k.noticed {
                    v.fail::<Self>(format!(
                        "frame id {id} of departed {c} went to the guest after its disconnect notice"
                    ));
                }
            }
            Fact::UnmatchedCurrent {
                frame,
                stray: stray @ Stray::NoticeOutOfPlace,
                head,
            } => v.fail::<Self>(stray_why(frame, stray, head)),
            _ => {}
        }
    }

    /// An owed notice at the control queue's head does not wait while it
    /// may leave.
    fn after_event(&mut self, m: &Model, _relay: &Relay, v: &mut Verdict) {
        if let Some((Ctl::Notice(_), why)) = head_waits_why(m) {
            v.fail::<Self>(why);
        }
    }
}
