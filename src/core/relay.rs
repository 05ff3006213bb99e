//! [`Relay`]: the whole relay as a deterministic state machine. Events go in
//! through [`Relay::handle`], side effects come out of [`Relay::poll_action`],
//! and the next moment time matters is [`Relay::poll_timeout`]. It reads no
//! clock, does no I/O and spawns nothing: same events, same actions.
//!
//! This file owns the client lifecycle: connection, the wait for ready, the
//! handshake (rule `handshake_after_ready`), refusals. What happens to guest
//! frames is in `guest.rs`, to client frames in `client.rs`, on departure in
//! `departure.rs`; the policies they call live in files of their own.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};

use super::clock::Clock;
use super::layout::IdRange;
use super::layout::{Generation, Layout};
use super::lease::Leases;
use super::scheduler::{Outbound, Scheduler, Stop};
use super::slot::{Conn, Slot};
use super::tap::Tap;
use super::timer::{Deadlines, Key, SlotDeadline, Timeout, Timer};
use super::types::{
    Action, ClientId, Config, Counters, Event, HandshakeForm, Millis, Protocol, RefuseReason,
    StartupFailure,
};
use crate::wire::payload::ExecLimits;
use crate::wire::{CreditClass, FrameDecoder};

/// The relay state machine. See the module docs of [`crate::core`].
#[derive(Debug)]
pub struct Relay {
    pub(super) cfg: Config,
    pub(super) now: Millis,
    /// Bytes from the guest not yet taken as frames.
    pub(super) guest: FrameDecoder,
    pub(super) guest_gone: bool,
    /// The guest's `core.ready` frame, whole, once it arrived.
    pub(super) ready: Option<Bytes>,
    /// The generation, once known (at once when configured, else at ready).
    pub(super) generation: Option<Generation>,
    /// The slots' ranges, once the generation is known.
    pub(super) layout: Option<Layout>,
    /// The sandbox could not start; nothing more is accepted.
    pub(super) failed: bool,
    pub(super) slots: Vec<Slot>,
    /// Clients that connected before the generation was known, in arrival
    /// order; they get slots at ready.
    pub(super) waiting: Vec<ClientId>,
    pub(super) by_client: HashMap<ClientId, u32>,
    /// Closed clients whose last output is still being written.
    pub(super) flushing: BTreeMap<ClientId, usize>,
    /// Frames toward the guest.
    pub(super) sched: Scheduler,
    pub(super) last_session: u64,
    /// Correlations opened so far (their creation order).
    pub(super) last_corr: u64,
    pub(super) tap: Tap,
    /// The guest's execution policy, when its ready has one.
    pub(super) exec_limits: Option<ExecLimits>,
    /// Exec sessions open now, sandbox-wide (for `exec_limits`).
    pub(super) active_execs: u32,
    pub(super) clock: Clock,
    /// Disconnect notices handed to the guest, by hand-off number, whose
    /// slot still holds correlations the notice retires.
    pub(super) fences: BTreeMap<u64, u32>,
    /// The highest hand-off number the guest has answered a frame of.
    pub(super) guest_read_to: u64,
    /// Since when frames wait for credit, per class (control, data).
    pub(super) blocked_since: [Option<Millis>; 2],
    /// Range leases: whether the guest reads them, and the incarnations.
    pub(super) leases: Leases,
    /// Clients over their soft budget now (their grace periods run).
    pub(super) over_clients: u32,
    /// Every deadline, by what waits on it.
    pub(super) deadlines: Deadlines,
    /// Since when the guest is not read (backpressure), if it is not.
    pub(super) guest_paused_since: Option<Millis>,
    pub(super) actions: VecDeque<Action>,
    pub(super) counters: Counters,
    /// Run `check` after every event (see [`Relay::checked`]).
    #[cfg(feature = "testing")]
    checking: bool,
}

impl Relay {
    /// A relay waiting for the guest's `core.ready`.
    ///
    /// # Panics
    /// If `max_clients` (legacy) or `current_clients` is 0.
    pub fn new(cfg: Config) -> Relay {
        assert!(cfg.max_clients > 0, "max_clients must be at least 1");
        assert!(
            cfg.current_clients > 0,
            "current_clients must be at least 1"
        );
        let layout = match cfg.protocol {
            Protocol::Legacy => Some(Layout::legacy(cfg.max_clients)),
            Protocol::Current => Some(Layout::current(cfg.current_clients)),
            Protocol::Auto => None,
        };
        let slots = layout.map_or(0, |l| l.slots() as usize);
        let mut relay = Relay {
            sched: Scheduler::new(slots, cfg.guest_window),
            tap: Tap::new(cfg.exec_log),
            slots: (0..slots).map(|_| Slot::default()).collect(),
            layout,
            generation: None,
            now: 0,
            guest: FrameDecoder::new(),
            guest_gone: false,
            ready: None,
            failed: false,
            waiting: Vec::new(),
            by_client: HashMap::new(),
            flushing: BTreeMap::new(),
            last_session: 0,
            last_corr: 0,
            exec_limits: None,
            active_execs: 0,
            clock: Clock::default(),
            fences: BTreeMap::new(),
            guest_read_to: 0,
            blocked_since: [None; 2],
            leases: Leases::new(cfg.incarnation_seed),
            over_clients: 0,
            deadlines: Deadlines::default(),
            guest_paused_since: None,
            actions: VecDeque::new(),
            counters: Counters::default(),
            #[cfg(feature = "testing")]
            checking: false,
            cfg,
        };
        if let Some(frame) = relay.cfg.bootstrap.clone() {
            relay.bootstrap(frame);
        }
        relay
    }

    /// The same relay, asserting its own consistency ([`Relay::check`])
    /// after every event: what the simulator and the core's tests run.
    #[cfg(feature = "testing")]
    pub fn checked(mut self) -> Relay {
        self.checking = true;
        self
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
            Event::ClientDisconnected(client) => self.on_disconnected(client),
            Event::Tick => self.on_tick(),
            Event::WallClock(wall) => self.on_wall_clock(wall),
        }
        self.tap.flush(&mut self.actions);
        if let Some(credit) = &self.sched.credit {
            credit.publish(&mut self.counters);
        }
        #[cfg(feature = "testing")]
        if self.checking {
            self.check();
        }
    }

    /// The next side effect to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next deadline, if anything is waiting on time: send
    /// [`Event::Tick`] then. Of deadlines at the same moment, a slot's comes
    /// before the global cap's, that before a flush's, the lowest slot's
    /// first, and the clock's last.
    pub fn poll_timeout(&self) -> Option<Timeout> {
        self.deadlines.earliest()
    }

    /// Counters as of now.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the guest's `core.ready` arrived.
    pub fn is_ready(&self) -> bool {
        self.ready.is_some()
    }

    /// The id range of a connected client that has a slot.
    pub fn client_range(&self, client: ClientId) -> Option<IdRange> {
        let slot = *self.by_client.get(&client)?;
        Some(self.layout?.range(slot))
    }

    /// Bytes queued for a client and not yet reported written.
    pub fn client_queued(&self, client: ClientId) -> Option<usize> {
        let slot = *self.by_client.get(&client)?;
        self.slots[slot as usize].conn.as_ref().map(|c| c.queued)
    }

    // ---- connections ------------------------------------------------------

    fn on_connect(&mut self, client: ClientId) {
        if self.by_client.contains_key(&client) || self.waiting.contains(&client) {
            return;
        }
        if self.guest_gone {
            return self.refuse(client, RefuseReason::GuestGone);
        }
        if self.failed {
            return self.refuse(client, RefuseReason::StartupFailed);
        }
        self.counters.live_clients += 1;
        if self.layout.is_none() {
            // The generation decides the slots: wait for ready.
            self.waiting.push(client);
            return;
        }
        self.seat(client);
    }

    /// Gives `client` the lowest free slot, or refuses it.
    pub(super) fn seat(&mut self, client: ClientId) {
        let Some(slot) = self.free_slot() else {
            self.counters.live_clients -= 1;
            let reason = RefuseReason::Full {
                max_clients: self.slots.len() as u32,
                quarantined: self.quarantined(),
            };
            return self.refuse(client, reason);
        };
        self.slots[slot].conn = Some(Conn {
            client,
            decoder: FrameDecoder::new(),
            handshaken: false,
            queued: 0,
            over: false,
            paused: false,
        });
        let quarantine = Key::Slot(slot as u32, SlotDeadline::Quarantine);
        self.deadlines.clear(quarantine);
        self.slots[slot].ended.clear();
        self.by_client.insert(client, slot as u32);
        // Before ready the client waits; `on_ready` handshakes it.
        if self.ready.is_some() {
            self.handshake(slot);
        }
    }

    pub(super) fn refuse(&mut self, client: ClientId, reason: RefuseReason) {
        self.counters.refused_clients += 1;
        self.actions.push_back(Action::Refuse { client, reason });
    }

    /// The sandbox cannot start: say why, refuse whoever waits.
    pub(super) fn startup_failed(&mut self, why: StartupFailure) {
        if self.failed {
            return;
        }
        self.failed = true;
        self.actions.push_back(Action::StartupFailed(why));
        for client in std::mem::take(&mut self.waiting) {
            self.counters.live_clients -= 1;
            self.refuse(client, RefuseReason::StartupFailed);
        }
        for slot in 0..self.slots.len() {
            if let Some(conn) = self.slots[slot].conn.take() {
                self.by_client.remove(&conn.client);
                self.counters.live_clients -= 1;
                self.refuse(conn.client, RefuseReason::StartupFailed);
            }
        }
    }

    /// The prologue and the cached ready frame for the client of `slot`.
    pub(super) fn handshake(&mut self, slot: usize) {
        let (Some(ready), Some(layout)) = (&self.ready, self.layout) else {
            return;
        };
        let range = layout.range(slot as u32);
        let bounds = match layout {
            Layout::Legacy { .. } => self.cfg.handshake == HandshakeForm::Bounds,
            Layout::Current { .. } => true,
        };
        let mut bytes = BytesMut::with_capacity(8 + ready.len());
        bytes.put_u32(range.start);
        if bounds {
            bytes.put_u32(range.end);
        }
        bytes.extend_from_slice(ready);
        if let Some(conn) = &mut self.slots[slot].conn {
            conn.handshaken = true;
        }
        self.lease_connect(slot);
        self.send_to_client(slot, bytes.freeze(), true);
    }

    /// The guest's first frame, before anything else and outside credit.
    fn bootstrap(&mut self, frame: Bytes) {
        let out = Outbound {
            slot: None,
            id: 0,
            frame,
            class: CreditClass::Control,
            charged: false,
            mark: super::scheduler::Mark::Plain,
        };
        self.enqueue(out, true);
        self.pump_guest();
    }

    fn on_disconnected(&mut self, client: ClientId) {
        self.flush_done(client);
        if let Some(i) = self.waiting.iter().position(|&c| c == client) {
            self.waiting.remove(i);
            self.counters.live_clients -= 1;
        } else if let Some(&slot) = self.by_client.get(&client) {
            self.depart(slot as usize, None);
        }
    }

    // ---- toward the guest -------------------------------------------------

    /// Queues a frame toward the guest.
    pub(super) fn enqueue(&mut self, out: Outbound, control: bool) {
        if out.slot.is_some() {
            self.counters.queued_to_guest += out.frame.len() as u64;
        }
        self.sched.enqueue(out, control);
    }

    /// Hands queued frames to the guest while its window (and credit) has
    /// room; a paused client whose queue fell to half the bound is read
    /// again.
    pub(super) fn pump_guest(&mut self) {
        if self.guest_gone {
            return;
        }
        let stop = loop {
            match self.sched.next() {
                Ok(out) => self.hand_over(out),
                Err(stop) => break stop,
            }
        };
        self.note_credit_wait(stop);
    }

    fn hand_over(&mut self, out: Outbound) {
        let len = out.frame.len();
        if let Some(slot) = out.slot {
            let slot = slot as usize;
            self.counters.queued_to_guest -= len as u64;
            let queued = self.sched.queued(slot);
            if let Some(conn) = &mut self.slots[slot].conn
                && conn.paused
                && queued <= self.cfg.client_to_guest_cap / 2
            {
                conn.paused = false;
                self.actions.push_back(Action::ResumeClient(conn.client));
            }
        }
        self.counters.frames_to_guest += 1;
        self.counters.bytes_to_guest += len as u64;
        let seq = self.sched.handed;
        let drain = self.marked(&out, seq);
        let frame = self.stamped(out);
        self.actions.push_back(Action::ToGuest { frame });
        if drain {
            self.actions.push_back(Action::Drain);
        }
    }

    /// Tracks how long frames wait for credit, per class.
    fn note_credit_wait(&mut self, stop: Stop) {
        let waiting = match stop {
            Stop::Credit(class) => Some(class),
            _ => None,
        };
        for (i, class) in [CreditClass::Control, CreditClass::Data]
            .into_iter()
            .enumerate()
        {
            let blocked = waiting == Some(class);
            match (blocked, self.blocked_since[i]) {
                (true, None) => self.blocked_since[i] = Some(self.now),
                (false, Some(since)) => {
                    let ms = self.now - since;
                    match class {
                        CreditClass::Control => self.counters.credit_blocked_control_ms += ms,
                        CreditClass::Data => self.counters.credit_blocked_data_ms += ms,
                    }
                    self.blocked_since[i] = None;
                }
                _ => {}
            }
        }
    }

    /// Fires the due deadlines in key order (see [`Key`]), each when it is
    /// reached: one a deadline fired sets is not fired in the same tick
    /// unless it comes later in that order.
    fn on_tick(&mut self) {
        let mut after = None;
        while let Some((key, timer)) = self.deadlines.next_due(after, self.now) {
            after = Some(key);
            self.on_deadline(timer);
        }
    }

    /// A deadline is due.
    fn on_deadline(&mut self, timer: Timer) {
        match timer {
            Timer::SlowConsumerGrace(client) => self.expire_grace(client),
            Timer::GlobalGrace => self.expire_global(),
            Timer::Quarantine { slot } => self.give_up_slot(slot as usize),
            Timer::CloseFlush(client) => self.expire_flush(client),
            Timer::ClockSync => self.queue_clock_sync(),
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
