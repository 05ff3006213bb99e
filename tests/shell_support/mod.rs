//! Helpers shared by the shell tests: a scripted fake guest over a stream
//! port, a test client that decodes with microsandbox-protocol 0.4.4, and a
//! harness that runs a [`Shell`] on a Unix socket in a tempdir. The frames
//! come from the crate's builder, `agent_relay::testkit::frames`.
#![allow(dead_code)]

pub use agent_relay::testkit::frames::*;
/// The generation the shell tests speak: the first argument of the builders.
pub use agent_relay::wire::LEGACY_VERSION as V1;

use std::path::PathBuf;
use std::time::Duration;

use agent_relay::core::{Config, Counters};
use agent_relay::shell::{GuestPort, Shell, ShellError, ShellHandle};
use microsandbox_protocol::codec::try_decode_from_buf;
use microsandbox_protocol::message::{Message, MessageType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Waits up to `within` until `f` holds for the shell's counters; panics
/// naming `what` and the last counters if it does not.
pub async fn counters_reach(
    handle: &ShellHandle,
    within: Duration,
    what: &str,
    f: impl Fn(&Counters) -> bool,
) -> Counters {
    let mut rx = handle.counters_watch();
    let got = tokio::time::timeout(within, async {
        loop {
            let c = rx.borrow_and_update().clone();
            if f(&c) {
                return c;
            }
            if rx.changed().await.is_err() {
                panic!("the shell stopped while waiting for {what}");
            }
        }
    })
    .await;
    got.unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", handle.counters()))
}

/// Reads messages with the 0.4.4 reference decoder (which does not check
/// `v`, so it reads a current-generation frame of a type 0.4.4 has too).
pub struct Reader<S> {
    pub io: S,
    buf: Vec<u8>,
}

impl<S> Reader<S> {
    pub fn new(io: S) -> Reader<S> {
        Reader {
            io,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> Reader<S> {
    /// Writes these bytes (a frame, or any part of one).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// The next message, or `None` at end of stream.
    pub async fn recv(&mut self) -> Option<Message> {
        tokio::time::timeout(PROMPT, self.recv_forever())
            .await
            .expect("no message in time")
    }

    pub async fn recv_forever(&mut self) -> Option<Message> {
        loop {
            if let Some(msg) = try_decode_from_buf(&mut self.buf).expect("0.4.4 decodes the frame")
            {
                return Some(msg);
            }
            let mut chunk = [0u8; 16 << 10];
            match self.io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads the raw bytes until end of stream (or error).
    pub async fn expect_closed(&mut self) {
        let closed = async {
            let mut chunk = [0u8; 16 << 10];
            loop {
                match self.io.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(PROMPT, closed)
            .await
            .expect("connection was not closed in time");
    }
}

pub type TestClient = Reader<UnixStream>;

/// A connected client and its handshake.
pub struct Connected {
    pub client: TestClient,
    /// The first id of its range.
    pub offset: u32,
    pub ready: Message,
}

/// Connects and reads the 0.4.4 handshake: `[offset]`, then the ready frame.
pub async fn connect(path: &PathBuf) -> Connected {
    connect_with(path, false).await
}

/// Connects and reads the handshake: `[offset]`, or with `bounds`
/// `[start][end]` (the current generation's form), then the ready frame.
pub async fn connect_with(path: &PathBuf, bounds: bool) -> Connected {
    let mut stream = UnixStream::connect(path).await.expect("connect");
    let mut prologue = [0u8; 8];
    let len = if bounds { 8 } else { 4 };
    tokio::time::timeout(PROMPT, stream.read_exact(&mut prologue[..len]))
        .await
        .expect("handshake in time")
        .expect("handshake prologue");
    let offset = [prologue[0], prologue[1], prologue[2], prologue[3]];
    let mut client = Reader::new(stream);
    let ready = client.recv().await.expect("ready frame");
    assert_eq!(ready.t, MessageType::Ready);
    Connected {
        client,
        offset: u32::from_be_bytes(offset),
        ready,
    }
}

/// A shell on a Unix socket in a tempdir, with a fake guest on a duplex.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub guest: Reader<DuplexStream>,
    pub handle: ShellHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ShellError>>>,
}

impl Harness {
    /// Starts a shell whose guest is ready already.
    pub async fn start(config: Config) -> Harness {
        Harness::start_with(config, |s| s).await
    }

    pub async fn start_with(config: Config, f: impl FnOnce(Shell) -> Shell) -> Harness {
        Harness::start_speaking(config, &ready(V1, 11), f).await
    }

    /// Starts a shell whose guest is ready with `ready` (a frame of either
    /// generation).
    pub async fn start_speaking(
        config: Config,
        ready: &[u8],
        f: impl FnOnce(Shell) -> Shell,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("run").join("agent.sock");
        let (port, guest) = tokio::io::duplex(1 << 20);
        let shell = f(Shell::new(&sock, GuestPort::stream(port)).config(config));
        let handle = shell.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(shell.run(stopped));
        let mut guest = Reader::new(guest);
        guest.send(ready).await;
        handle.wait_ready(PROMPT).await.expect("ready");
        Harness {
            dir,
            sock,
            guest,
            handle,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn counters(&self) -> Counters {
        self.handle.counters()
    }

    /// Waits until `f(counters)` holds.
    pub async fn wait_counters(&self, what: &str, f: impl Fn(&Counters) -> bool) -> Counters {
        counters_reach(&self.handle, PROMPT, what, f).await
    }

    /// Takes the task running the shell (to abort it, say); `stop` then
    /// does nothing.
    pub fn take_task(&mut self) -> JoinHandle<Result<(), ShellError>> {
        self.task.take().expect("the shell task")
    }

    /// Stops the shell and waits for it.
    pub async fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PROMPT, task)
                .await
                .expect("shell stops in time")
                .expect("shell task")
                .expect("shell ran");
        }
    }
}
