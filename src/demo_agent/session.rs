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
//! Stdin: the bytes handed to a session and not yet taken by its process are
//! bounded by [`STDIN_BOUND`] with a semaphore whose permits travel with the
//! data and return once it is written (or dropped); the agent's reader waits
//! for permits before it hands more over.

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
use crate::wire::payload::{
    Data, ExecExited, ExecFailed, ExecFailureKind, ExecRequest, ExecStarted, build_frame,
};
use crate::wire::{Frame, MsgType};

/// Largest `data` in one stdout or stderr frame.
pub const MAX_CHUNK: usize = 16 * 1024;

/// How long output readers may run on after a signal killed the process (a
/// grandchild could hold the pipes open forever).
const AFTER_KILL_GRACE: Duration = Duration::from_millis(500);

/// Bytes of stdin held per session for a process that has not read them.
pub const STDIN_BOUND: usize = 1 << 20;

/// What the host sent for a running session.
#[derive(Debug)]
pub(super) enum Control {
    /// Bytes for stdin (empty closes it), with their share of the session's
    /// stdin bound.
    Stdin(Vec<u8>, Option<OwnedSemaphorePermit>),
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
) -> SessionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let stdin_budget = Arc::new(Semaphore::new(STDIN_BOUND));
    let budget = stdin_budget.clone();
    tokio::spawn(async move {
        let session = Session { id, out, notes };
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
}

impl Session {
    fn note(&self, note: AgentNote) {
        if let Some(notes) = &self.notes {
            let _ = notes.send(note);
        }
    }

    async fn send<T: serde::Serialize>(&self, t: MsgType, payload: &T) {
        // A closed channel means the host is gone; the frame has no reader.
        let _ = self.out.send(build_frame(t, self.id, payload)).await;
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
            readers.push(pump(stdout, MsgType::ExecStdout, self.id, self.out.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(pump(stderr, err_type, self.id, self.out.clone()));
        }
        let stdin = child.stdin.take().map(stdin_feeder);

        let status = self.supervise(&mut child, &mut control, stdin).await;
        let code = match &status {
            Ok(status) => exit_code(*status),
            Err(e) => {
                tracing::warn!("demo agent: waiting for session {}: {e}", self.id);
                1
            }
        };
        let killed = matches!(&status, Ok(s) if s.signal().is_some());
        for reader in readers {
            if killed {
                if tokio::time::timeout(AFTER_KILL_GRACE, reader)
                    .await
                    .is_err()
                {
                    tracing::debug!(
                        "demo agent: session {}: output left open after kill",
                        self.id
                    );
                }
            } else {
                let _ = reader.await;
            }
        }
        self.note(AgentNote::Exited { id: self.id, code });
        self.send(MsgType::ExecExited, &ExecExited { code }).await;
    }

    /// Forwards stdin and signals until the process exits.
    async fn supervise(
        &self,
        child: &mut Child,
        control: &mut mpsc::UnboundedReceiver<Control>,
        mut stdin: Option<mpsc::UnboundedSender<StdinChunk>>,
    ) -> io::Result<ExitStatus> {
        let mut control_open = true;
        loop {
            tokio::select! {
                status = child.wait() => return status,
                msg = control.recv(), if control_open => match msg {
                    Some(Control::Stdin(data, _)) if data.is_empty() => stdin = None,
                    Some(Control::Stdin(data, permit)) => {
                        if let Some(tx) = &stdin
                            && tx.send((data, permit)).is_err()
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

/// Reads one output pipe into frames of at most [`MAX_CHUNK`] bytes.
fn pump<R>(mut pipe: R, t: MsgType, id: u32, out: mpsc::Sender<Frame>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_CHUNK];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    let data = Data {
                        data: buf[..n].to_vec(),
                    };
                    if out.send(build_frame(t, id, &data)).await.is_err() {
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

/// Stdin bytes with their share of the session's bound (returned on drop).
type StdinChunk = (Vec<u8>, Option<OwnedSemaphorePermit>);

/// Writes stdin in its own task so a child that does not read never holds up
/// signals; dropping the returned sender closes the child's stdin. Each
/// chunk's permit is released once the chunk is written or dropped.
fn stdin_feeder(mut stdin: ChildStdin) -> mpsc::UnboundedSender<StdinChunk> {
    let (tx, mut rx) = mpsc::unbounded_channel::<StdinChunk>();
    tokio::spawn(async move {
        while let Some((data, _permit)) = rx.recv().await {
            if stdin.write_all(&data).await.is_err() {
                // The child closed its stdin; later data has nowhere to go
                // (dropping `rx` releases the permits it still holds).
                return;
            }
        }
    });
    tx
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
