//! Liveness, checked once a run ended with its faults healed and every
//! actor idle: `live_sessions_end` (every client got its handshake and every
//! session it started reached its terminal frame), `live_to_guest_end`
//! (every frame a well-behaved client sent reached the guest) and
//! `live_cleanup_end` (every owed SIGKILL went out). While the world runs,
//! [`Checker::owes`] tells it whether to keep going.

use super::model::State;
use super::{Checker, Invariant};

impl Checker {
    /// Whether anything is still owed: frames toward the guest, kills, or
    /// open sessions of connected clients.
    pub fn owes(&self) -> bool {
        self.owed().is_some()
    }

    /// What is still owed, in words (the first client that is owed something).
    pub fn owed(&self) -> Option<String> {
        self.clients.iter().find_map(|(c, m)| {
            let owes = (!m.violated && !m.out.is_empty())
                || !m.kills.is_empty()
                || m.notice_due
                || (m.state == State::Live && !m.awaiting.is_empty());
            owes.then(|| {
                format!(
                    "{c} ({:?}): {} frames toward the guest, kills {:?}, awaiting terminals of {:?}",
                    m.state, m.out.len(), m.kills, m.awaiting
                )
            })
        })
    }

    /// Liveness, once the run ended with faults healed and every actor idle:
    /// every started session of a connected client reached its terminal
    /// frame, every frame a well-behaved client sent reached the guest, and
    /// every owed SIGKILL went out.
    pub fn finish(&mut self) {
        if self.failure.is_some() || self.guest_gone {
            return;
        }
        let mut found = None;
        for (&c, m) in &self.clients {
            self.checks += 1;
            if m.state == State::Live && !m.awaiting.is_empty() {
                found = Some((
                    Invariant::SessionsEnd,
                    format!(
                        "{c} opened sessions {:?} whose terminal frame never reached it",
                        m.awaiting
                    ),
                ));
            } else if m.state == State::Pending && self.ready.is_some() {
                found = Some((
                    Invariant::SessionsEnd,
                    format!("{c} never got its handshake"),
                ));
            } else if !m.violated && !m.out.is_empty() {
                found = Some((
                    Invariant::ToGuestEnd,
                    format!("{} frames {c} sent never reached the guest", m.out.len()),
                ));
            } else if !m.kills.is_empty() {
                found = Some((
                    Invariant::CleanupEnd,
                    format!("SIGKILLs for {c}'s sessions {:?} never went out", m.kills),
                ));
            } else if m.notice_due {
                found = Some((
                    Invariant::CleanupEnd,
                    format!("the disconnect notice of {c} never went out"),
                ));
            }
            if found.is_some() {
                break;
            }
        }
        if let Some((inv, why)) = found {
            self.fail(inv, why);
        }
    }
}
