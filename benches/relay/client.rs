//! SDK clients speaking the raw protocol over std `UnixStream`s, one thread
//! each, and what they measure: transfers (bytes, frames, wall time) and
//! round trips.
//!
//! A client tells the prologue's form apart as the 0.7.13 SDK does, from its
//! first two words: legacy iff `5 <= w2 <= 4 MiB && (w1 == 0 || w1 >= w2)`
//! (`w1` the id offset, `w2` already the ready frame's length; ids from
//! `w1 + 1`, envelopes `v = 1`); otherwise `[id_start][id_end_exclusive]`
//! (its canonical range; ids from `max(id_start, 1)`, envelopes `v = 10`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use agent_relay::testkit::frames;
use agent_relay::wire::payload::peek_data;
use agent_relay::wire::{
    CURRENT_VERSION, FLAG_TERMINAL, Frame, FrameDecoder, LEGACY_VERSION, MAX_FRAME_LEN,
    MIN_FRAME_LEN, MsgType, peek_envelope,
};

use crate::CHUNK;
use crate::guest::Emitter;
use crate::relay::Running;

pub struct Client {
    pub s: UnixStream,
    dec: FrameDecoder,
    buf: Vec<u8>,
    /// The first id of its range.
    first: u32,
    /// The `v` of its envelopes.
    pub v: u8,
}

impl Client {
    pub fn raw(s: UnixStream) -> Client {
        Client {
            s,
            dec: FrameDecoder::new(),
            buf: vec![0u8; CHUNK],
            first: 1,
            v: LEGACY_VERSION,
        }
    }

    /// Connects and reads the handshake, either form (see the module's
    /// words), then the ready frame; checks that the relay speaks `r`'s
    /// generation.
    pub fn connect(r: &Running) -> Client {
        let s = UnixStream::connect(&r.sock).expect("connect");
        let mut c = Client::raw(s);
        let mut words = [0u8; 8];
        c.s.read_exact(&mut words).expect("handshake");
        let w1 = u32::from_be_bytes([words[0], words[1], words[2], words[3]]);
        let w2 = u32::from_be_bytes([words[4], words[5], words[6], words[7]]);
        if (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&w2) && (w1 == 0 || w1 >= w2) {
            c.dec.extend(&words[4..]);
            c.first = w1 + 1;
        } else {
            assert!(w1 < w2, "a prologue naming no ids: [{w1}, {w2})");
            c.first = w1.max(1);
            c.v = CURRENT_VERSION;
        }
        assert_eq!(c.v, r.generation.v(), "the prologue's generation");
        let ready = c.next_frame().expect("ready frame");
        assert_eq!(
            peek_envelope(ready.body()).expect("ready").t,
            MsgType::Ready
        );
        c
    }

    pub fn exec(&mut self) -> u32 {
        let id = self.first;
        let f = frames::exec_request(self.v, id, false, 0);
        self.s.write_all(&f).expect("send request");
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

    /// Writes `id`'s stdin: `frames` frames of `payload` bytes, then its end,
    /// in the guest's chunks. Returns (frames, bytes) written.
    pub fn send_input(&mut self, id: u32, frames: u64, payload: usize) -> (u64, u64) {
        let mut em = Emitter::input(self.v, id, frames, payload);
        let mut bytes = 0;
        loop {
            em.fill(CHUNK);
            let p = em.pending();
            if p.is_empty() {
                return (frames + 1, bytes);
            }
            let n = self.s.write(&p[..p.len().min(CHUNK)]).expect("send stdin");
            em.consume(n);
            bytes += n as u64;
        }
    }

    /// Reads until `id`'s terminal frame: the stdout bytes it got, or `None`
    /// if the connection ended first.
    pub fn stdout_until_exited(&mut self, id: u32) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(f) = self.next_frame() {
            if f.id() != id {
                continue;
            }
            if f.flags() & FLAG_TERMINAL != 0 {
                return Some(out);
            }
            let env = peek_envelope(f.body()).expect("guest frame");
            if env.t == MsgType::ExecStdout {
                out.extend_from_slice(&peek_data(&env.payload).expect("stdout"));
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

/// One client writes `frames` stdin frames of `payload` bytes to a sink
/// session through the relay, then its end, and waits for the guest's count
/// and the exit: the transfer (stdin frames and bytes written, from the exec
/// request to the exit).
pub fn relay_stdin(r: &Running, frames: u64, payload: usize) -> Xfer {
    let mut c = Client::connect(r);
    let start = Instant::now();
    let id = c.exec();
    let (frames, bytes) = c.send_input(id, frames, payload);
    let count = c.stdout_until_exited(id).unwrap_or_else(|| {
        panic!(
            "the client lost its connection before exec.exited; relay counters: {:?}",
            r.handle.counters()
        )
    });
    let end = Instant::now();
    let want = ((frames - 1) * payload as u64).to_string();
    assert_eq!(count, want.as_bytes(), "stdin bytes the guest got");
    Xfer {
        frames,
        bytes,
        start,
        end,
    }
}

/// Sequential stdin -> stdout round trips on an open exec session: the sorted
/// round-trip times, and the frame bytes carried (both directions).
pub fn ping_pong(c: &mut Client, id: u32, n: usize) -> (Vec<Duration>, u64) {
    let stdin = frames::stdin(c.v, id, &[b'p'; 64]);
    let mut out = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let t = Instant::now();
        c.s.write_all(&stdin).expect("send stdin");
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
