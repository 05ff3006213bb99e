//! `inv_workload_private`: a frame on `u32::MAX`, the runtime's workload
//! control id (input credit, freeze and thaw replies), is the relay's own
//! and never reaches a client, in either generation.

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model, WORKLOAD_ID, frame_id};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct WorkloadPrivate;

impl Check for WorkloadPrivate {
    const INVARIANT: Invariant = Invariant::WorkloadPrivate;
    const WANTS: u64 = Fact::TO_CLIENT;

    fn new(_m: &Model) -> Self {
        WorkloadPrivate
    }

    fn on_fact(&mut self, _m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        if let Fact::ToClient { c, frame, .. } = *f
            && frame.len() >= 8
            && frame_id(frame) == WORKLOAD_ID
        {
            v.fail::<Self>(format!(
                "a workload-control frame (id u32::MAX) was routed to {c}"
            ));
        }
    }
}
