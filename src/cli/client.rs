//! A small async client of the relay socket, as an SDK would be: it reads the
//! handshake (`[id_offset: u32 BE]`, then the cached `core.ready` frame),
//! starts exec sessions with ids from its own range, sends stdin and signals,
//! and turns the guest's frames back into [`ExecEvent`]s.
//!
//! [`Client::into_split`] gives a [`Sender`] and a [`Receiver`] that work
//! concurrently; [`Receiver::next_event`] is cancel-safe, so it can sit in a
//! `tokio::select!` next to stdin and Ctrl-C.

use std::io;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::wire::payload::{
    Data, ExecExited, ExecFailed, ExecRequest, ExecSignal, ExecStarted, Ready, build_frame,
    decode_payload, peek_data,
};
use crate::wire::{Frame, FrameDecoder, MsgType, peek_envelope};

/// What the guest reported for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// The process started.
    Started {
        /// Its pid in the guest.
        pid: u32,
    },
    /// Bytes from its stdout (or its pty).
    Stdout(Vec<u8>),
    /// Bytes from its stderr.
    Stderr(Vec<u8>),
    /// It exited (ends the session).
    Exited {
        /// Exit code (128 + n for signal n).
        code: i32,
    },
    /// It could not start (ends the session).
    Failed(ExecFailed),
    /// A frame of another type, e.g. `core.fs.response`.
    Other(MsgType),
}

impl ExecEvent {
    /// True for the last event of a session.
    pub fn is_terminal(&self) -> bool {
        matches!(self, ExecEvent::Exited { .. } | ExecEvent::Failed(_))
    }
}

fn bad_data(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A connected, handshaken client.
#[derive(Debug)]
pub struct Client {
    sender: Sender,
    receiver: Receiver,
}

/// The sending half of a [`Client`].
#[derive(Debug)]
pub struct Sender {
    wr: OwnedWriteHalf,
    next_id: u32,
}

/// The receiving half of a [`Client`].
#[derive(Debug)]
pub struct Receiver {
    rd: OwnedReadHalf,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the relay socket at `path` and reads the handshake.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<Client> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot connect to the relay at {}: {}",
                    path.display(),
                    crate::shell::io_cause(&e)
                ),
            )
        })?;
        Client::handshake(stream).await
    }

    /// Reads the handshake on an already connected stream.
    pub async fn handshake(stream: UnixStream) -> io::Result<Client> {
        let (mut rd, wr) = stream.into_split();
        let (id_offset, ready, decoder) = read_handshake(&mut rd).await?;
        tracing::debug!(id_offset, ?ready, "handshake");
        Ok(Client {
            sender: Sender {
                wr,
                // Our first id is offset + 1, as the 0.4.4 SDK picks it.
                next_id: id_offset.wrapping_add(1),
            },
            receiver: Receiver {
                rd,
                decoder,
                buf: vec![0; 64 * 1024],
            },
        })
    }

    /// Splits into halves that can be used from different tasks or branches.
    pub fn into_split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }

    /// Starts a process; returns the session's correlation id.
    pub async fn exec(&mut self, req: &ExecRequest) -> io::Result<u32> {
        self.sender.exec(req).await
    }

    /// Sends stdin bytes to a session; empty `data` closes its stdin.
    pub async fn stdin(&mut self, id: u32, data: &[u8]) -> io::Result<()> {
        self.sender.stdin(id, data).await
    }

    /// Delivers a signal to a session's process.
    pub async fn signal(&mut self, id: u32, signal: i32) -> io::Result<()> {
        self.sender.signal(id, signal).await
    }

    /// The next event of any session; `None` when the relay closed the connection.
    pub async fn next_event(&mut self) -> io::Result<Option<(u32, ExecEvent)>> {
        self.receiver.next_event().await
    }
}

/// Reads `[id_offset: u32 BE]` (and `[id_end: u32 BE]` in the bounds form) and
/// the ready frame; extra bytes stay in the decoder.
async fn read_handshake<R: AsyncRead + Unpin>(
    rd: &mut R,
) -> io::Result<(u32, Ready, FrameDecoder)> {
    let mut offset = [0u8; 4];
    rd.read_exact(&mut offset).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "refused: it closed the connection before its handshake (all its client slots \
                 are taken, or its guest is gone; its log says which)",
            )
        } else {
            e
        }
    })?;
    let mut decoder = FrameDecoder::new();
    // The bounds form (newer SDKs) sends `[id_end: u32 BE]` next; the 0.4.4 form
    // goes straight on with the ready frame's length. A length never exceeds
    // 4 MiB and an id range end always does (`serve` refuses the bounds form
    // above 1023 slots for that reason), so the next four bytes tell the two
    // apart.
    let mut next = [0u8; 4];
    rd.read_exact(&mut next)
        .await
        .map_err(|_| bad_data("the relay closed the connection inside its handshake"))?;
    if u32::from_be_bytes(next) <= crate::wire::MAX_FRAME_LEN {
        decoder.extend(&next);
    }
    let mut buf = vec![0u8; 4096];
    let frame = loop {
        if let Some(frame) = decoder.next_frame().map_err(bad_data)? {
            break frame;
        }
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Err(bad_data(
                "the relay closed the connection inside its handshake",
            ));
        }
        decoder.extend(&buf[..n]);
    };
    let env = peek_envelope(frame.body()).map_err(bad_data)?;
    if env.t != MsgType::Ready {
        return Err(bad_data(format!(
            "handshake carried {}, not core.ready",
            env.t
        )));
    }
    let ready = decode_payload::<Ready>(&env.payload).map_err(bad_data)?;
    Ok((u32::from_be_bytes(offset), ready, decoder))
}

impl Sender {
    async fn send(&mut self, frame: Frame) -> io::Result<()> {
        self.wr.write_all(frame.as_bytes()).await
    }

    /// Starts a process; returns the session's correlation id.
    pub async fn exec(&mut self, req: &ExecRequest) -> io::Result<u32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.send(build_frame(MsgType::ExecRequest, id, req))
            .await?;
        Ok(id)
    }

    /// Sends stdin bytes to a session; empty `data` closes its stdin. Data
    /// larger than a frame allows goes out in several frames.
    pub async fn stdin(&mut self, id: u32, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return self
                .send(build_frame(
                    MsgType::ExecStdin,
                    id,
                    &Data { data: Vec::new() },
                ))
                .await;
        }
        for chunk in data.chunks(1 << 20) {
            let payload = Data {
                data: chunk.to_vec(),
            };
            self.send(build_frame(MsgType::ExecStdin, id, &payload))
                .await?;
        }
        Ok(())
    }

    /// Delivers a signal to a session's process.
    pub async fn signal(&mut self, id: u32, signal: i32) -> io::Result<()> {
        self.send(build_frame(MsgType::ExecSignal, id, &ExecSignal { signal }))
            .await
    }

    /// Closes our side of the connection (the relay then kills our live sessions).
    pub async fn close(mut self) -> io::Result<()> {
        self.wr.shutdown().await
    }
}

impl Receiver {
    /// The next event of any session; `None` when the relay closed the
    /// connection. Cancel-safe.
    pub async fn next_event(&mut self) -> io::Result<Option<(u32, ExecEvent)>> {
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(bad_data)? {
                return decode_event(&frame).map(Some);
            }
            let n = self.rd.read(&mut self.buf).await?;
            if n == 0 {
                return match self.decoder.buffered() {
                    0 => Ok(None),
                    have => Err(bad_data(format!(
                        "the relay closed the connection mid-frame ({have} bytes of a frame)"
                    ))),
                };
            }
            self.decoder.extend(&self.buf[..n]);
        }
    }
}

fn decode_event(frame: &Frame) -> io::Result<(u32, ExecEvent)> {
    let id = frame.id();
    let env = peek_envelope(frame.body()).map_err(bad_data)?;
    let p = &env.payload;
    let event = match env.t {
        MsgType::ExecStarted => ExecEvent::Started {
            pid: decode_payload::<ExecStarted>(p).map_err(bad_data)?.pid,
        },
        MsgType::ExecStdout => ExecEvent::Stdout(peek_data(p).map_err(bad_data)?.into_owned()),
        MsgType::ExecStderr => ExecEvent::Stderr(peek_data(p).map_err(bad_data)?.into_owned()),
        MsgType::ExecExited => ExecEvent::Exited {
            code: decode_payload::<ExecExited>(p).map_err(bad_data)?.code,
        },
        MsgType::ExecFailed => ExecEvent::Failed(decode_payload(p).map_err(bad_data)?),
        other => ExecEvent::Other(other),
    };
    Ok((id, event))
}

/// A plain exec request for `cmd` with `args` (no env, cwd, user or tty).
pub fn exec_request(cmd: &str, args: &[&str]) -> ExecRequest {
    ExecRequest::new(cmd).args(args.iter().copied())
}
