//! Rule `backpressure_not_loss`: toward the guest nothing is dropped: at
//! most `guest_window` bytes in flight; a client with more than
//! `client_to_guest_cap` queued is paused, resumed at half.

use super::*;

/// Reading a client pauses only once its frames toward the guest exceed
/// the bound, not when they reach it exactly.
#[test]
fn core_pause_bound_is_inclusive() {
    each_gen(|g| {
        let f = stdin(g.v(), g.id(0, 1), b"queued");
        let mut h = window_full(g, Some(2 * f.len()));
        assert!(!h.client(1, &f).contains(&Action::PauseClient(ClientId(1))));
        assert!(!h.client(1, &f).contains(&Action::PauseClient(ClientId(1))));
        assert!(h.client(1, &f).contains(&Action::PauseClient(ClientId(1))));
    });
}

/// A paused client is read again as soon as its queue toward the guest is
/// down to half the bound; every frame it sent arrives, in order.
#[test]
fn core_resume_at_half_the_bound() {
    each_gen(|g| {
        let f = stdin(g.v(), g.id(0, 1), b"0123456789");
        let mut h = window_full(g, Some(4 * f.len()));
        let mut paused = false;
        for _ in 0..5 {
            paused |= h.client(1, &f).contains(&Action::PauseClient(ClientId(1)));
        }
        assert!(paused);
        // Five queued; each GuestWritten lets one leave. 5 -> 4 -> 3 -> 2 (half).
        let mut sent = Vec::new();
        for left in [4, 3] {
            let acts = h.ev(Event::GuestWritten(1 << 20));
            assert!(
                !acts.contains(&Action::ResumeClient(ClientId(1))),
                "{left} queued"
            );
            sent.extend(to_guest(&acts));
        }
        let acts = h.ev(Event::GuestWritten(1 << 20));
        assert!(acts.contains(&Action::ResumeClient(ClientId(1))));
        sent.extend(to_guest(&acts));
        sent.extend(to_guest(&h.drive()));
        assert_eq!(sent, vec![f; 5], "nothing dropped");
    });
}
