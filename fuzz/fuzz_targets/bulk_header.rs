//! Differential: `wire::bulk_header` against a reference written here from
//! the record layout of the current generation (P7/codec.rs, P7/bulk.rs):
//!
//! ```text
//! body: [kind: 1 fs | 2 tcp][flow: 1 | 2][0 0][offset: u64 BE][payload: 1..=3 MiB]
//! ```
//!
//! checked in the protocol's order: a header and at least one payload byte,
//! reserved bytes zero, kind, flow, payload size, `offset + len` without
//! overflow. Same verdict, same fields, and the same refusal, on every
//! input: raw bytes, and bodies built from fields (payloads up to just past
//! 3 MiB, offsets near `u64::MAX`).

#![no_main]

use agent_relay::wire::{BulkError, BulkHeader, bulk_header};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 3 * 1024 * 1024;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Fields {
        kind: u8,
        flow: u8,
        reserved: [u8; 2],
        offset: u64,
        /// 0: no payload; small; or around the 3 MiB limit.
        size: u16,
        big: bool,
    },
}

/// The reference: what the layout says, step by step.
fn reference(body: &[u8]) -> Result<BulkHeader, BulkError> {
    if body.len() < 13 {
        return Err(BulkError::TooShort { len: body.len() });
    }
    if body[2] != 0 || body[3] != 0 {
        return Err(BulkError::Reserved);
    }
    let (kind, flow) = (body[0], body[1]);
    if kind != 1 && kind != 2 {
        return Err(BulkError::Kind(kind));
    }
    if flow != 1 && flow != 2 {
        return Err(BulkError::Flow(flow));
    }
    let payload_len = body.len() - 12;
    if payload_len > MAX {
        return Err(BulkError::TooLarge { len: payload_len });
    }
    let mut offset = 0u64;
    for &b in &body[4..12] {
        offset = offset << 8 | u64::from(b);
    }
    if offset.checked_add(payload_len as u64).is_none() {
        return Err(BulkError::OffsetOverflow);
    }
    Ok(BulkHeader {
        kind,
        flow,
        offset,
        payload_len,
    })
}

fuzz_target!(|input: Input| {
    let body = match input {
        Input::Raw(b) => b,
        Input::Fields {
            kind,
            flow,
            reserved,
            offset,
            size,
            big,
        } => {
            let len = if big {
                MAX - 2 + usize::from(size % 5)
            } else {
                usize::from(size % 512)
            };
            let mut b = vec![kind, flow, reserved[0], reserved[1]];
            b.extend_from_slice(&offset.to_be_bytes());
            b.resize(12 + len, 0xab);
            b
        }
    };
    assert_eq!(
        bulk_header(&body),
        reference(&body),
        "body of {} bytes",
        body.len()
    );
});
