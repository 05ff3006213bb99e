//! The current generation's frames: rules `route_by_id` (correlations, not
//! only sessions; raw bulk records and unknown types routed by id; the
//! workload-control id consumed; ids of nobody counted),
//! `corrupt_client_isolated` (flags, id 0 shutdown, types clients may not
//! send, envelopes of unknown types, bulk records) and
//! `correlations_bounded`.

use super::*;

fn current() -> Harness {
    let mut h = Harness::current(small(), &ready_current(V10, 1, None, None));
    h.connect(1);
    h.connect(2);
    h
}

fn to(c: u64, frame: Bytes) -> Action {
    Action::ToClient {
        client: ClientId(c),
        frame,
    }
}

/// A reply that opens no session reaches the client that asked, once.
#[test]
fn core_current_pong_reaches_the_asker() {
    let mut h = current();
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
    let mut h = current();
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

/// Undefined flags and a bad bulk header from the guest are corruption,
/// resynchronised past.
#[test]
fn core_current_guest_garbage_resyncs_to_the_next_frame() {
    let mut h = current();
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    let mut bad = stdout(V10, id, b"bad flags").to_vec();
    bad[8] = 0x03;
    let mut chunk = bad;
    let mut badbulk = bulk(id, 3, 2, 0, b"kind 3").to_vec();
    chunk.append(&mut badbulk);
    chunk.extend_from_slice(&stdout(V10, id, b"good"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(V10, id, b"good")]);
    // One corrupt stretch: the bulk record with kind 3 is no frame start.
    assert_eq!(h.relay.counters().guest_corrupt, 1, "{acts:?}");
}

#[test]
fn core_current_client_flags_must_be_one_of_five() {
    let mut h = current();
    let mut f = stdin(V10, cid(0), b"x").to_vec();
    f[8] = 0x03;
    let acts = h.client(1, &f);
    let want = Violation::UndefinedFlags {
        id: cid(0),
        flags: 0x03,
    };
    assert_eq!(violation(&acts, 1), Some(want));
}

/// `core.shutdown` may come on id 0 with its envelope (as the SDK sends
/// it); an empty body, which upstream's relay forwards and agentd cannot
/// decode, is refused.
#[test]
fn core_current_shutdown_on_id_zero_with_its_envelope_only() {
    let full = frame(V10, MsgType::Shutdown, 0, &());
    let mut h = current();
    h.expect(
        Event::ClientBytes(ClientId(1), &full),
        &[
            Action::ToGuest {
                frame: full.clone(),
            },
            Action::Drain,
        ],
    );
    let empty = Frame::build(0, FLAG_SHUTDOWN, b"").unwrap().into_bytes();
    let mut h = current();
    let acts = h.client(1, &empty);
    assert_eq!(violation(&acts, 1), Some(Violation::EmptyBody { id: 0 }));
    assert!(!acts.contains(&Action::Drain));
    let mut h = current();
    let acts = h.client(1, &stdin(V10, 0, b"x"));
    assert!(matches!(
        violation(&acts, 1),
        Some(Violation::OutOfRange { id: 0, .. })
    ));
}

/// The relay's own messages and the runtime's are never a client's to send
/// (upstream lets a client forge a disconnect notice naming another range).
#[test]
fn core_current_relay_and_runtime_types_refused_from_clients() {
    let id = cid(0);
    let forged = [
        (
            MsgType::RelayClientDisconnected,
            client_disconnected(V10, crange(1)),
        ),
        (
            MsgType::InitAck,
            frame(V10, MsgType::InitAck, id, &InitAck { failure: false }),
        ),
        (
            MsgType::ClockSync,
            named(V10, "core.clock.sync", id, 0, &[0xa0]),
        ),
        (
            MsgType::Bootstrap,
            named(V10, "core.bootstrap", id, 0, &[0xa0]),
        ),
        (
            MsgType::WorkloadFreeze,
            named(V10, "core.workload.freeze", id, 0, &[0xa0]),
        ),
        (
            MsgType::WorkloadTransportCredit,
            named(V10, "core.workload.transport.credit", id, 0, &[0xa0]),
        ),
        (MsgType::Pong, named(V10, "core.pong", id, 1, &[0xa0])),
    ];
    for (t, f) in forged {
        let mut h = current();
        let acts = h.client(1, &f);
        let v = violation(&acts, 1).unwrap_or_else(|| panic!("{t}: {acts:?}"));
        let refused = matches!(v, Violation::NotClientType { t: got, .. } if got == t)
            || matches!(v, Violation::OutOfRange { id: 0, .. });
        assert!(refused, "{t}: {v:?}");
        assert!(!to_guest(&acts).contains(&f), "{t} forwarded");
    }
    // The forged notice named slot 1; the only notice sent is the relay's
    // own, for the departing sender's slot 0.
    let mut h = current();
    let acts = h.client(1, &client_disconnected(V10, crange(1)));
    assert_eq!(to_guest(&acts), vec![client_disconnected(V10, crange(0))]);
    let mut h = current();
    let acts = h.client(1, &named(V10, "control.anything", id, 0, &[0xa0]));
    assert!(matches!(
        violation(&acts, 1),
        Some(Violation::Envelope {
            error: EnvelopeError::Reserved(_),
            ..
        })
    ));
}

/// Rule `guest_survives`: a client frame reaches a current guest only if
/// agentd's own decoder reads it and agentd can answer what it cannot use:
/// a type of the table (0.7.13 agentd's loop ends on any other name), one
/// `v` of 5 or more (it cannot answer an older sender with `core.error`),
/// one byte-string `p`, a body at all. Each refusal costs the sender only.
#[test]
fn core_current_only_what_agentd_decodes_passes() {
    let id = cid(0);
    let mut h = current();
    let ok = named(V10, "core.ping", id, 0, &[0xa0]);
    h.expect(
        Event::ClientBytes(ClientId(1), &ok),
        &[Action::ToGuest { frame: ok.clone() }],
    );
    let v5 = named(5, "core.ping", id + 1, 0, &[0xa0]);
    h.expect(
        Event::ClientBytes(ClientId(1), &v5),
        &[Action::ToGuest { frame: v5.clone() }],
    );
    type Rule = fn(&Violation) -> bool;
    let mut trailing = ok.to_vec();
    trailing.push(0);
    trailing[3] += 1;
    let mut no_p = vec![0xa2, 0x61, b'v', 0x0a, 0x61, b't', 0x69];
    no_p.extend_from_slice(b"core.ping");
    let cases: [(Bytes, Rule); 6] = [
        (
            named(V10, "core.bogus.type", id, 0, &[0xa0]),
            |v| matches!(v, Violation::Envelope { error: EnvelopeError::UnknownType(t), .. } if t == "core.bogus.type"),
        ),
        (
            named(V10, "core.next.thing", id, FLAG_SHUTDOWN, &[0xa0]),
            |v| {
                matches!(
                    v,
                    Violation::Envelope {
                        error: EnvelopeError::UnknownType(_),
                        ..
                    }
                )
            },
        ),
        (Bytes::from(trailing), |v| {
            matches!(
                v,
                Violation::Envelope {
                    error: EnvelopeError::TrailingBytes(1),
                    ..
                }
            )
        }),
        (named(1, "core.ping", id, 0, &[0xa0]), |v| {
            matches!(v, Violation::OldGeneration { v: 1, .. })
        }),
        (body_frame(id, 0, &no_p), |v| {
            matches!(
                v,
                Violation::Envelope {
                    error: EnvelopeError::Field { field: "p", .. },
                    ..
                }
            )
        }),
        (body_frame(0, FLAG_SHUTDOWN, &[]), |v| {
            matches!(v, Violation::EmptyBody { id: 0 })
        }),
    ];
    for (f, why) in cases {
        let mut h = current();
        let acts = h.client(1, &f);
        let notice = client_disconnected(V10, crange(0));
        assert_eq!(to_guest(&acts), vec![notice], "only the departure's notice");
        let v = violation(&acts, 1).unwrap_or_else(|| panic!("{acts:?}"));
        assert!(why(&v), "{v:?}");
        let other = empty(V10, MsgType::Ping, cid(1));
        let acts = h.client(2, &other);
        assert_eq!(to_guest(&acts), vec![other], "the other client carries on");
    }
}

/// A client's raw bulk record: a valid host-to-guest header on an id it has
/// open, forwarded untouched.
#[test]
fn core_current_client_bulk_records_checked() {
    let id = cid(0);
    type Rule = fn(&Violation) -> bool;
    let cases: [(Bytes, Rule); 3] = [
        (bulk(id, 1, 1, 0, b""), |v| {
            matches!(v, Violation::BadBulk { .. })
        }),
        (bulk(id, 1, 2, 0, b"x"), |v| {
            matches!(v, Violation::BulkFlow { flow: 2, .. })
        }),
        (bulk(id + 1, 1, 1, 0, b"x"), |v| {
            matches!(v, Violation::BulkWithoutCorrelation { .. })
        }),
    ];
    for (f, why) in cases {
        let mut h = current();
        h.client(1, &empty(V10, MsgType::FsRequest, id));
        let acts = h.client(1, &f);
        let v = violation(&acts, 1).unwrap_or_else(|| panic!("{acts:?}"));
        assert!(why(&v), "{v:?}");
    }
    let mut h = current();
    h.client(1, &empty(V10, MsgType::FsRequest, id));
    let f = bulk(id, 1, 1, 0, b"payload");
    h.expect(
        Event::ClientBytes(ClientId(1), &f),
        &[Action::ToGuest { frame: f.clone() }],
    );
}

/// Past `max_correlations` the oldest request is forgotten (and its late
/// reply dropped), never the client closed; more sessions than that at once
/// is a violation.
#[test]
fn core_current_correlations_bounded_oldest_request_evicted() {
    let cfg = Config {
        max_correlations: 3,
        ..small()
    };
    let mut h = Harness::current(cfg, &ready_current(V10, 1, None, None));
    h.connect(1);
    let id = |k: u32| cid(0) + k;
    for k in 0..4 {
        h.client(1, &empty(V10, MsgType::Ping, id(k)));
    }
    assert_eq!(h.relay.counters().correlations_evicted, 1);
    h.expect(Event::GuestBytes(&empty(V10, MsgType::Pong, id(0))), &[]);
    h.expect(
        Event::GuestBytes(&empty(V10, MsgType::Pong, id(3))),
        &[to(1, empty(V10, MsgType::Pong, id(3)))],
    );
    for k in 10..13 {
        h.client(1, &exec_request(V10, id(k), false, 0));
    }
    let acts = h.client(1, &exec_request(V10, id(13), false, 0));
    assert_eq!(
        violation(&acts, 1),
        Some(Violation::TooManyCorrelations { id: id(13), max: 3 })
    );
}

/// A bulk record for a correlation the guest has just ended is late, not a
/// violation: the client could not have seen the end yet. It is dropped and
/// counted; an id never opened is still a violation.
#[test]
fn core_current_late_bulk_record_dropped() {
    let mut h = current();
    let id = cid(0);
    h.client(1, &empty(V10, MsgType::FsRequest, id));
    h.guest(&named(V10, "core.fs.response", id, 1, &[0xa0]));
    h.expect(
        Event::ClientBytes(ClientId(1), &bulk(id, 1, 1, 0, b"late")),
        &[],
    );
    assert_eq!(h.relay.counters().late_bulk_dropped, 1);
    let acts = h.client(1, &bulk(id + 1, 1, 1, 0, b"never"));
    assert_eq!(
        violation(&acts, 1),
        Some(Violation::BulkWithoutCorrelation { id: id + 1 })
    );
}
