//! The ring guest port: two bounded queues of byte chunks plus one wake
//! socket pair per side, the shape a VMM's virtio-console backend uses.
//!
//! [`ring_port`] returns the relay's end ([`RingPort`], handed to the shell as
//! a [`super::GuestPort`]) and the VMM's end ([`RingVmm`]). Either side pushes
//! or pops chunks without blocking and then writes one byte to the other
//! side's wake socket (ignoring `WouldBlock`: a full wake socket already means
//! "look again"). A full queue is backpressure: nothing is ever dropped. This
//! file moves chunks; it never looks inside them.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

/// Consumed chunks kept for reuse, at most (bounds the memory they hold).
const SPARE_CHUNKS: usize = 8;

/// Largest chunk [`RingVmm::write`] pushes in one go.
pub const MAX_CHUNK: usize = 64 << 10;

/// The shared state of one ring port.
#[derive(Debug)]
struct Rings {
    /// Relay -> guest: the frames as the relay holds them (no copy).
    to_guest: ArrayQueue<Bytes>,
    /// Guest -> relay.
    from_guest: ArrayQueue<Vec<u8>>,
    /// Guest chunks the relay has consumed, handed back to the VMM's next
    /// `write` so the data path does not allocate (and fault in) a fresh
    /// buffer per chunk.
    spare: ArrayQueue<Vec<u8>>,
}

/// The relay's end of a ring port. Give it to the shell with
/// [`super::GuestPort::Ring`].
#[derive(Debug)]
pub struct RingPort {
    rings: Arc<Rings>,
    /// Readable when the VMM pushed data or freed room.
    pub(crate) wake_me: StdUnixStream,
    /// Written to wake the VMM.
    wake_vmm: StdUnixStream,
}

/// The VMM's end of a ring port: non-blocking, usable from any thread.
#[derive(Debug)]
pub struct RingVmm {
    rings: Arc<Rings>,
    /// Readable when the relay pushed data or freed room.
    wake_me: StdUnixStream,
    /// Written to wake the relay.
    wake_relay: StdUnixStream,
    /// The chunk `read` is part way through, and how far.
    partial: Option<(Bytes, usize)>,
}

/// Creates a ring port whose queues hold `chunks` chunks each.
pub fn ring_port(chunks: usize) -> io::Result<(RingPort, RingVmm)> {
    let rings = Arc::new(Rings {
        to_guest: ArrayQueue::new(chunks.max(1)),
        from_guest: ArrayQueue::new(chunks.max(1)),
        spare: ArrayQueue::new(chunks.clamp(1, SPARE_CHUNKS)),
    });
    let (relay_wake_rx, vmm_wake_tx) = StdUnixStream::pair()?;
    let (vmm_wake_rx, relay_wake_tx) = StdUnixStream::pair()?;
    for s in [&relay_wake_rx, &vmm_wake_tx, &vmm_wake_rx, &relay_wake_tx] {
        s.set_nonblocking(true)?;
    }
    Ok((
        RingPort {
            rings: rings.clone(),
            wake_me: relay_wake_rx,
            wake_vmm: relay_wake_tx,
        },
        RingVmm {
            rings,
            wake_me: vmm_wake_rx,
            wake_relay: vmm_wake_tx,
            partial: None,
        },
    ))
}

fn wake(s: &StdUnixStream) {
    // WouldBlock: the peer has unread wake bytes already. Other errors: the
    // peer is gone, and there is nobody to wake.
    let _ = (&*s).write(&[1]);
}

fn clear(s: &StdUnixStream) {
    let mut buf = [0u8; 64];
    while matches!((&*s).read(&mut buf), Ok(n) if n > 0) {}
}

impl RingPort {
    /// Pops one chunk the guest sent, if any, and wakes the VMM (room freed).
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<Vec<u8>> {
        let chunk = self.pop_quiet();
        if chunk.is_some() {
            self.wake_vmm();
        }
        chunk
    }

    /// Pushes a chunk toward the guest and wakes the VMM; gives the chunk
    /// back if the queue is full.
    #[cfg(test)]
    pub(crate) fn push(&self, chunk: Bytes) -> Result<(), Bytes> {
        self.push_quiet(chunk)?;
        self.wake_vmm();
        Ok(())
    }

    /// Pops one chunk the guest sent, if any, without waking the VMM: the
    /// caller calls [`RingPort::wake_vmm`] once per batch.
    pub(crate) fn pop_quiet(&self) -> Option<Vec<u8>> {
        self.rings.from_guest.pop()
    }

    /// Hands a consumed guest chunk back for the VMM to refill.
    pub(crate) fn recycle(&self, chunk: Vec<u8>) {
        let _ = self.rings.spare.push(chunk);
    }

    /// Pushes a chunk toward the guest without waking the VMM (the caller
    /// calls [`RingPort::wake_vmm`] once per batch); gives it back if the
    /// queue is full.
    pub(crate) fn push_quiet(&self, chunk: Bytes) -> Result<(), Bytes> {
        self.rings.to_guest.push(chunk)
    }

    /// Wakes the VMM: data was pushed or room freed.
    pub(crate) fn wake_vmm(&self) {
        wake(&self.wake_vmm);
    }

    /// Whether the VMM's end still exists.
    pub(crate) fn vmm_alive(&self) -> bool {
        Arc::strong_count(&self.rings) > 1
    }
}

impl RingVmm {
    /// Hands guest bytes to the relay. Returns how many were taken: 0 when the
    /// queue is full (backpressure: retry after the wake fd turns readable).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        if self.rings.from_guest.is_full() {
            return 0;
        }
        let n = data.len().min(MAX_CHUNK);
        let mut chunk = self.rings.spare.pop().unwrap_or_default();
        chunk.clear();
        chunk.extend_from_slice(&data[..n]);
        // Only this end pushes: the queue that had room still has it.
        if let Err(chunk) = self.rings.from_guest.push(chunk) {
            let _ = self.rings.spare.push(chunk);
            return 0;
        }
        wake(&self.wake_relay);
        n
    }

    /// Takes bytes the relay sent toward the guest. Returns 0 when there are
    /// none (retry after the wake fd turns readable).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < buf.len() {
            let (chunk, pos) = match self.partial.take() {
                Some(p) => p,
                None => match self.rings.to_guest.pop() {
                    Some(chunk) => {
                        wake(&self.wake_relay);
                        (chunk, 0)
                    }
                    None => break,
                },
            };
            let n = (chunk.len() - pos).min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&chunk[pos..pos + n]);
            filled += n;
            if pos + n < chunk.len() {
                self.partial = Some((chunk, pos + n));
            }
        }
        filled
    }

    /// Drains the wake fd. Call it when the fd turns readable, before retrying
    /// [`RingVmm::read`] and pending [`RingVmm::write`]s, so no wake is lost.
    pub fn clear_wake(&self) {
        clear(&self.wake_me);
    }

    /// The fd to poll for readability: the relay pushed data or freed room.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_me.as_raw_fd()
    }
}

impl AsFd for RingVmm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake_me.as_fd()
    }
}

impl AsRawFd for RingVmm {
    fn as_raw_fd(&self) -> RawFd {
        self.wake_me.as_raw_fd()
    }
}

impl Drop for RingVmm {
    fn drop(&mut self) {
        // Let the relay notice the VMM end is gone.
        wake(&self.wake_relay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_reuses_consumed_chunks() {
        let (port, mut vmm) = ring_port(4).unwrap();
        assert_eq!(vmm.write(b"first"), 5);
        let chunk = port.pop_quiet().unwrap();
        let ptr = chunk.as_ptr();
        port.recycle(chunk);
        assert_eq!(vmm.write(b"again"), 5);
        let chunk = port.pop_quiet().unwrap();
        assert_eq!(&chunk[..], b"again");
        assert_eq!(chunk.as_ptr(), ptr, "the consumed buffer was refilled");
    }

    #[test]
    fn ring_full_queue_is_backpressure_not_loss() {
        let (port, mut vmm) = ring_port(2).unwrap();
        assert_eq!(vmm.write(b"ab"), 2);
        assert_eq!(vmm.write(b"cd"), 2);
        assert_eq!(vmm.write(b"ef"), 0, "full queue takes nothing");
        assert_eq!(port.pop().as_deref(), Some(&b"ab"[..]));
        assert_eq!(vmm.write(b"ef"), 2);
        assert!(port.push(Bytes::from_static(b"hello")).is_ok());
        let mut buf = [0u8; 3];
        assert_eq!(vmm.read(&mut buf), 3);
        assert_eq!(&buf, b"hel");
        assert_eq!(vmm.read(&mut buf), 2);
        assert_eq!(&buf[..2], b"lo");
        assert_eq!(vmm.read(&mut buf), 0);
    }
}
