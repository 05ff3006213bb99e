//! The guest agent model, shared by the relay's guests and the baselines.
//!
//! Wait for `core.exec.request`, emit the scenario's stdout frames for that id
//! (round-robin over open sessions), then `core.exec.exited{0}`; echo each
//! `core.exec.stdin` as `core.exec.stdout`; answer a `core.exec.signal` with
//! `core.exec.exited{137}`.
//! Ring port guest: a VMM thread with its own current-thread tokio runtime,
//! waiting on a dup of the ring's wake fd (registered as a tokio `UnixStream`).
//! Stream port guest: a blocking thread on one end of a std socketpair.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_relay::shell::RingVmm;
use agent_relay::wire::payload::{Data, ExecExited, Ready, build_frame, peek_data};
use agent_relay::wire::{Frame, FrameDecoder, MsgType, peek_envelope};
use bytes::Bytes;

use crate::CHUNK;

/// What the guest emits per exec session.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// stdout frames per session.
    pub frames: u64,
    /// Payload bytes per stdout frame.
    pub payload: usize,
}

impl Workload {
    pub const ECHO: Workload = Workload {
        frames: 0,
        payload: 0,
    };
    fn echo(self) -> bool {
        self.frames == 0
    }
}

struct Session {
    id: u32,
    left: u64,
    frame: Bytes,
}

/// Produces the guest's output byte stream: sessions' stdout frames
/// round-robin, then their exits. Shared by the guest and the baselines.
pub struct Emitter {
    work: Workload,
    sessions: VecDeque<Session>,
    buf: Vec<u8>,
    pos: usize,
}

fn exited(id: u32, code: i32) -> Frame {
    build_frame(MsgType::ExecExited, id, &ExecExited { code })
}

fn ready_frame() -> Frame {
    let ready = Ready {
        boot_time_ns: 1,
        init_time_ns: 2,
        ready_time_ns: 3,
    };
    build_frame(MsgType::Ready, 0, &ready)
}

impl Emitter {
    pub fn new(work: Workload) -> Emitter {
        Emitter {
            work,
            sessions: VecDeque::new(),
            buf: Vec::with_capacity(4 * CHUNK),
            pos: 0,
        }
    }

    pub fn start(&mut self, id: u32) {
        if self.work.echo() {
            return;
        }
        let data = Data {
            data: vec![b'x'; self.work.payload],
        };
        let frame = build_frame(MsgType::ExecStdout, id, &data).into_bytes();
        self.sessions.push_back(Session {
            id,
            left: self.work.frames,
            frame,
        });
    }

    fn kill(&mut self, id: u32) {
        let had = match self.sessions.iter().position(|s| s.id == id) {
            Some(i) => self.sessions.remove(i).is_some(),
            None => self.work.echo(),
        };
        if had {
            self.push_raw(exited(id, 137).as_bytes());
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
                self.buf.extend_from_slice(exited(s.id, 0).as_bytes());
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
    dec: FrameDecoder,
    em: Emitter,
}

impl Guest {
    fn new(work: Workload) -> Guest {
        let mut em = Emitter::new(work);
        em.push_raw(ready_frame().as_bytes());
        Guest {
            dec: FrameDecoder::new(),
            em,
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.dec.extend(bytes);
        while let Ok(Some(f)) = self.dec.next_frame() {
            let Ok(env) = peek_envelope(f.body()) else {
                continue;
            };
            match env.t {
                MsgType::ExecRequest => self.em.start(f.id()),
                MsgType::ExecStdin => {
                    if let Ok(data) = peek_data(&env.payload) {
                        let data = Data {
                            data: data.into_owned(),
                        };
                        let out = build_frame(MsgType::ExecStdout, f.id(), &data);
                        self.em.push_raw(out.as_bytes());
                    }
                }
                MsgType::ExecSignal => self.em.kill(f.id()),
                _ => {}
            }
        }
    }
}

/// The VMM side of a ring port: a current-thread runtime waiting on the wake fd.
pub fn ring_guest(mut vmm: RingVmm, work: Workload, stop: Arc<AtomicBool>) {
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
        let mut g = Guest::new(work);
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
pub fn stream_guest(mut s: UnixStream, work: Workload) {
    let mut g = Guest::new(work);
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
            Ok(n) => g.on_bytes(&rbuf[..n]),
        }
    }
}
