//! The sans-IO relay core: every routing and policy decision, as a plain
//! state machine. No tokio, no clock, no I/O; time arrives as a value.
//!
//! The driver's loop:
//! ```
//! use agent_relay::core::{Action, Config, Event, Relay};
//! let mut relay = Relay::new(Config::default());
//! relay.handle(0, Event::GuestBytes(b""));
//! while let Some(action) = relay.poll_action() {
//!     match action {
//!         Action::ToGuest { frame } => { /* write to the guest port */ }
//!         _ => { /* ... */ }
//!     }
//! }
//! // Arm a timer for `relay.poll_timeout()` and send `Event::Tick` when it fires.
//! ```
//!
//! One file per policy: `relay.rs` routing and the client lifecycle,
//! `budget.rs` output budgets and slow consumers, `flush.rs` a closed
//! client's last output, `scheduler.rs` the queue
//! toward the guest, `quarantine.rs` slot reuse, `tap.rs` the exec.log tap,
//! `timer.rs` the named deadlines, `violation.rs` why input was refused.
//! docs/ARCHITECTURE.md names each rule and the file that owns it.

mod budget;
#[cfg(any(test, feature = "testing"))]
mod check;
mod client;
mod clock;
mod correlation;
mod credit;
mod departure;
mod flush;
mod guest;
mod layout;
mod lease;
mod logtext;
mod quarantine;
mod relay;
mod scheduler;
mod slot;
mod startup;
mod tap;
mod timer;
mod types;
mod violation;

pub use credit::{BARRIER_VERSION, CONTROL_BYTES, CONTROL_FRAMES, DATA_BYTES, DATA_FRAMES};
pub use layout::{CURRENT_SLOTS, CURRENT_STEP, IdRange, WORKLOAD_CONTROL_ID};
pub use logtext::{LogText, Runs};
pub use relay::Relay;
pub use tap::SANDBOX_STARTED;
pub use timer::{Timeout, Timer};
pub use types::{
    Action, ClientId, CloseReason, Config, Counters, Event, HandshakeForm, LogRecord, LogSource,
    Millis, Protocol, RefuseReason, SlowLimit, StartupFailure,
};
pub use violation::{GuestCorruption, Violation};
