//! `inv_cleanup`: every exec session open when its client left gets exactly
//! one SIGKILL from the relay, after all of that client's earlier frames; no
//! SIGKILL for a session that had ended, none for fs sessions, none twice.
//! Current generation: the kills join the control queue, so they pass that
//! client's frames still waiting in its slot's queue (its data was dropped),
//! never its earlier control-queue frames; they carry the ready's `v`; an
//! owed kill at the control queue's head does not wait while it may leave;
//! and the core's count of killed executions released at their notices is
//! the model's.

use agent_relay::core::Relay;

use super::super::invariant::Invariant;
use super::super::model::{Ctl, Fact, Model, Stray};
use super::{Check, Verdict, head_waits_why, stray_why};

/// See the module docs.
#[derive(Debug)]
pub struct Cleanup;

impl Check for Cleanup {
    const INVARIANT: Invariant = Invariant::Cleanup;
    const WANTS: u64 = Fact::KILL_HANDED | Fact::UNOWED_KILL | Fact::UNMATCHED_CURRENT;

    fn new(_m: &Model) -> Self {
        Cleanup
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::KillHanded { c, id } => {
                let k = m.client(c);
                if m.current.is_none() && !k.out.is_empty() && !k.violated {
                    let why = format!(
                        "SIGKILL for session {id} of {c} overtook {} earlier frames of that client",
                        k.out.len()
                    );
                    v.fail::<Self>(why);
                }
            }
            Fact::UnowedKill(id) => v.fail::<Self>(format!(
                "SIGKILL for id {id} that no departed client's open exec session owes (ended, fs, duplicate or never opened)"
            )),
            Fact::UnmatchedCurrent {
                frame,
                stray: stray @ Stray::KillOutOfPlace,
                head,
            } => v.fail::<Self>(stray_why(frame, stray, head)),
            _ => {}
        }
    }

    fn after_event(&mut self, m: &Model, relay: &Relay, v: &mut Verdict) {
        let Some(cur) = &m.current else {
            return;
        };
        let released = relay.counters().executions_released;
        if cur.counts.executions_released != released {
            let why = format!(
                "the core released {released} killed executions at their notices, the model {}",
                cur.counts.executions_released
            );
            return v.fail::<Self>(why);
        }
        if let Some((Ctl::Kill(..), why)) = head_waits_why(m) {
            v.fail::<Self>(why);
        }
    }
}
