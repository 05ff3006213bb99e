//! The baselines, measured in the same run as the relay: the same frame bytes
//! in the same chunks through plain `UnixStream::pair()`s, no relay in between.
//! A pair's writer and reader thread together are one socket hop: each byte
//! written once and read once, as a relay does for every byte it carries.
//! The baselines speak the legacy generation; a current-generation frame of
//! the same payload has the same length (its `v` is one CBOR byte either
//! way), so one hop is the yardstick of both.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::CHUNK;
use crate::client::{Client, Xfer, ping_pong};
use crate::cpu::{self, PerGib};
use crate::generation::Gen;
use crate::guest::{Emitter, Workload, stream_guest};

/// One run of the baseline: the readers' transfers, and the CPU time of all
/// its writer and reader threads.
pub struct Hops {
    pub xfers: Vec<Xfer>,
    pub cpu_ns: u64,
}

impl Hops {
    pub fn bytes(&self) -> u64 {
        self.xfers.iter().map(|x| x.bytes).sum()
    }
}

/// `n` socketpairs, each with a writer thread emitting the frame stream in
/// the guest's chunks and a reader thread decoding it as a client does.
pub fn pair_streams(work: Workload, n: usize) -> Hops {
    let barrier = Arc::new(Barrier::new(2 * n + 1));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..n {
        let (mut w, rd) = UnixStream::pair().expect("pair");
        let b = barrier.clone();
        writers.push(thread::spawn(move || {
            let mut em = Emitter::new(work, Gen::Legacy.v());
            em.start(1);
            b.wait();
            let cpu0 = cpu::own_ns();
            loop {
                em.fill(CHUNK);
                let p = em.pending();
                if p.is_empty() {
                    return cpu::own_ns() - cpu0;
                }
                let n = w.write(&p[..p.len().min(CHUNK)]).expect("write");
                em.consume(n);
            }
        }));
        let b = barrier.clone();
        readers.push(thread::spawn(move || {
            let mut c = Client::raw(rd);
            b.wait();
            let cpu0 = cpu::own_ns();
            let start = Instant::now();
            let (frames, bytes) = c.until_exited(1).expect("baseline stream");
            let end = Instant::now();
            let x = Xfer {
                frames,
                bytes,
                start,
                end,
            };
            (x, cpu::own_ns() - cpu0)
        }));
    }
    barrier.wait();
    let mut cpu_ns: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    let mut xfers = Vec::new();
    for r in readers {
        let (x, ns) = r.join().expect("reader");
        xfers.push(x);
        cpu_ns += ns;
    }
    Hops { xfers, cpu_ns }
}

/// Scenario 4's baseline: the echo guest on a socketpair, the calling thread
/// as its client. `warm` unmeasured round trips, then `n`: their sorted times,
/// and the CPU time of both threads over the bytes carried both ways.
pub fn echo_round_trips(warm: usize, n: usize) -> (Vec<Duration>, PerGib) {
    let (a, b) = UnixStream::pair().expect("pair");
    let (tid_tx, tid_rx) = mpsc::channel();
    let g = thread::spawn(move || {
        tid_tx.send(cpu::own_tid()).expect("guest tid");
        stream_guest(b, Workload::Echo, Gen::Legacy);
    });
    let guest = [tid_rx.recv().expect("guest tid")];
    let mut c = Client::raw(a);
    c.next_frame().expect("ready");
    ping_pong(&mut c, 1, warm);
    cpu::settle(&guest);
    let (own0, guest0) = (cpu::own_ns(), cpu::threads_ns(&guest));
    let (times, bytes) = ping_pong(&mut c, 1, n);
    let own = cpu::own_ns() - own0;
    cpu::settle(&guest);
    let guest_ns = cpu::threads_ns(&guest) - guest0;
    drop(c);
    g.join().expect("echo guest");
    let mut per = PerGib::default();
    per.add(own + guest_ns, bytes);
    (times, per)
}

/// Scenario 8's baseline, one run: the calling thread as the client writes
/// `frames` stdin frames of `payload` bytes (then their end) into a
/// socketpair, in the chunks it writes to the relay, and the sink guest on
/// the other end decodes them as it does behind the relay; both threads'
/// CPU time from the exec request to the exit.
pub fn pair_stdin(frames: u64, payload: usize) -> Hops {
    let (a, b) = UnixStream::pair().expect("pair");
    let (tid_tx, tid_rx) = mpsc::channel();
    let g = thread::spawn(move || {
        tid_tx.send(cpu::own_tid()).expect("guest tid");
        stream_guest(b, Workload::Sink, Gen::Legacy);
    });
    let guest = [tid_rx.recv().expect("guest tid")];
    let mut c = Client::raw(a);
    c.next_frame().expect("ready");
    cpu::settle(&guest);
    let (own0, guest0) = (cpu::own_ns(), cpu::threads_ns(&guest));
    let start = Instant::now();
    let id = c.exec();
    let (frames, bytes) = c.send_input(id, frames, payload);
    c.stdout_until_exited(id).expect("baseline stdin");
    let end = Instant::now();
    let own = cpu::own_ns() - own0;
    cpu::settle(&guest);
    let guest_ns = cpu::threads_ns(&guest) - guest0;
    drop(c);
    g.join().expect("sink guest");
    let x = Xfer {
        frames,
        bytes,
        start,
        end,
    };
    Hops {
        xfers: vec![x],
        cpu_ns: own + guest_ns,
    }
}
