//! SDK-like clients of the current generation (the 0.7.13 agent client):
//! they take their canonical range from the bounds prologue and allocate ids
//! from `id_start` up, never reusing one; they run execs (stdin, resizes,
//! signals, output acks), fs and tcp sessions with data and raw bulk records
//! host to guest, pings and touches, bulk control, and `core.shutdown` on id
//! 0 (a whole envelope, payload `()`). Malicious ones add the current
//! generation's bad frames: forged relay and runtime types, undefined flags,
//! bad or misdirected bulk records, `control.*` names, trailing bytes, and
//! what agentd's decoder cannot read or answer (types it does not know, the
//! empty-bodied shutdown, an envelope without `p` or with two `v`, a sender
//! of generation 1).

use agent_relay::core::{Event, IdRange};
use agent_relay::wire::payload::{Consumed, ExecRequest, ExecResize, RelayClientDisconnected};
use agent_relay::wire::{FLAG_SESSION_START, FLAG_SHUTDOWN, FLAG_TERMINAL, MsgType};

use super::agentd::Edge;
use super::clients::Sess;
use super::faults::Fault;
use super::{READ_MAX, World};
use agent_relay::testkit::frames;

/// The generation the 0.7.13 client writes.
const V: u8 = 10;

/// What a well-behaved current client does on its turn (one weighted draw;
/// the weights sum to 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SdkOp {
    ExecRequest,
    Stdin,
    Resize,
    Signal,
    OutputAck,
    FsRequest,
    FsData,
    TcpConnect,
    TcpData,
    TcpClose,
    Ping,
    Touch,
    BulkControl,
    Shutdown,
    Idle,
}

const SDK_OPS: [(SdkOp, u64); 15] = [
    (SdkOp::ExecRequest, 18),
    (SdkOp::Stdin, 14),
    (SdkOp::Resize, 4),
    (SdkOp::Signal, 6),
    (SdkOp::OutputAck, 3),
    (SdkOp::FsRequest, 8),
    (SdkOp::FsData, 4),
    (SdkOp::TcpConnect, 7),
    (SdkOp::TcpData, 8),
    (SdkOp::TcpClose, 3),
    (SdkOp::Ping, 12),
    (SdkOp::Touch, 2),
    (SdkOp::BulkControl, 2),
    (SdkOp::Shutdown, 1),
    (SdkOp::Idle, 8),
];

/// The bytes of an edge world's filling execs but the last.
const FILLER: u64 = 1 << 20;

/// The least exec agentd keeps the charge of in an edge world (`agentd.rs`).
const HELD: u64 = 64 << 10;

/// An exec of [`FILLER`] bytes on id 0, built once.
static FILLER_EXEC: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();

/// `core.exec.request` of `sh -c 'eval "$SCRIPT"'` on `id`, `len` bytes
/// long in all (at least 128), the script (in the environment, which the
/// exec log does not quote) sized to fit.
fn exec_of_len(id: u32, len: usize) -> bytes::Bytes {
    let build = |n: usize| {
        let req = ExecRequest {
            env: vec![format!("SCRIPT={}", ":".repeat(n))],
            ..ExecRequest::new("sh").args(["-c", "eval \"$SCRIPT\""])
        };
        frames::frame(V, MsgType::ExecRequest, id, &req)
    };
    let mut n = len.saturating_sub(build(0).len());
    // The script's length header grows by 1, 2 or 4 bytes with it: the
    // length falls short by at most that much, then is met.
    for _ in 0..4 {
        let f = build(n);
        match f.len().cmp(&len) {
            std::cmp::Ordering::Equal => return f,
            std::cmp::Ordering::Less => n += len - f.len(),
            std::cmp::Ordering::Greater => n -= f.len() - len,
        }
    }
    build(n)
}

/// The current generation's bad frames, equally often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadCurrent {
    /// One of the legacy bad frames, in generation 10.
    Legacy,
    /// A disconnect notice naming another client's range.
    ForgedNotice,
    /// An init ack, a clock sync or a workload freeze: not a client's.
    RelayType,
    /// Flags none of the five defined values.
    UndefinedFlags,
    /// A bulk record flowing from the guest.
    BulkFlow,
    /// A bulk record on an id of its range it may have nothing open on
    /// (`World::bulk_id`: often one the slot's previous owner used).
    BulkNothingOpen,
    /// A bulk record whose header does not check.
    BadBulk,
    /// An unknown type carrying SHUTDOWN.
    UnknownShutdown,
    /// A well-formed request of a type agentd does not know (its decoder
    /// cannot read it), with or without SESSION_START or an extra key.
    Unknown,
    /// `core.shutdown` on id 0 with an empty body.
    EmptyShutdown,
    /// A ping from a generation-1 sender (half with a payload agentd cannot
    /// decode, which it could not answer with `core.error`).
    OldGeneration,
    /// A ping whose envelope has no `p`.
    NoPayload,
    /// A ping whose envelope has `v` twice.
    TwoVersions,
    /// A `control.*` name.
    ControlName,
    /// An envelope with a byte after it.
    Trailing,
    /// A ping with TERMINAL.
    WrongFlags,
    /// A frame on id 0 that is not `core.shutdown` with SHUTDOWN: a ping,
    /// an exec request, stdin, a bulk record, a shutdown with other flags.
    IdZero,
}

const BAD_CURRENT: [BadCurrent; 17] = [
    BadCurrent::Legacy,
    BadCurrent::ForgedNotice,
    BadCurrent::RelayType,
    BadCurrent::UndefinedFlags,
    BadCurrent::BulkFlow,
    BadCurrent::BulkNothingOpen,
    BadCurrent::BadBulk,
    BadCurrent::UnknownShutdown,
    BadCurrent::Unknown,
    BadCurrent::EmptyShutdown,
    BadCurrent::OldGeneration,
    BadCurrent::NoPayload,
    BadCurrent::TwoVersions,
    BadCurrent::ControlName,
    BadCurrent::Trailing,
    BadCurrent::WrongFlags,
    BadCurrent::IdZero,
];

impl World {
    /// An open id of client `i` of one of `kinds`, picked at random.
    fn open_of(&mut self, i: usize, kinds: &[Sess]) -> Option<u32> {
        let ids: Vec<u32> = self.actors[i]
            .sessions
            .iter()
            .filter(|(_, k)| kinds.contains(k))
            .map(|(&id, _)| id)
            .collect();
        (!ids.is_empty()).then(|| ids[self.rng.below(ids.len() as u64) as usize])
    }

    /// A fresh id of client `i` (the next from `id_start`), now taken.
    fn take_id(&mut self, i: usize, range: IdRange, kind: Sess) -> Option<u32> {
        let a = &mut self.actors[i];
        let id = (a.next_id < range.end - 1).then_some(a.next_id)?;
        a.next_id += 1;
        a.sessions.insert(id, kind);
        Some(id)
    }

    /// A current client's own move: one [`SdkOp`].
    pub(super) fn sdk_act(&mut self, i: usize, range: IdRange) {
        // A draw of the worlds that take the control window to its edge.
        let edge = self.agentd.as_ref().filter(|g| g.edge != Edge::Off);
        let mine = edge.is_some_and(|g| g.edge_by == Some(self.actors[i].id));
        if edge.is_some() && (mine || self.rng.chance(50)) {
            return self.sdk_edge_exec(i, range);
        }
        let op = self.rng.weighted(&SDK_OPS);
        let burst = self.roll(Fault::Burst);
        match op {
            SdkOp::ExecRequest => {
                if let Some(id) = self.take_id(i, range, Sess::Exec) {
                    let (tty, argc) = (self.rng.chance(300), self.rng.range_usize(0, 3));
                    let out = &mut self.actors[i].out;
                    self.exec_frames.push(out, V, id, tty, argc);
                }
            }
            SdkOp::Stdin => {
                if let Some(id) = self.open_of(i, &[Sess::Exec]) {
                    // A write the SDK splits into chunks, now and then.
                    let chunks = if self.rng.chance(200) {
                        self.rng.range(2, 64)
                    } else {
                        1
                    };
                    for _ in 0..chunks {
                        self.sdk_stdin(i, id, burst);
                    }
                }
            }
            SdkOp::Resize | SdkOp::Signal | SdkOp::OutputAck => self.sdk_exec_control(i, op),
            SdkOp::FsRequest => self.sdk_open(i, range, Sess::Fs),
            SdkOp::TcpConnect => self.sdk_open(i, range, Sess::Tcp),
            SdkOp::FsData | SdkOp::TcpData | SdkOp::TcpClose | SdkOp::BulkControl => {
                self.sdk_stream(i, op, burst);
            }
            SdkOp::Ping | SdkOp::Touch => {
                // A burst of requests now and then (a health check loop).
                let n = if self.rng.chance(250) {
                    self.rng.range(4, 80)
                } else {
                    1
                };
                for _ in 0..n {
                    self.sdk_request(i, range, op);
                }
            }
            SdkOp::Shutdown => {
                if self.rng.chance(200) {
                    self.sdk_shutdown(i);
                }
            }
            SdkOp::Idle => {}
        }
    }

    /// In a world that allows it, clients take the guest's control window
    /// to its edge: execs of a script (1 MiB each, the last 64 KiB or more;
    /// the guest keeps their charge a while) sized to leave it a few KiB,
    /// then, once the guest has read them, one exec that passes the edge by
    /// 1 to 4 bytes. A relay must hold that one back until the guest grants
    /// more (whole frames, the 4-byte length prefix included). Each step is
    /// sent at once. The room is the guest's count; a frame of another
    /// client (or the relay) taking some of it first only makes the last
    /// exec pass it by more.
    fn sdk_edge_exec(&mut self, i: usize, range: IdRange) {
        // What it wrote before goes first, at once.
        let Some(i) = self.flush_client(i) else {
            return;
        };
        if self.guest.inflight_len >= self.cfg.guest_window {
            return;
        }
        let Some(g) = self.agentd.as_ref() else {
            return;
        };
        if g.edge_by.is_some_and(|c| c != self.actors[i].id) {
            return; // another client's steps
        }
        let (edge, all_read) = (g.edge, g.edge_held.bytes == g.edge_sent);
        let Some(room) = self.control_room().filter(|r| all_read && r.frames > 0) else {
            return;
        };
        let left = self.rng.range(1 << 10, 8 << 10);
        let (fixed, last, next) = match edge {
            Edge::Fill if room.bytes > left + HELD + 128 => {
                // Execs of 1 MiB, then one of 64 KiB or more for the rest.
                let fill = room.bytes - left;
                let fixed = (fill - HELD) / FILLER;
                (fixed, fill - fixed * FILLER, Edge::Shoot)
            }
            Edge::Shoot if (128..8 << 10).contains(&room.bytes) => {
                (0, room.bytes + self.rng.range(1, 4), Edge::Off)
            }
            _ => return,
        };
        if fixed + 1 > room.frames {
            return;
        }
        let g = self.agentd.as_mut().expect("checked");
        g.edge = next;
        g.edge_by = Some(self.actors[i].id);
        if next != Edge::Off {
            g.edge_sent += fixed * FILLER + last;
        }
        for _ in 0..fixed {
            let Some(id) = self.take_id(i, range, Sess::Exec) else {
                return;
            };
            // One 1 MiB exec, built once, stamped with its id.
            let one = FILLER_EXEC.get_or_init(|| exec_of_len(0, FILLER as usize));
            let out = &mut self.actors[i].out;
            let at = out.len();
            out.extend_from_slice(one);
            out[at + 4..at + 8].copy_from_slice(&id.to_be_bytes());
        }
        let Some(id) = self.take_id(i, range, Sess::Exec) else {
            return;
        };
        let f = exec_of_len(id, last as usize);
        self.actors[i].out.extend_from_slice(&f);
        self.flush_client(i);
    }

    /// Client `i` sends all it has written, at once and in reads as large
    /// as the driver's: its index then, if it did (it was neither paused
    /// nor closed on the way).
    fn flush_client(&mut self, i: usize) -> Option<usize> {
        let id = self.actors[i].id;
        while let Some(j) = self.actors.iter().position(|a| a.id == id) {
            let a = &self.actors[j];
            if a.out.len() == a.pos {
                return Some(j);
            }
            if a.paused {
                return None;
            }
            let n = (a.out.len() - a.pos).min(READ_MAX);
            self.scratch.clear();
            self.scratch.extend_from_slice(&a.out[a.pos..a.pos + n]);
            let a = &mut self.actors[j];
            a.pos += n;
            if a.pos == a.out.len() {
                a.out.clear();
                a.pos = 0;
            }
            self.feed_scratch(|b| Event::ClientBytes(id, b));
        }
        None
    }

    fn sdk_stdin(&mut self, i: usize, id: u32, burst: bool) {
        let size = if burst {
            self.count(Fault::Burst);
            self.rng.range_usize(1 << 10, 32 << 10)
        } else {
            self.rng.size(200)
        };
        self.scratch.clear();
        self.scratch.resize(size, b'i');
        let out = &mut self.actors[i].out;
        frames::push_data(out, V, MsgType::ExecStdin, id, 0, &self.scratch);
    }

    /// A resize, a signal or an output ack for one of its execs.
    fn sdk_exec_control(&mut self, i: usize, op: SdkOp) {
        let Some(id) = self.open_of(i, &[Sess::Exec]) else {
            return;
        };
        let f = match op {
            SdkOp::Resize => {
                let size = ExecResize {
                    rows: 40,
                    cols: 120,
                };
                frames::frame(V, MsgType::ExecResize, id, &size)
            }
            SdkOp::Signal => frames::signal(V, id, self.rng.pick(&[2, 15, 9, 9])),
            _ => {
                let ack = Consumed {
                    consumed: self.rng.below(1 << 20),
                };
                frames::frame(V, MsgType::ExecOutputAck, id, &ack)
            }
        };
        self.actors[i].out.extend_from_slice(&f);
    }

    /// An fs request or a tcp connect, with 0 to 2 chunks of data after it.
    fn sdk_open(&mut self, i: usize, range: IdRange, kind: Sess) {
        let Some(id) = self.take_id(i, range, kind) else {
            return;
        };
        let out = &mut self.actors[i].out;
        let (t, p): (MsgType, &[u8]) = match kind {
            // {"op": "write", "path": "/x"}
            Sess::Fs => (
                MsgType::FsRequest,
                &[
                    0xa2, 0x62, b'o', b'p', 0x65, b'w', b'r', b'i', b't', b'e', 0x64, b'p', b'a',
                    b't', b'h', 0x62, b'/', b'x',
                ],
            ),
            // {"host": "h", "port": 80}
            _ => (
                MsgType::TcpConnect,
                &[
                    0xa2, 0x64, b'h', b'o', b's', b't', 0x61, b'h', 0x64, b'p', b'o', b'r', b't',
                    0x18, 80,
                ],
            ),
        };
        frames::push_raw(out, V, t, id, FLAG_SESSION_START, p);
        for _ in 0..self.rng.range(0, 2) {
            self.sdk_chunk(i, id, kind, false);
        }
    }

    /// One chunk of an fs or tcp stream: data or a raw bulk record, host to
    /// guest (a tcp stream's end now and then).
    fn sdk_chunk(&mut self, i: usize, id: u32, kind: Sess, burst: bool) {
        let size = if burst {
            self.rng.range_usize(1 << 10, 32 << 10)
        } else {
            self.rng.size(200).max(1)
        };
        self.scratch.clear();
        self.scratch.resize(size, b'u');
        let offset = self.rng.below(1 << 20);
        let out = &mut self.actors[i].out;
        match (kind, self.rng.below(10)) {
            (Sess::Fs, 0..=5) => frames::push_data(out, V, MsgType::FsData, id, 0, &self.scratch),
            (Sess::Tcp, 0..=4) => frames::push_data(out, V, MsgType::TcpData, id, 0, &self.scratch),
            (Sess::Tcp, 5) => frames::push_raw(out, V, MsgType::TcpEof, id, 0, &[0xa0]),
            (Sess::Fs, _) => frames::push_bulk(out, id, 1, 1, offset, &self.scratch),
            _ => frames::push_bulk(out, id, 2, 1, offset, &self.scratch),
        }
    }

    /// Data, a close or bulk control on one of its fs or tcp sessions.
    fn sdk_stream(&mut self, i: usize, op: SdkOp, burst: bool) {
        let kinds: &[Sess] = match op {
            SdkOp::FsData => &[Sess::Fs],
            SdkOp::TcpData | SdkOp::TcpClose => &[Sess::Tcp],
            _ => &[Sess::Fs, Sess::Tcp],
        };
        let Some(id) = self.open_of(i, kinds) else {
            return;
        };
        let kind = self.actors[i].sessions[&id];
        match op {
            SdkOp::FsData | SdkOp::TcpData => {
                for _ in 0..self.rng.range(1, 6) {
                    self.sdk_chunk(i, id, kind, burst);
                }
            }
            SdkOp::TcpClose => {
                let out = &mut self.actors[i].out;
                frames::push_raw(out, V, MsgType::TcpClose, id, 0, &[0xa0]);
            }
            _ => {
                let t = self.rng.pick(&[
                    MsgType::BulkFinish,
                    MsgType::BulkCredit,
                    MsgType::BulkCancel,
                ]);
                let out = &mut self.actors[i].out;
                frames::push_raw(out, V, t, id, 0, &[0xa0]);
            }
        }
    }

    /// A ping or a touch, each on a fresh id, waiting for its reply.
    fn sdk_request(&mut self, i: usize, range: IdRange, op: SdkOp) {
        let Some(id) = self.take_id(i, range, Sess::Ask) else {
            return;
        };
        let t = if op == SdkOp::Ping {
            MsgType::Ping
        } else {
            MsgType::Touch
        };
        frames::push_raw(&mut self.actors[i].out, V, t, id, 0, &[0xa0]);
    }

    /// `core.shutdown` on id 0, its payload `()` (as microsandbox 0.7.13
    /// sends it).
    fn sdk_shutdown(&mut self, i: usize) {
        let out = &mut self.actors[i].out;
        frames::push_raw(out, V, MsgType::Shutdown, 0, FLAG_SHUTDOWN, &[0xf6]);
    }

    /// A frame a current relay must refuse (and close the sender for).
    pub(super) fn bad_frame_current(&mut self, i: usize, range: IdRange) -> Vec<u8> {
        let mut out = Vec::new();
        let id = range.start;
        match self.rng.pick(&BAD_CURRENT) {
            BadCurrent::Legacy => return self.bad_frame_v(i, range, V),
            BadCurrent::ForgedNotice => {
                let other = RelayClientDisconnected {
                    id_start: range.end + 1,
                    id_end_exclusive: range.end.wrapping_add(range.end - range.start + 1),
                    incarnation: None,
                };
                out = frames::frame(V, MsgType::RelayClientDisconnected, id, &other).into();
            }
            BadCurrent::RelayType => {
                let t = self.rng.pick(&[
                    MsgType::InitAck,
                    MsgType::ClockSync,
                    MsgType::WorkloadFreeze,
                    MsgType::Bootstrap,
                ]);
                frames::push_raw(&mut out, V, t, id, 0, &[0xa0]);
            }
            BadCurrent::UndefinedFlags => {
                let flags = self.rng.pick(&[0x03, 0x10, 0x80, 0x09]);
                frames::push_raw(&mut out, V, MsgType::Ping, id, flags, &[0xa0]);
            }
            BadCurrent::BulkFlow => frames::push_bulk(&mut out, id, 1, 2, 0, b"x"),
            BadCurrent::BulkNothingOpen => {
                let on = self.bulk_id(i, range);
                frames::push_bulk(&mut out, on, 2, 1, 0, b"x")
            }
            BadCurrent::BadBulk => {
                frames::push_bulk(&mut out, id, 1, 1, 0, b"x");
                let at = 9 + self.rng.pick(&[0usize, 2]);
                out[at] = 3;
            }
            BadCurrent::UnknownShutdown => {
                frames::push_unknown(&mut out, V, "core.future.stop", id, FLAG_SHUTDOWN, false);
            }
            BadCurrent::Unknown => {
                let (opens, extra) = (self.rng.chance(500), self.rng.chance(500));
                let flags = if opens { FLAG_SESSION_START } else { 0 };
                frames::push_unknown(&mut out, V, "core.future.request", id, flags, extra);
            }
            BadCurrent::EmptyShutdown => {
                out.extend_from_slice(&frames::body_frame(0, FLAG_SHUTDOWN, &[]));
            }
            BadCurrent::OldGeneration => {
                let p: &[u8] = if self.rng.chance(500) {
                    &[0xa0]
                } else {
                    &[0x01]
                };
                frames::push_raw(&mut out, 1, MsgType::Ping, id, 0, p);
            }
            BadCurrent::NoPayload => {
                // {"v": 10, "t": "core.ping"}
                let mut body = vec![0xa2, 0x61, b'v', V, 0x61, b't', 0x69];
                body.extend_from_slice(b"core.ping");
                out.extend_from_slice(&frames::body_frame(id, 0, &body));
            }
            BadCurrent::TwoVersions => {
                // {"v": 10, "t": "core.ping", "v": 10, "p": h'a0'}
                let mut body = vec![0xa4, 0x61, b'v', V, 0x61, b't', 0x69];
                body.extend_from_slice(b"core.ping");
                body.extend_from_slice(&[0x61, b'v', V, 0x61, b'p', 0x41, 0xa0]);
                out.extend_from_slice(&frames::body_frame(id, 0, &body));
            }
            BadCurrent::ControlName => {
                frames::push_unknown(&mut out, V, "control.stop", id, 0, false)
            }
            BadCurrent::Trailing => {
                frames::push_raw(&mut out, V, MsgType::Ping, id, 0, &[0xa0]);
                out.push(0);
                let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) + 1;
                out[..4].copy_from_slice(&len.to_be_bytes());
            }
            BadCurrent::WrongFlags => {
                frames::push_raw(&mut out, V, MsgType::Ping, id, FLAG_TERMINAL, &[0xa0]);
            }
            BadCurrent::IdZero => self.id_zero(&mut out),
        }
        out
    }

    /// Only `core.shutdown` with SHUTDOWN may use id 0: anything else there
    /// is out of the sender's range.
    fn id_zero(&mut self, out: &mut Vec<u8>) {
        match self.rng.below(6) {
            0 => frames::push_raw(out, V, MsgType::Ping, 0, 0, &[0xa0]),
            1 => out.extend_from_slice(&frames::exec_request(V, 0, false, 1)),
            2 => frames::push_data(out, V, MsgType::ExecStdin, 0, 0, b"zero"),
            3 => frames::push_bulk(out, 0, 1, 1, 0, b"zero"),
            4 => frames::push_raw(out, V, MsgType::Shutdown, 0, 0, &[0xf6]),
            _ => {
                let t = self.rng.pick(&[MsgType::Touch, MsgType::FsRequest]);
                frames::push_raw(out, V, t, 0, FLAG_SESSION_START, &[0xa0]);
            }
        }
    }
}
