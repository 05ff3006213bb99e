//! The driver: the one task that owns the [`Relay`]. Reader tasks send it
//! bytes over channels; it calls `handle`, drains `poll_action` and performs
//! each action by handing bytes to writer tasks, pausing readers, closing
//! connections or notifying the embedding. It arms one timer from
//! `poll_timeout`. It never decides routing or policy and never looks at a
//! message type: that is the core's job.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::client::ClientConn;
use super::guest::{GuestIn, GuestPort};
use super::transport::{BoxConnection, ErasedListener};
use super::{DrainNotice, ShellState};
use crate::core::{Action, ClientId, Event, Millis, Relay};
use crate::exec_log::ExecLog;

/// What tasks tell the driver (guest bytes travel on their own channel).
#[derive(Debug)]
pub(crate) enum Input {
    /// Bytes read from a client.
    ClientBytes(ClientId, Bytes),
    /// A client's writer put this many bytes on its socket.
    ClientWritten(ClientId, usize),
    /// A client's connection ended; the text says how.
    ClientGone(ClientId, String),
    /// The guest port accepted this many bytes.
    GuestWritten(usize),
    /// Writing to the guest failed.
    GuestWriteFailed(String),
}

/// Inputs queued from all client tasks together before readers wait.
const INPUT_QUEUE: usize = 1024;
/// Guest batches queued before the guest reader waits.
const GUEST_QUEUE: usize = 4;
/// Accepted connections queued before the accept task waits.
const ACCEPT_QUEUE: usize = 16;
/// Pause after a failed `accept` (e.g. out of fds) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Everything the driver needs, assembled by [`super::Shell`].
pub(crate) struct Parts {
    pub(crate) relay: Relay,
    pub(crate) listener: Box<dyn ErasedListener>,
    pub(crate) guest: GuestPort,
    pub(crate) exec_log: Option<ExecLog>,
    pub(crate) state: ShellState,
    pub(crate) drain: Option<mpsc::Sender<DrainNotice>>,
}

struct Driver {
    relay: Relay,
    start: Instant,
    clients: HashMap<ClientId, ClientConn>,
    to_guest: mpsc::UnboundedSender<Bytes>,
    guest_closed: bool,
    exec_log: Option<ExecLog>,
    state: ShellState,
    drain: Option<mpsc::Sender<DrainNotice>>,
}

/// Runs until `shutdown` completes, then closes every connection.
pub(crate) async fn run(parts: Parts, shutdown: impl std::future::Future) -> std::io::Result<()> {
    let Parts {
        relay,
        listener,
        guest,
        exec_log,
        state,
        drain,
    } = parts;
    let (input_tx, mut input_rx) = mpsc::channel::<Input>(INPUT_QUEUE);
    let (guest_tx, mut guest_rx) = mpsc::channel::<GuestIn>(GUEST_QUEUE);
    let (to_guest, to_guest_rx) = mpsc::unbounded_channel();
    let (conn_tx, mut conn_rx) = mpsc::channel::<BoxConnection>(ACCEPT_QUEUE);
    let guest_tasks = guest.spawn(to_guest_rx, guest_tx, input_tx.clone())?;
    let accept = tokio::spawn(accept_loop(listener, conn_tx));

    let mut d = Driver {
        relay,
        start: Instant::now(),
        clients: HashMap::new(),
        to_guest,
        guest_closed: false,
        exec_log,
        state,
        drain,
    };
    let mut next_client = 0u64;
    let mut last_tick: Option<Millis> = None;
    tokio::pin!(shutdown);
    loop {
        let deadline = d.relay.poll_timeout().map(|at| {
            // Never re-arm for a moment already handled (no spinning).
            let at = match last_tick {
                Some(t) if at <= t => t + 1,
                _ => at,
            };
            d.start + Duration::from_millis(at)
        });
        tokio::select! {
            _ = &mut shutdown => break,
            Some(input) = input_rx.recv() => d.on_input(input),
            Some(msg) = guest_rx.recv() => match msg {
                GuestIn::Bytes(bytes) => {
                    tracing::trace!(bytes = bytes.len(), "guest bytes");
                    let now = d.now();
                    d.relay.handle(now, Event::GuestBytes(&bytes));
                }
                GuestIn::Closed(why) => d.guest_gone(&why),
            },
            Some(conn) = conn_rx.recv() => {
                next_client += 1;
                let id = ClientId(next_client);
                let client = ClientConn::spawn(id, conn, input_tx.clone());
                client.span.in_scope(|| tracing::debug!("connection accepted"));
                d.clients.insert(id, client);
                let now = d.now();
                d.relay.handle(now, Event::ClientConnected(id));
                if let (Some(range), Some(c)) = (d.relay.client_range(id), d.clients.get(&id)) {
                    c.span.in_scope(|| {
                        tracing::info!(id_start = range.start, id_end = range.end, "client connected")
                    });
                }
            }
            () = sleep_until_opt(deadline) => {
                let now = d.now();
                last_tick = Some(now);
                d.relay.handle(now, Event::Tick);
            }
        }
        d.perform();
        d.publish();
    }

    // Orderly exit: stop accepting, close clients and the guest port.
    accept.abort();
    let _ = accept.await; // drops the listener, which removes its socket file
    for (_, client) in d.clients.drain() {
        client
            .span
            .in_scope(|| tracing::info!("closing: relay shutting down"));
    }
    for task in guest_tasks {
        task.abort();
        let _ = task.await;
    }
    if let Some(log) = d.exec_log.take() {
        log.close(Duration::from_secs(2)).await;
    }
    d.publish();
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(mut listener: Box<dyn ErasedListener>, conns: mpsc::Sender<BoxConnection>) {
    loop {
        match listener.accept_boxed().await {
            Ok(conn) => {
                if conns.send(conn).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

impl Driver {
    /// Milliseconds since the driver started, on tokio's clock (simulated
    /// under turmoil or a paused runtime).
    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::ClientBytes(id, bytes) => {
                if self.clients.contains_key(&id) {
                    self.relay.handle(now, Event::ClientBytes(id, &bytes));
                }
            }
            Input::ClientWritten(id, n) => {
                tracing::trace!(client = id.0, bytes = n, "client written");
                self.relay.handle(now, Event::ClientWritten(id, n));
            }
            Input::ClientGone(id, why) => {
                if let Some(client) = self.clients.remove(&id) {
                    client
                        .span
                        .in_scope(|| tracing::info!(reason = %why, "client disconnected"));
                    self.relay.handle(now, Event::ClientDisconnected(id));
                }
            }
            Input::GuestWritten(n) => self.relay.handle(now, Event::GuestWritten(n)),
            Input::GuestWriteFailed(why) => self.guest_gone(&format!("write failed: {why}")),
        }
    }

    fn guest_gone(&mut self, why: &str) {
        if !self.guest_closed {
            self.guest_closed = true;
            tracing::warn!(reason = why, "guest channel closed");
            self.state.guest_closed.send_replace(true);
            let now = self.now();
            self.relay.handle(now, Event::GuestClosed);
        }
    }

    /// Performs every pending action, in order.
    fn perform(&mut self) {
        while let Some(action) = self.relay.poll_action() {
            match action {
                Action::Handshake { client, bytes }
                | Action::ToClient {
                    client,
                    frame: bytes,
                } => {
                    if let Some(c) = self.clients.get(&client) {
                        tracing::trace!(client = client.0, bytes = bytes.len(), "to client");
                        // A send error means the writer already failed; its
                        // ClientGone is on the way.
                        let _ = c.out.send(bytes);
                    }
                }
                Action::ToGuest { frame } => {
                    tracing::trace!(bytes = frame.len(), "to guest");
                    let _ = self.to_guest.send(frame);
                }
                Action::Refuse { client, reason } => {
                    if let Some(c) = self.clients.remove(&client) {
                        c.span
                            .in_scope(|| tracing::info!(%reason, "client refused"));
                    }
                }
                Action::CloseClient { client, reason } => {
                    if let Some(c) = self.clients.remove(&client) {
                        c.span
                            .in_scope(|| tracing::info!(%reason, "client closed by relay"));
                    }
                }
                Action::PauseClient(client) => {
                    if let Some(c) = self.clients.get(&client) {
                        c.span
                            .in_scope(|| tracing::debug!("paused: guest queue full"));
                        c.set_paused(true);
                    }
                }
                Action::ResumeClient(client) => {
                    if let Some(c) = self.clients.get(&client) {
                        c.span.in_scope(|| tracing::debug!("resumed"));
                        c.set_paused(false);
                    }
                }
                Action::Log(record) => {
                    if let Some(log) = &mut self.exec_log {
                        log.log(record);
                    }
                }
                Action::GuestCorrupt { error, skipped } => {
                    tracing::warn!(skipped, "corrupt guest input skipped: {error}");
                }
                Action::Ready => {
                    tracing::info!("guest ready");
                    self.state.ready.send_replace(true);
                }
                Action::Drain => {
                    tracing::info!("a client asked the sandbox to shut down: draining");
                    if let Some(tx) = &self.drain {
                        // A full channel already holds a notice; one is enough.
                        let _ = tx.try_send(DrainNotice);
                    }
                }
            }
        }
    }

    fn publish(&self) {
        let counters = self.relay.counters();
        self.state.counters.send_if_modified(|c| {
            if c != counters {
                c.clone_from(counters);
                true
            } else {
                false
            }
        });
    }
}
