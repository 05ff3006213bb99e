//! Invariant checkers: a reference model of what the relay must do, built
//! only from the events fed to the core and the actions it emits. It never
//! looks at an actor, so the same checker runs in the simulator, when a
//! recorded event list is replayed or shrunk, and in the `core_events` fuzz
//! target.
//!
//! Use: [`Checker::before`] with each event, [`Checker::on_action`] with each
//! action the core emits for it, [`Checker::after`] once they are drained,
//! and [`Checker::finish`] when the run ended with faults healed.
//!
//! This file owns the [`Checker`] and the order of the checks; the names
//! and classes of what can break are in `invariant.rs` ([`Invariant`]), the
//! model lives in `model.rs` (rule `backpressure_bounded_wait`'s part in
//! `budget.rs`), and each invariant in a file of its own name: `routing`,
//! `completeness`, `to_guest`, `cleanup`, `isolation`, `boundedness`,
//! `fairness`, `no_loss` (`inv_no_loss_while_reading`), `bounded_wait`, the
//! current generation's, and at the end `liveness` (`live_sessions_end`,
//! `live_to_guest_end`, `live_cleanup_end`).

mod bounded_wait;
mod boundedness;
mod budget;
mod cleanup;
mod client_in;
mod completeness;
mod control_first;
mod credit;
mod current;
mod fair_credit;
mod fairness;
mod guest_in;
mod init_ack;
mod invariant;
mod isolation;
mod late_reply;
mod leases;
mod liveness;
mod model;
mod no_loss;
mod notice;
mod ranges;
mod refusal;
mod routing;
mod spec;
mod survives;
mod to_guest;
mod workload;

use std::collections::{BTreeMap, HashMap, VecDeque};

use agent_relay::core::{Action, ClientId, Config, Event, Millis, Protocol, Relay};
use agent_relay::wire::{FrameDecoder, LEN_PREFIX, MsgType};
use bytes::Bytes;

pub use budget::BudgetStats;
use current::{ClockModel, Current, Layout};
pub use invariant::{Class, Invariant, KnownBug};
use model::{Model, State};

/// A guest frame the model framed and judged, waiting to be applied.
#[derive(Debug)]
struct Gq {
    /// Its type; `None` for a bulk record or a type the relay does not know.
    t: Option<MsgType>,
    id: u32,
    flags: u8,
    frame: Bytes,
    /// A range-lease disconnect acknowledgement (`inv_range_leases`), not a
    /// frame: the range it names and the incarnation.
    ack: Option<leases::Ack>,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The invariant broken.
    pub invariant: Invariant,
    /// What went wrong, in words.
    pub detail: String,
    /// The 1-based index of the core event after which it was seen.
    pub event: u64,
    /// The known core bug it is, if it is one.
    pub known: Option<KnownBug>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} broken at event #{}: {}",
            self.invariant, self.event, self.detail
        )?;
        match self.known {
            Some(bug) => write!(f, " (known core bug {})", bug.name()),
            None => Ok(()),
        }
    }
}

/// Problems found for one client after an event, reported in order.
type Issues = Vec<(Invariant, String)>;

/// The reference model and its checks. See the module docs.
#[derive(Debug)]
pub struct Checker {
    cfg: Config,
    /// The slots' ranges, once the generation is known.
    layout: Option<Layout>,
    now: Millis,
    events: u64,
    /// Largest bytes one `ClientBytes` event may carry (the driver's read size).
    read_max: usize,
    held_bound: usize,
    ready: Option<Bytes>,
    ready_due: bool,
    guest: FrameDecoder,
    /// The guest stream's framing has passed its first `core.ready`, and
    /// whether that ready made the generation the current one.
    parse_ready: bool,
    parse_current: bool,
    /// That ready offered range leases: records with the lease magic are
    /// read as such.
    parse_lease: bool,
    /// Guest frames of this event not yet applied to the model: applied as
    /// the actions show how far the core got (a close mid-chunk sees the
    /// sessions as they were at that frame).
    gq: VecDeque<Gq>,
    /// The guest stream was corrupt and no valid frame followed yet.
    resyncing: bool,
    guest_gone: bool,
    clients: BTreeMap<ClientId, Model>,
    /// Open correlation id -> its newest owner. Looked up, never iterated.
    owners: HashMap<u32, ClientId>,
    /// Correlations opened so far (their creation order).
    last_corr: u64,
    /// Per slot, the clients that held it and may still owe something.
    by_slot: Vec<Vec<ClientId>>,
    /// The current generation's state, from its ready on.
    current: Option<Current>,
    clock: ClockModel,
    /// Init acks owed, as the relay must write them.
    init_acks: VecDeque<Bytes>,
    /// See [`Checker::note_pump`].
    pump_open: bool,
    /// The guest frame just applied was a credit grant the relay took.
    granted_now: bool,
    /// The rest of a client's read, held back behind the relay's own answer
    /// to one of its frames.
    cq: Option<(
        ClientId,
        VecDeque<Result<agent_relay::wire::Frame, refusal::Refusal>>,
    )>,
    inflight: usize,
    /// Bytes handed to the guest, and of them reported written, so far.
    handed_bytes: u64,
    written_bytes: u64,
    largest_to_guest: usize,
    corrupt_due: u64,
    corrupt_seen: u64,
    drain_due: bool,
    tick: bool,
    /// The event brought bytes in (the core's held bytes may have grown).
    bytes_in: bool,
    sum_queued: usize,
    touched: Vec<ClientId>,
    /// Turn-lane frames handed to the guest so far (`inv_fairness`).
    turn_seq: u64,
    /// Express-lane frames queued, of clients not closed for a violation.
    express_queued: usize,
    /// Clients with turn-lane frames queued, not closed for a violation.
    waiting: Vec<ClientId>,
    /// A connected record that went to the guest before its client's
    /// handshake in this event: its range and incarnation.
    early_lease: Option<(u32, u32, [u8; 16])>,
    /// What the guest's own reader knows (`inv_guest_survives`).
    reader: survives::Reader,
    /// Rule `backpressure_bounded_wait`'s state (`budget.rs`).
    budget: budget::Budget,
    checks: u64,
    failure: Option<Failure>,
}

impl Checker {
    /// A checker for a relay built with `cfg`, driven by a driver that hands
    /// the core at most `read_max` client bytes per event.
    pub fn new(cfg: Config, read_max: usize) -> Checker {
        let frame_max = LEN_PREFIX + spec::MAX_FRAME_LEN as usize;
        let layout = match cfg.protocol {
            Protocol::Legacy => Some(Layout::legacy(cfg.max_clients)),
            Protocol::Current => Some(Layout::current(cfg.current_clients)),
            Protocol::Auto => None,
        };
        let clients = match layout {
            Some(l) => l.slots(),
            None => Layout::current(cfg.current_clients)
                .slots()
                .max(cfg.max_clients as usize),
        };
        // Guest decoder: at most one partial frame. Per slot: one partial
        // client frame, plus frames toward the guest up to the pause bound,
        // which one read (and the frame it completes) may overshoot.
        let held_bound =
            frame_max + clients * (frame_max + cfg.client_to_guest_cap + read_max + frame_max);
        Checker {
            layout,
            by_slot: vec![Vec::new(); clients.max(cfg.max_clients as usize).max(128)],
            cfg,
            now: 0,
            events: 0,
            read_max,
            held_bound,
            ready: None,
            ready_due: false,
            guest: FrameDecoder::new(),
            parse_ready: false,
            parse_current: false,
            parse_lease: false,
            gq: VecDeque::new(),
            resyncing: false,
            guest_gone: false,
            clients: BTreeMap::new(),
            owners: HashMap::new(),
            last_corr: 0,
            current: None,
            clock: ClockModel::default(),
            init_acks: VecDeque::new(),
            pump_open: false,
            granted_now: false,
            cq: None,
            inflight: 0,
            handed_bytes: 0,
            written_bytes: 0,
            largest_to_guest: 0,
            corrupt_due: 0,
            corrupt_seen: 0,
            drain_due: false,
            tick: false,
            bytes_in: false,
            sum_queued: 0,
            touched: Vec::new(),
            turn_seq: 0,
            express_queued: 0,
            waiting: Vec::new(),
            early_lease: None,
            reader: survives::Reader::default(),
            budget: budget::Budget::default(),
            checks: 0,
            failure: None,
        }
    }

    /// The current generation's state (only called once it is known).
    fn cur(&self) -> &Current {
        self.current.as_ref().expect("current generation")
    }

    /// The first broken invariant, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Checks made so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// Core events seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes handed to `client` and not yet written (the model's count), for
    /// drivers that must not report more written than was handed.
    pub fn queued(&self, client: ClientId) -> usize {
        self.clients.get(&client).map_or(0, |m| m.queued)
    }

    /// Whether `client` is paused (its bytes must not be fed).
    pub fn paused(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|m| m.paused)
    }

    /// Whether the core has the guest paused (no `GuestBytes` may be fed
    /// until it says `ResumeGuest`).
    pub fn guest_paused(&self) -> bool {
        self.budget.paused
    }

    /// What rule `backpressure_bounded_wait` did so far.
    pub fn budget_stats(&self) -> BudgetStats {
        self.budget.stats
    }

    /// Bytes handed to the guest and not yet reported written (the model's count).
    pub fn guest_inflight(&self) -> usize {
        self.inflight
    }

    /// Records a failure seen outside the model (e.g. the world did not settle).
    pub fn fail_external(&mut self, invariant: Invariant, detail: String) {
        self.fail(invariant, detail);
    }

    fn fail(&mut self, invariant: Invariant, detail: String) {
        self.fail_as(invariant, detail, None);
    }

    fn fail_as(&mut self, invariant: Invariant, detail: String, known: Option<KnownBug>) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                invariant,
                detail,
                event: self.events,
                known,
            });
        }
    }

    fn touch(&mut self, c: ClientId) {
        if self.touched.last() != Some(&c) {
            self.touched.push(c);
        }
    }

    /// Feeds the event the core is about to handle at `now`.
    pub fn before(&mut self, now: Millis, event: &Event<'_>) {
        self.now = self.now.max(now);
        self.events += 1;
        self.touched.clear();
        self.corrupt_due = 0;
        self.corrupt_seen = 0;
        self.ready_due = false;
        self.tick = false;
        self.bytes_in = matches!(event, Event::GuestBytes(_) | Event::ClientBytes(..));
        self.pump_open = false;
        if let Some(cur) = &mut self.current {
            cur.late.clear();
        }
        self.budget.guest_event = matches!(event, Event::GuestBytes(_));
        match *event {
            Event::GuestBytes(bytes) => {
                self.guest_bytes_contract(bytes.len());
                self.guest_bytes(bytes);
            }
            Event::GuestWritten(n) => {
                let n = n.min(self.inflight);
                self.inflight -= n;
                self.written_bytes += n as u64;
            }
            Event::GuestClosed => self.guest_closed(),
            Event::ClientConnected(c) => self.connected(c),
            Event::ClientBytes(c, bytes) => self.client_bytes(c, bytes),
            Event::ClientWritten(c, n) => self.client_written(c, n),
            Event::ClientDisconnected(c) => {
                if self.clients.get(&c).is_some_and(|m| m.state != State::Gone) {
                    self.depart(c, false);
                }
            }
            Event::WallClock(wall) => self.wall_clock(wall),
            Event::Tick => {
                self.tick = true;
                self.expire();
                if let Some(cur) = &mut self.current {
                    cur.clock_later = Some(current::ClockLater::Tick);
                }
            }
        }
    }

    /// Feeds one action the core emitted for the current event.
    pub fn on_action(&mut self, action: &Action) {
        self.checks += 1;
        if self.drain_due && self.drain_follows(action) {
            return;
        }
        match action {
            Action::Handshake { client, bytes } => self.on_handshake(*client, bytes),
            Action::ToClient { client, frame } => self.on_to_client(*client, frame),
            Action::ToGuest { frame } => self.on_to_guest(frame),
            Action::Refuse { client, reason } => self.on_refuse(*client, reason),
            Action::CloseClient { client, reason } => self.on_close(*client, reason),
            Action::PauseClient(c) => self.on_pause(*c, true, action),
            Action::ResumeClient(c) => self.on_pause(*c, false, action),
            Action::Log(_) => self.on_log(),
            Action::GuestCorrupt { .. } => self.corrupt_seen += 1,
            Action::StartupFailed(why) => {
                self.fail(Invariant::Isolation, format!("start-up failure: {why}"));
            }
            Action::FlushExpired { client } => {
                let gone = self
                    .clients
                    .get(client)
                    .is_some_and(|m| m.state == State::Gone);
                if !self.guest_gone || !gone {
                    self.fail(
                        Invariant::Isolation,
                        format!(
                            "{client}: flush expired, but it was not closed by the guest going away"
                        ),
                    );
                }
            }
            Action::Ready => self.on_ready(),
            Action::Drain => self.on_drain(),
            Action::PauseGuest => self.on_guest_pause(true),
            Action::ResumeGuest => self.on_guest_pause(false),
        }
        self.note_pump(action);
    }

    /// Whether the next `ToGuest` continues a hand-over the core started
    /// after an action the checker saw (a departure, ready), or needs a
    /// guest frame the checker has not applied yet (a grant) to start one.
    fn note_pump(&mut self, action: &Action) {
        match action {
            Action::ToGuest { .. }
            | Action::CloseClient { .. }
            | Action::Handshake { .. }
            | Action::Refuse { .. }
            | Action::ResumeClient(_)
            | Action::Ready
            | Action::Drain => self.pump_open = true,
            Action::ToClient { .. } | Action::GuestCorrupt { .. } => self.pump_open = false,
            Action::PauseClient(_)
            | Action::PauseGuest
            | Action::ResumeGuest
            | Action::Log(_)
            | Action::StartupFailed(_)
            | Action::FlushExpired { .. } => {}
        }
    }

    /// Checks the state once the event's actions are drained.
    pub fn after(&mut self, relay: &Relay) {
        self.advance(|_| false);
        self.resume_client(None);
        if self.failure.is_some() {
            return;
        }
        self.after_event_to_guest();
        self.after_event_routing();
        if self.failure.is_some() {
            return;
        }
        let touched = std::mem::take(&mut self.touched);
        let mut issues = Issues::new();
        for &c in &touched {
            self.checks += 1;
            let Some(m) = self.clients.get_mut(&c) else {
                continue;
            };
            let connecting = std::mem::replace(&mut m.connecting, false);
            let m = &self.clients[&c];
            self.after_client_isolation(c, m, connecting, relay, &mut issues);
            self.after_client_to_guest(c, m, &mut issues);
            self.after_client_completeness(c, m, &mut issues);
            self.after_client_boundedness(c, m, relay, &mut issues);
        }
        for (inv, why) in issues {
            self.fail(inv, why);
        }
        self.touched = touched;
        self.after_event_boundedness(relay);
        self.after_event_bounded_wait(relay);
        self.after_event_leases(relay);
        self.after_event_credit(relay);
        self.after_event_init_ack();
        self.after_event_control_first();
    }

    /// The driver's side of the pause: no guest bytes while the core has the
    /// guest paused, and none in reads over the driver's read size (the
    /// bounds of `inv_boundedness` count one read).
    fn guest_bytes_contract(&mut self, len: usize) {
        if self.budget.paused {
            let why = format!("fed {len} guest bytes while the core has the guest paused");
            self.fail(Invariant::DriverContract, why);
        } else if len > self.read_max {
            let why = format!("fed {len} guest bytes in one read, over {}", self.read_max);
            self.fail(Invariant::DriverContract, why);
        }
    }

    /// A wall-clock reading: in the current generation a jump, or the first
    /// reading with no sync sent yet, asks for a clock sync.
    fn wall_clock(&mut self, wall: u64) {
        let jumped = self.clock.observe(self.now, wall);
        let first = self.clock.due(self.cfg.clock_period).is_none();
        if jumped || first {
            self.queue_clock();
        }
    }
}
