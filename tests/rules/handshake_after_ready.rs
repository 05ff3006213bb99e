//! Rule `handshake_after_ready`: a client gets its range and the cached
//! ready frame, whole; one that connects before ready waits (with `Auto`,
//! without a slot until ready names the generation), and bytes it sends
//! before its handshake are a violation.

use super::*;

#[test]
fn core_frames_before_ready_discarded_and_counted() {
    each_gen(|g| {
        let mut h = g.before_ready(small());
        let acts = h.guest(&stdout(g.v(), g.id(0, 1), b"noise"));
        assert!(acts.is_empty());
        assert_eq!(h.relay.counters().guest_frames_before_ready, 1);
        assert!(!h.relay.is_ready());
    });
}

#[test]
fn core_undecodable_before_ready_does_not_abort_startup() {
    each_gen(|g| {
        let mut h = g.before_ready(small());
        let mut chunk = Frame::build(0, 0, b"\xff\xfe garbage")
            .unwrap()
            .into_bytes()
            .to_vec();
        chunk.extend_from_slice(&g.ready());
        let acts = h.guest(&chunk);
        assert!(acts.contains(&Action::Ready), "{acts:?}");
        assert_eq!(h.relay.counters().guest_corrupt, 1);
    });
}

#[test]
fn core_ready_cached_whole_and_following_bytes_routed() {
    each_gen(|g| {
        let v = g.v();
        let mut h = g.before_ready(small());
        h.connect(1);
        // ready, then a session's output right behind it in another chunk.
        let acts = h.guest(&g.ready());
        let hs = acts
            .iter()
            .find_map(|a| match a {
                Action::Handshake { bytes, .. } => Some(bytes.clone()),
                _ => None,
            })
            .expect("handshake after ready");
        assert_eq!(hs, g.prologue(0, &g.ready()));
        let id = g.id(0, 1);
        h.client(1, &exec_request(v, id, false, 0));
        let mut chunk = stdout(v, id, b"a").to_vec();
        chunk.extend_from_slice(&stdout(v, id, b"b"));
        let acts = h.guest(&chunk);
        assert_eq!(
            to_client(&acts, 1),
            vec![stdout(v, id, b"a"), stdout(v, id, b"b")]
        );
    });
}

#[test]
fn core_ready_then_frames_in_same_chunk_kept() {
    each_gen(|g| {
        let mut h = g.before_ready(small());
        let mut chunk = g.ready().to_vec();
        chunk.extend_from_slice(&stdout(g.v(), g.id(0, 5), b"x"));
        h.guest(&chunk);
        assert!(h.relay.is_ready());
        // The frame after ready was parsed (and dropped as unowned), not
        // lost in the buffer.
        assert_eq!(h.relay.counters().dropped_unowned, 1);
        assert_eq!(h.relay.held_bytes(), 0);
    });
}

#[test]
fn core_client_before_ready_waits_for_handshake() {
    each_gen(|g| {
        let mut h = g.before_ready(small());
        let acts = h.connect(1);
        assert!(acts.is_empty(), "no handshake before ready: {acts:?}");
        let acts = h.guest(&g.ready());
        assert!(
            matches!(
                acts[..],
                [
                    Action::Ready,
                    Action::Log(_),
                    Action::Handshake {
                        client: ClientId(1),
                        ..
                    }
                ]
            ),
            "{acts:?}"
        );
    });
}

#[test]
fn core_bytes_before_handshake_close_client() {
    each_gen(|g| {
        let mut h = g.before_ready(small());
        h.connect(1);
        let acts = h.client(1, &stdin(g.v(), g.id(0, 1), b"x"));
        assert!(matches!(
            violation(&acts, 1),
            Some(Violation::BeforeHandshake { .. })
        ));
        assert!(to_guest(&acts).is_empty());
    });
}

#[test]
fn core_at_capacity_refused_with_reason() {
    each_gen(|g| {
        let cfg = small();
        let slots = g.slots(&cfg);
        let mut h = g.harness(cfg);
        for c in 0..slots as u64 {
            h.connect(c);
        }
        let c = slots as u64;
        let acts = h.connect(c);
        assert_eq!(
            acts,
            vec![Action::Refuse {
                client: ClientId(c),
                reason: RefuseReason::Full {
                    max_clients: slots,
                    quarantined: 0
                }
            }]
        );
        let Action::Refuse { reason, .. } = &acts[0] else {
            unreachable!()
        };
        let words = format!("all {slots} client slots in use");
        assert!(reason.to_string().contains(&words), "{reason}");
        assert_eq!(h.relay.counters().refused_clients, 1);
    });
}

/// The ready frame is cached whole and served unchanged, fields the relay
/// does not know included.
#[test]
fn core_ready_served_byte_for_byte() {
    each_gen(|g| {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("boot_time_ns", ciborium::Value::from(1u64));
        fields.insert("init_time_ns", ciborium::Value::from(2u64));
        fields.insert("ready_time_ns", ciborium::Value::from(3u64));
        fields.insert("some_future_field", ciborium::Value::from("x"));
        let r = frame(g.v(), MsgType::Ready, 0, &fields);
        let mut h = g.harness_with(small(), &r);
        let acts = h.connect(1);
        match &acts[..] {
            [Action::Handshake { bytes, .. }] => assert_eq!(*bytes, g.prologue(0, &r)),
            _ => panic!("{acts:?}"),
        }
    });
}

/// Auto: clients that connect before ready wait without a slot and get the
/// canonical ranges in arrival order at a `v = 10` ready; the excess is
/// refused then.
#[test]
fn core_auto_seats_waiting_clients_in_arrival_order_at_ready() {
    let mut h = Harness::new(Config {
        current: CurrentSettings {
            clients: 2,
            ..CurrentSettings::default()
        },
        ..small()
    });
    for c in [7, 3, 9] {
        h.expect(Event::ClientConnected(ClientId(c)), &[]);
    }
    assert_eq!(h.relay.client_range(ClientId(7)), None, "no slot yet");
    let r = ready_current(V10, 1, None, None);
    let acts = h.guest(&r);
    assert_eq!(acts[0], Action::Ready);
    assert!(acts.contains(&Action::Handshake {
        client: ClientId(7),
        bytes: Gen::Current.prologue(0, &r)
    }));
    assert!(acts.contains(&Action::Handshake {
        client: ClientId(3),
        bytes: Gen::Current.prologue(1, &r)
    }));
    assert!(acts.contains(&Action::Refuse {
        client: ClientId(9),
        reason: RefuseReason::Full {
            max_clients: 2,
            quarantined: 0
        }
    }));
    assert_eq!(h.relay.counters().generation, 10);
    assert_eq!(h.relay.counters().live_clients, 2);
}

/// Auto: a guest that goes away before its ready closes the clients still
/// waiting for a slot, in arrival order, and none of them stays counted.
#[test]
fn core_auto_guest_gone_before_ready_closes_the_waiting_clients() {
    let mut h = Harness::new(small());
    for c in [4, 2] {
        h.expect(Event::ClientConnected(ClientId(c)), &[]);
    }
    assert_eq!(h.relay.counters().live_clients, 2);
    let gone = |c| Action::CloseClient {
        client: ClientId(c),
        reason: CloseReason::GuestGone,
    };
    h.expect(Event::GuestClosed, &[gone(4), gone(2)]);
    assert_eq!(h.relay.counters().live_clients, 0);
}

/// Auto with a `v = 1` ready: the legacy generation, byte for byte.
#[test]
fn core_auto_with_a_legacy_guest_speaks_legacy() {
    let mut h = Harness::new(small());
    h.connect(1);
    h.connect(2);
    let acts = h.guest(&ready(V1, 1));
    let offsets: Vec<u32> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Handshake { bytes, .. } => {
                Some(u32::from_be_bytes(bytes[..4].try_into().unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(offsets, [0, STEP]);
    assert_eq!(h.relay.counters().generation, 1);
    assert!(to_guest(&acts).is_empty(), "no clock sync, no notice");
}
