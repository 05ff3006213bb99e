//! `inv_control_first` (rule `control_overtakes_data`, current generation):
//! a control frame waits only for the guest window and control credit,
//! never behind data. From the core's rules (`scheduler.rs`,
//! `client.rs::goes_first`): every control-class frame joins the control
//! queue (first come, first served, ahead of every slot's queue) unless data
//! of its own id is queued and it is not one of those that may pass it
//! (signal, resize, shutdown, output ack, the relay's kills); the relay's
//! kills, notices and clock syncs join it too. So:
//!
//! 1. a frame from the control queue leaves only as its head;
//! 2. after every event, with the guest window open, the control queue's
//!    head does not fit the control credit (or the queue is empty), and no
//!    slot's head control frame that fits is left waiting.
//!
//! An owed notice, kill or connected record that waits at the head is
//! `inv_notice_after_kills`', `inv_cleanup`'s and `inv_range_leases`' to
//! report; a waiting slot head of data, `inv_fair_credit`'s. A frame handed
//! over that is queued but not its queue's head, or a clock sync out of its
//! place, is this invariant's.

use agent_relay::core::Relay;

use super::super::invariant::Invariant;
use super::super::model::{Class, Ctl, Fact, Model, Stray};
use super::{Check, Verdict, head_waits_why, stray_why};

/// See the module docs.
#[derive(Debug)]
pub struct ControlFirst;

impl Check for ControlFirst {
    const INVARIANT: Invariant = Invariant::ControlFirst;
    const WANTS: u64 = Fact::UNMATCHED_CURRENT;

    fn new(_m: &Model) -> Self {
        ControlFirst
    }

    /// Check 1: a frame from the control queue leaves only as its head.
    fn on_fact(&mut self, _m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        if let Fact::UnmatchedCurrent {
            frame,
            stray: stray @ (Stray::NotHead | Stray::ClockOutOfPlace),
            head,
        } = *f
        {
            v.fail::<Self>(stray_why(frame, stray, head));
        }
    }

    /// Check 2: nothing that may leave is left waiting.
    fn after_event(&mut self, m: &Model, _relay: &Relay, v: &mut Verdict) {
        if let Some((Ctl::Client(..) | Ctl::Clock, why)) = head_waits_why(m) {
            return v.fail::<Self>(why);
        }
        if let Some(h) = m.slot_ready
            && h.class == Class::Control
        {
            let why = format!(
                "slot {}'s control frame id {} ({} bytes) waits although the window is open and it fits the credit",
                h.slot, h.id, h.len
            );
            v.fail::<Self>(why);
        }
    }
}
