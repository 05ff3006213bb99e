//! The one door into the core: feeds an event, drains the actions, runs the
//! checker around it, hashes everything for the determinism check, and
//! optionally records the event (for shrinking) and a trace line.

use std::collections::VecDeque;

use agent_relay::core::{Action, ClientId, Config, Counters, Event, Millis, Relay};
use agent_relay::wire::{PREFIX_LEN, peek_envelope};

use super::check::Checker;

/// A core event with owned bytes, as recorded and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    /// [`Event::GuestBytes`].
    GuestBytes(Vec<u8>),
    /// [`Event::GuestWritten`].
    GuestWritten(usize),
    /// [`Event::GuestClosed`].
    GuestClosed,
    /// [`Event::ClientConnected`].
    Connected(u64),
    /// [`Event::ClientBytes`].
    ClientBytes(u64, Vec<u8>),
    /// [`Event::ClientWritten`].
    ClientWritten(u64, usize),
    /// [`Event::ClientDisconnected`].
    Disconnected(u64),
    /// [`Event::Tick`].
    Tick,
    /// [`Event::WallClock`].
    WallClock(u64),
}

impl OwnedEvent {
    /// Copies a borrowed event.
    pub fn from_event(e: &Event<'_>) -> OwnedEvent {
        match *e {
            Event::GuestBytes(b) => OwnedEvent::GuestBytes(b.to_vec()),
            Event::GuestWritten(n) => OwnedEvent::GuestWritten(n),
            Event::GuestClosed => OwnedEvent::GuestClosed,
            Event::ClientConnected(c) => OwnedEvent::Connected(c.0),
            Event::ClientBytes(c, b) => OwnedEvent::ClientBytes(c.0, b.to_vec()),
            Event::ClientWritten(c, n) => OwnedEvent::ClientWritten(c.0, n),
            Event::ClientDisconnected(c) => OwnedEvent::Disconnected(c.0),
            Event::Tick => OwnedEvent::Tick,
            Event::WallClock(w) => OwnedEvent::WallClock(w),
        }
    }

    /// Borrows it as a core event.
    pub fn as_event(&self) -> Event<'_> {
        match self {
            OwnedEvent::GuestBytes(b) => Event::GuestBytes(b),
            OwnedEvent::GuestWritten(n) => Event::GuestWritten(*n),
            OwnedEvent::GuestClosed => Event::GuestClosed,
            OwnedEvent::Connected(c) => Event::ClientConnected(ClientId(*c)),
            OwnedEvent::ClientBytes(c, b) => Event::ClientBytes(ClientId(*c), b),
            OwnedEvent::ClientWritten(c, n) => Event::ClientWritten(ClientId(*c), *n),
            OwnedEvent::Disconnected(c) => Event::ClientDisconnected(ClientId(*c)),
            OwnedEvent::Tick => Event::Tick,
            OwnedEvent::WallClock(w) => Event::WallClock(*w),
        }
    }
}

/// One recorded core event and its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Virtual time in ms.
    pub now: Millis,
    /// The event.
    pub event: OwnedEvent,
}

/// How much of the run to keep as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// Nothing (campaigns).
    Off,
    /// The last `n` lines, for a violation report.
    Ring(usize),
    /// Every line, kept in order.
    Full,
}

/// The core plus its checker. See the module docs.
#[derive(Debug)]
pub struct Driver {
    /// The system under test.
    pub relay: Relay,
    /// The reference model.
    pub checker: Checker,
    /// Running hash of every event and action.
    pub hash: u64,
    /// Running hash of the canonical action stream (see [`Digest`]).
    pub digest: Digest,
    /// `Relay::handle` calls.
    pub events: u64,
    trace: TraceMode,
    lines: VecDeque<String>,
    record: Option<Vec<Recorded>>,
    /// The actions of the last event, for the caller to perform.
    pub actions: Vec<Action>,
}

impl Driver {
    /// A fresh relay for `cfg` and its checker.
    pub fn new(cfg: Config, read_max: usize, trace: TraceMode, record: bool) -> Driver {
        Driver {
            relay: Relay::new(cfg.clone()).checked(),
            checker: Checker::new(cfg, read_max),
            hash: 0xcbf2_9ce4_8422_2325,
            digest: Digest::new(),
            events: 0,
            trace,
            lines: VecDeque::new(),
            record: record.then(Vec::new),
            actions: Vec::new(),
        }
    }

    /// Feeds one event; its actions land in [`Driver::actions`].
    pub fn feed(&mut self, now: Millis, event: Event<'_>) {
        self.events += 1;
        self.hash_event(now, &event);
        if let Some(rec) = &mut self.record {
            rec.push(Recorded {
                now,
                event: OwnedEvent::from_event(&event),
            });
        }
        if self.trace != TraceMode::Off {
            let line = format!("#{} t={now} {}", self.events, fmt_event(&event));
            self.line(line);
        }
        self.checker.before(now, &event);
        self.relay.handle(now, event);
        self.actions.clear();
        while let Some(action) = self.relay.poll_action() {
            self.checker.on_action(&action);
            self.hash_action(&action);
            self.digest.action(&action);
            if self.trace != TraceMode::Off {
                let line = format!("    -> {}", fmt_action(&action));
                self.line(line);
            }
            self.actions.push(action);
        }
        self.checker.after(&self.relay);
    }

    fn line(&mut self, line: String) {
        if let TraceMode::Ring(n) = self.trace
            && self.lines.len() >= n
        {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The trace lines kept.
    pub fn lines(&self) -> impl Iterator<Item = &String> {
        self.lines.iter()
    }

    /// The recorded events, if recording.
    pub fn take_recorded(&mut self) -> Vec<Recorded> {
        self.record.take().unwrap_or_default()
    }

    fn mix(&mut self, x: u64) {
        self.hash = (self.hash.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn mix_bytes(&mut self, b: &[u8]) {
        self.mix(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &x in chunks.remainder() {
            self.mix(u64::from(x));
        }
    }

    fn hash_event(&mut self, now: Millis, e: &Event<'_>) {
        self.mix(now);
        match *e {
            Event::GuestBytes(b) => {
                self.mix(1);
                self.mix_bytes(b);
            }
            Event::GuestWritten(n) => {
                self.mix(2);
                self.mix(n as u64);
            }
            Event::GuestClosed => self.mix(3),
            Event::ClientConnected(c) => {
                self.mix(4);
                self.mix(c.0);
            }
            Event::ClientBytes(c, b) => {
                self.mix(5);
                self.mix(c.0);
                self.mix_bytes(b);
            }
            Event::ClientWritten(c, n) => {
                self.mix(6);
                self.mix(c.0);
                self.mix(n as u64);
            }
            Event::ClientDisconnected(c) => {
                self.mix(7);
                self.mix(c.0);
            }
            Event::Tick => self.mix(8),
            Event::WallClock(w) => {
                self.mix(9);
                self.mix(w);
            }
        }
    }

    fn hash_action(&mut self, a: &Action) {
        match a {
            Action::Handshake { client, bytes } => {
                self.mix(11);
                self.mix(client.0);
                self.mix_bytes(bytes);
            }
            Action::ToClient { client, frame } => {
                self.mix(12);
                self.mix(client.0);
                self.mix_bytes(frame);
            }
            Action::ToGuest { frame } => {
                self.mix(13);
                self.mix_bytes(frame);
            }
            Action::Refuse { client, .. } => {
                self.mix(14);
                self.mix(client.0);
            }
            Action::CloseClient { client, .. } => {
                self.mix(15);
                self.mix(client.0);
            }
            Action::PauseClient(c) => {
                self.mix(16);
                self.mix(c.0);
            }
            Action::ResumeClient(c) => {
                self.mix(17);
                self.mix(c.0);
            }
            Action::Log(r) => {
                self.mix(18);
                self.mix(r.session.unwrap_or(0));
                self.mix_bytes(r.text.to_string().as_bytes());
            }
            Action::GuestCorrupt { skipped, .. } => {
                self.mix(19);
                self.mix(*skipped as u64);
            }
            Action::Ready => self.mix(20),
            Action::Drain => self.mix(21),
            Action::FlushExpired { client } => {
                self.mix(22);
                self.mix(client.0);
            }
            Action::StartupFailed(_) => self.mix(23),
            Action::PauseGuest => self.mix(24),
            Action::ResumeGuest => self.mix(25),
        }
    }
}

/// One frame in words: id, flags, type, size.
pub fn fmt_frame(frame: &[u8]) -> String {
    if frame.len() < PREFIX_LEN {
        return format!("{} bytes", frame.len());
    }
    let id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let t = peek_envelope(&frame[PREFIX_LEN..]).map_or("?".to_owned(), |e| e.t.to_string());
    format!("id={id} flags={:#x} {t} {}B", frame[8], frame.len())
}

/// A core event in words.
pub fn fmt_event(e: &Event<'_>) -> String {
    match *e {
        Event::GuestBytes(b) => format!("GuestBytes {}B", b.len()),
        Event::GuestWritten(n) => format!("GuestWritten {n}"),
        Event::GuestClosed => "GuestClosed".into(),
        Event::ClientConnected(c) => format!("ClientConnected {c}"),
        Event::ClientBytes(c, b) => format!("ClientBytes {c} {}B", b.len()),
        Event::ClientWritten(c, n) => format!("ClientWritten {c} {n}"),
        Event::ClientDisconnected(c) => format!("ClientDisconnected {c}"),
        Event::Tick => "Tick".into(),
        Event::WallClock(w) => format!("WallClock {w}"),
    }
}

/// A core action in words.
pub fn fmt_action(a: &Action) -> String {
    match a {
        Action::Handshake { client, bytes } => format!("Handshake {client} {}B", bytes.len()),
        Action::ToClient { client, frame } => format!("ToClient {client} {}", fmt_frame(frame)),
        Action::ToGuest { frame } => format!("ToGuest {}", fmt_frame(frame)),
        Action::Refuse { client, reason } => format!("Refuse {client}: {reason}"),
        Action::CloseClient { client, reason } => format!("CloseClient {client}: {reason}"),
        Action::PauseClient(c) => format!("PauseClient {c}"),
        Action::ResumeClient(c) => format!("ResumeClient {c}"),
        Action::Log(r) => {
            let text = r.text.to_string();
            let head: String = text.chars().take(24).collect();
            format!(
                "Log {:?} {} {}B {head:?}..",
                r.session,
                r.source.as_str(),
                text.len()
            )
        }
        Action::GuestCorrupt { error, skipped } => {
            format!("GuestCorrupt skipped {skipped}: {error}")
        }
        Action::Ready => "Ready".into(),
        Action::Drain => "Drain".into(),
        Action::FlushExpired { client } => format!("FlushExpired {client}"),
        Action::StartupFailed(why) => format!("StartupFailed: {why}"),
        Action::PauseGuest => "PauseGuest".into(),
        Action::ResumeGuest => "ResumeGuest".into(),
    }
}

/// A hash over the canonical form of what the core did: every action's
/// frame bytes and the `Display` text of every reason, then the counters at
/// the end of the run. Never `Debug` output, so a refactor that changes
/// types but not behaviour keeps the digest; a behaviour change moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u64);

impl Digest {
    /// The empty digest.
    pub fn new() -> Digest {
        Digest(0x6a09_e667_f3bc_c908)
    }

    /// The value.
    pub fn value(self) -> u64 {
        self.0
    }

    /// A digest from its value (as [`Digest::value`] gave it).
    pub fn from_value(v: u64) -> Digest {
        Digest(v)
    }

    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(7) ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.mix(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &x in chunks.remainder() {
            self.mix(u64::from(x));
        }
    }

    fn text(&mut self, t: impl std::fmt::Display) {
        self.bytes(t.to_string().as_bytes());
    }

    /// Folds in one action.
    pub fn action(&mut self, a: &Action) {
        match a {
            Action::Handshake { client, bytes } => {
                self.mix(1);
                self.mix(client.0);
                self.bytes(bytes);
            }
            Action::ToClient { client, frame } => {
                self.mix(2);
                self.mix(client.0);
                self.bytes(frame);
            }
            Action::ToGuest { frame } => {
                self.mix(3);
                self.bytes(frame);
            }
            Action::Refuse { client, reason } => {
                self.mix(4);
                self.mix(client.0);
                self.text(reason);
            }
            Action::CloseClient { client, reason } => {
                self.mix(5);
                self.mix(client.0);
                self.text(reason);
            }
            Action::PauseClient(c) => {
                self.mix(6);
                self.mix(c.0);
            }
            Action::ResumeClient(c) => {
                self.mix(7);
                self.mix(c.0);
            }
            Action::Log(r) => {
                self.mix(8);
                self.mix(r.session.map_or(0, |s| s + 1));
                self.text(r.source.as_str());
                self.bytes(r.text.to_string().as_bytes());
            }
            Action::GuestCorrupt { error, skipped } => {
                self.mix(9);
                self.text(error);
                self.mix(*skipped as u64);
            }
            Action::Ready => self.mix(10),
            Action::Drain => self.mix(11),
            Action::FlushExpired { client } => {
                self.mix(12);
                self.mix(client.0);
            }
            Action::StartupFailed(why) => {
                self.mix(13);
                self.text(why);
            }
            Action::PauseGuest => self.mix(14),
            Action::ResumeGuest => self.mix(15),
        }
    }

    /// Folds in the counters at the end of a run, field by field (a new
    /// counter must be added here: the destructuring has no `..`).
    pub fn counters(&mut self, c: &Counters) {
        let Counters {
            guest_frames_in,
            guest_bytes_in,
            guest_frames_before_ready,
            guest_corrupt,
            guest_corrupt_bytes,
            client_frames_in,
            client_bytes_in,
            frames_to_clients,
            bytes_to_clients,
            frames_to_guest,
            bytes_to_guest,
            kills_sent,
            refused_clients,
            protocol_violations,
            dropped_unowned,
            slow_consumer_closes,
            live_clients,
            live_sessions,
            queued_to_clients,
            queued_to_guest,
            generation,
            init_acks,
            init_failures,
            open_requests,
            correlations_evicted,
            correlations_retired,
            frames_for_nobody,
            workload_frames,
            notices_sent,
            departed_frames_dropped,
            execs_refused,
            late_bulk_dropped,
            clock_syncs,
            credit_control_bytes,
            credit_control_frames,
            credit_data_bytes,
            credit_data_frames,
            used_control_bytes,
            used_control_frames,
            used_data_bytes,
            used_data_frames,
            credit_blocked_control_ms,
            credit_blocked_data_ms,
            grants_ignored,
            leases_granted,
            lease_acks,
            lease_acks_ignored,
            executions_released,
            guest_pauses,
            guest_paused_ms,
        } = *c;
        for x in [
            guest_frames_in,
            guest_bytes_in,
            guest_frames_before_ready,
            guest_corrupt,
            guest_corrupt_bytes,
            client_frames_in,
            client_bytes_in,
            frames_to_clients,
            bytes_to_clients,
            frames_to_guest,
            bytes_to_guest,
            kills_sent,
            refused_clients,
            protocol_violations,
            dropped_unowned,
            slow_consumer_closes,
            live_clients,
            live_sessions,
            queued_to_clients,
            queued_to_guest,
            guest_pauses,
            guest_paused_ms,
        ] {
            self.mix(x);
        }
        // The current generation's counters; a legacy run's digest is what
        // it was before they existed.
        if generation <= 1 {
            return;
        }
        for x in [
            generation,
            init_acks,
            init_failures,
            open_requests,
            correlations_evicted,
            correlations_retired,
            frames_for_nobody,
            workload_frames,
            notices_sent,
            departed_frames_dropped,
            execs_refused,
            late_bulk_dropped,
            clock_syncs,
            credit_control_bytes,
            credit_control_frames,
            credit_data_bytes,
            credit_data_frames,
            used_control_bytes,
            used_control_frames,
            used_data_bytes,
            used_data_frames,
            credit_blocked_control_ms,
            credit_blocked_data_ms,
            grants_ignored,
            leases_granted,
            lease_acks,
            lease_acks_ignored,
            executions_released,
        ] {
            self.mix(x);
        }
    }

    /// Folds in another run's digest (a campaign, seed by seed in order).
    pub fn seed(&mut self, seed: u64, run: Digest) {
        self.mix(seed);
        self.mix(run.0);
    }
}

impl Default for Digest {
    fn default() -> Digest {
        Digest::new()
    }
}
