//! One client connection, owned by the driver: the socket, the frames queued
//! toward it and whether the core has reading paused. The driver polls it from
//! its own task: [`ClientConn::poll_write`] writes the queue in vectored
//! batches, [`ClientConn::poll_read`] reads one bounded batch. Dropping a
//! [`ClientConn`] closes the connection and discards whatever was still
//! queued. No decision about the bytes is made here.
//!
//! End of stream is a departure unless the transport can tell a half-close
//! from a full close ([`super::Listener::watch_hangup`]): a client that only
//! shut down its sending side stays, still receiving its output, and leaves
//! when its socket is fully closed or a write to it fails.
//!
//! Rule `paused_hangup_watch` (docs/ARCHITECTURE.md states it): a paused
//! client is not read, so its end of stream cannot be seen; where the
//! transport can watch for a full close ([`HangupWatch`]), that watch runs
//! while it is paused, so a client that leaves while its frames wait (a
//! flood of stdin for a process that does not read it) still departs at
//! once, and the core's kills for it go out.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::ReadBuf;

use super::queue::FrameQueue;
use super::transport::{BoxClient, HangupWatch};

/// Bytes read from a client per read call, at most.
pub(crate) const CLIENT_READ: usize = 64 << 10;

/// Writes per poll to one client, at most, so one fast client cannot hold the
/// driver while others wait.
const WRITES_PER_POLL: usize = 8;

/// The driver's handle on one connection.
#[derive(Debug)]
pub(crate) struct ClientConn {
    io: BoxClient,
    /// Frames toward the client; bounded by the core's per-client budget.
    out: FrameQueue,
    /// Whether the socket was flushed since its last write.
    flushed: bool,
    /// The core paused reading this client.
    paused: bool,
    /// The client shut down its sending side; this says when it leaves.
    half_closed: Option<HangupWatch>,
    /// While paused: says when the client closed its whole connection.
    paused_watch: Option<HangupWatch>,
    pub(crate) span: tracing::Span,
}

/// What one write poll did.
pub(crate) enum Written {
    /// Nothing queued, or the socket is full (the waker is registered).
    Idle,
    /// This many bytes reached the socket.
    Bytes(usize),
    /// Writing failed: the connection is unusable.
    Failed(io::Error),
}

/// What one read poll did.
pub(crate) enum Read<'a> {
    /// Paused, or nothing to read (the waker is registered).
    Idle,
    /// Bytes from the client.
    Bytes(&'a [u8]),
    /// The connection ended; the text says how.
    Gone(String),
}

impl ClientConn {
    /// Wraps a new connection.
    pub(crate) fn new(id: u64, io: BoxClient) -> ClientConn {
        ClientConn {
            io,
            out: FrameQueue::default(),
            flushed: true,
            paused: false,
            half_closed: None,
            paused_watch: None,
            span: tracing::info_span!("client", client = id),
        }
    }

    /// Queues bytes toward the client; the driver's next turn writes them.
    pub(crate) fn send(&mut self, bytes: Bytes) {
        self.out.push(bytes);
    }

    /// Whether bytes are still queued (its socket was full, or the per-poll
    /// budget ran out).
    pub(crate) fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// Stops or resumes reading the client.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if !paused {
            self.paused_watch = None;
        }
    }

    /// Writes queued bytes until the socket is full, the queue is empty or
    /// the per-poll budget is spent. Never waits.
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>) -> Written {
        let mut total = 0;
        let mut writes = 0;
        while !self.out.is_empty() && writes < WRITES_PER_POLL {
            writes += 1;
            match self.out.poll_write_to(Pin::new(&mut *self.io), cx) {
                Poll::Ready(Ok(n)) => {
                    total += n;
                    self.flushed = false;
                }
                Poll::Ready(Err(e)) => return Written::Failed(e),
                Poll::Pending => break,
            }
        }
        if self.out.is_empty() && !self.flushed {
            match Pin::new(&mut *self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flushed = true,
                Poll::Ready(Err(e)) => return Written::Failed(e),
                Poll::Pending => {}
            }
        }
        if total > 0 {
            Written::Bytes(total)
        } else {
            Written::Idle
        }
    }

    /// Reads one batch (at most `buf.len()` bytes) unless paused. After a
    /// half-close it only watches for the client's departure.
    pub(crate) fn poll_read<'a>(&mut self, cx: &mut Context<'_>, buf: &'a mut [u8]) -> Read<'a> {
        if let Some(watch) = &mut self.half_closed {
            return match watch.poll_hung_up(cx) {
                Poll::Ready(Ok(())) => Read::Gone("closed by the client".into()),
                Poll::Ready(Err(e)) => Read::Gone(format!("watching for its hang-up failed: {e}")),
                Poll::Pending => Read::Idle,
            };
        }
        if self.paused {
            return self.poll_paused(cx);
        }
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n > 0 {
                    return Read::Bytes(&buf[..n]);
                }
                match self.io.watch_hangup() {
                    None => Read::Gone("closed by the client".into()),
                    Some(Err(e)) => Read::Gone(format!(
                        "end of stream, and its socket cannot be watched for a hang-up: {e}"
                    )),
                    Some(Ok(watch)) => {
                        self.span.in_scope(|| {
                            tracing::debug!("the client shut down its sending side; it still receives its output")
                        });
                        self.half_closed = Some(watch);
                        self.poll_read(cx, buf)
                    }
                }
            }
            Poll::Ready(Err(e)) => Read::Gone(format!("read failed: {e}")),
            Poll::Pending => Read::Idle,
        }
    }

    /// Paused: nothing is read, but a client that closes its connection
    /// meanwhile leaves (when the transport can tell).
    fn poll_paused<'a>(&mut self, cx: &mut Context<'_>) -> Read<'a> {
        if self.paused_watch.is_none() {
            match self.io.watch_hangup() {
                Some(Ok(watch)) => self.paused_watch = Some(watch),
                Some(Err(e)) => self.span.in_scope(|| {
                    tracing::debug!("a paused client cannot be watched for a hang-up: {e}")
                }),
                None => {}
            }
        }
        let Some(watch) = &mut self.paused_watch else {
            return Read::Idle;
        };
        match watch.poll_hung_up(cx) {
            Poll::Ready(Ok(())) => Read::Gone("closed by the client while paused".into()),
            Poll::Ready(Err(e)) => Read::Gone(format!("watching for its hang-up failed: {e}")),
            Poll::Pending => Read::Idle,
        }
    }
}
