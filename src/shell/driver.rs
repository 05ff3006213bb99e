//! The driver: the one task that owns the [`Relay`] and does the data path's
//! I/O itself. Every client connection (with its queue of frames) and the
//! guest port live here and are polled from this task's context, so a byte
//! never hops between tasks: one turn writes every queued connection (until
//! its socket is full; a full client just keeps its queue), then reads one
//! bounded batch from the guest and one from every unpaused client, feeding
//! the core and performing its actions, whose output the next turn writes.
//! Reading the guest is thereby paced by writing. Only accepting runs in a
//! task of its own. It arms one timer from `poll_timeout`. It never decides
//! routing or policy and never looks at a message type: that is the core's
//! job.
//!
//! It keeps two rules of docs/ARCHITECTURE.md. `bounded_reads`: each turn
//! reads the guest once, at most [`GUEST_BATCH`] bytes, only after writing
//! what the last turn queued, and not at all between the core's
//! [`Action::PauseGuest`] and [`Action::ResumeGuest`].
//! `failed_start_is_reported`: at [`Action::StartupFailed`] it gives the
//! guest a short while to take what is still queued for it (the failure's
//! ack), then stops and returns the failure, which `Shell::run` reports as
//! `ShellError::Startup`; dropping the listener removes the socket file.

use std::collections::BTreeMap;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::client::{CLIENT_READ, ClientConn, Read, Written};
use super::exec_log::ExecLog;
use super::guest::{GUEST_BATCH, GuestIo, GuestPort, Progress};
use super::transport::{BoxClient, ErasedListener};
use super::wallclock::WallClockWatch;
use crate::core::{Action, ClientId, Counters, Event, Millis, Protocol, Relay, StartupFailure};

/// Accepted connections queued before the accept task waits.
const ACCEPT_QUEUE: usize = 16;
/// Pause after a failed `accept` (e.g. out of fds) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Busy I/O turns in a row, at most, before the driver lets the runtime poll
/// its reactor (readiness is only refreshed then; the ring port's queues do
/// not count against tokio's cooperative budget).
const TURNS_PER_YIELD: u32 = 16;
/// How far away an unarmed timer sleeps (it is never polled then).
const FAR: Duration = Duration::from_secs(86_400 * 365);

/// How long a guest whose start failed is given to take what is queued for
/// it (the init ack that acknowledges its failure).
const FAILED_GUEST_LINGER: Duration = Duration::from_secs(2);

/// A client asked the sandbox to shut down (a `core.shutdown` frame went to
/// the guest): the embedding should start draining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainNotice;

/// The driver's outward state, shared with [`super::ShellHandle`]s.
#[derive(Debug)]
pub(super) struct ShellState {
    pub(super) ready: watch::Sender<bool>,
    pub(super) counters: watch::Sender<Counters>,
    pub(super) guest_closed: watch::Sender<bool>,
}

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
    /// Ordered, so one seed of a simulated network feeds the core the same
    /// event order on every run.
    clients: BTreeMap<ClientId, ClientConn>,
    guest: GuestIo,
    guest_closed: bool,
    /// The core asked not to read the guest for now (backpressure).
    guest_paused: bool,
    exec_log: Option<ExecLog>,
    state: ShellState,
    drain: Option<mpsc::Sender<DrainNotice>>,
    /// The one read buffer: the core copies what it keeps.
    rbuf: Vec<u8>,
    /// Scratch: client ids in this turn's read order.
    order: Vec<ClientId>,
    /// Scratch: clients whose write failed this turn.
    failed: Vec<(ClientId, String)>,
    /// Rotates the client read order turn by turn.
    turn: usize,
    /// The last turn left bytes queued behind a full socket (or port).
    backlog: bool,
    /// The last client id handed out (ids are never reused).
    next_client: u64,
    /// The core said the sandbox cannot start: the driver stops.
    startup_failure: Option<StartupFailure>,
    /// Clients the core closed with their output still to be written
    /// ([`crate::core::CloseReason::flush_first`]); the core says when to
    /// give up on them ([`Action::FlushExpired`]).
    closing: BTreeMap<ClientId, ClientConn>,
}

/// Runs until `shutdown` completes, then closes every connection.
///
/// The driver itself runs as a spawned task: on a multi-thread runtime it
/// then runs on the worker that polled the reactor, instead of being woken
/// across threads on the `block_on` thread for every readiness event. If this
/// future is dropped, the driver sees its stop signal and exits in order.
pub(crate) async fn run(
    parts: Parts,
    shutdown: impl std::future::Future,
) -> std::io::Result<Option<StartupFailure>> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut task = tokio::spawn(drive(parts, stopped));
    let joined = tokio::select! {
        joined = &mut task => joined,
        _ = shutdown => {
            drop(stop);
            task.await
        }
    };
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

async fn drive(
    parts: Parts,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<Option<StartupFailure>> {
    let (mut d, listener) = Driver::new(parts)?;
    d.relay.handle(0, Event::WallClock(unix_nanos()));
    // What the core owes before any event (the guest's bootstrap) goes out
    // now: a guest that waits for it says nothing until then.
    d.perform();
    let wall = wall_watch(&d.relay);
    let (conn_tx, mut conn_rx) = mpsc::channel::<BoxClient>(ACCEPT_QUEUE);
    let accept = tokio::spawn(accept_loop(listener, conn_tx));
    let mut busy_turns = 0u32;
    let mut last_tick: Option<Millis> = None;
    let timer = tokio::time::sleep(FAR);
    tokio::pin!(shutdown, timer);
    let mut armed: Option<Instant> = None;
    loop {
        let deadline = d.deadline(last_tick);
        if deadline != armed {
            if let Some(at) = deadline {
                timer.as_mut().reset(at);
            }
            armed = deadline;
        }
        // Biased: the cheap, rare branches are looked at first so a busy data
        // path can never starve them; the I/O turn writes before it reads.
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            () = &mut timer, if armed.is_some() => {
                let now = d.now();
                last_tick = Some(now);
                armed = None;
                d.relay.handle(now, Event::WallClock(unix_nanos()));
                d.relay.handle(now, Event::Tick);
            }
            Some(conn) = conn_rx.recv() => d.accepted(conn),
            () = clock_set(wall.as_ref()) => {
                let now = d.now();
                d.relay.handle(now, Event::WallClock(unix_nanos()));
            }
            () = std::future::poll_fn(|cx| d.poll_io(cx)) => busy_turns += 1,
        }
        d.perform();
        d.publish();
        if d.startup_failure.is_some() {
            d.flush_failed_guest().await;
            break;
        }
        // A socket that said "full" stays full for this task until the
        // reactor has run, and a busy guest would keep this loop from ever
        // returning to the runtime: let the reactor refresh readiness before
        // the next turn, so reading the guest stays paced by writing.
        if d.backlog || busy_turns >= TURNS_PER_YIELD {
            busy_turns = 0;
            d.backlog = false;
            tokio::task::yield_now().await;
        }
    }
    // Orderly exit: stop accepting, close clients and the guest port.
    accept.abort();
    let _ = accept.await; // drops the listener, which removes its socket file
    d.close_all().await;
    Ok(d.startup_failure.take())
}

/// The wall-clock watch, when the relay may speak the current generation
/// with clock sync on.
fn wall_watch(relay: &Relay) -> Option<WallClockWatch> {
    let cfg = relay.config();
    (cfg.protocol != Protocol::Legacy && cfg.current.clock_sync)
        .then(WallClockWatch::start)
        .and_then(|w| {
            w.map_err(|e| {
                tracing::warn!("no wall-clock watch ({e}): jumps are seen at the next tick")
            })
            .ok()
        })
}

/// Completes when the wall clock was set; never without a watch.
async fn clock_set(watch: Option<&WallClockWatch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// The host's wall clock, for the core's clock sync (the core reads none).
fn unix_nanos() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How often, at most, a run of failing accepts is logged.
const ACCEPT_REPORT: Duration = Duration::from_secs(5);

async fn accept_loop(mut listener: Box<dyn ErasedListener>, conns: mpsc::Sender<BoxClient>) {
    // A failing accept (out of fds, say) is retried every 50 ms: logged at
    // its first failure, then once per ACCEPT_REPORT with a count, and once
    // more when accepts work again.
    let mut failures = 0u64;
    let mut reported: Option<Instant> = None;
    loop {
        match listener.accept_boxed().await {
            Ok(conn) => {
                if failures > 0 {
                    tracing::info!("accepting again after {failures} failed accepts");
                    (failures, reported) = (0, None);
                }
                if conns.send(conn).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                if reported.is_none_or(|at| at.elapsed() >= ACCEPT_REPORT) {
                    tracing::warn!(
                        "accept failed: {e}; retrying every {}ms ({failures} failures so far)",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    reported = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

impl Driver {
    fn new(parts: Parts) -> std::io::Result<(Driver, Box<dyn ErasedListener>)> {
        let Parts {
            relay,
            listener,
            guest,
            exec_log,
            state,
            drain,
        } = parts;
        let d = Driver {
            relay,
            start: Instant::now(),
            clients: BTreeMap::new(),
            guest: guest.into_io()?,
            guest_closed: false,
            guest_paused: false,
            exec_log,
            state,
            drain,
            rbuf: vec![0u8; CLIENT_READ.max(GUEST_BATCH)],
            order: Vec::new(),
            failed: Vec::new(),
            turn: 0,
            backlog: false,
            closing: BTreeMap::new(),
            next_client: 0,
            startup_failure: None,
        };
        Ok((d, listener))
    }

    /// When the timer must fire: the core's next deadline, but never a
    /// moment already handled (no spinning).
    fn deadline(&self, last_tick: Option<Millis>) -> Option<Instant> {
        let at = self.relay.poll_timeout()?.at;
        let at = match last_tick {
            Some(t) if at <= t => t + 1,
            _ => at,
        };
        Some(self.start + Duration::from_millis(at))
    }

    /// A new connection: named, and handed to the core.
    fn accepted(&mut self, conn: BoxClient) {
        self.next_client += 1;
        let id = ClientId(self.next_client);
        let client = ClientConn::new(id.0, conn);
        client
            .span
            .in_scope(|| tracing::debug!("connection accepted"));
        self.clients.insert(id, client);
        let now = self.now();
        self.relay.handle(now, Event::ClientConnected(id));
        if let (Some(range), Some(c)) = (self.relay.client_range(id), self.clients.get(&id)) {
            c.span.in_scope(|| {
                tracing::info!(
                    id_start = range.start,
                    id_end = range.end,
                    "client connected"
                )
            });
        }
    }

    /// The relay stops: every client is closed, exec.log ends.
    /// The sandbox failed to start: the frames still queued toward the
    /// guest (the ack of its failure) go out, for a short while at most;
    /// whatever it sends meanwhile is discarded.
    async fn flush_failed_guest(&mut self) {
        let flush = std::future::poll_fn(|cx| {
            let mut p = Progress::default();
            for _ in 0..TURNS_PER_YIELD {
                let moved = self.guest.poll(cx, &mut self.rbuf, &mut p, true, |_| {});
                let over = p.write_failed.is_some() || p.closed.is_some();
                if !self.guest.has_queued() || over {
                    return Poll::Ready(());
                }
                if !moved {
                    return Poll::Pending;
                }
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        if tokio::time::timeout(FAILED_GUEST_LINGER, flush)
            .await
            .is_err()
        {
            tracing::warn!("the guest did not take the ack of its failed start in time");
        }
    }

    async fn close_all(&mut self) {
        // Sessions still open get their end records before the stop marker.
        self.relay.stopping();
        self.perform();
        for client in std::mem::take(&mut self.clients).into_values() {
            client
                .span
                .in_scope(|| tracing::info!("closing: relay shutting down"));
        }
        if let Some(log) = self.exec_log.take() {
            log.close(Duration::from_secs(2)).await;
        }
        self.publish();
    }

    /// Milliseconds since the driver started, on tokio's clock (simulated
    /// under turmoil or a paused runtime).
    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// One I/O turn: writes every connection with queued bytes, then reads
    /// one bounded batch from the guest and from each unpaused client (in a
    /// rotating order), feeding the core. Ready when anything moved; Pending
    /// (with the driver's waker registered on every socket it waits for)
    /// otherwise.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = self.now();
        // Writes first: what the last turn queued goes out now.
        let mut progressed = self.write_clients(cx, now);
        let mut backlog = self.clients.values().any(ClientConn::has_queued);
        let (moved, queued) = self.poll_guest(cx, now);
        progressed |= moved;
        backlog |= queued;
        progressed |= self.read_clients(cx, now);
        if progressed {
            self.backlog = backlog;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Writes every connection with queued bytes, closed ones still draining
    /// included (each of those closes once written or failed, and the core
    /// hears of it). True if anything moved.
    fn write_clients(&mut self, cx: &mut Context<'_>, now: Millis) -> bool {
        let mut progressed = false;
        for (&id, c) in &mut self.clients {
            match c.poll_write(cx) {
                Written::Idle => {}
                Written::Bytes(n) => {
                    tracing::trace!(client = id.0, bytes = n, "client written");
                    self.relay.handle(now, Event::ClientWritten(id, n));
                    progressed = true;
                }
                Written::Failed(e) => {
                    self.failed.push((id, format!("write failed: {e}")));
                    progressed = true;
                }
            }
        }
        while let Some((id, why)) = self.failed.pop() {
            self.client_gone(id, &why);
        }
        let relay = &mut self.relay;
        self.closing.retain(|&id, c| {
            let keep = match c.poll_write(cx) {
                Written::Idle => c.has_queued(),
                Written::Bytes(n) => {
                    progressed = true;
                    relay.handle(now, Event::ClientWritten(id, n));
                    c.has_queued()
                }
                Written::Failed(_) => false,
            };
            if !keep {
                relay.handle(now, Event::ClientDisconnected(id));
            }
            keep
        });
        progressed
    }

    /// The guest: queued frames out, one batch in. Returns (anything moved,
    /// bytes still queued toward it).
    fn poll_guest(&mut self, cx: &mut Context<'_>, now: Millis) -> (bool, bool) {
        let mut p = Progress::default();
        let relay = &mut self.relay;
        let read = !self.guest_paused;
        let progressed = self.guest.poll(cx, &mut self.rbuf, &mut p, read, |bytes| {
            tracing::trace!(bytes = bytes.len(), "guest bytes");
            relay.handle(now, Event::GuestBytes(bytes));
        });
        if p.written > 0 {
            self.relay.handle(now, Event::GuestWritten(p.written));
        }
        if let Some(why) = p.write_failed {
            self.guest_gone(&format!("write failed: {why}"));
        }
        if let Some(why) = p.closed {
            self.guest_gone(&why);
        }
        (progressed, self.guest.has_queued())
    }

    /// Clients: one batch each, starting one further along every turn. True
    /// if anything moved.
    fn read_clients(&mut self, cx: &mut Context<'_>, now: Millis) -> bool {
        let mut progressed = false;
        self.order.clear();
        self.order.extend(self.clients.keys().copied());
        if !self.order.is_empty() {
            self.turn = self.turn.wrapping_add(1);
            let k = self.turn % self.order.len();
            self.order.rotate_left(k);
        }
        for i in 0..self.order.len() {
            let id = self.order[i];
            let Some(c) = self.clients.get_mut(&id) else {
                continue;
            };
            match c.poll_read(cx, &mut self.rbuf) {
                Read::Idle => {}
                Read::Bytes(bytes) => {
                    tracing::trace!(client = id.0, bytes = bytes.len(), "client bytes");
                    self.relay.handle(now, Event::ClientBytes(id, bytes));
                    progressed = true;
                }
                Read::Gone(why) => {
                    self.client_gone(id, &why);
                    progressed = true;
                }
            }
        }
        progressed
    }

    /// A connection ended (EOF or an I/O error): tell the core.
    fn client_gone(&mut self, id: ClientId, why: &str) {
        if let Some(client) = self.clients.remove(&id) {
            client
                .span
                .in_scope(|| tracing::info!(reason = %why, "client disconnected"));
            let now = self.now();
            self.relay.handle(now, Event::ClientDisconnected(id));
        }
    }

    fn guest_gone(&mut self, why: &str) {
        if !self.guest_closed {
            self.guest_closed = true;
            self.guest
                .span
                .in_scope(|| tracing::warn!(reason = why, "guest channel closed"));
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
                    if let Some(c) = self.clients.get_mut(&client) {
                        tracing::trace!(client = client.0, bytes = bytes.len(), "to client");
                        c.send(bytes);
                    }
                }
                Action::ToGuest { frame } => {
                    tracing::trace!(bytes = frame.len(), "to guest");
                    self.guest.send(frame);
                }
                Action::Refuse { client, reason } => {
                    if let Some(c) = self.clients.remove(&client) {
                        c.span
                            .in_scope(|| tracing::info!(%reason, "client refused"));
                    }
                }
                Action::CloseClient { client, reason } => self.close_client(client, &reason),
                Action::FlushExpired { client } => {
                    if let Some(c) = self.closing.remove(&client) {
                        c.span.in_scope(|| {
                            tracing::info!("output not drained within the grace period: discarded")
                        });
                    }
                }
                Action::PauseClient(client) => self.pause_client(client, true),
                Action::ResumeClient(client) => self.pause_client(client, false),
                Action::PauseGuest | Action::ResumeGuest => {
                    self.guest_paused = action == Action::PauseGuest;
                    tracing::trace!(paused = self.guest_paused, "guest reads (backpressure)");
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
                Action::StartupFailed(why) => {
                    tracing::error!("the sandbox failed to start: {why}");
                    self.startup_failure = Some(why);
                }
            }
        }
    }

    /// Stops or resumes reading a client (its frames toward the guest are
    /// over the bound, or back under half of it).
    fn pause_client(&mut self, client: ClientId, paused: bool) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.span
                .in_scope(|| tracing::debug!(paused, "reads of this client (guest queue)"));
            c.set_paused(paused);
        }
    }

    /// The core closed a client: at once, or once its output is written.
    fn close_client(&mut self, client: ClientId, reason: &crate::core::CloseReason) {
        let Some(mut c) = self.clients.remove(&client) else {
            return;
        };
        c.span
            .in_scope(|| tracing::info!(%reason, "client closed by relay"));
        if reason.flush_first() && c.has_queued() {
            c.set_paused(true);
            self.closing.insert(client, c);
        } else {
            // Closed now: nothing of it is left to flush.
            let now = self.now();
            self.relay.handle(now, Event::ClientDisconnected(client));
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
