//! One seam per generation: [`Generation`] names the two protocol
//! generations, and `Dialect` is the one the relay speaks. Every place the
//! generations differ asks the dialect: how a guest frame is read, what a
//! client may send and which queue it takes, whether a frame on an id with
//! nothing open opens a request, how a departure is told to the guest, the
//! clock. The current generation's own state (its `v`, input credit, range
//! leases, the execution policy, the clock) lives in its variant, so it
//! exists only where it applies.
//!
//! The choice of generation (rule `init_before_ready`): at `core.ready` it is
//! fixed, configured or taken from the ready's `v` (1 legacy, 2 and above
//! current). A guest of the other generation than configured, a credit
//! contract other than 2, or an unusable execution policy is a start-up
//! failure, and the relay stays as it was. Before ready the generation is
//! pending: guest input is read as the legacy generation's (a type the
//! relay does not know is not a frame), and wall-clock readings are kept
//! for the first sync.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use super::client::{self, Accepted};
use super::clock::Clock;
use super::credit::{BARRIER_VERSION, Credit};
use super::layout::{IdRange, Layout, WORKLOAD_CONTROL_ID};
use super::lease::Leases;
use super::sessions::BulkTarget;
use super::types::{Config, Counters, Millis, Protocol, StartupFailure};
use super::violation::{GuestCorruption, Violation};
use crate::wire::payload::{
    ClockSync, ExecLimits, ReadyFacts, RelayClientDisconnected, build_frame_v, decode_payload,
    sigkill_frame, sigkill_frame_v,
};
use crate::wire::{
    CreditClass, EnvelopeError, FLAG_BULK, Frame, MsgType, PREFIX_LEN, bulk_header, peek_envelope,
    peek_parts,
};

/// A protocol generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Generation {
    /// Generation 1 (microsandbox 0.4.4).
    #[default]
    Legacy,
    /// The current generation (microsandbox 0.7.x; `v` 2 and above).
    Current,
}

impl Generation {
    /// Its name in reports: `legacy` or `current`.
    pub fn name(self) -> &'static str {
        match self {
            Generation::Legacy => "legacy",
            Generation::Current => "current",
        }
    }

    /// The generation of an envelope `v`: 1 (or less) legacy, 2 and above
    /// current.
    pub fn of_v(v: u8) -> Generation {
        if v >= 2 {
            Generation::Current
        } else {
            Generation::Legacy
        }
    }
}

/// What the first look at a guest frame's body found: its type, its
/// generation, where its payload lies.
pub(super) type Peeked = (Option<MsgType>, u8, Option<Range<usize>>);

/// The current generation's own state.
#[derive(Debug)]
pub(super) struct Current {
    /// The guest's `v`, written into every frame the relay builds for it.
    v: u8,
    /// Clock syncs are sent (configured, and the guest is still there).
    clock_on: bool,
    clock: Clock,
    /// Input credit, when the guest's contract has it.
    credit: Option<Credit>,
    /// Range leases, when the guest reads them.
    leases: Option<Leases>,
    /// The guest's execution policy, when its ready has one.
    exec_limits: Option<ExecLimits>,
}

/// The generation the relay speaks; see the module docs.
#[derive(Debug)]
pub(super) enum Dialect {
    /// Before ready.
    Pending {
        clock: Clock,
    },
    Legacy,
    /// Boxed: made once, at ready.
    Current(Box<Current>),
}

impl Dialect {
    pub fn new() -> Dialect {
        Dialect::Pending {
            clock: Clock::default(),
        }
    }

    /// `core.ready` of generation `v` arrived (its body `body`): the
    /// generation is fixed, or the start fails and nothing changes.
    pub fn at_ready(&mut self, v: u8, body: &[u8], cfg: &Config) -> Result<(), StartupFailure> {
        let generation = Generation::of_v(v);
        let mismatch = matches!(
            (cfg.protocol, generation),
            (Protocol::Legacy, Generation::Current) | (Protocol::Current, Generation::Legacy)
        );
        if mismatch {
            return Err(StartupFailure::GenerationMismatch {
                configured: cfg.protocol,
                guest: v,
            });
        }
        let next = match generation {
            Generation::Legacy => Dialect::Legacy,
            Generation::Current => {
                let mut current = Current::of_ready(v, body, cfg)?;
                if let Dialect::Pending { clock } = self {
                    current.clock = std::mem::take(clock);
                }
                Dialect::Current(Box::new(current))
            }
        };
        *self = next;
        Ok(())
    }

    /// The generation, once fixed.
    pub fn generation(&self) -> Option<Generation> {
        match self {
            Dialect::Pending { .. } => None,
            Dialect::Legacy => Some(Generation::Legacy),
            Dialect::Current(_) => Some(Generation::Current),
        }
    }

    /// `Counters::generation`: 0 until ready, 1 legacy, else the `v`.
    pub fn number(&self) -> u64 {
        match self {
            Dialect::Pending { .. } => 0,
            Dialect::Legacy => 1,
            Dialect::Current(c) => u64::from(c.v),
        }
    }

    /// The slots a configured generation fixes from the start (`Auto`
    /// waits for the guest's ready).
    pub fn configured_layout(cfg: &Config) -> Option<Layout> {
        match cfg.protocol {
            Protocol::Legacy => Some(Layout::legacy(cfg.legacy.max_clients)),
            Protocol::Current => Some(Layout::current(cfg.current.clients)),
            Protocol::Auto => None,
        }
    }

    /// The slots of the generation, when the configuration did not fix them.
    pub fn layout(&self, cfg: &Config) -> Option<Layout> {
        match self.generation()? {
            Generation::Legacy => Some(Layout::legacy(cfg.legacy.max_clients)),
            Generation::Current => Some(Layout::current(cfg.current.clients)),
        }
    }

    fn current(&self) -> Option<&Current> {
        match self {
            Dialect::Current(c) => Some(c),
            _ => None,
        }
    }

    fn current_mut(&mut self) -> Option<&mut Current> {
        match self {
            Dialect::Current(c) => Some(c),
            _ => None,
        }
    }

    // ---- guest frames ------------------------------------------------------

    /// A whole guest frame's first look (rule `guest_resync`): its type, its
    /// generation, where its payload lies. What is not a frame in the
    /// generation spoken is corruption: in the current generation undefined
    /// flags and a bad bulk header; otherwise (and before ready) also a type
    /// the relay does not know.
    // Inlined into its callers: returned through memory, its result cost a
    // store-forwarding stall per frame (core alone, 64 B frames: 13.7 ->
    // 15.5 M frames/s inlined).
    #[inline(always)]
    pub fn peek(&self, frame: &[u8]) -> Result<Peeked, GuestCorruption> {
        let flags = frame[PREFIX_LEN - 1];
        let body = &frame[PREFIX_LEN..];
        let current = matches!(self, Dialect::Current(_));
        if current {
            if flags == FLAG_BULK {
                bulk_header(body).map_err(GuestCorruption::Bulk)?;
                return Ok((None, 0, None));
            }
            if !crate::wire::flags_defined(flags) {
                return Err(GuestCorruption::Flags(flags));
            }
        }
        let parts = peek_parts(body).map_err(GuestCorruption::Envelope)?;
        if parts.t.is_none() && !current {
            let name = crate::wire::decode_envelope_full(body).err();
            let e = name.unwrap_or(EnvelopeError::UnknownType(String::new()));
            return Err(GuestCorruption::Envelope(e));
        }
        let payload = match &parts.payload {
            Cow::Borrowed(p) => payload_range(body, p),
            Cow::Owned(_) => None,
        };
        Ok((parts.t, parts.v, payload))
    }

    /// Whether guest records carrying the lease magic are lease records.
    #[inline]
    pub fn reads_leases(&self) -> bool {
        self.leases().is_some()
    }

    /// Whether a guest frame on `id` is the runtime's workload control (the
    /// relay's own, never a client's).
    #[inline]
    pub fn is_workload_control(&self, id: u32) -> bool {
        id == WORKLOAD_CONTROL_ID && self.current().is_some()
    }

    /// Counts a guest frame for an id no slot owns.
    pub fn count_for_nobody(&self, c: &mut Counters) {
        match self {
            Dialect::Current(_) => c.frames_for_nobody += 1,
            _ => c.dropped_unowned += 1,
        }
    }

    // ---- client frames -----------------------------------------------------

    /// Checks a client frame of the slot owning `range` (rules
    /// `own_range_only`, `corrupt_client_isolated`, `guest_survives`);
    /// `bulk` says what the slot has on an id a raw bulk record names.
    pub fn check_client_frame(
        &self,
        frame: &Frame,
        range: Option<IdRange>,
        bulk: impl FnOnce(u32) -> BulkTarget,
    ) -> Result<Accepted, Violation> {
        match self {
            Dialect::Current(_) => client::check_current(frame, range, bulk),
            _ => client::check_legacy(frame, range),
        }
    }

    /// Whether a client frame goes to the control queue (rule
    /// `control_overtakes_data`). Legacy: signals, resizes and shutdowns,
    /// unless data of their own id is queued (`behind_own`). Current: every
    /// control-class frame, unless data of its own id is queued and it is
    /// not one of those that may pass it (signal, resize, shutdown, output
    /// ack, the relay's kills: `overtakes`).
    pub fn goes_first(&self, class: CreditClass, overtakes: bool, behind_own: bool) -> bool {
        match self {
            Dialect::Current(_) => class == CreditClass::Control && (overtakes || !behind_own),
            _ => overtakes && !behind_own,
        }
    }

    /// Whether a client frame on an id with nothing open opens a request
    /// there (rule `correlations_bounded`).
    pub fn opens_requests(&self) -> bool {
        self.current().is_some()
    }

    /// The guest's execution policy (rule `exec_limit`).
    pub fn exec_limits(&self) -> Option<&ExecLimits> {
        self.current()?.exec_limits.as_ref()
    }

    // ---- departures (rule `kill_on_departure`) -----------------------------

    /// Whether a departed client's frames still queued are dropped.
    pub fn drops_departed_queue(&self) -> bool {
        self.current().is_some()
    }

    /// The relay's SIGKILL for session `id`, and whether it passes the
    /// client's queued data (legacy: it stays behind everything the client
    /// sent earlier).
    pub fn kill(&self, id: u32) -> (Bytes, bool) {
        match self.current() {
            Some(c) => (sigkill_frame_v(c.v, id).into_bytes(), true),
            None => (sigkill_frame(id).into_bytes(), false),
        }
    }

    /// The disconnect notice for the departed owner of slot `slot` (its
    /// range `range`), naming its incarnation with range leases; none in the
    /// legacy generation.
    pub fn notice(&mut self, slot: usize, range: IdRange) -> Option<Bytes> {
        let c = self.current_mut()?;
        let notice = RelayClientDisconnected {
            id_start: range.start,
            id_end_exclusive: range.end,
            incarnation: c.leases.as_mut().and_then(|l| l.depart(slot)),
        };
        let frame = build_frame_v(c.v, MsgType::RelayClientDisconnected, 0, &notice);
        Some(frame.into_bytes())
    }

    // ---- current state -----------------------------------------------------

    /// Range leases, when the guest reads them.
    pub fn leases(&self) -> Option<&Leases> {
        self.current()?.leases.as_ref()
    }

    pub fn leases_mut(&mut self) -> Option<&mut Leases> {
        self.current_mut()?.leases.as_mut()
    }

    /// Whether slot `slot` waits for the guest's lease acknowledgement.
    pub fn awaits_ack(&self, slot: usize) -> bool {
        self.leases().is_some_and(|l| l.awaits(slot))
    }

    /// Input credit, when the guest's contract has it.
    #[inline]
    pub fn credit(&self) -> Option<&Credit> {
        self.current()?.credit.as_ref()
    }

    #[inline]
    pub fn credit_mut(&mut self) -> Option<&mut Credit> {
        self.current_mut()?.credit.as_mut()
    }

    // ---- the clock (rule `clock_sync`) -------------------------------------

    /// A wall-clock reading at `now`: true if it asks for a sync (a jump, or
    /// the first reading since no periodic sync is `scheduled`).
    pub fn observe_wall(&mut self, now: Millis, wall: u64, scheduled: bool) -> bool {
        match self {
            Dialect::Pending { clock } => {
                clock.observe(now, wall);
                false
            }
            Dialect::Legacy => false,
            Dialect::Current(c) => {
                let jumped = c.clock.observe(now, wall);
                c.clock_on && (jumped || !scheduled)
            }
        }
    }

    /// Whether clock syncs are sent.
    pub fn syncs_clock(&self) -> bool {
        self.current().is_some_and(|c| c.clock_on)
    }

    /// A sync frame with the wall time at `now`, if syncs are sent and a
    /// reading arrived.
    pub fn clock_frame(&self, now: Millis) -> Option<Bytes> {
        let c = self.current().filter(|c| c.clock_on)?;
        let unix_time_nanos = c.clock.wall_at(now)?;
        let sync = ClockSync { unix_time_nanos };
        Some(build_frame_v(c.v, MsgType::ClockSync, 0, &sync).into_bytes())
    }

    /// Marks a sync frame queued; false if one already is.
    pub fn queue_clock(&mut self) -> bool {
        match self.current_mut() {
            Some(c) if !c.clock.queued => {
                c.clock.queued = true;
                true
            }
            _ => false,
        }
    }

    /// The queued sync frame was handed to the guest.
    pub fn clock_sent(&mut self) {
        if let Some(c) = self.current_mut() {
            c.clock.queued = false;
        }
    }

    /// Whether a sync frame waits in the queue toward the guest.
    #[cfg(any(test, feature = "testing"))]
    pub fn clock_queued(&self) -> bool {
        self.current().is_some_and(|c| c.clock.queued)
    }

    /// The guest is gone: nothing more is sent to it.
    pub fn guest_gone(&mut self) {
        if let Some(c) = self.current_mut() {
            c.clock_on = false;
        }
    }
}

impl Current {
    /// What a current ready says: the credit contract, range leases and the
    /// execution policy.
    fn of_ready(v: u8, body: &[u8], cfg: &Config) -> Result<Current, StartupFailure> {
        let facts = peek_envelope(body)
            .ok()
            .and_then(|env| decode_payload::<ReadyFacts>(&env.payload).ok())
            .unwrap_or_default();
        let slots = Layout::current(cfg.current.clients).slots() as usize;
        let credit = match facts.workload_transport_barrier_version {
            None => None,
            Some(BARRIER_VERSION) => Some(Credit::new(slots)),
            Some(version) => return Err(StartupFailure::UnsupportedBarrier { version }),
        };
        let leased = facts.relay_lease.is_some_and(|l| l.max_format >= 1);
        if let Some(limits) = &facts.exec_limits {
            limits
                .validate()
                .map_err(|why| StartupFailure::BadExecLimits { why })?;
        }
        Ok(Current {
            v,
            clock_on: cfg.current.clock_sync,
            clock: Clock::default(),
            credit,
            leases: leased.then(|| Leases::new(cfg.current.incarnation_seed, slots)),
            exec_limits: facts.exec_limits,
        })
    }
}

/// Where `payload`, a slice borrowed from `body`, lies inside it.
fn payload_range(body: &[u8], payload: &[u8]) -> Option<Range<usize>> {
    let start = (payload.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(payload.len())?;
    (end <= body.len()).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_generation_of_v_and_its_name() {
        assert_eq!(Generation::of_v(1), Generation::Legacy);
        assert_eq!(Generation::of_v(2), Generation::Current);
        assert_eq!(Generation::of_v(10).name(), "current");
        assert_eq!(Generation::default().name(), "legacy");
    }

    /// Legacy: only control frames pass, never their own id's data.
    /// Current: every control-class frame passes other ids' data; only the
    /// overtaking ones their own.
    #[test]
    fn core_dialect_goes_first_by_generation() {
        use CreditClass::{Control, Data};
        let legacy = Dialect::Legacy;
        assert!(legacy.goes_first(Control, true, false));
        assert!(!legacy.goes_first(Control, true, true));
        assert!(!legacy.goes_first(Control, false, false));
        let cfg = Config::default();
        let current = Dialect::Current(Box::new(Current::of_ready(10, &[], &cfg).unwrap()));
        assert!(current.goes_first(Control, false, false));
        assert!(!current.goes_first(Control, false, true));
        assert!(current.goes_first(Control, true, true));
        assert!(!current.goes_first(Data, true, false));
        let pending = Dialect::new();
        assert!(!pending.goes_first(Control, false, false), "as legacy");
    }

    #[test]
    fn core_dialect_mismatch_leaves_it_pending() {
        let mut d = Dialect::new();
        let cfg = Config::legacy();
        let e = d.at_ready(10, &[], &cfg);
        assert!(matches!(
            e,
            Err(StartupFailure::GenerationMismatch { guest: 10, .. })
        ));
        assert_eq!(d.generation(), None);
        assert_eq!(d.at_ready(1, &[], &cfg), Ok(()));
        assert_eq!(d.number(), 1);
    }
}
