//! One exec session of the demo agent: a host process, its pipes, and the
//! frames that report on it.
//!
//! Signals: every process is the leader of a process group of its own, and a
//! signal goes to the whole group: there is no `libc` dependency and no
//! `unsafe`, so it runs `kill -<n> -- -<pgid>` (and, for 9, tokio's
//! `Child::start_kill` on the leader too). The group id cannot have been
//! reused meanwhile: this task owns the `Child` and has not yet collected its
//! exit status, so its pid (the group's id) still names our process (or its
//! zombie).
//!
//! Stdin (legacy): the bytes handed to a session and not yet taken by its
//! process are bounded by [`STDIN_BOUND`] with a semaphore whose permits
//! travel with the data and return once it is written (or dropped); the
//! agent's reader waits for permits before it hands more over. Current: the
//! chunk's input credit travels with it the same way (granted back once
//! written or dropped), and each write is reported to the host with a
//! cumulative `core.exec.stdin.ack`.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::AgentNote;
use super::current::CreditToken;
use crate::wire::payload::{
    Consumed, Data, ExecExited, ExecFailed, ExecFailureKind, ExecRequest, ExecStarted,
    build_frame_v,
};
use crate::wire::{CURRENT_VERSION, Frame, LEGACY_VERSION, MsgType};

/// Largest `data` in one stdout or stderr frame.
pub const MAX_CHUNK: usize = 16 * 1024;

/// How long output readers may run on after a signal killed the process (a
/// grandchild could hold the pipes open forever).
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
}

/// The reader's handle on a running session.
#[derive(Debug)]
pub(super) struct SessionHandle {
    control: mpsc::UnboundedSender<Control>,
    stdin_budget: Arc<Semaphore>,
}

impl SessionHandle {
    /// Hands `control` over; false once the session ended.
    pub(super) fn send(&self, control: Control) -> bool {
        self.control.send(control).is_ok()
    }

    /// Whether the session ended.
    pub(super) fn is_closed(&self) -> bool {
        self.control.is_closed()
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

/// Starts a session task; the returned handle reaches it until it ends.
pub(super) fn spawn(
    id: u32,
    req: ExecRequest,
    out: mpsc::Sender<Frame>,
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
    wire: Wire,
) -> SessionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let stdin_budget = Arc::new(Semaphore::new(STDIN_BOUND));
    let budget = stdin_budget.clone();
    tokio::spawn(async move {
        let session = Session {
            id,
            out,
            notes,
            wire,
        };
        session.run(req, rx).await;
        // Whoever waits for room to feed this session gives up.
        budget.close();
    });
    SessionHandle {
        control: tx,
        stdin_budget,
    }
}

struct Session {
    id: u32,
    out: mpsc::Sender<Frame>,
    notes: Option<mpsc::UnboundedSender<AgentNote>>,
    wire: Wire,
}

impl Session {
    fn note(&self, note: AgentNote) {
        if let Some(notes) = &self.notes {
            let _ = notes.send(note);
        }
    }

    async fn send<T: serde::Serialize>(&self, t: MsgType, payload: &T) {
        // A closed channel means the host is gone; the frame has no reader.
        let frame = build_frame_v(self.wire.v, t, self.id, payload);
        let _ = self.out.send(frame).await;
    }

    async fn fail(&self, failed: ExecFailed) {
        self.note(AgentNote::Failed {
            id: self.id,
            message: failed.message.clone(),
        });
        self.send(MsgType::ExecFailed, &failed).await;
    }

    async fn run(self, req: ExecRequest, mut control: mpsc::UnboundedReceiver<Control>) {
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
            return self.fail(failed).await;
        }
        if let Some(cwd) = &req.cwd
            && let Err(failed) = check_cwd(cwd)
        {
            return self.fail(failed).await;
        }
        let mut child = match command(&req).spawn() {
            Ok(child) => child,
            Err(e) => return self.fail(spawn_failure(&req.cmd, &e)).await,
        };
        let pid = child.id().unwrap_or(0);
        self.note(AgentNote::Started {
            id: self.id,
            command: display_command(&req),
            pid,
        });
        self.send(MsgType::ExecStarted, &ExecStarted { pid }).await;

        // A pty merges both streams; without one, tty output still goes out as stdout.
        let err_type = if req.tty {
            MsgType::ExecStdout
        } else {
            MsgType::ExecStderr
        };
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(self.pump(stdout, MsgType::ExecStdout));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(self.pump(stderr, err_type));
        }
        let stdin = child.stdin.take().map(|s| self.stdin_feeder(s));

        let status = self.supervise(&mut child, &mut control, stdin).await;
        let code = match &status {
            Ok(status) => exit_code(*status),
            Err(e) => {
                tracing::warn!("demo agent: waiting for session {}: {e}", self.id);
                1
            }
        };
        let killed = matches!(&status, Ok(s) if s.signal().is_some());
        self.finish_output(readers, killed).await;
        self.note(AgentNote::Exited { id: self.id, code });
        self.send(MsgType::ExecExited, &ExecExited { code }).await;
    }

    /// Waits for the output readers to reach end of file; after a kill, for
    /// a short grace only (a grandchild could hold the pipes open forever).
    async fn finish_output(&self, readers: Vec<JoinHandle<()>>, killed: bool) {
        for reader in readers {
            if !killed {
                let _ = reader.await;
            } else if tokio::time::timeout(AFTER_KILL_GRACE, reader)
                .await
                .is_err()
            {
                tracing::debug!(
                    "demo agent: session {}: output left open after kill",
                    self.id
                );
            }
        }
    }

    /// Reads one output pipe into frames of at most the wire's chunk size.
    fn pump<R>(&self, mut pipe: R, t: MsgType) -> JoinHandle<()>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let (id, out, wire) = (self.id, self.out.clone(), self.wire);
        tokio::spawn(async move {
            let mut buf = vec![0u8; wire.chunk];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let data = Data {
                            data: buf[..n].to_vec(),
                        };
                        if out.send(build_frame_v(wire.v, t, id, &data)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!("demo agent: session {id} {t} pipe: {e}");
                        return;
                    }
                }
            }
        })
    }

    /// Writes stdin in its own task so a child that does not read never
    /// holds up signals; dropping the returned sender closes the child's
    /// stdin. Each chunk's permit and credit are given back once it is
    /// written, or dropped when the child closed its stdin; in the current
    /// generation each is then acknowledged with the cumulative count.
    fn stdin_feeder(&self, mut stdin: ChildStdin) -> mpsc::UnboundedSender<Chunk> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
        let (id, out, wire) = (self.id, self.out.clone(), self.wire);
        tokio::spawn(async move {
            let mut open = true;
            let mut consumed = 0u64;
            while let Some(chunk) = rx.recv().await {
                // After a failed write the child closed its stdin; later data
                // has nowhere to go and is dropped (and counted as taken).
                open = open && stdin.write_all(&chunk.data).await.is_ok();
                consumed += chunk.data.len() as u64;
                drop(chunk);
                if wire.stdin_acks {
                    let ack =
                        build_frame_v(wire.v, MsgType::ExecStdinAck, id, &Consumed { consumed });
                    if out.send(ack).await.is_err() {
                        return;
                    }
                }
            }
        });
        tx
    }

    /// Forwards stdin and signals until the process exits.
    async fn supervise(
        &self,
        child: &mut Child,
        control: &mut mpsc::UnboundedReceiver<Control>,
        mut stdin: Option<mpsc::UnboundedSender<Chunk>>,
    ) -> io::Result<ExitStatus> {
        let mut control_open = true;
        loop {
            tokio::select! {
                status = child.wait() => return status,
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
                        if let Err(e) = deliver(child, signal).await {
                            tracing::warn!("demo agent: signal {signal} to session {}: {e}", self.id);
                        }
                    }
                    None => control_open = false,
                },
            }
        }
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

/// Sends `signal` to the child's whole process group.
async fn deliver(child: &mut Child, signal: i32) -> io::Result<()> {
    let Some(pid) = child.id() else {
        return Ok(()); // already exited
    };
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if signal == 9 {
        // The leader at least, whatever `kill` managed.
        let leader = child.start_kill();
        if matches!(&status, Ok(s) if s.success()) {
            return Ok(());
        }
        return leader;
    }
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(io::Error::other(format!(
            "kill -{signal} -- -{pid} failed: {status}"
        ))),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("running kill -{signal} -- -{pid}: {e}"),
        )),
    }
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
            message: format!("working directory {cwd:?}: {}", crate::shell::io_cause(&e)),
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
        message: format!("{cmd}: {}", crate::shell::io_cause(e)),
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
