//! Rule `guest_resync`: corrupt guest input is counted, reported and
//! skipped up to the next offset whose header is legal and whose body opens
//! as an envelope (or, with BULK, a bulk header); it never reaches a
//! client; a read that continues a frame never starts one.

use super::*;

#[test]
fn core_plausible_wrong_length_resyncs_to_next_frame() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let mut bad = stdout(v, id, b"aaaa").to_vec();
        let len = u32::from_be_bytes(bad[..4].try_into().unwrap());
        bad[..4].copy_from_slice(&(len + 6).to_be_bytes()); // plausible, wrong
        let mut chunk = bad;
        chunk.extend_from_slice(&stdout(v, id, b"good"));
        chunk.extend_from_slice(&stdout(v, id, b"more"));
        let acts = h.guest(&chunk);
        assert_eq!(
            to_client(&acts, 1),
            vec![stdout(v, id, b"good"), stdout(v, id, b"more")]
        );
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::GuestCorrupt { .. }))
        );
        assert_eq!(h.relay.counters().guest_corrupt, 1);
    });
}

#[test]
fn core_short_junk_then_valid_frame_same_chunk_delivered() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let mut chunk = Frame::build(id, 0, b"\x01\x02")
            .unwrap()
            .into_bytes()
            .to_vec();
        chunk.extend_from_slice(&stdout(v, id, b"valid"));
        let acts = h.guest(&chunk);
        assert_eq!(to_client(&acts, 1), vec![stdout(v, id, b"valid")]);
    });
}

#[test]
fn core_absurd_guest_length_skipped() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let id = open_exec(&mut h, g, 1, 1);
        let mut chunk = vec![0xff, 0xff, 0xff, 0xff, 0, 0];
        chunk.extend_from_slice(&stdout(v, id, b"after"));
        let acts = h.guest(&chunk);
        assert_eq!(to_client(&acts, 1), vec![stdout(v, id, b"after")]);
        assert_eq!(h.relay.counters().guest_corrupt_bytes, 6);
    });
}

/// The guest channel ending inside a frame is reported and counted.
#[test]
fn core_guest_closed_mid_frame_counted() {
    each_gen(|g| {
        let mut h = two_clients(g);
        let f = stdout(g.v(), g.id(0, 1), b"cut short");
        h.guest(&f[..7]);
        let acts = h.ev(Event::GuestClosed);
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::GuestCorrupt { skipped: 7, .. }))
        );
        assert_eq!(h.relay.counters().guest_corrupt, 1);
        assert_eq!(h.relay.counters().guest_corrupt_bytes, 7);
    });
}

/// A read that continues a partial frame is never parsed as if it started
/// a frame: a valid frame embedded in another frame's payload, cut exactly
/// where the embedded one begins, is data, not a frame.
#[test]
fn core_continuation_bytes_never_start_a_frame() {
    each_gen(|g| {
        let (mut h, v) = (two_clients(g), g.v());
        let (a, b) = (open_exec(&mut h, g, 1, 1), open_exec(&mut h, g, 1, 2));
        let embedded = stdout(v, b, b"smuggled");
        let outer = stdout(v, a, &embedded);
        let cut = outer.len() - embedded.len();
        let acts = h.guest(&outer[..cut]);
        assert!(to_client(&acts, 1).is_empty());
        let acts = h.guest(&outer[cut..]);
        assert_eq!(to_client(&acts, 1), vec![outer.clone()]);
        assert_eq!(
            h.relay.counters().guest_frames_in,
            2,
            "ready, then only the outer frame"
        );
    });
}

/// Undefined flags and a bad bulk header from the guest are corruption,
/// resynchronised past.
#[test]
fn core_current_guest_garbage_resyncs_to_the_next_frame() {
    let mut h = two_clients(Gen::Current);
    let id = cid(0);
    h.client(1, &exec_request(V10, id, false, 0));
    let mut bad = stdout(V10, id, b"bad flags").to_vec();
    bad[8] = 0x03;
    let mut chunk = bad;
    let mut badbulk = bulk(id, 3, 2, 0, b"kind 3").to_vec();
    chunk.append(&mut badbulk);
    chunk.extend_from_slice(&stdout(V10, id, b"good"));
    let acts = h.guest(&chunk);
    assert_eq!(to_client(&acts, 1), vec![stdout(V10, id, b"good")]);
    // One corrupt stretch: the bulk record with kind 3 is no frame start.
    assert_eq!(h.relay.counters().guest_corrupt, 1, "{acts:?}");
}
