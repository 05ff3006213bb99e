//! Rule `whole_characters`: exec.log never splits a UTF-8 character across
//! records; a session's end flushes the rest as U+FFFD; records hold the
//! frames' bytes, a stream's frames within one read merged into one record.
//! (The writer's decoding: `tests/exec_log_escape.rs`.)

use super::*;

#[test]
fn core_tap_split_utf8_emitted_whole() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let snow = "☃".as_bytes();
        let a = h.guest(&stdout(v, id, &[b"x", &snow[..1]].concat()));
        let b = h.guest(&stdout(v, id, &[&snow[1..], b"y"].concat()));
        assert_eq!(logs(&a)[0].2, "x");
        assert_eq!(logs(&b)[0].2, "☃y");
    });
}

#[test]
fn core_tap_merges_a_streams_frames_within_one_read() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let (a, b) = (open_exec(&mut h, g, 1, 1), open_exec(&mut h, g, 1, 2));
        let mut chunk = Vec::new();
        for part in [&b"a"[..], b"b", b"c"] {
            chunk.extend_from_slice(&stdout(v, a, part));
        }
        chunk.extend_from_slice(&data(v, MsgType::ExecStderr, a, b"E"));
        chunk.extend_from_slice(&stdout(v, a, b"d"));
        chunk.extend_from_slice(&stdout(v, b, b"x"));
        chunk.extend_from_slice(&stdout(v, b, b"y"));
        let acts = h.guest(&chunk);
        assert_eq!(
            logs(&acts),
            vec![
                (Some(1), LogSource::Stdout, "abc".into()),
                (Some(1), LogSource::Stderr, "E".into()),
                (Some(1), LogSource::Stdout, "d".into()),
                (Some(2), LogSource::Stdout, "xy".into()),
            ]
        );
        // Every frame was still routed on its own.
        assert_eq!(to_client(&acts, 1).len(), 7);
        // A new read starts a new record.
        let acts = h.guest(&stdout(v, b, b"z"));
        assert_eq!(logs(&acts), vec![(Some(2), LogSource::Stdout, "z".into())]);
    });
}

#[test]
fn core_tap_reads_non_canonical_envelopes_too() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        // `{t, v, p}`: valid CBOR, keys in another order than the guests
        // write them.
        let payload =
            agent_relay::wire::payload::encode_payload(&agent_relay::wire::payload::Data {
                data: b"odd order".to_vec(),
            });
        let mut body = vec![0xa3, 0x61, b't', 0x70];
        body.extend_from_slice(b"core.exec.stdout");
        body.extend_from_slice(&[0x61, b'v', v, 0x61, b'p', 0x58, payload.len() as u8]);
        body.extend_from_slice(&payload);
        let frame = Frame::build(id, 0, &body).unwrap();
        let acts = h.guest(frame.as_bytes());
        assert_eq!(to_client(&acts, 1), vec![frame.into_bytes()]);
        assert_eq!(
            logs(&acts),
            vec![(Some(1), LogSource::Stdout, "odd order".into())]
        );
    });
}
