//! `exec` as an operator meets it, through the built binary and real pipes: a
//! paused reader loses nothing, an early-closed pipe ends it quietly and kills
//! the session, a full buffer and a relay that closes it are explained, a
//! guest that is not ready yet is waited for, and errors name the path.
#![cfg(feature = "cli")]

mod cli_support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_support::*;

/// A relay that closes a client which stops reading within half a second:
/// without `exec`'s spool, any paused reader loses output here.
fn strict_server() -> Server {
    Server::start(&["--client-soft-budget", "64K", "--grace", "300ms"])
}

#[test]
fn cli_exec_paused_reader_gets_every_byte() {
    let server = strict_server();
    let mut child = server.exec(&[], &["head", "-c", "2000000", "/dev/zero"]);
    // Our reader pauses far past the relay's grace period.
    std::thread::sleep(Duration::from_secs(2));
    let mut stdout = child.stdout.take().unwrap();
    let mut all = Vec::new();
    stdout.read_to_end(&mut all).unwrap();
    let out = output_of(child);
    assert_eq!(all.len(), 2_000_000, "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !server.stderr().contains("slow consumer"),
        "{}",
        server.stderr()
    );
}

#[test]
fn cli_exec_early_closed_pipe_ends_quietly_and_kills_the_session() {
    let server = strict_server();
    // As a shell runs it: `exec -- seq ... | head -2`.
    let script = format!(
        "{BIN} exec --socket {} -- seq 1 999999937 | head -2",
        server.socket_arg()
    );
    let out = shell(&script);
    assert_eq!(text(&out.stdout), "1\n2\n");
    assert_eq!(text(&out.stderr), "", "no message, as with cat");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the pipeline's status is head's"
    );
    wait_until("seq to be killed", || !process_running("seq 1 999999937"));

    // Our own pipe, closed after two lines: exec reports 128 + SIGPIPE.
    let mut child = server.exec(&[], &["seq", "1", "999999938"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "1\n2\n");
    drop(lines);
    let out = output_of(child);
    assert_eq!(out.status.code(), Some(141));
    assert_eq!(text(&out.stderr), "");
    wait_until("seq to be killed", || !process_running("seq 1 999999938"));
}

#[test]
fn cli_exec_full_buffer_and_relay_close_are_explained() {
    let server = strict_server();
    let mut child = server.exec(
        &["--max-buffer", "1MiB"],
        &["head", "-c", "30000000", "/dev/zero"],
    );
    // Our reader pauses: the buffer fills, exec stops reading, the relay
    // closes it as a slow consumer. Then we read what exec held.
    wait_until("the relay to close exec", || {
        server.stderr().contains("slow consumer")
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut all = Vec::new();
    stdout.read_to_end(&mut all).unwrap();
    let out = output_of(child);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        all.len() >= 1 << 20 && all.len() < 30_000_000,
        "{}",
        all.len()
    );
    assert!(
        err.contains("stdout is not keeping up") && err.contains("--max-buffer"),
        "{err}"
    );
    assert!(
        err.contains(
            "closed by the relay as a slow consumer: our output backed up past --max-buffer 1 MiB"
        ) && err.contains("raise --max-buffer, or the relay's --grace"),
        "{err}"
    );
    assert!(!err.contains("mid-frame"), "{err}");
}

#[test]
fn cli_exec_waits_for_a_guest_that_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let guest = dir.path().join("guest.sock");
    let mut serve = Command::new(BIN)
        .args([
            "serve",
            "--socket",
            socket.to_str().unwrap(),
            "--guest-listen",
        ])
        .arg(&guest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_path(&guest);
    let sock = socket.to_str().unwrap();

    // No guest yet: exec says it waits, then gives up at --timeout.
    let out = run(
        &["exec", "--socket", sock, "--timeout", "1s", "--", "true"],
        b"",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("waiting for the guest agent"), "{err}");
    assert!(
        err.contains(&format!(
            "the guest agent behind {sock} was not ready within 1s"
        )),
        "{err}"
    );

    // The guest turns up while exec waits: the command runs.
    let exec = Command::new(BIN)
        .args([
            "exec",
            "--socket",
            sock,
            "--timeout",
            "60s",
            "--",
            "echo",
            "late",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Past exec's 2 s notice.
    std::thread::sleep(Duration::from_millis(2_500));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stream = rt
        .block_on(tokio::net::UnixStream::connect(&guest))
        .expect("connect as the guest");
    rt.spawn(agent_relay::demo_agent::run_demo_agent(stream));
    let out = output_of(exec);
    assert_eq!(text(&out.stdout), "late\n", "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("waiting for the guest agent"));
    kill("TERM", serve.id());
    wait_exit(&mut serve);
}

#[test]
fn cli_exec_errors_name_the_socket_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.sock");
    let out = run(
        &["exec", "--socket", missing.to_str().unwrap(), "--", "true"],
        b"",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "cannot connect to the relay at {}",
            missing.display()
        )) && err.contains("no such file or directory")
            && err.contains("is `agent-relay serve` running"),
        "{err}"
    );
    assert!(!err.contains("os error") && !err.contains("Io("), "{err}");

    // A stale socket: nothing listening.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = run(
        &["exec", "--socket", stale.to_str().unwrap(), "--", "true"],
        b"",
    );
    let err = text(&out.stderr);
    assert!(err.contains("nothing is listening there"), "{err}");

    let out = run(
        &["exec", "--socket", "x", "--timeout", "soon", "--", "true"],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid duration \"soon\""));
}

#[test]
fn cli_exec_killed_client_takes_its_whole_process_group_along() {
    let server = Server::start(&[]);
    // The shell forks `sleep` (it has more to do after it).
    let mut child = server.exec(&[], &["sh", "-c", "sleep 41.9; true"]);
    wait_until("sleep to start", || process_running("sleep 41.9"));
    // The client vanishes: the relay kills its session, the demo agent the
    // session's whole process group.
    kill("KILL", child.id());
    wait_exit(&mut child);
    wait_until("sleep to be killed with its shell", || {
        !process_running("sleep 41.9")
    });
}

#[test]
fn cli_exec_streams_stdin_and_output_at_once_without_being_cut() {
    // The command writes 30 MB before it reads any of its 20 MB of stdin:
    // exec's stdin writes wait (the guest holds 1 MiB of unread stdin at
    // most) while the output pours in, and exec must keep reading it. An
    // exec that stopped reading would be closed as a slow consumer once the
    // 300 ms grace runs out. One that keeps reading is never closed, however
    // fast the guest writes: past the 64 KiB budget the relay stops reading
    // the guest (rule `backpressure_bounded_wait`; before it, with the
    // default 8 MiB hard cap, exec was cut in 1 run of 4 to 7 here).
    let server = Server::start(&["--client-soft-budget", "64K", "--grace", "300ms"]);
    let script = format!(
        "head -c 20000000 /dev/zero | {BIN} exec --socket {} -- sh -c 'head -c 30000000 /dev/zero; cat >/dev/null' | wc -c",
        server.socket_arg()
    );
    let out = shell(&script);
    assert_eq!(
        text(&out.stdout).trim(),
        "30000000",
        "{}",
        text(&out.stderr)
    );
    assert!(
        !server.stderr().contains("slow consumer"),
        "{}",
        server.stderr()
    );
}

#[test]
fn cli_exec_third_interrupt_leaves_even_when_the_guest_is_stalled() {
    // `sleep` reads no stdin, so the demo agent stops reading its channel:
    // signals cannot reach it until `sleep` ends. Ctrl-C three times leaves.
    let server = Server::start(&[]);
    let script = format!(
        "head -c 50000000 /dev/zero | {BIN} exec --socket {} -- sleep 6.25",
        server.socket_arg()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("sleep to start", || process_running("sleep 6.25"));
    // Let the stdin back up until the legacy agent stalls (1 MiB held for
    // a process that does not read it): before that, the first Ctrl-C's
    // signal still reaches `sleep`, which then exits 130 on its own.
    std::thread::sleep(Duration::from_secs(1));
    let exec_pid = || {
        let out = Command::new("pgrep")
            .args(["-f", "-P", &child.id().to_string(), "agent-relay exec"])
            .output()
            .unwrap();
        text(&out.stdout).trim().parse::<u32>().ok()
    };
    let pid = {
        let mut pid = None;
        wait_until("exec's pid", || {
            pid = exec_pid();
            pid.is_some()
        });
        pid.unwrap()
    };
    // Signals a moment apart (tokio folds signals that arrive between two
    // looks into one), until exec leaves.
    let mut status = None;
    wait_until("exec to leave after interrupts", || {
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(150));
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted; the relay kills the session"),
        "{err}"
    );
}

/// Rule `backpressure_bounded_wait`, the promise users rely on: a reader
/// that keeps reading gets everything, however fast the guest writes. A
/// gigabyte at memory speed to `wc -c`, twice in each generation, with the
/// default limits: never cut, no slow-consumer close, and the relay paused
/// the guest instead of queueing without bound.
#[test]
fn cli_exec_a_gigabyte_to_wc_is_never_cut_in_either_generation() {
    for protocol in ["legacy", "current"] {
        let server = Server::start_without_log(&["--protocol", protocol]);
        for run in 0..2 {
            let script = format!(
                "{BIN} exec --socket {} -- head -c 1073741824 /dev/zero | wc -c",
                server.socket_arg()
            );
            let out = shell(&script);
            assert_eq!(
                text(&out.stdout).trim(),
                "1073741824",
                "{protocol} run {run}: {}",
                text(&out.stderr)
            );
        }
        let log = server.stderr();
        assert!(!log.contains("slow consumer"), "{protocol}: {log}");
    }
}

/// A ready relay under load gives no "waiting" notice: 40 execs at once
/// (the notice used to come after 500 ms, and showed on most of 300
/// concurrent clients of a relay that was ready all along).
#[test]
fn cli_exec_no_waiting_notice_from_a_ready_relay_under_load() {
    let server = Server::start_without_log(&["--max-clients", "64"]);
    let children: Vec<_> = (0..40).map(|_| server.exec(&[], &["true"])).collect();
    for child in children {
        let out = output_of(child);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert!(!err.contains("waiting for the guest agent"), "{err}");
    }
}

/// `--socket` naming a regular file, a directory, or a path too long for a
/// socket address says so, instead of "connection refused" or "invalid
/// input parameter".
#[test]
fn cli_exec_socket_path_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let long = format!("/tmp/{}", "x".repeat(110));
    let cases = [
        (
            file.to_str().unwrap().to_owned(),
            "is a regular file, not the relay's socket",
        ),
        (
            dir.path().to_str().unwrap().to_owned(),
            "is a directory, not the relay's socket",
        ),
        (
            long.clone(),
            "is 115 bytes long; a Unix socket path holds at most 107 bytes",
        ),
    ];
    for (path, needle) in cases {
        let out = run(&["exec", "--socket", &path, "--", "true"], b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{path}: {err}");
    }
    let out = run(&["serve", "--demo-agent", "--socket", &long], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("a Unix socket path holds at most 107 bytes"),
        "{err}"
    );
}

/// `exec` with its stdout closed fails as `cat >&-` does (it exited 0 and
/// its output went nowhere); `--max-buffer 0` is refused by name (it was
/// reported as "1 bytes").
#[test]
fn cli_exec_closed_stdout_and_zero_buffer_fail() {
    let server = Server::start_without_log(&[]);
    let out = shell(&format!(
        "{BIN} exec --socket {} -- echo hi >&-",
        server.socket_arg()
    ));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("standard output: bad file descriptor"),
        "{err}"
    );
    let out = shell(&format!(
        "{BIN} exec --socket {} -- echo hi >/dev/null",
        server.socket_arg()
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(
        &[
            "exec",
            "--socket",
            server.socket_arg(),
            "--max-buffer",
            "0",
            "--",
            "true",
        ],
        b"",
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("size \"0\" is 0: give at least 1 byte"),
        "{err}"
    );
}
