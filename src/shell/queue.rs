//! [`FrameQueue`]: frames waiting for one connection, written by the driver
//! with one vectored write per call ([`FrameQueue::poll_write_to`]). It only
//! moves bytes it was given.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

/// Frames queued for one connection, oldest first.
#[derive(Debug, Default)]
pub(crate) struct FrameQueue {
    frames: VecDeque<Bytes>,
    len: usize,
}

/// Frames handed to one vectored write, at most (well under `IOV_MAX`).
const WRITE_SLICES: usize = 256;

impl FrameQueue {
    /// Queues a frame behind the others.
    pub(crate) fn push(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.len += frame.len();
            self.frames.push_back(frame);
        }
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the oldest frame off the queue.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let frame = self.frames.pop_front()?;
        self.len -= frame.len();
        Some(frame)
    }

    /// Puts a frame back in front (it did not fit where it was going).
    pub(crate) fn push_front(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.len += frame.len();
            self.frames.push_front(frame);
        }
    }

    /// One write of the queued bytes to `w` (vectored when `w` supports it),
    /// advancing the queue by what was written. `Ok(n)` with `n > 0` is
    /// progress; a zero-length write is an error (`WriteZero`). Must only be
    /// called with something queued. `Pending` registers `cx`'s waker.
    pub(crate) fn poll_write_to<W>(
        &mut self,
        mut w: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>>
    where
        W: AsyncWrite + ?Sized,
    {
        debug_assert!(!self.is_empty());
        let polled = if w.is_write_vectored() && self.frames.len() > 1 {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let n = self.chunks_vectored(&mut slices);
            w.as_mut().poll_write_vectored(cx, &slices[..n])
        } else {
            w.as_mut().poll_write(cx, self.chunk())
        };
        match polled {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                self.advance(n);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
}

impl Buf for FrameQueue {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.frames.front().map_or(&[], |f| f.as_ref())
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, frame) in dst.iter_mut().zip(&self.frames) {
            *slot = IoSlice::new(frame);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        self.len -= cnt.min(self.len);
        while cnt > 0 {
            let Some(front) = self.frames.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_queue_advances_across_frames() {
        let mut q = FrameQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        q.push(Bytes::from_static(b"f"));
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(q.chunks_vectored(&mut slices), 3);
        q.advance(4);
        assert_eq!(q.remaining(), 2);
        assert_eq!(q.chunk(), b"e");
        q.advance(2);
        assert_eq!(q.remaining(), 0);
        assert_eq!(q.chunk(), b"");
    }

    #[test]
    fn frame_queue_pop_and_push_front_keep_the_length() {
        let mut q = FrameQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"de"));
        let f = q.pop().unwrap();
        assert_eq!((&f[..], q.remaining()), (&b"abc"[..], 2));
        q.push_front(f);
        assert_eq!((q.chunk(), q.remaining()), (&b"abc"[..], 5));
    }

    #[tokio::test]
    async fn frame_queue_writes_vectored_batches() {
        let (mut a, mut b) = tokio::io::duplex(4);
        let mut q = FrameQueue::default();
        q.push(Bytes::from_static(b"ab"));
        q.push(Bytes::from_static(b"cdef"));
        let n = std::future::poll_fn(|cx| q.poll_write_to(Pin::new(&mut a), cx))
            .await
            .unwrap();
        assert_eq!((n, q.remaining()), (4, 2));
        let mut buf = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf)
            .await
            .unwrap();
        assert_eq!(&buf, b"abcd");
    }
}
