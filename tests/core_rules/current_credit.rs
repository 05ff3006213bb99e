//! Rules `input_credit`, `fair_data_credit`, `control_overtakes_data` (as the
//! current generation has it), `exec_limit` and `clock_sync`.

use super::*;

fn credited(cfg: Config) -> Harness {
    // A guest port that takes everything at once: only credit holds
    // frames back.
    let mut h = Harness::current(
        Config {
            exec_log: false,
            guest_window: 1 << 40,
            ..cfg
        },
        &ready_current(V10, 1, Some(2), None),
    );
    h.connect(1);
    h.connect(2);
    h
}

fn sent(h: &mut Harness, c: u64, f: &Bytes) -> bool {
    to_guest(&h.client(c, f)).contains(f)
}

/// A data frame that does not fit waits, whole frames counted with their
/// length prefix; a grant lets it go; a grant that would lower any field is
/// ignored and counted.
#[test]
fn core_current_credit_frames_wait_for_a_grant() {
    let mut h = credited(small());
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    // One frame of exactly the data window's bytes... less what fits.
    let big = stdin(V10, id, &vec![7u8; 3 << 20]);
    let mut sent_bytes = 0;
    while sent(&mut h, 1, &big) {
        sent_bytes += big.len() as u64;
    }
    let c = h.relay.counters().clone();
    assert_eq!(c.used_data_bytes, sent_bytes, "prefix included");
    assert_eq!(c.used_data_frames, sent_bytes / big.len() as u64);
    // Lowering the control grant: ignored, nothing moves.
    let lower = credit(
        V10,
        &grant(
            (CONTROL_BYTES - 1, CONTROL_FRAMES),
            (DATA_BYTES * 4, DATA_FRAMES * 4),
        ),
    );
    assert!(to_guest(&h.guest(&lower)).is_empty());
    assert_eq!(h.relay.counters().grants_ignored, 1);
    let more = credit(
        V10,
        &grant(
            (CONTROL_BYTES, CONTROL_FRAMES),
            (DATA_BYTES * 4, DATA_FRAMES * 4),
        ),
    );
    let acts = h.guest(&more);
    assert_eq!(
        to_guest(&acts),
        vec![big.clone()],
        "the waiting frame, once"
    );
    assert_eq!(h.relay.counters().credit_data_bytes, DATA_BYTES * 4);
}

/// The time a client's data waits for credit is counted per class: from the
/// event that found it blocked to the grant that let it go.
#[test]
fn core_current_credit_wait_counted_per_class() {
    let mut h = credited(small());
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    let big = stdin(V10, id, &vec![7u8; 3 << 20]);
    h.now = 1_000;
    while sent(&mut h, 1, &big) {}
    h.now = 1_250;
    h.ev(Event::Tick);
    let data = |n| (DATA_BYTES * n, DATA_FRAMES * n);
    let more = credit(V10, &grant((CONTROL_BYTES, CONTROL_FRAMES), data(4)));
    assert_eq!(to_guest(&h.guest(&more)), vec![big.clone()]);
    let c = h.relay.counters();
    assert_eq!(c.credit_blocked_data_ms, 250);
    assert_eq!(c.credit_blocked_control_ms, 0);
    // Then control alone: signals past the control grant.
    h.now = 2_000;
    let kill = signal(V10, id, 9);
    while sent(&mut h, 1, &kill) {}
    h.now = 2_150;
    let more = credit(V10, &grant((CONTROL_BYTES, CONTROL_FRAMES * 2), data(4)));
    assert_eq!(to_guest(&h.guest(&more)), vec![kill.clone()]);
    let c = h.relay.counters();
    assert_eq!(c.credit_blocked_data_ms, 250);
    assert_eq!(c.credit_blocked_control_ms, 150);
}

/// The init ack before ready is not charged; the clock sync at ready is.
#[test]
fn core_current_init_ack_uncharged_clock_charged() {
    let mut h = Harness::new(Config::current());
    h.guest(&init_resolved(V10));
    h.ev(Event::WallClock(1_700_000_000_000_000_000));
    h.guest(&ready_current(V10, 1, Some(2), None));
    let c = h.relay.counters();
    assert_eq!((c.init_acks, c.clock_syncs), (1, 1));
    assert_eq!(c.used_control_frames, 1, "the clock sync only");
}

/// Control frames pass credit-blocked data: a signal and a resize even
/// their own session's stdin; another request too; a close of a tcp stream
/// never passes its own stream's data.
#[test]
fn core_current_control_passes_blocked_data() {
    let mut h = credited(small());
    let (a, t) = (cid(0), cid(0) + 1);
    h.client(1, &exec_request(V10, a, false, 0));
    h.client(1, &empty(V10, MsgType::TcpConnect, t));
    let big = stdin(V10, a, &vec![1u8; 3 << 20]);
    while sent(&mut h, 1, &big) {}
    let blocked_tcp = data(V10, MsgType::TcpData, t, b"bytes");
    assert!(!sent(&mut h, 1, &blocked_tcp), "data waits");
    let close = named(V10, "core.tcp.close", t, 0, &[0xa0]);
    assert!(!sent(&mut h, 1, &close), "behind its own stream's data");
    assert!(
        sent(&mut h, 1, &signal(V10, a, 2)),
        "a signal passes its own stdin"
    );
    let resize = frame(
        V10,
        MsgType::ExecResize,
        a,
        &agent_relay::wire::payload::ExecResize { rows: 1, cols: 1 },
    );
    assert!(sent(&mut h, 1, &resize));
    assert!(
        sent(&mut h, 2, &empty(V10, MsgType::Ping, cid(1))),
        "another client's request"
    );
    assert!(
        sent(&mut h, 1, &exec_request(V10, a + 5, false, 0)),
        "a new request"
    );
}

/// While one client's stdin is stuck in a process that never reads it,
/// another client's data keeps flowing: nobody holds more than a fair share.
#[test]
fn core_current_fair_share_keeps_other_clients_data_flowing() {
    let mut h = credited(small());
    let (a, b) = (cid(0), cid(1));
    h.client(1, &exec_request(V10, a, false, 0));
    h.client(2, &exec_request(V10, b, false, 0));
    let chunk = vec![0u8; 1 << 20];
    // Client 1 floods a process that never reads: it stops at its share.
    let flood = stdin(V10, a, &chunk);
    let mut held = 0;
    while sent(&mut h, 1, &flood) {
        held += 1;
    }
    assert!(held * (flood.len() as u64) <= DATA_BYTES / 2 + flood.len() as u64);
    // Client 2's process reads: the guest grants back what it consumed.
    for _ in 0..200 {
        let f = stdin(V10, b, &chunk);
        assert!(sent(&mut h, 2, &f), "client 2 still flows");
        let c = h.relay.counters().clone();
        let g = credit(
            V10,
            &grant(
                (c.credit_control_bytes, c.credit_control_frames),
                (
                    c.credit_data_bytes + f.len() as u64,
                    c.credit_data_frames + 1,
                ),
            ),
        );
        h.guest(&g);
    }
    assert!(!sent(&mut h, 1, &flood), "client 1 is still at its share");
}

/// With `Ready.exec_limits`, a request past `max_executions` open
/// sandbox-wide is answered by the relay and never reaches the guest.
#[test]
fn core_current_exec_limit_refused_by_the_relay() {
    let limits = ExecLimits {
        max_executions: 1,
        ..ExecLimits::default()
    };
    let mut h = Harness::current(
        Config {
            exec_log: false,
            ..small()
        },
        &ready_current(V10, 1, None, Some(limits)),
    );
    h.connect(1);
    h.connect(2);
    h.client(1, &exec_request(V10, cid(0), false, 0));
    let frames_in = h.relay.counters().client_frames_in;
    let acts = h.client(2, &exec_request(V10, cid(1), false, 0));
    assert!(to_guest(&acts).is_empty());
    assert_eq!(
        h.relay.counters().client_frames_in,
        frames_in + 1,
        "counted"
    );
    let refused = match &to_client(&acts, 2)[..] {
        [f] => f.clone(),
        other => panic!("{other:?}"),
    };
    let env = agent_relay::wire::peek_parts(&refused[9..]).unwrap();
    assert_eq!(
        (env.v, env.t, refused[8]),
        (10, Some(MsgType::ExecFailed), 1)
    );
    let failed: agent_relay::wire::payload::ExecFailed =
        agent_relay::wire::payload::decode_payload(&env.payload).unwrap();
    assert_eq!(failed.message, "active execution limit reached");
    assert_eq!(h.relay.counters().execs_refused, 1);
    // The first ends; the next request goes through.
    h.guest(&exited(V10, cid(0), 0));
    assert!(sent(&mut h, 2, &exec_request(V10, cid(1) + 1, false, 0)));
}

/// A sync that waited keeps the length it was queued (and charged) with:
/// when the time it would carry at hand-off takes more bytes (here it
/// crosses 2^32 ns), the queued frame goes as it was built.
#[test]
fn core_current_clock_sync_keeps_its_queued_length() {
    const EDGE: u64 = 1 << 32;
    let mut h = Harness::new(Config {
        guest_window: 1,
        ..Config::current()
    });
    h.ev(Event::WallClock(10_000_000_000));
    h.guest(&ready_current(V10, 1, None, None));
    // The first sync fills the window; a step back queues another.
    h.now = 1;
    let acts = h.ev(Event::WallClock(EDGE - 500_000));
    assert!(syncs(&acts).is_empty(), "waits for the window");
    h.now = 2;
    let acts = h.ev(Event::GuestWritten(usize::MAX));
    assert_eq!(
        syncs(&acts),
        [EDGE - 500_000],
        "as queued, not {}",
        EDGE + 500_000
    );
}

fn syncs(acts: &[Action]) -> Vec<u64> {
    to_guest(acts)
        .iter()
        .filter_map(|f| {
            let env = agent_relay::wire::peek_envelope(&f[9..]).ok()?;
            (env.t == MsgType::ClockSync).then(|| {
                let s: agent_relay::wire::payload::ClockSync =
                    agent_relay::wire::payload::decode_payload(&env.payload).unwrap();
                s.unix_time_nanos
            })
        })
        .collect()
}

/// `core.clock.sync` at ready, at the period, and after a jump; the
/// timestamp is the wall time at hand-off. Never in the legacy generation.
#[test]
fn core_current_clock_sync_at_ready_period_and_jump() {
    const T0: u64 = 1_700_000_000_000_000_000;
    let mut h = Harness::new(Config::current());
    h.ev(Event::WallClock(T0));
    let acts = h.guest(&ready_current(V10, 1, None, None));
    assert_eq!(syncs(&acts), [T0]);
    let t = h.relay.poll_timeout().unwrap();
    assert_eq!((t.timer, t.at), (Timer::ClockSync, 60_000));
    h.now = 60_000;
    let acts = h.ev(Event::Tick);
    assert_eq!(syncs(&acts), [T0 + 60_000_000_000], "extrapolated");
    h.now = 61_000;
    let acts = h.ev(Event::WallClock(T0 + 61_000_000_000));
    assert!(syncs(&acts).is_empty(), "in step: no jump");
    let acts = h.ev(Event::WallClock(T0 + 50_000_000_000));
    assert_eq!(syncs(&acts), [T0 + 50_000_000_000], "a step back");
    h.now = 62_000;
    let acts = h.ev(Event::WallClock(T0 + 58_000_000_000));
    assert_eq!(syncs(&acts), [T0 + 58_000_000_000], "6 s ahead");
    // Legacy: none, and no timer.
    let mut h = Harness::new(Config::legacy());
    h.ev(Event::WallClock(T0));
    assert!(syncs(&h.guest(&ready(V1, 1))).is_empty());
    assert_eq!(h.relay.poll_timeout(), None);
}
