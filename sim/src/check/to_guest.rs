//! `inv_to_guest`: every frame a client sent arrives at the guest exactly
//! once, unaltered, and no data frame overtakes an earlier frame of its
//! client (control frames may); a client that sent something invalid is
//! closed; a shutdown frame is followed by `Drain` and `Drain` by nothing
//! else. A client closed for a protocol violation may lose what it queued.

use agent_relay::core::{Action, ClientId};
use agent_relay::wire::payload::sigkill_frame;
use bytes::Bytes;

use super::model::{Model, State, frame_id};
use super::{Checker, Invariant, Issues};

impl Checker {
    /// Matches a frame handed to the guest with the client frame (or the
    /// relay's kill, see `cleanup`) it must be.
    pub(super) fn on_to_guest(&mut self, frame: &Bytes) {
        self.window_before_to_guest(frame);
        let id = frame_id(frame);
        let slot = (id / self.step) as usize;
        let candidates = self.by_slot.get(slot).cloned().unwrap_or_default();
        for c in candidates {
            let m = self
                .clients
                .get_mut(&c)
                .expect("by_slot names known clients");
            if let Some(pos) = m.out.iter().position(|o| o.id == id) {
                return self.client_frame_arrived(c, pos, frame);
            }
            if m.kills.contains(&id) && *frame == sigkill_frame(id).into_bytes() {
                return self.kill_arrived(c, id);
            }
        }
        if *frame == sigkill_frame(id).into_bytes() {
            return self.unowed_kill(id);
        }
        let why = format!(
            "frame id {id} ({} bytes) to the guest matches no frame a client sent that is still due",
            frame.len()
        );
        self.fail(Invariant::ToGuest, why);
    }

    /// The frame at `pos` of `c`'s queue arrived (it was the first frame
    /// there with its id).
    fn client_frame_arrived(&mut self, c: ClientId, pos: usize, frame: &Bytes) {
        let m = self.clients.get_mut(&c).expect("candidate");
        let o = &m.out[pos];
        let id = o.id;
        if o.frame != *frame {
            let why = format!(
                "frame for session {id} of {c} is not the next one it sent for that session (reordered, altered or duplicated)"
            );
            return self.fail(Invariant::ToGuest, why);
        }
        if !o.control && pos != 0 {
            let why = format!(
                "data frame for session {id} of {c} overtook {pos} earlier frames of the same client"
            );
            return self.fail(Invariant::ToGuest, why);
        }
        let o = m.out.remove(pos).expect("found");
        m.out_bytes -= o.frame.len();
        self.drain_due = o.shutdown;
        self.lane_served(c, o.lane);
        self.touch(c);
    }

    /// The action after a shutdown frame: true if it is the `Drain` due.
    pub(super) fn drain_follows(&mut self, action: &Action) -> bool {
        self.drain_due = false;
        if matches!(action, Action::Drain) {
            return true;
        }
        self.fail(
            Invariant::ToGuest,
            format!(
                "a shutdown frame went to the guest without Drain right after it; got {action:?}"
            ),
        );
        false
    }

    pub(super) fn on_drain(&mut self) {
        self.fail(Invariant::ToGuest, "Drain without a shutdown frame".into());
    }

    /// No shutdown frame of this event is still waiting for its `Drain`.
    pub(super) fn after_event_to_guest(&mut self) {
        if self.drain_due {
            self.fail(
                Invariant::ToGuest,
                "shutdown frame without Drain after it".into(),
            );
        }
    }

    /// A client that sent something invalid was closed in the same event.
    pub(super) fn after_client_to_guest(&self, c: ClientId, m: &Model, issues: &mut Issues) {
        match m.state {
            State::Pending if m.bad.is_some() => issues.push((
                Invariant::ToGuest,
                format!("{c} sent bytes before its handshake and was not closed"),
            )),
            State::Live if m.bad.is_some() => issues.push((
                Invariant::ToGuest,
                format!("{c} sent an invalid frame and was not closed"),
            )),
            State::Pending | State::Live | State::Gone => {}
        }
    }
}
