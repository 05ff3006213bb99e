//! Pinned simulator runs, forever: every shrunk case under
//! `tests/regressions/`, a few pinned seeds, the determinism check, and a
//! short campaign (the oracle cargo-mutants uses next to the unit tests).
//!
//! The simulator library is included by path (`sim/src/lib.rs`), so this
//! test needs no dependency on the `agent-relay-sim` crate.

#[allow(dead_code, unused_imports)]
#[path = "../sim/src/lib.rs"]
mod sim;

use sim::case::{Case, replay};
use sim::driver::TraceMode;
use sim::world::{RunOpts, run};

/// Cases whose core bug is still open: replayed by their own ignored test.
const KNOWN_CORE_BUG: &str = "# known core bug:";

fn load(name: &str) -> Case {
    let path = format!("{}/tests/regressions/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Case::from_text(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_passes(name: &str, case: &Case) {
    let (v, lines) = replay(
        &case.config,
        case.read_max,
        &case.events,
        case.finish,
        TraceMode::Ring(40),
    );
    if let Some(v) = v {
        panic!(
            "{name} (seed {:#x}) still fails: {v}\n{}",
            case.seed,
            lines.join("\n")
        );
    }
}

#[test]
fn sim_regression_cases_pass() {
    let dir = format!("{}/tests/regressions", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".case"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).expect("listed");
        if text.contains(KNOWN_CORE_BUG) {
            continue;
        }
        assert_passes(&name, &Case::from_text(&text).expect("case parses"));
    }
}

/// Rule `guest_resync`: a short candidate kept by a resync is judged once its bytes arrive.
#[test]
fn sim_seed_0x85_guest_resync_rejudges_short_candidate() {
    let name = "seed_0000000000000085.case";
    assert_passes(name, &load(name));
}

/// Round robin toward the guest: shrunk against a scheduler that restarts its
/// scan at slot 0 after every pick (`self.rr = 0` in `Relay::pump_guest`),
/// which fails it with `inv_fairness` at event #32; the real core passes.
#[test]
fn sim_seed_0x18_round_robin_reaches_the_waiting_client() {
    let name = "seed_0000000000000018.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_fairness");
    assert_passes(name, &case);
}

/// Core bug `leftover_after_notice` (inv_notice_after_kills), fixed: a
/// departed client's control frame queued behind its own data (dropped at
/// departure) reached the guest after the disconnect notice; the notice now
/// waits behind the client's frames still queued.
#[test]
fn sim_seed_0x26_notice_comes_after_the_departed_clients_frames() {
    let name = "seed_0000000000000026.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_notice_after_kills");
    assert_passes(name, &case);
}

/// Core bug `no_pump_after_forget` (inv_fair_credit), fixed: forgetting a
/// departed slot's data estimate (its notice taken, or its quarantine over)
/// made another slot's queued data fair, and nothing handed it over; the
/// relay now pumps after it forgets a slot.
#[test]
fn sim_seed_0x2e_data_made_fair_by_a_forgotten_slot_leaves() {
    let name = "seed_000000000000002e.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_fair_credit");
    assert_passes(name, &case);
}

/// Range leases: shrunk against a core that frees a leased slot at the
/// disconnect notice instead of the guest's acknowledgement, which fails it
/// with `inv_range_leases` at event #8 (a new client gets the slot while the
/// guest still holds the old owner's incarnation); the real core passes.
#[test]
fn sim_seed_0x4_leased_slot_waits_for_the_guests_ack() {
    let name = "seed_0000000000000004.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_range_leases");
    assert_passes(name, &case);
}

/// Rule `guest_survives`: shrunk against a core whose disconnect notice
/// omits a leased slot's incarnation, which 0.7.13 agentd's loop ends on
/// (`inv_guest_survives` at event #6); the real core passes.
#[test]
fn sim_seed_0x0_leased_notice_names_the_incarnation() {
    let name = "seed_0000000000000000.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_guest_survives");
    assert_passes(name, &case);
}

/// Rule `backpressure_bounded_wait`: a partial write does not move a
/// client's grace deadline. Shrunk against a core that restarts the grace
/// period on any write (the old rule's progress), which fails it with
/// `inv_bounded_wait` at event #8 (`poll_timeout` later than the deadline
/// fixed when the client went over); the real core passes.
#[test]
fn sim_seed_0x17_a_partial_write_does_not_move_the_grace_deadline() {
    let name = "seed_0000000000000017.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_bounded_wait");
    assert_passes(name, &case);
}

/// Rule `backpressure_bounded_wait`: a client keeping pace is not closed.
/// Shrunk against a core that arms the grace deadline at half the grace
/// period, which closes a client 38 ms into its 50 ms period
/// (`inv_no_loss_while_reading` at event #16); the real core passes.
#[test]
fn sim_seed_0x63_a_client_within_its_grace_period_is_not_closed() {
    let name = "seed_0000000000000063.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_no_loss_while_reading");
    assert_passes(name, &case);
}

/// Core bug `global_grace_not_renewed` (`inv_bounded_wait`, rule
/// `backpressure_bounded_wait`), fixed in b43995a: at the end of the sum's
/// grace period the client holding the most is closed and, if the sum is
/// still over a quarter of the global cap, it gets another period (the
/// guest stays paused); the core renewed it only over half the cap, so
/// between a quarter and half it read the guest again at once. Eleven
/// unread handshakes in a world with a 4 KiB global cap, 16 events.
#[test]
fn sim_seed_0x1eb_the_sums_grace_is_renewed_while_over_a_quarter() {
    let name = "seed_00000000000001eb.case";
    let case = load(name);
    assert_eq!(case.invariant.name(), "inv_bounded_wait");
    assert_passes(name, &case);
}

/// The generation is drawn from a stream of its own: a seed the swarm
/// keeps legacy makes the draws, and so the world and the digest, it made
/// before current worlds existed. Main 0ac4bf7's digests held until issue
/// 17 changed what both generations do (the guest paused at the soft
/// budget, readers that keep pace or not, caps drawn against the frames);
/// main 47cc6b5's held until issue 20 made exec output read on per stream
/// through a text of one- to four-byte characters (the exec.log tap's
/// carries), which both generations' guests share, and gave legacy
/// malicious clients a ninth bad frame (`BadFrame::AnyType`, a frame of any
/// type of the 0.7.13 table), and made most clients of two worlds in five
/// batchers under the least global cap (0x1 and 0x5 are such worlds); these
/// are those changes'.
#[test]
fn sim_legacy_worlds_keep_their_digests() {
    use sim::world::{Generation, generation_of};
    let before = [
        (0x1, 0xa284_0005_16fa_260au64),
        (0x5, 0xc4fe_7f96_5565_61e9),
        (0x1f4, 0x006c_de0c_ef7b_806b),
        (0x7f5, 0x2767_58f5_37a9_8357),
    ];
    for (seed, digest) in before {
        assert_eq!(generation_of(seed), Generation::Legacy, "seed {seed:#x}");
        assert_eq!(
            run(seed, RunOpts::campaign()).digest,
            digest,
            "seed {seed:#x}"
        );
    }
    assert_eq!(generation_of(0x85), Generation::Current);
}

#[test]
fn sim_determinism_same_seed_same_digest() {
    for seed in [1u64, 0x85, 0xdead_beef] {
        let a = run(seed, RunOpts::campaign());
        let b = run(seed, RunOpts::campaign());
        assert_eq!(a.digest, b.digest, "seed {seed:#x}");
        assert_eq!(a.events, b.events, "seed {seed:#x}");
    }
}

/// Seeds 0..200, half of them current worlds; a run stopped by a known
/// core bug (see the ignored tests above) counts as passing, as in the
/// campaign without `--strict`.
#[test]
fn sim_campaign_200_seeds() {
    let opts = RunOpts::campaign();
    for seed in 0..200 {
        let o = run(seed, opts);
        assert!(
            o.failure.as_ref().is_none_or(|v| v.known.is_some()),
            "seed {seed:#x}: {}\nreplay: cargo run --release -p agent-relay-sim -- --seed {seed:#x} --trace",
            o.failure
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
    }
}
