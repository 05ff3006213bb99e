//! `inv_init_ack` (rule `init_before_ready`): each `core.init.resolved` the
//! guest sends before ready gets exactly one `core.init.ack {}` (id 0, flags
//! 0, in the init's generation), in the same event unless the guest window
//! is full of earlier acks, and no ack goes out unasked. Acks are not charged to
//! input credit (`inv_credit` counts from ready on).

use agent_relay::wire::{MsgType, PREFIX_LEN, peek_parts};
use bytes::Bytes;

use super::{Checker, Invariant};

impl Checker {
    /// Whether `frame` is an init ack; if so it must be the one owed.
    pub(super) fn init_ack_arrived(&mut self, frame: &Bytes) -> bool {
        let is_ack = frame.len() > PREFIX_LEN
            && frame[4..8] == [0; 4]
            && peek_parts(&frame[PREFIX_LEN..]).is_ok_and(|p| p.t == Some(MsgType::InitAck));
        if !is_ack {
            return false;
        }
        self.checks += 1;
        if self.init_acks.is_empty() {
            self.advance(|k| !k.init_acks.is_empty() || k.ready.is_some());
        }
        match self.init_acks.pop_front() {
            Some(want) if want == *frame => {}
            Some(_) => self.fail(
                Invariant::InitAck,
                "the init ack is not `core.init.ack {}` on id 0 in the init's generation".into(),
            ),
            None => self.fail(
                Invariant::InitAck,
                "a core.init.ack no core.init.resolved asked for".into(),
            ),
        }
        true
    }

    /// After an event: every init frame of it was answered, unless the
    /// guest window is full (earlier acks not written yet).
    pub(super) fn after_event_init_ack(&mut self) {
        let room = self.inflight < self.cfg.guest_window;
        if !self.init_acks.is_empty() && !self.guest_gone && room {
            let why = format!(
                "{} core.init.resolved frames got no core.init.ack in the event that brought them",
                self.init_acks.len()
            );
            self.fail(Invariant::InitAck, why);
        }
    }
}
