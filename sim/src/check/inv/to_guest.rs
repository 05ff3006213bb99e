//! `inv_to_guest`: every frame a client sent arrives at the guest exactly
//! once, unaltered, and no data frame overtakes an earlier frame of its
//! client (control frames may); a client that sent something invalid is
//! closed in the same event; a shutdown frame is followed by `Drain` and
//! `Drain` by nothing else. A client closed for a protocol violation may
//! lose what it queued. Current generation: the relay's own frames (init
//! acks, kills, notices, clock syncs) are matched too, and a clock sync
//! carries the wall time of its hand-off; what the model cannot place is
//! judged by the invariant its look names (`Stray`), this one when it looks
//! like nothing owed.

use agent_relay::core::{Action, ClientId, Relay};
use bytes::Bytes;

use super::super::invariant::Invariant;
use super::super::model::{Client, Fact, Model, State, Stray, frame_id};
use super::{Check, Verdict, stray_why};

/// Whether the action after a shutdown frame is still to come.
#[derive(Debug, Default)]
pub struct ToGuest {
    drain_due: bool,
}

impl Check for ToGuest {
    const INVARIANT: Invariant = Invariant::ToGuest;
    const WANTS: u64 = Fact::ACTION
        | Fact::OUT_HANDED
        | Fact::CLIENT_FRAME_HANDED
        | Fact::UNMATCHED
        | Fact::UNMATCHED_CURRENT
        | Fact::CLOCK_HANDED;

    fn new(_m: &Model) -> Self {
        ToGuest::default()
    }

    fn on_fact(&mut self, _m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::Action(action) => self.drain(action, v),
            Fact::OutHanded { shutdown, .. } => self.drain_due = shutdown,
            Fact::ClientFrameHanded {
                c,
                pos,
                same,
                control,
                id,
            } => {
                if !same {
                    let why = format!(
                        "frame for session {id} of {c} is not the next one it sent for that session (reordered, altered or duplicated)"
                    );
                    v.fail::<Self>(why);
                } else if !control && pos != 0 {
                    let why = format!(
                        "data frame for session {id} of {c} overtook {pos} earlier frames of the same client"
                    );
                    v.fail::<Self>(why);
                }
            }
            Fact::Unmatched(frame) => unmatched(frame, v),
            Fact::UnmatchedCurrent {
                frame,
                stray: Stray::Unknown,
                head,
            } => v.fail::<Self>(stray_why(frame, Stray::Unknown, head)),
            Fact::ClockHanded { got, want } if got != want => {
                let why = format!(
                    "clock sync carries {got:?}, not the wall time {want:?} of its hand-off"
                );
                v.fail::<Self>(why);
            }
            _ => {}
        }
    }

    fn settled(&mut self, _m: &Model, v: &mut Verdict) {
        if self.drain_due {
            v.fail::<Self>("shutdown frame without Drain after it".into());
        }
    }

    fn after_client(&mut self, _m: &Model, c: ClientId, k: &Client, _r: &Relay, v: &mut Verdict) {
        match k.state {
            State::Pending if k.bad.is_some() => {
                v.fail::<Self>(format!(
                    "{c} sent bytes before its handshake and was not closed"
                ));
            }
            State::Live if k.bad.is_some() => {
                v.fail::<Self>(format!("{c} sent an invalid frame and was not closed"));
            }
            State::Pending | State::Live | State::Gone => {}
        }
    }
}

impl ToGuest {
    /// The action after a shutdown frame must be `Drain`, and `Drain` comes
    /// only then.
    fn drain(&mut self, action: &Action, v: &mut Verdict) {
        let drain = matches!(action, Action::Drain);
        if std::mem::take(&mut self.drain_due) {
            if !drain {
                v.fail::<Self>(format!(
                    "a shutdown frame went to the guest without Drain right after it; got {action:?}"
                ));
            }
        } else if drain {
            v.fail::<Self>("Drain without a shutdown frame".into());
        }
    }
}

/// A frame to a legacy guest that matches nothing a client sent.
fn unmatched(frame: &Bytes, v: &mut Verdict) {
    let why = format!(
        "frame id {} ({} bytes) to the guest matches no frame a client sent that is still due",
        frame_id(frame),
        frame.len()
    );
    v.fail::<ToGuest>(why);
}
