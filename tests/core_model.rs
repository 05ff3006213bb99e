//! Model-based property test: random event sequences (connects, disconnects
//! at any byte, random chunkings of both streams, sessions opened and ended,
//! slow readers, a misbehaving client) run against the core and against a
//! small reference model of what each party must observe. Routing,
//! completeness, to-the-guest exactly-once, cleanup and isolation are checked
//! after every step and once more after everything drained.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agent_relay::core::{
    Action, ClientId, CloseReason, Config, Event, LegacySettings, Relay, Violation,
};
use agent_relay::wire::{FrameDecoder, MsgType, peek_envelope};
use bytes::Bytes;
use common::*;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

const CLIENTS: u8 = 6;

#[derive(Debug, Clone)]
enum Op {
    Connect(u8),
    Disconnect(u8),
    /// Client queues a frame: 0 exec request, 1 stdin, 2 signal, 3 fs request, 4 resize.
    ClientFrame(u8, u8, u8),
    /// Client delivers this many of its queued bytes.
    ClientFlush(u8, u16),
    /// Client sends a frame with an id outside its range.
    ClientViolate(u8),
    /// Guest emits for one of a client's sessions: 0..=2 output, 3 exit.
    GuestFrame(u8, u8, u8),
    GuestFlush(u16),
    GuestWritten(u16),
    ClientWritten(u8, u16),
    Advance(u16),
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let c = u8::arbitrary(g) % CLIENTS;
        match u8::arbitrary(g) % 40 {
            0..=3 => Op::Connect(c),
            4 | 5 => Op::Disconnect(c),
            6..=13 => Op::ClientFrame(c, u8::arbitrary(g) % 5, u8::arbitrary(g)),
            14..=21 => Op::ClientFlush(c, u16::arbitrary(g) % 200),
            22 if u8::arbitrary(g) % 4 == 0 => Op::ClientViolate(c),
            22 => Op::ClientFlush(c, u16::MAX),
            23..=30 => Op::GuestFrame(c, u8::arbitrary(g), u8::arbitrary(g) % 4),
            31..=34 => Op::GuestFlush(u16::arbitrary(g) % 300),
            35 | 36 => Op::GuestWritten(u16::arbitrary(g)),
            37 | 38 => Op::ClientWritten(c, u16::arbitrary(g)),
            _ => Op::Advance(u16::arbitrary(g) % 3_000),
        }
    }
}

#[derive(Default)]
struct MClient {
    /// Connection generation; `ClientId` = gen * 100 + index.
    conn: Option<u64>,
    range: Option<(u32, u32)>,
    next_id: u32,
    /// Bytes queued by the client, not yet delivered to the relay.
    out: Vec<u8>,
    /// Frame boundaries inside `out`.
    out_frames: VecDeque<Bytes>,
    /// Exec and fs sessions this connection opened: id -> is_exec.
    sessions: BTreeMap<u32, bool>,
    /// Frames the guest emitted for this connection, not yet received.
    expect: VecDeque<Bytes>,
    closed_for_violation: bool,
    /// The id of the out-of-range frame it sent, which the relay must name.
    violation_id: Option<u32>,
    /// Sessions whose terminal frame the guest already emitted.
    ended: BTreeSet<u32>,
}

#[derive(Default)]
struct Model {
    clients: Vec<MClient>,
    /// Per (connection, session id): frames sent, in order, not yet at the guest.
    to_guest: BTreeMap<(u64, u32), VecDeque<Bytes>>,
    /// Per connection: kills expected (ids), with the frames that must precede them.
    kills: BTreeMap<u64, BTreeSet<u32>>,
    /// Connection owning each id range start, for late-frame checks.
    guest_buf: Vec<u8>,
    /// Frames inside `guest_buf` (length, terminal for (conn, id)), and how
    /// much of the first one the relay already has.
    guest_frames: VecDeque<(usize, Option<(u64, u32)>)>,
    guest_partial: usize,
    /// Sessions that departed (conn, id): their late output must reach nobody.
    departed: BTreeSet<(u64, u32)>,
    ranges: BTreeMap<u64, (u32, u32)>,
    next_conn: u64,
}

struct World {
    relay: Relay,
    model: Model,
    now: u64,
    guest_window_used: usize,
}

impl World {
    fn conn_index(&self, id: ClientId) -> Option<usize> {
        self.model.clients.iter().position(|c| c.conn == Some(id.0))
    }

    fn run(&mut self, ev: Event<'_>) -> Result<(), String> {
        self.relay.handle(self.now, ev);
        while let Some(action) = self.relay.poll_action() {
            self.check(action)?;
        }
        Ok(())
    }

    fn check(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Handshake { client, bytes } => {
                let i = self
                    .conn_index(client)
                    .ok_or("handshake to unknown client")?;
                let start = u32::from_be_bytes(bytes[..4].try_into().map_err(|_| "short")?);
                if bytes[4..] != ready(V1, 1)[..] {
                    return Err("handshake without the cached ready frame".into());
                }
                let range = (start, start.wrapping_add(self.relay.config().step()));
                // isolation: live ranges never overlap, nor a departed one with live sessions
                for (&conn, &(s, _)) in &self.model.ranges {
                    let busy = self.model.clients.iter().any(|c| c.conn == Some(conn))
                        || self.model.departed.iter().any(|&(c, _)| c == conn);
                    if busy && s == start {
                        return Err(format!("range {start} handed out twice (conn {conn})"));
                    }
                }
                self.model.ranges.insert(client.0, range);
                let c = &mut self.model.clients[i];
                c.range = Some(range);
                c.next_id = start + 1;
            }
            Action::ToClient { client, frame } => {
                let i = self
                    .conn_index(client)
                    .ok_or_else(|| format!("routing: frame to departed {client}"))?;
                let c = &mut self.model.clients[i];
                let want = c.expect.pop_front();
                if want.as_ref() != Some(&frame) {
                    return Err(format!(
                        "routing/completeness: {client} got id {} but expected {:?}",
                        u32::from_be_bytes(frame[4..8].try_into().unwrap_or_default()),
                        want.map(|w| u32::from_be_bytes(w[4..8].try_into().unwrap_or_default()))
                    ));
                }
            }
            Action::ToGuest { frame } => {
                self.guest_window_used += frame.len();
                let id = u32::from_be_bytes(frame[4..8].try_into().map_err(|_| "short")?);
                // Which connection's session queue has this frame at its head?
                let key = self
                    .model
                    .to_guest
                    .iter()
                    .find(|(k, q)| k.1 == id && q.front() == Some(&frame))
                    .map(|(k, _)| *k);
                if let Some(key) = key {
                    let q = self.model.to_guest.get_mut(&key).ok_or("gone")?;
                    q.pop_front();
                    return Ok(());
                }
                // Otherwise it must be an expected kill, with nothing of that
                // connection still queued ahead of it.
                if frame != kill(V1, id) {
                    return Err(format!(
                        "to_guest: frame for id {id} out of order, duplicated or invented"
                    ));
                }
                let owner = self
                    .model
                    .kills
                    .iter()
                    .find(|(_, ids)| ids.contains(&id))
                    .map(|(c, _)| *c)
                    .ok_or_else(|| format!("cleanup: unexpected SIGKILL for {id}"))?;
                if self
                    .model
                    .to_guest
                    .iter()
                    .any(|(k, q)| k.0 == owner && !q.is_empty())
                {
                    return Err(format!(
                        "cleanup: SIGKILL for {id} overtook its client's frames"
                    ));
                }
                if let Some(ids) = self.model.kills.get_mut(&owner) {
                    ids.remove(&id);
                }
            }
            Action::CloseClient { client, reason } => {
                let i = self.conn_index(client).ok_or("close of unknown client")?;
                if let CloseReason::Violation(why) = reason {
                    let c = &self.model.clients[i];
                    let expected = matches!(
                        why,
                        Violation::OutOfRange { id, .. } if Some(id) == c.violation_id
                    );
                    if !c.closed_for_violation || !expected {
                        return Err(format!("isolation: {client} closed for {why:?}"));
                    }
                }
                self.depart(i);
            }
            Action::Refuse { client, .. } => {
                let i = self.conn_index(client).ok_or("refuse of unknown client")?;
                self.model.clients[i] = MClient::default();
            }
            Action::PauseClient(_)
            | Action::ResumeClient(_)
            | Action::PauseGuest
            | Action::ResumeGuest
            | Action::Log(_) => {}
            Action::Ready
            | Action::Drain
            | Action::GuestCorrupt { .. }
            | Action::FlushExpired { .. }
            | Action::StartupFailed(_) => {
                return Err(format!("unexpected {action:?}"));
            }
        }
        Ok(())
    }

    /// The connection ends: expected kills for its live exec sessions; its
    /// unflushed bytes never count as sent.
    fn depart(&mut self, i: usize) {
        let c = std::mem::take(&mut self.model.clients[i]);
        let Some(conn) = c.conn else { return };
        let kills: BTreeSet<u32> = c
            .sessions
            .iter()
            .filter(|&(_, &exec)| exec)
            .map(|(&id, _)| id)
            .collect();
        // A guest sends nothing for a session after its terminal frame, so
        // only sessions it has not ended yet can have late output.
        for &id in c.sessions.keys().filter(|id| !c.ended.contains(id)) {
            self.model.departed.insert((conn, id));
        }
        if c.closed_for_violation {
            // Frames already accepted still go; nothing else is promised.
        }
        self.model.kills.insert(conn, kills);
    }

    /// The relay now has `n` more guest bytes: sessions whose terminal frame
    /// completed are no longer live for it.
    fn guest_delivered(&mut self, n: usize) {
        self.model.guest_partial += n;
        while let Some(&(len, end)) = self.model.guest_frames.front() {
            if len > self.model.guest_partial {
                break;
            }
            self.model.guest_partial -= len;
            self.model.guest_frames.pop_front();
            if let Some((conn, id)) = end {
                self.model.departed.remove(&(conn, id));
                if let Some(c) = self.model.clients.iter_mut().find(|c| c.conn == Some(conn)) {
                    c.sessions.remove(&id);
                }
            }
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Connect(i) => {
                let i = i as usize;
                if self.model.clients[i].conn.is_none() {
                    self.model.next_conn += 1;
                    let conn = self.model.next_conn * 100 + i as u64;
                    self.model.clients[i].conn = Some(conn);
                    self.run(Event::ClientConnected(ClientId(conn)))?;
                }
            }
            Op::Disconnect(i) => {
                if let Some(conn) = self.model.clients[i as usize].conn {
                    self.depart(i as usize);
                    self.run(Event::ClientDisconnected(ClientId(conn)))?;
                }
            }
            Op::ClientFrame(i, kind, n) => {
                let c = &mut self.model.clients[i as usize];
                if c.conn.is_none() || c.range.is_none() {
                    return Ok(());
                }
                let open: Vec<u32> = c.sessions.keys().copied().collect();
                let frame = match kind {
                    0 | 3 => {
                        let id = c.next_id;
                        c.next_id += 1;
                        if kind == 0 {
                            exec_request(V1, id, n % 2 == 0, 0)
                        } else {
                            empty(V1, MsgType::FsRequest, id)
                        }
                    }
                    _ if open.is_empty() => return Ok(()),
                    1 => stdin(V1, open[n as usize % open.len()], &[n; 5]),
                    2 => signal(V1, open[n as usize % open.len()], 15),
                    _ => resize(V1, open[n as usize % open.len()], 1, 2),
                };
                c.out.extend_from_slice(&frame);
                c.out_frames.push_back(frame);
            }
            Op::ClientFlush(i, n) => {
                let c = &mut self.model.clients[i as usize];
                let (Some(conn), Some(_)) = (c.conn, c.range) else {
                    return Ok(());
                };
                let n = (n as usize).min(c.out.len());
                let chunk: Vec<u8> = c.out.drain(..n).collect();
                // Frames completed by this chunk are sent.
                let mut delivered = n;
                let pending_before: usize =
                    c.out_frames.iter().map(|f| f.len()).sum::<usize>() - c.out.len() - n;
                delivered += pending_before;
                while let Some(f) = c.out_frames.front() {
                    if f.len() > delivered {
                        break;
                    }
                    delivered -= f.len();
                    let f = c.out_frames.pop_front().ok_or("gone")?;
                    let id = u32::from_be_bytes(f[4..8].try_into().map_err(|_| "short")?);
                    let t = peek_envelope(&f[9..]).map_err(|e| e.to_string())?.t;
                    if t.flags() & agent_relay::wire::FLAG_SESSION_START != 0 {
                        c.sessions.insert(id, t == MsgType::ExecRequest);
                    }
                    self.model
                        .to_guest
                        .entry((conn, id))
                        .or_default()
                        .push_back(f);
                }
                self.run(Event::ClientBytes(ClientId(conn), &chunk))?;
            }
            Op::ClientViolate(i) => {
                let c = &mut self.model.clients[i as usize];
                let (Some(conn), Some((start, _))) = (c.conn, c.range) else {
                    return Ok(());
                };
                if !c.out.is_empty() {
                    return Ok(()); // keep frame boundaries simple
                }
                c.closed_for_violation = true;
                let step = self.relay.config().step();
                let id = start.wrapping_add(step).wrapping_add(1);
                c.violation_id = Some(id);
                let bad = stdin(V1, id, b"x");
                self.run(Event::ClientBytes(ClientId(conn), &bad))?;
                if self.model.clients[i as usize].conn.is_some() {
                    return Err("out-of-range frame did not close its sender".into());
                }
            }
            Op::GuestFrame(i, which, kind) => {
                let c = &mut self.model.clients[i as usize];
                let open: Vec<u32> = c
                    .sessions
                    .keys()
                    .copied()
                    .filter(|id| !c.ended.contains(id))
                    .collect();
                if open.is_empty() {
                    // A late frame for a departed session, if any: must reach nobody.
                    if let Some(&(_, id)) = self.model.departed.iter().nth(which as usize % 3) {
                        let late = stdout(V1, id, b"late");
                        self.model.guest_frames.push_back((late.len(), None));
                        self.model.guest_buf.extend_from_slice(&late);
                    }
                    return Ok(());
                }
                let id = open[which as usize % open.len()];
                let exec = c.sessions[&id];
                let frame = match (kind, exec) {
                    (3, true) => exited(V1, id, 0),
                    (3, false) => empty(V1, MsgType::FsResponse, id),
                    _ => stdout(V1, id, &vec![b'o'; which as usize]),
                };
                let mut end = None;
                if kind == 3 {
                    c.ended.insert(id);
                    end = c.conn.map(|conn| (conn, id));
                }
                c.expect.push_back(frame.clone());
                self.model.guest_frames.push_back((frame.len(), end));
                self.model.guest_buf.extend_from_slice(&frame);
            }
            Op::GuestFlush(n) => {
                let n = (n as usize).min(self.model.guest_buf.len());
                let chunk: Vec<u8> = self.model.guest_buf.drain(..n).collect();
                self.guest_delivered(n);
                self.run(Event::GuestBytes(&chunk))?;
            }
            Op::GuestWritten(n) => {
                let n = (n as usize).min(self.guest_window_used);
                self.guest_window_used -= n;
                self.run(Event::GuestWritten(n))?;
            }
            Op::ClientWritten(i, n) => {
                if let Some(conn) = self.model.clients[i as usize].conn {
                    self.run(Event::ClientWritten(ClientId(conn), n as usize))?;
                }
            }
            Op::Advance(ms) => {
                self.now += ms as u64;
                self.run(Event::Tick)?;
            }
        }
        let cfg = self.relay.config();
        for c in &self.model.clients {
            if let Some(conn) = c.conn
                && let Some(q) = self.relay.client_queued(ClientId(conn))
                && q > cfg.client_hard_cap
            {
                return Err(format!("boundedness: {q} bytes queued for {conn}"));
            }
        }
        if self.relay.counters().queued_to_clients as usize > cfg.global_cap {
            return Err("boundedness: global cap exceeded".into());
        }
        Ok(())
    }

    /// Heal everything and check completeness.
    fn finish(&mut self) -> Result<(), String> {
        let all = std::mem::take(&mut self.model.guest_buf);
        self.guest_delivered(all.len());
        // Guest frames: a client whose frame is still unflushed may be mid-frame,
        // so flush clients first, then the guest.
        for i in 0..CLIENTS {
            self.step(&Op::ClientFlush(i, u16::MAX))?;
        }
        self.run(Event::GuestBytes(&all))?;
        for _ in 0..1_000 {
            if self.guest_window_used == 0 && self.relay.counters().queued_to_guest == 0 {
                break;
            }
            let n = self.guest_window_used;
            self.guest_window_used = 0;
            self.run(Event::GuestWritten(n))?;
        }
        for (key, q) in &self.model.to_guest {
            let violator = self
                .model
                .clients
                .iter()
                .any(|c| c.conn == Some(key.0) && c.closed_for_violation);
            if !q.is_empty() && !violator {
                return Err(format!(
                    "to_guest: {} frames of {key:?} never arrived",
                    q.len()
                ));
            }
        }
        for (conn, ids) in &self.model.kills {
            if !ids.is_empty() {
                return Err(format!("cleanup: conn {conn} kills {ids:?} never sent"));
            }
        }
        for c in &self.model.clients {
            if c.conn.is_some() && !c.expect.is_empty() {
                return Err(format!(
                    "completeness: {} frames undelivered",
                    c.expect.len()
                ));
            }
        }
        Ok(())
    }
}

fn run_ops(ops: &[Op], tight: bool) -> Result<(), String> {
    run_ops_with(ops, tight, |_| {})
}

fn run_ops_with(
    ops: &[Op],
    tight: bool,
    report: impl FnOnce(&agent_relay::core::Counters),
) -> Result<(), String> {
    let cfg = Config {
        legacy: LegacySettings {
            max_clients: 8,
            ..LegacySettings::default()
        },
        guest_window: if tight { 64 } else { 1 << 20 },
        client_to_guest_cap: if tight { 200 } else { 1 << 20 },
        exec_log: tight,
        // Quarantine expiry is a unit test; here slots wait for terminal frames.
        quarantine: u64::MAX / 4,
        ..Config::default()
    };
    let mut relay = Relay::new(cfg).checked();
    relay.handle(0, Event::GuestBytes(&ready(V1, 1)));
    while relay.poll_action().is_some() {}
    let mut world = World {
        relay,
        model: Model {
            clients: (0..CLIENTS).map(|_| MClient::default()).collect(),
            ..Model::default()
        },
        now: 0,
        guest_window_used: 0,
    };
    for (n, op) in ops.iter().enumerate() {
        world
            .step(op)
            .map_err(|e| format!("step {n} {op:?}: {e}"))?;
    }
    let end = world.finish();
    report(world.relay.counters());
    end
}

/// Regression (the model's own bug, found by `prop_core_matches_model`): a
/// departed client's session whose exit the guest had already sent, but the
/// relay not yet read, counted as able to send late output; the model then
/// made the guest print after the exit, and expected nobody to receive it
/// once the slot's next owner reused the id.
#[test]
fn core_model_no_late_output_after_the_terminal_frame() {
    use Op::*;
    let ops = [
        Connect(0),
        Connect(2),
        ClientFrame(2, 0, 135),
        ClientFlush(2, 171),
        ClientFrame(0, 0, 163),
        GuestFrame(2, 66, 3),
        ClientFlush(0, 65535),
        Disconnect(2),
        GuestFrame(0, 248, 0),
        GuestFrame(1, 93, 2),
        GuestFlush(267),
        Connect(1),
        ClientFrame(1, 3, 21),
    ];
    assert_eq!(run_ops(&ops, false), Ok(()));
}

#[test]
fn prop_core_matches_model() {
    fn prop(ops: Vec<Op>, tight: bool) -> TestResult {
        match run_ops(&ops, tight) {
            Ok(()) => TestResult::passed(),
            Err(e) => TestResult::error(e),
        }
    }
    QuickCheck::new()
        .tests(500)
        .rng(Gen::new(200))
        .quickcheck(prop as fn(Vec<Op>, bool) -> TestResult);
}

// The decoder check the model relies on: chunked decode == one-shot decode.
#[test]
fn prop_decoder_chunked_equals_one_shot() {
    fn prop(stream: Vec<u8>, cuts: Vec<u8>) -> bool {
        let one_shot = {
            let mut d = FrameDecoder::new();
            d.extend(&stream);
            let mut v = Vec::new();
            let err = loop {
                match d.next_frame() {
                    Ok(Some(f)) => v.push(f),
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            (v, err)
        };
        let mut d = FrameDecoder::new();
        let mut v = Vec::new();
        let mut err = None;
        let mut at = 0;
        let mut cuts = cuts.into_iter().cycle();
        while at < stream.len() && err.is_none() {
            let n = (cuts.next().unwrap_or(255) as usize).max(1);
            let end = (at + n).min(stream.len());
            d.extend(&stream[at..end]);
            at = end;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => v.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        (v, err) == one_shot
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<u8>, Vec<u8>) -> bool);
}

/// The generator reaches the interesting paths: frames both ways, kills and
/// violations.
#[test]
fn prop_core_model_coverage() {
    let mut g = Gen::from_size_and_seed(200, 7);
    let mut totals = agent_relay::core::Counters::default();
    for _ in 0..300 {
        let ops: Vec<Op> = Arbitrary::arbitrary(&mut g);
        let tight = bool::arbitrary(&mut g);
        let mut relay_counters = None;
        let _ = run_ops_with(&ops, tight, |c| relay_counters = Some(c.clone()));
        if let Some(c) = relay_counters {
            totals.frames_to_clients += c.frames_to_clients;
            totals.frames_to_guest += c.frames_to_guest;
            totals.kills_sent += c.kills_sent;
            totals.protocol_violations += c.protocol_violations;
            totals.refused_clients += c.refused_clients;
        }
    }
    eprintln!("{totals:?}");
    assert!(totals.frames_to_clients > 300, "{totals:?}");
    assert!(totals.frames_to_guest > 1_000, "{totals:?}");
    assert!(totals.kills_sent > 50, "{totals:?}");
    assert!(totals.protocol_violations > 20, "{totals:?}");
}
