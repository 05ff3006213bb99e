//! Rule `input_credit`: with barrier 2 the guest grants control and data
//! credit, absolute and cumulative; a frame leaves only when its class has
//! room for it whole, length prefix included; a grant that would lower any
//! field is ignored and counted; init acks are not charged.

use super::*;

/// A data frame that does not fit waits, whole frames counted with their
/// length prefix; a grant lets it go; a grant that would lower any field is
/// ignored and counted.
#[test]
fn core_current_credit_frames_wait_for_a_grant() {
    let mut h = credited(small());
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    // One frame of exactly the data window's bytes... less what fits.
    let big = stdin(V10, id, &vec![7u8; 3 << 20]);
    let mut sent_bytes = 0;
    while sent(&mut h, 1, &big) {
        sent_bytes += big.len() as u64;
    }
    let c = h.relay.counters().clone();
    assert_eq!(c.used_data_bytes, sent_bytes, "prefix included");
    assert_eq!(c.used_data_frames, sent_bytes / big.len() as u64);
    // Lowering the control grant: ignored, nothing moves.
    let lower = credit(
        V10,
        &grant(
            (CONTROL_BYTES - 1, CONTROL_FRAMES),
            (DATA_BYTES * 4, DATA_FRAMES * 4),
        ),
    );
    assert!(to_guest(&h.guest(&lower)).is_empty());
    assert_eq!(h.relay.counters().grants_ignored, 1);
    let more = credit(
        V10,
        &grant(
            (CONTROL_BYTES, CONTROL_FRAMES),
            (DATA_BYTES * 4, DATA_FRAMES * 4),
        ),
    );
    let acts = h.guest(&more);
    assert_eq!(
        to_guest(&acts),
        vec![big.clone()],
        "the waiting frame, once"
    );
    assert_eq!(h.relay.counters().credit_data_bytes, DATA_BYTES * 4);
}

/// The time a client's data waits for credit is counted per class: from the
/// event that found it blocked to the grant that let it go.
#[test]
fn core_current_credit_wait_counted_per_class() {
    let mut h = credited(small());
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    let big = stdin(V10, id, &vec![7u8; 3 << 20]);
    h.now = 1_000;
    while sent(&mut h, 1, &big) {}
    h.now = 1_250;
    h.ev(Event::Tick);
    let data = |n| (DATA_BYTES * n, DATA_FRAMES * n);
    let more = credit(V10, &grant((CONTROL_BYTES, CONTROL_FRAMES), data(4)));
    assert_eq!(to_guest(&h.guest(&more)), vec![big.clone()]);
    let c = h.relay.counters();
    assert_eq!(c.credit_blocked_data_ms, 250);
    assert_eq!(c.credit_blocked_control_ms, 0);
    // Then control alone: signals past the control grant.
    h.now = 2_000;
    let kill = signal(V10, id, 9);
    while sent(&mut h, 1, &kill) {}
    h.now = 2_150;
    let more = credit(V10, &grant((CONTROL_BYTES, CONTROL_FRAMES * 2), data(4)));
    assert_eq!(to_guest(&h.guest(&more)), vec![kill.clone()]);
    let c = h.relay.counters();
    assert_eq!(c.credit_blocked_data_ms, 250);
    assert_eq!(c.credit_blocked_control_ms, 150);
}

/// An init ack still waiting for room in the guest window when ready
/// arrives is not charged either when it leaves (0.7.13 agentd sends one
/// init frame and waits for its ack, so only a guest with more init frames
/// than that, or a full window, gets here; the campaign cannot reach it).
#[test]
fn core_current_init_ack_left_after_ready_uncharged() {
    let mut h = Harness::new(Config {
        guest_window: 1,
        ..Config::current()
    });
    let mut boot = init_resolved(V10).to_vec();
    boot.extend_from_slice(&init_resolved(V10));
    boot.extend_from_slice(&ready_current(V10, 1, Some(2), None));
    let ack = frame(V10, MsgType::InitAck, 0, &InitAck { failure: false });
    assert_eq!(to_guest(&h.guest(&boot)), vec![ack.clone()], "one ack fits");
    let acts = h.ev(Event::GuestWritten(ack.len()));
    assert_eq!(to_guest(&acts), vec![ack], "the second, after ready");
    let c = h.relay.counters();
    assert_eq!(c.init_acks, 2);
    assert_eq!((c.used_control_bytes, c.used_control_frames), (0, 0));
}

/// The init ack before ready is not charged; the clock sync at ready is.
#[test]
fn core_current_init_ack_uncharged_clock_charged() {
    let mut h = Harness::new(Config::current());
    h.guest(&init_resolved(V10));
    h.ev(Event::WallClock(1_700_000_000_000_000_000));
    h.guest(&ready_current(V10, 1, Some(2), None));
    let c = h.relay.counters();
    assert_eq!((c.init_acks, c.clock_syncs), (1, 1));
    assert_eq!(c.used_control_frames, 1, "the clock sync only");
}
