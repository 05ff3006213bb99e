//! Rule `drain_after_shutdown`: a `core.shutdown` frame yields `Drain` once it
//! is handed to the guest.

use super::*;

#[test]
fn core_shutdown_emits_drain_after_frame() {
    let mut h = one_client();
    let frame = shutdown(V1, 9);
    let want = [
        Action::ToGuest {
            frame: frame.clone(),
        },
        Action::Drain,
    ];
    h.expect(Event::ClientBytes(ClientId(1), &frame), &want);
}

#[test]
fn core_shutdown_waits_for_guest_window_before_drain() {
    let mut h = window_full(None);
    // No drain while its frame waits for room.
    h.expect(Event::ClientBytes(ClientId(1), &shutdown(V1, 9)), &[]);
    h.expect(
        Event::GuestWritten(1 << 20),
        &[
            Action::ToGuest {
                frame: shutdown(V1, 9),
            },
            Action::Drain,
        ],
    );
}
