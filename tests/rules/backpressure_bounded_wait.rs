//! Rule `backpressure_bounded_wait`: a client that keeps reading never
//! loses output; one that stops costs the others at most one grace period;
//! memory stays within the caps (soft budget, guest pause, grace, hard cap,
//! global cap; a queued frame pins only its own bytes).

use super::*;

#[test]
fn core_slow_consumer_closed_at_grace_deadline() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, budget_cfg()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        h.guest(&stdout(v, id, &[b'x'; 1_200]));
        let timeout = h.relay.poll_timeout().expect("grace timer armed");
        assert_eq!(timeout.timer, Timer::SlowConsumerGrace(ClientId(1)));
        let deadline = timeout.at;
        h.now = deadline - 1;
        assert!(h.ev(Event::Tick).is_empty());
        h.now = deadline;
        let acts = h.ev(Event::Tick);
        assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::Grace));
        let mut want = vec![kill(v, id)];
        want.extend(g.after_kills(0));
        assert_eq!(to_guest(&acts), want);
        assert_eq!(h.relay.counters().slow_consumer_closes, 1);
    });
}

/// Progress is taking the queue down to half the soft budget. Over budget
/// the guest is not read; reading a little (a trickle) neither restarts
/// the grace period nor resumes the guest; down to half the budget the
/// client is no longer over: its grace ends and the guest is read again.
#[test]
fn core_progress_is_draining_to_half_the_budget() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, budget_cfg()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let acts = h.guest(&stdout(v, id, &[b'x'; 3_000]));
        assert!(acts.contains(&Action::PauseGuest), "{acts:?}");
        let grace = Some(Timeout {
            at: 100,
            timer: Timer::SlowConsumerGrace(ClientId(1)),
        });
        assert_eq!(h.relay.poll_timeout(), grace);
        h.now = 90;
        let acts = h.ev(Event::ClientWritten(ClientId(1), 100));
        assert!(acts.is_empty(), "a trickle resumes nothing: {acts:?}");
        assert_eq!(h.relay.poll_timeout(), grace, "nor restarts the grace");
        let queued = h.relay.client_queued(ClientId(1)).unwrap();
        let acts = h.ev(Event::ClientWritten(ClientId(1), queued - 500));
        assert_eq!(acts, vec![Action::ResumeGuest]);
        assert_eq!(h.relay.poll_timeout(), None);
        h.now = 100;
        assert!(closed(&h.ev(Event::Tick), 1).is_none());
        assert_eq!(h.relay.counters().guest_pauses, 1);
        assert_eq!(h.relay.counters().guest_paused_ms, 90);
    });
}

/// A trickle is closed at the end of its grace period, and the guest is
/// read again: the stalled client held the others up for one grace period.
#[test]
fn core_trickle_closed_after_one_grace_period() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, budget_cfg()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        h.guest(&stdout(v, id, &[b'x'; 3_000]));
        for t in 1..10 {
            h.now = t * 10;
            h.ev(Event::ClientWritten(ClientId(1), 50));
        }
        h.now = 100;
        let acts = h.ev(Event::Tick);
        assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::Grace));
        assert!(acts.contains(&Action::ResumeGuest), "{acts:?}");
    });
}

#[test]
fn core_hard_cap_closes_at_once() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, budget_cfg()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let mut closed_at = None;
        for i in 0..20 {
            let acts = h.guest(&stdout(v, id, &[b'x'; 900]));
            if closed(&acts, 1).is_some() {
                closed_at = Some(i);
                break;
            }
            assert!(h.relay.client_queued(ClientId(1)).unwrap() <= 10_000);
        }
        assert!(closed_at.is_some());
    });
}

#[test]
fn core_global_cap_closes_biggest_holder() {
    each_gen(|g| {
        let v = g.v();
        let mut h = g.harness(budget_cfg());
        for c in 0..3u32 {
            h.connect(u64::from(c));
            h.client(u64::from(c), &exec_request(v, g.id(c, 1), false, 0));
        }
        // Client 0 holds 8 KB, client 1 holds 5 KB; client 2's frame
        // crosses 15 KB.
        h.guest(&stdout(v, g.id(0, 1), &[b'x'; 8_000]));
        h.guest(&stdout(v, g.id(1, 1), &[b'x'; 5_000]));
        let acts = h.guest(&stdout(v, g.id(2, 1), &[b'x'; 2_500]));
        assert_eq!(slow_limit(&acts, 0), Some(SlowLimit::GlobalCap), "{acts:?}");
        assert_eq!(
            to_client(&acts, 2).len(),
            1,
            "the sender's frame still delivered"
        );
        assert!(h.relay.counters().queued_to_clients <= 15_000);
    });
}

/// All clients together over half the global cap pause the guest though
/// none is over its own budget; the sum has a grace period of its own to
/// fall to a quarter of the cap, after which the client holding the most
/// is closed and the guest read again.
#[test]
fn core_global_mark_pauses_the_guest_then_closes_the_biggest() {
    each_gen(|g| {
        let v = g.v();
        let cfg = Config {
            client_soft_budget: 6_000,
            client_hard_cap: 10_000,
            global_cap: 20_000,
            grace: 100,
            ..Config::default()
        };
        let mut h = g.harness(cfg);
        for c in 0..3u32 {
            h.connect(u64::from(c));
            h.client(u64::from(c), &exec_request(v, g.id(c, 1), false, 0));
        }
        h.guest(&stdout(v, g.id(0, 1), &[b'x'; 5_000]));
        let acts = h.guest(&stdout(v, g.id(1, 1), &[b'x'; 4_000]));
        assert!(!acts.contains(&Action::PauseGuest), "9 KB of 20: {acts:?}");
        let acts = h.guest(&stdout(v, g.id(2, 1), &[b'x'; 2_000]));
        assert!(acts.contains(&Action::PauseGuest), "over 10 KB: {acts:?}");
        let t = h.relay.poll_timeout().expect("the sum's grace");
        assert_eq!(
            t,
            Timeout {
                at: 100,
                timer: Timer::GlobalGrace
            }
        );
        h.ev(Event::ClientWritten(ClientId(1), 3_000));
        assert_eq!(h.relay.poll_timeout(), Some(t), "8 KB is not down to 5");
        h.now = 100;
        let acts = h.ev(Event::Tick);
        assert_eq!(slow_limit(&acts, 0), Some(SlowLimit::GlobalCap), "{acts:?}");
        assert!(acts.contains(&Action::ResumeGuest), "{acts:?}");
        let next = h.relay.poll_timeout().map(|t| t.timer);
        assert_eq!(next, Some(Timer::Quarantine { slot: 0 }), "no grace runs");
    });
}

/// Budgets are inclusive: a client may hold exactly its soft budget (no
/// grace period, the guest still read) and exactly its hard cap; one byte
/// more over the soft budget starts its grace and stops guest reads, one
/// more over the hard cap closes it. The global cap is inclusive too: the
/// frame that would pass it closes the client holding the most.
#[test]
fn core_budgets_are_inclusive_limits() {
    each_gen(|g| {
        let v = g.v();
        let handshake = g.handshake_len();
        let f = stdout(v, g.id(0, 1), b"x");
        let cfg = Config {
            client_soft_budget: handshake + f.len(),
            client_hard_cap: handshake + 2 * f.len(),
            global_cap: 1 << 20,
            ..small()
        };
        let mut h = g.harness(cfg);
        h.connect(1);
        h.client(1, &exec_request(v, g.id(0, 1), false, 0));
        let acts = h.guest(&f);
        assert!(
            !acts.contains(&Action::PauseGuest),
            "at the soft budget: {acts:?}"
        );
        assert_eq!(
            h.relay.poll_timeout(),
            None,
            "at the soft budget, not over it"
        );
        let acts = h.guest(&f);
        assert!(closed(&acts, 1).is_none(), "at the hard cap, not over it");
        assert!(
            acts.contains(&Action::PauseGuest),
            "over the soft budget: {acts:?}"
        );
        let t = h.relay.poll_timeout().expect("over the soft budget");
        assert_eq!(t.timer, Timer::SlowConsumerGrace(ClientId(1)));
        let acts = h.guest(&f);
        assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::HardCap));
        assert!(acts.contains(&Action::ResumeGuest), "nobody over: {acts:?}");

        let cfg = Config {
            client_soft_budget: 1 << 20,
            client_hard_cap: 1 << 20,
            global_cap: 2 * handshake + 3 * f.len(),
            ..small()
        };
        let mut h = g.harness(cfg);
        h.connect(1);
        h.connect(2);
        h.client(1, &exec_request(v, g.id(0, 1), false, 0));
        h.client(2, &exec_request(v, g.id(1, 1), false, 0));
        h.guest(&f);
        h.guest(&f);
        let other = stdout(v, g.id(1, 1), b"x");
        let acts = h.guest(&other);
        assert!(
            closed(&acts, 1).is_none() && closed(&acts, 2).is_none(),
            "at the global cap"
        );
        let acts = h.guest(&other);
        assert_eq!(slow_limit(&acts, 1), Some(SlowLimit::GlobalCap), "{acts:?}");
        assert!(closed(&acts, 2).is_none());
    });
}

/// A write report of zero bytes is no progress: the grace period keeps
/// running.
#[test]
fn core_zero_byte_write_is_not_progress() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, budget_cfg()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        h.guest(&stdout(v, id, &[b'x'; 3_000]));
        let deadline = h.relay.poll_timeout().expect("grace timer armed").at;
        h.now = deadline - 10;
        h.ev(Event::ClientWritten(ClientId(1), 0));
        assert_eq!(h.relay.poll_timeout().map(|t| t.at), Some(deadline));
        h.now = deadline;
        assert!(closed(&h.ev(Event::Tick), 1).is_some());
    });
}

/// A frame queued for a client holds only its own bytes: small frames are
/// copied out of the read they arrived in, so a slow client's queue of
/// small frames can never keep whole read buffers alive (memory stays
/// within the byte budgets). Large frames are not copied again.
#[test]
fn core_queued_frames_pin_only_their_own_bytes() {
    each_gen(|g| {
        let v = g.v();
        let mut h = two_clients(g);
        h.client(1, &exec_request(v, g.id(0, 1), false, 0));
        h.client(2, &exec_request(v, g.id(1, 1), false, 0));
        let mut chunk = Vec::new();
        for i in 0..4u32 {
            chunk.extend_from_slice(&stdout(v, g.id(i % 2, 1), b"small"));
        }
        // A partial frame at the end goes through the decoder; finish it next.
        let tail = stdout(v, g.id(0, 1), b"tail");
        chunk.extend_from_slice(&tail[..6]);
        let mut acts = h.guest(&chunk);
        acts.extend(h.guest(&tail[6..]));
        let frames: Vec<_> = acts
            .iter()
            .filter_map(|a| match a {
                Action::ToClient { frame, .. } => Some(frame.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 5);
        for pair in frames.windows(2) {
            let end_of_first = pair[0].as_ptr() as usize + pair[0].len();
            assert_ne!(
                end_of_first,
                pair[1].as_ptr() as usize,
                "adjacent frames share one read buffer"
            );
        }
        // Every byte of the read was copied once, into the frames themselves.
        let chunk_range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        assert!(
            frames
                .iter()
                .all(|f| !chunk_range.contains(&(f.as_ptr() as usize)))
        );
    });
}

/// Frames completed inside the decoder (they straddled reads) are copied
/// out of it too, so they pin no shared buffer either.
#[test]
fn core_straddling_frames_copied_out_of_the_decoder() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let mut stream = Vec::new();
        for part in [&b"a"[..], b"b", b"c"] {
            stream.extend_from_slice(&stdout(v, id, part));
        }
        // The first read ends inside the first frame: all three finish in
        // the decoder.
        let mut acts = h.guest(&stream[..3]);
        acts.extend(h.guest(&stream[3..]));
        let frames = to_client(&acts, 1);
        assert_eq!(frames.len(), 3);
        for pair in frames.windows(2) {
            let end_of_first = pair[0].as_ptr() as usize + pair[0].len();
            assert_ne!(
                end_of_first,
                pair[1].as_ptr() as usize,
                "frames share the decoder's buffer"
            );
        }
    });
}
