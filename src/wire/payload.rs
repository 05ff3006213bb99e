//! Payload structs, field for field as the protocol defines them (0.4.4 for
//! the legacy types, 0.7.13 for the current generation's), and the helpers
//! that build whole frames from them.
//!
//! The relay itself builds `ExecSignal` (its kills) and, toward a current
//! guest, `InitAck`, `RelayClientDisconnected` and `ClockSync`, and toward a
//! client the `ExecFailed` of a refused execution; it reads `ExecRequest.tty`,
//! exec output, the facts of a current `Ready`, `CoreError`, `ExecStdinAck`
//! and `WorkloadTransportCredit`. The other structs serve the CLI's client and
//! the demo agent.

use std::borrow::Cow;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::envelope::{cbor_string, encode_envelope, encode_envelope_v};
use super::{EnvelopeError, Frame, MsgType};

/// `core.exec.request`: start a process in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program to run.
    pub cmd: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=VALUE` environment entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// User to run as.
    #[serde(default)]
    pub user: Option<String>,
    /// Run under a pty (output then arrives as one merged stream).
    #[serde(default)]
    pub tty: bool,
    /// Pty rows.
    #[serde(default = "default_rows")]
    pub rows: u16,
    /// Pty columns.
    #[serde(default = "default_cols")]
    pub cols: u16,
    /// Resource limits.
    #[serde(default)]
    pub rlimits: Vec<ExecRlimit>,
}

impl ExecRequest {
    /// A request to run `cmd`: no arguments, env, cwd, user, pty or rlimits,
    /// and the protocol's default 24x80 size.
    pub fn new(cmd: impl Into<String>) -> ExecRequest {
        ExecRequest {
            cmd: cmd.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            user: None,
            tty: false,
            rows: default_rows(),
            cols: default_cols(),
            rlimits: Vec::new(),
        }
    }

    /// The same request with these arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> ExecRequest {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }
}

fn default_rows() -> u16 {
    24
}

fn default_cols() -> u16 {
    80
}

/// One resource limit of an [`ExecRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRlimit {
    /// Lowercase rlimit name, e.g. `nofile`.
    pub resource: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// `core.exec.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    /// Guest pid of the process.
    pub pid: u32,
}

/// `core.exec.stdin`, `core.exec.stdout`, `core.exec.stderr` and `core.fs.data`
/// all carry one byte string named `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `core.exec.exited`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExited {
    /// Exit code (128 + n for a signal, as the guest reports it).
    pub code: i32,
}

/// Why an exec could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecFailureKind {
    /// The program was not found.
    NotFound,
    /// Permission denied.
    PermissionDenied,
    /// The file is not executable.
    NotExecutable,
    /// The working directory is bad.
    BadCwd,
    /// The arguments are bad.
    BadArgs,
    /// A resource limit was hit.
    ResourceLimit,
    /// Switching user failed.
    UserSetupFailed,
    /// Out of memory.
    OutOfMemory,
    /// The pty could not be set up.
    PtySetupFailed,
    /// Anything else.
    Other,
}

/// `core.exec.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFailed {
    /// The failure class.
    pub kind: ExecFailureKind,
    /// OS errno, when there is one.
    #[serde(default)]
    pub errno: Option<i32>,
    /// Symbolic errno name.
    #[serde(default)]
    pub errno_name: Option<String>,
    /// Human-readable message.
    pub message: String,
    /// Which start-up stage failed.
    #[serde(default)]
    pub stage: Option<String>,
}

/// `core.exec.resize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// `core.exec.signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSignal {
    /// Signal number (9 is SIGKILL).
    pub signal: i32,
}

/// `core.ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Nanoseconds the guest kernel took to boot.
    pub boot_time_ns: u64,
    /// Nanoseconds init took.
    pub init_time_ns: u64,
    /// Nanoseconds until the agent was ready.
    pub ready_time_ns: u64,
}

/// `core.ready` as a current-generation guest sends it: the legacy timing
/// fields and the capabilities the relay acts on (0.7.13's other optional
/// fields are ignored when read and never written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyCurrent {
    /// Nanoseconds the guest kernel took to boot.
    pub boot_time_ns: u64,
    /// Nanoseconds init took.
    pub init_time_ns: u64,
    /// Nanoseconds until the agent was ready.
    pub ready_time_ns: u64,
    /// The agent's package version, for diagnostics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_version: String,
    /// The input-credit contract: 2 is the one the relay implements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_transport_barrier_version: Option<u8>,
    /// The sandbox's execution policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_limits: Option<ExecLimits>,
    /// The range-lease formats the guest reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_lease: Option<RelayLeaseReady>,
}

/// What the relay reads from a current `core.ready`, leniently: a field it
/// does not know, or timing it does not need, never fails the read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReadyFacts {
    /// The input-credit contract.
    #[serde(default)]
    pub workload_transport_barrier_version: Option<u8>,
    /// The sandbox's execution policy.
    #[serde(default)]
    pub exec_limits: Option<ExecLimits>,
    /// The range-lease record formats the guest reads.
    #[serde(default)]
    pub relay_lease: Option<RelayLeaseReady>,
}

/// `core.ready`'s `relay_lease`: the highest lease record format the guest
/// reads (0.7.13 agentd offers 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayLeaseReady {
    /// The highest format.
    pub max_format: u8,
}

/// The sandbox's execution policy (0.7.13's `ExecLimits`; a missing field
/// takes its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecLimits {
    /// Executions that may run at once, sandbox-wide.
    pub max_executions: u32,
    /// Unconsumed stdin bytes one execution may have outstanding.
    pub input_limit: u32,
    /// Unacknowledged output bytes one execution may have outstanding.
    pub output_limit: u32,
    /// Largest stdin chunk.
    pub stdin_chunk_size: u32,
    /// Largest output chunk.
    pub output_chunk_size: u32,
}

impl Default for ExecLimits {
    fn default() -> ExecLimits {
        ExecLimits {
            max_executions: 128,
            input_limit: 64 << 10,
            output_limit: 1 << 20,
            stdin_chunk_size: 16 << 10,
            output_chunk_size: 16 << 10,
        }
    }
}

impl ExecLimits {
    /// The checks 0.7.13 makes of an execution policy: chunks that fit a
    /// frame and their allowances, at least one execution.
    pub fn validate(&self) -> Result<(), String> {
        const CHUNK_MAX: u32 = (4 << 20) - 1024;
        const OUTPUT_OVERHEAD: u64 = 256;
        if self.max_executions == 0 {
            return Err("max_executions is 0".into());
        }
        if self.stdin_chunk_size == 0 || self.stdin_chunk_size > self.input_limit {
            return Err(format!(
                "stdin_chunk_size {} is not within 1..={} (input_limit)",
                self.stdin_chunk_size, self.input_limit
            ));
        }
        if self.stdin_chunk_size > CHUNK_MAX || self.output_chunk_size > CHUNK_MAX {
            return Err(format!("a chunk size is over {CHUNK_MAX} bytes"));
        }
        if self.output_chunk_size == 0
            || u64::from(self.output_chunk_size) + OUTPUT_OVERHEAD > u64::from(self.output_limit)
        {
            return Err(format!(
                "output_chunk_size {} plus {OUTPUT_OVERHEAD} is over output_limit {}",
                self.output_chunk_size, self.output_limit
            ));
        }
        Ok(())
    }
}

/// `core.init.ack`: the host took the guest's init context, or (with
/// `failure`) saved its initialization failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitAck {
    /// True only when acknowledging an initialization failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failure: bool,
}

/// `core.error`, as far as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreError {
    /// Machine-readable kind, e.g. `initialization_failed`.
    pub kind: String,
    /// What went wrong, in words.
    pub message: String,
}

/// The `kind` of a `core.error` that reports a failed guest start.
pub const INITIALIZATION_FAILED: &str = "initialization_failed";

/// `core.relay.client.disconnected`: one client's id range is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayClientDisconnected {
    /// First id of the range.
    pub id_start: u32,
    /// One past its last id.
    pub id_end_exclusive: u32,
    /// The departed owner's incarnation, when the range was leased (CBOR:
    /// an array of 16 unsigned integers, as serde writes `[u8; 16]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<[u8; 16]>,
}

/// `core.clock.sync`: set the guest's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    /// Host time, nanoseconds since the Unix epoch.
    pub unix_time_nanos: u64,
}

/// `core.workload.transport.credit`: absolute cumulative input grants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadTransportCredit {
    /// Control-class bytes, frame prefixes included.
    pub control_bytes: u64,
    /// Control-class frames.
    pub control_frames: u64,
    /// Data-class bytes (raw bulk and data messages), prefixes included.
    pub bulk_bytes: u64,
    /// Data-class frames.
    pub bulk_frames: u64,
}

/// `core.exec.stdin.ack` and `core.exec.output.ack`: cumulative consumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumed {
    /// Bytes consumed so far.
    pub consumed: u64,
}

/// `core.fs.response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsResponse {
    /// Whether the operation succeeded.
    pub ok: bool,
    /// Error text when it did not.
    #[serde(default)]
    pub error: Option<String>,
    /// Result data; the relay never reads it, so it is kept opaque here.
    #[serde(default)]
    pub data: Option<ciborium::Value>,
}

/// Encodes a payload struct to CBOR.
pub fn encode_payload<T: Serialize>(payload: &T) -> Vec<u8> {
    let mut out = Vec::new();
    if ciborium::into_writer(payload, &mut out).is_err() {
        unreachable!("CBOR encoding of a payload struct into a Vec failed");
    }
    out
}

/// Decodes a payload struct from CBOR.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, EnvelopeError> {
    ciborium::from_reader(payload).map_err(super::envelope::cbor_error)
}

/// Builds a whole frame: header flags from the type, envelope as 0.4.4 writes it.
///
/// # Panics
/// If the encoded frame exceeds 4 MiB: callers build small control frames or
/// chunk data below the limit.
pub fn build_frame<T: Serialize>(t: MsgType, id: u32, payload: &T) -> Frame {
    frame_of(t, id, encode_envelope(t, &encode_payload(payload)))
}

/// Builds a whole frame with generation `v` in its envelope.
///
/// # Panics
/// As [`build_frame`].
pub fn build_frame_v<T: Serialize>(v: u8, t: MsgType, id: u32, payload: &T) -> Frame {
    frame_of(t, id, encode_envelope_v(v, t, &encode_payload(payload)))
}

fn frame_of(t: MsgType, id: u32, body: Vec<u8>) -> Frame {
    match Frame::build(id, t.flags(), &body) {
        Ok(frame) => frame,
        Err(e) => panic!("building a {t} frame: {e}"),
    }
}

/// The relay's kill for one exec session: `ExecSignal{signal: 9}`.
pub fn sigkill_frame(id: u32) -> Frame {
    build_frame(MsgType::ExecSignal, id, &ExecSignal { signal: 9 })
}

/// The relay's kill with generation `v`.
pub fn sigkill_frame_v(v: u8, id: u32) -> Frame {
    build_frame_v(v, MsgType::ExecSignal, id, &ExecSignal { signal: 9 })
}

/// The `data` bytes of an exec output (or stdin, or fs data) payload,
/// borrowed when the payload is the canonical `{"data": h'..'}`.
pub fn peek_data(payload: &[u8]) -> Result<Cow<'_, [u8]>, EnvelopeError> {
    if let Some(rest) = payload.strip_prefix(&[0xa1, 0x64, b'd', b'a', b't', b'a'])
        && let Some((data, rest)) = cbor_string(rest, 2)
        && rest.is_empty()
    {
        return Ok(Cow::Borrowed(data));
    }
    decode_payload::<Data>(payload).map(|d| Cow::Owned(d.data))
}

/// The `tty` flag of an exec request; the whole request must decode.
pub fn exec_request_tty(payload: &[u8]) -> Result<bool, EnvelopeError> {
    decode_payload::<ExecRequest>(payload).map(|r| r.tty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_peek_data_matches_full_decode() {
        let p = encode_payload(&Data {
            data: b"abc".to_vec(),
        });
        assert!(matches!(peek_data(&p), Ok(Cow::Borrowed(b"abc"))));
        // Same content, non-canonical (data as an array of ints).
        let p2 = vec![
            0xa1, 0x64, b'd', b'a', b't', b'a', 0x83, 0x18, b'a', 0x18, b'b', 0x18, b'c',
        ];
        assert_eq!(peek_data(&p2).unwrap().as_ref(), b"abc");
        assert!(peek_data(&[0xff]).is_err());
    }

    #[test]
    fn wire_exec_request_new_has_the_protocol_defaults() {
        // `{"cmd": "x"}`: every other field takes its serde default.
        let minimal = [0xa1, 0x63, b'c', b'm', b'd', 0x61, b'x'];
        let decoded: ExecRequest = decode_payload(&minimal).unwrap();
        assert_eq!(decoded, ExecRequest::new("x"));
        assert_eq!((decoded.rows, decoded.cols), (24, 80), "0.4.4's defaults");
        assert_eq!(ExecRequest::new("x").args(["a", "b"]).args, vec!["a", "b"]);
    }

    #[test]
    fn wire_sigkill_frame_layout() {
        let f = sigkill_frame(0x0102_0304);
        assert_eq!(f.id(), 0x0102_0304);
        assert_eq!(f.flags(), 0);
        let env = super::super::peek_envelope(f.body()).unwrap();
        assert_eq!(env.t, MsgType::ExecSignal);
        assert_eq!(
            decode_payload::<ExecSignal>(&env.payload).unwrap(),
            ExecSignal { signal: 9 }
        );
    }
}
