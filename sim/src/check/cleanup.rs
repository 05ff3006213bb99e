//! `inv_cleanup`: every exec session open when its client left gets exactly
//! one SIGKILL from the relay, after all of that client's earlier frames; no
//! SIGKILL for a session that had ended, none for fs sessions, none twice.
//! Current generation: the kills join the control queue, so they pass that
//! client's frames still waiting in its slot's queue (its data was dropped),
//! never its earlier control-queue frames; they carry the ready's `v`.

use agent_relay::core::ClientId;

use super::{Checker, Invariant};

impl Checker {
    /// The SIGKILL `c` was owed for session `id` arrived.
    pub(super) fn kill_arrived(&mut self, c: ClientId, id: u32) {
        let current = self.current.is_some();
        let m = self.clients.get_mut(&c).expect("candidate");
        if !current && !m.out.is_empty() {
            if m.violated {
                // A violator's earlier frames may be dropped, but never arrive late.
                m.out.clear();
                m.out_bytes = 0;
            } else {
                let why = format!(
                    "SIGKILL for session {id} of {c} overtook {} earlier frames of that client",
                    m.out.len()
                );
                return self.fail(Invariant::Cleanup, why);
            }
        }
        m.kills.remove(&id);
        let lane = m.kill_lane;
        self.lane_served(c, lane);
        self.touch(c);
    }

    /// A SIGKILL nobody is owed (nor any client sent).
    pub(super) fn unowed_kill(&mut self, id: u32) {
        let why = format!(
            "SIGKILL for id {id} that no departed client's open exec session owes (ended, fs, duplicate or never opened)"
        );
        self.fail(Invariant::Cleanup, why);
    }
}
