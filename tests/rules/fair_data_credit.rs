//! Rule `fair_data_credit`: no client holds more than
//! `window / max(active clients, 2)` of the data credit by the relay's
//! estimate, so one process that never reads its stdin cannot stop the
//! other clients' data.

use super::*;

/// While one client's stdin is stuck in a process that never reads it,
/// another client's data keeps flowing: nobody holds more than a fair share.
#[test]
fn core_current_fair_share_keeps_other_clients_data_flowing() {
    let mut h = credited(small());
    let (a, b) = (cid(0), cid(1));
    h.client(1, &exec_request(V10, a, false, 0));
    h.client(2, &exec_request(V10, b, false, 0));
    let chunk = vec![0u8; 1 << 20];
    // Client 1 floods a process that never reads: it stops at its share.
    let flood = stdin(V10, a, &chunk);
    let mut held = 0;
    while sent(&mut h, 1, &flood) {
        held += 1;
    }
    assert!(held * (flood.len() as u64) <= DATA_BYTES / 2 + flood.len() as u64);
    // Client 2's process reads: the guest grants back what it consumed.
    for _ in 0..200 {
        let f = stdin(V10, b, &chunk);
        assert!(sent(&mut h, 2, &f), "client 2 still flows");
        let c = h.relay.counters().clone();
        let g = credit(
            V10,
            &grant(
                (c.credit_control_bytes, c.credit_control_frames),
                (
                    c.credit_data_bytes + f.len() as u64,
                    c.credit_data_frames + 1,
                ),
            ),
        );
        h.guest(&g);
    }
    assert!(!sent(&mut h, 1, &flood), "client 1 is still at its share");
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
