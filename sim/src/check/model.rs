//! The reference model: what each client connection looks like from the
//! relay's side (its state, its id range, the frames it sent that the guest
//! still owes, its open sessions, the kills it is owed, its queued bytes),
//! and how events change it. Written from the protocol, never from the
//! core's code: the message facts below are spelled out here so that a
//! mistake in the wire layer cannot fool the model and the core alike. The
//! model fails nothing itself, except the driver's contract.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agent_relay::core::{ClientId, IdRange, Millis};
use agent_relay::wire::payload::{ExecRequest, decode_payload};
use agent_relay::wire::{
    FLAG_SESSION_START, FLAG_TERMINAL, Frame, FrameDecoder, MsgType, PREFIX_LEN,
    decode_envelope_full,
};
use bytes::Bytes;

use super::fairness::Lane;
use super::refusal::Refusal;
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
    pub(super) control: bool,
    pub(super) shutdown: bool,
    /// The relay's queue it waits in (`inv_fairness`).
    pub(super) lane: Lane,
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
    /// Its bytes toward the relay, framed by the model.
    pub(super) parse: FrameDecoder,
    /// Valid frames it sent and the guest has not received yet, in order.
    pub(super) out: VecDeque<Out>,
    pub(super) out_bytes: usize,
    /// Exec sessions open when it left: each owes one SIGKILL.
    pub(super) kills: BTreeSet<u32>,
    /// Open sessions: id -> is exec.
    pub(super) sessions: BTreeMap<u32, bool>,
    /// Sessions it opened whose terminal frame has not reached it.
    pub(super) awaiting: BTreeSet<u32>,
    /// Guest frames routed to it in this event, not yet seen as `ToClient`.
    pub(super) to_client: VecDeque<Bytes>,
    /// The guest became ready while it waited: its handshake is due.
    pub(super) hs_due: bool,
    /// Bytes handed to it and not yet reported written.
    pub(super) queued: usize,
    /// Since when it is over its soft budget without progress.
    pub(super) over_since: Option<Millis>,
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
}

impl Model {
    fn new() -> Model {
        Model {
            state: State::Pending,
            connecting: true,
            bad: None,
            violated: false,
            range: None,
            parse: FrameDecoder::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            kills: BTreeSet::new(),
            sessions: BTreeMap::new(),
            awaiting: BTreeSet::new(),
            to_client: VecDeque::new(),
            hs_due: false,
            queued: 0,
            over_since: None,
            paused: false,
            expire_at: None,
            express: 0,
            turns: 0,
            since: 0,
            last_turn: 0,
            kill_lane: Lane::Express,
        }
    }

    /// Still holds its slot in the relay's eyes (a departed client's sessions
    /// or queued frames keep the slot).
    pub(super) fn holds_slot(&self) -> bool {
        self.state != State::Gone
            || !self.out.is_empty()
            || !self.kills.is_empty()
            || !self.sessions.is_empty()
    }
}

impl Checker {
    pub(super) fn guest_closed(&mut self) {
        if !self.guest_gone {
            if self.guest.finish().is_err() {
                self.corrupt_due += 1;
            }
            self.guest_gone = true;
        }
    }

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

    /// Written bytes leave the client's queue; progress restarts its grace
    /// period, and under its soft budget the period ends.
    pub(super) fn client_written(&mut self, c: ClientId, n: usize) {
        let (now, soft) = (self.now, self.cfg.client_soft_budget);
        if let Some(m) = self.clients.get_mut(&c)
            && m.state != State::Gone
        {
            let n = n.min(m.queued);
            m.queued -= n;
            self.sum_queued -= n;
            if m.queued <= soft {
                m.over_since = None;
            } else if n > 0 {
                m.over_since = Some(now);
            }
            self.touch(c);
        }
    }

    /// Departed clients whose quarantine ended lose their sessions.
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
            for id in std::mem::take(&mut m.sessions).into_keys() {
                self.owners.remove(&id);
            }
            m.expire_at = None;
        }
    }

    /// Frames the guest stream, counting corrupt stretches; the frames wait
    /// in `gq` until the actions show the core reached them.
    pub(super) fn guest_bytes(&mut self, bytes: &[u8]) {
        self.guest.extend(bytes);
        loop {
            let total = match self.guest.peek_frame() {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(_) => {
                    self.guest.resync();
                    self.corrupt_due += 1;
                    self.resyncing = true;
                    continue;
                }
            };
            let t = match decode_envelope_full(&self.guest.pending()[PREFIX_LEN..total]) {
                Ok(env) => env.t,
                Err(_) => {
                    self.guest.resync();
                    self.corrupt_due += 1;
                    self.resyncing = true;
                    continue;
                }
            };
            self.resyncing = false;
            let frame = self.guest.take_frame(total);
            self.gq
                .push_back((t, frame.id(), frame.flags(), frame.into_bytes()));
        }
        self.check_resync_candidate();
    }

    /// Applies queued guest frames until `stop` holds or none are left.
    pub(super) fn advance(&mut self, stop: impl Fn(&Checker) -> bool) {
        while !stop(self) {
            let Some((t, id, flags, frame)) = self.gq.pop_front() else {
                return;
            };
            self.guest_frame(t, id, flags, frame);
        }
    }

    /// Whether a routed frame waits for delivery to some client.
    pub(super) fn routed_waiting(&self) -> bool {
        self.touched
            .iter()
            .any(|c| self.clients.get(c).is_some_and(|m| !m.to_client.is_empty()))
    }

    fn guest_frame(&mut self, t: MsgType, id: u32, flags: u8, frame: Bytes) {
        if self.ready.is_none() {
            if t == MsgType::Ready {
                self.ready = Some(frame);
                self.ready_due = true;
                let pending: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, m)| m.state == State::Pending)
                    .map(|(&c, _)| c)
                    .collect();
                for c in pending {
                    self.clients.get_mut(&c).expect("listed").hs_due = true;
                    self.touch(c);
                }
            }
            return;
        }
        let Some(&owner) = self.owners.get(&id) else {
            return;
        };
        let m = self
            .clients
            .get_mut(&owner)
            .expect("owners name known clients");
        if flags & FLAG_TERMINAL != 0 {
            m.sessions.remove(&id);
            self.owners.remove(&id);
            if m.sessions.is_empty() {
                m.expire_at = None;
            }
        }
        if m.state == State::Live {
            m.to_client.push_back(frame);
            self.touch(owner);
        }
    }

    /// Frames a client's bytes; each valid frame joins its `out` queue, and
    /// the first invalid one (or any byte before its handshake) marks it bad.
    pub(super) fn client_bytes(&mut self, c: ClientId, bytes: &[u8]) {
        if !self.clients.contains_key(&c) {
            return;
        }
        self.touch(c);
        let m = self.clients.get_mut(&c).expect("checked");
        match m.state {
            State::Gone => return,
            State::Pending => {
                m.bad.get_or_insert(Refusal::BeforeHandshake);
                return;
            }
            State::Live => {}
        }
        if m.bad.is_some() {
            return;
        }
        m.parse.extend(bytes);
        loop {
            let m = self.clients.get_mut(&c).expect("checked");
            let frame = match m.parse.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    m.bad = Some(Refusal::BadLength);
                    break;
                }
            };
            if let Err(why) = self.accept(c, frame) {
                let m = self.clients.get_mut(&c).expect("checked");
                m.bad = Some(why);
                break;
            }
        }
        if bytes.len() > self.read_max {
            let why = format!(
                "fed {} bytes in one read, over {}",
                bytes.len(),
                self.read_max
            );
            self.fail(Invariant::DriverContract, why);
        }
    }

    /// Whether the relay must accept `frame` from `c` (then it is queued
    /// toward the guest, and a session-opening frame opens its session), or
    /// the rule it breaks, checked in the order the protocol states them:
    /// range, envelope, type, sender, flags, payload, session.
    fn accept(&mut self, c: ClientId, frame: Frame) -> Result<(), Refusal> {
        let max = self.cfg.max_correlations.max(1);
        let m = self.clients.get_mut(&c).expect("checked");
        let range = m.range.expect("live clients have a range");
        let id = frame.id();
        if !range.contains(id) {
            return Err(Refusal::OutOfRange { id });
        }
        let env = decode_envelope_full(frame.body()).map_err(|_| Refusal::Envelope { id })?;
        let t = env.t;
        if !spec_legacy(t) {
            return Err(Refusal::Envelope { id });
        }
        if !spec_client_may_send(t) {
            return Err(Refusal::NotClientType { id, t });
        }
        if frame.flags() != spec_flags(t) {
            let flags = frame.flags();
            return Err(Refusal::WrongFlags { id, flags });
        }
        if t == MsgType::ExecRequest && decode_payload::<ExecRequest>(&env.payload).is_err() {
            return Err(Refusal::BadExecRequest { id });
        }
        let start = spec_flags(t) & FLAG_SESSION_START != 0;
        if start && m.sessions.contains_key(&id) {
            return Err(Refusal::SessionAlreadyOpen { id });
        }
        if start && m.sessions.len() >= max {
            return Err(Refusal::TooManyCorrelations { id });
        }
        if start {
            let exec = t == MsgType::ExecRequest;
            m.sessions.insert(id, exec);
            m.awaiting.insert(id);
            self.owners.insert(id, c);
        }
        let control = matches!(
            t,
            MsgType::ExecSignal | MsgType::ExecResize | MsgType::Shutdown
        );
        let lane = Lane::of(m, id, control);
        m.out_bytes += frame.len();
        m.out.push_back(Out {
            id,
            frame: frame.into_bytes(),
            control,
            shutdown: t == MsgType::Shutdown,
            lane,
        });
        self.lane_joined(c, lane, 1);
        Ok(())
    }

    /// A client leaves: one SIGKILL owed per open exec session, its slot
    /// quarantined while sessions live.
    pub(super) fn depart(&mut self, c: ClientId, violated: bool) {
        let now = self.now;
        let quarantine = self.cfg.quarantine;
        let m = self
            .clients
            .get_mut(&c)
            .expect("departing clients are known");
        m.state = State::Gone;
        m.connecting = false;
        m.hs_due = false;
        m.violated = violated;
        self.sum_queued -= m.queued;
        m.queued = 0;
        m.to_client.clear();
        m.paused = false;
        m.over_since = None;
        m.kills = m
            .sessions
            .iter()
            .filter(|(_, exec)| **exec)
            .map(|(&id, _)| id)
            .collect();
        if !m.sessions.is_empty() {
            m.expire_at = Some(now + quarantine);
        }
        self.kills_joined(c);
        self.touch(c);
    }
}

/// The flags each type must carry, written out here from ARCHITECTURE.md
/// rather than taken from `MsgType::flags`, so a mutation there cannot fool
/// the model and the core alike.
fn spec_flags(t: MsgType) -> u8 {
    match t {
        MsgType::ExecExited | MsgType::ExecFailed | MsgType::FsResponse => 0x01,
        MsgType::ExecRequest | MsgType::FsRequest => 0x02,
        MsgType::Shutdown => 0x04,
        _ => 0,
    }
}

/// The 14 types of protocol 0.4.4 (P4/message.rs), independent of the
/// message table's `legacy` column.
fn spec_legacy(t: MsgType) -> bool {
    matches!(
        t,
        MsgType::Ready
            | MsgType::Shutdown
            | MsgType::ExecRequest
            | MsgType::ExecStarted
            | MsgType::ExecStdin
            | MsgType::ExecStdout
            | MsgType::ExecStderr
            | MsgType::ExecExited
            | MsgType::ExecFailed
            | MsgType::ExecResize
            | MsgType::ExecSignal
            | MsgType::FsRequest
            | MsgType::FsResponse
            | MsgType::FsData
    )
}

/// The types a host client may send (independent of `MsgType::client_may_send`).
fn spec_client_may_send(t: MsgType) -> bool {
    matches!(
        t,
        MsgType::Shutdown
            | MsgType::ExecRequest
            | MsgType::ExecStdin
            | MsgType::ExecResize
            | MsgType::ExecSignal
            | MsgType::FsRequest
            | MsgType::FsData
    )
}

/// 4 MiB, the protocol's frame limit, spelled out independently of the wire layer.
pub(super) const SPEC_MAX_FRAME_LEN: u32 = 4_194_304;

/// The id in a frame's header (`u32::MAX` if it has none).
pub(super) fn frame_id(frame: &[u8]) -> u32 {
    if frame.len() < 8 {
        return u32::MAX;
    }
    u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
}
