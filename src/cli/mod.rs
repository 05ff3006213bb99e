//! The `agent-relay` command line (feature `cli`): argument parsing with clap
//! and one module per subcommand, plus [`client`], the small async client
//! that `exec`, `demo` and the tests share.
//!
//! Exit status of `serve` (docs/cli.md, "Exit status"): [`EXIT_STOPPED`] when asked
//! to stop, [`EXIT_USAGE`] for a rejected command line, [`EXIT_STARTUP`] when
//! it could not start, [`EXIT_GUEST_GONE`] when the guest channel closed or
//! failed. `exec` exits with the process's own code (see [`exec`]).

pub mod client;
pub mod demo;
pub mod exec;
pub mod logs;
pub mod serve;
pub mod spool;
pub mod units;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use units::{parse_duration, parse_size};

/// `serve` stopped because it was asked to (SIGINT, SIGTERM or SIGHUP).
pub const EXIT_STOPPED: i32 = 0;
/// `exec` or `logs` failed (the message says why); `exec` also when the
/// relay closed the connection before the process ended.
pub const EXIT_FAILURE: i32 = 1;
/// The command line was rejected (clap's own code for its errors too).
pub const EXIT_USAGE: i32 = 2;
/// `serve` could not start: the socket, the guest or exec.log.
pub const EXIT_STARTUP: i32 = 3;
/// `serve` stopped because the guest channel closed or failed (the VM is gone).
pub const EXIT_GUEST_GONE: i32 = 4;

/// Largest `--max-clients` with the offset handshake.
pub const MAX_CLIENTS: u32 = 4096;
/// Largest `--max-clients` with the bounds handshake: with 1024 slots the
/// first client's `id_end` (`u32::MAX / 1024` = 4,194,303) would fall inside
/// the 4 MiB frame-length range, and a client could no longer tell the
/// bounds form from the offset form.
pub const MAX_CLIENTS_BOUNDS: u32 = 1023;

/// agent-relay: multiplexes many SDK clients onto one microVM guest-agent
/// channel (the microsandbox agent protocol, legacy generation 1 and current
/// generation 10).
#[derive(Debug, Parser)]
#[command(name = "agent-relay", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay on a Unix socket until SIGINT, SIGTERM or SIGHUP (or the guest closes).
    ///
    /// Exit status: 0 when stopped by a signal, 2 for a rejected command line,
    /// 3 when it could not start, 4 when the guest channel closed or failed.
    Serve(ServeArgs),
    /// Run one command through a relay, wired to this terminal.
    ///
    /// Exits with the process's code; 127/126 when it could not start (not
    /// found / not executable), 141 when our stdout's reader went away, 130
    /// after a third Ctrl-C, 1 when the relay could not be reached, was not
    /// ready in time or closed the connection first, or our stdout failed.
    ///
    /// Ctrl-C sends SIGINT to the process; a second sends SIGKILL; a third
    /// leaves at once (the relay then kills the session).
    Exec(ExecArgs),
    /// Print an exec.log directory (exec.log and its rotations), oldest first.
    Logs(LogsArgs),
    /// Try it out: a relay with the demo agent (a stand-in guest) and a few clients.
    ///
    /// Starts a relay on a temporary socket with the built-in demo agent as
    /// its guest, runs several commands through concurrent clients and prints
    /// what each saw, the exec.log and the relay's counters. The demo agent is
    /// a stand-in for the real guest agent: there is no VM, the commands run
    /// as processes on this host.
    Demo(DemoArgs),
}

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which protocol generations to show.
    #[arg(long, value_enum, default_value_t = DemoWhich::Both)]
    pub protocol: DemoWhich,
}

/// The generations `demo` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoWhich {
    /// Generation 1 (microsandbox 0.4.4).
    Legacy,
    /// Generation 10 (microsandbox 0.7.x).
    Current,
    /// Both, the legacy one first.
    Both,
}

/// `serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Path of the client socket to create (owner-only; a stale one is replaced).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The guest.
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Write exec.log (and its rotations) into this directory (created 0700;
    /// one relay per directory).
    #[arg(long, value_name = "DIR")]
    pub exec_log: Option<PathBuf>,
    /// The protocol generation: `legacy` (1, microsandbox 0.4.4), `current`
    /// (10, microsandbox 0.7.x) or `auto` (whatever the guest's ready says).
    #[arg(long, value_enum, default_value_t = ProtocolArg::Auto)]
    pub protocol: ProtocolArg,
    /// Client slots, 1 to 4096 in the legacy generation (at most 1023 with
    /// `--handshake bounds`), at most 128 in the current one [default: 16
    /// with the offset handshake, what the 0.4.4 SDK assumes; 128 with the
    /// bounds handshake and in the current generation].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CLIENTS)), allow_hyphen_values = true)]
    pub max_clients: Option<u32>,
    /// Legacy generation only: the prologue layout, `offset` (`[id_offset]`,
    /// the 0.4.4 SDK) or `bounds` (`[id_start][id_end]`, newer SDKs)
    /// [default: offset]. The current generation always sends its bounds
    /// prologue.
    #[arg(long, value_enum)]
    pub handshake: Option<Handshake>,
    /// With `--demo-agent`: the generation the demo agent speaks [default:
    /// current with `--protocol current`, else legacy].
    #[arg(long, value_enum)]
    pub demo_protocol: Option<DemoProtocol>,
    /// Send this guest bootstrap first: a JSON file in the shape of
    /// microsandbox 0.7.13's `GuestBootstrap` (e.g. `{"exec_limits": {},
    /// "default_env": [{"key": "K", "value": "V"}]}`), written to the guest as
    /// one `core.bootstrap` frame before anything else. A 0.7.13 guest agent
    /// waits for it; in microsandbox the runtime writes it.
    #[arg(long, value_name = "FILE")]
    pub guest_bootstrap: Option<PathBuf>,
    /// Memory bounds and timers.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `serve`'s memory bounds and timers (docs/design.md, docs/cli.md). Sizes take
/// K, M or G (powers of 1024); durations ms, s, m or h.
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Output queued for one client past which its grace timer runs.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size, allow_hyphen_values = true)]
    pub client_soft_budget: usize,
    /// Output queued for one client at which it is closed as a slow consumer;
    /// at least 4 MiB + 4 bytes, the largest frame.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_size, allow_hyphen_values = true)]
    pub client_hard_cap: usize,
    /// Output queued for all clients together; reaching it closes the client
    /// holding the most.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size, allow_hyphen_values = true)]
    pub global_cap: usize,
    /// How long a client may stay over its soft budget without progress.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub grace: Duration,
    /// How long a departed client's slot waits for its sessions' last frames
    /// before another client may have it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub quarantine: Duration,
    /// With --exec-log: size at which exec.log is rotated, at least 1 KiB
    /// [default: 10MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub exec_log_rotate: Option<usize>,
    /// With --exec-log: rotated exec.log files kept (`exec.log.1` ..= `.N`),
    /// 0 to 999 [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=999), allow_hyphen_values = true)]
    pub exec_log_keep: Option<u32>,
    /// With --exec-log: exec.log records held in memory for the writer; past
    /// it records are skipped (and counted), never routing delayed. At least
    /// 128 KiB [default: 8MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, allow_hyphen_values = true)]
    pub exec_log_queue: Option<usize>,
}

/// The generations `serve --protocol` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    /// Generation 1 (microsandbox 0.4.4).
    Legacy,
    /// Generation 10 (microsandbox 0.7.x).
    Current,
    /// Whatever the guest's `core.ready` says (`v = 1` legacy, else current).
    Auto,
}

/// The generations the demo agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoProtocol {
    /// Generation 1.
    Legacy,
    /// Generation 10: init exchange, input credit, exec limits, ping.
    Current,
}

/// The handshake layouts `serve` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Handshake {
    /// `[id_offset: u32 BE]` then the ready frame (microsandbox 0.4.4).
    Offset,
    /// `[id_start: u32 BE][id_end_exclusive: u32 BE]` then the ready frame.
    Bounds,
}

/// Where the guest agent is; exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GuestArgs {
    /// Connect to a byte-stream guest at this Unix socket (e.g. a VM's chardev socket).
    #[arg(long, value_name = "PATH")]
    pub guest_unix: Option<PathBuf>,
    /// Listen on this Unix socket path and wait for the guest to connect (with
    /// `--socket`'s rules: owner-only, a stale socket replaced, a live one or a
    /// non-socket refused; removed once the guest connected).
    #[arg(long, value_name = "PATH")]
    pub guest_listen: Option<PathBuf>,
    /// Run the built-in demo agent in-process: a stand-in for the real guest
    /// agent that runs commands on this host, without isolation.
    #[arg(long)]
    pub demo_agent: bool,
}

/// `exec` arguments.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Path of the relay's client socket.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// Ask for a pty (the demo agent has none: output still arrives as stdout).
    #[arg(long)]
    pub tty: bool,
    /// How long to wait for the relay's handshake, which it sends once the
    /// guest agent is ready.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,
    /// Output held while our stdout or stderr is slower than the relay (in
    /// memory, then in a temporary file); past it `exec` stops reading the
    /// relay, which may then close it as a slow consumer.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = units::parse_nonzero_size, allow_hyphen_values = true)]
    pub max_buffer: usize,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `logs` arguments (defined with `logs`, whose `--help` they are).
pub use logs::LogsArgs;

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(args) => return serve::run(args).await,
        Command::Exec(args) => exec::run(&args).await,
        Command::Logs(args) => {
            let view = args.view();
            match logs::run(&args.dir, &view, args.follow).await {
                // Our reader left (`logs -f | head`): end quietly, as `cat` does.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    return exec::EXIT_STDOUT_CLOSED;
                }
                other => other.map(|()| 0),
            }
        }
        Command::Demo(args) => demo::run(args.protocol).await.map(|()| 0),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-relay: {}", crate::shell::io_cause(&e));
            EXIT_FAILURE
        }
    }
}

/// Prints a command-line error the way clap prints its own (with the usage
/// line) and returns [`EXIT_USAGE`].
pub fn usage_error(subcommand: &str, message: impl std::fmt::Display) -> i32 {
    let mut cli = Cli::command();
    let err = match cli.find_subcommand_mut(subcommand) {
        Some(sub) => sub.error(clap::error::ErrorKind::ValueValidation, message),
        None => cli.error(clap::error::ErrorKind::ValueValidation, message),
    };
    let _ = err.print();
    EXIT_USAGE
}
