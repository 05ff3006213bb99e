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
//! [`Relay`] (`relay.rs`) is a director over parts that own their state,
//! one file each: `startup.rs` the wait for ready, `dialect.rs` the
//! generation spoken (every legacy/current difference, and the current
//! generation's own state), `guest.rs` the guest's input, `clients.rs` the
//! clients and their budgets' tallies (`budget.rs` the decisions,
//! `flush.rs` a closed client's last output), `sessions.rs` what each slot
//! has open and its quarantine, `scheduler.rs` the queue toward the guest
//! (`credit.rs` input credit, `lease.rs` range leases, `clock.rs` the clock),
//! `tap.rs` the exec.log tap, `timer.rs` the deadlines, `client.rs` what a
//! client frame must be, `layout.rs` the id ranges, `violation.rs` why input
//! was refused, `types.rs` the vocabulary. docs/ARCHITECTURE.md names each
//! rule and the file that owns it.

mod budget;
#[cfg(any(test, feature = "testing"))]
mod check;
mod client;
mod clients;
mod clock;
mod credit;
mod dialect;
mod display;
mod flush;
mod guest;
mod layout;
mod lease;
mod logtext;
mod relay;
mod scheduler;
mod sessions;
mod startup;
mod tap;
mod timer;
mod types;
mod violation;

pub use credit::{BARRIER_VERSION, CONTROL_BYTES, CONTROL_FRAMES, DATA_BYTES, DATA_FRAMES};
pub use dialect::Generation;
pub use layout::{CURRENT_SLOTS, CURRENT_STEP, IdRange, WORKLOAD_CONTROL_ID};
pub use logtext::{LogText, Runs};
pub use relay::Relay;
pub use tap::SANDBOX_STARTED;
pub use timer::{Timeout, Timer};
pub use types::{
    Action, ClientId, CloseReason, Config, Counters, CurrentSettings, Event, HandshakeForm,
    LegacySettings, LogRecord, LogSource, Millis, Protocol, RefuseReason, SlowLimit,
    StartupFailure,
};
pub use violation::{GuestCorruption, Violation};
