//! Rule `own_range_only`: a client frame whose id is outside the sender's
//! range is refused and the sender closed; one inside it is forwarded
//! unchanged (the current generation also takes `core.shutdown` on id 0,
//! with its envelope).

use super::*;

#[test]
fn core_client_frame_forwarded_unchanged() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let f = exec_request(g.v(), g.id(1, 1), false, 0);
        // Split in two reads.
        let acts = h.client(2, &f[..7]);
        assert!(to_guest(&acts).is_empty());
        let acts = h.client(2, &f[7..]);
        assert_eq!(to_guest(&acts), vec![f]);
    });
}

#[test]
fn core_out_of_range_id_closes_sender_only() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let (id, range) = (g.id(1, 3), g.range(0));
        assert_refused(g, &mut h, 1, &stdin(g.v(), id, b"x"), |v| {
            *v == Violation::OutOfRange { id, range }
        });
    });
}

#[test]
fn core_frames_before_violation_still_forwarded() {
    each_gen(|g| {
        let (v, id) = (g.v(), g.id(0, 1));
        let mut h = two_clients(g);
        let mut chunk = exec_request(v, id, false, 0).to_vec();
        chunk.extend_from_slice(&stdin(v, g.id(5, 0), b"bad"));
        let acts = h.client(1, &chunk);
        let mut want = vec![exec_request(v, id, false, 0), kill(v, id)];
        want.extend(g.after_kills(0));
        assert_eq!(to_guest(&acts), want);
        assert_eq!(h.relay.counters().protocol_violations, 1);
    });
}

/// `core.shutdown` may come on id 0 with its envelope (as the SDK sends
/// it); an empty body, which upstream's relay forwards and agentd cannot
/// decode, is refused.
#[test]
fn core_current_shutdown_on_id_zero_with_its_envelope_only() {
    let full = frame(V10, MsgType::Shutdown, 0, &());
    let mut h = two_clients(Gen::Current);
    h.expect(
        Event::ClientBytes(ClientId(1), &full),
        &[
            Action::ToGuest {
                frame: full.clone(),
            },
            Action::Drain,
        ],
    );
    let empty = Frame::build(0, FLAG_SHUTDOWN, b"").unwrap().into_bytes();
    let mut h = two_clients(Gen::Current);
    let acts = h.client(1, &empty);
    assert_eq!(violation(&acts, 1), Some(Violation::EmptyBody { id: 0 }));
    assert!(!acts.contains(&Action::Drain));
    let mut h = two_clients(Gen::Current);
    let acts = h.client(1, &stdin(V10, 0, b"x"));
    assert!(matches!(
        violation(&acts, 1),
        Some(Violation::OutOfRange { id: 0, .. })
    ));
}
