//! The guest agent model, shared by the relay's guests and the baselines.
//!
//! Wait for `core.exec.request`, then per [`Workload`]: emit the scenario's
//! stdout frames for that id (round-robin over open sessions), then
//! `core.exec.exited{0}`; or echo each `core.exec.stdin` as
//! `core.exec.stdout`; or consume stdin and, at its end (an empty
//! `core.exec.stdin`), report the bytes received as one stdout frame and exit
//! 0. A `core.exec.signal` is answered with `core.exec.exited{137}`.
//!
//! Either generation ([`Gen`]): a legacy guest starts with a `v = 1` ready.
//! A current one sends `core.init.resolved`, and on the relay's
//! `core.init.ack` a `v = 10` ready advertising input credit (barrier 2, no
//! exec limits); every frame it emits carries `v = 10`, it grants credit
//! after each batch of reads for what it read (`generation.rs`), and a
//! disconnect notice ends that range's streaming sessions.
//!
//! Ring port guest: a VMM thread with its own current-thread tokio runtime,
//! waiting on a dup of the ring's wake fd (registered as a tokio `UnixStream`).
//! Stream port guest: a blocking thread on one end of a std socketpair.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_relay::shell::RingVmm;
use agent_relay::testkit::frames;
use agent_relay::wire::payload::{RelayClientDisconnected, decode_payload, peek_data};
use agent_relay::wire::{FrameDecoder, MsgType, peek_envelope};
use bytes::Bytes;

use crate::CHUNK;
use crate::generation::{Credit, Gen};

/// What the guest does with exec sessions.
#[derive(Debug, Clone, Copy)]
pub enum Workload {
    /// Each session streams `frames` stdout frames of `payload` bytes, then
    /// exits 0; stdin is echoed.
    Stream { frames: u64, payload: usize },
    /// Sessions echo their stdin as stdout until killed.
    Echo,
    /// Sessions consume their stdin; at its end they report how many bytes
    /// came (one stdout frame, in decimal) and exit 0.
    Sink,
}

struct Session {
    id: u32,
    left: u64,
    frame: Bytes,
    /// What ends the stream.
    last: Bytes,
}

/// Produces a frame byte stream: sessions' frames round-robin, then their
/// terminal frames. The guest's output (and the baselines' writers), or a
/// client's stdin ([`Emitter::input`]).
pub struct Emitter {
    work: Workload,
    v: u8,
    sessions: VecDeque<Session>,
    buf: Vec<u8>,
    pos: usize,
}

/// The guest's `core.ready`: a current one advertises input credit
/// (barrier 2) and no exec limits.
fn ready_frame(g: Gen) -> Bytes {
    match g {
        Gen::Legacy => frames::ready(g.v(), 1),
        Gen::Current => frames::ready_current(g.v(), 1, Some(2), None),
    }
}

impl Emitter {
    pub fn new(work: Workload, v: u8) -> Emitter {
        Emitter {
            work,
            v,
            sessions: VecDeque::new(),
            buf: Vec::with_capacity(4 * CHUNK),
            pos: 0,
        }
    }

    /// A client's stdin for session `id`: `frames` `core.exec.stdin` frames
    /// of `payload` bytes, then an empty one (the end of input).
    pub fn input(v: u8, id: u32, frames: u64, payload: usize) -> Emitter {
        let mut em = Emitter::new(Workload::Sink, v);
        em.sessions.push_back(Session {
            id,
            left: frames,
            frame: frames::stdin(v, id, &vec![b'i'; payload]),
            last: frames::stdin(v, id, &[]),
        });
        em
    }

    pub fn start(&mut self, id: u32) {
        let Workload::Stream { frames, payload } = self.work else {
            return;
        };
        self.sessions.push_back(Session {
            id,
            left: frames,
            frame: frames::stdout(self.v, id, &vec![b'x'; payload]),
            last: frames::exited(self.v, id, 0),
        });
    }

    fn kill(&mut self, id: u32) {
        let had = match self.sessions.iter().position(|s| s.id == id) {
            Some(i) => self.sessions.remove(i).is_some(),
            None => !matches!(self.work, Workload::Stream { .. }),
        };
        if had {
            self.push_raw(&frames::exited(self.v, id, 137));
        }
    }

    /// The range `[start, end)` is gone: its streaming sessions end as
    /// killed.
    fn kill_range(&mut self, start: u32, end: u32) {
        let gone: Vec<u32> = self
            .sessions
            .iter()
            .map(|s| s.id)
            .filter(|id| (start..end).contains(id))
            .collect();
        for id in gone {
            self.kill(id);
        }
    }

    fn push_raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Tops the pending output up to at least `want` bytes, if sessions have more.
    pub fn fill(&mut self, want: usize) {
        while self.buf.len() - self.pos < want {
            let Some(mut s) = self.sessions.pop_front() else {
                return;
            };
            if s.left > 0 {
                self.buf.extend_from_slice(&s.frame);
                s.left -= 1;
                self.sessions.push_back(s);
            } else {
                self.buf.extend_from_slice(&s.last);
            }
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4 * CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// The guest agent model: decodes what the relay forwards, feeds the emitter.
struct Guest {
    g: Gen,
    dec: FrameDecoder,
    em: Emitter,
    /// Current generation, once its ready is out.
    credit: Option<Credit>,
    /// Sink sessions: stdin bytes received so far.
    sunk: HashMap<u32, u64>,
}

impl Guest {
    fn new(work: Workload, g: Gen) -> Guest {
        let mut em = Emitter::new(work, g.v());
        match g {
            Gen::Legacy => em.push_raw(&ready_frame(g)),
            Gen::Current => em.push_raw(&frames::init_resolved(g.v())),
        }
        Guest {
            g,
            dec: FrameDecoder::new(),
            em,
            credit: None,
            sunk: HashMap::new(),
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.dec.extend(bytes);
        while let Ok(Some(f)) = self.dec.next_frame() {
            let env = peek_envelope(f.body());
            if let Some(c) = &mut self.credit {
                c.consumed(&f, env.as_ref().ok().map(|e| e.t));
            }
            let Ok(env) = env else {
                continue;
            };
            match env.t {
                MsgType::ExecRequest => self.em.start(f.id()),
                MsgType::ExecStdin => {
                    let Ok(data) = peek_data(&env.payload) else {
                        continue;
                    };
                    if let Workload::Sink = self.em.work {
                        self.sink(f.id(), data.len());
                    } else {
                        let out = frames::stdout(self.g.v(), f.id(), &data);
                        self.em.push_raw(&out);
                    }
                }
                MsgType::ExecSignal => self.em.kill(f.id()),
                MsgType::InitAck if self.g == Gen::Current && self.credit.is_none() => {
                    self.em.push_raw(&ready_frame(self.g));
                    self.credit = Some(Credit::default());
                }
                MsgType::RelayClientDisconnected => {
                    if let Ok(r) = decode_payload::<RelayClientDisconnected>(&env.payload) {
                        self.em.kill_range(r.id_start, r.id_end_exclusive);
                    }
                }
                _ => {}
            }
        }
    }

    /// `n` bytes of a sink session's stdin; none is its end.
    fn sink(&mut self, id: u32, n: usize) {
        if n > 0 {
            *self.sunk.entry(id).or_default() += n as u64;
            return;
        }
        let total = self.sunk.remove(&id).unwrap_or(0);
        let v = self.g.v();
        let report = frames::stdout(v, id, total.to_string().as_bytes());
        self.em.push_raw(&report);
        self.em.push_raw(&frames::exited(v, id, 0));
    }

    /// After a batch of reads: a current guest grants back what it consumed.
    fn grant(&mut self) {
        if let Some(f) = self.credit.as_mut().and_then(Credit::grant) {
            self.em.push_raw(&f);
        }
    }
}

/// The VMM side of a ring port: a current-thread runtime waiting on the wake fd.
pub fn ring_guest(mut vmm: RingVmm, work: Workload, g: Gen, stop: Arc<AtomicBool>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("guest runtime");
    rt.block_on(async move {
        // A dup of the wake fd (a socket), registered with this runtime's
        // reactor through tokio's safe UnixStream (AsyncFd's constructors are
        // unsafe in this tokio). Draining it with try_read is `clear_wake`.
        let fd = vmm.as_fd().try_clone_to_owned().expect("dup wake fd");
        let wake = UnixStream::from(fd);
        wake.set_nonblocking(true).expect("nonblocking");
        let wake = tokio::net::UnixStream::from_std(wake).expect("register wake fd");
        let mut scratch = [0u8; 64];
        let mut g = Guest::new(work, g);
        let mut rbuf = vec![0u8; CHUNK];
        loop {
            let mut progressed = false;
            loop {
                let n = vmm.read(&mut rbuf);
                if n == 0 {
                    break;
                }
                progressed = true;
                g.on_bytes(&rbuf[..n]);
            }
            g.grant();
            loop {
                g.em.fill(CHUNK);
                let p = g.em.pending();
                if p.is_empty() {
                    break;
                }
                let n = vmm.write(&p[..p.len().min(CHUNK)]);
                if n == 0 {
                    break;
                }
                g.em.consume(n);
                progressed = true;
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
            if !progressed {
                wake.readable().await.expect("wake fd");
                loop {
                    match wake.try_read(&mut scratch) {
                        Ok(0) => return, // the relay's end is gone
                        Ok(_) => {}
                        Err(_) => break, // WouldBlock: drained, readiness cleared
                    }
                }
            }
        }
    });
}

/// A guest on a blocking byte stream (the stream port, and the baselines).
pub fn stream_guest(mut s: UnixStream, work: Workload, g: Gen) {
    let mut g = Guest::new(work, g);
    let mut rbuf = vec![0u8; CHUNK];
    loop {
        loop {
            g.em.fill(CHUNK);
            let p = g.em.pending();
            if p.is_empty() {
                break;
            }
            let n = p.len().min(CHUNK);
            if s.write_all(&p[..n]).is_err() {
                return;
            }
            g.em.consume(n);
        }
        match s.read(&mut rbuf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                g.on_bytes(&rbuf[..n]);
                g.grant();
            }
        }
    }
}
