//! Rule `route_by_id`: guest frames reach the client whose range holds their
//! id, for a session it opened, unchanged; frames for nobody are counted and
//! dropped.

use super::*;

#[test]
fn core_guest_frames_routed_by_range_zero_copy() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 4, false, 0));
    h.client(2, &exec_request(V1, STEP + 4, false, 0));
    let mut chunk = stdout(V1, STEP + 4, b"two").to_vec();
    chunk.extend_from_slice(&stdout(V1, 4, b"one"));
    let to = |c, frame| Action::ToClient {
        client: ClientId(c),
        frame,
    };
    let log = |session, text: &str| {
        Action::Log(LogRecord {
            session: Some(session),
            source: LogSource::Stdout,
            text: text.into(),
        })
    };
    let want = [
        to(2, stdout(V1, STEP + 4, b"two")),
        log(2, "two"),
        to(1, stdout(V1, 4, b"one")),
        log(1, "one"),
    ];
    h.expect(Event::GuestBytes(&chunk), &want);
}

#[test]
fn core_unowned_frames_counted_and_dropped() {
    let mut h = one_client();
    h.expect(Event::GuestBytes(&stdout(V1, 3, b"no session")), &[]);
    h.expect(
        Event::GuestBytes(&stdout(V1, STEP * 9 + 1, b"no client")),
        &[],
    );
    assert_eq!(h.relay.counters().dropped_unowned, 2);
}

#[test]
fn core_terminal_ends_session() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 4, false, 0));
    assert_eq!(h.relay.counters().live_sessions, 1);
    let acts = h.guest(&exited(V1, 4, 0));
    assert_eq!(to_client(&acts, 1), vec![exited(V1, 4, 0)]);
    assert_eq!(h.relay.counters().live_sessions, 0);
    let acts = h.guest(&stdout(V1, 4, b"late"));
    assert!(to_client(&acts, 1).is_empty());
}

#[test]
fn core_session_id_reuse_while_live_refused() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 4, false, 0));
    let acts = h.client(1, &exec_request(V1, 4, false, 0));
    let want = Violation::SessionAlreadyOpen {
        id: 4,
        t: MsgType::ExecRequest,
    };
    assert_eq!(violation(&acts, 1), Some(want));
}
