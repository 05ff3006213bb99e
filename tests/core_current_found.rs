//! Regressions: core defects found while building the current generation's
//! shell, CLI and real-client tests (a disconnect-notice fence left on a
//! slot that an empty departure freed; fixed: a fence is recorded only for
//! what the notice retires, and dropped once its slot has nothing open).
//! They drive `agent_relay::core::Relay` directly.

mod common;

use common::to_client;

use agent_relay::core::{Action, ClientId, Config, Event, Relay};
use agent_relay::testkit::frames::{data, empty, exec_request, frame, ready_current};
use agent_relay::wire::payload::FsResponse;
use agent_relay::wire::{CURRENT_VERSION as V10, MsgType};

/// Every write is taken at once.
struct Drive {
    relay: Relay,
}

impl Drive {
    fn ready() -> Drive {
        let mut d = Drive {
            relay: Relay::new(Config::current()).checked(),
        };
        d.ev(Event::GuestBytes(&ready_current(V10, 1, Some(2), None)));
        d
    }

    fn ev(&mut self, ev: Event<'_>) -> Vec<Action> {
        common::settle(&mut self.relay, 0, ev)
    }

    fn connect(&mut self, c: u64) -> Vec<Action> {
        self.ev(Event::ClientConnected(ClientId(c)))
    }

    fn leave(&mut self, c: u64) -> Vec<Action> {
        self.ev(Event::ClientDisconnected(ClientId(c)))
    }
}

fn handshake_start(acts: &[Action], c: u64) -> Option<u32> {
    acts.iter().find_map(|a| match a {
        Action::Handshake { client, bytes } if *client == ClientId(c) => {
            Some(u32::from_be_bytes(bytes[..4].try_into().ok()?))
        }
        _ => None,
    })
}

/// A client that connects and leaves with nothing open: its disconnect
/// notice is handed to the guest and leaves a fence on the slot (waiting for
/// the guest to show it took the notice), but the slot is free at once, so
/// the next client takes it with the fence still there (`Relay::check`
/// panics: "fence on slot 0, which has a client"). The shell hits this with
/// any 0.7.13 client that connects and disconnects before another connects.
#[test]

fn core_current_slot_retaken_after_an_empty_departure_keeps_no_fence() {
    let mut d = Drive::ready();
    assert_eq!(handshake_start(&d.connect(1), 1), Some(1));
    d.leave(1);
    let acts = d.connect(2);
    assert_eq!(handshake_start(&acts, 2), Some(1), "slot 0 again");
}

/// What the stale fence does: it retires the *next* departed owner's fs
/// correlation as soon as the guest answers a frame handed after the old
/// notice, before the guest has taken that owner's own notice, so the slot
/// is handed out again while the guest may still answer the old owner's
/// request; the late `core.fs.response` then reaches the slot's new owner on
/// the id it reused (rule `slot_quarantine`: a recycled slot never receives
/// the previous owner's late frames).
#[test]

fn core_current_stale_fence_lets_a_late_reply_reach_the_next_owner() {
    let mut d = Drive::ready();
    d.connect(1);
    d.leave(1); // notice 1 handed; its fence stays on slot 0
    assert_eq!(handshake_start(&d.connect(2), 2), Some(1));
    let fs_request = empty(V10, MsgType::FsRequest, 1);
    d.ev(Event::ClientBytes(ClientId(2), &fs_request));
    d.leave(2); // notice 2 handed after the fs request; slot 0 waits for id 1
    // The guest sends data for client 2's request, which it read before
    // notice 2: only notice 1 is known to be taken.
    d.ev(Event::GuestBytes(&data(V10, MsgType::FsData, 1, &[7])));
    let acts = d.connect(3);
    let start = handshake_start(&acts, 3);
    let req = exec_request(V10, 1, false, 0);
    d.ev(Event::ClientBytes(ClientId(3), &req));
    // The guest's answer to client 2's fs request, sent before it read
    // notice 2.
    let resp = FsResponse {
        ok: true,
        error: None,
        data: None,
    };
    let late = frame(V10, MsgType::FsResponse, 1, &resp);
    let acts = d.ev(Event::GuestBytes(&late));
    assert!(
        start != Some(1) || to_client(&acts, 3).is_empty(),
        "client 3 took slot 0 and received client 2's late fs.response"
    );
}
