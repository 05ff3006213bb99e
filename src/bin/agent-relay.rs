//! The `agent-relay` binary: see [`agent_relay::cli`].

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = agent_relay::cli::Cli::parse();
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
