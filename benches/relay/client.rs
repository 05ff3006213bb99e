//! SDK clients speaking the raw protocol over std `UnixStream`s, one thread
//! each, and what they measure: transfers (bytes, frames, wall time) and
//! round trips.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use agent_relay::wire::payload::{Data, ExecRequest, build_frame};
use agent_relay::wire::{FLAG_TERMINAL, Frame, FrameDecoder, MsgType, peek_envelope};

use crate::CHUNK;
use crate::relay::Running;

pub struct Client {
    pub s: UnixStream,
    dec: FrameDecoder,
    buf: Vec<u8>,
    offset: u32,
}

impl Client {
    pub fn raw(s: UnixStream) -> Client {
        Client {
            s,
            dec: FrameDecoder::new(),
            buf: vec![0u8; CHUNK],
            offset: 0,
        }
    }

    /// Connects and reads the handshake: id offset, then the ready frame.
    pub fn connect(r: &Running) -> Client {
        let s = UnixStream::connect(&r.sock).expect("connect");
        let mut c = Client::raw(s);
        let mut off = [0u8; 4];
        c.s.read_exact(&mut off).expect("handshake offset");
        c.offset = u32::from_be_bytes(off);
        let ready = c.next_frame().expect("ready frame");
        assert_eq!(
            peek_envelope(ready.body()).expect("ready").t,
            MsgType::Ready
        );
        c
    }

    fn id(&self) -> u32 {
        self.offset + 1
    }

    pub fn exec(&mut self) -> u32 {
        let req = ExecRequest::new("bench");
        let id = self.id();
        let f = build_frame(MsgType::ExecRequest, id, &req);
        self.s.write_all(f.as_bytes()).expect("send request");
        id
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Ok(Some(f)) = self.dec.next_frame() {
                return Some(f);
            }
            match self.s.read(&mut self.buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.dec.extend(&self.buf[..n]),
            }
        }
    }

    /// Reads until `id`'s terminal frame: (frames, bytes) received, or
    /// `None` if the connection ended first.
    pub fn until_exited(&mut self, id: u32) -> Option<(u64, u64)> {
        let (mut frames, mut bytes) = (0u64, 0u64);
        while let Some(f) = self.next_frame() {
            frames += 1;
            bytes += f.len() as u64;
            if f.id() == id && f.flags() & FLAG_TERMINAL != 0 {
                return Some((frames, bytes));
            }
        }
        None
    }
}

/// One client's transfer.
#[derive(Debug, Clone, Copy)]
pub struct Xfer {
    pub frames: u64,
    pub bytes: u64,
    pub start: Instant,
    pub end: Instant,
}

impl Xfer {
    pub fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs()
    }
}

/// Aggregate MB/s and frames/s over a set of concurrent transfers.
pub fn aggregate(x: &[Xfer]) -> (f64, f64) {
    let start = x.iter().map(|x| x.start).min().expect("some");
    let end = x.iter().map(|x| x.end).max().expect("some");
    let secs = (end - start).as_secs_f64();
    let bytes: u64 = x.iter().map(|x| x.bytes).sum();
    let frames: u64 = x.iter().map(|x| x.frames).sum();
    (bytes as f64 / 1e6 / secs, frames as f64 / secs)
}

/// `n` clients stream one exec each through the relay, all at once.
pub fn relay_streams(r: &Running, n: usize) -> Vec<Xfer> {
    let out = try_relay_streams(r, n);
    let lost = out.iter().filter(|x| x.is_none()).count();
    if lost > 0 {
        panic!(
            "{lost} of {n} clients lost their connection before exec.exited; relay counters: {:?}",
            r.handle.counters()
        );
    }
    out.into_iter().flatten().collect()
}

/// As [`relay_streams`]; `None` for a client whose connection ended early.
pub fn try_relay_streams(r: &Running, n: usize) -> Vec<Option<Xfer>> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let mut c = Client::connect(r);
            let b = barrier.clone();
            thread::spawn(move || {
                b.wait();
                let start = Instant::now();
                let id = c.exec();
                let (frames, bytes) = c.until_exited(id)?;
                Some(Xfer {
                    frames,
                    bytes,
                    start,
                    end: Instant::now(),
                })
            })
        })
        .collect();
    barrier.wait();
    threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect()
}

/// Sequential stdin -> stdout round trips on an open exec session: the sorted
/// round-trip times, and the frame bytes carried (both directions).
pub fn ping_pong(c: &mut Client, id: u32, n: usize) -> (Vec<Duration>, u64) {
    let stdin = build_frame(
        MsgType::ExecStdin,
        id,
        &Data {
            data: vec![b'p'; 64],
        },
    );
    let mut out = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let t = Instant::now();
        c.s.write_all(stdin.as_bytes()).expect("send stdin");
        bytes += stdin.len() as u64;
        loop {
            let f = c.next_frame().expect("echo");
            bytes += f.len() as u64;
            if f.id() == id {
                break;
            }
        }
        out.push(t.elapsed());
    }
    out.sort();
    (out, bytes)
}
