//! Rules `own_range_only` and `corrupt_client_isolated`: a client frame
//! outside the sender's range, of a bad length, with an envelope that does not
//! decode, a guest-only type or the wrong flags is never forwarded and costs
//! that client its connection and nothing else.

use super::*;

#[test]
fn core_client_frame_forwarded_unchanged() {
    let mut h = one_client();
    let f = exec_request(V1, STEP + 1, false, 0);
    // Split in two reads.
    let acts = h.client(2, &f[..7]);
    assert!(to_guest(&acts).is_empty());
    let acts = h.client(2, &f[7..]);
    assert_eq!(to_guest(&acts), vec![f]);
}

#[test]
fn core_out_of_range_id_closes_sender_only() {
    let mut h = one_client();
    let range = IdRange {
        start: 0,
        end: STEP,
    };
    assert_refused(&mut h, 1, &stdin(V1, STEP + 3, b"x"), |v| {
        *v == Violation::OutOfRange {
            id: STEP + 3,
            range,
        }
    });
}

#[test]
fn core_invalid_length_closes_sender_only() {
    let mut h = one_client();
    let too_large = FrameError::TooLarge {
        len: 5 << 20,
        max: MAX_FRAME_LEN,
    };
    assert_refused(&mut h, 1, &(5u32 << 20).to_be_bytes(), |v| {
        *v == Violation::BadLength(too_large)
    });
    let mut h = one_client();
    let too_short = FrameError::TooShort { len: 3, min: 5 };
    assert_refused(&mut h, 1, &3u32.to_be_bytes(), |v| {
        *v == Violation::BadLength(too_short)
    });
}

#[test]
fn core_garbage_envelope_never_reaches_guest() {
    let mut h = one_client();
    let junk = agent_relay::wire::Frame::build(1, 0, b"\x9f\xff\x00junk").unwrap();
    assert_refused(&mut h, 1, junk.as_bytes(), |v| {
        matches!(
            v,
            Violation::Envelope {
                id: 1,
                error: EnvelopeError::Malformed(_)
            }
        )
    });
}

#[test]
fn core_forged_terminal_flag_refused() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 1, false, 0));
    assert_refused(&mut h, 1, &with_flags(&stdin(V1, 1, b"x"), 0x01), |v| {
        *v == Violation::WrongFlags {
            id: 1,
            t: MsgType::ExecStdin,
            flags: 0x01,
            required: 0,
        }
    });
    assert_eq!(
        h.relay.counters().kills_sent,
        1,
        "its session was cleaned up"
    );
}

#[test]
fn core_shutdown_flag_on_stdin_refused() {
    let mut h = one_client();
    let acts = h.client(1, &with_flags(&stdin(V1, 1, b"x"), 0x04));
    assert!(!acts.contains(&Action::Drain));
    assert!(matches!(
        violation(&acts, 1),
        Some(Violation::WrongFlags { flags: 0x04, .. })
    ));
}

#[test]
fn core_guest_only_type_from_client_refused() {
    let mut h = one_client();
    assert_refused(&mut h, 1, &stdout(V1, 1, b"x"), |v| {
        *v == Violation::NotClientType {
            id: 1,
            t: MsgType::ExecStdout,
        }
    });
}

#[test]
fn core_undecodable_exec_request_refused() {
    let mut h = one_client();
    let body = agent_relay::wire::encode_envelope(MsgType::ExecRequest, b"\x01");
    let f = agent_relay::wire::Frame::build(1, 0x02, &body).unwrap();
    assert_refused(&mut h, 1, f.as_bytes(), |v| {
        matches!(v, Violation::BadExecRequest { id: 1, .. })
    });
}

#[test]
fn core_frames_before_violation_still_forwarded() {
    let mut h = one_client();
    let mut chunk = exec_request(V1, 1, false, 0).to_vec();
    chunk.extend_from_slice(&stdin(V1, STEP * 5, b"bad"));
    let acts = h.client(1, &chunk);
    assert_eq!(
        to_guest(&acts),
        vec![exec_request(V1, 1, false, 0), kill(V1, 1)]
    );
    assert_eq!(h.relay.counters().protocol_violations, 1);
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
