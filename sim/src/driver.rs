//! The one door into the core: feeds an event, drains the actions, runs the
//! checker around it, folds every action into the run's [`Digest`] (the
//! determinism check and the campaign's proof of unchanged behaviour), and
//! optionally records the event (for shrinking) and a trace line (the core's
//! `Display` of each event and action).

use std::collections::VecDeque;

use agent_relay::core::{Action, Config, Counters, Event, Millis, Relay};

use super::check::Checker;
use super::event::{OwnedEvent, Recorded};

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
        if let Some(rec) = &mut self.record {
            rec.push(Recorded {
                now,
                event: OwnedEvent::from_event(&event),
            });
        }
        if self.trace != TraceMode::Off {
            let line = format!("#{} t={now} {event}", self.events);
            self.line(line);
        }
        self.checker.before(now, &event);
        self.relay.handle(now, event);
        self.actions.clear();
        while let Some(action) = self.relay.poll_action() {
            self.checker.on_action(&action);
            self.digest.action(&action);
            if self.trace != TraceMode::Off {
                let line = format!("    -> {action}");
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

    /// Folds in `t`'s `Display` text (written into a buffer kept between
    /// calls).
    fn text(&mut self, t: impl std::fmt::Display) {
        use std::fmt::Write as _;
        thread_local! {
            static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        TEXT.with_borrow_mut(|buf| {
            buf.clear();
            let _ = write!(buf, "{t}");
            self.bytes(buf.as_bytes());
        });
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
                self.bytes(r.source.as_str().as_bytes());
                // The text as `Display` writes it (decoded, lossy), without
                // building it when the bytes are UTF-8 already.
                let joined = r.text.joined();
                match std::str::from_utf8(&joined) {
                    Ok(_) => self.bytes(&joined),
                    Err(_) => self.bytes(String::from_utf8_lossy(&joined).as_bytes()),
                }
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
