//! `inv_workload_private`: a frame on `u32::MAX`, the runtime's workload
//! control id (input credit, freeze and thaw replies), is the relay's own
//! and never reaches a client, in either generation.

use agent_relay::core::ClientId;
use bytes::Bytes;

use super::current::WORKLOAD_ID;
use super::model::frame_id;
use super::{Checker, Invariant};

impl Checker {
    /// A frame to `c`: never one on the workload-control id.
    pub(super) fn workload_to_client(&mut self, c: ClientId, frame: &Bytes) -> bool {
        self.checks += 1;
        let routed = frame.len() >= 8 && frame_id(frame) == WORKLOAD_ID;
        if routed {
            let why = format!("a workload-control frame (id u32::MAX) was routed to {c}");
            self.fail(Invariant::WorkloadPrivate, why);
        }
        routed
    }
}
