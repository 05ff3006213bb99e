//! The model's side of client frames: each frame a client sends is framed,
//! judged by the rules of the generation spoken (`own_range_only`,
//! `corrupt_client_isolated`, the session and correlation bounds, the exec
//! limit), and either queued toward the guest in the lane the relay must put
//! it in, or remembered as the [`Refusal`] the relay must close the client
//! for. Frames after the first refused one are never judged.

use std::collections::VecDeque;

use agent_relay::core::ClientId;
use agent_relay::wire::payload::{ExecFailed, ExecFailureKind, ExecRequest, build_frame_v};
use agent_relay::wire::{Frame, LEN_PREFIX, MsgType, PREFIX_LEN, check_len, inspect_envelope};

use super::super::super::cbor;
use super::client::{Corr, Lane, Out, State};
use super::current::{Class, Ctl, CtlEntry};
use super::refusal::Refusal;
use super::spec::{self, Kind};
use super::{Fact, Facts, Model, frames};

/// What the rules found in an acceptable frame.
struct Found {
    t: Option<MsgType>,
    /// The envelope's `v` (0 without one).
    v: u64,
    class: Class,
    opens: Option<Kind>,
    overtakes: bool,
}

impl Model {
    /// Frames a client's bytes; each valid frame joins its `out` queue, and
    /// the first invalid one (or any byte before its handshake) marks it bad.
    pub fn client_bytes(&mut self, c: ClientId, bytes: &[u8], out: &mut impl Facts) {
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
        // Whole frames come straight from the read while nothing is held
        // (each copied once); the rest goes through the decoder.
        let mut items = VecDeque::new();
        let mut rest = bytes;
        // A frame the decoder holds the start of gets just the bytes it
        // misses.
        if m.parse.buffered() > 0
            && let Some(need) = frames::completes(m.parse.pending(), rest)
        {
            m.parse.extend(&rest[..need]);
            rest = &rest[need..];
            if let Ok(Some(frame)) = m.parse.next_frame() {
                items.push_back(Ok(frame));
            }
        }
        while m.parse.buffered() == 0
            && let Some(head) = rest.first_chunk::<4>()
        {
            let len = u32::from_be_bytes(*head);
            let total = LEN_PREFIX + len as usize;
            if check_len(len).is_err() || rest.len() < total {
                break;
            }
            let id = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
            let body = &rest[PREFIX_LEN..total];
            let frame = Frame::build(id, rest[PREFIX_LEN - 1], body).expect("a checked length");
            items.push_back(Ok(frame));
            rest = &rest[total..];
        }
        m.parse.extend(rest);
        loop {
            match m.parse.next_frame() {
                Ok(Some(frame)) => items.push_back(Ok(frame)),
                Ok(None) => break,
                Err(_) => {
                    items.push_back(Err(Refusal::BadLength));
                    break;
                }
            }
        }
        self.judge_frames(c, items, out);
        out.fact(
            self,
            Fact::ClientRead {
                c,
                len: bytes.len(),
            },
        );
    }

    /// Judges a read's frames in order. A frame the relay answers itself
    /// (an exec request over the limit) is written to the client at once,
    /// and writing it can close another client (the global cap) before the
    /// frames after it are queued: those wait in `cq` until the answer is
    /// seen.
    fn judge_frames(
        &mut self,
        c: ClientId,
        mut items: VecDeque<Result<Frame, Refusal>>,
        out: &mut impl Facts,
    ) {
        while let Some(item) = items.pop_front() {
            let judged = item.and_then(|frame| {
                if self.current.is_some() {
                    self.accept_current(c, frame, out)
                } else {
                    self.accept_legacy(c, frame, out).map(|()| false)
                }
            });
            match judged {
                Err(why) => {
                    self.clients.get_mut(&c).expect("checked").bad = Some(why);
                    return;
                }
                Ok(true) if !items.is_empty() => {
                    self.cq = Some((c, items));
                    return;
                }
                Ok(_) => {}
            }
        }
    }

    /// The rest of a read held back behind the relay's own answer (see
    /// [`Model::judge_frames`]) is judged now, if its client is still there.
    pub fn resume_client(&mut self, c: Option<ClientId>, out: &mut impl Facts) {
        match self.cq.take() {
            Some((held, items)) if c.is_none_or(|c| c == held) => {
                if self
                    .clients
                    .get(&held)
                    .is_some_and(|m| m.state == State::Live)
                {
                    self.judge_frames(held, items, out);
                }
            }
            other => self.cq = other,
        }
    }

    /// Legacy rules, in the order the protocol states them: range, envelope,
    /// 0.4.4 type, sender, flags, payload, session, correlation bound.
    fn accept_legacy(
        &mut self,
        c: ClientId,
        frame: Frame,
        out: &mut impl Facts,
    ) -> Result<(), Refusal> {
        let range = self.clients[&c].range.expect("live clients have a range");
        let id = frame.id();
        if !range.contains(id) {
            return Err(Refusal::OutOfRange { id });
        }
        // The payload is judged where the rules' order puts it.
        let (t, exec_ok) = cbor::envelope(frame.body())
            .map(|(t, p)| {
                (
                    t,
                    t != MsgType::ExecRequest || cbor::payload::<ExecRequest>(&p).is_some(),
                )
            })
            .ok_or(Refusal::Envelope { id })?;
        if !spec::legacy(t) {
            return Err(Refusal::Envelope { id });
        }
        if !spec::client_may_send(t, false) {
            return Err(Refusal::NotClientType { id, t });
        }
        if frame.flags() != spec::flags(t) {
            let flags = frame.flags();
            return Err(Refusal::WrongFlags { id, flags });
        }
        if !exec_ok {
            return Err(Refusal::BadExecRequest { id });
        }
        let found = Found {
            t: Some(t),
            v: 1,
            class: spec::class(t),
            opens: spec::opens(t),
            overtakes: spec::overtakes_legacy(t),
        };
        if let Some(kind) = found.opens {
            self.open(c, id, kind, Some(t))?;
            self.exec_opened(c, id, kind, &frame, out);
        }
        self.queue(c, frame, &found, out);
        Ok(())
    }

    /// Current rules, in the order the core documents them (`client.rs`,
    /// rules `own_range_only`, `corrupt_client_isolated`, `guest_survives`):
    /// defined flags, range (or a shutdown on id 0), then a bulk record's
    /// header, or a body at all, an envelope agentd's decoder reads, a
    /// sender of generation 5 or later, a type clients send with its flags,
    /// and for an exec request a payload that decodes; then the exec limit,
    /// the session and correlation bounds. True when the relay answers the
    /// frame itself instead of queueing it.
    fn accept_current(
        &mut self,
        c: ClientId,
        frame: Frame,
        out: &mut impl Facts,
    ) -> Result<bool, Refusal> {
        let (id, flags) = (frame.id(), frame.flags());
        if !spec::flags_defined(flags) {
            return Err(Refusal::UndefinedFlags { id, flags });
        }
        let range = self.clients[&c].range.expect("live clients have a range");
        let zero_shutdown = id == 0 && flags == 0x04;
        if !zero_shutdown && !range.contains(id) {
            return Err(Refusal::OutOfRange { id });
        }
        if flags == 0x08 && self.late_bulk(c, id, frame.body()) {
            return Ok(false); // dropped: nothing queued, nothing answered
        }
        let found = if flags == 0x08 {
            self.bulk_record(c, id, frame.body())?
        } else {
            current_envelope(id, flags, frame.body())?
        };
        if found.t == Some(MsgType::ExecRequest) && self.exec_refused(c, id, found.v) {
            return Ok(true);
        }
        match found.opens {
            Some(kind) => {
                self.open(c, id, kind, found.t)?;
                self.exec_opened(c, id, kind, &frame, out);
            }
            None if id != 0 && !self.clients[&c].sessions.contains_key(&id) => {
                self.open(c, id, Kind::Request, found.t)?;
            }
            None => {}
        }
        self.queue(c, frame, &found, out);
        Ok(false)
    }

    /// A valid host-to-guest bulk record on an id whose correlation the guest
    /// ended lately: late, dropped by the relay.
    fn late_bulk(&self, c: ClientId, id: u32, body: &[u8]) -> bool {
        let m = &self.clients[&c];
        spec::bulk_header(body).is_some_and(|(_, flow)| flow == 1)
            && !m.sessions.contains_key(&id)
            && m.ended.contains(&id)
    }

    /// A raw bulk record: a valid header, host to guest, on an open id.
    fn bulk_record(&self, c: ClientId, id: u32, body: &[u8]) -> Result<Found, Refusal> {
        let (_, flow) = spec::bulk_header(body).ok_or(Refusal::BadBulk { id })?;
        if flow != 1 {
            return Err(Refusal::BulkFlow { id, flow });
        }
        if !self.clients[&c].sessions.contains_key(&id) {
            return Err(Refusal::BulkWithoutCorrelation { id });
        }
        Ok(Found {
            t: None,
            v: 0,
            class: Class::Data,
            opens: None,
            overtakes: false,
        })
    }

    /// With `Ready.exec_limits`, a generation-10 exec request past
    /// `max_executions` open sandbox-wide is answered by the relay with a
    /// terminal `core.exec.failed` (`resource_limit`) and not forwarded.
    fn exec_refused(&mut self, c: ClientId, id: u32, v: u64) -> bool {
        let cur = self.current.as_ref().expect("current generation");
        let full = cur
            .exec_limit
            .is_some_and(|max| v >= 10 && cur.active_execs >= max);
        if full {
            let failed = ExecFailed {
                kind: ExecFailureKind::ResourceLimit,
                errno: None,
                errno_name: None,
                message: "active execution limit reached".into(),
                stage: Some("execution_admission".into()),
            };
            let v = u8::try_from(v).unwrap_or(u8::MAX);
            let frame = build_frame_v(v, MsgType::ExecFailed, id, &failed).into_bytes();
            self.clients
                .get_mut(&c)
                .expect("known")
                .to_client
                .push_back(frame);
        }
        full
    }

    /// Opens a correlation of `kind` on `id` (rule `correlations_bounded`).
    fn open(
        &mut self,
        c: ClientId,
        id: u32,
        kind: Kind,
        t: Option<MsgType>,
    ) -> Result<(), Refusal> {
        if self.clients[&c].sessions.contains_key(&id) {
            return Err(Refusal::SessionAlreadyOpen { id });
        }
        self.make_room(c, id)?;
        self.last_corr += 1;
        // With exec limits, an exec session holds one of the guest's
        // executions until it ends (or, departed, until the guest is known
        // to have dropped it: `guest_in.rs`, `leases.rs`).
        let counts = kind.is_exec()
            && self
                .current
                .as_ref()
                .is_some_and(|c| c.exec_limit.is_some());
        let corr = Corr {
            kind,
            order: self.last_corr,
            handed: false,
            handed_end: None,
            opened_at: None,
            counts,
        };
        let m = self.clients.get_mut(&c).expect("known");
        m.sessions.insert(id, corr);
        if kind != Kind::Request || spec::answered(t) {
            m.awaiting.insert(id);
        }
        self.owners.insert(id, c);
        if let (Some(cur), true) = (&mut self.current, counts) {
            cur.active_execs += 1;
        }
        Ok(())
    }

    /// An exec session was opened: the exec.log's start record is owed.
    fn exec_opened(&self, c: ClientId, id: u32, kind: Kind, frame: &Frame, out: &mut impl Facts) {
        if kind.is_exec() {
            let body = frame.body();
            out.fact(self, Fact::ExecOpened { c, id, body });
        }
    }

    /// At the bound, the oldest request is forgotten; with none, opening one
    /// more is a violation.
    fn make_room(&mut self, c: ClientId, id: u32) -> Result<(), Refusal> {
        let max = self.cfg.current.max_correlations.max(1);
        let m = self.clients.get_mut(&c).expect("known");
        if m.sessions.len() < max {
            return Ok(());
        }
        let oldest = m
            .sessions
            .iter()
            .filter(|(_, s)| s.kind == Kind::Request)
            .min_by_key(|(_, s)| s.order)
            .map(|(&id, _)| id)
            .ok_or(Refusal::TooManyCorrelations { id })?;
        let corr = m.sessions.remove(&oldest).expect("found");
        m.awaiting.remove(&oldest);
        self.forget(c, oldest, corr);
        Ok(())
    }

    /// Queues an accepted frame toward the guest, in its lane.
    fn queue(&mut self, c: ClientId, frame: Frame, f: &Found, out: &mut impl Facts) {
        let current = self.current.is_some();
        let m = self.clients.get_mut(&c).expect("known");
        let id = frame.id();
        // Whether a frame of its own id waits in the turn lane (asked only
        // when it decides the lane; the latest frames are the likeliest).
        let own_turn = || {
            m.out
                .iter()
                .rev()
                .any(|o| o.id == id && o.lane == Lane::Turn)
        };
        let express = if current {
            f.class == Class::Control && (f.overtakes || !own_turn())
        } else {
            f.overtakes && !own_turn()
        };
        let lane = if express { Lane::Express } else { Lane::Turn };
        let opens = m.sessions.get(&id).is_some_and(|s| !s.handed)
            && !m.out.iter().any(|o| o.id == id && o.opens);
        m.sent += 1;
        let (seq, len, slot) = (m.sent, frame.len(), m.slot);
        if lane == Lane::Turn {
            if m.turns == 0 {
                self.turn_order.push(c);
            }
            m.turns += 1;
        }
        m.out_bytes += len;
        m.out.push_back(Out {
            id,
            frame: frame.into_bytes(),
            control: if current { express } else { f.overtakes },
            shutdown: f.t == Some(MsgType::Shutdown),
            lane,
            class: f.class,
            seq,
            opens,
        });
        if let Some(cur) = &mut self.current {
            if express {
                let who = Ctl::Client(c, seq);
                cur.ctl.push_back(CtlEntry {
                    who,
                    len,
                    slot: Some(slot),
                });
            }
            if f.class == Class::Data {
                cur.slot_data[slot] += 1;
            }
        }
        out.fact(self, Fact::Queued { c, lane });
    }
}

/// A current-generation client frame's body: not empty; an envelope that
/// is one well-formed map with a text `t` (never `control.*`) naming a known
/// type, exactly one `v` (an unsigned integer up to 255) and exactly one `p`
/// (a byte string), since agentd's decoder reads `Message {v: u8, t, p:
/// bytes}` and ends its loop on anything else; a `v` of 5 or more; a type
/// clients send, with its type's flags and, for an exec request, a payload
/// that decodes.
fn current_envelope(id: u32, flags: u8, body: &[u8]) -> Result<Found, Refusal> {
    if body.is_empty() {
        return Err(Refusal::EmptyBody { id });
    }
    let env = inspect_envelope(body).map_err(|_| Refusal::Envelope { id })?;
    let Some(t) = env.t else {
        return Err(Refusal::Envelope { id });
    };
    // The encoders' three-entry map with `v`, `t` and `p` all found has
    // each exactly once; anything else is counted key by key.
    let once = body[0] == 0xa3 && env.v.is_some() && env.payload.is_some();
    if !(once || fields_once(body)) || env.v.is_none_or(|v| v > 255) || env.payload.is_none() {
        return Err(Refusal::Envelope { id });
    }
    let v = env.v.unwrap_or(0);
    if v < spec::MIN_CURRENT_V {
        return Err(Refusal::OldGeneration { id });
    }
    if !spec::client_may_send(t, true) {
        return Err(Refusal::NotClientType { id, t });
    }
    if flags != spec::flags(t) {
        return Err(Refusal::WrongFlags { id, flags });
    }
    let payload = env.payload.unwrap_or_default();
    if t == MsgType::ExecRequest && !cbor::exec_request_reads(&payload) {
        return Err(Refusal::BadExecRequest { id });
    }
    Ok(Found {
        t: Some(t),
        v,
        class: spec::class(t),
        opens: spec::opens(t),
        overtakes: spec::overtakes_current(t),
    })
}

/// Whether the envelope map has exactly one `v` (an unsigned integer) and
/// exactly one `p` (a byte string), read with ciborium's own values rather
/// than the wire layer's walk.
fn fields_once(body: &[u8]) -> bool {
    use ciborium::value::Value;
    let Ok(Value::Map(entries)) = cbor::from_reader::<Value>(&mut &body[..]) else {
        return false;
    };
    let (mut v, mut p) = (0, 0);
    for (k, val) in &entries {
        match k.as_text() {
            Some("v") if val.as_integer().is_some_and(|i| u8::try_from(i).is_ok()) => v += 1,
            Some("v") => return false,
            Some("p") if val.is_bytes() => p += 1,
            Some("p") => return false,
            _ => {}
        }
    }
    (v, p) == (1, 1)
}
