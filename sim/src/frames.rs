//! Frame builders for the actors. Data frames (the hot path) are encoded by
//! hand, byte for byte as the 0.4.4 encoder writes them; the rare structured
//! ones go through the wire layer's `build_frame`.

use agent_relay::wire::MsgType;
use agent_relay::wire::payload::{ExecExited, ExecRequest, ExecSignal, Ready, build_frame};

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
    let name = t.as_str().as_bytes();
    let payload_len = 6 + head_len(data.len()) + data.len();
    let body_len = 6 + head_len(name.len()) + name.len() + 2 + head_len(payload_len) + payload_len;
    out.reserve(9 + body_len);
    out.extend_from_slice(&((5 + body_len) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&[0xa3, 0x61, b'v', 0x01, 0x61, b't']);
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
    let req = ExecRequest {
        env: vec!["A=1".into()],
        tty,
        ..ExecRequest::new("sh").args((0..argc).map(|i| format!("arg{i}")))
    };
    build_frame(MsgType::ExecRequest, id, &req)
        .into_bytes()
        .to_vec()
}

/// `core.exec.signal`.
pub fn signal(id: u32, signal: i32) -> Vec<u8> {
    build_frame(MsgType::ExecSignal, id, &ExecSignal { signal })
        .into_bytes()
        .to_vec()
}

/// `core.exec.exited`.
pub fn exited(id: u32, code: i32) -> Vec<u8> {
    build_frame(MsgType::ExecExited, id, &ExecExited { code })
        .into_bytes()
        .to_vec()
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
