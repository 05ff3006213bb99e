//! `inv_completeness`: every frame the guest emits for a live client's
//! session is delivered to it within the event that brought the frame in
//! (the model queues each routed frame in `Model::to_client`, and
//! `inv_routing` pops it when the `ToClient` arrives); a client that was
//! disconnected gets a prefix.

use agent_relay::core::ClientId;

use super::model::{Model, State};
use super::{Checker, Invariant, Issues};

impl Checker {
    /// No routed frame of a live client is left undelivered after an event.
    pub(super) fn after_client_completeness(&self, c: ClientId, m: &Model, issues: &mut Issues) {
        if m.state == State::Live && !m.to_client.is_empty() {
            let why = format!(
                "{} guest frames for live {c}'s sessions were not delivered",
                m.to_client.len()
            );
            issues.push((Invariant::Completeness, why));
        }
    }
}
