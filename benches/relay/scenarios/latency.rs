//! Scenario 4: sequential 64 B stdin -> echoed stdout round trips on one
//! exec session, through the stream port. The current generation: the same
//! round trips with input credit on (the guest grants back each stdin frame
//! after reading it), beside the legacy figures.

use std::time::Duration;

use agent_relay::core::Config;

use crate::baseline::echo_round_trips;
use crate::client::{Client, ping_pong};
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::pct;
use crate::relay::{Port, start};
use crate::report::{Row, row};

const N: usize = 20_000;
const WARM: usize = 1000;

/// One generation's round trips: p50 and p99 in microseconds, and the relay
/// thread's CPU over the bytes carried both ways.
struct Trips {
    p50: f64,
    p99: f64,
    cpu: PerGib,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn round_trips(g: Gen) -> Trips {
    let r = start(Port::Stream, g, Workload::Echo, Config::default(), false);
    let mut c = Client::connect(&r);
    let id = c.exec();
    ping_pong(&mut c, id, WARM);
    let before = r.cpu();
    let (times, bytes) = ping_pong(&mut c, id, N);
    let cpu = PerGib {
        ns: r.cpu().since(before).relay,
        bytes,
    };
    Trips {
        p50: us(pct(&times, 50)),
        p99: us(pct(&times, 99)),
        cpu,
    }
}

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    println!("[4] {}", Port::Stream.describe());
    let legacy = gens.legacy.then(|| round_trips(Gen::Legacy));
    let current = gens.current.then(|| round_trips(Gen::Current));
    // Baseline: the same guest model on a plain socketpair, no relay.
    let (base, hop) = echo_round_trips(WARM, N);
    let (b50, b99) = (us(pct(&base, 50)), us(pct(&base, 99)));
    if let Some(t) = &legacy {
        rows.push(row(
            "4 round trip 64 B, p50",
            format!("{:.1} us", t.p50),
            format!("{b50:.1} us"),
            format!("{:.2}x", t.p50 / b50),
            "-",
            None,
        ));
        rows.push(row(
            "4 round trip 64 B, p99",
            format!("{:.1} us", t.p99),
            format!("{b99:.1} us"),
            format!("{:.2}x", t.p99 / b99),
            "<= 2x",
            Some(t.p99 / b99 <= 2.0),
        ));
        rows.push(row(
            "4 CPU per GiB: relay thread, round trips (both ways)",
            format!("{:.0} ms/GiB", t.cpu.ms()),
            format!("{:.0} ms/GiB (1 hop: client + guest)", hop.ms()),
            format!("{:.2}x", t.cpu.ms() / hop.ms()),
            "-",
            None,
        ));
    }
    let Some(t) = &current else {
        return;
    };
    for (p, v, b) in [("p50", t.p50, b50), ("p99", t.p99, b99)] {
        rows.push(row(
            &format!("4 current (v=10, credit on): round trip 64 B, {p}"),
            format!("{v:.1} us"),
            format!("{b:.1} us"),
            format!("{:.2}x", v / b),
            "-",
            None,
        ));
    }
    rows.push(row(
        "4 current CPU per GiB: relay thread, round trips (both ways)",
        format!("{:.0} ms/GiB", t.cpu.ms()),
        format!("{:.0} ms/GiB (1 hop: client + guest)", hop.ms()),
        format!("{:.2}x", t.cpu.ms() / hop.ms()),
        "-",
        None,
    ));
    let Some(l) = &legacy else {
        return;
    };
    rows.push(row(
        "4 current / legacy: round trip 64 B, p99",
        format!("{:.1} / {:.1} us", t.p99, l.p99),
        "legacy".into(),
        format!("{:.2}x", t.p99 / l.p99),
        "-",
        None,
    ));
    rows.push(row(
        "4 current / legacy: relay thread CPU per GiB, round trips",
        format!("{:.0} / {:.0} ms/GiB", t.cpu.ms(), l.cpu.ms()),
        "legacy".into(),
        format!("{:.2}x", t.cpu.ms() / l.cpu.ms()),
        "-",
        None,
    ));
}
