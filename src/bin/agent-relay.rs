//! The `agent-relay` binary: see [`agent_relay::cli`].

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let stdout_closed = stdout_was_closed();
    let cli = agent_relay::cli::Cli::parse();
    if stdout_closed && !matches!(cli.command, agent_relay::cli::Command::Serve(_)) {
        eprintln!("agent-relay: standard output: bad file descriptor (it is closed)");
        std::process::exit(agent_relay::cli::EXIT_FAILURE);
    }
    // Logs go to stderr; RUST_LOG overrides the default level. `exec`, `logs`
    // and `demo` keep quiet by default so their own output reads cleanly.
    let default = match cli.command {
        agent_relay::cli::Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One thread: the relay's driver is a single task doing all data-path I/O,
    // so more workers only add cross-thread wakeups (see `shell`, "Runtime").
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-relay: starting the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(agent_relay::cli::run(cli));
    // Exit without waiting for a blocked stdin read on a runtime thread.
    std::process::exit(code);
}

/// Whether our stdout was closed when we were started (`exec ... >&-`). The
/// standard library reopens a closed standard descriptor on /dev/null,
/// read-write, before `main`, and writes there vanish; a shell's
/// `>/dev/null` opens it write-only. So /dev/null opened read-write is taken
/// for a closed stdout.
fn stdout_was_closed() -> bool {
    use rustix::fs::{OFlags, fcntl_getfl, fstat, stat};
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    let (Ok(ours), Ok(null)) = (fstat(fd), stat("/dev/null")) else {
        return false;
    };
    let read_write = fcntl_getfl(fd).is_ok_and(|f| f & OFlags::RWMODE == OFlags::RDWR);
    ours.st_rdev == null.st_rdev && (ours.st_mode & 0o170000) == 0o020000 && read_write
}
