//! The model's side of guest frames: the guest stream is framed and judged
//! by the rules of the generation spoken (corrupt stretches counted, as the
//! relay must report them), and each frame waits in `gq` until the actions
//! show the core reached it; then it is applied: before ready, the first
//! `core.ready` fixes the generation and `core.init.resolved` is owed its
//! ack; after it, a frame reaches the owner of its id's open correlation,
//! `u32::MAX` is workload control (input credit), and in the current
//! generation a frame answering a session opened after a disconnect notice
//! shows the guest took that notice.

use agent_relay::core::{ClientId, Protocol};
use agent_relay::wire::payload::{InitAck, ReadyFacts, WorkloadTransportCredit, build_frame_v};
use agent_relay::wire::{FLAG_TERMINAL, LEN_PREFIX, MsgType, PREFIX_LEN, check_len, peek_parts};
use bytes::Bytes;

use super::super::super::cbor;
use super::client::State;
use super::current::{Class, ClockLater, Ctl, CtlEntry, Current, Layout, WORKLOAD_ID};
use super::leases;
use super::spec;
use super::{Fact, Facts, Gq, Model, frames};

/// What completing the frame the decoder holds part of did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// It took that many bytes of the read and the frame.
    Taken(usize),
    /// It gave the decoder that many bytes, but the frame is the decoder's
    /// to judge (corrupt), with the rest of the read behind it.
    Fed(usize),
    /// The read cannot complete it (or its length is not legal): nothing
    /// taken.
    Short,
}

/// What a whole frame of the guest stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// A range-lease record.
    Record,
    /// A frame of the generation spoken, and its type (`None`: a bulk
    /// record or a type the relay does not know).
    Frame(Option<MsgType>),
    /// Neither: skipped as the relay resynchronises.
    Corrupt,
}

impl Model {
    pub fn guest_closed(&mut self, out: &mut impl Facts) {
        if !self.guest_gone {
            if self.guest.finish().is_err() {
                out.fact(self, Fact::Corrupt);
            }
            self.guest_gone = true;
        }
    }

    /// Frames the guest stream, counting corrupt stretches; the frames wait
    /// in `gq` until the actions show the core reached them. While nothing
    /// is held and the stream is in step, whole frames are taken straight
    /// from the read (each copied once); the rest goes through the decoder,
    /// which resynchronises after corruption.
    pub fn guest_bytes(&mut self, bytes: &[u8], out: &mut impl Facts) {
        // The channel ended at `GuestClosed`: nothing fed after it is the
        // guest's, and the relay reads none of it.
        if self.guest_gone {
            return;
        }
        let mut rest = bytes;
        while !self.resyncing {
            if self.guest.buffered() > 0 {
                // The frame the decoder holds part of gets just the bytes it
                // misses.
                match self.complete_held(rest, out) {
                    Held::Taken(used) => rest = &rest[used..],
                    Held::Fed(used) => {
                        rest = &rest[used..];
                        break;
                    }
                    Held::Short => break,
                }
                continue;
            }
            let Some(head) = rest.first_chunk::<4>() else {
                break;
            };
            let len = u32::from_be_bytes(*head);
            let total = LEN_PREFIX + len as usize;
            if check_len(len).is_err() || rest.len() < total {
                break;
            }
            let whole = &rest[..total];
            let look = self.look(whole);
            if look == Look::Corrupt {
                break; // the decoder skips it, as it resynchronises
            }
            self.taken(look, Bytes::copy_from_slice(whole), out);
            rest = &rest[total..];
        }
        self.guest.extend(rest);
        loop {
            let total = match self.guest.peek_frame() {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(_) => {
                    self.corrupt(out);
                    continue;
                }
            };
            let look = self.look(&self.guest.pending()[..total]);
            if look == Look::Corrupt {
                self.corrupt(out);
                continue;
            }
            let frame = self.guest.take_frame(total).into_bytes();
            self.taken(look, frame, out);
        }
        out.fact(self, Fact::GuestFramed);
    }

    /// Completes the frame the decoder holds the start of from `rest`, and
    /// takes it (see [`Held`]).
    fn complete_held(&mut self, rest: &[u8], out: &mut impl Facts) -> Held {
        let Some(need) = frames::completes(self.guest.pending(), rest) else {
            return Held::Short;
        };
        self.guest.extend(&rest[..need]);
        let Ok(Some(total)) = self.guest.peek_frame() else {
            return Held::Fed(need);
        };
        let look = self.look(&self.guest.pending()[..total]);
        if look == Look::Corrupt {
            return Held::Fed(need);
        }
        let frame = self.guest.take_frame(total).into_bytes();
        self.taken(look, frame, out);
        Held::Taken(need)
    }

    /// What a whole frame of the guest stream is: with range leases, a
    /// record with the lease magic is read as one before any look at it as
    /// a frame; else a frame of the generation spoken, or corrupt.
    fn look(&self, whole: &[u8]) -> Look {
        if self.parse_lease && leases::has_magic(whole) {
            return Look::Record;
        }
        match self.judge(whole) {
            Some(t) => Look::Frame(t),
            None => Look::Corrupt,
        }
    }

    /// A whole record or frame of the guest stream was taken: it waits to
    /// be applied (a record that is no acknowledgement is corrupt, skipped
    /// whole).
    fn taken(&mut self, look: Look, frame: Bytes, out: &mut impl Facts) {
        self.resyncing = false;
        let t = match look {
            Look::Record => {
                match leases::Ack::read(&frame) {
                    Some(ack) => self.gq.push_back(Gq {
                        t: None,
                        id: 0,
                        flags: 0,
                        frame,
                        ack: Some(ack),
                    }),
                    None => out.fact(self, Fact::Corrupt),
                }
                return;
            }
            Look::Frame(t) => t,
            Look::Corrupt => unreachable!("corrupt frames are skipped, not taken"),
        };
        self.budget.largest_from_guest = self.budget.largest_from_guest.max(frame.len());
        if !self.parse_ready && t == Some(MsgType::Ready) {
            self.parse_ready = true;
            let v = generation(&frame);
            self.parse_current = self.cfg.protocol != Protocol::Legacy && v >= 2;
            self.parse_lease = self.parse_current
                && ready_facts(&frame)
                    .relay_lease
                    .is_some_and(|l| l.max_format >= 1);
        }
        self.gq.push_back(Gq {
            t,
            id: frames::frame_id(&frame),
            flags: frame[PREFIX_LEN - 1],
            frame,
            ack: None,
        });
    }

    fn corrupt(&mut self, out: &mut impl Facts) {
        self.guest.resync();
        self.resyncing = true;
        out.fact(self, Fact::Corrupt);
    }

    /// A whole guest frame's type if it is a frame in the generation spoken
    /// (`Some(None)`: a bulk record or an unknown type), `None` if corrupt.
    /// Before ready and in the legacy generation the envelope must name a
    /// known type; after a current ready, flags must be defined and a bulk
    /// record's header must check.
    fn judge(&self, frame: &[u8]) -> Option<Option<MsgType>> {
        let (flags, body) = (frame[PREFIX_LEN - 1], &frame[PREFIX_LEN..]);
        if !self.parse_current {
            return cbor::envelope_type(body).map(Some);
        }
        if flags == 0x08 {
            return spec::bulk_header(body).map(|_| None);
        }
        if !spec::flags_defined(flags) {
            return None;
        }
        peek_parts(body).ok().map(|p| p.t)
    }

    /// Applies queued guest frames until `stop` holds or none are left.
    pub fn advance(&mut self, stop: impl Fn(&Model) -> bool, out: &mut impl Facts) {
        while !stop(self) {
            let Some(g) = self.gq.pop_front() else {
                return;
            };
            self.guest_frame(g, out);
        }
    }

    /// Applies the guest frames the core had reached when it handed over a
    /// frame of `class`, `len` bytes, from `slot`. While the guest's bytes
    /// are read, the core hands frames over only after an action the
    /// checker saw (then the frame may leave now) or after a credit grant
    /// it took, whichever comes first and lets the frame leave; never past
    /// a frame that makes the core act.
    pub fn advance_to_hand_off(
        &mut self,
        class: Class,
        len: usize,
        slot: Option<usize>,
        out: &mut impl Facts,
    ) {
        if self.pump_open && self.cur().admits(class, len, slot) {
            return;
        }
        while !self.gq_front_acts() {
            self.granted_now = false;
            let g = self.gq.pop_front().expect("front checked");
            self.guest_frame(g, out);
            if self.granted_now && self.cur().admits(class, len, slot) {
                return;
            }
        }
    }

    /// Whether a routed frame waits for delivery to some client.
    pub fn routed_waiting(&self) -> bool {
        self.touched
            .iter()
            .any(|c| self.clients.get(c).is_some_and(|m| !m.to_client.is_empty()))
    }

    /// Whether the next queued guest frame makes the core act (a routed
    /// frame for a live client, or anything before ready): a frame handed
    /// to the guest now was handed before the core reached it.
    pub fn gq_front_acts(&self) -> bool {
        let Some(g) = self.gq.front() else {
            return true;
        };
        if self.ready.is_none() {
            let init = g.t == Some(MsgType::InitResolved) && generation(&g.frame) >= 2;
            return g.t == Some(MsgType::Ready) || init;
        }
        g.id != WORKLOAD_ID
            && self
                .owners
                .get(&g.id)
                .is_some_and(|o| self.clients[o].state == State::Live)
    }

    fn guest_frame(&mut self, g: Gq, out: &mut impl Facts) {
        if self.ready.is_none() {
            return self.before_ready(g, out);
        }
        self.clock_queued_later();
        if self.current.is_some() {
            return self.guest_frame_current(g, out);
        }
        let Some(&owner) = self.owners.get(&g.id) else {
            return;
        };
        self.exec_frame(owner, &g, out);
        self.end_if_terminal(owner, &g);
        self.deliver(owner, g.frame);
    }

    fn before_ready(&mut self, g: Gq, out: &mut impl Facts) {
        match g.t {
            Some(MsgType::Ready) => self.on_first_ready(g.frame, out),
            // A generation-1 guest has no init exchange: never answered.
            Some(MsgType::InitResolved) if generation(&g.frame) >= 2 => {
                let v = generation(&g.frame);
                let ack = build_frame_v(v, MsgType::InitAck, 0, &InitAck::default());
                self.init_acks.push_back(ack.into_bytes());
            }
            _ => {}
        }
    }

    /// The first `core.ready`: clients waiting get their handshakes; a
    /// current one fixes the layout, the credit contract, the exec limit
    /// and asks for the first clock sync.
    fn on_first_ready(&mut self, frame: Bytes, out: &mut impl Facts) {
        let v = generation(&frame);
        if self.parse_current {
            let facts = ready_facts(&frame);
            let layout = Layout::current(self.cfg.current.clients);
            self.layout = Some(layout);
            let barrier = facts.workload_transport_barrier_version == Some(2);
            let limit = facts.exec_limits.map(|l| l.max_executions);
            let mut cur = Current::new(v, barrier, limit, layout.slots());
            cur.leases = self.parse_lease;
            cur.clock_later = Some(ClockLater::Ready);
            self.current = Some(cur);
        } else if self.layout.is_none() {
            self.layout = Some(Layout::legacy(self.cfg.legacy.max_clients));
        }
        self.ready = Some(frame);
        out.fact(self, Fact::FirstReady);
        let pending: Vec<ClientId> = self
            .present
            .iter()
            .copied()
            .filter(|c| self.clients[c].state == State::Pending)
            .collect();
        for c in pending {
            self.clients.get_mut(&c).expect("listed").hs_due = true;
            self.touch(c);
        }
    }

    /// A current guest frame: workload control, a frame for nobody, or the
    /// frame of the correlation open on its id. A frame for an id whose
    /// newest owner's opening frame has not reached the guest yet cannot
    /// answer that owner: it is the previous owner's, if that one had the
    /// id open.
    fn guest_frame_current(&mut self, g: Gq, out: &mut impl Facts) {
        if let Some(ack) = g.ack {
            return self.lease_ack(ack);
        }
        if g.id == WORKLOAD_ID {
            return self.workload(&g);
        }
        let layout = self.layout.expect("current layout");
        let Some(slot) = layout.slot_of(g.id) else {
            return;
        };
        let Some(&newest) = self.owners.get(&g.id) else {
            return;
        };
        // The guest cannot answer a frame its port has not taken yet.
        let unasked = self.clients[&newest].sessions[&g.id]
            .handed_end
            .is_none_or(|end| end > self.written_bytes);
        let previous = self.by_slot[slot].iter().copied().find(|&o| {
            o != newest
                && self.clients[&o].state == State::Gone
                && self.clients[&o].sessions.contains_key(&g.id)
        });
        let owner = match previous {
            Some(prev) if unasked => prev,
            _ => newest,
        };
        // As the relay does: the terminal frame ends the correlation, then
        // the answer shows what the guest has read, then the frame goes on.
        let opened_at = self.clients[&owner].sessions[&g.id].opened_at;
        self.exec_frame(owner, &g, out);
        self.end_if_terminal(owner, &g);
        if let Some(seq) = opened_at {
            self.guest_read(seq);
        }
        self.deliver(owner, g.frame);
    }

    /// A frame for an exec session `owner` has open: the exec.log's tap
    /// reads it.
    fn exec_frame(&self, owner: ClientId, g: &Gq, out: &mut impl Facts) {
        let exec = self.clients[&owner]
            .sessions
            .get(&g.id)
            .is_some_and(|s| s.kind.is_exec());
        if exec {
            let (id, t, flags, frame) = (g.id, g.t, g.flags, &g.frame);
            out.fact(
                self,
                Fact::ExecFrame {
                    c: owner,
                    id,
                    t,
                    flags,
                    frame,
                },
            );
        }
    }

    /// A terminal frame ends the correlation `owner` has open on its id.
    fn end_if_terminal(&mut self, owner: ClientId, g: &Gq) {
        let m = self
            .clients
            .get_mut(&owner)
            .expect("owners name known clients");
        if g.flags & FLAG_TERMINAL != 0
            && let Some(corr) = m.sessions.remove(&g.id)
        {
            if m.state != State::Gone {
                if m.ended.len() == 64 {
                    m.ended.pop_front();
                }
                m.ended.push_back(g.id);
            }
            self.forget(owner, g.id, corr);
            self.sessions_ended(owner);
        }
    }

    /// A live owner receives the frame; for a departed one it is late (and
    /// must reach nobody).
    fn deliver(&mut self, owner: ClientId, frame: Bytes) {
        let m = self.clients.get_mut(&owner).expect("known");
        match m.state {
            State::Live => {
                m.to_client.push_back(frame);
                self.touch(owner);
            }
            State::Gone => {
                if let Some(cur) = &mut self.current {
                    cur.late.push(frame);
                }
            }
            State::Pending => {}
        }
    }

    /// A frame on the workload-control id: a credit grant with flags 0 and
    /// a payload of all four fields counts; nothing else does.
    fn workload(&mut self, g: &Gq) {
        let Some(credit) = self.current.as_mut().and_then(|c| c.credit.as_mut()) else {
            return;
        };
        if g.t != Some(MsgType::WorkloadTransportCredit) || g.flags != 0 {
            return;
        }
        let grant = peek_parts(&g.frame[PREFIX_LEN..])
            .ok()
            .and_then(|p| cbor::payload::<WorkloadTransportCredit>(&p.payload));
        if let Some(grant) = grant {
            self.granted_now = credit.grant(&grant);
        }
    }

    /// The guest answered the session opened by hand-off `seq`: it has read
    /// every frame handed before, so the notices among them are taken.
    fn guest_read(&mut self, seq: u64) {
        let cur = self.current.as_mut().expect("current generation");
        if seq <= cur.read_to {
            return;
        }
        cur.read_to = seq;
        let taken: Vec<(u64, usize)> = cur.fences.range(..seq).map(|(&k, &s)| (k, s)).collect();
        // Then the core hands over what this made fair (see
        // `advance_to_hand_off`).
        self.granted_now |= !taken.is_empty();
        for (key, slot) in taken {
            self.current.as_mut().expect("current").fences.remove(&key);
            self.retire(slot);
        }
    }

    /// The guest took the notice of `slot`'s departed client: it keeps no
    /// fs, tcp or request state of that range, so those correlations are
    /// over, and it holds none of that client's data. Without range leases
    /// its killed executions no longer count against the guest's limit
    /// (agentd deleted them at the notice; their exits never come, so their
    /// correlations wait for the quarantine's end); leased, they are the
    /// acknowledgement's to release.
    fn retire(&mut self, slot: usize) {
        let taken = self.by_slot[slot]
            .iter()
            .any(|o| self.clients[o].state != State::Gone);
        if taken {
            return;
        }
        let gone: Vec<ClientId> = self.by_slot[slot].clone();
        for c in gone {
            let m = self.clients.get_mut(&c).expect("known");
            if !m.awaiting_ack {
                let cur = self.current.as_mut().expect("current");
                for corr in m.sessions.values_mut().filter(|s| s.counts) {
                    corr.counts = false;
                    cur.active_execs -= 1;
                    cur.counts.executions_released += 1;
                }
            }
            let ended: Vec<u32> = m
                .sessions
                .iter()
                .filter(|(_, s)| !s.kind.is_exec())
                .map(|(&id, _)| id)
                .collect();
            for id in ended {
                let corr = self
                    .clients
                    .get_mut(&c)
                    .expect("known")
                    .sessions
                    .remove(&id);
                self.forget(c, id, corr.expect("listed"));
            }
            self.sessions_ended(c);
        }
        let cur = self.current.as_mut().expect("current");
        if let Some(credit) = &mut cur.credit {
            credit.forget_slot(slot);
        }
    }

    /// The clock sync that waited for this event's departures is queued now
    /// (a tick's only if due).
    pub fn clock_queued_later(&mut self) {
        let Some(later) = self.current.as_mut().and_then(|c| c.clock_later.take()) else {
            return;
        };
        let due = self
            .clock
            .due(self.cfg.current.clock_period)
            .is_some_and(|t| t <= self.now);
        if later == ClockLater::Ready || due {
            self.queue_clock();
        }
    }

    /// A clock sync is queued when the sync is on, the generation current,
    /// the guest there, a wall reading known, and none queued.
    pub fn queue_clock(&mut self) {
        let Some(cur) = &mut self.current else {
            return;
        };
        if !self.cfg.current.clock_sync || self.guest_gone || self.clock.queued {
            return;
        }
        let Some(wall) = self.clock.wall_at(self.now) else {
            return;
        };
        let sync = agent_relay::wire::payload::ClockSync {
            unix_time_nanos: wall,
        };
        let len = build_frame_v(cur.v, MsgType::ClockSync, 0, &sync).len();
        self.clock.queued = true;
        cur.ctl.push_back(CtlEntry {
            who: Ctl::Clock,
            len,
            slot: None,
        });
    }
}

/// What a whole `core.ready` frame says of the current generation's
/// contract, leniently (what does not decode is absent).
fn ready_facts(frame: &[u8]) -> ReadyFacts {
    peek_parts(&frame[PREFIX_LEN..])
        .ok()
        .and_then(|p| cbor::payload::<ReadyFacts>(&p.payload))
        .unwrap_or_default()
}

/// The `v` of a whole frame's envelope (1 when it has none readable).
pub fn generation(frame: &[u8]) -> u8 {
    frame
        .get(PREFIX_LEN..)
        .and_then(|body| peek_parts(body).ok())
        .map_or(1, |p| p.v)
}
