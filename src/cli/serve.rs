//! `agent-relay serve`: runs the relay on a Unix socket until SIGINT, SIGTERM
//! or SIGHUP, or until the guest channel closes, with the guest on a Unix
//! byte stream we connect to (`--guest-unix`), one that connects to us
//! (`--guest-listen`), or the in-process demo agent (`--demo-agent`).
//!
//! Start-up happens in an order that reports every mistake before anything
//! waits: the command line is validated, then the client socket is bound,
//! exec.log opened (and locked), and only then does the relay wait for its
//! guest. Every exit path removes both sockets; the exit status says why the
//! relay stopped (see [`super::EXIT_STOPPED`] and its neighbours).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::units::show_size;
use super::{
    DemoProtocol, EXIT_GUEST_GONE, EXIT_STARTUP, EXIT_STOPPED, GuestArgs, Handshake, LimitArgs,
    MAX_CLIENTS_BOUNDS, ProtocolArg, ServeArgs,
};
use crate::core::{CURRENT_SLOTS, Config, Millis, Protocol};
use crate::demo_agent::{Generation, run_demo_agent_with};
use crate::shell::exec_log::{ExecLog, ExecLogOptions};
use crate::shell::{
    BindError, BoxConnection, GUEST_BATCH, GuestPort, Listener, Shell, UnixSocketListener, io_cause,
};
use crate::wire::MAX_FRAME_LEN;
use crate::wire::bootstrap::GuestBootstrap;

/// Bytes the in-process duplex to the demo agent buffers each way.
pub const DEMO_DUPLEX: usize = 1 << 20;

/// The largest frame a client can be sent: the length prefix and its body.
const LARGEST_FRAME: usize = MAX_FRAME_LEN as usize + 4;

/// How long `serve` waits for the in-process demo agent to kill and reap
/// what it started once the relay stopped.
const AGENT_STOP: Duration = Duration::from_secs(3);

/// Smallest `--exec-log-rotate`.
const MIN_ROTATE: usize = 1 << 10;

/// Smallest `--exec-log-queue`: two full read batches of output.
const MIN_LOG_QUEUE: usize = 128 << 10;

/// What `serve` runs with, once the command line made sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The core's configuration.
    pub config: Config,
    /// exec.log, if asked for.
    pub exec_log: Option<ExecLogOptions>,
    /// The guest bootstrap, if asked for.
    pub bootstrap: Option<GuestBootstrap>,
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// The generation and slots: `--protocol`, `--handshake`, `--max-clients`
/// and `--demo-protocol` together.
fn generation(args: &ServeArgs) -> Result<Config, String> {
    let protocol = match args.protocol {
        ProtocolArg::Legacy => Protocol::Legacy,
        ProtocolArg::Current => Protocol::Current,
        ProtocolArg::Auto => Protocol::Auto,
    };
    if protocol == Protocol::Current
        && let Some(form) = args.handshake
    {
        let form = if form == Handshake::Bounds {
            "bounds"
        } else {
            "offset"
        };
        return Err(format!(
            "--handshake {form} applies to the legacy generation only: with --protocol current \
             every client gets the current bounds prologue (128 canonical ranges); drop \
             --handshake, or use --protocol legacy or auto"
        ));
    }
    if args.demo_protocol.is_some() && !args.guest.demo_agent {
        return Err(
            "--demo-protocol only applies to the built-in demo agent (--demo-agent); a real \
             guest's own core.ready decides its generation (use --protocol to insist on one)"
                .to_owned(),
        );
    }
    if args.guest.demo_agent {
        let demo = match demo_protocol(args) {
            DemoProtocol::Legacy => Protocol::Legacy,
            DemoProtocol::Current => Protocol::Current,
        };
        if protocol != Protocol::Auto && protocol != demo {
            return Err(format!(
                "--demo-protocol {demo} with --protocol {protocol}: the relay would refuse its \
                 own guest; make them agree, or use --protocol auto"
            ));
        }
    }
    let handshake = args.handshake.unwrap_or(Handshake::Offset);
    let base = match handshake {
        Handshake::Offset => Config::default(),
        Handshake::Bounds => Config::bounds_handshake(),
    };
    let max_clients = args.max_clients.unwrap_or(base.legacy.max_clients);
    if handshake == Handshake::Bounds && max_clients > MAX_CLIENTS_BOUNDS {
        return Err(format!(
            "--max-clients {max_clients} is too many for --handshake bounds (at most {MAX_CLIENTS_BOUNDS}): \
             the first client's id_end would fall inside the 4 MiB frame-length range, so clients \
             could not tell the bounds form from the offset form"
        ));
    }
    if protocol == Protocol::Current && max_clients > CURRENT_SLOTS {
        return Err(format!(
            "--max-clients {max_clients} is too many for --protocol current (at most \
             {CURRENT_SLOTS}, its canonical ranges)"
        ));
    }
    let current_clients = args
        .max_clients
        .map_or(CURRENT_SLOTS, |n| n.min(CURRENT_SLOTS));
    let mut config = Config { protocol, ..base };
    config.legacy.max_clients = max_clients;
    config.current.clients = current_clients;
    Ok(config)
}

/// The demo agent's generation: `--demo-protocol`, else the one `--protocol`
/// names (legacy for `auto`).
fn demo_protocol(args: &ServeArgs) -> DemoProtocol {
    args.demo_protocol.unwrap_or(match args.protocol {
        ProtocolArg::Current => DemoProtocol::Current,
        ProtocolArg::Legacy | ProtocolArg::Auto => DemoProtocol::Legacy,
    })
}

/// The output budgets together: each at least what the next needs, so that
/// a client that keeps reading never meets a cap (rule
/// `backpressure_bounded_wait`).
fn check_budgets(l: &LimitArgs) -> Result<(), String> {
    let soft = ("--client-soft-budget", l.client_soft_budget);
    let hard = ("--client-hard-cap", l.client_hard_cap);
    let global = ("--global-cap", l.global_cap);
    if soft.1 == 0 {
        return Err("--client-soft-budget 0 bytes: it must be at least 1 byte".to_owned());
    }
    if hard.1 < LARGEST_FRAME {
        return Err(format!(
            "--client-hard-cap {} is below the largest frame ({}): one such frame would close its client",
            show_size(hard.1),
            show_size(LARGEST_FRAME)
        ));
    }
    // What one guest read can add to a queue past the point where the relay
    // stops reading: frames it completes, the largest among them whole.
    let overshoot = LARGEST_FRAME + GUEST_BATCH;
    if hard.1 < soft.1.saturating_add(overshoot) {
        return Err(format!(
            "--client-hard-cap {} is below --client-soft-budget {} plus the largest frame and one \
             guest read ({}): a client that keeps reading could reach it and be cut off; raise \
             --client-hard-cap to at least {} or lower --client-soft-budget",
            show_size(hard.1),
            show_size(soft.1),
            show_size(overshoot),
            show_size(soft.1.saturating_add(overshoot))
        ));
    }
    if global.1 < 2 * overshoot {
        return Err(format!(
            "--global-cap {} is below twice the largest frame and one guest read ({}): the relay \
             stops reading the guest at half of it, and clients that keep reading could still \
             reach it",
            show_size(global.1),
            show_size(2 * overshoot)
        ));
    }
    for ((small, a), (big, b)) in [(soft, hard), (hard, global)] {
        if a > b {
            return Err(format!(
                "{small} {} exceeds {big} {}: it must not be larger",
                show_size(a),
                show_size(b)
            ));
        }
    }
    Ok(())
}

/// Checks the values together; the error names the flags and values.
pub fn settings(args: &ServeArgs) -> Result<Settings, String> {
    if args.guest.guest_listen.as_deref() == Some(args.socket.as_path()) {
        return Err(format!(
            "--guest-listen {} is also --socket's path: the guest and the clients need a socket \
             each",
            args.socket.display()
        ));
    }
    let base = generation(args)?;
    let l = &args.limits;
    check_budgets(l)?;
    if l.grace.is_zero() {
        return Err("--grace 0s: a client needs some time to catch up (at least 1ms)".to_owned());
    }
    let config = Config {
        client_soft_budget: l.client_soft_budget,
        client_hard_cap: l.client_hard_cap,
        global_cap: l.global_cap,
        grace: millis(l.grace),
        quarantine: millis(l.quarantine),
        ..base
    };
    let exec_log = exec_log(args)?;
    Ok(Settings {
        config,
        exec_log,
        bootstrap: bootstrap(args)?,
    })
}

/// `--exec-log DIR` and the flags that shape it, checked together (they
/// mean nothing without it).
fn exec_log(args: &ServeArgs) -> Result<Option<ExecLogOptions>, String> {
    let l = &args.limits;
    let Some(dir) = &args.exec_log else {
        let given = [
            ("--exec-log-rotate", l.exec_log_rotate.is_some()),
            ("--exec-log-keep", l.exec_log_keep.is_some()),
            ("--exec-log-queue", l.exec_log_queue.is_some()),
        ];
        return match given.iter().find(|(_, on)| *on) {
            Some((flag, _)) => Err(format!(
                "{flag} shapes exec.log, which is only written with --exec-log DIR; add \
                 --exec-log or drop {flag}"
            )),
            None => Ok(None),
        };
    };
    let defaults = ExecLogOptions::new(dir);
    let rotate = l.exec_log_rotate.unwrap_or(defaults.rotate_bytes as usize);
    let queue = l.exec_log_queue.unwrap_or(defaults.queue_bytes);
    if rotate < MIN_ROTATE {
        return Err(format!(
            "--exec-log-rotate {} is too small (at least {})",
            show_size(rotate),
            show_size(MIN_ROTATE)
        ));
    }
    if queue < MIN_LOG_QUEUE {
        return Err(format!(
            "--exec-log-queue {} is too small (at least {}): most output records would be skipped",
            show_size(queue),
            show_size(MIN_LOG_QUEUE)
        ));
    }
    Ok(Some(ExecLogOptions {
        rotate_bytes: rotate as u64,
        keep: l.exec_log_keep.unwrap_or(defaults.keep),
        queue_bytes: queue,
        ..defaults
    }))
}

/// `--guest-bootstrap`, read and checked.
fn bootstrap(args: &ServeArgs) -> Result<Option<GuestBootstrap>, String> {
    match &args.guest_bootstrap {
        Some(_) if args.guest.demo_agent => Err("--guest-bootstrap is for a real guest agent \
             (--guest-unix or --guest-listen); the demo agent takes no bootstrap"
            .to_owned()),
        Some(path) => read_bootstrap(path).map(Some),
        None => Ok(None),
    }
}

/// Reads and checks `--guest-bootstrap`'s file; the error names the path
/// and the cause.
pub fn read_bootstrap(path: &Path) -> Result<GuestBootstrap, String> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|e| {
        format!(
            "--guest-bootstrap {shown}: cannot read it: {}",
            io_cause(&e)
        )
    })?;
    let bootstrap: GuestBootstrap = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "--guest-bootstrap {shown}: not a guest bootstrap (0.7.13 GuestBootstrap JSON): {e}"
        )
    })?;
    if let Some(limits) = &bootstrap.exec_limits {
        limits
            .validate()
            .map_err(|why| format!("--guest-bootstrap {shown}: exec_limits: {why}"))?;
    }
    Ok(bootstrap)
}

/// Why `serve` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A signal asked for it.
    Signal(&'static str),
    /// The guest channel closed or failed.
    GuestGone,
}

impl Stop {
    fn exit_code(self) -> i32 {
        match self {
            Stop::Signal(_) => EXIT_STOPPED,
            Stop::GuestGone => EXIT_GUEST_GONE,
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, each a request to stop.
struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next stop request's signal name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Runs `serve`; returns the exit status. Errors are printed here.
pub async fn run(args: ServeArgs) -> i32 {
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(message) => return super::usage_error("serve", message),
    };
    match serve(&args, settings).await {
        Ok(stop) => stop.exit_code(),
        Err(message) => {
            eprintln!("agent-relay serve: {message}");
            EXIT_STARTUP
        }
    }
}

/// The slots each generation offers: (legacy, current).
fn slots(config: &Config) -> (u32, u32) {
    (config.legacy.max_clients, config.current.clients)
}

/// Starts in order (see the module docs) and serves until a stop.
async fn serve(args: &ServeArgs, settings: Settings) -> Result<Stop, String> {
    let mut signals = StopSignals::install()
        .map_err(|e| format!("installing the signal handlers: {}", io_cause(&e)))?;
    let listener = UnixSocketListener::bind(&args.socket).map_err(|e| format!("--socket: {e}"))?;
    tracing::info!(path = %args.socket.display(), "listening");
    warn_cut(args);
    let exec_log = match settings.exec_log.clone() {
        Some(opts) => {
            Some(ExecLog::open(opts).map_err(|e| format!("--exec-log: {}", io_cause(&e)))?)
        }
        None => None,
    };
    let guest = tokio::select! {
        guest = open_guest(&args.guest, demo_protocol(args)) => guest?,
        which = signals.recv() => {
            tracing::info!("{which} while waiting for the guest: stopping");
            if let Some(log) = exec_log {
                log.close(Duration::from_secs(2)).await;
            }
            return Ok(Stop::Signal(which));
        }
    };
    let slots = slots(&settings.config);
    let Guest { io, agent } = guest;
    let mut shell = shell(listener, io, settings, exec_log);
    let handle = shell.handle();
    let mut drains = shell.drain_notices();
    let ready = handle.clone();
    let socket = args.socket.clone();
    tokio::spawn(async move {
        if ready.wait_ready(Duration::from_secs(86_400)).await.is_ok() {
            let generation = ready.counters().generation;
            let slots = if generation > 1 { slots.1 } else { slots.0 };
            tracing::info!(
                "guest ready (protocol generation {generation}); serving clients on {} ({slots} slots)",
                socket.display()
            );
        }
    });
    let gone = handle.clone();
    let (stopped_tx, mut stopped_rx) = tokio::sync::oneshot::channel();
    let stop = async move {
        let stop = loop {
            tokio::select! {
                which = signals.recv() => break Stop::Signal(which),
                () = gone.guest_closed() => break Stop::GuestGone,
                Some(_) = drains.recv() => {
                    tracing::info!("a client asked the sandbox to shut down (drain notice)");
                }
            }
        };
        match stop {
            Stop::Signal(which) => tracing::info!("{which}: shutting down"),
            Stop::GuestGone => tracing::warn!("the guest channel closed: shutting down"),
        }
        let _ = stopped_tx.send(stop);
    };
    // Every error of the shell is a failure to start or keep the guest:
    // the socket, the guest port, or the guest's own start-up failure.
    shell.run(stop).await.map_err(|e| e.to_string())?;
    let c = handle.counters();
    tracing::info!("relay stopped: {}", summary(&c));
    tracing::debug!(counters = ?c, "relay stopped");
    if let Some(mut agent) = agent
        && tokio::time::timeout(AGENT_STOP, &mut agent).await.is_err()
    {
        // A legacy agent blocked on a process that takes no stdin never sees
        // the stream close: dropping its task kills every process group it
        // started (the exit below runs no destructors).
        tracing::warn!("the demo agent did not finish its sessions in time: stopping it");
        agent.abort();
        let _ = agent.await;
    }
    Ok(stopped_rx.try_recv().unwrap_or(Stop::GuestGone))
}

/// The relay around the client listener and the guest stream, as
/// `settings` say.
fn shell(
    listener: UnixSocketListener,
    guest: BoxConnection,
    settings: Settings,
    exec_log: Option<ExecLog>,
) -> Shell {
    let mut shell =
        Shell::with_listener(listener, GuestPort::stream(guest)).config(settings.config);
    if let Some(bootstrap) = settings.bootstrap {
        shell = shell.bootstrap(bootstrap);
    }
    if let Some(log) = exec_log {
        shell = shell.exec_log_writer(log);
    }
    shell
}

/// Says when `--max-clients` is more than a current guest can have.
fn warn_cut(args: &ServeArgs) {
    if let Some(n) = args.max_clients.filter(|&n| n > CURRENT_SLOTS) {
        tracing::warn!(
            "--max-clients {n}: a current-generation guest gets at most {CURRENT_SLOTS} clients \
             (its canonical ranges); {n} apply only if the guest speaks the legacy generation"
        );
    }
}

/// What the relay did, in one line for its last log record (the full
/// counters go to the debug level).
pub fn summary(c: &crate::core::Counters) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    format!(
        "{} frames ({:.1} MB) to clients, {} frames ({:.1} MB) to the guest; {} refused, {} closed \
         as slow consumers, {} for protocol violations, {} sessions killed at departure",
        c.frames_to_clients,
        mb(c.bytes_to_clients),
        c.frames_to_guest,
        mb(c.bytes_to_guest),
        c.refused_clients,
        c.slow_consumer_closes,
        c.protocol_violations,
        c.kills_sent
    )
}

/// The guest channel, and the demo agent's task when it runs in-process.
pub struct Guest {
    /// The byte stream to the guest.
    pub io: BoxConnection,
    /// The in-process demo agent: it kills what it started once the stream
    /// closes, so `serve` waits for it before exiting.
    pub agent: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("demo_agent", &self.agent.is_some())
            .finish()
    }
}

/// Opens the guest channel `args` names (waiting for it with `--guest-listen`);
/// the demo agent speaks `demo`.
pub async fn open_guest(args: &GuestArgs, demo: DemoProtocol) -> Result<Guest, String> {
    if let Some(path) = &args.guest_unix {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            format!(
                "--guest-unix {}: cannot connect to the guest: {}",
                path.display(),
                io_cause(&e)
            )
        })?;
        tracing::info!("guest connected at {}", path.display());
        return Ok(Guest {
            io: Box::new(stream),
            agent: None,
        });
    }
    if let Some(path) = &args.guest_listen {
        return Ok(Guest {
            io: Box::new(accept_guest(path).await?),
            agent: None,
        });
    }
    let (ours, agents) = tokio::io::duplex(DEMO_DUPLEX);
    let generation = match demo {
        DemoProtocol::Legacy => Generation::Legacy,
        DemoProtocol::Current => Generation::Current,
    };
    let agent = tokio::spawn(async move {
        if let Err(e) = run_demo_agent_with(agents, generation).await {
            tracing::error!("demo agent stopped: {e}");
        }
    });
    tracing::info!(
        ?generation,
        "guest: the built-in demo agent (a stand-in: commands run on this host)"
    );
    Ok(Guest {
        io: Box::new(ours),
        agent: Some(agent),
    })
}

/// Listens at `path` with the client socket's rules (a non-socket or a live
/// socket is refused, a stale one replaced, mode 0600) and accepts one
/// guest; the socket file is removed once it connected, or when this future
/// is dropped.
async fn accept_guest(path: &Path) -> Result<UnixStream, String> {
    let mut listener = UnixSocketListener::bind(path).map_err(|e| match e {
        BindError::AlreadyListening { .. } => format!(
            "--guest-listen {}: another process is listening there (a running relay or VM?); \
             choose another path",
            path.display()
        ),
        e => format!("--guest-listen: {e}"),
    })?;
    tracing::info!("waiting for the guest to connect on {}", path.display());
    let stream = listener.accept().await.map_err(|e| {
        format!(
            "--guest-listen {}: accepting the guest: {}",
            path.display(),
            io_cause(&e)
        )
    })?;
    drop(listener);
    tracing::info!("guest connected");
    Ok(stream)
}
