//! One exec session of the demo agent: a host process, its pipes, and the
//! frames that report on it.
//!
//! Signals: every process is the leader of a process group of its own, and a
//! signal goes to the whole group (see `groups.rs`: the `kill` program, no
//! `libc`, no `unsafe`); 9 also goes to the leader through tokio's
//! `Child::start_kill` while it is not yet reaped. When the session ends
//! (the process exited and its output pipes reached end of file, as agentd
//! waits for them) the whole group is killed, so what the process left
//! running in the background (`sh -c 'sleep 57 & echo spawned'`) goes with
//! it. agentd leaves such processes to the VM; on a host they would outlive
//! everything.
//!
//! Stdin (legacy): the bytes handed to a session and not yet taken by its
//! process are bounded by [`STDIN_BOUND`] with a semaphore whose permits
//! travel with the data and return once it is written (or dropped); the
//! agent's reader waits for permits before it hands more over. Current: the
//! chunk's input credit travels with it the same way (granted back once
//! written or dropped), and each write is reported to the host with a
//! cumulative `core.exec.stdin.ack`.
//!
//! Output: read in chunks of at most the wire's chunk size; with an output
//! window (`window.rs`) each chunk first waits for its room, and (when the
//! agent holds exits, as agentd does) `core.exec.exited` waits until all
//! output was acknowledged.
//!
//! Abandoned (the disconnect notice for its range, or the agent stopping):
//! the group is killed, the window closed, and the session sends nothing
//! more, `core.exec.exited` included, as agentd deletes such sessions at once.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::current::CreditToken;
use super::groups::{Registry, signal_group};
use super::leases::Owner;
use super::window::{BadAck, OutputWindow};
use super::{AgentNote, Out};
use crate::wire::payload::{
    Consumed, Data, ExecExited, ExecFailed, ExecFailureKind, ExecRequest, ExecStarted,
    build_frame_v,
};
use crate::wire::{CURRENT_VERSION, LEGACY_VERSION, MsgType};

/// Largest `data` in one stdout or stderr frame.
pub const MAX_CHUNK: usize = 16 * 1024;

/// How long output readers may run on after a signal killed the process (a
/// grandchild that left the group could hold the pipes open forever).
const AFTER_KILL_GRACE: Duration = Duration::from_millis(500);

/// Bytes of stdin held per session for a process that has not read them.
pub const STDIN_BOUND: usize = 1 << 20;

/// How a session's frames are written: the generation, the output chunk and
/// whether stdin writes are acknowledged.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wire {
    v: u8,
    chunk: usize,
    stdin_acks: bool,
}

impl Wire {
    /// Generation 1: 16 KiB chunks, no acks.
    pub(super) fn legacy() -> Wire {
        Wire {
            v: LEGACY_VERSION,
            chunk: MAX_CHUNK,
            stdin_acks: false,
        }
    }

    /// The current generation with output chunks of `chunk` bytes.
    pub(super) fn current(chunk: usize) -> Wire {
        Wire {
            v: CURRENT_VERSION,
            chunk,
            stdin_acks: true,
        }
    }
}

/// Stdin bytes for a session (empty closes it), with their share of the
/// session's stdin bound (legacy) or their input credit (current), both
/// given back when the chunk is dropped.
#[derive(Debug)]
pub(super) struct Chunk {
    pub data: Vec<u8>,
    /// Held until the chunk drops.
    #[allow(dead_code)]
    pub permit: Option<OwnedSemaphorePermit>,
    /// Held until the chunk drops.
    #[allow(dead_code)]
    pub credit: CreditToken,
}

/// What the host sent for a running session.
#[derive(Debug)]
pub(super) enum Control {
    /// Bytes for stdin.
    Stdin(Chunk),
    /// Deliver this signal.
    Signal(i32),
    /// The session is deleted: kill its group, send nothing more.
    Abandon,
}

/// The reader's handle on a running session.
#[derive(Debug)]
pub(super) struct SessionHandle {
    control: mpsc::UnboundedSender<Control>,
    stdin_budget: Arc<Semaphore>,
    window: Option<Arc<OutputWindow>>,
}

impl SessionHandle {
    /// Hands `control` over; false once the session ended.
    pub(super) fn send(&self, control: Control) -> bool {
        self.control.send(control).is_ok()
    }

    /// Whether the session ended (it stops taking controls just before its
    /// last frame, so a session whose end the host saw is closed).
    pub(super) fn is_closed(&self) -> bool {
        self.control.is_closed()
    }

    /// The client's cumulative `core.exec.output.ack`; a session without an
    /// output window ignores it.
    pub(super) fn acknowledge_output(&self, consumed: u64) -> Result<(), BadAck> {
        match &self.window {
            Some(window) => window.acknowledge(consumed),
            None => Ok(()),
        }
    }

    /// Waits until `len` more bytes of stdin fit the session's bound (a
    /// chunk larger than the bound waits for all of it); `None` if the
    /// session ended meanwhile. Empty data (EOF) needs no room.
    pub(super) async fn reserve_stdin(&self, len: usize) -> Option<Option<OwnedSemaphorePermit>> {
        if len == 0 {
            return Some(None);
        }
        let want = u32::try_from(len.min(STDIN_BOUND)).unwrap_or(u32::MAX);
        let budget = self.stdin_budget.clone();
        budget.acquire_many_owned(want).await.ok().map(Some)
    }
}

/// Everything a session reports through, besides its request.
pub(super) struct Setup {
    /// The write queue toward the host.
    pub out: mpsc::Sender<Out>,
    /// The observer.
    pub notes: Option<mpsc::UnboundedSender<AgentNote>>,
    /// How its frames are written.
    pub wire: Wire,
    /// The range owner when the request arrived (leased slots only).
    pub owner: Option<Owner>,
    /// Its output window and the window's size, under exec limits.
    pub window: Option<(OutputWindow, u32)>,
    /// Whether `core.exec.exited` waits until all output was acknowledged.
    pub hold_exit: bool,
    /// Where its process group is registered while it lives.
    pub groups: Registry,
    /// Held until the session's task ends, so the agent can wait for it.
    pub alive: mpsc::Sender<()>,
}

/// Starts a session task; the returned handle reaches it until it ends.
pub(super) fn spawn(id: u32, req: ExecRequest, setup: Setup) -> SessionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let stdin_budget = Arc::new(Semaphore::new(STDIN_BOUND));
    let budget = stdin_budget.clone();
    let (window, chunk) = match setup.window {
        Some((window, limit)) => {
            let chunk = setup.wire.chunk.min(window.max_payload(limit)).max(1);
            (Some(Arc::new(window)), chunk)
        }
        None => (None, setup.wire.chunk),
    };
    let session = Session {
        id,
        out: setup.out,
        notes: setup.notes,
        wire: setup.wire,
        chunk,
        owner: setup.owner,
        window: window.clone(),
        hold_exit: setup.hold_exit,
        groups: setup.groups,
        gone: Arc::new(AtomicBool::new(false)),
    };
    let alive = setup.alive;
    tokio::spawn(async move {
        session.run(req, rx).await;
        // Whoever waits for room to feed this session gives up.
        budget.close();
        drop(alive);
    });
    SessionHandle {
        control: tx,
        stdin_budget,
        window,
    }
}

struct Session {
    id: u32,
    out: mpsc::Sender<Out>,
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
    wire: Wire,
    /// Largest output payload per frame.
    chunk: usize,
    owner: Option<Owner>,
    window: Option<Arc<OutputWindow>>,
    hold_exit: bool,
    groups: Registry,
    /// Set once abandoned: nothing more goes out.
    gone: Arc<AtomicBool>,
}

/// What the session's main loop ended with.
struct Ending {
    status: io::Result<ExitStatus>,
    abandoned: bool,
}

impl Session {
    fn note(&self, note: AgentNote) {
        if let Some(notes) = &self.notes {
            let _ = notes.send(note);
        }
    }

    async fn send<T: serde::Serialize>(&self, t: MsgType, payload: &T) {
        if self.gone.load(Ordering::Acquire) {
            return;
        }
        let frame = build_frame_v(self.wire.v, t, self.id, payload);
        // A closed channel means the host is gone; the frame has no reader.
        let _ = self.out.send(Out::owned(frame, self.owner)).await;
    }

    /// Ends a session that never ran: it stops taking controls first, so
    /// the reader counts it gone before the host can see the failure.
    async fn fail(&self, control: &mut mpsc::UnboundedReceiver<Control>, failed: ExecFailed) {
        self.note(AgentNote::Failed {
            id: self.id,
            message: failed.message.clone(),
        });
        control.close();
        self.send(MsgType::ExecFailed, &failed).await;
    }

    async fn run(self, req: ExecRequest, mut control: mpsc::UnboundedReceiver<Control>) {
        let Some((mut child, pid)) = self.start(&req, &mut control).await else {
            return;
        };
        // A pty merges both streams; without one, tty output still goes out as stdout.
        let err_type = if req.tty {
            MsgType::ExecStdout
        } else {
            MsgType::ExecStderr
        };
        let stdout = child
            .stdout
            .take()
            .map(|p| self.pump(p, MsgType::ExecStdout));
        let stderr = child.stderr.take().map(|p| self.pump(p, err_type));
        let output = tokio::spawn(async move {
            let out = async {
                if let Some(pump) = stdout {
                    pump.await;
                }
            };
            let err = async {
                if let Some(pump) = stderr {
                    pump.await;
                }
            };
            tokio::join!(out, err);
        });
        let stdin = child.stdin.take().map(|s| self.stdin_feeder(s));

        let ending = self
            .supervise(child, pid, &mut control, stdin, output)
            .await;
        // The session ends: whatever is left of its group goes with it.
        match signal_group(9, pid).await {
            Ok(true) => tracing::debug!(
                "demo agent: session {}: killed what was left in its process group",
                self.id
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!("demo agent: session {}: {e}", self.id),
        }
        self.groups.remove(pid);
        let code = match &ending.status {
            Ok(status) => exit_code(*status),
            Err(e) => {
                tracing::warn!("demo agent: waiting for session {}: {e}", self.id);
                1
            }
        };
        self.note(AgentNote::Exited { id: self.id, code });
        if ending.abandoned {
            return;
        }
        if let Some(window) = self.window.as_ref().filter(|_| self.hold_exit)
            && !self.wait_drained(window, &mut control).await
        {
            return;
        }
        control.close();
        self.send(MsgType::ExecExited, &ExecExited { code }).await;
    }

    /// Starts the process (its group registered, `core.exec.started` sent),
    /// or reports why it cannot run.
    async fn start(
        &self,
        req: &ExecRequest,
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Option<(Child, u32)> {
        if let Some(user) = &req.user {
            let failed = ExecFailed {
                kind: ExecFailureKind::UserSetupFailed,
                errno: None,
                errno_name: None,
                message: format!(
                    "the demo agent runs everything as the relay's own user; cannot switch to {user:?}"
                ),
                stage: Some("setuid".to_owned()),
            };
            self.fail(control, failed).await;
            return None;
        }
        if let Some(cwd) = &req.cwd
            && let Err(failed) = check_cwd(cwd)
        {
            self.fail(control, failed).await;
            return None;
        }
        let spawned = command(req).spawn();
        // A child just spawned has its pid; without one (or with 0, which
        // `kill` would take for our own group) it is not ours to manage.
        let (child, pid) = match spawned.map(|c| (c.id().filter(|&p| p > 1), c)) {
            Ok((Some(pid), child)) => (child, pid),
            Ok((None, _)) => {
                let e = io::Error::other("the spawned process has no pid");
                self.fail(control, spawn_failure(&req.cmd, &e)).await;
                return None;
            }
            Err(e) => {
                self.fail(control, spawn_failure(&req.cmd, &e)).await;
                return None;
            }
        };
        self.groups.add(pid);
        self.note(AgentNote::Started {
            id: self.id,
            command: display_command(req),
            pid,
        });
        self.send(MsgType::ExecStarted, &ExecStarted { pid }).await;
        Some((child, pid))
    }

    /// Holds the exit until the client acknowledged all output; false if
    /// the session was abandoned (or the agent dropped) meanwhile.
    async fn wait_drained(
        &self,
        window: &OutputWindow,
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) -> bool {
        let drained = window.drained();
        tokio::pin!(drained);
        loop {
            tokio::select! {
                () = &mut drained => return true,
                msg = control.recv() => match msg {
                    Some(Control::Abandon) | None => {
                        self.abandon();
                        return false;
                    }
                    // The process is gone: stdin and signals have nowhere to go.
                    Some(Control::Stdin(_) | Control::Signal(_)) => {}
                },
            }
        }
    }

    fn abandon(&self) {
        self.gone.store(true, Ordering::Release);
        if let Some(window) = &self.window {
            window.close();
        }
    }

    /// Reads one output pipe into frames of at most the session's chunk,
    /// each waiting for its room in the output window first.
    fn pump<R>(&self, mut pipe: R, t: MsgType) -> impl Future<Output = ()> + Send + 'static
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (id, out, v, owner) = (self.id, self.out.clone(), self.wire.v, self.owner);
        let (window, gone, chunk) = (self.window.clone(), self.gone.clone(), self.chunk);
        async move {
            let mut buf = vec![0u8; chunk];
            loop {
                let n = match pipe.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!("demo agent: session {id} {t} pipe: {e}");
                        return;
                    }
                };
                if let Some(window) = &window
                    && !window.acquire(n).await
                {
                    return;
                }
                if gone.load(Ordering::Acquire) {
                    return;
                }
                let data = Data {
                    data: buf[..n].to_vec(),
                };
                let frame = build_frame_v(v, t, id, &data);
                if out.send(Out::owned(frame, owner)).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Writes stdin in its own task so a child that does not read never
    /// holds up signals; dropping the returned sender closes the child's
    /// stdin. Each chunk's permit and credit are given back once it is
    /// written, or dropped when the child closed its stdin; in the current
    /// generation each is then acknowledged with the cumulative count.
    fn stdin_feeder(&self, mut stdin: ChildStdin) -> mpsc::UnboundedSender<Chunk> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
        let (id, out, wire, owner) = (self.id, self.out.clone(), self.wire, self.owner);
        let gone = self.gone.clone();
        tokio::spawn(async move {
            let mut open = true;
            let mut consumed = 0u64;
            while let Some(chunk) = rx.recv().await {
                // After a failed write the child closed its stdin; later data
                // has nowhere to go and is dropped (and counted as taken).
                open = open && stdin.write_all(&chunk.data).await.is_ok();
                consumed += chunk.data.len() as u64;
                drop(chunk);
                if wire.stdin_acks && !gone.load(Ordering::Acquire) {
                    let ack =
                        build_frame_v(wire.v, MsgType::ExecStdinAck, id, &Consumed { consumed });
                    if out.send(Out::owned(ack, owner)).await.is_err() {
                        return;
                    }
                }
            }
        });
        tx
    }

    /// Forwards stdin and signals until the process exited and its output
    /// ended (after a kill, for [`AFTER_KILL_GRACE`] at most), or until the
    /// session is abandoned and its process reaped.
    async fn supervise(
        &self,
        mut child: Child,
        pid: u32,
        control: &mut mpsc::UnboundedReceiver<Control>,
        mut stdin: Option<mpsc::UnboundedSender<Chunk>>,
        mut output: JoinHandle<()>,
    ) -> Ending {
        let mut status: Option<io::Result<ExitStatus>> = None;
        let mut output_done = false;
        let mut abandoned = false;
        let mut control_open = true;
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        loop {
            if let Some(status) = status.take_if(|_| output_done) {
                return Ending { status, abandoned };
            }
            tokio::select! {
                st = child.wait(), if status.is_none() => {
                    let killed = matches!(&st, Ok(s) if s.signal().is_some());
                    status = Some(st);
                    stdin = None;
                    if killed && !output_done {
                        let deadline = tokio::time::Instant::now() + AFTER_KILL_GRACE;
                        grace.as_mut().reset(deadline);
                    }
                }
                _ = &mut output, if !output_done => output_done = true,
                () = &mut grace, if !output_done => {
                    tracing::debug!("demo agent: session {}: output left open after kill", self.id);
                    output.abort();
                    output_done = true;
                }
                msg = control.recv(), if control_open => match msg {
                    Some(Control::Stdin(chunk)) if chunk.data.is_empty() => stdin = None,
                    Some(Control::Stdin(chunk)) => {
                        if let Some(tx) = &stdin
                            && tx.send(chunk).is_err()
                        {
                            stdin = None;
                        }
                    }
                    Some(Control::Signal(signal)) => {
                        self.note(AgentNote::Signalled { id: self.id, signal });
                        let leader = if status.is_none() { Some(&mut child) } else { None };
                        if let Err(e) = deliver(leader, pid, signal).await {
                            tracing::warn!("demo agent: signal {signal} to session {}: {e}", self.id);
                        }
                    }
                    Some(Control::Abandon) | None => {
                        // Deleted (or the agent is gone): kill, and wait for
                        // the leader only.
                        control_open = false;
                        abandoned = true;
                        self.abandon();
                        output.abort();
                        output_done = true;
                        stdin = None;
                        let leader = if status.is_none() { Some(&mut child) } else { None };
                        if let Err(e) = deliver(leader, pid, 9).await {
                            tracing::warn!("demo agent: killing session {}: {e}", self.id);
                        }
                    }
                },
            }
        }
    }
}

/// Sends `signal` to the session's whole process group (`pid` leads it);
/// 9 also goes straight to the leader while it is not yet reaped.
async fn deliver(leader: Option<&mut Child>, pid: u32, signal: i32) -> io::Result<()> {
    let group = signal_group(signal, pid).await;
    let Some(child) = leader else {
        // Reaped: only the group is a safe target, and it may be gone too.
        return group.map(drop);
    };
    if signal == 9 {
        // The leader at least, whatever `kill` managed.
        let direct = child.start_kill();
        return if matches!(group, Ok(true)) {
            Ok(())
        } else {
            direct
        };
    }
    match group {
        Ok(true) => Ok(()),
        Ok(false) => Err(io::Error::other(format!("kill -{signal} -- -{pid} failed"))),
        Err(e) => Err(e),
    }
}

fn command(req: &ExecRequest) -> Command {
    let mut cmd = Command::new(&req.cmd);
    cmd.args(&req.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: a signal reaches what the process started too.
        .process_group(0)
        .kill_on_drop(true);
    for entry in &req.env {
        // An entry without `=` names nothing to set; skip it.
        if let Some((key, value)) = entry.split_once('=')
            && !key.is_empty()
        {
            cmd.env(key, value);
        }
    }
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

fn display_command(req: &ExecRequest) -> String {
    std::iter::once(req.cmd.as_str())
        .chain(req.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The code a shell would report: the exit code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

fn check_cwd(cwd: &str) -> Result<(), ExecFailed> {
    match std::fs::metadata(cwd) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ExecFailed {
            kind: ExecFailureKind::BadCwd,
            errno: Some(20),
            errno_name: Some("ENOTDIR".to_owned()),
            message: format!("working directory {cwd:?} is not a directory"),
            stage: Some("chdir".to_owned()),
        }),
        Err(e) => Err(ExecFailed {
            kind: ExecFailureKind::BadCwd,
            errno: e.raw_os_error(),
            errno_name: e.raw_os_error().and_then(errno_name).map(str::to_owned),
            message: format!("working directory {cwd:?}: {}", crate::cause::io_cause(&e)),
            stage: Some("chdir".to_owned()),
        }),
    }
}

fn spawn_failure(cmd: &str, e: &io::Error) -> ExecFailed {
    let errno = e.raw_os_error();
    let kind = match (e.kind(), errno) {
        (io::ErrorKind::NotFound, _) | (_, Some(2)) => ExecFailureKind::NotFound,
        (io::ErrorKind::PermissionDenied, _) | (_, Some(1 | 13)) => {
            ExecFailureKind::PermissionDenied
        }
        (_, Some(8)) => ExecFailureKind::NotExecutable,
        (_, Some(7 | 36 | 40)) | (io::ErrorKind::InvalidInput, _) => ExecFailureKind::BadArgs,
        (_, Some(11 | 23 | 24)) => ExecFailureKind::ResourceLimit,
        (_, Some(12)) => ExecFailureKind::OutOfMemory,
        _ => ExecFailureKind::Other,
    };
    ExecFailed {
        kind,
        errno,
        errno_name: errno.and_then(errno_name).map(str::to_owned),
        message: format!("{cmd}: {}", crate::cause::io_cause(e)),
        stage: Some("execvp".to_owned()),
    }
}

/// Linux errno names for the errors a spawn can report.
fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        1 => "EPERM",
        2 => "ENOENT",
        7 => "E2BIG",
        8 => "ENOEXEC",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        20 => "ENOTDIR",
        23 => "ENFILE",
        24 => "EMFILE",
        36 => "ENAMETOOLONG",
        40 => "ELOOP",
        _ => return None,
    })
}
