//! Scenario 4: sequential 64 B stdin -> echoed stdout round trips on one
//! exec session, through the stream port.

use std::time::Duration;

use agent_relay::core::Config;

use crate::baseline::echo_round_trips;
use crate::client::{Client, ping_pong};
use crate::cpu::PerGib;
use crate::guest::Workload;
use crate::measure::pct;
use crate::relay::{Port, start};
use crate::report::{Row, row};

const N: usize = 20_000;
const WARM: usize = 1000;

pub fn run(rows: &mut Vec<Row>) {
    println!("[4] {}", Port::Stream.describe());
    let r = start(Port::Stream, Workload::ECHO, Config::default(), false);
    let mut c = Client::connect(&r);
    let id = c.exec();
    ping_pong(&mut c, id, WARM);
    let before = r.cpu();
    let (relay, bytes) = ping_pong(&mut c, id, N);
    let cpu = PerGib {
        ns: r.cpu().since(before).relay,
        bytes,
    };
    drop(c);
    drop(r);
    // Baseline: the same guest model on a plain socketpair, no relay.
    let (base, hop) = echo_round_trips(WARM, N);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (p50, p99) = (us(pct(&relay, 50)), us(pct(&relay, 99)));
    let (b50, b99) = (us(pct(&base, 50)), us(pct(&base, 99)));
    rows.push(row(
        "4 round trip 64 B, p50",
        format!("{p50:.1} us"),
        format!("{b50:.1} us"),
        format!("{:.2}x", p50 / b50),
        "-",
        None,
    ));
    rows.push(row(
        "4 round trip 64 B, p99",
        format!("{p99:.1} us"),
        format!("{b99:.1} us"),
        format!("{:.2}x", p99 / b99),
        "<= 2x",
        Some(p99 / b99 <= 2.0),
    ));
    rows.push(row(
        "4 CPU per GiB: relay thread, round trips (both ways)",
        format!("{:.0} ms/GiB", cpu.ms()),
        format!("{:.0} ms/GiB (1 hop: client + guest)", hop.ms()),
        format!("{:.2}x", cpu.ms() / hop.ms()),
        "-",
        None,
    ));
}
