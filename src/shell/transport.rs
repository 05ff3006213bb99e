//! The client transport seen by the driver: a [`Listener`] that yields
//! [`Connection`]s. Production uses [`super::UnixSocketListener`]; tests plug in
//! turmoil's simulated TCP. This file owns the traits, the wrapper that
//! erases a listener's connection type while keeping its hang-up capability,
//! and that capability itself, [`HangupWatch`] (a Unix stream socket's watch
//! for a full close); it never reads or writes a byte itself.

use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

/// A byte stream the shell can drive: a client connection or a guest stream
/// port (vsock, chardev Unix socket, TCP, turmoil's `TcpStream`, a
/// `tokio::io::duplex` half).
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T> Connection for T where T: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

/// A boxed [`Connection`], as the driver stores it.
pub type BoxConnection = Box<dyn Connection>;

/// Accepts client connections.
pub trait Listener: Send + 'static {
    /// The connection type.
    type Conn: Connection;

    /// Waits for the next client. An error is logged and retried after a short
    /// pause (e.g. out of file descriptors), so it must not repeat forever
    /// without waiting on something.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Conn>> + Send;

    /// Called once a read on `conn` returned end of stream: a watch that
    /// fires when the peer has closed the whole connection, or `None` when
    /// this transport cannot tell a full close from a half-close
    /// (`shutdown(SHUT_WR)`, as socat and `nc -N` do after their request).
    ///
    /// With `None` (the default, e.g. turmoil's TCP) end of stream is a
    /// departure: the client's sessions are killed. With a watch the client
    /// stays and still receives its output until the watch fires or a write
    /// to it fails.
    fn watch_hangup(conn: &Self::Conn) -> Option<io::Result<HangupWatch>> {
        let _ = conn;
        None
    }
}

/// An accepted client connection with its transport's capabilities, as the
/// driver stores it.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin {
    /// See [`Listener::watch_hangup`].
    fn watch_hangup(&self) -> Option<io::Result<HangupWatch>>;
}

/// A boxed [`ClientStream`].
pub(crate) type BoxClient = Box<dyn ClientStream>;

/// A listener's connection, remembering which listener made it.
struct Accepted<L: Listener> {
    conn: L::Conn,
    listener: PhantomData<fn() -> L>,
}

impl<L: Listener> ClientStream for Accepted<L> {
    fn watch_hangup(&self) -> Option<io::Result<HangupWatch>> {
        L::watch_hangup(&self.conn)
    }
}

impl<L: Listener> AsyncRead for Accepted<L> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_read(cx, buf)
    }
}

impl<L: Listener> AsyncWrite for Accepted<L> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
    }
}

/// A [`Listener`] with its connection type erased, so the driver is not generic.
pub(crate) trait ErasedListener: Send {
    fn accept_boxed(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<BoxClient>> + Send + '_>>;
}

impl<L: Listener> ErasedListener for L {
    fn accept_boxed(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<BoxClient>> + Send + '_>> {
        Box::pin(async move {
            self.accept().await.map(|conn| {
                Box::new(Accepted::<L> {
                    conn,
                    listener: PhantomData,
                }) as BoxClient
            })
        })
    }
}

impl std::fmt::Debug for dyn Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl std::fmt::Debug for dyn ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientStream")
    }
}

/// Tells, after a read returned end of stream, when the peer of a Unix stream
/// socket has closed the whole connection.
///
/// A peer that only shut down its sending side (`shutdown(SHUT_WR)`) raises
/// RDHUP; one that closed the socket (or shut down both directions) raises
/// HUP, which tokio reports as write-closed. Tokio keeps the read-closed bit
/// once set, so the stream's own readiness cannot wait for HUP after EOF: the
/// watch registers a duplicate of the socket's descriptor of its own, forgets
/// its plain "writable" readiness and waits for "write closed". The duplicate
/// costs one descriptor, and only for half-closed clients.
#[derive(Debug)]
pub struct HangupWatch {
    probe: UnixStream,
}

impl HangupWatch {
    /// Watches `socket`. Must be called inside a tokio runtime.
    pub fn new(socket: &UnixStream) -> io::Result<HangupWatch> {
        let fd: OwnedFd = socket.as_fd().try_clone_to_owned()?;
        let probe = UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))?;
        Ok(HangupWatch { probe })
    }

    /// Ready once the peer has closed the whole connection (or the socket
    /// failed); `Pending` registers `cx`'s waker.
    pub fn poll_hung_up(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.probe.poll_write_ready(cx))?;
            // Write readiness is set, so this answers at once with its bits.
            let bits = std::pin::pin!(self.probe.ready(Interest::WRITABLE)).poll(cx);
            match bits {
                Poll::Ready(Ok(ready)) if ready.is_write_closed() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                _ => {}
            }
            // Merely writable: forget that and wait for the next change.
            let _ = self.probe.try_io(Interest::WRITABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    }
}
