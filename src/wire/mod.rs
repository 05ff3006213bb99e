//! The wire layer: the microsandbox agent protocol's frame format, in both
//! generations the relay serves: legacy (generation 1, the crates.io package
//! `microsandbox-protocol` 0.4.4) and current (generation 10, 0.7.13).
//!
//! ```text
//! [len: u32 BE][id: u32 BE][flags: u8][CBOR envelope {v, t: "core.exec.stdout", p: <bytes>}]
//! [len: u32 BE][id: u32 BE][0x08][kind][flow][0 0][offset: u64 BE][payload]   (BULK, current)
//! ```
//!
//! This layer owns byte layouts only: framing ([`FrameDecoder`]), a cheap look
//! inside the envelope ([`peek_envelope`], [`peek_parts`]), the generic
//! envelope check for types the relay does not know ([`inspect_envelope`]),
//! raw bulk headers ([`bulk_header`]), the message table ([`MsgType::info`])
//! and the few payloads the relay builds or reads ([`payload`]). It never
//! routes, never decides policy and never does I/O.

/// Declares a method public with the `testing` feature (the simulator's
/// reference model and the tests use it) and crate-private otherwise.
macro_rules! pub_if_testing {
    ($(#[$meta:meta])* fn $($rest:tt)*) => {
        $(#[$meta])*
        #[cfg(feature = "testing")]
        pub fn $($rest)*
        $(#[$meta])*
        #[cfg(not(feature = "testing"))]
        pub(crate) fn $($rest)*
    };
}

pub mod bootstrap;
mod bulk;
mod envelope;
mod frame;
mod inspect;
pub mod lease;
mod msg;
pub mod payload;

pub use bulk::{BulkError, BulkHeader, MAX_BULK_PAYLOAD, bulk_header};
pub use envelope::{
    Envelope, EnvelopeError, FieldFault, Parts, decode_envelope_full, encode_envelope,
    encode_envelope_v, peek_envelope, peek_parts,
};
pub use frame::{Frame, FrameDecoder, FrameError, check_len};
pub(crate) use frame::{ZERO_COPY_MIN, whole_frame_len};
pub use inspect::{Inspected, MAX_NESTING, agentd_envelope, inspect_envelope};
pub use msg::{CreditClass, MsgInfo, MsgType, Opens, Senders};

/// The legacy generation: the `v` 0.4.4 writes into every envelope.
pub const LEGACY_VERSION: u8 = 1;
/// The current generation: the `v` 0.7.13 writes.
pub const CURRENT_VERSION: u8 = 10;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Bytes between the length prefix and the CBOR envelope: `[id: u32][flags: u8]`.
pub const HEADER_LEN: usize = 5;
/// Bytes of the whole fixed prefix: length, id and flags.
pub const PREFIX_LEN: usize = LEN_PREFIX + HEADER_LEN;
/// Smallest legal value of the length field (an empty envelope).
pub const MIN_FRAME_LEN: u32 = HEADER_LEN as u32;
/// Largest legal value of the length field (4 MiB).
pub const MAX_FRAME_LEN: u32 = 4 * 1024 * 1024;

/// Flag bit: the last frame of a session (exec.exited, exec.failed, fs.response).
pub const FLAG_TERMINAL: u8 = 0x01;
/// Flag bit: the first frame of a session (exec.request, fs.request).
pub const FLAG_SESSION_START: u8 = 0x02;
/// Flag bit: the sandbox should drain (core.shutdown).
pub const FLAG_SHUTDOWN: u8 = 0x04;
/// Flag value: the body is a raw bulk record, not CBOR (current generation;
/// never combined with another flag).
pub const FLAG_BULK: u8 = 0x08;

/// Whether a flags byte is one the protocol defines: none, or exactly one of
/// the flag bits (BULK included).
pub const fn flags_defined(flags: u8) -> bool {
    matches!(
        flags,
        0 | FLAG_TERMINAL | FLAG_SESSION_START | FLAG_SHUTDOWN | FLAG_BULK
    )
}

/// The opening bytes of every envelope the 0.4.4 and 0.7.13 encoders write:
/// a CBOR map of three entries and the key `"v"`; the generation follows (one
/// byte for any `v` up to 23), then [`ENVELOPE_T_KEY`].
pub const ENVELOPE_MAP_V: [u8; 3] = [0xa3, 0x61, b'v'];
/// The key `"t"`, right after the generation in an envelope's opening.
pub const ENVELOPE_T_KEY: [u8; 2] = [0x61, b't'];
/// Bytes of an envelope's opening: map, `"v"`, a one-byte generation, `"t"`.
pub const ENVELOPE_OPENING_LEN: usize = ENVELOPE_MAP_V.len() + 1 + ENVELOPE_T_KEY.len();

/// Whether `b` opens an envelope as our encoders write it, with the
/// generation in one byte (`v` at most 23). Fewer than
/// [`ENVELOPE_OPENING_LEN`] bytes are judged on what is there.
pub fn envelope_opening(b: &[u8]) -> bool {
    b.iter()
        .take(ENVELOPE_OPENING_LEN)
        .enumerate()
        .all(|(i, &x)| match i {
            0..3 => x == ENVELOPE_MAP_V[i],
            3 => x <= 0x17, // the generation: any one-byte unsigned integer
            _ => x == ENVELOPE_T_KEY[i - 4],
        })
}

/// A big-endian `u32` at `at`, if four bytes are there.
pub fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_be_bytes(bytes.get(at..end)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the six opening bytes is judged, the `"t"` key's two
    /// included; fewer bytes are judged on what is there.
    #[test]
    fn envelope_opening_judges_all_six_bytes() {
        let good = [0xa3, 0x61, b'v', 10, 0x61, b't'];
        assert_eq!(ENVELOPE_OPENING_LEN, good.len());
        assert!(envelope_opening(&good));
        assert!(envelope_opening(&good[..4]));
        for at in 0..good.len() {
            let mut bad = good;
            bad[at] = if at == 3 { 0x18 } else { bad[at] ^ 0x01 };
            assert!(!envelope_opening(&bad), "byte {at} changed still opens");
        }
    }
}
