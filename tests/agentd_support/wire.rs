//! Talking to agentd directly over the relay's end, with the 0.7.13 codec:
//! for tests of the harness itself, or a test that plays the host.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use msp7::codec;
use msp7::message::{Message, MessageType};

/// A blocking framed connection to agentd.
pub struct Wire {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Wire {
    /// Frames over `stream` (the relay's end from `Agentd::spawn`).
    pub fn new(stream: UnixStream) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes (a frame from `bootstrap_frame`, a lease record).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes `msg` as one frame.
    pub fn send(&mut self, msg: &Message) -> io::Result<()> {
        let mut out = Vec::new();
        codec::encode_to_buf(msg, &mut out).map_err(io::Error::other)?;
        self.stream.write_all(&out)
    }

    /// Builds and writes a message of type `t` with id `id` and `payload`.
    pub fn send_payload<T: serde::Serialize>(
        &mut self,
        t: MessageType,
        id: u32,
        payload: &T,
    ) -> io::Result<()> {
        let msg = Message::with_payload(t, id, payload).map_err(io::Error::other)?;
        self.send(&msg)
    }

    /// The next frame from agentd, waiting up to `timeout`. End of stream
    /// is `UnexpectedEof`, a timeout `TimedOut`.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(msg) =
                codec::try_decode_from_buf(&mut self.buf).map_err(io::Error::other)?
            {
                return Ok(msg);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no frame from agentd in time",
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 64 << 10];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "agentd's end closed",
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads frames until one of type `t` (returned), within `timeout`,
    /// collecting the frames it passes over into `skipped`.
    pub fn recv_type(
        &mut self,
        t: MessageType,
        timeout: Duration,
        skipped: &mut Vec<Message>,
    ) -> io::Result<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let msg = self.recv(deadline.saturating_duration_since(Instant::now()))?;
            if msg.t == t {
                return Ok(msg);
            }
            skipped.push(msg);
        }
    }

    /// The stream back (to close it, or to hand it on).
    pub fn into_inner(self) -> UnixStream {
        self.stream
    }

    /// The stream, for shutdown or options.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }
}
