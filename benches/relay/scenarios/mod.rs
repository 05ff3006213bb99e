//! The scenarios, a file each; each appends its rows to the table for the
//! generations picked. Also the pieces scenarios 1, 2 and 8 share: the
//! exec.log tap off and on, the rows that set the relay's CPU per GiB against
//! one socket hop's, and the current generation's rows beside the legacy
//! ones.

mod core_alone;
mod fairness;
mod fanout;
mod idle;
mod latency;
mod small_frames;
mod stdin;
mod throughput;

use agent_relay::core::Config;

use crate::REPS;
use crate::client::{Xfer, relay_streams};
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::median;
use crate::relay::{Port, RelayCpu, Running, start};
use crate::report::{Row, row};

/// A scenario appends its rows for the generations picked.
pub type Scenario = fn(&mut Vec<Row>, Gens);

/// Every scenario, by the number that picks it on the command line.
pub const ALL: [(u32, Scenario); 8] = [
    (1, throughput::run),
    (2, small_frames::run),
    (3, fanout::run),
    (4, latency::run),
    (5, fairness::run),
    (6, core_alone::run),
    (7, idle::run),
    (8, stdin::run),
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

/// `reps` rounds of `clients` concurrent streams through `r`: each round's
/// transfers, and the CPU the relay used over all rounds.
fn measured_streams(r: &Running, clients: usize, reps: usize) -> (Vec<Vec<Xfer>>, RelayCpu) {
    let before = r.cpu();
    let rounds = (0..reps).map(|_| relay_streams(r, clients)).collect();
    (rounds, r.cpu().since(before))
}

fn bytes(x: &[Xfer]) -> u64 {
    x.iter().map(|x| x.bytes).sum()
}

/// One client's streams through a relay of one generation with one exec.log
/// tap setting.
struct TapRuns {
    xfers: Vec<Xfer>,
    /// The relay's runtime thread.
    relay: PerGib,
    /// The exec.log writer thread (nothing with the tap off).
    writer: PerGib,
}

impl TapRuns {
    fn median(&self, f: impl Fn(&Xfer) -> f64) -> f64 {
        median(self.xfers.iter().map(f).collect())
    }
}

/// A legacy relay with the tap off, then one with it on: one client streams
/// `work` [`REPS`] times through each, after `warm` unmeasured runs.
fn tap_off_on(work: Workload, warm: usize) -> [TapRuns; 2] {
    [false, true].map(|tap| streams(Gen::Legacy, work, warm, tap))
}

/// A relay of generation `g`: one client streams `work` [`REPS`] times
/// through it, after `warm` unmeasured runs.
fn streams(g: Gen, work: Workload, warm: usize, tap: bool) -> TapRuns {
    let r = start(Port::Ring, g, work, raised_caps(), tap);
    for _ in 0..warm {
        relay_streams(&r, 1);
    }
    let (rounds, cpu) = measured_streams(&r, 1, REPS);
    let xfers: Vec<Xfer> = rounds.into_iter().flatten().collect();
    TapRuns::new(xfers, cpu)
}

impl TapRuns {
    fn new(xfers: Vec<Xfer>, cpu: RelayCpu) -> TapRuns {
        let n = bytes(&xfers);
        TapRuns {
            xfers,
            relay: PerGib {
                ns: cpu.relay,
                bytes: n,
            },
            writer: PerGib {
                ns: cpu.writer,
                bytes: n,
            },
        }
    }
}

/// How a scenario's transfers are rated: the figure per transfer, and how it
/// is written.
struct Rate {
    of: fn(&Xfer) -> f64,
    show: fn(f64) -> String,
}

/// The current generation's rows of scenario `n` (tap off): its rate against
/// the baseline's `base`, its relay thread's CPU per GiB against `hop`'s, and
/// with `legacy` (the legacy runs, tap off, of the same run) both over the
/// legacy figures.
fn current_rows(
    rows: &mut Vec<Row>,
    n: &str,
    what: &str,
    cur: &TapRuns,
    legacy: Option<&TapRuns>,
    (base, hop): (f64, PerGib),
    rate: &Rate,
) {
    let r = cur.median(rate.of);
    rows.push(row(
        &format!("{n} current (v=10, credit on): {what}, tap off"),
        (rate.show)(r),
        (rate.show)(base),
        format!("{:.2}x", r / base),
        "-",
        None,
    ));
    let (ms, hop_ms) = (cur.relay.ms(), hop.ms());
    rows.push(row(
        &format!("{n} current CPU per GiB: relay thread, tap off"),
        format!("{ms:.0} ms/GiB"),
        format!("{hop_ms:.0} ms/GiB (1 hop)"),
        format!("{:.2}x", ms / hop_ms),
        "-",
        None,
    ));
    let Some(legacy) = legacy else {
        return;
    };
    let l = legacy.median(rate.of);
    rows.push(row(
        &format!("{n} current / legacy: {what}, tap off"),
        format!("{} / {}", (rate.show)(r), (rate.show)(l)),
        "legacy".into(),
        format!("{:.2}x", r / l),
        "-",
        None,
    ));
    let l_ms = legacy.relay.ms();
    rows.push(row(
        &format!("{n} current / legacy: relay thread CPU per GiB, tap off"),
        format!("{ms:.0} / {l_ms:.0} ms/GiB"),
        "legacy".into(),
        format!("{:.2}x", ms / l_ms),
        "-",
        None,
    ));
}

/// The CPU targets against one hop, tap off and tap on (the writer counted).
struct CpuTargets {
    off: f64,
    on: f64,
    /// The stream's frames, their payload and wire length (for the floor).
    frames: u64,
    payload: usize,
    frame_len: usize,
}

impl CpuTargets {
    fn of(off: f64, on: f64, work: Workload) -> CpuTargets {
        let Workload::Stream { frames, payload } = work else {
            panic!("CPU targets are for streaming workloads")
        };
        let frame = agent_relay::testkit::frames::stdout(
            agent_relay::wire::LEGACY_VERSION,
            1,
            &vec![b'x'; payload],
        );
        CpuTargets {
            off,
            on,
            frames,
            payload,
            frame_len: frame.len(),
        }
    }
}

/// Issue 11's bound on the tap's CPU: relay + writer with the tap on over the
/// relay with it off.
const TAP_CPU_MAX: f64 = 1.15;

/// Rows for `runs` (tap off, tap on): the relay's CPU per GiB, and with the
/// tap on the writer's added, against `hop`'s; then tap on over tap off.
fn cpu_rows(rows: &mut Vec<Row>, n: &str, runs: &[TapRuns; 2], hop: PerGib, t: CpuTargets) {
    let [off, on] = runs;
    let floor = crate::cpu::file_write_floor(t.frames, t.payload, t.frame_len);
    let hop_ms = hop.ms();
    let hop_text = format!("{hop_ms:.0} ms/GiB (1 hop)");
    let ratio = off.relay.ms() / hop_ms;
    rows.push(row(
        &format!("{n} CPU per GiB: relay thread, tap off"),
        format!("{:.0} ms/GiB", off.relay.ms()),
        hop_text.clone(),
        format!("{ratio:.2}x"),
        &format!("<= {:.1}x hop", t.off),
        Some(ratio <= t.off),
    ));
    let both = on.relay.ms() + on.writer.ms();
    let ratio = both / hop_ms;
    rows.push(row(
        &format!("{n} CPU per GiB: relay + exec-log writer threads, tap on"),
        format!(
            "{:.0} + {:.0} = {both:.0} ms/GiB",
            on.relay.ms(),
            on.writer.ms()
        ),
        hop_text,
        format!("{ratio:.2}x"),
        &format!("<= {:.1}x hop", t.on),
        Some(ratio <= t.on),
    ));
    let ratio = both / off.relay.ms();
    rows.push(row(
        &format!("{n} CPU: tap on (relay + writer) over tap off (relay)"),
        format!("{both:.0} / {:.0} ms/GiB", off.relay.ms()),
        "tap off".into(),
        format!("{ratio:.2}x"),
        &format!("<= {TAP_CPU_MAX}x"),
        Some(ratio <= TAP_CPU_MAX),
    ));
    // The part of the tap-on target the writer's kernel work alone takes.
    let ratio = floor.ms() / off.relay.ms();
    rows.push(row(
        &format!("{n} CPU floor of any exec.log writer: write(2) of the output to a file"),
        format!("{:.0} ms/GiB", floor.ms()),
        format!("{:.0} ms/GiB (relay, tap off)", off.relay.ms()),
        format!("{ratio:.2}x"),
        &format!("(the target leaves {:.2}x)", TAP_CPU_MAX - 1.0),
        None,
    ));
}

/// The tap's wall-time cost, from the median rates with the tap off and on.
fn tap_cost_row(rows: &mut Vec<Row>, n: &str, off: f64, on: f64) {
    let cost = (off / on - 1.0) * 100.0;
    rows.push(row(
        &format!("{n} exec.log tap cost"),
        format!("{cost:+.1} % time"),
        "tap off".into(),
        format!("{:.2}x", on / off),
        "<= 15 %",
        Some(cost <= 15.0),
    ));
}
