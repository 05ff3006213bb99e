//! The `agent-relay` command line (feature `cli`): argument parsing with clap
//! and one module per subcommand, plus [`client`], the small async client
//! that `exec`, `demo` and the tests share.

pub mod client;
pub mod demo;
pub mod exec;
pub mod logs;
pub mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// agent-relay: multiplexes many SDK clients onto one microVM guest-agent
/// channel (microsandbox protocol v1).
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
    /// Run the relay on a Unix socket until SIGINT or SIGTERM (or the guest closes).
    Serve(ServeArgs),
    /// Run one command through a relay, wired to this terminal.
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
    Demo,
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
    /// Write exec.log (and its rotations) into this directory.
    #[arg(long, value_name = "DIR")]
    pub exec_log: Option<PathBuf>,
    /// Client slots [default: 16 with the offset handshake, what the 0.4.4 SDK
    /// assumes; 128 with the bounds handshake].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_clients: Option<u32>,
    /// Handshake layout: `offset` (`[id_offset]`, the 0.4.4 SDK) or `bounds`
    /// (`[id_start][id_end]`, newer SDKs).
    #[arg(long, value_enum, default_value_t = Handshake::Offset)]
    pub handshake: Handshake,
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
    /// Listen on this Unix socket path and wait for the guest to connect.
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
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `logs` arguments.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The exec.log directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Keep printing new records as they are written.
    #[arg(long, short)]
    pub follow: bool,
    /// Only records from this source.
    #[arg(long, value_name = "S", value_parser = ["stdout", "stderr", "output", "system"])]
    pub source: Option<String>,
    /// Print the raw JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await.map(|()| 0),
        Command::Exec(args) => match args.command.split_first() {
            Some((cmd, rest)) => exec::run(&args.socket, args.tty, cmd, rest).await,
            None => Ok(2), // clap requires at least one word
        },
        Command::Logs(args) => {
            let view = logs::LogView {
                json: args.json,
                source: args.source,
                ..logs::LogView::for_stdout()
            };
            logs::run(&args.dir, &view, args.follow).await.map(|()| 0)
        }
        Command::Demo => demo::run().await.map(|()| 0),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agent-relay: {e}");
            1
        }
    }
}
