//! The counters and accessors a driver reads.

use super::*;

#[test]
fn core_counters_track_both_directions() {
    let mut h = one_client();
    let req = exec_request(V1, 1, false, 0);
    h.client(1, &req);
    let out = stdout(V1, 1, b"hello");
    h.guest(&out);
    let c = h.relay.counters().clone();
    assert_eq!(c.client_frames_in, 1);
    assert_eq!(c.frames_to_guest, 1);
    assert_eq!(c.bytes_to_guest, req.len() as u64);
    assert_eq!(c.frames_to_clients, 1);
    assert_eq!(c.live_clients, 2);
    assert_eq!(c.live_sessions, 1);
    assert_eq!(c.guest_frames_in, 2);
    assert_eq!(c.guest_bytes_in, (ready(V1, 1).len() + out.len()) as u64);
    assert_eq!(c.client_bytes_in, req.len() as u64);
    let handshakes = 2 * (4 + ready(V1, 1).len()) as u64;
    assert_eq!(c.bytes_to_clients, handshakes + out.len() as u64);
    assert_eq!(c.queued_to_clients, handshakes + out.len() as u64);
    h.ev(Event::ClientWritten(ClientId(1), out.len()));
    assert_eq!(h.relay.counters().queued_to_clients, handshakes);
}

#[test]
fn core_tap_merges_a_streams_frames_within_one_read() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 1, false, 0));
    h.client(1, &exec_request(V1, 2, false, 0));
    let mut chunk = Vec::new();
    for part in [&b"a"[..], b"b", b"c"] {
        chunk.extend_from_slice(&stdout(V1, 1, part));
    }
    chunk.extend_from_slice(&data(V1, MsgType::ExecStderr, 1, b"E"));
    chunk.extend_from_slice(&stdout(V1, 1, b"d"));
    chunk.extend_from_slice(&stdout(V1, 2, b"x"));
    chunk.extend_from_slice(&stdout(V1, 2, b"y"));
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
    let acts = h.guest(&stdout(V1, 2, b"z"));
    assert_eq!(logs(&acts), vec![(Some(2), LogSource::Stdout, "z".into())]);
}

#[test]
fn core_accessors_report_state() {
    let mut h = Harness::new(small());
    assert!(!h.relay.is_ready());
    assert_eq!(h.relay.config().max_clients, 16);
    assert_eq!(h.relay.poll_timeout(), None, "nothing waits on time");
    // A partial guest frame is held.
    let r = ready(V1, 1);
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
    let req = exec_request(V1, STEP + 1, false, 0);
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
    g.client(1, &stdin(V1, 1, b"a"));
    let queued = stdin(V1, 1, b"queued");
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
    h.client(1, &exec_request(V1, 1, false, 0));
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
