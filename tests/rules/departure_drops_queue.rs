//! Rule `departure_drops_queue`: in the current generation a departed
//! client's frames still in its slot's queue are dropped with its data
//! (counted), so a stream's close never reaches the guest without the data
//! it closes, nor after the notice.

use super::*;

/// Regression (simulator seed 0x26): a departed client's control frame that
/// waited behind its own stream's data (here a tcp close) is dropped with
/// that data; nothing of the client reaches the guest after its disconnect
/// notice.
#[test]
fn core_current_departure_drops_what_waited_behind_its_data() {
    let mut h = Harness::current(
        Config {
            exec_log: false,
            guest_window: 1,
            current: CurrentSettings {
                clock_sync: false,
                ..CurrentSettings::default()
            },
            ..small()
        },
        &ready_current(V10, 1, None, None),
    );
    h.connect(1);
    let t = cid(0);
    let connect = empty(V10, MsgType::TcpConnect, t);
    let first = to_guest(&h.client(1, &connect));
    assert_eq!(first, vec![connect], "it fills the window");
    h.client(1, &data(V10, MsgType::TcpData, t, b"bytes"));
    h.client(1, &named(V10, "core.tcp.close", t, 0, &[0xa0])); // behind its own data
    h.disconnect(1);
    assert_eq!(
        to_guest(&h.drive()),
        vec![client_disconnected(V10, crange(0))]
    );
    assert_eq!(h.relay.counters().departed_frames_dropped, 2);
}
