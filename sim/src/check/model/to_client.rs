//! What the relay does to clients, as the model applies it: a guest frame
//! delivered (the one routed to it next), a handshake (the slot's range,
//! then the cached ready frame), a refusal, a close (for a violation, the
//! guest going away, or as a slow consumer), and the bytes each adds to its
//! queue.

use agent_relay::core::{ClientId, CloseReason, HandshakeForm, IdRange, RefuseReason, SlowLimit};
use agent_relay::wire::FLAG_TERMINAL;
use bytes::Bytes;

use super::client::{Client, State};
use super::current::STEP;
use super::frames::frame_id;
use super::{Due, Fact, Facts, Model, Prologue};

impl Model {
    /// A guest frame delivered to `c`: the next one routed to it.
    pub fn on_to_client(&mut self, c: ClientId, frame: &Bytes, out: &mut impl Facts) {
        self.advance(Model::routed_waiting, out);
        let next = self
            .clients
            .get(&c)
            .is_some_and(|m| m.state == State::Live && m.to_client.front() == Some(frame));
        out.fact(self, Fact::ToClient { c, frame, next });
        if !next {
            return;
        }
        let m = self.clients.get_mut(&c).expect("live");
        m.to_client.pop_front();
        if frame.len() > 8 && frame[8] & FLAG_TERMINAL != 0 {
            m.awaiting.remove(&frame_id(frame));
        }
        let answered = m.to_client.is_empty();
        let own = !self.budget.guest_event;
        self.add_queued(c, frame.len(), own, out);
        if answered {
            self.resume_client(Some(c), out);
        }
    }

    /// `len` more bytes handed to `c` (the relay's own if `own`).
    fn add_queued(&mut self, c: ClientId, len: usize, own: bool, out: &mut impl Facts) {
        let m = self.clients.get_mut(&c).expect("known");
        m.queued += len;
        self.sum_queued += len;
        self.budget_added(c, len, own);
        self.touch(c);
        out.fact(self, Fact::OutputAdded(c));
    }

    /// A handshake to `c`: a due one seats it in its slot.
    pub fn on_handshake(&mut self, c: ClientId, bytes: &Bytes, out: &mut impl Facts) {
        self.advance(|k| k.ready.is_some(), out);
        let due = if self.ready.is_none() {
            Due::BeforeReady
        } else if self.clients.get(&c).is_some_and(|m| m.awaits_answer()) {
            Due::Yes
        } else {
            Due::Unexpected
        };
        out.fact(self, Fact::Handshake { c, due });
        if due != Due::Yes {
            return;
        }
        let found = self.prologue(bytes);
        out.fact(self, Fact::Prologue { c, found });
        let Prologue::Slot(range) = found else {
            return;
        };
        let Some(slot) = self.layout.and_then(|l| l.slot_of(range.start)) else {
            return;
        };
        let current = self.current.is_some();
        if current && let Some(other) = self.awaiting_ack_in(c, slot) {
            return out.fact(self, Fact::SlotAwaitsAck { c, slot, other });
        }
        if let Some(other) = self.holder(c, slot, range) {
            return out.fact(self, Fact::SlotHeld { c, slot, other });
        }
        let clients = &self.clients;
        self.by_slot[slot].retain(|o| clients[o].holds_slot());
        self.by_slot[slot].push(c);
        let m = self.clients.get_mut(&c).expect("due");
        m.state = State::Live;
        m.connecting = false;
        m.hs_due = false;
        m.range = Some(range);
        m.slot = slot;
        self.add_queued(c, bytes.len(), true, out);
        if current {
            self.lease_queued(c, out);
        }
    }

    /// What a prologue says: legacy, the configured form (offset or
    /// bounds) of a slot's range; current, the bounds form of a canonical
    /// range, `[s*STEP + 1, (s+1)*STEP)` for a slot `s` offered. Then the
    /// cached ready frame, whole.
    fn prologue(&self, bytes: &Bytes) -> Prologue {
        let current = self.current.is_some();
        let prefix = match (current, self.cfg.legacy.handshake) {
            (false, HandshakeForm::Offset) => 4,
            _ => 8,
        };
        let ready = self.ready.as_ref().expect("due after ready");
        if bytes.len() != prefix + ready.len() || bytes[prefix..] != ready[..] {
            return Prologue::NotRangeThenReady;
        }
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let start = word(0);
        if current {
            let end = word(4);
            let s = start.wrapping_sub(1) / STEP;
            let slots = self.layout.map_or(0, |l| l.slots()) as u32;
            return if start != s * STEP + 1 || end != (s + 1) * STEP || s >= slots {
                Prologue::NotASlot { start, end }
            } else {
                Prologue::Slot(IdRange { start, end })
            };
        }
        let max = self.cfg.legacy.max_clients;
        let step = u32::MAX / max.max(1);
        let end = if prefix == 8 {
            word(4)
        } else {
            start.wrapping_add(step)
        };
        let slot = start / step;
        if !start.is_multiple_of(step) || slot >= max || end != start + step {
            Prologue::NotASlot { start, end }
        } else {
            Prologue::Slot(IdRange { start, end })
        }
    }

    /// Another client that still holds `slot` with `range`, if any.
    fn holder(&self, c: ClientId, slot: usize, range: IdRange) -> Option<ClientId> {
        let current = self.current.is_some();
        self.by_slot[slot].iter().copied().find(|&other| {
            let o = &self.clients[&other];
            let holds = if current {
                o.holds_slot_current()
            } else {
                o.holds_slot()
            };
            other != c && o.range == Some(range) && holds
        })
    }

    /// `c` was refused: a client waiting for its answer is gone. (A client
    /// waits for ready when the relay detects the generation; the excess is
    /// refused then.)
    pub fn on_refuse(&mut self, c: ClientId, reason: &RefuseReason, out: &mut impl Facts) {
        self.advance(|k| k.ready.is_some(), out);
        out.fact(self, Fact::Refuse { c, reason });
        if self
            .clients
            .get(&c)
            .is_some_and(|m| m.connecting || m.hs_due)
        {
            self.clients.remove(&c);
            self.present.retain(|&p| p != c);
        }
    }

    /// `c` was closed: for a violation it committed, the guest going away,
    /// or as a slow consumer (rule `backpressure_bounded_wait`).
    pub fn on_close(&mut self, c: ClientId, reason: &CloseReason, out: &mut impl Facts) {
        out.fact(self, Fact::Close { c, reason });
        if self.clients.get(&c).is_none_or(|m| m.state == State::Gone) {
            return;
        }
        match *reason {
            CloseReason::Violation(_) => self.depart(c, true, out),
            CloseReason::GuestGone => self.depart(c, false, out),
            CloseReason::SlowConsumer { queued, limit } => {
                self.advance(Model::routed_waiting, out);
                out.fact(self, Fact::SlowCloseQueued { c, queued });
                self.count_slow_close(limit);
                out.fact(self, Fact::SlowClose { c, queued, limit });
                if limit == SlowLimit::GlobalCap && self.current.is_some() {
                    self.lease_due_before_close();
                }
                self.depart(c, false, out);
                self.budget_closed(limit == SlowLimit::GlobalCap && self.tick);
            }
        }
    }

    /// The bytes the relay is about to hand `m`: the next guest frame routed
    /// to it, or its handshake.
    pub fn next_frame_len(&self, m: &Client) -> usize {
        match m.to_client.front() {
            Some(f) => f.len(),
            None if m.awaits_answer() => self.ready.as_ref().map_or(0, |r| r.len() + 8),
            None => 0,
        }
    }
}
