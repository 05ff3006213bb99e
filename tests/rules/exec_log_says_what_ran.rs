//! Rule `exec_log_says_what_ran`: a `system` record marks each exec
//! session's start (number, command, arguments, the client's slot), its
//! kill when its client left, and its end: exit code or start failure, or,
//! for a session still open, "exec ended: ..." at `GuestClosed` and at
//! `Relay::stopping`. (The writer's run and sequence numbers:
//! `tests/shell_exec_log.rs`, `tests/cli_logs.rs`.)

use super::*;

#[test]
fn core_tap_tags_streams_and_numbers_sessions() {
    each_gen(|g| {
        let v = g.v();
        let (a, b) = (g.id(0, 1), g.id(0, 2));
        let mut h = g.before_ready(small());
        let acts = h.guest(&g.ready());
        assert_eq!(
            logs(&acts),
            vec![(None, LogSource::System, "--- sandbox started ---".into())]
        );
        h.connect(1);
        h.client(1, &exec_request(v, a, false, 0));
        h.client(1, &exec_request(v, b, true, 0));
        let mut chunk = stdout(v, a, b"out").to_vec();
        chunk.extend_from_slice(&data(v, MsgType::ExecStderr, a, b"err"));
        chunk.extend_from_slice(&stdout(v, b, b"pty"));
        chunk.extend_from_slice(&exited(v, a, 0));
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
        h.client(1, &exec_request(v, a, false, 0));
        let acts = h.guest(&stdout(v, a, b"again"));
        assert_eq!(
            logs(&acts),
            vec![(Some(3), LogSource::Stdout, "again".into())]
        );
    });
}

#[test]
fn core_tap_off_emits_no_log() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, Config::default()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let acts = h.guest(&stdout(v, id, b"x"));
        assert!(logs(&acts).is_empty());
    });
}

/// A session's start names its command, its arguments (quoted as a shell
/// would need them) and the client's slot; its end says how it ended.
#[test]
fn core_tap_system_records_say_what_ran_and_how_it_ended() {
    use agent_relay::wire::payload::{ExecFailed, ExecFailureKind, ExecRequest};
    each_gen(|g| {
        let (v, id) = (g.v(), g.id(1, 1));
        let mut h = two_clients(g);
        let req = ExecRequest::new("sh").args(["-c", "echo 'hi there'"]);
        let acts = h.client(2, &frame(v, MsgType::ExecRequest, id, &req));
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
        let acts = h.guest(&frame(v, MsgType::ExecFailed, id, &failed));
        let ended = "exec failed to start: NotFound: no such program";
        assert_eq!(
            logs(&acts),
            vec![(Some(1), LogSource::System, ended.into())]
        );
    });
}

/// The sessions of `acts`' exec.log records: those started, and those that
/// got an end record (exit, start failure, kill, or `exec ended:`).
fn starts_and_ends(acts: &[Action]) -> (Vec<u64>, Vec<(u64, String)>) {
    let mut started = Vec::new();
    let mut ended = Vec::new();
    for (session, source, text) in logs(acts) {
        let (Some(n), LogSource::System) = (session, source) else {
            continue;
        };
        if text.starts_with("exec started:") {
            started.push(n);
        } else {
            ended.push((n, text));
        }
    }
    (started, ended)
}

/// Issue 18: sessions still open when the guest went away got "exec
/// killed: its client left (SIGKILL sent)", which was not what happened (no
/// client left, no SIGKILL reached anybody). Now each open session gets one
/// `exec ended:` record saying the guest went away, its unfinished
/// character flushed first; a session already killed (its client left)
/// keeps its kill as its end; every start has an end.
#[test]
fn core_tap_sessions_open_when_the_guest_goes_get_an_end_record() {
    each_gen(|g| {
        let v = g.v();
        let mut h = g.harness(small());
        let mut all = Vec::new();
        for c in 1..=3 {
            all.extend(h.connect(c));
        }
        let id = |c: u64, k: u32| g.id(c as u32 - 1, k);
        all.extend(h.client(1, &exec_request(v, id(1, 1), false, 0)));
        all.extend(h.client(2, &exec_request(v, id(2, 1), false, 0)));
        all.extend(h.client(1, &exec_request(v, id(1, 2), true, 0)));
        all.extend(h.client(3, &exec_request(v, id(3, 1), false, 0)));
        all.extend(h.guest(&exited(v, id(1, 1), 0)));
        all.extend(h.disconnect(2));
        // Session 3 (a pty) printed half a euro sign.
        all.extend(h.guest(&stdout(v, id(1, 2), b"x\xe2\x82")));
        let gone = h.ev(Event::GuestClosed);
        all.extend(gone.iter().cloned());
        let tail = logs(&gone);
        assert_eq!(
            tail,
            vec![
                (Some(3), LogSource::Output, "\u{fffd}".into()),
                (
                    Some(3),
                    LogSource::System,
                    "exec ended: the guest went away before it exited".into()
                ),
                (
                    Some(4),
                    LogSource::System,
                    "exec ended: the guest went away before it exited".into()
                ),
            ]
        );
        let (started, ended) = starts_and_ends(&all);
        assert_eq!(started, [1, 2, 3, 4]);
        for n in started {
            let ends: Vec<&String> = ended.iter().filter(|e| e.0 == n).map(|e| &e.1).collect();
            assert_eq!(ends.len(), 1, "session {n}: {ends:?}");
        }
        assert!(ended.contains(&(2, "exec killed: its client left (SIGKILL sent)".into())));
    });
}

/// Found by the `core_events` fuzz target (issue 20's `inv_exec_log`):
/// guest bytes fed after `GuestClosed` ended a session a second time ("exec
/// ended by core.pong" after "the guest went away"). Once the guest is gone
/// nothing read is its: no frame, no record, no count.
#[test]
fn core_guest_bytes_after_the_guest_closed_end_nothing_again() {
    each_gen(|g| {
        let v = g.v();
        let mut h = g.harness(small());
        h.connect(1);
        let a = g.id(0, 1);
        h.client(1, &exec_request(v, a, false, 0));
        let gone = h.ev(Event::GuestClosed);
        assert_eq!(starts_and_ends(&gone).1.len(), 1, "{gone:?}");
        let before = h.relay.counters().guest_bytes_in;
        let mut late = stdout(v, a, b"late").to_vec();
        late.extend_from_slice(&exited(v, a, 0));
        let acts = h.guest(&late);
        assert!(acts.is_empty(), "{acts:?}");
        assert_eq!(h.relay.counters().guest_bytes_in, before);
    });
}

/// Issue 18: when the relay stopped, the sessions still open got no end
/// record. `Relay::stopping` (the shell calls it before closing exec.log)
/// gives each one, once.
#[test]
fn core_tap_sessions_open_when_the_relay_stops_get_an_end_record() {
    each_gen(|g| {
        let v = g.v();
        let mut h = two_clients(g);
        h.client(1, &exec_request(v, g.id(0, 1), false, 0));
        h.client(2, &exec_request(v, g.id(1, 1), false, 0));
        h.client(1, &exec_request(v, g.id(0, 2), false, 0));
        h.guest(&data(v, MsgType::ExecStderr, g.id(0, 2), b"\xc3"));
        h.guest(&exited(v, g.id(0, 1), 0));
        h.relay.stopping();
        let acts: Vec<Action> = std::iter::from_fn(|| h.relay.poll_action()).collect();
        assert_eq!(
            logs(&acts),
            vec![
                (
                    Some(2),
                    LogSource::System,
                    "exec ended: the relay stopped before it exited".into()
                ),
                (Some(3), LogSource::Stderr, "\u{fffd}".into()),
                (
                    Some(3),
                    LogSource::System,
                    "exec ended: the relay stopped before it exited".into()
                ),
            ]
        );
        assert_eq!(acts.len(), 3, "nothing but the records: {acts:?}");
        h.relay.stopping();
        assert_eq!(h.relay.poll_action(), None, "once");
    });
}

#[test]
fn core_log_sources_have_their_exec_log_names() {
    let names: Vec<_> = [
        LogSource::Stdout,
        LogSource::Stderr,
        LogSource::Output,
        LogSource::System,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(names, ["stdout", "stderr", "output", "system"]);
}
