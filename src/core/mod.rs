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
//! Choices the issue left open: a client that connects before the guest is
//! ready gets its slot at once and waits; its handshake goes out when
//! `core.ready` arrives. Bytes it sends before its handshake are a protocol
//! violation (it cannot know its id range yet). A refused connection gets no
//! bytes (0.4.4 has no message for it); the driver logs the reason and closes.

mod relay;
mod slot;
mod tap;
mod types;

pub use relay::{Relay, SANDBOX_STARTED};
pub use slot::IdRange;
pub use tap::Utf8Carry;
pub use types::{
    Action, ClientId, CloseReason, Config, Counters, Event, HandshakeForm, LogRecord, LogSource,
    Millis, RefuseReason, SlowLimit,
};
