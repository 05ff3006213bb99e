//! The reference model: what each client connection looks like from the
//! relay's side (its state, its id range, the frames it sent that the guest
//! still owes, its open correlations, the kills and the notice it is owed,
//! its queued bytes), and how connections, departures and quarantine change
//! it. Client frames are judged in `client_in.rs`, guest frames in
//! `guest_in.rs`, by the facts in `spec.rs`; the current generation's shared
//! state is in `current.rs`. Written from the protocol, never from the core's
//! code. The model fails nothing itself, except the driver's contract.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agent_relay::core::{ClientId, IdRange, Millis};
use agent_relay::wire::FrameDecoder;
use bytes::Bytes;

use super::current::{Class, Ctl, CtlEntry};
use super::fairness::Lane;
use super::refusal::Refusal;
use super::spec::Kind;
use super::{Checker, Invariant};

/// Where a client connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Connected, waiting for its handshake.
    Pending,
    /// Handshaken.
    Live,
    /// Disconnected or closed.
    Gone,
}

/// A frame a client sent that the guest must receive.
#[derive(Debug)]
pub(super) struct Out {
    pub(super) id: u32,
    pub(super) frame: Bytes,
    /// It may pass the client's earlier frames (legacy: signal, resize,
    /// shutdown; current: whatever waits in the control queue).
    pub(super) control: bool,
    pub(super) shutdown: bool,
    /// The relay's queue it waits in (`inv_fairness`).
    pub(super) lane: Lane,
    pub(super) class: Class,
    /// Its number among the client's frames.
    pub(super) seq: u64,
    /// It opened the correlation on its id.
    pub(super) opens: bool,
}

/// Something open on an id.
#[derive(Debug, Clone, Copy)]
pub(super) struct Corr {
    pub(super) kind: Kind,
    /// Creation order (the oldest request is forgotten first).
    pub(super) order: u64,
    /// The frame that opened it reached the guest.
    pub(super) handed: bool,
    /// Where that frame ends in the bytes handed to the guest: once the
    /// guest port took that far, the guest may have read it.
    pub(super) handed_end: Option<u64>,
    /// For a session: that frame's hand-off number (current generation).
    pub(super) opened_at: Option<u64>,
    /// It holds one of the guest's executions (`Ready.exec_limits`).
    pub(super) counts: bool,
}

/// The model of one client connection, from the relay's side.
#[derive(Debug)]
pub(super) struct Model {
    pub(super) state: State,
    /// This event's `ClientConnected`, outcome not yet seen.
    pub(super) connecting: bool,
    /// It sent something the relay must refuse it for, and what.
    pub(super) bad: Option<Refusal>,
    /// It was closed for a protocol violation.
    pub(super) violated: bool,
    pub(super) range: Option<IdRange>,
    /// Its slot, once handshaken.
    pub(super) slot: usize,
    /// Its bytes toward the relay, framed by the model.
    pub(super) parse: FrameDecoder,
    /// Valid frames it sent and the guest has not received yet, in order.
    pub(super) out: VecDeque<Out>,
    pub(super) out_bytes: usize,
    /// Frames it sent so far (the next `Out::seq`).
    pub(super) sent: u64,
    /// Exec sessions open when it left: each owes one SIGKILL.
    pub(super) kills: BTreeSet<u32>,
    /// Current generation: it left, and its disconnect notice is owed.
    pub(super) notice_due: bool,
    /// Current generation: its disconnect notice reached the guest.
    pub(super) noticed: bool,
    /// Open correlations.
    pub(super) sessions: BTreeMap<u32, Corr>,
    /// Correlations it opened whose terminal frame has not reached it.
    pub(super) awaiting: BTreeSet<u32>,
    /// Ids whose correlation the guest ended while it was live, the latest
    /// 64 (a raw bulk record for one is late and dropped).
    pub(super) ended: VecDeque<u32>,
    /// Guest frames routed to it in this event, not yet seen as `ToClient`.
    pub(super) to_client: VecDeque<Bytes>,
    /// The guest became ready while it waited: its handshake is due.
    pub(super) hs_due: bool,
    /// Bytes handed to it and not yet reported written.
    pub(super) queued: usize,
    /// Since when it is over its soft budget (rule
    /// `backpressure_bounded_wait`): set when its queue passes the budget,
    /// kept through partial writes, cleared when the queue is down to half
    /// the budget (progress) or it leaves. Its deadline is this plus grace.
    pub(super) over_since: Option<Millis>,
    /// The relay's own bytes (its handshake, answers to its frames) handed
    /// to it since its queue was last within its soft budget: the pause
    /// does not hold them back (`inv_boundedness`).
    pub(super) own_over: usize,
    /// The last event in which it wrote its queue down to empty (its
    /// number, 0 if never; `inv_no_loss_while_reading`).
    pub(super) emptied_at: u64,
    pub(super) paused: bool,
    /// Its sessions are given up at this time (departed clients).
    pub(super) expire_at: Option<Millis>,
    /// Its frames (and kills) queued in the express lane.
    pub(super) express: usize,
    /// Its frames (and kills) queued in the turn lane.
    pub(super) turns: usize,
    /// The turn after which its current wait in the turn lane began.
    pub(super) since: u64,
    /// The last turn it got (0: none yet).
    pub(super) last_turn: u64,
    /// The lane its kills wait in.
    pub(super) kill_lane: Lane,
    /// Current generation with range leases: it was handshaken with a
    /// lease, so its connected record is owed ahead of its frames.
    pub(super) leased: bool,
    /// Its incarnation, from its connected record once that reached the
    /// guest.
    pub(super) incarnation: Option<[u8; 16]>,
    /// Leased and departed: its slot waits for the guest's acknowledgement.
    pub(super) awaiting_ack: bool,
}

impl Model {
    fn new() -> Model {
        Model {
            state: State::Pending,
            connecting: true,
            bad: None,
            violated: false,
            range: None,
            slot: 0,
            parse: FrameDecoder::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            sent: 0,
            kills: BTreeSet::new(),
            notice_due: false,
            noticed: false,
            sessions: BTreeMap::new(),
            awaiting: BTreeSet::new(),
            ended: VecDeque::new(),
            to_client: VecDeque::new(),
            hs_due: false,
            queued: 0,
            over_since: None,
            own_over: 0,
            emptied_at: 0,
            paused: false,
            expire_at: None,
            express: 0,
            turns: 0,
            since: 0,
            last_turn: 0,
            kill_lane: Lane::Express,
            leased: false,
            incarnation: None,
            awaiting_ack: false,
        }
    }

    /// Still holds its slot in the relay's eyes: connected, or departed with
    /// frames, kills or its notice still toward the guest, or with anything
    /// open (a departed client's sessions keep the slot), or, leased, with
    /// the guest's acknowledgement of its notice not read yet.
    pub(super) fn holds_slot(&self) -> bool {
        self.state != State::Gone
            || !self.out.is_empty()
            || !self.kills.is_empty()
            || self.notice_due
            || !self.sessions.is_empty()
            || self.awaiting_ack
    }

    /// What `inv_isolation` forbids a new owner to take over in the current
    /// generation: everything [`Model::holds_slot`] counts but open fs, tcp
    /// and request correlations, whose late frames `inv_no_late_reply`
    /// watches instead (the disconnect notice tells the guest to drop them).
    /// A leased departure's wait for the acknowledgement is
    /// `inv_range_leases`' to judge.
    pub(super) fn holds_slot_current(&self) -> bool {
        self.state != State::Gone
            || !self.out.is_empty()
            || !self.kills.is_empty()
            || self.notice_due
            || self.sessions.values().any(|s| s.kind.is_exec())
    }

    /// The first frame it has in the turn lane.
    pub(super) fn turn_head(&self) -> Option<&Out> {
        self.out.iter().find(|o| o.lane == Lane::Turn)
    }
}

impl Checker {
    pub(super) fn connected(&mut self, c: ClientId) {
        match self.clients.get(&c) {
            Some(m) if m.state != State::Gone => {}
            Some(_) => {
                let why = format!("driver reused the id of departed {c}");
                self.fail(Invariant::DriverContract, why);
            }
            None => {
                self.clients.insert(c, Model::new());
                self.touch(c);
            }
        }
    }

    /// Written bytes leave the client's queue (`budget.rs` says what that
    /// does to its grace period and the sum's).
    pub(super) fn client_written(&mut self, c: ClientId, n: usize) {
        if let Some(m) = self.clients.get_mut(&c)
            && m.state != State::Gone
        {
            let n = n.min(m.queued);
            m.queued -= n;
            self.sum_queued -= n;
            self.touch(c);
            self.budget_written(c);
        }
    }

    /// Departed clients whose quarantine ended lose their sessions (and, in
    /// the current generation, what the guest holds of their data).
    pub(super) fn expire(&mut self) {
        let now = self.now;
        let expired: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, m)| m.state == State::Gone && m.expire_at.is_some_and(|t| t <= now))
            .map(|(&c, _)| c)
            .collect();
        for c in expired {
            let m = self.clients.get_mut(&c).expect("listed above");
            let slot = m.slot;
            for (id, corr) in std::mem::take(&mut m.sessions) {
                self.forget(c, id, corr);
            }
            let m = self.clients.get_mut(&c).expect("listed above");
            m.expire_at = None;
            if let Some(cur) = &mut self.current {
                if let Some(credit) = &mut cur.credit {
                    credit.forget_slot(slot);
                }
                cur.fences.retain(|_, s| *s != slot);
            }
        }
    }

    /// A correlation of `c` is gone (already removed from its sessions).
    pub(super) fn forget(&mut self, c: ClientId, id: u32, corr: Corr) {
        if self.owners.get(&id) == Some(&c) {
            self.owners.remove(&id);
        }
        if let (Some(cur), true) = (&mut self.current, corr.counts) {
            cur.active_execs -= 1;
        }
    }

    /// `c`'s last correlation ended: its quarantine is over.
    pub(super) fn sessions_ended(&mut self, c: ClientId) {
        let m = self.clients.get_mut(&c).expect("known");
        if !m.sessions.is_empty() {
            return;
        }
        m.expire_at = None;
        let slot = m.slot;
        if m.state == State::Gone
            && let Some(cur) = &mut self.current
        {
            cur.fences.retain(|_, s| *s != slot);
        }
    }

    /// A client leaves: one SIGKILL owed per open exec session, its slot
    /// quarantined while anything is open. Current generation: its queued
    /// data is dropped, the kills and then its disconnect notice join the
    /// control queue.
    pub(super) fn depart(&mut self, c: ClientId, violated: bool) {
        let now = self.now;
        let quarantine = self.cfg.quarantine;
        let m = self
            .clients
            .get_mut(&c)
            .expect("departing clients are known");
        let handshaken = m.state == State::Live;
        m.state = State::Gone;
        m.connecting = false;
        m.hs_due = false;
        m.violated = violated;
        self.sum_queued -= m.queued;
        m.queued = 0;
        m.to_client.clear();
        m.paused = false;
        let over = m.over_since.take().is_some();
        m.own_over = 0;
        m.kills = m
            .sessions
            .iter()
            .filter(|(_, s)| s.kind.is_exec())
            .map(|(&id, _)| id)
            .collect();
        // Leased, the slot waits for the guest's acknowledgement, with no
        // timer (rule `range_leases`); otherwise for what is open, a while.
        m.awaiting_ack = m.leased && handshaken;
        if !m.sessions.is_empty() && !m.awaiting_ack {
            m.expire_at = Some(now + quarantine);
        }
        if self.current.is_some() && handshaken {
            self.drop_data(c);
        }
        self.kills_joined(c);
        if self.current.is_some() && handshaken {
            self.notice_joined(c);
        }
        self.budget_departed(over);
        self.touch(c);
    }

    /// Current generation: a departed client's frames still waiting in its
    /// slot's queue (its data, and control frames held behind it) are
    /// dropped, not left waiting for credit.
    fn drop_data(&mut self, c: ClientId) {
        let m = self.clients.get_mut(&c).expect("known");
        let before = m.out.len();
        let (mut bytes, mut data) = (0, 0);
        m.out.retain(|o| {
            let queued = o.lane == Lane::Turn;
            if queued {
                bytes += o.frame.len();
                data += usize::from(o.class == Class::Data);
            }
            !queued
        });
        let n = before - m.out.len();
        m.out_bytes -= bytes;
        if n == 0 {
            return;
        }
        let slot = m.slot;
        if !m.violated {
            m.turns -= n;
            if m.turns == 0 {
                self.waiting.retain(|&w| w != c);
            }
        }
        if let Some(cur) = &mut self.current {
            cur.slot_data[slot] -= data;
        }
    }

    /// Current generation: the kills, then the notice, in the control queue.
    fn notice_joined(&mut self, c: ClientId) {
        let m = self.clients.get_mut(&c).expect("known");
        m.notice_due = true;
        let (slot, range) = (m.slot, m.range.expect("handshaken"));
        let kills: Vec<u32> = m.kills.iter().copied().collect();
        let cur = self.current.as_mut().expect("current generation");
        for id in kills {
            let len = agent_relay::wire::payload::sigkill_frame_v(cur.v, id).len();
            cur.ctl.push_back(CtlEntry {
                who: Ctl::Kill(c, id),
                len,
                slot: Some(slot),
            });
        }
        let len = super::to_guest::notice_frame(cur.v, range, m.incarnation).len();
        cur.ctl.push_back(CtlEntry {
            who: Ctl::Notice(c),
            len,
            slot: Some(slot),
        });
    }
}

/// The id in a frame's header (`u32::MAX` if it has none).
pub(super) fn frame_id(frame: &[u8]) -> u32 {
    if frame.len() < 8 {
        return u32::MAX;
    }
    u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
}
