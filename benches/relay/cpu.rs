//! CPU time per thread, in nanoseconds, from the scheduler's own account: the
//! first field of a thread's `schedstat` (`se.sum_exec_runtime`, user and
//! system time together). `/proc/.../stat` counts 10 ms clock ticks, too coarse
//! for runs of a few tens of milliseconds.
//!
//! The kernel brings that sum up to date when the thread is switched out,
//! yields, or at a tick; while it runs, the figure lags by up to one tick
//! (4 ms measured here). So a thread reads its own figure after a yield
//! ([`own_ns`]), and another thread's figure is read from outside once that
//! thread has stopped running ([`settle`]). Never reads `/proc` of another
//! process.

use std::thread;
use std::time::Duration;

const GIB: f64 = (1u64 << 30) as f64;

/// How long the watched threads must stay off the CPU before their figures
/// count as final: longer than the exec.log writer's idle flush delay (20 ms,
/// `FLUSH_IDLE` in src/shell/exec_log/mod.rs), so its last flush is counted.
const QUIET: Duration = Duration::from_millis(25);

fn schedstat_ns(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The calling thread's CPU time so far.
pub fn own_ns() -> u64 {
    // sched_yield brings the caller's own sum up to date.
    thread::yield_now();
    schedstat_ns("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat")
}

/// The calling thread's id.
pub fn own_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("/proc/thread-self")
}

/// This process's threads: (tid, name).
pub fn threads() -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((tid, comm.trim_end().to_owned()))
        })
        .collect()
}

/// CPU time so far of this process's threads `tids`; a thread that has
/// exited counts 0. Exact for threads that are not running.
pub fn threads_ns(tids: &[u32]) -> u64 {
    tids.iter()
        .filter_map(|t| schedstat_ns(&format!("/proc/self/task/{t}/schedstat")))
        .sum()
}

/// Waits until the threads `tids` have not run for [`QUIET`] (at most a
/// second), so that [`threads_ns`] reads their final figures.
pub fn settle(tids: &[u32]) {
    let mut last = threads_ns(tids);
    for _ in 0..40 {
        thread::sleep(QUIET);
        let now = threads_ns(tids);
        if now == last {
            return;
        }
        last = now;
    }
}

/// CPU time spent over bytes carried, summed over runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerGib {
    pub ns: u64,
    pub bytes: u64,
}

impl PerGib {
    pub fn add(&mut self, ns: u64, bytes: u64) {
        self.ns += ns;
        self.bytes += bytes;
    }

    /// Milliseconds of CPU per GiB carried.
    pub fn ms(&self) -> f64 {
        self.ns as f64 / 1e6 / (self.bytes as f64 / GIB)
    }
}

/// What the kernel alone charges any exec.log writer: the CPU per GiB
/// carried of writing a stream's output (`frames` x `payload` bytes) to a new
/// file in a temporary directory, in 64 KiB `write(2)`s as the writer's
/// buffer goes out. The carried bytes are the frames, `frame_len` each.
pub fn file_write_floor(frames: u64, payload: usize, frame_len: usize) -> PerGib {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(dir.path().join("floor.log")).expect("floor file");
    let block = vec![b'x'; 64 << 10];
    let mut left = frames * payload as u64;
    let start = own_ns();
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("floor write");
        left -= n as u64;
    }
    let ns = own_ns() - start;
    let mut floor = PerGib::default();
    floor.add(ns, frames * frame_len as u64);
    floor
}
