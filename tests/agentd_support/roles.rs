//! The three processes the harness starts, each a re-exec of the test binary
//! that runs only the hidden entry test, told its role by
//! [`ROLE_VAR`](super::ROLE_VAR):
//!
//! - launcher: a child of the test process (SIGKILL when the test process's
//!   spawner thread ends), which called `unshare(CLONE_NEWPID)` before its
//!   `exec`, so its one child is PID 1 of a new PID namespace. It waits for
//!   that child and exits with its code.
//! - init: PID 1 of the namespace. Starts agentd, reaps every process, and
//!   ends (so the kernel kills the whole namespace) when agentd exits, when
//!   the relay's end of the socket hangs up, when agentd asks PID 1 to power
//!   off (`SIGRTMIN+4`), or after the tree's lifetime.
//! - agentd: PID 2 or so. Capabilities dropped, a fresh working directory, a
//!   cleared environment; receives or is given the bootstrap, runs the init
//!   exchange and agentd's loop the way agentd's own `main` does, minus the
//!   guest setup (`init::init`), the handoff and the bulk port.

use std::ffi::c_int;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{self, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use microsandbox_agentd::{AgentdError, BootParams, agent, clock};
use msp7::bootstrap::GuestBootstrap;
use msp7::codec;
use msp7::message::MessageType;

use super::sys;
use super::{
    BOOTSTRAP_VAR, FD_VAR, LAUNCHER_VAR, LIFETIME_VAR, ROLE_VAR, TOKEN_VAR, WORKDIR_VAR,
    child_args, marker,
};

/// How init reports why it ended, on its own line of the shared stderr.
pub const END_PREFIX: &str = "agentd-harness: init: end: ";
/// The exit code of init (and so of the launcher) when the relay hung up.
pub const CODE_HUNG_UP: i32 = 0;
/// ... when agentd asked PID 1 to power off (`core.shutdown`).
pub const CODE_POWER_OFF: i32 = 0;
/// ... when the tree outlived its lifetime.
pub const CODE_LIFETIME: i32 = 124;
/// ... when the harness itself could not set something up.
pub const CODE_HARNESS: i32 = 125;

/// What every role reads from its environment.
struct Setup {
    token: String,
    fd: c_int,
    workdir: PathBuf,
    bootstrap: Option<PathBuf>,
    lifetime: Duration,
}

/// Writes `line` to stderr in one write(2). The three processes share one
/// append-only file, and `eprintln!` writes a formatted line in pieces
/// (agentd's own lines can be cut by another process's this way, the
/// harness's cannot).
fn say(line: &str) {
    let line = format!("{line}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn fail(role: &str, what: impl std::fmt::Display) -> ! {
    say(&format!("agentd-harness: {role}: {what}"));
    process::exit(CODE_HARNESS);
}

impl Setup {
    fn from_env(role: &str) -> Setup {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| fail(role, format!("{name} is not set")))
        };
        Setup {
            token: var(TOKEN_VAR),
            fd: var(FD_VAR)
                .parse()
                .unwrap_or_else(|e| fail(role, format!("{FD_VAR}: {e}"))),
            workdir: PathBuf::from(var(WORKDIR_VAR)),
            bootstrap: std::env::var_os(BOOTSTRAP_VAR).map(PathBuf::from),
            lifetime: Duration::from_millis(
                var(LIFETIME_VAR)
                    .parse()
                    .unwrap_or_else(|e| fail(role, format!("{LIFETIME_VAR}: {e}"))),
            ),
        }
    }
}

/// The code a parent passes on for a child's `status`.
pub fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs the role named in the environment; returns at once without one
/// (an ordinary test run).
pub fn dispatch() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    match role.as_str() {
        "launcher" => launcher(),
        "init" => init(),
        "agentd" => agentd(),
        other => fail("entry", format!("unknown role {other:?}")),
    }
}

/// The test binary again, running only the entry test as `role`.
fn reexec(role: &str, token: &str) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(role, e));
    let mut cmd = Command::new(exe);
    cmd.args(child_args(&marker(token, role)))
        .env(ROLE_VAR, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

fn close(fd: c_int) {
    // SAFETY: the harness owns this descriptor and nothing else refers to it.
    unsafe { libc::close(fd) };
}

// -------------------------------------------------------------------------------------------------
// launcher
// -------------------------------------------------------------------------------------------------

fn launcher() -> ! {
    let setup = Setup::from_env("launcher");
    // Here rather than before this program's `exec`: a process whose PID
    // namespace for children differs from its own can no longer create
    // threads (clone(CLONE_THREAD) fails with EINVAL), and libtest runs this
    // entry on a thread of its own. unshare changes the calling thread only;
    // this one just forks init, the new namespace's PID 1, and waits.
    // SAFETY: unshare with a flag.
    if let Err(e) = sys::check(unsafe { libc::unshare(libc::CLONE_NEWPID) }) {
        fail("launcher", format!("unshare(CLONE_NEWPID): {e}"));
    }
    let mut cmd = reexec("init", &setup.token);
    cmd.env(LAUNCHER_VAR, process::id().to_string());
    // Its parent lives outside its namespace, so its getppid() is 0
    // whoever the parent is: init checks the parent itself (in /proc).
    // SAFETY: the closure only makes system calls.
    unsafe { cmd.pre_exec(|| sys::die_with_parent(None)) };
    let mut init = cmd
        .spawn()
        .unwrap_or_else(|e| fail("launcher", format!("spawn init: {e}")));
    // Only init and agentd keep the guest end from here on.
    close(setup.fd);
    // Bounded by init's lifetime; the test kills this process if it must.
    let status = init
        .wait()
        .unwrap_or_else(|e| fail("launcher", format!("wait for init: {e}")));
    process::exit(code_of(status));
}

// -------------------------------------------------------------------------------------------------
// init
// -------------------------------------------------------------------------------------------------

/// Why init ends the namespace.
enum End {
    Agentd(ExitStatus),
    HungUp,
    PowerOff,
    Lifetime,
}

fn init() -> ! {
    let setup = Setup::from_env("init");
    let deadline = Instant::now() + setup.lifetime;
    if process::id() != 1 {
        fail(
            "init",
            format!("not PID 1 of a namespace (pid {})", process::id()),
        );
    }
    // The launcher may have died before init's PR_SET_PDEATHSIG took
    // effect; then init's parent (in the host's numbering, as /proc shows
    // it) is no longer the launcher.
    let launcher = std::env::var(LAUNCHER_VAR).ok();
    let parent = sys::own_status_field("PPid");
    if launcher.is_none() || launcher != parent {
        fail(
            "init",
            format!("the launcher {launcher:?} is gone (parent {parent:?})"),
        );
    }
    let power_off = libc::SIGRTMIN() + 4;
    let signals = sys::signals_to_pipe(&[libc::SIGCHLD, power_off])
        .unwrap_or_else(|e| fail("init", format!("signal pipe: {e}")));
    // SAFETY: fcntl duplicates a descriptor this process owns.
    let watch = sys::check(unsafe { libc::fcntl(setup.fd, libc::F_DUPFD_CLOEXEC, 10) })
        .unwrap_or_else(|e| fail("init", format!("dup the guest end: {e}")));
    let agentd = spawn_agentd(&setup);
    close(setup.fd);
    let end = watch_until_end(agentd, watch, signals, power_off, deadline);
    let (reason, code) = match end {
        End::Agentd(status) => (format!("agentd exited: {status}"), code_of(status)),
        End::HungUp => ("hang-up".to_owned(), CODE_HUNG_UP),
        End::PowerOff => ("poweroff".to_owned(), CODE_POWER_OFF),
        End::Lifetime => ("lifetime".to_owned(), CODE_LIFETIME),
    };
    say(&format!("{END_PREFIX}{reason}"));
    // PID 1 exits: the kernel kills every process left in the namespace
    // and the launcher's wait returns once they are all gone.
    process::exit(code);
}

fn spawn_agentd(setup: &Setup) -> libc::pid_t {
    let mut cmd = reexec("agentd", &setup.token);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &setup.workdir)
        .env(ROLE_VAR, "agentd")
        .env(TOKEN_VAR, &setup.token)
        .env(FD_VAR, setup.fd.to_string())
        .env(WORKDIR_VAR, &setup.workdir)
        .env(LIFETIME_VAR, setup.lifetime.as_millis().to_string())
        .current_dir(&setup.workdir);
    if let Some(path) = &setup.bootstrap {
        cmd.env(BOOTSTRAP_VAR, path);
    }
    // SAFETY: the closure only makes system calls. The capabilities go
    // before `exec` so that no thread of the new program ever has them.
    unsafe {
        cmd.pre_exec(|| {
            sys::die_with_parent(Some(1))?;
            sys::drop_caps()
        })
    };
    // Reaped below with waitpid(-1), with every orphan of the namespace.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| fail("init", format!("spawn agentd: {e}")));
    child.id() as libc::pid_t
}

/// Polls the signal pipe and the guest end until one of the endings.
fn watch_until_end(
    agentd: libc::pid_t,
    watch: c_int,
    signals: c_int,
    power_off: c_int,
    deadline: Instant,
) -> End {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return End::Lifetime;
        }
        let mut fds = [
            libc::pollfd {
                fd: signals,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: watch,
                // Never POLLIN: agentd reads this socket, init only watches.
                events: libc::POLLRDHUP,
                revents: 0,
            },
        ];
        let ms = left.as_millis().clamp(1, 60_000) as c_int;
        // SAFETY: poll on two pollfds that live on this stack.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if ready < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            fail("init", format!("poll: {}", std::io::Error::last_os_error()));
        }
        let mut powered_off = false;
        if fds[0].revents & libc::POLLIN != 0 {
            let mut bytes = [0u8; 64];
            // SAFETY: reading into a buffer on this stack.
            let n = unsafe { libc::read(signals, bytes.as_mut_ptr().cast(), bytes.len()) };
            powered_off = n > 0 && bytes[..n as usize].contains(&(power_off as u8));
        }
        if let Some(status) = reap_all(agentd) {
            return End::Agentd(status);
        }
        if powered_off {
            return End::PowerOff;
        }
        if fds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            return End::HungUp;
        }
    }
}

/// Reaps every exited child; agentd's status if agentd was one of them.
fn reap_all(agentd: libc::pid_t) -> Option<ExitStatus> {
    let mut found = None;
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid writes the status on this stack.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == agentd {
            found = Some(ExitStatus::from_raw(status));
        }
    }
}

// -------------------------------------------------------------------------------------------------
// agentd
// -------------------------------------------------------------------------------------------------

fn agentd() -> ! {
    // Where agentd's main takes it: the earliest moment of the process.
    let boot_time_ns = clock::boottime_ns();
    let setup = Setup::from_env("agentd");
    for name in [
        ROLE_VAR,
        TOKEN_VAR,
        FD_VAR,
        WORKDIR_VAR,
        BOOTSTRAP_VAR,
        LIFETIME_VAR,
    ] {
        // SAFETY: the only other thread is libtest's, blocked waiting for
        // this test; agentd's threads do not exist yet.
        unsafe { std::env::remove_var(name) };
    }
    refuse_unsafe_host(&setup.workdir);

    sys::set_cloexec(setup.fd, true).unwrap_or_else(|e| fail("agentd", e));
    // SAFETY: the descriptor was passed to this process for agentd alone.
    let port = unsafe { File::from_raw_fd(setup.fd) };

    let (bootstrap, mut console) = match &setup.bootstrap {
        None => agent::receive_bootstrap(&port)
            .unwrap_or_else(|e| startup_failure(&port, None, "bootstrap receive", &e)),
        Some(path) => (
            read_bootstrap_file(path),
            agent::BootConsoleState::default(),
        ),
    };
    let path_given = bootstrap.default_env.iter().any(|v| v.key == "PATH");
    // Nothing of `BootParams` is used: it only describes guest setup.
    let (_boot, config) = BootParams::from_bootstrap(bootstrap)
        .unwrap_or_else(|e| startup_failure(&port, Some(&mut console), "bootstrap validation", &e));
    config.install_default_env();
    if !path_given {
        // agentd would set its guest PATH; a host keeps the harness's.
        // SAFETY: as above, agentd's threads do not exist yet.
        unsafe { std::env::set_var("PATH", "/usr/bin:/bin") };
    }

    let init_start = clock::boottime_ns();
    if let Err(e) = agent::report_init_context(&port, &mut console, config.user()) {
        startup_failure(&port, Some(&mut console), "init", &e);
    }
    let init_time_ns = clock::boottime_ns() - init_start;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            startup_failure(&port, Some(&mut console), "async runtime setup", &e.into())
        });
    let result = runtime.block_on(agent::run(
        boot_time_ns,
        init_time_ns,
        &config,
        port,
        console,
        None,
    ));
    match result {
        Ok(()) | Err(AgentdError::Shutdown) => process::exit(0),
        Err(e) => {
            say(&format!("agentd: agent loop error: {e}"));
            process::exit(1);
        }
    }
}

/// Stops before agentd could touch the host where it must not.
fn refuse_unsafe_host(workdir: &Path) {
    if Path::new("/.msb").exists() {
        fail(
            "agentd",
            "refusing to start: /.msb exists (the heartbeat would write there)",
        );
    }
    if process::id() == 1 {
        fail("agentd", "refusing to start as PID 1");
    }
    // SAFETY: getppid takes no arguments.
    if unsafe { libc::getppid() } != 1 {
        fail(
            "agentd",
            "refusing to start outside the harness's PID namespace",
        );
    }
    if let Err(e) = sys::drop_caps() {
        fail(
            "agentd",
            format!("refusing to start: dropping capabilities: {e}"),
        );
    }
    if let Err(e) = sys::verify_caps_dropped() {
        fail("agentd", format!("refusing to start: {e}"));
    }
    if let Err(e) = std::env::set_current_dir(workdir) {
        fail("agentd", format!("chdir {}: {e}", workdir.display()));
    }
}

fn read_bootstrap_file(path: &Path) -> GuestBootstrap {
    let mut bytes =
        std::fs::read(path).unwrap_or_else(|e| fail("agentd", format!("read bootstrap: {e}")));
    let msg = codec::try_decode_from_buf(&mut bytes)
        .ok()
        .flatten()
        .filter(|msg| msg.t == MessageType::Bootstrap)
        .unwrap_or_else(|| fail("agentd", "the bootstrap file holds no core.bootstrap frame"));
    msg.payload()
        .unwrap_or_else(|e| fail("agentd", format!("bootstrap payload: {e}")))
}

/// What agentd's main does when start-up fails: say so, report it to the
/// host as `core.error` (`initialization_failed`), exit 1.
fn startup_failure(
    port: &File,
    console: Option<&mut agent::BootConsoleState>,
    stage: &str,
    error: &AgentdError,
) -> ! {
    let message = format!("{stage} failed: {error}");
    say(&format!("agentd: {message}"));
    let mut fresh = agent::BootConsoleState::default();
    let console = console.unwrap_or(&mut fresh);
    if let Err(e) = agent::report_init_failure(port, console, &message, error) {
        say(&format!("agentd: could not report startup failure: {e}"));
    }
    process::exit(1);
}
