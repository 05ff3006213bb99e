//! Helpers for the tests that drive the built binary: a `serve` child on a
//! temporary socket, waiting with generous deadlines, signals sent with
//! `kill(1)`, and a look at /proc for processes left behind.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-relay");

/// Upper bound for anything that should happen promptly (the machine is shared).
pub const PROMPT: Duration = Duration::from_secs(20);

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `done` every 10 ms until it holds; panics with `what` after `PROMPT`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PROMPT;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn wait_for_path(path: &Path) {
    wait_until(&format!("{} to appear", path.display()), || path.exists());
}

/// Sends `signal` (a name such as `TERM`) to `pid`.
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Waits for `child` to exit.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait_until("the process to exit", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.expect("exited")
}

/// Waits for `child` and collects what it printed.
pub fn output_of(mut child: Child) -> Output {
    let status = wait_exit(&mut child);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut stdout).expect("read stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut stderr).expect("read stderr");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs `script` with `sh -c` (no stdin) and collects what it printed; the
/// output must be small (it is read once the shell exits).
pub fn shell(script: &str) -> Output {
    output_of(
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh"),
    )
}

/// `agent-relay exec --socket SOCKET EXTRA... -- COMMAND...` with the given
/// stdin and piped stdout and stderr.
pub fn spawn_exec(socket: &str, extra: &[&str], command: &[&str], stdin: Stdio) -> Child {
    Command::new(BIN)
        .args(["exec", "--socket", socket])
        .args(extra)
        .arg("--")
        .args(command)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exec")
}

/// Runs the binary to completion with `stdin`.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
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

/// Whether a process whose command line starts with `needle` (arguments
/// joined by spaces) is running.
pub fn process_running(needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok).any(|entry| {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // A zombie has been killed already; only its parent has not looked yet.
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        !zombie && text(&cmdline).replace('\0', " ").starts_with(needle)
    })
}

/// `serve` running as a child on a socket in a temporary directory; killed
/// on drop if still running.
pub struct Server {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// `serve --demo-agent --exec-log DIR/log` plus `extra` arguments, with
    /// stderr kept in a file (a pipe nobody reads could fill up and stall it).
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(extra, true)
    }

    /// `serve --demo-agent` without exec.log.
    pub fn start_without_log(extra: &[&str]) -> Server {
        Server::start_with(extra, false)
    }

    fn start_with(extra: &[&str], exec_log: bool) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("relay.sock");
        let stderr = std::fs::File::create(dir.path().join("serve.stderr")).expect("stderr file");
        let mut log = vec![];
        if exec_log {
            log.push("--exec-log".into());
            log.push(dir.path().join("log").into_os_string());
        }
        let child = Command::new(BIN)
            .args(["serve", "--demo-agent", "--socket"])
            .arg(&socket)
            .args(log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn serve");
        wait_for_path(&socket);
        Server { child, socket, dir }
    }

    pub fn socket_arg(&self) -> &str {
        self.socket.to_str().expect("utf-8 path")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// An `exec` child with no stdin and piped stdout and stderr.
    pub fn exec(&self, extra: &[&str], command: &[&str]) -> Child {
        spawn_exec(self.socket_arg(), extra, command, Stdio::null())
    }

    /// Sends `signal` and waits for the exit status.
    pub fn stop(&mut self, signal: &str) -> ExitStatus {
        kill(signal, self.child.id());
        wait_exit(&mut self.child)
    }

    /// What serve printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.stderr")).unwrap_or_default()
    }
}

impl Drop for Server {
    /// SIGTERM first, so the demo agent ends every process it started (a
    /// SIGKILL would orphan a session the relay had not killed yet); SIGKILL
    /// only if serve has not exited within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
