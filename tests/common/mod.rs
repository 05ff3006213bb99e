//! A small driver shared by the core tests, and the crate's frame builder
//! (`agent_relay::testkit::frames`) for them.
#![allow(dead_code)]

pub use agent_relay::testkit::frames::*;

use agent_relay::core::{
    Action, ClientId, CloseReason, Config, Event, Relay, SlowLimit, Violation,
};
use bytes::Bytes;

/// Ids per slot in the legacy generation.
pub const STEP: u32 = u32::MAX / 16;
/// The legacy generation's `v`, the first argument of its frame builders.
pub const V1: u8 = agent_relay::wire::LEGACY_VERSION;
/// The current generation's `v`.
pub const V10: u8 = agent_relay::wire::CURRENT_VERSION;

/// Feeds `ev` at `now`, then acknowledges every write at once until the
/// relay has nothing more to do (time does not move); returns every action
/// on the way.
pub fn settle(relay: &mut Relay, now: u64, ev: Event<'_>) -> Vec<Action> {
    relay.handle(now, ev);
    let mut all = Vec::new();
    loop {
        let acts: Vec<Action> = std::iter::from_fn(|| relay.poll_action()).collect();
        if acts.is_empty() {
            return all;
        }
        for a in &acts {
            match a {
                Action::ToGuest { frame } => relay.handle(now, Event::GuestWritten(frame.len())),
                Action::ToClient { client, frame: b } | Action::Handshake { client, bytes: b } => {
                    relay.handle(now, Event::ClientWritten(*client, b.len()));
                }
                _ => {}
            }
        }
        all.extend(acts);
    }
}

/// A relay plus the actions it produced, for line-by-line assertions.
pub struct Harness {
    pub relay: Relay,
    pub now: u64,
    /// Bytes handed to the guest and not yet acknowledged.
    guest_unacked: usize,
    /// Bytes handed to each client and not yet acknowledged.
    client_unacked: std::collections::BTreeMap<ClientId, usize>,
}

impl Harness {
    pub fn new(cfg: Config) -> Harness {
        Harness {
            relay: Relay::new(cfg).checked(),
            now: 0,
            guest_unacked: 0,
            client_unacked: Default::default(),
        }
    }

    /// A relay whose guest is ready.
    pub fn ready(cfg: Config) -> Harness {
        let mut h = Harness::new(cfg);
        let acts = h.ev(Event::GuestBytes(&ready(V1, 1)));
        assert!(acts.contains(&Action::Ready));
        h
    }

    pub fn ev(&mut self, ev: Event<'_>) -> Vec<Action> {
        match ev {
            Event::GuestWritten(n) => self.guest_unacked = self.guest_unacked.saturating_sub(n),
            Event::ClientWritten(c, n) => {
                if let Some(q) = self.client_unacked.get_mut(&c) {
                    *q = q.saturating_sub(n);
                }
            }
            Event::ClientDisconnected(c) => {
                self.client_unacked.remove(&c);
            }
            _ => {}
        }
        self.relay.handle(self.now, ev);
        let acts: Vec<Action> = std::iter::from_fn(|| self.relay.poll_action()).collect();
        for a in &acts {
            match a {
                Action::ToGuest { frame } => self.guest_unacked += frame.len(),
                Action::ToClient { client, frame: b } | Action::Handshake { client, bytes: b } => {
                    *self.client_unacked.entry(*client).or_default() += b.len();
                }
                Action::CloseClient { client, reason } if !reason.flush_first() => {
                    self.client_unacked.remove(client);
                }
                Action::Refuse { client, .. } | Action::FlushExpired { client } => {
                    self.client_unacked.remove(client);
                }
                _ => {}
            }
        }
        acts
    }

    pub fn guest(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.ev(Event::GuestBytes(bytes))
    }

    pub fn client(&mut self, c: u64, bytes: &[u8]) -> Vec<Action> {
        self.ev(Event::ClientBytes(ClientId(c), bytes))
    }

    pub fn connect(&mut self, c: u64) -> Vec<Action> {
        self.ev(Event::ClientConnected(ClientId(c)))
    }

    pub fn disconnect(&mut self, c: u64) -> Vec<Action> {
        self.ev(Event::ClientDisconnected(ClientId(c)))
    }

    /// Feeds `ev` and asserts the whole action list: nothing missing,
    /// nothing extra, in this order.
    #[track_caller]
    pub fn expect(&mut self, ev: Event<'_>, want: &[Action]) {
        let got = self.ev(ev);
        assert_eq!(got, want, "the actions of {ev:?}");
    }

    /// Runs to idle as a driver would whose guest and clients take every
    /// byte at once: each write is acknowledged, and time advances to each
    /// deadline `poll_timeout` names, but the periodic clock sync's (it
    /// recurs forever; a relay waiting only for it is idle). Returns every
    /// action on the way.
    pub fn drive(&mut self) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..100_000 {
            let owed = self.client_unacked.iter().find(|(_, n)| **n > 0);
            let acts = if self.guest_unacked > 0 {
                self.ev(Event::GuestWritten(self.guest_unacked))
            } else if let Some((&c, &n)) = owed {
                self.ev(Event::ClientWritten(c, n))
            } else if let Some(t) = self
                .relay
                .poll_timeout()
                .filter(|t| t.timer != agent_relay::core::Timer::ClockSync)
            {
                self.now = self.now.max(t.at);
                self.ev(Event::Tick)
            } else {
                return all;
            };
            all.extend(acts);
        }
        panic!("the relay did not settle: {:?}", self.relay.poll_timeout());
    }
}

pub fn to_guest(acts: &[Action]) -> Vec<Bytes> {
    acts.iter()
        .filter_map(|a| match a {
            Action::ToGuest { frame } => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

pub fn to_client(acts: &[Action], c: u64) -> Vec<Bytes> {
    acts.iter()
        .filter_map(|a| match a {
            Action::ToClient { client, frame } if *client == ClientId(c) => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

/// Why client `c` was closed, if `acts` close it.
pub fn closed(acts: &[Action], c: u64) -> Option<CloseReason> {
    acts.iter().find_map(|a| match a {
        Action::CloseClient { client, reason } if *client == ClientId(c) => Some(reason.clone()),
        _ => None,
    })
}

/// The rule client `c` broke, if `acts` close it for a violation.
pub fn violation(acts: &[Action], c: u64) -> Option<Violation> {
    match closed(acts, c)? {
        CloseReason::Violation(v) => Some(v),
        _ => None,
    }
}

/// The limit client `c` broke, if `acts` close it as a slow consumer.
pub fn slow_limit(acts: &[Action], c: u64) -> Option<SlowLimit> {
    match closed(acts, c)? {
        CloseReason::SlowConsumer { limit, .. } => Some(limit),
        _ => None,
    }
}

/// The id offset of the handshake that `acts` starts with.
pub fn handshake_offset(acts: &[Action]) -> u32 {
    match acts.first() {
        Some(Action::Handshake { bytes, .. }) => {
            u32::from_be_bytes(bytes[..4].try_into().expect("4-byte offset"))
        }
        _ => panic!("expected a handshake first: {acts:?}"),
    }
}

pub mod current;
pub mod generation;
