//! Rules `kill_on_departure` and `slot_quarantine` in the current generation:
//! the kills, then the disconnect notice; a departed client's waiting data
//! dropped; the notice fence that retires its fs, tcp and request
//! correlations, so churn never exhausts the slots.

use super::*;

fn current(cfg: Config) -> Harness {
    let mut h = Harness::current(cfg, &ready_current(V10, 1, None, None));
    h.connect(1);
    h
}

/// One SIGKILL per live exec session, in the guest's generation, then the
/// notice with the canonical range; both after what the client sent.
#[test]
fn core_current_departure_kills_then_notice() {
    let mut h = current(Config {
        exec_log: false,
        ..small()
    });
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

/// The notice ends the quarantine for everything but exec sessions, once a
/// guest frame answers a frame handed over after it: a new owner of the
/// slot can then never receive the old owner's late replies.
#[test]
fn core_current_notice_fence_retires_a_departed_clients_requests() {
    let mut h = current(Config {
        exec_log: false,
        current_clients: 2,
        ..small()
    });
    let old = cid(0) + 3;
    h.client(1, &empty(V10, MsgType::Ping, old));
    h.client(1, &empty(V10, MsgType::FsRequest, old + 1));
    h.disconnect(1);
    // Slot 0 waits (its ping and fs request are open); a newcomer gets slot 1.
    let acts = h.connect(2);
    assert_eq!(handshake_offset(&acts), cid(1));
    // A reply to the newcomer's request, sent after the notice was taken,
    // proves the guest read the notice: slot 0 is free again.
    h.client(2, &empty(V10, MsgType::Ping, cid(1)));
    h.guest(&empty(V10, MsgType::Pong, cid(1)));
    assert_eq!(h.relay.counters().correlations_retired, 2);
    let acts = h.connect(3);
    assert_eq!(handshake_offset(&acts), cid(0));
    // The old owner's late reply reaches nobody.
    h.client(3, &empty(V10, MsgType::Ping, old));
    h.expect(
        Event::GuestBytes(&empty(V10, MsgType::Pong, old)),
        &[Action::ToClient {
            client: ClientId(3),
            frame: empty(V10, MsgType::Pong, old),
        }],
    );
}

/// Killed exec sessions still hold the slot until they end: the fence only
/// retires what the guest drops on the notice.
#[test]
fn core_current_fence_keeps_killed_execs_until_they_exit() {
    let mut h = current(Config {
        exec_log: false,
        current_clients: 2,
        ..small()
    });
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    h.disconnect(1);
    h.connect(2);
    h.client(2, &empty(V10, MsgType::Ping, cid(1)));
    h.guest(&empty(V10, MsgType::Pong, cid(1)));
    let acts = h.connect(3);
    assert!(
        matches!(acts[..], [Action::Refuse { .. }]),
        "slot 0 still waits: {acts:?}"
    );
    h.guest(&exited(V10, id, 137));
    let acts = h.connect(4);
    assert_eq!(handshake_offset(&acts), cid(0));
}

/// 1,000 connect, run, disconnect cycles against 128 slots: never refused
/// for quarantine.
#[test]
fn core_current_churn_never_refused_for_quarantine() {
    let mut h = Harness::current(
        Config {
            exec_log: false,
            ..small()
        },
        &ready_current(V10, 1, Some(2), None),
    );
    for c in 1..=1_000u64 {
        let acts = h.connect(c);
        let start = handshake_offset(&acts);
        h.client(c, &exec_request(V10, start, false, 0));
        h.client(c, &empty(V10, MsgType::Ping, start + 1));
        h.client(c, &stdin(V10, start, b"input"));
        h.disconnect(c);
        // The guest kills the process and answers the ping; and grants back
        // what it consumed.
        h.guest(&empty(V10, MsgType::Pong, start + 1));
        h.guest(&exited(V10, start, 137));
        let used = h.relay.counters().clone();
        h.guest(&credit(
            V10,
            &grant(
                (
                    used.used_control_bytes + CONTROL_BYTES,
                    used.used_control_frames + CONTROL_FRAMES,
                ),
                (
                    used.used_data_bytes + DATA_BYTES,
                    used.used_data_frames + DATA_FRAMES,
                ),
            ),
        ));
        h.drive();
    }
    assert_eq!(h.relay.counters().refused_clients, 0);
    assert_eq!(h.relay.counters().notices_sent, 1_000);
}

/// Regression (simulator seed 0x26): a departed client's control frame that
/// waited behind its own stream's data (here a tcp close) is dropped with
/// that data; nothing of the client reaches the guest after its disconnect
/// notice.
#[test]
fn core_current_departure_drops_what_waited_behind_its_data() {
    let mut h = Harness::current(
        Config {
            exec_log: false,
            clock_sync: false,
            guest_window: 1,
            ..small()
        },
        &ready_current(V10, 1, None, None),
    );
    h.connect(1);
    let t = cid(0);
    let connect = empty(V10, MsgType::TcpConnect, t);
    let first = to_guest(&h.client(1, &connect));
    assert_eq!(first, vec![connect], "it fills the window");
    h.client(1, &data(V10, MsgType::TcpData, t, b"bytes"));
    h.client(1, &named(V10, "core.tcp.close", t, 0, &[0xa0])); // behind its own data
    h.disconnect(1);
    assert_eq!(
        to_guest(&h.drive()),
        vec![client_disconnected(V10, crange(0))]
    );
    assert_eq!(h.relay.counters().departed_frames_dropped, 2);
}

/// Regression (simulator seed 0x2e): when the guest takes a departed
/// client's notice, what that client held no longer counts against the
/// others' share, and their waiting data goes at once.
#[test]
fn core_current_retiring_a_departed_client_releases_waiting_data() {
    let mut h = Harness::current(
        Config {
            exec_log: false,
            guest_window: 1 << 40,
            ..small()
        },
        &ready_current(V10, 1, Some(2), None),
    );
    let ids = [cid(0), cid(1), cid(2)];
    for (c, &id) in ids.iter().enumerate() {
        h.connect(c as u64 + 1);
        h.client(c as u64 + 1, &empty(V10, MsgType::TcpConnect, id));
    }
    // Three clients fill a third of the data window each (1 MiB frames, the
    // guest granting nothing back); each one's next frame waits for its share.
    let chunk = vec![0u8; 1 << 20];
    let mut waiting = [false; 3];
    while waiting.contains(&false) {
        for (c, &id) in ids.iter().enumerate() {
            if !waiting[c] {
                let f = data(V10, MsgType::TcpData, id, &chunk);
                waiting[c] = !to_guest(&h.client(c as u64 + 1, &f)).contains(&f);
            }
        }
    }
    assert!(
        h.relay.counters().used_data_bytes < DATA_BYTES - (1 << 20),
        "credit is left"
    );
    h.disconnect(1);
    // A reply to a request sent after the notice: slot 0 is retired, its
    // estimate forgotten; the two others' shares grow and their frames go.
    h.client(3, &empty(V10, MsgType::Ping, ids[2] + 1));
    let acts = h.guest(&empty(V10, MsgType::Pong, ids[2] + 1));
    let data = to_guest(&acts).iter().filter(|f| f.len() > 1 << 20).count();
    assert!(data > 0, "waiting data went on the retirement itself");
}
