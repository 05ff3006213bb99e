//! `agent-relay serve`: runs the relay on a Unix socket until SIGINT or
//! SIGTERM, with the guest on a Unix byte stream we connect to
//! (`--guest-unix`), one that connects to us (`--guest-listen`), or the
//! in-process demo agent (`--demo-agent`).

use std::io;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

use super::{GuestArgs, ServeArgs, host};
use crate::core::Config;
use crate::demo_agent::run_demo_agent;

/// A guest byte stream of any kind.
pub trait GuestStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> GuestStream for T {}

/// Bytes the in-process duplex to the demo agent buffers each way.
pub const DEMO_DUPLEX: usize = 1 << 20;

/// Opens the guest channel `args` names (waiting for it with `--guest-listen`).
pub async fn open_guest(args: &GuestArgs) -> io::Result<Box<dyn GuestStream>> {
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

/// Runs `serve` until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> io::Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let guest = tokio::select! {
        guest = open_guest(&args.guest) => guest?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    let cfg = Config {
        max_clients: args.max_clients,
        ..Config::default()
    };
    let relay = host::start(&args.socket, guest, cfg, args.exec_log.as_deref()).await?;
    tracing::info!(
        "relay listening on {} ({} client slots)",
        args.socket.display(),
        args.max_clients
    );
    let which = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    tracing::info!("{which}: shutting down");
    let counters = relay.counters();
    relay.shutdown().await;
    tracing::info!(?counters, "relay stopped");
    Ok(())
}
