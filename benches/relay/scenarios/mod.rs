//! The scenarios, a file each; each appends its rows to the table.

mod core_alone;
mod fairness;
mod fanout;
mod idle;
mod latency;
mod small_frames;
mod throughput;

use agent_relay::core::Config;

use crate::report::Row;

/// A scenario appends its rows.
pub type Scenario = fn(&mut Vec<Row>);

/// Every scenario, by the number that picks it on the command line.
pub const ALL: [(u32, Scenario); 7] = [
    (1, throughput::run),
    (2, small_frames::run),
    (3, fanout::run),
    (4, latency::run),
    (5, fairness::run),
    (6, core_alone::run),
    (7, idle::run),
];

/// A config whose per-client hard cap (and global cap) is large enough that a
/// reader running at full speed is not closed as a slow consumer when the
/// guest outpaces it (see scenario 1's "default budgets" row).
fn raised_caps() -> Config {
    Config {
        client_hard_cap: 256 << 20,
        global_cap: 1 << 30,
        ..Config::default()
    }
}
