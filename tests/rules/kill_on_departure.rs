//! Rule `kill_on_departure`: a departing client's live exec sessions each
//! get one SIGKILL; legacy: queued behind everything it sent; current:
//! passing its data still waiting, which is dropped (counted), then
//! `core.relay.client.disconnected` with its canonical range; fs sessions
//! get no kill.

use super::*;

#[test]
fn core_disconnect_kills_live_exec_sessions_once() {
    each_gen(|g| {
        let v = g.v();
        let id = |k| g.id(0, k);
        let mut h = two_clients(g);
        h.client(1, &exec_request(v, id(1), false, 0));
        h.client(1, &exec_request(v, id(2), true, 0));
        h.client(1, &exec_request(v, id(3), false, 0));
        h.client(1, &empty(v, MsgType::FsRequest, id(4)));
        h.guest(&exited(v, id(3), 0));
        // exec.log says so, then the kills go out (then the current
        // generation's notice).
        let mut want = vec![killed_record(1), killed_record(2)];
        let frames = [kill(v, id(1)), kill(v, id(2))].into_iter();
        want.extend(
            frames
                .chain(g.after_kills(0))
                .map(|frame| Action::ToGuest { frame }),
        );
        h.expect(Event::ClientDisconnected(ClientId(1)), &want);
        h.expect(Event::ClientDisconnected(ClientId(1)), &[]);
        assert_eq!(h.relay.counters().kills_sent, 2);
    });
}

/// Legacy: the kill waits behind what the client sent before it left (the
/// current generation drops that data instead:
/// `core_current_departure_drops_waiting_data_and_the_kill_passes`).
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

/// One SIGKILL per live exec session, in the guest's generation, then the
/// notice with the canonical range; both after what the client sent.
#[test]
fn core_current_departure_kills_then_notice() {
    let mut h = one_client(
        Gen::Current,
        Config {
            exec_log: false,
            ..small()
        },
    );
    let (a, b) = (cid(0), cid(0) + 1);
    h.client(1, &exec_request(V10, a, false, 0));
    h.client(1, &exec_request(V10, b, false, 0));
    h.client(1, &empty(V10, MsgType::Ping, b + 1));
    let acts = h.disconnect(1);
    assert_eq!(
        to_guest(&acts),
        vec![
            kill(V10, a),
            kill(V10, b),
            client_disconnected(V10, crange(0))
        ]
    );
    assert_eq!(h.relay.counters().notices_sent, 1);
    assert_eq!(h.relay.counters().kills_sent, 2);
}

/// A departed client's data waiting for credit is dropped (counted), and its
/// kill does not wait behind it.
#[test]
fn core_current_departure_drops_waiting_data_and_the_kill_passes() {
    let mut h = Harness::current(
        Config {
            exec_log: false,
            ..small()
        },
        &ready_current(V10, 1, Some(2), None),
    );
    h.connect(1);
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    // Send stdin until it waits (credit, or the client's fair share of it).
    let chunk = stdin(V10, id, b"x");
    let mut waiting = 0;
    for _ in 0..DATA_FRAMES + 1 {
        if to_guest(&h.client(1, &chunk)).is_empty() {
            waiting += 1;
        }
    }
    assert!(waiting > 0, "the guest granted nothing more");
    let acts = h.disconnect(1);
    assert_eq!(
        to_guest(&acts),
        vec![kill(V10, id), client_disconnected(V10, crange(0))]
    );
    assert_eq!(h.relay.counters().departed_frames_dropped, waiting);
    assert_eq!(h.relay.counters().queued_to_guest, 0);
}

fn killed_record(session: u64) -> Action {
    Action::Log(LogRecord {
        session: Some(session),
        source: LogSource::System,
        text: "exec killed: its client left (SIGKILL sent)".into(),
    })
}
