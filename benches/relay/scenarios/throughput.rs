//! Scenario 1: one client reads 64 MiB of 16 KiB stdout frames, with the
//! exec.log tap off and on; and how often the default budgets close a reader
//! running at full speed as a slow consumer. The current generation: the
//! same stream, tap off, beside the legacy figures.

use std::thread;
use std::time::Duration;

use agent_relay::core::Config;

use super::{CpuTargets, Rate, TapRuns, cpu_rows, current_rows, streams, tap_cost_row, tap_off_on};
use crate::baseline::pair_streams;
use crate::client::{Xfer, try_relay_streams};
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::median;
use crate::relay::{Port, start};
use crate::report::{Row, row};
use crate::{MIB, REPS};

/// Runs `reps` single-client streams with the default budgets; returns how
/// many runs lost the client as a slow consumer.
fn default_budget_closes(work: Workload, clients: usize, reps: usize) -> (usize, u64) {
    let r = start(Port::Ring, Gen::Legacy, work, Config::default(), false);
    let mut lost = 0;
    for _ in 0..reps {
        lost += try_relay_streams(&r, clients)
            .iter()
            .filter(|x| x.is_none())
            .count();
        // A closed client's killed session must end before its slot frees.
        thread::sleep(Duration::from_millis(20));
    }
    let closes = r.handle.counters().slow_consumer_closes;
    (lost, closes)
}

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    let work = Workload::Stream {
        frames: 64 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[1] {}", Port::Ring.describe());
    let legacy = gens.legacy.then(|| tap_off_on(work, 1));
    let current = gens.current.then(|| streams(Gen::Current, work, 1, false));
    pair_streams(work, 1);
    let mut hop = PerGib::default();
    let mut base = Vec::new();
    for _ in 0..REPS {
        let h = pair_streams(work, 1);
        hop.add(h.cpu_ns, h.bytes());
        base.push(h.xfers[0].mbps());
    }
    let base = median(base);
    if let Some(runs) = &legacy {
        legacy_rows(rows, work, runs, (base, hop));
    }
    if let Some(cur) = &current {
        let rate = Rate {
            of: Xfer::mbps,
            show: |r| format!("{r:.0} MB/s"),
        };
        let what = "guest->client 64 MiB, 16 KiB frames (hard cap raised)";
        let legacy = legacy.as_ref().map(|[off, _]| off);
        current_rows(rows, "1", what, cur, legacy, (base, hop), &rate);
    }
}

/// The legacy rows: throughput and CPU with the tap off and on, and the
/// default budgets' slow-consumer closes.
fn legacy_rows(
    rows: &mut Vec<Row>,
    work: Workload,
    runs: &[TapRuns; 2],
    (base, hop): (f64, PerGib),
) {
    let [off, on] = [0, 1].map(|i| runs[i].median(Xfer::mbps));
    let ratio = off / base;
    rows.push(row(
        "1 guest->client 64 MiB, 16 KiB frames (hard cap raised to 256 MiB)",
        format!("{off:.0} MB/s"),
        format!("{base:.0} MB/s"),
        format!("{ratio:.2}x"),
        ">= 0.9x",
        Some(ratio >= 0.9),
    ));
    rows.push(row(
        "1 same, exec.log tap on",
        format!("{on:.0} MB/s"),
        format!("{base:.0} MB/s"),
        format!("{:.2}x", on / base),
        "-",
        None,
    ));
    tap_cost_row(rows, "1", off, on);
    cpu_rows(rows, "1", runs, hop, CpuTargets::of(1.0, 1.3, work));
    let (lost, closes) = default_budget_closes(work, 1, REPS);
    rows.push(row(
        "1 same, default budgets (8 MiB hard cap): reader closed as slow consumer",
        format!("{lost} of {REPS} runs"),
        "0 (socketpair)".into(),
        format!("{closes} slow-consumer closes"),
        "0 runs",
        Some(lost == 0),
    ));
}
