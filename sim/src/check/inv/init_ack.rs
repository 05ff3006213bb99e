//! `inv_init_ack` (rule `init_before_ready`): each `core.init.resolved` the
//! guest sends before ready gets exactly one `core.init.ack {}` (id 0, flags
//! 0, in the init's generation), in the same event unless the guest window
//! is full of earlier acks, and no ack goes out unasked. Acks are not charged to
//! input credit (`inv_credit` counts from ready on).

use agent_relay::core::Relay;

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct InitAck;

impl Check for InitAck {
    const INVARIANT: Invariant = Invariant::InitAck;
    const WANTS: u64 = Fact::INIT_ACK_HANDED;

    fn new(_m: &Model) -> Self {
        InitAck
    }

    /// An init ack reached the guest: it must be the one owed.
    fn on_fact(&mut self, _m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::InitAckHanded(Some(true)) => {}
            Fact::InitAckHanded(Some(false)) => v.fail::<Self>(
                "the init ack is not `core.init.ack {}` on id 0 in the init's generation".into(),
            ),
            Fact::InitAckHanded(None) => {
                v.fail::<Self>("a core.init.ack no core.init.resolved asked for".into());
            }
            _ => {}
        }
    }

    /// After an event: every init frame of it was answered, unless the
    /// guest window is full (earlier acks not written yet).
    fn after_event(&mut self, m: &Model, _relay: &Relay, v: &mut Verdict) {
        let room = m.inflight < m.cfg.guest_window;
        if !m.init_acks.is_empty() && !m.guest_gone && room {
            let why = format!(
                "{} core.init.resolved frames got no core.init.ack in the event that brought them",
                m.init_acks.len()
            );
            v.fail::<Self>(why);
        }
    }
}
