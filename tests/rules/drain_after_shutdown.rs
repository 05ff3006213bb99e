//! Rule `drain_after_shutdown`: `Drain` follows the `core.shutdown` frame's
//! own `ToGuest`.

use super::*;

#[test]
fn core_shutdown_emits_drain_after_frame() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let frame = shutdown(g.v(), g.id(0, 9));
        let want = [
            Action::ToGuest {
                frame: frame.clone(),
            },
            Action::Drain,
        ];
        h.expect(Event::ClientBytes(ClientId(1), &frame), &want);
    });
}

#[test]
fn core_shutdown_waits_for_guest_window_before_drain() {
    each_gen(|g| {
        let mut h = window_full(g, None);
        let frame = shutdown(g.v(), g.id(0, 9));
        // No drain while its frame waits for room.
        h.expect(Event::ClientBytes(ClientId(1), &frame), &[]);
        h.expect(
            Event::GuestWritten(1 << 20),
            &[Action::ToGuest { frame }, Action::Drain],
        );
    });
}
