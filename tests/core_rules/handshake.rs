//! Rule `handshake_after_ready`: a client gets its id range and the cached
//! `core.ready` frame, whole; one that connects earlier waits for it.

use super::*;

#[test]
fn core_frames_before_ready_discarded_and_counted() {
    let mut h = Harness::new(small());
    let acts = h.guest(&stdout(V1, 1, b"noise"));
    assert!(acts.is_empty());
    assert_eq!(h.relay.counters().guest_frames_before_ready, 1);
    assert!(!h.relay.is_ready());
}

#[test]
fn core_undecodable_before_ready_does_not_abort_startup() {
    let mut h = Harness::new(small());
    let mut chunk = agent_relay::wire::Frame::build(0, 0, b"\xff\xfe garbage")
        .unwrap()
        .into_bytes()
        .to_vec();
    chunk.extend_from_slice(&ready(V1, 1));
    let acts = h.guest(&chunk);
    assert!(acts.contains(&Action::Ready), "{acts:?}");
    assert_eq!(h.relay.counters().guest_corrupt, 1);
}

#[test]
fn core_ready_cached_whole_and_following_bytes_routed() {
    let mut h = Harness::new(small());
    h.connect(1);
    // ready and a frame for an (as yet) unopened session in one chunk, then a
    // session's output right behind ready in another chunk.
    let acts = h.guest(&ready(V1, 1));
    let hs = acts
        .iter()
        .find_map(|a| match a {
            Action::Handshake { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .expect("handshake after ready");
    assert_eq!(&hs[..4], &0u32.to_be_bytes());
    assert_eq!(&hs[4..], &ready(V1, 1)[..]);
    h.client(1, &exec_request(V1, 1, false, 0));
    let mut chunk = stdout(V1, 1, b"a").to_vec();
    chunk.extend_from_slice(&stdout(V1, 1, b"b"));
    let acts = h.guest(&chunk);
    assert_eq!(
        to_client(&acts, 1),
        vec![stdout(V1, 1, b"a"), stdout(V1, 1, b"b")]
    );
}

#[test]
fn core_ready_then_frames_in_same_chunk_kept() {
    let mut h = Harness::new(small());
    let mut chunk = ready(V1, 1).to_vec();
    chunk.extend_from_slice(&stdout(V1, 5, b"x"));
    h.guest(&chunk);
    assert!(h.relay.is_ready());
    // The frame after ready was parsed (and dropped as unowned), not lost in the buffer.
    assert_eq!(h.relay.counters().dropped_unowned, 1);
    assert_eq!(h.relay.held_bytes(), 0);
}

#[test]
fn core_client_before_ready_waits_for_handshake() {
    let mut h = Harness::new(small());
    let acts = h.connect(1);
    assert!(acts.is_empty(), "no handshake before ready: {acts:?}");
    let acts = h.guest(&ready(V1, 1));
    assert!(
        matches!(
            acts[..],
            [
                Action::Ready,
                Action::Log(_),
                Action::Handshake {
                    client: ClientId(1),
                    ..
                }
            ]
        ),
        "{acts:?}"
    );
}

#[test]
fn core_bytes_before_handshake_close_client() {
    let mut h = Harness::new(small());
    h.connect(1);
    let acts = h.client(1, &stdin(V1, 1, b"x"));
    assert!(matches!(
        violation(&acts, 1),
        Some(Violation::BeforeHandshake { .. })
    ));
    assert!(to_guest(&acts).is_empty());
}

#[test]
fn core_connect_lowest_free_slot_and_offset_handshake() {
    let mut h = Harness::ready(small());
    for c in 0..3 {
        let acts = h.connect(c);
        assert_eq!(handshake_offset(&acts), c as u32 * STEP);
    }
    h.disconnect(1);
    let acts = h.connect(9);
    assert_eq!(handshake_offset(&acts), STEP, "slot 1 reused");
    assert_eq!(STEP, 268_435_455);
}

#[test]
fn core_bounds_handshake_gives_start_and_end() {
    let cfg = Config::bounds_handshake();
    assert_eq!(
        (cfg.max_clients, cfg.handshake),
        (128, HandshakeForm::Bounds)
    );
    let step = u32::MAX / 128;
    let mut h = Harness::ready(cfg);
    h.connect(0);
    let acts = h.connect(1);
    assert_eq!(handshake_offset(&acts), step);
    let Action::Handshake { bytes, .. } = &acts[0] else {
        unreachable!()
    };
    assert_eq!(&bytes[4..8], &(2 * step).to_be_bytes());
    assert_eq!(&bytes[8..], &ready(V1, 1)[..]);
}

#[test]
fn core_at_capacity_refused_with_reason() {
    let mut h = Harness::ready(small());
    for c in 0..16 {
        h.connect(c);
    }
    let acts = h.connect(16);
    assert_eq!(
        acts,
        vec![Action::Refuse {
            client: ClientId(16),
            reason: RefuseReason::Full {
                max_clients: 16,
                quarantined: 0
            }
        }]
    );
    assert!(acts[0].clone() != Action::Ready);
    let Action::Refuse { reason, .. } = &acts[0] else {
        unreachable!()
    };
    assert!(reason.to_string().contains("all 16 client slots in use"));
    assert_eq!(h.relay.counters().refused_clients, 1);
}
