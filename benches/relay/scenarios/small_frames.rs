//! Scenario 2: one client reads 200,000 stdout frames of 64 B, with the
//! exec.log tap off and on.

use super::raised_caps;
use crate::REPS;
use crate::baseline::pair_streams;
use crate::client::relay_streams;
use crate::guest::Workload;
use crate::measure::median;
use crate::relay::{Port, start};
use crate::report::{Row, row};

pub fn run(rows: &mut Vec<Row>) {
    let work = Workload {
        frames: 200_000,
        payload: 64,
    };
    println!("[2] {}", Port::Ring.describe());
    let mut rate = [0.0f64; 2];
    for (i, tap) in [false, true].into_iter().enumerate() {
        let r = start(Port::Ring, work, raised_caps(), tap);
        let mut v = Vec::new();
        for _ in 0..REPS {
            let x = relay_streams(&r, 1)[0];
            v.push(x.frames as f64 / x.secs());
        }
        rate[i] = median(v);
    }
    let base = median(
        (0..REPS)
            .map(|_| {
                let x = pair_streams(work, 1)[0];
                x.frames as f64 / x.secs()
            })
            .collect(),
    );
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
    let cost = (rate[0] / rate[1] - 1.0) * 100.0;
    rows.push(row(
        "2 exec.log tap cost",
        format!("{cost:+.1} % time"),
        "tap off".into(),
        format!("{:.2}x", rate[1] / rate[0]),
        "<= 15 %",
        Some(cost <= 15.0),
    ));
}
