//! Whole frames for tests, the simulator, the fuzz targets and the benches,
//! in either generation.
//!
//! Every builder of a frame with an envelope takes the generation `v` first:
//! [`LEGACY_VERSION`](crate::wire::LEGACY_VERSION) (1) or
//! [`CURRENT_VERSION`](crate::wire::CURRENT_VERSION) (10); a raw bulk record
//! has no envelope and no `v`. Builders return the frame's bytes, length
//! prefix included, as [`Bytes`]; the `push_*` functions append them to a
//! buffer instead, without an allocation of their own (the simulator's hot
//! path).
//!
//! The structured builders go through the wire layer's encoders
//! ([`build_frame_v`], [`encode_envelope_v`]). [`push_data`],
//! [`push_unknown`] and [`init_resolved`] are laid out by hand, byte for byte
//! as the 0.4.4 and 0.7.13 encoders write them (this module's tests compare
//! them with the encoders): the simulator's campaign digest depends on these
//! exact bytes.
//!
//! Frames a test builds on purpose may break the protocol's rules:
//! [`raw`], [`named`], [`bulk`] and the `push_*` functions do not check the
//! length limit or the flags, and [`with_flags`] rewrites a frame's flags.

use bytes::Bytes;
use serde::Serialize;

use crate::core::IdRange;
use crate::wire::lease::{Incarnation, LeaseEvent, LeaseRecord};
use crate::wire::payload::{
    CoreError, Data, ExecExited, ExecLimits, ExecRequest, ExecResize, ExecSignal,
    INITIALIZATION_FAILED, Ready, ReadyCurrent, RelayClientDisconnected, RelayLeaseReady,
    WorkloadTransportCredit, build_frame_v, sigkill_frame_v,
};
use crate::wire::{FLAG_BULK, HEADER_LEN, MsgType, encode_envelope_v};

/// The payload of the frames whose payload nobody reads: the empty CBOR map.
pub const EMPTY_MAP: [u8; 1] = [0xa0];

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

/// Appends a frame's prefix (length, id, flags) and its body.
fn push_prefixed(out: &mut Vec<u8>, id: u32, flags: u8, body: &[u8]) {
    out.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(body);
}

/// Appends a whole frame of type `t` carrying `{data: h'..'}`, generation `v`
/// (at most 23), flags `flags`, encoded by hand.
pub fn push_data(out: &mut Vec<u8>, v: u8, t: MsgType, id: u32, flags: u8, data: &[u8]) {
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

/// Appends a frame of type `t` with the raw CBOR `payload`, generation `v`
/// and flags `flags`.
pub fn push_raw(out: &mut Vec<u8>, v: u8, t: MsgType, id: u32, flags: u8, payload: &[u8]) {
    push_prefixed(out, id, flags, &encode_envelope_v(v, t, payload));
}

/// Appends a raw bulk record (flags `0x08`):
/// `[kind][flow][0 0][offset u64 BE][payload]`.
pub fn push_bulk(out: &mut Vec<u8>, id: u32, kind: u8, flow: u8, offset: u64, payload: &[u8]) {
    out.extend_from_slice(&((5 + 12 + payload.len()) as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[FLAG_BULK, kind, flow, 0, 0]);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends an envelope of a type the relay does not know:
/// `{v, t: name, p: h'a0'}`, with an extra key `"x": [1]` when `extra` (a
/// map of four entries).
pub fn push_unknown(out: &mut Vec<u8>, v: u8, name: &str, id: u32, flags: u8, extra: bool) {
    let mut body = vec![if extra { 0xa4 } else { 0xa3 }, 0x61, b'v', v, 0x61, b't'];
    cbor_head(&mut body, 3, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&[0x61, b'p', 0x41, 0xa0]);
    if extra {
        body.extend_from_slice(&[0x61, b'x', 0x81, 0x01]);
    }
    push_prefixed(out, id, flags, &body);
}

/// A frame of type `t` with payload struct `payload`, generation `v` and the
/// type's flags.
///
/// # Panics
/// If the frame exceeds 4 MiB (as [`build_frame_v`]).
pub fn frame<T: Serialize>(v: u8, t: MsgType, id: u32, payload: &T) -> Bytes {
    build_frame_v(v, t, id, payload).into_bytes()
}

/// A frame with any `body` (no envelope made): for bodies no encoder
/// writes.
pub fn body_frame(id: u32, flags: u8, body: &[u8]) -> Bytes {
    let mut out = Vec::new();
    push_prefixed(&mut out, id, flags, body);
    Bytes::from(out)
}

/// A frame of type `t` with the raw CBOR `payload` and any `flags` (see
/// [`push_raw`]).
pub fn raw(v: u8, t: MsgType, id: u32, flags: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    push_raw(&mut out, v, t, id, flags, payload);
    Bytes::from(out)
}

/// A frame of type `t` with the payload [`EMPTY_MAP`] and the type's flags:
/// the fs and tcp requests, pings and pongs, whose payload the relay never
/// reads.
pub fn empty(v: u8, t: MsgType, id: u32) -> Bytes {
    raw(v, t, id, t.flags(), &EMPTY_MAP)
}

/// A frame whose envelope names any type `name`, known to the relay or not,
/// with the raw CBOR `payload` and any `flags`.
///
/// # Panics
/// Never for a `Vec` (CBOR encoding into memory does not fail).
pub fn named(v: u8, name: &str, id: u32, flags: u8, payload: &[u8]) -> Bytes {
    #[derive(Serialize)]
    struct Envelope<'a> {
        v: u8,
        t: &'a str,
        #[serde(with = "serde_bytes")]
        p: &'a [u8],
    }
    let mut body = Vec::new();
    let env = Envelope {
        v,
        t: name,
        p: payload,
    };
    ciborium::into_writer(&env, &mut body).expect("CBOR encoding into a Vec");
    let mut out = Vec::new();
    push_prefixed(&mut out, id, flags, &body);
    Bytes::from(out)
}

/// A raw bulk record (see [`push_bulk`]): `kind` 1 (fs) or 2 (tcp), `flow`
/// 1 (host to guest) or 2 (guest to host).
pub fn bulk(id: u32, kind: u8, flow: u8, offset: u64, payload: &[u8]) -> Bytes {
    let mut out = Vec::new();
    push_bulk(&mut out, id, kind, flow, offset, payload);
    Bytes::from(out)
}

/// `frame` with its flags byte replaced by `flags`.
///
/// # Panics
/// If `frame` is shorter than its fixed prefix.
pub fn with_flags(frame: &[u8], flags: u8) -> Bytes {
    let mut out = frame.to_vec();
    out[8] = flags;
    Bytes::from(out)
}

/// A frame of type `t` carrying `{data: h'..'}` (exec stdin and output, fs
/// and tcp data), with the type's flags.
pub fn data(v: u8, t: MsgType, id: u32, bytes: &[u8]) -> Bytes {
    let d = Data {
        data: bytes.to_vec(),
    };
    frame(v, t, id, &d)
}

/// `core.exec.stdout`.
pub fn stdout(v: u8, id: u32, bytes: &[u8]) -> Bytes {
    data(v, MsgType::ExecStdout, id, bytes)
}

/// `core.exec.stdin`.
pub fn stdin(v: u8, id: u32, bytes: &[u8]) -> Bytes {
    data(v, MsgType::ExecStdin, id, bytes)
}

/// `core.exec.request` for `sh` with `argc` arguments `arg0`, `arg1`, ...,
/// the environment `A=1` and a pty when `tty`.
pub fn exec_request(v: u8, id: u32, tty: bool, argc: usize) -> Bytes {
    let req = ExecRequest {
        env: vec!["A=1".into()],
        tty,
        ..ExecRequest::new("sh").args((0..argc).map(|i| format!("arg{i}")))
    };
    frame(v, MsgType::ExecRequest, id, &req)
}

/// `core.exec.exited`.
pub fn exited(v: u8, id: u32, code: i32) -> Bytes {
    frame(v, MsgType::ExecExited, id, &ExecExited { code })
}

/// `core.exec.signal`.
pub fn signal(v: u8, id: u32, signal: i32) -> Bytes {
    frame(v, MsgType::ExecSignal, id, &ExecSignal { signal })
}

/// The relay's kill: `core.exec.signal {signal: 9}`, from
/// [`sigkill_frame_v`].
pub fn kill(v: u8, id: u32) -> Bytes {
    sigkill_frame_v(v, id).into_bytes()
}

/// `core.exec.resize`.
pub fn resize(v: u8, id: u32, rows: u16, cols: u16) -> Bytes {
    frame(v, MsgType::ExecResize, id, &ExecResize { rows, cols })
}

/// `core.shutdown` (payload `null`, as 0.4.4 writes a unit payload).
pub fn shutdown(v: u8, id: u32) -> Bytes {
    frame(v, MsgType::Shutdown, id, &())
}

/// `core.ready` on id 0 with the legacy fields only (what a legacy guest
/// sends): boot `boot` ns, init `boot / 2`, ready `boot + 1`.
pub fn ready(v: u8, boot: u64) -> Bytes {
    let r = Ready {
        boot_time_ns: boot,
        init_time_ns: boot / 2,
        ready_time_ns: boot + 1,
    };
    frame(v, MsgType::Ready, 0, &r)
}

/// A current `core.ready` on id 0 with the capabilities the relay acts on
/// (`barrier` is `workload_transport_barrier_version`; 2 is the one the
/// relay implements), timing as [`ready`], agent version `0.7.13`.
pub fn ready_current(v: u8, boot: u64, barrier: Option<u8>, limits: Option<ExecLimits>) -> Bytes {
    ready_offering(v, boot, barrier, limits, None)
}

/// [`ready_current`] with `relay_lease {max_format}` when `lease` is given
/// (0.7.13 agentd always offers format 1).
pub fn ready_offering(
    v: u8,
    boot: u64,
    barrier: Option<u8>,
    limits: Option<ExecLimits>,
    lease: Option<u8>,
) -> Bytes {
    let r = ReadyCurrent {
        boot_time_ns: boot,
        init_time_ns: boot / 2,
        ready_time_ns: boot + 1,
        agent_version: "0.7.13".into(),
        workload_transport_barrier_version: barrier,
        exec_limits: limits,
        relay_lease: lease.map(|max_format| RelayLeaseReady { max_format }),
    };
    frame(v, MsgType::Ready, 0, &r)
}

/// `core.init.resolved {default_user: {uid: 0, gid: 0}}` on id 0, encoded
/// by hand.
pub fn init_resolved(v: u8) -> Bytes {
    // {"default_user": {"uid": 0, "gid": 0}}
    let mut p = vec![0xa1, 0x6c];
    p.extend_from_slice(b"default_user");
    p.extend_from_slice(&[
        0xa2, 0x63, b'u', b'i', b'd', 0x00, 0x63, b'g', b'i', b'd', 0x00,
    ]);
    raw(v, MsgType::InitResolved, 0, 0, &p)
}

/// `core.error {kind: initialization_failed, message}` on id 0: the guest
/// failed to start.
pub fn init_failed(v: u8, message: &str) -> Bytes {
    let e = CoreError {
        kind: INITIALIZATION_FAILED.into(),
        message: message.into(),
    };
    frame(v, MsgType::CoreError, 0, &e)
}

/// `core.workload.transport.credit` on the workload-control id `u32::MAX`.
pub fn credit(v: u8, grant: &WorkloadTransportCredit) -> Bytes {
    frame(v, MsgType::WorkloadTransportCredit, u32::MAX, grant)
}

/// `core.relay.client.disconnected` on id 0: the client that held `range`
/// is gone.
pub fn client_disconnected(v: u8, range: IdRange) -> Bytes {
    client_disconnected_leased(v, range, None)
}

/// `core.relay.client.disconnected` naming the departed owner's
/// incarnation, when its range was leased.
pub fn client_disconnected_leased(
    v: u8,
    range: IdRange,
    incarnation: Option<Incarnation>,
) -> Bytes {
    let n = RelayClientDisconnected {
        id_start: range.start,
        id_end_exclusive: range.end,
        incarnation,
    };
    frame(v, MsgType::RelayClientDisconnected, 0, &n)
}

/// A range-lease record (41 raw bytes): `Connected` as the relay writes it
/// ahead of a client's prologue, `DisconnectedAck` as the guest answers a
/// notice.
pub fn lease_record(event: LeaseEvent, range: IdRange, incarnation: Incarnation) -> Bytes {
    let r = LeaseRecord {
        event,
        id_start: range.start,
        id_end: range.end,
        incarnation,
    };
    Bytes::copy_from_slice(&r.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::payload::build_frame;
    use crate::wire::{CURRENT_VERSION, Frame, LEGACY_VERSION, encode_envelope};

    const GENERATIONS: [u8; 2] = [LEGACY_VERSION, CURRENT_VERSION];

    #[test]
    fn testkit_push_data_matches_build_frame() {
        let types = [MsgType::ExecStdout, MsgType::FsData, MsgType::TcpData];
        for (v, t) in GENERATIONS.into_iter().flat_map(|v| types.map(|t| (v, t))) {
            for len in [0usize, 1, 23, 24, 255, 256, 65_535, 65_536, 70_000] {
                let bytes = vec![7u8; len];
                let mut mine = Vec::new();
                push_data(&mut mine, v, t, 9, t.flags(), &bytes);
                assert_eq!(mine, data(v, t, 9, &bytes), "v {v}, {t}, len {len}");
            }
        }
        // The legacy encoder of old writes the same bytes.
        let d = Data { data: vec![1; 300] };
        let legacy = build_frame(MsgType::ExecStdout, 3, &d).into_bytes();
        assert_eq!(stdout(LEGACY_VERSION, 3, &d.data), legacy);
    }

    #[test]
    fn testkit_raw_and_named_match_the_envelope_encoder() {
        for v in GENERATIONS {
            let p = [0xa1, 0x61, b'k', 0x01];
            let body = encode_envelope_v(v, MsgType::ExecSignal, &p);
            let want = Frame::build(7, 0x04, &body).expect("small").into_bytes();
            assert_eq!(raw(v, MsgType::ExecSignal, 7, 0x04, &p), want);
            assert_eq!(named(v, "core.exec.signal", 7, 0x04, &p), want);
            let fs = empty(v, MsgType::FsRequest, 5);
            assert_eq!(fs, raw(v, MsgType::FsRequest, 5, 0x02, &[0xa0]));
        }
        let legacy = encode_envelope(MsgType::Ping, &EMPTY_MAP);
        let want = Frame::build(1, 0, &legacy).expect("small").into_bytes();
        assert_eq!(empty(LEGACY_VERSION, MsgType::Ping, 1), want);
    }

    #[test]
    fn testkit_push_unknown_is_named_with_an_empty_map() {
        for (v, name) in [(10, "core.future.request"), (1, &"x".repeat(300)[..])] {
            let mut mine = Vec::new();
            push_unknown(&mut mine, v, name, 4, 0x02, false);
            assert_eq!(mine, named(v, name, 4, 0x02, &EMPTY_MAP));
            let mut extra = Vec::new();
            push_unknown(&mut extra, v, name, 4, 0x02, true);
            let decoded: ciborium::Value =
                ciborium::from_reader(&extra[9..]).expect("the body decodes");
            assert_eq!(decoded.as_map().map(Vec::len), Some(4), "{decoded:?}");
        }
    }

    #[test]
    fn testkit_init_resolved_matches_serde() {
        #[derive(Serialize)]
        struct User {
            uid: u32,
            gid: u32,
        }
        #[derive(Serialize)]
        struct Resolved {
            default_user: User,
        }
        let r = Resolved {
            default_user: User { uid: 0, gid: 0 },
        };
        for v in GENERATIONS {
            assert_eq!(init_resolved(v), frame(v, MsgType::InitResolved, 0, &r));
        }
    }

    #[test]
    fn testkit_bulk_layout() {
        let payload = b"abc";
        let mut body = vec![2, 1, 0, 0];
        body.extend_from_slice(&5u64.to_be_bytes());
        body.extend_from_slice(payload);
        let want = Frame::build(11, FLAG_BULK, &body)
            .expect("small")
            .into_bytes();
        assert_eq!(bulk(11, 2, 1, 5, payload), want);
    }

    #[test]
    fn testkit_with_flags_and_kill() {
        let f = with_flags(&exited(CURRENT_VERSION, 3, 0), 0);
        assert_eq!(f[8], 0);
        assert_eq!(f[9..], exited(CURRENT_VERSION, 3, 0)[9..]);
        for v in GENERATIONS {
            assert_eq!(kill(v, 8), signal(v, 8, 9));
        }
    }
}
