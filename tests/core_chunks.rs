//! `Event::GuestChunk`: guest bytes in a buffer the core may keep slices of.
//! The actions are those of `Event::GuestBytes` with the same bytes, however
//! the stream is cut; only large frames that fill a good part of their chunk
//! are slices of it, the rest are copies (a queued frame must not pin much
//! more memory than it is counted for).

use agent_relay::core::{Action, ClientId, Config, Event, Relay};
use agent_relay::testkit::frames::{exec_request, ready, stdout};
use agent_relay::wire::LEGACY_VERSION as V1;
use bytes::Bytes;
use quickcheck::{QuickCheck, TestResult};

/// A relay past the handshake with client 1's exec session (id 1) open.
fn relay(exec_log: bool) -> Relay {
    let mut relay = Relay::new(Config {
        exec_log,
        ..Config::default()
    });
    relay.handle(0, Event::GuestBytes(&ready(V1, 0)));
    relay.handle(0, Event::ClientConnected(ClientId(1)));
    let req = exec_request(V1, 1, false, 0);
    relay.handle(0, Event::ClientBytes(ClientId(1), &req));
    while relay.poll_action().is_some() {}
    relay
}

/// Feeds `event`; returns its actions, the client's writes acknowledged.
fn feed(relay: &mut Relay, event: Event<'_>) -> Vec<Action> {
    relay.handle(1, event);
    let actions: Vec<Action> = std::iter::from_fn(|| relay.poll_action()).collect();
    let written = actions
        .iter()
        .map(|a| match a {
            Action::ToClient { frame, .. } => frame.len(),
            _ => 0,
        })
        .sum();
    relay.handle(1, Event::ClientWritten(ClientId(1), written));
    while relay.poll_action().is_some() {}
    actions
}

/// Frames of output whose payloads are `sizes` (scaled: some over 16 KiB),
/// cut into reads of `cuts` (scaled likewise), give the same actions as
/// chunks and as plain bytes, with the tap off and on.
#[test]
fn prop_guest_chunks_act_as_guest_bytes() {
    fn prop(sizes: Vec<u8>, cuts: Vec<u8>, tap: bool) -> TestResult {
        if sizes.is_empty() {
            return TestResult::discard();
        }
        let stream: Vec<u8> = sizes
            .iter()
            .take(40)
            .enumerate()
            .flat_map(|(i, &s)| {
                let len = usize::from(s) * 200 + i % 7;
                stdout(V1, 1, &vec![b'a' + (i % 26) as u8; len])
            })
            .collect();
        let (mut plain, mut chunked) = (relay(tap), relay(tap));
        let mut rest = &stream[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (usize::from(*c) * 300 + 1).min(rest.len());
            let chunk = Bytes::copy_from_slice(&rest[..n]);
            let a = feed(&mut plain, Event::GuestBytes(&rest[..n]));
            let b = feed(&mut chunked, Event::GuestChunk(&chunk));
            if a != b {
                return TestResult::error(format!("after {} bytes", stream.len() - rest.len()));
            }
            rest = &rest[n..];
        }
        if cuts.is_empty() {
            let chunk = Bytes::from(stream.clone());
            let a = feed(&mut plain, Event::GuestBytes(&stream));
            let b = feed(&mut chunked, Event::GuestChunk(&chunk));
            return TestResult::from_bool(a == b);
        }
        TestResult::from_bool(plain.counters() == chunked.counters())
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(Vec<u8>, Vec<u8>, bool) -> TestResult);
}

/// The frames a read delivers, and whether each lies inside `chunk`.
fn inside(chunk: &Bytes) -> Vec<(usize, bool)> {
    let mut relay = relay(false);
    let range = chunk.as_ptr_range();
    feed(&mut relay, Event::GuestChunk(chunk))
        .iter()
        .filter_map(|a| match a {
            Action::ToClient { frame, .. } => Some((frame.len(), range.contains(&frame.as_ptr()))),
            _ => None,
        })
        .collect()
}

#[test]
fn core_large_frames_are_slices_of_their_chunk() {
    // 20 KiB of output: a frame of 16 KiB and more that fills its chunk.
    let big = stdout(V1, 1, &[b'x'; 20 << 10]);
    let small = stdout(V1, 1, &[b'y'; 1 << 10]);
    let alone = inside(&big);
    assert_eq!(alone, [(big.len(), true)], "sliced, not copied");
    // Beside three more like it: a quarter of the chunk, still sliced.
    let four = inside(&Bytes::from(big.repeat(4)));
    assert!(four.iter().all(|&(_, sliced)| sliced), "{four:?}");
    // Beside 100 KiB of small frames it would pin a chunk six times its
    // size: copied, like the small ones.
    let mixed = [&big[..], &small.repeat(100)].concat();
    let got = inside(&Bytes::from(mixed));
    assert_eq!(got.len(), 101);
    assert!(got.iter().all(|&(_, sliced)| !sliced), "{:?}", &got[..2]);
    // Under 16 KiB: copied even when alone in its chunk.
    assert_eq!(inside(&small), [(small.len(), false)]);
}

/// A client already holding a quarter of its soft budget gets copies, and
/// the exec.log tap never keeps a slice of a chunk: neither a slow client's
/// queue nor the writer's can keep many chunks alive.
#[test]
fn core_slow_clients_and_the_tap_get_copies() {
    let mut relay = relay(true);
    let soft = Config::default().client_soft_budget;
    let big = stdout(V1, 1, &[b'z'; 20 << 10]);
    let mut queued = 0;
    let mut sliced = Vec::new();
    while queued < soft / 2 {
        let chunk = Bytes::copy_from_slice(&big);
        let range = chunk.as_ptr_range();
        relay.handle(1, Event::GuestChunk(&chunk));
        // Nothing acknowledged: the client's queue grows.
        while let Some(a) = relay.poll_action() {
            match a {
                Action::ToClient { frame, .. } => {
                    sliced.push((queued, range.contains(&frame.as_ptr())));
                    queued += frame.len();
                }
                Action::Log(r) => {
                    let runs = r.text.runs();
                    assert!(runs.iter().all(|run| !range.contains(&run.as_ptr())));
                }
                _ => {}
            }
        }
    }
    for (before, was_slice) in sliced {
        assert_eq!(was_slice, before < soft / 4, "{before} bytes queued before");
    }
}
