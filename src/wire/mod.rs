//! The wire layer: the microsandbox protocol v1 frame format, as the crates.io
//! package `microsandbox-protocol` 0.4.4 speaks it.
//!
//! ```text
//! [len: u32 BE][id: u32 BE][flags: u8][CBOR envelope {v: 1, t: "core.exec.stdout", p: <bytes>}]
//! ```
//!
//! This layer owns byte layouts only: framing ([`FrameDecoder`]), a cheap look
//! inside the envelope ([`peek_envelope`]), and the few payloads the relay
//! builds or reads ([`payload`]). It never routes, never decides policy and
//! never does I/O.

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

mod envelope;
mod frame;
mod msg;
pub mod payload;

pub use envelope::{Envelope, EnvelopeError, decode_envelope_full, encode_envelope, peek_envelope};
pub use frame::{Frame, FrameDecoder, FrameError, check_len};
pub(crate) use frame::{ZERO_COPY_MIN, whole_frame_len};
pub use msg::{MsgInfo, MsgType, Opens, Senders};

/// Protocol version carried in every envelope's `v` field.
pub const PROTOCOL_VERSION: u8 = 1;
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

/// Whether a flags byte is one protocol v1 defines: none, or exactly one of
/// the flag bits.
pub const fn flags_defined(flags: u8) -> bool {
    matches!(
        flags,
        0 | FLAG_TERMINAL | FLAG_SESSION_START | FLAG_SHUTDOWN
    )
}

/// The opening bytes of every envelope the 0.4.4 encoder writes: a CBOR map
/// of three entries, `"v": 1`, then the key `"t"`.
pub const ENVELOPE_OPENING: [u8; 6] = [0xa3, 0x61, b'v', PROTOCOL_VERSION, 0x61, b't'];

/// A big-endian `u32` at `at`, if four bytes are there.
pub fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_be_bytes(bytes.get(at..end)?.try_into().ok()?))
}
