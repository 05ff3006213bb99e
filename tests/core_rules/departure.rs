//! Rule `kill_on_departure`: a departed client's live exec sessions each get
//! one SIGKILL, behind everything that client sent before.

use super::*;

#[test]
fn core_disconnect_kills_live_exec_sessions_once() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 1, false, 0));
    h.client(1, &exec_request(V1, 2, true, 0));
    h.client(1, &exec_request(V1, 3, false, 0));
    h.client(1, &empty(V1, MsgType::FsRequest, 4));
    h.guest(&exited(V1, 3, 0));
    let [k1, k2] = [kill(V1, 1), kill(V1, 2)].map(|frame| Action::ToGuest { frame });
    // exec.log says so, then the kills go out.
    let want = [killed_record(1), killed_record(2), k1, k2];
    h.expect(Event::ClientDisconnected(ClientId(1)), &want);
    h.expect(Event::ClientDisconnected(ClientId(1)), &[]);
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
    let req = exec_request(V1, 1, false, 0);
    let acts = h.client(1, &req);
    assert_eq!(to_guest(&acts), vec![req.clone()]);
    // The guest window is full: these wait in the relay.
    h.client(1, &stdin(V1, 1, b"a"));
    h.client(1, &stdin(V1, 1, b"b"));
    h.expect(Event::ClientDisconnected(ClientId(1)), &[killed_record(1)]);
    // The guest takes the request; then the relay runs to idle.
    let mut sent = h.ev(Event::GuestWritten(req.len()));
    sent.extend(h.drive());
    let want = [stdin(V1, 1, b"a"), stdin(V1, 1, b"b"), kill(V1, 1)]
        .map(|frame| Action::ToGuest { frame });
    assert_eq!(sent, want);
}

fn killed_record(session: u64) -> Action {
    Action::Log(LogRecord {
        session: Some(session),
        source: LogSource::System,
        text: "exec killed: its client left (SIGKILL sent)".into(),
    })
}
