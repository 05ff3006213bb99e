//! The process groups the demo agent started, so that none outlives its
//! session or the agent.
//!
//! Every process the agent starts leads a process group of its own, and
//! what it starts stays in that group unless it leaves on purpose
//! (`setsid`), so killing the group reaches `sh -c 'sleep 57 & ...'`'s
//! `sleep` too. There is no `libc` dependency and no `unsafe`: a signal goes
//! out through the `kill` program (`kill -<n> -- -<pgid> ...`).
//!
//! A session registers its group when its process starts and kills it (and
//! unregisters it) when the session ends. [`Groups`] owned by the agent's
//! run kills every group still registered when it is dropped: the agent's
//! run ending or its future being dropped mid-way (its task aborted) leaves
//! nothing behind. The leaders are reaped by their session tasks (or, if
//! the runtime itself goes away, by tokio's `kill_on_drop` and init).
//!
//! A group's id is its leader's pid. While the leader is not yet reaped the
//! id cannot name anything else; after it was reaped the id stays reserved
//! for as long as any member is left, so a group kill right after the reap
//! reaches only our processes, barring a full wrap-around of the pid space
//! in between.

use std::collections::HashSet;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// The registry of live process groups, shared by the agent and its
/// sessions. Dropping the agent's own handle ([`Groups::owner`]) kills
/// every group still in it.
#[derive(Debug, Clone, Default)]
pub(super) struct Registry {
    live: Arc<Mutex<HashSet<u32>>>,
}

impl Registry {
    /// Records a group that now exists.
    pub(super) fn add(&self, pgid: u32) {
        self.lock().insert(pgid);
    }

    /// Forgets a group its session killed.
    pub(super) fn remove(&self, pgid: u32) {
        self.lock().remove(&pgid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u32>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The agent's own handle on the registry: its drop kills every group still
/// registered (SIGKILL).
#[derive(Debug, Default)]
pub(super) struct Groups {
    registry: Registry,
}

impl Groups {
    /// The registry sessions report to.
    pub(super) fn registry(&self) -> Registry {
        self.registry.clone()
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        let pgids: Vec<u32> = self.registry.lock().drain().filter(|&p| p > 1).collect();
        if pgids.is_empty() {
            return;
        }
        tracing::info!(
            "demo agent stopping: killing {} process group(s) still running",
            pgids.len()
        );
        // Blocking, but brief: `kill` only sends the signals.
        if let Err(e) = kill_command(9, &pgids).status() {
            tracing::warn!("demo agent: running kill for {pgids:?}: {e}");
        }
    }
}

/// `kill -<signal> -- -<pgid>...` with no input or output.
fn kill_command(signal: i32, pgids: &[u32]) -> std::process::Command {
    let mut cmd = std::process::Command::new("kill");
    cmd.arg(format!("-{signal}")).arg("--");
    for pgid in pgids {
        cmd.arg(format!("-{pgid}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Sends `signal` to the process group `pgid`; `Ok(false)` when `kill`
/// failed (no such group left, above all).
pub(super) async fn signal_group(signal: i32, pgid: u32) -> io::Result<bool> {
    // `kill -- -0` would name our own group, `-1` every process we may signal.
    if pgid <= 1 {
        return Ok(false);
    }
    let status = tokio::process::Command::from(kill_command(signal, &[pgid]))
        .status()
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("running kill -{signal} -- -{pgid}: {e}")))?;
    Ok(status.success())
}
