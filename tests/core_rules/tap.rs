//! Rule `whole_characters`: the exec.log tap never splits a UTF-8 character
//! and tags each record with its session and stream.

use super::*;

#[test]
fn core_tap_tags_streams_and_numbers_sessions() {
    let mut h = Harness::new(small());
    let acts = h.guest(&ready(V1, 1));
    assert_eq!(
        logs(&acts),
        vec![(None, LogSource::System, "--- sandbox started ---".into())]
    );
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    h.client(1, &exec_request(V1, 2, true, 0));
    let mut chunk = stdout(V1, 1, b"out").to_vec();
    chunk.extend_from_slice(&data(V1, MsgType::ExecStderr, 1, b"err"));
    chunk.extend_from_slice(&stdout(V1, 2, b"pty"));
    chunk.extend_from_slice(&exited(V1, 1, 0));
    let acts = h.guest(&chunk);
    assert_eq!(
        logs(&acts),
        vec![
            (Some(1), LogSource::Stdout, "out".into()),
            (Some(1), LogSource::Stderr, "err".into()),
            (Some(2), LogSource::Output, "pty".into()),
            (Some(1), LogSource::System, "exec exited with code 0".into()),
        ]
    );
    // Session numbers are never reused even when the correlation id is.
    h.client(1, &exec_request(V1, 1, false, 0));
    let acts = h.guest(&stdout(V1, 1, b"again"));
    assert_eq!(
        logs(&acts),
        vec![(Some(3), LogSource::Stdout, "again".into())]
    );
}

#[test]
fn core_tap_split_utf8_emitted_whole() {
    let mut h = one_client();
    h.client(1, &exec_request(V1, 1, false, 0));
    let snow = "☃".as_bytes();
    let a = h.guest(&stdout(V1, 1, &[b"x", &snow[..1]].concat()));
    let b = h.guest(&stdout(V1, 1, &[&snow[1..], b"y"].concat()));
    assert_eq!(logs(&a)[0].2, "x");
    assert_eq!(logs(&b)[0].2, "☃y");
}

#[test]
fn core_tap_off_emits_no_log() {
    let mut h = Harness::ready(Config::default());
    h.connect(1);
    h.client(1, &exec_request(V1, 1, false, 0));
    let acts = h.guest(&stdout(V1, 1, b"x"));
    assert!(logs(&acts).is_empty());
}

/// Rule `exec_log_says_what_ran`: a session's start names its command, its
/// arguments (quoted as a shell would need them) and the client's slot; its
/// end says how it ended.
#[test]
fn core_tap_system_records_say_what_ran_and_how_it_ended() {
    use agent_relay::wire::payload::{ExecFailed, ExecFailureKind, ExecRequest};
    let mut h = Harness::ready(small());
    h.connect(1);
    h.connect(2);
    let req = ExecRequest::new("sh").args(["-c", "echo 'hi there'"]);
    let acts = h.client(2, &frame(V1, MsgType::ExecRequest, STEP + 1, &req));
    let started = r"exec started: sh -c 'echo '\''hi there'\''' (client slot 1)";
    assert_eq!(
        logs(&acts),
        vec![(Some(1), LogSource::System, started.into())]
    );
    let failed = ExecFailed {
        kind: ExecFailureKind::NotFound,
        errno: Some(2),
        errno_name: None,
        message: "no such program".into(),
        stage: None,
    };
    let acts = h.guest(&frame(V1, MsgType::ExecFailed, STEP + 1, &failed));
    let ended = "exec failed to start: NotFound: no such program";
    assert_eq!(
        logs(&acts),
        vec![(Some(1), LogSource::System, ended.into())]
    );
}
