//! Rule `init_before_ready` and the choice of generation.
//!
//! Before `core.ready`, in any configuration: `core.init.resolved` of a
//! generation-2-or-later guest is answered with `core.init.ack {}`, and a
//! `core.error` on id 0 of kind `initialization_failed` with `core.init.ack
//! {failure: true}` and a start-up failure carrying the guest's words. A
//! 0.4.4 guest sends neither and cannot read the ack, so such frames with
//! `v = 1` are counted and dropped like any other before ready.
//! These acks are not charged to input credit (credit starts at ready). Every
//! other frame before ready is counted and dropped.
//!
//! At `core.ready` the generation is fixed: configured, or taken from the
//! ready's `v` (1 legacy, 2 and above current). A guest of the other
//! generation than configured, a credit contract other than 2, or an unusable
//! execution policy is a start-up failure. The ready frame is cached whole
//! and served unchanged; clients that waited get their slots, in arrival
//! order, and their handshakes.

use bytes::Bytes;

use super::credit::{BARRIER_VERSION, Credit};
use super::layout::{Generation, Layout};
use super::relay::Relay;
use super::scheduler::{Mark, Outbound};
use super::tap::GuestFrame;
use super::types::{Action, Protocol, StartupFailure};
use crate::wire::payload::{
    CoreError, INITIALIZATION_FAILED, InitAck, ReadyFacts, build_frame_v, decode_payload,
};
use crate::wire::{CreditClass, FLAG_TERMINAL, MsgType, peek_envelope};

impl Relay {
    /// A guest frame before ready.
    pub(super) fn before_ready(&mut self, f: GuestFrame) {
        // A generation-1 guest has no init exchange and could not read the
        // ack: only a newer guest's init frames are answered.
        match f.t {
            Some(MsgType::Ready) => return self.on_ready(&f),
            Some(MsgType::InitResolved) if f.v >= 2 => self.init_ack(f.v, false),
            Some(MsgType::CoreError) if f.frame.id() == 0 && f.v >= 2 => {
                let flags = f.frame.flags();
                let err = peek_envelope(f.frame.body())
                    .ok()
                    .and_then(|env| decode_payload::<CoreError>(&env.payload).ok());
                if let Some(err) = err.filter(|e| e.kind == INITIALIZATION_FAILED)
                    && flags == FLAG_TERMINAL
                {
                    self.counters.init_failures += 1;
                    self.init_ack(f.v, true);
                    let why = StartupFailure::GuestInit {
                        message: err.message,
                    };
                    self.startup_failed(why);
                    return;
                }
            }
            _ => {}
        }
        self.counters.guest_frames_before_ready += 1;
    }

    /// Answers the guest's init frame, uncharged, in its own generation.
    fn init_ack(&mut self, v: u8, failure: bool) {
        self.counters.init_acks += 1;
        let frame = build_frame_v(v, MsgType::InitAck, 0, &InitAck { failure });
        let out = Outbound {
            slot: None,
            id: 0,
            frame: frame.into_bytes(),
            class: CreditClass::Control,
            charged: false,
            mark: Mark::Plain,
        };
        self.enqueue(out, true);
        self.pump_guest();
    }

    fn on_ready(&mut self, f: &GuestFrame) {
        if self.failed {
            return;
        }
        let generation = if f.v >= 2 {
            Generation::Current { v: f.v }
        } else {
            Generation::Legacy
        };
        let configured = self.cfg.protocol;
        let mismatch = matches!(
            (configured, generation),
            (Protocol::Legacy, Generation::Current { .. })
                | (Protocol::Current, Generation::Legacy)
        );
        if mismatch {
            let why = StartupFailure::GenerationMismatch {
                configured,
                guest: f.v,
            };
            return self.startup_failed(why);
        }
        if let Generation::Current { .. } = generation
            && let Err(why) = self.current_facts(f)
        {
            return self.startup_failed(why);
        }
        self.generation = Some(generation);
        self.counters.generation = match generation {
            Generation::Legacy => 1,
            Generation::Current { v } => u64::from(v),
        };
        self.ready = Some(f.frame.clone().into_bytes());
        self.actions.push_back(Action::Ready);
        self.tap.sandbox_started(&mut self.actions);
        self.seat_waiting(generation);
        for slot in 0..self.slots.len() {
            if self.slots[slot]
                .conn
                .as_ref()
                .is_some_and(|c| !c.handshaken)
            {
                self.handshake(slot);
            }
        }
        if let Generation::Current { .. } = generation {
            self.clock_at_ready();
        }
    }

    /// What a current ready says: the credit contract and the execution
    /// policy.
    fn current_facts(&mut self, f: &GuestFrame) -> Result<(), StartupFailure> {
        let facts = peek_envelope(f.frame.body())
            .ok()
            .and_then(|env| decode_payload::<ReadyFacts>(&env.payload).ok())
            .unwrap_or_default();
        match facts.workload_transport_barrier_version {
            None => {}
            Some(BARRIER_VERSION) => {
                let slots = Layout::current(self.cfg.current_clients).slots();
                self.sched.credit = Some(Credit::new(slots as usize));
            }
            Some(version) => return Err(StartupFailure::UnsupportedBarrier { version }),
        }
        self.leases.on = facts.relay_lease.is_some_and(|l| l.max_format >= 1);
        if let Some(limits) = facts.exec_limits {
            limits
                .validate()
                .map_err(|why| StartupFailure::BadExecLimits { why })?;
            self.exec_limits = Some(limits);
        }
        Ok(())
    }

    /// The generation is known: clients that waited take slots in arrival
    /// order (the excess is refused).
    fn seat_waiting(&mut self, generation: Generation) {
        if self.layout.is_none() {
            let layout = match generation {
                Generation::Legacy => Layout::legacy(self.cfg.max_clients),
                Generation::Current { .. } => Layout::current(self.cfg.current_clients),
            };
            let slots = layout.slots() as usize;
            self.layout = Some(layout);
            self.slots.resize_with(slots, Default::default);
            self.sched.set_slots(slots);
        }
        for client in std::mem::take(&mut self.waiting) {
            self.seat(client);
        }
    }

    /// The cached ready frame (for tests and the shell's diagnostics).
    pub fn ready_frame(&self) -> Option<&Bytes> {
        self.ready.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::payload::ExecLimits;

    fn with(f: impl FnOnce(&mut ExecLimits)) -> Result<(), String> {
        let mut l = ExecLimits::default();
        f(&mut l);
        l.validate()
    }

    /// Each of 0.7.13's checks at its boundary: the last value it takes and
    /// the first it refuses.
    #[test]
    fn exec_limits_checked_at_each_boundary() {
        assert_eq!(with(|_| ()), Ok(()));
        assert!(with(|l| l.max_executions = 0).is_err());
        assert!(with(|l| l.stdin_chunk_size = 0).is_err());
        assert_eq!(with(|l| l.stdin_chunk_size = l.input_limit), Ok(()));
        assert!(with(|l| l.stdin_chunk_size = l.input_limit + 1).is_err());
        let max = (4 << 20) - 1024;
        let big = |l: &mut ExecLimits| {
            l.input_limit = 8 << 20;
            l.output_limit = 8 << 20;
        };
        assert_eq!(with(|l| (big(l), l.stdin_chunk_size = max).1), Ok(()));
        assert!(with(|l| (big(l), l.stdin_chunk_size = max + 1).1).is_err());
        assert_eq!(with(|l| (big(l), l.output_chunk_size = max).1), Ok(()));
        assert!(with(|l| (big(l), l.output_chunk_size = max + 1).1).is_err());
        assert!(with(|l| l.output_chunk_size = 0).is_err());
        assert_eq!(with(|l| l.output_chunk_size = l.output_limit - 256), Ok(()));
        assert!(with(|l| l.output_chunk_size = l.output_limit - 255).is_err());
    }
}
