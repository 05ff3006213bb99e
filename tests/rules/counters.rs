//! No rule: the counters and accessors a driver reads.

use super::*;

#[test]
fn core_counters_track_both_directions() {
    each_gen(|g| {
        let (v, id) = (g.v(), g.id(0, 1));
        let mut h = two_clients(g);
        let req = exec_request(v, id, false, 0);
        h.client(1, &req);
        let out = stdout(v, id, b"hello");
        h.guest(&out);
        let c = h.relay.counters().clone();
        assert_eq!(c.client_frames_in, 1);
        assert_eq!(c.frames_to_guest, 1);
        assert_eq!(c.bytes_to_guest, req.len() as u64);
        assert_eq!(c.frames_to_clients, 1);
        assert_eq!(c.live_clients, 2);
        assert_eq!(c.live_sessions, 1);
        assert_eq!(c.guest_frames_in, 2);
        assert_eq!(c.guest_bytes_in, (g.ready().len() + out.len()) as u64);
        assert_eq!(c.client_bytes_in, req.len() as u64);
        let handshakes = 2 * g.handshake_len() as u64;
        assert_eq!(c.bytes_to_clients, handshakes + out.len() as u64);
        assert_eq!(c.queued_to_clients, handshakes + out.len() as u64);
        h.ev(Event::ClientWritten(ClientId(1), out.len()));
        assert_eq!(h.relay.counters().queued_to_clients, handshakes);
    });
}

#[test]
fn core_live_clients_counted_down_on_departure() {
    each_gen(|g| {
        let mut h = two_clients(g);
        assert_eq!(h.relay.counters().live_clients, 2);
        h.disconnect(1);
        assert_eq!(h.relay.counters().live_clients, 1);
    });
}

#[test]
fn core_accessors_report_state() {
    let mut h = Harness::new(small());
    assert!(!h.relay.is_ready());
    assert_eq!(h.relay.config().legacy.max_clients, 16);
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
