//! A minimal tokio driver for the relay core, private to the CLI: it stands
//! in until the production shell (`src/shell`) offers its embedding API, and
//! then goes away. One task owns the [`Relay`]; reader tasks feed it events,
//! writer tasks perform its writes and report progress back.
//!
//! Simplifications a production shell does not make: client pause/resume is
//! not honoured (a paused client's bytes still reach the core), and exec.log
//! records are appended synchronously by the core task, without rotation.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::core::{Action, ClientId, Config, Counters, Event, LogRecord, Relay};

enum Input {
    Guest(Vec<u8>),
    GuestClosed,
    GuestWritten(usize),
    Connected(ClientId, mpsc::UnboundedSender<Bytes>, JoinHandle<()>),
    Client(ClientId, Vec<u8>),
    ClientWritten(ClientId, usize),
    ClientGone(ClientId),
}

/// A running relay.
pub(crate) struct RunningRelay {
    counters: watch::Receiver<Counters>,
    ready: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    socket: PathBuf,
}

impl RunningRelay {
    pub(crate) fn counters(&self) -> Counters {
        self.counters.borrow().clone()
    }

    pub(crate) async fn wait_ready(&mut self) -> io::Result<()> {
        self.ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| io::Error::other("the relay stopped before the guest was ready"))
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let _ = std::fs::remove_file(&self.socket);
    }
}

pub(crate) async fn start<G>(
    socket: &Path,
    guest: G,
    cfg: Config,
    exec_log: Option<&Path>,
) -> io::Result<RunningRelay>
where
    G: AsyncRead + AsyncWrite + Send + 'static,
{
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket)?;
    let log = match exec_log {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("exec.log"))?,
            )
        }
        None => None,
    };
    let cfg = Config {
        exec_log: log.is_some(),
        ..cfg
    };
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (guest_rd, guest_wr) = tokio::io::split(guest);
    let guest_out = spawn_writer(guest_wr, in_tx.clone(), Input::GuestWritten);
    tokio::spawn(pump(
        guest_rd,
        in_tx.clone(),
        Input::Guest,
        Input::GuestClosed,
    ));
    let accept = tokio::spawn(accept_loop(listener, in_tx.clone()));
    let (counters_tx, counters) = watch::channel(Counters::default());
    let (ready_tx, ready) = watch::channel(false);
    let (stop, stop_rx) = oneshot::channel();
    let core = CoreTask {
        relay: Relay::new(cfg),
        clients: HashMap::new(),
        guest_out,
        log,
        counters: counters_tx,
        ready: ready_tx,
        epoch: Instant::now(),
    };
    let task = tokio::spawn(async move {
        core.run(in_rx, stop_rx).await;
        accept.abort();
    });
    Ok(RunningRelay {
        counters,
        ready,
        stop: Some(stop),
        task,
        socket: socket.to_owned(),
    })
}

async fn accept_loop(listener: UnixListener, tx: mpsc::UnboundedSender<Input>) {
    let mut next = 0u64;
    while let Ok((stream, _)) = listener.accept().await {
        next += 1;
        let id = ClientId(next);
        let (rd, wr) = stream.into_split();
        let out = spawn_writer(wr, tx.clone(), move |n| Input::ClientWritten(id, n));
        let reader = tokio::spawn(pump(
            rd,
            tx.clone(),
            move |b| Input::Client(id, b),
            Input::ClientGone(id),
        ));
        if tx.send(Input::Connected(id, out, reader)).is_err() {
            return;
        }
    }
}

async fn pump<R: AsyncRead + Unpin>(
    mut rd: R,
    tx: mpsc::UnboundedSender<Input>,
    data: impl Fn(Vec<u8>) -> Input,
    end: Input,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(data(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(end);
}

fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    mut wr: W,
    tx: mpsc::UnboundedSender<Input>,
    written: impl Fn(usize) -> Input + Send + 'static,
) -> mpsc::UnboundedSender<Bytes> {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
            let _ = tx.send(written(bytes.len()));
        }
        let _ = wr.shutdown().await;
    });
    out_tx
}

struct CoreTask {
    relay: Relay,
    clients: HashMap<ClientId, (mpsc::UnboundedSender<Bytes>, JoinHandle<()>)>,
    guest_out: mpsc::UnboundedSender<Bytes>,
    log: Option<std::fs::File>,
    counters: watch::Sender<Counters>,
    ready: watch::Sender<bool>,
    epoch: Instant,
}

impl CoreTask {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Input>,
        mut stop: oneshot::Receiver<()>,
    ) {
        loop {
            let timeout = self.relay.poll_timeout().map(|at| {
                let now = self.now();
                Duration::from_millis(at.saturating_sub(now))
            });
            let sleep = tokio::time::sleep(timeout.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                _ = &mut stop => break,
                input = rx.recv() => match input {
                    Some(input) => self.on_input(input),
                    None => break,
                },
                _ = sleep, if timeout.is_some() => {
                    let now = self.now();
                    self.relay.handle(now, Event::Tick);
                }
            }
            self.perform();
        }
        for (_, (_, reader)) in self.clients.drain() {
            reader.abort();
        }
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now();
        let relay = &mut self.relay;
        match input {
            Input::Guest(b) => relay.handle(now, Event::GuestBytes(&b)),
            Input::GuestClosed => relay.handle(now, Event::GuestClosed),
            Input::GuestWritten(n) => relay.handle(now, Event::GuestWritten(n)),
            Input::Connected(id, out, reader) => {
                self.clients.insert(id, (out, reader));
                relay.handle(now, Event::ClientConnected(id));
            }
            Input::Client(id, b) => {
                if self.clients.contains_key(&id) {
                    relay.handle(now, Event::ClientBytes(id, &b));
                }
            }
            Input::ClientWritten(id, n) => relay.handle(now, Event::ClientWritten(id, n)),
            Input::ClientGone(id) => {
                if self.clients.remove(&id).is_some() {
                    relay.handle(now, Event::ClientDisconnected(id));
                }
            }
        }
    }

    fn close(&mut self, id: ClientId) {
        if let Some((_, reader)) = self.clients.remove(&id) {
            reader.abort();
            let now = self.now();
            self.relay.handle(now, Event::ClientDisconnected(id));
        }
    }

    fn perform(&mut self) {
        while let Some(action) = self.relay.poll_action() {
            match action {
                Action::Handshake { client, bytes }
                | Action::ToClient {
                    client,
                    frame: bytes,
                } => {
                    if let Some((out, _)) = self.clients.get(&client) {
                        let _ = out.send(bytes);
                    }
                }
                Action::ToGuest { frame } => {
                    let _ = self.guest_out.send(frame);
                }
                Action::Refuse { client, reason } => {
                    tracing::warn!("{client} refused: {reason}");
                    self.close(client);
                }
                Action::CloseClient { client, reason } => {
                    tracing::warn!("{client} closed: {reason}");
                    self.close(client);
                }
                Action::PauseClient(_) | Action::ResumeClient(_) => {}
                Action::Log(record) => self.write_log(&record),
                Action::GuestCorrupt { error, skipped } => {
                    tracing::warn!("corrupt guest input, {skipped} bytes skipped: {error}");
                }
                Action::Ready => {
                    tracing::info!("guest ready");
                    let _ = self.ready.send(true);
                }
                Action::Drain => tracing::info!("guest asked to shut down: draining"),
            }
        }
        self.counters.send_replace(self.relay.counters().clone());
    }

    fn write_log(&mut self, record: &LogRecord) {
        let Some(log) = &mut self.log else { return };
        let mut line = serde_json::json!({
            "t": rfc3339_now(),
            "s": record.source.as_str(),
            "d": record.text,
        });
        if let Some(id) = record.session {
            line["id"] = id.into();
        }
        let _ = writeln!(log, "{line}");
    }
}

fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}
