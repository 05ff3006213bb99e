//! Scenario 1: one client reads 64 MiB of 16 KiB stdout frames, with the
//! exec.log tap off and on; and how often the default budgets close a reader
//! running at full speed as a slow consumer.

use std::thread;
use std::time::Duration;

use agent_relay::core::Config;

use super::raised_caps;
use crate::baseline::pair_streams;
use crate::client::{relay_streams, try_relay_streams};
use crate::guest::Workload;
use crate::measure::median;
use crate::relay::{Port, start};
use crate::report::{Row, row};
use crate::{MIB, REPS};

/// Runs `reps` single-client streams with the default budgets; returns how
/// many runs lost the client as a slow consumer.
fn default_budget_closes(work: Workload, clients: usize, reps: usize) -> (usize, u64) {
    let r = start(Port::Ring, work, Config::default(), false);
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

pub fn run(rows: &mut Vec<Row>) {
    let work = Workload {
        frames: 64 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[1] {}", Port::Ring.describe());
    let r = start(Port::Ring, work, raised_caps(), false);
    relay_streams(&r, 1); // warm-up
    let relay = median((0..REPS).map(|_| relay_streams(&r, 1)[0].mbps()).collect());
    drop(r);
    pair_streams(work, 1);
    let base = median((0..REPS).map(|_| pair_streams(work, 1)[0].mbps()).collect());
    let ratio = relay / base;
    rows.push(row(
        "1 guest->client 64 MiB, 16 KiB frames (hard cap raised to 256 MiB)",
        format!("{relay:.0} MB/s"),
        format!("{base:.0} MB/s"),
        format!("{ratio:.2}x"),
        ">= 0.9x",
        Some(ratio >= 0.9),
    ));
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
