//! Scenario 3: eight clients read 16 MiB each at once: aggregate and
//! per-client throughput.

use super::{bytes, measured_streams, raised_caps};
use crate::baseline::pair_streams;
use crate::client::{Xfer, aggregate};
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::median;
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
    println!("[3] {}", Port::Ring.describe());
    let r = start(Port::Ring, Gen::Legacy, work, raised_caps(), false);
    let (rounds, cpu) = measured_streams(&r, 8, REPS);
    drop(r);
    let mut relay = PerGib::default();
    let mut agg = Vec::new();
    let mut mins = Vec::new();
    let mut maxs = Vec::new();
    for x in &rounds {
        agg.push(aggregate(x).0);
        mins.push(x.iter().map(Xfer::mbps).fold(f64::INFINITY, f64::min));
        maxs.push(x.iter().map(Xfer::mbps).fold(0.0, f64::max));
        relay.bytes += bytes(x);
    }
    relay.ns = cpu.relay;
    let (agg, min, max) = (median(agg), median(mins), median(maxs));
    let mut hop = PerGib::default();
    let mut base = Vec::new();
    for _ in 0..REPS {
        let h = pair_streams(work, 8);
        hop.add(h.cpu_ns, h.bytes());
        base.push(aggregate(&h.xfers).0);
    }
    let base = median(base);
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
    rows.push(row(
        "3 CPU per GiB: relay thread, 8 clients",
        format!("{:.0} ms/GiB", relay.ms()),
        format!("{:.0} ms/GiB (1 hop, 8 pairs)", hop.ms()),
        format!("{:.2}x", relay.ms() / hop.ms()),
        "-",
        None,
    ));
}
