//! The discrete-event world: a virtual clock, a guest agent model and
//! SDK-like (and malicious) clients, all drawing every choice from one seeded
//! [`Rng`]. Each step picks one move; a move becomes at most a few core
//! events through the [`Driver`], and the core's actions flow back to the
//! actors. After the chaos phase the faults heal and the world runs until
//! every actor is idle, then liveness is checked.
//!
//! The swarm chooses each world's protocol [`Generation`] from a stream of
//! its own ([`generation_of`]), so a legacy world makes exactly the draws it
//! made before current worlds existed. A current world (microsandbox 0.7.x)
//! has an agentd-like guest (`agentd.rs`) and SDK-like 0.7 clients
//! (`sdk.rs`).

use agent_relay::core::{
    Action, CloseReason, Config, Counters, CurrentSettings, Event, HandshakeForm, LegacySettings,
    Millis, Protocol, Timeout,
};

use std::collections::BTreeMap;

use super::check::{BudgetStats, Failure, Invariant};
use super::driver::{Driver, TraceMode};
use super::event::Recorded;
use super::rng::Rng;
use agent_relay::testkit::frames;
use agent_relay::wire::PREFIX_LEN;
use bytes::Bytes;

mod agentd;
mod clients;
mod faults;
mod guest;
mod moves;
mod sdk;

use clients::{Actor, Reading};
use faults::Swarm;
pub use faults::{Fault, FaultCounts};
use guest::Guest;
use moves::{CURRENT_MOVES, MOVES};

/// Largest `ClientBytes` read the world feeds (the driver's read size).
pub const READ_MAX: usize = 64 * 1024;

/// The protocol generation a world's guest and clients speak: the core's.
pub use agent_relay::core::Generation;

/// The generation of `seed`'s world: half are current. Drawn from a stream
/// of its own (the seed mixed with a constant), never from the world's
/// [`Rng`], so a legacy world's draws are what they were before.
pub fn generation_of(seed: u64) -> Generation {
    let mut stream = Rng::new(seed ^ 0x6765_6e65_7261_7469); // "generati"
    if stream.chance(500) {
        Generation::Current
    } else {
        Generation::Legacy
    }
}

/// Options for one run.
#[derive(Debug, Clone, Copy)]
pub struct RunOpts {
    /// Trace lines to keep.
    pub trace: TraceMode,
    /// Record core events for shrinking.
    pub record: bool,
    /// Faults never switched on, as a mask of [`Fault::bit`]s.
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

/// What one run did.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The relay configuration the seed chose.
    pub config: Config,
    /// The protocol generation the seed chose.
    pub generation: Generation,
    /// Seconds the run took (the campaign's events/s per generation).
    pub secs: f64,
    /// `Relay::handle` calls.
    pub events: u64,
    /// Checks the checker made.
    pub checks: u64,
    /// Faults injected.
    pub faults: FaultCounts,
    /// The first broken invariant.
    pub failure: Option<Failure>,
    /// Digest of the canonical action stream and the final counters.
    pub digest: u64,
    /// Trace lines kept.
    pub trace: Vec<String>,
    /// Recorded events (when asked).
    pub recorded: Vec<Recorded>,
    /// The core's counters at the end.
    pub counters: Counters,
    /// What rule `backpressure_bounded_wait` did (the checker's count).
    pub budget: BudgetStats,
    /// Steady readers (the world's clients that keep pace) closed as slow
    /// consumers: only a time jump past their grace period can do it.
    pub steady_slow_closes: u64,
}

/// The whole world of one seed.
pub struct World {
    rng: Rng,
    generation: Generation,
    now: Millis,
    /// Current worlds: the host's wall clock is `wall + now` ms.
    wall: u64,
    d: Driver,
    cfg: Config,
    swarm: Swarm,
    guest: Guest,
    actors: Vec<Actor>,
    next_client: u64,
    target_clients: usize,
    heal: bool,
    /// The core said `PauseGuest` (and not `ResumeGuest` since): the guest
    /// holds its bytes.
    guest_paused: bool,
    steady_slow_closes: u64,
    /// Most of its new clients are batchers (`hoarders`).
    hoarders: bool,
    injected: FaultCounts,
    scratch: Vec<u8>,
    prefix: usize,
    exec_frames: ExecFrames,
    /// A current world's guest: agentd's own state (credit, leases).
    agentd: Option<agentd::Agentd>,
    /// By a range's start, the ids whose end its last departed owner saw,
    /// newest first, at most 64 (see `World::bulk_id`).
    departed_ids: BTreeMap<u32, Vec<u32>>,
    /// The core's timeout, as it was after that many events.
    timeout: (u64, Option<Timeout>),
}

/// `frames::exec_request`'s frames, built once per generation, pty and
/// argument count and stamped with each id (the id is in the header only).
#[derive(Debug, Default)]
struct ExecFrames(Vec<((u8, bool, usize), Bytes)>);

impl ExecFrames {
    /// Appends `frames::exec_request(v, id, tty, argc)` to `out`.
    fn push(&mut self, out: &mut Vec<u8>, v: u8, id: u32, tty: bool, argc: usize) {
        let key = (v, tty, argc);
        let frame = match self.0.iter().position(|(k, _)| *k == key) {
            Some(i) => &self.0[i].1,
            None => {
                self.0.push((key, frames::exec_request(v, 0, tty, argc)));
                &self.0[self.0.len() - 1].1
            }
        };
        let at = out.len();
        out.extend_from_slice(frame);
        out[at + 4..at + 8].copy_from_slice(&id.to_be_bytes());
    }
}

/// The largest frame a world's guest writes: a 64 KiB burst of output or a
/// bulk record, with its headers. The world's caps are measured against it.
pub const WORLD_FRAME_MAX: usize = (64 << 10) + 64;

/// The largest frame the protocol allows (4-byte prefix and 4 MiB), what
/// the CLI measures the caps against.
const FRAME_MAX: usize = 4 + (4 << 20);

/// How a world's output caps relate to its soft budget (rule
/// `backpressure_bounded_wait`: a reading client never meets caps of at
/// least the soft budget plus one read and the largest frame, and a global
/// cap of twice one read and the largest frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caps {
    /// What the CLI accepts: measured against the protocol's largest frame.
    Cli,
    /// Measured against the largest frame this world's guest writes.
    World,
    /// Tighter than that (the soft budget times 2 to 8): the last line
    /// closes clients, and the model expects it.
    Tight,
}

const CAPS: [(Caps, u64); 3] = [(Caps::Cli, 15), (Caps::World, 60), (Caps::Tight, 25)];

/// The relay configuration a seed draws: small budgets so the limits are hit.
pub fn config_for(rng: &mut Rng) -> Config {
    let bounds = rng.chance(250);
    let max_clients = if bounds {
        rng.pick(&[4, 16, 128])
    } else {
        rng.pick(&[1, 2, 3, 4, 8, 16])
    };
    let caps = soft_and_hard(rng);
    Config {
        protocol: Protocol::Legacy,
        legacy: LegacySettings {
            max_clients,
            handshake: if bounds {
                HandshakeForm::Bounds
            } else {
                HandshakeForm::Offset
            },
        },
        ..budgets(rng, caps)
    }
}

/// The relay configuration a current world draws: the same small budgets,
/// and the current generation's choices (configured or detected, slots
/// offered, the correlation bound, the clock).
pub fn config_for_current(rng: &mut Rng, seed: u64) -> Config {
    let caps = soft_and_hard(rng);
    // Drawn in this order (protocol, then the current settings, then the
    // budgets) so that a seed's world stays what it was.
    let protocol = if rng.chance(500) {
        Protocol::Current
    } else {
        Protocol::Auto
    };
    let current = CurrentSettings {
        incarnation_seed: incarnation_seed(seed),
        clients: rng.pick(&[1, 2, 4, 16, 128]),
        max_correlations: rng.pick(&[3, 16, 1024]),
        clock_sync: rng.chance(700),
        clock_period: rng.pick(&[2_000, 60_000]),
        ..CurrentSettings::default()
    };
    Config {
        protocol,
        current,
        ..budgets(rng, caps)
    }
}

/// A client's soft budget, how the caps relate to it, and its hard cap,
/// drawn first.
fn soft_and_hard(rng: &mut Rng) -> (usize, Caps, usize) {
    let soft = rng.pick(&[2 << 10, 8 << 10, 64 << 10, 1 << 20]);
    let caps = rng.weighted(&CAPS);
    let factor = rng.pick(&[1, 2, 4, 8]);
    let hard = match caps {
        Caps::Cli => (soft + FRAME_MAX + READ_MAX) * factor.min(2),
        Caps::World => (soft + WORLD_FRAME_MAX + READ_MAX) * factor.min(2),
        Caps::Tight => soft * factor.max(2),
    };
    (soft, caps, hard)
}

/// What both generations draw after their own choices (the struct update
/// comes last in each literal, so every world keeps its draws' order).
fn budgets(rng: &mut Rng, (soft, caps, hard): (usize, Caps, usize)) -> Config {
    let least = match caps {
        Caps::Cli => 2 * (FRAME_MAX + READ_MAX),
        Caps::World => 2 * (WORLD_FRAME_MAX + READ_MAX),
        Caps::Tight => hard,
    };
    Config {
        client_soft_budget: soft,
        client_hard_cap: hard,
        global_cap: hard.max(least) * rng.pick(&[1, 1, 2, 4]),
        grace: rng.pick(&[50, 500, 5_000]),
        client_to_guest_cap: rng.pick(&[1 << 10, 16 << 10, 1 << 20]),
        guest_window: rng.pick(&[512, 8 << 10, 256 << 10]),
        quarantine: rng.pick(&[2_000, 30_000]),
        exec_log: rng.chance(500),
        ..Config::default()
    }
}

/// The generation and configuration of `seed`'s world.
pub fn world_config(seed: u64) -> (Generation, Config) {
    let generation = generation_of(seed);
    let mut rng = Rng::new(seed);
    let mut cfg = match generation {
        Generation::Legacy => config_for(&mut rng),
        Generation::Current => config_for_current(&mut rng, seed),
    };
    hoard(seed, &mut cfg);
    (generation, cfg)
}

/// The seed of the incarnations a current world's relay draws for its range
/// leases: from a stream of its own (the seed mixed with a constant), never
/// from the world's [`Rng`], so no world makes one draw more for it.
pub fn incarnation_seed(seed: u64) -> u64 {
    Rng::new(seed ^ 0x696e_6361_726e_6174).next_u64() // "incarnat"
}

/// Whether the guest goes away when the chaos ends, instead of the faults
/// healing (one world in ten of those with the exec.log tap on): the exec
/// sessions still open get their end records then (rule
/// `exec_log_says_what_ran`), and nothing is left to finish, so liveness is
/// not judged. Drawn from a stream of its own (the seed mixed with a
/// constant), so no world makes one draw more for it.
fn guest_leaves(seed: u64, cfg: &Config) -> bool {
    cfg.exec_log && Rng::new(seed ^ 0x6775_6573_745f_676f).chance(100) // "guest_go"
}

/// Whether most of the world's clients are batchers (two worlds in five):
/// several of them then hold the sum past its mark with none over its own
/// budget, and after the sum's grace closes the one holding the most, the
/// rest still hold more than a quarter of the global cap, so the sum needs
/// the grace period it gets again (rule `backpressure_bounded_wait`). Drawn
/// from a stream of its own, so the other worlds make no draw more.
fn hoarders(seed: u64) -> bool {
    Rng::new(seed ^ 0x686f_6172_6465_7273).chance(400) // "hoarders"
}

/// A hoarders' world takes the least global cap its caps allow (the draw's
/// factor 1), so that a few batchers pass the sum's mark.
fn hoard(seed: u64, cfg: &mut Config) {
    if hoarders(seed) {
        cfg.global_cap = cfg
            .global_cap
            .min(cfg.client_hard_cap.max(cfg.global_cap / 4));
    }
}

/// Runs one seed; a panic anywhere (core or world) is reported as a
/// failure of `no_panic`.
pub fn run(seed: u64, opts: RunOpts) -> Outcome {
    match std::panic::catch_unwind(|| run_inner(seed, opts)) {
        Ok(o) => o,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let (generation, config) = world_config(seed);
            Outcome {
                seed,
                config,
                generation,
                secs: 0.0,
                events: 0,
                checks: 0,
                faults: FaultCounts::default(),
                failure: Some(Failure {
                    invariant: Invariant::NoPanic,
                    detail: format!("panicked: {msg}"),
                    event: 0,
                    known: None,
                }),
                digest: 0,
                trace: Vec::new(),
                recorded: Vec::new(),
                counters: Counters::default(),
                budget: BudgetStats::default(),
                steady_slow_closes: 0,
            }
        }
    }
}

fn run_inner(seed: u64, opts: RunOpts) -> Outcome {
    let began = std::time::Instant::now();
    let mut w = World::new(seed, opts);
    w.chaos();
    if w.d.checker.failure().is_some() {
    } else if guest_leaves(seed, &w.cfg) {
        w.feed(Event::GuestClosed);
    } else {
        w.heal();
    }
    let failure = w.d.checker.failure().cloned();
    let counters = w.d.relay.counters().clone();
    w.d.digest.counters(&counters);
    Outcome {
        seed,
        config: w.cfg.clone(),
        generation: w.generation,
        secs: began.elapsed().as_secs_f64(),
        events: w.d.events,
        checks: w.d.checker.checks(),
        faults: w.injected,
        failure,
        digest: w.d.digest.value(),
        trace: w.d.lines().cloned().collect(),
        recorded: w.d.take_recorded(),
        counters,
        budget: w.d.checker.budget_stats(),
        steady_slow_closes: w.steady_slow_closes,
    }
}

impl World {
    fn new(seed: u64, opts: RunOpts) -> World {
        let generation = generation_of(seed);
        let mut rng = Rng::new(seed);
        let mut cfg = match generation {
            Generation::Legacy => config_for(&mut rng),
            Generation::Current => config_for_current(&mut rng, seed),
        };
        hoard(seed, &mut cfg);
        let current = generation == Generation::Current;
        let swarm = Swarm::draw(&mut rng, opts.disabled, current);
        let guest = Guest {
            ready_at: rng.range(0, 200),
            v: 1,
            ..Guest::default()
        };
        let (prefix, slots) = match (generation, cfg.legacy.handshake) {
            (Generation::Current, _) => (8, cfg.current.clients),
            (Generation::Legacy, HandshakeForm::Offset) => (4, cfg.legacy.max_clients),
            (Generation::Legacy, HandshakeForm::Bounds) => (8, cfg.legacy.max_clients),
        };
        let target_clients = rng.range_usize(1, slots as usize + 2).min(20);
        let wall = if current {
            1_700_000_000_000 + rng.below(100_000_000_000)
        } else {
            0
        };
        let mut w = World {
            d: Driver::new(cfg.clone(), READ_MAX, opts.trace, opts.record),
            rng,
            generation,
            now: 0,
            wall,
            cfg,
            swarm,
            guest,
            actors: Vec::new(),
            next_client: 1,
            target_clients,
            heal: false,
            guest_paused: false,
            steady_slow_closes: 0,
            hoarders: hoarders(seed),
            injected: FaultCounts::default(),
            scratch: Vec::new(),
            prefix,
            exec_frames: ExecFrames::default(),
            agentd: None,
            departed_ids: BTreeMap::new(),
            timeout: (u64::MAX, None),
        };
        if current {
            w.agentd_init();
        }
        w
    }

    fn ok(&self) -> bool {
        self.d.checker.failure().is_none()
    }

    // ---- the core door -----------------------------------------------------

    fn feed(&mut self, event: Event<'_>) {
        self.d.feed(self.now, event);
        let mut actions = std::mem::take(&mut self.d.actions);
        for action in actions.drain(..) {
            self.perform(action);
        }
        self.d.actions = actions;
    }

    fn feed_scratch(&mut self, make: impl FnOnce(&[u8]) -> Event<'_>) {
        let buf = std::mem::take(&mut self.scratch);
        self.feed(make(&buf));
        self.scratch = buf;
    }

    /// The core's action, done (its frames moved where they go, not copied).
    fn perform(&mut self, action: Action) {
        match action {
            Action::Handshake { client, bytes }
            | Action::ToClient {
                client,
                frame: bytes,
            } => {
                if let Some(a) = self.actor(client) {
                    a.sock_len += bytes.len();
                    a.sock.push_back(bytes);
                }
            }
            Action::ToGuest { frame } => {
                self.guest.inflight_len += frame.len();
                self.guest.inflight.push_back(frame);
            }
            Action::Refuse { client, .. } | Action::CloseClient { client, .. } => {
                let slow = matches!(
                    action,
                    Action::CloseClient {
                        reason: CloseReason::SlowConsumer { .. },
                        ..
                    }
                );
                if let Some(a) = self.actor(client)
                    && slow
                    && matches!(a.reading, Reading::Steady { .. })
                {
                    self.steady_slow_closes += 1;
                }
                self.drop_actor(client);
            }
            Action::PauseClient(c) => {
                if let Some(a) = self.actor(c) {
                    a.paused = true;
                }
            }
            Action::ResumeClient(c) => {
                if let Some(a) = self.actor(c) {
                    a.paused = false;
                }
            }
            Action::PauseGuest => self.guest_paused = true,
            Action::ResumeGuest => self.guest_paused = false,
            Action::Log(_)
            | Action::GuestCorrupt { .. }
            | Action::FlushExpired { .. }
            | Action::StartupFailed(_)
            | Action::Ready
            | Action::Drain => {}
        }
    }

    /// A tick when the core's next deadline is due. The core's timeout
    /// changes only with an event, so it is asked again only after one.
    fn fire_timeout(&mut self) {
        if self.timeout.0 != self.d.events {
            self.timeout = (self.d.events, self.d.relay.poll_timeout());
        }
        if let Some(t) = self.timeout.1
            && t.at <= self.now
        {
            self.feed(Event::Tick);
        }
    }

    // ---- the guest: legacy, or agentd ----------------------------------------

    /// The guest boots (a current one with its init context).
    fn guest_boot(&mut self) {
        if self.agentd.is_some() {
            self.agentd_boot();
        } else {
            self.legacy_boot();
        }
    }

    /// A current guest grants input credit back, when it is due.
    fn guest_grant(&mut self) {
        if self.agentd.is_some() {
            self.agentd_grant();
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
        if self.agentd.is_some() {
            self.agentd_receive(id, frame);
        } else {
            self.legacy_receive(id, frame);
        }
    }

    /// One output frame of session `id` (agentd's fs and tcp sessions send
    /// data and bulk records).
    fn session_output(&mut self, id: u32, exec: bool, tty: bool) {
        if self.agentd.is_some() && !exec {
            self.agentd_output(id);
        } else {
            self.guest_output(id, exec, tty);
        }
    }

    // ---- phases --------------------------------------------------------------

    fn chaos(&mut self) {
        let steps = self.rng.range(300, 3_000);
        let (moves, current): (&[(moves::Move, u64)], bool) = match self.generation {
            Generation::Legacy => (&MOVES, false),
            Generation::Current => (&CURRENT_MOVES, true),
        };
        if current {
            self.read_wall_clock();
        }
        for _ in 0..steps {
            if !self.ok() {
                return;
            }
            self.now += self.rng.below(3);
            if self.fault(Fault::TimeJump) {
                self.now += self.rng.range(100, 10_000);
            }
            self.fire_timeout();
            let m = self.rng.weighted(moves);
            self.play(m);
            if self.ok() {
                self.steady_reads();
            }
        }
    }

    fn heal(&mut self) {
        self.heal = true;
        self.guest.stalled_until = 0;
        for a in &mut self.actors {
            a.stalled_until = 0;
            a.reading = Reading::Picked;
        }
        for s in self.guest.sessions.values_mut() {
            s.left = s.left.min(2);
        }
        self.agentd_heal();
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
                self.d.checker_fail(Invariant::Quiescence, why);
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
}

impl Driver {
    /// Records a world-level failure (the world did not settle).
    pub fn checker_fail(&mut self, invariant: Invariant, detail: String) {
        self.checker.fail_external(invariant, detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_frames_are_exec_requests_stamped_with_their_ids() {
        let mut cache = ExecFrames::default();
        for (v, tty, argc, id) in [
            (1, false, 0, 5),
            (10, true, 2, 7),
            (1, false, 0, 9),
            (10, true, 2, 3),
        ] {
            let mut out = vec![0xaa];
            cache.push(&mut out, v, id, tty, argc);
            assert_eq!(out[1..], frames::exec_request(v, id, tty, argc)[..]);
        }
        assert_eq!(cache.0.len(), 2);
    }

    #[test]
    fn sim_same_seed_same_digest() {
        for seed in [0u64, 7, 0x85] {
            let a = run(seed, RunOpts::campaign());
            let b = run(seed, RunOpts::campaign());
            assert_eq!((a.digest, a.events), (b.digest, b.events), "seed {seed:#x}");
        }
    }
}
