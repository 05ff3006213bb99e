//! CBOR reads as `ciborium::from_reader` makes them, with its 4 KiB of
//! scratch space kept between calls instead of zeroed anew for each (the
//! zeroing cost more than many a decode). The scratch's size is the same,
//! so every read accepts and refuses what `from_reader` does. Used for the
//! model's reference decodes (`decode_envelope_full`'s and
//! `decode_payload`'s, spelled out here) and the guests' own readers in
//! `inv_guest_survives` (0.7.13's `decode_message_frame`, 0.4.4's
//! `try_decode_from_buf`, whose bodies are one `from_reader` each).

use std::cell::RefCell;

use agent_relay::wire::MsgType;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// `ciborium::from_reader`'s scratch size.
const SCRATCH: usize = 4096;

thread_local! {
    static BUF: RefCell<[u8; SCRATCH]> = const { RefCell::new([0; SCRATCH]) };
}

/// `ciborium::from_reader(bytes)`, reading from `bytes` (what it does not
/// read stays there).
pub fn from_reader<T: DeserializeOwned>(
    bytes: &mut &[u8],
) -> Result<T, ciborium::de::Error<std::io::Error>> {
    BUF.with_borrow_mut(|buf| ciborium::de::from_reader_with_buffer(bytes, buf))
}

/// A payload struct, as `agent_relay::wire::payload::decode_payload` reads
/// it (trailing bytes ignored).
pub fn payload<T: DeserializeOwned>(mut bytes: &[u8]) -> Option<T> {
    from_reader(&mut bytes).ok()
}

/// The envelope as `agent_relay::wire::decode_envelope_full` reads it.
#[derive(Deserialize)]
struct Envelope {
    #[allow(dead_code)]
    v: u8,
    t: String,
    #[serde(with = "serde_bytes")]
    p: Vec<u8>,
}

/// The type and payload of a whole envelope, if `decode_envelope_full`
/// takes it: one CBOR map with `v`, `t` and `p`, a type the relay knows, no
/// trailing bytes.
pub fn envelope(body: &[u8]) -> Option<(MsgType, Vec<u8>)> {
    let mut rest = body;
    let env: Envelope = from_reader(&mut rest).ok()?;
    let t = MsgType::from_wire(env.t.as_bytes())?;
    rest.is_empty().then_some((t, env.p))
}

/// [`envelope`]'s type.
pub fn envelope_type(body: &[u8]) -> Option<MsgType> {
    envelope(body).map(|(t, _)| t)
}

#[cfg(test)]
mod tests {
    use agent_relay::testkit::frames;
    use agent_relay::wire::{LEGACY_VERSION, MsgType, PREFIX_LEN, decode_envelope_full};

    use super::envelope_type;

    #[test]
    fn envelope_type_reads_as_decode_envelope_full() {
        let good = frames::raw(LEGACY_VERSION, MsgType::ExecSignal, 5, 0, &[0xa0]);
        let mut bodies = vec![good[PREFIX_LEN..].to_vec()];
        let mut trailing = good[PREFIX_LEN..].to_vec();
        trailing.push(0);
        bodies.push(trailing);
        bodies.push(frames::named(1, "core.bogus", 5, 0, &[0xa0])[PREFIX_LEN..].to_vec());
        bodies.push(vec![0xa1, 0x61, b'v', 0x01]);
        bodies.push(vec![0xff; 12]);
        let big = frames::stdin(LEGACY_VERSION, 5, &[b'x'; 9000]);
        bodies.push(big[PREFIX_LEN..].to_vec());
        for body in bodies {
            let want = decode_envelope_full(&body).ok().map(|e| e.t);
            assert_eq!(envelope_type(&body), want, "{body:02x?}");
        }
    }
}
