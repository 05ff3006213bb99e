//! Rule `correlations_bounded`: in the current generation a client frame on
//! an id with nothing open opens a request that the guest's terminal reply
//! ends; a client keeps at most `max_correlations` open, the oldest request
//! forgotten (and counted) past it; more sessions than that at once is a
//! violation.

use super::*;

/// Past `max_correlations` the oldest request is forgotten (and its late
/// reply dropped), never the client closed; more sessions than that at once
/// is a violation.
#[test]
fn core_current_correlations_bounded_oldest_request_evicted() {
    let cfg = Config {
        current: CurrentSettings {
            max_correlations: 3,
            ..CurrentSettings::default()
        },
        ..small()
    };
    let mut h = Harness::current(cfg, &ready_current(V10, 1, None, None));
    h.connect(1);
    let id = |k: u32| cid(0) + k;
    for k in 0..4 {
        h.client(1, &empty(V10, MsgType::Ping, id(k)));
    }
    assert_eq!(h.relay.counters().correlations_evicted, 1);
    h.expect(Event::GuestBytes(&empty(V10, MsgType::Pong, id(0))), &[]);
    h.expect(
        Event::GuestBytes(&empty(V10, MsgType::Pong, id(3))),
        &[to(1, empty(V10, MsgType::Pong, id(3)))],
    );
    for k in 10..13 {
        h.client(1, &exec_request(V10, id(k), false, 0));
    }
    let acts = h.client(1, &exec_request(V10, id(13), false, 0));
    assert_eq!(
        violation(&acts, 1),
        Some(Violation::TooManyCorrelations { id: id(13), max: 3 })
    );
}
