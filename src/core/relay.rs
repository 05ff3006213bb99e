//! [`Relay`]: the whole relay as a deterministic state machine. Events go in
//! through [`Relay::handle`], side effects come out of [`Relay::poll_action`],
//! and the next moment time matters is [`Relay::poll_timeout`]. It reads no
//! clock, does no I/O and spawns nothing: same events, same actions.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::slot::{Conn, IdRange, Outbound, Session, SessionKind, Slot};
use super::types::{
    Action, ClientId, CloseReason, Config, Counters, Event, HandshakeForm, LogRecord, LogSource,
    Millis, RefuseReason, SlowLimit,
};
use crate::wire::payload::{exec_request_tty, peek_data, sigkill_frame};
use crate::wire::{EnvelopeError, FrameError, peek_envelope};
use crate::wire::{
    FLAG_SESSION_START, FLAG_TERMINAL, Frame, FrameDecoder, MsgType, PREFIX_LEN, ZERO_COPY_MIN,
    whole_frame_len,
};

/// The exec.log marker written when the guest becomes ready.
pub const SANDBOX_STARTED: &str = "--- sandbox started ---";

/// The relay state machine. See the module docs of [`crate::core`].
#[derive(Debug)]
pub struct Relay {
    cfg: Config,
    step: u32,
    now: Millis,
    guest: FrameDecoder,
    guest_gone: bool,
    /// The guest's `core.ready` frame, whole, once it arrived.
    ready: Option<Bytes>,
    slots: Vec<Slot>,
    by_client: HashMap<ClientId, u32>,
    /// Control frames toward the guest; served before any inbox.
    control: VecDeque<Outbound>,
    /// Next slot whose inbox the round robin serves.
    rr: usize,
    /// Bytes handed to the guest port and not yet reported written.
    guest_inflight: usize,
    last_session: u64,
    /// Tap output of the current event, merged while it continues one
    /// session's stream; flushed into `actions` when another begins and at
    /// the end of every event.
    pending_log: Option<LogRecord>,
    actions: VecDeque<Action>,
    counters: Counters,
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
            cfg,
            now: 0,
            guest: FrameDecoder::new(),
            guest_gone: false,
            ready: None,
            slots,
            by_client: HashMap::new(),
            control: VecDeque::new(),
            rr: 0,
            guest_inflight: 0,
            last_session: 0,
            pending_log: None,
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
                self.guest_inflight = self.guest_inflight.saturating_sub(n);
                self.pump_guest();
            }
            Event::GuestClosed => self.on_guest_closed(),
            Event::ClientConnected(client) => self.on_connect(client),
            Event::ClientBytes(client, bytes) => self.on_client_bytes(client, bytes),
            Event::ClientWritten(client, n) => self.on_client_written(client, n),
            Event::ClientDisconnected(client) => {
                if let Some(&slot) = self.by_client.get(&client) {
                    self.depart(slot as usize, None);
                }
            }
            Event::Tick => self.on_tick(),
        }
        if let Some(record) = self.pending_log.take().filter(|r| !r.text.is_empty()) {
            self.actions.push_back(Action::Log(record));
        }
    }

    /// The next side effect to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to send [`Event::Tick`] next, if anything is waiting on time.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.slots
            .iter()
            .filter_map(|s| match &s.conn {
                Some(c) => c.grace_deadline,
                None => s.quarantine_until,
            })
            .min()
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

    /// Bytes the core itself holds: the guest decoder's partial frame, the
    /// client decoders' partial frames, and frames queued toward the guest.
    pub fn held_bytes(&self) -> usize {
        let slots: usize = self
            .slots
            .iter()
            .map(|s| s.to_guest + s.conn.as_ref().map_or(0, |c| c.decoder.buffered()))
            .sum();
        self.guest.buffered() + slots
    }

    /// Bytes handed to the guest port and not yet written.
    pub fn guest_inflight(&self) -> usize {
        self.guest_inflight
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
                self.on_guest_frame(t, payload, frame);
            }
        }
        self.guest.extend(rest);
        loop {
            let total = match self.guest.peek_frame() {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => {
                    self.guest_corrupt(e.to_string());
                    continue;
                }
            };
            let (t, payload) = match peek_type(&self.guest.pending()[PREFIX_LEN..total]) {
                Ok(found) => found,
                Err(e) => {
                    self.guest_corrupt(format!("frame envelope: {e}"));
                    continue;
                }
            };
            let frame = self.guest.take_frame(total);
            self.on_guest_frame(t, payload, frame);
        }
    }

    fn guest_corrupt(&mut self, error: String) {
        let skipped = self.guest.resync();
        self.counters.guest_corrupt += 1;
        self.counters.guest_corrupt_bytes += skipped as u64;
        self.actions
            .push_back(Action::GuestCorrupt { error, skipped });
    }

    fn on_guest_frame(&mut self, t: MsgType, payload: Option<Range<usize>>, frame: Frame) {
        self.counters.guest_frames_in += 1;
        if self.ready.is_none() {
            if t == MsgType::Ready {
                self.on_ready(frame.into_bytes());
            } else {
                self.counters.guest_frames_before_ready += 1;
            }
            return;
        }
        let id = frame.id();
        let slot_idx = (id / self.step) as usize;
        let Some(slot) = self.slots.get_mut(slot_idx) else {
            self.counters.dropped_unowned += 1;
            return;
        };
        let Some(session) = slot.sessions.get_mut(&id) else {
            self.counters.dropped_unowned += 1;
            return;
        };
        let terminal = frame.flags() & FLAG_TERMINAL != 0;
        if self.cfg.exec_log
            && let SessionKind::Exec { tty } = session.kind
        {
            tap_output(
                &mut self.actions,
                &mut self.pending_log,
                session,
                tty,
                t,
                &frame,
                payload,
            );
        }
        if terminal {
            slot.sessions.remove(&id);
            self.counters.live_sessions -= 1;
            if slot.sessions.is_empty() {
                slot.quarantine_until = None;
            }
        }
        match &slot.conn {
            Some(conn) if conn.handshaken => {
                self.send_to_client(slot_idx, frame.into_bytes(), false);
            }
            _ => self.counters.dropped_unowned += 1,
        }
    }

    fn on_ready(&mut self, frame: Bytes) {
        self.ready = Some(frame);
        self.actions.push_back(Action::Ready);
        if self.cfg.exec_log {
            self.actions.push_back(Action::Log(LogRecord {
                session: None,
                source: LogSource::System,
                text: SANDBOX_STARTED.to_owned(),
            }));
        }
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

    /// Hands bytes to the driver for a client, enforcing its budgets: a frame
    /// that would break the hard cap or the global cap closes a client instead.
    fn send_to_client(&mut self, slot: usize, bytes: Bytes, handshake: bool) {
        let len = bytes.len();
        let Some(conn) = &self.slots[slot].conn else {
            return;
        };
        if conn.queued + len > self.cfg.client_hard_cap {
            let queued = conn.queued;
            self.close_slow(slot, queued, SlowLimit::HardCap);
            return;
        }
        while self.counters.queued_to_clients as usize + len > self.cfg.global_cap {
            // Close whoever holds the most; ties go to the lowest slot.
            let Some((victim, queued)) = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.conn.as_ref().map(|c| (i, c.queued)))
                .max_by_key(|&(i, q)| (q, std::cmp::Reverse(i)))
            else {
                return;
            };
            self.close_slow(victim, queued, SlowLimit::GlobalCap);
            if victim == slot {
                return;
            }
        }
        let Some(conn) = &mut self.slots[slot].conn else {
            return;
        };
        conn.queued += len;
        if conn.queued > self.cfg.client_soft_budget && conn.grace_deadline.is_none() {
            conn.grace_deadline = Some(self.now + self.cfg.grace);
        }
        let client = conn.client;
        self.counters.queued_to_clients += len as u64;
        self.counters.bytes_to_clients += len as u64;
        if handshake {
            self.actions.push_back(Action::Handshake { client, bytes });
        } else {
            self.counters.frames_to_clients += 1;
            self.actions.push_back(Action::ToClient {
                client,
                frame: bytes,
            });
        }
    }

    fn close_slow(&mut self, slot: usize, queued: usize, limit: SlowLimit) {
        self.counters.slow_consumer_closes += 1;
        self.depart(slot, Some(CloseReason::SlowConsumer { queued, limit }));
    }

    fn on_client_written(&mut self, client: ClientId, n: usize) {
        let Some(&slot) = self.by_client.get(&client) else {
            return;
        };
        let Some(conn) = &mut self.slots[slot as usize].conn else {
            return;
        };
        let n = n.min(conn.queued);
        conn.queued -= n;
        self.counters.queued_to_clients -= n as u64;
        // Progress restarts the grace period; under budget it ends.
        if conn.queued <= self.cfg.client_soft_budget {
            conn.grace_deadline = None;
        } else if n > 0 {
            conn.grace_deadline = Some(self.now + self.cfg.grace);
        }
    }

    // ---- clients -> guest -------------------------------------------------

    fn on_connect(&mut self, client: ClientId) {
        if self.by_client.contains_key(&client) {
            return;
        }
        if self.guest_gone {
            return self.refuse(client, RefuseReason::GuestGone);
        }
        let Some(slot) = self.slots.iter().position(Slot::is_free) else {
            let quarantined = self.slots.iter().filter(|s| s.is_quarantined()).count() as u32;
            let reason = RefuseReason::Full {
                max_clients: self.cfg.max_clients,
                quarantined,
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
            let why = format!("sent {} bytes before its handshake", bytes.len());
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
                Err(e) => return self.violation(slot, e.to_string()),
            }
        }
        let s = &mut self.slots[slot];
        if let Some(conn) = &mut s.conn
            && s.to_guest > self.cfg.client_to_guest_cap
            && !conn.paused
        {
            conn.paused = true;
            self.actions.push_back(Action::PauseClient(conn.client));
        }
        self.pump_guest();
    }

    /// Validates one client frame and queues it toward the guest.
    fn accept_client_frame(&mut self, slot: usize, frame: Frame) -> Result<(), String> {
        let id = frame.id();
        let range = IdRange::of_slot(slot as u32, self.step);
        if !range.contains(id) {
            return Err(format!(
                "frame id {id} is outside its range {}..{}",
                range.start, range.end
            ));
        }
        let env = peek_envelope(frame.body()).map_err(|e| format!("frame {id}: {e}"))?;
        let t = env.t;
        if !t.client_may_send() {
            return Err(format!("frame {id}: clients may not send {t}"));
        }
        if frame.flags() != t.flags() {
            return Err(format!(
                "{t} frame {id} carries flags {:#04x}, the type requires {:#04x}",
                frame.flags(),
                t.flags()
            ));
        }
        if t.flags() & FLAG_SESSION_START != 0 {
            let kind = if t == MsgType::ExecRequest {
                let tty = exec_request_tty(&env.payload)
                    .map_err(|e| format!("{t} frame {id}: payload: {e}"))?;
                SessionKind::Exec { tty }
            } else {
                SessionKind::Fs
            };
            let sessions = &mut self.slots[slot].sessions;
            if sessions.contains_key(&id) {
                return Err(format!("{t} frame {id}: session {id} is already open"));
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
                    carry: Default::default(),
                },
            );
            self.counters.live_sessions += 1;
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

    /// Queues a frame toward the guest. A control frame goes to the control
    /// queue unless a data frame of its own session is still queued, which it
    /// must not overtake.
    fn enqueue(&mut self, out: Outbound, control: bool) {
        let slot = &mut self.slots[out.slot as usize];
        slot.to_guest += out.frame.len();
        self.counters.queued_to_guest += out.frame.len() as u64;
        if control && !slot.inbox_ids.contains_key(&out.id) {
            self.control.push_back(out);
        } else {
            *slot.inbox_ids.entry(out.id).or_default() += 1;
            slot.inbox.push_back(out);
        }
    }

    /// Hands queued frames to the guest while its window has room: control
    /// frames first, then one data frame per slot in turn.
    fn pump_guest(&mut self) {
        let n = self.slots.len();
        while self.guest_inflight < self.cfg.guest_window && !self.guest_gone {
            let out = match self.control.pop_front() {
                Some(out) => out,
                None => {
                    let Some(next) = (0..n)
                        .map(|k| (self.rr + k) % n)
                        .find(|&i| !self.slots[i].inbox.is_empty())
                    else {
                        break;
                    };
                    self.rr = (next + 1) % n;
                    let slot = &mut self.slots[next];
                    let Some(out) = slot.inbox.pop_front() else {
                        break;
                    };
                    if let Some(count) = slot.inbox_ids.get_mut(&out.id) {
                        *count -= 1;
                        if *count == 0 {
                            slot.inbox_ids.remove(&out.id);
                        }
                    }
                    out
                }
            };
            let len = out.frame.len();
            let slot = &mut self.slots[out.slot as usize];
            slot.to_guest -= len;
            self.counters.queued_to_guest -= len as u64;
            if let Some(conn) = &mut slot.conn
                && conn.paused
                && slot.to_guest <= self.cfg.client_to_guest_cap / 2
            {
                conn.paused = false;
                self.actions.push_back(Action::ResumeClient(conn.client));
            }
            self.guest_inflight += len;
            self.counters.frames_to_guest += 1;
            self.counters.bytes_to_guest += len as u64;
            self.actions.push_back(Action::ToGuest { frame: out.frame });
            if out.drain {
                self.actions.push_back(Action::Drain);
            }
        }
    }

    // ---- departures and time ----------------------------------------------

    fn violation(&mut self, slot: usize, why: String) {
        self.counters.protocol_violations += 1;
        self.depart(slot, Some(CloseReason::Violation(why)));
    }

    /// A client leaves (it disconnected, or `reason` says why we closed it):
    /// one SIGKILL per live exec session, queued behind everything it sent,
    /// and the slot quarantined while its sessions live.
    fn depart(&mut self, slot: usize, reason: Option<CloseReason>) {
        let Some(conn) = self.slots[slot].conn.take() else {
            return;
        };
        self.by_client.remove(&conn.client);
        self.counters.live_clients -= 1;
        self.counters.queued_to_clients -= conn.queued as u64;
        if let Some(reason) = reason {
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
            let control = self.slots[slot].inbox.is_empty();
            self.enqueue(out, control);
        }
        if !self.slots[slot].sessions.is_empty() {
            self.slots[slot].quarantine_until = Some(self.now + self.cfg.quarantine);
        }
        self.pump_guest();
    }

    fn on_tick(&mut self) {
        let now = self.now;
        for slot in 0..self.slots.len() {
            let s = &mut self.slots[slot];
            match &s.conn {
                Some(conn) if conn.grace_deadline.is_some_and(|d| d <= now) => {
                    let queued = conn.queued;
                    self.close_slow(slot, queued, SlowLimit::Grace);
                }
                None if s.quarantine_until.is_some_and(|d| d <= now) => {
                    // The guest never ended these sessions: give the slot back.
                    self.counters.live_sessions -= s.sessions.len() as u64;
                    s.sessions.clear();
                    s.quarantine_until = None;
                }
                _ => {}
            }
        }
    }

    fn on_guest_closed(&mut self) {
        if self.guest_gone {
            return;
        }
        if let Err(e) = self.guest.finish() {
            let error = FrameError::to_string(&e);
            let skipped = self.guest.buffered();
            self.counters.guest_corrupt += 1;
            self.counters.guest_corrupt_bytes += skipped as u64;
            self.actions
                .push_back(Action::GuestCorrupt { error, skipped });
        }
        self.guest_gone = true;
        for slot in 0..self.slots.len() {
            self.depart(slot, Some(CloseReason::GuestGone));
        }
    }
}

/// Turns exec output into exec.log records (whole characters only) and
/// flushes the session's unfinished characters when it ends. Output that
/// continues the record being built (same session, same stream) is appended
/// to it, so a burst of small frames read in one batch costs one record.
fn tap_output(
    actions: &mut VecDeque<Action>,
    pending: &mut Option<LogRecord>,
    session: &mut Session,
    tty: bool,
    t: MsgType,
    frame: &Frame,
    payload: Option<Range<usize>>,
) {
    let terminal = frame.flags() & FLAG_TERMINAL != 0;
    let stream = match t {
        MsgType::ExecStdout => Some(0),
        MsgType::ExecStderr => Some(1),
        _ => None,
    };
    let number = session.number;
    let source = |stream: usize| match (tty, stream) {
        (true, _) => LogSource::Output,
        (false, 0) => LogSource::Stdout,
        (false, _) => LogSource::Stderr,
    };
    if let Some(stream) = stream
        && let Ok(data) = match payload {
            // Where the first peek found the payload, borrowed in the frame.
            Some(range) => peek_data(&frame.body()[range]),
            None => peek_envelope(frame.body())
                .and_then(|env| peek_data(&env.payload).map(|d| Cow::Owned(d.into_owned()))),
        }
        && !data.is_empty()
    {
        // A pty session has one stream; keep one carry for it.
        let carry = if tty { 0 } else { stream };
        let text = record_text(actions, pending, number, source(stream));
        session.carry[carry].push_into(&data, text);
    }
    if terminal {
        for stream in 0..2 {
            if let Some(tail) = session.carry[stream].finish() {
                record_text(actions, pending, number, source(stream)).push_str(&tail);
            }
        }
    }
}

/// The text of the record that output of `session`'s `source` goes into: the
/// pending record if it continues it, else a new one (the finished one, if it
/// holds anything, is queued).
fn record_text<'a>(
    actions: &mut VecDeque<Action>,
    pending: &'a mut Option<LogRecord>,
    session: u64,
    source: LogSource,
) -> &'a mut String {
    let continues = matches!(pending, Some(r) if r.session == Some(session) && r.source == source);
    if !continues && let Some(done) = pending.take().filter(|r| !r.text.is_empty()) {
        actions.push_back(Action::Log(done));
    }
    let record = pending.get_or_insert_with(|| LogRecord {
        session: Some(session),
        source,
        text: String::new(),
    });
    &mut record.text
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
