//! Rule `exec_limit`: with `Ready.exec_limits`, an exec request of
//! generation 10 or later past `max_executions` open sandbox-wide is
//! answered by the relay with a terminal `core.exec.failed` and never
//! forwarded. (With leases, a departed client's killed executions count
//! until the guest's ack: `range_leases`.)

use super::*;

/// With `Ready.exec_limits`, a request past `max_executions` open
/// sandbox-wide is answered by the relay and never reaches the guest.
#[test]
fn core_current_exec_limit_refused_by_the_relay() {
    let limits = ExecLimits {
        max_executions: 1,
        ..ExecLimits::default()
    };
    let mut h = Harness::current(
        Config {
            exec_log: false,
            ..small()
        },
        &ready_current(V10, 1, None, Some(limits)),
    );
    h.connect(1);
    h.connect(2);
    h.client(1, &exec_request(V10, cid(0), false, 0));
    let frames_in = h.relay.counters().client_frames_in;
    let acts = h.client(2, &exec_request(V10, cid(1), false, 0));
    assert!(to_guest(&acts).is_empty());
    assert_eq!(
        h.relay.counters().client_frames_in,
        frames_in + 1,
        "counted"
    );
    let refused = match &to_client(&acts, 2)[..] {
        [f] => f.clone(),
        other => panic!("{other:?}"),
    };
    let env = agent_relay::wire::peek_parts(&refused[9..]).unwrap();
    assert_eq!(
        (env.v, env.t, refused[8]),
        (10, Some(MsgType::ExecFailed), 1)
    );
    let failed: agent_relay::wire::payload::ExecFailed =
        agent_relay::wire::payload::decode_payload(&env.payload).unwrap();
    assert_eq!(failed.message, "active execution limit reached");
    assert_eq!(h.relay.counters().execs_refused, 1);
    // The first ends; the next request goes through.
    h.guest(&exited(V10, cid(0), 0));
    assert!(sent(&mut h, 2, &exec_request(V10, cid(1) + 1, false, 0)));
}
