//! The core's rules, a module each, named as docs/ARCHITECTURE.md names
//! them; every test fails without its rule.

#[path = "../common/mod.rs"]
mod common;

mod boundaries;
mod budgets_and_scheduling;
mod client_frames;
mod counters;
mod current_credit;
mod current_departure;
mod current_frames;
mod current_startup;
mod departure;
mod drain;
mod guest_input;
mod handshake;
mod quarantine;
mod routing;
mod tap;

use agent_relay::core::IdRange;
use agent_relay::core::{
    Action, ClientId, CloseReason, Config, Event, HandshakeForm, LogRecord, LogSource,
    RefuseReason, SlowLimit, Timeout, Timer, Violation,
};
use agent_relay::core::{
    CONTROL_BYTES, CONTROL_FRAMES, DATA_BYTES, DATA_FRAMES, Protocol, StartupFailure,
};
use agent_relay::wire::payload::{ExecLimits, InitAck};
use agent_relay::wire::{EnvelopeError, FLAG_SHUTDOWN, Frame, FrameError, MAX_FRAME_LEN, MsgType};
use bytes::Bytes;
use common::current::*;
use common::*;

fn small() -> Config {
    Config {
        exec_log: true,
        ..Config::default()
    }
}

/// A ready relay whose guest window holds one frame, with client 1 connected
/// and the window already full: further frames queue in the relay.
fn window_full(cap: Option<usize>) -> Harness {
    let mut cfg = Config {
        guest_window: 1,
        ..small()
    };
    if let Some(cap) = cap {
        cfg.client_to_guest_cap = cap;
    }
    let mut h = Harness::ready(cfg);
    h.connect(1);
    let acts = h.client(1, &stdin(V1, 1, b"fill"));
    assert_eq!(to_guest(&acts).len(), 1);
    h
}

fn one_client() -> Harness {
    let mut h = Harness::ready(small());
    h.connect(1);
    h.connect(2);
    h
}

fn assert_refused(h: &mut Harness, c: u64, bytes: &[u8], why: impl Fn(&Violation) -> bool) {
    let acts = h.client(c, bytes);
    let v = violation(&acts, c).unwrap_or_else(|| panic!("not closed: {acts:?}"));
    assert!(why(&v), "closed for another rule: {v:?}");
    assert!(
        !to_guest(&acts).iter().any(|f| f[..] == *bytes),
        "refused frame forwarded"
    );
    // The other client is unaffected.
    let other = if c == 1 { 2 } else { 1 };
    let id = (other as u32 - 1) * STEP + 7;
    let acts = h.client(other, &stdin(V1, id, b"ok"));
    assert_eq!(to_guest(&acts), vec![stdin(V1, id, b"ok")]);
}

fn logs(acts: &[Action]) -> Vec<(Option<u64>, LogSource, String)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Log(r) => Some((r.session, r.source, r.text.to_string())),
            _ => None,
        })
        .collect()
}

fn budget_cfg() -> Config {
    Config {
        client_soft_budget: 1_000,
        client_hard_cap: 10_000,
        global_cap: 15_000,
        grace: 100,
        ..Config::default()
    }
}
