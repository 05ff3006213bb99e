//! Scenario 5: seven clients stream while an eighth stalls: their share of
//! the throughput they get alone, and the relay's memory meanwhile.

use std::thread;
use std::time::Duration;

use agent_relay::core::Config;

use crate::baseline::pair_streams;
use crate::client::{Client, Xfer, aggregate, try_relay_streams};
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::{Sampler, median, rss_kib};
use crate::relay::{Port, start};
use crate::report::{Row, row};
use crate::{MIB, REPS};

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    if !gens.legacy {
        return;
    }
    let work = Workload::Stream {
        frames: 16 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[5] {}", Port::Ring.describe());
    let config = Config::default();
    let r = start(Port::Ring, Gen::Legacy, work, config.clone(), false);
    let (mut alone, mut stalled) = (Vec::new(), Vec::new());
    let (mut peak_q, mut peak_rss_delta) = (0u64, 0u64);
    let mut closes = 0;
    let mut lost = 0;
    let mut relay = PerGib::default();
    let mut done = |x: Vec<Option<Xfer>>| -> f64 {
        lost += x.iter().filter(|x| x.is_none()).count();
        let x: Vec<Xfer> = x.into_iter().flatten().collect();
        if x.is_empty() {
            0.0
        } else {
            aggregate(&x).0 * 7.0 / x.len() as f64
        }
    };
    for _ in 0..REPS {
        let before = r.cpu();
        let x = try_relay_streams(&r, 7);
        let cpu = r.cpu().since(before);
        relay.add(cpu.relay, x.iter().flatten().map(|x| x.bytes).sum());
        alone.push(done(x));
        thread::sleep(Duration::from_millis(50));
        let rss0 = rss_kib();
        let closes0 = r.handle.counters().slow_consumer_closes;
        let mut staller = Client::connect(&r);
        let sampler = Sampler::start(&r.handle);
        staller.exec();
        let x = try_relay_streams(&r, 7);
        let (q, rss) = sampler.finish();
        stalled.push(done(x));
        peak_q = peak_q.max(q);
        peak_rss_delta = peak_rss_delta.max(rss.saturating_sub(rss0) * 1024);
        closes += r.handle.counters().slow_consumer_closes - closes0;
        drop(staller);
        // Let the killed session's exit free the slot before the next round.
        thread::sleep(Duration::from_millis(50));
    }
    drop(r);
    let mut hop = PerGib::default();
    for _ in 0..REPS {
        let h = pair_streams(work, 7);
        hop.add(h.cpu_ns, h.bytes());
    }
    let (alone, stalled) = (median(alone), median(stalled));
    let share = stalled / alone;
    rows.push(row(
        "5 fairness: 7 clients' share with a staller",
        format!("{stalled:.0} MB/s"),
        format!("{alone:.0} MB/s (7 alone)"),
        format!("{share:.2}"),
        ">= 0.9 share",
        Some(share >= 0.9),
    ));
    let mib = |b: u64| b as f64 / MIB as f64;
    let within = peak_q <= config.global_cap as u64
        && peak_q <= (config.client_hard_cap + 7 * config.client_soft_budget) as u64
        && peak_rss_delta <= config.global_cap as u64;
    rows.push(row(
        "5 fairness: relay memory (peak queued / RSS delta)",
        format!("{:.1} MiB / {:.1} MiB", mib(peak_q), mib(peak_rss_delta)),
        format!(
            "hard cap {:.0} MiB, global {:.0} MiB",
            mib(config.client_hard_cap as u64),
            mib(config.global_cap as u64)
        ),
        format!("slow-consumer closes {closes} in {REPS} runs (readers lost {lost})"),
        "within budgets",
        Some(within),
    ));
    rows.push(row(
        "5 CPU per GiB: relay thread, 7 clients alone",
        format!("{:.0} ms/GiB", relay.ms()),
        format!("{:.0} ms/GiB (1 hop, 7 pairs)", hop.ms()),
        format!("{:.2}x", relay.ms() / hop.ms()),
        "-",
        None,
    ));
}
