//! Scenario 8: one client writes 64 MiB of `core.exec.stdin` in 16 KiB
//! frames, then the end of its input, to a guest that consumes it, and waits
//! for the guest's count and the exit: legacy, and the current generation
//! with input credit on (the guest granting back what it consumed after
//! each batch of reads; the relay holding every frame that would not fit
//! its class's grant, length prefix included). Through the ring port.

use agent_relay::core::{CONTROL_BYTES, CONTROL_FRAMES, Counters, DATA_BYTES, DATA_FRAMES};

use super::{Rate, TapRuns, current_rows, raised_caps};
use crate::baseline::pair_stdin;
use crate::client::{Xfer, relay_stdin};
use crate::cpu::PerGib;
use crate::generation::{Gen, Gens};
use crate::guest::Workload;
use crate::measure::median;
use crate::relay::{Port, start};
use crate::report::{Row, row};
use crate::{MIB, REPS};

/// Stdin frames per run, and their payload.
const FRAMES: u64 = 64 * MIB / PAYLOAD as u64;
const PAYLOAD: usize = 16 << 10;

/// [`REPS`] runs through a relay of generation `g`, after one unmeasured.
fn stdin_runs(g: Gen) -> TapRuns {
    let r = start(Port::Ring, g, Workload::Sink, raised_caps(), false);
    relay_stdin(&r, FRAMES, PAYLOAD);
    let before = r.cpu();
    let xfers: Vec<Xfer> = (0..REPS)
        .map(|_| relay_stdin(&r, FRAMES, PAYLOAD))
        .collect();
    let cpu = r.cpu().since(before);
    if g == Gen::Current {
        println!("[8] current: {}", credit_line(&r.handle.counters()));
    }
    TapRuns::new(xfers, cpu)
}

/// The relay's credit counters, read once it is idle (`Running::cpu` waited
/// for that): the guest has granted back everything it read, so beyond the
/// starting grants each class was granted exactly what it was charged.
fn credit_line(c: &Counters) -> String {
    let data = (
        c.credit_data_frames - DATA_FRAMES,
        c.credit_data_bytes - DATA_BYTES,
    );
    let control = (
        c.credit_control_frames - CONTROL_FRAMES,
        c.credit_control_bytes - CONTROL_BYTES,
    );
    format!(
        "charged / granted beyond the start: data {} / {} frames, {} / {} B; control {} / {} \
         frames, {} / {} B; {} ms blocked on data credit, {} grants ignored",
        c.used_data_frames,
        data.0,
        c.used_data_bytes,
        data.1,
        c.used_control_frames,
        control.0,
        c.used_control_bytes,
        control.1,
        c.credit_blocked_data_ms,
        c.grants_ignored,
    )
}

pub fn run(rows: &mut Vec<Row>, gens: Gens) {
    println!("[8] {}", Port::Ring.describe());
    let legacy = gens.legacy.then(|| stdin_runs(Gen::Legacy));
    let current = gens.current.then(|| stdin_runs(Gen::Current));
    pair_stdin(FRAMES, PAYLOAD);
    let mut hop = PerGib::default();
    let mut base = Vec::new();
    for _ in 0..REPS {
        let h = pair_stdin(FRAMES, PAYLOAD);
        hop.add(h.cpu_ns, h.bytes());
        base.push(h.xfers[0].mbps());
    }
    let base = median(base);
    let what = "client->guest stdin 64 MiB, 16 KiB frames";
    if let Some(l) = &legacy {
        let mbps = l.median(Xfer::mbps);
        rows.push(row(
            &format!("8 {what}"),
            format!("{mbps:.0} MB/s"),
            format!("{base:.0} MB/s"),
            format!("{:.2}x", mbps / base),
            "-",
            None,
        ));
        let (ms, hop_ms) = (l.relay.ms(), hop.ms());
        rows.push(row(
            "8 CPU per GiB: relay thread, stdin",
            format!("{ms:.0} ms/GiB"),
            format!("{hop_ms:.0} ms/GiB (1 hop: client + guest)"),
            format!("{:.2}x", ms / hop_ms),
            "-",
            None,
        ));
    }
    if let Some(cur) = &current {
        let rate = Rate {
            of: Xfer::mbps,
            show: |r| format!("{r:.0} MB/s"),
        };
        current_rows(rows, "8", what, cur, legacy.as_ref(), (base, hop), &rate);
    }
}
