//! What a frame handed to the guest is: an init ack owed, the frame a
//! client sent (legacy: the first queued on its id; current: the control
//! queue's head or a slot's head), a kill or notice the relay owes a
//! departed client, a connected record, a clock sync; and what reaching the
//! guest does to the model (queues shrink, correlations are marked handed,
//! credit is charged, a notice fences what the guest will have dropped).
//! Current generation: a frame leaves only as the head of its queue, so the
//! model names its queue's head, never searches.

use agent_relay::core::ClientId;
use agent_relay::wire::payload::{
    ClockSync, RelayClientDisconnected, sigkill_frame, sigkill_frame_v,
};
use agent_relay::wire::{MsgType, PREFIX_LEN, peek_parts};
use bytes::Bytes;

use super::super::super::cbor;
use super::client::Lane;
use super::current::{Class, Ctl};
use super::frames::{frame_id, is_clock, is_type};
use super::leases::has_magic;
use super::{Fact, Facts, Model, Reached, Stray};

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

impl Model {
    /// A frame handed to the guest: the init ack owed, the client frame it
    /// must be, or the relay's kill (legacy).
    pub fn on_to_guest(&mut self, frame: &Bytes, out: &mut impl Facts) {
        out.fact(self, Fact::ToGuest(frame));
        self.inflight += frame.len();
        self.handed_bytes += frame.len() as u64;
        if self.init_ack_arrived(frame, out) {
            return;
        }
        if self.current.is_some() {
            return self.on_to_guest_current(frame, out);
        }
        let id = frame_id(frame);
        if let Some(slot) = self.layout.and_then(|l| l.slot_of(id)) {
            for k in 0..self.by_slot[slot].len() {
                let c = self.by_slot[slot][k];
                let m = &self.clients[&c];
                if let Some(pos) = m.out.iter().position(|o| o.id == id) {
                    return self.client_frame_arrived(c, pos, frame, out);
                }
                if m.kills.contains(&id) && *frame == sigkill_frame(id).into_bytes() {
                    return self.kill_arrived(c, id, out);
                }
            }
        }
        if *frame == sigkill_frame(id).into_bytes() {
            return out.fact(self, Fact::UnowedKill(id));
        }
        out.fact(self, Fact::Unmatched(frame));
    }

    /// Whether `frame` is an init ack (the one owed, judged by
    /// `inv_init_ack`).
    fn init_ack_arrived(&mut self, frame: &Bytes, out: &mut impl Facts) -> bool {
        let is_ack = frame.len() > PREFIX_LEN
            && frame[4..8] == [0; 4]
            && peek_parts(&frame[PREFIX_LEN..]).is_ok_and(|p| p.t == Some(MsgType::InitAck));
        if !is_ack {
            return false;
        }
        if self.init_acks.is_empty() {
            self.advance(|k| !k.init_acks.is_empty() || k.ready.is_some(), out);
        }
        let owed = self.init_acks.pop_front().map(|want| want == *frame);
        out.fact(self, Fact::InitAckHanded(owed));
        true
    }

    fn on_to_guest_current(&mut self, frame: &Bytes, out: &mut impl Facts) {
        if is_clock(frame, self.cur().v) {
            self.clock_queued_later();
        }
        let Some(handed) = self.identify(frame) else {
            let (stray, head) = self.stray(frame);
            return out.fact(self, Fact::UnmatchedCurrent { frame, stray, head });
        };
        let (class, slot) = self.handed_class(handed);
        let len = frame.len();
        self.advance_to_hand_off(class, len, slot, out);
        out.fact(self, Fact::Charged { class, len, slot });
        let cur = self.current.as_mut().expect("current");
        cur.handed += 1;
        if let Some(credit) = &mut cur.credit {
            credit.charge(class, len, slot);
        }
        match handed {
            Handed::Head(who) => self.head_arrived(who, frame, out),
            Handed::Turn(c, pos) => {
                let id = self.clients[&c].out[pos].id;
                out.fact(self, Fact::TurnHanded { c, id });
                self.out_arrived(c, pos, out);
            }
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
            Ctl::Kill(_, id) => *frame == sigkill_frame_v(v, id).into_bytes(),
            Ctl::Notice(c) => self.clients[&c].notice.as_ref() == Some(frame),
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

    fn head_arrived(&mut self, who: Ctl, frame: &Bytes, out: &mut impl Facts) {
        self.current.as_mut().expect("current").ctl.pop_front();
        match who {
            Ctl::Client(c, seq) => {
                let pos = self.clients[&c]
                    .out
                    .iter()
                    .position(|o| o.seq == seq)
                    .expect("identified");
                self.out_arrived(c, pos, out);
            }
            Ctl::Kill(c, id) => {
                let what = Reached::Kill;
                out.fact(self, Fact::Reached { c, what });
                self.kill_arrived(c, id, out);
            }
            Ctl::Notice(c) => {
                let what = Reached::Notice;
                out.fact(self, Fact::Reached { c, what });
                out.fact(self, Fact::NoticeHanded(c));
                self.notice_arrived(c);
            }
            Ctl::Lease(c) => self.lease_record_arrived(c, frame, out),
            Ctl::LeaseDue => self.early_lease_arrived(frame),
            Ctl::Clock => self.clock_arrived(frame, out),
        }
    }

    /// `c`'s frame at `out[pos]` reached the guest.
    fn out_arrived(&mut self, c: ClientId, pos: usize, out: &mut impl Facts) {
        let what = Reached::Frame;
        out.fact(self, Fact::Reached { c, what });
        let seq = self.cur().handed;
        let handed_bytes = self.handed_bytes;
        let m = self.clients.get_mut(&c).expect("known");
        let o = m.out.remove(pos).expect("identified");
        m.out_bytes -= o.frame.len();
        if o.opens
            && let Some(corr) = m.sessions.get_mut(&o.id)
        {
            corr.handed = true;
            corr.handed_end = Some(handed_bytes);
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
        let (lane, shutdown) = (o.lane, o.shutdown);
        if lane == Lane::Turn {
            self.turn_left(c);
        }
        out.fact(self, Fact::OutHanded { c, lane, shutdown });
        self.touch(c);
    }

    /// The legacy frame at `pos` of `c`'s queue has the handed frame's id
    /// (it was the first there with that id).
    fn client_frame_arrived(
        &mut self,
        c: ClientId,
        pos: usize,
        frame: &Bytes,
        out: &mut impl Facts,
    ) {
        let o = &self.clients[&c].out[pos];
        let (same, control, id) = (o.frame == *frame, o.control, o.id);
        let f = Fact::ClientFrameHanded {
            c,
            pos,
            same,
            control,
            id,
        };
        out.fact(self, f);
        if !same {
            return;
        }
        let m = self.clients.get_mut(&c).expect("candidate");
        let o = m.out.remove(pos).expect("found");
        m.out_bytes -= o.frame.len();
        let (lane, shutdown) = (o.lane, o.shutdown);
        if lane == Lane::Turn {
            self.turn_left(c);
        }
        out.fact(self, Fact::OutHanded { c, lane, shutdown });
        self.touch(c);
    }

    /// The SIGKILL `c` was owed for session `id` reached the guest. A
    /// violator's earlier frames (legacy) may be dropped, but never arrive
    /// late.
    fn kill_arrived(&mut self, c: ClientId, id: u32, out: &mut impl Facts) {
        out.fact(self, Fact::KillHanded { c, id });
        let current = self.current.is_some();
        let m = self.clients.get_mut(&c).expect("candidate");
        if !current && m.violated && !m.out.is_empty() {
            m.out.clear();
            m.out_bytes = 0;
            m.turns = 0;
            self.turn_order.retain(|&w| w != c);
        }
        m.kills.remove(&id);
        self.touch(c);
    }

    /// `c`'s notice reached the guest, as the control queue's head: it
    /// fences what the guest will have dropped on reading it (fs, tcp and
    /// request correlations, and executions that still count).
    fn notice_arrived(&mut self, c: ClientId) {
        let m = self
            .clients
            .get_mut(&c)
            .expect("queued notices name known clients");
        m.notice_due = false;
        m.noticed = true;
        let slot = m.slot;
        let retires = m.sessions.values().any(|s| !s.kind.is_exec() || s.counts);
        let cur = self.current.as_mut().expect("current generation");
        if retires {
            cur.fences.insert(cur.handed, slot);
        }
        self.touch(c);
    }

    fn clock_arrived(&mut self, frame: &Bytes, out: &mut impl Facts) {
        self.clock.sent(self.now);
        let want = self.clock.wall_at(self.now);
        let got = peek_parts(&frame[PREFIX_LEN..])
            .ok()
            .and_then(|p| cbor::payload::<ClockSync>(&p.payload))
            .map(|s| s.unix_time_nanos);
        out.fact(self, Fact::ClockHanded { got, want });
    }

    /// What a frame to a current guest that is no frame the model has
    /// queued where it may leave looks like, and the control queue's head.
    fn stray(&self, frame: &Bytes) -> (Stray, Option<Ctl>) {
        let head = self.cur().ctl.front().map(|e| e.who);
        let queued = || {
            self.clients
                .values()
                .any(|m| m.out.iter().any(|o| o.frame == *frame))
        };
        let stray = if matches!(head, Some(Ctl::Lease(_) | Ctl::LeaseDue)) {
            Stray::LeaseNotFirst
        } else if has_magic(frame) {
            Stray::LeaseOutOfPlace
        } else if let Some(Ctl::Notice(c)) = head
            && self.wrong_incarnation(c, frame)
        {
            Stray::WrongIncarnation
        } else if queued() {
            Stray::NotHead
        } else if is_clock(frame, self.cur().v) {
            Stray::ClockOutOfPlace
        } else if is_type(frame, MsgType::RelayClientDisconnected) {
            Stray::NoticeOutOfPlace
        } else if is_type(frame, MsgType::ExecSignal) {
            Stray::KillOutOfPlace
        } else {
            Stray::Unknown
        };
        (stray, head)
    }

    /// Whether `frame` is `c`'s disconnect notice but for its incarnation.
    fn wrong_incarnation(&self, c: ClientId, frame: &Bytes) -> bool {
        let m = &self.clients[&c];
        let range = m.range.expect("handshaken");
        m.leased
            && is_type(frame, MsgType::RelayClientDisconnected)
            && peek_parts(&frame[PREFIX_LEN..])
                .ok()
                .and_then(|p| cbor::payload::<RelayClientDisconnected>(&p.payload))
                .is_some_and(|n| {
                    (n.id_start, n.id_end_exclusive) == (range.start, range.end)
                        && n.incarnation != m.incarnation
                })
    }
}
