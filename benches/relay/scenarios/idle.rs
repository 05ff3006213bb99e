//! Scenario 7: an idle relay with 16 connected clients for 2 s: wakeups per
//! second (context switches of every thread but this one), the relay thread's
//! CPU meanwhile, and RSS.

use std::thread;
use std::time::Duration;

use agent_relay::core::Config;

use crate::client::Client;
use crate::cpu;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::{ctx_switches, rss_kib};
use crate::relay::{Port, start};
use crate::report::{Row, row};

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    if !gens.legacy {
        return;
    }
    println!("[7] {}", Port::Ring.describe());
    let rss0 = rss_kib();
    let r = start(
        Port::Ring,
        Gen::Legacy,
        Workload::Echo,
        Config::default(),
        false,
    );
    let clients: Vec<Client> = (0..16).map(|_| Client::connect(&r)).collect();
    thread::sleep(Duration::from_millis(200));
    let me = cpu::own_tid();
    let cpu0 = r.cpu();
    let before = ctx_switches();
    let secs = 2.0;
    thread::sleep(Duration::from_secs_f64(secs));
    let after = ctx_switches();
    let rss = rss_kib();
    let relay_us = r.cpu().since(cpu0).relay as f64 / 1e3;
    let mut total = 0u64;
    let mut who = Vec::new();
    for (tid, (name, n)) in &after {
        if *tid == me {
            continue;
        }
        if let Some((_, m)) = before.get(tid) {
            let d = n.saturating_sub(*m);
            total += d;
            if d > 0 {
                who.push(format!("{name}:{d}"));
            }
        }
    }
    let live = r.handle.counters().live_clients;
    drop(clients);
    drop(r);
    let per_s = total as f64 / secs;
    if !who.is_empty() {
        println!("    idle wakeups by thread: {}", who.join(", "));
    }
    rows.push(row(
        "7 idle, 16 clients, 2 s: wakeups",
        format!("{per_s:.1} /s"),
        format!("{live} clients live"),
        "-".into(),
        "no periodic wakeups (< 1/s)",
        Some(per_s < 1.0),
    ));
    rows.push(row(
        "7 idle: relay thread CPU in 2 s",
        format!("{relay_us:.0} us"),
        "-".into(),
        "-".into(),
        "-",
        None,
    ));
    rows.push(row(
        "7 idle: RSS (process, and delta for relay + 16 clients)",
        format!(
            "{:.1} MiB (+{:.1} MiB)",
            rss as f64 / 1024.0,
            rss.saturating_sub(rss0) as f64 / 1024.0
        ),
        "-".into(),
        "-".into(),
        "-",
        None,
    ));
}
