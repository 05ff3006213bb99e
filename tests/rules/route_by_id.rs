//! Rule `route_by_id`: a guest frame reaches the client whose range holds
//! its id, for a correlation that client opened, unchanged (in the current
//! generation also raw bulk records, types the relay does not know and
//! replies that open no session); frames for an id no slot owns are counted
//! and dropped; frames on the workload-control id are the relay's own.

use super::*;

#[test]
fn core_guest_frames_routed_by_range_zero_copy() {
    each_gen(|g| {
        let v = g.v();
        let mut h = two_clients(g);
        let (a, b) = (g.id(0, 4), g.id(1, 4));
        h.client(1, &exec_request(v, a, false, 0));
        h.client(2, &exec_request(v, b, false, 0));
        let mut chunk = stdout(v, b, b"two").to_vec();
        chunk.extend_from_slice(&stdout(v, a, b"one"));
        let log = |session, text: &str| {
            Action::Log(LogRecord {
                session: Some(session),
                source: LogSource::Stdout,
                text: text.into(),
            })
        };
        let want = [
            to(2, stdout(v, b, b"two")),
            log(2, "two"),
            to(1, stdout(v, a, b"one")),
            log(1, "one"),
        ];
        h.expect(Event::GuestBytes(&chunk), &want);
    });
}

#[test]
fn core_unowned_frames_counted_and_dropped() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let no_session = stdout(g.v(), g.id(0, 3), b"no session");
        h.expect(Event::GuestBytes(&no_session), &[]);
        let no_client = stdout(g.v(), g.id(9, 1), b"no client");
        h.expect(Event::GuestBytes(&no_client), &[]);
        assert_eq!(h.relay.counters().dropped_unowned, 2);
    });
}

#[test]
fn core_terminal_ends_session() {
    each_gen(|g| {
        let (v, id) = (g.v(), g.id(0, 4));
        let mut h = two_clients(g);
        h.client(1, &exec_request(v, id, false, 0));
        assert_eq!(h.relay.counters().live_sessions, 1);
        let acts = h.guest(&exited(v, id, 0));
        assert_eq!(to_client(&acts, 1), vec![exited(v, id, 0)]);
        assert_eq!(h.relay.counters().live_sessions, 0);
        let acts = h.guest(&stdout(v, id, b"late"));
        assert!(to_client(&acts, 1).is_empty());
    });
}

#[test]
fn core_session_id_reuse_while_live_refused() {
    each_gen(|g| {
        let (v, id) = (g.v(), g.id(0, 4));
        let mut h = two_clients(g);
        h.client(1, &exec_request(v, id, false, 0));
        let acts = h.client(1, &exec_request(v, id, false, 0));
        let want = Violation::SessionAlreadyOpen {
            id,
            t: MsgType::ExecRequest,
        };
        assert_eq!(violation(&acts, 1), Some(want));
    });
}

/// Ids above the last slot (`max_clients * step ..= u32::MAX`) belong to
/// nobody; late frames of a departed client are counted as dropped too.
#[test]
fn core_ids_past_last_slot_and_late_frames_counted() {
    let mut h = two_clients(Gen::Legacy);
    let acts = h.guest(&stdout(V1, u32::MAX, b"x"));
    assert!(acts.is_empty());
    assert_eq!(h.relay.counters().dropped_unowned, 1);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.disconnect(1);
    h.guest(&stdout(V1, 1, b"late"));
    assert_eq!(h.relay.counters().dropped_unowned, 2);
}

/// A reply that opens no session reaches the client that asked, once.
#[test]
fn core_current_pong_reaches_the_asker() {
    let mut h = two_clients(Gen::Current);
    let id = cid(1) + 4;
    h.client(2, &empty(V10, MsgType::Ping, id));
    h.expect(
        Event::GuestBytes(&empty(V10, MsgType::Pong, id)),
        &[to(2, empty(V10, MsgType::Pong, id))],
    );
    h.expect(Event::GuestBytes(&empty(V10, MsgType::Pong, id)), &[]);
    assert_eq!(
        h.relay.counters().dropped_unowned,
        1,
        "a second reply: nobody asked"
    );
    assert_eq!(h.relay.counters().open_requests, 0);
}

/// Raw bulk records, types the relay does not know and any `v` are routed
/// by id like any frame; the workload-control id and ids of nobody never
/// reach a client.
#[test]
fn core_current_guest_frames_routed_by_id_whatever_they_are() {
    let mut h = two_clients(Gen::Current);
    let id = cid(0);
    h.client(1, &empty(V10, MsgType::FsRequest, id));
    let records = [
        bulk(id, 1, 2, 0, b"file bytes"),
        named(V10, "core.from.the.future", id, 0, &[0xa0]),
        stdout(V10, id, b"x"),
    ];
    for f in &records {
        h.expect(Event::GuestBytes(f), &[to(1, f.clone())]);
    }
    h.expect(Event::GuestBytes(&credit(V10, &grant((1, 1), (1, 1)))), &[]);
    let frozen = named(V10, "core.workload.frozen", u32::MAX, 1, &[0xa0]);
    h.expect(Event::GuestBytes(&frozen), &[]);
    assert_eq!(h.relay.counters().workload_frames, 2);
    for nobody in [0, CSTEP, 2 * CSTEP, 128 * CSTEP, u32::MAX - 1] {
        h.expect(Event::GuestBytes(&stdout(V10, nobody, b"?")), &[]);
    }
    assert_eq!(h.relay.counters().frames_for_nobody, 5);
    assert_eq!(
        h.relay.counters().guest_corrupt,
        0,
        "no frame taken for garbage"
    );
}
