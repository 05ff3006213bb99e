//! Rule `bootstrap_first`: with `CurrentSettings::bootstrap` the `core.bootstrap`
//! frame is the first thing handed to the guest, outside credit. A current
//! generation guest's (0.7.13 agentd waits for it). (Its encoding against
//! 0.7.13: `tests/wire_compat_current.rs`; the real agentd:
//! `tests/real_agentd.rs`, `tests/agentd_relay.rs`.)

use super::*;

#[test]
fn core_current_bootstrap_is_the_guests_first_frame_outside_credit() {
    let boot = named(V10, "core.bootstrap", 0, 0, &[0xa0]);
    let mut h = Harness::new(Config {
        current: CurrentSettings {
            bootstrap: Some(boot.clone()),
            ..CurrentSettings::default()
        },
        ..Config::current()
    });
    // Before the guest said anything, and before a client that came first.
    let acts = h.connect(1);
    assert_eq!(acts, [Action::ToGuest { frame: boot }]);
    h.ev(Event::WallClock(1_700_000_000_000_000_000));
    let ack = frame(V10, MsgType::InitAck, 0, &InitAck { failure: false });
    assert_eq!(to_guest(&h.guest(&init_resolved(V10))), [ack]);
    h.guest(&ready_current(V10, 1, Some(2), None));
    let c = h.relay.counters();
    assert_eq!(c.clock_syncs, 1);
    assert_eq!(c.used_control_frames, 1, "the clock sync only");
}
