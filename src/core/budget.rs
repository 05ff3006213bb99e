//! Rule `bounded_client_output`: a client that stops reading never delays
//! frames for any other client, and never makes the relay stop reading the
//! guest; what waits for it is bounded. Per client a soft budget (past it a
//! grace timer runs, restarted by progress) and a hard cap; a global cap over
//! all clients, reached, closes the client holding the most. A client closed
//! here is a slow consumer, with its sessions cleaned up as on any departure.

use bytes::Bytes;

use super::relay::Relay;
use super::types::{Action, ClientId, CloseReason, SlowLimit};

impl Relay {
    /// Hands bytes to the driver for a client, enforcing its budgets: a frame
    /// that would break the hard cap or the global cap closes a client instead.
    pub(super) fn send_to_client(&mut self, slot: usize, bytes: Bytes, handshake: bool) {
        let len = bytes.len();
        let Some(conn) = &self.slots[slot].conn else {
            return;
        };
        if conn.queued + len > self.cfg.client_hard_cap {
            let queued = conn.queued;
            self.close_slow(slot, queued, SlowLimit::HardCap);
            return;
        }
        if !self.make_global_room(slot, len) {
            return;
        }
        let Some(conn) = &mut self.slots[slot].conn else {
            return;
        };
        conn.queued += len;
        if conn.queued > self.cfg.client_soft_budget && conn.grace_deadline.is_none() {
            conn.grace_deadline = Some(self.now + self.cfg.grace);
        }
        let client = conn.client;
        self.counters.queued_to_clients += len as u64;
        self.counters.bytes_to_clients += len as u64;
        if handshake {
            self.actions.push_back(Action::Handshake { client, bytes });
        } else {
            self.counters.frames_to_clients += 1;
            self.actions.push_back(Action::ToClient {
                client,
                frame: bytes,
            });
        }
    }

    /// Closes whoever holds the most (ties go to the lowest slot) until `len`
    /// more bytes fit under the global cap; false if `slot` itself was closed.
    fn make_global_room(&mut self, slot: usize, len: usize) -> bool {
        while self.counters.queued_to_clients as usize + len > self.cfg.global_cap {
            let Some((victim, queued)) = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.conn.as_ref().map(|c| (i, c.queued)))
                .max_by_key(|&(i, q)| (q, std::cmp::Reverse(i)))
            else {
                return false;
            };
            self.close_slow(victim, queued, SlowLimit::GlobalCap);
            if victim == slot {
                return false;
            }
        }
        true
    }

    fn close_slow(&mut self, slot: usize, queued: usize, limit: SlowLimit) {
        self.counters.slow_consumer_closes += 1;
        self.depart(slot, Some(CloseReason::SlowConsumer { queued, limit }));
    }

    /// Bytes reached a client's socket: progress restarts the grace period;
    /// under budget it ends.
    pub(super) fn on_client_written(&mut self, client: ClientId, n: usize) {
        let Some(&slot) = self.by_client.get(&client) else {
            return;
        };
        let Some(conn) = &mut self.slots[slot as usize].conn else {
            return;
        };
        let n = n.min(conn.queued);
        conn.queued -= n;
        self.counters.queued_to_clients -= n as u64;
        if conn.queued <= self.cfg.client_soft_budget {
            conn.grace_deadline = None;
        } else if n > 0 {
            conn.grace_deadline = Some(self.now + self.cfg.grace);
        }
    }

    /// The grace period of `slot`'s client ran out without progress.
    pub(super) fn expire_grace(&mut self, slot: usize) {
        if let Some(conn) = &self.slots[slot].conn
            && conn.grace_deadline.is_some_and(|d| d <= self.now)
        {
            let queued = conn.queued;
            self.close_slow(slot, queued, SlowLimit::Grace);
        }
    }
}
