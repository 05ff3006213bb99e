//! Wall-clock statistics and process figures: medians, percentiles, RSS,
//! context switches per thread, and a sampler of peak queued bytes and RSS.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use agent_relay::shell::ShellHandle;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `p`th percentile of sorted durations.
pub fn pct(v: &[Duration], p: usize) -> Duration {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn proc_field(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmRSS:").unwrap_or(0)
}

/// Context switches (voluntary + nonvoluntary) per live thread: tid -> (name, n).
pub fn ctx_switches() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let get = |f: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(f))
                .map(|v| v.trim().to_owned())
        };
        let n: u64 = ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
            .iter()
            .filter_map(|f| get(f).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        out.insert(tid, (get("Name:").unwrap_or_default(), n));
    }
    out
}

/// Samples peak `queued_to_clients` and peak RSS while running.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    t: JoinHandle<(u64, u64)>,
}

impl Sampler {
    pub fn start(h: &ShellHandle) -> Sampler {
        let h = h.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = thread::spawn(move || {
            let (mut q, mut rss) = (0u64, 0u64);
            while !s.load(Ordering::Acquire) {
                q = q.max(h.counters().queued_to_clients);
                rss = rss.max(rss_kib());
                thread::sleep(Duration::from_millis(1));
            }
            (q, rss)
        });
        Sampler { stop, t }
    }

    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        self.t.join().expect("sampler")
    }
}
