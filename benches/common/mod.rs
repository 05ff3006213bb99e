//! The core alone, as both benches drive it: a stream of identical
//! `core.exec.stdout` frames, a relay with one client whose exec session is
//! open, and the routing loop (guest bytes in 64 KiB chunks, every action
//! pulled, the client's writes acknowledged). Included by `benches/core.rs`
//! (criterion) and by scenario 6 of `benches/relay` (its table row), so the
//! two measure the same loop. No I/O, no clock.

use agent_relay::core::{Action, ClientId, Config, Event, Relay};
use agent_relay::testkit::frames;
use agent_relay::wire::LEGACY_VERSION;

/// Frames per stream.
pub const FRAMES: usize = 100_000;
/// Guest bytes per `Event::GuestBytes`: the shell's read size.
pub const CHUNK: usize = 64 * 1024;

/// [`FRAMES`] `core.exec.stdout` frames for exec id 1, `payload` bytes each.
pub fn stream(payload: usize) -> Vec<u8> {
    let one = frames::stdout(LEGACY_VERSION, 1, &vec![b'x'; payload]);
    one.iter()
        .copied()
        .cycle()
        .take(one.len() * FRAMES)
        .collect()
}

/// A relay past the handshake with client 1's exec session (id 1) open.
pub fn ready_relay(exec_log: bool) -> Relay {
    let mut relay = Relay::new(Config {
        exec_log,
        ..Config::default()
    });
    let ready = frames::ready(LEGACY_VERSION, 0);
    relay.handle(0, Event::GuestBytes(&ready));
    relay.handle(0, Event::ClientConnected(ClientId(1)));
    let req = frames::exec_request(LEGACY_VERSION, 1, false, 0);
    relay.handle(0, Event::ClientBytes(ClientId(1), &req));
    while relay.poll_action().is_some() {}
    relay
}

/// Routes the whole stream; returns frames delivered.
pub fn route(relay: &mut Relay, bytes: &[u8]) -> usize {
    let mut frames = 0;
    for chunk in bytes.chunks(CHUNK) {
        relay.handle(0, Event::GuestBytes(chunk));
        let mut written = 0;
        while let Some(action) = relay.poll_action() {
            if let Action::ToClient { frame, .. } = action {
                written += frame.len();
                frames += 1;
            }
        }
        relay.handle(0, Event::ClientWritten(ClientId(1), written));
    }
    frames
}
