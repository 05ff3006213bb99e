//! [`Relay`]: the whole relay as a deterministic state machine. Events go in
//! through [`Relay::handle`], side effects come out of [`Relay::poll_action`],
//! and the next moment time matters is [`Relay::poll_timeout`]. It reads no
//! clock, does no I/O and spawns nothing: same events, same actions.
//!
//! The relay is a director over parts that own their state: the start-up
//! (`startup.rs`), the generation spoken (`dialect.rs`), the guest's input
//! (`guest.rs`), the clients and their budgets (`clients.rs`, `budget.rs`,
//! `flush.rs`), the sessions and their quarantine (`sessions.rs`), the
//! queue toward the guest (`scheduler.rs`), the exec.log tap (`tap.rs`) and
//! the deadlines (`timer.rs`). It has one handler per event and
//! `on_deadline`, with an arm per [`Timer`]; what a part can decide alone,
//! it decides, and no part calls back into the relay. The rules that take
//! several parts at once are the director's:
//!
//! Rule `handshake_after_ready`: a client gets its range and the cached
//! ready frame, whole; one that connects before ready waits (before the
//! generation is known, without a slot), and bytes it sends before its
//! handshake are a violation.
//!
//! Rule `route_by_id`: a guest frame reaches the client whose range holds
//! its id, for a correlation that client opened, unchanged. Frames for an id
//! no slot owns are counted and dropped; frames on the workload-control id
//! are the relay's own (input credit) and never reach a client.
//!
//! Rule `kill_on_departure`: a departing client's live exec sessions each
//! get one SIGKILL. Legacy: queued behind everything that client sent
//! before. Current: the kills pass that client's frames still waiting in its
//! slot's queue (its data, for room or credit, and control frames that must
//! stay behind that data, such as a stream's close), which are dropped (and
//! counted: rule `departure_drops_queue`) rather than left waiting for a
//! process that is being killed or sent after the range is gone; then
//! `core.relay.client.disconnected {id_start, id_end_exclusive}` on id 0
//! tells the guest the range is gone, after the kills (with range leases,
//! naming the departed owner's incarnation: `lease.rs`). Frames the relay
//! builds carry the `v` of the guest's ready. The slot is quarantined while
//! anything stays open on it (`sessions.rs`), or, leased, until the guest
//! acknowledges the notice.
//!
//! Rule `drain_after_shutdown`: [`Action::Drain`] follows the
//! `core.shutdown` frame's own `ToGuest`. Rule `bootstrap_first`: with
//! `CurrentSettings::bootstrap` that frame is the first thing handed to the guest,
//! outside credit.

use std::collections::VecDeque;

use bytes::Bytes;

use super::budget;
use super::client::{self, Accepted};
use super::clients::Clients;
use super::dialect::Dialect;
use super::flush::Flushes;
use super::guest::{GuestFrame, GuestIn, Next};
use super::layout::IdRange;
use super::lease;
use super::scheduler::{Mark, Outbound, Scheduler};
use super::sessions::{CorrKind, Sessions};
use super::startup::{self, BeforeReady, Startup};
use super::tap::{ENDED_GUEST_GONE, ENDED_RELAY_STOPPED, Tap};
use super::timer::{Deadlines, Key, SlotDeadline, Timeout, Timer};
use super::types::{
    Action, ClientId, CloseReason, Config, Counters, Event, HandshakeForm, Millis, RefuseReason,
    SlowLimit, StartupFailure,
};
use super::violation::{GuestCorruption, Violation};
use crate::wire::payload::{WorkloadTransportCredit, decode_payload};
use crate::wire::{CreditClass, FLAG_TERMINAL, Frame, MsgType};

/// The relay state machine. See the module docs of [`crate::core`].
#[derive(Debug)]
pub struct Relay {
    cfg: Config,
    now: Millis,
    startup: Startup,
    dialect: Dialect,
    guest: GuestIn,
    clients: Clients,
    /// Closed clients whose last output is still being written.
    flushes: Flushes,
    sessions: Sessions,
    /// Frames toward the guest.
    outbox: Scheduler,
    tap: Tap,
    deadlines: Deadlines,
    actions: VecDeque<Action>,
    counters: Counters,
    /// Run `check` after every event (see [`Relay::checked`]).
    #[cfg(feature = "testing")]
    checking: bool,
}

fn grace_key(slot: usize) -> Key {
    Key::Slot(slot as u32, SlotDeadline::Grace)
}

impl Relay {
    /// A relay waiting for the guest's `core.ready`.
    ///
    /// # Panics
    /// If `cfg.legacy.max_clients` or `cfg.current.clients` is 0.
    pub fn new(cfg: Config) -> Relay {
        assert!(
            cfg.legacy.max_clients > 0,
            "legacy.max_clients must be at least 1"
        );
        assert!(
            cfg.current.clients > 0,
            "current.clients must be at least 1"
        );
        let startup = Startup::new(Dialect::configured_layout(&cfg));
        let slots = startup.slots();
        let mut relay = Relay {
            outbox: Scheduler::new(slots, cfg.guest_window),
            tap: Tap::new(cfg.exec_log),
            clients: Clients::new(slots),
            sessions: Sessions::new(slots, cfg.current.max_correlations),
            startup,
            dialect: Dialect::new(),
            guest: GuestIn::new(),
            flushes: Flushes::default(),
            deadlines: Deadlines::default(),
            now: 0,
            actions: VecDeque::new(),
            counters: Counters::default(),
            #[cfg(feature = "testing")]
            checking: false,
            cfg,
        };
        if let Some(frame) = relay.cfg.current.bootstrap.clone() {
            // The guest's first frame, before anything else and outside credit.
            relay.enqueue(Outbound::relay(frame, false, Mark::Plain), true);
            relay.pump_guest();
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
            Event::GuestWritten(n) => self.on_guest_written(n),
            Event::GuestClosed => self.on_guest_closed(),
            Event::ClientConnected(client) => self.on_connect(client),
            Event::ClientBytes(client, bytes) => self.on_client_bytes(client, bytes),
            Event::ClientWritten(client, n) => self.on_client_written(client, n),
            Event::ClientDisconnected(client) => self.on_disconnected(client),
            Event::Tick => self.on_tick(),
            Event::WallClock(wall) => self.on_wall_clock(wall),
        }
        self.tap.flush(&mut self.actions);
        self.publish();
        #[cfg(feature = "testing")]
        if self.checking {
            self.check();
        }
    }

    /// The counters that are gauges, read off the parts.
    fn publish(&mut self) {
        let c = &mut self.counters;
        c.live_clients = self.clients.live();
        c.queued_to_clients = self.clients.queued() as u64;
        c.live_sessions = self.sessions.live();
        c.open_requests = self.sessions.requests();
        c.queued_to_guest = self.outbox.total() as u64;
        c.generation = self.dialect.number();
        if let Some(credit) = self.dialect.credit() {
            credit.publish(c);
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
        self.startup.is_ready()
    }

    /// The cached ready frame (for tests and the shell's diagnostics).
    pub fn ready_frame(&self) -> Option<&Bytes> {
        self.startup.ready()
    }

    /// The id range of a connected client that has a slot.
    pub fn client_range(&self, client: ClientId) -> Option<IdRange> {
        let slot = self.clients.slot_of(client)?;
        Some(self.startup.layout()?.range(slot as u32))
    }

    /// Bytes queued for a client and not yet reported written.
    pub fn client_queued(&self, client: ClientId) -> Option<usize> {
        let slot = self.clients.slot_of(client)?;
        self.clients.conn(slot).map(|c| c.queued)
    }

    /// The embedder is stopping the relay (the shell calls this before it
    /// closes its connections and exec.log): every exec session still open
    /// and not killed gets its end record, `exec ended: the relay stopped
    /// before it exited`, as `Log` actions to perform before closing
    /// exec.log. Nothing else changes; a second call logs nothing.
    pub fn stopping(&mut self) {
        let open = self.sessions.open_execs();
        self.tap
            .end_open(&mut self.actions, open, ENDED_RELAY_STOPPED);
        self.tap.flush(&mut self.actions);
    }

    /// Bytes the core itself holds: the guest decoder's partial frame, the
    /// client decoders' partial frames, and frames queued toward the guest.
    #[cfg(any(test, feature = "testing"))]
    pub fn held_bytes(&self) -> usize {
        let slots: usize = (0..self.clients.slots())
            .map(|i| {
                let conn = self.clients.conn(i);
                self.outbox.queued(i) + conn.map_or(0, |c| c.decoder.buffered())
            })
            .sum();
        self.guest.buffered() + slots
    }

    /// Bytes handed to the guest port and not yet written.
    #[cfg(any(test, feature = "testing"))]
    pub fn guest_inflight(&self) -> usize {
        self.outbox.inflight()
    }

    /// Panics if the core's bookkeeping disagrees with itself
    /// (`check.rs`).
    #[cfg(any(test, feature = "testing"))]
    pub fn check(&self) {
        super::check::relay(&super::check::View {
            cfg: &self.cfg,
            startup: &self.startup,
            dialect: &self.dialect,
            guest_gone: self.guest.is_gone(),
            clients: &self.clients,
            flushes: &self.flushes,
            sessions: &self.sessions,
            outbox: &self.outbox,
            deadlines: &self.deadlines,
            counters: &self.counters,
        });
    }

    // ---- the guest's input ---------------------------------------------------

    fn on_guest_bytes(&mut self, bytes: &[u8]) {
        // The channel ended at `GuestClosed`: nothing read after it is the
        // guest's (a driver that feeds more broke its contract), and the
        // sessions it ended there must not end again.
        if self.guest.is_gone() {
            return;
        }
        self.counters.guest_bytes_in += bytes.len() as u64;
        let mut rest = bytes;
        if let Some((total, (t, v, payload))) = self.guest.held(&mut rest, &self.dialect) {
            let frame = self.guest.take(total);
            self.on_guest_frame(GuestFrame {
                t,
                v,
                payload,
                frame,
            });
        }
        let rest = self.direct_frames(rest);
        self.guest.extend(rest);
        while let Some(next) = self.guest.decoded(&self.dialect) {
            match next {
                Next::Frame(total, (t, v, payload)) => {
                    let frame = self.guest.take(total);
                    self.on_guest_frame(GuestFrame {
                        t,
                        v,
                        payload,
                        frame,
                    });
                }
                Next::Lease(total) => {
                    let record = self.guest.take(total).into_bytes();
                    self.on_lease_record(&record);
                }
                Next::Corrupt(error, skipped) => self.guest_corrupt(error, skipped),
            }
        }
    }

    /// The frames wholly inside a read, straight from it; what is left.
    // Not inlined: inside `on_guest_bytes` the frame was copied from one
    // stack slot to another after `Frame::copy_of`, a store-forwarding stall
    // per frame (core alone, 64 B frames: 15 -> 18 M frames/s).
    #[inline(never)]
    fn direct_frames<'a>(&mut self, mut rest: &'a [u8]) -> &'a [u8] {
        while let Some((total, (t, v, payload))) = self.guest.direct(rest, &self.dialect) {
            let frame = Frame::copy_of(&rest[..total]);
            rest = &rest[total..];
            self.on_guest_frame(GuestFrame {
                t,
                v,
                payload,
                frame,
            });
        }
        rest
    }

    /// Rule `guest_resync`: corrupt guest input is counted, reported and
    /// skipped; it never reaches a client.
    fn guest_corrupt(&mut self, error: GuestCorruption, skipped: usize) {
        self.counters.guest_corrupt += 1;
        self.counters.guest_corrupt_bytes += skipped as u64;
        self.actions
            .push_back(Action::GuestCorrupt { error, skipped });
    }

    fn on_guest_frame(&mut self, f: GuestFrame) {
        self.counters.guest_frames_in += 1;
        if !self.startup.is_ready() {
            return self.before_ready(f);
        }
        let id = f.frame.id();
        if self.dialect.is_workload_control(id) {
            return self.workload_control(&f);
        }
        let Some(slot) = self.startup.layout().and_then(|l| l.slot_of(id)) else {
            return self.dialect.count_for_nobody(&mut self.counters);
        };
        self.route(slot, id, f);
    }

    /// A guest frame on an id slot `slot` owns.
    fn route(&mut self, slot: usize, id: u32, f: GuestFrame) {
        let Some(corr) = self.sessions.get_mut(slot, id) else {
            self.counters.dropped_unowned += 1;
            return;
        };
        self.tap.guest_frame(&mut self.actions, corr, &f);
        let opened_at = corr.opened_at;
        let handshaken = self.clients.conn(slot).map(|c| c.handshaken);
        if f.frame.flags() & FLAG_TERMINAL != 0 {
            let seated = handshaken.is_some();
            self.sessions.close(slot, id, seated, &mut self.deadlines);
        }
        match handshaken {
            Some(true) => self.send_to_client(slot, f.frame.into_bytes(), false),
            _ => self.counters.dropped_unowned += 1,
        }
        // After the frame is routed: what the guest proves it read may retire
        // a departed slot and release waiting data.
        if let Some(seq) = opened_at {
            self.guest_read(seq);
        }
    }

    /// A frame on the workload-control id: input credit is read, the rest is
    /// the runtime's business and only counted.
    fn workload_control(&mut self, f: &GuestFrame) {
        self.counters.workload_frames += 1;
        if f.t != Some(MsgType::WorkloadTransportCredit) || f.frame.flags() != 0 {
            return;
        }
        let Some(credit) = self.dialect.credit_mut() else {
            return;
        };
        let body = f.frame.body();
        let payload = f.payload.clone().map(|r| &body[r]);
        let grant = payload.and_then(|p| decode_payload::<WorkloadTransportCredit>(p).ok());
        match grant {
            Some(g) if credit.grant(&g) => self.pump_guest(),
            _ => self.counters.grants_ignored += 1,
        }
    }

    /// A lease record from the guest: a disconnect acknowledgement releases
    /// the slot that awaited it (rule `range_leases`).
    fn on_lease_record(&mut self, bytes: &[u8]) {
        match lease::read_ack(bytes, self.startup.layout()) {
            Err(error) => self.guest_corrupt(error, bytes.len()),
            Ok((Some(slot), inc))
                if self
                    .dialect
                    .leases_mut()
                    .is_some_and(|l| l.acknowledged(slot, inc)) =>
            {
                self.counters.lease_acks += 1;
                self.give_up_slot(slot);
            }
            Ok(_) => self.counters.lease_acks_ignored += 1,
        }
    }

    fn on_guest_closed(&mut self) {
        if self.guest.is_gone() {
            return;
        }
        if let Some((error, skipped)) = self.guest.close() {
            self.guest_corrupt(error, skipped);
        }
        self.dialect.guest_gone();
        self.deadlines.clear(Key::Clock);
        // Rule `exec_log_says_what_ran`: the sessions it ran end here.
        let open = self.sessions.open_execs();
        self.tap.end_open(&mut self.actions, open, ENDED_GUEST_GONE);
        for client in self.clients.take_waiting() {
            let reason = CloseReason::GuestGone;
            self.actions
                .push_back(Action::CloseClient { client, reason });
        }
        for slot in 0..self.clients.slots() {
            self.depart(slot, Some(CloseReason::GuestGone));
        }
    }

    fn on_guest_written(&mut self, n: usize) {
        self.outbox.written(n);
        self.pump_guest();
    }

    // ---- start-up (rule `init_before_ready`) -------------------------------

    /// A guest frame before ready.
    fn before_ready(&mut self, f: GuestFrame) {
        match startup::before_ready(&f) {
            BeforeReady::Ready => return self.on_ready(&f),
            BeforeReady::InitResolved => self.init_ack(f.v, false),
            BeforeReady::InitFailed(message) => {
                self.counters.init_failures += 1;
                self.init_ack(f.v, true);
                return self.startup_failed(StartupFailure::GuestInit { message });
            }
            BeforeReady::Other => {}
        }
        self.counters.guest_frames_before_ready += 1;
    }

    /// Answers the guest's init frame, uncharged, in its own generation.
    fn init_ack(&mut self, v: u8, failure: bool) {
        self.counters.init_acks += 1;
        let frame = startup::init_ack(v, failure);
        self.enqueue(Outbound::relay(frame, false, Mark::Plain), true);
        self.pump_guest();
    }

    fn on_ready(&mut self, f: &GuestFrame) {
        if self.startup.failed() {
            return;
        }
        if let Err(why) = self.dialect.at_ready(f.v, f.frame.body(), &self.cfg) {
            return self.startup_failed(why);
        }
        if self.guest.is_gone() {
            self.dialect.guest_gone();
        }
        self.startup.set_ready(f.frame.clone().into_bytes());
        self.actions.push_back(Action::Ready);
        self.tap.sandbox_started(&mut self.actions);
        if self.startup.layout().is_none()
            && let Some(layout) = self.dialect.layout(&self.cfg)
        {
            self.startup.set_layout(layout);
            let slots = layout.slots() as usize;
            self.clients.resize(slots);
            self.sessions.resize(slots);
            self.outbox.set_slots(slots);
        }
        // Clients that waited take slots in arrival order (the excess is
        // refused); then everyone seated before ready gets its handshake.
        for client in self.clients.take_waiting() {
            self.seat(client);
        }
        for slot in 0..self.clients.slots() {
            if self.clients.conn(slot).is_some_and(|c| !c.handshaken) {
                self.handshake(slot);
            }
        }
        if self.dialect.syncs_clock() {
            self.queue_clock_sync();
        }
    }

    /// The sandbox cannot start: say why, refuse whoever waits.
    fn startup_failed(&mut self, why: StartupFailure) {
        if !self.startup.fail() {
            return;
        }
        self.actions.push_back(Action::StartupFailed(why));
        for client in self.clients.take_waiting() {
            self.refuse(client, RefuseReason::StartupFailed);
        }
        for slot in 0..self.clients.slots() {
            if let Some(conn) = self.clients.leave(slot) {
                self.refuse(conn.client, RefuseReason::StartupFailed);
            }
        }
    }

    // ---- connections ---------------------------------------------------------

    fn on_connect(&mut self, client: ClientId) {
        if self.clients.knows(client) {
            return;
        }
        if self.guest.is_gone() {
            return self.refuse(client, RefuseReason::GuestGone);
        }
        if self.startup.failed() {
            return self.refuse(client, RefuseReason::StartupFailed);
        }
        if self.startup.layout().is_none() {
            // The generation decides the slots: wait for ready.
            return self.clients.wait(client);
        }
        self.seat(client);
    }

    /// Gives `client` the lowest free slot, or refuses it.
    fn seat(&mut self, client: ClientId) {
        let Some(slot) = (0..self.clients.slots()).find(|&i| self.is_free(i)) else {
            let quarantined = (0..self.clients.slots())
                .filter(|&i| self.clients.conn(i).is_none() && !self.is_free(i))
                .count();
            let reason = RefuseReason::Full {
                max_clients: self.clients.slots() as u32,
                quarantined: quarantined as u32,
            };
            return self.refuse(client, reason);
        };
        self.clients.seat(slot, client);
        let quarantine = Key::Slot(slot as u32, SlotDeadline::Quarantine);
        self.deadlines.clear(quarantine);
        self.sessions.seated(slot);
        // Before ready the client waits; `on_ready` handshakes it.
        if self.startup.is_ready() {
            self.handshake(slot);
        }
    }

    /// Whether a new client may take `slot` (rule `slot_quarantine`): no
    /// client, nothing open, nothing queued, no lease acknowledgement
    /// awaited.
    fn is_free(&self, slot: usize) -> bool {
        self.clients.conn(slot).is_none()
            && !self.sessions.holds(slot)
            && self.outbox.queued(slot) == 0
            && !self.dialect.awaits_ack(slot)
    }

    fn refuse(&mut self, client: ClientId, reason: RefuseReason) {
        self.counters.refused_clients += 1;
        self.actions.push_back(Action::Refuse { client, reason });
    }

    /// The prologue and the cached ready frame for the client of `slot`.
    fn handshake(&mut self, slot: usize) {
        let (Some(ready), Some(layout)) = (self.startup.ready(), self.startup.layout()) else {
            return;
        };
        let bounds = self.cfg.legacy.handshake == HandshakeForm::Bounds;
        let bytes = layout.prologue(slot as u32, bounds, ready);
        if let Some(conn) = self.clients.conn_mut(slot) {
            conn.handshaken = true;
        }
        self.lease_connect(slot);
        self.send_to_client(slot, bytes, true);
    }

    /// With range leases, the client of `slot` gets an incarnation and its
    /// connected record goes first.
    fn lease_connect(&mut self, slot: usize) {
        let Some(layout) = self.startup.layout() else {
            return;
        };
        let Some(leases) = self.dialect.leases_mut() else {
            return;
        };
        let record = leases.connect(slot, layout.range(slot as u32));
        self.counters.leases_granted += 1;
        let out = Outbound::of_slot(slot, 0, record, CreditClass::Control, Mark::Plain);
        self.enqueue(out, true);
        self.pump_guest();
    }

    fn on_disconnected(&mut self, client: ClientId) {
        self.flushes.done(client, &mut self.deadlines);
        if self.clients.unwait(client) {
            return;
        }
        if let Some(slot) = self.clients.slot_of(client) {
            self.depart(slot, None);
        }
    }

    /// A client leaves (it disconnected, or `reason` says why we closed it):
    /// its kills, its notice, its slot's quarantine.
    fn depart(&mut self, slot: usize, reason: Option<CloseReason>) {
        let Some(conn) = self.clients.leave(slot) else {
            return;
        };
        self.deadlines.clear(grace_key(slot));
        self.budget_changed();
        if let Some(reason) = reason {
            if reason.flush_first() && conn.queued > 0 {
                let until = self.now + self.cfg.grace;
                self.flushes
                    .start(conn.client, conn.queued, until, &mut self.deadlines);
            }
            let client = conn.client;
            self.actions
                .push_back(Action::CloseClient { client, reason });
        }
        if self.dialect.drops_departed_queue() {
            let (frames, _) = self.outbox.drop_queued(slot);
            self.counters.departed_frames_dropped += frames as u64;
        }
        for (id, number) in self.sessions.kill(slot) {
            self.counters.kills_sent += 1;
            self.tap.exec_killed(&mut self.actions, number);
            let (frame, overtakes) = self.dialect.kill(id);
            let control = overtakes || !self.outbox.has_data_queued(slot);
            let out = Outbound::of_slot(slot, id, frame, CreditClass::Control, Mark::Plain);
            self.enqueue(out, control);
        }
        if let Some(range) = self.startup.layout().map(|l| l.range(slot as u32))
            && let Some(notice) = self.dialect.notice(slot, range)
        {
            let out = Outbound::of_slot(slot, 0, notice, CreditClass::Control, Mark::Notice);
            self.enqueue(out, true);
        }
        if !self.dialect.awaits_ack(slot) {
            let at = self.now + self.cfg.quarantine;
            self.sessions
                .start_quarantine(slot, at, &mut self.deadlines);
        }
        self.pump_guest();
    }

    // ---- client frames ---------------------------------------------------------

    fn on_client_bytes(&mut self, client: ClientId, bytes: &[u8]) {
        if self.clients.is_waiting(client) {
            // A client without a slot yet cannot know its range.
            self.counters.client_bytes_in += bytes.len() as u64;
            self.clients.unwait(client);
            self.counters.protocol_violations += 1;
            let why = Violation::BeforeHandshake { bytes: bytes.len() };
            let reason = CloseReason::Violation(why);
            self.actions
                .push_back(Action::CloseClient { client, reason });
            return;
        }
        let Some(slot) = self.clients.slot_of(client) else {
            return;
        };
        self.counters.client_bytes_in += bytes.len() as u64;
        let Some(conn) = self.clients.conn_mut(slot) else {
            return;
        };
        if !conn.handshaken {
            let why = Violation::BeforeHandshake { bytes: bytes.len() };
            return self.violation(slot, why);
        }
        conn.decoder.extend(bytes);
        loop {
            let Some(conn) = self.clients.conn_mut(slot) else {
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
        let queued = self.outbox.queued(slot);
        if let Some(conn) = self.clients.conn_mut(slot)
            && queued > self.cfg.client_to_guest_cap
            && !conn.paused
        {
            conn.paused = true;
            self.actions.push_back(Action::PauseClient(conn.client));
        }
        self.pump_guest();
    }

    /// Checks one client frame and queues it toward the guest.
    fn accept_client_frame(&mut self, slot: usize, frame: Frame) -> Result<(), Violation> {
        let range = self.startup.layout().map(|l| l.range(slot as u32));
        let sessions = &self.sessions;
        let bulk = |id| sessions.bulk_target(slot, id);
        let a = self.dialect.check_client_frame(&frame, range, bulk)?;
        let id = frame.id();
        if a.late {
            self.counters.late_bulk_dropped += 1;
            return Ok(());
        }
        if a.exec.is_some()
            && let Some(limits) = self.dialect.exec_limits()
            && client::exec_over_limit(a.v, self.sessions.active_execs(), limits.max_executions)
        {
            return self.refuse_exec(slot, id, a.v);
        }
        let opened = match a.opens {
            Some(kind) => self.open_session(slot, id, &a, kind).map(|()| true)?,
            None if self.dialect.opens_requests() => {
                self.sessions.open_request(slot, id, &mut self.counters)?
            }
            None => false,
        };
        self.counters.client_frames_in += 1;
        let mark = match a.t {
            Some(MsgType::Shutdown) => Mark::Drain,
            _ if opened => Mark::Opens,
            _ => Mark::Plain,
        };
        let overtakes = a.t.is_some_and(MsgType::is_control);
        let behind_own = self.outbox.id_queued(slot, id);
        let control = self.dialect.goes_first(a.class, overtakes, behind_own);
        let out = Outbound::of_slot(slot, id, frame.into_bytes(), a.class, mark);
        self.enqueue(out, control);
        Ok(())
    }

    /// A client frame opens a session (an exec session holds one of the
    /// guest's executions when it has a policy).
    fn open_session(
        &mut self,
        slot: usize,
        id: u32,
        a: &Accepted,
        kind: CorrKind,
    ) -> Result<(), Violation> {
        let counts = kind.is_exec() && self.dialect.exec_limits().is_some();
        let c = &mut self.counters;
        let number = self.sessions.open(slot, id, a.t, kind, counts, c)?;
        if let Some(req) = &a.exec {
            self.tap.exec_started(&mut self.actions, number, req, slot);
        }
        Ok(())
    }

    /// An exec request over the limit: answered by the relay, not forwarded.
    fn refuse_exec(&mut self, slot: usize, id: u32, v: u64) -> Result<(), Violation> {
        self.counters.execs_refused += 1;
        self.counters.client_frames_in += 1;
        self.send_to_client(slot, client::exec_refusal(v, id), false);
        Ok(())
    }

    fn violation(&mut self, slot: usize, why: Violation) {
        self.counters.protocol_violations += 1;
        self.depart(slot, Some(CloseReason::Violation(why)));
    }

    // ---- output toward clients (rule `backpressure_bounded_wait`) -----------

    /// Hands bytes to the driver for a client, enforcing its budgets: a frame
    /// that would break the hard cap or the global cap closes a client instead.
    fn send_to_client(&mut self, slot: usize, bytes: Bytes, handshake: bool) {
        let len = bytes.len();
        let Some(conn) = self.clients.conn(slot) else {
            return;
        };
        if budget::breaks_hard_cap(conn.queued, len, &self.cfg) {
            let queued = conn.queued;
            return self.close_slow(slot, queued, SlowLimit::HardCap);
        }
        if !self.make_global_room(slot, len) {
            return;
        }
        let Some((client, went_over)) = self.clients.add(slot, len, &self.cfg) else {
            return;
        };
        if went_over {
            let at = self.now + self.cfg.grace;
            self.deadlines
                .set(grace_key(slot), at, Timer::SlowConsumerGrace(client));
        }
        self.counters.bytes_to_clients += len as u64;
        if handshake {
            self.actions.push_back(Action::Handshake { client, bytes });
        } else {
            self.counters.frames_to_clients += 1;
            let frame = bytes;
            self.actions.push_back(Action::ToClient { client, frame });
        }
        self.budget_changed();
    }

    /// Closes whoever holds the most (ties go to the lowest slot) until `len`
    /// more bytes fit under the global cap; false if `slot` itself was closed.
    fn make_global_room(&mut self, slot: usize, len: usize) -> bool {
        while budget::breaks_global_cap(self.clients.queued(), len, &self.cfg) {
            let Some((victim, queued)) = self.clients.holder_of_most() else {
                return false;
            };
            self.close_slow(victim, queued, SlowLimit::GlobalCap);
            if victim == slot {
                return false;
            }
        }
        true
    }

    fn close_slow(&mut self, slot: usize, queued: usize, limit: SlowLimit) {
        self.counters.slow_consumer_closes += 1;
        self.depart(slot, Some(CloseReason::SlowConsumer { queued, limit }));
    }

    /// Queued output changed: the sum's grace period starts or ends, and the
    /// guest is read while nobody is over budget.
    #[inline]
    fn budget_changed(&mut self) {
        let mut runs = self.deadlines.get(Key::Global).is_some();
        match budget::global_grace(self.clients.queued(), runs, &self.cfg) {
            Some(true) => {
                let at = self.now + self.cfg.grace;
                self.deadlines.set(Key::Global, at, Timer::GlobalGrace);
                runs = true;
            }
            Some(false) => {
                self.deadlines.clear(Key::Global);
                runs = false;
            }
            None => {}
        }
        let pause = self.clients.over() > 0 || runs;
        let c = &mut self.counters;
        if let Some(action) = self.clients.pace(pause, self.guest.is_gone(), self.now, c) {
            self.actions.push_back(action);
        }
    }

    /// Bytes reached a client's socket; down to half its soft budget, it is
    /// no longer over it.
    fn on_client_written(&mut self, client: ClientId, n: usize) {
        if self.flushes.written(client, n, &mut self.deadlines) {
            return;
        }
        let Some(slot) = self.clients.slot_of(client) else {
            return;
        };
        let Some(back_under) = self.clients.written(slot, n, &self.cfg) else {
            return;
        };
        if back_under {
            self.deadlines.clear(grace_key(slot));
        }
        self.budget_changed();
    }

    // ---- time ------------------------------------------------------------------

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
            Timer::SlowConsumerGrace(client) => {
                // It did not take its queue down to half its budget in time.
                let Some(slot) = self.clients.slot_of(client) else {
                    return;
                };
                if let Some(conn) = self.clients.conn(slot) {
                    let queued = conn.queued;
                    self.close_slow(slot, queued, SlowLimit::Grace);
                }
            }
            Timer::GlobalGrace => {
                // The sum stayed over half the global cap: the client holding
                // the most goes, and the sum gets another period (the close
                // ends it if the sum falls to a quarter; the guest is not
                // resumed in between).
                let at = self.now + self.cfg.grace;
                self.deadlines.set(Key::Global, at, Timer::GlobalGrace);
                if let Some((victim, queued)) = self.clients.holder_of_most() {
                    self.close_slow(victim, queued, SlowLimit::GlobalCap);
                }
                self.budget_changed();
            }
            // The guest never ended these: give the slot back.
            Timer::Quarantine { slot } => self.give_up_slot(slot as usize),
            Timer::CloseFlush(client) => {
                self.flushes.done(client, &mut self.deadlines);
                self.actions.push_back(Action::FlushExpired { client });
            }
            Timer::ClockSync => self.queue_clock_sync(),
        }
    }

    /// A wall-clock reading (rule `clock_sync`): a jump, or the first
    /// reading after ready, asks for a sync.
    fn on_wall_clock(&mut self, wall: u64) {
        let scheduled = self.deadlines.get(Key::Clock).is_some();
        if self.dialect.observe_wall(self.now, wall, scheduled) {
            self.queue_clock_sync();
        }
    }

    /// A clock sync (ready, a jump, or the period's end), unless one is
    /// queued.
    fn queue_clock_sync(&mut self) {
        let Some(frame) = self.dialect.clock_frame(self.now) else {
            return;
        };
        if !self.dialect.queue_clock() {
            return;
        }
        self.deadlines.clear(Key::Clock);
        self.enqueue(Outbound::relay(frame, true, Mark::Clock), true);
        self.pump_guest();
    }

    // ---- toward the guest --------------------------------------------------------

    /// Queues a frame toward the guest.
    fn enqueue(&mut self, out: Outbound, control: bool) {
        self.outbox.enqueue(out, control);
    }

    /// Hands queued frames to the guest while its window (and credit) has
    /// room.
    fn pump_guest(&mut self) {
        if self.guest.is_gone() {
            return;
        }
        let stop = loop {
            match self.outbox.next(self.dialect.credit_mut()) {
                Ok(out) => self.hand_over(out),
                Err(stop) => break stop,
            }
        };
        self.outbox.note_wait(stop, self.now, &mut self.counters);
    }

    /// One frame goes to the guest; a paused client whose queue fell to half
    /// the bound is read again.
    fn hand_over(&mut self, out: Outbound) {
        let len = out.frame.len();
        if let Some(slot) = out.slot {
            let queued = self.outbox.queued(slot as usize);
            if let Some(conn) = self.clients.conn_mut(slot as usize)
                && conn.paused
                && queued <= self.cfg.client_to_guest_cap / 2
            {
                conn.paused = false;
                self.actions.push_back(Action::ResumeClient(conn.client));
            }
        }
        self.counters.frames_to_guest += 1;
        self.counters.bytes_to_guest += len as u64;
        let drain = self.marked(&out, self.outbox.handed());
        let frame = match out.mark {
            // A clock sync gets the time of its hand-off (its length cannot
            // change: any present-day time takes eight bytes).
            Mark::Clock => match self.dialect.clock_frame(self.now) {
                Some(fresh) if fresh.len() == out.frame.len() => fresh,
                _ => out.frame,
            },
            _ => out.frame,
        };
        self.actions.push_back(Action::ToGuest { frame });
        if drain {
            self.actions.push_back(Action::Drain);
        }
    }

    /// What a frame's hand-off (as number `seq`) means; true if `Drain`
    /// follows it.
    fn marked(&mut self, out: &Outbound, seq: u64) -> bool {
        let slot = out.slot.map(|s| s as usize);
        match (out.mark, slot) {
            (Mark::Drain, _) => return true,
            (Mark::Opens, Some(slot)) => self.sessions.opened(slot, out.id, seq),
            (Mark::Notice, slot) => {
                self.counters.notices_sent += 1;
                if let Some(slot) = slot {
                    self.sessions.notice_handed(slot, seq);
                }
            }
            (Mark::Clock, _) => {
                self.dialect.clock_sent();
                let at = self.now.saturating_add(self.cfg.current.clock_period);
                self.deadlines.set(Key::Clock, at, Timer::ClockSync);
                self.counters.clock_syncs += 1;
            }
            _ => {}
        }
        false
    }

    // ---- departed slots (rule `slot_quarantine`) ----------------------------

    /// A guest frame answered the frame handed over as number `seq`: every
    /// disconnect notice handed over before it has been taken.
    fn guest_read(&mut self, seq: u64) {
        if !self.sessions.read(seq) {
            return;
        }
        let mut retired = false;
        while let Some(slot) = self.sessions.passed_fence(seq) {
            if self.clients.conn(slot).is_none() {
                let leased = self.dialect.awaits_ack(slot);
                let (c, d) = (&mut self.counters, &mut self.deadlines);
                self.sessions.retire(slot, leased, c, d);
                if let Some(credit) = self.dialect.credit_mut() {
                    credit.forget_slot(slot);
                }
            }
            retired = true;
        }
        if retired {
            // What the departed client held no longer counts against the
            // others' fair share: their waiting data may go now.
            self.pump_guest();
        }
    }

    /// Everything a departed owner still holds on `slot` is forgotten: its
    /// correlations (and the executions they hold), its share of the data
    /// credit; the slot is free then, and data the share held back may go.
    fn give_up_slot(&mut self, slot: usize) {
        self.sessions.give_up(slot, &mut self.deadlines);
        if let Some(credit) = self.dialect.credit_mut() {
            credit.forget_slot(slot);
        }
        self.pump_guest();
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, Relay};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// The check is only worth its cost if it fires: a fresh relay passes,
    /// the same relay with one counter off by one does not.
    #[test]
    fn check_fires_on_a_counter_that_disagrees_with_the_slots() {
        let mut relay = Relay::new(Config::default());
        relay.check();
        relay.counters.live_clients += 1;
        let fired = catch_unwind(AssertUnwindSafe(|| relay.check()));
        assert!(
            fired.is_err(),
            "a live_clients counter of 1 with no client passed"
        );
    }
}
