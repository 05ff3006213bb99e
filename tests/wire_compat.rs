//! Byte compatibility with the reference codec, microsandbox-protocol 0.4.4
//! (a dev-dependency only): every message it encodes, we frame and peek
//! correctly; every frame the relay emits, it decodes.

use agent_relay::core::{Action, ClientId, Config, Event, Relay};
use agent_relay::wire::payload::{exec_request_tty, peek_data, sigkill_frame};
use agent_relay::wire::{FrameDecoder, MsgType, decode_envelope_full, peek_envelope};
use microsandbox_protocol as msp;
use msp::message::{Message, MessageType};
use quickcheck::{QuickCheck, TestResult};

fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    msp::codec::encode_to_buf(msg, &mut buf).expect("reference encode");
    buf
}

/// One realistic message of every type, encoded by 0.4.4.
fn every_message(id: u32, data: &[u8], tty: bool) -> Vec<(MsgType, Message)> {
    use msp::exec::*;
    let m = |t, p: Message| (t, p);
    let req = ExecRequest {
        cmd: "sh".into(),
        args: vec!["-c".into(), "echo hi".into()],
        env: vec!["A=B".into()],
        cwd: Some("/".into()),
        user: None,
        tty,
        rows: 30,
        cols: 100,
        rlimits: vec![],
    };
    let fs = msp::fs::FsRequest {
        op: msp::fs::FsOp::Stat {
            path: "/etc".into(),
        },
    };
    let ready = msp::core::Ready {
        boot_time_ns: 1,
        init_time_ns: 2,
        ready_time_ns: 3,
    };
    let w = |t: MessageType, p: &dyn erased::Payload| p.message(t, id);
    vec![
        m(MsgType::Ready, w(MessageType::Ready, &ready)),
        m(
            MsgType::Shutdown,
            Message::new(MessageType::Shutdown, id, Vec::new()),
        ),
        m(MsgType::ExecRequest, w(MessageType::ExecRequest, &req)),
        m(
            MsgType::ExecStarted,
            w(MessageType::ExecStarted, &ExecStarted { pid: 42 }),
        ),
        m(
            MsgType::ExecStdin,
            w(
                MessageType::ExecStdin,
                &ExecStdin {
                    data: data.to_vec(),
                },
            ),
        ),
        m(
            MsgType::ExecStdout,
            w(
                MessageType::ExecStdout,
                &ExecStdout {
                    data: data.to_vec(),
                },
            ),
        ),
        m(
            MsgType::ExecStderr,
            w(
                MessageType::ExecStderr,
                &ExecStderr {
                    data: data.to_vec(),
                },
            ),
        ),
        m(
            MsgType::ExecExited,
            w(MessageType::ExecExited, &ExecExited { code: -3 }),
        ),
        m(
            MsgType::ExecFailed,
            w(
                MessageType::ExecFailed,
                &ExecFailed {
                    kind: ExecFailureKind::NotFound,
                    errno: Some(2),
                    errno_name: Some("ENOENT".into()),
                    message: "no such file".into(),
                    stage: None,
                },
            ),
        ),
        m(
            MsgType::ExecResize,
            w(MessageType::ExecResize, &ExecResize { rows: 1, cols: 2 }),
        ),
        m(
            MsgType::ExecSignal,
            w(MessageType::ExecSignal, &ExecSignal { signal: 15 }),
        ),
        m(MsgType::FsRequest, w(MessageType::FsRequest, &fs)),
        m(
            MsgType::FsResponse,
            w(
                MessageType::FsResponse,
                &msp::fs::FsResponse {
                    ok: false,
                    error: Some("nope".into()),
                    data: None,
                },
            ),
        ),
        m(
            MsgType::FsData,
            w(
                MessageType::FsData,
                &msp::fs::FsData {
                    data: data.to_vec(),
                },
            ),
        ),
    ]
}

/// Lets the table above hold payloads of different types.
mod erased {
    use super::*;
    pub trait Payload {
        fn message(&self, t: MessageType, id: u32) -> Message;
    }
    impl<T: serde::Serialize> Payload for T {
        fn message(&self, t: MessageType, id: u32) -> Message {
            Message::with_payload(t, id, self).expect("reference payload encode")
        }
    }
}

#[test]
fn wire_every_reference_message_decodes_and_peeks() {
    let all = every_message(0x1234_5678, "héllo".as_bytes(), true);
    let legacy = MsgType::ALL.iter().filter(|t| t.info().legacy).count();
    assert_eq!(
        all.len(),
        legacy,
        "every 0.4.4 type, and only those, is legacy"
    );
    for (t, msg) in all {
        let bytes = encode(&msg);
        let mut d = FrameDecoder::new();
        d.extend(&bytes);
        let frame = d.next_frame().unwrap().expect("whole frame");
        assert_eq!(d.buffered(), 0);
        assert_eq!(frame.id(), 0x1234_5678);
        assert_eq!(frame.flags(), msg.flags);
        assert_eq!(frame.flags(), t.flags(), "{t}");
        assert_eq!(t.as_str(), msg.t.as_str());
        let env = peek_envelope(frame.body()).unwrap();
        assert_eq!(env.t, t);
        assert_eq!(&env.payload[..], &msg.p[..], "{t}: payload bytes");
        assert_eq!(env, decode_envelope_full(frame.body()).unwrap());
        assert!(
            matches!(env.payload, std::borrow::Cow::Borrowed(_)),
            "{t}: the canonical layout takes the fast path"
        );
        match t {
            MsgType::ExecStdout | MsgType::ExecStderr | MsgType::ExecStdin | MsgType::FsData => {
                assert_eq!(&peek_data(&env.payload).unwrap()[..], "héllo".as_bytes());
            }
            MsgType::ExecRequest => assert!(exec_request_tty(&env.payload).unwrap()),
            _ => {}
        }
    }
}

#[test]
fn wire_sigkill_frame_is_byte_identical_to_reference() {
    let reference = Message::with_payload(
        MessageType::ExecSignal,
        777,
        &msp::exec::ExecSignal { signal: 9 },
    )
    .unwrap();
    assert_eq!(&sigkill_frame(777).as_bytes()[..], &encode(&reference)[..]);
    let mut buf = sigkill_frame(777).as_bytes().to_vec();
    let back = msp::codec::try_decode_from_buf(&mut buf).unwrap().unwrap();
    assert_eq!(back.t, MessageType::ExecSignal);
    assert_eq!(back.payload::<msp::exec::ExecSignal>().unwrap().signal, 9);
}

#[test]
fn wire_relay_handshake_decodes_with_reference() {
    let ready = encode(
        &Message::with_payload(
            MessageType::Ready,
            0,
            &msp::core::Ready {
                boot_time_ns: 10,
                init_time_ns: 20,
                ready_time_ns: 30,
            },
        )
        .unwrap(),
    );
    let mut relay = Relay::new(Config::default());
    relay.handle(0, Event::ClientConnected(ClientId(1)));
    relay.handle(0, Event::ClientConnected(ClientId(2)));
    relay.handle(0, Event::GuestBytes(&ready));
    let mut seen = 0;
    while let Some(action) = relay.poll_action() {
        if let Action::Handshake { client, bytes } = action {
            let offset = u32::from_be_bytes(bytes[..4].try_into().unwrap());
            assert_eq!(offset, (client.0 as u32 - 1) * 268_435_455);
            let mut rest = bytes[4..].to_vec();
            let msg = msp::codec::try_decode_from_buf(&mut rest).unwrap().unwrap();
            assert!(rest.is_empty());
            assert_eq!(msg.t, MessageType::Ready);
            assert_eq!(msg.payload::<msp::core::Ready>().unwrap().init_time_ns, 20);
            seen += 1;
        }
    }
    assert_eq!(seen, 2);
}

/// Random payloads, random ids, random chunkings: our decoder yields exactly
/// the reference frames, and peeks agree with the reference decode.
#[test]
fn prop_wire_reference_stream_any_chunking() {
    fn prop(data: Vec<u8>, ids: Vec<u32>, cuts: Vec<u16>, tty: bool) -> TestResult {
        let mut stream = Vec::new();
        let mut expect = Vec::new();
        for (i, &id) in ids.iter().take(8).enumerate() {
            for (t, msg) in every_message(id, &data[..data.len().min(i * 37)], tty) {
                stream.extend(encode(&msg));
                expect.push((t, id, msg.p));
            }
        }
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().chain(std::iter::once(&u16::MAX)) {
            let end = (at + *cut as usize % 97).min(stream.len());
            let end = if *cut == u16::MAX { stream.len() } else { end };
            d.extend(&stream[at..end]);
            at = end;
            while let Some(f) = d.next_frame().unwrap() {
                let env = peek_envelope(f.body()).unwrap();
                got.push((env.t, f.id(), env.payload.into_owned()));
            }
        }
        TestResult::from_bool(got == expect && d.buffered() == 0)
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(Vec<u8>, Vec<u32>, Vec<u16>, bool) -> TestResult);
}

/// On arbitrary bytes and on mutated real envelopes, the peek and the full
/// decode agree, error or not.
#[test]
fn prop_wire_peek_agrees_with_full_decode() {
    fn prop(data: Vec<u8>, flips: Vec<(u16, u8)>, which: u8) -> bool {
        let all = every_message(1, &data, which.is_multiple_of(2));
        let (_, msg) = &all[which as usize % all.len()];
        let mut body = encode(msg)[9..].to_vec();
        for (at, x) in flips.iter().take(3) {
            let at = *at as usize % body.len();
            body[at] ^= x;
        }
        let agree = |b: &[u8]| match (peek_envelope(b), decode_envelope_full(b)) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        let data_agree = match (
            peek_data(&body),
            agent_relay::wire::payload::decode_payload::<agent_relay::wire::payload::Data>(&body),
        ) {
            (Ok(a), Ok(b)) => a[..] == b.data[..],
            (Err(_), Err(_)) => true,
            _ => false,
        };
        agree(&body) && agree(&data) && data_agree
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Vec<u8>, Vec<(u16, u8)>, u8) -> bool);
}
