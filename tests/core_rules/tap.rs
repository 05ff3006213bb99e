//! Rule `whole_characters`: the exec.log tap never splits a UTF-8 character
//! and tags each record with its session and stream.

use super::*;

#[test]
fn core_tap_tags_streams_and_numbers_sessions() {
    let mut h = Harness::new(small());
    let acts = h.guest(&ready());
    assert_eq!(
        logs(&acts),
        vec![(None, LogSource::System, "--- sandbox started ---".into())]
    );
    h.connect(1);
    h.client(1, &exec_req(1, false));
    h.client(1, &exec_req(2, true));
    let mut chunk = stdout(1, b"out").to_vec();
    chunk.extend_from_slice(&data(MsgType::ExecStderr, 1, b"err"));
    chunk.extend_from_slice(&stdout(2, b"pty"));
    chunk.extend_from_slice(&exited(1, 0));
    let acts = h.guest(&chunk);
    assert_eq!(
        logs(&acts),
        vec![
            (Some(1), LogSource::Stdout, "out".into()),
            (Some(1), LogSource::Stderr, "err".into()),
            (Some(2), LogSource::Output, "pty".into()),
        ]
    );
    // Session numbers are never reused even when the correlation id is.
    h.client(1, &exec_req(1, false));
    let acts = h.guest(&stdout(1, b"again"));
    assert_eq!(
        logs(&acts),
        vec![(Some(3), LogSource::Stdout, "again".into())]
    );
}

#[test]
fn core_tap_split_utf8_emitted_whole() {
    let mut h = one_client();
    h.client(1, &exec_req(1, false));
    let snow = "☃".as_bytes();
    let a = h.guest(&stdout(1, &[b"x", &snow[..1]].concat()));
    let b = h.guest(&stdout(1, &[&snow[1..], b"y"].concat()));
    assert_eq!(logs(&a)[0].2, "x");
    assert_eq!(logs(&b)[0].2, "☃y");
}

#[test]
fn core_tap_off_emits_no_log() {
    let mut h = Harness::ready(Config::default());
    h.connect(1);
    h.client(1, &exec_req(1, false));
    let acts = h.guest(&stdout(1, b"x"));
    assert!(logs(&acts).is_empty());
}
