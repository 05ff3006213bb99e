//! `inv_to_guest`: every frame a client sent arrives at the guest exactly
//! once, unaltered, and no data frame overtakes an earlier frame of its
//! client (control frames may); a client that sent something invalid is
//! closed; a shutdown frame is followed by `Drain` and `Drain` by nothing
//! else. A client closed for a protocol violation may lose what it queued.
//!
//! Current generation: the relay's own frames (init acks, kills, disconnect
//! notices, clock syncs) are matched too; a frame in the control queue must
//! be its head (first come, first served), a frame of a slot's queue its
//! slot's head; and each frame is judged against the credit and fair share
//! it had when it left (`inv_credit`, `inv_fair_credit`).

use agent_relay::core::{Action, ClientId, IdRange};
use agent_relay::wire::payload::{RelayClientDisconnected, build_frame_v, sigkill_frame};
use agent_relay::wire::{MsgType, PREFIX_LEN, peek_parts};
use bytes::Bytes;

use super::current::{Class, Ctl};
use super::fairness::Lane;
use super::model::{Model, State, frame_id};
use super::{Checker, Invariant, Issues};

/// The relay's disconnect notice for `range`, as generation `v` writes it
/// (with the departed owner's incarnation when its range was leased).
pub(super) fn notice_frame(v: u8, range: IdRange, incarnation: Option<[u8; 16]>) -> Bytes {
    let notice = RelayClientDisconnected {
        id_start: range.start,
        id_end_exclusive: range.end,
        incarnation,
    };
    build_frame_v(v, MsgType::RelayClientDisconnected, 0, &notice).into_bytes()
}

/// Which frame the model says a frame handed to the guest is.
#[derive(Debug, Clone, Copy)]
enum Handed {
    /// The control queue's head.
    Head(Ctl),
    /// The head of client `c`'s slot queue, at `out[pos]`.
    Turn(ClientId, usize),
    /// A connected record for slot `s`, whose handshake follows.
    EarlyLease(usize),
}

impl Checker {
    /// Matches a frame handed to the guest with the client frame (or the
    /// relay's kill, see `cleanup`) it must be.
    pub(super) fn on_to_guest(&mut self, frame: &Bytes) {
        self.guest_survives(frame);
        self.window_before_to_guest(frame);
        if self.init_ack_arrived(frame) {
            return;
        }
        if self.current.is_some() {
            return self.on_to_guest_current(frame);
        }
        let id = frame_id(frame);
        let slot = self.layout.and_then(|l| l.slot_of(id));
        let candidates = slot.map(|s| self.by_slot[s].clone()).unwrap_or_default();
        for c in candidates {
            let m = self
                .clients
                .get_mut(&c)
                .expect("by_slot names known clients");
            if let Some(pos) = m.out.iter().position(|o| o.id == id) {
                return self.client_frame_arrived(c, pos, frame);
            }
            if m.kills.contains(&id) && *frame == sigkill_frame(id).into_bytes() {
                return self.kill_arrived(c, id);
            }
        }
        if *frame == sigkill_frame(id).into_bytes() {
            return self.unowed_kill(id);
        }
        let why = format!(
            "frame id {id} ({} bytes) to the guest matches no frame a client sent that is still due",
            frame.len()
        );
        self.fail(Invariant::ToGuest, why);
    }

    fn on_to_guest_current(&mut self, frame: &Bytes) {
        if is_clock(frame, self.cur().v) {
            self.clock_queued_later();
        }
        let Some(handed) = self.identify(frame) else {
            return self.unmatched_current(frame);
        };
        let (class, slot) = self.handed_class(handed);
        self.advance_to_hand_off(class, frame.len(), slot);
        self.judge_credit(class, frame.len());
        self.judge_fair(class, frame.len(), slot);
        let cur = self.current.as_mut().expect("current");
        cur.handed += 1;
        if let Some(credit) = &mut cur.credit {
            credit.charge(class, frame.len(), slot);
        }
        match handed {
            Handed::Head(who) => self.head_arrived(who, frame),
            Handed::Turn(c, pos) => self.turn_arrived(c, pos),
            Handed::EarlyLease(_) => self.early_lease_arrived(frame),
        }
    }

    /// The control queue's head, if `frame` is it; else a client's slot
    /// head with `frame`'s bytes.
    fn identify(&self, frame: &Bytes) -> Option<Handed> {
        let cur = self.cur();
        if let Some(head) = cur.ctl.front()
            && self.is_entry(head.who, frame)
        {
            return Some(Handed::Head(head.who));
        }
        if let Some(s) = self.is_early_lease(frame) {
            return Some(Handed::EarlyLease(s));
        }
        let slot = self.layout?.slot_of(frame_id(frame))?;
        self.by_slot[slot].iter().find_map(|&c| {
            let m = &self.clients[&c];
            let pos = m.out.iter().position(|o| o.lane == Lane::Turn)?;
            (m.out[pos].frame == *frame).then_some(Handed::Turn(c, pos))
        })
    }

    /// Whether `frame` is the control-queue entry `who`.
    fn is_entry(&self, who: Ctl, frame: &Bytes) -> bool {
        let v = self.cur().v;
        match who {
            Ctl::Client(c, seq) => self.clients[&c]
                .out
                .iter()
                .find(|o| o.seq == seq)
                .is_some_and(|o| o.frame == *frame),
            Ctl::Kill(_, id) => {
                *frame == agent_relay::wire::payload::sigkill_frame_v(v, id).into_bytes()
            }
            Ctl::Notice(c) => {
                let m = &self.clients[&c];
                let range = m.range.expect("handshaken");
                *frame == notice_frame(v, range, m.incarnation)
            }
            Ctl::Lease(c) => self.is_lease_of(c, frame),
            Ctl::LeaseDue => self.due_lease_slot(frame).is_some(),
            Ctl::Clock => is_clock(frame, v),
        }
    }

    fn handed_class(&self, handed: Handed) -> (Class, Option<usize>) {
        match handed {
            Handed::Head(Ctl::Client(c, _) | Ctl::Kill(c, _) | Ctl::Notice(c) | Ctl::Lease(c)) => {
                (Class::Control, Some(self.clients[&c].slot))
            }
            Handed::Head(Ctl::Clock) => (Class::Control, None),
            // Control frames are charged alike whatever their slot.
            Handed::Head(Ctl::LeaseDue) => (Class::Control, None),
            Handed::EarlyLease(s) => (Class::Control, Some(s)),
            Handed::Turn(c, pos) => {
                let m = &self.clients[&c];
                (m.out[pos].class, Some(m.slot))
            }
        }
    }

    fn head_arrived(&mut self, who: Ctl, frame: &Bytes) {
        self.current.as_mut().expect("current").ctl.pop_front();
        match who {
            Ctl::Client(c, seq) => {
                let pos = self.clients[&c]
                    .out
                    .iter()
                    .position(|o| o.seq == seq)
                    .expect("identified");
                self.out_arrived(c, pos);
            }
            Ctl::Kill(c, id) => {
                self.lease_before(c, "a SIGKILL");
                self.kill_arrived(c, id);
            }
            Ctl::Notice(c) => {
                self.lease_before(c, "the disconnect notice");
                self.notice_arrived(c);
            }
            Ctl::Lease(c) => self.lease_record_arrived(c, frame),
            Ctl::LeaseDue => self.early_lease_arrived(frame),
            Ctl::Clock => self.clock_arrived(frame),
        }
    }

    /// The head of `c`'s slot queue left; after its notice nothing of a
    /// departed client's may (`inv_notice_after_kills`).
    fn turn_arrived(&mut self, c: ClientId, pos: usize) {
        let m = &self.clients[&c];
        if m.state == State::Gone && m.noticed {
            let why = format!(
                "frame id {} of departed {c} went to the guest after its disconnect notice",
                m.out[pos].id
            );
            return self.fail(Invariant::NoticeAfterKills, why);
        }
        self.out_arrived(c, pos);
    }

    /// `c`'s frame at `out[pos]` reached the guest.
    fn out_arrived(&mut self, c: ClientId, pos: usize) {
        self.lease_before(c, "a frame");
        let seq = self.cur().handed;
        let m = self.clients.get_mut(&c).expect("known");
        let o = m.out.remove(pos).expect("identified");
        m.out_bytes -= o.frame.len();
        if o.opens
            && let Some(corr) = m.sessions.get_mut(&o.id)
        {
            corr.handed = true;
            corr.handed_end = Some(self.handed_bytes);
            // A shutdown's hand-off marks the drain, not the request it
            // opens: its answer proves nothing (the relay's rule).
            if !o.shutdown {
                corr.opened_at = Some(seq);
            }
        }
        let slot = m.slot;
        if o.class == Class::Data {
            self.current.as_mut().expect("current").slot_data[slot] -= 1;
        }
        self.drain_due = o.shutdown;
        self.lane_served(c, o.lane);
        self.touch(c);
    }

    fn clock_arrived(&mut self, frame: &Bytes) {
        self.clock.sent(self.now);
        let want = self.clock.wall_at(self.now);
        let got = peek_parts(&frame[PREFIX_LEN..]).ok().and_then(|p| {
            agent_relay::wire::payload::decode_payload::<agent_relay::wire::payload::ClockSync>(
                &p.payload,
            )
            .ok()
        });
        if got.map(|s| s.unix_time_nanos) != want {
            let why =
                format!("clock sync carries {got:?}, not the wall time {want:?} of its hand-off");
            self.fail(Invariant::ToGuest, why);
        }
    }

    /// A frame to a current guest that is no frame the model has queued.
    fn unmatched_current(&mut self, frame: &Bytes) {
        let id = frame_id(frame);
        let head = self.cur().ctl.front().map(|e| e.who);
        let queued = self
            .clients
            .values()
            .any(|m| m.out.iter().any(|o| o.frame == *frame));
        let (inv, what) = if matches!(head, Some(Ctl::Lease(_) | Ctl::LeaseDue)) {
            (
                Invariant::RangeLeases,
                "not the connected record owed first",
            )
        } else if super::leases::has_magic(frame) {
            (
                Invariant::RangeLeases,
                "a lease record no handshake owes, or out of its place",
            )
        } else if let Some(Ctl::Notice(c)) = head
            && self.wrong_incarnation(c, frame)
        {
            (
                Invariant::RangeLeases,
                "the head's disconnect notice with another incarnation than its owner's",
            )
        } else if queued {
            (
                Invariant::ControlFirst,
                "a queued frame that is not the head of its queue",
            )
        } else if is_clock(frame, self.cur().v) {
            (
                Invariant::ControlFirst,
                "a clock sync out of its place in the control queue",
            )
        } else if is_type(frame, MsgType::RelayClientDisconnected) {
            (
                Invariant::NoticeAfterKills,
                "a disconnect notice no departure owes, or out of its place",
            )
        } else if is_type(frame, MsgType::ExecSignal) {
            (
                Invariant::Cleanup,
                "a SIGKILL no departed client's open exec session owes, or out of its place",
            )
        } else {
            (
                Invariant::ToGuest,
                "no frame a client sent that is still due",
            )
        };
        let why = format!(
            "frame id {id} ({} bytes) to the guest is {what}; the control queue's head is {head:?}",
            frame.len()
        );
        self.fail(inv, why);
    }

    /// The frame at `pos` of `c`'s queue arrived (it was the first frame
    /// there with its id).
    fn client_frame_arrived(&mut self, c: ClientId, pos: usize, frame: &Bytes) {
        let m = self.clients.get_mut(&c).expect("candidate");
        let o = &m.out[pos];
        let id = o.id;
        if o.frame != *frame {
            let why = format!(
                "frame for session {id} of {c} is not the next one it sent for that session (reordered, altered or duplicated)"
            );
            return self.fail(Invariant::ToGuest, why);
        }
        if !o.control && pos != 0 {
            let why = format!(
                "data frame for session {id} of {c} overtook {pos} earlier frames of the same client"
            );
            return self.fail(Invariant::ToGuest, why);
        }
        let o = m.out.remove(pos).expect("found");
        m.out_bytes -= o.frame.len();
        self.drain_due = o.shutdown;
        self.lane_served(c, o.lane);
        self.touch(c);
    }

    /// The action after a shutdown frame: true if it is the `Drain` due.
    pub(super) fn drain_follows(&mut self, action: &Action) -> bool {
        self.drain_due = false;
        if matches!(action, Action::Drain) {
            return true;
        }
        self.fail(
            Invariant::ToGuest,
            format!(
                "a shutdown frame went to the guest without Drain right after it; got {action:?}"
            ),
        );
        false
    }

    pub(super) fn on_drain(&mut self) {
        self.fail(Invariant::ToGuest, "Drain without a shutdown frame".into());
    }

    /// No shutdown frame of this event is still waiting for its `Drain`.
    pub(super) fn after_event_to_guest(&mut self) {
        if self.drain_due {
            self.fail(
                Invariant::ToGuest,
                "shutdown frame without Drain after it".into(),
            );
        }
    }

    /// A client that sent something invalid was closed in the same event.
    pub(super) fn after_client_to_guest(&self, c: ClientId, m: &Model, issues: &mut Issues) {
        match m.state {
            State::Pending if m.bad.is_some() => issues.push((
                Invariant::ToGuest,
                format!("{c} sent bytes before its handshake and was not closed"),
            )),
            State::Live if m.bad.is_some() => issues.push((
                Invariant::ToGuest,
                format!("{c} sent an invalid frame and was not closed"),
            )),
            State::Pending | State::Live | State::Gone => {}
        }
    }
}

impl Checker {
    /// Whether `frame` is `c`'s disconnect notice but for its incarnation.
    fn wrong_incarnation(&self, c: ClientId, frame: &Bytes) -> bool {
        let m = &self.clients[&c];
        let range = m.range.expect("handshaken");
        m.leased
            && is_type(frame, MsgType::RelayClientDisconnected)
            && peek_parts(&frame[PREFIX_LEN..])
                .ok()
                .and_then(|p| {
                    agent_relay::wire::payload::decode_payload::<RelayClientDisconnected>(
                        &p.payload,
                    )
                    .ok()
                })
                .is_some_and(|n| {
                    (n.id_start, n.id_end_exclusive) == (range.start, range.end)
                        && n.incarnation != m.incarnation
                })
    }
}

/// Whether `frame` carries a message of type `t`.
fn is_type(frame: &[u8], t: MsgType) -> bool {
    frame.len() > PREFIX_LEN && peek_parts(&frame[PREFIX_LEN..]).is_ok_and(|p| p.t == Some(t))
}

/// Whether `frame` is a clock sync as the relay writes it for a guest of
/// generation `v`: id 0, flags 0.
fn is_clock(frame: &[u8], v: u8) -> bool {
    frame_id(frame) == 0
        && frame.get(PREFIX_LEN - 1) == Some(&0)
        && peek_parts(&frame[PREFIX_LEN..])
            .is_ok_and(|p| p.t == Some(MsgType::ClockSync) && p.v == v)
}
