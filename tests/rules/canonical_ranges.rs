//! Rule `canonical_ranges`: only the generation's ranges are handed out:
//! legacy `[k*step, (k+1)*step)`, current `[s*STEP+1, (s+1)*STEP)` in the
//! bounds prologue.

use super::*;

/// Every slot's prologue is exactly its range, then the cached ready.
#[test]
fn core_every_slot_gets_its_canonical_range() {
    each_gen(|g| {
        let cfg = small();
        let slots = g.slots(&cfg);
        let mut h = g.harness(cfg);
        for s in 0..slots {
            let acts = h.connect(u64::from(s));
            let want = Action::Handshake {
                client: ClientId(u64::from(s)),
                bytes: g.prologue(s, &g.ready()),
            };
            assert_eq!(acts, [want], "slot {s}");
            assert_eq!(
                h.relay.client_range(ClientId(u64::from(s))),
                Some(g.range(s))
            );
        }
        let last = g.range(slots - 1);
        match g {
            Gen::Legacy => assert_eq!((last.end, STEP), (16 * STEP, 268_435_455)),
            Gen::Current => assert_eq!((g.range(0).start, last.end), (1, 128 * CSTEP)),
        }
    });
}

#[test]
fn core_connect_lowest_free_slot_and_offset_handshake() {
    each_gen(|g| {
        let mut h = g.harness(small());
        for c in 0..3 {
            let acts = h.connect(c);
            assert_eq!(handshake_offset(&acts), g.range(c as u32).start);
        }
        h.disconnect(1);
        let acts = h.connect(9);
        assert_eq!(handshake_offset(&acts), g.range(1).start, "slot 1 reused");
    });
}

#[test]
fn core_bounds_handshake_gives_start_and_end() {
    let cfg = Config::bounds_handshake();
    assert_eq!(
        (cfg.legacy.max_clients, cfg.legacy.handshake),
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
