//! One client connection: a reader task that turns bytes into driver inputs
//! (and waits while the core has it paused), and a writer task that drains the
//! client's queue in vectored batches and reports progress. Dropping the
//! [`ClientConn`] aborts both tasks, which closes the connection and discards
//! whatever was still queued. No decision about the bytes is made here.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::driver::Input;
use super::queue::FrameQueue;
use super::transport::BoxConnection;
use crate::core::ClientId;

/// Bytes read from a client per read call, at most.
pub(crate) const CLIENT_READ: usize = 64 << 10;

/// The driver's handle on one connection.
#[derive(Debug)]
pub(crate) struct ClientConn {
    /// Frames toward the client; bounded by the core's per-client budget.
    pub(crate) out: mpsc::UnboundedSender<Bytes>,
    paused: watch::Sender<bool>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    pub(crate) span: tracing::Span,
}

impl ClientConn {
    /// Starts the reader and writer tasks of a new connection.
    pub(crate) fn spawn(
        id: ClientId,
        conn: BoxConnection,
        inputs: mpsc::Sender<Input>,
    ) -> ClientConn {
        let span = tracing::info_span!("client", client = id.0);
        let (rd, wr) = tokio::io::split(conn);
        let (out, out_rx) = mpsc::unbounded_channel();
        let (paused, paused_rx) = watch::channel(false);
        let reader =
            tokio::spawn(read_loop(id, rd, paused_rx, inputs.clone()).instrument(span.clone()));
        let writer = tokio::spawn(
            async move {
                let report = inputs.clone();
                let result = FrameQueue::default()
                    .pump(out_rx, wr, |n| {
                        let report = report.clone();
                        async move { report.send(Input::ClientWritten(id, n)).await.is_ok() }
                    })
                    .await;
                if let Err(e) = result {
                    let _ = inputs
                        .send(Input::ClientGone(id, format!("write failed: {e}")))
                        .await;
                }
            }
            .instrument(span.clone()),
        );
        ClientConn {
            out,
            paused,
            reader,
            writer,
            span,
        }
    }

    /// Stops or resumes reading the client.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

async fn read_loop(
    id: ClientId,
    mut rd: tokio::io::ReadHalf<BoxConnection>,
    mut paused: watch::Receiver<bool>,
    inputs: mpsc::Sender<Input>,
) {
    let mut buf = BytesMut::new();
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        buf.reserve(CLIENT_READ);
        let input = match (&mut rd).take(CLIENT_READ as u64).read_buf(&mut buf).await {
            Ok(0) => Input::ClientGone(id, "closed by the client".into()),
            Ok(n) => {
                tracing::trace!(bytes = n, "client bytes");
                Input::ClientBytes(id, buf.split().freeze())
            }
            Err(e) => Input::ClientGone(id, format!("read failed: {e}")),
        };
        let gone = matches!(input, Input::ClientGone(..));
        if inputs.send(input).await.is_err() || gone {
            return;
        }
    }
}
