//! The reference model: what the relay must do, rebuilt only from the
//! events fed to the core and the actions it emits, written from the
//! protocol and the rules `docs/ARCHITECTURE.md` states, never from the
//! core's code. It applies each event and action and reports [`Fact`]s to a
//! [`Facts`] sink (the invariants, which judge); it judges nothing itself.
//!
//! Its parts: each client connection (`client.rs`) and how connections,
//! departures and quarantine change it (here); client frames judged by the
//! rules of the generation spoken (`client_in.rs`, by the protocol facts of
//! `spec.rs`, the refusals of `refusal.rs`); guest frames framed and applied
//! where the core reached them (`guest_in.rs`); what a frame handed to the
//! guest is (`to_guest.rs`) and what the relay hands clients (`to_client.rs`);
//! the current generation's state (`current.rs`), its range leases
//! (`leases.rs`) and rule `backpressure_bounded_wait` (`budget.rs`).

mod budget;
mod client;
mod client_in;
mod current;
mod fact;
mod frames;
mod guest_in;
mod leases;
mod refusal;
mod spec;
mod to_client;
mod to_guest;

use std::collections::{HashMap, VecDeque};

use agent_relay::core::{Action, ClientId, Config, Event, Millis, Protocol};
use agent_relay::wire::{Frame, FrameDecoder, LEN_PREFIX, MsgType};
use bytes::Bytes;

pub use budget::{Budget, BudgetStats};
pub use client::{Client, Clients, Corr, Lane, State};
pub use current::{Class, ClockModel, Ctl, CtlEntry, Current, Layout, WORKLOAD_ID, Window};
pub use fact::{Due, Fact, Prologue, Reached, Stray};
pub use frames::frame_id;
pub use spec::MAX_FRAME_LEN;

use current::ClockLater;
use refusal::Refusal;

/// Where the model reports what it saw.
pub trait Facts {
    /// One fact, with the model as it stands when it is reported.
    fn fact(&mut self, m: &Model, f: Fact<'_>);
}

/// A guest frame the model framed and judged, waiting to be applied.
#[derive(Debug)]
struct Gq {
    /// Its type; `None` for a bulk record or a type the relay does not know.
    t: Option<MsgType>,
    id: u32,
    flags: u8,
    frame: Bytes,
    /// A range-lease disconnect acknowledgement, not a frame: the range it
    /// names and the incarnation.
    ack: Option<leases::Ack>,
}

/// Adds `c` to a list in id order (if it is not there).
fn insert_sorted(list: &mut Vec<ClientId>, c: ClientId) {
    match list.last() {
        Some(&last) if last < c => list.push(c),
        None => list.push(c),
        _ => {
            if let Err(i) = list.binary_search(&c) {
                list.insert(i, c);
            }
        }
    }
}

/// A slot's head frame that may leave now.
#[derive(Debug, Clone, Copy)]
pub struct SlotHead {
    /// The slot.
    pub slot: usize,
    /// Its credit class.
    pub class: Class,
    /// Its bytes.
    pub len: usize,
    /// Its id.
    pub id: u32,
}

/// The model. See the module docs.
#[derive(Debug)]
pub struct Model {
    /// The relay's configuration.
    pub cfg: Config,
    /// The slots' ranges, once the generation is known.
    pub layout: Option<Layout>,
    /// The latest time seen.
    pub now: Millis,
    /// Core events seen so far.
    pub events: u64,
    /// Largest bytes one read may carry (the driver's read size).
    pub read_max: usize,
    /// The guest's first `core.ready`, once applied.
    pub ready: Option<Bytes>,
    /// The guest stream, framed.
    pub guest: FrameDecoder,
    /// The guest stream's framing has passed its first `core.ready`, and
    /// whether that ready made the generation the current one.
    pub parse_ready: bool,
    /// See `parse_ready`.
    pub parse_current: bool,
    /// That ready offered range leases: records with the lease magic are
    /// read as such.
    parse_lease: bool,
    /// Guest frames of this event not yet applied: applied as the actions
    /// show how far the core got (a close mid-chunk sees the sessions as
    /// they were at that frame).
    gq: VecDeque<Gq>,
    /// The guest stream was corrupt and no valid frame followed yet.
    pub resyncing: bool,
    /// The guest channel closed.
    pub guest_gone: bool,
    /// Every client connection, departed ones included.
    pub clients: Clients,
    /// The clients not gone (pending or live), in id order.
    pub present: Vec<ClientId>,
    /// Departed clients whose sessions are given up at a time
    /// (`Client::expire_at`), in id order.
    quarantined: Vec<ClientId>,
    /// Open correlation id -> its newest owner. Looked up, never iterated.
    pub owners: HashMap<u32, ClientId>,
    /// Correlations opened so far (their creation order).
    last_corr: u64,
    /// Per slot, the clients that held it and may still owe something.
    pub by_slot: Vec<Vec<ClientId>>,
    /// The current generation's state, from its ready on.
    pub current: Option<Current>,
    /// The clock-sync rule's state.
    pub clock: ClockModel,
    /// Init acks owed, as the relay must write them.
    pub init_acks: VecDeque<Bytes>,
    /// See [`Model::note_pump`].
    pump_open: bool,
    /// The guest frame just applied was a credit grant the relay took.
    granted_now: bool,
    /// The rest of a client's read, held back behind the relay's own answer
    /// to one of its frames.
    cq: Option<(ClientId, VecDeque<Result<Frame, Refusal>>)>,
    /// Bytes handed to the guest and not yet reported written.
    pub inflight: usize,
    /// Bytes handed to the guest so far.
    pub handed_bytes: u64,
    /// Of them, reported written.
    pub written_bytes: u64,
    /// The event is a `Tick`.
    pub tick: bool,
    /// The event brought bytes in (the core's held bytes may have grown).
    pub bytes_in: bool,
    /// Bytes queued for all clients.
    pub sum_queued: usize,
    /// Clients with frames in their slot's queue (the turn lane), in the
    /// order each queue became non-empty.
    pub turn_order: Vec<ClientId>,
    /// Clients this event touched, in order.
    pub touched: Vec<ClientId>,
    /// A connected record that went to the guest before its client's
    /// handshake in this event: its range and incarnation.
    early_lease: Option<(u32, u32, [u8; 16])>,
    /// After the event: such a record went with no handshake after it.
    pub orphan_lease: Option<(u32, u32)>,
    /// After the event: a client was closed to make room for a handshake
    /// that did not follow.
    pub lease_due_orphaned: bool,
    /// After the event: the control queue's head, if it may leave now
    /// (see [`Model::ctl_head_ready`]).
    pub head_ready: Option<CtlEntry>,
    /// After the event: the first slot head that may leave now (see
    /// [`Model::slot_head_ready`]).
    pub slot_ready: Option<SlotHead>,
    /// Rule `backpressure_bounded_wait`'s state.
    pub budget: Budget,
}

impl Model {
    /// A model of a relay built with `cfg`, driven by a driver that hands
    /// the core at most `read_max` bytes per read.
    pub fn new(cfg: Config, read_max: usize) -> Model {
        let layout = match cfg.protocol {
            Protocol::Legacy => Some(Layout::legacy(cfg.legacy.max_clients)),
            Protocol::Current => Some(Layout::current(cfg.current.clients)),
            Protocol::Auto => None,
        };
        Model {
            layout,
            by_slot: vec![
                Vec::new();
                Model::slots_bound(&cfg)
                    .max(cfg.legacy.max_clients as usize)
                    .max(128)
            ],
            cfg,
            now: 0,
            events: 0,
            read_max,
            ready: None,
            guest: FrameDecoder::new(),
            parse_ready: false,
            parse_current: false,
            parse_lease: false,
            gq: VecDeque::new(),
            resyncing: false,
            guest_gone: false,
            clients: Clients::default(),
            present: Vec::new(),
            quarantined: Vec::new(),
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
            tick: false,
            bytes_in: false,
            sum_queued: 0,
            turn_order: Vec::new(),
            touched: Vec::new(),
            early_lease: None,
            orphan_lease: None,
            lease_due_orphaned: false,
            head_ready: None,
            slot_ready: None,
            budget: Budget::default(),
        }
    }

    /// The most slots the relay may offer with `cfg`, whatever the guest's
    /// generation turns out to be.
    pub fn slots_bound(cfg: &Config) -> usize {
        let current = Layout::current(cfg.current.clients).slots();
        match cfg.protocol {
            Protocol::Legacy => Layout::legacy(cfg.legacy.max_clients).slots(),
            Protocol::Current => current,
            Protocol::Auto => current.max(cfg.legacy.max_clients as usize),
        }
    }

    /// The largest frame the protocol allows, with its length prefix.
    pub fn frame_max() -> usize {
        LEN_PREFIX + MAX_FRAME_LEN as usize
    }

    /// The current generation's state (only called once it is known).
    pub fn cur(&self) -> &Current {
        self.current.as_ref().expect("current generation")
    }

    /// The client `c` (only called for known clients).
    pub fn client(&self, c: ClientId) -> &Client {
        &self.clients[&c]
    }

    fn touch(&mut self, c: ClientId) {
        if self.touched.last() != Some(&c) {
            self.touched.push(c);
        }
    }

    /// Applies the event the core is about to handle at `now`.
    pub fn before(&mut self, now: Millis, event: &Event<'_>, out: &mut impl Facts) {
        self.now = self.now.max(now);
        self.events += 1;
        self.touched.clear();
        self.tick = false;
        self.bytes_in = matches!(event, Event::GuestBytes(_) | Event::ClientBytes(..));
        self.pump_open = false;
        self.orphan_lease = None;
        self.lease_due_orphaned = false;
        if let Some(cur) = &mut self.current {
            cur.late.clear();
        }
        self.budget.guest_event = matches!(event, Event::GuestBytes(_));
        out.fact(self, Fact::Event(event));
        match *event {
            Event::GuestBytes(bytes) => self.guest_bytes(bytes, out),
            Event::GuestWritten(n) => {
                let n = n.min(self.inflight);
                self.inflight -= n;
                self.written_bytes += n as u64;
            }
            Event::GuestClosed => self.guest_closed(out),
            Event::ClientConnected(c) => self.connected(c, out),
            Event::ClientBytes(c, bytes) => self.client_bytes(c, bytes, out),
            Event::ClientWritten(c, n) => self.client_written(c, n),
            Event::ClientDisconnected(c) => {
                if self.clients.get(&c).is_some_and(|m| m.state != State::Gone) {
                    self.depart(c, false, out);
                }
            }
            Event::WallClock(wall) => self.wall_clock(wall),
            Event::Tick => {
                self.tick = true;
                self.expire();
                if let Some(cur) = &mut self.current {
                    cur.clock_later = Some(ClockLater::Tick);
                }
            }
        }
    }

    /// Applies one action the core emitted for the current event.
    pub fn on_action(&mut self, action: &Action, out: &mut impl Facts) {
        out.fact(self, Fact::Action(action));
        match action {
            Action::Handshake { client, bytes } => self.on_handshake(*client, bytes, out),
            Action::ToClient { client, frame } => self.on_to_client(*client, frame, out),
            Action::ToGuest { frame } => self.on_to_guest(frame, out),
            Action::Refuse { client, reason } => self.on_refuse(*client, reason, out),
            Action::CloseClient { client, reason } => self.on_close(*client, reason, out),
            Action::PauseClient(c) | Action::ResumeClient(c) => {
                if let Some(m) = self.clients.get_mut(c)
                    && m.state == State::Live
                {
                    m.paused = matches!(action, Action::PauseClient(_));
                }
            }
            Action::Ready => {
                self.advance(|k| k.ready.is_some(), out);
                out.fact(self, Fact::Ready);
            }
            Action::PauseGuest => self.guest_pause(true),
            Action::ResumeGuest => self.guest_pause(false),
            Action::Log(_)
            | Action::GuestCorrupt { .. }
            | Action::StartupFailed(_)
            | Action::FlushExpired { .. }
            | Action::Drain => {}
        }
        self.note_pump(action);
    }

    /// Whether the next `ToGuest` continues a hand-over the core started
    /// after an action the model saw (a departure, ready), or needs a guest
    /// frame the model has not applied yet (a grant) to start one.
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

    /// Once the event's actions are drained: the guest frames the core read
    /// in it are applied, and a read held back behind the relay's answer is
    /// judged.
    pub fn settle(&mut self, out: &mut impl Facts) {
        self.advance(|_| false, out);
        self.resume_client(None, out);
    }

    /// Before the end-of-event checks: what the event left owed but never
    /// given (a connected record without its handshake, room made for a
    /// handshake that did not follow) is set aside as a fact, a clock sync
    /// that waited for the event's departures is queued, and what may leave
    /// toward the guest now is noted.
    pub fn settle_for_checks(&mut self) {
        self.settle_leases_and_clock();
        self.head_ready = self.ctl_head_ready().copied();
        self.slot_ready = self.slot_head_ready();
    }

    fn settle_leases_and_clock(&mut self) {
        if let Some((s, e, _)) = self.early_lease.take() {
            self.orphan_lease = Some((s, e));
        }
        if let Some(cur) = &mut self.current {
            let before = cur.ctl.len();
            cur.ctl.retain(|e| e.who != Ctl::LeaseDue);
            self.lease_due_orphaned = cur.ctl.len() != before;
        }
        self.clock_queued_later();
    }

    /// After the end-of-event checks: the event's connections were answered.
    pub fn end_event(&mut self) {
        for c in &self.touched {
            if let Some(m) = self.clients.get_mut(c) {
                m.connecting = false;
            }
        }
    }

    fn connected(&mut self, c: ClientId, out: &mut impl Facts) {
        match self.clients.get(&c) {
            Some(m) if m.state != State::Gone => {}
            Some(_) => out.fact(self, Fact::IdReused(c)),
            None => {
                self.clients.insert(c, Client::new());
                insert_sorted(&mut self.present, c);
                self.touch(c);
            }
        }
    }

    /// Written bytes leave the client's queue (`budget.rs` says what that
    /// does to its grace period and the sum's).
    fn client_written(&mut self, c: ClientId, n: usize) {
        if let Some(m) = self.clients.get_mut(&c)
            && m.state != State::Gone
        {
            let n = n.min(m.queued);
            m.queued -= n;
            self.sum_queued -= n;
            self.touch(c);
            self.budget_written(c);
        }
    }

    /// Departed clients whose quarantine ended lose their sessions (and, in
    /// the current generation, what the guest holds of their data).
    fn expire(&mut self) {
        let now = self.now;
        let expired: Vec<ClientId> = self
            .quarantined
            .iter()
            .copied()
            .filter(|c| self.clients[c].expire_at.is_some_and(|t| t <= now))
            .collect();
        for c in expired {
            self.quarantined.retain(|&q| q != c);
            let m = self.clients.get_mut(&c).expect("listed above");
            let slot = m.slot;
            for (id, corr) in std::mem::take(&mut m.sessions) {
                self.forget(c, id, corr);
            }
            let m = self.clients.get_mut(&c).expect("listed above");
            m.expire_at = None;
            if let Some(cur) = &mut self.current {
                if let Some(credit) = &mut cur.credit {
                    credit.forget_slot(slot);
                }
                cur.fences.retain(|_, s| *s != slot);
            }
        }
    }

    /// A correlation of `c` is gone (already removed from its sessions).
    fn forget(&mut self, c: ClientId, id: u32, corr: Corr) {
        if self.owners.get(&id) == Some(&c) {
            self.owners.remove(&id);
        }
        if let (Some(cur), true) = (&mut self.current, corr.counts) {
            cur.active_execs -= 1;
        }
    }

    /// `c`'s last correlation ended: its quarantine is over.
    fn sessions_ended(&mut self, c: ClientId) {
        let m = self.clients.get_mut(&c).expect("known");
        if !m.sessions.is_empty() {
            return;
        }
        if m.expire_at.take().is_some() {
            self.quarantined.retain(|&q| q != c);
        }
        let slot = m.slot;
        if m.state == State::Gone
            && let Some(cur) = &mut self.current
        {
            cur.fences.retain(|_, s| *s != slot);
        }
    }

    /// A client leaves: one SIGKILL owed per open exec session, its slot
    /// quarantined while anything is open. Current generation: its queued
    /// data is dropped, the kills and then its disconnect notice join the
    /// control queue.
    fn depart(&mut self, c: ClientId, violated: bool, out: &mut impl Facts) {
        let now = self.now;
        let quarantine = self.cfg.quarantine;
        let m = self
            .clients
            .get_mut(&c)
            .expect("departing clients are known");
        let handshaken = m.state == State::Live;
        m.state = State::Gone;
        m.connecting = false;
        m.hs_due = false;
        m.violated = violated;
        self.sum_queued -= m.queued;
        m.queued = 0;
        m.to_client.clear();
        m.paused = false;
        let over = m.over_since.take().is_some();
        m.own_over = 0;
        m.kills = m
            .sessions
            .iter()
            .filter(|(_, s)| s.kind.is_exec())
            .map(|(&id, _)| id)
            .collect();
        // Leased, the slot waits for the guest's acknowledgement, with no
        // timer (rule `range_leases`); otherwise for what is open, a while.
        m.awaiting_ack = m.leased && handshaken;
        if !m.sessions.is_empty() && !m.awaiting_ack {
            m.expire_at = Some(now + quarantine);
            insert_sorted(&mut self.quarantined, c);
        }
        self.present.retain(|&p| p != c);
        if self.current.is_some() && handshaken {
            self.drop_data(c, out);
        }
        out.fact(self, Fact::Departed(c));
        if self.current.is_some() && handshaken {
            self.notice_joined(c);
        }
        self.budget_departed(over);
        self.touch(c);
    }

    /// Current generation: a departed client's frames still waiting in its
    /// slot's queue (its data, and control frames held behind it) are
    /// dropped, not left waiting for credit.
    fn drop_data(&mut self, c: ClientId, out: &mut impl Facts) {
        let m = self.clients.get_mut(&c).expect("known");
        let before = m.out.len();
        let (mut bytes, mut data) = (0, 0);
        m.out.retain(|o| {
            let queued = o.lane == Lane::Turn;
            if queued {
                bytes += o.frame.len();
                data += usize::from(o.class == Class::Data);
            }
            !queued
        });
        let n = before - m.out.len();
        m.out_bytes -= bytes;
        if n == 0 {
            return;
        }
        m.turns -= n;
        self.turn_order.retain(|&w| w != c);
        let slot = m.slot;
        if let Some(cur) = &mut self.current {
            cur.slot_data[slot] -= data;
        }
        out.fact(self, Fact::Dropped { c, frames: n });
    }

    /// Current generation: the kills, then the notice, in the control queue.
    fn notice_joined(&mut self, c: ClientId) {
        let cur = self.current.as_mut().expect("current generation");
        let m = self.clients.get_mut(&c).expect("known");
        m.notice_due = true;
        let (slot, range) = (m.slot, m.range.expect("handshaken"));
        for &id in &m.kills {
            let len = agent_relay::wire::payload::sigkill_frame_v(cur.v, id).len();
            cur.ctl.push_back(CtlEntry {
                who: Ctl::Kill(c, id),
                len,
                slot: Some(slot),
            });
        }
        let notice = frames::notice_frame(cur.v, range, m.incarnation);
        cur.ctl.push_back(CtlEntry {
            who: Ctl::Notice(c),
            len: notice.len(),
            slot: Some(slot),
        });
        m.notice = Some(notice);
    }

    /// A wall-clock reading: in the current generation a jump, or the first
    /// reading with no sync sent yet, asks for a clock sync.
    fn wall_clock(&mut self, wall: u64) {
        let jumped = self.clock.observe(self.now, wall);
        let first = self.clock.due(self.cfg.current.clock_period).is_none();
        if jumped || first {
            self.queue_clock();
        }
    }

    /// A turn-lane frame of `c` left its queue.
    fn turn_left(&mut self, c: ClientId) {
        let m = self.clients.get_mut(&c).expect("known");
        m.turns -= 1;
        if m.turns == 0 {
            self.turn_order.retain(|&w| w != c);
        }
    }

    /// Current generation, the guest there and its window open: the control
    /// queue's head, if it fits the control credit (it may leave now).
    fn ctl_head_ready(&self) -> Option<&CtlEntry> {
        let cur = self.current.as_ref()?;
        if self.guest_gone || self.inflight >= self.cfg.guest_window {
            return None;
        }
        let head = cur.ctl.front()?;
        cur.admits(Class::Control, head.len, head.slot)
            .then_some(head)
    }

    /// Current generation, the guest there, its window open and the control
    /// queue empty: the first slot head, in the order the slots' queues
    /// became non-empty, that fits the credit and (data) its slot's fair
    /// share: it may leave now.
    fn slot_head_ready(&self) -> Option<SlotHead> {
        let cur = self.current.as_ref()?;
        if self.guest_gone || self.inflight >= self.cfg.guest_window || !cur.ctl.is_empty() {
            return None;
        }
        let mut active = None;
        self.turn_order.iter().find_map(|c| {
            let m = &self.clients[c];
            let o = m.turn_head()?;
            let active = *active.get_or_insert_with(|| cur.active());
            let (class, len) = (o.class, o.frame.len());
            cur.admits_among(class, len, Some(m.slot), Some(active))
                .then_some(SlotHead {
                    slot: m.slot,
                    class,
                    len,
                    id: o.id,
                })
        })
    }

    /// Whether anything is still owed: frames toward the guest, kills, the
    /// notice, or terminal frames to connected clients.
    pub fn owes(&self) -> bool {
        self.owed().is_some()
    }

    /// What is still owed, in words (the first client that is owed something).
    pub fn owed(&self) -> Option<String> {
        self.clients.iter().find_map(|(c, m)| {
            let owes = (!m.violated && !m.out.is_empty())
                || !m.kills.is_empty()
                || m.notice_due
                || (m.state == State::Live && !m.awaiting.is_empty());
            owes.then(|| {
                format!(
                    "{c} ({:?}): {} frames toward the guest, kills {:?}, awaiting terminals of {:?}",
                    m.state,
                    m.out.len(),
                    m.kills,
                    m.awaiting
                )
            })
        })
    }
}
