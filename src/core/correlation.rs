//! Rule `correlations_bounded`: what a client has open, per id. A session
//! opens with its SESSION_START frame and ends with the guest's TERMINAL
//! frame. In the current generation a client frame on an id with nothing
//! open opens a request (a ping, a touch, a type the relay does not know)
//! that the guest's terminal reply ends, so replies that open no session
//! still reach the client that asked. One client keeps at most
//! `max_correlations` open: past it the oldest request is forgotten (and
//! counted) rather than the client closed for replies that never came; only
//! more sessions than that at once is a violation.

use super::layout::Generation;
use super::relay::Relay;
use super::slot::{Carries, CorrKind, Correlation};
use super::violation::Violation;
use crate::wire::MsgType;
use crate::wire::payload::ExecRequest;

impl Relay {
    /// A client frame opens a session on `id`.
    pub(super) fn open_correlation(
        &mut self,
        slot: usize,
        id: u32,
        t: Option<MsgType>,
        kind: CorrKind,
        exec: Option<&ExecRequest>,
    ) -> Result<(), Violation> {
        if self.slots[slot].open.contains_key(&id) {
            let t = t.unwrap_or(MsgType::ExecRequest);
            return Err(Violation::SessionAlreadyOpen { id, t });
        }
        self.make_room(slot, id)?;
        let number = if kind.is_exec() {
            self.last_session += 1;
            self.last_session
        } else {
            0
        };
        let counts = kind.is_exec() && self.exec_limits.is_some();
        self.active_execs += u32::from(counts);
        self.insert(slot, id, kind, number, counts);
        self.counters.live_sessions += 1;
        if let Some(req) = exec {
            self.tap.exec_started(&mut self.actions, number, req, slot);
        }
        Ok(())
    }

    /// Current generation: a frame on an id with nothing open opens a
    /// request there. True if it did.
    pub(super) fn note_request(&mut self, slot: usize, id: u32) -> Result<bool, Violation> {
        if !matches!(self.generation, Some(Generation::Current { .. }))
            || id == 0
            || self.slots[slot].open.contains_key(&id)
        {
            return Ok(false);
        }
        self.make_room(slot, id)?;
        self.insert(slot, id, CorrKind::Request, 0, false);
        self.counters.open_requests += 1;
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
    fn make_room(&mut self, slot: usize, id: u32) -> Result<(), Violation> {
        let max = self.cfg.max_correlations.max(1);
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
        self.counters.open_requests -= 1;
        self.counters.correlations_evicted += 1;
        Ok(())
    }

    /// The guest ended what was open on `id` (its terminal frame).
    pub(super) fn close_correlation(&mut self, slot: usize, id: u32) {
        let s = &mut self.slots[slot];
        let Some(corr) = s.open.remove(&id) else {
            return;
        };
        if s.conn.is_some() {
            if s.ended.len() == super::slot::RECENTLY_ENDED {
                s.ended.pop_front();
            }
            s.ended.push_back(id);
        }
        self.forget(&corr);
        self.session_ended(slot);
    }

    /// The counters of a correlation that is gone.
    pub(super) fn forget(&mut self, corr: &Correlation) {
        if corr.kind.is_session() {
            self.counters.live_sessions -= 1;
        } else {
            self.counters.open_requests -= 1;
        }
        if corr.counts {
            self.active_execs -= 1;
        }
    }
}
