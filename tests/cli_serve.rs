//! `serve` as an operator meets it, through the built binary: signals stop
//! it cleanly with the documented exit status, start-up failures and
//! impossible limits are refused up front with the value named, no path is
//! clobbered, and exec.log is private whatever the umask.
#![cfg(feature = "cli")]

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use agent_relay::cli::{Cli, Command as Sub, serve};
use agent_relay::core::Config;
use clap::Parser;
use cli_support::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn last_log_line(dir: &std::path::Path) -> String {
    let log = std::fs::read_to_string(dir.join("exec.log")).expect("exec.log");
    log.lines().last().unwrap_or_default().to_owned()
}

#[test]
fn cli_serve_stops_cleanly_on_sigint_sigterm_and_sighup() {
    for signal in ["INT", "TERM", "HUP"] {
        let mut server = Server::start(&[]);
        // A client in the middle of a session when the stop comes.
        let sleep = format!("30.{}", signal.len() * 7);
        let client = server.exec(&[], &["sleep", &sleep]);
        let running = format!("sleep {sleep}");
        wait_until("the session to start", || process_running(&running));
        let status = server.stop(signal);
        assert_eq!(status.code(), Some(0), "SIG{signal}: {}", server.stderr());
        assert!(!server.socket.exists(), "SIG{signal}: socket left behind");
        assert!(
            last_log_line(&server.log_dir()).contains("--- sandbox stopped ---"),
            "SIG{signal}: no stop marker"
        );
        let out = output_of(client);
        assert_eq!(out.status.code(), Some(1), "SIG{signal}");
        let err = text(&out.stderr);
        assert!(
            err.contains("the relay closed the connection"),
            "SIG{signal}: {err}"
        );
        // The demo agent killed what it started before serve exited.
        assert!(
            !process_running(&running),
            "SIG{signal}: {running} left running"
        );
    }
}

#[test]
fn cli_serve_exits_4_when_the_guest_channel_closes() {
    let dir = tempfile::tempdir().unwrap();
    let guest = dir.path().join("guest.sock");
    let socket = dir.path().join("relay.sock");
    let listener = std::os::unix::net::UnixListener::bind(&guest).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--guest-unix"])
        .arg(&guest)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The guest connects, then the VM goes away.
    let (conn, _) = listener.accept().unwrap();
    wait_for_path(&socket);
    drop(conn);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(4), "{status}");
    assert!(!socket.exists(), "socket left behind");
}

#[test]
fn cli_serve_startup_failures_exit_3_name_the_cause_and_leave_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let missing = dir.path().join("no-guest.sock");
    let out = run(
        &[
            "serve",
            "--socket",
            socket.to_str().unwrap(),
            "--guest-unix",
            missing.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("--guest-unix {}", missing.display()))
            && err.contains("no such file or directory"),
        "{err}"
    );
    assert!(!err.contains("os error") && !err.contains("Io("), "{err}");
    assert!(!socket.exists(), "socket left behind");

    // Two relays on one exec.log directory: the second is refused.
    let mut first = Server::start(&[]);
    let log = first.log_dir();
    let other = dir.path().join("second.sock");
    let out = run(
        &[
            "serve",
            "--demo-agent",
            "--socket",
            other.to_str().unwrap(),
            "--exec-log",
            log.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains(&log.display().to_string())
            && err.contains("two relays cannot share one exec.log directory")
            && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    assert!(!other.exists(), "the refused relay left its socket behind");
    assert_eq!(first.stop("TERM").code(), Some(0));
}

#[test]
fn cli_serve_refuses_impossible_limits_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let sock = socket.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (
            &["--client-hard-cap", "1MiB"],
            "--client-hard-cap 1 MiB is below the largest frame",
        ),
        (
            &["--client-soft-budget", "16MiB"],
            "--client-hard-cap 8 MiB is below --client-soft-budget 16 MiB plus the largest frame and one guest read",
        ),
        (
            &["--global-cap", "4MiB"],
            "--global-cap 4 MiB is below twice the largest frame",
        ),
        (
            &["--global-cap", "9MiB", "--client-hard-cap", "10MiB"],
            "--client-hard-cap 10 MiB exceeds --global-cap 9 MiB",
        ),
        (&["--grace", "1.5s"], "invalid duration \"1.5s\""),
        (&["--client-hard-cap", "3 MB"], "invalid size \"3 MB\""),
        (&["--max-clients", "4294967295"], "4294967295"),
        (
            &["--handshake", "bounds", "--max-clients", "1024"],
            "--max-clients 1024 is too many for --handshake bounds (at most 1023)",
        ),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["serve", "--demo-agent", "--socket", sock];
        args.extend_from_slice(flags);
        let out = run(&args, b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
        assert!(!socket.exists(), "{flags:?} left the socket behind");
    }
    let help = text(&run(&["serve", "--help"], b"").stdout);
    assert!(
        help.contains("1 to 4096") && help.contains("1023"),
        "{help}"
    );
}

#[test]
fn cli_serve_default_limits_are_the_cores_defaults() {
    let cli =
        Cli::try_parse_from(["agent-relay", "serve", "--demo-agent", "--socket", "s"]).unwrap();
    let Sub::Serve(args) = cli.command else {
        panic!("not serve")
    };
    let settings = serve::settings(&args).unwrap();
    assert_eq!(settings.config, Config::default());
    let cli = Cli::try_parse_from([
        "agent-relay",
        "serve",
        "--demo-agent",
        "--socket",
        "s",
        "--handshake",
        "bounds",
        "--exec-log",
        "d",
    ])
    .unwrap();
    let Sub::Serve(args) = cli.command else {
        panic!("not serve")
    };
    let settings = serve::settings(&args).unwrap();
    // The bounds form applies to a legacy guest; the generation is still
    // the guest's to tell.
    assert_eq!(
        settings.config,
        Config {
            protocol: agent_relay::core::Protocol::Auto,
            ..Config::bounds_handshake()
        }
    );
    assert_eq!(
        settings.exec_log,
        Some(agent_relay::shell::exec_log::ExecLogOptions::new("d"))
    );
}

#[test]
fn cli_serve_limit_flags_reach_the_relay() {
    // A raw client that never reads, on a command writing 25 KB every 50 ms:
    // with a 64 KiB soft budget and a 300 ms grace it is closed within a
    // second (the defaults would take 5 s).
    use std::io::{Read, Write};
    let server = Server::start(&["--client-soft-budget", "64K", "--grace", "300ms"]);
    let mut raw = std::os::unix::net::UnixStream::connect(&server.socket).unwrap();
    let mut offset = [0u8; 4];
    raw.read_exact(&mut offset).unwrap();
    let id = u32::from_be_bytes(offset) + 1;
    let req = agent_relay::wire::payload::ExecRequest::new("sh").args([
        "-c",
        "while :; do head -c 25000 /dev/zero; sleep 0.05; done",
    ]);
    let frame =
        agent_relay::wire::payload::build_frame(agent_relay::wire::MsgType::ExecRequest, id, &req);
    raw.write_all(frame.as_bytes()).unwrap();
    let started = std::time::Instant::now();
    wait_until("the slow consumer to be closed", || {
        server.stderr().contains("slow consumer")
    });
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "closed only after {:?}",
        started.elapsed()
    );
    assert!(
        server
            .stderr()
            .contains("over its soft budget for a whole grace period")
    );
}

#[test]
fn cli_serve_guest_listen_follows_the_socket_rules() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let guest = dir.path().join("guest.sock");
    let serve = |guest: &std::path::Path| {
        Command::new(BIN)
            .args([
                "serve",
                "--socket",
                socket.to_str().unwrap(),
                "--guest-listen",
            ])
            .arg(guest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // A regular file is never deleted.
    std::fs::write(&guest, b"precious").unwrap();
    let out = output_of(serve(&guest));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("is not a socket"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&guest).unwrap(), b"precious");
    assert!(!socket.exists());
    std::fs::remove_file(&guest).unwrap();

    // A live socket (another relay's, a VM's) is not taken over.
    let live = std::os::unix::net::UnixListener::bind(&guest).unwrap();
    let out = output_of(serve(&guest));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("another process is listening there"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&guest).is_ok(),
        "the live socket was taken"
    );
    drop(live);

    // The stale one left behind is replaced, owner-only, and removed when a
    // signal stops the relay while it waits.
    // (A socket bound here gets 0777 minus the umask, never 0600: the mode
    // tells the relay's socket from the stale one; inode numbers get reused.)
    assert_ne!(mode(&guest), 0o600);
    let mut child = serve(&guest);
    wait_until("the guest socket to be replaced, owner-only", || {
        std::fs::metadata(&guest).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
    });
    kill("TERM", child.id());
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    assert!(!guest.exists(), "guest socket left behind");
    assert!(!socket.exists(), "client socket left behind");
}

#[test]
fn cli_serve_exec_log_is_owner_only_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    // The socket's missing parents are created owner-only too (with umask
    // 000 they were world-writable: anyone could swap the socket).
    let socket = dir.path().join("run").join("relay").join("relay.sock");
    let log = dir.path().join("deep").join("log");
    let script = format!(
        "umask 000; exec {BIN} serve --demo-agent --socket {} --exec-log {}",
        socket.display(),
        log.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_path(&socket);
    wait_until("exec.log to be written", || {
        std::fs::read_to_string(log.join("exec.log")).is_ok_and(|l| l.contains("sandbox started"))
    });
    assert_eq!(mode(&log), 0o700);
    assert_eq!(mode(&log.join("exec.log")), 0o600);
    assert_eq!(mode(&log.join("exec.log.lock")), 0o600);
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&dir.path().join("run")), 0o700);
    assert_eq!(mode(&dir.path().join("run").join("relay")), 0o700);
    kill("TERM", child.id());
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

/// `--guest-bootstrap`: a file that cannot be read, is not JSON, has a
/// field 0.7.13's bootstrap does not, or unusable exec limits is refused at
/// start (exit 2) with its path and the cause, before anything is bound.
#[test]
fn cli_serve_refuses_a_bad_guest_bootstrap_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let guest = dir.path().join("guest.sock");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let missing = dir.path().join("missing.json").to_str().unwrap().to_owned();
    let cases = [
        (
            missing.clone(),
            "cannot read it: no such file or directory".to_owned(),
        ),
        (file("a.json", "{"), "not a guest bootstrap".to_owned()),
        (
            file("b.json", r#"{"defualt_env": []}"#),
            "unknown field `defualt_env`".to_owned(),
        ),
        (
            file("c.json", r#"{"exec_limits": {"max_executions": 0}}"#),
            "exec_limits: max_executions is 0".to_owned(),
        ),
    ];
    for (path, needle) in cases {
        let args = [
            "serve",
            "--guest-unix",
            guest.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--guest-bootstrap",
            &path,
        ];
        let out = run(&args, b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains(&format!("--guest-bootstrap {path}")), "{err}");
        assert!(err.contains(&needle), "{path}: {err}");
        assert!(!socket.exists());
    }
}

/// Stopping `serve` leaves no process of the demo agent's behind, even one
/// whose session blocks the legacy agent: `sleep` never reads the stdin
/// `exec` pours in from /dev/zero, so the agent stops reading its channel
/// and never sees it close; serve gives it three seconds, then drops it,
/// which kills every process group it started (before: `sleep` stayed with
/// PPID 1).
#[test]
fn cli_serve_stop_leaves_no_process_of_a_blocked_legacy_agent() {
    let mut server = Server::start(&["--protocol", "legacy"]);
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let client = spawn_exec(server.socket_arg(), &[], &["sleep", "60.75"], zero.into());
    wait_until("the session to start", || process_running("sleep 60.75"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = server.stop("TERM");
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let _ = output_of(client);
    assert!(!process_running("sleep 60.75"), "sleep 60.75 left running");
}

/// Issue 18's rough edges of serve's command line: negative values reach
/// our parsers (not clap's "unexpected argument '-1'"), exec.log flags
/// without --exec-log, the guest's socket on the clients' path and
/// --demo-protocol with a real guest are refused by name, and the usage
/// printed is serve's own.
#[test]
fn cli_serve_flag_mistakes_are_named_with_serves_usage() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let sock = socket.to_str().unwrap();
    let guest = dir.path().join("guest.sock");
    let g = guest.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--demo-agent", "--grace", "-1"],
            "duration \"-1\" is negative",
        ),
        (
            &["--demo-agent", "--client-soft-budget", "-1"],
            "size \"-1\" is negative",
        ),
        (
            &["--demo-agent", "--exec-log-keep", "5"],
            "--exec-log-keep shapes exec.log, which is only written with --exec-log DIR",
        ),
        (&["--guest-listen", sock], "is also --socket's path"),
        (
            &["--guest-unix", g, "--demo-protocol", "current"],
            "--demo-protocol only applies to the built-in demo agent (--demo-agent)",
        ),
        (&["--demo-agent", "--max-clients", "-3"], "-3"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["serve", "--socket", sock];
        args.extend_from_slice(flags);
        let out = run(&args, b"");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
        // Our own checks print serve's usage (clap's own print a pointer to
        // --help).
        assert!(
            err.contains("Usage: agent-relay serve") || err.contains("try '--help'"),
            "{flags:?}: {err}"
        );
        assert!(!err.contains("agent-relay <COMMAND>"), "{flags:?}: {err}");
        assert!(!socket.exists());
    }
}

/// serve's last words are a line a person reads, not a 40-field debug
/// dump; `--max-clients` above what a current guest takes is a warning
/// that says so; the help no longer says "protocol v1".
#[test]
fn cli_serve_says_what_it_did_and_what_it_cut() {
    let mut server = Server::start(&["--max-clients", "4096"]);
    let out = output_of(server.exec(&[], &["true"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.stop("TERM").code(), Some(0));
    let log = server.stderr();
    assert!(
        log.contains("relay stopped: ") && log.contains(" to the guest; 0 refused"),
        "{log}"
    );
    assert!(!log.contains("Counters {"), "{log}");
    assert!(
        log.contains("--max-clients 4096: a current-generation guest gets at most 128 clients"),
        "{log}"
    );
    let help = text(&run(&["--help"], b"").stdout);
    assert!(!help.contains("protocol v1"), "{help}");
    let help = text(&run(&["exec", "--help"], b"").stdout);
    assert!(help.contains("130") && help.contains("Ctrl-C"), "{help}");
}

/// Out of file descriptors, serve retries accepting every 50 ms: it says so
/// at the first failure and then once per 5 s with a count, not 20 times a
/// second (118 lines in 6 s before), and says when accepts work again.
#[test]
fn cli_serve_failing_accepts_are_logged_once_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("relay.sock");
    let err_path = dir.path().join("serve.stderr");
    let script = format!(
        "ulimit -n 24; exec {BIN} serve --demo-agent --socket {} 2>{}",
        socket.display(),
        err_path.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Killed and reaped whatever happens below (a failed assertion too).
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reaped(child);
    wait_for_path(&socket);
    // Hold connections until serve runs out of descriptors.
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Ok(c) = std::os::unix::net::UnixStream::connect(&socket) {
            held.push(c);
        }
    }
    let log = || std::fs::read_to_string(&err_path).unwrap_or_default();
    wait_until("a failed accept", || log().contains("accept failed"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let failed = log().matches("accept failed").count();
    assert_eq!(failed, 1, "{}", log());
    drop(held);
    wait_until("accepts again", || log().contains("accepting again after"));
    kill("TERM", child.0.id());
    assert_eq!(wait_exit(&mut child.0).code(), Some(0), "{}", log());
}
