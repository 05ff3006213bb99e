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
//! Check 2 also sweeps the slots' data heads for `inv_fair_credit`.

use super::current::{Class, Ctl};
use super::{Checker, Invariant};

impl Checker {
    /// After an event: nothing that may leave is left waiting.
    pub(super) fn after_event_control_first(&mut self) {
        if self.current.is_none() {
            return;
        }
        self.clock_queued_later();
        let cur = self.current.as_ref().expect("current");
        if self.guest_gone || self.inflight >= self.cfg.guest_window {
            return;
        }
        self.checks += 1;
        if let Some(head) = cur.ctl.front() {
            if cur.admits(Class::Control, head.len, head.slot) {
                let why = format!(
                    "the control queue's head {:?} ({} bytes) waits although the window is open and it fits the credit",
                    head.who, head.len
                );
                // An owed notice or kill that never leaves is theirs to report.
                let inv = match head.who {
                    Ctl::Notice(_) => Invariant::NoticeAfterKills,
                    Ctl::Kill(..) => Invariant::Cleanup,
                    Ctl::Lease(_) | Ctl::LeaseDue => Invariant::RangeLeases,
                    Ctl::Client(..) | Ctl::Clock => Invariant::ControlFirst,
                };
                self.fail(inv, why);
            }
            return;
        }
        let heads: Vec<(usize, Class, usize, u32)> = self
            .waiting
            .iter()
            .filter_map(|c| {
                let m = &self.clients[c];
                m.turn_head()
                    .map(|o| (m.slot, o.class, o.frame.len(), o.id))
            })
            .collect();
        let active = (!heads.is_empty()).then(|| self.cur().active());
        for (slot, class, len, id) in heads {
            if !self.cur().admits_among(class, len, Some(slot), active) {
                continue;
            }
            if class == Class::Data {
                return self.data_head_waits(slot, len, id);
            }
            let why = format!(
                "slot {slot}'s control frame id {id} ({len} bytes) waits although the window is open and it fits the credit"
            );
            return self.fail(Invariant::ControlFirst, why);
        }
    }
}
