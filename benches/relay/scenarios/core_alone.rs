//! Scenario 6: the core alone, no I/O: `benches/core.rs`'s routing loop
//! (`benches/common`), timed here for the table, with the CPU it takes per GiB
//! of 64 B frames: the floor under scenario 2's relay thread.

use std::time::Instant;

use crate::common::{FRAMES, ready_relay, route, stream};
use crate::cpu::{self, PerGib};
use crate::generation::Gens;
use crate::measure::median;
use crate::report::{Row, row};

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    if !gens.legacy {
        return;
    }
    println!("[6] core alone, no I/O (benches/core.rs's loop)");
    let bytes = stream(64);
    let mut rates = [0.0f64; 2];
    let mut cpu = [PerGib::default(); 2];
    for (i, tap) in [false, true].into_iter().enumerate() {
        let mut relay = ready_relay(tap);
        let mut v = Vec::new();
        for _ in 0..5 {
            let cpu0 = cpu::own_ns();
            let t = Instant::now();
            let frames = route(&mut relay, &bytes);
            let secs = t.elapsed().as_secs_f64();
            cpu[i].add(cpu::own_ns() - cpu0, bytes.len() as u64);
            assert_eq!(frames, FRAMES);
            v.push(FRAMES as f64 / secs);
        }
        rates[i] = median(v);
    }
    rows.push(row(
        "6 core alone, 64 B frames, tap off",
        format!("{:.1} M frames/s", rates[0] / 1e6),
        "-".into(),
        "-".into(),
        ">= 10 M frames/s",
        Some(rates[0] >= 10e6),
    ));
    rows.push(row(
        "6 core alone, 64 B frames, tap on",
        format!("{:.1} M frames/s", rates[1] / 1e6),
        "-".into(),
        "-".into(),
        "-",
        None,
    ));
    rows.push(row(
        "6 CPU per GiB: core alone, 64 B frames, tap off / on",
        format!("{:.0} / {:.0} ms/GiB", cpu[0].ms(), cpu[1].ms()),
        "-".into(),
        "-".into(),
        "-",
        None,
    ));
}
