//! One client connection as the relay must see it: its state, its id range
//! and slot, the frames it sent that the guest still owes, its open
//! correlations, the kills and the notice it is owed, its queued output and
//! where it stands against its soft budget.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agent_relay::core::{ClientId, IdRange, Millis};
use agent_relay::wire::FrameDecoder;
use bytes::Bytes;

use super::current::Class;
use super::refusal::Refusal;
use super::spec::Kind;

/// Where a client connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connected, waiting for its handshake.
    Pending,
    /// Handshaken.
    Live,
    /// Disconnected or closed.
    Gone,
}

/// Which of the relay's two queues toward the guest a frame waits in
/// (`inv_fairness` says how they are served).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Before any turn frame, first come first served: a control frame with
    /// nothing of its own session ahead of it (current: the control queue).
    Express,
    /// One frame per client in turn (current: the slot's queue).
    Turn,
}

/// A frame a client sent that the guest must receive.
#[derive(Debug)]
pub struct Out {
    /// Its id.
    pub id: u32,
    /// The whole frame.
    pub frame: Bytes,
    /// It may pass the client's earlier frames (legacy: signal, resize,
    /// shutdown; current: whatever waits in the control queue).
    pub control: bool,
    /// A shutdown frame: `Drain` follows it.
    pub shutdown: bool,
    /// The relay's queue it waits in.
    pub lane: Lane,
    /// Its input-credit class.
    pub class: Class,
    /// Its number among the client's frames.
    pub seq: u64,
    /// It opened the correlation on its id.
    pub opens: bool,
}

/// Something open on an id.
#[derive(Debug, Clone, Copy)]
pub struct Corr {
    /// What opened it.
    pub kind: Kind,
    /// Creation order (the oldest request is forgotten first).
    pub order: u64,
    /// The frame that opened it reached the guest.
    pub handed: bool,
    /// Where that frame ends in the bytes handed to the guest: once the
    /// guest port took that far, the guest may have read it.
    pub handed_end: Option<u64>,
    /// For a session: that frame's hand-off number (current generation).
    pub opened_at: Option<u64>,
    /// It holds one of the guest's executions (`Ready.exec_limits`).
    pub counts: bool,
}

/// One client connection, from the relay's side.
#[derive(Debug)]
pub struct Client {
    /// Where it is in its life.
    pub state: State,
    /// This event's `ClientConnected`, outcome not yet seen.
    pub connecting: bool,
    /// It sent something the relay must refuse it for, and what.
    pub bad: Option<Refusal>,
    /// It was closed for a protocol violation.
    pub violated: bool,
    /// Its id range, once handshaken.
    pub range: Option<IdRange>,
    /// Its slot, once handshaken.
    pub slot: usize,
    /// Its bytes toward the relay, framed by the model.
    pub parse: FrameDecoder,
    /// Valid frames it sent and the guest has not received yet, in order.
    pub out: VecDeque<Out>,
    /// Their bytes.
    pub out_bytes: usize,
    /// Of them, frames in the turn lane (its slot's queue).
    pub turns: usize,
    /// Frames it sent so far (the next `Out::seq`).
    pub sent: u64,
    /// Exec sessions open when it left: each owes one SIGKILL.
    pub kills: BTreeSet<u32>,
    /// Current generation: it left, and its disconnect notice is owed.
    pub notice_due: bool,
    /// Current generation: its disconnect notice reached the guest.
    pub noticed: bool,
    /// Current generation: its disconnect notice as the relay writes it
    /// (built at its departure, again when its incarnation is known).
    pub notice: Option<Bytes>,
    /// Open correlations.
    pub sessions: BTreeMap<u32, Corr>,
    /// Correlations it opened whose terminal frame has not reached it.
    pub awaiting: BTreeSet<u32>,
    /// Ids whose correlation the guest ended while it was live, the latest
    /// 64 (a raw bulk record for one is late and dropped).
    pub ended: VecDeque<u32>,
    /// Guest frames routed to it in this event, not yet seen as `ToClient`.
    pub to_client: VecDeque<Bytes>,
    /// The guest became ready while it waited: its handshake is due.
    pub hs_due: bool,
    /// Bytes handed to it and not yet reported written.
    pub queued: usize,
    /// Since when it is over its soft budget (rule
    /// `backpressure_bounded_wait`): set when its queue passes the budget,
    /// kept through partial writes, cleared when the queue is down to half
    /// the budget (progress) or it leaves. Its deadline is this plus grace.
    pub over_since: Option<Millis>,
    /// The relay's own bytes (its handshake, answers to its frames) handed
    /// to it since its queue was last within its soft budget: the pause
    /// does not hold them back.
    pub own_over: usize,
    /// The last event in which it wrote its queue down to empty (its
    /// number, 0 if never).
    pub emptied_at: u64,
    /// The core paused reading it.
    pub paused: bool,
    /// Its sessions are given up at this time (departed clients).
    pub expire_at: Option<Millis>,
    /// Current generation with range leases: it was handshaken with a
    /// lease, so its connected record is owed ahead of its frames.
    pub leased: bool,
    /// Its incarnation, from its connected record once that reached the
    /// guest.
    pub incarnation: Option<[u8; 16]>,
    /// Leased and departed: its slot waits for the guest's acknowledgement.
    pub awaiting_ack: bool,
}

impl Client {
    /// A client that just connected.
    pub fn new() -> Client {
        Client {
            state: State::Pending,
            connecting: true,
            bad: None,
            violated: false,
            range: None,
            slot: 0,
            parse: FrameDecoder::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            turns: 0,
            sent: 0,
            kills: BTreeSet::new(),
            notice_due: false,
            noticed: false,
            notice: None,
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
            leased: false,
            incarnation: None,
            awaiting_ack: false,
        }
    }

    /// Still holds its slot in the relay's eyes: connected, or departed with
    /// frames, kills or its notice still toward the guest, or with anything
    /// open (a departed client's sessions keep the slot), or, leased, with
    /// the guest's acknowledgement of its notice not read yet.
    pub fn holds_slot(&self) -> bool {
        self.state != State::Gone
            || !self.out.is_empty()
            || !self.kills.is_empty()
            || self.notice_due
            || !self.sessions.is_empty()
            || self.awaiting_ack
    }

    /// What a new owner may not take over in the current generation:
    /// everything [`Client::holds_slot`] counts but open fs, tcp and request
    /// correlations, whose late frames `inv_no_late_reply` watches instead
    /// (the disconnect notice tells the guest to drop them). A leased
    /// departure's wait for the acknowledgement is `inv_range_leases`' to
    /// judge.
    pub fn holds_slot_current(&self) -> bool {
        self.state != State::Gone
            || !self.out.is_empty()
            || !self.kills.is_empty()
            || self.notice_due
            || self.sessions.values().any(|s| s.kind.is_exec())
    }

    /// The first frame it has in the turn lane.
    pub fn turn_head(&self) -> Option<&Out> {
        self.out.iter().find(|o| o.lane == Lane::Turn)
    }

    /// Whether the relay owes it its handshake or refusal now.
    pub fn awaits_answer(&self) -> bool {
        self.state == State::Pending && (self.connecting || self.hs_due)
    }
}

/// Every client connection by id, in id order (as a `BTreeMap` would give
/// them). Drivers number clients as they connect, so the ids are kept in
/// one sorted vector and a client is found at the offset of its id from the
/// first (by bisection when ids skip); a refused client leaves a hole.
#[derive(Debug, Default)]
pub struct Clients {
    ids: Vec<ClientId>,
    all: Vec<Option<Client>>,
}

impl Clients {
    fn find(&self, c: ClientId) -> Result<usize, usize> {
        let Some(first) = self.ids.first() else {
            return Err(0);
        };
        let guess = c.0.wrapping_sub(first.0);
        if let Ok(i) = usize::try_from(guess)
            && self.ids.get(i) == Some(&c)
        {
            return Ok(i);
        }
        match self.ids.last() {
            Some(&last) if last < c => Err(self.ids.len()),
            _ => self.ids.binary_search(&c),
        }
    }

    /// The client `c`, if known.
    pub fn get(&self, c: &ClientId) -> Option<&Client> {
        self.find(*c).ok().and_then(|i| self.all[i].as_ref())
    }

    /// The client `c`, if known.
    pub fn get_mut(&mut self, c: &ClientId) -> Option<&mut Client> {
        self.find(*c).ok().and_then(|i| self.all[i].as_mut())
    }

    /// Whether `c` is known.
    pub fn contains_key(&self, c: &ClientId) -> bool {
        self.get(c).is_some()
    }

    /// Adds (or replaces) `c`.
    pub fn insert(&mut self, c: ClientId, client: Client) {
        match self.find(c) {
            Ok(i) => self.all[i] = Some(client),
            Err(i) => {
                self.ids.insert(i, c);
                self.all.insert(i, Some(client));
            }
        }
    }

    /// Forgets `c`.
    pub fn remove(&mut self, c: &ClientId) -> Option<Client> {
        let i = self.find(*c).ok()?;
        self.all[i].take()
    }

    /// Every client, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Client)> {
        self.into_iter()
    }

    /// Every client, in id order.
    pub fn values(&self) -> impl Iterator<Item = &Client> {
        self.all.iter().flatten()
    }
}

impl std::ops::Index<&ClientId> for Clients {
    type Output = Client;

    fn index(&self, c: &ClientId) -> &Client {
        self.get(c).expect("a known client")
    }
}

/// [`Clients`] in id order.
pub type ClientsIter<'a> = std::iter::FilterMap<
    std::iter::Zip<std::slice::Iter<'a, ClientId>, std::slice::Iter<'a, Option<Client>>>,
    fn((&'a ClientId, &'a Option<Client>)) -> Option<(&'a ClientId, &'a Client)>,
>;

impl<'a> IntoIterator for &'a Clients {
    type Item = (&'a ClientId, &'a Client);
    type IntoIter = ClientsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        fn present<'a>(
            (c, k): (&'a ClientId, &'a Option<Client>),
        ) -> Option<(&'a ClientId, &'a Client)> {
            k.as_ref().map(|k| (c, k))
        }
        self.ids.iter().zip(&self.all).filter_map(present)
    }
}
