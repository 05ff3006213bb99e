//! End-to-end benchmarks: the real shell (tokio, on its own threads) with
//! real Unix-socket clients (std `UnixStream`s in client threads), each figure
//! against a baseline measured in the same run: the same bytes through a
//! plain `UnixStream::pair()` with no relay in between.
//!
//! Run all: `cargo bench --bench relay`; one: `cargo bench --bench relay -- 4`;
//! one generation: `cargo bench --bench relay -- 1 current` (or
//! `RELAY_BENCH_GEN=legacy|current|both`; both by default).
//! The relay runs as the CLI runs it, on a current-thread runtime of its own;
//! `RELAY_BENCH_RT=multi` puts it on a 2-worker multi-thread runtime instead.
//!
//! Scenarios (`scenarios/`): 1 throughput and 2 small frames (exec.log tap
//! off/on each), 3 fan-out, 4 round-trip latency, 5 fairness with a stalled
//! client, 6 the core alone, 7 idle wakeups, 8 stdin throughput. Besides
//! wall-clock figures, every end-to-end scenario reports the CPU time per GiB
//! of the relay's thread (and of the exec.log writer's, with the tap on)
//! beside one socket hop's: the baseline's writer and reader threads together
//! (`cpu.rs` says how). Scenarios 1, 2, 4 and 8 also run the current
//! generation (input credit on, tap off) in the same run, and set its figures
//! beside the legacy ones; the legacy rows mean what they always meant.
//!
//! Layout: `guest.rs` the guest agent model, `generation.rs` the two
//! generations and the guest's credit, `relay.rs` the relay under test,
//! `client.rs` the SDK clients, `baseline.rs` the socketpair baselines,
//! `cpu.rs` per-thread CPU time, `measure.rs` wall-clock and process figures,
//! `report.rs` the table; `../common` is the core loop shared with
//! `benches/core.rs`.

mod baseline;
mod client;
#[path = "../common/mod.rs"]
mod common;
mod cpu;
mod generation;
mod guest;
mod measure;
mod relay;
mod report;
mod scenarios;

use std::thread;
use std::time::Instant;

use generation::Gens;

/// Bytes per guest write (the ring's largest chunk) and per client read.
const CHUNK: usize = 64 << 10;
const MIB: u64 = 1 << 20;
/// Measured runs per figure, where a scenario repeats.
const REPS: usize = 5;

fn main() {
    // Scenario numbers and generation words; cargo's own flags (`--bench`)
    // pass by.
    let (numbers, words): (Vec<String>, Vec<String>) = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .partition(|a| a.parse::<u32>().is_ok());
    let picked: Vec<u32> = numbers.iter().filter_map(|a| a.parse().ok()).collect();
    let known: Vec<u32> = scenarios::ALL.iter().map(|(n, _)| *n).collect();
    let unknown: Vec<&u32> = picked.iter().filter(|n| !known.contains(n)).collect();
    let odd: Vec<&String> = words
        .iter()
        .filter(|w| !["legacy", "current", "both"].contains(&w.as_str()))
        .collect();
    if !unknown.is_empty() || !odd.is_empty() {
        eprintln!(
            "relay bench: no scenario {unknown:?} / no generation {odd:?}: scenarios are {known:?}, \
             generations legacy, current or both"
        );
        std::process::exit(2);
    }
    let want = |n: u32| picked.is_empty() || picked.contains(&n);
    let gens = Gens::pick(&words);
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "agent-relay end-to-end benchmarks ({cpus} CPUs; medians of {REPS} runs where repeated; {})",
        gens.describe()
    );
    let t0 = Instant::now();
    let mut rows = Vec::new();
    for (n, f) in scenarios::ALL {
        if want(n) {
            f(&mut rows, gens);
        }
    }
    println!();
    report::print(&rows);
    println!();
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}
