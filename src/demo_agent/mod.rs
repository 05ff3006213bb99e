//! A **stand-in for the real guest agent**, for demos and tests: it speaks the
//! guest side of the protocol over any byte stream, in either generation
//! ([`Generation`]: legacy by default), and runs the requested commands as
//! *host* processes (no VM, no isolation, no pty).
//!
//! What it does, message by message:
//! - sends `core.ready` first (legacy, `v = 1`); in the current generation
//!   (`v = 10`) it first sends `core.init.resolved {default_user: {uid,
//!   gid}}` on id 0, waits for `core.init.ack`, and only then sends a ready
//!   advertising `workload_transport_barrier_version: 2` and its
//!   `exec_limits`. Every frame it builds carries its generation's `v`;
//! - `core.exec.request` spawns the process with `tokio::process` (cmd, args,
//!   `KEY=VALUE` env entries, cwd), replies `core.exec.started{pid}`, streams
//!   stdout and stderr in chunks of at most 16 KiB (at most the ready's
//!   `output_chunk_size` in the current generation), and ends the session
//!   with `core.exec.exited{code}` (128 + n when signal n killed it) or
//!   `core.exec.failed{kind}` when the process could not start;
//! - `core.exec.stdin` feeds the child's stdin; an empty `data` closes it.
//!   Legacy: at most [`STDIN_BOUND`] bytes are held per session for a
//!   process that does not read them; past that the agent stops reading its
//!   channel until the process takes them (or ends), as a stalled guest
//!   does, and the legacy protocol has no per-session credit, so meanwhile
//!   the other sessions' input waits too. Current: the agent never stops
//!   reading; input credit bounds what it holds instead (see `current.rs`:
//!   stdin's data credit is granted back once the bytes are in the child's
//!   pipe), and it reports each write with `core.exec.stdin.ack{consumed}`;
//! - every process runs in a process group of its own, and
//!   `core.exec.signal` reaches the whole group (`kill -<n> -- -<pgid>`, no
//!   libc), so `sh -c 'sleep 41; ...'` leaves no `sleep` behind when killed;
//! - `core.exec.resize` is accepted and ignored: there is no pty. A `tty: true`
//!   request runs with pipes too, its stdout and stderr both arriving as
//!   `core.exec.stdout` (one merged stream, as a pty would give);
//! - `core.fs.request` is answered with `core.fs.response{ok: false}`;
//! - `core.shutdown` (from any client: the relay forwards it) kills every
//!   session, every client's, as a guest shutting down would;
//! - current generation only: `core.ping` is answered with `core.pong {}`
//!   and `core.touch` with `core.touched{activity_seq}` on the same id;
//!   `core.relay.client.disconnected` kills that range's sessions (their
//!   exits are still reported); `core.clock.sync` is counted and ignored
//!   (the host's clock is the agent's); `core.exec.output.ack` is accepted
//!   and ignored (output is not held back for a slow reader);
//! - `user` and `rlimits` are not supported: a request naming a user fails
//!   with `user_setup_failed`; rlimits are ignored.
//!
//! Sessions run concurrently, keyed by correlation id. Every frame goes out
//! through one writer task that owns the write half, so frames are written
//! whole and never interleave. It must never depend on the CLI (clap).

mod current;
mod session;

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::wire::payload::{
    ExecFailed, ExecFailureKind, ExecLimits, ExecRequest, ExecSignal, FsResponse, Ready,
    build_frame_v, decode_payload, peek_data,
};
use crate::wire::{CURRENT_VERSION, FLAG_BULK, Frame, FrameDecoder, LEGACY_VERSION, MsgType};
use crate::wire::{Envelope, peek_envelope};

use current::CreditToken;
use session::{Chunk, Control, SessionHandle, Wire};
pub use session::{MAX_CHUNK, STDIN_BOUND};

/// The error text of every `core.fs.response` the demo agent sends.
pub const FS_UNSUPPORTED: &str = "filesystem operations are not supported by the demo agent";

/// Frames queued toward the host before session output waits (backpressure).
const WRITE_QUEUE: usize = 256;

/// The protocol generation the demo agent speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Generation {
    /// Generation 1, as microsandbox 0.4.4's agent.
    #[default]
    Legacy,
    /// Generation 10, as microsandbox 0.7.x's agentd: init exchange, input
    /// credit, exec limits, ping, the disconnect notice, clock sync.
    Current,
}

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
    /// A frame arrived from the host, in the order the agent read them
    /// (only with [`DemoAgent::note_frames`]).
    Received {
        /// Its correlation id.
        id: u32,
        /// Its flags.
        flags: u8,
        /// Its type, if it is one the agent knows.
        t: Option<MsgType>,
    },
    /// The relay said a client's id range is gone; its sessions were killed.
    RangeGone {
        /// First id of the range.
        id_start: u32,
        /// One past its last id.
        id_end_exclusive: u32,
        /// The sessions of that range still running, now sent SIGKILL.
        killed: Vec<u32>,
    },
    /// A `core.clock.sync` arrived (and was ignored).
    ClockSynced {
        /// Clock syncs so far, this one included.
        count: u64,
        /// The host's time it carried.
        unix_time_nanos: u64,
    },
}

/// The demo agent with its options; [`run_demo_agent`] is the short form.
#[derive(Debug, Clone)]
pub struct DemoAgent {
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
    generation: Generation,
    limits: ExecLimits,
    note_frames: bool,
}

impl Default for DemoAgent {
    fn default() -> DemoAgent {
        DemoAgent {
            notes: None,
            generation: Generation::Legacy,
            limits: ExecLimits::default(),
            note_frames: false,
        }
    }
}

/// Runs the legacy demo agent over `stream` until the host closes it.
///
/// Returns an error when the stream fails or carries something that is not a
/// frame (the stream has no resync marker).
pub async fn run_demo_agent<S>(stream: S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    DemoAgent::new().run(stream).await
}

/// Runs the demo agent in `generation` over `stream`; see [`run_demo_agent`].
pub async fn run_demo_agent_with<S>(stream: S, generation: Generation) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    DemoAgent::new().generation(generation).run(stream).await
}

impl DemoAgent {
    /// A legacy demo agent without an observer.
    pub fn new() -> DemoAgent {
        DemoAgent::default()
    }

    /// Speaks `generation`.
    pub fn generation(mut self, generation: Generation) -> DemoAgent {
        self.generation = generation;
        self
    }

    /// Current generation: the execution policy its ready advertises
    /// (default: 0.7.13's defaults). The relay checks it; an unusable one
    /// makes the relay's start fail.
    pub fn exec_limits(mut self, limits: ExecLimits) -> DemoAgent {
        self.limits = limits;
        self
    }

    /// Reports what the agent does to `notes` (best effort: a closed
    /// receiver is ignored).
    pub fn with_notes(mut self, notes: mpsc::UnboundedSender<AgentNote>) -> DemoAgent {
        self.notes = Some(notes);
        self
    }

    /// Also reports every frame read, in order ([`AgentNote::Received`]),
    /// for tests that check what reached the guest.
    pub fn note_frames(mut self, on: bool) -> DemoAgent {
        self.note_frames = on;
        self
    }

    /// Runs the agent over `stream` until the host closes it; see
    /// [`run_demo_agent`].
    pub async fn run<S>(self, stream: S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let started = Instant::now();
        let (rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::channel::<Frame>(WRITE_QUEUE);
        let reader = async move {
            let mut link = Link::new(rd);
            let Some(mut agent) = self.start(&mut link, out_tx, started).await? else {
                return Ok(());
            };
            let result = agent.read_loop(&mut link).await;
            // Sessions hold their own senders; the writer ends after the last.
            drop(agent);
            result
        };
        let (read_result, write_result) = tokio::join!(reader, write_loop(wr, out_rx));
        read_result.and(write_result)
    }

    /// Says the agent is there (and, in the current generation, waits for
    /// the init ack); `None` if the host left first.
    async fn start<R: AsyncRead + Unpin>(
        &self,
        link: &mut Link<R>,
        out: mpsc::Sender<Frame>,
        started: Instant,
    ) -> io::Result<Option<Agent>> {
        let (v, grants, wire) = match self.generation {
            Generation::Legacy => {
                let ready = Ready {
                    boot_time_ns: 0,
                    init_time_ns: 0,
                    ready_time_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                };
                let frame = build_frame_v(LEGACY_VERSION, MsgType::Ready, 0, &ready);
                if out.send(frame).await.is_err() {
                    return Ok(None);
                }
                (LEGACY_VERSION, None, Wire::legacy())
            }
            Generation::Current => {
                let Some(grants) = current::start(self, link, &out, started).await? else {
                    return Ok(None);
                };
                let wire = Wire::current(current::output_chunk(&self.limits));
                (CURRENT_VERSION, Some(grants), wire)
            }
        };
        Ok(Some(Agent {
            out,
            sessions: HashMap::new(),
            notes: self.notes.clone(),
            note_frames: self.note_frames,
            v,
            wire,
            grants,
            activity: 0,
            clock_syncs: 0,
        }))
    }
}

/// The read half with its frame decoder.
struct Link<R> {
    rd: R,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Link<R> {
    fn new(rd: R) -> Link<R> {
        Link {
            rd,
            decoder: FrameDecoder::new(),
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// The next frame; `None` when the host closed the stream.
    async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            match self.rd.read(&mut self.buf).await? {
                0 => return Ok(None),
                n => self.decoder.extend(&self.buf[..n]),
            }
        }
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

/// The reader's state once ready was sent.
struct Agent {
    out: mpsc::Sender<Frame>,
    sessions: HashMap<u32, SessionHandle>,
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
    note_frames: bool,
    /// The generation written into every frame.
    v: u8,
    wire: Wire,
    /// Current generation: where consumed input is reported.
    grants: Option<mpsc::UnboundedSender<(crate::wire::CreditClass, u64)>>,
    /// `core.touch` requests seen.
    activity: u64,
    /// `core.clock.sync` messages seen.
    clock_syncs: u64,
}

impl Agent {
    fn note(&self, note: AgentNote) {
        if let Some(notes) = &self.notes {
            let _ = notes.send(note);
        }
    }

    async fn reply<T: serde::Serialize>(&self, t: MsgType, id: u32, payload: &T) {
        // A closed channel means the host is gone; the frame has no reader.
        let _ = self.out.send(build_frame_v(self.v, t, id, payload)).await;
    }

    async fn read_loop<R: AsyncRead + Unpin>(&mut self, link: &mut Link<R>) -> io::Result<()> {
        let result = loop {
            match link.next().await {
                Ok(Some(frame)) => self.on_frame(&frame).await,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // The host left: no one will read these processes' output any more.
        for session in self.sessions.values() {
            session.send(Control::Signal(9));
        }
        result
    }

    /// One frame from the host. Its credit (current generation) is reported
    /// consumed when the token drops: here, or once stdin is written.
    async fn on_frame(&mut self, frame: &Frame) {
        let id = frame.id();
        let current = self.grants.is_some();
        let env = if current && frame.flags() == FLAG_BULK {
            None // a raw bulk record: the demo agent has no bulk operations
        } else {
            match peek_envelope(frame.body()) {
                Ok(env) => Some(env),
                Err(e) => {
                    tracing::warn!("demo agent: frame {id} skipped: {e}");
                    None
                }
            }
        };
        let t = env.as_ref().map(|e| e.t);
        let token = match &self.grants {
            Some(g) => CreditToken::new(g, current::class_of(frame, t), frame.len()),
            None => CreditToken::default(),
        };
        if self.note_frames {
            let flags = frame.flags();
            self.note(AgentNote::Received { id, flags, t });
        }
        if let Some(env) = env {
            self.dispatch(id, env, token).await;
        }
    }

    async fn dispatch(&mut self, id: u32, env: Envelope<'_>, token: CreditToken) {
        let control = match env.t {
            MsgType::ExecRequest => return self.start_session(id, &env.payload).await,
            MsgType::ExecStdin => match peek_data(&env.payload) {
                Ok(data) => return self.feed_stdin(id, data.into_owned(), token).await,
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
                return self.reply(MsgType::FsResponse, id, &resp).await;
            }
            // The rest of a write the demo agent already refused.
            MsgType::FsData => return,
            MsgType::Shutdown => return self.shutdown(),
            other if self.grants.is_some() => return self.current_only(id, other, &env).await,
            other => {
                tracing::warn!("demo agent: frame {id}: {other} is not for the guest; skipped");
                return;
            }
        };
        match self.sessions.get(&id) {
            Some(session) if session.send(control) => {}
            _ => tracing::debug!("demo agent: {} for unknown session {id} dropped", env.t),
        }
    }

    fn shutdown(&self) {
        tracing::info!(
            "demo agent: shutdown requested; killing all {} sessions, every client's",
            self.sessions.len()
        );
        for session in self.sessions.values() {
            session.send(Control::Signal(9));
        }
    }

    /// The types only the current generation has.
    async fn current_only(&mut self, id: u32, t: MsgType, env: &Envelope<'_>) {
        match t {
            MsgType::Ping => self.reply(MsgType::Pong, id, &current::Empty {}).await,
            MsgType::Touch => {
                self.activity += 1;
                let touched = current::Touched {
                    activity_seq: self.activity,
                };
                self.reply(MsgType::Touched, id, &touched).await;
            }
            MsgType::RelayClientDisconnected => {
                match decode_payload::<current::RangeGone>(&env.payload) {
                    Ok(gone) => self.range_gone(&gone),
                    Err(e) => tracing::warn!("demo agent: disconnect notice skipped: {e}"),
                }
            }
            MsgType::ClockSync => {
                self.clock_syncs += 1;
                let unix_time_nanos = decode_payload::<current::ClockSync>(&env.payload)
                    .map_or(0, |c| c.unix_time_nanos);
                let count = self.clock_syncs;
                self.note(AgentNote::ClockSynced {
                    count,
                    unix_time_nanos,
                });
            }
            // Output is never held back for a slow reader, so acks change nothing.
            MsgType::ExecOutputAck | MsgType::InitAck => {}
            other => {
                tracing::warn!("demo agent: frame {id}: {other} is not for the guest; skipped")
            }
        }
    }

    /// `core.relay.client.disconnected`: that client's sessions are killed.
    fn range_gone(&mut self, gone: &current::RangeGone) {
        self.sessions.retain(|_, session| !session.is_closed());
        let range = gone.id_start..gone.id_end_exclusive;
        let mut killed: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(id, _)| range.contains(id))
            .filter(|(_, session)| session.send(Control::Signal(9)))
            .map(|(&id, _)| id)
            .collect();
        killed.sort_unstable();
        self.note(AgentNote::RangeGone {
            id_start: gone.id_start,
            id_end_exclusive: gone.id_end_exclusive,
            killed,
        });
    }

    /// `core.exec.request`: starts a session (or answers why it cannot).
    async fn start_session(&mut self, id: u32, payload: &[u8]) {
        self.sessions.retain(|_, session| !session.is_closed());
        if self.sessions.contains_key(&id) {
            tracing::warn!("demo agent: exec request {id} ignored: session already open");
            return;
        }
        match decode_payload::<ExecRequest>(payload) {
            Ok(req) => {
                let out = self.out.clone();
                let session = session::spawn(id, req, out, self.notes.clone(), self.wire);
                self.sessions.insert(id, session);
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
                self.reply(MsgType::ExecFailed, id, &failed).await;
            }
        }
    }

    /// `core.exec.stdin`. Legacy: waits (not reading the channel meanwhile)
    /// until the session holds less than [`STDIN_BOUND`] unread bytes, then
    /// hands it over. Current: hands it over at once; its credit comes back
    /// when it is written.
    async fn feed_stdin(&self, id: u32, data: Vec<u8>, credit: CreditToken) {
        let Some(session) = self.sessions.get(&id) else {
            tracing::debug!("demo agent: stdin for unknown session {id} dropped");
            return;
        };
        let permit = if self.grants.is_some() {
            Some(None)
        } else {
            session.reserve_stdin(data.len()).await
        };
        match permit {
            Some(permit) => {
                session.send(Control::Stdin(Chunk {
                    data,
                    permit,
                    credit,
                }));
            }
            None => tracing::debug!("demo agent: stdin for ended session {id} dropped"),
        }
    }
}
