//! Rule `backpressure_bounded_wait`: a client that keeps reading never loses
//! output; one that stops costs the others at most one grace period; memory
//! stays within the caps.
//!
//! - **Over budget, the guest waits.** When a client's queued output passes
//!   its soft budget, or all clients' together pass half the global cap, the
//!   relay stops reading the guest ([`Action::PauseGuest`]) instead of
//!   queueing more; it reads again ([`Action::ResumeGuest`]) once no client
//!   is over and the sum is low again. Frames the last read completed are
//!   still routed, so a queue can pass its budget by one read batch and one
//!   frame, never more.
//! - **Progress is half the budget.** A client over its soft budget has one
//!   grace period, from the moment it went over, to take its queue down to
//!   half the budget; then it is no longer over. Reading a few bytes now and
//!   then is not progress, so a trickle cannot hold the guest: it is closed
//!   at the end of the grace period, as a stalled client is, and the guest
//!   is read again. A reader that keeps up is never closed, however fast the
//!   guest writes. The sum has its own grace period, from the moment it
//!   passed half the global cap, to fall to a quarter of it; if it does not,
//!   the client holding the most is closed, and the sum gets another.
//! - **Caps stay as the last line.** A frame that would take one client past
//!   its hard cap, or all past the global cap, closes the client (the one
//!   holding the most, for the global cap) at once. With a hard cap of at
//!   least the soft budget plus the largest frame plus one read batch (the
//!   CLI refuses less), and a global cap of twice that, a reading client
//!   never meets them.
//!
//! A client closed here is a slow consumer, with its sessions cleaned up as
//! on any departure.

use bytes::Bytes;

use super::relay::Relay;
use super::timer::{Key, SlotDeadline, Timer};
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
        let went_over = conn.queued > self.cfg.client_soft_budget && !conn.over;
        conn.over |= went_over;
        let client = conn.client;
        if went_over {
            let at = self.now + self.cfg.grace;
            let key = Key::Slot(slot as u32, SlotDeadline::Grace);
            self.deadlines
                .set(key, at, Timer::SlowConsumerGrace(client));
        }
        self.over_clients += u32::from(went_over);
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
        self.note_global();
        self.pace_guest();
    }

    /// Closes whoever holds the most (ties go to the lowest slot) until `len`
    /// more bytes fit under the global cap; false if `slot` itself was closed.
    fn make_global_room(&mut self, slot: usize, len: usize) -> bool {
        while self.counters.queued_to_clients as usize + len > self.cfg.global_cap {
            let Some((victim, queued)) = self.holder_of_most() else {
                return false;
            };
            self.close_slow(victim, queued, SlowLimit::GlobalCap);
            if victim == slot {
                return false;
            }
        }
        true
    }

    /// The slot whose client holds the most output (ties: the lowest slot).
    fn holder_of_most(&self) -> Option<(usize, usize)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.conn.as_ref().map(|c| (i, c.queued)))
            .max_by_key(|&(i, q)| (q, std::cmp::Reverse(i)))
    }

    fn close_slow(&mut self, slot: usize, queued: usize, limit: SlowLimit) {
        self.counters.slow_consumer_closes += 1;
        self.depart(slot, Some(CloseReason::SlowConsumer { queued, limit }));
    }

    /// The client of `slot` is gone with its output (it departed holding
    /// `queued` bytes, of which it was over its budget if `over`).
    pub(super) fn budget_released(&mut self, slot: usize, queued: usize, over: bool) {
        self.counters.queued_to_clients -= queued as u64;
        self.over_clients -= u32::from(over);
        self.deadlines
            .clear(Key::Slot(slot as u32, SlotDeadline::Grace));
        self.note_global();
        self.pace_guest();
    }

    /// Bytes reached a client's socket; down to half its soft budget, it is
    /// no longer over it.
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
        if conn.over && conn.queued <= self.cfg.client_soft_budget / 2 {
            conn.over = false;
            self.over_clients -= 1;
            self.deadlines.clear(Key::Slot(slot, SlotDeadline::Grace));
        }
        self.note_global();
        self.pace_guest();
    }

    /// The sum of all queues: over half the global cap its grace period
    /// runs; down to a quarter it ends.
    fn note_global(&mut self) {
        let total = self.counters.queued_to_clients as usize;
        match self.deadlines.get(Key::Global) {
            None if total > self.cfg.global_cap / 2 => {
                let at = self.now + self.cfg.grace;
                self.deadlines.set(Key::Global, at, Timer::GlobalGrace);
            }
            Some(_) if total <= self.cfg.global_cap / 4 => self.deadlines.clear(Key::Global),
            _ => {}
        }
    }

    /// Reads the guest while nobody is over budget, stops otherwise.
    pub(super) fn pace_guest(&mut self) {
        let pause = self.over_clients > 0 || self.deadlines.get(Key::Global).is_some();
        match (pause, self.guest_paused_since) {
            (true, None) if !self.guest_gone => {
                self.guest_paused_since = Some(self.now);
                self.counters.guest_pauses += 1;
                self.actions.push_back(Action::PauseGuest);
            }
            (false, Some(since)) => {
                self.guest_paused_since = None;
                self.counters.guest_paused_ms += self.now - since;
                self.actions.push_back(Action::ResumeGuest);
            }
            _ => {}
        }
    }

    /// The grace period of `client` ran out before it took its queue down
    /// to half its budget.
    pub(super) fn expire_grace(&mut self, client: ClientId) {
        let Some(&slot) = self.by_client.get(&client) else {
            return;
        };
        if let Some(conn) = &self.slots[slot as usize].conn {
            let queued = conn.queued;
            self.close_slow(slot as usize, queued, SlowLimit::Grace);
        }
    }

    /// The sum stayed over half the global cap for a grace period: the
    /// client holding the most goes, and the sum gets another period.
    pub(super) fn expire_global(&mut self) {
        // The next period starts now; the close below ends it if the sum
        // falls to a quarter (the guest is not resumed in between).
        let at = self.now + self.cfg.grace;
        self.deadlines.set(Key::Global, at, Timer::GlobalGrace);
        if let Some((victim, queued)) = self.holder_of_most() {
            self.close_slow(victim, queued, SlowLimit::GlobalCap);
        }
        self.note_global();
        self.pace_guest();
    }
}
