//! The clients: who holds which slot, who waits for the generation, and
//! their output budgets' tallies (the decisions are `budget.rs`'s).
//!
//! A client that connects before the generation is known waits without a
//! slot and gets one at ready, in arrival order (rule
//! `handshake_after_ready`). A connection holding a slot has its own frame
//! decoder, whether it got its handshake, the bytes handed to the driver for
//! it and not yet written, whether it is over its soft budget and whether it
//! is paused (its frames toward the guest are over the bound).

use std::collections::HashMap;

use super::budget;
use super::types::{Action, ClientId, Config, Counters, Millis};
use crate::wire::FrameDecoder;

/// The connection holding a slot.
#[derive(Debug)]
pub(super) struct Conn {
    pub client: ClientId,
    pub decoder: FrameDecoder,
    pub handshaken: bool,
    /// Bytes handed to the driver for this client and not yet written.
    pub queued: usize,
    /// Over its soft budget: its grace period runs.
    pub over: bool,
    /// Not read while its frames toward the guest are over the bound.
    pub paused: bool,
}

/// The clients; see the module docs.
#[derive(Debug)]
pub(super) struct Clients {
    /// By slot.
    conns: Vec<Option<Conn>>,
    by_client: HashMap<ClientId, u32>,
    /// Clients that connected before the generation was known, in arrival
    /// order.
    waiting: Vec<ClientId>,
    /// Bytes queued for all clients together.
    queued: usize,
    /// Clients over their soft budget now.
    over: u32,
    /// Since when the guest is not read (backpressure), if it is not.
    paused_since: Option<Millis>,
}

impl Clients {
    pub fn new(slots: usize) -> Clients {
        Clients {
            conns: (0..slots).map(|_| None).collect(),
            by_client: HashMap::new(),
            waiting: Vec::new(),
            queued: 0,
            over: 0,
            paused_since: None,
        }
    }

    /// There are `slots` slots now (the generation became known).
    pub fn resize(&mut self, slots: usize) {
        self.conns.resize_with(slots, || None);
    }

    /// Slots.
    pub fn slots(&self) -> usize {
        self.conns.len()
    }

    /// Clients connected now: holding a slot or waiting for one.
    pub fn live(&self) -> u64 {
        (self.by_client.len() + self.waiting.len()) as u64
    }

    /// Bytes queued for all clients.
    #[inline]
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Clients over their soft budget.
    #[inline]
    pub fn over(&self) -> u32 {
        self.over
    }

    /// Whether `client` is connected (with a slot or waiting).
    pub fn knows(&self, client: ClientId) -> bool {
        self.by_client.contains_key(&client) || self.waiting.contains(&client)
    }

    // ---- waiting for the generation ----------------------------------------

    pub fn wait(&mut self, client: ClientId) {
        self.waiting.push(client);
    }

    pub fn is_waiting(&self, client: ClientId) -> bool {
        self.waiting.contains(&client)
    }

    /// `client` no longer waits; false if it did not.
    pub fn unwait(&mut self, client: ClientId) -> bool {
        let Some(i) = self.waiting.iter().position(|&c| c == client) else {
            return false;
        };
        self.waiting.remove(i);
        true
    }

    /// Everyone waiting, in arrival order; nobody waits any more.
    pub fn take_waiting(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.waiting)
    }

    // ---- slots -------------------------------------------------------------

    #[inline]
    pub fn slot_of(&self, client: ClientId) -> Option<usize> {
        self.by_client.get(&client).map(|&s| s as usize)
    }

    #[inline]
    pub fn conn(&self, slot: usize) -> Option<&Conn> {
        self.conns[slot].as_ref()
    }

    #[inline]
    pub fn conn_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns[slot].as_mut()
    }

    /// `client` takes `slot`.
    pub fn seat(&mut self, slot: usize, client: ClientId) {
        self.conns[slot] = Some(Conn {
            client,
            decoder: FrameDecoder::new(),
            handshaken: false,
            queued: 0,
            over: false,
            paused: false,
        });
        self.by_client.insert(client, slot as u32);
    }

    /// The client of `slot` leaves, with its output.
    pub fn leave(&mut self, slot: usize) -> Option<Conn> {
        let conn = self.conns[slot].take()?;
        self.by_client.remove(&conn.client);
        self.queued -= conn.queued;
        self.over -= u32::from(conn.over);
        Some(conn)
    }

    // ---- budgets -------------------------------------------------------------

    /// `len` bytes were handed to the driver for the client of `slot`: the
    /// client, and whether it just went over its soft budget.
    #[inline]
    pub fn add(&mut self, slot: usize, len: usize, cfg: &Config) -> Option<(ClientId, bool)> {
        let conn = self.conns[slot].as_mut()?;
        conn.queued += len;
        let went_over = budget::goes_over(conn.queued, conn.over, cfg);
        conn.over |= went_over;
        self.queued += len;
        self.over += u32::from(went_over);
        Some((conn.client, went_over))
    }

    /// `n` bytes reached the socket of `slot`'s client: whether it came back
    /// under its budget (`None` without a client).
    pub fn written(&mut self, slot: usize, n: usize, cfg: &Config) -> Option<bool> {
        let conn = self.conns[slot].as_mut()?;
        let n = n.min(conn.queued);
        conn.queued -= n;
        self.queued -= n;
        let back = conn.over && budget::back_under(conn.queued, cfg);
        if back {
            conn.over = false;
            self.over -= 1;
        }
        Some(back)
    }

    /// The slot whose client holds the most output (ties: the lowest slot).
    pub fn holder_of_most(&self) -> Option<(usize, usize)> {
        let queues = self.conns.iter().enumerate();
        budget::holder_of_most(queues.filter_map(|(i, c)| c.as_ref().map(|c| (i, c.queued))))
    }

    /// Reads the guest while nobody is over budget (`pause` false), stops
    /// otherwise: the action, if the state changed.
    #[inline]
    pub fn pace(
        &mut self,
        pause: bool,
        gone: bool,
        now: Millis,
        c: &mut Counters,
    ) -> Option<Action> {
        match (pause, self.paused_since) {
            (true, None) if !gone => {
                self.paused_since = Some(now);
                c.guest_pauses += 1;
                Some(Action::PauseGuest)
            }
            (false, Some(since)) => {
                self.paused_since = None;
                c.guest_paused_ms += now - since;
                Some(Action::ResumeGuest)
            }
            _ => None,
        }
    }

    /// Whether the guest is not read now.
    #[cfg(any(test, feature = "testing"))]
    pub fn guest_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// Clients with a slot, and how many wait (for `Relay::check`).
    #[cfg(any(test, feature = "testing"))]
    pub fn map_sizes(&self) -> (usize, usize) {
        (self.by_client.len(), self.waiting.len())
    }
}
