//! Rule `output_outlives_guest`: output the guest produced before it went
//! away is still delivered, within one grace period.

use super::*;

/// A client closed because the guest went away keeps its unwritten output
/// for one grace period; the core names the deadline and gives up on it
/// there.
#[test]
fn core_guest_gone_flush_expires_at_grace_deadline() {
    each_gen(|g| {
        let (mut h, v) = (one_client(g, budget_cfg()), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        h.guest(&stdout(v, id, b"last words"));
        h.now = 10;
        let gone = Action::CloseClient {
            client: ClientId(1),
            reason: CloseReason::GuestGone,
        };
        h.expect(Event::GuestClosed, &[gone]);
        let deadline = Timeout {
            at: 110,
            timer: Timer::CloseFlush(ClientId(1)),
        };
        assert_eq!(h.relay.poll_timeout(), Some(deadline));
        h.expect(Event::ClientWritten(ClientId(1), 3), &[]);
        assert_eq!(
            h.relay.poll_timeout(),
            Some(deadline),
            "writes do not extend it"
        );
        h.now = 109;
        h.expect(Event::Tick, &[]);
        h.now = 110;
        h.expect(
            Event::Tick,
            &[Action::FlushExpired {
                client: ClientId(1),
            }],
        );
        let left = h.relay.poll_timeout().map(|t| t.timer);
        assert_eq!(left, Some(Timer::Quarantine { slot: 0 }), "only the slot's");
    });
}

/// Written in time, or its connection gone: no deadline is left.
#[test]
fn core_guest_gone_flush_ends_when_written_or_disconnected() {
    each_gen(|g| {
        let (v, id) = (g.v(), g.id(0, 1));
        for written in [true, false] {
            let mut h = g.harness(budget_cfg());
            h.connect(1);
            h.client(1, &exec_request(v, id, false, 0));
            let out = stdout(v, id, b"last words");
            h.guest(&out);
            h.guest(&exited(v, id, 0));
            h.ev(Event::GuestClosed);
            assert!(h.relay.poll_timeout().is_some());
            let queued = g.handshake_len() + out.len() + exited(v, id, 0).len();
            if written {
                h.expect(Event::ClientWritten(ClientId(1), queued - 1), &[]);
                assert!(h.relay.poll_timeout().is_some(), "one byte left");
                h.expect(Event::ClientWritten(ClientId(1), 1), &[]);
            } else {
                h.expect(Event::ClientDisconnected(ClientId(1)), &[]);
            }
            assert_eq!(h.relay.poll_timeout(), None, "written: {written}");
            assert!(h.drive().is_empty());
        }
    });
}

/// A client closed for its own fault, or one with nothing unwritten, gets
/// no flush deadline.
#[test]
fn core_no_flush_for_own_fault_or_nothing_queued() {
    each_gen(|g| {
        let mut h = g.harness(budget_cfg());
        h.connect(1);
        h.ev(Event::ClientWritten(ClientId(1), g.handshake_len()));
        h.ev(Event::GuestClosed);
        assert_eq!(h.relay.poll_timeout(), None, "nothing queued");
        let mut h = g.harness(budget_cfg());
        h.connect(1);
        h.client(1, &[0, 0, 0, 1]);
        assert_eq!(h.relay.poll_timeout(), None, "violation");
    });
}

#[test]
fn core_guest_closed_closes_clients_and_refuses_new() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let acts = h.ev(Event::GuestClosed);
        assert!(closed(&acts, 1).is_some() && closed(&acts, 2).is_some());
        // What the guest said before it went away still reaches the clients...
        assert!(acts.iter().all(|a| match a {
            Action::CloseClient { reason, .. } => reason.flush_first(),
            _ => true,
        }));
        // ...while a client closed for its own fault is cut off at once.
        let why = Violation::BeforeHandshake { bytes: 1 };
        assert!(!CloseReason::Violation(why).flush_first());
        assert!(
            !CloseReason::SlowConsumer {
                queued: 1,
                limit: SlowLimit::HardCap
            }
            .flush_first()
        );
        let acts = h.connect(5);
        assert!(matches!(
            acts[..],
            [Action::Refuse {
                reason: RefuseReason::GuestGone,
                ..
            }]
        ));
    });
}
