//! A **stand-in for the real guest agent**, for demos and tests: it speaks the
//! guest side of protocol v1 over any byte stream and runs the requested
//! commands as *host* processes (no VM, no isolation, no pty).
//!
//! What it does, message by message:
//! - sends `core.ready` first;
//! - `core.exec.request` spawns the process with `tokio::process` (cmd, args,
//!   `KEY=VALUE` env entries, cwd), replies `core.exec.started{pid}`, streams
//!   stdout and stderr in chunks of at most 16 KiB, and ends the session with
//!   `core.exec.exited{code}` (128 + n when signal n killed it) or
//!   `core.exec.failed{kind}` when the process could not start;
//! - `core.exec.stdin` feeds the child's stdin; an empty `data` closes it.
//!   At most [`STDIN_BOUND`] bytes are held per session for a process that
//!   does not read them; past that the agent stops reading its channel until
//!   the process takes them (or ends), as a stalled guest does. The legacy
//!   protocol has no per-session credit, so meanwhile the other sessions'
//!   input waits too;
//! - every process runs in a process group of its own, and
//!   `core.exec.signal` reaches the whole group (`kill -<n> -- -<pgid>`, no
//!   libc), so `sh -c 'sleep 41; ...'` leaves no `sleep` behind when killed;
//! - `core.exec.resize` is accepted and ignored: there is no pty. A `tty: true`
//!   request runs with pipes too, its stdout and stderr both arriving as
//!   `core.exec.stdout` (one merged stream, as a pty would give);
//! - `core.fs.request` is answered with `core.fs.response{ok: false}`;
//! - `core.shutdown` (from any client: the relay forwards it) kills every
//!   session, every client's, as a guest shutting down would;
//! - `user` and `rlimits` are not supported: a request naming a user fails
//!   with `user_setup_failed`; rlimits are ignored.
//!
//! Sessions run concurrently, keyed by correlation id. Every frame goes out
//! through one writer task that owns the write half, so frames are written
//! whole and never interleave. It must never depend on the CLI (clap).

mod session;

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::wire::payload::{
    ExecFailed, ExecFailureKind, ExecRequest, ExecSignal, FsResponse, Ready, build_frame,
    decode_payload, peek_data,
};
use crate::wire::{Frame, FrameDecoder, MsgType, peek_envelope};

use session::{Control, SessionHandle};
pub use session::{MAX_CHUNK, STDIN_BOUND};

/// The error text of every `core.fs.response` the demo agent sends.
pub const FS_UNSUPPORTED: &str = "filesystem operations are not supported by the demo agent";

/// Frames queued toward the host before session output waits (backpressure).
const WRITE_QUEUE: usize = 256;

/// Something the demo agent did, reported to an optional observer (the
/// `demo` command prints these; the protocol never carries them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentNote {
    /// A process started.
    Started {
        /// Correlation id of the session.
        id: u32,
        /// The command line, for display.
        command: String,
        /// Host pid.
        pid: u32,
    },
    /// A signal was delivered.
    Signalled {
        /// Correlation id of the session.
        id: u32,
        /// Signal number.
        signal: i32,
    },
    /// A process exited; `code` is what `core.exec.exited` carried.
    Exited {
        /// Correlation id of the session.
        id: u32,
        /// Exit code (128 + n for signal n).
        code: i32,
    },
    /// A process could not start.
    Failed {
        /// Correlation id of the session.
        id: u32,
        /// Why, in words.
        message: String,
    },
}

/// The demo agent with its options; [`run_demo_agent`] is the short form.
#[derive(Debug, Default, Clone)]
pub struct DemoAgent {
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
}

/// Runs the demo agent over `stream` until the host closes it.
///
/// Returns an error when the stream fails or carries something that is not a
/// protocol v1 frame (the stream has no resync marker).
pub async fn run_demo_agent<S>(stream: S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    DemoAgent::new().run(stream).await
}

impl DemoAgent {
    /// A demo agent without an observer.
    pub fn new() -> DemoAgent {
        DemoAgent::default()
    }

    /// Reports what the agent does to `notes` (best effort: a closed
    /// receiver is ignored).
    pub fn with_notes(mut self, notes: mpsc::UnboundedSender<AgentNote>) -> DemoAgent {
        self.notes = Some(notes);
        self
    }

    /// Runs the agent over `stream` until the host closes it; see
    /// [`run_demo_agent`].
    pub async fn run<S>(self, stream: S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let started = Instant::now();
        let (mut rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::channel::<Frame>(WRITE_QUEUE);
        let notes = self.notes.clone();
        let reader = async move {
            let ready = Ready {
                boot_time_ns: 0,
                init_time_ns: 0,
                ready_time_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            };
            if out_tx
                .send(build_frame(MsgType::Ready, 0, &ready))
                .await
                .is_err()
            {
                return Ok(());
            }
            let result = read_loop(&mut rd, &out_tx, notes).await;
            // Sessions hold their own senders; the writer ends after the last.
            drop(out_tx);
            result
        };
        let (read_result, write_result) = tokio::join!(reader, write_loop(wr, out_rx));
        read_result.and(write_result)
    }
}

/// The one owner of the write half: frames go out whole, in queue order.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Frame>,
) -> io::Result<()> {
    while let Some(frame) = rx.recv().await {
        if let Err(e) = wr.write_all(frame.as_bytes()).await {
            // The host is gone: keep draining so sessions never block on us.
            tracing::debug!("demo agent: write to host failed: {e}");
            rx.close();
            while rx.recv().await.is_some() {}
            return Ok(());
        }
    }
    // A stream whose peer already left may fail to flush; nothing is lost.
    let _ = wr.shutdown().await;
    Ok(())
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut R,
    out: &mpsc::Sender<Frame>,
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
) -> io::Result<()> {
    let mut decoder = FrameDecoder::new();
    let mut sessions: HashMap<u32, SessionHandle> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let result = loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        decoder.extend(&buf[..n]);
        let mut failed = None;
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => handle_frame(&frame, out, &mut sessions, &notes).await,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(io::Error::new(io::ErrorKind::InvalidData, e));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
    };
    // The host left: no one will read these processes' output any more.
    for session in sessions.values() {
        session.send(Control::Signal(9));
    }
    result
}

async fn handle_frame(
    frame: &Frame,
    out: &mpsc::Sender<Frame>,
    sessions: &mut HashMap<u32, SessionHandle>,
    notes: &Option<mpsc::UnboundedSender<AgentNote>>,
) {
    let id = frame.id();
    let env = match peek_envelope(frame.body()) {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!("demo agent: frame {id} skipped: {e}");
            return;
        }
    };
    let control = match env.t {
        MsgType::ExecRequest => return start_session(id, &env.payload, out, sessions, notes).await,
        MsgType::ExecStdin => match peek_data(&env.payload) {
            Ok(data) => return feed_stdin(id, data.into_owned(), sessions).await,
            Err(e) => {
                tracing::warn!("demo agent: stdin frame {id} skipped: {e}");
                return;
            }
        },
        MsgType::ExecSignal => match decode_payload::<ExecSignal>(&env.payload) {
            Ok(sig) => Control::Signal(sig.signal),
            Err(e) => {
                tracing::warn!("demo agent: signal frame {id} skipped: {e}");
                return;
            }
        },
        // No pty, so nothing to resize.
        MsgType::ExecResize => return,
        MsgType::FsRequest => {
            let resp = FsResponse {
                ok: false,
                error: Some(FS_UNSUPPORTED.to_owned()),
                data: None,
            };
            let _ = out.send(build_frame(MsgType::FsResponse, id, &resp)).await;
            return;
        }
        // The rest of a write the demo agent already refused.
        MsgType::FsData => return,
        MsgType::Shutdown => {
            tracing::info!(
                "demo agent: shutdown requested; killing all {} sessions, every client's",
                sessions.len()
            );
            for session in sessions.values() {
                session.send(Control::Signal(9));
            }
            return;
        }
        other => {
            tracing::warn!("demo agent: frame {id}: {other} is not for the guest; skipped");
            return;
        }
    };
    match sessions.get(&id) {
        Some(session) if session.send(control) => {}
        _ => tracing::debug!("demo agent: {} for unknown session {id} dropped", env.t),
    }
}

/// `core.exec.request`: starts a session (or answers why it cannot).
async fn start_session(
    id: u32,
    payload: &[u8],
    out: &mpsc::Sender<Frame>,
    sessions: &mut HashMap<u32, SessionHandle>,
    notes: &Option<mpsc::UnboundedSender<AgentNote>>,
) {
    sessions.retain(|_, session| !session.is_closed());
    if sessions.contains_key(&id) {
        tracing::warn!("demo agent: exec request {id} ignored: session already open");
        return;
    }
    match decode_payload::<ExecRequest>(payload) {
        Ok(req) => {
            let session = session::spawn(id, req, out.clone(), notes.clone());
            sessions.insert(id, session);
        }
        Err(e) => {
            // Answer anyway: the session must end for the relay and the client.
            let failed = ExecFailed {
                kind: ExecFailureKind::BadArgs,
                errno: None,
                errno_name: None,
                message: format!("exec request does not decode: {e}"),
                stage: Some("decode".to_owned()),
            };
            let _ = out
                .send(build_frame(MsgType::ExecFailed, id, &failed))
                .await;
        }
    }
}

/// `core.exec.stdin`: waits (not reading the channel meanwhile) until the
/// session holds less than [`STDIN_BOUND`] unread bytes, then hands it over.
async fn feed_stdin(id: u32, data: Vec<u8>, sessions: &HashMap<u32, SessionHandle>) {
    let Some(session) = sessions.get(&id) else {
        tracing::debug!("demo agent: stdin for unknown session {id} dropped");
        return;
    };
    match session.reserve_stdin(data.len()).await {
        Some(permit) => {
            session.send(Control::Stdin(data, permit));
        }
        None => tracing::debug!("demo agent: stdin for ended session {id} dropped"),
    }
}
