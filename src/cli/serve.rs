//! `agent-relay serve`: runs the relay on a Unix socket until SIGINT or
//! SIGTERM, with the guest on a Unix byte stream we connect to
//! (`--guest-unix`), one that connects to us (`--guest-listen`), or the
//! in-process demo agent (`--demo-agent`).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

use super::{GuestArgs, ServeArgs};
use crate::core::Config;
use crate::demo_agent::run_demo_agent;
use crate::shell::{BoxConnection, GuestPort, Shell};

/// Bytes the in-process duplex to the demo agent buffers each way.
pub const DEMO_DUPLEX: usize = 1 << 20;

/// Opens the guest channel `args` names (waiting for it with `--guest-listen`).
pub async fn open_guest(args: &GuestArgs) -> io::Result<BoxConnection> {
    if let Some(path) = &args.guest_unix {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connecting to the guest at {}: {e}", path.display()),
            )
        })?;
        tracing::info!("guest connected at {}", path.display());
        return Ok(Box::new(stream));
    }
    if let Some(path) = &args.guest_listen {
        return Ok(Box::new(accept_guest(path).await?));
    }
    let (ours, agents) = tokio::io::duplex(DEMO_DUPLEX);
    tokio::spawn(async move {
        if let Err(e) = run_demo_agent(agents).await {
            tracing::error!("demo agent stopped: {e}");
        }
    });
    tracing::info!("guest: the built-in demo agent (a stand-in: commands run on this host)");
    Ok(Box::new(ours))
}

async fn accept_guest(path: &Path) -> io::Result<UnixStream> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("listening on {}: {e}", path.display())))?;
    tracing::info!("waiting for the guest to connect on {}", path.display());
    let (stream, _) = listener.accept().await?;
    let _ = std::fs::remove_file(path);
    tracing::info!("guest connected");
    Ok(stream)
}

/// Runs `serve` until SIGINT or SIGTERM, or until the guest channel closes
/// (the VM is gone: nothing is left to serve). A drain notice (a client sent
/// `core.shutdown`) is logged; stopping stays the supervisor's call.
pub async fn run(args: ServeArgs) -> io::Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let guest = tokio::select! {
        guest = open_guest(&args.guest) => guest?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    let base = match args.handshake {
        super::Handshake::Offset => Config::default(),
        super::Handshake::Bounds => Config::bounds_handshake(),
    };
    let config = Config {
        max_clients: args.max_clients.unwrap_or(base.max_clients),
        ..base
    };
    let max_clients = config.max_clients;
    let mut shell = Shell::new(&args.socket, GuestPort::stream(guest)).config(config);
    if let Some(dir) = &args.exec_log {
        shell = shell.exec_log(dir);
    }
    let handle = shell.handle();
    let mut drains = shell.drain_notices();
    let ready = handle.clone();
    let socket = args.socket.clone();
    tokio::spawn(async move {
        if ready.wait_ready(Duration::from_secs(3600)).await.is_ok() {
            tracing::info!(
                "guest ready; serving clients on {} ({max_clients} slots)",
                socket.display()
            );
        }
    });
    let gone = handle.clone();
    let stop = async move {
        loop {
            tokio::select! {
                _ = sigint.recv() => break "SIGINT",
                _ = sigterm.recv() => break "SIGTERM",
                () = gone.guest_closed() => break "guest channel closed",
                Some(_) = drains.recv() => {
                    tracing::info!("a client asked the sandbox to shut down (drain notice)");
                }
            }
        }
    };
    let stop = async move {
        let which = stop.await;
        tracing::info!("{which}: shutting down");
    };
    shell.run(stop).await.map_err(io::Error::other)?;
    tracing::info!(counters = ?handle.counters(), "relay stopped");
    Ok(())
}
