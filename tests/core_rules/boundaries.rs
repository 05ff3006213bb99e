//! Exact boundaries of the rules above: each test pins a limit that a
//! mutation of the core once moved without any other test noticing.

use super::*;

/// Budgets are inclusive: a client may hold exactly its soft budget (no
/// grace period, the guest still read) and exactly its hard cap; one byte
/// more over the soft budget starts its grace and stops guest reads, one
/// more over the hard cap closes it. The global cap is inclusive too: the
/// frame that would pass it closes the client holding the most.
#[test]
fn core_budgets_are_inclusive_limits() {
    let handshake = 4 + ready(V1, 1).len();
    let f = stdout(V1, 1, b"x");
    let cfg = Config {
        client_soft_budget: handshake + f.len(),
        client_hard_cap: handshake + 2 * f.len(),
        global_cap: 1 << 20,
        ..small()
    };
    let mut h = Harness::ready(cfg);
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    let acts = h.guest(&f);
    assert!(
        !acts.contains(&Action::PauseGuest),
        "at the soft budget: {acts:?}"
    );
    assert_eq!(
        h.relay.poll_timeout(),
        None,
        "at the soft budget, not over it"
    );
    let acts = h.guest(&f);
    assert!(closed(&acts, 1).is_none(), "at the hard cap, not over it");
    assert!(
        acts.contains(&Action::PauseGuest),
        "over the soft budget: {acts:?}"
    );
    let t = h.relay.poll_timeout().expect("over the soft budget");
    assert_eq!(t.timer, Timer::SlowConsumerGrace(ClientId(1)));
    let acts = h.guest(&f);
    assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::HardCap));
    assert!(acts.contains(&Action::ResumeGuest), "nobody over: {acts:?}");

    let cfg = Config {
        client_soft_budget: 1 << 20,
        client_hard_cap: 1 << 20,
        global_cap: 2 * handshake + 3 * f.len(),
        ..small()
    };
    let mut h = Harness::ready(cfg);
    h.connect(1);
    h.connect(2);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.client(2, &exec_request(V1, STEP + 1, false, 0));
    h.guest(&f);
    h.guest(&f);
    let g = stdout(V1, STEP + 1, b"x");
    let acts = h.guest(&g);
    assert!(
        closed(&acts, 1).is_none() && closed(&acts, 2).is_none(),
        "at the global cap"
    );
    let acts = h.guest(&g);
    assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::GlobalCap), "{acts:?}");
    assert!(closed(&acts, 2).is_none());
}

/// Ids above the last slot (`max_clients * step ..= u32::MAX`) belong to
/// nobody; late frames of a departed client are counted as dropped too.
#[test]
fn core_ids_past_last_slot_and_late_frames_counted() {
    let mut h = one_client();
    let acts = h.guest(&stdout(V1, u32::MAX, b"x"));
    assert!(acts.is_empty());
    assert_eq!(h.relay.counters().dropped_unowned, 1);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.disconnect(1);
    h.guest(&stdout(V1, 1, b"late"));
    assert_eq!(h.relay.counters().dropped_unowned, 2);
}

/// A frame queued for a client holds only its own bytes: small frames are
/// copied out of the read they arrived in, so a slow client's queue of small
/// frames can never keep whole read buffers alive (memory stays within the
/// byte budgets). Large frames are not copied again.
#[test]
fn core_queued_frames_pin_only_their_own_bytes() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 1, false, 0));
    h.client(2, &exec_request(V1, STEP + 1, false, 0));
    let mut chunk = Vec::new();
    for i in 0..4u32 {
        chunk.extend_from_slice(&stdout(V1, 1 + (i % 2) * STEP, b"small"));
    }
    // A partial frame at the end goes through the decoder; finish it next.
    let tail = stdout(V1, 1, b"tail");
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
    let f = stdin(V1, 1, b"queued");
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
    h.client(1, &exec_request(V1, 1, false, 0));
    h.guest(&stdout(V1, 1, &[b'x'; 3_000]));
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
    h.client(1, &stdin(V1, 1, b"s1 data"));
    // The window frees: session 1's data leaves.
    let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
    assert_eq!(sent, vec![stdin(V1, 1, b"s1 data")]);
    h.client(1, &stdin(V1, 2, b"s2 data"));
    h.client(1, &signal(V1, 1, 15));
    let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
    assert_eq!(sent, vec![signal(V1, 1, 15)], "overtakes session 2's data");
    let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
    assert_eq!(sent, vec![stdin(V1, 2, b"s2 data")]);
    assert_eq!(h.relay.counters().queued_to_guest, 0);
}

/// A paused client is read again as soon as its queue toward the guest is
/// down to half the bound.
#[test]
fn core_resume_at_half_the_bound() {
    let f = stdin(V1, 1, b"0123456789");
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
    let f = stdout(V1, 1, b"cut short");
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
    h.client(1, &exec_request(V1, 1, false, 0));
    h.client(1, &exec_request(V1, 2, false, 0));
    let embedded = stdout(V1, 2, b"smuggled");
    let outer = stdout(V1, 1, &embedded);
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
    h.client(1, &exec_request(V1, 1, false, 0));
    let mut stream = Vec::new();
    for part in [&b"a"[..], b"b", b"c"] {
        stream.extend_from_slice(&stdout(V1, 1, part));
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
