//! `inv_notice_after_kills` (rule `kill_on_departure`, current generation):
//! each client that leaves after its handshake owes exactly one
//! `core.relay.client.disconnected {id_start, id_end_exclusive}` naming its
//! slot's canonical range (and, leased, its incarnation: `inv_range_leases`
//! judges which), on id 0 in the guest's generation; every SIGKILL
//! for its exec sessions reaches the guest before that notice, and nothing
//! else of that client's reaches the guest after it (the guest drops the
//! range's state on reading it). A notice nobody owes, or a second one, is a
//! violation; a notice that never goes out is `live_cleanup_end`.

use agent_relay::core::ClientId;

use super::{Checker, Invariant};

impl Checker {
    /// `c`'s notice reached the guest, as the control queue's head.
    pub(super) fn notice_arrived(&mut self, c: ClientId) {
        self.checks += 1;
        let m = self
            .clients
            .get_mut(&c)
            .expect("queued notices name known clients");
        if !m.kills.is_empty() {
            let why = format!(
                "the disconnect notice of {c} went to the guest before its SIGKILLs for {:?}",
                m.kills
            );
            return self.fail(Invariant::NoticeAfterKills, why);
        }
        m.notice_due = false;
        m.noticed = true;
        let slot = m.slot;
        // The notice fences what it retires or releases: fs, tcp and request
        // correlations, and executions that still count.
        let retires = m.sessions.values().any(|s| !s.kind.is_exec() || s.counts);
        let cur = self.current.as_mut().expect("current generation");
        if retires {
            cur.fences.insert(cur.handed, slot);
        }
        self.touch(c);
    }
}
