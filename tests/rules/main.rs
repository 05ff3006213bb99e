//! The relay's rules, one module each, named as docs/ARCHITECTURE.md names
//! them (`tests/rules/<rule>.rs`); every test fails without its rule. A body
//! runs once per generation ([`each_gen`]) where the rule holds in both.
//!
//! The core's rules drive `agent_relay::core::Relay` directly, no runtime;
//! the shell's (`bounded_reads`, `failed_start_is_reported`,
//! `owner_only_socket`, `paused_hangup_watch`) run a `Shell` on a Unix
//! socket in a tempdir. One module is no rule: `counters`, the counters and
//! accessors a driver reads.

#[path = "../common/mod.rs"]
mod common;
#[path = "../shell_support/mod.rs"]
mod shell_support;

mod backpressure_bounded_wait;
mod backpressure_not_loss;
mod bootstrap_first;
mod bounded_reads;
mod canonical_ranges;
mod clock_sync;
mod control_overtakes_data;
mod correlations_bounded;
mod corrupt_client_isolated;
mod counters;
mod departure_drops_queue;
mod drain_after_shutdown;
mod exec_limit;
mod exec_log_says_what_ran;
mod failed_start_is_reported;
mod fair_data_credit;
mod guest_resync;
mod guest_survives;
mod handshake_after_ready;
mod init_before_ready;
mod input_credit;
mod kill_on_departure;
mod late_bulk_dropped;
mod output_outlives_guest;
mod own_range_only;
mod owner_only_socket;
mod paused_hangup_watch;
mod range_leases;
mod round_robin;
mod route_by_id;
mod slot_quarantine;
mod whole_characters;

use agent_relay::core::IdRange;
use agent_relay::core::{
    Action, ClientId, CloseReason, Config, CurrentSettings, Event, HandshakeForm, LegacySettings,
    LogRecord, LogSource, RefuseReason, SlowLimit, Timeout, Timer, Violation,
};
use agent_relay::core::{
    CONTROL_BYTES, CONTROL_FRAMES, DATA_BYTES, DATA_FRAMES, Protocol, StartupFailure,
};
use agent_relay::wire::payload::{ExecLimits, InitAck};
use agent_relay::wire::{EnvelopeError, FLAG_SHUTDOWN, Frame, FrameError, MAX_FRAME_LEN, MsgType};
use bytes::Bytes;
use common::current::*;
use common::generation::*;
use common::*;

fn small() -> Config {
    Config {
        exec_log: true,
        ..Config::default()
    }
}

/// A ready relay of generation `g` whose guest window holds one frame, with
/// client 1 connected and the window already full: further frames queue in
/// the relay.
fn window_full(g: Gen, cap: Option<usize>) -> Harness {
    let mut cfg = Config {
        guest_window: 1,
        ..small()
    };
    if let Some(cap) = cap {
        cfg.client_to_guest_cap = cap;
    }
    let mut h = g.harness(cfg);
    h.connect(1);
    let acts = h.client(1, &stdin(g.v(), g.id(0, 1), b"fill"));
    assert_eq!(to_guest(&acts).len(), 1);
    h
}

/// A ready relay of generation `g` with clients 1 and 2 in slots 0 and 1.
fn two_clients(g: Gen) -> Harness {
    let mut h = g.harness(small());
    h.connect(1);
    h.connect(2);
    h
}

/// Client `c` (of [`two_clients`]) sending `bytes` is closed for a
/// violation `why` accepts, the frame is not forwarded, and the other
/// client is unaffected.
fn assert_refused(g: Gen, h: &mut Harness, c: u64, bytes: &[u8], why: impl Fn(&Violation) -> bool) {
    let acts = h.client(c, bytes);
    let v = violation(&acts, c).unwrap_or_else(|| panic!("not closed: {acts:?}"));
    assert!(why(&v), "closed for another rule: {v:?}");
    assert!(
        !to_guest(&acts).iter().any(|f| f[..] == *bytes),
        "refused frame forwarded"
    );
    let other = if c == 1 { 2 } else { 1 };
    let id = g.id(other as u32 - 1, 7);
    let acts = h.client(other, &stdin(g.v(), id, b"ok"));
    assert_eq!(to_guest(&acts), vec![stdin(g.v(), id, b"ok")]);
}

fn logs(acts: &[Action]) -> Vec<(Option<u64>, LogSource, String)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Log(r) => Some((r.session, r.source, r.text.to_string())),
            _ => None,
        })
        .collect()
}

/// A ready relay of generation `g` with client 1 in slot 0.
fn one_client(g: Gen, cfg: Config) -> Harness {
    let mut h = g.harness(cfg);
    h.connect(1);
    h
}

/// Opens exec session `k` of client `c` (seated in slot `c - 1`, as
/// [`one_client`] and [`two_clients`] seat them); returns its id.
fn open_exec(h: &mut Harness, g: Gen, c: u64, k: u32) -> u32 {
    let id = g.id(c as u32 - 1, k);
    h.client(c, &exec_request(g.v(), id, false, 0));
    id
}

/// A current relay whose guest grants credit (barrier 2) and whose port
/// takes everything at once: only credit holds frames back. Clients 1 and
/// 2 connected.
fn credited(cfg: Config) -> Harness {
    let cfg = Config {
        exec_log: false,
        guest_window: 1 << 40,
        ..cfg
    };
    let mut h = Gen::Current.harness_with(cfg, &ready_current(V10, 1, Some(2), None));
    h.connect(1);
    h.connect(2);
    h
}

/// Whether client `c`'s frame `f` reaches the guest at once.
fn sent(h: &mut Harness, c: u64, f: &Bytes) -> bool {
    to_guest(&h.client(c, f)).contains(f)
}

/// `frame` written to client `c`.
fn to(c: u64, frame: Bytes) -> Action {
    Action::ToClient {
        client: ClientId(c),
        frame,
    }
}

/// A shell on a Unix socket speaking generation `g` (its clock sync off,
/// as [`Gen::config`] has it), its guest ready.
async fn shell(g: Gen) -> shell_support::Harness {
    shell_support::Harness::start_speaking(g.config(Config::default()), &g.ready(), |s| s).await
}

/// A client of `h`'s shell, its handshake read as generation `g` writes it.
async fn shell_client(g: Gen, h: &shell_support::Harness) -> shell_support::Connected {
    shell_support::connect_with(&h.sock, g == Gen::Current).await
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
