//! [`FrameQueue`]: frames waiting for one writer, presented as a single
//! [`Buf`] so a writer task hands the whole batch to `write_buf` and the
//! transport gets one vectored write. It only moves bytes it was given.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Frames queued for one writer, oldest first.
#[derive(Debug, Default)]
pub(crate) struct FrameQueue {
    frames: VecDeque<Bytes>,
    len: usize,
}

/// Frames taken from the channel per batch, at most.
const BATCH_FRAMES: usize = 64;

impl FrameQueue {
    fn push(&mut self, frame: Bytes) {
        if !frame.is_empty() {
            self.len += frame.len();
            self.frames.push_back(frame);
        }
    }

    /// Waits for frames and writes them in batches until the channel closes
    /// or a write fails; `written(n)` reports progress after every write.
    pub(crate) async fn pump<W, F>(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Bytes>,
        mut w: W,
        mut written: impl FnMut(usize) -> F,
    ) -> std::io::Result<()>
    where
        W: AsyncWrite + Unpin,
        F: std::future::Future<Output = bool>,
    {
        loop {
            if self.frames.is_empty() {
                w.flush().await?;
                match rx.recv().await {
                    Some(frame) => self.push(frame),
                    None => return Ok(()),
                }
            }
            while self.frames.len() < BATCH_FRAMES {
                match rx.try_recv() {
                    Ok(frame) => self.push(frame),
                    Err(_) => break,
                }
            }
            if self.len == 0 {
                continue;
            }
            let n = w.write_buf(&mut self).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            if !written(n).await {
                return Ok(());
            }
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
}
