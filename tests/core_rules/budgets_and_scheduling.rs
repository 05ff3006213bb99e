//! Rules `backpressure_bounded_wait` (soft budget, guest pause, grace, hard
//! cap, global cap),
//! `backpressure_not_loss` (pause and resume toward the guest) and
//! `control_overtakes_data`.

use super::*;

#[test]
fn core_slow_consumer_closed_at_grace_deadline() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    let big = stdout(V1, 1, &[b'x'; 1_200]);
    h.guest(&big);
    let timeout = h.relay.poll_timeout().expect("grace timer armed");
    assert_eq!(timeout.timer, Timer::SlowConsumerGrace(ClientId(1)));
    let deadline = timeout.at;
    h.now = deadline - 1;
    assert!(h.ev(Event::Tick).is_empty());
    h.now = deadline;
    let acts = h.ev(Event::Tick);
    assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::Grace));
    assert_eq!(to_guest(&acts), vec![kill(V1, 1)]);
    assert_eq!(h.relay.counters().slow_consumer_closes, 1);
}

/// Rule `backpressure_bounded_wait`: progress is taking the queue down to
/// half the soft budget. Over budget the guest is not read; reading a
/// little (a trickle) neither restarts the grace period nor resumes the
/// guest; down to half the budget the client is no longer over: its grace
/// ends and the guest is read again.
#[test]
fn core_progress_is_draining_to_half_the_budget() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    let acts = h.guest(&stdout(V1, 1, &[b'x'; 3_000]));
    assert!(acts.contains(&Action::PauseGuest), "{acts:?}");
    let grace = Some(Timeout {
        at: 100,
        timer: Timer::SlowConsumerGrace(ClientId(1)),
    });
    assert_eq!(h.relay.poll_timeout(), grace);
    h.now = 90;
    let acts = h.ev(Event::ClientWritten(ClientId(1), 100));
    assert!(acts.is_empty(), "a trickle resumes nothing: {acts:?}");
    assert_eq!(h.relay.poll_timeout(), grace, "nor restarts the grace");
    let queued = h.relay.client_queued(ClientId(1)).unwrap();
    let acts = h.ev(Event::ClientWritten(ClientId(1), queued - 500));
    assert_eq!(acts, vec![Action::ResumeGuest]);
    assert_eq!(h.relay.poll_timeout(), None);
    h.now = 100;
    assert!(closed(&h.ev(Event::Tick), 1).is_none());
    assert_eq!(h.relay.counters().guest_pauses, 1);
    assert_eq!(h.relay.counters().guest_paused_ms, 90);
}

/// A trickle is closed at the end of its grace period, and the guest is
/// read again: the stalled client held the others up for one grace period.
#[test]
fn core_trickle_closed_after_one_grace_period() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.guest(&stdout(V1, 1, &[b'x'; 3_000]));
    for t in 1..10 {
        h.now = t * 10;
        h.ev(Event::ClientWritten(ClientId(1), 50));
    }
    h.now = 100;
    let acts = h.ev(Event::Tick);
    assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::Grace));
    assert!(acts.contains(&Action::ResumeGuest), "{acts:?}");
}

#[test]
fn core_hard_cap_closes_at_once() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    let mut closed_at = None;
    for i in 0..20 {
        let acts = h.guest(&stdout(V1, 1, &[b'x'; 900]));
        if closed(&acts, 1).is_some() {
            closed_at = Some(i);
            break;
        }
        assert!(h.relay.client_queued(ClientId(1)).unwrap() <= 10_000);
    }
    assert!(closed_at.is_some());
}

#[test]
fn core_global_cap_closes_biggest_holder() {
    let mut h = Harness::ready(budget_cfg());
    for c in 0..3u32 {
        h.connect(c as u64);
        h.client(c as u64, &exec_request(V1, c * STEP + 1, false, 0));
    }
    // Client 0 holds 8 KB, client 1 holds 5 KB; client 2's frame crosses 15 KB.
    h.guest(&stdout(V1, 1, &[b'x'; 8_000]));
    h.guest(&stdout(V1, STEP + 1, &[b'x'; 5_000]));
    let acts = h.guest(&stdout(V1, 2 * STEP + 1, &[b'x'; 2_500]));
    assert_eq!(slow_limit(&acts, 0), Some(SlowLimit::GlobalCap), "{acts:?}");
    assert_eq!(
        to_client(&acts, 2).len(),
        1,
        "the sender's frame still delivered"
    );
    assert!(h.relay.counters().queued_to_clients <= 15_000);
}

/// All clients together over half the global cap pause the guest though
/// none is over its own budget; the sum has a grace period of its own to
/// fall to a quarter of the cap, after which the client holding the most
/// is closed and the guest read again.
#[test]
fn core_global_mark_pauses_the_guest_then_closes_the_biggest() {
    let cfg = Config {
        client_soft_budget: 6_000,
        client_hard_cap: 10_000,
        global_cap: 20_000,
        grace: 100,
        ..Config::default()
    };
    let mut h = Harness::ready(cfg);
    for c in 0..3u32 {
        h.connect(c as u64);
        h.client(c as u64, &exec_request(V1, c * STEP + 1, false, 0));
    }
    h.guest(&stdout(V1, 1, &[b'x'; 5_000]));
    let acts = h.guest(&stdout(V1, STEP + 1, &[b'x'; 4_000]));
    assert!(!acts.contains(&Action::PauseGuest), "9 KB of 20: {acts:?}");
    let acts = h.guest(&stdout(V1, 2 * STEP + 1, &[b'x'; 2_000]));
    assert!(acts.contains(&Action::PauseGuest), "over 10 KB: {acts:?}");
    let t = h.relay.poll_timeout().expect("the sum's grace");
    assert_eq!(
        t,
        Timeout {
            at: 100,
            timer: Timer::GlobalGrace
        }
    );
    h.ev(Event::ClientWritten(ClientId(1), 3_000));
    assert_eq!(h.relay.poll_timeout(), Some(t), "8 KB is not down to 5");
    h.now = 100;
    let acts = h.ev(Event::Tick);
    assert_eq!(slow_limit(&acts, 0), Some(SlowLimit::GlobalCap), "{acts:?}");
    assert!(acts.contains(&Action::ResumeGuest), "{acts:?}");
    let next = h.relay.poll_timeout().map(|t| t.timer);
    assert_eq!(next, Some(Timer::Quarantine { slot: 0 }), "no grace runs");
}

#[test]
fn core_client_paused_at_bound_and_resumed_fairly() {
    let cfg = Config {
        client_to_guest_cap: 100,
        guest_window: 1,
        ..small()
    };
    let mut h = Harness::ready(cfg);
    h.connect(1);
    h.connect(2);
    // Fill the window, then queue past the bound for client 1.
    h.client(1, &stdin(V1, 1, b"w"));
    let mut paused = false;
    for _ in 0..5 {
        let acts = h.client(1, &stdin(V1, 1, &[b'a'; 40]));
        paused |= acts.contains(&Action::PauseClient(ClientId(1)));
    }
    assert!(paused);
    h.client(2, &stdin(V1, STEP + 1, b"b1"));
    h.client(2, &stdin(V1, STEP + 1, b"b2"));
    // Round robin: client 2's frames are not stuck behind all of client 1's.
    let mut order = Vec::new();
    let mut resumed = false;
    for _ in 0..10 {
        let acts = h.ev(Event::GuestWritten(1 << 20));
        resumed |= acts.contains(&Action::ResumeClient(ClientId(1)));
        order.extend(
            to_guest(&acts)
                .into_iter()
                .map(|f| f[4..8] == (STEP + 1).to_be_bytes()),
        );
    }
    assert!(resumed);
    assert_eq!(order, vec![true, false, true, false, false, false, false]);
}

#[test]
fn core_control_frames_overtake_other_sessions_data() {
    let mut h = window_full(None);
    h.client(1, &stdin(V1, 1, b"data"));
    h.client(1, &signal(V1, 2, 15));
    h.client(1, &resize(V1, 3, 1, 2));
    h.client(1, &signal(V1, 1, 2)); // same session as queued data: stays behind it
    let mut sent = Vec::new();
    for _ in 0..6 {
        sent.extend(to_guest(&h.ev(Event::GuestWritten(1 << 20))));
    }
    assert_eq!(
        sent,
        vec![
            signal(V1, 2, 15),
            resize(V1, 3, 1, 2),
            stdin(V1, 1, b"data"),
            signal(V1, 1, 2)
        ]
    );
}
