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
//! The checks, named after ARCHITECTURE.md's "Invariants the simulator checks":
//! `inv_routing`, `inv_completeness`, `inv_to_guest`, `inv_cleanup`,
//! `inv_isolation`, `inv_boundedness`, and at the end `live_sessions_end`,
//! `live_to_guest_end`, `live_cleanup_end`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use agent_relay::core::{
    Action, ClientId, CloseReason, Config, Event, HandshakeForm, IdRange, Millis, RefuseReason,
    Relay, SlowLimit,
};
use agent_relay::wire::payload::{ExecRequest, decode_payload, sigkill_frame};
use agent_relay::wire::{
    FLAG_SESSION_START, FLAG_TERMINAL, FrameDecoder, LEN_PREFIX, MsgType, PREFIX_LEN,
    decode_envelope_full,
};
use bytes::Bytes;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name, e.g. `inv_routing`.
    pub invariant: &'static str,
    /// What went wrong, in words.
    pub detail: String,
    /// The 1-based index of the core event after which it was seen.
    pub event: u64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} broken at event #{}: {}",
            self.invariant, self.event, self.detail
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connected, waiting for its handshake.
    Pending,
    /// Handshaken.
    Live,
    /// Disconnected or closed.
    Gone,
}

/// A frame a client sent that the guest must receive.
#[derive(Debug)]
struct Out {
    id: u32,
    frame: Bytes,
    control: bool,
    shutdown: bool,
}

/// The model of one client connection, from the relay's side.
#[derive(Debug)]
struct Model {
    state: State,
    /// This event's `ClientConnected`, outcome not yet seen.
    connecting: bool,
    /// It sent something the relay must refuse it for.
    bad: bool,
    /// It was closed for a protocol violation.
    violated: bool,
    range: Option<IdRange>,
    /// Its bytes toward the relay, framed by the model.
    parse: FrameDecoder,
    /// Valid frames it sent and the guest has not received yet, in order.
    out: VecDeque<Out>,
    out_bytes: usize,
    /// Exec sessions open when it left: each owes one SIGKILL.
    kills: BTreeSet<u32>,
    /// Open sessions: id -> is exec.
    sessions: BTreeMap<u32, bool>,
    /// Sessions it opened whose terminal frame has not reached it.
    awaiting: BTreeSet<u32>,
    /// Guest frames routed to it in this event, not yet seen as `ToClient`.
    to_client: VecDeque<Bytes>,
    /// The guest became ready while it waited: its handshake is due.
    hs_due: bool,
    /// Bytes handed to it and not yet reported written.
    queued: usize,
    /// Since when it is over its soft budget without progress.
    over_since: Option<Millis>,
    paused: bool,
    /// Its sessions are given up at this time (departed clients).
    expire_at: Option<Millis>,
}

impl Model {
    fn new() -> Model {
        Model {
            state: State::Pending,
            connecting: true,
            bad: false,
            violated: false,
            range: None,
            parse: FrameDecoder::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            kills: BTreeSet::new(),
            sessions: BTreeMap::new(),
            awaiting: BTreeSet::new(),
            to_client: VecDeque::new(),
            hs_due: false,
            queued: 0,
            over_since: None,
            paused: false,
            expire_at: None,
        }
    }

    /// Still holds its slot in the relay's eyes (a departed client's sessions
    /// or queued frames keep the slot).
    fn holds_slot(&self) -> bool {
        self.state != State::Gone
            || !self.out.is_empty()
            || !self.kills.is_empty()
            || !self.sessions.is_empty()
    }
}

/// The reference model and its checks. See the module docs.
#[derive(Debug)]
pub struct Checker {
    cfg: Config,
    step: u32,
    now: Millis,
    events: u64,
    /// Largest bytes one `ClientBytes` event may carry (the driver's read size).
    read_max: usize,
    held_bound: usize,
    ready: Option<Bytes>,
    ready_due: bool,
    guest: FrameDecoder,
    /// Guest frames of this event not yet applied to the model: applied as
    /// the actions show how far the core got (a close mid-chunk sees the
    /// sessions as they were at that frame).
    gq: VecDeque<(MsgType, u32, u8, Bytes)>,
    /// The guest stream was corrupt and no valid frame followed yet.
    resyncing: bool,
    guest_gone: bool,
    clients: BTreeMap<ClientId, Model>,
    /// Open session id -> owner. Looked up, never iterated.
    owners: HashMap<u32, ClientId>,
    /// Per slot, the clients that held it and may still owe something.
    by_slot: Vec<Vec<ClientId>>,
    inflight: usize,
    largest_to_guest: usize,
    corrupt_due: u64,
    corrupt_seen: u64,
    drain_due: bool,
    tick: bool,
    /// The event brought bytes in (the core's held bytes may have grown).
    bytes_in: bool,
    sum_queued: usize,
    touched: Vec<ClientId>,
    checks: u64,
    violation: Option<Violation>,
}

impl Checker {
    /// A checker for a relay built with `cfg`, driven by a driver that hands
    /// the core at most `read_max` client bytes per event.
    pub fn new(cfg: Config, read_max: usize) -> Checker {
        let frame_max = LEN_PREFIX + SPEC_MAX_FRAME_LEN as usize;
        let clients = cfg.max_clients as usize;
        // Guest decoder: at most one partial frame. Per slot: one partial
        // client frame, plus frames toward the guest up to the pause bound,
        // which one read (and the frame it completes) may overshoot.
        let held_bound =
            frame_max + clients * (frame_max + cfg.client_to_guest_cap + read_max + frame_max);
        Checker {
            step: cfg.step(),
            by_slot: vec![Vec::new(); clients],
            cfg,
            now: 0,
            events: 0,
            read_max,
            held_bound,
            ready: None,
            ready_due: false,
            guest: FrameDecoder::new(),
            gq: VecDeque::new(),
            resyncing: false,
            guest_gone: false,
            clients: BTreeMap::new(),
            owners: HashMap::new(),
            inflight: 0,
            largest_to_guest: 0,
            corrupt_due: 0,
            corrupt_seen: 0,
            drain_due: false,
            tick: false,
            bytes_in: false,
            sum_queued: 0,
            touched: Vec::new(),
            checks: 0,
            violation: None,
        }
    }

    /// The first broken invariant, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
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

    /// Bytes handed to the guest and not yet reported written (the model's count).
    pub fn guest_inflight(&self) -> usize {
        self.inflight
    }

    /// Whether anything is still owed: frames toward the guest, kills, or
    /// open sessions of connected clients.
    pub fn owes(&self) -> bool {
        self.owed().is_some()
    }

    /// What is still owed, in words (the first client that is owed something).
    pub fn owed(&self) -> Option<String> {
        self.clients.iter().find_map(|(c, m)| {
            let owes = (!m.violated && !m.out.is_empty())
                || !m.kills.is_empty()
                || (m.state == State::Live && !m.awaiting.is_empty());
            owes.then(|| {
                format!(
                    "{c} ({:?}): {} frames toward the guest, kills {:?}, awaiting terminals of {:?}",
                    m.state, m.out.len(), m.kills, m.awaiting
                )
            })
        })
    }

    /// Records a failure seen outside the model (e.g. the world did not settle).
    pub fn fail_external(&mut self, invariant: &'static str, detail: String) {
        self.fail(invariant, detail);
    }

    fn fail(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                invariant,
                detail,
                event: self.events,
            });
        }
    }

    fn touch(&mut self, c: ClientId) {
        if self.touched.last() != Some(&c) {
            self.touched.push(c);
        }
    }

    // ---- before the core sees the event ------------------------------------

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
        match *event {
            Event::GuestBytes(bytes) => self.guest_bytes(bytes),
            Event::GuestWritten(n) => self.inflight -= n.min(self.inflight),
            Event::GuestClosed => {
                if !self.guest_gone {
                    if self.guest.finish().is_err() {
                        self.corrupt_due += 1;
                    }
                    self.guest_gone = true;
                }
            }
            Event::ClientConnected(c) => match self.clients.get(&c) {
                Some(m) if m.state != State::Gone => {}
                Some(_) => {
                    let why = format!("driver reused the id of departed {c}");
                    self.fail("driver_contract", why);
                }
                None => {
                    self.clients.insert(c, Model::new());
                    self.touch(c);
                }
            },
            Event::ClientBytes(c, bytes) => self.client_bytes(c, bytes),
            Event::ClientWritten(c, n) => {
                let (now, soft) = (self.now, self.cfg.client_soft_budget);
                if let Some(m) = self.clients.get_mut(&c)
                    && m.state != State::Gone
                {
                    let n = n.min(m.queued);
                    m.queued -= n;
                    self.sum_queued -= n;
                    if m.queued <= soft {
                        m.over_since = None;
                    } else if n > 0 {
                        m.over_since = Some(now);
                    }
                    self.touch(c);
                }
            }
            Event::ClientDisconnected(c) => {
                if self.clients.get(&c).is_some_and(|m| m.state != State::Gone) {
                    self.depart(c, false);
                }
            }
            Event::Tick => {
                self.tick = true;
                let now = self.now;
                let expired: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, m)| {
                        m.state == State::Gone && m.expire_at.is_some_and(|t| t <= now)
                    })
                    .map(|(&c, _)| c)
                    .collect();
                for c in expired {
                    let m = self.clients.get_mut(&c).expect("listed above");
                    for id in std::mem::take(&mut m.sessions).into_keys() {
                        self.owners.remove(&id);
                    }
                    m.expire_at = None;
                }
            }
        }
    }

    fn guest_bytes(&mut self, bytes: &[u8]) {
        self.guest.extend(bytes);
        loop {
            let total = match self.guest.peek_frame() {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(_) => {
                    self.guest.resync();
                    self.corrupt_due += 1;
                    self.resyncing = true;
                    continue;
                }
            };
            let t = match decode_envelope_full(&self.guest.pending()[PREFIX_LEN..total]) {
                Ok(env) => env.t,
                Err(_) => {
                    self.guest.resync();
                    self.corrupt_due += 1;
                    self.resyncing = true;
                    continue;
                }
            };
            self.resyncing = false;
            let frame = self.guest.take_frame(total);
            self.gq
                .push_back((t, frame.id(), frame.flags(), frame.into_bytes()));
        }
        // Rule 7: after corruption the decoder resynchronises on the next
        // offset whose header and envelope opening validate. Waiting on a
        // candidate that cannot start a frame withholds every frame behind it.
        let pending = self.guest.pending();
        if self.resyncing
            && pending.len() >= PREFIX_LEN + ENVELOPE_OPENING.len()
            && !plausible(pending)
        {
            let why = format!(
                "after corrupt guest input the decoder waits on a candidate that cannot start a frame (header {:02x?}); {} guest bytes held, valid frames behind it withheld",
                &pending[..PREFIX_LEN + ENVELOPE_OPENING.len()],
                pending.len()
            );
            self.fail("inv_routing", why);
        }
    }

    /// Applies queued guest frames until `stop` holds or none are left.
    fn advance(&mut self, stop: impl Fn(&Checker) -> bool) {
        while !stop(self) {
            let Some((t, id, flags, frame)) = self.gq.pop_front() else {
                return;
            };
            self.guest_frame(t, id, flags, frame);
        }
    }

    /// Whether a routed frame waits for delivery to some client.
    fn routed_waiting(&self) -> bool {
        self.touched
            .iter()
            .any(|c| self.clients.get(c).is_some_and(|m| !m.to_client.is_empty()))
    }

    fn guest_frame(&mut self, t: MsgType, id: u32, flags: u8, frame: Bytes) {
        if self.ready.is_none() {
            if t == MsgType::Ready {
                self.ready = Some(frame);
                self.ready_due = true;
                let pending: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, m)| m.state == State::Pending)
                    .map(|(&c, _)| c)
                    .collect();
                for c in pending {
                    self.clients.get_mut(&c).expect("listed").hs_due = true;
                    self.touch(c);
                }
            }
            return;
        }
        let Some(&owner) = self.owners.get(&id) else {
            return;
        };
        let m = self
            .clients
            .get_mut(&owner)
            .expect("owners name known clients");
        if flags & FLAG_TERMINAL != 0 {
            m.sessions.remove(&id);
            self.owners.remove(&id);
            if m.sessions.is_empty() {
                m.expire_at = None;
            }
        }
        if m.state == State::Live {
            m.to_client.push_back(frame);
            self.touch(owner);
        }
    }

    fn client_bytes(&mut self, c: ClientId, bytes: &[u8]) {
        if !self.clients.contains_key(&c) {
            return;
        }
        self.touch(c);
        let m = self.clients.get_mut(&c).expect("checked");
        match m.state {
            State::Gone => return,
            State::Pending => {
                m.bad = true;
                return;
            }
            State::Live => {}
        }
        if m.bad {
            return;
        }
        m.parse.extend(bytes);
        let range = m.range.expect("live clients have a range");
        loop {
            let m = self.clients.get_mut(&c).expect("checked");
            let frame = match m.parse.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    m.bad = true;
                    break;
                }
            };
            let id = frame.id();
            let valid = range.contains(id)
                && match decode_envelope_full(frame.body()) {
                    Ok(env) => {
                        let t = env.t;
                        let start = spec_flags(t) & FLAG_SESSION_START != 0;
                        let ok = spec_client_may_send(t)
                            && frame.flags() == spec_flags(t)
                            && !(start && m.sessions.contains_key(&id))
                            && (t != MsgType::ExecRequest
                                || decode_payload::<ExecRequest>(&env.payload).is_ok());
                        if ok {
                            if start {
                                let exec = t == MsgType::ExecRequest;
                                m.sessions.insert(id, exec);
                                m.awaiting.insert(id);
                                self.owners.insert(id, c);
                            }
                            m.out_bytes += frame.len();
                            m.out.push_back(Out {
                                id,
                                frame: frame.into_bytes(),
                                control: matches!(
                                    t,
                                    MsgType::ExecSignal | MsgType::ExecResize | MsgType::Shutdown
                                ),
                                shutdown: t == MsgType::Shutdown,
                            });
                        }
                        ok
                    }
                    Err(_) => false,
                };
            if !valid {
                let m = self.clients.get_mut(&c).expect("checked");
                m.bad = true;
                break;
            }
        }
        if bytes.len() > self.read_max {
            let why = format!(
                "fed {} bytes in one read, over {}",
                bytes.len(),
                self.read_max
            );
            self.fail("driver_contract", why);
        }
    }

    /// A client leaves: one SIGKILL owed per open exec session, its slot
    /// quarantined while sessions live.
    fn depart(&mut self, c: ClientId, violated: bool) {
        let now = self.now;
        let quarantine = self.cfg.quarantine;
        let m = self
            .clients
            .get_mut(&c)
            .expect("departing clients are known");
        m.state = State::Gone;
        m.connecting = false;
        m.hs_due = false;
        m.violated = violated;
        self.sum_queued -= m.queued;
        m.queued = 0;
        m.to_client.clear();
        m.paused = false;
        m.over_since = None;
        m.kills = m
            .sessions
            .iter()
            .filter(|(_, exec)| **exec)
            .map(|(&id, _)| id)
            .collect();
        if !m.sessions.is_empty() {
            m.expire_at = Some(now + quarantine);
        }
        self.touch(c);
    }

    // ---- each action -------------------------------------------------------

    /// Feeds one action the core emitted for the current event.
    pub fn on_action(&mut self, action: &Action) {
        self.checks += 1;
        if self.drain_due {
            self.drain_due = false;
            if matches!(action, Action::Drain) {
                return;
            }
            self.fail(
                "inv_to_guest",
                format!("a shutdown frame went to the guest without Drain right after it; got {action:?}"),
            );
        }
        match action {
            Action::Handshake { client, bytes } => self.on_handshake(*client, bytes),
            Action::ToClient { client, frame } => self.on_to_client(*client, frame),
            Action::ToGuest { frame } => self.on_to_guest(frame),
            Action::Refuse { client, reason } => self.on_refuse(*client, reason),
            Action::CloseClient { client, reason } => self.on_close(*client, reason),
            Action::PauseClient(c) | Action::ResumeClient(c) => {
                let pause = matches!(action, Action::PauseClient(_));
                match self.clients.get_mut(c) {
                    Some(m) if m.state == State::Live => m.paused = pause,
                    _ => self.fail("inv_isolation", format!("{action:?} for a client not live")),
                }
            }
            Action::Log(_) => {
                if !self.cfg.exec_log {
                    self.fail("inv_isolation", "exec.log record with the tap off".into());
                }
            }
            Action::GuestCorrupt { .. } => self.corrupt_seen += 1,
            Action::FlushExpired { client } => {
                if !self.guest_gone
                    || self
                        .clients
                        .get(client)
                        .is_none_or(|m| m.state != State::Gone)
                {
                    self.fail(
                        "inv_isolation",
                        format!(
                            "{client}: flush expired, but it was not closed by the guest going away"
                        ),
                    );
                }
            }
            Action::Ready => {
                self.advance(|k| k.ready.is_some());
                if !self.ready_due {
                    self.fail(
                        "inv_routing",
                        "Ready emitted without a first core.ready".into(),
                    );
                }
                self.ready_due = false;
            }
            Action::Drain => self.fail("inv_to_guest", "Drain without a shutdown frame".into()),
        }
    }

    fn on_handshake(&mut self, c: ClientId, bytes: &Bytes) {
        self.advance(|k| k.ready.is_some());
        let (step, max) = (self.step, self.cfg.max_clients);
        let prefix = match self.cfg.handshake {
            HandshakeForm::Offset => 4,
            HandshakeForm::Bounds => 8,
        };
        let Some(ready) = self.ready.clone() else {
            return self.fail(
                "inv_isolation",
                format!("handshake to {c} before core.ready"),
            );
        };
        match self.clients.get(&c) {
            Some(m) if m.state == State::Pending && (m.connecting || m.hs_due) => {}
            _ => return self.fail("inv_isolation", format!("unexpected handshake to {c}")),
        }
        if bytes.len() != prefix + ready.len() || bytes[prefix..] != ready[..] {
            return self.fail(
                "inv_isolation",
                format!("handshake to {c} is not its range then the cached ready frame"),
            );
        }
        let start = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let end = if prefix == 8 {
            u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])
        } else {
            start.wrapping_add(step)
        };
        let slot = start / step;
        if !start.is_multiple_of(step) || slot >= max || end != start + step {
            return self.fail(
                "inv_isolation",
                format!("handshake to {c} gives range {start}..{end}, not a slot's"),
            );
        }
        let range = IdRange { start, end };
        for &other in &self.by_slot[slot as usize] {
            let o = &self.clients[&other];
            if other != c && o.range == Some(range) && o.holds_slot() {
                let why = format!(
                    "{c} got slot {slot} while {other} still holds it ({:?}, {} sessions, {} frames and {} kills toward the guest)",
                    o.state,
                    o.sessions.len(),
                    o.out.len(),
                    o.kills.len()
                );
                return self.fail("inv_isolation", why);
            }
        }
        let clients = &self.clients;
        self.by_slot[slot as usize].retain(|o| clients[o].holds_slot());
        self.by_slot[slot as usize].push(c);
        let m = self.clients.get_mut(&c).expect("checked");
        m.state = State::Live;
        m.connecting = false;
        m.hs_due = false;
        m.range = Some(range);
        self.add_queued(c, bytes.len());
    }

    fn add_queued(&mut self, c: ClientId, len: usize) {
        let (now, soft, hard) = (
            self.now,
            self.cfg.client_soft_budget,
            self.cfg.client_hard_cap,
        );
        let m = self.clients.get_mut(&c).expect("known");
        m.queued += len;
        self.sum_queued += len;
        if m.queued > soft && m.over_since.is_none() {
            m.over_since = Some(now);
        }
        if m.queued > hard {
            let q = m.queued;
            self.fail(
                "inv_boundedness",
                format!("{c} has {q} bytes queued, over its hard cap {hard}"),
            );
        }
        if self.sum_queued > self.cfg.global_cap {
            let why = format!(
                "{} bytes queued for all clients, over the global cap {}",
                self.sum_queued, self.cfg.global_cap
            );
            self.fail("inv_boundedness", why);
        }
        self.touch(c);
    }

    fn on_to_client(&mut self, c: ClientId, frame: &Bytes) {
        self.advance(Checker::routed_waiting);
        if let Some((&other, _)) = self
            .clients
            .iter()
            .find(|(o, m)| **o != c && !m.to_client.is_empty())
        {
            let why = format!(
                "{c} got frame id {} while an earlier guest frame for {other} was not delivered",
                frame_id(frame)
            );
            return self.fail("inv_routing", why);
        }
        let Some(m) = self.clients.get_mut(&c) else {
            return self.fail("inv_routing", format!("frame to unknown {c}"));
        };
        if m.state != State::Live {
            let why = format!("frame to {c} which is {:?}", m.state);
            return self.fail("inv_routing", why);
        }
        match m.to_client.pop_front() {
            Some(want) if want == *frame => {}
            Some(want) => {
                let why = format!(
                    "{c} got frame id {} ({} bytes), but the next guest frame for its sessions is id {} ({} bytes)",
                    frame_id(frame),
                    frame.len(),
                    frame_id(&want),
                    want.len()
                );
                return self.fail("inv_routing", why);
            }
            None => {
                let why = format!(
                    "{c} got frame id {} that is not the guest's next frame for a session it opened",
                    frame_id(frame)
                );
                return self.fail("inv_routing", why);
            }
        }
        if frame.len() > 8 && frame[8] & FLAG_TERMINAL != 0 {
            m.awaiting.remove(&frame_id(frame));
        }
        self.add_queued(c, frame.len());
    }

    fn on_to_guest(&mut self, frame: &Bytes) {
        if self.inflight >= self.cfg.guest_window {
            let why = format!(
                "frame handed to the guest with {} bytes in flight, window {}",
                self.inflight, self.cfg.guest_window
            );
            self.fail("inv_boundedness", why);
        }
        self.inflight += frame.len();
        self.largest_to_guest = self.largest_to_guest.max(frame.len());
        let id = frame_id(frame);
        let slot = (id / self.step) as usize;
        let candidates = self.by_slot.get(slot).cloned().unwrap_or_default();
        for c in candidates {
            let m = self
                .clients
                .get_mut(&c)
                .expect("by_slot names known clients");
            if let Some(pos) = m.out.iter().position(|o| o.id == id) {
                let o = &m.out[pos];
                if o.frame != *frame {
                    let why = format!(
                        "frame for session {id} of {c} is not the next one it sent for that session (reordered, altered or duplicated)"
                    );
                    return self.fail("inv_to_guest", why);
                }
                if !o.control && pos != 0 {
                    let why = format!(
                        "data frame for session {id} of {c} overtook {pos} earlier frames of the same client"
                    );
                    return self.fail("inv_to_guest", why);
                }
                let o = m.out.remove(pos).expect("found");
                m.out_bytes -= o.frame.len();
                self.drain_due = o.shutdown;
                self.touch(c);
                return;
            }
            if m.kills.contains(&id) && *frame == sigkill_frame(id).into_bytes() {
                if !m.out.is_empty() {
                    if m.violated {
                        // A violator's earlier frames may be dropped, but never arrive late.
                        m.out.clear();
                        m.out_bytes = 0;
                    } else {
                        let why = format!(
                            "SIGKILL for session {id} of {c} overtook {} earlier frames of that client",
                            m.out.len()
                        );
                        return self.fail("inv_cleanup", why);
                    }
                }
                m.kills.remove(&id);
                self.touch(c);
                return;
            }
        }
        if *frame == sigkill_frame(id).into_bytes() {
            let why = format!(
                "SIGKILL for id {id} that no departed client's open exec session owes (ended, fs, duplicate or never opened)"
            );
            return self.fail("inv_cleanup", why);
        }
        let why = format!(
            "frame id {id} ({} bytes) to the guest matches no frame a client sent that is still due",
            frame.len()
        );
        self.fail("inv_to_guest", why);
    }

    fn on_refuse(&mut self, c: ClientId, reason: &RefuseReason) {
        match self.clients.get(&c) {
            Some(m) if m.connecting => {}
            _ => {
                return self.fail(
                    "inv_isolation",
                    format!("refused {c} which was not connecting"),
                );
            }
        }
        match reason {
            RefuseReason::GuestGone if !self.guest_gone => {
                self.fail(
                    "inv_isolation",
                    format!("refused {c}: guest gone, but it is not"),
                );
            }
            RefuseReason::GuestGone => {}
            RefuseReason::Full { .. } => {
                let mut slots = BTreeSet::new();
                let mut pending = 0;
                for (&o, m) in &self.clients {
                    if o == c {
                        continue;
                    }
                    match (m.state, m.range) {
                        (State::Pending, _) => pending += 1,
                        (_, Some(r)) if m.holds_slot() => {
                            slots.insert(r.start);
                        }
                        _ => {}
                    }
                }
                let held = slots.len() + pending;
                if held < self.cfg.max_clients as usize {
                    let why = format!(
                        "refused {c} as full while only {held} of {} slots are held",
                        self.cfg.max_clients
                    );
                    self.fail("inv_isolation", why);
                }
            }
        }
        self.clients.remove(&c);
    }

    fn on_close(&mut self, c: ClientId, reason: &CloseReason) {
        let Some(m) = self.clients.get(&c) else {
            return self.fail("inv_isolation", format!("closed unknown {c}"));
        };
        if m.state == State::Gone {
            return self.fail("inv_isolation", format!("closed {c} twice"));
        }
        let mut violated = false;
        match reason {
            CloseReason::Violation(why) => {
                if !m.bad {
                    let why = format!("{c} closed for a violation it did not commit: {why}");
                    return self.fail("inv_isolation", why);
                }
                violated = true;
            }
            CloseReason::GuestGone => {
                if !self.guest_gone {
                    return self.fail(
                        "inv_isolation",
                        format!("{c} closed: guest gone, but it is not"),
                    );
                }
            }
            CloseReason::SlowConsumer { queued, limit } => {
                self.advance(Checker::routed_waiting);
                let m = &self.clients[&c];
                if *queued != m.queued {
                    let why = format!(
                        "{c} closed as slow with {queued} bytes queued; the model has {}",
                        m.queued
                    );
                    return self.fail("inv_boundedness", why);
                }
                let next = match m.to_client.front() {
                    Some(f) => f.len(),
                    None if m.state == State::Pending => {
                        self.ready.as_ref().map_or(0, |r| r.len() + 8)
                    }
                    None => 0,
                };
                let fair = match limit {
                    SlowLimit::HardCap => m.queued + next > self.cfg.client_hard_cap,
                    SlowLimit::Grace => m
                        .over_since
                        .is_some_and(|t| self.tick && t + self.cfg.grace <= self.now),
                    SlowLimit::GlobalCap => self
                        .clients
                        .values()
                        .filter(|o| o.state != State::Gone)
                        .all(|o| o.queued <= m.queued),
                };
                if !fair {
                    let why = format!(
                        "{c} closed as slow ({limit:?}) with {queued} bytes queued, next frame {next} bytes, unjustified"
                    );
                    return self.fail("inv_isolation", why);
                }
            }
        }
        self.depart(c, violated);
    }

    // ---- after the actions --------------------------------------------------

    /// Checks the state once the event's actions are drained.
    pub fn after(&mut self, relay: &Relay) {
        self.advance(|_| false);
        if self.violation.is_some() {
            return;
        }
        if self.drain_due {
            return self.fail(
                "inv_to_guest",
                "shutdown frame without Drain after it".into(),
            );
        }
        if self.ready_due {
            return self.fail(
                "inv_routing",
                "first core.ready without a Ready action".into(),
            );
        }
        if self.corrupt_due != self.corrupt_seen {
            let why = format!(
                "the guest stream held {} corrupt stretches in this event, the core reported {}",
                self.corrupt_due, self.corrupt_seen
            );
            return self.fail("inv_routing", why);
        }
        let touched = std::mem::take(&mut self.touched);
        let mut issues: Vec<(&'static str, String)> = Vec::new();
        for &c in &touched {
            self.checks += 1;
            let Some(m) = self.clients.get_mut(&c) else {
                continue;
            };
            let connecting = std::mem::replace(&mut m.connecting, false);
            match m.state {
                State::Gone => {
                    if relay.client_range(c).is_some() {
                        issues.push(("inv_isolation", format!("{c} left but still has a slot")));
                    }
                    continue;
                }
                State::Pending if m.bad => {
                    issues.push((
                        "inv_to_guest",
                        format!("{c} sent bytes before its handshake and was not closed"),
                    ));
                }
                State::Pending if m.hs_due || (connecting && self.ready.is_some()) => {
                    issues.push((
                        "inv_isolation",
                        format!("{c} got neither a handshake nor a refusal"),
                    ));
                }
                State::Pending => {}
                State::Live => {
                    if m.bad {
                        issues.push((
                            "inv_to_guest",
                            format!("{c} sent an invalid frame and was not closed"),
                        ));
                    }
                    if !m.to_client.is_empty() {
                        let why = format!(
                            "{} guest frames for live {c}'s sessions were not delivered",
                            m.to_client.len()
                        );
                        issues.push(("inv_completeness", why));
                    }
                    if m.out_bytes > self.cfg.client_to_guest_cap && !m.paused {
                        let why = format!(
                            "{c} has {} bytes queued toward the guest, over {}, and is not paused",
                            m.out_bytes, self.cfg.client_to_guest_cap
                        );
                        issues.push(("inv_boundedness", why));
                    }
                    if let Some(t) = m.over_since {
                        let deadline = t + self.cfg.grace;
                        if relay.poll_timeout().is_none_or(|x| x.at > deadline) {
                            let why = format!(
                                "{c} is over its soft budget since {t}; poll_timeout {:?} is later than its deadline {deadline}",
                                relay.poll_timeout()
                            );
                            issues.push(("inv_boundedness", why));
                        }
                    }
                }
            }
            let m = &self.clients[&c];
            let have = relay.client_queued(c);
            if have != Some(m.queued) {
                let why = format!(
                    "core says {c} has {have:?} bytes queued, the model {}",
                    m.queued
                );
                issues.push(("inv_boundedness", why));
            }
        }
        for (inv, why) in issues {
            self.fail(inv, why);
        }
        self.touched = touched;
        self.checks += 4;
        if relay.counters().queued_to_clients != self.sum_queued as u64 {
            let why = format!(
                "core counts {} bytes queued for clients, the model {}",
                relay.counters().queued_to_clients,
                self.sum_queued
            );
            return self.fail("inv_boundedness", why);
        }
        if relay.guest_inflight() != self.inflight
            || self.inflight > self.cfg.guest_window + self.largest_to_guest
        {
            let why = format!(
                "guest in flight: core {}, model {}, window {}",
                relay.guest_inflight(),
                self.inflight,
                self.cfg.guest_window
            );
            return self.fail("inv_boundedness", why);
        }
        // Held bytes only grow when bytes come in.
        let held = if self.bytes_in { relay.held_bytes() } else { 0 };
        if held > self.held_bound {
            let why = format!(
                "core holds {held} bytes, over the bound {}",
                self.held_bound
            );
            return self.fail("inv_boundedness", why);
        }
        if self.tick {
            let now = self.now;
            let grace = self.cfg.grace;
            if let Some((&c, _)) = self.clients.iter().find(|(_, m)| {
                m.state == State::Live && m.over_since.is_some_and(|t| t + grace <= now)
            }) {
                let why = format!("{c} outlived its grace period and was not closed");
                self.fail("inv_boundedness", why);
            }
        }
    }

    /// Liveness, once the run ended with faults healed and every actor idle:
    /// every started session of a connected client reached its terminal
    /// frame, every frame a well-behaved client sent reached the guest, and
    /// every owed SIGKILL went out.
    pub fn finish(&mut self) {
        if self.violation.is_some() || self.guest_gone {
            return;
        }
        let mut found = None;
        for (&c, m) in &self.clients {
            self.checks += 1;
            if m.state == State::Live && !m.awaiting.is_empty() {
                found = Some((
                    "live_sessions_end",
                    format!(
                        "{c} opened sessions {:?} whose terminal frame never reached it",
                        m.awaiting
                    ),
                ));
            } else if m.state == State::Pending && self.ready.is_some() {
                found = Some(("live_sessions_end", format!("{c} never got its handshake")));
            } else if !m.violated && !m.out.is_empty() {
                found = Some((
                    "live_to_guest_end",
                    format!("{} frames {c} sent never reached the guest", m.out.len()),
                ));
            } else if !m.kills.is_empty() {
                found = Some((
                    "live_cleanup_end",
                    format!("SIGKILLs for {c}'s sessions {:?} never went out", m.kills),
                ));
            }
            if found.is_some() {
                break;
            }
        }
        if let Some((inv, why)) = found {
            self.fail(inv, why);
        }
    }
}

/// The flags each type must carry, written out here from ARCHITECTURE.md
/// rather than taken from `MsgType::flags`, so a mutation there cannot fool
/// the model and the core alike.
fn spec_flags(t: MsgType) -> u8 {
    match t {
        MsgType::ExecExited | MsgType::ExecFailed | MsgType::FsResponse => 0x01,
        MsgType::ExecRequest | MsgType::FsRequest => 0x02,
        MsgType::Shutdown => 0x04,
        _ => 0,
    }
}

/// The types a host client may send (independent of `MsgType::client_may_send`).
fn spec_client_may_send(t: MsgType) -> bool {
    matches!(
        t,
        MsgType::Shutdown
            | MsgType::ExecRequest
            | MsgType::ExecStdin
            | MsgType::ExecResize
            | MsgType::ExecSignal
            | MsgType::FsRequest
            | MsgType::FsData
    )
}

/// 4 MiB, the protocol's frame limit, spelled out independently of the wire layer.
const SPEC_MAX_FRAME_LEN: u32 = 4_194_304;

/// The envelope opening every 0.4.4 encoder writes: `map(3) "v" 1 "t"`.
const ENVELOPE_OPENING: [u8; 6] = [0xa3, 0x61, b'v', 0x01, 0x61, b't'];

/// Could a frame start here (enough bytes to judge assumed)?
fn plausible(b: &[u8]) -> bool {
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (MIN_PLAUSIBLE_LEN..=SPEC_MAX_FRAME_LEN).contains(&len)
        && matches!(b[8], 0 | 1 | 2 | 4)
        && b[PREFIX_LEN..PREFIX_LEN + ENVELOPE_OPENING.len()] == ENVELOPE_OPENING
}

const MIN_PLAUSIBLE_LEN: u32 = 5 + ENVELOPE_OPENING.len() as u32;

fn frame_id(frame: &[u8]) -> u32 {
    if frame.len() < 8 {
        return u32::MAX;
    }
    u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
}
