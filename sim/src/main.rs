//! `agent-relay-sim`: seed campaigns, single-seed replay with a trace, and
//! shrinking a failing seed into a regression case.
//!
//! ```text
//! agent-relay-sim --seeds N [--start S] [--jobs J]   campaign over seeds S..S+N
//! agent-relay-sim --seed S [--trace]                 replay one seed
//! agent-relay-sim --seed S --shrink [--out DIR]      shrink it into DIR (tests/regressions)
//! agent-relay-sim --replay FILE [--trace]            replay a regression case
//! agent-relay-sim --replay FILE --shrink [--out DIR] shrink a case (e.g. from the core_events fuzz target)
//! ... --strict                                       a known core bug's hit fails the run too
//! ```

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use agent_relay::core::Counters;
use agent_relay_sim::case::{Case, replay, shrink};
use agent_relay_sim::check::{Class, KnownBug};
use agent_relay_sim::driver::{Digest, TraceMode};
use agent_relay_sim::world::{
    Fault, FaultCounts, Generation, Outcome, READ_MAX, RunOpts, generation_of, run,
};

struct Args {
    seeds: Option<u64>,
    start: u64,
    seed: Option<u64>,
    trace: bool,
    shrink: bool,
    jobs: usize,
    out: String,
    replay: Option<String>,
    /// Run options.
    opts: RunOpts,
    /// Hits of a known core bug fail the campaign too.
    strict: bool,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("{s:?}: {e}"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: None,
        start: 0,
        seed: None,
        trace: false,
        shrink: false,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        out: "tests/regressions".into(),
        replay: None,
        opts: RunOpts::campaign(),
        strict: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--seeds" => args.seeds = Some(parse_u64(&value()?)?),
            "--start" => args.start = parse_u64(&value()?)?,
            "--seed" => args.seed = Some(parse_u64(&value()?)?),
            "--jobs" => args.jobs = parse_u64(&value()?)?.max(1) as usize,
            "--out" => args.out = value()?,
            "--replay" => args.replay = Some(value()?),
            "--strict" => args.strict = true,
            "--trace" => args.trace = true,
            "--shrink" => args.shrink = true,
            "-h" | "--help" => {
                println!(
                    "usage: agent-relay-sim --seeds N [--start S] [--jobs J] [--strict]\n       agent-relay-sim --seed S [--trace | --shrink [--out DIR]] [--strict]\n       agent-relay-sim --replay FILE [--trace]"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {a:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("agent-relay-sim: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.replay {
        return replay_file(path, args.trace, args.shrink.then_some(args.out.as_str()));
    }
    if let Some(seed) = args.seed {
        return if args.shrink {
            shrink_seed(seed, &args.out, args.opts)
        } else {
            one_seed(seed, args.trace, args.opts)
        };
    }
    let seeds = args.seeds.unwrap_or(1000);
    campaign(args.start, seeds, args.jobs, args.opts, args.strict)
}

fn replay_cmd(seed: u64) -> String {
    format!("cargo run --release -p agent-relay-sim -- --seed {seed:#x} --trace")
}

fn report_failure(o: &Outcome, opts: RunOpts) {
    let v = o.failure.as_ref().expect("called on failures");
    eprintln!("FAILURE seed={:#x} invariant={}", o.seed, v.invariant);
    eprintln!("  {v}");
    eprintln!("  config: {:?}", o.config);
    // Re-run with a ring trace: same seed, same run.
    let again = run(
        o.seed,
        RunOpts {
            trace: TraceMode::Ring(40),
            ..opts
        },
    );
    eprintln!("  last events (and the actions each produced):");
    for line in &again.trace {
        eprintln!("  {line}");
    }
    eprintln!("  replay: {}", replay_cmd(o.seed));
    eprintln!(
        "  shrink: cargo run --release -p agent-relay-sim -- --seed {:#x} --shrink",
        o.seed
    );
}

fn one_seed(seed: u64, trace: bool, opts: RunOpts) -> ExitCode {
    let o = run(
        seed,
        RunOpts {
            trace: if trace {
                TraceMode::Full
            } else {
                TraceMode::Off
            },
            ..opts
        },
    );
    for line in &o.trace {
        println!("{line}");
    }
    println!(
        "seed {seed:#x}: {} events, {} checks, digest {:#018x}, faults {}",
        o.events,
        o.checks,
        o.digest,
        fault_list(&o.faults)
    );
    match &o.failure {
        Some(_) => {
            report_failure(&o, opts);
            ExitCode::FAILURE
        }
        None => {
            println!("ok");
            ExitCode::SUCCESS
        }
    }
}

fn fault_list(f: &FaultCounts) -> String {
    let on: Vec<String> = f
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(" ")
    }
}

fn shrink_seed(seed: u64, out: &str, opts: RunOpts) -> ExitCode {
    let o = run(
        seed,
        RunOpts {
            record: true,
            ..opts
        },
    );
    let Some(v) = &o.failure else {
        println!("seed {seed:#x} passes; nothing to shrink");
        return ExitCode::SUCCESS;
    };
    eprintln!(
        "seed {seed:#x} breaks {v}; shrinking {} events",
        o.recorded.len()
    );
    let case = Case {
        seed,
        invariant: v.invariant,
        config: o.config.clone(),
        read_max: READ_MAX,
        finish: v.invariant.class() == Class::Liveness,
        events: o.recorded.clone(),
    };
    shrink_case(case, out)
}

/// Shrinks a failing case and writes it into `out`.
fn shrink_case(mut case: Case, out: &str) -> ExitCode {
    // The world reports a stuck run as live_quiescence; replayed, the same
    // events break the liveness check that names what is stuck.
    match replay(
        &case.config,
        case.read_max,
        &case.events,
        case.finish,
        TraceMode::Off,
    )
    .0
    {
        Some(v) => case.invariant = v.invariant,
        None => {
            eprintln!("the recorded events do not fail when replayed; cannot shrink");
            return ExitCode::FAILURE;
        }
    }
    let small = shrink(&case, 20_000);
    let (v2, lines) = replay(
        &small.config,
        small.read_max,
        &small.events,
        small.finish,
        TraceMode::Full,
    );
    for line in &lines {
        println!("{line}");
    }
    if let Some(v2) = &v2 {
        println!("shrunk to {} events: {v2}", small.events.len());
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("creating {out}: {e}");
        return ExitCode::FAILURE;
    }
    let path = format!("{out}/seed_{:016x}.case", small.seed);
    if let Err(e) = std::fs::write(&path, small.to_text()) {
        eprintln!("writing {path}: {e}");
        return ExitCode::FAILURE;
    }
    println!("wrote {path}");
    ExitCode::FAILURE
}

fn replay_file(path: &str, trace: bool, shrink_into: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("reading {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let case = match Case::from_text(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(out) = shrink_into {
        return shrink_case(case, out);
    }
    let mode = if trace {
        TraceMode::Full
    } else {
        TraceMode::Off
    };
    let (v, lines) = replay(&case.config, case.read_max, &case.events, case.finish, mode);
    for line in &lines {
        println!("{line}");
    }
    match v {
        Some(v) => {
            println!("{path}: {v}");
            ExitCode::FAILURE
        }
        None => {
            println!("{path}: ok ({} events)", case.events.len());
            ExitCode::SUCCESS
        }
    }
}

/// What current worlds did, from the core's counters: the campaign shows
/// each summed and the seeds where it happened, so a world that stopped
/// reaching a feature shows.
type CounterOf = fn(&Counters) -> u64;
const CURRENT_COUNTERS: [(&str, CounterOf); 17] = [
    ("init acks", |c| c.init_acks),
    ("ms blocked on control", |c| c.credit_blocked_control_ms),
    ("ms blocked on data", |c| c.credit_blocked_data_ms),
    ("grants ignored", |c| c.grants_ignored),
    ("disconnect notices", |c| c.notices_sent),
    ("departed frames dropped", |c| c.departed_frames_dropped),
    ("correlations retired", |c| c.correlations_retired),
    ("correlations evicted", |c| c.correlations_evicted),
    ("frames for nobody", |c| c.frames_for_nobody),
    ("workload frames", |c| c.workload_frames),
    ("execs refused", |c| c.execs_refused),
    ("late bulk dropped", |c| c.late_bulk_dropped),
    ("clock syncs", |c| c.clock_syncs),
    ("leases granted", |c| c.leases_granted),
    ("lease acks", |c| c.lease_acks),
    ("lease acks ignored", |c| c.lease_acks_ignored),
    ("executions released", |c| c.executions_released),
];

/// What rule `backpressure_bounded_wait` did, in both generations: the
/// core's pause counters and the checker's count of closes by limit.
type BudgetOf = fn(&Outcome) -> u64;
const BUDGET_COUNTERS: [(&str, BudgetOf); 12] = [
    ("guest pauses", |o| o.counters.guest_pauses),
    ("ms guest paused", |o| o.counters.guest_paused_ms),
    ("longest pause ms", |o| o.budget.longest_pause),
    ("recoveries in grace", |o| o.budget.recoveries),
    ("global marks passed", |o| o.budget.global_marks),
    ("closed: grace", |o| o.budget.grace_closes),
    ("closed: hard cap", |o| o.budget.hard_closes),
    ("closed: sum's grace", |o| o.budget.global_grace_closes),
    ("closed: global cap", |o| o.budget.global_cap_closes),
    ("steady readers closed", |o| o.steady_slow_closes),
    ("peak over soft", |o| o.budget.peak_over_soft),
    ("peak own bytes over", |o| o.budget.peak_own),
];

/// Per generation: seeds, core events and the seconds their runs took.
#[derive(Default, Clone, Copy)]
struct PerGen {
    seeds: u64,
    events: u64,
    secs: f64,
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    events: u64,
    checks: u64,
    faults: FaultCounts,
    /// Seeds that injected each fault at least once.
    seeds_with: FaultCounts,
    /// Legacy worlds, then current ones.
    by_gen: [PerGen; 2],
    /// Current worlds: each of [`CURRENT_COUNTERS`] summed, and the seeds
    /// where it was not zero.
    current: [(u64, u64); CURRENT_COUNTERS.len()],
    /// Each of [`BUDGET_COUNTERS`] summed (the longest and peaks: maxima),
    /// and the seeds where it was not zero.
    budget: [(u64, u64); BUDGET_COUNTERS.len()],
    failures: Vec<Outcome>,
    /// Runs stopped by a known core bug (failures too with `--strict`).
    known: Vec<Outcome>,
    strict: bool,
    /// Each seed's digest, by its index in the campaign.
    digests: Vec<u64>,
}

impl Totals {
    fn add(&mut self, k: u64, o: Outcome) {
        self.seeds += 1;
        self.digests[k as usize] = o.digest;
        self.events += o.events;
        self.checks += o.checks;
        for (f, n) in o.faults.iter() {
            self.faults.add(f, n);
            self.seeds_with.add(f, u64::from(n > 0));
        }
        if o.generation == Generation::Current {
            for (i, (_, get)) in CURRENT_COUNTERS.iter().enumerate() {
                let n = get(&o.counters);
                self.current[i].0 += n;
                self.current[i].1 += u64::from(n > 0);
            }
        }
        for (i, (name, get)) in BUDGET_COUNTERS.iter().enumerate() {
            let n = get(&o);
            let b = &mut self.budget[i];
            b.0 = if name.starts_with("longest") || name.starts_with("peak") {
                b.0.max(n)
            } else {
                b.0 + n
            };
            b.1 += u64::from(n > 0);
        }
        let g = &mut self.by_gen[usize::from(o.generation == Generation::Current)];
        g.seeds += 1;
        g.events += o.events;
        g.secs += o.secs;
        match &o.failure {
            Some(v) if v.known.is_some() && !self.strict => self.known.push(o),
            Some(_) => self.failures.push(o),
            None => {}
        }
    }
}

fn campaign(start: u64, count: u64, jobs: usize, opts: RunOpts, strict: bool) -> ExitCode {
    let next = AtomicU64::new(0);
    let totals = Mutex::new(Totals {
        digests: vec![0; count as usize],
        strict,
        ..Totals::default()
    });
    let began = Instant::now();
    let stderr_tty = std::env::var_os("TERM").is_some_and(|t| t != "dumb");
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        return;
                    }
                    let o = run(start + k, opts);
                    let mut t = totals.lock().expect("no panics while held");
                    t.add(k, o);
                    let (done, fails) = (t.seeds, t.failures.len());
                    drop(t);
                    progress(done, count, fails, began, stderr_tty);
                }
            });
        }
    });
    let secs = began.elapsed().as_secs_f64();
    let mut t = totals.into_inner().expect("threads joined");
    eprintln!();
    t.failures.sort_by_key(|o| o.seed);
    t.known.sort_by_key(|o| o.seed);
    summary(start, count, jobs, secs, &t);
    write_digests(start, &t);
    if t.failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    for o in &t.failures {
        let v = o.failure.as_ref().expect("failures only");
        println!("  FAIL seed {:#x}: {v}", o.seed);
    }
    report_failure(&t.failures[0], opts);
    let _ = std::io::stderr().flush();
    ExitCode::FAILURE
}

fn summary(start: u64, count: u64, jobs: usize, secs: f64, t: &Totals) {
    let rate = t.events as f64 / secs.max(1e-9);
    println!("agent-relay-sim campaign: seeds {start}..{}", start + count);
    println!("  {:<22} {:>14}", "seeds", t.seeds);
    println!("  {:<22} {:>14}", "core events", t.events);
    println!("  {:<22} {:>14.0}", "events/s", rate);
    println!("  {:<22} {:>14.1}", "wall seconds", secs);
    println!("  {:<22} {:>14}", "threads", jobs);
    println!("  {:<22} {:>14}", "checks made", t.checks);
    let per_thread = |g: PerGen| g.events as f64 / g.secs.max(1e-9);
    for (name, g) in [("legacy", t.by_gen[0]), ("current", t.by_gen[1])] {
        println!(
            "  {:<22} {:>14.0}   ({} seeds, {} events, per thread)",
            format!("events/s {name}"),
            per_thread(g),
            g.seeds,
            g.events
        );
    }
    let ratio = per_thread(t.by_gen[1]) / per_thread(t.by_gen[0]).max(1e-9);
    println!("  {:<22} {:>14.2}", "current / legacy", ratio);
    println!(
        "  faults injected        {:>14}   seeds with it on",
        "count"
    );
    for f in Fault::ALL {
        println!(
            "    {:<20} {:>14}   {:>8}",
            f.name(),
            t.faults.get(f),
            t.seeds_with.get(f)
        );
    }
    println!("  current worlds         {:>14}   seeds with it", "sum");
    for (i, (name, _)) in CURRENT_COUNTERS.iter().enumerate() {
        let (n, seeds) = t.current[i];
        println!("    {name:<20} {n:>14}   {seeds:>8}");
    }
    println!("  backpressure           {:>14}   seeds with it", "sum");
    for (i, (name, _)) in BUDGET_COUNTERS.iter().enumerate() {
        let (n, seeds) = t.budget[i];
        println!("    {name:<20} {n:>14}   {seeds:>8}");
    }
    println!("  known core bugs        {:>14}   first seeds", "seeds");
    for bug in KnownBug::ALL {
        let hits: Vec<u64> = t
            .known
            .iter()
            .filter(|o| o.failure.as_ref().and_then(|v| v.known) == Some(bug))
            .map(|o| o.seed)
            .collect();
        let first: Vec<String> = hits.iter().take(4).map(|s| format!("{s:#x}")).collect();
        println!(
            "    {:<20} {:>14}   {}",
            bug.name(),
            hits.len(),
            first.join(" ")
        );
    }
    println!("  {:<22} {:>14}", "failures", t.failures.len());
    let mut digest = Digest::new();
    for (k, d) in t.digests.iter().enumerate() {
        digest.seed(start + k as u64, Digest::from_value(*d));
    }
    println!("  {:<22} {:#018x}", "campaign digest", digest.value());
}

/// `AGENT_RELAY_SIM_DIGESTS=FILE`: each seed's digest and generation, one
/// `seed digest generation` line per seed (legacy worlds keep their digests
/// across builds; compare with `diff`).
fn write_digests(start: u64, t: &Totals) {
    if let Some(path) = std::env::var_os("AGENT_RELAY_SIM_DIGESTS") {
        let lines: String = t
            .digests
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let seed = start + k as u64;
                format!("{seed:#x} {d:#018x} {}\n", generation_of(seed).name())
            })
            .collect();
        if let Err(e) = std::fs::write(&path, lines) {
            eprintln!("writing seed digests to {}: {e}", path.to_string_lossy());
        }
    }
}

fn progress(done: u64, total: u64, fails: usize, began: Instant, tty: bool) {
    let step = (total / 50).max(1);
    if !done.is_multiple_of(step) && done != total {
        return;
    }
    let width = 40;
    let filled = (done * width / total.max(1)) as usize;
    let bar: String = "=".repeat(filled) + &" ".repeat(width as usize - filled);
    let secs = began.elapsed().as_secs_f64();
    let end = if tty { "\r" } else { "\n" };
    eprint!("[{bar}] {done}/{total} seeds, {fails} failing, {secs:.1}s{end}");
}
