//! The discrete-event world: a virtual clock, a guest agent model and
//! SDK-like (and malicious) clients, all drawing every choice from one seeded
//! [`Rng`]. Each step picks one move; a move becomes at most a few core
//! events through the [`Driver`], and the core's actions flow back to the
//! actors. After the chaos phase the faults heal and the world runs until
//! every actor is idle, then liveness is checked.

use std::collections::{BTreeMap, VecDeque};

use agent_relay::core::{Action, ClientId, Config, Event, HandshakeForm, IdRange, Millis};
use agent_relay::wire::payload::{
    ExecFailed, ExecFailureKind, ExecResize, ExecSignal, ExecStarted, build_frame, decode_payload,
    encode_payload, exec_request_tty, peek_data,
};
use agent_relay::wire::{
    FLAG_SESSION_START, FLAG_SHUTDOWN, FLAG_TERMINAL, FrameDecoder, MAX_FRAME_LEN, MsgType,
    PREFIX_LEN, peek_envelope,
};
use bytes::Bytes;

use super::check::Violation;
use super::driver::{Driver, Recorded, TraceMode};
use super::frames;
use super::rng::Rng;

/// Fault kinds a seed may switch on (swarm testing), by index.
pub const FAULTS: [&str; 12] = [
    "guest_noise",
    "guest_corrupt",
    "guest_stray",
    "guest_late",
    "guest_stall",
    "burst",
    "client_drop",
    "reconnect_storm",
    "slow_reader",
    "malicious",
    "time_jump",
    "tiny_chunks",
];
const F_NOISE: usize = 0;
const F_CORRUPT: usize = 1;
const F_STRAY: usize = 2;
const F_LATE: usize = 3;
const F_STALL: usize = 4;
const F_BURST: usize = 5;
const F_DROP: usize = 6;
const F_STORM: usize = 7;
const F_SLOW: usize = 8;
const F_MALICIOUS: usize = 9;
const F_JUMP: usize = 10;
const F_TINY: usize = 11;

/// Largest `ClientBytes` read the world feeds (the driver's read size).
pub const READ_MAX: usize = 64 * 1024;

/// Options for one run.
#[derive(Debug, Clone, Copy)]
pub struct RunOpts {
    /// Trace lines to keep.
    pub trace: TraceMode,
    /// Record core events for shrinking.
    pub record: bool,
    /// Faults never switched on, as a bit mask over [`FAULTS`] indices.
    pub disabled: u32,
}

impl RunOpts {
    /// A campaign run: no trace, no recording, every fault possible.
    pub fn campaign() -> RunOpts {
        RunOpts {
            trace: TraceMode::Off,
            record: false,
            disabled: 0,
        }
    }
}

/// The [`RunOpts::disabled`] bit of the named fault.
pub fn fault_bit(name: &str) -> u32 {
    FAULTS.iter().position(|f| *f == name).map_or(0, |i| 1 << i)
}

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The relay configuration the seed chose.
    pub config: Config,
    /// `Relay::handle` calls.
    pub events: u64,
    /// Checks the checker made.
    pub checks: u64,
    /// Faults injected, by [`FAULTS`] index.
    pub faults: [u64; FAULTS.len()],
    /// The first broken invariant.
    pub violation: Option<Violation>,
    /// Hash of every event and action.
    pub hash: u64,
    /// Digest of the canonical action stream and the final counters.
    pub digest: u64,
    /// Trace lines kept.
    pub trace: Vec<String>,
    /// Recorded events (when asked).
    pub recorded: Vec<Recorded>,
}

#[derive(Debug)]
struct GuestSession {
    exec: bool,
    tty: bool,
    left: u32,
    killed: bool,
}

/// The guest agent model.
#[derive(Debug, Default)]
struct Guest {
    out: Vec<u8>,
    pos: usize,
    inflight: VecDeque<Bytes>,
    /// Bytes of the front in-flight frame already written.
    head_off: usize,
    inflight_len: usize,
    sessions: BTreeMap<u32, GuestSession>,
    ready_at: Millis,
    ready_sent: bool,
    stalled_until: Millis,
    pid: u32,
}

impl Guest {
    fn pending(&self) -> usize {
        self.out.len() - self.pos
    }
}

/// An SDK-like client (or a malicious one).
#[derive(Debug)]
struct Actor {
    id: ClientId,
    malicious: bool,
    slow: bool,
    range: Option<IdRange>,
    hs: Vec<u8>,
    dec: FrameDecoder,
    sock: VecDeque<Bytes>,
    sock_len: usize,
    out: Vec<u8>,
    pos: usize,
    paused: bool,
    next_id: u32,
    /// Open sessions as the client sees them: id -> exec.
    sessions: BTreeMap<u32, bool>,
    stalled_until: Millis,
}

/// Per-seed fault probabilities in permille (0 = off).
#[derive(Debug, Clone)]
struct Faults {
    p: [u32; FAULTS.len()],
}

/// The whole world of one seed.
pub struct World {
    rng: Rng,
    now: Millis,
    d: Driver,
    cfg: Config,
    faults: Faults,
    guest: Guest,
    actors: Vec<Actor>,
    next_client: u64,
    target_clients: usize,
    heal: bool,
    injected: [u64; FAULTS.len()],
    scratch: Vec<u8>,
    prefix: usize,
}

/// The relay configuration a seed draws: small budgets so the limits are hit.
pub fn config_for(rng: &mut Rng) -> Config {
    let bounds = rng.chance(250);
    let max_clients = if bounds {
        rng.pick(&[4, 16, 128])
    } else {
        rng.pick(&[1, 2, 3, 4, 8, 16])
    };
    let soft = rng.pick(&[2 << 10, 8 << 10, 64 << 10, 1 << 20]);
    let hard = soft * rng.pick(&[2, 4, 8]);
    Config {
        max_clients,
        handshake: if bounds {
            HandshakeForm::Bounds
        } else {
            HandshakeForm::Offset
        },
        client_soft_budget: soft,
        client_hard_cap: hard,
        global_cap: hard * rng.pick(&[1, 2, 4]),
        grace: rng.pick(&[50, 500, 5_000]),
        client_to_guest_cap: rng.pick(&[1 << 10, 16 << 10, 1 << 20]),
        guest_window: rng.pick(&[512, 8 << 10, 256 << 10]),
        quarantine: rng.pick(&[2_000, 30_000]),
        exec_log: rng.chance(500),
    }
}

/// Runs one seed; a panic anywhere (core or world) is reported as a
/// violation of `no_panic`.
pub fn run(seed: u64, opts: RunOpts) -> Outcome {
    match std::panic::catch_unwind(|| run_inner(seed, opts)) {
        Ok(o) => o,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let mut rng = Rng::new(seed);
            Outcome {
                seed,
                config: config_for(&mut rng),
                events: 0,
                checks: 0,
                faults: [0; FAULTS.len()],
                violation: Some(Violation {
                    invariant: "no_panic",
                    detail: format!("panicked: {msg}"),
                    event: 0,
                }),
                hash: 0,
                digest: 0,
                trace: Vec::new(),
                recorded: Vec::new(),
            }
        }
    }
}

fn run_inner(seed: u64, opts: RunOpts) -> Outcome {
    let mut w = World::new(seed, opts);
    w.chaos();
    if w.d.checker.violation().is_none() {
        w.heal();
    }
    let violation = w.d.checker.violation().cloned();
    let counters = w.d.relay.counters().clone();
    w.d.digest.counters(&counters);
    Outcome {
        seed,
        config: w.cfg.clone(),
        events: w.d.events,
        checks: w.d.checker.checks(),
        faults: w.injected,
        violation,
        hash: w.d.hash,
        digest: w.d.digest.value(),
        trace: w.d.lines().cloned().collect(),
        recorded: w.d.take_recorded(),
    }
}

impl World {
    fn new(seed: u64, opts: RunOpts) -> World {
        let mut rng = Rng::new(seed);
        let cfg = config_for(&mut rng);
        let mut p = [0; FAULTS.len()];
        for (i, slot) in p.iter_mut().enumerate() {
            let on = rng.chance(500);
            let level = rng.pick(&[10, 50, 150, 400]);
            if on && opts.disabled & (1 << i) == 0 {
                *slot = level;
            }
        }
        let guest = Guest {
            ready_at: rng.range(0, 200),
            ..Guest::default()
        };
        let prefix = match cfg.handshake {
            HandshakeForm::Offset => 4,
            HandshakeForm::Bounds => 8,
        };
        let target_clients = rng.range_usize(1, cfg.max_clients as usize + 2).min(20);
        World {
            d: Driver::new(cfg.clone(), READ_MAX, opts.trace, opts.record),
            rng,
            now: 0,
            cfg,
            faults: Faults { p },
            guest,
            actors: Vec::new(),
            next_client: 1,
            target_clients,
            heal: false,
            injected: [0; FAULTS.len()],
            scratch: Vec::new(),
            prefix,
        }
    }

    fn fault(&mut self, kind: usize) -> bool {
        let p = if self.heal { 0 } else { self.faults.p[kind] };
        let hit = p > 0 && self.rng.chance(p);
        if hit {
            self.injected[kind] += 1;
        }
        hit
    }

    fn ok(&self) -> bool {
        self.d.checker.violation().is_none()
    }

    // ---- the core door -----------------------------------------------------

    fn feed(&mut self, event: Event<'_>) {
        self.d.feed(self.now, event);
        let actions = std::mem::take(&mut self.d.actions);
        for action in &actions {
            self.perform(action);
        }
        self.d.actions = actions;
    }

    fn feed_scratch(&mut self, make: impl FnOnce(&[u8]) -> Event<'_>) {
        let buf = std::mem::take(&mut self.scratch);
        self.feed(make(&buf));
        self.scratch = buf;
    }

    fn actor(&mut self, c: ClientId) -> Option<&mut Actor> {
        self.actors.iter_mut().find(|a| a.id == c)
    }

    fn perform(&mut self, action: &Action) {
        match action {
            Action::Handshake { client, bytes }
            | Action::ToClient {
                client,
                frame: bytes,
            } => {
                if let Some(a) = self.actor(*client) {
                    a.sock_len += bytes.len();
                    a.sock.push_back(bytes.clone());
                }
            }
            Action::ToGuest { frame } => {
                self.guest.inflight_len += frame.len();
                self.guest.inflight.push_back(frame.clone());
            }
            Action::Refuse { client, .. } | Action::CloseClient { client, .. } => {
                self.actors.retain(|a| a.id != *client);
            }
            Action::PauseClient(c) => {
                if let Some(a) = self.actor(*c) {
                    a.paused = true;
                }
            }
            Action::ResumeClient(c) => {
                if let Some(a) = self.actor(*c) {
                    a.paused = false;
                }
            }
            Action::Log(_)
            | Action::GuestCorrupt { .. }
            | Action::FlushExpired { .. }
            | Action::Ready
            | Action::Drain => {}
        }
    }

    fn fire_timeout(&mut self) {
        if let Some(t) = self.d.relay.poll_timeout()
            && t.at <= self.now
        {
            self.feed(Event::Tick);
        }
    }

    // ---- phases --------------------------------------------------------------

    fn chaos(&mut self) {
        let steps = self.rng.range(300, 3_000);
        for _ in 0..steps {
            if !self.ok() {
                return;
            }
            self.now += self.rng.below(3);
            if self.fault(F_JUMP) {
                self.now += self.rng.range(100, 10_000);
            }
            self.fire_timeout();
            let n = self.actors.len();
            let pick = |rng: &mut Rng| rng.below(n as u64) as usize;
            match self.rng.below(100) {
                0..=14 => self.guest_send(),
                15..=24 => self.guest_read(),
                25..=39 => self.guest_work(),
                40..=54 if n > 0 => {
                    let i = pick(&mut self.rng);
                    self.client_send(i);
                }
                55..=69 if n > 0 => {
                    let i = pick(&mut self.rng);
                    self.client_read(i);
                }
                70..=84 if n > 0 => {
                    let i = pick(&mut self.rng);
                    self.client_act(i);
                }
                85..=92 => self.connect(),
                93..=96 => {
                    if self.fault(F_STRAY) {
                        self.guest_stray();
                    }
                }
                _ => self.feed(Event::Tick),
            }
        }
    }

    fn heal(&mut self) {
        self.heal = true;
        self.guest.stalled_until = 0;
        for a in &mut self.actors {
            a.stalled_until = 0;
            a.slow = false;
        }
        for s in self.guest.sessions.values_mut() {
            s.left = s.left.min(2);
        }
        let mut rounds = 0;
        while self.ok() {
            rounds += 1;
            if rounds > 20_000 {
                let why = format!(
                    "the world did not settle after faults healed: guest has {} bytes to send, {} in flight, {} sessions; core holds {} bytes; owed: {:?}",
                    self.guest.pending(),
                    self.guest.inflight_len,
                    self.guest.sessions.len(),
                    self.d.relay.held_bytes(),
                    self.d.checker.owed()
                );
                self.d.checker_fail("live_quiescence", why);
                return;
            }
            self.now += 1;
            self.fire_timeout();
            self.guest_send();
            self.guest_read();
            self.guest_work();
            for i in 0..self.actors.len() {
                if i < self.actors.len() {
                    self.client_send(i);
                }
                if i < self.actors.len() {
                    self.client_read(i);
                }
            }
            if self.quiet() {
                break;
            }
        }
        if self.ok() {
            self.d.checker.finish();
        }
    }

    fn quiet(&self) -> bool {
        self.guest.ready_sent
            && self.guest.pending() == 0
            && self.guest.inflight_len == 0
            && self.guest.sessions.is_empty()
            && self
                .actors
                .iter()
                .all(|a| a.sock_len == 0 && a.pos == a.out.len())
            && !self.d.checker.owes()
    }

    // ---- the guest -----------------------------------------------------------

    fn guest_send(&mut self) {
        if !self.guest.ready_sent && (self.now >= self.guest.ready_at || self.heal) {
            if self.fault(F_NOISE) {
                for _ in 0..self.rng.range(1, 4) {
                    let id = self.rng.next_u64() as u32;
                    frames::push_data_frame(
                        &mut self.guest.out,
                        MsgType::ExecStdout,
                        id,
                        0,
                        b"boot",
                    );
                }
            }
            let boot = self.rng.next_u64() >> 20;
            self.guest.out.extend_from_slice(&frames::ready(boot));
            self.guest.ready_sent = true;
        }
        let pending = self.guest.pending();
        if pending == 0 {
            return;
        }
        let n = if self.heal {
            pending.min(64 << 10)
        } else if self.fault(F_TINY) {
            self.rng.range_usize(1, 16).min(pending)
        } else {
            self.rng.range_usize(1, pending.min(16 << 10))
        };
        let start = self.guest.pos;
        self.scratch.clear();
        self.scratch
            .extend_from_slice(&self.guest.out[start..start + n]);
        self.guest.pos += n;
        if self.guest.pos == self.guest.out.len() {
            self.guest.out.clear();
            self.guest.pos = 0;
        } else if self.guest.pos > (1 << 20) {
            self.guest.out.drain(..self.guest.pos);
            self.guest.pos = 0;
        }
        self.feed_scratch(|b| Event::GuestBytes(b));
    }

    fn guest_read(&mut self) {
        if self.guest.inflight_len == 0 || self.now < self.guest.stalled_until {
            return;
        }
        if self.fault(F_STALL) {
            self.guest.stalled_until = self.now + self.rng.range(10, 500);
            return;
        }
        let total = self.guest.inflight_len;
        let n = if self.heal || self.rng.chance(500) {
            total
        } else {
            self.rng.range_usize(1, total)
        };
        self.guest.inflight_len -= n;
        let mut left = n;
        let mut whole = Vec::new();
        while left > 0 {
            let front = self
                .guest
                .inflight
                .front()
                .expect("inflight_len counts these");
            let rest = front.len() - self.guest.head_off;
            if left >= rest {
                left -= rest;
                self.guest.head_off = 0;
                whole.push(self.guest.inflight.pop_front().expect("just seen"));
            } else {
                self.guest.head_off += left;
                left = 0;
            }
        }
        self.feed(Event::GuestWritten(n));
        for frame in whole {
            self.guest_receive(&frame);
        }
    }

    /// The guest reacts to a frame once all of it was written.
    fn guest_receive(&mut self, frame: &[u8]) {
        if frame.len() < PREFIX_LEN {
            return;
        }
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        if len + 4 != frame.len() {
            return;
        }
        let id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let Ok(env) = peek_envelope(&frame[PREFIX_LEN..]) else {
            return;
        };
        match env.t {
            MsgType::ExecRequest => {
                let tty = exec_request_tty(&env.payload).unwrap_or(false);
                self.guest.pid += 1;
                if !self.heal && self.rng.chance(50) {
                    let failed = ExecFailed {
                        kind: ExecFailureKind::NotFound,
                        errno: Some(2),
                        errno_name: Some("ENOENT".into()),
                        message: "no such file".into(),
                        stage: None,
                    };
                    let f = build_frame(MsgType::ExecFailed, id, &failed);
                    self.guest.out.extend_from_slice(f.as_bytes());
                    self.guest.sessions.remove(&id);
                    return;
                }
                let started = build_frame(
                    MsgType::ExecStarted,
                    id,
                    &ExecStarted {
                        pid: self.guest.pid,
                    },
                );
                self.guest.out.extend_from_slice(started.as_bytes());
                let left = if self.heal {
                    1
                } else {
                    self.rng.size(30) as u32
                };
                self.guest.sessions.insert(
                    id,
                    GuestSession {
                        exec: true,
                        tty,
                        left,
                        killed: false,
                    },
                );
            }
            MsgType::ExecStdin => {
                if self
                    .guest
                    .sessions
                    .get(&id)
                    .is_some_and(|s| s.exec && !s.killed)
                    && self.rng.chance(300)
                    && let Ok(data) = peek_data(&env.payload)
                {
                    frames::push_data_frame(&mut self.guest.out, MsgType::ExecStdout, id, 0, &data);
                }
            }
            MsgType::ExecSignal => {
                let Ok(sig) = decode_payload::<ExecSignal>(&env.payload) else {
                    return;
                };
                let late = self.fault(F_LATE);
                let extra = if late { self.rng.range(1, 5) as u32 } else { 0 };
                if let Some(s) = self.guest.sessions.get_mut(&id)
                    && s.exec
                    && !s.killed
                    && (sig.signal == 9 || (sig.signal == 15 && self.rng.chance(500)))
                {
                    s.killed = true;
                    s.left = extra;
                    if extra == 0 {
                        self.guest.sessions.remove(&id);
                        self.guest
                            .out
                            .extend_from_slice(&frames::exited(id, 128 + sig.signal));
                    }
                }
            }
            MsgType::FsRequest => {
                let left = if self.heal {
                    0
                } else {
                    self.rng.range(0, 4) as u32
                };
                self.guest.sessions.insert(
                    id,
                    GuestSession {
                        exec: false,
                        tty: false,
                        left,
                        killed: false,
                    },
                );
            }
            _ => {}
        }
    }

    fn guest_work(&mut self) {
        let n = self.guest.sessions.len();
        if n == 0 {
            return;
        }
        let rounds = if self.heal { n } else { 1 };
        for _ in 0..rounds {
            let k = self.rng.below(self.guest.sessions.len() as u64) as usize;
            let Some((&id, s)) = self.guest.sessions.iter_mut().nth(k) else {
                return;
            };
            if self.faults.p[F_CORRUPT] > 0
                && !self.heal
                && self.rng.chance(self.faults.p[F_CORRUPT])
            {
                self.injected[F_CORRUPT] += 1;
                let len = self.rng.range_usize(1, 40);
                let at = self.guest.out.len();
                self.guest.out.resize(at + len, 0);
                self.rng.fill(&mut self.guest.out[at..]);
                self.guest.out[at] = 0xff;
            }
            if s.left > 0 {
                s.left -= 1;
                let t = match (s.exec, s.tty) {
                    (false, _) => MsgType::FsData,
                    (true, true) => MsgType::ExecStdout,
                    (true, false) if self.rng.chance(700) => MsgType::ExecStdout,
                    (true, false) => MsgType::ExecStderr,
                };
                let burst = !self.heal
                    && self.faults.p[F_BURST] > 0
                    && self.rng.chance(self.faults.p[F_BURST]);
                let size = if burst {
                    self.injected[F_BURST] += 1;
                    self.rng.range_usize(1 << 10, 64 << 10)
                } else {
                    self.rng.size(300)
                };
                self.scratch.clear();
                self.scratch.resize(size, 0);
                // One payload in ten is random bytes (invalid UTF-8 for the tap);
                // real exec output is mostly text.
                if self.rng.chance(100) {
                    self.rng.fill(&mut self.scratch);
                } else {
                    // Mostly text with multi-byte characters, so the exec.log tap splits some.
                    let text = "ab\u{e9} \u{20ac}\n".as_bytes();
                    for chunk in self.scratch.chunks_mut(text.len()) {
                        chunk.copy_from_slice(&text[..chunk.len()]);
                    }
                }
                frames::push_data_frame(&mut self.guest.out, t, id, 0, &self.scratch);
            } else {
                let exec = s.exec;
                let code = if s.killed { 137 } else { 0 };
                self.guest.sessions.remove(&id);
                if exec {
                    self.guest.out.extend_from_slice(&frames::exited(id, code));
                } else {
                    frames::push_raw_frame(
                        &mut self.guest.out,
                        MsgType::FsResponse,
                        id,
                        FLAG_TERMINAL,
                        &[0xa1, 0x62, b'o', b'k', 0xf5],
                    );
                }
            }
        }
    }

    fn guest_stray(&mut self) {
        let id = self.rng.next_u64() as u32;
        let flags = if self.rng.chance(300) {
            FLAG_TERMINAL
        } else {
            0
        };
        frames::push_data_frame(
            &mut self.guest.out,
            MsgType::ExecStdout,
            id,
            flags,
            b"stray",
        );
    }

    // ---- clients ---------------------------------------------------------------

    fn connect(&mut self) {
        if self.heal {
            return;
        }
        let storm = self.fault(F_STORM);
        let count = if storm { self.rng.range(3, 12) } else { 1 };
        if !storm && self.actors.len() >= self.target_clients {
            return;
        }
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = ClientId(self.next_client);
            self.next_client += 1;
            let malicious = self.fault(F_MALICIOUS);
            let slow = self.fault(F_SLOW);
            self.actors.push(Actor {
                id,
                malicious,
                slow,
                range: None,
                hs: Vec::new(),
                dec: FrameDecoder::new(),
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
                    self.actors.retain(|a| a.id != id);
                    self.feed(Event::ClientDisconnected(id));
                }
            }
        }
    }

    fn client_send(&mut self, i: usize) {
        let tiny = self.faults.p[F_TINY] > 0 && self.rng.chance(self.faults.p[F_TINY]);
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

    fn client_read(&mut self, i: usize) {
        let now = self.now;
        let a = &self.actors[i];
        if a.sock_len == 0 || now < a.stalled_until {
            return;
        }
        if a.slow && self.rng.chance(300) {
            self.injected[F_SLOW] += 1;
            let stall = self.rng.range(10, 3 * self.cfg.grace);
            self.actors[i].stalled_until = now + stall;
            return;
        }
        let total = a.sock_len;
        let n = if self.heal || self.rng.chance(500) {
            total
        } else {
            self.rng.range_usize(1, total)
        };
        let id = a.id;
        // Bytes reach the client, which parses them.
        let a = &mut self.actors[i];
        a.sock_len -= n;
        let mut left = n;
        let prefix = self.prefix;
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
                    let end = start.wrapping_add(self.cfg.step());
                    a.range = Some(IdRange { start, end });
                    a.next_id = start;
                }
            }
            a.dec.extend(chunk);
            while let Ok(Some(f)) = a.dec.next_frame() {
                if f.flags() & FLAG_TERMINAL != 0 {
                    a.sessions.remove(&f.id());
                }
            }
        }
        self.feed(Event::ClientWritten(id, n));
    }

    fn client_act(&mut self, i: usize) {
        if self.heal {
            return;
        }
        let a = &self.actors[i];
        let id = a.id;
        let Some(range) = a.range else {
            if a.malicious && self.rng.chance(100) {
                self.injected[F_MALICIOUS] += 1;
                self.actors[i]
                    .out
                    .extend_from_slice(b"\x00\x00\x00\x10early");
            }
            return;
        };
        if a.malicious && self.rng.chance(150) {
            self.injected[F_MALICIOUS] += 1;
            let bad = self.bad_frame(i, range);
            self.actors[i].out.extend_from_slice(&bad);
            return;
        }
        let leave = self.fault(F_DROP) || self.rng.chance(8);
        if leave {
            self.actors.remove(i);
            self.feed(Event::ClientDisconnected(id));
            return;
        }
        let op = self.rng.below(100);
        let burst = self.faults.p[F_BURST] > 0 && self.rng.chance(self.faults.p[F_BURST]);
        let a = &mut self.actors[i];
        let execs: Vec<u32> = a
            .sessions
            .iter()
            .filter(|(_, e)| **e)
            .map(|(&k, _)| k)
            .collect();
        let target =
            (!execs.is_empty()).then(|| execs[self.rng.below(execs.len() as u64) as usize]);
        let fresh = (a.next_id < range.end - 1).then_some(a.next_id);
        match (op, target, fresh) {
            (0..=29, _, Some(sid)) => {
                a.next_id += 1;
                let tty = self.rng.chance(300);
                let argc = self.rng.range_usize(0, 3);
                a.out
                    .extend_from_slice(&frames::exec_request(sid, tty, argc));
                a.sessions.insert(sid, true);
            }
            (30..=54, Some(sid), _) => {
                let size = if burst {
                    self.injected[F_BURST] += 1;
                    self.rng.range_usize(1 << 10, 32 << 10)
                } else {
                    self.rng.size(200)
                };
                let data = vec![b'i'; size];
                frames::push_data_frame(&mut a.out, MsgType::ExecStdin, sid, 0, &data);
            }
            (55..=61, Some(sid), _) => {
                let p = encode_payload(&ExecResize {
                    rows: 40,
                    cols: 120,
                });
                frames::push_raw_frame(&mut a.out, MsgType::ExecResize, sid, 0, &p);
            }
            (62..=71, Some(sid), _) => {
                let sig = self.rng.pick(&[2, 15, 9, 9]);
                a.out.extend_from_slice(&frames::signal(sid, sig));
            }
            (72..=86, _, Some(sid)) => {
                a.next_id += 1;
                let payload = [
                    0xa2, 0x62, b'o', b'p', 0x64, b'r', b'e', b'a', b'd', 0x64, b'p', b'a', b't',
                    b'h', 0x62, b'/', b'x',
                ];
                frames::push_raw_frame(
                    &mut a.out,
                    MsgType::FsRequest,
                    sid,
                    FLAG_SESSION_START,
                    &payload,
                );
                for _ in 0..self.rng.range(0, 2) {
                    frames::push_data_frame(&mut a.out, MsgType::FsData, sid, 0, b"upload");
                }
                a.sessions.insert(sid, false);
            }
            (87, _, _) if self.rng.chance(200) => {
                frames::push_raw_frame(
                    &mut a.out,
                    MsgType::Shutdown,
                    range.start,
                    FLAG_SHUTDOWN,
                    &[0xa0],
                );
            }
            _ => {}
        }
    }

    /// A frame the relay must refuse (and close the sender for).
    fn bad_frame(&mut self, i: usize, range: IdRange) -> Vec<u8> {
        let mut out = Vec::new();
        let open: Option<u32> = self.actors[i].sessions.keys().next().copied();
        match self.rng.below(8) {
            0 => {
                let id = if range.start > 0 && self.rng.chance(500) {
                    range.start - 1
                } else {
                    range.end
                };
                frames::push_data_frame(&mut out, MsgType::ExecStdin, id, 0, b"x");
            }
            1 => {
                let len = self
                    .rng
                    .range(u64::from(MAX_FRAME_LEN) + 1, u64::from(u32::MAX))
                    as u32;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0; 9]);
            }
            2 => {
                let len = self.rng.range(0, 4) as u32;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0; 9]);
            }
            3 => {
                let mut body = vec![0u8; self.rng.range_usize(1, 30)];
                self.rng.fill(&mut body);
                body[0] = 0xff;
                out.extend_from_slice(&((5 + body.len()) as u32).to_be_bytes());
                out.extend_from_slice(&range.start.to_be_bytes());
                out.push(0);
                out.extend_from_slice(&body);
            }
            4 => {
                let flags =
                    self.rng
                        .pick(&[FLAG_TERMINAL, FLAG_SESSION_START, FLAG_SHUTDOWN, 0x80]);
                frames::push_data_frame(&mut out, MsgType::ExecStdin, range.start, flags, b"x");
            }
            5 => frames::push_data_frame(&mut out, MsgType::ExecStdout, range.start, 0, b"x"),
            6 if open.is_some() => {
                let sid = open.expect("checked");
                let f = frames::exec_request(sid, false, 0);
                out.extend_from_slice(&f);
            }
            _ => {
                frames::push_raw_frame(
                    &mut out,
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

impl Driver {
    /// Records a world-level failure (the world did not settle).
    pub fn checker_fail(&mut self, invariant: &'static str, detail: String) {
        self.checker.fail_external(invariant, detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_same_seed_same_trace_hash() {
        for seed in [0u64, 7, 0x85] {
            let a = run(seed, RunOpts::campaign());
            let b = run(seed, RunOpts::campaign());
            assert_eq!((a.hash, a.events), (b.hash, b.events), "seed {seed:#x}");
        }
    }
}
