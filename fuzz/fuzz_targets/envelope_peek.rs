//! Differential: the cheap `peek_envelope` agrees with the reference
//! `decode_envelope_full` on every input (type, payload bytes, and the error);
//! `payload::peek_data` agrees with `decode_payload::<payload::Data>`.

#![no_main]

use agent_relay::wire::payload::{self, decode_payload};
use agent_relay::wire::{decode_envelope_full, peek_envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peek = peek_envelope(data).map(|e| (e.t, e.payload.into_owned()));
    let full = decode_envelope_full(data).map(|e| (e.t, e.payload.into_owned()));
    assert_eq!(
        peek, full,
        "peek_envelope disagrees with decode_envelope_full"
    );

    let peek = payload::peek_data(data).map(|d| d.into_owned());
    let full = decode_payload::<payload::Data>(data).map(|d| d.data);
    assert_eq!(
        peek, full,
        "peek_data disagrees with decode_payload::<Data>"
    );

    // The payload inside a valid envelope goes through the same pair.
    if let Ok(env) = decode_envelope_full(data) {
        let peek = payload::peek_data(&env.payload).map(|d| d.into_owned());
        let full = decode_payload::<payload::Data>(&env.payload).map(|d| d.data);
        assert_eq!(peek, full);
    }
});
