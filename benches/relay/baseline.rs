//! The baselines, measured in the same run as the relay: the same frame bytes
//! in the same chunks through plain `UnixStream::pair()`s, no relay in between.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::CHUNK;
use crate::client::{Client, Xfer, ping_pong};
use crate::guest::{Emitter, Workload, stream_guest};

/// The baseline: `n` socketpairs, each with a writer thread emitting the same
/// frame stream in the same chunks and a reader thread decoding it.
pub fn pair_streams(work: Workload, n: usize) -> Vec<Xfer> {
    let barrier = Arc::new(Barrier::new(2 * n + 1));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..n {
        let (mut w, rd) = UnixStream::pair().expect("pair");
        let b = barrier.clone();
        writers.push(thread::spawn(move || {
            let mut em = Emitter::new(work);
            em.start(1);
            b.wait();
            loop {
                em.fill(CHUNK);
                let p = em.pending();
                if p.is_empty() {
                    return;
                }
                let n = w.write(&p[..p.len().min(CHUNK)]).expect("write");
                em.consume(n);
            }
        }));
        let b = barrier.clone();
        readers.push(thread::spawn(move || {
            let mut c = Client::raw(rd);
            b.wait();
            let start = Instant::now();
            let (frames, bytes) = c.until_exited(1).expect("baseline stream");
            Xfer {
                frames,
                bytes,
                start,
                end: Instant::now(),
            }
        }));
    }
    barrier.wait();
    for w in writers {
        w.join().expect("writer");
    }
    readers
        .into_iter()
        .map(|t| t.join().expect("reader"))
        .collect()
}

/// Scenario 4's baseline: the echo guest on a socketpair, the calling thread
/// as its client. `warm` unmeasured round trips, then `n`: their sorted times.
pub fn echo_round_trips(warm: usize, n: usize) -> Vec<Duration> {
    let (a, b) = UnixStream::pair().expect("pair");
    let g = thread::spawn(move || stream_guest(b, Workload::ECHO));
    let mut c = Client::raw(a);
    c.next_frame().expect("ready");
    ping_pong(&mut c, 1, warm);
    let times = ping_pong(&mut c, 1, n);
    drop(c);
    g.join().expect("echo guest");
    times
}
