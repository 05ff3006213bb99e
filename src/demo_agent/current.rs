//! The demo agent's current-generation (10) side: the init exchange before
//! ready, the check of each frame against what agentd's decoder takes, the
//! input credit it grants back as it consumes input, and the few payloads
//! only this generation has.
//!
//! Credit: the agent counts every frame it reads after its `core.ready`
//! exactly as the relay charges it (the whole frame, its 4-byte length
//! prefix included, one frame) in the frame's class: *data* for raw bulk
//! records and `core.exec.stdin`, `core.fs.data`, `core.tcp.data`,
//! `core.tcp.eof`; *control* for everything else. A frame is consumed when
//! the agent is done with it: a control frame once handled, stdin once
//! written into the child's pipe (or dropped because the session ended).
//! Each consumption travels as a [`CreditToken`] that reports itself when
//! dropped, so stdin held for a process that does not read it keeps its
//! credit. A range-lease record is charged 41 bytes and one frame of
//! control credit, consumed at once. One task turns the reports into absolute cumulative
//! `core.workload.transport.credit` grants on id `u32::MAX` (flags 0): the
//! starting grants plus everything consumed, one message per wake-up.
//!
//! It must never decide anything for the relay: it is a guest.

use std::borrow::Cow;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{DemoAgent, Input, Link, Out};
use crate::wire::payload::{
    ExecLimits, InitAck, ReadyCurrent, RelayLeaseReady, WorkloadTransportCredit, build_frame_v,
    decode_payload,
};
use crate::wire::{
    CURRENT_VERSION, CreditClass, FLAG_BULK, Frame, MsgType, agentd_envelope, bulk_header,
    peek_envelope,
};

/// The protocol's starting control grant, bytes (0.7.13 `core.rs`).
pub const START_CONTROL_BYTES: u64 = 8 << 20;
/// The protocol's starting control grant, frames.
pub const START_CONTROL_FRAMES: u64 = 256;
/// The protocol's starting data grant, bytes.
pub const START_DATA_BYTES: u64 = 32 << 20;
/// The protocol's starting data grant, frames.
pub const START_DATA_FRAMES: u64 = 256;
/// The input-credit contract the agent advertises in its ready.
const BARRIER_VERSION: u8 = 2;
/// The highest range-lease record format the agent reads.
const LEASE_FORMAT: u8 = 1;
/// The id of workload control, where credit travels.
const WORKLOAD_CONTROL_ID: u32 = u32::MAX;

/// The generation from which a sender can read `core.error` (0.7.13's
/// `min_protocol_version`); agentd cannot answer an older one.
pub(super) const CORE_ERROR_SINCE: u8 = 5;
/// `core.error` kind: a payload that does not decode or is refused.
pub(super) const INVALID_PAYLOAD: &str = "invalid_payload";
/// `core.error` kind: flags other than the type's.
pub(super) const INVALID_FLAGS: &str = "invalid_flags";

/// `core.init.resolved`: the guest's default user.
#[derive(Debug, Serialize)]
struct InitResolved {
    default_user: ResolvedUser,
}

#[derive(Debug, Serialize)]
struct ResolvedUser {
    uid: u32,
    gid: u32,
}

/// `core.ping`, `core.touch` and `core.pong`: an empty map (read as
/// 0.7.13's `Ping {}` and `Touch {}` are).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Empty {}

/// `core.touched`.
#[derive(Debug, Serialize)]
pub(super) struct Touched {
    pub activity_seq: u64,
}

/// `core.error` as agentd sends it after ready.
#[derive(Debug, Serialize)]
pub(super) struct CoreErrorReply {
    pub kind: &'static str,
    pub message: String,
    pub offending_type: Option<&'static str>,
}

/// A frame agentd's decoder takes.
#[derive(Debug)]
pub(super) enum Checked<'a> {
    /// A raw bulk record with a well-formed header.
    Bulk,
    /// A message of a known type.
    Message {
        /// Its type.
        t: MsgType,
        /// The sender's generation.
        v: u8,
        /// The payload's CBOR.
        payload: Cow<'a, [u8]>,
    },
}

/// Checks `frame` as agentd's decoder reads it (`try_decode_frame_from_bytes`:
/// a bulk record's header, or an envelope `{v: u8, t: MessageType, p:
/// bytes}`); the error is the cause that ends agentd's loop.
pub(super) fn check_frame(frame: &Frame) -> Result<Checked<'_>, String> {
    let (flags, body) = (frame.flags(), frame.body());
    if flags & FLAG_BULK != 0 {
        if flags != FLAG_BULK {
            return Err(
                "decode frame: invalid bulk frame: bulk flag cannot be combined with control flags"
                    .to_owned(),
            );
        }
        bulk_header(body).map_err(|e| format!("decode frame: invalid bulk frame: {e}"))?;
        return Ok(Checked::Bulk);
    }
    if body.is_empty() {
        return Err("decode frame: the frame has no body (no envelope)".to_owned());
    }
    let env = agentd_envelope(body).map_err(|e| format!("decode frame: {e}"))?;
    match (env.t, env.v.and_then(|v| u8::try_from(v).ok()), env.payload) {
        (Some(t), Some(v), Some(payload)) => Ok(Checked::Message { t, v, payload }),
        _ => Err("decode frame: the envelope lacks `v`, `t` or `p`".to_owned()),
    }
}

/// One frame consumed: its class and its bytes on the wire.
type Used = (CreditClass, u64);

/// A frame's credit, reported as consumed when dropped. Inert in the legacy
/// generation, which has no credit.
#[derive(Debug, Default)]
pub(super) struct CreditToken {
    report: Option<(mpsc::UnboundedSender<Used>, Used)>,
}

impl CreditToken {
    /// A token for a frame of `len` bytes (prefix included) of `class`.
    pub(super) fn new(
        grants: &mpsc::UnboundedSender<Used>,
        class: CreditClass,
        len: usize,
    ) -> Self {
        CreditToken {
            report: Some((grants.clone(), (class, len as u64))),
        }
    }
}

impl Drop for CreditToken {
    fn drop(&mut self) {
        if let Some((grants, used)) = self.report.take() {
            // The grant task is gone only when the agent stops.
            let _ = grants.send(used);
        }
    }
}

/// Sends `core.init.resolved`, waits for `core.init.ack`, then sends the
/// ready. `None` if the host closed the stream first.
pub(super) async fn start<R>(
    agent: &DemoAgent,
    link: &mut Link<R>,
    out: &mpsc::Sender<Out>,
    started: Instant,
) -> io::Result<Option<mpsc::UnboundedSender<Used>>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let (uid, gid) = std::fs::metadata("/proc/self").map_or((0, 0), |m| (m.uid(), m.gid()));
    let resolved = InitResolved {
        default_user: ResolvedUser { uid, gid },
    };
    let frame = build_frame_v(CURRENT_VERSION, MsgType::InitResolved, 0, &resolved);
    if out.send(Out::frame(frame)).await.is_err() {
        return Ok(None);
    }
    loop {
        let frame = match link.next().await? {
            None => return Ok(None),
            Some(Input::Frame(frame)) => frame,
            // Leases are not looked for before ready.
            Some(Input::Lease(_)) => continue,
        };
        match peek_envelope(frame.body()) {
            Ok(env) if env.t == MsgType::InitAck => {
                let ack = decode_payload::<InitAck>(&env.payload).unwrap_or_default();
                if ack.failure {
                    tracing::warn!("demo agent: init acknowledged as a failure; going on");
                }
                break;
            }
            Ok(env) => tracing::debug!("demo agent: {} before the init ack skipped", env.t),
            Err(e) => tracing::debug!("demo agent: frame before the init ack skipped: {e}"),
        }
    }
    let ready = ReadyCurrent {
        boot_time_ns: 0,
        init_time_ns: 0,
        ready_time_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
        agent_version: format!("agent-relay-demo-agent {}", env!("CARGO_PKG_VERSION")),
        workload_transport_barrier_version: Some(BARRIER_VERSION),
        exec_limits: Some(agent.limits),
        relay_lease: Some(RelayLeaseReady {
            max_format: LEASE_FORMAT,
        }),
    };
    let frame = build_frame_v(CURRENT_VERSION, MsgType::Ready, 0, &ready);
    if out.send(Out::frame(frame)).await.is_err() {
        return Ok(None);
    }
    Ok(Some(spawn_grants(out.clone())))
}

/// The task that turns consumption into cumulative grants.
fn spawn_grants(out: mpsc::Sender<Out>) -> mpsc::UnboundedSender<Used> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Used>();
    tokio::spawn(async move {
        let mut used = [(0u64, 0u64); 2];
        while let Some(first) = rx.recv().await {
            let mut add = |(class, bytes): Used| {
                let u = &mut used[usize::from(class == CreditClass::Data)];
                u.0 += bytes;
                u.1 += 1;
            };
            add(first);
            while let Ok(more) = rx.try_recv() {
                add(more);
            }
            let grant = grant(used);
            let frame = build_frame_v(
                CURRENT_VERSION,
                MsgType::WorkloadTransportCredit,
                WORKLOAD_CONTROL_ID,
                &grant,
            );
            if out.send(Out::frame(frame)).await.is_err() {
                return;
            }
        }
    });
    tx
}

/// The absolute grants after consuming `used` (control, data).
fn grant(used: [(u64, u64); 2]) -> WorkloadTransportCredit {
    let [(cb, cf), (db, df)] = used;
    WorkloadTransportCredit {
        control_bytes: START_CONTROL_BYTES + cb,
        control_frames: START_CONTROL_FRAMES + cf,
        bulk_bytes: START_DATA_BYTES + db,
        bulk_frames: START_DATA_FRAMES + df,
    }
}

/// The output chunk the agent uses under `limits`.
pub(super) fn output_chunk(limits: &ExecLimits) -> usize {
    usize::try_from(limits.output_chunk_size)
        .unwrap_or(usize::MAX)
        .clamp(1, super::MAX_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_agent_starting_grants_are_the_relays() {
        use crate::core::{CONTROL_BYTES, CONTROL_FRAMES, DATA_BYTES, DATA_FRAMES};
        assert_eq!(
            (START_CONTROL_BYTES, START_CONTROL_FRAMES),
            (CONTROL_BYTES, CONTROL_FRAMES)
        );
        assert_eq!(
            (START_DATA_BYTES, START_DATA_FRAMES),
            (DATA_BYTES, DATA_FRAMES)
        );
        let g = grant([(10, 1), (20, 2)]);
        assert_eq!((g.control_bytes, g.control_frames), ((8 << 20) + 10, 257));
        assert_eq!((g.bulk_bytes, g.bulk_frames), ((32 << 20) + 20, 258));
    }
}
