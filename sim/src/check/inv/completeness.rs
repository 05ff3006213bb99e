//! `inv_completeness`: every frame the guest emits for a live client's
//! session is delivered to it within the event that brought the frame in
//! (the model queues each routed frame for its client, and `inv_routing`
//! judges each `ToClient` against it); a client that was disconnected gets
//! a prefix.

use agent_relay::core::{ClientId, Relay};

use super::super::invariant::Invariant;
use super::super::model::{Client, Model, State};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct Completeness;

impl Check for Completeness {
    const INVARIANT: Invariant = Invariant::Completeness;
    const WANTS: u64 = 0;

    fn new(_m: &Model) -> Self {
        Completeness
    }

    fn after_client(&mut self, _m: &Model, c: ClientId, k: &Client, _r: &Relay, v: &mut Verdict) {
        if k.state == State::Live && !k.to_client.is_empty() {
            let why = format!(
                "{} guest frames for live {c}'s sessions were not delivered",
                k.to_client.len()
            );
            v.fail::<Self>(why);
        }
    }
}
