//! Client frames: what one must be to be forwarded. Plain functions of the
//! frame and what its sender owns; the relay (`relay.rs`) queues what passes
//! and closes the sender of what does not. Which checks apply is the
//! generation's call (`Dialect::check_client_frame`).
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

use bytes::Bytes;

use super::layout::IdRange;
use super::sessions::{BulkTarget, CorrKind};
use super::violation::{MIN_CURRENT_V, Violation};
use crate::wire::payload::{
    ExecFailed, ExecFailureKind, ExecRequest, build_frame_v, decode_payload,
};
use crate::wire::{
    BulkHeader, CreditClass, EnvelopeError, FLAG_BULK, FLAG_SHUTDOWN, Frame, MsgType, Opens,
    PREFIX_LEN, agentd_envelope, bulk_header, flags_defined, peek_envelope,
};

/// What the checks found in a client frame.
#[derive(Debug)]
pub(super) struct Accepted {
    /// The type, when the relay knows it.
    pub t: Option<MsgType>,
    /// The correlation the frame opens, if any.
    pub opens: Option<CorrKind>,
    /// Its envelope's generation (0 when it has none).
    pub v: u64,
    pub class: CreditClass,
    /// A decoded exec request (its tty flag, command and arguments).
    pub exec: Option<ExecRequest>,
    /// A raw bulk record for a correlation the guest ended lately: dropped.
    pub late: bool,
}

/// The legacy generation's checks of a frame of the slot owning `range`.
pub(super) fn check_legacy(frame: &Frame, range: Option<IdRange>) -> Result<Accepted, Violation> {
    let id = frame.id();
    check_range(range, id)?;
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

fn check_range(range: Option<IdRange>, id: u32) -> Result<(), Violation> {
    match range {
        Some(range) if range.contains(id) => Ok(()),
        Some(range) => Err(Violation::OutOfRange { id, range }),
        None => Err(Violation::BeforeHandshake { bytes: 0 }),
    }
}

/// The current generation's checks of a frame of the slot owning `range`;
/// `bulk` says what the slot has on the id a raw bulk record names.
pub(super) fn check_current(
    frame: &Frame,
    range: Option<IdRange>,
    bulk: impl FnOnce(u32) -> BulkTarget,
) -> Result<Accepted, Violation> {
    let (id, flags) = (frame.id(), frame.flags());
    if !flags_defined(flags) {
        return Err(Violation::UndefinedFlags { id, flags });
    }
    if !(id == 0 && flags == FLAG_SHUTDOWN) {
        check_range(range, id)?;
    }
    if flags == FLAG_BULK {
        return check_bulk(frame, bulk);
    }
    if frame.len() == PREFIX_LEN {
        return Err(Violation::EmptyBody { id });
    }
    let found = agentd_envelope(frame.body()).map_err(|error| Violation::Envelope { id, error })?;
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

fn check_bulk(frame: &Frame, bulk: impl FnOnce(u32) -> BulkTarget) -> Result<Accepted, Violation> {
    let id = frame.id();
    let h = bulk_header(frame.body()).map_err(|error| Violation::BadBulk { id, error })?;
    if h.flow != BulkHeader::HOST_TO_GUEST {
        return Err(Violation::BulkFlow { id, flow: h.flow });
    }
    let late = match bulk(id) {
        BulkTarget::Open => false,
        BulkTarget::Late => true,
        BulkTarget::Nothing => return Err(Violation::BulkWithoutCorrelation { id }),
    };
    Ok(Accepted {
        t: None,
        opens: None,
        v: 0,
        class: CreditClass::Data,
        exec: None,
        late,
    })
}

/// Rule `exec_limit`: whether an exec request of generation `v` is refused
/// with `active` executions open sandbox-wide and at most `max` allowed.
pub(super) fn exec_over_limit(v: u64, active: u32, max: u32) -> bool {
    v >= 10 && active >= max
}

/// The relay's answer to an exec request on `id` over the limit: a
/// terminal `core.exec.failed` in the request's generation `v`.
pub(super) fn exec_refusal(v: u64, id: u32) -> Bytes {
    let failed = ExecFailed {
        kind: ExecFailureKind::ResourceLimit,
        errno: None,
        errno_name: None,
        message: "active execution limit reached".into(),
        stage: Some("execution_admission".into()),
    };
    let v = u8::try_from(v).unwrap_or(u8::MAX);
    build_frame_v(v, MsgType::ExecFailed, id, &failed).into_bytes()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::payload::{sigkill_frame, sigkill_frame_v};

    const RANGE: Option<IdRange> = Some(IdRange { start: 10, end: 20 });

    /// A raw bulk record on `id`, host to guest, one byte of payload.
    fn bulk(id: u32) -> Frame {
        let body = [
            1,
            BulkHeader::HOST_TO_GUEST,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            b'x',
        ];
        Frame::build(id, FLAG_BULK, &body).unwrap()
    }

    #[test]
    fn core_client_frame_checks_without_a_relay() {
        let out = check_legacy(&sigkill_frame(25), RANGE).unwrap_err();
        assert!(matches!(out, Violation::OutOfRange { id: 25, .. }));
        let a = check_legacy(&sigkill_frame(15), RANGE).unwrap();
        assert_eq!((a.t, a.v, a.opens), (Some(MsgType::ExecSignal), 1, None));
        let a = check_current(&sigkill_frame_v(10, 15), RANGE, |_| BulkTarget::Nothing);
        assert_eq!(a.unwrap().v, 10);
        let old = check_current(&sigkill_frame_v(4, 15), RANGE, |_| BulkTarget::Nothing);
        assert!(matches!(
            old,
            Err(Violation::OldGeneration { id: 15, v: 4 })
        ));
    }

    /// A raw bulk record needs an open correlation; one for an id the guest
    /// just ended is late, not a violation.
    #[test]
    fn core_client_bulk_record_open_late_or_nothing() {
        let open = check_current(&bulk(12), RANGE, |_| BulkTarget::Open).unwrap();
        assert!(!open.late);
        let late = check_current(&bulk(12), RANGE, |_| BulkTarget::Late).unwrap();
        assert!(late.late);
        let none = check_current(&bulk(12), RANGE, |_| BulkTarget::Nothing);
        assert!(matches!(
            none,
            Err(Violation::BulkWithoutCorrelation { id: 12 })
        ));
    }

    #[test]
    fn core_client_exec_limit_from_generation_10() {
        assert!(exec_over_limit(10, 2, 2));
        assert!(!exec_over_limit(10, 1, 2));
        assert!(!exec_over_limit(9, 5, 2), "older senders are forwarded");
    }
}
