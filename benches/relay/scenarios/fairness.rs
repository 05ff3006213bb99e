//! Scenario 5: seven clients stream while an eighth stalls (rule
//! `backpressure_bounded_wait`): the stalled client holds the others up for
//! one grace period at most, then is closed; no reader loses a byte; the
//! relay's memory stays within its budgets meanwhile. The grace is 1 s here
//! (5 s by default), so the wait shows without the run taking long.

use std::thread;
use std::time::Duration;

use agent_relay::core::Config;

use crate::baseline::pair_streams;
use crate::client::{Client, Xfer, try_relay_streams};
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::{Sampler, median, rss_kib};
use crate::relay::{Port, start};
use crate::report::{Row, row};
use crate::{MIB, REPS};

/// The grace period this scenario runs with.
const GRACE_MS: u64 = 1_000;

/// Seconds from the first start to the last end of a round's transfers;
/// `None` if a reader lost its connection.
fn span(x: &[Option<Xfer>]) -> Option<f64> {
    let x: Vec<&Xfer> = x.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let start = x.iter().map(|x| x.start).min()?;
    let end = x.iter().map(|x| x.end).max()?;
    Some((end - start).as_secs_f64())
}

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    if !gens.legacy {
        return;
    }
    let work = Workload::Stream {
        frames: 16 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[5] {}", Port::Ring.describe());
    let config = Config {
        grace: GRACE_MS,
        ..Config::default()
    };
    let r = start(Port::Ring, Gen::Legacy, work, config.clone(), false);
    let (mut alone, mut stalled) = (Vec::new(), Vec::new());
    let (mut peak_q, mut peak_rss_delta) = (0u64, 0u64);
    let mut closes = 0;
    let mut lost = 0;
    let mut relay = PerGib::default();
    for _ in 0..REPS {
        let before = r.cpu();
        let x = try_relay_streams(&r, 7);
        let cpu = r.cpu().since(before);
        relay.add(cpu.relay, x.iter().flatten().map(|x| x.bytes).sum());
        lost += x.iter().filter(|x| x.is_none()).count();
        alone.extend(span(&x));
        thread::sleep(Duration::from_millis(50));
        let rss0 = rss_kib();
        let closes0 = r.handle.counters().slow_consumer_closes;
        let mut staller = Client::connect(&r);
        let sampler = Sampler::start(&r.handle);
        staller.exec();
        let x = try_relay_streams(&r, 7);
        let (q, rss) = sampler.finish();
        lost += x.iter().filter(|x| x.is_none()).count();
        stalled.extend(span(&x));
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
    let held = stalled - alone;
    let grace = GRACE_MS as f64 / 1e3;
    rows.push(row(
        "5 bounded wait: 7 readers' time held up by a staller",
        format!("{held:.2} s ({stalled:.2} s with it)"),
        format!("{alone:.2} s (7 alone); grace {grace:.1} s"),
        format!("{:.2} of the grace", held / grace),
        "<= 1 grace + 0.5 s",
        Some(held <= grace + 0.5),
    ));
    rows.push(row(
        "5 bounded wait: stallers closed, readers' bytes lost",
        format!("{closes} closed, {lost} readers cut"),
        format!("{REPS} stallers"),
        "-".to_owned(),
        "all closed, none cut",
        Some(closes == REPS as u64 && lost == 0),
    ));
    let mib = |b: u64| b as f64 / MIB as f64;
    // Backpressure: the staller holds its budget plus one read and one
    // frame at most; the readers keep their queues under their budgets.
    let bound = 8 * config.client_soft_budget + (4 << 20) + 4 + (64 << 10);
    let within = peak_q <= bound as u64 && peak_rss_delta <= config.global_cap as u64;
    rows.push(row(
        "5 fairness: relay memory (peak queued / RSS delta)",
        format!("{:.1} MiB / {:.1} MiB", mib(peak_q), mib(peak_rss_delta)),
        format!("{:.1} MiB: 8 budgets + a read + a frame", mib(bound as u64)),
        format!("global cap {:.0} MiB", mib(config.global_cap as u64)),
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
