//! The per-session output window (current generation, exec limits, a
//! request of generation 10 or later), as 0.7.13 agentd keeps it: at most
//! `output_limit` bytes of output unacknowledged, where each stdout or
//! stderr chunk counts its payload plus [`CHUNK_OVERHEAD`] bytes. The session's
//! output reader takes a chunk's charge before it publishes the chunk and
//! waits while the window has no room; the client's cumulative
//! `core.exec.output.ack {consumed}` gives room back. An acknowledgement
//! that goes backwards or past what was published is refused (and
//! changes nothing). The session's `core.exec.exited` waits until every
//! published byte is acknowledged.

use std::sync::Mutex;

use tokio::sync::{Semaphore, watch};

/// What 0.7.13 charges per output chunk on top of its payload
/// (`EXEC_OUTPUT_EVENT_OVERHEAD`).
pub const CHUNK_OVERHEAD: u32 = 256;

/// One session's output window.
#[derive(Debug)]
pub(super) struct OutputWindow {
    /// Room left, in charged bytes.
    room: Semaphore,
    /// Charged bytes published so far.
    sent: Mutex<u64>,
    /// Charged bytes the client acknowledged so far.
    consumed: watch::Sender<u64>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BadAck {
    /// The acknowledged count.
    pub consumed: u64,
    /// What was acknowledged before.
    pub before: u64,
    /// What was published.
    pub sent: u64,
}

impl std::fmt::Display for BadAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid exec output acknowledgement offset {} (acknowledged {}, published {})",
            self.consumed, self.before, self.sent
        )
    }
}

impl OutputWindow {
    /// A window of `bytes`; `None` when it could not hold even an empty
    /// chunk (agentd refuses the session then).
    pub(super) fn new(bytes: u32) -> Option<OutputWindow> {
        (bytes > CHUNK_OVERHEAD).then(|| OutputWindow {
            room: Semaphore::new(bytes as usize),
            sent: Mutex::new(0),
            consumed: watch::Sender::new(0),
        })
    }

    /// The largest payload one chunk may carry in this window.
    pub(super) fn max_payload(&self, limit: u32) -> usize {
        (limit - CHUNK_OVERHEAD) as usize
    }

    /// Waits for room for a chunk of `payload` bytes and takes it; false
    /// once the window is closed (the session is gone).
    pub(super) async fn acquire(&self, payload: usize) -> bool {
        let charge = u32::try_from(payload)
            .ok()
            .and_then(|n| n.checked_add(CHUNK_OVERHEAD));
        let Some(charge) = charge else {
            return false;
        };
        let Ok(permit) = self.room.acquire_many(charge).await else {
            return false;
        };
        permit.forget();
        *self.sent.lock().unwrap_or_else(|e| e.into_inner()) += u64::from(charge);
        true
    }

    /// The client's cumulative acknowledgement.
    pub(super) fn acknowledge(&self, consumed: u64) -> Result<(), BadAck> {
        let sent = *self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let before = *self.consumed.borrow();
        if consumed < before || consumed > sent {
            return Err(BadAck {
                consumed,
                before,
                sent,
            });
        }
        let returned = usize::try_from(consumed - before).unwrap_or(usize::MAX);
        self.consumed.send_replace(consumed);
        self.room.add_permits(returned);
        Ok(())
    }

    /// Waits until everything published was acknowledged.
    pub(super) async fn drained(&self) {
        let mut consumed = self.consumed.subscribe();
        loop {
            let sent = *self.sent.lock().unwrap_or_else(|e| e.into_inner());
            if *consumed.borrow_and_update() >= sent {
                return;
            }
            // The sender lives in `self`, so the channel never closes here.
            if consumed.changed().await.is_err() {
                return;
            }
        }
    }

    /// The session is gone: readers waiting for room give up.
    pub(super) fn close(&self) {
        self.room.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn demo_agent_window_holds_charges_until_acknowledged() {
        assert!(OutputWindow::new(CHUNK_OVERHEAD).is_none());
        let w = OutputWindow::new(1000).expect("a window");
        assert!(w.acquire(500).await, "756 of 1000");
        let more = w.acquire(100);
        tokio::pin!(more);
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut more).await;
        assert!(waited.is_err(), "356 more do not fit in 244");
        assert!(w.acknowledge(757).is_err(), "past what was published");
        w.acknowledge(200).expect("a partial ack");
        assert!(more.await, "room once 200 came back");
        assert!(w.acknowledge(100).is_err(), "backwards");
        let drained = w.drained();
        tokio::pin!(drained);
        let early = tokio::time::timeout(Duration::from_millis(20), &mut drained).await;
        assert!(early.is_err(), "1112 published, 200 acknowledged");
        w.acknowledge(1112).expect("everything");
        drained.await;
        w.close();
        assert!(!w.acquire(1).await, "closed");
    }
}
