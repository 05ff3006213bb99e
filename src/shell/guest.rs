//! The guest side: [`GuestPort`] (a ring port or any byte stream) and the
//! tasks that move its bytes. Guest bytes are read in bounded batches and
//! handed to the driver over a small bounded channel, so a fast guest can
//! never make the relay buffer without limit; frames toward the guest are
//! written as the driver hands them over, and progress is reported back.
//! Nothing here parses a frame.

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::driver::Input;
use super::queue::FrameQueue;
use super::ring::{RingPort, RingVmm, ring_port};
use super::transport::{BoxConnection, Connection};

/// Bytes read from the guest per batch, at most.
pub const GUEST_BATCH: usize = 64 << 10;

/// What the guest tasks hand the driver, in order.
#[derive(Debug)]
pub(crate) enum GuestIn {
    /// A batch of guest bytes.
    Bytes(Bytes),
    /// End of stream (or a read error).
    Closed(String),
}

/// The channel to the guest agent.
#[derive(Debug)]
pub enum GuestPort {
    /// Two bounded chunk queues plus wake fds; see [`super::ring`].
    Ring(RingPort),
    /// Any byte stream: vsock, a virtio-serial chardev socket, TCP, a
    /// `tokio::io::duplex` half in tests.
    Stream(BoxConnection),
}

impl GuestPort {
    /// A stream port over `io`.
    pub fn stream(io: impl Connection) -> GuestPort {
        GuestPort::Stream(Box::new(io))
    }

    /// A ring port whose queues hold `chunks` chunks each, and the VMM's end.
    pub fn ring(chunks: usize) -> io::Result<(GuestPort, RingVmm)> {
        let (port, vmm) = ring_port(chunks)?;
        Ok((GuestPort::Ring(port), vmm))
    }

    fn kind(&self) -> &'static str {
        match self {
            GuestPort::Ring(_) => "ring",
            GuestPort::Stream(_) => "stream",
        }
    }

    /// Starts the port's tasks. `out` carries frames toward the guest;
    /// `bytes` receives what the guest sends; `inputs` receives progress.
    pub(crate) fn spawn(
        self,
        out: mpsc::UnboundedReceiver<Bytes>,
        bytes: mpsc::Sender<GuestIn>,
        inputs: mpsc::Sender<Input>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let span = tracing::info_span!("guest", port = self.kind());
        match self {
            GuestPort::Stream(io) => {
                let (mut rd, wr) = tokio::io::split(io);
                let reader = async move {
                    let mut buf = BytesMut::new();
                    loop {
                        buf.reserve(GUEST_BATCH);
                        let msg = match (&mut rd).take(GUEST_BATCH as u64).read_buf(&mut buf).await
                        {
                            Ok(0) => GuestIn::Closed("end of stream".into()),
                            Ok(_) => GuestIn::Bytes(buf.split().freeze()),
                            Err(e) => GuestIn::Closed(format!("read failed: {e}")),
                        };
                        let closed = matches!(msg, GuestIn::Closed(_));
                        if bytes.send(msg).await.is_err() || closed {
                            return;
                        }
                    }
                };
                let writer = async move {
                    let report = inputs.clone();
                    let result = FrameQueue::default()
                        .pump(out, wr, |n| {
                            let report = report.clone();
                            async move { report.send(Input::GuestWritten(n)).await.is_ok() }
                        })
                        .await;
                    if let Err(e) = result {
                        let _ = inputs.send(Input::GuestWriteFailed(e.to_string())).await;
                    }
                };
                Ok(vec![
                    tokio::spawn(reader.instrument(span.clone())),
                    tokio::spawn(writer.instrument(span)),
                ])
            }
            GuestPort::Ring(port) => {
                let wake = tokio::net::UnixStream::from_std(port.wake_me.try_clone()?)?;
                Ok(vec![tokio::spawn(
                    ring_loop(port, wake, out, bytes, inputs).instrument(span),
                )])
            }
        }
    }
}

/// One task serves both directions of a ring port, so the single wake fd has
/// a single reader and no wake is stolen.
async fn ring_loop(
    port: RingPort,
    wake: tokio::net::UnixStream,
    mut out: mpsc::UnboundedReceiver<Bytes>,
    bytes: mpsc::Sender<GuestIn>,
    inputs: mpsc::Sender<Input>,
) {
    // A frame that did not fit into the full queue yet.
    let mut carry: Option<Vec<u8>> = None;
    let mut vmm_gone = false;
    let mut pending = VecDeque::new();
    loop {
        // Clear wakes first, then look at the queues: no wake is lost.
        let mut scratch = [0u8; 64];
        loop {
            match wake.try_read(&mut scratch) {
                Ok(0) => {
                    vmm_gone = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        vmm_gone |= !port.vmm_alive();
        // Toward the guest, while the queue has room.
        loop {
            let chunk = match carry.take() {
                Some(c) => c,
                None => match out.try_recv() {
                    Ok(frame) => Vec::from(frame),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                },
            };
            let len = chunk.len();
            match port.push(chunk) {
                Ok(()) => {
                    tracing::trace!(bytes = len, "to guest ring");
                    if inputs.send(Input::GuestWritten(len)).await.is_err() {
                        return;
                    }
                }
                Err(chunk) => {
                    carry = Some(chunk);
                    break;
                }
            }
        }
        // From the guest, while the driver's channel has room.
        let mut blocked = false;
        loop {
            if pending.is_empty() {
                match port.pop() {
                    Some(c) => pending.push_back(Bytes::from(c)),
                    None => break,
                }
            }
            match bytes.try_reserve() {
                Ok(permit) => {
                    if let Some(b) = pending.pop_front() {
                        permit.send(GuestIn::Bytes(b));
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    blocked = true;
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(())) => return,
            }
        }
        if vmm_gone && !blocked && pending.is_empty() {
            let _ = bytes
                .send(GuestIn::Closed("ring port's VMM end dropped".into()))
                .await;
            return;
        }
        tokio::select! {
            r = wake.readable(), if !vmm_gone => {
                if r.is_err() {
                    vmm_gone = true;
                }
            }
            frame = out.recv(), if carry.is_none() => match frame {
                Some(frame) => carry = Some(Vec::from(frame)),
                None => return,
            },
            permit = bytes.reserve(), if blocked => match permit {
                Ok(permit) => {
                    if let Some(b) = pending.pop_front() {
                        permit.send(GuestIn::Bytes(b));
                    }
                }
                Err(_) => return,
            },
        }
    }
}
