//! `agent-relay exec --socket PATH [--tty] [--timeout D] [--max-buffer SIZE]
//! -- CMD ARGS...`: runs one command through the relay as an SDK client
//! would, wiring our stdin, stdout and stderr to it and exiting with its exit
//! code.
//!
//! It keeps reading the relay whatever our stdout does: output goes through a
//! [`Spool`] per stream (memory, then a temporary file, up to `--max-buffer`),
//! so a paused reader gets every byte and the relay never sees a slow
//! consumer. A reader that goes away early (`| head -2`) ends `exec` quietly,
//! as it ends `cat`: the session is killed and the exit code is 141 (128 +
//! SIGPIPE), with no message.
//!
//! It speaks the generation the relay's prologue shows (see [`super::client`]:
//! its range and `v` right in each) and, under a current guest's execution
//! policy, follows it as the SDK does ([`super::writer`]).
//!
//! Exit codes follow a shell: the process's own code; 127 when the guest
//! reports `not_found`; 126 for `not_executable` and `permission_denied`; 1
//! for any other start failure, a relay that cannot be reached or is not
//! ready within `--timeout`, or a connection the relay closed before the
//! process ended. Ctrl-C sends signal 2 to the process; a second Ctrl-C
//! sends 9; a third leaves at once (130), and the relay kills the session.

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::shell::MAX_SOCKET_PATH;
use tokio::sync::mpsc;

use super::client::{Client, ExecEvent, Receiver};
use super::spool::{Gone, Spool};
use super::units::{show_duration, show_size};
use super::writer::{FlowTx, flow, spawn_writer};
use super::{EXIT_FAILURE, ExecArgs};
use crate::shell::io_cause;
use crate::wire::payload::{ExecFailed, ExecFailureKind, ExecRequest};

/// The exit code when our stdout's reader went away: 128 + SIGPIPE, what a
/// shell reports for a `cat` that died of it.
pub const EXIT_STDOUT_CLOSED: i32 = 141;

/// How long `exec` waits for the handshake before it says it is waiting: a
/// ready relay answers at once, but a busy machine can take a while to
/// (a notice after 500 ms showed on most of 300 concurrent clients of a
/// ready relay).
const WAIT_NOTICE: Duration = Duration::from_secs(2);

/// The exit code a shell would give for a start failure.
pub fn failure_exit_code(failed: &ExecFailed) -> i32 {
    match failed.kind {
        ExecFailureKind::NotFound => 127,
        ExecFailureKind::NotExecutable | ExecFailureKind::PermissionDenied => 126,
        _ => 1,
    }
}

/// Runs `args.command` through the relay at `args.socket`; returns the exit
/// code. Errors are the caller's to print.
pub async fn run(args: &ExecArgs) -> io::Result<i32> {
    let Some((cmd, rest)) = args.command.split_first() else {
        return Ok(super::EXIT_USAGE); // clap requires at least one word
    };
    // Ctrl-C is ours from the start: a SIGINT before the session runs must
    // not kill exec with the default action (the process would be left to
    // the relay's departure kill, and nothing said).
    let mut interrupts = signal(SignalKind::interrupt())?;
    let client = tokio::select! {
        client = connect(&args.socket, args.timeout) => client?,
        _ = interrupts.recv() => {
            eprintln!("agent-relay: interrupted before the session started");
            return Ok(EXIT_INTERRUPTED);
        }
    };
    let (flow_tx, flow_rx) = match client.prologue().exec_limits {
        Some(limits) => {
            let (tx, rx) = flow(limits);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let (mut tx, rx) = client.into_split();
    let mut env = Vec::new();
    if args.tty
        && let Ok(term) = std::env::var("TERM")
    {
        env.push(format!("TERM={term}"));
    }
    let req = ExecRequest {
        env,
        tty: args.tty,
        ..ExecRequest::new(cmd).args(rest.iter().cloned())
    };
    let id = tx.exec(&req).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "closed by the relay at {} before the request went out: {}",
                args.socket.display(),
                io_cause(&e)
            ),
        )
    })?;
    let (signals, signal_rx) = mpsc::unbounded_channel();
    let session = Session {
        rx,
        id,
        socket: args.socket.clone(),
        cmd: cmd.clone(),
        out: Spool::new("stdout", Box::new(io::stdout()), args.max_buffer)?,
        err: Spool::new("stderr", Box::new(io::stderr()), args.max_buffer)?,
        held_back: false,
        signals,
        writer: spawn_writer(tx, id, read_stdin(), signal_rx, flow_rx),
        flow: flow_tx,
        interrupts,
    };
    session.run().await
}

/// How long `exec` waits, when it leaves early, for its last signal to be
/// written.
const LAST_SIGNAL: Duration = Duration::from_secs(1);

/// Connects and reads the handshake, saying so when the relay makes us wait
/// (it sends the handshake once the guest agent is ready).
async fn connect(socket: &Path, timeout: Duration) -> io::Result<Client> {
    check_socket_path(socket)?;
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                "; is `agent-relay serve` running with this --socket?"
            }
            _ => "",
        };
        io::Error::new(
            e.kind(),
            format!(
                "cannot connect to the relay at {}: {}{hint}",
                socket.display(),
                io_cause(&e)
            ),
        )
    })?;
    let handshake = Client::handshake(stream);
    tokio::pin!(handshake);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let notice = tokio::time::sleep(WAIT_NOTICE.min(timeout / 2));
    tokio::pin!(notice);
    let mut noticed = false;
    loop {
        tokio::select! {
            client = &mut handshake => {
                return client.map_err(|e| io::Error::new(
                    e.kind(),
                    format!("the relay at {}: {}", socket.display(), io_cause(&e)),
                ));
            }
            () = &mut notice, if !noticed => {
                noticed = true;
                eprintln!(
                    "agent-relay: no handshake from the relay at {} after {}: waiting for the guest agent to be ready (the relay answers then; up to {}, see --timeout)",
                    socket.display(),
                    show_duration(WAIT_NOTICE.min(timeout / 2)),
                    show_duration(timeout)
                );
            }
            () = &mut deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the guest agent behind {} was not ready within {} (the relay answers once it is; raise --timeout to wait longer)",
                        socket.display(),
                        show_duration(timeout)
                    ),
                ));
            }
        }
    }
}

/// What can be told about `--socket` before connecting: a path too long for
/// a socket address, or something there that is not a socket.
pub fn check_socket_path(socket: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--socket {} is {len} bytes long; a Unix socket path holds at most \
                 {MAX_SOCKET_PATH} bytes",
                socket.display()
            ),
        ));
    }
    match std::fs::metadata(socket) {
        Ok(meta) if !meta.file_type().is_socket() => {
            let kind = if meta.is_dir() {
                "a directory"
            } else if meta.is_file() {
                "a regular file"
            } else {
                "not a socket"
            };
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--socket {} is {kind}, not the relay's socket; give the path `agent-relay \
                     serve --socket` created",
                    socket.display()
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// What a look at the relay's socket says after the relay closed us.
enum RelayState {
    /// The socket is gone or nobody listens: the relay stopped.
    Gone,
    /// It accepts and closes at once: it refuses clients.
    Refusing,
    /// It accepts (and answers, or makes us wait for its guest).
    Serving,
}

/// Looks at the relay after it closed us: `serve` removes its socket as it
/// stops, which it does right when its guest goes away.
async fn relay_state(socket: &Path) -> RelayState {
    use tokio::io::AsyncReadExt;
    for _ in 0..5 {
        if !socket.exists() {
            return RelayState::Gone;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Ok(mut probe) = UnixStream::connect(socket).await else {
        return RelayState::Gone;
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(500), probe.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => RelayState::Refusing,
        Ok(Ok(_)) | Err(_) => RelayState::Serving,
    }
}

/// How a session ended, as far as `exec` is concerned.
enum End {
    /// The process exited with this code.
    Exited(i32),
    /// It could not start.
    Failed(ExecFailed),
    /// Our stdout's reader went away.
    StdoutClosed,
    /// Writing our stdout failed otherwise.
    StdoutFailed(String),
    /// The relay closed the connection first.
    RelayClosed,
    /// A third Ctrl-C: leave at once (the relay kills the session).
    Interrupted,
}

/// The exit code after a third Ctrl-C: 128 + SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

/// One running session and the two spools its output goes through.
struct Session {
    rx: Receiver,
    id: u32,
    /// The relay's socket, to look at when the relay closes us.
    socket: std::path::PathBuf,
    cmd: String,
    out: Spool,
    err: Spool,
    /// A spool was full: we stopped reading the relay (and said so).
    held_back: bool,
    /// Signals for the writer task to send.
    signals: mpsc::UnboundedSender<i32>,
    writer: tokio::task::JoinHandle<()>,
    /// Under a current guest's execution policy: what the writer must know.
    flow: Option<FlowTx>,
    /// SIGINT, installed before connecting.
    interrupts: Signal,
}

impl Session {
    async fn run(mut self) -> io::Result<i32> {
        let end = self.pump().await?;
        self.out.close();
        self.err.close();
        match end {
            End::StdoutClosed => {
                // What `cat` does: no message. The process must not run on
                // for a reader that left.
                self.last_signal(9).await;
                return Ok(EXIT_STDOUT_CLOSED);
            }
            End::StdoutFailed(why) => {
                self.last_signal(9).await;
                return Err(io::Error::other(format!("writing our stdout: {why}")));
            }
            End::Interrupted => {
                eprintln!("agent-relay: interrupted; the relay kills the session as we leave");
                return Ok(EXIT_INTERRUPTED);
            }
            _ => {}
        }
        // Whatever arrived is written out before we go (or stdout goes away).
        self.drain().await;
        if self.out.gone() == Some(Gone::Closed) {
            return Ok(EXIT_STDOUT_CLOSED);
        }
        match end {
            End::Exited(code) => Ok(code),
            End::Failed(failed) => {
                // The demo agent's messages name the command already.
                if failed.message.starts_with(self.cmd.as_str()) {
                    eprintln!("agent-relay: {}", failed.message);
                } else {
                    eprintln!("agent-relay: {}: {}", self.cmd, failed.message);
                }
                Ok(failure_exit_code(&failed))
            }
            _ => {
                eprintln!("agent-relay: {}", self.closed_reason().await);
                Ok(EXIT_FAILURE)
            }
        }
    }

    /// Why the relay closed us, as far as we can tell: the protocol has no
    /// message for it. A client that keeps reading is never closed for
    /// slowness (the relay stops reading the guest instead), so only our own
    /// holding back can have made us a slow consumer.
    async fn closed_reason(&self) -> String {
        if self.held_back {
            return format!(
                "closed by the relay as a slow consumer: our output backed up past --max-buffer {} \
                 and exec stopped reading for longer than the relay's grace period; raise \
                 --max-buffer, or the relay's --grace (serve), or read the output faster",
                show_size(self.out.limit())
            );
        }
        let why = match relay_state(&self.socket).await {
            RelayState::Gone => {
                "the relay stopped (its socket is gone: serve was stopped, or its guest agent \
                 went away)"
            }
            RelayState::Refusing => {
                "the relay refuses new clients now: its guest agent went away (or every slot is \
                 taken)"
            }
            RelayState::Serving => {
                "the relay still serves others, so it closed this client alone: a protocol \
                 violation or one of its limits (its log says which)"
            }
        };
        format!("the relay closed the connection before the process ended: {why}")
    }

    /// Sends a last signal and gives the writer a moment to write it.
    async fn last_signal(self, signal: i32) {
        let _ = self.signals.send(signal);
        drop(self.signals);
        let _ = tokio::time::timeout(LAST_SIGNAL, self.writer).await;
    }

    /// Waits for both spools to be written out; a Ctrl-C gives up on them.
    async fn drain(&mut self) {
        let (out, err) = (&self.out, &self.err);
        tokio::select! {
            () = async { out.finish().await; err.finish().await; } => {}
            _ = self.interrupts.recv() => {}
        }
    }

    /// Moves bytes until the session ends, our stdout goes away or the relay
    /// closes the connection.
    async fn pump(&mut self) -> io::Result<End> {
        let mut interrupts = 0u32;
        loop {
            if let Some(end) = self.check_spools() {
                return Ok(end);
            }
            let full = self.out.is_full() || self.err.is_full();
            tokio::select! {
                event = self.rx.next_event(), if !full => {
                    if let Some(end) = self.on_event(event)? {
                        return Ok(end);
                    }
                }
                () = self.out.changed() => {}
                () = self.err.changed() => {}
                interrupted = self.interrupts.recv() => {
                    if interrupted.is_none() {
                        return Err(io::Error::other("the SIGINT handler went away"));
                    }
                    interrupts += 1;
                    if interrupts > 2 {
                        return Ok(End::Interrupted);
                    }
                    let signal = if interrupts == 1 { 2 } else { 9 };
                    tracing::info!("interrupt: sending signal {signal}");
                    let _ = self.signals.send(signal);
                }
            }
        }
    }

    /// Output taken from the relay (the spool holds it now): acknowledged.
    fn consumed(&mut self, len: usize) {
        if let Some(flow) = &mut self.flow {
            flow.output(len);
        }
    }

    /// Notices a stdout that went away, and says once when a full spool
    /// makes us stop reading the relay.
    fn check_spools(&mut self) -> Option<End> {
        match self.out.gone() {
            Some(Gone::Closed) => return Some(End::StdoutClosed),
            Some(Gone::Failed(why)) => return Some(End::StdoutFailed(why)),
            None => {}
        }
        let full = [("stdout", &self.out), ("stderr", &self.err)]
            .into_iter()
            .find(|(_, spool)| spool.is_full());
        if let Some((name, spool)) = full
            && !self.held_back
        {
            self.held_back = true;
            eprintln!(
                "agent-relay: {name} is not keeping up: {} of output held (--max-buffer); \
                 no longer reading the relay until it drains, so the relay may close this \
                 client as a slow consumer",
                show_size(spool.held())
            );
        }
        None
    }

    /// Handles one event from the relay; `Some` when the session is over.
    fn on_event(&mut self, event: io::Result<Option<(u32, ExecEvent)>>) -> io::Result<Option<End>> {
        let (event_id, event) = match event {
            Ok(Some(e)) => e,
            // End of stream, a cut frame or a reset: the relay let us go.
            Ok(None) => return Ok(Some(End::RelayClosed)),
            Err(e) => {
                tracing::debug!("reading the relay: {e}");
                return Ok(Some(End::RelayClosed));
            }
        };
        if event_id != self.id {
            return Ok(None);
        }
        match event {
            ExecEvent::Stdout(data) => {
                self.consumed(data.len());
                self.out.push(data)?;
            }
            ExecEvent::Stderr(data) => {
                self.consumed(data.len());
                if self.err.gone().is_none() {
                    self.err.push(data)?;
                }
            }
            ExecEvent::Exited { code } => return Ok(Some(End::Exited(code))),
            ExecEvent::Failed(failed) => return Ok(Some(End::Failed(failed))),
            ExecEvent::Started { pid } => {
                tracing::debug!(pid, "started");
                if let Some(flow) = &self.flow {
                    flow.started();
                }
            }
            ExecEvent::StdinAck(consumed) => {
                if let Some(flow) = &self.flow {
                    flow.stdin_acked(consumed);
                }
            }
            ExecEvent::Other(t) => tracing::debug!("ignoring {t}"),
        }
        Ok(None)
    }
}

/// Reads our stdin on a plain thread (a blocking read cannot be cancelled;
/// the binary exits without joining it); an empty chunk or a closed channel
/// is EOF.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                if tx.blocking_send(buf[..n].to_vec()).is_err() || n == 0 {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read stdin ({e}); the process gets EOF");
    }
    rx
}
