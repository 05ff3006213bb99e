//! Range leases (rule `range_leases`, current generation, when the guest's
//! ready offers `relay_lease {max_format >= 1}`), as the model keeps them:
//! each handshaken client's *connected* record (41 bytes, read with
//! microsandbox-protocol 0.7.13's own decoder) joins the control queue at
//! its handshake (or went at once, just before it), its incarnation is
//! known once the record reached the guest, its departure's slot waits for
//! the guest's *disconnected ack* (no timer), and at the ack the slot's
//! correlations are over, with the executions they held; an ack nobody
//! awaits is ignored. The guest's acknowledgements are read from its stream
//! before frames (`guest_in.rs`) and applied where the core reaches them.
//! `inv_range_leases` judges.

use agent_relay::core::ClientId;
use bytes::{Bytes, BytesMut};
use msp7::transport::{
    try_decode_relay_client_connected_from_bytes,
    try_decode_relay_client_disconnected_ack_from_bytes,
};

use super::client::State;
use super::current::{Ctl, CtlEntry};
use super::frames::notice_frame;
use super::{Fact, Facts, Model};

/// Bytes of a lease record.
pub const RECORD_LEN: usize = 41;

/// Whether a whole record carries the lease magic where a frame's body
/// would start.
pub fn has_magic(b: &[u8]) -> bool {
    b.get(9..13) == Some(b"MSBL")
}

/// A guest's disconnect acknowledgement: the range it names and the
/// incarnation.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    start: u32,
    end: u32,
    incarnation: [u8; 16],
}

impl Ack {
    /// A whole record with the magic, if it is a well-formed acknowledgement.
    pub fn read(record: &[u8]) -> Option<Ack> {
        let mut buf = BytesMut::from(record);
        match try_decode_relay_client_disconnected_ack_from_bytes(&mut buf) {
            Ok(Some(a)) if buf.is_empty() => Some(Ack {
                start: a.id_start,
                end: a.id_end_exclusive,
                incarnation: a.incarnation,
            }),
            _ => None,
        }
    }
}

/// The range and incarnation of a whole connected record, if it is one.
pub fn connected(frame: &[u8]) -> Option<(u32, u32, [u8; 16])> {
    if !has_magic(frame) {
        return None;
    }
    let mut buf = BytesMut::from(frame);
    match try_decode_relay_client_connected_from_bytes(&mut buf) {
        Ok(Some(r)) if buf.is_empty() => Some((r.id_start, r.id_end_exclusive, r.incarnation)),
        _ => None,
    }
}

impl Model {
    /// `c` got its handshake: leased, its connected record is owed first,
    /// unless it already went (the core queues it just before the prologue
    /// and hands it over at once when nothing waits ahead of it).
    pub fn lease_queued(&mut self, c: ClientId, out: &mut impl Facts) {
        let Some(cur) = self.current.as_mut().filter(|c| c.leases) else {
            return;
        };
        cur.counts.granted += 1;
        let m = self.clients.get_mut(&c).expect("handshaken");
        m.leased = true;
        let (slot, range) = (m.slot, m.range.expect("handshaken"));
        match self.early_lease.take() {
            Some((s, e, inc)) if (s, e) == (range.start, range.end) => {
                self.lease_arrived(c, inc, out);
            }
            Some((s, e, _)) => {
                let record = (s, e);
                out.fact(self, Fact::EarlyLeaseMismatch { c, record, range });
            }
            None => {
                let ctl = &mut self.current.as_mut().expect("current").ctl;
                let entry = CtlEntry {
                    who: Ctl::Lease(c),
                    len: RECORD_LEN,
                    slot: Some(slot),
                };
                match ctl.iter_mut().find(|e| e.who == Ctl::LeaseDue) {
                    Some(due) => *due = entry,
                    None => ctl.push_back(entry),
                }
            }
        }
    }

    /// A client is closed for the global cap: when that makes room for a
    /// leased handshake under way, the record of the client being
    /// handshaken was queued before the closed one's kills and notice.
    pub fn lease_due_before_close(&mut self) {
        let handshaking = self.present.iter().any(|c| self.clients[c].awaits_answer());
        let Some(cur) = self.current.as_mut().filter(|c| c.leases) else {
            return;
        };
        if handshaking
            && self.early_lease.is_none()
            && !cur.ctl.iter().any(|e| e.who == Ctl::LeaseDue)
        {
            cur.ctl.push_back(CtlEntry {
                who: Ctl::LeaseDue,
                len: RECORD_LEN,
                slot: None,
            });
        }
    }

    /// The slot of a connected record, if `frame` is one.
    pub fn due_lease_slot(&self, frame: &[u8]) -> Option<usize> {
        let (start, _, _) = connected(frame)?;
        self.layout?.slot_of(start)
    }

    /// Whether `frame` may be the connected record of a client whose
    /// handshake follows in this event: the relay queues it just before the
    /// prologue, so it leaves at once only with the control queue empty.
    pub fn is_early_lease(&self, frame: &[u8]) -> Option<usize> {
        let cur = self.cur();
        if !cur.leases || !cur.ctl.is_empty() || self.early_lease.is_some() {
            return None;
        }
        self.due_lease_slot(frame)
    }

    /// That record went: its client's handshake must follow.
    pub fn early_lease_arrived(&mut self, frame: &[u8]) {
        self.early_lease = connected(frame);
    }

    /// A departed owner of `slot` other than `c` still awaiting the
    /// guest's acknowledgement, if any.
    pub fn awaiting_ack_in(&self, c: ClientId, slot: usize) -> Option<ClientId> {
        self.by_slot[slot]
            .iter()
            .copied()
            .find(|&o| o != c && self.clients[&o].awaiting_ack)
    }

    /// Whether `frame` is a connected record for `c`'s range (any
    /// incarnation: the core draws it).
    pub fn is_lease_of(&self, c: ClientId, frame: &[u8]) -> bool {
        let range = self.clients[&c].range.expect("handshaken");
        connected(frame).is_some_and(|(s, e, _)| (s, e) == (range.start, range.end))
    }

    /// `c`'s connected record reached the guest (the queued one, `frame`).
    pub fn lease_record_arrived(&mut self, c: ClientId, frame: &Bytes, out: &mut impl Facts) {
        let (_, _, inc) = connected(frame).expect("identified");
        self.lease_arrived(c, inc, out);
    }

    /// `c`'s connected record, incarnation `inc`, reached the guest.
    fn lease_arrived(&mut self, c: ClientId, inc: [u8; 16], out: &mut impl Facts) {
        out.fact(self, Fact::LeaseHanded { c, inc });
        let m = self.clients.get_mut(&c).expect("known");
        m.incarnation = Some(inc);
        let range = m.range.expect("handshaken");
        // A notice queued before the incarnation was known gets its length.
        let cur = self.current.as_mut().expect("current");
        if m.notice.is_some() {
            let notice = notice_frame(cur.v, range, Some(inc));
            for e in cur.ctl.iter_mut().filter(|e| e.who == Ctl::Notice(c)) {
                e.len = notice.len();
            }
            m.notice = Some(notice);
        }
    }

    /// The guest's acknowledgement, where the core reaches it: the departed
    /// owner it names lets go of its slot, with every correlation and
    /// execution; one nobody awaits is ignored.
    pub fn lease_ack(&mut self, ack: Ack) {
        let layout = self.layout.expect("current layout");
        let owner = layout.slot_of(ack.start).and_then(|slot| {
            let c = *self.by_slot[slot].iter().find(|&&o| {
                let m = &self.clients[&o];
                m.awaiting_ack && m.incarnation == Some(ack.incarnation)
            })?;
            let range = self.clients[&c].range.expect("handshaken");
            ((range.start, range.end) == (ack.start, ack.end)).then_some((c, slot))
        });
        let cur = self.current.as_mut().expect("current");
        let Some((c, slot)) = owner else {
            cur.counts.acks_ignored += 1;
            return;
        };
        cur.counts.acks += 1;
        cur.fences.retain(|_, s| *s != slot);
        if let Some(credit) = &mut cur.credit {
            credit.forget_slot(slot);
        }
        let m = self.clients.get_mut(&c).expect("known");
        m.awaiting_ack = false;
        if m.expire_at.take().is_some() {
            self.quarantined.retain(|&q| q != c);
        }
        for (id, corr) in std::mem::take(&mut m.sessions) {
            self.forget(c, id, corr);
        }
        self.sessions_ended(c);
        // Then the core hands over what this made fair.
        self.granted_now = true;
    }

    /// Whether a client that is or was in a slot holds incarnation `inc`:
    /// live, or departed and awaiting the guest's acknowledgement (any but
    /// `c`).
    pub fn incarnation_held(&self, c: ClientId, inc: [u8; 16]) -> Option<ClientId> {
        self.clients
            .iter()
            .find(|&(&o, m)| {
                o != c && m.incarnation == Some(inc) && (m.state != State::Gone || m.awaiting_ack)
            })
            .map(|(&o, _)| o)
    }
}
