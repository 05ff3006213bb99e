//! The tokio shell: sockets, guest ports and exec.log files around the
//! sans-IO [`crate::core::Relay`].
//!
//! One task (the driver) owns the relay and does the data path's I/O itself:
//! it owns every client connection with its queue of outgoing frames, and
//! the guest port. Each turn it writes every connection that has bytes
//! queued (vectored, until the socket is full; a client whose socket is full
//! keeps its queue and never holds up the others), then reads one bounded
//! batch from the guest and one from each client the core has not paused,
//! feeds them to the core and performs its actions: bytes queued to a
//! client or the guest go out on the next turn, within the same task, so no
//! byte crosses a task boundary. Reading the guest is thereby paced by
//! writing. Progress (`ClientWritten`, `GuestWritten`) is reported to the
//! core directly, in batches. A separate task only accepts connections, and
//! exec.log records go to their writer thread. A timer armed from
//! `poll_timeout` sends `Tick`. Time comes from `tokio::time`, so the same
//! shell runs under turmoil's simulated clock. The shell makes no routing or
//! policy decision of its own.
//!
//! # Runtime
//! The relay needs one thread: run it on a current-thread runtime
//! (`#[tokio::main(flavor = "current_thread")]`) when it has a process to
//! itself. All its work is on the driver task, so on a multi-thread runtime
//! every readiness event costs a wake across threads, and on a 2-core
//! machine the extra workers compete with the guest and the clients for
//! CPU. [`Shell::run`] spawns the driver as a task of its own, so an
//! embedding that already runs a multi-thread runtime (a VMM, say) gets the
//! driver on the worker that polled the reactor rather than on its
//! `block_on` thread; dropping the `run` future still stops it.
//!
//! # Embedding
//! ```
//! use std::time::Duration;
//! use agent_relay::shell::{GuestPort, Shell};
//! use agent_relay::wire::{MsgType, payload::{build_frame, Ready}};
//! use tokio::io::AsyncWriteExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile_dir();
//! // A fake guest agent over an in-process pipe; a VMM would pass its
//! // vsock/chardev stream, or use `GuestPort::ring`.
//! let (port, mut guest) = tokio::io::duplex(64 << 10);
//! let mut shell = Shell::new(dir.join("agent.sock"), GuestPort::stream(port));
//! let handle = shell.handle();
//! let mut drains = shell.drain_notices();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let relay = tokio::spawn(shell.run(stopped));
//!
//! let ready = Ready { boot_time_ns: 1, init_time_ns: 2, ready_time_ns: 3 };
//! guest.write_all(build_frame(MsgType::Ready, 0, &ready).as_bytes()).await?;
//! handle.wait_ready(Duration::from_secs(5)).await?;
//! assert_eq!(handle.counters().guest_frames_in, 1);
//! assert!(drains.try_recv().is_err()); // no client asked to shut down
//!
//! drop(stop); // a dropped (or fired) shutdown sender stops the relay
//! relay.await??;
//! assert!(!dir.join("agent.sock").exists()); // the socket file is removed
//! # Ok(())
//! # }
//! # fn tempfile_dir() -> std::path::PathBuf {
//! #     let d = std::env::temp_dir().join(format!("agent-relay-doc-{}", std::process::id()));
//! #     let _ = std::fs::remove_dir_all(&d);
//! #     d
//! # }
//! ```

mod client;
mod driver;
pub mod exec_log;
mod guest;
mod queue;
pub mod ring;
mod transport;
mod unix;
mod wallclock;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use crate::cause::{io_cause, io_context};
pub use driver::DrainNotice;
pub use guest::{GUEST_BATCH, GuestPort};
pub use ring::{RingPort, RingVmm};
pub use transport::{BoxConnection, Connection, HangupWatch, Listener};
pub use unix::{BindError, MAX_SOCKET_PATH, UnixSocketListener};

use crate::core::{Config, Counters, Relay};
use crate::wire::bootstrap::GuestBootstrap;
use driver::ShellState;
use exec_log::{ExecLog, ExecLogOptions};
use transport::ErasedListener;

enum Transport {
    Unix(PathBuf),
    Listener(Box<dyn ErasedListener>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Unix(p) => write!(f, "Unix({})", p.display()),
            Transport::Listener(_) => f.write_str("Listener"),
        }
    }
}

/// A relay ready to run: a client transport, a guest port and options. See
/// the module docs for an example.
#[derive(Debug)]
pub struct Shell {
    transport: Transport,
    guest: GuestPort,
    config: Config,
    exec_log: Option<ExecLogSetup>,
    state: ShellState,
    drain: Option<mpsc::Sender<DrainNotice>>,
    bootstrap: Option<GuestBootstrap>,
}

/// exec.log as configured: to be opened by [`Shell::run`], or open already.
#[derive(Debug)]
enum ExecLogSetup {
    Options(ExecLogOptions),
    Open(ExecLog),
}

/// Why the shell could not run.
#[derive(Debug)]
pub enum ShellError {
    /// The client socket could not be bound.
    Bind(BindError),
    /// The guest port could not be set up.
    GuestPort(io::Error),
    /// exec.log could not be opened.
    ExecLog {
        /// The log directory.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The sandbox failed to start (the guest's init failed, or its
    /// `core.ready` is one the relay cannot serve).
    Startup(crate::core::StartupFailure),
}

impl std::fmt::Display for ShellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShellError::Bind(e) => e.fmt(f),
            ShellError::GuestPort(e) => write!(f, "setting up the guest port: {}", io_cause(e)),
            // The error names the path and what failed already.
            ShellError::ExecLog { source, .. } => write!(f, "exec.log: {}", io_cause(source)),
            ShellError::Startup(why) => write!(f, "the sandbox failed to start: {why}"),
        }
    }
}

impl std::error::Error for ShellError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShellError::Bind(e) => Some(e),
            ShellError::GuestPort(e) => Some(e),
            ShellError::ExecLog { source, .. } => Some(source),
            ShellError::Startup(why) => Some(why),
        }
    }
}

/// Why [`ShellHandle::wait_ready`] returned without the guest being ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyError {
    /// The guest sent no `core.ready` within the timeout.
    Timeout(Duration),
    /// The shell stopped (or was dropped) before the guest was ready.
    Stopped,
}

impl std::fmt::Display for ReadyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadyError::Timeout(t) => write!(f, "the guest agent was not ready within {t:?}"),
            ReadyError::Stopped => {
                f.write_str("the relay stopped before the guest agent was ready")
            }
        }
    }
}

impl std::error::Error for ReadyError {}

impl Shell {
    /// A relay serving clients on the Unix socket `socket_path` (created
    /// 0600 when [`Shell::run`] starts; its parent directory is created).
    pub fn new(socket_path: impl Into<PathBuf>, guest: GuestPort) -> Shell {
        Shell::with_transport(Transport::Unix(socket_path.into()), guest)
    }

    /// A relay serving clients from any [`Listener`] (e.g. turmoil's TCP in
    /// tests).
    pub fn with_listener(listener: impl Listener, guest: GuestPort) -> Shell {
        Shell::with_transport(Transport::Listener(Box::new(listener)), guest)
    }

    fn with_transport(transport: Transport, guest: GuestPort) -> Shell {
        Shell {
            transport,
            guest,
            config: Config::default(),
            exec_log: None,
            state: ShellState {
                ready: watch::channel(false).0,
                counters: watch::channel(Counters::default()).0,
                guest_closed: watch::channel(false).0,
            },
            drain: None,
            bootstrap: None,
        }
    }

    /// Sets the core's configuration (default: [`Config::default`], the
    /// 0.4.4 SDK's layout). `legacy.max_clients` and `current.clients` must be at
    /// least 1.
    pub fn config(mut self, config: Config) -> Shell {
        self.config = config;
        self
    }

    /// Sends `bootstrap` as the guest's first frame (`core.bootstrap`, id 0,
    /// flags 0, outside input credit), for a guest agent that waits for one
    /// before anything else, as 0.7.13 agentd does; in microsandbox the
    /// runtime writes it, so set it only when the relay owns the guest
    /// channel alone.
    pub fn bootstrap(mut self, bootstrap: GuestBootstrap) -> Shell {
        self.bootstrap = Some(bootstrap);
        self
    }

    /// Writes exec.log into `dir` with default rotation (10 MiB x 4 files).
    pub fn exec_log(self, dir: impl Into<PathBuf>) -> Shell {
        self.exec_log_options(ExecLogOptions::new(dir))
    }

    /// Writes exec.log with these options.
    pub fn exec_log_options(mut self, options: ExecLogOptions) -> Shell {
        self.exec_log = Some(ExecLogSetup::Options(options));
        self
    }

    /// Writes exec.log through a writer opened already (so an embedding can
    /// report a locked or unwritable directory before it starts anything
    /// else).
    pub fn exec_log_writer(mut self, log: ExecLog) -> Shell {
        self.exec_log = Some(ExecLogSetup::Open(log));
        self
    }

    /// A handle to wait for readiness and read counters, usable while the
    /// shell runs.
    pub fn handle(&self) -> ShellHandle {
        ShellHandle {
            ready: self.state.ready.subscribe(),
            counters: self.state.counters.subscribe(),
            guest_closed: self.state.guest_closed.subscribe(),
        }
    }

    /// The channel on which [`DrainNotice`]s arrive. Call before running;
    /// a later call replaces the earlier channel.
    pub fn drain_notices(&mut self) -> mpsc::Receiver<DrainNotice> {
        let (tx, rx) = mpsc::channel(4);
        self.drain = Some(tx);
        rx
    }

    /// Binds the socket (for [`Shell::new`]) and runs until `shutdown`
    /// completes. A `oneshot::Receiver` works as `shutdown` and also
    /// completes when its sender is dropped. On return every client
    /// connection is closed, the socket file removed and exec.log ends with
    /// `--- sandbox stopped ---`.
    pub async fn run<F>(self, shutdown: F) -> Result<(), ShellError>
    where
        F: Future + Send,
    {
        let Shell {
            transport,
            guest,
            mut config,
            exec_log,
            state,
            drain,
            bootstrap,
        } = self;
        if let Some(b) = bootstrap {
            config.current.bootstrap = Some(b.frame().into_bytes());
        }
        if config.current.incarnation_seed == 0 {
            config.current.incarnation_seed = os_seed();
        }
        let listener: Box<dyn ErasedListener> = match transport {
            Transport::Unix(path) => {
                let listener = UnixSocketListener::bind(&path).map_err(ShellError::Bind)?;
                tracing::info!(path = %path.display(), "listening");
                Box::new(listener)
            }
            Transport::Listener(l) => l,
        };
        let exec_log = match exec_log {
            Some(ExecLogSetup::Options(opts)) => {
                let dir = opts.dir.clone();
                Some(ExecLog::open(opts).map_err(|source| ShellError::ExecLog { dir, source })?)
            }
            Some(ExecLogSetup::Open(log)) => Some(log),
            None => None,
        };
        config.exec_log |= exec_log.is_some();
        let parts = driver::Parts {
            relay: Relay::new(config),
            listener,
            guest,
            exec_log,
            state,
            drain,
        };
        match driver::run(parts, shutdown).await {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(ShellError::Startup(why)),
            Err(e) => Err(ShellError::GuestPort(e)),
        }
    }
}

/// A seed from the operating system's randomness (for range-lease
/// incarnations); falls back to the process's hash keys, which the standard
/// library also draws from it.
fn os_seed() -> u64 {
    let mut b = [0u8; 8];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::process::id())
        }
    }
}

/// Watches a running [`Shell`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ShellHandle {
    ready: watch::Receiver<bool>,
    counters: watch::Receiver<Counters>,
    guest_closed: watch::Receiver<bool>,
}

impl ShellHandle {
    /// Waits until the guest sent `core.ready`, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ReadyError> {
        let mut ready = self.ready.clone();
        match tokio::time::timeout(timeout, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ReadyError::Stopped),
            Err(_) => Err(ReadyError::Timeout(timeout)),
        }
    }

    /// Whether the guest sent `core.ready`.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the guest channel has closed (the VM is gone): every
    /// client was closed and new ones are refused. The relay keeps running
    /// until its shutdown future completes; an embedding that has nothing left
    /// to serve stops it here. Also resolves if the relay stopped.
    pub async fn guest_closed(&self) {
        let mut closed = self.guest_closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// The core's counters as of the driver's last step.
    pub fn counters(&self) -> Counters {
        self.counters.borrow().clone()
    }

    /// A receiver that changes whenever the counters do.
    pub fn counters_watch(&self) -> watch::Receiver<Counters> {
        self.counters.clone()
    }
}
