//! A **stand-in for the real guest agent**, for demos and tests: it speaks the
//! guest side of the protocol over any byte stream, in either generation
//! ([`Generation`]: legacy by default), and runs the requested commands as
//! *host* processes (no VM, no isolation, no pty). In the current
//! generation it models microsandbox-agentd 0.7.13 (`AD/` below: its `lib/`),
//! whose behaviour is the judge where the two differ.
//!
//! # Start
//! - Legacy: `core.ready` (`v = 1`) first.
//! - Current (`v = 10`): `core.init.resolved {default_user: {uid, gid}}` on
//!   id 0, a wait for `core.init.ack` (frames before it are skipped), then a
//!   ready advertising `workload_transport_barrier_version: 2`, its
//!   `exec_limits` (always: 0.7.13's defaults unless
//!   [`DemoAgent::exec_limits`] says otherwise) and `relay_lease {max_format:
//!   1}`, as agentd always does (AD/agent.rs:542-561). Every frame it builds
//!   carries its generation's `v`.
//!
//! # What it reads (current generation)
//! Before it takes anything as a frame it looks for a range-lease record
//! (the `MSBL` magic at bytes 9..13, AD/agent.rs:918-933), then reads the
//! frame and checks it as agentd's decoder would (AD/agent.rs:935-936). A
//! frame agentd cannot decode ends the agent's loop: [`DemoAgent::run`]
//! returns an [`io::ErrorKind::InvalidData`] error `agent loop error: decode
//! frame: ...` (agentd exits and the VM goes down). That is: an envelope
//! [`agentd_envelope`](crate::wire::agentd_envelope) refuses (a type name
//! 0.7.13 does not have; `v`, `t` or `p` missing, repeated or of another
//! kind; an empty body), and a raw bulk record whose header agentd's codec
//! refuses or whose BULK flag is combined with another. Also fatal, as in
//! agentd (AD/agent.rs:918-933, 2364-2424): a malformed lease record, a
//! record or notice naming a non-canonical range, a zero incarnation, a
//! connected record for a slot that still holds another incarnation, a
//! notice without the incarnation of a leased slot, and any `core.error`
//! the agent would owe a sender whose `v` is below 5 (which cannot read
//! one, AD/agent.rs:3755-3766). A sender of `v` 5 or more gets `core.error
//! {kind, message, offending_type}` on the frame's id instead:
//! `invalid_payload` for a payload that does not decode or an exec-control
//! frame over 4 KiB, `invalid_flags` for flags other than its type's
//! (AD/agent.rs:1014-1050, 3848-3866).
//!
//! Every frame after ready is counted as the relay charges it and granted
//! back as consumed (see `current.rs`); a lease record is charged 41 bytes
//! and one frame of control credit.
//!
//! # Message by message
//! - *connected record* (current): the slot (`id_start / (u32::MAX/128)`)
//!   now belongs to that incarnation. Sessions opened while a slot is leased
//!   remember its owner.
//! - `core.exec.request` spawns the process with `tokio::process` (cmd, args,
//!   `KEY=VALUE` env entries, cwd) in a process group of its own, replies
//!   `core.exec.started{pid}`, streams stdout and stderr in chunks of at
//!   most 16 KiB (at most the ready's `output_chunk_size` in the current
//!   generation), and ends the session with `core.exec.exited{code}` (128 +
//!   n when signal n killed it) once the process exited and its pipes
//!   reached end of file, or `core.exec.failed{kind}` when it could not
//!   start. Current, for a request of `v` 10 or more (AD/agent.rs:2844, the
//!   gate agentd puts on exec limits): past `max_executions` live sessions
//!   it answers `core.exec.failed` (`resource_limit`), and the session gets
//!   an **output window** of `output_limit` bytes (AD/exec_output.rs,
//!   AD/session.rs:1899-2050): each output chunk is charged its payload plus
//!   256 bytes before it is sent, the reader waits while the window is
//!   full, the client's cumulative `core.exec.output.ack {consumed}` for
//!   that session id gives the room back (an ack that goes backwards or past
//!   what was sent is refused and changes nothing, AD/exec_output.rs:76-88).
//!   A client of `v` below 10 is never paused ([`DemoAgent::output_window`]
//!   turns the window off for every client). agentd also holds
//!   `core.exec.exited` until all sent output was acknowledged
//!   (AD/session.rs:725-740, AD/agent.rs:1145-1154, 2955-2972); the demo
//!   agent does so only with [`DemoAgent::hold_exits_until_acknowledged`].
//! - When a session ends, what is left of its process group is killed
//!   (agentd leaves that to the VM's end; on a host it would outlive
//!   everything).
//! - `core.exec.stdin` feeds the child's stdin; an empty `data` closes it.
//!   Legacy: at most [`STDIN_BOUND`] bytes are held per session for a
//!   process that does not read them; past that the agent stops reading its
//!   channel until the process takes them (or ends), as a stalled guest
//!   does, and the legacy protocol has no per-session credit, so meanwhile
//!   the other sessions' input waits too. Current: the agent never stops
//!   reading; input credit bounds what it holds instead (stdin's data
//!   credit is granted back once the bytes are in the child's pipe), and it
//!   reports each write with `core.exec.stdin.ack{consumed}`.
//! - `core.exec.signal` reaches the whole process group, so `sh -c 'sleep
//!   41; ...'` leaves no `sleep` behind when killed.
//! - `core.exec.resize` is accepted and ignored: there is no pty. A `tty:
//!   true` request runs with pipes too, its stdout and stderr both arriving
//!   as `core.exec.stdout` (one merged stream, as a pty would give).
//! - `core.fs.request` is answered with `core.fs.response{ok: false}`.
//! - `core.shutdown` (from any client: the relay forwards it) SIGKILLs every
//!   session, every client's; their exits are still reported.
//! - Current only: `core.ping` is answered with `core.pong {}` and
//!   `core.touch` with `core.touched{activity_seq}` on the same id;
//!   `core.clock.sync` is counted and ignored (the host's clock is the
//!   agent's).
//! - `core.relay.client.disconnected` (current) as agentd handles it
//!   (AD/agent.rs:2399-2450, 3195-3240): with the slot's current
//!   incarnation, or without one for a slot never leased, the range's exec
//!   sessions are SIGKILLed (their whole process groups) and deleted at
//!   once: **no `core.exec.exited` is ever sent for them**, and nothing
//!   more of theirs. With the incarnation the agent then answers with the
//!   41-byte *disconnected ack* record, and output of that owner still
//!   queued is dropped rather than written (AD/agent.rs:1118-1121), so
//!   nothing of it follows the ack. A notice naming a stale incarnation is
//!   ignored and not acknowledged. Unleased, output the range's sessions
//!   had already queued may still arrive after the notice, as in agentd.
//! - `user` and `rlimits` are not supported: a request naming a user fails
//!   with `user_setup_failed`; rlimits are ignored.
//!
//! # When it stops
//! When the host closes the stream, every session is deleted as after a
//! disconnect notice, and [`DemoAgent::run`] returns once their processes
//! are reaped. Every process group still running when `run`'s future is
//! dropped (its task aborted, say) is SIGKILLed then. A legacy agent
//! stalled on a process that does not read its stdin reads nothing, so it
//! does not see the stream close: its embedder ends it by dropping it.
//!
//! # Where it still differs from agentd
//! Processes run on the host as the relay's user, with pipes, never a pty;
//! no fs or tcp operations, bulk records or workload control (bulk records
//! are checked and dropped; other requests get no answer); exits are not
//! held for unacknowledged output unless asked to be; `core.shutdown`
//! SIGKILLs and reports exits where agentd sends SIGTERM, deletes the
//! sessions and powers off; the stdin policy of the exec limits
//! (`input_limit`, `stdin_chunk_size`) is not enforced and stdin acks are
//! not coalesced; frames before the init ack are skipped, not checked; the
//! loop ends at the end of the stream where agentd (not PID 1) keeps
//! polling; background processes die with their session.
//!
//! Sessions run concurrently, keyed by correlation id. Every frame goes out
//! through one writer task that owns the write half, so frames are written
//! whole and never interleave. It must never depend on the CLI (clap).

mod current;
mod groups;
mod leases;
mod session;
mod window;

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::wire::lease::{LEASE_RECORD_LEN, LeaseError, LeaseRecord, has_lease_magic};
use crate::wire::payload::{
    ClockSync, Consumed, ExecFailed, ExecFailureKind, ExecLimits, ExecRequest, ExecResize,
    ExecSignal, FsResponse, Ready, RelayClientDisconnected, build_frame_v, decode_payload,
    peek_data,
};
use crate::wire::{CURRENT_VERSION, CreditClass, Frame, LEGACY_VERSION, MsgType, check_len};
use crate::wire::{Envelope, peek_envelope};

use current::{Checked, CreditToken};
use groups::{Groups, Registry};
use leases::{Leases, Notice, Owner};
use session::{Chunk, Control, SessionHandle, Setup, Wire};
pub use session::{MAX_CHUNK, STDIN_BOUND};
use window::OutputWindow;

/// The error text of every `core.fs.response` the demo agent sends.
pub const FS_UNSUPPORTED: &str = "filesystem operations are not supported by the demo agent";

/// Frames queued toward the host before session output waits (backpressure).
const WRITE_QUEUE: usize = 256;

/// Largest exec-control frame agentd takes (`MAX_EXEC_CONTROL_BYTES`).
const MAX_EXEC_CONTROL_BYTES: usize = 4096;

/// The protocol generation the demo agent speaks (the core's): legacy, as
/// microsandbox 0.4.4's agent, or current, generation 10 as microsandbox
/// 0.7.x's agentd (init exchange, input credit, exec limits and output
/// windows, range leases, ping, the disconnect notice, clock sync).
pub use crate::core::Generation;

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
    /// A process exited and was reaped; `code` is what `core.exec.exited`
    /// carries, or would have carried: a session deleted by a disconnect
    /// notice (or the agent's end) sends none.
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
        /// Its type, if it is one the agent knows (none for a bulk record).
        t: Option<MsgType>,
    },
    /// A range-lease *connected* record arrived: the range has an owner.
    Leased {
        /// First id of the range.
        id_start: u32,
        /// One past its last id.
        id_end_exclusive: u32,
    },
    /// The relay said a client's id range is gone; its sessions were
    /// deleted and their processes killed.
    RangeGone {
        /// First id of the range.
        id_start: u32,
        /// One past its last id.
        id_end_exclusive: u32,
        /// The sessions of that range still running, now sent SIGKILL.
        killed: Vec<u32>,
        /// Whether the notice named the owner's incarnation and so was
        /// answered with a disconnected ack.
        acked: bool,
    },
    /// A disconnect notice named an incarnation the range no longer has:
    /// ignored, not acknowledged.
    StaleNotice {
        /// First id of the range.
        id_start: u32,
        /// One past its last id.
        id_end_exclusive: u32,
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
    output_window: bool,
    hold_exits: bool,
}

impl Default for DemoAgent {
    fn default() -> DemoAgent {
        DemoAgent {
            notes: None,
            generation: Generation::Legacy,
            limits: ExecLimits::default(),
            note_frames: false,
            output_window: true,
            hold_exits: false,
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

    /// Current generation: the execution policy its ready advertises and it
    /// applies to requests of `v` 10 or more (default: 0.7.13's defaults).
    /// The relay checks it; an unusable one makes the relay's start fail.
    pub fn exec_limits(mut self, limits: ExecLimits) -> DemoAgent {
        self.limits = limits;
        self
    }

    /// Current generation: whether a request of `v` 10 or more gets agentd's
    /// output window (on by default, as in agentd): its output stops at
    /// `output_limit` unacknowledged bytes until the client's
    /// `core.exec.output.ack` gives room back. Off, a client of generation
    /// 10 that never acknowledges output still gets all of it (a deviation
    /// from agentd, for such clients only).
    pub fn output_window(mut self, on: bool) -> DemoAgent {
        self.output_window = on;
        self
    }

    /// Current generation: holds each windowed session's `core.exec.exited`
    /// until the client acknowledged all of its output, as agentd does
    /// (AD/session.rs:725-740; the acknowledgement that drains the window
    /// releases the exit, AD/agent.rs:2955-2972). Off by default: a client
    /// of generation 10 that never acknowledges output (the bare 0.7.13
    /// `microsandbox-agent-client`, whose acknowledgements are left to the
    /// SDK above it, or `agent-relay demo`'s client) would never see its
    /// sessions end. The output window itself applies either way.
    pub fn hold_exits_until_acknowledged(mut self, on: bool) -> DemoAgent {
        self.hold_exits = on;
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

    /// Runs the agent over `stream` until the host closes it (then every
    /// session is deleted and its process killed and reaped); see
    /// [`run_demo_agent`].
    ///
    /// In the current generation it also ends, with an
    /// [`io::ErrorKind::InvalidData`] error naming the cause, on input that
    /// ends agentd's loop (see the module docs). Dropping the future before
    /// it is done SIGKILLs every process group the agent started that is
    /// still running.
    pub async fn run<S>(self, stream: S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let started = Instant::now();
        let groups = Groups::default();
        let leases = Leases::default();
        let (rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::channel::<Out>(WRITE_QUEUE);
        let registry = groups.registry();
        let reader_leases = leases.clone();
        // Every session holds a clone until its task ends.
        let (alive, mut sessions_left) = mpsc::channel::<()>(1);
        let reader = async move {
            let mut link = Link::new(rd);
            let parts = (out_tx, registry, reader_leases, alive);
            let started = self.start(&mut link, started, parts);
            let Some(mut agent) = started.await? else {
                return Ok(());
            };
            let result = agent.read_loop(&mut link).await;
            // Sessions hold their own senders; the writer ends after the last.
            drop(agent);
            result
        };
        let (read_result, write_result) = tokio::join!(reader, write_loop(wr, out_rx, leases));
        // The reader deleted every session as it ended; wait for their
        // processes to be killed and reaped (the writer stops early when
        // the host is gone).
        while sessions_left.recv().await.is_some() {}
        drop(groups);
        read_result.and(write_result)
    }

    /// Says the agent is there (and, in the current generation, waits for
    /// the init ack); `None` if the host left first.
    async fn start<R: AsyncRead + Unpin>(
        &self,
        link: &mut Link<R>,
        started: Instant,
        (out, groups, leases, alive): (mpsc::Sender<Out>, Registry, Leases, mpsc::Sender<()>),
    ) -> io::Result<Option<Agent>> {
        let (v, current, wire) = match self.generation {
            Generation::Legacy => {
                let ready = Ready {
                    boot_time_ns: 0,
                    init_time_ns: 0,
                    ready_time_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                };
                let frame = build_frame_v(LEGACY_VERSION, MsgType::Ready, 0, &ready);
                if out.send(Out::frame(frame)).await.is_err() {
                    return Ok(None);
                }
                (LEGACY_VERSION, None, Wire::legacy())
            }
            Generation::Current => {
                let Some(grants) = current::start(self, link, &out, started).await? else {
                    return Ok(None);
                };
                let wire = Wire::current(current::output_chunk(&self.limits));
                let current = Current {
                    grants,
                    limits: self.limits,
                    output_window: self.output_window,
                    hold_exits: self.hold_exits,
                };
                (CURRENT_VERSION, Some(current), wire)
            }
        };
        Ok(Some(Agent {
            out,
            sessions: HashMap::new(),
            notes: self.notes.clone(),
            note_frames: self.note_frames,
            v,
            wire,
            current,
            leases,
            groups,
            alive,
            activity: 0,
            clock_syncs: 0,
        }))
    }
}

/// One item of the write queue: bytes to write whole, and the range owner
/// they belong to, if it is leased (dropped unwritten once that owner is
/// gone).
#[derive(Debug)]
struct Out {
    bytes: Bytes,
    owner: Option<Owner>,
}

impl Out {
    /// A frame of the agent's own (replies, grants): always written.
    fn frame(frame: Frame) -> Out {
        Out {
            bytes: frame.into_bytes(),
            owner: None,
        }
    }

    /// A session's frame, written only while `owner` (if any) is current.
    fn owned(frame: Frame, owner: Option<Owner>) -> Out {
        Out {
            bytes: frame.into_bytes(),
            owner,
        }
    }

    /// Raw bytes that are no frame (a lease record).
    fn raw(bytes: &[u8]) -> Out {
        Out {
            bytes: Bytes::copy_from_slice(bytes),
            owner: None,
        }
    }
}

/// What the reader takes off the stream.
enum Input {
    /// A frame (not yet checked).
    Frame(Frame),
    /// 41 bytes that carry the lease magic, read as a record.
    Lease(Result<LeaseRecord, LeaseError>),
}

/// The read half and what was read of it but not yet taken.
struct Link<R> {
    rd: R,
    buf: BytesMut,
    chunk: Vec<u8>,
    /// Whether lease records are looked for (after a current ready).
    leases: bool,
}

impl<R: AsyncRead + Unpin> Link<R> {
    fn new(rd: R) -> Link<R> {
        Link {
            rd,
            buf: BytesMut::new(),
            chunk: vec![0u8; 64 * 1024],
            leases: false,
        }
    }

    /// The next frame or lease record; `None` when the host closed the
    /// stream. An illegal length field is an error: the stream has no
    /// resync marker.
    async fn next(&mut self) -> io::Result<Option<Input>> {
        loop {
            if let Some(input) = self.take()? {
                return Ok(Some(input));
            }
            match self.rd.read(&mut self.chunk).await? {
                0 => return Ok(None),
                n => self.buf.extend_from_slice(&self.chunk[..n]),
            }
        }
    }

    fn take(&mut self) -> io::Result<Option<Input>> {
        // agentd looks for the magic before it tries a frame there.
        if self.leases && has_lease_magic(&self.buf) {
            if self.buf.len() < LEASE_RECORD_LEN {
                return Ok(None);
            }
            let record = LeaseRecord::decode(&self.buf[..LEASE_RECORD_LEN]);
            self.buf.advance(LEASE_RECORD_LEN);
            return Ok(Some(Input::Lease(record)));
        }
        let Some(len) = self.buf.first_chunk::<4>().map(|b| u32::from_be_bytes(*b)) else {
            return Ok(None);
        };
        check_len(len).map_err(|e| fatal(format!("decode frame: {e}")))?;
        let total = 4 + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let frame = Frame::copy_of(&self.buf[..total]);
        self.buf.advance(total);
        Ok(Some(Input::Frame(frame)))
    }
}

/// The error that ends the agent's loop, as agentd's `agent loop error`.
fn fatal(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("agent loop error: {why}"),
    )
}

/// The one owner of the write half: items go out whole, in queue order; a
/// session's output whose leased owner is gone is dropped instead.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Out>,
    leases: Leases,
) -> io::Result<()> {
    while let Some(out) = rx.recv().await {
        // Checked as the item is taken: the reader removes an owner before
        // it queues the owner's ack, so nothing of that owner can follow
        // the ack.
        if let Some(owner) = &out.owner
            && !leases.is_current(owner)
        {
            continue;
        }
        if let Err(e) = wr.write_all(&out.bytes).await {
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

/// The current generation's state.
struct Current {
    /// Where consumed input is reported.
    grants: mpsc::UnboundedSender<(CreditClass, u64)>,
    /// The execution policy the ready advertised.
    limits: ExecLimits,
    /// Whether requests of generation 10 on get an output window.
    output_window: bool,
    /// Whether exits wait for the output's acknowledgement.
    hold_exits: bool,
}

/// The reader's state once ready was sent.
struct Agent {
    out: mpsc::Sender<Out>,
    sessions: HashMap<u32, SessionHandle>,
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
    note_frames: bool,
    /// The generation written into every frame.
    v: u8,
    wire: Wire,
    current: Option<Current>,
    /// The slots' owners (current generation; empty in legacy).
    leases: Leases,
    /// Where sessions register their process groups.
    groups: Registry,
    /// Cloned into every session (see [`DemoAgent::run`]).
    alive: mpsc::Sender<()>,
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
        let _ = self
            .out
            .send(Out::frame(build_frame_v(self.v, t, id, payload)))
            .await;
    }

    async fn read_loop<R: AsyncRead + Unpin>(&mut self, link: &mut Link<R>) -> io::Result<()> {
        link.leases = self.current.is_some();
        let result = loop {
            let input = match link.next().await {
                Ok(Some(input)) => input,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let handled = match input {
                Input::Lease(record) => self.on_lease(record),
                Input::Frame(frame) if self.current.is_some() => self.on_frame(&frame).await,
                Input::Frame(frame) => {
                    self.on_legacy_frame(&frame).await;
                    Ok(())
                }
            };
            if let Err(e) = handled {
                tracing::error!("demo agent: {e}");
                break Err(e);
            }
        };
        // The host left (or the loop failed): no one will read these
        // processes' output any more.
        for session in self.sessions.values() {
            session.send(Control::Abandon);
        }
        result
    }

    /// A range-lease record (current generation).
    fn on_lease(&mut self, record: Result<LeaseRecord, LeaseError>) -> io::Result<()> {
        let record = record.map_err(|e| {
            fatal(format!(
                "decode relay client lease: malformed relay client lease frame ({e})"
            ))
        })?;
        if let Some(current) = &self.current {
            // Charged as a control frame of 41 bytes, consumed at once.
            drop(CreditToken::new(
                &current.grants,
                CreditClass::Control,
                LEASE_RECORD_LEN,
            ));
        }
        self.leases.connect(&record).map_err(fatal)?;
        self.note(AgentNote::Leased {
            id_start: record.id_start,
            id_end_exclusive: record.id_end,
        });
        Ok(())
    }

    /// One current-generation frame. Its credit is reported consumed when
    /// the token drops: here, or once stdin is written.
    async fn on_frame(&mut self, frame: &Frame) -> io::Result<()> {
        let checked = current::check_frame(frame).map_err(fatal)?;
        let (t, class) = match &checked {
            Checked::Bulk => (None, CreditClass::Data),
            Checked::Message { t, .. } => (Some(*t), t.credit()),
        };
        let token = match &self.current {
            Some(c) => CreditToken::new(&c.grants, class, frame.len()),
            None => CreditToken::default(),
        };
        let id = frame.id();
        if self.note_frames {
            let flags = frame.flags();
            self.note(AgentNote::Received { id, flags, t });
        }
        // The demo agent has no bulk operations: a well-formed record is
        // dropped.
        let Checked::Message { t, v, payload } = checked else {
            return Ok(());
        };
        if t.info().exec_control && frame.len() > MAX_EXEC_CONTROL_BYTES {
            let why = "execution control message exceeds 4 KiB".to_owned();
            return self.refuse(id, v, t, current::INVALID_PAYLOAD, why).await;
        }
        if frame.flags() != t.flags() {
            let why = format!(
                "invalid flags for {t}: got {}, expected {}",
                frame.flags(),
                t.flags()
            );
            return self.refuse(id, v, t, current::INVALID_FLAGS, why).await;
        }
        self.dispatch(id, v, t, &payload, token).await
    }

    /// Answers a sender that can read `core.error` with one; for an older
    /// sender agentd's loop ends instead.
    async fn refuse(
        &self,
        id: u32,
        v: u8,
        t: MsgType,
        kind: &'static str,
        message: String,
    ) -> io::Result<()> {
        if v < current::CORE_ERROR_SINCE {
            return Err(fatal(format!(
                "cannot send core.error to protocol generation {v} ({message})"
            )));
        }
        tracing::debug!("demo agent: frame {id}: {kind}: {message}");
        let error = current::CoreErrorReply {
            kind,
            message,
            offending_type: Some(t.as_str()),
        };
        self.reply(MsgType::CoreError, id, &error).await;
        Ok(())
    }

    /// The payload of `t`, or the refusal owed for it.
    async fn payload_of<T: serde::de::DeserializeOwned>(
        &self,
        id: u32,
        v: u8,
        t: MsgType,
        payload: &[u8],
    ) -> io::Result<Option<T>> {
        match decode_payload::<T>(payload) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                let why = format!("decode payload for {t}: {e}");
                self.refuse(id, v, t, current::INVALID_PAYLOAD, why)
                    .await
                    .map(|()| None)
            }
        }
    }

    async fn dispatch(
        &mut self,
        id: u32,
        v: u8,
        t: MsgType,
        payload: &[u8],
        token: CreditToken,
    ) -> io::Result<()> {
        match t {
            MsgType::ExecRequest => {
                if let Some(req) = self.payload_of::<ExecRequest>(id, v, t, payload).await? {
                    self.start_session(id, v, req).await;
                }
            }
            MsgType::ExecStdin => match peek_data(payload) {
                Ok(data) => self.feed_stdin(id, data.into_owned(), token).await,
                Err(e) => {
                    let why = format!("decode payload for {t}: {e}");
                    self.refuse(id, v, t, current::INVALID_PAYLOAD, why).await?;
                }
            },
            MsgType::ExecOutputAck => {
                if let Some(ack) = self.payload_of::<Consumed>(id, v, t, payload).await?
                    && let Some(session) = self.sessions.get(&id)
                    && let Err(e) = session.acknowledge_output(ack.consumed)
                {
                    tracing::warn!(
                        "demo agent: rejected exec output acknowledgement for {id}: {e}"
                    );
                }
            }
            MsgType::ExecSignal => {
                if let Some(sig) = self.payload_of::<ExecSignal>(id, v, t, payload).await? {
                    self.signal(id, sig.signal);
                }
            }
            // No pty, so nothing to resize.
            MsgType::ExecResize => {
                self.payload_of::<ExecResize>(id, v, t, payload).await?;
            }
            MsgType::FsRequest => self.fs_unsupported(id).await,
            // The rest of a write the demo agent already refused.
            MsgType::FsData => {}
            MsgType::Shutdown => self.shutdown(),
            MsgType::Ping => {
                if let Some(current::Empty {}) = self.payload_of(id, v, t, payload).await? {
                    self.reply(MsgType::Pong, id, &current::Empty {}).await;
                }
            }
            MsgType::Touch => {
                if let Some(current::Empty {}) = self.payload_of(id, v, t, payload).await? {
                    self.activity += 1;
                    let touched = current::Touched {
                        activity_seq: self.activity,
                    };
                    self.reply(MsgType::Touched, id, &touched).await;
                }
            }
            MsgType::RelayClientDisconnected => {
                if let Some(gone) = self.payload_of(id, v, t, payload).await? {
                    self.range_gone(gone).await?;
                }
            }
            MsgType::ClockSync => {
                if let Some(sync) = self.payload_of::<ClockSync>(id, v, t, payload).await? {
                    self.clock_syncs += 1;
                    self.note(AgentNote::ClockSynced {
                        count: self.clock_syncs,
                        unix_time_nanos: sync.unix_time_nanos,
                    });
                }
            }
            // agentd ignores the types it has no handler for.
            other => tracing::debug!("demo agent: frame {id}: {other} ignored"),
        }
        Ok(())
    }

    /// One legacy frame: what does not decode is skipped.
    async fn on_legacy_frame(&mut self, frame: &Frame) {
        let id = frame.id();
        let env = match peek_envelope(frame.body()) {
            Ok(env) => Some(env),
            Err(e) => {
                tracing::warn!("demo agent: frame {id} skipped: {e}");
                None
            }
        };
        if self.note_frames {
            let (flags, t) = (frame.flags(), env.as_ref().map(|e| e.t));
            self.note(AgentNote::Received { id, flags, t });
        }
        if let Some(env) = env {
            self.dispatch_legacy(id, env).await;
        }
    }

    async fn dispatch_legacy(&mut self, id: u32, env: Envelope<'_>) {
        match env.t {
            MsgType::ExecRequest => match decode_payload::<ExecRequest>(&env.payload) {
                Ok(req) => self.start_session(id, LEGACY_VERSION, req).await,
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
            },
            MsgType::ExecStdin => match peek_data(&env.payload) {
                Ok(data) => {
                    let data = data.into_owned();
                    self.feed_stdin(id, data, CreditToken::default()).await;
                }
                Err(e) => tracing::warn!("demo agent: stdin frame {id} skipped: {e}"),
            },
            MsgType::ExecSignal => match decode_payload::<ExecSignal>(&env.payload) {
                Ok(sig) => self.signal(id, sig.signal),
                Err(e) => tracing::warn!("demo agent: signal frame {id} skipped: {e}"),
            },
            // No pty, so nothing to resize.
            MsgType::ExecResize => {}
            MsgType::FsRequest => self.fs_unsupported(id).await,
            // The rest of a write the demo agent already refused.
            MsgType::FsData => {}
            MsgType::Shutdown => self.shutdown(),
            other => {
                tracing::warn!("demo agent: frame {id}: {other} is not for the guest; skipped")
            }
        }
    }

    fn signal(&self, id: u32, signal: i32) {
        match self.sessions.get(&id) {
            Some(session) if session.send(Control::Signal(signal)) => {}
            _ => tracing::debug!("demo agent: signal for unknown session {id} dropped"),
        }
    }

    async fn fs_unsupported(&self, id: u32) {
        let resp = FsResponse {
            ok: false,
            error: Some(FS_UNSUPPORTED.to_owned()),
            data: None,
        };
        self.reply(MsgType::FsResponse, id, &resp).await;
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

    /// `core.relay.client.disconnected`, as agentd handles it.
    async fn range_gone(&mut self, gone: RelayClientDisconnected) -> io::Result<()> {
        let (id_start, id_end_exclusive) = (gone.id_start, gone.id_end_exclusive);
        let notice = self
            .leases
            .disconnect(id_start, id_end_exclusive, gone.incarnation)
            .map_err(fatal)?;
        let Notice::Gone(incarnation) = notice else {
            tracing::debug!(
                "demo agent: disconnect notice for [{id_start}, {id_end_exclusive}) names a stale incarnation; ignored"
            );
            self.note(AgentNote::StaleNotice {
                id_start,
                id_end_exclusive,
            });
            return Ok(());
        };
        let range = id_start..id_end_exclusive;
        let mut killed = Vec::new();
        self.sessions.retain(|&id, session| {
            if !range.contains(&id) {
                return true;
            }
            if session.send(Control::Abandon) {
                killed.push(id);
            }
            false
        });
        killed.sort_unstable();
        self.note(AgentNote::RangeGone {
            id_start,
            id_end_exclusive,
            killed,
            acked: incarnation.is_some(),
        });
        if let Some(incarnation) = incarnation {
            // Queued after the owner was removed: the writer drops whatever
            // of the owner is still queued ahead of it, or comes later.
            let ack = leases::disconnected_ack(id_start, id_end_exclusive, incarnation);
            let _ = self.out.send(Out::raw(&ack)).await;
        }
        Ok(())
    }

    /// `core.exec.request` of generation `v`: starts a session (or answers
    /// why it cannot).
    async fn start_session(&mut self, id: u32, v: u8, req: ExecRequest) {
        self.sessions.retain(|_, session| !session.is_closed());
        if self.sessions.contains_key(&id) {
            tracing::warn!("demo agent: exec request {id} ignored: session already open");
            return;
        }
        // agentd applies its exec limits to senders of generation 10 on.
        let policy = self
            .current
            .as_ref()
            .filter(|_| v >= CURRENT_VERSION)
            .map(|c| c.limits);
        if let Some(policy) = policy
            && self.sessions.len() >= policy.max_executions as usize
        {
            let failed = ExecFailed {
                kind: ExecFailureKind::ResourceLimit,
                errno: None,
                errno_name: None,
                message: "active execution limit reached".to_owned(),
                stage: Some("execution_admission".to_owned()),
            };
            return self.reply(MsgType::ExecFailed, id, &failed).await;
        }
        let windowed = self.current.as_ref().is_some_and(|c| c.output_window);
        let window = match policy.filter(|_| windowed) {
            None => None,
            Some(p) => match OutputWindow::new(p.output_limit) {
                Some(window) => Some((window, p.output_limit)),
                None => {
                    let failed = ExecFailed {
                        kind: ExecFailureKind::Other,
                        errno: None,
                        errno_name: None,
                        message: format!(
                            "exec output window must be greater than {} bytes",
                            window::CHUNK_OVERHEAD
                        ),
                        stage: None,
                    };
                    return self.reply(MsgType::ExecFailed, id, &failed).await;
                }
            },
        };
        let setup = Setup {
            out: self.out.clone(),
            notes: self.notes.clone(),
            wire: self.wire,
            owner: self.leases.owner_of(id),
            window,
            hold_exit: self.current.as_ref().is_some_and(|c| c.hold_exits),
            groups: self.groups.clone(),
            alive: self.alive.clone(),
        };
        let session = session::spawn(id, req, setup);
        self.sessions.insert(id, session);
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
        let permit = if self.current.is_some() {
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
