//! `Relay::check`: the core asserts its own consistency. With the `testing`
//! feature (the simulator and the tests turn it on), a relay made with
//! `Relay::checked` runs it after every [`Relay::handle`], in release builds
//! too, where `debug_assertions` is off. Benchmarks, which are built with the
//! same feature, use plain relays and pay nothing for it.
//!
//! [`Relay::handle`]: super::Relay::handle

use super::clients::{Clients, Conn};
use super::dialect::Dialect;
use super::flush::Flushes;
use super::scheduler::Scheduler;
use super::sessions::Sessions;
use super::startup::Startup;
use super::timer::{Deadlines, Key, SlotDeadline, Timer};
use super::types::{Config, Counters};
use crate::wire::lease::Incarnation;

/// The relay's parts, as `Relay::check` lends them.
pub(super) struct View<'a> {
    pub cfg: &'a Config,
    pub startup: &'a Startup,
    pub dialect: &'a Dialect,
    pub guest_gone: bool,
    pub clients: &'a Clients,
    pub flushes: &'a Flushes,
    pub sessions: &'a Sessions,
    pub outbox: &'a Scheduler,
    pub deadlines: &'a Deadlines,
    pub counters: &'a Counters,
}

/// Sums over the slots, to compare with the counters.
#[derive(Default)]
struct Sums {
    live: u64,
    queued_to_clients: u64,
    sessions: u64,
    requests: u64,
    execs: u32,
    over: u32,
}

fn quarantine(slot: usize) -> Key {
    Key::Slot(slot as u32, SlotDeadline::Quarantine)
}

/// Panics if the core's bookkeeping disagrees with itself: counters equal
/// the sums over slots, the client map and the slots agree, queued bytes
/// equal what is queued, fences stand on departed slots only, every
/// deadline waits on something.
pub(super) fn relay(r: &View<'_>) {
    let queued_to_guest = r.outbox.check();
    if let Some(credit) = r.dialect.credit() {
        credit.check();
    }
    let c = r.counters;
    assert_eq!(
        c.queued_to_guest, queued_to_guest as u64,
        "queued_to_guest counter"
    );
    let sums = slots(r);
    let (seated, waiting) = r.clients.map_sizes();
    assert_eq!(seated + waiting, sums.live as usize, "client map size");
    assert_eq!(c.live_clients, sums.live, "live_clients counter");
    assert_eq!(
        c.queued_to_clients, sums.queued_to_clients,
        "queued_to_clients counter"
    );
    assert_eq!(c.live_sessions, sums.sessions, "live_sessions counter");
    assert_eq!(c.open_requests, sums.requests, "open_requests counter");
    assert_eq!(r.clients.over(), sums.over, "clients over their budget");
    let pause = r.clients.over() > 0 || r.deadlines.get(Key::Global).is_some();
    if !r.guest_gone {
        assert_eq!(
            r.clients.guest_paused(),
            pause,
            "the guest is paused exactly while someone is over budget"
        );
    }
    if r.dialect.exec_limits().is_some() {
        assert_eq!(r.sessions.active_execs(), sums.execs, "active executions");
    }
    fences(r);
    deadlines(r);
    if r.startup.layout().is_none() {
        assert_eq!(r.clients.slots(), 0, "slots before the generation is known");
    }
}

/// One pass over the slots: their sums, their connections, their leases.
fn slots(r: &View<'_>) -> Sums {
    let mut sums = Sums {
        live: r.clients.map_sizes().1 as u64,
        ..Sums::default()
    };
    let mut incarnations = r.dialect.leases().map(|_| Vec::new());
    for i in 0..r.clients.slots() {
        let mut open = 0;
        for corr in r.sessions.of_slot(i) {
            open += 1;
            sums.sessions += u64::from(corr.kind.is_session());
            sums.requests += u64::from(!corr.kind.is_session());
            sums.execs += u32::from(corr.counts);
        }
        assert!(
            open <= r.cfg.current.max_correlations.max(1),
            "slot {i} over the correlation bound"
        );
        let conn = r.clients.conn(i);
        if let Some(conn) = conn {
            check_conn(r, i, conn, &mut sums);
        }
        if let (Some(leases), Some(seen)) = (r.dialect.leases(), &mut incarnations) {
            lease(r, i, leases.of_slot(i), conn.is_some(), seen);
        }
    }
    if let Some(mut seen) = incarnations {
        seen.sort_unstable();
        for pair in seen.windows(2) {
            assert_ne!(
                pair[0].0, pair[1].0,
                "slots {} and {}: an incarnation twice",
                pair[0].1, pair[1].1
            );
        }
    }
    sums
}

/// The client holding slot `i`.
fn check_conn(r: &View<'_>, i: usize, conn: &Conn, sums: &mut Sums) {
    sums.live += 1;
    sums.queued_to_clients += conn.queued as u64;
    assert_eq!(
        r.clients.slot_of(conn.client),
        Some(i),
        "{} holds slot {i} but the client map disagrees",
        conn.client
    );
    assert!(
        r.deadlines.get(quarantine(i)).is_none(),
        "slot {i} is held and quarantined"
    );
    assert!(
        !conn.over || conn.queued > r.cfg.client_soft_budget / 2,
        "grace runs for {} at half its soft budget or less",
        conn.client
    );
    assert!(
        conn.over || conn.queued <= r.cfg.client_soft_budget,
        "{} is over its soft budget without a grace period",
        conn.client
    );
    assert_eq!(
        r.deadlines
            .get(Key::Slot(i as u32, SlotDeadline::Grace))
            .is_some(),
        conn.over,
        "{} is over its budget exactly while its grace runs",
        conn.client
    );
    sums.over += u32::from(conn.over);
}

/// Incarnations of slot `i` (`held` by its live owner, `awaiting` a
/// departed one's ack): held by live owners only, awaited by departed ones
/// only, never zero; gathered in `seen` (with the slot) to find two alike.
fn lease(
    r: &View<'_>,
    i: usize,
    (held, awaiting): (Option<Incarnation>, Option<Incarnation>),
    seated: bool,
    seen: &mut Vec<(Incarnation, usize)>,
) {
    if held.is_some() {
        assert!(seated, "slot {i}: an incarnation without a client");
    }
    if awaiting.is_some() {
        assert!(!seated, "slot {i}: awaits an ack but has a client");
        assert!(
            r.deadlines.get(quarantine(i)).is_none(),
            "slot {i}: leased and timed"
        );
    }
    for inc in held.iter().chain(awaiting.iter()) {
        assert_ne!(*inc, [0; 16], "slot {i}: a zero incarnation");
        seen.push((*inc, i));
    }
}

/// Every armed deadline belongs to state that waits on it.
fn deadlines(r: &View<'_>) {
    for (key, t) in r.deadlines.iter() {
        let ok = match (key, t.timer) {
            (Key::Slot(i, SlotDeadline::Grace), Timer::SlowConsumerGrace(c)) => r
                .clients
                .conn(i as usize)
                .is_some_and(|conn| conn.over && conn.client == c),
            (Key::Slot(i, SlotDeadline::Quarantine), Timer::Quarantine { slot }) => {
                let i = i as usize;
                slot as usize == i && r.clients.conn(i).is_none() && r.sessions.holds(i)
            }
            (Key::Global, Timer::GlobalGrace) => true,
            (Key::Flush(c), Timer::CloseFlush(d)) => c == d && r.flushes.contains(c),
            (Key::Clock, Timer::ClockSync) => r.dialect.syncs_clock() && !r.dialect.clock_queued(),
            _ => false,
        };
        assert!(
            ok,
            "deadline {key:?} at {}: {} waits on nothing",
            t.at, t.timer
        );
    }
    for client in r.flushes.clients() {
        assert!(
            r.deadlines.get(Key::Flush(client)).is_some(),
            "{client} flushes without a deadline"
        );
    }
}

fn fences(r: &View<'_>) {
    for (seq, slot) in r.sessions.fences() {
        assert!(seq <= r.outbox.handed(), "a fence from the future");
        assert!(
            r.clients.conn(slot).is_none(),
            "fence on slot {slot}, which has a client"
        );
    }
}
