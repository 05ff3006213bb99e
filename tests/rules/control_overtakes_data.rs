//! Rule `control_overtakes_data`: legacy: signals, resizes, shutdowns and
//! the relay's kills pass queued data of other sessions, never of their
//! own; current: every control-class frame passes queued data of other ids,
//! and signals, resizes, shutdowns, output acks and the relay's kills pass
//! their own session's too.

use super::*;

#[test]
fn core_control_frames_overtake_other_sessions_data() {
    each_gen(|g| {
        let v = g.v();
        let id = |k| g.id(0, k);
        let mut h = window_full(g, None);
        h.client(1, &stdin(v, id(1), b"data"));
        h.client(1, &signal(v, id(2), 15));
        h.client(1, &resize(v, id(3), 1, 2));
        // Same session as the queued data: legacy, it stays behind it;
        // current, a signal passes its own session's data too.
        h.client(1, &signal(v, id(1), 2));
        let mut sent = Vec::new();
        for _ in 0..6 {
            sent.extend(to_guest(&h.ev(Event::GuestWritten(1 << 20))));
        }
        let (data, own) = (stdin(v, id(1), b"data"), signal(v, id(1), 2));
        let mut want = vec![signal(v, id(2), 15), resize(v, id(3), 1, 2)];
        want.extend(match g {
            Gen::Legacy => [data, own],
            Gen::Current => [own, data],
        });
        assert_eq!(sent, want);
    });
}

/// Once a session's queued data has left, its next control frame overtakes
/// other sessions' data again; counters follow frames out of the queue.
#[test]
fn core_control_priority_returns_after_sessions_data_left() {
    each_gen(|g| {
        let v = g.v();
        let id = |k| g.id(0, k);
        let mut h = window_full(g, None);
        h.client(1, &stdin(v, id(1), b"s1 data"));
        // The window frees: session 1's data leaves.
        let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
        assert_eq!(sent, vec![stdin(v, id(1), b"s1 data")]);
        h.client(1, &stdin(v, id(2), b"s2 data"));
        h.client(1, &signal(v, id(1), 15));
        let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
        assert_eq!(
            sent,
            vec![signal(v, id(1), 15)],
            "overtakes session 2's data"
        );
        let sent = to_guest(&h.ev(Event::GuestWritten(1 << 20)));
        assert_eq!(sent, vec![stdin(v, id(2), b"s2 data")]);
        assert_eq!(h.relay.counters().queued_to_guest, 0);
    });
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
