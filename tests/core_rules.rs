//! One test (or a few) per rule of the core issue; each fails without its rule.

mod common;

use agent_relay::core::{
    Action, ClientId, CloseReason, Config, Event, HandshakeForm, LogSource, RefuseReason,
    SlowLimit, Timeout, Timer, Violation,
};
use agent_relay::wire::MsgType;
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
    let acts = h.client(1, &stdin(1, b"fill"));
    assert_eq!(to_guest(&acts).len(), 1);
    h
}

// ---- 1. before ready ------------------------------------------------------

#[test]
fn core_frames_before_ready_discarded_and_counted() {
    let mut h = Harness::new(small());
    let acts = h.guest(&stdout(1, b"noise"));
    assert!(acts.is_empty());
    assert_eq!(h.relay.counters().guest_frames_before_ready, 1);
    assert!(!h.relay.is_ready());
}

#[test]
fn core_undecodable_before_ready_does_not_abort_startup() {
    let mut h = Harness::new(small());
    let mut chunk = agent_relay::wire::Frame::build(0, 0, b"\xff\xfe garbage")
        .unwrap()
        .into_bytes()
        .to_vec();
    chunk.extend_from_slice(&ready());
    let acts = h.guest(&chunk);
    assert!(acts.contains(&Action::Ready), "{acts:?}");
    assert_eq!(h.relay.counters().guest_corrupt, 1);
}

#[test]
fn core_ready_cached_whole_and_following_bytes_routed() {
    let mut h = Harness::new(small());
    h.connect(1);
    // ready and a frame for an (as yet) unopened session in one chunk, then a
    // session's output right behind ready in another chunk.
    let acts = h.guest(&ready());
    let hs = acts
        .iter()
        .find_map(|a| match a {
            Action::Handshake { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .expect("handshake after ready");
    assert_eq!(&hs[..4], &0u32.to_be_bytes());
    assert_eq!(&hs[4..], &ready()[..]);
    h.client(1, &exec_req(1, false));
    let mut chunk = stdout(1, b"a").to_vec();
    chunk.extend_from_slice(&stdout(1, b"b"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(1, b"a"), stdout(1, b"b")]);
}

#[test]
fn core_ready_then_frames_in_same_chunk_kept() {
    let mut h = Harness::new(small());
    let mut chunk = ready().to_vec();
    chunk.extend_from_slice(&stdout(5, b"x"));
    h.guest(&chunk);
    assert!(h.relay.is_ready());
    // The frame after ready was parsed (and dropped as unowned), not lost in the buffer.
    assert_eq!(h.relay.counters().dropped_unowned, 1);
    assert_eq!(h.relay.held_bytes(), 0);
}

#[test]
fn core_client_before_ready_waits_for_handshake() {
    let mut h = Harness::new(small());
    let acts = h.connect(1);
    assert!(acts.is_empty(), "no handshake before ready: {acts:?}");
    let acts = h.guest(&ready());
    assert!(
        matches!(
            acts[..],
            [
                Action::Ready,
                Action::Log(_),
                Action::Handshake {
                    client: ClientId(1),
                    ..
                }
            ]
        ),
        "{acts:?}"
    );
}

#[test]
fn core_bytes_before_handshake_close_client() {
    let mut h = Harness::new(small());
    h.connect(1);
    let acts = h.client(1, &stdin(1, b"x"));
    assert!(closed(&acts, 1).unwrap().contains("before its handshake"));
    assert!(to_guest(&acts).is_empty());
}

// ---- 2. connect -------------------------------------------------------------

#[test]
fn core_connect_lowest_free_slot_and_offset_handshake() {
    let mut h = Harness::ready(small());
    for c in 0..3 {
        let acts = h.connect(c);
        assert_eq!(handshake_offset(&acts), c as u32 * STEP);
    }
    h.disconnect(1);
    let acts = h.connect(9);
    assert_eq!(handshake_offset(&acts), STEP, "slot 1 reused");
    assert_eq!(STEP, 268_435_455);
}

#[test]
fn core_bounds_handshake_gives_start_and_end() {
    let cfg = Config::bounds_handshake();
    assert_eq!(
        (cfg.max_clients, cfg.handshake),
        (128, HandshakeForm::Bounds)
    );
    let step = u32::MAX / 128;
    let mut h = Harness::ready(cfg);
    h.connect(0);
    let acts = h.connect(1);
    assert_eq!(handshake_offset(&acts), step);
    let Action::Handshake { bytes, .. } = &acts[0] else {
        unreachable!()
    };
    assert_eq!(&bytes[4..8], &(2 * step).to_be_bytes());
    assert_eq!(&bytes[8..], &ready()[..]);
}

#[test]
fn core_at_capacity_refused_with_reason() {
    let mut h = Harness::ready(small());
    for c in 0..16 {
        h.connect(c);
    }
    let acts = h.connect(16);
    assert_eq!(
        acts,
        vec![Action::Refuse {
            client: ClientId(16),
            reason: RefuseReason::Full {
                max_clients: 16,
                quarantined: 0
            }
        }]
    );
    assert!(acts[0].clone() != Action::Ready);
    let Action::Refuse { reason, .. } = &acts[0] else {
        unreachable!()
    };
    assert!(reason.to_string().contains("all 16 client slots in use"));
    assert_eq!(h.relay.counters().refused_clients, 1);
}

// ---- 3. client frames ---------------------------------------------------------

fn one_client() -> Harness {
    let mut h = Harness::ready(small());
    h.connect(1);
    h.connect(2);
    h
}

#[test]
fn core_client_frame_forwarded_unchanged() {
    let mut h = one_client();
    let f = exec_req(STEP + 1, false);
    // Split in two reads.
    let acts = h.client(2, &f[..7]);
    assert!(to_guest(&acts).is_empty());
    let acts = h.client(2, &f[7..]);
    assert_eq!(to_guest(&acts), vec![f]);
}

fn assert_refused(h: &mut Harness, c: u64, bytes: &[u8], why: &str) {
    let acts = h.client(c, bytes);
    let reason = closed(&acts, c).unwrap_or_else(|| panic!("not closed: {acts:?}"));
    assert!(reason.contains(why), "{reason}");
    assert!(
        !to_guest(&acts).iter().any(|f| f[..] == *bytes),
        "refused frame forwarded"
    );
    // The other client is unaffected.
    let other = if c == 1 { 2 } else { 1 };
    let id = (other as u32 - 1) * STEP + 7;
    let acts = h.client(other, &stdin(id, b"ok"));
    assert_eq!(to_guest(&acts), vec![stdin(id, b"ok")]);
}

#[test]
fn core_out_of_range_id_closes_sender_only() {
    let mut h = one_client();
    assert_refused(&mut h, 1, &stdin(STEP + 3, b"x"), "outside its range");
}

#[test]
fn core_invalid_length_closes_sender_only() {
    let mut h = one_client();
    assert_refused(
        &mut h,
        1,
        &(5u32 << 20).to_be_bytes(),
        "over the 4194304-byte limit",
    );
    let mut h = one_client();
    assert_refused(&mut h, 1, &3u32.to_be_bytes(), "below the minimum");
}

#[test]
fn core_garbage_envelope_never_reaches_guest() {
    let mut h = one_client();
    let junk = agent_relay::wire::Frame::build(1, 0, b"\x9f\xff\x00junk").unwrap();
    assert_refused(&mut h, 1, junk.as_bytes(), "envelope");
}

#[test]
fn core_forged_terminal_flag_refused() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    assert_refused(&mut h, 1, &with_flags(&stdin(1, b"x"), 0x01), "flags 0x01");
    assert_eq!(
        h.relay.counters().kills_sent,
        1,
        "its session was cleaned up"
    );
}

#[test]
fn core_shutdown_flag_on_stdin_refused() {
    let mut h = one_client();
    let acts = h.client(1, &with_flags(&stdin(1, b"x"), 0x04));
    assert!(!acts.contains(&Action::Drain));
    assert!(closed(&acts, 1).unwrap().contains("flags 0x04"));
}

#[test]
fn core_guest_only_type_from_client_refused() {
    let mut h = one_client();
    assert_refused(
        &mut h,
        1,
        &stdout(1, b"x"),
        "clients may not send core.exec.stdout",
    );
}

#[test]
fn core_undecodable_exec_request_refused() {
    let mut h = one_client();
    let body = agent_relay::wire::encode_envelope(MsgType::ExecRequest, b"\x01");
    let f = agent_relay::wire::Frame::build(1, 0x02, &body).unwrap();
    assert_refused(&mut h, 1, f.as_bytes(), "payload");
}

#[test]
fn core_frames_before_violation_still_forwarded() {
    let mut h = one_client();
    let mut chunk = exec_req(1, false).to_vec();
    chunk.extend_from_slice(&stdin(STEP * 5, b"bad"));
    let acts = h.client(1, &chunk);
    assert_eq!(to_guest(&acts), vec![exec_req(1, false), kill(1)]);
    assert_eq!(h.relay.counters().protocol_violations, 1);
}

// ---- 4. routing ---------------------------------------------------------------

#[test]
fn core_guest_frames_routed_by_range_zero_copy() {
    let mut h = one_client();
    h.client(1, &exec_req(4, false));
    h.client(2, &exec_req(STEP + 4, false));
    let mut chunk = stdout(STEP + 4, b"two").to_vec();
    chunk.extend_from_slice(&stdout(4, b"one"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(4, b"one")]);
    assert_eq!(to_client(&acts, 2), vec![stdout(STEP + 4, b"two")]);
}

#[test]
fn core_unowned_frames_counted_and_dropped() {
    let mut h = one_client();
    let acts = h.guest(&stdout(3, b"no session"));
    assert!(to_client(&acts, 1).is_empty());
    let acts = h.guest(&stdout(STEP * 9 + 1, b"no client"));
    assert!(acts.is_empty());
    assert_eq!(h.relay.counters().dropped_unowned, 2);
}

#[test]
fn core_terminal_ends_session() {
    let mut h = one_client();
    h.client(1, &exec_req(4, false));
    assert_eq!(h.relay.counters().live_sessions, 1);
    let acts = h.guest(&exited(4, 0));
    assert_eq!(to_client(&acts, 1), vec![exited(4, 0)]);
    assert_eq!(h.relay.counters().live_sessions, 0);
    let acts = h.guest(&stdout(4, b"late"));
    assert!(to_client(&acts, 1).is_empty());
}

#[test]
fn core_session_id_reuse_while_live_refused() {
    let mut h = one_client();
    h.client(1, &exec_req(4, false));
    let acts = h.client(1, &exec_req(4, false));
    assert!(closed(&acts, 1).unwrap().contains("already open"));
}

// ---- 5. disconnect cleanup ------------------------------------------------------

#[test]
fn core_disconnect_kills_live_exec_sessions_once() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    h.client(1, &exec_req(2, true));
    h.client(1, &exec_req(3, false));
    h.client(1, &fs_req(4));
    h.guest(&exited(3, 0));
    let acts = h.disconnect(1);
    assert_eq!(to_guest(&acts), vec![kill(1), kill(2)]);
    assert!(h.disconnect(1).is_empty(), "second disconnect is a no-op");
    assert_eq!(h.relay.counters().kills_sent, 2);
}

#[test]
fn core_kill_queued_after_clients_earlier_frames() {
    let cfg = Config {
        guest_window: 1,
        ..small()
    };
    let mut h = Harness::ready(cfg);
    h.connect(1);
    let req = exec_req(1, false);
    let acts = h.client(1, &req);
    assert_eq!(to_guest(&acts), vec![req.clone()]);
    // The guest window is full: these wait in the relay.
    h.client(1, &stdin(1, b"a"));
    h.client(1, &stdin(1, b"b"));
    h.disconnect(1);
    let mut sent = Vec::new();
    for _ in 0..5 {
        let acts = h.ev(Event::GuestWritten(1 << 20));
        sent.extend(to_guest(&acts));
    }
    assert_eq!(sent, vec![stdin(1, b"a"), stdin(1, b"b"), kill(1)]);
}

// ---- 6. drain -------------------------------------------------------------------

#[test]
fn core_shutdown_emits_drain_after_frame() {
    let mut h = one_client();
    let acts = h.client(1, &shutdown(9));
    let pos_frame = acts
        .iter()
        .position(|a| matches!(a, Action::ToGuest { frame } if *frame == shutdown(9)))
        .expect("shutdown forwarded");
    let pos_drain = acts
        .iter()
        .position(|a| *a == Action::Drain)
        .expect("drain");
    assert!(pos_frame < pos_drain);
}

#[test]
fn core_shutdown_waits_for_guest_window_before_drain() {
    let mut h = window_full(None);
    let acts = h.client(1, &shutdown(9));
    assert!(
        !acts.contains(&Action::Drain),
        "drain before its frame left"
    );
    let acts = h.ev(Event::GuestWritten(1 << 20));
    assert_eq!(
        acts,
        vec![Action::ToGuest { frame: shutdown(9) }, Action::Drain]
    );
}

// ---- 7. exec.log tap ----------------------------------------------------------------

fn logs(acts: &[Action]) -> Vec<(Option<u64>, LogSource, String)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Log(r) => Some((r.session, r.source, r.text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn core_tap_tags_streams_and_numbers_sessions() {
    let mut h = Harness::new(small());
    let acts = h.guest(&ready());
    assert_eq!(
        logs(&acts),
        vec![(None, LogSource::System, "--- sandbox started ---".into())]
    );
    h.connect(1);
    h.client(1, &exec_req(1, false));
    h.client(1, &exec_req(2, true));
    let mut chunk = stdout(1, b"out").to_vec();
    chunk.extend_from_slice(&data(MsgType::ExecStderr, 1, b"err"));
    chunk.extend_from_slice(&stdout(2, b"pty"));
    chunk.extend_from_slice(&exited(1, 0));
    let acts = h.guest(&chunk);
    assert_eq!(
        logs(&acts),
        vec![
            (Some(1), LogSource::Stdout, "out".into()),
            (Some(1), LogSource::Stderr, "err".into()),
            (Some(2), LogSource::Output, "pty".into()),
        ]
    );
    // Session numbers are never reused even when the correlation id is.
    h.client(1, &exec_req(1, false));
    let acts = h.guest(&stdout(1, b"again"));
    assert_eq!(
        logs(&acts),
        vec![(Some(3), LogSource::Stdout, "again".into())]
    );
}

#[test]
fn core_tap_split_utf8_emitted_whole() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    let snow = "☃".as_bytes();
    let a = h.guest(&stdout(1, &[b"x", &snow[..1]].concat()));
    let b = h.guest(&stdout(1, &[&snow[1..], b"y"].concat()));
    assert_eq!(logs(&a)[0].2, "x");
    assert_eq!(logs(&b)[0].2, "☃y");
}

#[test]
fn core_tap_off_emits_no_log() {
    let mut h = Harness::ready(Config::default());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    let acts = h.guest(&stdout(1, b"x"));
    assert!(logs(&acts).is_empty());
}

// ---- 8. budgets, fairness, priority --------------------------------------------------

fn budget_cfg() -> Config {
    Config {
        client_soft_budget: 1_000,
        client_hard_cap: 10_000,
        global_cap: 15_000,
        grace: 100,
        ..Config::default()
    }
}

#[test]
fn core_slow_consumer_closed_at_grace_deadline() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    let big = stdout(1, &[b'x'; 1_200]);
    h.guest(&big);
    let timeout = h.relay.poll_timeout().expect("grace timer armed");
    assert_eq!(timeout.timer, Timer::SlowConsumerGrace(ClientId(1)));
    let deadline = timeout.at;
    h.now = deadline - 1;
    assert!(h.ev(Event::Tick).is_empty());
    h.now = deadline;
    let acts = h.ev(Event::Tick);
    assert!(closed(&acts, 1).unwrap().starts_with("slow consumer"));
    assert_eq!(to_guest(&acts), vec![kill(1)]);
    assert_eq!(h.relay.counters().slow_consumer_closes, 1);
}

#[test]
fn core_progress_restarts_grace_and_draining_clears_it() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    h.guest(&stdout(1, &[b'x'; 3_000]));
    h.now = 90;
    h.ev(Event::ClientWritten(ClientId(1), 100));
    assert_eq!(
        h.relay.poll_timeout(),
        Some(Timeout {
            at: 190,
            timer: Timer::SlowConsumerGrace(ClientId(1))
        })
    );
    h.now = 150;
    assert!(closed(&h.ev(Event::Tick), 1).is_none());
    h.ev(Event::ClientWritten(ClientId(1), 1 << 20));
    assert_eq!(h.relay.poll_timeout(), None);
}

#[test]
fn core_hard_cap_closes_at_once() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    let mut closed_at = None;
    for i in 0..20 {
        let acts = h.guest(&stdout(1, &[b'x'; 900]));
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
        h.client(c as u64, &exec_req(c * STEP + 1, false));
    }
    // Client 0 holds 8 KB, client 1 holds 5 KB; client 2's frame crosses 15 KB.
    h.guest(&stdout(1, &[b'x'; 8_000]));
    h.guest(&stdout(STEP + 1, &[b'x'; 5_000]));
    let acts = h.guest(&stdout(2 * STEP + 1, &[b'x'; 2_500]));
    assert!(closed(&acts, 0).unwrap().contains("global cap"), "{acts:?}");
    assert_eq!(
        to_client(&acts, 2).len(),
        1,
        "the sender's frame still delivered"
    );
    assert!(h.relay.counters().queued_to_clients <= 15_000);
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
    h.client(1, &stdin(1, b"w"));
    let mut paused = false;
    for _ in 0..5 {
        let acts = h.client(1, &stdin(1, &[b'a'; 40]));
        paused |= acts.contains(&Action::PauseClient(ClientId(1)));
    }
    assert!(paused);
    h.client(2, &stdin(STEP + 1, b"b1"));
    h.client(2, &stdin(STEP + 1, b"b2"));
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
    h.client(1, &stdin(1, b"data"));
    h.client(1, &signal(2, 15));
    h.client(1, &resize(3));
    h.client(1, &signal(1, 2)); // same session as queued data: stays behind it
    let mut sent = Vec::new();
    for _ in 0..6 {
        sent.extend(to_guest(&h.ev(Event::GuestWritten(1 << 20))));
    }
    assert_eq!(
        sent,
        vec![signal(2, 15), resize(3), stdin(1, b"data"), signal(1, 2)]
    );
}

// ---- 9. quarantine ------------------------------------------------------------

#[test]
fn core_recycled_slot_never_gets_late_frames() {
    let mut h = Harness::ready(small());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    h.disconnect(1);
    // A new client gets another slot while slot 0 waits for its session to end.
    let acts = h.connect(2);
    assert_eq!(handshake_offset(&acts), STEP);
    let acts = h.guest(&stdout(1, b"late"));
    assert!(to_client(&acts, 2).is_empty());
    h.guest(&exited(1, 137));
    // Slot 0 is free again.
    let acts = h.connect(3);
    assert_eq!(handshake_offset(&acts), 0u32);
}

#[test]
fn core_quarantine_times_out() {
    let mut h = Harness::ready(small());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    h.disconnect(1);
    assert_eq!(
        h.relay.poll_timeout(),
        Some(Timeout {
            at: 30_000,
            timer: Timer::Quarantine { slot: 0 }
        })
    );
    h.now = 30_000;
    h.ev(Event::Tick);
    assert_eq!(h.relay.counters().live_sessions, 0);
    let acts = h.connect(2);
    assert_eq!(handshake_offset(&acts), 0u32);
}

#[test]
fn core_quarantined_slots_reported_when_full() {
    let cfg = Config {
        max_clients: 2,
        ..small()
    };
    let mut h = Harness::ready(cfg);
    h.connect(1);
    h.client(1, &exec_req(1, false));
    h.disconnect(1);
    h.connect(2);
    let acts = h.connect(3);
    assert_eq!(
        acts,
        vec![Action::Refuse {
            client: ClientId(3),
            reason: RefuseReason::Full {
                max_clients: 2,
                quarantined: 1
            }
        }]
    );
}

// ---- 10. corrupt guest input -----------------------------------------------------

#[test]
fn core_plausible_wrong_length_resyncs_to_next_frame() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    let mut bad = stdout(1, b"aaaa").to_vec();
    let len = u32::from_be_bytes(bad[..4].try_into().unwrap());
    bad[..4].copy_from_slice(&(len + 6).to_be_bytes()); // plausible, wrong
    let mut chunk = bad;
    chunk.extend_from_slice(&stdout(1, b"good"));
    chunk.extend_from_slice(&stdout(1, b"more"));
    let acts = h.guest(&chunk);
    assert_eq!(
        to_client(&acts, 1),
        vec![stdout(1, b"good"), stdout(1, b"more")]
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::GuestCorrupt { .. }))
    );
    assert_eq!(h.relay.counters().guest_corrupt, 1);
}

#[test]
fn core_short_junk_then_valid_frame_same_chunk_delivered() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    let mut chunk = agent_relay::wire::Frame::build(1, 0, b"\x01\x02")
        .unwrap()
        .into_bytes()
        .to_vec();
    chunk.extend_from_slice(&stdout(1, b"valid"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(1, b"valid")]);
}

#[test]
fn core_absurd_guest_length_skipped() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    let mut chunk = vec![0xff, 0xff, 0xff, 0xff, 0, 0];
    chunk.extend_from_slice(&stdout(1, b"after"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(1, b"after")]);
    assert_eq!(h.relay.counters().guest_corrupt_bytes, 6);
}

/// Rule `output_outlives_guest`: a client closed because the guest went away
/// keeps its unwritten output for one grace period; the core names the
/// deadline and gives up on it there.
#[test]
fn core_guest_gone_flush_expires_at_grace_deadline() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    let out = stdout(1, b"last words");
    h.guest(&out);
    h.now = 10;
    let gone = Action::CloseClient {
        client: ClientId(1),
        reason: CloseReason::GuestGone,
    };
    h.expect(Event::GuestClosed, &[gone]);
    let deadline = Timeout {
        at: 110,
        timer: Timer::CloseFlush(ClientId(1)),
    };
    assert_eq!(h.relay.poll_timeout(), Some(deadline));
    h.expect(Event::ClientWritten(ClientId(1), 3), &[]);
    assert_eq!(
        h.relay.poll_timeout(),
        Some(deadline),
        "writes do not extend it"
    );
    h.now = 109;
    h.expect(Event::Tick, &[]);
    h.now = 110;
    h.expect(
        Event::Tick,
        &[Action::FlushExpired {
            client: ClientId(1),
        }],
    );
    let left = h.relay.poll_timeout().map(|t| t.timer);
    assert_eq!(left, Some(Timer::Quarantine { slot: 0 }), "only the slot's");
}

/// Written in time, or its connection gone: no deadline is left.
#[test]
fn core_guest_gone_flush_ends_when_written_or_disconnected() {
    for written in [true, false] {
        let mut h = Harness::ready(budget_cfg());
        h.connect(1);
        h.client(1, &exec_req(1, false));
        let out = stdout(1, b"last words");
        h.guest(&out);
        h.guest(&exited(1, 0));
        h.ev(Event::GuestClosed);
        assert!(h.relay.poll_timeout().is_some());
        let queued = 4 + ready().len() + out.len() + exited(1, 0).len();
        if written {
            h.expect(Event::ClientWritten(ClientId(1), queued - 1), &[]);
            assert!(h.relay.poll_timeout().is_some(), "one byte left");
            h.expect(Event::ClientWritten(ClientId(1), 1), &[]);
        } else {
            h.expect(Event::ClientDisconnected(ClientId(1)), &[]);
        }
        assert_eq!(h.relay.poll_timeout(), None, "written: {written}");
        assert!(h.drive().is_empty());
    }
}

/// A client closed for its own fault, or one with nothing unwritten, gets
/// no flush deadline.
#[test]
fn core_no_flush_for_own_fault_or_nothing_queued() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.ev(Event::ClientWritten(ClientId(1), 4 + ready().len()));
    h.ev(Event::GuestClosed);
    assert_eq!(h.relay.poll_timeout(), None, "nothing queued");
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &[0, 0, 0, 1]);
    assert_eq!(h.relay.poll_timeout(), None, "violation");
}

#[test]
fn core_guest_closed_closes_clients_and_refuses_new() {
    let mut h = one_client();
    let acts = h.ev(Event::GuestClosed);
    assert!(closed(&acts, 1).is_some() && closed(&acts, 2).is_some());
    // What the guest said before it went away still reaches the clients...
    assert!(acts.iter().all(|a| match a {
        Action::CloseClient { reason, .. } => reason.flush_first(),
        _ => true,
    }));
    // ...while a client closed for its own fault is cut off at once.
    let why = Violation::BeforeHandshake { bytes: 1 };
    assert!(!CloseReason::Violation(why).flush_first());
    assert!(
        !CloseReason::SlowConsumer {
            queued: 1,
            limit: SlowLimit::HardCap
        }
        .flush_first()
    );
    let acts = h.connect(5);
    assert!(matches!(
        acts[..],
        [Action::Refuse {
            reason: RefuseReason::GuestGone,
            ..
        }]
    ));
}

// ---- 12. counters ---------------------------------------------------------------------

#[test]
fn core_counters_track_both_directions() {
    let mut h = one_client();
    let req = exec_req(1, false);
    h.client(1, &req);
    let out = stdout(1, b"hello");
    h.guest(&out);
    let c = h.relay.counters().clone();
    assert_eq!(c.client_frames_in, 1);
    assert_eq!(c.frames_to_guest, 1);
    assert_eq!(c.bytes_to_guest, req.len() as u64);
    assert_eq!(c.frames_to_clients, 1);
    assert_eq!(c.live_clients, 2);
    assert_eq!(c.live_sessions, 1);
    assert_eq!(c.guest_frames_in, 2);
    assert_eq!(c.guest_bytes_in, (ready().len() + out.len()) as u64);
    assert_eq!(c.client_bytes_in, req.len() as u64);
    let handshakes = 2 * (4 + ready().len()) as u64;
    assert_eq!(c.bytes_to_clients, handshakes + out.len() as u64);
    assert_eq!(c.queued_to_clients, handshakes + out.len() as u64);
    h.ev(Event::ClientWritten(ClientId(1), out.len()));
    assert_eq!(h.relay.counters().queued_to_clients, handshakes);
}

#[test]
fn core_tap_merges_a_streams_frames_within_one_read() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    h.client(1, &exec_req(2, false));
    let mut chunk = Vec::new();
    for part in [&b"a"[..], b"b", b"c"] {
        chunk.extend_from_slice(&stdout(1, part));
    }
    chunk.extend_from_slice(&data(MsgType::ExecStderr, 1, b"E"));
    chunk.extend_from_slice(&stdout(1, b"d"));
    chunk.extend_from_slice(&stdout(2, b"x"));
    chunk.extend_from_slice(&stdout(2, b"y"));
    let acts = h.guest(&chunk);
    assert_eq!(
        logs(&acts),
        vec![
            (Some(1), LogSource::Stdout, "abc".into()),
            (Some(1), LogSource::Stderr, "E".into()),
            (Some(1), LogSource::Stdout, "d".into()),
            (Some(2), LogSource::Stdout, "xy".into()),
        ]
    );
    // Every frame was still routed on its own.
    assert_eq!(to_client(&acts, 1).len(), 7);
    // A new read starts a new record.
    let acts = h.guest(&stdout(2, b"z"));
    assert_eq!(logs(&acts), vec![(Some(2), LogSource::Stdout, "z".into())]);
}

// ---- accessors the driver relies on -------------------------------------------

#[test]
fn core_accessors_report_state() {
    let mut h = Harness::new(small());
    assert!(!h.relay.is_ready());
    assert_eq!(h.relay.config().max_clients, 16);
    assert_eq!(h.relay.poll_timeout(), None, "nothing waits on time");
    // A partial guest frame is held.
    let r = ready();
    h.guest(&r[..5]);
    assert_eq!(h.relay.held_bytes(), 5);
    h.guest(&r[5..]);
    assert!(h.relay.is_ready());
    assert_eq!(h.relay.held_bytes(), 0);
    h.connect(1);
    h.connect(2);
    let range = h.relay.client_range(ClientId(2)).expect("connected");
    assert_eq!((range.start, range.end), (STEP, 2 * STEP));
    assert!(range.contains(STEP) && !range.contains(2 * STEP));
    assert_eq!(h.relay.client_queued(ClientId(2)), Some(4 + r.len()));
    // A partial client frame is held, and so are frames waiting for the guest.
    let req = exec_req(STEP + 1, false);
    h.client(2, &req[..7]);
    assert_eq!(h.relay.held_bytes(), 7);
    h.client(2, &req[7..]);
    assert_eq!(h.relay.held_bytes(), 0);
    assert_eq!(h.relay.guest_inflight(), req.len());
    let cfg = Config {
        guest_window: 1,
        ..small()
    };
    let mut g = Harness::ready(cfg);
    g.connect(1);
    g.client(1, &stdin(1, b"a"));
    let queued = stdin(1, b"queued");
    g.client(1, &queued);
    assert_eq!(g.relay.held_bytes(), queued.len());
    assert_eq!(g.relay.counters().queued_to_guest, queued.len() as u64);
    h.disconnect(2);
    assert_eq!(h.relay.client_range(ClientId(2)), None);
    assert_eq!(h.relay.client_queued(ClientId(2)), None);
}

#[test]
fn core_tap_reads_non_canonical_envelopes_too() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    // `{t, v, p}`: valid CBOR, keys in another order than 0.4.4 writes them.
    let payload = agent_relay::wire::payload::encode_payload(&agent_relay::wire::payload::Data {
        data: b"odd order".to_vec(),
    });
    let mut body = vec![0xa3, 0x61, b't', 0x70];
    body.extend_from_slice(b"core.exec.stdout");
    body.extend_from_slice(&[0x61, b'v', 0x01, 0x61, b'p', 0x58, payload.len() as u8]);
    body.extend_from_slice(&payload);
    let frame = agent_relay::wire::Frame::build(1, 0, &body).unwrap();
    let acts = h.guest(frame.as_bytes());
    assert_eq!(to_client(&acts, 1), vec![frame.into_bytes()]);
    assert_eq!(
        logs(&acts),
        vec![(Some(1), LogSource::Stdout, "odd order".into())]
    );
}

// ---- exact boundaries (mutation survivors) ----------------------------------

/// A client's queue may reach its hard cap exactly, and the sum the global
/// cap exactly; one byte more closes. Exactly at the soft budget no grace
/// timer runs.
#[test]
fn core_budgets_are_inclusive_limits() {
    let handshake = 4 + ready().len();
    let f = stdout(1, b"x");
    let cfg = Config {
        client_soft_budget: handshake + f.len(),
        client_hard_cap: handshake + 2 * f.len(),
        global_cap: 2 * handshake + 3 * f.len(),
        ..small()
    };
    let mut h = Harness::ready(cfg);
    h.connect(1);
    h.connect(2);
    h.client(1, &exec_req(1, false));
    h.client(2, &exec_req(STEP + 1, false));
    h.guest(&f);
    assert_eq!(
        h.relay.poll_timeout(),
        None,
        "at the soft budget, not over it"
    );
    let acts = h.guest(&f);
    assert!(closed(&acts, 1).is_none(), "at the hard cap, not over it");
    assert!(h.relay.poll_timeout().is_some(), "over the soft budget");
    let g = stdout(STEP + 1, b"x");
    let acts = h.guest(&g);
    assert!(
        closed(&acts, 1).is_none() && closed(&acts, 2).is_none(),
        "at the global cap"
    );
    let acts = h.guest(&g);
    assert!(closed(&acts, 1).unwrap().contains("global cap"), "{acts:?}");
    assert!(closed(&acts, 2).is_none());
    let mut h2 = Harness::ready(Config {
        client_hard_cap: handshake + 2 * f.len(),
        ..small()
    });
    h2.connect(1);
    h2.client(1, &exec_req(1, false));
    h2.guest(&f);
    h2.guest(&f);
    let acts = h2.guest(&f);
    assert!(closed(&acts, 1).unwrap().contains("hard cap"));
}

/// Ids above the last slot (`max_clients * step ..= u32::MAX`) belong to
/// nobody; late frames of a departed client are counted as dropped too.
#[test]
fn core_ids_past_last_slot_and_late_frames_counted() {
    let mut h = one_client();
    let acts = h.guest(&stdout(u32::MAX, b"x"));
    assert!(acts.is_empty());
    assert_eq!(h.relay.counters().dropped_unowned, 1);
    h.client(1, &exec_req(1, false));
    h.disconnect(1);
    h.guest(&stdout(1, b"late"));
    assert_eq!(h.relay.counters().dropped_unowned, 2);
}

/// A frame queued for a client holds only its own bytes: small frames are
/// copied out of the read they arrived in, so a slow client's queue of small
/// frames can never keep whole read buffers alive (memory stays within the
/// byte budgets). Large frames are not copied again.
#[test]
fn core_queued_frames_pin_only_their_own_bytes() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    h.client(2, &exec_req(STEP + 1, false));
    let mut chunk = Vec::new();
    for i in 0..4u32 {
        chunk.extend_from_slice(&stdout(1 + (i % 2) * STEP, b"small"));
    }
    // A partial frame at the end goes through the decoder; finish it next.
    let tail = stdout(1, b"tail");
    chunk.extend_from_slice(&tail[..6]);
    let mut acts = h.guest(&chunk);
    acts.extend(h.guest(&tail[6..]));
    let frames: Vec<_> = acts
        .iter()
        .filter_map(|a| match a {
            Action::ToClient { frame, .. } => Some(frame.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 5);
    for pair in frames.windows(2) {
        let end_of_first = pair[0].as_ptr() as usize + pair[0].len();
        assert_ne!(
            end_of_first,
            pair[1].as_ptr() as usize,
            "adjacent frames share one read buffer"
        );
    }
    // Every byte of the read was copied once, into the frames themselves.
    let chunk_range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
    assert!(
        frames
            .iter()
            .all(|f| !chunk_range.contains(&(f.as_ptr() as usize)))
    );
}

/// Reading a client pauses only once its frames toward the guest exceed the
/// bound, not when they reach it exactly.
#[test]
fn core_pause_bound_is_inclusive() {
    let f = stdin(1, b"queued");
    let mut h = window_full(Some(2 * f.len()));
    assert!(!h.client(1, &f).contains(&Action::PauseClient(ClientId(1))));
    assert!(!h.client(1, &f).contains(&Action::PauseClient(ClientId(1))));
    assert!(h.client(1, &f).contains(&Action::PauseClient(ClientId(1))));
}

/// A write report of zero bytes is no progress: the grace period keeps running.
#[test]
fn core_zero_byte_write_is_not_progress() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    h.guest(&stdout(1, &[b'x'; 3_000]));
    let deadline = h.relay.poll_timeout().expect("grace timer armed").at;
    h.now = deadline - 10;
    h.ev(Event::ClientWritten(ClientId(1), 0));
    assert_eq!(h.relay.poll_timeout().map(|t| t.at), Some(deadline));
    h.now = deadline;
    assert!(closed(&h.ev(Event::Tick), 1).is_some());
}

/// Once a session's queued data has left, its next control frame overtakes
/// other sessions' data again; counters follow frames out of the queue.
#[test]
fn core_control_priority_returns_after_sessions_data_left() {
    let mut h = window_full(None);
    h.client(1, &stdin(1, b"s1 data"));
    // The window frees: session 1's data leaves.
    let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
    assert_eq!(sent, vec![stdin(1, b"s1 data")]);
    h.client(1, &stdin(2, b"s2 data"));
    h.client(1, &signal(1, 15));
    let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
    assert_eq!(sent, vec![signal(1, 15)], "overtakes session 2's data");
    let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
    assert_eq!(sent, vec![stdin(2, b"s2 data")]);
    assert_eq!(h.relay.counters().queued_to_guest, 0);
}

/// A paused client is read again as soon as its queue toward the guest is
/// down to half the bound.
#[test]
fn core_resume_at_half_the_bound() {
    let f = stdin(1, b"0123456789");
    let mut h = window_full(Some(4 * f.len()));
    let mut paused = false;
    for _ in 0..5 {
        paused |= h.client(1, &f).contains(&Action::PauseClient(ClientId(1)));
    }
    assert!(paused);
    // Five queued; each GuestWritten lets one leave. 5 -> 4 -> 3 -> 2 (half).
    for left in [4, 3] {
        let acts = h.ev(Event::GuestWritten(1 << 20));
        assert!(
            !acts.contains(&Action::ResumeClient(ClientId(1))),
            "{left} queued"
        );
    }
    let acts = h.ev(Event::GuestWritten(1 << 20));
    assert!(acts.contains(&Action::ResumeClient(ClientId(1))));
}

#[test]
fn core_live_clients_counted_down_on_departure() {
    let mut h = one_client();
    assert_eq!(h.relay.counters().live_clients, 2);
    h.disconnect(1);
    assert_eq!(h.relay.counters().live_clients, 1);
}

/// The guest channel ending inside a frame is reported and counted.
#[test]
fn core_guest_closed_mid_frame_counted() {
    let mut h = one_client();
    let f = stdout(1, b"cut short");
    h.guest(&f[..7]);
    let acts = h.ev(Event::GuestClosed);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::GuestCorrupt { skipped: 7, .. }))
    );
    assert_eq!(h.relay.counters().guest_corrupt, 1);
    assert_eq!(h.relay.counters().guest_corrupt_bytes, 7);
}

#[test]
fn core_log_sources_have_their_exec_log_names() {
    let names: Vec<_> = [
        LogSource::Stdout,
        LogSource::Stderr,
        LogSource::Output,
        LogSource::System,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(names, ["stdout", "stderr", "output", "system"]);
}

/// A read that continues a partial frame is never parsed as if it started a
/// frame: a valid frame embedded in another frame's payload, cut exactly
/// where the embedded one begins, is data, not a frame.
#[test]
fn core_continuation_bytes_never_start_a_frame() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    h.client(1, &exec_req(2, false));
    let embedded = stdout(2, b"smuggled");
    let outer = stdout(1, &embedded);
    let cut = outer.len() - embedded.len();
    let acts = h.guest(&outer[..cut]);
    assert!(to_client(&acts, 1).is_empty());
    let acts = h.guest(&outer[cut..]);
    assert_eq!(to_client(&acts, 1), vec![outer.clone()]);
    assert_eq!(
        h.relay.counters().guest_frames_in,
        2,
        "ready, then only the outer frame"
    );
}

/// Frames completed inside the decoder (they straddled reads) are copied out
/// of it too, so they pin no shared buffer either.
#[test]
fn core_straddling_frames_copied_out_of_the_decoder() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    let mut stream = Vec::new();
    for part in [&b"a"[..], b"b", b"c"] {
        stream.extend_from_slice(&stdout(1, part));
    }
    // The first read ends inside the first frame: all three finish in the decoder.
    let mut acts = h.guest(&stream[..3]);
    acts.extend(h.guest(&stream[3..]));
    let frames = to_client(&acts, 1);
    assert_eq!(frames.len(), 3);
    for pair in frames.windows(2) {
        let end_of_first = pair[0].as_ptr() as usize + pair[0].len();
        assert_ne!(
            end_of_first,
            pair[1].as_ptr() as usize,
            "frames share the decoder's buffer"
        );
    }
}
