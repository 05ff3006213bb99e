//! The real guest agent, `microsandbox-agentd 0.7.13`, as a sandboxed host
//! process for integration tests: its agent loop (`agent::run`) on one end
//! of a socketpair, the test's relay on the other.
//!
//! ```ignore
//! mod agentd_support;
//! use agentd_support::{Agentd, AgentdOptions};
//!
//! let (agentd, port) = Agentd::spawn(AgentdOptions::relay())?;
//! port.set_nonblocking(true)?;
//! let port = tokio::net::UnixStream::from_std(port)?;
//! let shell = Shell::new(&sock, GuestPort::stream(port));
//! // ... the relay sends core.bootstrap first (BootstrapBy::Relay) ...
//! assert_eq!(agentd.loop_error(), None); // before the relay's end closes
//! ```
//!
//! Process layout (see `roles`): test process -> launcher (a re-exec of the
//! test binary; it unshares the PID namespace of its children) -> init (PID
//! 1 there) -> agentd (PID 2; capabilities CAP_SYS_TIME, CAP_SYS_BOOT,
//! CAP_SYS_MODULE and CAP_SYS_ADMIN dropped from every set, the bounding set
//! included; a fresh temporary directory as working directory and HOME; an
//! environment of HOME, PATH=/usr/bin:/bin and the bootstrap's
//! `default_env` only). Init ends
//! the namespace, and with it agentd and everything agentd started, when
//! agentd exits, when the test's end of the socket hangs up (agentd itself
//! would keep reading an ended stream when it is not PID 1), when agentd
//! asks PID 1 to power off after `core.shutdown`, or after
//! [`AgentdOptions::max_lifetime`]. Every process dies with its parent
//! (`PR_SET_PDEATHSIG`), the launcher's parent being a thread that lives as
//! long as the test process; dropping [`Agentd`] kills and reaps the whole
//! tree, and returns only once no process of it is left.
//!
//! What agentd does here that a test should know:
//! - With `exec_limits` (0.7.13's launcher default) and a request of
//!   generation 10, `core.exec.exited` waits until the host has acknowledged
//!   all output (`core.exec.output.ack`, cumulative bytes plus 256 a chunk).
//! - Once the relay's end is closed, agentd may still try to write before
//!   init ends it, and die of `Broken pipe` ("agent loop error"): check
//!   [`Agentd::loop_error`] before closing, or accept that one after.
//! - It prints "checkpoint workload freezer unavailable: ..." at start (not
//!   PID 1), and "clock: failed to sync realtime clock: Operation not
//!   permitted" for a `core.clock.sync` more than 100 ms off.
//!
//! The role processes run the entry test [`agentd_support_entry`], which
//! returns at once in an ordinary run. Every test binary that declares
//! `mod agentd_support;` has it.
#![allow(dead_code)]

mod roles;
mod sys;
pub mod wire;

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

pub use msp7::bootstrap::GuestBootstrap;
pub use msp7::exec::ExecLimits;
use msp7::message::{Message, MessageType};

pub use sys::{DROPPED_CAPS, PidNs, pids_with_arg, status_field};

/// The environment variable that selects a role in the entry test.
const ROLE_VAR: &str = "AGENTD_HARNESS_ROLE";
const TOKEN_VAR: &str = "AGENTD_HARNESS_TOKEN";
const FD_VAR: &str = "AGENTD_HARNESS_FD";
const WORKDIR_VAR: &str = "AGENTD_HARNESS_WORKDIR";
const BOOTSTRAP_VAR: &str = "AGENTD_HARNESS_BOOTSTRAP";
const LIFETIME_VAR: &str = "AGENTD_HARNESS_LIFETIME_MS";
const LAUNCHER_VAR: &str = "AGENTD_HARNESS_LAUNCHER";

/// Upper bound for anything the harness waits on that should be prompt.
pub const PROMPT: Duration = Duration::from_secs(5);

/// The hidden entry of the harness's processes: runs the role its
/// environment names and never returns then; returns at once otherwise.
#[test]
fn agentd_support_entry() {
    roles::dispatch();
}

/// The libtest name of [`agentd_support_entry`] in this test binary.
fn entry_name() -> String {
    let module = module_path!();
    let within_crate = module.split_once("::").map_or("", |(_, rest)| rest);
    format!("{within_crate}::agentd_support_entry")
}

/// The arguments that make the test binary run the entry test alone. The
/// last one, `marker`, matches no test name; it names the role's process in
/// `ps` and /proc.
fn child_args(marker: &str) -> Vec<String> {
    vec![
        "--exact".to_owned(),
        entry_name(),
        "--nocapture".to_owned(),
        "--test-threads=1".to_owned(),
        marker.to_owned(),
    ]
}

/// The argument that marks the process of `role` ("launcher", "init",
/// "agentd") of the tree `token`.
fn marker(token: &str, role: &str) -> String {
    format!("{token}:{role}")
}

/// Who sends agentd its first frame, `core.bootstrap`.
#[derive(Debug, Clone)]
pub enum BootstrapBy {
    /// The relay under test sends it (agentd's `agent::receive_bootstrap`
    /// reads it from the port, as in a microVM).
    Relay,
    /// The harness hands this bootstrap to agentd directly; agentd's first
    /// frame on the port is then `core.init.resolved`.
    Harness(Box<GuestBootstrap>),
}

/// How [`Agentd::spawn`] starts agentd.
#[derive(Debug, Clone)]
pub struct AgentdOptions {
    /// Who sends the bootstrap.
    pub bootstrap: BootstrapBy,
    /// Init ends the whole tree after this long whatever happens (a last
    /// resort: tests end it much earlier by dropping [`Agentd`]).
    pub max_lifetime: Duration,
}

impl Default for AgentdOptions {
    fn default() -> AgentdOptions {
        AgentdOptions {
            bootstrap: BootstrapBy::Relay,
            max_lifetime: Duration::from_secs(120),
        }
    }
}

impl AgentdOptions {
    /// The relay under test sends the bootstrap.
    pub fn relay() -> AgentdOptions {
        AgentdOptions::default()
    }

    /// The harness gives agentd `bootstrap`.
    pub fn harness(bootstrap: GuestBootstrap) -> AgentdOptions {
        AgentdOptions {
            bootstrap: BootstrapBy::Harness(Box::new(bootstrap)),
            ..AgentdOptions::default()
        }
    }
}

/// What microsandbox 0.7.13's launcher gives every sandbox: the default
/// execution limits (128 executions, 64 KiB of input, 1 MiB of output,
/// 16 KiB chunks) and nothing else a host process could use.
pub fn launcher_bootstrap() -> GuestBootstrap {
    GuestBootstrap {
        exec_limits: Some(ExecLimits::default()),
        ..GuestBootstrap::default()
    }
}

/// What an older launcher gives: no execution limits, so no per-session
/// output window.
pub fn older_launcher_bootstrap() -> GuestBootstrap {
    GuestBootstrap {
        exec_limits: None,
        ..GuestBootstrap::default()
    }
}

/// The `core.bootstrap` frame (id 0, flags 0, generation 10) carrying
/// `bootstrap`, as the runtime writes it before the VM starts.
pub fn bootstrap_frame(bootstrap: &GuestBootstrap) -> Vec<u8> {
    let msg = Message::with_payload(MessageType::Bootstrap, 0, bootstrap).expect("encode");
    let mut out = Vec::new();
    msp7::codec::encode_to_buf(&msg, &mut out).expect("encode frame");
    out
}

/// How the tree ended, as init told it on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// agentd exited by itself; its status as `ExitStatus` displays it
    /// ("exit status: 1", "signal: 9 (SIGKILL)").
    AgentdExited(String),
    /// The test's end of the socket was closed (or shut down for writing).
    HungUp,
    /// agentd asked PID 1 to power off (`SIGRTMIN+4`, after `core.shutdown`).
    PowerOff,
    /// The tree outlived [`AgentdOptions::max_lifetime`].
    Lifetime,
}

/// A running agentd tree. Dropping it kills and reaps every process of it.
pub struct Agentd {
    launcher: Child,
    status: Option<ExitStatus>,
    token: String,
    pid_ns: Option<PidNs>,
    stderr_path: PathBuf,
    work: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Agentd {
    /// Starts agentd's tree. Returns it and the relay's end of the socket,
    /// blocking and close-on-exec (for tokio: `set_nonblocking(true)` and
    /// `tokio::net::UnixStream::from_std`).
    pub fn spawn(opts: AgentdOptions) -> io::Result<(Agentd, UnixStream)> {
        if Path::new("/.msb").exists() {
            return Err(io::Error::other(
                "refusing to run agentd: /.msb exists (its heartbeat would write there)",
            ));
        }
        static TREES: AtomicU32 = AtomicU32::new(0);
        let token = format!(
            "agentd-harness-{}-{}",
            std::process::id(),
            TREES.fetch_add(1, Ordering::Relaxed)
        );
        let work = tempfile::Builder::new().prefix("agentd-work-").tempdir()?;
        let state = tempfile::Builder::new().prefix("agentd-state-").tempdir()?;
        let stderr_path = state.path().join("stderr.log");
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)?;
        let (relay_end, agentd_end) = UnixStream::pair()?;

        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(child_args(&marker(&token, "launcher")))
            .env(ROLE_VAR, "launcher")
            .env(TOKEN_VAR, &token)
            .env(FD_VAR, agentd_end.as_raw_fd().to_string())
            .env(WORKDIR_VAR, work.path())
            .env(LIFETIME_VAR, opts.max_lifetime.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let BootstrapBy::Harness(bootstrap) = &opts.bootstrap {
            let path = state.path().join("bootstrap.frame");
            std::fs::write(&path, bootstrap_frame(bootstrap))?;
            cmd.env(BOOTSTRAP_VAR, path);
        }
        let me = std::process::id() as libc::pid_t;
        let fd = agentd_end.as_raw_fd();
        // SAFETY: the closure only makes system calls. The agentd end is
        // close-on-exec in the test process (so no other child gets it);
        // only this child's copy is cleared.
        unsafe {
            cmd.pre_exec(move || {
                sys::die_with_parent(Some(me))?;
                sys::set_cloexec(fd, false)
            })
        };
        let launcher = spawn_from_keeper(cmd)?;
        drop(agentd_end);
        let mut agentd = Agentd {
            launcher,
            status: None,
            token,
            pid_ns: None,
            stderr_path,
            work,
            state,
        };
        // Started means init runs: its namespace is then known.
        let init = agentd.pid_of("init").ok_or_else(|| {
            io::Error::other(format!(
                "the agentd tree did not start; its stderr:\n{}",
                agentd.stderr()
            ))
        })?;
        agentd.pid_ns = Some(PidNs::of(init)?);
        Ok((agentd, relay_end))
    }

    /// agentd's working directory and HOME (a fresh temporary directory,
    /// removed with this handle).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Everything the tree wrote to stderr so far: agentd's own lines, the
    /// harness's (`agentd-harness: ...`), libtest's in the role processes.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The line of agentd's `agentd: agent loop error: ...` (its loop
    /// returned an error and agentd exited 1), if there is one.
    pub fn loop_error(&self) -> Option<String> {
        self.stderr()
            .lines()
            .find(|line| line.contains("agent loop error"))
            .map(str::to_owned)
    }

    /// How the tree ended, once init has said so.
    pub fn ending(&self) -> Option<Ending> {
        let stderr = self.stderr();
        // Init writes its line in one piece, but possibly into the middle
        // of one of agentd's (which agentd writes in pieces).
        let (_, after) = stderr.split_once(roles::END_PREFIX)?;
        let reason = after.split('\n').next().unwrap_or_default();
        Some(match reason {
            "hang-up" => Ending::HungUp,
            "poweroff" => Ending::PowerOff,
            "lifetime" => Ending::Lifetime,
            other => Ending::AgentdExited(
                other
                    .strip_prefix("agentd exited: ")
                    .unwrap_or(other)
                    .to_owned(),
            ),
        })
    }

    /// Whether the tree still runs (its launcher has not exited).
    pub fn is_alive(&mut self) -> bool {
        self.try_status().is_none()
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.launcher.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the tree to end by itself; its launcher's
    /// status (init's exit code: agentd's, or 0 for a hang-up or a power-off,
    /// 124 for the lifetime, 125 for a harness failure). Once this returns
    /// `Some`, no process of the tree is left.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The host pid of the tree's process in `role` ("launcher", "init",
    /// "agentd"), waiting up to [`PROMPT`] for it to appear while the tree
    /// runs. (A child between its `fork` and `exec` still carries its
    /// parent's marker, so init is the marked child of the launcher, and
    /// agentd the marked child of init.)
    pub fn pid_of(&mut self, role: &str) -> Option<u32> {
        let launcher = self.launcher.id();
        if role == "launcher" {
            return self.is_alive().then_some(launcher);
        }
        let deadline = Instant::now() + PROMPT;
        loop {
            let parent = match role {
                "agentd" => self.find_marked("init", launcher),
                _ => Some(launcher),
            };
            if let Some(pid) = parent.and_then(|parent| self.find_marked(role, parent)) {
                return Some(pid);
            }
            if !self.is_alive() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The process marked as `role` whose parent is `parent`, now.
    fn find_marked(&self, role: &str, parent: u32) -> Option<u32> {
        let marker = marker(&self.token, role);
        sys::pids_with_arg(&marker)
            .into_iter()
            .find(|&pid| sys::parent_of(pid) == Some(parent))
    }

    /// agentd's host pid (see [`Agentd::pid_of`]).
    pub fn agentd_pid(&mut self) -> Option<u32> {
        self.pid_of("agentd")
    }

    /// The tree's PID namespace, held open (see [`PidNs`]): a test that
    /// keeps it can look for leftovers after dropping the handle.
    pub fn pid_namespace(&self) -> io::Result<PidNs> {
        match &self.pid_ns {
            Some(ns) => ns.try_clone(),
            None => Err(io::Error::other("the tree's namespace is not known")),
        }
    }

    /// The host pids of every process still alive or unreaped from this
    /// tree: in its namespace (agentd's children included) or marked as one
    /// of its roles. Empty once the tree is gone.
    pub fn remaining_pids(&self) -> Vec<u32> {
        let mut pids = self.pid_ns.as_ref().map(PidNs::pids).unwrap_or_default();
        let prefix = format!("{}:", self.token);
        for pid in sys::all_pids() {
            let marked = sys::cmdline(pid)
                .last()
                .is_some_and(|arg| arg.starts_with(&prefix));
            if marked && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// SIGKILLs agentd alone (a crashed guest agent): init then ends the
    /// namespace and the relay's end reads end of stream. False if agentd
    /// was not running.
    pub fn kill_agentd(&mut self) -> bool {
        let marker = marker(&self.token, "agentd");
        let Some(init) = self.pid_of("init") else {
            return false;
        };
        let Some(agentd) = self.pid_of("agentd") else {
            return false;
        };
        let still = |pid| sys::has_arg(pid, &marker) && sys::parent_of(pid) == Some(init);
        sys::signal_if(agentd, still, libc::SIGKILL)
    }

    /// Kills the whole tree and reaps it; its launcher's status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.try_status() {
            return Some(status);
        }
        // SIGKILL to init (the launcher's one child, alive, exiting or a
        // zombie) ends the namespace: the kernel kills the rest, and the
        // launcher reaps init once the namespace is empty and exits.
        let launcher = self.launcher.id();
        let still = |pid| sys::parent_of(pid) == Some(launcher);
        let init_killed = sys::children_of(launcher)
            .into_iter()
            .any(|pid| sys::signal_if(pid, still, libc::SIGKILL));
        if init_killed && let Some(status) = self.wait_exit(PROMPT) {
            return Some(status);
        }
        // No init (yet), or it did not go: the launcher's death takes init
        // with it (PR_SET_PDEATHSIG, or init's own check of its parent),
        // and init's the namespace.
        let _ = self.launcher.kill();
        self.status = self.launcher.wait().ok();
        self.status
    }
}

impl Drop for Agentd {
    fn drop(&mut self) {
        self.kill();
        // The namespace may take a moment to empty when only the launcher
        // could be killed; wait for it, boundedly.
        let deadline = Instant::now() + PROMPT;
        while !self.remaining_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Spawns `cmd` from a thread that lives as long as the test process, so
/// that the launcher's `PR_SET_PDEATHSIG` (which fires when the *thread*
/// that forked it ends) fires only when the test process ends, not when a
/// test thread or a blocking-pool thread does.
fn spawn_from_keeper(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("agentd-harness-spawner".to_owned())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    if let Err(mpsc::SendError(Ok(mut child))) = reply.send(cmd.spawn()) {
                        // Nobody waits for it any more.
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            })
            .expect("spawn the agentd harness's spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| io::Error::other("the spawner thread did not answer in 10 s"))?
}
