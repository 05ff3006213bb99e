//! `inv_range_leases` (rule `range_leases`, current generation, when the
//! guest's ready offers `relay_lease {max_format >= 1}`):
//!
//! 1. each client handshaken then gets one *connected* record (41 bytes,
//!    read with microsandbox-protocol 0.7.13's own decoder) naming its
//!    slot's canonical range; it joins the control queue at the handshake,
//!    so it reaches the guest ahead of every frame of that client (its own
//!    frames, kills and notice) and is charged to control credit;
//! 2. its incarnation is nonzero and differs from that of every owner live
//!    or awaiting the guest's acknowledgement;
//! 3. its departure's notice names that incarnation (the notice's place and
//!    the kills before it are `inv_notice_after_kills`');
//! 4. its slot goes to no new client before the guest's *disconnected ack*
//!    for it has been read (no quarantine timer: the ack ends the wait);
//! 5. at the ack the slot's correlations are over, with the executions they
//!    held; an ack for an incarnation no slot awaits is ignored. The core's
//!    counts of records, acks and ignored acks equal the model's.
//!
//! The guest's acknowledgements are read from its stream before frames
//! (`guest_in.rs`), and applied where the core reaches them.

use agent_relay::core::{ClientId, Relay};
use bytes::{Bytes, BytesMut};
use msp7::transport::{
    try_decode_relay_client_connected_from_bytes,
    try_decode_relay_client_disconnected_ack_from_bytes,
};

use super::current::{Ctl, CtlEntry};
use super::model::State;
use super::{Checker, Invariant};

/// Bytes of a lease record.
pub(super) const RECORD_LEN: usize = 41;

/// Whether a whole record carries the lease magic where a frame's body
/// would start.
pub(super) fn has_magic(b: &[u8]) -> bool {
    b.get(9..13) == Some(b"MSBL")
}

/// A guest's disconnect acknowledgement: the range it names and the
/// incarnation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack {
    start: u32,
    end: u32,
    incarnation: [u8; 16],
}

impl Ack {
    /// A whole record with the magic, if it is a well-formed acknowledgement.
    pub(super) fn read(record: &[u8]) -> Option<Ack> {
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
fn connected(frame: &[u8]) -> Option<(u32, u32, [u8; 16])> {
    if !has_magic(frame) {
        return None;
    }
    let mut buf = BytesMut::from(frame);
    match try_decode_relay_client_connected_from_bytes(&mut buf) {
        Ok(Some(r)) if buf.is_empty() => Some((r.id_start, r.id_end_exclusive, r.incarnation)),
        _ => None,
    }
}

impl Checker {
    /// `c` got its handshake: leased, its connected record is owed first,
    /// unless it already went (the core queues it just before the prologue
    /// and hands it over at once when nothing waits ahead of it).
    pub(super) fn lease_queued(&mut self, c: ClientId) {
        let Some(cur) = self.current.as_mut().filter(|c| c.leases) else {
            return;
        };
        cur.counts.granted += 1;
        let m = self.clients.get_mut(&c).expect("handshaken");
        m.leased = true;
        let (slot, range) = (m.slot, m.range.expect("handshaken"));
        match self.early_lease.take() {
            Some((s, e, inc)) if (s, e) == (range.start, range.end) => self.lease_arrived(c, inc),
            Some((s, e, _)) => {
                let why = format!(
                    "a connected record for [{s}, {e}) went to the guest, then {c} got the range [{}, {})",
                    range.start, range.end
                );
                self.fail(Invariant::RangeLeases, why);
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
    pub(super) fn lease_due_before_close(&mut self) {
        let handshaking = self
            .clients
            .values()
            .any(|m| m.state == State::Pending && (m.connecting || m.hs_due));
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
    pub(super) fn due_lease_slot(&self, frame: &[u8]) -> Option<usize> {
        let (start, _, _) = connected(frame)?;
        self.layout?.slot_of(start)
    }

    /// Whether `frame` may be the connected record of a client whose
    /// handshake follows in this event: the relay queues it just before the
    /// prologue, so it leaves at once only with the control queue empty.
    pub(super) fn is_early_lease(&self, frame: &[u8]) -> Option<usize> {
        let cur = self.cur();
        if !cur.leases || !cur.ctl.is_empty() || self.early_lease.is_some() {
            return None;
        }
        self.due_lease_slot(frame)
    }

    /// That record went: its client's handshake must follow.
    pub(super) fn early_lease_arrived(&mut self, frame: &[u8]) {
        self.early_lease = connected(frame);
    }

    /// After an event: no connected record went, or was due, without its
    /// handshake.
    pub(super) fn after_event_early_lease(&mut self) {
        if let Some((s, e, _)) = self.early_lease.take() {
            let why = format!(
                "a connected record for [{s}, {e}) went to the guest with no handshake after it"
            );
            self.fail(Invariant::RangeLeases, why);
        }
        if let Some(cur) = &mut self.current {
            let before = cur.ctl.len();
            cur.ctl.retain(|e| e.who != Ctl::LeaseDue);
            if cur.ctl.len() != before {
                let why =
                    "a client was closed to make room for a handshake that did not follow".into();
                self.fail(Invariant::RangeLeases, why);
            }
        }
    }

    /// A new client got `slot`: no departed owner of it may still await the
    /// guest's acknowledgement.
    pub(super) fn lease_slot_free(&mut self, c: ClientId, slot: usize) -> bool {
        self.checks += 1;
        let Some(&other) = self.by_slot[slot]
            .iter()
            .find(|&&o| o != c && self.clients[&o].awaiting_ack)
        else {
            return true;
        };
        let why = format!(
            "{c} got slot {slot} before the guest acknowledged the departure of its leased owner {other}"
        );
        self.fail(Invariant::RangeLeases, why);
        false
    }

    /// Whether `frame` is a connected record for `c`'s range (any
    /// incarnation: the core draws it).
    pub(super) fn is_lease_of(&self, c: ClientId, frame: &[u8]) -> bool {
        let range = self.clients[&c].range.expect("handshaken");
        connected(frame).is_some_and(|(s, e, _)| (s, e) == (range.start, range.end))
    }

    /// `c`'s connected record reached the guest (the queued one, `frame`).
    pub(super) fn lease_record_arrived(&mut self, c: ClientId, frame: &Bytes) {
        let (_, _, inc) = connected(frame).expect("identified");
        self.lease_arrived(c, inc);
    }

    /// `c`'s connected record, incarnation `inc`, reached the guest: a fresh
    /// incarnation.
    fn lease_arrived(&mut self, c: ClientId, inc: [u8; 16]) {
        self.checks += 1;
        let reused = self.clients.iter().find(|&(&o, m)| {
            o != c && m.incarnation == Some(inc) && (m.state != State::Gone || m.awaiting_ack)
        });
        if inc == [0; 16] {
            let why = format!("the connected record of {c} has a zero incarnation");
            return self.fail(Invariant::RangeLeases, why);
        }
        if let Some((&o, _)) = reused {
            let why = format!(
                "the connected record of {c} reuses the incarnation of {o}, live or awaiting its acknowledgement"
            );
            return self.fail(Invariant::RangeLeases, why);
        }
        let m = self.clients.get_mut(&c).expect("known");
        m.incarnation = Some(inc);
        let range = m.range.expect("handshaken");
        // A notice queued before the incarnation was known gets its length.
        let cur = self.current.as_mut().expect("current");
        let len = super::to_guest::notice_frame(cur.v, range, Some(inc)).len();
        for e in cur.ctl.iter_mut().filter(|e| e.who == Ctl::Notice(c)) {
            e.len = len;
        }
    }

    /// A frame, kill or notice of `c` reaches the guest: leased, its
    /// connected record went first.
    pub(super) fn lease_before(&mut self, c: ClientId, what: &str) {
        let m = &self.clients[&c];
        if m.leased && m.incarnation.is_none() {
            let why = format!("{what} of {c} reached the guest before its connected record");
            self.fail(Invariant::RangeLeases, why);
        }
    }

    /// The guest's acknowledgement, where the core reaches it: the departed
    /// owner it names lets go of its slot, with every correlation and
    /// execution; one nobody awaits is ignored.
    pub(super) fn lease_ack(&mut self, ack: Ack) {
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
        m.expire_at = None;
        for (id, corr) in std::mem::take(&mut m.sessions) {
            self.forget(c, id, corr);
        }
        self.sessions_ended(c);
        // Then the core hands over what this made fair.
        self.granted_now = true;
    }

    /// After an event: the core counted the records, acknowledgements and
    /// released executions the model did.
    pub(super) fn after_event_leases(&mut self, relay: &Relay) {
        self.after_event_early_lease();
        let Some(cur) = &self.current else {
            return;
        };
        self.checks += 1;
        let k = relay.counters();
        let (want, got) = (
            cur.counts,
            (k.leases_granted, k.lease_acks, k.lease_acks_ignored),
        );
        if (want.granted, want.acks, want.acks_ignored) != got {
            let why = format!(
                "the core counts (records, acks, ignored acks) {got:?}, the model ({}, {}, {})",
                want.granted, want.acks, want.acks_ignored
            );
            return self.fail(Invariant::RangeLeases, why);
        }
        if want.executions_released != k.executions_released {
            let why = format!(
                "the core released {} killed executions at their notices, the model {}",
                k.executions_released, want.executions_released
            );
            self.fail(Invariant::Cleanup, why);
        }
    }
}
