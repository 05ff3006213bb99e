//! Rules `guest_resync` (corrupt guest input is skipped, counted and never
//! reaches a client) and `output_outlives_guest` (what the guest said before it
//! went away is still delivered, within one grace period).

use super::*;

#[test]
fn core_plausible_wrong_length_resyncs_to_next_frame() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 1, false, 0));
    let mut bad = stdout(V1, 1, b"aaaa").to_vec();
    let len = u32::from_be_bytes(bad[..4].try_into().unwrap());
    bad[..4].copy_from_slice(&(len + 6).to_be_bytes()); // plausible, wrong
    let mut chunk = bad;
    chunk.extend_from_slice(&stdout(V1, 1, b"good"));
    chunk.extend_from_slice(&stdout(V1, 1, b"more"));
    let acts = h.guest(&chunk);
    assert_eq!(
        to_client(&acts, 1),
        vec![stdout(V1, 1, b"good"), stdout(V1, 1, b"more")]
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
    h.client(1, &exec_request(V1, 1, false, 0));
    let mut chunk = agent_relay::wire::Frame::build(1, 0, b"\x01\x02")
        .unwrap()
        .into_bytes()
        .to_vec();
    chunk.extend_from_slice(&stdout(V1, 1, b"valid"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(V1, 1, b"valid")]);
}

#[test]
fn core_absurd_guest_length_skipped() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 1, false, 0));
    let mut chunk = vec![0xff, 0xff, 0xff, 0xff, 0, 0];
    chunk.extend_from_slice(&stdout(V1, 1, b"after"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(V1, 1, b"after")]);
    assert_eq!(h.relay.counters().guest_corrupt_bytes, 6);
}

/// Rule `output_outlives_guest`: a client closed because the guest went away
/// keeps its unwritten output for one grace period; the core names the
/// deadline and gives up on it there.
#[test]
fn core_guest_gone_flush_expires_at_grace_deadline() {
    let mut h = Harness::ready(budget_cfg());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    let out = stdout(V1, 1, b"last words");
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
        h.client(1, &exec_request(V1, 1, false, 0));
        let out = stdout(V1, 1, b"last words");
        h.guest(&out);
        h.guest(&exited(V1, 1, 0));
        h.ev(Event::GuestClosed);
        assert!(h.relay.poll_timeout().is_some());
        let queued = 4 + ready(V1, 1).len() + out.len() + exited(V1, 1, 0).len();
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
    h.ev(Event::ClientWritten(ClientId(1), 4 + ready(V1, 1).len()));
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
