//! Client frames: checked, then queued toward the guest.
//!
//! Rules `own_range_only`, `corrupt_client_isolated` and `guest_survives`:
//! a frame is forwarded only if its id lies in the sender's range (in the
//! current generation also `core.shutdown` on id 0), its length is legal and
//! its flags are its type's. Legacy: the envelope must decode, name a type
//! 0.4.4 has that clients may send, and fill the frame. Current: only what
//! agentd's own decoder reads, since one frame it cannot decode ends its
//! loop (and the VM with it): flags one of none, TERMINAL, SESSION_START,
//! SHUTDOWN, BULK; a body (never empty); an envelope of one `v` up to 255,
//! one `t` naming a type of the table, one byte-string `p`
//! (`wire::agentd_envelope`); a `v` of 5 or more (agentd cannot answer an
//! older sender's unreadable payload with `core.error` and dies instead); a
//! type clients may send (never the relay's notices, init acks, clock or the
//! runtime's bootstrap and workload control); a raw bulk record needs a
//! valid host-to-guest header and an id the sender has open (one the guest
//! ended lately is a late record: dropped and counted, as upstream does).
//! Anything else closes that client only; what it sent before is still
//! forwarded.
//!
//! Rule `exec_limit` (current generation, `Ready.exec_limits`): an exec
//! request past `max_executions` open sandbox-wide is not forwarded; the
//! relay answers it with a terminal `core.exec.failed` (`resource_limit`),
//! as 0.7.13's relay does, for requests of generation 10 and later.

use super::layout::Generation;
use super::relay::Relay;
use super::scheduler::{Mark, Outbound};
use super::slot::CorrKind;
use super::types::ClientId;
use super::violation::{MIN_CURRENT_V, Violation};
use crate::wire::payload::{
    ExecFailed, ExecFailureKind, ExecRequest, build_frame_v, decode_payload,
};
use crate::wire::{
    BulkHeader, CreditClass, EnvelopeError, FLAG_BULK, FLAG_SHUTDOWN, Frame, MsgType, Opens,
    PREFIX_LEN, agentd_envelope, bulk_header, flags_defined, peek_envelope,
};

/// What the checks found in a client frame.
struct Accepted {
    /// The type, when the relay knows it.
    t: Option<MsgType>,
    /// The correlation the frame opens, if any.
    opens: Option<CorrKind>,
    /// Its envelope's generation (0 when it has none).
    v: u64,
    class: CreditClass,
    /// A decoded exec request (its tty flag, command and arguments).
    exec: Option<ExecRequest>,
    /// A raw bulk record for a correlation the guest ended lately: dropped.
    late: bool,
}

impl Relay {
    pub(super) fn on_client_bytes(&mut self, client: ClientId, bytes: &[u8]) {
        if self.waiting.contains(&client) {
            self.counters.client_bytes_in += bytes.len() as u64;
            return self.early_bytes(client, bytes.len());
        }
        let Some(&slot) = self.by_client.get(&client) else {
            return;
        };
        let slot = slot as usize;
        self.counters.client_bytes_in += bytes.len() as u64;
        let Some(conn) = &mut self.slots[slot].conn else {
            return;
        };
        if !conn.handshaken {
            let why = Violation::BeforeHandshake { bytes: bytes.len() };
            return self.violation(slot, why);
        }
        conn.decoder.extend(bytes);
        loop {
            let Some(conn) = &mut self.slots[slot].conn else {
                return;
            };
            match conn.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(why) = self.accept_client_frame(slot, frame) {
                        return self.violation(slot, why);
                    }
                }
                Ok(None) => break,
                Err(e) => return self.violation(slot, Violation::BadLength(e)),
            }
        }
        let queued = self.sched.queued(slot);
        if let Some(conn) = &mut self.slots[slot].conn
            && queued > self.cfg.client_to_guest_cap
            && !conn.paused
        {
            conn.paused = true;
            self.actions
                .push_back(super::types::Action::PauseClient(conn.client));
        }
        self.pump_guest();
    }

    /// A client without a slot yet sent bytes: it cannot know its range.
    fn early_bytes(&mut self, client: ClientId, bytes: usize) {
        self.waiting.retain(|&c| c != client);
        self.counters.live_clients -= 1;
        self.counters.protocol_violations += 1;
        let why = Violation::BeforeHandshake { bytes };
        self.actions.push_back(super::types::Action::CloseClient {
            client,
            reason: super::types::CloseReason::Violation(why),
        });
    }

    /// Checks one client frame and queues it toward the guest.
    fn accept_client_frame(&mut self, slot: usize, frame: Frame) -> Result<(), Violation> {
        let a = match self.generation {
            Some(Generation::Current { .. }) => self.check_current(slot, &frame)?,
            _ => self.check_legacy(slot, &frame)?,
        };
        let id = frame.id();
        if a.late {
            self.counters.late_bulk_dropped += 1;
            return Ok(());
        }
        if let (Some(req), Some(limits)) = (&a.exec, self.exec_limits)
            && a.v >= 10
            && self.active_execs >= limits.max_executions
        {
            return self.refuse_exec(slot, id, a.v, req);
        }
        let opened = match a.opens {
            Some(kind) => {
                self.open_correlation(slot, id, a.t, kind, a.exec.as_ref())?;
                true
            }
            None => self.note_request(slot, id)?,
        };
        self.counters.client_frames_in += 1;
        let mark = match a.t {
            Some(MsgType::Shutdown) => Mark::Drain,
            _ if opened => Mark::Opens,
            _ => Mark::Plain,
        };
        let overtakes = a.t.is_some_and(MsgType::is_control);
        let out = Outbound {
            slot: Some(slot as u32),
            id,
            frame: frame.into_bytes(),
            class: a.class,
            charged: true,
            mark,
        };
        let control = self.goes_first(slot, id, a.class, overtakes);
        self.enqueue(out, control);
        Ok(())
    }

    /// Whether a frame goes to the control queue. Legacy: signals, resizes
    /// and shutdowns, unless data of their own id is queued. Current: every
    /// control-class frame, unless data of its own id is queued and it is
    /// not one of those that may pass it (signal, resize, shutdown, output
    /// ack, the relay's kills).
    pub(super) fn goes_first(
        &self,
        slot: usize,
        id: u32,
        class: CreditClass,
        overtakes: bool,
    ) -> bool {
        let behind_own = self.sched.id_queued(slot, id);
        match self.generation {
            Some(Generation::Current { .. }) => {
                class == CreditClass::Control && (overtakes || !behind_own)
            }
            _ => overtakes && !behind_own,
        }
    }

    fn check_legacy(&self, slot: usize, frame: &Frame) -> Result<Accepted, Violation> {
        let id = frame.id();
        self.check_range(slot, id)?;
        let env = peek_envelope(frame.body()).map_err(|error| Violation::Envelope { id, error })?;
        let t = env.t;
        if !t.info().legacy {
            // Protocol 0.4.4 has no such type.
            let error = EnvelopeError::UnknownType(t.as_str().to_owned());
            return Err(Violation::Envelope { id, error });
        }
        if !t.client_may_send() {
            return Err(Violation::NotClientType { id, t });
        }
        check_flags(frame, t)?;
        let (opens, exec) = opening(id, t, &env.payload)?;
        Ok(Accepted {
            t: Some(t),
            opens,
            v: 1,
            class: t.credit(),
            exec,
            late: false,
        })
    }

    fn check_range(&self, slot: usize, id: u32) -> Result<(), Violation> {
        let range = self.layout.map(|l| l.range(slot as u32));
        match range {
            Some(range) if range.contains(id) => Ok(()),
            Some(range) => Err(Violation::OutOfRange { id, range }),
            None => Err(Violation::BeforeHandshake { bytes: 0 }),
        }
    }

    fn check_current(&self, slot: usize, frame: &Frame) -> Result<Accepted, Violation> {
        let (id, flags) = (frame.id(), frame.flags());
        if !flags_defined(flags) {
            return Err(Violation::UndefinedFlags { id, flags });
        }
        if !(id == 0 && flags == FLAG_SHUTDOWN) {
            self.check_range(slot, id)?;
        }
        if flags == FLAG_BULK {
            return self.check_bulk(slot, frame);
        }
        if frame.len() == PREFIX_LEN {
            return Err(Violation::EmptyBody { id });
        }
        let found =
            agentd_envelope(frame.body()).map_err(|error| Violation::Envelope { id, error })?;
        let v = found.v.unwrap_or(0);
        if v < MIN_CURRENT_V {
            return Err(Violation::OldGeneration { id, v });
        }
        let Some(t) = found.t else {
            let error = EnvelopeError::UnknownType(found.name.into_owned());
            return Err(Violation::Envelope { id, error });
        };
        if !t.client_may_send() {
            return Err(Violation::NotClientType { id, t });
        }
        check_flags(frame, t)?;
        let payload = found.payload.unwrap_or_default();
        let (opens, exec) = opening(id, t, &payload)?;
        Ok(Accepted {
            t: Some(t),
            opens,
            v,
            class: t.credit(),
            exec,
            late: false,
        })
    }

    fn check_bulk(&self, slot: usize, frame: &Frame) -> Result<Accepted, Violation> {
        let id = frame.id();
        let h = bulk_header(frame.body()).map_err(|error| Violation::BadBulk { id, error })?;
        if h.flow != BulkHeader::HOST_TO_GUEST {
            return Err(Violation::BulkFlow { id, flow: h.flow });
        }
        let s = &self.slots[slot];
        let late = !s.open.contains_key(&id);
        if late && !s.ended.contains(&id) {
            return Err(Violation::BulkWithoutCorrelation { id });
        }
        Ok(Accepted {
            t: None,
            opens: None,
            v: 0,
            class: CreditClass::Data,
            exec: None,
            late,
        })
    }

    /// An exec request over the limit: answered by the relay, not forwarded.
    fn refuse_exec(
        &mut self,
        slot: usize,
        id: u32,
        v: u64,
        _req: &ExecRequest,
    ) -> Result<(), Violation> {
        self.counters.execs_refused += 1;
        self.counters.client_frames_in += 1;
        let failed = ExecFailed {
            kind: ExecFailureKind::ResourceLimit,
            errno: None,
            errno_name: None,
            message: "active execution limit reached".into(),
            stage: Some("execution_admission".into()),
        };
        let v = u8::try_from(v).unwrap_or(u8::MAX);
        let frame = build_frame_v(v, MsgType::ExecFailed, id, &failed);
        self.send_to_client(slot, frame.into_bytes(), false);
        Ok(())
    }

    pub(super) fn violation(&mut self, slot: usize, why: Violation) {
        self.counters.protocol_violations += 1;
        self.depart(slot, Some(super::types::CloseReason::Violation(why)));
    }
}

fn check_flags(frame: &Frame, t: MsgType) -> Result<(), Violation> {
    if frame.flags() != t.flags() {
        return Err(Violation::WrongFlags {
            id: frame.id(),
            t,
            flags: frame.flags(),
            required: t.flags(),
        });
    }
    Ok(())
}

/// The correlation a frame of type `t` opens, and its exec request decoded.
fn opening(
    id: u32,
    t: MsgType,
    payload: &[u8],
) -> Result<(Option<CorrKind>, Option<ExecRequest>), Violation> {
    Ok(match t.opens() {
        Opens::Nothing => (None, None),
        Opens::Exec => {
            let req = decode_payload::<ExecRequest>(payload)
                .map_err(|error| Violation::BadExecRequest { id, error })?;
            (Some(CorrKind::Exec { tty: req.tty }), Some(req))
        }
        Opens::Fs => (Some(CorrKind::Fs), None),
        Opens::Tcp => (Some(CorrKind::Tcp), None),
    })
}
