//! Scenario 2: one client reads 200,000 stdout frames of 64 B, with the
//! exec.log tap off and on. The current generation: the same stream, tap
//! off, beside the legacy figures.

use super::{CpuTargets, Rate, TapRuns, cpu_rows, current_rows, streams, tap_cost_row, tap_off_on};
use crate::REPS;
use crate::baseline::pair_streams;
use crate::client::Xfer;
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::median;
use crate::relay::Port;
use crate::report::{Row, row};

fn frames_per_s(x: &Xfer) -> f64 {
    x.frames as f64 / x.secs()
}

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    let work = Workload::Stream {
        frames: 200_000,
        payload: 64,
    };
    println!("[2] {}", Port::Ring.describe());
    let legacy = gens.legacy.then(|| tap_off_on(work, 0));
    let current = gens.current.then(|| streams(Gen::Current, work, 0, false));
    let mut hop = PerGib::default();
    let mut base = Vec::new();
    for _ in 0..REPS {
        let h = pair_streams(work, 1);
        hop.add(h.cpu_ns, h.bytes());
        base.push(frames_per_s(&h.xfers[0]));
    }
    let base = median(base);
    if let Some(runs) = &legacy {
        legacy_rows(rows, work, runs, (base, hop));
    }
    if let Some(cur) = &current {
        let rate = Rate {
            of: frames_per_s,
            show: |r| format!("{:.2} M frames/s", r / 1e6),
        };
        let what = "200k x 64 B frames (hard cap raised)";
        let legacy = legacy.as_ref().map(|[off, _]| off);
        current_rows(rows, "2", what, cur, legacy, (base, hop), &rate);
    }
}

/// The legacy rows: the frame rate and CPU with the tap off and on.
fn legacy_rows(
    rows: &mut Vec<Row>,
    work: Workload,
    runs: &[TapRuns; 2],
    (base, hop): (f64, PerGib),
) {
    let rate = [0, 1].map(|i| runs[i].median(frames_per_s));
    for (i, name) in ["tap off", "tap on"].iter().enumerate() {
        rows.push(row(
            &format!("2 200k x 64 B frames, {name} (hard cap raised)"),
            format!("{:.2} M frames/s", rate[i] / 1e6),
            format!("{:.2} M frames/s", base / 1e6),
            format!("{:.2}x", rate[i] / base),
            "-",
            None,
        ));
    }
    tap_cost_row(rows, "2", rate[0], rate[1]);
    cpu_rows(rows, "2", runs, hop, CpuTargets::of(2.0, 2.5, work));
}
