//! `agent-relay exec --socket PATH [--tty] -- CMD ARGS...`: runs one command
//! through the relay as an SDK client would, wiring our stdin, stdout and
//! stderr to it and exiting with its exit code.
//!
//! Exit codes follow a shell: the process's own code; 127 when the guest
//! reports `not_found`; 126 for `not_executable` and `permission_denied`; 1
//! for any other start failure or a lost connection. Ctrl-C sends signal 2
//! to the process; a second Ctrl-C sends 9.

use std::io;
use std::path::Path;

use std::io::{Read, Write};

use tokio::sync::mpsc;

use super::client::{Client, ExecEvent};
use crate::wire::payload::{ExecFailed, ExecFailureKind, ExecRequest};

/// The exit code a shell would give for a start failure.
pub fn failure_exit_code(failed: &ExecFailed) -> i32 {
    match failed.kind {
        ExecFailureKind::NotFound => 127,
        ExecFailureKind::NotExecutable | ExecFailureKind::PermissionDenied => 126,
        _ => 1,
    }
}

/// Runs `cmd args...` through the relay at `socket`; returns the exit code.
pub async fn run(socket: &Path, tty: bool, cmd: &str, args: &[String]) -> io::Result<i32> {
    let client = Client::connect(socket).await?;
    let (mut tx, mut rx) = client.into_split();
    let mut env = Vec::new();
    if tty && let Ok(term) = std::env::var("TERM") {
        env.push(format!("TERM={term}"));
    }
    let req = ExecRequest {
        env,
        tty,
        ..ExecRequest::new(cmd).args(args.iter().cloned())
    };
    let id = tx.exec(&req).await?;
    let mut stdin = read_stdin();
    let mut stdin_open = true;
    let mut interrupts = 0u32;
    // Plain blocking writes: this client does nothing else meanwhile, and a
    // full pipe should slow the relay's stream down for us.
    let mut out = io::stdout();
    let mut err = io::stderr();
    loop {
        tokio::select! {
            event = rx.next_event() => {
                let Some((event_id, event)) = event? else {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the relay closed the connection before the process ended",
                    ));
                };
                if event_id != id {
                    continue;
                }
                match event {
                    ExecEvent::Stdout(data) => {
                        out.write_all(&data)?;
                        out.flush()?;
                    }
                    ExecEvent::Stderr(data) => {
                        err.write_all(&data)?;
                        err.flush()?;
                    }
                    ExecEvent::Exited { code } => return Ok(code),
                    ExecEvent::Failed(failed) => {
                        eprintln!("agent-relay: {cmd}: {}", failed.message);
                        return Ok(failure_exit_code(&failed));
                    }
                    ExecEvent::Started { pid } => tracing::debug!(pid, "started"),
                    ExecEvent::Other(t) => tracing::debug!("ignoring {t}"),
                }
            }
            chunk = stdin.recv(), if stdin_open => {
                let chunk = chunk.unwrap_or_default();
                stdin_open = !chunk.is_empty();
                tx.stdin(id, &chunk).await?;
            }
            interrupted = tokio::signal::ctrl_c() => {
                interrupted?;
                interrupts += 1;
                let signal = if interrupts == 1 { 2 } else { 9 };
                tracing::info!("interrupt: sending signal {signal}");
                tx.signal(id, signal).await?;
            }
        }
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
