//! Frame builders for the current generation (`v = 10`).

use agent_relay::core::{Config, Event, IdRange};
use agent_relay::wire::payload::{
    Consumed, CoreError, Data, ExecExited, ExecLimits, ExecRequest, ExecSignal, ReadyCurrent,
    RelayClientDisconnected, WorkloadTransportCredit, build_frame_v, encode_payload,
};
use agent_relay::wire::{FLAG_BULK, Frame, MsgType, encode_envelope_v};
use bytes::Bytes;
use serde::Serialize;

use super::Harness;

/// Ids per slot in the current generation.
pub const CSTEP: u32 = u32::MAX / 128;

/// The canonical range of slot `s`.
pub fn crange(s: u32) -> IdRange {
    IdRange {
        start: s * CSTEP + 1,
        end: (s + 1) * CSTEP,
    }
}

/// The first id of slot `s` (what the SDK uses first).
pub fn cid(s: u32) -> u32 {
    crange(s).start
}

pub fn v10<T: Serialize>(t: MsgType, id: u32, payload: &T) -> Bytes {
    build_frame_v(10, t, id, payload).into_bytes()
}

/// A frame of any type name, flags and payload bytes, with `v = 10`.
pub fn raw10(name: &str, id: u32, flags: u8, payload: &[u8]) -> Bytes {
    #[derive(Serialize)]
    struct Env<'a> {
        v: u8,
        t: &'a str,
        #[serde(with = "serde_bytes")]
        p: &'a [u8],
    }
    let mut body = Vec::new();
    ciborium::into_writer(
        &Env {
            v: 10,
            t: name,
            p: payload,
        },
        &mut body,
    )
    .unwrap();
    Frame::build(id, flags, &body).unwrap().into_bytes()
}

pub fn ready10(barrier: Option<u8>, exec_limits: Option<ExecLimits>) -> Bytes {
    let ready = ReadyCurrent {
        boot_time_ns: 1,
        init_time_ns: 2,
        ready_time_ns: 3,
        agent_version: "test".into(),
        workload_transport_barrier_version: barrier,
        exec_limits,
    };
    v10(MsgType::Ready, 0, &ready)
}

pub fn init_resolved() -> Bytes {
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
    v10(MsgType::InitResolved, 0, &r)
}

pub fn init_failed(message: &str) -> Bytes {
    let e = CoreError {
        kind: "initialization_failed".into(),
        message: message.into(),
    };
    v10(MsgType::CoreError, 0, &e)
}

pub fn credit(control: (u64, u64), data: (u64, u64)) -> Bytes {
    let g = WorkloadTransportCredit {
        control_bytes: control.0,
        control_frames: control.1,
        bulk_bytes: data.0,
        bulk_frames: data.1,
    };
    v10(MsgType::WorkloadTransportCredit, u32::MAX, &g)
}

pub fn exec_req10(id: u32) -> Bytes {
    v10(MsgType::ExecRequest, id, &ExecRequest::new("cat"))
}

pub fn stdin10(id: u32, bytes: &[u8]) -> Bytes {
    let d = Data {
        data: bytes.to_vec(),
    };
    v10(MsgType::ExecStdin, id, &d)
}

pub fn stdout10(id: u32, bytes: &[u8]) -> Bytes {
    let d = Data {
        data: bytes.to_vec(),
    };
    v10(MsgType::ExecStdout, id, &d)
}

pub fn exited10(id: u32, code: i32) -> Bytes {
    v10(MsgType::ExecExited, id, &ExecExited { code })
}

pub fn signal10(id: u32, signal: i32) -> Bytes {
    v10(MsgType::ExecSignal, id, &ExecSignal { signal })
}

pub fn kill10(id: u32) -> Bytes {
    signal10(id, 9)
}

pub fn ping(id: u32) -> Bytes {
    raw10(
        "core.ping",
        id,
        0,
        &encode_payload(&std::collections::BTreeMap::<u8, u8>::new()),
    )
}

pub fn pong(id: u32) -> Bytes {
    raw10("core.pong", id, 0x01, &[0xa0])
}

pub fn stdin_ack(id: u32, consumed: u64) -> Bytes {
    v10(MsgType::ExecStdinAck, id, &Consumed { consumed })
}

pub fn notice(s: u32) -> Bytes {
    let r = crange(s);
    let n = RelayClientDisconnected {
        id_start: r.start,
        id_end_exclusive: r.end,
    };
    v10(MsgType::RelayClientDisconnected, 0, &n)
}

/// A raw bulk record: kind 1 (fs) or 2 (tcp), flow 1 (host to guest) or 2.
pub fn bulk(id: u32, kind: u8, flow: u8, payload: &[u8]) -> Bytes {
    let mut body = vec![kind, flow, 0, 0];
    body.extend_from_slice(&0u64.to_be_bytes());
    body.extend_from_slice(payload);
    Frame::build(id, FLAG_BULK, &body).unwrap().into_bytes()
}

pub fn fs_req10(id: u32) -> Bytes {
    raw10("core.fs.request", id, 0x02, &[0xa0])
}

pub fn tcp_connect(id: u32) -> Bytes {
    raw10("core.tcp.connect", id, 0x02, &[0xa0])
}

pub fn tcp_data(id: u32, bytes: &[u8]) -> Bytes {
    let d = Data {
        data: bytes.to_vec(),
    };
    v10(MsgType::TcpData, id, &d)
}

/// An envelope body of `v = 10` for a known type.
pub fn body10(t: MsgType, payload: &[u8]) -> Vec<u8> {
    encode_envelope_v(10, t, payload)
}

impl Harness {
    /// A current-generation relay whose guest is ready with this frame.
    pub fn current(cfg: Config, ready: &[u8]) -> Harness {
        let mut h = Harness::new(Config {
            protocol: agent_relay::core::Protocol::Current,
            ..cfg
        });
        h.ev(Event::WallClock(1_700_000_000_000_000_000));
        h.ev(Event::GuestBytes(ready));
        assert!(h.relay.is_ready(), "the guest is ready");
        h
    }
}
