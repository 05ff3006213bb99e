//! Rule `slot_quarantine`: a recycled slot never receives the previous
//! owner's late frames, and gives its sessions up after `quarantine` ms.

use super::*;

#[test]
fn core_recycled_slot_never_gets_late_frames() {
    let mut h = Harness::ready(small());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.disconnect(1);
    // A new client gets another slot while slot 0 waits for its session to end.
    let acts = h.connect(2);
    assert_eq!(handshake_offset(&acts), STEP);
    let acts = h.guest(&stdout(V1, 1, b"late"));
    assert!(to_client(&acts, 2).is_empty());
    h.guest(&exited(V1, 1, 137));
    // Slot 0 is free again.
    let acts = h.connect(3);
    assert_eq!(handshake_offset(&acts), 0u32);
}

#[test]
fn core_quarantine_times_out() {
    let mut h = Harness::ready(small());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.disconnect(1);
    assert_eq!(
        h.relay.poll_timeout(),
        Some(Timeout {
            at: 30_000,
            timer: Timer::Quarantine { slot: 0 }
        })
    );
    h.now = 30_000;
    h.ev(Event::Tick);
    assert_eq!(h.relay.counters().live_sessions, 0);
    let acts = h.connect(2);
    assert_eq!(handshake_offset(&acts), 0u32);
}

#[test]
fn core_quarantined_slots_reported_when_full() {
    let cfg = Config {
        max_clients: 2,
        ..small()
    };
    let mut h = Harness::ready(cfg);
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.disconnect(1);
    h.connect(2);
    let acts = h.connect(3);
    assert_eq!(
        acts,
        vec![Action::Refuse {
            client: ClientId(3),
            reason: RefuseReason::Full {
                max_clients: 2,
                quarantined: 1
            }
        }]
    );
}
