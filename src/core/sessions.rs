//! Sessions: what each slot has open, per id, and how long a departed
//! owner's slot stays taken.
//!
//! A slot owns one id range (`layout.rs`). A correlation is an id with
//! something open on it: a session (exec, fs, tcp) or, in the current
//! generation, a request that opened none (`core.ping`, `core.touch`, ...)
//! until its terminal reply. A slot outlives its client: after a client
//! departs, the slot keeps its open correlations and its frames still queued
//! toward the guest until both are gone, so a new client never receives the
//! previous owner's late frames and never races its leftover input.
//!
//! Rule `correlations_bounded`: a session opens with its SESSION_START frame
//! and ends with the guest's TERMINAL frame. In the current generation a
//! client frame on an id with nothing open opens a request (a ping, a touch,
//! a type the relay does not know) that the guest's terminal reply ends, so
//! replies that open no session still reach the client that asked. One
//! client keeps at most `max_correlations` open: past it the oldest request
//! is forgotten (and counted) rather than the client closed for replies that
//! never came; only more sessions than that at once is a violation.
//!
//! Rule `slot_quarantine`: a recycled slot never receives the previous
//! owner's late frames. A departed client's slot stays taken while anything
//! of its is open (a killed process can still print and exit after a new
//! client took the slot and reused the same ids; clients allocate ids from
//! the start of their range, so reuse is the rule, not the exception) or any
//! of its frames still waits toward the guest, but at most `quarantine`
//! milliseconds (`Timer::Quarantine`): a guest that never ends a session
//! must not cost the relay a slot forever.
//!
//! Current generation: the disconnect notice ends the wait for everything
//! but exec sessions. Once the guest has taken the notice it keeps nothing of
//! that range's fs, tcp or request state, so no more frames come for them;
//! frames it sent before are ahead, in the one ordered stream, of anything it
//! sent after. The relay learns the guest took the notice when a guest frame
//! answers a frame handed over after it (each correlation remembers the
//! hand-off number of the frame that opened it; a notice handed over sets a
//! fence at its number); from then on no frame for the old owner's fs, tcp or
//! request ids can arrive, and they are retired. Killed exec sessions stop
//! counting against the guest's execution limit then (agentd deletes them at
//! the notice and never sends their exits), but their correlations stay:
//! output agentd had queued before it read the notice may still come, so the
//! slot stays quarantined, and so closed to a new owner, until their exits
//! or the quarantine's end. This assumes a guest that handles its input in
//! order, as agentd's one reader does. With range leases (`lease.rs`) the
//! guest's acknowledgement ends all of this at once, without a timer.

use std::collections::{BTreeMap, VecDeque};

use super::logtext::Carries;
use super::timer::{Deadlines, Key, SlotDeadline, Timer};
use super::types::{Counters, Millis};
use super::violation::Violation;
use crate::wire::MsgType;

/// What an id carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CorrKind {
    /// `core.exec.request`; `tty` merges output into one `output` stream.
    Exec { tty: bool },
    /// `core.fs.request`.
    Fs,
    /// `core.tcp.connect`.
    Tcp,
    /// A request that opened no session, until its terminal reply.
    Request,
}

impl CorrKind {
    /// Every kind but a request is a session.
    pub fn is_session(self) -> bool {
        self != CorrKind::Request
    }

    pub fn is_exec(self) -> bool {
        matches!(self, CorrKind::Exec { .. })
    }
}

#[derive(Debug)]
pub(crate) struct Correlation {
    pub kind: CorrKind,
    /// Relay-unique number for exec.log (exec sessions only).
    pub number: u64,
    /// A SIGKILL was queued for it when its client departed.
    pub killed: bool,
    /// Unfinished characters of its output streams (the exec.log tap).
    pub carries: Carries,
    /// Which frame toward the guest opened it (its hand-off number), once
    /// handed over: a guest frame for it proves the guest had read that far.
    pub opened_at: Option<u64>,
    /// Relay-wide creation order, to find the oldest request to evict.
    pub order: u64,
    /// It holds one of the guest's executions (`Ready.exec_limits`).
    pub counts: bool,
}

/// What a slot has on the id a client's raw bulk record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BulkTarget {
    /// A correlation open now.
    Open,
    /// One the guest ended lately: the record is late (rule
    /// `late_bulk_dropped`).
    Late,
    /// Nothing.
    Nothing,
}

/// Ended ids a slot remembers for late bulk records.
const RECENTLY_ENDED: usize = 64;

/// One slot's correlations.
#[derive(Debug, Default)]
struct Owned {
    open: BTreeMap<u32, Correlation>,
    /// Ids of the current client whose correlation the guest ended lately
    /// (at most [`RECENTLY_ENDED`]): a raw bulk record for one of them is
    /// late, not a violation (the client could not have seen the end yet).
    ended: VecDeque<u32>,
}

/// Every slot's correlations, and what the guest proved it read.
#[derive(Debug)]
pub(super) struct Sessions {
    slots: Vec<Owned>,
    /// Correlations one slot may have open (`CurrentSettings::max_correlations`).
    max: usize,
    /// Exec sessions numbered so far.
    last_session: u64,
    /// Correlations opened so far (their creation order).
    last_corr: u64,
    /// Exec sessions that hold one of the guest's executions, sandbox-wide.
    active_execs: u32,
    /// Sessions open now (including a departed client's).
    live: u64,
    /// Requests open now.
    requests: u64,
    /// Disconnect notices handed to the guest, by hand-off number, whose
    /// slot still holds correlations the notice retires.
    fences: BTreeMap<u64, u32>,
    /// The highest hand-off number the guest has answered a frame of.
    read_to: u64,
}

fn quarantine(slot: usize) -> Key {
    Key::Slot(slot as u32, SlotDeadline::Quarantine)
}

impl Sessions {
    pub fn new(slots: usize, max_correlations: usize) -> Sessions {
        Sessions {
            slots: (0..slots).map(|_| Owned::default()).collect(),
            max: max_correlations.max(1),
            last_session: 0,
            last_corr: 0,
            active_execs: 0,
            live: 0,
            requests: 0,
            fences: BTreeMap::new(),
            read_to: 0,
        }
    }

    /// There are `slots` slots now (the generation became known).
    pub fn resize(&mut self, slots: usize) {
        self.slots.resize_with(slots, Owned::default);
    }

    /// Sessions open now.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Requests open now.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Exec sessions holding one of the guest's executions.
    pub fn active_execs(&self) -> u32 {
        self.active_execs
    }

    /// Whether `slot` still holds correlations.
    pub fn holds(&self, slot: usize) -> bool {
        !self.slots[slot].open.is_empty()
    }

    /// A new client took `slot`.
    pub fn seated(&mut self, slot: usize) {
        self.slots[slot].ended.clear();
    }

    /// What `slot` has on `id`, for a raw bulk record.
    pub fn bulk_target(&self, slot: usize, id: u32) -> BulkTarget {
        let s = &self.slots[slot];
        if s.open.contains_key(&id) {
            BulkTarget::Open
        } else if s.ended.contains(&id) {
            BulkTarget::Late
        } else {
            BulkTarget::Nothing
        }
    }

    /// The correlation open on `id` of `slot`.
    #[inline]
    pub fn get_mut(&mut self, slot: usize, id: u32) -> Option<&mut Correlation> {
        self.slots[slot].open.get_mut(&id)
    }

    /// A client frame (of type `t`) opens a session of `kind` on `id`,
    /// holding one of the guest's executions if `counts`: its number (for
    /// exec.log; 0 unless an exec session).
    pub fn open(
        &mut self,
        slot: usize,
        id: u32,
        t: Option<MsgType>,
        kind: CorrKind,
        counts: bool,
        c: &mut Counters,
    ) -> Result<u64, Violation> {
        if self.slots[slot].open.contains_key(&id) {
            let t = t.unwrap_or(MsgType::ExecRequest);
            return Err(Violation::SessionAlreadyOpen { id, t });
        }
        self.make_room(slot, id, c)?;
        let number = if kind.is_exec() {
            self.last_session += 1;
            self.last_session
        } else {
            0
        };
        self.active_execs += u32::from(counts);
        self.insert(slot, id, kind, number, counts);
        self.live += 1;
        Ok(number)
    }

    /// A frame on an id with nothing open opens a request there (current
    /// generation). True if it did.
    pub fn open_request(
        &mut self,
        slot: usize,
        id: u32,
        c: &mut Counters,
    ) -> Result<bool, Violation> {
        if id == 0 || self.slots[slot].open.contains_key(&id) {
            return Ok(false);
        }
        self.make_room(slot, id, c)?;
        self.insert(slot, id, CorrKind::Request, 0, false);
        self.requests += 1;
        Ok(true)
    }

    fn insert(&mut self, slot: usize, id: u32, kind: CorrKind, number: u64, counts: bool) {
        self.last_corr += 1;
        let corr = Correlation {
            kind,
            number,
            killed: false,
            carries: Carries::default(),
            opened_at: None,
            order: self.last_corr,
            counts,
        };
        self.slots[slot].open.insert(id, corr);
    }

    /// Keeps the slot's open correlations under the bound: the oldest
    /// request goes; with none to spare, the frame is a violation.
    fn make_room(&mut self, slot: usize, id: u32, c: &mut Counters) -> Result<(), Violation> {
        let max = self.max;
        let open = &mut self.slots[slot].open;
        if open.len() < max {
            return Ok(());
        }
        let oldest = open
            .iter()
            .filter(|(_, c)| c.kind == CorrKind::Request)
            .min_by_key(|(_, c)| c.order)
            .map(|(&id, _)| id);
        let Some(oldest) = oldest else {
            return Err(Violation::TooManyCorrelations { id, max });
        };
        open.remove(&oldest);
        self.requests -= 1;
        c.correlations_evicted += 1;
        Ok(())
    }

    /// The guest ended what was open on `id` (its terminal frame); a slot
    /// with a client (`seated`) remembers the id for late bulk records.
    pub fn close(&mut self, slot: usize, id: u32, seated: bool, deadlines: &mut Deadlines) {
        let s = &mut self.slots[slot];
        let Some(corr) = s.open.remove(&id) else {
            return;
        };
        if seated {
            if s.ended.len() == RECENTLY_ENDED {
                s.ended.pop_front();
            }
            s.ended.push_back(id);
        }
        self.forget(&corr);
        self.ended(slot, deadlines);
    }

    /// The tallies of a correlation that is gone.
    fn forget(&mut self, corr: &Correlation) {
        if corr.kind.is_session() {
            self.live -= 1;
        } else {
            self.requests -= 1;
        }
        if corr.counts {
            self.active_execs -= 1;
        }
    }

    /// A correlation of `slot` ended; with the last one the wait is over.
    fn ended(&mut self, slot: usize, deadlines: &mut Deadlines) {
        if self.slots[slot].open.is_empty() {
            deadlines.clear(quarantine(slot));
            self.fences.retain(|_, s| *s as usize != slot);
        }
    }

    /// `slot`'s client departed: its live exec sessions, by id and number,
    /// each to be killed once (they are marked killed).
    pub fn kill(&mut self, slot: usize) -> Vec<(u32, u64)> {
        self.slots[slot]
            .open
            .iter_mut()
            .filter(|(_, c)| c.kind.is_exec() && !c.killed)
            .map(|(&id, c)| {
                c.killed = true;
                (id, c.number)
            })
            .collect()
    }

    /// The frame that opened `id` of `slot` was handed over as number `seq`.
    pub fn opened(&mut self, slot: usize, id: u32, seq: u64) {
        if let Some(corr) = self.slots[slot].open.get_mut(&id) {
            corr.opened_at = Some(seq);
        }
    }

    /// `slot`'s disconnect notice was handed over as number `seq`: a fence,
    /// if the notice retires anything (fs, tcp, requests, or killed
    /// executions that hold the guest's limit).
    pub fn notice_handed(&mut self, slot: usize, seq: u64) {
        let retires = self.slots[slot]
            .open
            .values()
            .any(|c| !c.kind.is_exec() || (c.killed && c.counts));
        if retires {
            self.fences.insert(seq, slot as u32);
        }
    }

    /// Its client left: the slot waits for what is open until `at`.
    pub fn start_quarantine(&mut self, slot: usize, at: Millis, deadlines: &mut Deadlines) {
        if self.holds(slot) {
            let timer = Timer::Quarantine { slot: slot as u32 };
            deadlines.set(quarantine(slot), at, timer);
        }
    }

    /// Everything a departed owner still holds on `slot` is forgotten: its
    /// correlations and the executions they hold.
    pub fn give_up(&mut self, slot: usize, deadlines: &mut Deadlines) {
        let open = std::mem::take(&mut self.slots[slot].open);
        for corr in open.values() {
            self.forget(corr);
        }
        self.ended(slot, deadlines);
    }

    /// A guest frame answered the frame handed over as number `seq`: false
    /// if the guest was known to have read that far.
    #[inline]
    pub fn read(&mut self, seq: u64) -> bool {
        if seq <= self.read_to {
            return false;
        }
        self.read_to = seq;
        true
    }

    /// The next slot whose notice was handed over before `seq` (its fence is
    /// gone): the guest has taken that notice.
    pub fn passed_fence(&mut self, seq: u64) -> Option<usize> {
        let entry = self.fences.first_entry()?;
        if *entry.key() >= seq {
            return None;
        }
        Some(entry.remove() as usize)
    }

    /// The guest took the departed owner's notice on `slot`: its fs, tcp and
    /// request correlations are over, and its killed executions no longer
    /// count against the guest's limit unless the slot is `leased` (agentd
    /// dropped them at the notice; their exits never come, so only the
    /// quarantine ends their correlations).
    pub fn retire(&mut self, slot: usize, leased: bool, c: &mut Counters, d: &mut Deadlines) {
        for corr in self.slots[slot].open.values_mut() {
            if corr.killed && corr.counts && !leased {
                corr.counts = false;
                self.active_execs -= 1;
                c.executions_released += 1;
            }
        }
        let open = &mut self.slots[slot].open;
        let gone: Vec<u32> = open
            .iter()
            .filter(|(_, c)| !c.kind.is_exec())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(corr) = self.slots[slot].open.remove(&id) {
                self.forget(&corr);
                c.correlations_retired += 1;
            }
        }
        self.ended(slot, d);
    }

    /// Every exec session still open and not killed.
    pub fn open_execs(&mut self) -> impl Iterator<Item = &mut Correlation> {
        self.slots
            .iter_mut()
            .flat_map(|s| s.open.values_mut())
            .filter(|c| c.kind.is_exec() && !c.killed)
    }

    /// The correlations of `slot` (for `Relay::check`).
    #[cfg(any(test, feature = "testing"))]
    pub fn of_slot(&self, slot: usize) -> impl Iterator<Item = &Correlation> {
        self.slots[slot].open.values()
    }

    /// The fences, by hand-off number (for `Relay::check`).
    #[cfg(any(test, feature = "testing"))]
    pub fn fences(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.fences.iter().map(|(&seq, &slot)| (seq, slot as usize))
    }
}
