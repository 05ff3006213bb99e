//! Rule `init_before_ready`: before ready a generation-2-or-later guest's
//! `core.init.resolved` is answered with `core.init.ack {}` and its
//! initialization failure with `{failure: true}` and a start-up failure; a
//! generation-1 guest's init frames are dropped; every other frame before
//! ready is counted and dropped; a guest of the other generation than
//! configured, a credit contract other than 2 or unusable exec limits is a
//! start-up failure.

use super::*;

/// `core.init.resolved` is answered with `core.init.ack {}` in the guest's
/// own generation, in every configuration, before any credit exists.
#[test]
fn core_init_resolved_answered_in_every_mode() {
    for protocol in [Protocol::Legacy, Protocol::Current, Protocol::Auto] {
        let mut h = Harness::new(Config {
            protocol,
            ..small()
        });
        let ack = frame(V10, MsgType::InitAck, 0, &InitAck { failure: false });
        h.expect(
            Event::GuestBytes(&init_resolved(V10)),
            &[Action::ToGuest { frame: ack }],
        );
        assert_eq!(h.relay.counters().init_acks, 1, "{protocol}");
        assert_eq!(h.relay.counters().used_control_frames, 0, "not charged");
    }
}

/// A generation-1 guest has no init exchange: its `core.init.resolved` (or
/// init failure) is not answered, since a 0.4.4 guest could not read the
/// `core.init.ack` and would end its loop (found by the fuzz smoke's
/// `core_events`, input `regression-init-ack-to-v1`).
#[test]
fn core_init_frames_of_a_generation_1_guest_unanswered() {
    for protocol in [Protocol::Legacy, Protocol::Auto] {
        let mut h = Harness::new(Config {
            protocol,
            ..small()
        });
        h.expect(Event::GuestBytes(&init_resolved(V1)), &[]);
        h.expect(Event::GuestBytes(&init_failed(V1, "no")), &[]);
        assert_eq!(h.relay.counters().init_acks, 0, "{protocol}");
        assert_eq!(h.relay.counters().guest_frames_before_ready, 2);
    }
}

/// The guest's initialization failure: acknowledged with `failure: true`,
/// reported as a start-up failure with the guest's words; whoever waits is
/// refused, and so is every later client.
#[test]
fn core_init_failure_acknowledged_and_reported() {
    let mut h = Harness::new(small());
    h.connect(1);
    let ack = frame(V10, MsgType::InitAck, 0, &InitAck { failure: true });
    let why = StartupFailure::GuestInit {
        message: "user nobody2 not found".into(),
    };
    h.expect(
        Event::GuestBytes(&init_failed(V10, "user nobody2 not found")),
        &[
            Action::ToGuest { frame: ack },
            Action::StartupFailed(why),
            Action::Refuse {
                client: ClientId(1),
                reason: RefuseReason::StartupFailed,
            },
        ],
    );
    let refused = Action::Refuse {
        client: ClientId(2),
        reason: RefuseReason::StartupFailed,
    };
    h.expect(Event::ClientConnected(ClientId(2)), &[refused]);
    assert_eq!(h.relay.counters().init_failures, 1);
    assert_eq!(h.relay.counters().live_clients, 0);
}

/// The same with the generation configured: the client that connected
/// before the failure holds a slot (its handshake waits for ready), and is
/// refused and uncounted all the same.
#[test]
fn core_init_failure_refuses_clients_holding_a_slot() {
    let mut h = Harness::new(Config {
        exec_log: false,
        ..Config::current()
    });
    h.expect(Event::ClientConnected(ClientId(1)), &[]);
    assert_eq!(h.relay.counters().live_clients, 1);
    let acts = h.guest(&init_failed(V10, "no such user"));
    assert!(acts.contains(&Action::Refuse {
        client: ClientId(1),
        reason: RefuseReason::StartupFailed,
    }));
    assert_eq!(h.relay.counters().live_clients, 0);
}

#[test]
fn core_unknown_barrier_version_is_a_startup_failure() {
    let mut h = Harness::new(small());
    let acts = h.guest(&ready_current(V10, 1, Some(3), None));
    assert_eq!(
        acts,
        [Action::StartupFailed(StartupFailure::UnsupportedBarrier {
            version: 3
        })]
    );
    assert!(!h.relay.is_ready());
}

#[test]
fn core_unusable_exec_limits_are_a_startup_failure() {
    let mut h = Harness::new(small());
    let limits = ExecLimits {
        max_executions: 0,
        ..ExecLimits::default()
    };
    let acts = h.guest(&ready_current(V10, 1, Some(2), Some(limits)));
    assert!(
        matches!(
            acts[..],
            [Action::StartupFailed(StartupFailure::BadExecLimits { .. })]
        ),
        "{acts:?}"
    );
}

/// A ready refused for its exec limits switches nothing of its own on: no
/// input credit is granted (published) and no lease record is read after it,
/// though it offered barrier 2 and range leases.
#[test]
fn core_unusable_exec_limits_leave_no_credit_or_leases_behind() {
    let mut h = Harness::new(small());
    let limits = ExecLimits {
        max_executions: 0,
        ..ExecLimits::default()
    };
    let acts = h.guest(&ready_offering(V10, 1, Some(2), Some(limits), Some(1)));
    assert!(
        matches!(
            acts[..],
            [Action::StartupFailed(StartupFailure::BadExecLimits { .. })]
        ),
        "{acts:?}"
    );
    let c = h.relay.counters();
    assert_eq!(
        (c.credit_control_bytes, c.credit_data_bytes),
        (0, 0),
        "credit granted by a refused ready"
    );
    let ack = lease_record(
        agent_relay::wire::lease::LeaseEvent::DisconnectedAck,
        agent_relay::core::IdRange::current(0),
        [9; 16],
    );
    h.guest(&ack);
    let c = h.relay.counters();
    assert_eq!(
        (c.lease_acks, c.lease_acks_ignored),
        (0, 0),
        "a lease record read after a refused ready"
    );
}

/// A configured generation the guest does not speak is refused up front.
#[test]
fn core_generation_mismatch_is_a_startup_failure() {
    let mut h = Harness::new(Config::legacy());
    let acts = h.guest(&ready_current(V10, 1, None, None));
    let why = StartupFailure::GenerationMismatch {
        configured: Protocol::Legacy,
        guest: 10,
    };
    assert_eq!(acts, [Action::StartupFailed(why)]);
    let mut h = Harness::new(Config::current());
    let acts = h.guest(&ready(V1, 1));
    let why = StartupFailure::GenerationMismatch {
        configured: Protocol::Current,
        guest: 1,
    };
    assert_eq!(acts, [Action::StartupFailed(why)]);
}

/// Every frame before ready other than the init exchange is counted and
/// dropped.
#[test]
fn core_current_frames_before_ready_dropped() {
    let mut h = Harness::new(Config::current());
    h.expect(Event::GuestBytes(&stdout(V10, cid(0), b"early")), &[]);
    h.expect(Event::GuestBytes(&empty(V10, MsgType::Pong, 5)), &[]);
    assert_eq!(h.relay.counters().guest_frames_before_ready, 2);
}
