//! Rule `slot_quarantine`: without range leases, a departed client's slot
//! stays taken while anything of its is open or its frames queued, at most
//! `quarantine` ms, so a recycled slot never receives the previous owner's
//! late frames; in the current generation the disconnect notice ends the
//! wait for its fs, tcp and request correlations once a guest frame answers
//! a frame handed over after the notice.

use super::*;

#[test]
fn core_recycled_slot_never_gets_late_frames() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, small()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        h.disconnect(1);
        // A new client gets another slot while slot 0 waits for its
        // session to end.
        let acts = h.connect(2);
        assert_eq!(handshake_offset(&acts), g.range(1).start);
        let acts = h.guest(&stdout(v, id, b"late"));
        assert!(to_client(&acts, 2).is_empty());
        h.guest(&exited(v, id, 137));
        // Slot 0 is free again.
        let acts = h.connect(3);
        assert_eq!(handshake_offset(&acts), g.range(0).start);
    });
}

#[test]
fn core_quarantine_times_out() {
    each_gen(|g| {
        let mut h = g.harness(small());
        h.connect(1);
        h.client(1, &exec_request(g.v(), g.id(0, 1), false, 0));
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
        assert_eq!(handshake_offset(&acts), g.range(0).start);
    });
}

#[test]
fn core_quarantined_slots_reported_when_full() {
    each_gen(|g| {
        let cfg = Config {
            legacy: LegacySettings {
                max_clients: 2,
                ..LegacySettings::default()
            },
            current: CurrentSettings {
                clients: 2,
                ..CurrentSettings::default()
            },
            ..small()
        };
        let mut h = g.harness(cfg);
        h.connect(1);
        h.client(1, &exec_request(g.v(), g.id(0, 1), false, 0));
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
    });
}

/// The notice ends the quarantine for everything but exec sessions, once a
/// guest frame answers a frame handed over after it: a new owner of the
/// slot can then never receive the old owner's late replies.
#[test]
fn core_current_notice_fence_retires_a_departed_clients_requests() {
    let mut h = current_two_slots();
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
    let mut h = current_two_slots();
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

/// A current relay of two slots, client 1 in slot 0.
fn current_two_slots() -> Harness {
    let cfg = Config {
        exec_log: false,
        current: CurrentSettings {
            clients: 2,
            ..CurrentSettings::default()
        },
        ..small()
    };
    one_client(Gen::Current, cfg)
}
