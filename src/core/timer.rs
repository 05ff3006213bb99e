//! Named deadlines. The core keeps every deadline itself (the shell arms one
//! timer for [`super::Relay::poll_timeout`] and sends `Event::Tick`); each
//! has a [`Timer`] saying which rule waits on it.

use super::types::{ClientId, Millis};

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A client over its soft budget must have taken its queue down to half
    /// the budget by then, or it is closed as a slow consumer (rule
    /// `backpressure_bounded_wait`).
    SlowConsumerGrace(ClientId),
    /// All queues together over half the global cap must have fallen to a
    /// quarter of it by then, or the client holding the most is closed (rule
    /// `backpressure_bounded_wait`).
    GlobalGrace,
    /// A departed client's slot gives up its sessions then (rule
    /// `slot_quarantine`).
    Quarantine {
        /// The slot.
        slot: u32,
    },
    /// A closed client's unwritten output is given up then (rule
    /// `output_outlives_guest`).
    CloseFlush(ClientId),
    /// The periodic `core.clock.sync` is due (rule `clock_sync`).
    ClockSync,
}

/// The next moment time matters, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// When (the driver's milliseconds).
    pub at: Millis,
    /// Which deadline.
    pub timer: Timer,
}

impl std::fmt::Display for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timer::SlowConsumerGrace(client) => write!(f, "slow-consumer grace of {client}"),
            Timer::GlobalGrace => f.write_str("grace of the global output cap"),
            Timer::Quarantine { slot } => write!(f, "quarantine of slot {slot}"),
            Timer::CloseFlush(client) => write!(f, "output flush of closed {client}"),
            Timer::ClockSync => f.write_str("periodic clock sync"),
        }
    }
}
