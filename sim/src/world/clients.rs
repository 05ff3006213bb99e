//! SDK-like clients and malicious ones: they connect (alone or in reconnect
//! storms), read their handshake and frames the way their [`Reading`] says
//! (steadily, when picked, with stalls, never, or a trickle, as the swarm
//! says), open exec and fs sessions, send stdin, resizes, signals and
//! shutdowns, send frames the relay must refuse (legacy ones frames of
//! every type of the 0.7.13 table too), and leave at any byte.

use std::collections::{BTreeMap, VecDeque};

use agent_relay::core::{ClientId, Event, IdRange, Millis};
use agent_relay::wire::payload::{ExecResize, encode_payload};
use agent_relay::wire::{
    FLAG_SESSION_START, FLAG_SHUTDOWN, FLAG_TERMINAL, LEGACY_VERSION, MAX_FRAME_LEN, MsgType,
    PREFIX_LEN, check_len,
};
use bytes::Bytes;
use msp7::message::MessageType;
use strum::IntoEnumIterator;

use super::faults::Fault;
use super::{READ_MAX, World};
use agent_relay::testkit::frames;

/// What a client reads of its frames: each one's header, as it completes
/// (the bodies are skipped, not kept). A length the protocol forbids stops
/// the reading for good, as it would stop a frame decoder.
#[derive(Debug, Default)]
pub(super) struct Heads {
    head: [u8; PREFIX_LEN],
    have: usize,
    /// Body bytes of the current frame still to come.
    left: usize,
    broken: bool,
}

impl Heads {
    /// Reads `bytes`, calling `frame(id, flags)` for each frame completed.
    fn read(&mut self, mut bytes: &[u8], mut frame: impl FnMut(u32, u8)) {
        while !bytes.is_empty() && !self.broken {
            if self.have < PREFIX_LEN {
                let take = (PREFIX_LEN - self.have).min(bytes.len());
                self.head[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                self.have += take;
                bytes = &bytes[take..];
                if self.have < PREFIX_LEN {
                    return;
                }
                let h = &self.head;
                let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                if check_len(len).is_err() {
                    self.broken = true;
                    return;
                }
                self.left = len as usize + 4 - PREFIX_LEN;
            }
            let take = self.left.min(bytes.len());
            self.left -= take;
            bytes = &bytes[take..];
            if self.left == 0 {
                let h = &self.head;
                frame(u32::from_be_bytes([h[4], h[5], h[6], h[7]]), h[8]);
                self.have = 0;
            }
        }
    }
}

/// An SDK-like client (or a malicious one).
#[derive(Debug)]
pub(super) struct Actor {
    pub(super) id: ClientId,
    pub(super) malicious: bool,
    pub(super) reading: Reading,
    pub(super) range: Option<IdRange>,
    pub(super) hs: Vec<u8>,
    pub(super) heads: Heads,
    pub(super) sock: VecDeque<Bytes>,
    pub(super) sock_len: usize,
    pub(super) out: Vec<u8>,
    pub(super) pos: usize,
    pub(super) paused: bool,
    pub(super) next_id: u32,
    /// Open sessions (and requests awaiting their reply) as the client sees them.
    pub(super) sessions: BTreeMap<u32, Sess>,
    pub(super) stalled_until: Millis,
}

/// How a client reads what the relay hands it (rule
/// `backpressure_bounded_wait` promises the ones that keep pace their
/// output, and the others a bounded cost to everyone else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Reads some or all of what it holds when a move picks it.
    Picked,
    /// Keeps pace: besides the moves, reads all it holds at least every
    /// `period` ms (under a quarter of the grace period); `next` is its
    /// next read.
    Steady { period: Millis, next: Millis },
    /// The slow reader of old: stops reading for up to three grace periods
    /// now and then.
    Stalls,
    /// Never reads its output (until the faults heal).
    Staller,
    /// Reads a few bytes at most when picked (a trickle is not progress).
    Trickler,
    /// Reads all it holds, and only, once that passes three quarters of its
    /// soft budget: it keeps its own pace but holds much of it, so several
    /// of them pass the sum's mark without any being over.
    Batcher,
    /// Current worlds: makes the least progress there is, late. Every
    /// `period` ms (half to nine tenths of the grace period; `next` is its
    /// next read) it reads down to exactly half its soft budget, or now and
    /// then to one byte more (not progress), so it goes over, comes back
    /// to the mark and goes over again across grace periods.
    Halfway { period: Millis, next: Millis },
}

/// What a client has open on an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sess {
    Exec,
    Fs,
    /// Current: a tcp connection.
    Tcp,
    /// Current: a request (ping, touch, a type the relay does not know)
    /// waiting for its reply.
    Ask,
}

impl World {
    pub(super) fn actor(&mut self, c: ClientId) -> Option<&mut Actor> {
        self.actors.iter_mut().find(|a| a.id == c)
    }

    pub(super) fn connect(&mut self) {
        if self.heal {
            return;
        }
        let storm = self.fault(Fault::ReconnectStorm);
        let count = if storm { self.rng.range(3, 12) } else { 1 };
        if !storm && self.actors.len() >= self.target_clients {
            return;
        }
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = ClientId(self.next_client);
            self.next_client += 1;
            let malicious = self.fault(Fault::Malicious);
            let reading = self.reading();
            self.actors.push(Actor {
                id,
                malicious,
                reading,
                range: None,
                hs: Vec::new(),
                heads: Heads::default(),
                sock: VecDeque::new(),
                sock_len: 0,
                out: Vec::new(),
                pos: 0,
                paused: false,
                next_id: 0,
                sessions: BTreeMap::new(),
                stalled_until: 0,
            });
            self.feed(Event::ClientConnected(id));
            ids.push(id);
        }
        if storm {
            for id in ids {
                if self.rng.chance(600) && self.actor(id).is_some() {
                    self.drop_actor(id);
                    self.feed(Event::ClientDisconnected(id));
                }
            }
        }
    }

    /// A new client's way of reading: with the slow-reader fault one of the
    /// slow ways, else steady or when picked, half and half.
    fn reading(&mut self) -> Reading {
        // A draw of current worlds only: legacy worlds keep theirs.
        if self.generation == super::Generation::Current && self.rng.chance(150) {
            let grace = self.cfg.grace;
            let period = self.rng.range((grace / 2).max(1), (grace / 10 * 9).max(2));
            return Reading::Halfway {
                period,
                next: self.now + period,
            };
        }
        if self.hoarders && self.rng.chance(900) {
            return Reading::Batcher;
        }
        if self.fault(Fault::SlowReader) {
            return self
                .rng
                .pick(&[Reading::Stalls, Reading::Staller, Reading::Trickler]);
        }
        match self.rng.below(10) {
            0..=3 => {
                let period = self.rng.range(1, (self.cfg.grace / 4).max(1));
                Reading::Steady {
                    period,
                    next: self.now + period,
                }
            }
            4..=7 => Reading::Picked,
            _ => Reading::Batcher,
        }
    }

    /// Steady readers whose time came read all they hold, and batchers
    /// whose batch is full.
    pub(super) fn steady_reads(&mut self) {
        let now = self.now;
        let batch = self.cfg.client_soft_budget / 4 * 3;
        for i in 0..self.actors.len() {
            match self.actors[i].reading {
                Reading::Steady { period, next } if next <= now => {
                    self.actors[i].reading = Reading::Steady {
                        period,
                        next: now + period,
                    };
                    self.client_read_all(i);
                }
                Reading::Batcher if self.actors[i].sock_len > batch => self.client_read_all(i),
                Reading::Halfway { period, next } if next <= now => {
                    self.actors[i].reading = Reading::Halfway {
                        period,
                        next: now + period,
                    };
                    let mark = self.cfg.client_soft_budget / 2 + usize::from(self.rng.chance(250));
                    let held = self.actors[i].sock_len;
                    if held > mark && self.actors[i].range.is_some() {
                        self.client_read_n(i, held - mark);
                    }
                }
                _ => {}
            }
        }
    }

    pub(super) fn client_send(&mut self, i: usize) {
        let tiny = self.roll(Fault::TinyChunks);
        let heal = self.heal;
        let a = &mut self.actors[i];
        let pending = a.out.len() - a.pos;
        if a.paused || pending == 0 {
            return;
        }
        let n = if heal {
            pending.min(READ_MAX)
        } else if tiny {
            self.rng.range_usize(1, 16).min(pending)
        } else {
            self.rng.range_usize(1, pending.min(READ_MAX))
        };
        let a = &mut self.actors[i];
        let id = a.id;
        self.scratch.clear();
        self.scratch.extend_from_slice(&a.out[a.pos..a.pos + n]);
        a.pos += n;
        if a.pos == a.out.len() {
            a.out.clear();
            a.pos = 0;
        }
        self.feed_scratch(|b| Event::ClientBytes(id, b));
    }

    /// A client's read when a move picks it, as its [`Reading`] says.
    pub(super) fn client_read(&mut self, i: usize) {
        let now = self.now;
        let a = &self.actors[i];
        if a.sock_len == 0 || now < a.stalled_until {
            return;
        }
        let total = a.sock_len;
        // Every client reads its handshake when picked (it acts only once it
        // has its range); its way of reading applies to its output.
        let reading = if a.range.is_some() {
            a.reading
        } else {
            Reading::Picked
        };
        let n = match reading {
            _ if self.heal => total,
            Reading::Staller | Reading::Batcher | Reading::Halfway { .. } => return,
            Reading::Stalls if self.rng.chance(300) => {
                self.count(Fault::SlowReader);
                let stall = self.rng.range(10, 3 * self.cfg.grace);
                self.actors[i].stalled_until = now + stall;
                return;
            }
            Reading::Trickler => {
                self.count(Fault::SlowReader);
                self.rng.range_usize(1, 64).min(total)
            }
            Reading::Picked | Reading::Steady { .. } | Reading::Stalls => {
                if self.rng.chance(500) {
                    total
                } else {
                    self.rng.range_usize(1, total)
                }
            }
        };
        self.client_read_n(i, n);
    }

    /// A client reads all it holds.
    pub(super) fn client_read_all(&mut self, i: usize) {
        let total = self.actors[i].sock_len;
        if total > 0 {
            self.client_read_n(i, total);
        }
    }

    /// `n` bytes reach client `i`, which parses them.
    fn client_read_n(&mut self, i: usize, n: usize) {
        let a = &mut self.actors[i];
        let id = a.id;
        a.sock_len -= n;
        let mut left = n;
        let prefix = self.prefix;
        let current = self.generation == super::Generation::Current;
        while left > 0 {
            let front = a.sock.front_mut().expect("sock_len counts these");
            let take = left.min(front.len());
            let chunk = front.split_to(take);
            if front.is_empty() {
                a.sock.pop_front();
            }
            left -= take;
            let mut chunk = &chunk[..];
            if a.hs.len() < prefix {
                let need = (prefix - a.hs.len()).min(chunk.len());
                a.hs.extend_from_slice(&chunk[..need]);
                chunk = &chunk[need..];
                if a.hs.len() == prefix {
                    let start = u32::from_be_bytes([a.hs[0], a.hs[1], a.hs[2], a.hs[3]]);
                    let end = if current {
                        u32::from_be_bytes([a.hs[4], a.hs[5], a.hs[6], a.hs[7]])
                    } else {
                        start.wrapping_add(self.cfg.step())
                    };
                    a.range = Some(IdRange { start, end });
                    a.next_id = start;
                }
            }
            let sessions = &mut a.sessions;
            a.heads.read(chunk, |id, flags| {
                if flags & FLAG_TERMINAL != 0 {
                    sessions.remove(&id);
                }
            });
        }
        self.feed(Event::ClientWritten(id, n));
    }

    /// A client's own move: misbehave (malicious clients), leave, or do one
    /// [`ClientOp`].
    pub(super) fn client_act(&mut self, i: usize) {
        if self.heal {
            return;
        }
        let a = &self.actors[i];
        let id = a.id;
        let Some(range) = a.range else {
            if a.malicious && self.rng.chance(100) {
                self.count(Fault::Malicious);
                self.actors[i]
                    .out
                    .extend_from_slice(b"\x00\x00\x00\x10early");
            }
            return;
        };
        if a.malicious && self.rng.chance(150) {
            self.count(Fault::Malicious);
            let current = self.generation == super::Generation::Current;
            // In a recycled slot, mostly a record on one of the previous
            // owner's ended ids: that is where a slot's memory of ended ids
            // must have been cleared for its new owner.
            let bad = if current && self.recycled(i, range) && self.rng.chance(850) {
                self.recycled_bulk(i, range)
            } else if current {
                self.bad_frame_current(i, range)
            } else {
                self.bad_frame(i, range)
            };
            self.actors[i].out.extend_from_slice(&bad);
            return;
        }
        let leave = self.fault(Fault::ClientDrop) || self.rng.chance(8);
        if leave {
            self.drop_actor(id);
            self.feed(Event::ClientDisconnected(id));
            return;
        }
        if self.generation == super::Generation::Current {
            return self.sdk_act(i, range);
        }
        self.legacy_act(i, range);
    }

    /// Client `c` is gone; the ids of its range whose end it saw (the last
    /// 64, as the relay remembers them for late bulk records) are kept for
    /// the range's next owner (see [`World::bulk_id`]).
    pub(super) fn drop_actor(&mut self, c: ClientId) {
        let Some(i) = self.actors.iter().position(|a| a.id == c) else {
            return;
        };
        let a = self.actors.remove(i);
        if let Some(range) = a.range {
            let ended: Vec<u32> = (range.start..a.next_id)
                .rev()
                .filter(|id| !a.sessions.contains_key(id))
                .take(64)
                .collect();
            self.departed_ids.insert(range.start, ended);
        }
    }

    /// The ids the previous owner of client `i`'s range saw end and `i`
    /// has not used yet (a recycled slot must not take them for its new
    /// owner's own recently ended ones).
    fn theirs(&self, i: usize, range: IdRange) -> &[u32] {
        let own = self.actors[i].next_id.max(range.start);
        let ended = self
            .departed_ids
            .get(&range.start)
            .map_or(&[][..], |e| &e[..]);
        // Newest first: the ones `i` has not reached come first.
        let n = ended.iter().take_while(|&&id| id >= own).count();
        &ended[..n]
    }

    /// Whether client `i` holds a recycled range whose previous owner saw
    /// ids end that `i` has not used yet.
    fn recycled(&self, i: usize, range: IdRange) -> bool {
        !self.theirs(i, range).is_empty()
    }

    /// A bulk record, host to guest, on an id whose end the previous owner
    /// of client `i`'s recycled range saw and `i` has not used: it opened
    /// nothing there, so nothing of its own is open or ended lately, and the
    /// relay must refuse it, whatever the slot remembers of the previous
    /// owner (rule `late_bulk_dropped` is about the sender's own ids).
    fn recycled_bulk(&mut self, i: usize, range: IdRange) -> Vec<u8> {
        let n = self.theirs(i, range).len();
        let at = self.rng.below(n.max(1) as u64) as usize;
        let id = self
            .theirs(i, range)
            .get(at)
            .copied()
            .unwrap_or(range.end - 1);
        let mut out = Vec::new();
        frames::push_bulk(&mut out, id, 2, 1, 0, b"x");
        out
    }

    /// The id of a current malicious client's bulk record that names no
    /// correlation of its own, or may: anywhere in its range. Four in ten
    /// are an id whose end the range's previous owner saw and it has not
    /// used (as [`World::recycled_bulk`]), two in ten one of its own (open,
    /// ended lately or long ago), two in ten any id, two in ten the range's
    /// last (nobody's).
    pub(super) fn bulk_id(&mut self, i: usize, range: IdRange) -> u32 {
        let own = self.actors[i].next_id.max(range.start);
        let theirs = self.theirs(i, range).len();
        match self.rng.below(10) {
            0..=3 if theirs > 0 => {
                let at = self.rng.below(theirs as u64) as usize;
                self.theirs(i, range)[at]
            }
            0..=5 if own > range.start => {
                self.rng.range(u64::from(range.start), u64::from(own - 1)) as u32
            }
            0..=7 => {
                self.rng
                    .range(u64::from(range.start), u64::from(range.end - 1)) as u32
            }
            _ => range.end - 1,
        }
    }

    /// A legacy client's own move: one [`ClientOp`].
    fn legacy_act(&mut self, i: usize, range: IdRange) {
        let op = self.rng.weighted(&CLIENT_OPS);
        let burst = self.roll(Fault::Burst);
        let a = &self.actors[i];
        let execs: Vec<u32> = a
            .sessions
            .iter()
            .filter(|(_, e)| **e == Sess::Exec)
            .map(|(&k, _)| k)
            .collect();
        let target =
            (!execs.is_empty()).then(|| execs[self.rng.below(execs.len() as u64) as usize]);
        let fresh = (a.next_id < range.end - 1).then_some(a.next_id);
        match (op, target, fresh) {
            (ClientOp::ExecRequest, _, Some(sid)) => self.open_exec(i, sid),
            (ClientOp::Stdin, Some(sid), _) => self.send_stdin(i, sid, burst),
            (ClientOp::Resize, Some(sid), _) => {
                let p = encode_payload(&ExecResize {
                    rows: 40,
                    cols: 120,
                });
                let out = &mut self.actors[i].out;
                frames::push_raw(out, LEGACY_VERSION, MsgType::ExecResize, sid, 0, &p);
            }
            (ClientOp::Signal, Some(sid), _) => {
                let sig = self.rng.pick(&[2, 15, 9, 9]);
                let out = &mut self.actors[i].out;
                out.extend_from_slice(&frames::signal(LEGACY_VERSION, sid, sig));
            }
            (ClientOp::FsRequest, _, Some(sid)) => self.open_fs(i, sid),
            (ClientOp::Shutdown, _, _) => {
                if self.rng.chance(200) {
                    let out = &mut self.actors[i].out;
                    let (t, flags) = (MsgType::Shutdown, FLAG_SHUTDOWN);
                    frames::push_raw(out, LEGACY_VERSION, t, range.start, flags, &[0xa0]);
                }
            }
            // No fresh id left, or no exec session to address.
            (ClientOp::ExecRequest | ClientOp::FsRequest, _, None)
            | (ClientOp::Stdin | ClientOp::Resize | ClientOp::Signal, None, _)
            | (ClientOp::Idle, _, _) => {}
        }
    }

    fn open_exec(&mut self, i: usize, sid: u32) {
        let a = &mut self.actors[i];
        a.next_id += 1;
        let tty = self.rng.chance(300);
        let argc = self.rng.range_usize(0, 3);
        self.exec_frames
            .push(&mut a.out, LEGACY_VERSION, sid, tty, argc);
        a.sessions.insert(sid, Sess::Exec);
    }

    pub(super) fn send_stdin(&mut self, i: usize, sid: u32, burst: bool) {
        let size = if burst {
            self.count(Fault::Burst);
            self.rng.range_usize(1 << 10, 32 << 10)
        } else {
            self.rng.size(200)
        };
        let data = vec![b'i'; size];
        let out = &mut self.actors[i].out;
        frames::push_data(out, LEGACY_VERSION, MsgType::ExecStdin, sid, 0, &data);
    }

    fn open_fs(&mut self, i: usize, sid: u32) {
        let a = &mut self.actors[i];
        a.next_id += 1;
        let payload = [
            0xa2, 0x62, b'o', b'p', 0x64, b'r', b'e', b'a', b'd', 0x64, b'p', b'a', b't', b'h',
            0x62, b'/', b'x',
        ];
        let (t, flags) = (MsgType::FsRequest, FLAG_SESSION_START);
        frames::push_raw(&mut a.out, LEGACY_VERSION, t, sid, flags, &payload);
        for _ in 0..self.rng.range(0, 2) {
            frames::push_data(
                &mut a.out,
                LEGACY_VERSION,
                MsgType::FsData,
                sid,
                0,
                b"upload",
            );
        }
        a.sessions.insert(sid, Sess::Fs);
    }

    /// A frame the relay must refuse (and close the sender for).
    pub(super) fn bad_frame(&mut self, i: usize, range: IdRange) -> Vec<u8> {
        let kind = self.rng.pick(&BadFrame::ALL);
        self.bad_frame_of(i, range, 1, kind)
    }

    /// One of the bad frames both generations share ([`BadFrame::SHARED`]),
    /// with generation `v` in the envelopes.
    pub(super) fn bad_frame_v(&mut self, i: usize, range: IdRange, v: u8) -> Vec<u8> {
        let kind = self.rng.pick(&BadFrame::SHARED);
        self.bad_frame_of(i, range, v, kind)
    }

    /// A bad frame of `kind`, with generation `v` in the envelopes.
    fn bad_frame_of(&mut self, i: usize, range: IdRange, v: u8, kind: BadFrame) -> Vec<u8> {
        let mut out = Vec::new();
        let open: Option<u32> = self.actors[i].sessions.keys().next().copied();
        match kind {
            BadFrame::OutOfRange => {
                let id = if range.start > 0 && self.rng.chance(500) {
                    range.start - 1
                } else {
                    range.end
                };
                frames::push_data(&mut out, v, MsgType::ExecStdin, id, 0, b"x");
            }
            BadFrame::TooLong => {
                let len = self
                    .rng
                    .range(u64::from(MAX_FRAME_LEN) + 1, u64::from(u32::MAX))
                    as u32;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0; 9]);
            }
            BadFrame::TooShort => {
                let len = self.rng.range(0, 4) as u32;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0; 9]);
            }
            BadFrame::GarbageEnvelope => {
                let mut body = vec![0u8; self.rng.range_usize(1, 30)];
                self.rng.fill(&mut body);
                body[0] = 0xff;
                out.extend_from_slice(&((5 + body.len()) as u32).to_be_bytes());
                out.extend_from_slice(&range.start.to_be_bytes());
                out.push(0);
                out.extend_from_slice(&body);
            }
            BadFrame::WrongFlags => {
                let flags =
                    self.rng
                        .pick(&[FLAG_TERMINAL, FLAG_SESSION_START, FLAG_SHUTDOWN, 0x80]);
                frames::push_data(&mut out, v, MsgType::ExecStdin, range.start, flags, b"x");
            }
            BadFrame::GuestType => {
                frames::push_data(&mut out, v, MsgType::ExecStdout, range.start, 0, b"x");
            }
            BadFrame::ReopenSession if open.is_some() => {
                let sid = open.expect("checked");
                self.exec_frames.push(&mut out, v, sid, false, 0);
            }
            BadFrame::AnyType => {
                // One type of the 0.7.13 table, drawn from its own list, with
                // its flags and an empty map for payload, on an id it has
                // open (else its range's first). A legacy relay forwards
                // only the 0.4.4 types clients send.
                let all: Vec<MessageType> = MessageType::iter().collect();
                let t = self.rng.pick(&all);
                let id = open.unwrap_or(range.start);
                out.extend_from_slice(&frames::named(v, t.as_str(), id, t.flags(), &[0xa0]));
            }
            // With no session open, a reopen becomes a bad exec request.
            BadFrame::ReopenSession | BadFrame::BadExecRequest => {
                frames::push_raw(
                    &mut out,
                    v,
                    MsgType::ExecRequest,
                    range.start,
                    FLAG_SESSION_START,
                    &[0xa1, 0x61, b'x', 0x01],
                );
            }
        }
        out
    }
}

/// What a well-behaved client does on its turn: one weighted draw (the
/// weights sum to 100, so it is one `below(100)` mapped onto consecutive
/// ranges in table order; reordering the table changes every world).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientOp {
    /// Open an exec session (needs a fresh id).
    ExecRequest,
    /// Stdin for one of its exec sessions.
    Stdin,
    /// A resize for one of its exec sessions.
    Resize,
    /// A signal (INT, TERM or KILL) for one of its exec sessions.
    Signal,
    /// Open an fs session and upload 0 to 2 chunks (needs a fresh id).
    FsRequest,
    /// One in five of these sends `core.shutdown`.
    Shutdown,
    /// Nothing.
    Idle,
}

const CLIENT_OPS: [(ClientOp, u64); 7] = [
    (ClientOp::ExecRequest, 30),
    (ClientOp::Stdin, 25),
    (ClientOp::Resize, 7),
    (ClientOp::Signal, 10),
    (ClientOp::FsRequest, 15),
    (ClientOp::Shutdown, 1),
    (ClientOp::Idle, 12),
];

/// The frames a malicious client sends, equally often (one `pick` over
/// [`BadFrame::ALL`] in a legacy world, over [`BadFrame::SHARED`] for a
/// current world's `BadCurrent::Legacy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadFrame {
    /// An id just outside its range.
    OutOfRange,
    /// A length over the 4 MiB limit.
    TooLong,
    /// A length under the 5 header bytes.
    TooShort,
    /// An envelope that does not decode.
    GarbageEnvelope,
    /// Flags its type does not carry.
    WrongFlags,
    /// A type only the guest sends.
    GuestType,
    /// An exec request for a session it has open.
    ReopenSession,
    /// An exec request whose payload does not decode.
    BadExecRequest,
    /// Legacy: a frame of any type of the 0.7.13 message table (each
    /// equally often), with its type's flags: most are types 0.4.4 does not
    /// have (a 0.4.4 guest's decoder cannot read them), or ones clients may
    /// not send; the 0.4.4 types clients send may pass.
    AnyType,
}

impl BadFrame {
    /// The kinds both generations send, in draw order (a current world's
    /// `BadCurrent::Legacy` draws from these).
    pub(super) const SHARED: [BadFrame; 8] = [
        BadFrame::OutOfRange,
        BadFrame::TooLong,
        BadFrame::TooShort,
        BadFrame::GarbageEnvelope,
        BadFrame::WrongFlags,
        BadFrame::GuestType,
        BadFrame::ReopenSession,
        BadFrame::BadExecRequest,
    ];

    /// Every kind a legacy client sends, in draw order.
    pub(super) const ALL: [BadFrame; 9] = [
        BadFrame::OutOfRange,
        BadFrame::TooLong,
        BadFrame::TooShort,
        BadFrame::GarbageEnvelope,
        BadFrame::WrongFlags,
        BadFrame::GuestType,
        BadFrame::ReopenSession,
        BadFrame::BadExecRequest,
        BadFrame::AnyType,
    ];
}
