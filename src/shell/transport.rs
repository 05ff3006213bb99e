//! The client transport seen by the driver: a [`Listener`] that yields
//! [`Connection`]s. Production uses [`super::UnixSocketListener`]; tests plug in
//! turmoil's simulated TCP. This file owns the traits only; it never reads or
//! writes a byte.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

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
}

/// A [`Listener`] with its connection type erased, so the driver is not generic.
pub(crate) trait ErasedListener: Send {
    fn accept_boxed(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<BoxConnection>> + Send + '_>>;
}

impl<L: Listener> ErasedListener for L {
    fn accept_boxed(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = io::Result<BoxConnection>> + Send + '_>> {
        Box::pin(async move { self.accept().await.map(|c| Box::new(c) as BoxConnection) })
    }
}

impl std::fmt::Debug for dyn Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}
