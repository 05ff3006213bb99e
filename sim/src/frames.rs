//! Frame builders for the actors. Data frames (the hot path) are encoded by
//! hand, byte for byte as the 0.4.4 and 0.7.13 encoders write them; the rare
//! structured ones go through the wire layer's `build_frame`. The current
//! generation's raw bulk records and envelopes of types the relay does not
//! know are laid out here by hand from the protocol.

use agent_relay::wire::MsgType;
use agent_relay::wire::payload::{
    ExecExited, ExecLimits, ExecRequest, ExecSignal, Ready, ReadyCurrent, WorkloadTransportCredit,
    build_frame, build_frame_v,
};

fn cbor_head(out: &mut Vec<u8>, major: u8, n: usize) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

fn head_len(n: usize) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// Appends a whole frame carrying `{data: h'..'}` of type `t` to `out`.
pub fn push_data_frame(out: &mut Vec<u8>, t: MsgType, id: u32, flags: u8, data: &[u8]) {
    push_data_frame_v(out, 1, t, id, flags, data);
}

/// [`push_data_frame`] with generation `v` (at most 23) in the envelope.
pub fn push_data_frame_v(out: &mut Vec<u8>, v: u8, t: MsgType, id: u32, flags: u8, data: &[u8]) {
    let name = t.as_str().as_bytes();
    let payload_len = 6 + head_len(data.len()) + data.len();
    let body_len = 6 + head_len(name.len()) + name.len() + 2 + head_len(payload_len) + payload_len;
    out.reserve(9 + body_len);
    out.extend_from_slice(&((5 + body_len) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&[0xa3, 0x61, b'v', v, 0x61, b't']);
    cbor_head(out, 3, name.len());
    out.extend_from_slice(name);
    out.extend_from_slice(&[0x61, b'p']);
    cbor_head(out, 2, payload_len);
    out.extend_from_slice(&[0xa1, 0x64, b'd', b'a', b't', b'a']);
    cbor_head(out, 2, data.len());
    out.extend_from_slice(data);
}

/// Appends a frame of type `t` with a raw CBOR payload and the type's flags.
pub fn push_raw_frame(out: &mut Vec<u8>, t: MsgType, id: u32, flags: u8, payload: &[u8]) {
    let body = agent_relay::wire::encode_envelope(t, payload);
    out.extend_from_slice(&((5 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&body);
}

/// [`push_raw_frame`] with generation `v`.
pub fn push_raw_frame_v(out: &mut Vec<u8>, v: u8, t: MsgType, id: u32, flags: u8, payload: &[u8]) {
    let body = agent_relay::wire::encode_envelope_v(v, t, payload);
    out.extend_from_slice(&((5 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&body);
}

/// A raw bulk record: flags 0x08, `[kind][flow][0 0][offset u64 BE][payload]`.
pub fn push_bulk(out: &mut Vec<u8>, id: u32, kind: u8, flow: u8, offset: u64, payload: &[u8]) {
    out.extend_from_slice(&((5 + 12 + payload.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x08, kind, flow, 0, 0]);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An envelope of a type the relay does not know: `{v, t: name, p: h'a0'}`,
/// with an extra key `"x": [1]` when `extra` (a map of four entries).
pub fn push_unknown(out: &mut Vec<u8>, v: u8, name: &str, id: u32, flags: u8, extra: bool) {
    let mut body = vec![if extra { 0xa4 } else { 0xa3 }, 0x61, b'v', v, 0x61, b't'];
    cbor_head(&mut body, 3, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&[0x61, b'p', 0x41, 0xa0]);
    if extra {
        body.extend_from_slice(&[0x61, b'x', 0x81, 0x01]);
    }
    out.extend_from_slice(&((5 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&body);
}

/// A current `core.ready` (generation `v`) with the capabilities the relay
/// acts on.
pub fn ready_current(v: u8, boot: u64, barrier: bool, limits: Option<ExecLimits>) -> Vec<u8> {
    let r = ReadyCurrent {
        boot_time_ns: boot,
        init_time_ns: boot / 2,
        ready_time_ns: boot + 1,
        agent_version: "0.7.13".into(),
        workload_transport_barrier_version: barrier.then_some(2),
        exec_limits: limits,
    };
    build_frame_v(v, MsgType::Ready, 0, &r)
        .into_bytes()
        .to_vec()
}

/// `core.init.resolved {default_user: {uid, gid}}` on id 0.
pub fn init_resolved(v: u8) -> Vec<u8> {
    // {"default_user": {"uid": 0, "gid": 0}}
    let mut p = vec![0xa1, 0x6c];
    p.extend_from_slice(b"default_user");
    p.extend_from_slice(&[
        0xa2, 0x63, b'u', b'i', b'd', 0x00, 0x63, b'g', b'i', b'd', 0x00,
    ]);
    let mut out = Vec::new();
    push_raw_frame_v(&mut out, v, MsgType::InitResolved, 0, 0, &p);
    out
}

/// `core.workload.transport.credit` on the workload-control id.
pub fn credit(v: u8, g: &WorkloadTransportCredit) -> Vec<u8> {
    build_frame_v(v, MsgType::WorkloadTransportCredit, u32::MAX, g)
        .into_bytes()
        .to_vec()
}

/// A whole frame of type `t` with payload struct `p` in generation `v`, the
/// type's flags.
pub fn frame_v<T: serde::Serialize>(v: u8, t: MsgType, id: u32, p: &T) -> Vec<u8> {
    build_frame_v(v, t, id, p).into_bytes().to_vec()
}

/// `core.ready`.
pub fn ready(boot: u64) -> Vec<u8> {
    let r = Ready {
        boot_time_ns: boot,
        init_time_ns: boot / 2,
        ready_time_ns: boot + 1,
    };
    build_frame(MsgType::Ready, 0, &r).into_bytes().to_vec()
}

/// `core.exec.request`.
pub fn exec_request(id: u32, tty: bool, argc: usize) -> Vec<u8> {
    exec_request_v(1, id, tty, argc)
}

/// `core.exec.request` in generation `v`.
pub fn exec_request_v(v: u8, id: u32, tty: bool, argc: usize) -> Vec<u8> {
    let req = ExecRequest {
        env: vec!["A=1".into()],
        tty,
        ..ExecRequest::new("sh").args((0..argc).map(|i| format!("arg{i}")))
    };
    frame_v(v, MsgType::ExecRequest, id, &req)
}

/// `core.exec.signal`.
pub fn signal(id: u32, signal: i32) -> Vec<u8> {
    signal_v(1, id, signal)
}

/// `core.exec.signal` in generation `v`.
pub fn signal_v(v: u8, id: u32, signal: i32) -> Vec<u8> {
    frame_v(v, MsgType::ExecSignal, id, &ExecSignal { signal })
}

/// `core.exec.exited`.
pub fn exited(id: u32, code: i32) -> Vec<u8> {
    exited_v(1, id, code)
}

/// `core.exec.exited` in generation `v`.
pub fn exited_v(v: u8, id: u32, code: i32) -> Vec<u8> {
    frame_v(v, MsgType::ExecExited, id, &ExecExited { code })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_relay::wire::payload::{Data, build_frame};

    #[test]
    fn frames_hand_encoding_matches_build_frame() {
        for len in [0usize, 1, 23, 24, 255, 256, 70_000] {
            let data = vec![7u8; len];
            let mut mine = Vec::new();
            push_data_frame(&mut mine, MsgType::ExecStdout, 9, 0, &data);
            let theirs = build_frame(MsgType::ExecStdout, 9, &Data { data });
            assert_eq!(mine, theirs.as_bytes().to_vec(), "len {len}");
        }
    }
}
