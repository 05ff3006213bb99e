//! The core's vocabulary: what goes in ([`Event`]), what comes out
//! ([`Action`]), how it is configured ([`Config`]) and what it counts
//! ([`Counters`]). Plain data; no behaviour lives here.

use bytes::Bytes;

use super::layout::CURRENT_SLOTS;
use super::logtext::LogText;
use super::violation::{GuestCorruption, Violation};

/// Time as a value: milliseconds since an epoch the driver chooses. The core
/// never reads a clock.
pub type Millis = u64;

/// A connection, named by the driver. Never reused by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client#{}", self.0)
    }
}

/// The handshake a new client receives before the cached ready frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeForm {
    /// `[id_offset: u32 BE]`: what the 0.4.4 SDK reads (16 clients).
    Offset,
    /// `[id_start: u32 BE][id_end_exclusive: u32 BE]`: newer SDKs (128 clients).
    Bounds,
}

/// Which protocol generation the relay speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Generation 1 (microsandbox 0.4.4): `legacy.max_clients` slots, the
    /// `legacy.handshake` prologue form ([`LegacySettings`]).
    Legacy,
    /// The current generation (microsandbox 0.7.x): 128 canonical ranges, the
    /// bounds prologue, init exchange, disconnect notices, input credit.
    Current,
    /// Whatever the guest's `core.ready` says: `v = 1` legacy, `v >= 2`
    /// current. Clients that connect earlier wait without a slot and get one
    /// at ready, in arrival order.
    Auto,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Legacy => "legacy",
            Protocol::Current => "current",
            Protocol::Auto => "auto",
        })
    }
}

/// Limits and choices. [`Config::default`] detects the generation from the
/// guest; in the legacy generation it matches the 0.4.4 SDK (16 slots, the
/// offset prologue). The settings common to both generations sit at the top;
/// those of one generation only sit in [`Config::legacy`](field@Config::legacy)
/// ([`LegacySettings`]) and [`Config::current`](field@Config::current)
/// ([`CurrentSettings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The generation to speak.
    pub protocol: Protocol,
    /// Bytes queued for one client past which its grace timer runs.
    pub client_soft_budget: usize,
    /// Bytes queued for one client at which it is closed at once.
    pub client_hard_cap: usize,
    /// Bytes queued for all clients together; reaching it closes the client
    /// holding the most.
    pub global_cap: usize,
    /// How long a client may stay over its soft budget without progress.
    pub grace: Millis,
    /// Bytes of one client's frames queued toward the guest before the relay
    /// stops accepting that client's bytes.
    pub client_to_guest_cap: usize,
    /// Bytes handed to the guest port and not yet reported written.
    pub guest_window: usize,
    /// How long a departed client's slot waits for its sessions' terminal frames.
    pub quarantine: Millis,
    /// Whether exec output is tapped into [`Action::Log`] records.
    pub exec_log: bool,
    /// The settings of the legacy generation only.
    pub legacy: LegacySettings,
    /// The settings of the current generation only.
    pub current: CurrentSettings,
}

/// The settings of the legacy generation only ([`Config::legacy`](field@Config::legacy)).
/// The default matches the 0.4.4 SDK: 16 slots, the offset prologue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySettings {
    /// Number of client slots; each owns `u32::MAX / max_clients` ids.
    pub max_clients: u32,
    /// The prologue form.
    pub handshake: HandshakeForm,
}

impl Default for LegacySettings {
    fn default() -> LegacySettings {
        LegacySettings {
            max_clients: 16,
            handshake: HandshakeForm::Offset,
        }
    }
}

/// The settings of the current generation only ([`Config::current`](field@Config::current)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentSettings {
    /// How many of the 128 canonical slots to offer.
    pub clients: u32,
    /// Open correlations one client may have; past it the oldest one that
    /// is not a session is forgotten (and counted).
    pub max_correlations: usize,
    /// Send `core.clock.sync` at ready, every `clock_period` and after a
    /// wall-clock jump.
    pub clock_sync: bool,
    /// The longest time between two clock syncs.
    pub clock_period: Millis,
    /// With range leases: the seed of the incarnations drawn for each
    /// client's ownership period. The shell seeds it from the operating
    /// system's randomness; the core itself draws no randomness.
    pub incarnation_seed: u64,
    /// A whole `core.bootstrap` frame (id 0, flags 0) handed to the guest
    /// before anything else, outside credit, for a guest agent that waits
    /// for one (0.7.13 agentd does, as its first frame).
    pub bootstrap: Option<bytes::Bytes>,
}

impl Default for CurrentSettings {
    fn default() -> CurrentSettings {
        CurrentSettings {
            clients: CURRENT_SLOTS,
            max_correlations: 1024,
            clock_sync: true,
            clock_period: 60_000,
            incarnation_seed: 0,
            bootstrap: None,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            protocol: Protocol::Auto,
            client_soft_budget: 1 << 20,
            client_hard_cap: 8 << 20,
            global_cap: 64 << 20,
            grace: 5_000,
            client_to_guest_cap: 1 << 20,
            guest_window: 256 << 10,
            quarantine: 30_000,
            exec_log: false,
            legacy: LegacySettings::default(),
            current: CurrentSettings::default(),
        }
    }
}

impl Config {
    /// The legacy generation only, as the 0.4.4 SDK expects it.
    pub fn legacy() -> Config {
        Config {
            protocol: Protocol::Legacy,
            ..Config::default()
        }
    }

    /// The current generation only.
    pub fn current() -> Config {
        Config {
            protocol: Protocol::Current,
            ..Config::default()
        }
    }

    /// The legacy generation with the bounds prologue and 128 clients.
    pub fn bounds_handshake() -> Config {
        Config {
            legacy: LegacySettings {
                max_clients: 128,
                handshake: HandshakeForm::Bounds,
            },
            ..Config::legacy()
        }
    }

    /// Ids per slot.
    pub fn step(&self) -> u32 {
        u32::MAX / self.legacy.max_clients.max(1)
    }
}

/// Something that happened, fed to [`crate::core::Relay::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Bytes read from the guest channel (any chunking; read in bounded batches).
    GuestBytes(&'a [u8]),
    /// The guest port accepted this many bytes of earlier `ToGuest` frames.
    GuestWritten(usize),
    /// The guest channel reached end of stream or failed. Guest bytes fed
    /// after it are ignored: nothing read then is the guest's.
    GuestClosed,
    /// A client connected.
    ClientConnected(ClientId),
    /// Bytes read from a client.
    ClientBytes(ClientId, &'a [u8]),
    /// This many bytes of earlier `Handshake`/`ToClient` output reached the client's socket.
    ClientWritten(ClientId, usize),
    /// The client's connection ended (EOF, error, or the driver closed it).
    ClientDisconnected(ClientId),
    /// Nothing but time passed (see [`crate::core::Relay::poll_timeout`]).
    Tick,
    /// The host's wall clock reads this (nanoseconds since the Unix epoch):
    /// the driver sends it at start, with every `Tick` and whenever the
    /// system clock was set. The core reads no clock.
    WallClock(u64),
}

/// Why a connection was refused before its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefuseReason {
    /// Every slot is taken or quarantined.
    Full {
        /// Configured slots.
        max_clients: u32,
        /// Of those, slots waiting for a departed client's sessions to end.
        quarantined: u32,
    },
    /// The guest channel is gone.
    GuestGone,
    /// The sandbox failed to start.
    StartupFailed,
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefuseReason::Full {
                max_clients,
                quarantined,
            } => write!(
                f,
                "relay full: all {max_clients} client slots in use ({quarantined} quarantined for a departed client's sessions)"
            ),
            RefuseReason::GuestGone => f.write_str("guest channel closed"),
            RefuseReason::StartupFailed => f.write_str("the sandbox failed to start"),
        }
    }
}

/// Why the relay closed a client it had accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client broke the protocol.
    Violation(Violation),
    /// The client did not read its output fast enough.
    SlowConsumer {
        /// Bytes queued for it when it was closed.
        queued: usize,
        /// Which limit it broke.
        limit: SlowLimit,
    },
    /// The guest channel is gone.
    GuestGone,
}

impl CloseReason {
    /// Whether the driver writes what is already queued for the client before
    /// closing it. Output the guest produced before it went away is delivered
    /// (within the grace period); a client closed for its own fault is cut off
    /// at once, its unwritten output discarded.
    pub fn flush_first(&self) -> bool {
        matches!(self, CloseReason::GuestGone)
    }
}

/// The output limit a slow consumer broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowLimit {
    /// Over the soft budget for a whole grace period without taking its
    /// queue down to half the budget.
    Grace,
    /// At the per-client hard cap.
    HardCap,
    /// The global cap was reached and this client held the most.
    GlobalCap,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Violation(why) => write!(f, "protocol violation: {why}"),
            CloseReason::SlowConsumer { queued, limit } => {
                let what = match limit {
                    SlowLimit::Grace => {
                        "over its soft budget for a whole grace period without taking it down to half"
                    }
                    SlowLimit::HardCap => "at its hard cap",
                    SlowLimit::GlobalCap => {
                        "holding the most while all clients together stayed over the global cap's mark"
                    }
                };
                write!(f, "slow consumer: {queued} bytes queued, {what}")
            }
            CloseReason::GuestGone => f.write_str("guest channel closed"),
        }
    }
}

/// Which stream an exec.log record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The process's stdout (no pty).
    Stdout,
    /// The process's stderr (no pty).
    Stderr,
    /// The merged pty output of a `tty: true` session.
    Output,
    /// A lifecycle marker from the relay.
    System,
}

impl LogSource {
    /// The `s` field of exec.log.
    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Output => "output",
            LogSource::System => "system",
        }
    }
}

/// One exec.log record; the driver adds the timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Relay-unique session number (from 1); `None` for `system` records.
    pub session: Option<u64>,
    /// The stream.
    pub source: LogSource,
    /// The text, whole UTF-8 characters only (decoded by the writer).
    pub text: LogText,
}

/// A side effect for the driver to perform, pulled with
/// [`crate::core::Relay::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to a new client: its id range, then the ready frame.
    Handshake {
        /// The client.
        client: ClientId,
        /// The bytes to write.
        bytes: Bytes,
    },
    /// Write a guest frame, unchanged, to a client.
    ToClient {
        /// The client.
        client: ClientId,
        /// The whole frame.
        frame: Bytes,
    },
    /// Write a frame to the guest.
    ToGuest {
        /// The whole frame.
        frame: Bytes,
    },
    /// Close a connection that never got its handshake, and log why. Protocol
    /// 0.4.4 has no message for this, so the client just sees the socket close.
    Refuse {
        /// The client.
        client: ClientId,
        /// Why.
        reason: RefuseReason,
    },
    /// Close an accepted client and log why; its unwritten output is written
    /// first when [`CloseReason::flush_first`] says so (report the writes
    /// with `ClientWritten`, and `ClientDisconnected` once it is closed),
    /// discarded otherwise. The core has already cleaned up its sessions.
    CloseClient {
        /// The client.
        client: ClientId,
        /// Why.
        reason: CloseReason,
    },
    /// A client closed with its output still to be written did not take it
    /// within the grace period: drop the connection and what is unwritten.
    FlushExpired {
        /// The client.
        client: ClientId,
    },
    /// Stop reading this client: its frames toward the guest hit the bound.
    PauseClient(ClientId),
    /// Read this client again.
    ResumeClient(ClientId),
    /// Stop reading the guest: a client's output is over its budget (or all
    /// clients' together over half the global cap). Frames already read are
    /// still delivered as events; no new reads until [`Action::ResumeGuest`].
    PauseGuest,
    /// Read the guest again.
    ResumeGuest,
    /// Append a record to exec.log.
    Log(LogRecord),
    /// The guest channel delivered something that is not a valid frame; it was
    /// skipped. Log it.
    GuestCorrupt {
        /// What was wrong.
        error: GuestCorruption,
        /// Bytes skipped to resynchronise.
        skipped: usize,
    },
    /// The guest sent `core.ready`; clients are being handshaken.
    Ready,
    /// A client asked the sandbox to shut down: start draining. Emitted after
    /// the shutdown frame's own `ToGuest`.
    Drain,
    /// The sandbox cannot start: the embedding process reports it and stops
    /// (the CLI exits non-zero). Waiting clients have been refused.
    StartupFailed(StartupFailure),
}

/// Why the sandbox could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupFailure {
    /// The guest reported its initialization failed (`core.error`
    /// `initialization_failed` before ready), in its own words.
    GuestInit {
        /// The guest's message.
        message: String,
    },
    /// `core.ready` names an input-credit contract the relay does not
    /// implement.
    UnsupportedBarrier {
        /// The version it named.
        version: u8,
    },
    /// `core.ready`'s execution policy is unusable.
    BadExecLimits {
        /// What is wrong with it.
        why: String,
    },
    /// The guest speaks another generation than the relay is configured for.
    GenerationMismatch {
        /// The configured generation.
        configured: Protocol,
        /// The `v` of the guest's `core.ready`.
        guest: u8,
    },
}

impl std::error::Error for StartupFailure {}

impl std::fmt::Display for StartupFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartupFailure::GuestInit { message } => {
                write!(f, "guest initialization failed: {message}")
            }
            StartupFailure::UnsupportedBarrier { version } => write!(
                f,
                "the guest's core.ready asks for input-credit contract {version}; this relay implements 2"
            ),
            StartupFailure::BadExecLimits { why } => {
                write!(f, "the guest's core.ready has unusable exec_limits: {why}")
            }
            StartupFailure::GenerationMismatch { configured, guest } => write!(
                f,
                "the guest speaks protocol generation {guest} but the relay is configured for {configured}"
            ),
        }
    }
}

/// Counters, readable at any time with [`crate::core::Relay::counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames read from the guest (valid ones).
    pub guest_frames_in: u64,
    /// Bytes read from the guest.
    pub guest_bytes_in: u64,
    /// Guest frames discarded before `core.ready`.
    pub guest_frames_before_ready: u64,
    /// Corrupt stretches of guest input skipped.
    pub guest_corrupt: u64,
    /// Bytes skipped inside them.
    pub guest_corrupt_bytes: u64,
    /// Frames accepted from clients.
    pub client_frames_in: u64,
    /// Bytes read from clients.
    pub client_bytes_in: u64,
    /// Frames routed to clients.
    pub frames_to_clients: u64,
    /// Bytes routed to clients (handshakes included).
    pub bytes_to_clients: u64,
    /// Frames written toward the guest (kills included).
    pub frames_to_guest: u64,
    /// Bytes written toward the guest.
    pub bytes_to_guest: u64,
    /// SIGKILL frames the relay sent for departed clients' exec sessions.
    pub kills_sent: u64,
    /// Connections refused before a handshake.
    pub refused_clients: u64,
    /// Clients closed for breaking the protocol.
    pub protocol_violations: u64,
    /// Guest frames with no live owner, dropped.
    pub dropped_unowned: u64,
    /// Clients closed as slow consumers.
    pub slow_consumer_closes: u64,
    /// Clients connected now (handshaken or waiting for ready).
    pub live_clients: u64,
    /// Sessions open now (including a departed client's, until they end).
    pub live_sessions: u64,
    /// Bytes queued for clients and not yet written, now.
    pub queued_to_clients: u64,
    /// Bytes of client frames queued toward the guest, now.
    pub queued_to_guest: u64,
    /// The generation in use: 0 until ready, 1 legacy, else the `v` of the
    /// guest's `core.ready`.
    pub generation: u64,
    /// `core.init.ack` frames sent (successes and failures).
    pub init_acks: u64,
    /// Initialization failures the guest reported.
    pub init_failures: u64,
    /// Current generation: requests open now that are not sessions.
    pub open_requests: u64,
    /// Current generation: correlations forgotten because a client had too
    /// many open.
    pub correlations_evicted: u64,
    /// Current generation: a departed client's fs, tcp and request
    /// correlations given up once the guest had taken its disconnect notice.
    pub correlations_retired: u64,
    /// Guest frames for an id no slot owns (id 0, a range boundary, the tail).
    pub frames_for_nobody: u64,
    /// Guest frames on the workload-control id, consumed.
    pub workload_frames: u64,
    /// Disconnect notices sent.
    pub notices_sent: u64,
    /// Frames of a departed client dropped instead of waiting for credit: its
    /// data, and control frames held behind that data.
    pub departed_frames_dropped: u64,
    /// Execution requests refused at the guest's execution limit.
    pub execs_refused: u64,
    /// A client's raw bulk records for a correlation the guest had just
    /// ended, dropped.
    pub late_bulk_dropped: u64,
    /// Clock syncs sent.
    pub clock_syncs: u64,
    /// Input credit granted, cumulative: control bytes.
    pub credit_control_bytes: u64,
    /// Input credit granted, cumulative: control frames.
    pub credit_control_frames: u64,
    /// Input credit granted, cumulative: data bytes.
    pub credit_data_bytes: u64,
    /// Input credit granted, cumulative: data frames.
    pub credit_data_frames: u64,
    /// Input credit used: control bytes.
    pub used_control_bytes: u64,
    /// Input credit used: control frames.
    pub used_control_frames: u64,
    /// Input credit used: data bytes.
    pub used_data_bytes: u64,
    /// Input credit used: data frames.
    pub used_data_frames: u64,
    /// Milliseconds frames waited for control credit.
    pub credit_blocked_control_ms: u64,
    /// Milliseconds frames waited for data credit. One class is counted at
    /// a time: while the head of the control queue waits too, the time
    /// counts as control's only.
    pub credit_blocked_data_ms: u64,
    /// Credit messages ignored because they would have lowered a grant.
    pub grants_ignored: u64,
    /// Range leases: connected records sent (one per client handshaken).
    pub leases_granted: u64,
    /// Range leases: the guest's disconnect acknowledgements that released
    /// a slot.
    pub lease_acks: u64,
    /// Range leases: acknowledgements for an incarnation no slot awaited,
    /// ignored.
    pub lease_acks_ignored: u64,
    /// Without range leases: a departed client's killed executions that
    /// stopped counting against the guest's limit once it had read the
    /// disconnect notice.
    pub executions_released: u64,
    /// Times the relay stopped reading the guest because output waited for
    /// a client over its budget (backpressure).
    pub guest_pauses: u64,
    /// Milliseconds the guest was not read for that, in all (up to the last
    /// resume).
    pub guest_paused_ms: u64,
}
