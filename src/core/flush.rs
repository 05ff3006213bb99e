//! Rule `output_outlives_guest`: output the guest produced before it went
//! away still reaches its client. A client closed for a reason that allows it
//! ([`CloseReason::flush_first`]) keeps its unwritten output for one grace
//! period: the driver goes on writing it (reporting `ClientWritten`) and
//! closes the connection once it is written (reporting
//! `ClientDisconnected`); if the period ends first (`Timer::CloseFlush`),
//! [`Action::FlushExpired`]
//! tells the driver to drop the connection and what is left.

use std::collections::BTreeMap;

use super::timer::{Deadlines, Key, Timer};
use super::types::{ClientId, Millis};

#[cfg(doc)]
use super::types::{Action, CloseReason};

/// Closed clients whose last output is still being written: the bytes
/// not yet reported written.
#[derive(Debug, Default)]
pub(super) struct Flushes {
    queued: BTreeMap<ClientId, usize>,
}

impl Flushes {
    /// `client` was closed with `queued` bytes unwritten, to be written by
    /// `until`.
    pub fn start(&mut self, client: ClientId, queued: usize, until: Millis, d: &mut Deadlines) {
        self.queued.insert(client, queued);
        d.set(Key::Flush(client), until, Timer::CloseFlush(client));
    }

    /// Bytes of a closed client's output were written; all of it ends the
    /// wait. False if `client` is not being flushed.
    pub fn written(&mut self, client: ClientId, n: usize, d: &mut Deadlines) -> bool {
        let Some(queued) = self.queued.get_mut(&client) else {
            return false;
        };
        *queued = queued.saturating_sub(n);
        if *queued == 0 {
            self.done(client, d);
        }
        true
    }

    /// The connection is gone, or its time is up.
    pub fn done(&mut self, client: ClientId, d: &mut Deadlines) {
        self.queued.remove(&client);
        d.clear(Key::Flush(client));
    }

    /// Whether `client` is being flushed.
    #[cfg(any(test, feature = "testing"))]
    pub fn contains(&self, client: ClientId) -> bool {
        self.queued.contains_key(&client)
    }

    /// The clients being flushed.
    #[cfg(any(test, feature = "testing"))]
    pub fn clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.queued.keys().copied()
    }
}
