//! [`Relay`]: the whole relay as a deterministic state machine. Events go in
//! through [`Relay::handle`], side effects come out of [`Relay::poll_action`],
//! and the next moment time matters is [`Relay::poll_timeout`]. It reads no
//! clock, does no I/O and spawns nothing: same events, same actions.
//!
//! This file owns routing and the client lifecycle: the handshake, guest
//! frames to the client whose range holds their id (rule `route_by_id`),
//! client frames checked and queued toward the guest (rules `own_range_only`
//! and `corrupt_client_isolated`), and a departure's kills (rule
//! `kill_on_departure`). The policies it calls live in files of their own:
//! `budget.rs`, `scheduler.rs`, `quarantine.rs`, `tap.rs`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::flush::Flush;
use super::scheduler::{Outbound, Scheduler};
use super::slot::{Conn, IdRange, Session, SessionKind, Slot};
use super::tap::{GuestFrame, Tap};
use super::timer::{Timeout, Timer};
use super::types::{
    Action, ClientId, CloseReason, Config, Counters, Event, HandshakeForm, Millis, RefuseReason,
};
use super::violation::{GuestCorruption, Violation};
use crate::wire::payload::{exec_request_tty, sigkill_frame};
use crate::wire::{EnvelopeError, peek_envelope};
use crate::wire::{
    FLAG_TERMINAL, Frame, FrameDecoder, MsgType, Opens, PREFIX_LEN, ZERO_COPY_MIN, whole_frame_len,
};

/// The relay state machine. See the module docs of [`crate::core`].
#[derive(Debug)]
pub struct Relay {
    pub(super) cfg: Config,
    step: u32,
    pub(super) now: Millis,
    /// Bytes from the guest not yet taken as frames.
    guest: FrameDecoder,
    guest_gone: bool,
    /// The guest's `core.ready` frame, whole, once it arrived.
    ready: Option<Bytes>,
    pub(super) slots: Vec<Slot>,
    pub(super) by_client: HashMap<ClientId, u32>,
    /// Closed clients whose last output is still being written.
    pub(super) flushing: BTreeMap<ClientId, Flush>,
    /// Frames toward the guest.
    pub(super) sched: Scheduler,
    last_session: u64,
    tap: Tap,
    pub(super) actions: VecDeque<Action>,
    pub(super) counters: Counters,
}

impl Relay {
    /// A relay waiting for the guest's `core.ready`.
    ///
    /// # Panics
    /// If `max_clients` is 0.
    pub fn new(cfg: Config) -> Relay {
        assert!(cfg.max_clients > 0, "max_clients must be at least 1");
        let slots = (0..cfg.max_clients).map(|_| Slot::default()).collect();
        Relay {
            step: cfg.step(),
            sched: Scheduler::new(cfg.max_clients as usize, cfg.guest_window),
            tap: Tap::new(cfg.exec_log),
            cfg,
            now: 0,
            guest: FrameDecoder::new(),
            guest_gone: false,
            ready: None,
            slots,
            by_client: HashMap::new(),
            flushing: BTreeMap::new(),
            last_session: 0,
            actions: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Feeds one event at time `now` (time never goes backwards; an earlier
    /// value is treated as the latest one seen).
    pub fn handle(&mut self, now: Millis, event: Event<'_>) {
        self.now = self.now.max(now);
        match event {
            Event::GuestBytes(bytes) => self.on_guest_bytes(bytes),
            Event::GuestWritten(n) => {
                self.sched.written(n);
                self.pump_guest();
            }
            Event::GuestClosed => self.on_guest_closed(),
            Event::ClientConnected(client) => self.on_connect(client),
            Event::ClientBytes(client, bytes) => self.on_client_bytes(client, bytes),
            Event::ClientWritten(client, n) => {
                if !self.flush_written(client, n) {
                    self.on_client_written(client, n);
                }
            }
            Event::ClientDisconnected(client) => {
                self.flush_done(client);
                if let Some(&slot) = self.by_client.get(&client) {
                    self.depart(slot as usize, None);
                }
            }
            Event::Tick => self.on_tick(),
        }
        self.tap.flush(&mut self.actions);
        #[cfg(feature = "testing")]
        self.check();
    }

    /// The next side effect to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next deadline, if anything is waiting on time: send
    /// [`Event::Tick`] then. Of deadlines at the same moment, a slot's comes
    /// before a flush's, the lowest slot's first.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        let slots = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.conn {
                Some(c) => c.grace_deadline.map(|at| Timeout {
                    at,
                    timer: Timer::SlowConsumerGrace(c.client),
                }),
                None => s.quarantine_until.map(|at| Timeout {
                    at,
                    timer: Timer::Quarantine { slot: i as u32 },
                }),
            })
            .min_by_key(|t| t.at);
        match (slots, self.flush_timeout()) {
            (Some(a), Some(b)) if b.at < a.at => Some(b),
            (a, b) => a.or(b),
        }
    }

    /// Counters as of now.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the guest's `core.ready` arrived.
    pub fn is_ready(&self) -> bool {
        self.ready.is_some()
    }

    /// The id range of a connected client.
    pub fn client_range(&self, client: ClientId) -> Option<IdRange> {
        self.by_client
            .get(&client)
            .map(|&slot| IdRange::of_slot(slot, self.step))
    }

    /// Bytes queued for a client and not yet reported written.
    pub fn client_queued(&self, client: ClientId) -> Option<usize> {
        let slot = *self.by_client.get(&client)?;
        self.slots[slot as usize].conn.as_ref().map(|c| c.queued)
    }

    // ---- guest -> clients -------------------------------------------------

    fn on_guest_bytes(&mut self, bytes: &[u8]) {
        self.counters.guest_bytes_in += bytes.len() as u64;
        let mut rest = bytes;
        if self.guest.is_idle() {
            // Frames wholly inside this read are copied once, straight from it
            // into buffers of their own; only a partial frame at the end (or
            // anything the checks below must look at) goes into the decoder.
            while let Some(total) = whole_frame_len(rest)
                && total < ZERO_COPY_MIN
            {
                let Ok((t, payload)) = peek_type(&rest[PREFIX_LEN..total]) else {
                    break; // the decoder path reports it and resynchronises
                };
                let frame = Frame::copy_of(&rest[..total]);
                rest = &rest[total..];
                self.on_guest_frame(GuestFrame { t, payload, frame });
            }
        }
        self.guest.extend(rest);
        loop {
            let total = match self.guest.peek_frame() {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => {
                    self.guest_corrupt(GuestCorruption::Frame(e));
                    continue;
                }
            };
            let (t, payload) = match peek_type(&self.guest.pending()[PREFIX_LEN..total]) {
                Ok(found) => found,
                Err(e) => {
                    self.guest_corrupt(GuestCorruption::Envelope(e));
                    continue;
                }
            };
            let frame = self.guest.take_frame(total);
            self.on_guest_frame(GuestFrame { t, payload, frame });
        }
    }

    /// Rule `guest_resync`: corrupt guest input is counted, reported and
    /// skipped up to the next plausible frame start; it never reaches a client.
    fn guest_corrupt(&mut self, error: GuestCorruption) {
        let skipped = self.guest.resync();
        self.counters.guest_corrupt += 1;
        self.counters.guest_corrupt_bytes += skipped as u64;
        self.actions
            .push_back(Action::GuestCorrupt { error, skipped });
    }

    fn on_guest_frame(&mut self, f: GuestFrame) {
        self.counters.guest_frames_in += 1;
        if self.ready.is_none() {
            if f.t == MsgType::Ready {
                self.on_ready(f.frame.into_bytes());
            } else {
                self.counters.guest_frames_before_ready += 1;
            }
            return;
        }
        let id = f.frame.id();
        let slot_idx = (id / self.step) as usize;
        let Some(slot) = self.slots.get_mut(slot_idx) else {
            self.counters.dropped_unowned += 1;
            return;
        };
        let Some(session) = slot.sessions.get_mut(&id) else {
            self.counters.dropped_unowned += 1;
            return;
        };
        self.tap.guest_frame(&mut self.actions, session, &f);
        if f.frame.flags() & FLAG_TERMINAL != 0 {
            slot.sessions.remove(&id);
            self.counters.live_sessions -= 1;
            self.session_ended(slot_idx);
        }
        match &self.slots[slot_idx].conn {
            Some(conn) if conn.handshaken => {
                self.send_to_client(slot_idx, f.frame.into_bytes(), false);
            }
            _ => self.counters.dropped_unowned += 1,
        }
    }

    fn on_ready(&mut self, frame: Bytes) {
        self.ready = Some(frame);
        self.actions.push_back(Action::Ready);
        self.tap.sandbox_started(&mut self.actions);
        for slot in 0..self.slots.len() {
            if self.slots[slot].conn.is_some() {
                self.handshake(slot);
            }
        }
    }

    fn handshake(&mut self, slot: usize) {
        let Some(ready) = &self.ready else { return };
        let range = IdRange::of_slot(slot as u32, self.step);
        let mut bytes = BytesMut::with_capacity(8 + ready.len());
        bytes.put_u32(range.start);
        if self.cfg.handshake == HandshakeForm::Bounds {
            bytes.put_u32(range.end);
        }
        bytes.extend_from_slice(ready);
        if let Some(conn) = &mut self.slots[slot].conn {
            conn.handshaken = true;
        }
        self.send_to_client(slot, bytes.freeze(), true);
    }

    // ---- clients -> guest -------------------------------------------------

    fn on_connect(&mut self, client: ClientId) {
        if self.by_client.contains_key(&client) {
            return;
        }
        if self.guest_gone {
            return self.refuse(client, RefuseReason::GuestGone);
        }
        let Some(slot) = self.free_slot() else {
            let reason = RefuseReason::Full {
                max_clients: self.cfg.max_clients,
                quarantined: self.quarantined(),
            };
            return self.refuse(client, reason);
        };
        self.slots[slot].conn = Some(Conn {
            client,
            decoder: FrameDecoder::new(),
            handshaken: false,
            queued: 0,
            grace_deadline: None,
            paused: false,
        });
        self.slots[slot].quarantine_until = None;
        self.by_client.insert(client, slot as u32);
        self.counters.live_clients += 1;
        // Before ready the client waits; `on_ready` handshakes it.
        if self.ready.is_some() {
            self.handshake(slot);
        }
    }

    fn refuse(&mut self, client: ClientId, reason: RefuseReason) {
        self.counters.refused_clients += 1;
        self.actions.push_back(Action::Refuse { client, reason });
    }

    fn on_client_bytes(&mut self, client: ClientId, bytes: &[u8]) {
        let Some(&slot) = self.by_client.get(&client) else {
            return;
        };
        let slot = slot as usize;
        self.counters.client_bytes_in += bytes.len() as u64;
        let Some(conn) = &mut self.slots[slot].conn else {
            return;
        };
        if !conn.handshaken {
            let why = Violation::BeforeHandshake { bytes: bytes.len() };
            return self.violation(slot, why);
        }
        conn.decoder.extend(bytes);
        loop {
            let Some(conn) = &mut self.slots[slot].conn else {
                return;
            };
            match conn.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(why) = self.accept_client_frame(slot, frame) {
                        return self.violation(slot, why);
                    }
                }
                Ok(None) => break,
                Err(e) => return self.violation(slot, Violation::BadLength(e)),
            }
        }
        let queued = self.sched.queued(slot);
        if let Some(conn) = &mut self.slots[slot].conn
            && queued > self.cfg.client_to_guest_cap
            && !conn.paused
        {
            conn.paused = true;
            self.actions.push_back(Action::PauseClient(conn.client));
        }
        self.pump_guest();
    }

    /// Validates one client frame and queues it toward the guest.
    fn accept_client_frame(&mut self, slot: usize, frame: Frame) -> Result<(), Violation> {
        let id = frame.id();
        let range = IdRange::of_slot(slot as u32, self.step);
        if !range.contains(id) {
            return Err(Violation::OutOfRange { id, range });
        }
        let env = peek_envelope(frame.body()).map_err(|error| Violation::Envelope { id, error })?;
        let t = env.t;
        if !t.client_may_send() {
            return Err(Violation::NotClientType { id, t });
        }
        if frame.flags() != t.flags() {
            return Err(Violation::WrongFlags {
                id,
                t,
                flags: frame.flags(),
                required: t.flags(),
            });
        }
        let kind = match t.opens() {
            Opens::Nothing => None,
            Opens::Exec => {
                let tty = exec_request_tty(&env.payload)
                    .map_err(|error| Violation::BadExecRequest { id, error })?;
                Some(SessionKind::Exec { tty })
            }
            Opens::Fs => Some(SessionKind::Fs),
        };
        if let Some(kind) = kind {
            self.open_session(slot, id, t, kind)?;
        }
        self.counters.client_frames_in += 1;
        let out = Outbound {
            slot: slot as u32,
            id,
            frame: frame.into_bytes(),
            drain: t == MsgType::Shutdown,
        };
        self.enqueue(out, t.is_control());
        Ok(())
    }

    fn open_session(
        &mut self,
        slot: usize,
        id: u32,
        t: MsgType,
        kind: SessionKind,
    ) -> Result<(), Violation> {
        let sessions = &mut self.slots[slot].sessions;
        if sessions.contains_key(&id) {
            return Err(Violation::SessionAlreadyOpen { id, t });
        }
        let number = match kind {
            SessionKind::Exec { .. } => {
                self.last_session += 1;
                self.last_session
            }
            SessionKind::Fs => 0,
        };
        sessions.insert(
            id,
            Session {
                kind,
                number,
                killed: false,
                carries: Default::default(),
            },
        );
        self.counters.live_sessions += 1;
        Ok(())
    }

    fn enqueue(&mut self, out: Outbound, control: bool) {
        self.counters.queued_to_guest += out.frame.len() as u64;
        self.sched.enqueue(out, control);
    }

    /// Hands queued frames to the guest while its window has room; a paused
    /// client whose queue fell to half the bound is read again.
    fn pump_guest(&mut self) {
        if self.guest_gone {
            return;
        }
        while let Some(out) = self.sched.next() {
            let len = out.frame.len();
            let slot = out.slot as usize;
            self.counters.queued_to_guest -= len as u64;
            let queued = self.sched.queued(slot);
            if let Some(conn) = &mut self.slots[slot].conn
                && conn.paused
                && queued <= self.cfg.client_to_guest_cap / 2
            {
                conn.paused = false;
                self.actions.push_back(Action::ResumeClient(conn.client));
            }
            self.counters.frames_to_guest += 1;
            self.counters.bytes_to_guest += len as u64;
            self.actions.push_back(Action::ToGuest { frame: out.frame });
            if out.drain {
                self.actions.push_back(Action::Drain);
            }
        }
    }

    // ---- departures and time ----------------------------------------------

    fn violation(&mut self, slot: usize, why: Violation) {
        self.counters.protocol_violations += 1;
        self.depart(slot, Some(CloseReason::Violation(why)));
    }

    /// A client leaves (it disconnected, or `reason` says why we closed it):
    /// rule `kill_on_departure`, one SIGKILL per live exec session, queued
    /// behind everything it sent, and the slot quarantined while its
    /// sessions live.
    pub(super) fn depart(&mut self, slot: usize, reason: Option<CloseReason>) {
        let Some(conn) = self.slots[slot].conn.take() else {
            return;
        };
        self.by_client.remove(&conn.client);
        self.counters.live_clients -= 1;
        self.counters.queued_to_clients -= conn.queued as u64;
        if let Some(reason) = reason {
            self.start_flush(conn.client, conn.queued, &reason);
            self.actions.push_back(Action::CloseClient {
                client: conn.client,
                reason,
            });
        }
        let kills: Vec<u32> = self.slots[slot]
            .sessions
            .iter_mut()
            .filter(|(_, s)| matches!(s.kind, SessionKind::Exec { .. }) && !s.killed)
            .map(|(&id, s)| {
                s.killed = true;
                id
            })
            .collect();
        for id in kills {
            self.counters.kills_sent += 1;
            let out = Outbound {
                slot: slot as u32,
                id,
                frame: sigkill_frame(id).into_bytes(),
                drain: false,
            };
            // Behind every frame this client sent earlier.
            let control = !self.sched.has_data_queued(slot);
            self.enqueue(out, control);
        }
        self.start_quarantine(slot);
        self.pump_guest();
    }

    fn on_tick(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].conn.is_some() {
                self.expire_grace(slot);
            } else {
                self.expire_quarantine(slot);
            }
        }
        self.expire_flushes();
    }

    fn on_guest_closed(&mut self) {
        if self.guest_gone {
            return;
        }
        if let Err(e) = self.guest.finish() {
            let skipped = self.guest.buffered();
            self.counters.guest_corrupt += 1;
            self.counters.guest_corrupt_bytes += skipped as u64;
            self.actions.push_back(Action::GuestCorrupt {
                error: GuestCorruption::Frame(e),
                skipped,
            });
        }
        self.guest_gone = true;
        for slot in 0..self.slots.len() {
            self.depart(slot, Some(CloseReason::GuestGone));
        }
    }

    /// Bytes the core itself holds: the guest decoder's partial frame, the
    /// client decoders' partial frames, and frames queued toward the guest.
    #[cfg(any(test, feature = "testing"))]
    pub fn held_bytes(&self) -> usize {
        let slots: usize = (0..self.slots.len())
            .map(|i| {
                let conn = self.slots[i].conn.as_ref();
                self.sched.queued(i) + conn.map_or(0, |c| c.decoder.buffered())
            })
            .sum();
        self.guest.buffered() + slots
    }

    /// Bytes handed to the guest port and not yet written.
    #[cfg(any(test, feature = "testing"))]
    pub fn guest_inflight(&self) -> usize {
        self.sched.inflight()
    }
}

/// A guest frame's type, and where its payload lies inside `body` when the
/// peek could borrow it (so the tap need not peek again).
fn peek_type(body: &[u8]) -> Result<(MsgType, Option<Range<usize>>), EnvelopeError> {
    let env = peek_envelope(body)?;
    let payload = match &env.payload {
        Cow::Borrowed(p) => payload_range(body, p),
        Cow::Owned(_) => None,
    };
    Ok((env.t, payload))
}

/// Where `payload`, a slice borrowed from `body`, lies inside it.
fn payload_range(body: &[u8], payload: &[u8]) -> Option<Range<usize>> {
    let start = (payload.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(payload.len())?;
    (end <= body.len()).then_some(start..end)
}
