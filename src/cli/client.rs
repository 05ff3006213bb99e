//! A small async client of the relay socket, as an SDK would be: it reads the
//! prologue, starts exec sessions with ids from its own range, sends stdin,
//! signals and output acknowledgements, and turns the guest's frames back
//! into [`ExecEvent`]s.
//!
//! Both generations: it tells the prologue's form apart as the 0.7.13 SDK
//! does, from its first two words. Legacy iff `5 <= w2 <= 4 MiB && (w1 == 0
//! || w1 >= w2)`: `w1` is the id offset, `w2` already the ready frame's
//! length, ids start at `w1 + 1` and every frame it sends carries `v = 1`.
//! Otherwise `[id_start][id_end_exclusive]`: ids start at `max(id_start,
//! 1)`, the whole ready frame follows, and it sends `v = 10`. The ready's
//! `exec_limits` (current generation) are in [`Prologue`].
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
    Consumed, Data, ExecExited, ExecFailed, ExecLimits, ExecRequest, ExecSignal, ExecStarted,
    ReadyCurrent, build_frame_v, decode_payload, peek_data,
};
use crate::wire::{
    CURRENT_VERSION, Frame, FrameDecoder, LEGACY_VERSION, MAX_FRAME_LEN, MIN_FRAME_LEN, MsgType,
    peek_envelope, peek_parts,
};

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
    /// The guest wrote this many bytes of stdin into the process so far
    /// (`core.exec.stdin.ack`, current generation).
    StdinAck(u64),
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

/// The prologue's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrologueForm {
    /// `[id_offset]` then the ready frame (generation 1).
    Legacy,
    /// `[id_start][id_end_exclusive]` then the ready frame.
    Current,
}

/// What the relay's prologue said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prologue {
    /// Its form, as the 0.7.13 SDK tells them apart.
    pub form: PrologueForm,
    /// The first id this client uses.
    pub first_id: u32,
    /// The `v` this client writes into every frame: 1 or 10.
    pub v: u8,
    /// The `v` of the guest's ready.
    pub ready_v: u8,
    /// The guest's execution policy (current generation).
    pub exec_limits: Option<ExecLimits>,
}

/// A connected, handshaken client.
#[derive(Debug)]
pub struct Client {
    sender: Sender,
    receiver: Receiver,
    prologue: Prologue,
}

/// The sending half of a [`Client`].
#[derive(Debug)]
pub struct Sender {
    wr: OwnedWriteHalf,
    next_id: u32,
    v: u8,
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
        let (prologue, decoder) = read_handshake(&mut rd).await?;
        tracing::debug!(?prologue, "handshake");
        Ok(Client {
            sender: Sender {
                wr,
                next_id: prologue.first_id,
                v: prologue.v,
            },
            receiver: Receiver {
                rd,
                decoder,
                buf: vec![0; 64 * 1024],
            },
            prologue,
        })
    }

    /// What the prologue said.
    pub fn prologue(&self) -> &Prologue {
        &self.prologue
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

    /// Acknowledges a session's output (see [`Sender::output_ack`]).
    pub async fn output_ack(&mut self, id: u32, consumed: u64) -> io::Result<()> {
        self.sender.output_ack(id, consumed).await
    }

    /// The next event of any session; `None` when the relay closed the connection.
    pub async fn next_event(&mut self) -> io::Result<Option<(u32, ExecEvent)>> {
        self.receiver.next_event().await
    }
}

/// Whether a prologue's first two words are the legacy form, as the 0.7.13
/// SDK decides it: the second word is then the ready frame's length.
pub fn legacy_prologue(w1: u32, w2: u32) -> bool {
    (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&w2) && (w1 == 0 || w1 >= w2)
}

/// Reads the prologue and the ready frame; extra bytes stay in the decoder.
async fn read_handshake<R: AsyncRead + Unpin>(rd: &mut R) -> io::Result<(Prologue, FrameDecoder)> {
    let mut words = [0u8; 8];
    rd.read_exact(&mut words).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "refused: it closed the connection before its handshake (all its client slots \
                 are taken, its guest is gone or failed to start; its log says which)",
            )
        } else {
            e
        }
    })?;
    let w1 = u32::from_be_bytes([words[0], words[1], words[2], words[3]]);
    let w2 = u32::from_be_bytes([words[4], words[5], words[6], words[7]]);
    let mut decoder = FrameDecoder::new();
    let (form, first_id, v) = if legacy_prologue(w1, w2) {
        decoder.extend(&words[4..]);
        (PrologueForm::Legacy, w1.wrapping_add(1), LEGACY_VERSION)
    } else if w1 >= w2 {
        return Err(bad_data(format!(
            "the relay's prologue names no ids: [{w1}, {w2})"
        )));
    } else {
        (PrologueForm::Current, w1.max(1), CURRENT_VERSION)
    };
    let frame = read_frame(rd, &mut decoder).await?;
    let parts = peek_parts(frame.body()).map_err(bad_data)?;
    if parts.t != Some(MsgType::Ready) {
        return Err(bad_data("the handshake did not carry core.ready"));
    }
    let ready = decode_payload::<ReadyCurrent>(&parts.payload).map_err(bad_data)?;
    let prologue = Prologue {
        form,
        first_id,
        v,
        ready_v: parts.v,
        exec_limits: ready.exec_limits,
    };
    Ok((prologue, decoder))
}

/// Reads until `decoder` holds a whole frame.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    decoder: &mut FrameDecoder,
) -> io::Result<Frame> {
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame().map_err(bad_data)? {
            return Ok(frame);
        }
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Err(bad_data(
                "the relay closed the connection inside its handshake",
            ));
        }
        decoder.extend(&buf[..n]);
    }
}

impl Sender {
    async fn send(&mut self, frame: Frame) -> io::Result<()> {
        self.wr.write_all(frame.as_bytes()).await
    }

    fn frame<T: serde::Serialize>(&self, t: MsgType, id: u32, payload: &T) -> Frame {
        build_frame_v(self.v, t, id, payload)
    }

    /// Starts a process; returns the session's correlation id.
    pub async fn exec(&mut self, req: &ExecRequest) -> io::Result<u32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.send(self.frame(MsgType::ExecRequest, id, req)).await?;
        Ok(id)
    }

    /// Sends stdin bytes to a session; empty `data` closes its stdin. Data
    /// larger than a frame allows goes out in several frames.
    pub async fn stdin(&mut self, id: u32, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            let eof = self.frame(MsgType::ExecStdin, id, &Data { data: Vec::new() });
            return self.send(eof).await;
        }
        for chunk in data.chunks(1 << 20) {
            let payload = Data {
                data: chunk.to_vec(),
            };
            self.send(self.frame(MsgType::ExecStdin, id, &payload))
                .await?;
        }
        Ok(())
    }

    /// Delivers a signal to a session's process.
    pub async fn signal(&mut self, id: u32, signal: i32) -> io::Result<()> {
        let frame = self.frame(MsgType::ExecSignal, id, &ExecSignal { signal });
        self.send(frame).await
    }

    /// Tells the guest how much of a session's output was consumed:
    /// cumulative, each output chunk counted as its payload plus 256 bytes
    /// (`core.exec.output.ack`, current generation with exec limits).
    pub async fn output_ack(&mut self, id: u32, consumed: u64) -> io::Result<()> {
        let frame = self.frame(MsgType::ExecOutputAck, id, &Consumed { consumed });
        self.send(frame).await
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
        MsgType::ExecStdinAck => {
            ExecEvent::StdinAck(decode_payload::<Consumed>(p).map_err(bad_data)?.consumed)
        }
        other => ExecEvent::Other(other),
    };
    Ok((id, event))
}

/// A plain exec request for `cmd` with `args` (no env, cwd, user or tty).
pub fn exec_request(cmd: &str, args: &[&str]) -> ExecRequest {
    ExecRequest::new(cmd).args(args.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::legacy_prologue;

    #[test]
    fn cli_client_tells_the_prologue_forms_apart_as_the_sdk_does() {
        let step128 = u32::MAX / 128;
        // Legacy: an offset (0, or at least the length), then a frame length.
        assert!(legacy_prologue(0, 40));
        assert!(legacy_prologue(u32::MAX / 16, 40));
        assert!(legacy_prologue(0, 4 << 20));
        // Current: the canonical ranges, and a legacy relay's bounds form.
        assert!(!legacy_prologue(1, step128));
        assert!(!legacy_prologue(step128 + 1, 2 * step128));
        assert!(!legacy_prologue(0, step128));
        // A length under the header, or a start below a small end.
        assert!(!legacy_prologue(0, 4));
        assert!(!legacy_prologue(1, 40));
    }
}
