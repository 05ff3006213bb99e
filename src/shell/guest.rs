//! The guest side: [`GuestPort`] (a ring port or any byte stream) and
//! [`GuestIo`], the driver's inline handling of it. The driver polls the port
//! from its own task: frames toward the guest are written (stream) or pushed
//! (ring) as soon as the core hands them over, progress is reported in
//! batches, and guest bytes are read in bounded batches of at most
//! [`GUEST_BATCH`] bytes, one per driver turn, so a fast guest can never make
//! the relay buffer without limit (rule `bounded_reads`, kept with
//! `driver.rs`). Nothing here parses a frame.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::ReadBuf;

use super::queue::FrameQueue;
use super::ring::{RingPort, RingVmm, ring_port};
use super::transport::{BoxConnection, Connection};

/// Bytes read from the guest per batch, at most.
pub const GUEST_BATCH: usize = 64 << 10;

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

    /// Prepares the port for the driver (registers the ring's wake fd with
    /// the runtime). Must be called inside the runtime.
    pub(crate) fn into_io(self) -> io::Result<GuestIo> {
        let span = tracing::info_span!("guest", port = self.kind());
        let kind = match self {
            GuestPort::Stream(io) => Kind::Stream(io),
            GuestPort::Ring(port) => {
                let wake = tokio::net::UnixStream::from_std(port.wake_me.try_clone()?)?;
                Kind::Ring {
                    port,
                    wake,
                    vmm_gone: false,
                }
            }
        };
        Ok(GuestIo {
            kind,
            out: FrameQueue::default(),
            flushed: true,
            read_closed: false,
            write_closed: false,
            span,
        })
    }
}

enum Kind {
    Stream(BoxConnection),
    Ring {
        port: RingPort,
        /// The relay's wake fd, registered with the runtime; only the driver
        /// reads it, so no wake is stolen.
        wake: tokio::net::UnixStream,
        vmm_gone: bool,
    },
}

/// What one poll of the guest produced.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes of earlier frames the port accepted (report as `GuestWritten`).
    pub(crate) written: usize,
    /// Writing failed or the port went away for writing; the text says how.
    pub(crate) write_failed: Option<String>,
    /// The guest channel ended; the text says how.
    pub(crate) closed: Option<String>,
}

/// The driver's end of the guest port: the frames queued toward the guest
/// and the port itself, polled only from the driver's task.
pub(crate) struct GuestIo {
    kind: Kind,
    out: FrameQueue,
    /// Whether the stream was flushed since its last write.
    flushed: bool,
    /// The guest channel ended or failed for reading; it is not read again.
    read_closed: bool,
    /// Writing failed; nothing is written again.
    write_closed: bool,
    pub(crate) span: tracing::Span,
}

impl std::fmt::Debug for GuestIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestIo")
            .field("queued", &bytes::Buf::remaining(&self.out))
            .field("read_closed", &self.read_closed)
            .field("write_closed", &self.write_closed)
            .finish()
    }
}

/// Writes per poll to the guest stream, at most, before other work gets a turn.
const WRITES_PER_POLL: usize = 8;

impl GuestIo {
    /// Queues a frame toward the guest; the next [`GuestIo::poll_write`]
    /// sends it.
    pub(crate) fn send(&mut self, frame: Bytes) {
        if !self.write_closed {
            self.out.push(frame);
        }
    }

    /// Whether frames are still queued toward the guest (the port is full).
    pub(crate) fn has_queued(&self) -> bool {
        !self.out.is_empty()
    }

    /// One turn of the port: writes (stream) or pushes (ring) queued frames
    /// until the port is full or the queue empty, then reads one bounded
    /// batch of guest bytes, handing each piece to `bytes`. Returns whether
    /// anything was read or written; when nothing was, `cx`'s waker is
    /// registered wherever progress can come from.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        p: &mut Progress,
        read: bool,
        bytes: impl FnMut(&[u8]),
    ) -> bool {
        if self.read_closed && self.write_closed {
            return false;
        }
        if let Kind::Ring {
            port,
            wake,
            vmm_gone,
        } = &mut self.kind
        {
            // Clear wakes first, then look at the queues: no wake is lost. A
            // WouldBlock from try_read clears tokio's readiness; the read
            // below re-registers the driver's waker when it finds nothing.
            let mut scratch = [0u8; 64];
            loop {
                match wake.try_read(&mut scratch) {
                    Ok(0) => {
                        *vmm_gone = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            *vmm_gone |= !port.vmm_alive();
        }
        let mut progressed = false;
        if !self.write_closed {
            let before = p.written;
            self.poll_write(cx, p);
            if p.write_failed.is_some() {
                self.write_closed = true;
                self.out = FrameQueue::default();
                return true;
            }
            progressed = p.written > before;
        }
        if !self.read_closed && read {
            progressed |= self.poll_read(cx, buf, p, bytes);
            self.read_closed = p.closed.is_some();
        }
        progressed
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, p: &mut Progress) {
        match &mut self.kind {
            Kind::Stream(io) => {
                let mut writes = 0;
                while !self.out.is_empty() && writes < WRITES_PER_POLL {
                    writes += 1;
                    match self.out.poll_write_to(Pin::new(&mut **io), cx) {
                        Poll::Ready(Ok(n)) => {
                            p.written += n;
                            self.flushed = false;
                        }
                        Poll::Ready(Err(e)) => {
                            p.write_failed = Some(e.to_string());
                            return;
                        }
                        Poll::Pending => return,
                    }
                }
                if self.out.is_empty() && !self.flushed {
                    match Pin::new(&mut **io).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.flushed = true,
                        Poll::Ready(Err(e)) => p.write_failed = Some(e.to_string()),
                        Poll::Pending => {}
                    }
                }
            }
            Kind::Ring { port, vmm_gone, .. } => {
                if *vmm_gone {
                    return;
                }
                let mut pushed = 0;
                while let Some(frame) = self.out.pop() {
                    let len = frame.len();
                    match port.push_quiet(frame) {
                        Ok(()) => pushed += len,
                        Err(frame) => {
                            // Full: the VMM wakes us when it frees room
                            // (the read side polls the wake fd).
                            self.out.push_front(frame);
                            break;
                        }
                    }
                }
                if pushed > 0 {
                    tracing::trace!(bytes = pushed, "to guest ring");
                    port.wake_vmm();
                    p.written += pushed;
                }
            }
        }
    }

    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        p: &mut Progress,
        mut bytes: impl FnMut(&[u8]),
    ) -> bool {
        match &mut self.kind {
            Kind::Stream(io) => {
                let mut rb = ReadBuf::new(buf);
                match Pin::new(&mut **io).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                        p.closed = Some("end of stream".into());
                        true
                    }
                    Poll::Ready(Ok(())) => {
                        bytes(rb.filled());
                        true
                    }
                    Poll::Ready(Err(e)) => {
                        p.closed = Some(format!("read failed: {e}"));
                        true
                    }
                    Poll::Pending => false,
                }
            }
            Kind::Ring {
                port,
                wake,
                vmm_gone,
            } => {
                let mut got = 0;
                while got < GUEST_BATCH {
                    match port.pop_quiet() {
                        Some(chunk) => {
                            got += chunk.len().max(1);
                            bytes(&chunk);
                            port.recycle(chunk);
                        }
                        None => break,
                    }
                }
                if got > 0 {
                    port.wake_vmm(); // room freed
                    return true;
                }
                if *vmm_gone {
                    p.closed = Some("ring port's VMM end dropped".into());
                    return true;
                }
                // Nothing to read: wait for the wake fd (it also fires when
                // the VMM frees room toward the guest).
                match wake.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        // A wake arrived meanwhile: have the driver poll again.
                        cx.waker().wake_by_ref();
                        false
                    }
                    Poll::Ready(Err(_)) => {
                        *vmm_gone = true;
                        cx.waker().wake_by_ref();
                        false
                    }
                    Poll::Pending => false,
                }
            }
        }
    }
}
