//! `exec`'s writer: the task that sends our stdin, signals and output
//! acknowledgements to the relay, so `exec` keeps reading the relay while a
//! write waits (the relay stops reading a client whose frames toward the
//! guest reached their bound, and a guest may be slow to take stdin). A
//! signal goes before stdin still waiting.
//!
//! With the guest's execution policy (a current-generation ready with
//! `exec_limits`) it follows the policy as the SDK does: stdin waits for
//! `core.exec.started`, goes out in chunks of at most `stdin_chunk_size`,
//! and never more than `input_limit` bytes beyond what the guest
//! acknowledged (`core.exec.stdin.ack`); and every time more output was
//! consumed it sends `core.exec.output.ack` with the cumulative count
//! (payload + 256 bytes per output chunk). Waiting for stdin room never
//! holds up a signal, so Ctrl-C reaches a process that does not read its
//! stdin. The reading side reports what it saw through [`FlowTx`].

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::client::Sender;
use crate::wire::payload::ExecLimits;

/// What 0.7.13 charges per output chunk on top of its payload.
pub const OUTPUT_CHUNK_OVERHEAD: u64 = 256;

/// The reading side's reports to the writer.
#[derive(Debug)]
pub struct FlowTx {
    started: watch::Sender<bool>,
    acked: watch::Sender<u64>,
    output: watch::Sender<u64>,
    consumed: u64,
}

/// The writer's view of the reports, with the policy.
#[derive(Debug)]
pub struct FlowRx {
    limits: ExecLimits,
    started: watch::Receiver<bool>,
    acked: watch::Receiver<u64>,
    output: watch::Receiver<u64>,
}

/// A pair for a session under `limits`.
pub fn flow(limits: ExecLimits) -> (FlowTx, FlowRx) {
    let (started, started_rx) = watch::channel(false);
    let (acked, acked_rx) = watch::channel(0);
    let (output, output_rx) = watch::channel(0);
    let tx = FlowTx {
        started,
        acked,
        output,
        consumed: 0,
    };
    let rx = FlowRx {
        limits,
        started: started_rx,
        acked: acked_rx,
        output: output_rx,
    };
    (tx, rx)
}

impl FlowTx {
    /// `core.exec.started` arrived: stdin may go.
    pub fn started(&self) {
        self.started.send_replace(true);
    }

    /// `core.exec.stdin.ack {consumed}` arrived.
    pub fn stdin_acked(&self, consumed: u64) {
        self.acked.send_if_modified(|was| {
            let more = consumed > *was;
            *was = (*was).max(consumed);
            more
        });
    }

    /// An output chunk of `len` bytes was taken from the relay.
    pub fn output(&mut self, len: usize) {
        self.consumed += len as u64 + OUTPUT_CHUNK_OVERHEAD;
        self.output.send_replace(self.consumed);
    }
}

/// Starts the writer for session `id`; it ends when `signals` closes (after
/// its last signals) or a write fails, and the reading side then learns from
/// the relay what happened.
pub fn spawn_writer(
    tx: Sender,
    id: u32,
    stdin: mpsc::Receiver<Vec<u8>>,
    signals: mpsc::UnboundedReceiver<i32>,
    flow: Option<FlowRx>,
) -> JoinHandle<()> {
    let writer = Writer {
        tx,
        id,
        flow,
        pending: Vec::new(),
        at: 0,
        eof: false,
        stdin_open: true,
        sent: 0,
        acked_out: 0,
    };
    tokio::spawn(writer.run(stdin, signals))
}

struct Writer {
    tx: Sender,
    id: u32,
    flow: Option<FlowRx>,
    /// Stdin read and not yet sent, from `at`.
    pending: Vec<u8>,
    at: usize,
    /// Our stdin ended; the end is still to be sent.
    eof: bool,
    stdin_open: bool,
    /// Stdin bytes sent.
    sent: u64,
    /// The last output count acknowledged.
    acked_out: u64,
}

/// What the writer waits for when it has nothing it may send.
enum Wake {
    Signal(Option<i32>),
    Output,
    Room(bool),
    Stdin(Option<Vec<u8>>),
}

impl Writer {
    async fn run(
        mut self,
        mut stdin: mpsc::Receiver<Vec<u8>>,
        mut signals: mpsc::UnboundedReceiver<i32>,
    ) {
        loop {
            loop {
                match signals.try_recv() {
                    Ok(signal) if self.tx.signal(self.id, signal).await.is_ok() => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    _ => return,
                }
            }
            if let Some(piece) = self.next_piece() {
                if self.tx.stdin(self.id, &piece).await.is_err() {
                    return;
                }
                continue;
            }
            let ok = match self.wait(&mut stdin, &mut signals).await {
                Wake::Signal(Some(signal)) => self.tx.signal(self.id, signal).await.is_ok(),
                Wake::Signal(None) | Wake::Room(false) => return,
                Wake::Output => self.ack_output().await,
                Wake::Room(true) => true,
                Wake::Stdin(Some(chunk)) if !chunk.is_empty() => {
                    (self.pending, self.at) = (chunk, 0);
                    true
                }
                Wake::Stdin(_) => {
                    (self.eof, self.stdin_open) = (true, false);
                    true
                }
            };
            if !ok {
                return;
            }
        }
    }

    /// Waits for whatever may let the writer go on.
    async fn wait(
        &mut self,
        stdin: &mut mpsc::Receiver<Vec<u8>>,
        signals: &mut mpsc::UnboundedReceiver<i32>,
    ) -> Wake {
        let idle = self.at >= self.pending.len() && !self.eof;
        let take_stdin = self.stdin_open && idle;
        let Some(flow) = &mut self.flow else {
            return tokio::select! {
                biased;
                signal = signals.recv() => Wake::Signal(signal),
                chunk = stdin.recv(), if take_stdin => Wake::Stdin(chunk),
            };
        };
        let blocked = !idle;
        let started = *flow.started.borrow();
        tokio::select! {
            biased;
            signal = signals.recv() => Wake::Signal(signal),
            r = flow.output.changed() => if r.is_ok() { Wake::Output } else { Wake::Room(false) },
            r = flow.acked.changed(), if blocked && started => Wake::Room(r.is_ok()),
            r = flow.started.changed(), if !started => Wake::Room(r.is_ok()),
            chunk = stdin.recv(), if take_stdin => Wake::Stdin(chunk),
        }
    }

    /// The next stdin frame's data (empty for the end), if it may go now.
    fn next_piece(&mut self) -> Option<Vec<u8>> {
        let left = self.pending.len() - self.at;
        if left == 0 && !self.eof {
            return None;
        }
        let n = match &mut self.flow {
            None => left,
            Some(flow) => {
                // Marked seen: `wait` then wakes only for news.
                if !*flow.started.borrow_and_update() {
                    return None;
                }
                let chunk = flow.limits.stdin_chunk_size.max(1) as usize;
                let n = left.min(chunk);
                let acked = *flow.acked.borrow_and_update();
                let limit = u64::from(flow.limits.input_limit);
                if self.sent + n as u64 > acked + limit {
                    return None;
                }
                n
            }
        };
        if n == 0 {
            self.eof = false;
            return Some(Vec::new());
        }
        let piece = self.pending[self.at..self.at + n].to_vec();
        self.at += n;
        self.sent += n as u64;
        Some(piece)
    }

    /// Acknowledges the output consumed so far; false if the write failed.
    async fn ack_output(&mut self) -> bool {
        let Some(flow) = &mut self.flow else {
            return true;
        };
        let consumed = *flow.output.borrow_and_update();
        if consumed <= self.acked_out {
            return true;
        }
        self.acked_out = consumed;
        self.tx.output_ack(self.id, consumed).await.is_ok()
    }
}
