//! Scenario 3: eight clients read 16 MiB each at once: aggregate and
//! per-client throughput.

use super::raised_caps;
use crate::baseline::pair_streams;
use crate::client::{Xfer, aggregate, relay_streams};
use crate::guest::Workload;
use crate::measure::median;
use crate::relay::{Port, start};
use crate::report::{Row, row};
use crate::{MIB, REPS};

pub fn run(rows: &mut Vec<Row>) {
    let work = Workload {
        frames: 16 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[3] {}", Port::Ring.describe());
    let r = start(Port::Ring, work, raised_caps(), false);
    let mut agg = Vec::new();
    let mut mins = Vec::new();
    let mut maxs = Vec::new();
    for _ in 0..REPS {
        let x = relay_streams(&r, 8);
        agg.push(aggregate(&x).0);
        mins.push(x.iter().map(Xfer::mbps).fold(f64::INFINITY, f64::min));
        maxs.push(x.iter().map(Xfer::mbps).fold(0.0, f64::max));
    }
    drop(r);
    let (agg, min, max) = (median(agg), median(mins), median(maxs));
    let base = median(
        (0..REPS)
            .map(|_| aggregate(&pair_streams(work, 8)).0)
            .collect(),
    );
    rows.push(row(
        "3 fan-out 8 clients x 16 MiB, aggregate (hard cap raised)",
        format!("{agg:.0} MB/s"),
        format!("{base:.0} MB/s"),
        format!("{:.2}x", agg / base),
        "-",
        None,
    ));
    rows.push(row(
        "3 fan-out per-client min / max",
        format!("{min:.0} / {max:.0} MB/s"),
        format!("{:.0} MB/s (1/8)", base / 8.0),
        format!("{:.2}", min / max),
        "-",
        None,
    ));
}
