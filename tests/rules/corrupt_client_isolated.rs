//! Rule `corrupt_client_isolated`: a client frame with a bad length, an
//! envelope that does not decode, a type clients may not send, flags other
//! than its type's (current: not one of the five), or a bulk record with a
//! bad header, a guest-to-host flow or an id the sender has nothing open on,
//! is never forwarded and costs that client its connection and nothing else.

use super::*;

#[test]
fn core_invalid_length_closes_sender_only() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let too_large = FrameError::TooLarge {
            len: 5 << 20,
            max: MAX_FRAME_LEN,
        };
        assert_refused(g, &mut h, 1, &(5u32 << 20).to_be_bytes(), |v| {
            *v == Violation::BadLength(too_large)
        });
        let mut h = two_clients(g);
        let too_short = FrameError::TooShort { len: 3, min: 5 };
        assert_refused(g, &mut h, 1, &3u32.to_be_bytes(), |v| {
            *v == Violation::BadLength(too_short)
        });
    });
}

#[test]
fn core_garbage_envelope_never_reaches_guest() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let id = g.id(0, 1);
        let junk = Frame::build(id, 0, b"\x9f\xff\x00junk").unwrap();
        assert_refused(g, &mut h, 1, junk.as_bytes(), |v| {
            matches!(
                v,
                Violation::Envelope {
                    error: EnvelopeError::Malformed(_),
                    ..
                }
            )
        });
    });
}

#[test]
fn core_forged_terminal_flag_refused() {
    let mut h = two_clients(Gen::Legacy);
    h.client(1, &exec_request(V1, 1, false, 0));
    assert_refused(
        Gen::Legacy,
        &mut h,
        1,
        &with_flags(&stdin(V1, 1, b"x"), 0x01),
        |v| {
            *v == Violation::WrongFlags {
                id: 1,
                t: MsgType::ExecStdin,
                flags: 0x01,
                required: 0,
            }
        },
    );
    assert_eq!(
        h.relay.counters().kills_sent,
        1,
        "its session was cleaned up"
    );
}

#[test]
fn core_shutdown_flag_on_stdin_refused() {
    let mut h = two_clients(Gen::Legacy);
    let acts = h.client(1, &with_flags(&stdin(V1, 1, b"x"), 0x04));
    assert!(!acts.contains(&Action::Drain));
    assert!(matches!(
        violation(&acts, 1),
        Some(Violation::WrongFlags { flags: 0x04, .. })
    ));
}

#[test]
fn core_guest_only_type_from_client_refused() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let id = g.id(0, 1);
        assert_refused(g, &mut h, 1, &stdout(g.v(), id, b"x"), |v| {
            *v == Violation::NotClientType {
                id,
                t: MsgType::ExecStdout,
            }
        });
    });
}

/// The words a log shows for each violation (and that the simulator's
/// campaign digest hashes): typed reasons kept the text they had as strings.
#[test]
fn core_violation_text_names_the_rule_and_the_values() {
    let range = IdRange {
        start: 0,
        end: STEP,
    };
    let malformed = EnvelopeError::Malformed("bad".into());
    let cases = [
        (
            Violation::BeforeHandshake { bytes: 3 },
            "sent 3 bytes before its handshake",
        ),
        (
            Violation::BadLength(FrameError::TooShort { len: 3, min: 5 }),
            "frame length 3 is 2 bytes below the minimum of 5 (id and flags)",
        ),
        (
            Violation::OutOfRange { id: STEP, range },
            "frame id 268435455 is outside its range 0..268435455",
        ),
        (
            Violation::Envelope {
                id: 7,
                error: malformed.clone(),
            },
            "frame 7: envelope does not decode: bad",
        ),
        (
            Violation::NotClientType {
                id: 7,
                t: MsgType::ExecStdout,
            },
            "frame 7: clients may not send core.exec.stdout",
        ),
        (
            Violation::WrongFlags {
                id: 7,
                t: MsgType::ExecStdin,
                flags: 1,
                required: 0,
            },
            "core.exec.stdin frame 7 carries flags 0x01, the type requires 0x00",
        ),
        (
            Violation::BadExecRequest {
                id: 7,
                error: malformed,
            },
            "core.exec.request frame 7: payload does not decode: bad",
        ),
        (
            Violation::SessionAlreadyOpen {
                id: 7,
                t: MsgType::FsRequest,
            },
            "core.fs.request frame 7: session 7 is already open",
        ),
    ];
    for (v, text) in cases {
        assert_eq!(v.to_string(), text);
        assert_eq!(
            CloseReason::Violation(v).to_string(),
            format!("protocol violation: {text}")
        );
    }
}

#[test]
fn core_current_client_flags_must_be_one_of_five() {
    let mut h = two_clients(Gen::Current);
    let mut f = stdin(V10, cid(0), b"x").to_vec();
    f[8] = 0x03;
    let acts = h.client(1, &f);
    let want = Violation::UndefinedFlags {
        id: cid(0),
        flags: 0x03,
    };
    assert_eq!(violation(&acts, 1), Some(want));
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
        let mut h = two_clients(Gen::Current);
        let acts = h.client(1, &f);
        let v = violation(&acts, 1).unwrap_or_else(|| panic!("{t}: {acts:?}"));
        let refused = matches!(v, Violation::NotClientType { t: got, .. } if got == t)
            || matches!(v, Violation::OutOfRange { id: 0, .. });
        assert!(refused, "{t}: {v:?}");
        assert!(!to_guest(&acts).contains(&f), "{t} forwarded");
    }
    // The forged notice named slot 1; the only notice sent is the relay's
    // own, for the departing sender's slot 0.
    let mut h = two_clients(Gen::Current);
    let acts = h.client(1, &client_disconnected(V10, crange(1)));
    assert_eq!(to_guest(&acts), vec![client_disconnected(V10, crange(0))]);
    let mut h = two_clients(Gen::Current);
    let acts = h.client(1, &named(V10, "control.anything", id, 0, &[0xa0]));
    assert!(matches!(
        violation(&acts, 1),
        Some(Violation::Envelope {
            error: EnvelopeError::Reserved(_),
            ..
        })
    ));
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
        let mut h = two_clients(Gen::Current);
        h.client(1, &empty(V10, MsgType::FsRequest, id));
        let acts = h.client(1, &f);
        let v = violation(&acts, 1).unwrap_or_else(|| panic!("{acts:?}"));
        assert!(why(&v), "{v:?}");
    }
    let mut h = two_clients(Gen::Current);
    h.client(1, &empty(V10, MsgType::FsRequest, id));
    let f = bulk(id, 1, 1, 0, b"payload");
    h.expect(
        Event::ClientBytes(ClientId(1), &f),
        &[Action::ToGuest { frame: f.clone() }],
    );
}
