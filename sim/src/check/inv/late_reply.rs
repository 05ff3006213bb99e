//! `inv_no_late_reply` (rule `slot_quarantine`, current generation): no
//! frame the guest sent for a departed client's correlation reaches anyone,
//! above all not the next owner of its slot, who reuses the same ids. A
//! guest frame is the departed client's when its id is one of that client's
//! open correlations (not ended by a terminal frame, not retired once the
//! guest took the disconnect notice, not given up at quarantine expiry or
//! released at the lease ack) and no newer owner of the slot has had a frame
//! on that id reach the guest yet (the guest cannot answer what it has not
//! read). The model sets such frames aside for the event (`Current::late`).

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model, frame_id};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct NoLateReply;

impl Check for NoLateReply {
    const INVARIANT: Invariant = Invariant::NoLateReply;
    const WANTS: u64 = Fact::TO_CLIENT;

    fn new(_m: &Model) -> Self {
        NoLateReply
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        let Fact::ToClient { c, frame, .. } = *f else {
            return;
        };
        if m.current
            .as_ref()
            .is_some_and(|cur| cur.late.contains(frame))
        {
            let why = format!(
                "{c} got frame id {} that the guest sent for a departed client's correlation on that id",
                frame_id(frame)
            );
            v.fail::<Self>(why);
        }
    }
}
