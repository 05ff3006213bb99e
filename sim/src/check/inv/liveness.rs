//! Liveness, judged once a run ended with its faults healed and every actor
//! idle (a run that ended with the guest gone owes nothing):
//! `live_sessions_end` (every client got its handshake and every session it
//! started reached its terminal frame), `live_to_guest_end` (every frame a
//! well-behaved client sent reached the guest) and `live_cleanup_end` (every
//! owed SIGKILL and disconnect notice went out). While the world runs,
//! the model's `owes` tells it whether to keep going.

use super::super::invariant::Invariant;
use super::super::model::{Model, State};
use super::{Check, Verdict};

/// `live_sessions_end`.
#[derive(Debug)]
pub struct SessionsEnd;

impl Check for SessionsEnd {
    const INVARIANT: Invariant = Invariant::SessionsEnd;
    const WANTS: u64 = 0;

    fn new(_m: &Model) -> Self {
        SessionsEnd
    }

    fn at_end(&mut self, m: &Model, v: &mut Verdict) {
        for (&c, k) in &m.clients {
            if k.state == State::Live && !k.awaiting.is_empty() {
                return v.fail::<Self>(format!(
                    "{c} opened sessions {:?} whose terminal frame never reached it",
                    k.awaiting
                ));
            }
            if k.state == State::Pending && m.ready.is_some() {
                return v.fail::<Self>(format!("{c} never got its handshake"));
            }
        }
    }
}

/// `live_to_guest_end`.
#[derive(Debug)]
pub struct ToGuestEnd;

impl Check for ToGuestEnd {
    const INVARIANT: Invariant = Invariant::ToGuestEnd;
    const WANTS: u64 = 0;

    fn new(_m: &Model) -> Self {
        ToGuestEnd
    }

    fn at_end(&mut self, m: &Model, v: &mut Verdict) {
        if let Some((c, k)) = m
            .clients
            .iter()
            .find(|(_, k)| !k.violated && !k.out.is_empty())
        {
            let why = format!("{} frames {c} sent never reached the guest", k.out.len());
            v.fail::<Self>(why);
        }
    }
}

/// `live_cleanup_end`.
#[derive(Debug)]
pub struct CleanupEnd;

impl Check for CleanupEnd {
    const INVARIANT: Invariant = Invariant::CleanupEnd;
    const WANTS: u64 = 0;

    fn new(_m: &Model) -> Self {
        CleanupEnd
    }

    fn at_end(&mut self, m: &Model, v: &mut Verdict) {
        for (&c, k) in &m.clients {
            if !k.kills.is_empty() {
                return v.fail::<Self>(format!(
                    "SIGKILLs for {c}'s sessions {:?} never went out",
                    k.kills
                ));
            }
            if k.notice_due {
                return v.fail::<Self>(format!("the disconnect notice of {c} never went out"));
            }
        }
    }
}
