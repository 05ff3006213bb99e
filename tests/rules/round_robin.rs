//! Rule `round_robin`: queued data frames leave one per slot in turn (the
//! simulator checks it on every run as `inv_fairness`).

use super::*;

/// Three clients queue three frames each behind a full guest window: they
/// leave one per client, in turn.
#[test]
fn core_queued_data_leaves_one_frame_per_slot_in_turn() {
    each_gen(|g| {
        let v = g.v();
        let mut h = window_full(g, None);
        h.connect(2);
        h.connect(3);
        let f = |s: u32, k: u32| stdin(v, g.id(s, 1), &[b'0' + k as u8]);
        for s in 0..3 {
            for k in 0..3 {
                h.client(u64::from(s) + 1, &f(s, k));
            }
        }
        let mut sent = Vec::new();
        for _ in 0..9 {
            sent.extend(to_guest(&h.ev(Event::GuestWritten(1 << 20))));
        }
        // Slot 0 sent last (the frame that fills the window): the turn
        // passes to slot 1, then 2, then back to 0.
        let want: Vec<Bytes> = (0..3).flat_map(|k| [1, 2, 0].map(|s| f(s, k))).collect();
        assert_eq!(sent, want);
    });
}

/// A client paused at its bound toward the guest is resumed, and its
/// frames never hold up another client's: they alternate.
#[test]
fn core_client_paused_at_bound_and_resumed_fairly() {
    each_gen(|g| {
        let v = g.v();
        let cfg = Config {
            client_to_guest_cap: 100,
            guest_window: 1,
            ..small()
        };
        let mut h = g.harness(cfg);
        h.connect(1);
        h.connect(2);
        let (a, b) = (g.id(0, 1), g.id(1, 1));
        // Fill the window, then queue past the bound for client 1.
        h.client(1, &stdin(v, a, b"w"));
        let mut paused = false;
        for _ in 0..5 {
            let acts = h.client(1, &stdin(v, a, &[b'a'; 40]));
            paused |= acts.contains(&Action::PauseClient(ClientId(1)));
        }
        assert!(paused);
        h.client(2, &stdin(v, b, b"b1"));
        h.client(2, &stdin(v, b, b"b2"));
        // Round robin: client 2's frames are not stuck behind all of client 1's.
        let mut order = Vec::new();
        let mut resumed = false;
        for _ in 0..10 {
            let acts = h.ev(Event::GuestWritten(1 << 20));
            resumed |= acts.contains(&Action::ResumeClient(ClientId(1)));
            order.extend(
                to_guest(&acts)
                    .into_iter()
                    .map(|f| f[4..8] == b.to_be_bytes()),
            );
        }
        assert!(resumed);
        assert_eq!(order, vec![true, false, true, false, false, false, false]);
    });
}
