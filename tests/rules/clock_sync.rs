//! Rule `clock_sync`: in the current generation `core.clock.sync` goes to
//! the guest at ready, at least every `clock_period`, and after the host's
//! wall clock jumped 6 s or more ahead or stepped back; the time is the wall
//! time at hand-off. Never in the legacy generation.

use super::*;

/// A sync that waited keeps the length it was queued (and charged) with:
/// when the time it would carry at hand-off takes more bytes (here it
/// crosses 2^32 ns), the queued frame goes as it was built.
#[test]
fn core_current_clock_sync_keeps_its_queued_length() {
    const EDGE: u64 = 1 << 32;
    let mut h = Harness::new(Config {
        guest_window: 1,
        ..Config::current()
    });
    h.ev(Event::WallClock(10_000_000_000));
    h.guest(&ready_current(V10, 1, None, None));
    // The first sync fills the window; a step back queues another.
    h.now = 1;
    let acts = h.ev(Event::WallClock(EDGE - 500_000));
    assert!(syncs(&acts).is_empty(), "waits for the window");
    h.now = 2;
    let acts = h.ev(Event::GuestWritten(usize::MAX));
    assert_eq!(
        syncs(&acts),
        [EDGE - 500_000],
        "as queued, not {}",
        EDGE + 500_000
    );
}

fn syncs(acts: &[Action]) -> Vec<u64> {
    to_guest(acts)
        .iter()
        .filter_map(|f| {
            let env = agent_relay::wire::peek_envelope(&f[9..]).ok()?;
            (env.t == MsgType::ClockSync).then(|| {
                let s: agent_relay::wire::payload::ClockSync =
                    agent_relay::wire::payload::decode_payload(&env.payload).unwrap();
                s.unix_time_nanos
            })
        })
        .collect()
}

/// `core.clock.sync` at ready, at the period, and after a jump; the
/// timestamp is the wall time at hand-off. Never in the legacy generation.
#[test]
fn core_current_clock_sync_at_ready_period_and_jump() {
    const T0: u64 = 1_700_000_000_000_000_000;
    let mut h = Harness::new(Config::current());
    h.ev(Event::WallClock(T0));
    let acts = h.guest(&ready_current(V10, 1, None, None));
    assert_eq!(syncs(&acts), [T0]);
    let t = h.relay.poll_timeout().unwrap();
    assert_eq!((t.timer, t.at), (Timer::ClockSync, 60_000));
    h.now = 60_000;
    let acts = h.ev(Event::Tick);
    assert_eq!(syncs(&acts), [T0 + 60_000_000_000], "extrapolated");
    h.now = 61_000;
    let acts = h.ev(Event::WallClock(T0 + 61_000_000_000));
    assert!(syncs(&acts).is_empty(), "in step: no jump");
    let acts = h.ev(Event::WallClock(T0 + 50_000_000_000));
    assert_eq!(syncs(&acts), [T0 + 50_000_000_000], "a step back");
    h.now = 62_000;
    let acts = h.ev(Event::WallClock(T0 + 58_000_000_000));
    assert_eq!(syncs(&acts), [T0 + 58_000_000_000], "6 s ahead");
    // Legacy: none, and no timer.
    let mut h = Harness::new(Config::legacy());
    h.ev(Event::WallClock(T0));
    assert!(syncs(&h.guest(&ready(V1, 1))).is_empty());
    assert_eq!(h.relay.poll_timeout(), None);
}
