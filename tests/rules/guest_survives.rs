//! Rule `guest_survives`: nothing a client sends can end the guest's loop.
//! Current: a client frame is forwarded only if 0.7.13 agentd's own decoder
//! reads it and agentd can answer what it cannot use; legacy: only what
//! 0.4.4 decodes. The sender is closed with the reason, the others carry on.
//! (The real agentd: `tests/real_agentd.rs`, `tests/agentd_relay.rs`; any
//! input: the fuzz target `guest_survives` and the simulator's
//! `inv_guest_survives`.)

use super::*;

/// Legacy: an exec request whose payload 0.4.4 cannot decode never reaches
/// the guest.
#[test]
fn core_undecodable_exec_request_refused() {
    let mut h = two_clients(Gen::Legacy);
    let body = agent_relay::wire::encode_envelope(MsgType::ExecRequest, b"\x01");
    let f = agent_relay::wire::Frame::build(1, 0x02, &body).unwrap();
    assert_refused(Gen::Legacy, &mut h, 1, f.as_bytes(), |v| {
        matches!(v, Violation::BadExecRequest { id: 1, .. })
    });
}

/// Rule `guest_survives`: a client frame reaches a current guest only if
/// agentd's own decoder reads it and agentd can answer what it cannot use:
/// a type of the table (0.7.13 agentd's loop ends on any other name), one
/// `v` of 5 or more (it cannot answer an older sender with `core.error`),
/// one byte-string `p`, a body at all. Each refusal costs the sender only.
#[test]
fn core_current_only_what_agentd_decodes_passes() {
    let id = cid(0);
    let mut h = two_clients(Gen::Current);
    let ok = named(V10, "core.ping", id, 0, &[0xa0]);
    h.expect(
        Event::ClientBytes(ClientId(1), &ok),
        &[Action::ToGuest { frame: ok.clone() }],
    );
    let v5 = named(5, "core.ping", id + 1, 0, &[0xa0]);
    h.expect(
        Event::ClientBytes(ClientId(1), &v5),
        &[Action::ToGuest { frame: v5.clone() }],
    );
    type Rule = fn(&Violation) -> bool;
    let mut trailing = ok.to_vec();
    trailing.push(0);
    trailing[3] += 1;
    let mut no_p = vec![0xa2, 0x61, b'v', 0x0a, 0x61, b't', 0x69];
    no_p.extend_from_slice(b"core.ping");
    let cases: [(Bytes, Rule); 6] = [
        (
            named(V10, "core.bogus.type", id, 0, &[0xa0]),
            |v| matches!(v, Violation::Envelope { error: EnvelopeError::UnknownType(t), .. } if t == "core.bogus.type"),
        ),
        (
            named(V10, "core.next.thing", id, FLAG_SHUTDOWN, &[0xa0]),
            |v| {
                matches!(
                    v,
                    Violation::Envelope {
                        error: EnvelopeError::UnknownType(_),
                        ..
                    }
                )
            },
        ),
        (Bytes::from(trailing), |v| {
            matches!(
                v,
                Violation::Envelope {
                    error: EnvelopeError::TrailingBytes(1),
                    ..
                }
            )
        }),
        (named(1, "core.ping", id, 0, &[0xa0]), |v| {
            matches!(v, Violation::OldGeneration { v: 1, .. })
        }),
        (body_frame(id, 0, &no_p), |v| {
            matches!(
                v,
                Violation::Envelope {
                    error: EnvelopeError::Field { field: "p", .. },
                    ..
                }
            )
        }),
        (body_frame(0, FLAG_SHUTDOWN, &[]), |v| {
            matches!(v, Violation::EmptyBody { id: 0 })
        }),
    ];
    for (f, why) in cases {
        let mut h = two_clients(Gen::Current);
        let acts = h.client(1, &f);
        let notice = client_disconnected(V10, crange(0));
        assert_eq!(to_guest(&acts), vec![notice], "only the departure's notice");
        let v = violation(&acts, 1).unwrap_or_else(|| panic!("{acts:?}"));
        assert!(why(&v), "{v:?}");
        let other = empty(V10, MsgType::Ping, cid(1));
        let acts = h.client(2, &other);
        assert_eq!(to_guest(&acts), vec![other], "the other client carries on");
    }
}
