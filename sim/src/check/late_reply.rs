//! `inv_no_late_reply` (rule `slot_quarantine`, current generation): no
//! frame the guest sent for a departed client's correlation reaches anyone,
//! above all not the next owner of its slot, who reuses the same ids. A
//! guest frame is the departed client's when its id is one of that client's
//! open correlations (not ended by a terminal frame, not retired once the
//! guest took the disconnect notice, not given up at quarantine expiry) and
//! no newer owner of the slot has had a frame on that id reach the guest yet
//! (the guest cannot answer what it has not read). The model sets such
//! frames aside in `Current::late` for the event.

use agent_relay::core::ClientId;
use bytes::Bytes;

use super::model::frame_id;
use super::{Checker, Invariant};

impl Checker {
    /// A frame to `c`: never one the guest sent for a departed client.
    pub(super) fn late_to_client(&mut self, c: ClientId, frame: &Bytes) -> bool {
        let Some(cur) = &self.current else {
            return false;
        };
        self.checks += 1;
        let late = cur.late.iter().any(|f| f == frame);
        if late {
            let why = format!(
                "{c} got frame id {} that the guest sent for a departed client's correlation on that id",
                frame_id(frame)
            );
            self.fail(Invariant::NoLateReply, why);
        }
        late
    }
}
