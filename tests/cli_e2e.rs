//! The built binary end to end: `demo`, `serve --demo-agent` with `exec`
//! clients, and `logs` over a directory with rotations.
#![cfg(feature = "cli")]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agent-relay");

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent-relay");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin).expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cli_demo_exits_zero_and_shows_each_client() {
    let out = run(&["demo"], b"");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for needle in [
        "stand-in for the real guest agent",
        "\"got hello relay\\n\"",
        "every line present, in order",
        "stderr      \"to stderr\\n\"",
        "exited 3",
        "a shell would exit 127",
        "demo agent reports exit 137",
        "--- sandbox started ---",
        "--- sandbox stopped ---",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let kills = stdout
        .lines()
        .find(|l| l.contains("kills sent"))
        .expect("kills counter");
    assert!(kills.trim_end().ends_with(" 1"), "{kills}");
}

/// `serve --demo-agent` on a temporary socket, stopped with SIGTERM on drop.
struct Server {
    child: Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("relay.sock");
        let log = dir.path().join("log");
        let child = Command::new(BIN)
            .args(["serve", "--demo-agent", "--socket"])
            .arg(&socket)
            .arg("--exec-log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let until = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < until, "serve never created its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            child,
            socket,
            _dir: dir,
        }
    }

    fn exec(&self, command: &[&str], stdin: &[u8]) -> Output {
        let socket = self.socket.to_str().expect("utf-8 path");
        let mut args = vec!["exec", "--socket", socket, "--"];
        args.extend_from_slice(command);
        run(&args, stdin)
    }

    fn log_dir(&self) -> std::path::PathBuf {
        self.socket.with_file_name("log")
    }

    /// SIGTERM, then the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < until, "serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cli_serve_demo_agent_exec_exit_codes() {
    let mut server = Server::start();

    let out = server.exec(&["echo", "hi"], b"");
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));

    let out = server.exec(&["false"], b"");
    assert_eq!(out.status.code(), Some(1));

    let out = server.exec(&["/nonexistent"], b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("/nonexistent"));

    let out = server.exec(&["sh", "-c", "cat; echo oops >&2; exit 5"], b"abc\n");
    assert_eq!(text(&out.stdout), "abc\n");
    assert_eq!(text(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(5));

    let status = server.stop();
    assert!(status.success(), "serve exited with {status}");
    assert!(!server.socket.exists(), "socket file left behind");

    // exec.log holds the output, and `logs` reads it back.
    let log_dir = server.log_dir();
    let log = run(&["logs", log_dir.to_str().expect("utf-8")], b"");
    let shown = text(&log.stdout);
    assert!(log.status.success());
    assert!(shown.contains("stdout] hi"), "{shown}");
    assert!(shown.contains("stderr] oops"), "{shown}");
    assert!(shown.contains("--- sandbox stopped ---"), "{shown}");
}

fn write_lines(path: &Path, lines: &[&str]) {
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(path, body).expect("write log");
}

#[test]
fn cli_logs_reads_rotations_oldest_first_and_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = |t: &str, s: &str, d: &str, id: Option<u64>| match id {
        Some(id) => {
            format!(r#"{{"t":"2026-11-25T12:00:0{t}.000Z","s":"{s}","d":"{d}","id":{id}}}"#)
        }
        None => format!(r#"{{"t":"2026-11-25T12:00:0{t}.000Z","s":"{s}","d":"{d}"}}"#),
    };
    write_lines(
        &dir.path().join("exec.log.2"),
        &[&rec("1", "system", "--- sandbox started ---", None)],
    );
    write_lines(
        &dir.path().join("exec.log.1"),
        &[&rec("2", "stdout", "first\\n", Some(1))],
    );
    write_lines(
        &dir.path().join("exec.log"),
        &[
            &rec("3", "stderr", "warn\\n", Some(1)),
            &rec("4", "output", "tty", Some(2)),
        ],
    );
    let path = dir.path().to_str().expect("utf-8");
    let out = run(&["logs", path], b"");
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "2026-11-25T12:00:01.000Z [system] --- sandbox started ---\n\
         12:00:02.000Z [1 stdout] first\n\
         12:00:03.000Z [1 stderr] warn\n\
         12:00:04.000Z [2 output] tty\n"
    );
    let out = run(&["logs", path, "--json", "--source", "stderr"], b"");
    assert_eq!(
        text(&out.stdout),
        format!("{}\n", rec("3", "stderr", "warn\\n", Some(1)))
    );
}

/// Waits for `path` to appear.
fn wait_for(path: &Path) {
    let until = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn serve_with_guest(flag: &str, guest: &Path, socket: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", flag])
        .arg(guest)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve")
}

fn exec_echo(socket: &Path) -> Output {
    let socket = socket.to_str().expect("utf-8");
    run(
        &["exec", "--socket", socket, "--", "echo", "via", "guest"],
        b"",
    )
}

#[test]
fn cli_serve_guest_listen_and_guest_unix() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");

    // --guest-listen: the relay waits; our guest (the demo agent) connects.
    let guest = dir.path().join("guest-in.sock");
    let socket = dir.path().join("a.sock");
    let mut child = serve_with_guest("--guest-listen", &guest, &socket);
    wait_for(&guest);
    let stream = rt
        .block_on(tokio::net::UnixStream::connect(&guest))
        .expect("connect as guest");
    rt.spawn(agent_relay::demo_agent::run_demo_agent(stream));
    wait_for(&socket);
    let out = exec_echo(&socket);
    assert_eq!(text(&out.stdout), "via guest\n", "{}", text(&out.stderr));
    let _ = child.kill();
    let _ = child.wait();

    // --guest-unix: the guest listens (a VM chardev socket); the relay connects.
    let guest = dir.path().join("guest-out.sock");
    let socket = dir.path().join("b.sock");
    let listener = {
        let _guard = rt.enter();
        tokio::net::UnixListener::bind(&guest).expect("bind guest")
    };
    rt.spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            let _ = agent_relay::demo_agent::run_demo_agent(stream).await;
        }
    });
    let mut child = serve_with_guest("--guest-unix", &guest, &socket);
    wait_for(&socket);
    let out = exec_echo(&socket);
    assert_eq!(text(&out.stdout), "via guest\n", "{}", text(&out.stderr));
    let _ = child.kill();
    let _ = child.wait();
}

/// `--handshake bounds` serves the newer SDK layout (`exec` reads either form),
/// and `serve` exits on its own once the guest channel closes (status 4).
#[test]
fn cli_serve_bounds_handshake_and_exit_on_guest_close() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = dir.path().join("guest.sock");
    let socket = dir.path().join("relay.sock");
    let listener = {
        let _guard = rt.enter();
        tokio::net::UnixListener::bind(&guest).expect("bind guest")
    };
    let agent = rt.spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            let _ = agent_relay::demo_agent::run_demo_agent(stream).await;
        }
    });
    let mut child = Command::new(BIN)
        .args(["serve", "--handshake", "bounds", "--guest-unix"])
        .arg(&guest)
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    wait_for(&socket);
    let out = exec_echo(&socket);
    assert_eq!(text(&out.stdout), "via guest\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    // The VM goes away: the guest stream closes.
    agent.abort();
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < until, "serve kept running without a guest");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(4), "the guest channel closed: {status}");
    assert!(!socket.exists(), "socket file left behind");
}
