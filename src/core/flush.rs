//! Rule `output_outlives_guest`: output the guest produced before it went
//! away still reaches its client. A client closed for a reason that allows it
//! ([`CloseReason::flush_first`]) keeps its unwritten output for one grace
//! period: the driver goes on writing it (reporting `ClientWritten`) and
//! closes the connection once it is written (reporting
//! `ClientDisconnected`); if the period ends first, [`Action::FlushExpired`]
//! tells the driver to drop the connection and what is left.

use super::relay::Relay;
use super::timer::{Timeout, Timer};
use super::types::{Action, ClientId, CloseReason};

/// A closed client still being written.
#[derive(Debug)]
pub(crate) struct Flush {
    /// Bytes not yet reported written.
    pub queued: usize,
    /// When the driver must give up on it.
    pub until: u64,
}

impl Relay {
    /// `client` was closed with `queued` bytes unwritten: keep them for a
    /// grace period if `reason` allows it.
    pub(super) fn start_flush(&mut self, client: ClientId, queued: usize, reason: &CloseReason) {
        if reason.flush_first() && queued > 0 {
            let until = self.now + self.cfg.grace;
            self.flushing.insert(client, Flush { queued, until });
        }
    }

    /// Bytes of a closed client's output were written; all of it ends the
    /// wait. Returns false if `client` is not being flushed.
    pub(super) fn flush_written(&mut self, client: ClientId, n: usize) -> bool {
        let Some(f) = self.flushing.get_mut(&client) else {
            return false;
        };
        f.queued = f.queued.saturating_sub(n);
        if f.queued == 0 {
            self.flushing.remove(&client);
        }
        true
    }

    /// The connection is gone.
    pub(super) fn flush_done(&mut self, client: ClientId) {
        self.flushing.remove(&client);
    }

    /// Gives up on closed clients whose grace period ended.
    pub(super) fn expire_flushes(&mut self) {
        let now = self.now;
        let expired: Vec<ClientId> = self
            .flushing
            .iter()
            .filter(|(_, f)| f.until <= now)
            .map(|(&c, _)| c)
            .collect();
        for client in expired {
            self.flushing.remove(&client);
            self.actions.push_back(Action::FlushExpired { client });
        }
    }

    /// The earliest flush deadline.
    pub(super) fn flush_timeout(&self) -> Option<Timeout> {
        self.flushing
            .iter()
            .map(|(&client, f)| Timeout {
                at: f.until,
                timer: Timer::CloseFlush(client),
            })
            .min_by_key(|t| t.at)
    }
}
