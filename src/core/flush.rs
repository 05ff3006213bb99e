//! Rule `output_outlives_guest`: output the guest produced before it went
//! away still reaches its client. A client closed for a reason that allows it
//! ([`CloseReason::flush_first`]) keeps its unwritten output for one grace
//! period: the driver goes on writing it (reporting `ClientWritten`) and
//! closes the connection once it is written (reporting
//! `ClientDisconnected`); if the period ends first, [`Action::FlushExpired`]
//! tells the driver to drop the connection and what is left.

use super::relay::Relay;
use super::timer::{Key, Timer};
use super::types::{Action, ClientId, CloseReason};

impl Relay {
    /// `client` was closed with `queued` bytes unwritten: keep them for a
    /// grace period if `reason` allows it.
    pub(super) fn start_flush(&mut self, client: ClientId, queued: usize, reason: &CloseReason) {
        if reason.flush_first() && queued > 0 {
            self.flushing.insert(client, queued);
            let at = self.now + self.cfg.grace;
            self.deadlines
                .set(Key::Flush(client), at, Timer::CloseFlush(client));
        }
    }

    /// Bytes of a closed client's output were written; all of it ends the
    /// wait. Returns false if `client` is not being flushed.
    pub(super) fn flush_written(&mut self, client: ClientId, n: usize) -> bool {
        let Some(queued) = self.flushing.get_mut(&client) else {
            return false;
        };
        *queued = queued.saturating_sub(n);
        if *queued == 0 {
            self.flush_done(client);
        }
        true
    }

    /// The connection is gone.
    pub(super) fn flush_done(&mut self, client: ClientId) {
        self.flushing.remove(&client);
        self.deadlines.clear(Key::Flush(client));
    }

    /// A closed client did not take its output within its grace period.
    pub(super) fn expire_flush(&mut self, client: ClientId) {
        self.flush_done(client);
        self.actions.push_back(Action::FlushExpired { client });
    }
}
