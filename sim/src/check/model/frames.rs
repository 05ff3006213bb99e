//! The few frames the model reads by their header or builds to compare
//! with what the core hands over: a frame's id, its type, the relay's clock
//! sync and disconnect notice as a generation writes them.

use agent_relay::core::IdRange;
use agent_relay::wire::payload::{RelayClientDisconnected, build_frame_v};
use agent_relay::wire::{LEN_PREFIX, MsgType, PREFIX_LEN, check_len, peek_parts};
use bytes::Bytes;

/// The bytes of `rest` that complete the frame whose start `held` is (a
/// decoder's partial frame), if its length is legal and `rest` has them.
pub fn completes(held: &[u8], rest: &[u8]) -> Option<usize> {
    let mut head = [0; 4];
    let have = held.len().min(4);
    head[..have].copy_from_slice(&held[..have]);
    head[have..].copy_from_slice(rest.get(..4 - have)?);
    let len = u32::from_be_bytes(head);
    check_len(len).ok()?;
    let need = (LEN_PREFIX + len as usize).checked_sub(held.len())?;
    (need <= rest.len()).then_some(need)
}

/// The id in a frame's header (`u32::MAX` if it has none).
pub fn frame_id(frame: &[u8]) -> u32 {
    if frame.len() < 8 {
        return u32::MAX;
    }
    u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
}

/// The relay's disconnect notice for `range`, as generation `v` writes it
/// (with the departed owner's incarnation when its range was leased).
pub fn notice_frame(v: u8, range: IdRange, incarnation: Option<[u8; 16]>) -> Bytes {
    let notice = RelayClientDisconnected {
        id_start: range.start,
        id_end_exclusive: range.end,
        incarnation,
    };
    build_frame_v(v, MsgType::RelayClientDisconnected, 0, &notice).into_bytes()
}

/// Whether `frame` carries a message of type `t`.
pub fn is_type(frame: &[u8], t: MsgType) -> bool {
    frame.len() > PREFIX_LEN && peek_parts(&frame[PREFIX_LEN..]).is_ok_and(|p| p.t == Some(t))
}

/// Whether `frame` is a clock sync as the relay writes it for a guest of
/// generation `v`: id 0, flags 0.
pub fn is_clock(frame: &[u8], v: u8) -> bool {
    frame_id(frame) == 0
        && frame.get(PREFIX_LEN - 1) == Some(&0)
        && peek_parts(&frame[PREFIX_LEN..])
            .is_ok_and(|p| p.t == Some(MsgType::ClockSync) && p.v == v)
}
