//! The checker: a reference model of what the relay must do (`model/`),
//! built only from the events fed to the core and the actions it emits,
//! and the invariants (`inv/`), each its own type judging the facts the
//! model reports. It never looks at an actor, so the same checker runs in
//! the simulator, when a recorded event list is replayed or shrunk, and in
//! the `core_events` fuzz target.
//!
//! Use: [`Checker::before`] with each event, [`Checker::on_action`] with
//! each action the core emits for it, [`Checker::after`] once they are
//! drained, and [`Checker::finish`] when the run ended with faults healed.
//! The first failure ends the checking: what follows it is not judged.
//!
//! The names and classes of what can break are in `invariant.rs`
//! ([`Invariant`], [`Failure`]).

mod inv;
mod invariant;
mod model;

use agent_relay::core::{Action, ClientId, Config, Event, Millis, Relay};

use inv::Invariants;
pub use invariant::{Class, Failure, Invariant, KnownBug};
pub use model::BudgetStats;
use model::Model;

/// The model and the invariants. See the module docs.
#[derive(Debug)]
pub struct Checker {
    model: Model,
    invs: Invariants,
}

impl Checker {
    /// A checker for a relay built with `cfg`, driven by a driver that hands
    /// the core at most `read_max` bytes per read.
    pub fn new(cfg: Config, read_max: usize) -> Checker {
        let model = Model::new(cfg, read_max);
        let invs = Invariants::new(&model);
        Checker { model, invs }
    }

    /// The invariants judged after every event, in the order they judge.
    pub fn invariants(&self) -> Vec<&'static str> {
        self.invs.names()
    }

    /// The first broken invariant, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.invs.verdict.failure()
    }

    fn failed(&self) -> bool {
        self.failure().is_some()
    }

    /// Facts and states judged so far.
    pub fn checks(&self) -> u64 {
        self.invs.verdict.checks()
    }

    /// Core events seen so far.
    pub fn events(&self) -> u64 {
        self.model.events
    }

    /// Bytes handed to `client` and not yet written (the model's count), for
    /// drivers that must not report more written than was handed.
    pub fn queued(&self, client: ClientId) -> usize {
        self.model.clients.get(&client).map_or(0, |m| m.queued)
    }

    /// Whether `client` is paused (its bytes must not be fed).
    pub fn paused(&self, client: ClientId) -> bool {
        self.model.clients.get(&client).is_some_and(|m| m.paused)
    }

    /// Whether the core has the guest paused (no `GuestBytes` may be fed
    /// until it says `ResumeGuest`).
    pub fn guest_paused(&self) -> bool {
        self.model.budget.paused
    }

    /// What rule `backpressure_bounded_wait` did so far.
    pub fn budget_stats(&self) -> BudgetStats {
        self.model.budget.stats
    }

    /// Bytes handed to the guest and not yet reported written (the model's count).
    pub fn guest_inflight(&self) -> usize {
        self.model.inflight
    }

    /// Whether anything is still owed: frames toward the guest, kills, the
    /// notice, or terminal frames to connected clients.
    pub fn owes(&self) -> bool {
        self.model.owes()
    }

    /// What is still owed, in words (the first client that is owed something).
    pub fn owed(&self) -> Option<String> {
        self.model.owed()
    }

    /// Records a failure seen outside the model (e.g. the world did not settle).
    pub fn fail_external(&mut self, invariant: Invariant, detail: String) {
        self.invs.verdict.fail_as(invariant, detail);
    }

    /// Feeds the event the core is about to handle at `now`.
    pub fn before(&mut self, now: Millis, event: &Event<'_>) {
        if !self.failed() {
            self.model.before(now, event, &mut self.invs);
        }
    }

    /// Feeds one action the core emitted for the current event.
    pub fn on_action(&mut self, action: &Action) {
        if !self.failed() {
            self.model.on_action(action, &mut self.invs);
        }
    }

    /// Checks the state once the event's actions are drained: event-wide
    /// first, then each client the event touched, then the whole relay.
    pub fn after(&mut self, relay: &Relay) {
        if self.failed() {
            return;
        }
        let (m, invs) = (&mut self.model, &mut self.invs);
        m.settle(invs);
        if invs.verdict.failure().is_some() {
            return;
        }
        invs.settled(m);
        if invs.verdict.failure().is_some() {
            return;
        }
        for &c in &m.touched {
            if let Some(client) = m.clients.get(&c) {
                invs.after_client(m, c, client, relay);
            }
        }
        m.end_event();
        m.settle_for_checks();
        invs.after_event(m, relay);
    }

    /// Liveness, once the run ended with faults healed and every actor idle.
    pub fn finish(&mut self) {
        if self.failed() || self.model.guest_gone {
            return;
        }
        self.invs.at_end(&self.model);
    }
}
