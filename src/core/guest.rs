//! Guest frames: decoded from any chunking, checked, and routed.
//!
//! Rule `route_by_id`: a guest frame reaches the client whose range holds its
//! id, for a correlation that client opened, unchanged. Frames for an id no
//! slot owns are counted and dropped; frames on the workload-control id are
//! the relay's own (input credit) and never reach a client.
//!
//! Rule `guest_resync`: input that is not a frame (an illegal length, an
//! undefined flags value, an envelope that does not decode, a bulk header
//! that does not check) is counted, reported and skipped up to the next
//! plausible frame start; it never reaches a client. Before ready, and in the
//! legacy generation, a type the relay does not know counts as not a frame;
//! in the current generation it is routed like any other. With range leases
//! a record carrying the lease magic is read as one (`lease.rs`) before any
//! look at it as a frame.

use std::borrow::Cow;
use std::ops::Range;

use super::layout::{Generation, WORKLOAD_CONTROL_ID};
use super::relay::Relay;
use super::tap::GuestFrame;
use super::types::{Action, CloseReason};
use super::violation::GuestCorruption;
use crate::wire::lease::has_lease_magic;
use crate::wire::payload::{WorkloadTransportCredit, decode_payload};
use crate::wire::{
    EnvelopeError, FLAG_BULK, FLAG_TERMINAL, Frame, MsgType, PREFIX_LEN, ZERO_COPY_MIN,
    bulk_header, peek_parts, whole_frame_len,
};

/// What the first look at a guest frame's body found.
type Peeked = (Option<MsgType>, u8, Option<Range<usize>>);

impl Relay {
    pub(super) fn on_guest_bytes(&mut self, bytes: &[u8]) {
        self.counters.guest_bytes_in += bytes.len() as u64;
        let mut rest = bytes;
        self.finish_held_frame(&mut rest);
        if self.guest.is_idle() {
            // Frames wholly inside this read are copied once, straight from it
            // into buffers of their own; only a partial frame at the end (or
            // anything the checks below must look at) goes into the decoder.
            while let Some(total) = whole_frame_len(rest)
                && total < ZERO_COPY_MIN
            {
                let Ok((t, v, payload)) = self.peek(&rest[..total]) else {
                    break; // the decoder path reports it and resynchronises
                };
                let frame = Frame::copy_of(&rest[..total]);
                rest = &rest[total..];
                self.on_guest_frame(GuestFrame {
                    t,
                    v,
                    payload,
                    frame,
                });
            }
        }
        self.guest.extend(rest);
        loop {
            let total = match self.guest.peek_frame() {
                Ok(Some(total)) => total,
                Ok(None) => break,
                Err(e) => {
                    self.guest_corrupt(GuestCorruption::Frame(e));
                    continue;
                }
            };
            if self.leases.on && has_lease_magic(&self.guest.pending()[..total]) {
                // Range leases: acknowledgements are read before frames.
                let record = self.guest.take_frame(total).into_bytes();
                self.on_lease_record(&record);
                continue;
            }
            let (t, v, payload) = match self.peek(&self.guest.pending()[..total]) {
                Ok(found) => found,
                Err(e) => {
                    self.guest_corrupt(e);
                    continue;
                }
            };
            let frame = self.guest.take_frame(total);
            self.on_guest_frame(GuestFrame {
                t,
                v,
                payload,
                frame,
            });
        }
    }

    /// A read that completes the small frame the decoder holds part of (the
    /// tail of the last read) hands the decoder only the bytes it misses, so
    /// the frames after it take the fast path instead of being copied into the
    /// decoder first. A completed frame that does not pass the first look is
    /// left in the decoder, and the rest of the read follows it there, as if
    /// this step did not exist: corruption is judged on the same bytes.
    fn finish_held_frame(&mut self, rest: &mut &[u8]) {
        let Some(need) = self.guest.missing().filter(|&n| n > 0 && n <= rest.len()) else {
            return;
        };
        if self.guest.buffered() + need >= ZERO_COPY_MIN {
            // A large frame is split off the decoder's buffer without a copy;
            // the read goes in whole, as before, so the buffer grows once.
            return;
        }
        self.guest.extend(&rest[..need]);
        *rest = &rest[need..];
        let Ok(Some(total)) = self.guest.peek_frame() else {
            return;
        };
        if let Ok((t, v, payload)) = self.peek(&self.guest.pending()[..total]) {
            let frame = self.guest.take_frame(total);
            self.on_guest_frame(GuestFrame {
                t,
                v,
                payload,
                frame,
            });
        }
    }

    /// A whole guest frame's first look: its type, its generation, where its
    /// payload lies. What is not a frame in the generation spoken is
    /// corruption.
    // Inlined into its two callers: returned through memory, its result
    // cost a store-forwarding stall per frame (core alone, 64 B frames:
    // 13.7 -> 15.5 M frames/s inlined).
    #[inline(always)]
    fn peek(&self, frame: &[u8]) -> Result<Peeked, GuestCorruption> {
        let flags = frame[PREFIX_LEN - 1];
        let body = &frame[PREFIX_LEN..];
        let current = matches!(self.generation, Some(Generation::Current { .. }));
        if current {
            if flags == FLAG_BULK {
                bulk_header(body).map_err(GuestCorruption::Bulk)?;
                return Ok((None, 0, None));
            }
            if !crate::wire::flags_defined(flags) {
                return Err(GuestCorruption::Flags(flags));
            }
        }
        let parts = peek_parts(body).map_err(GuestCorruption::Envelope)?;
        if parts.t.is_none() && !current {
            let name = crate::wire::decode_envelope_full(body).err();
            let e = name.unwrap_or(EnvelopeError::UnknownType(String::new()));
            return Err(GuestCorruption::Envelope(e));
        }
        let payload = match &parts.payload {
            Cow::Borrowed(p) => payload_range(body, p),
            Cow::Owned(_) => None,
        };
        Ok((parts.t, parts.v, payload))
    }

    /// Rule `guest_resync`: corrupt guest input is counted, reported and
    /// skipped up to the next plausible frame start; it never reaches a client.
    fn guest_corrupt(&mut self, error: GuestCorruption) {
        let skipped = self.guest.resync();
        self.counters.guest_corrupt += 1;
        self.counters.guest_corrupt_bytes += skipped as u64;
        self.actions
            .push_back(Action::GuestCorrupt { error, skipped });
    }

    fn on_guest_frame(&mut self, f: GuestFrame) {
        self.counters.guest_frames_in += 1;
        if self.ready.is_none() {
            return self.before_ready(f);
        }
        let id = f.frame.id();
        let current = matches!(self.generation, Some(Generation::Current { .. }));
        if current && id == WORKLOAD_CONTROL_ID {
            return self.workload_control(&f);
        }
        let Some(slot) = self.layout.and_then(|l| l.slot_of(id)) else {
            if current {
                self.counters.frames_for_nobody += 1;
            } else {
                self.counters.dropped_unowned += 1;
            }
            return;
        };
        self.route(slot, id, f);
    }

    /// A guest frame on an id slot `slot` owns.
    fn route(&mut self, slot: usize, id: u32, f: GuestFrame) {
        let Some(corr) = self.slots[slot].open.get_mut(&id) else {
            self.counters.dropped_unowned += 1;
            return;
        };
        self.tap.guest_frame(&mut self.actions, corr, &f);
        let opened_at = corr.opened_at;
        if f.frame.flags() & FLAG_TERMINAL != 0 {
            self.close_correlation(slot, id);
        }
        match &self.slots[slot].conn {
            Some(conn) if conn.handshaken => {
                self.send_to_client(slot, f.frame.into_bytes(), false);
            }
            _ => self.counters.dropped_unowned += 1,
        }
        // After the frame is routed: what the guest proves it read may retire
        // a departed slot and release waiting data.
        if let Some(seq) = opened_at {
            self.guest_read(seq);
        }
    }

    /// A frame on the workload-control id: input credit is read, the rest is
    /// the runtime's business and only counted.
    fn workload_control(&mut self, f: &GuestFrame) {
        self.counters.workload_frames += 1;
        if f.t != Some(MsgType::WorkloadTransportCredit) || f.frame.flags() != 0 {
            return;
        }
        let Some(credit) = &mut self.sched.credit else {
            return;
        };
        let body = f.frame.body();
        let payload = f.payload.clone().map(|r| &body[r]);
        let grant = payload.and_then(|p| decode_payload::<WorkloadTransportCredit>(p).ok());
        match grant {
            Some(g) if credit.grant(&g) => self.pump_guest(),
            _ => self.counters.grants_ignored += 1,
        }
    }

    pub(super) fn on_guest_closed(&mut self) {
        if self.guest_gone {
            return;
        }
        if let Err(e) = self.guest.finish() {
            let skipped = self.guest.buffered();
            self.counters.guest_corrupt += 1;
            self.counters.guest_corrupt_bytes += skipped as u64;
            self.actions.push_back(Action::GuestCorrupt {
                error: GuestCorruption::Frame(e),
                skipped,
            });
        }
        self.guest_gone = true;
        self.deadlines.clear(super::timer::Key::Clock);
        // Rule `exec_log_says_what_ran`: the sessions it ran end here.
        self.tap_guest_gone();
        for client in std::mem::take(&mut self.waiting) {
            self.counters.live_clients -= 1;
            self.actions.push_back(Action::CloseClient {
                client,
                reason: CloseReason::GuestGone,
            });
        }
        for slot in 0..self.slots.len() {
            self.depart(slot, Some(CloseReason::GuestGone));
        }
    }
}

/// Where `payload`, a slice borrowed from `body`, lies inside it.
fn payload_range(body: &[u8], payload: &[u8]) -> Option<Range<usize>> {
    let start = (payload.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(payload.len())?;
    (end <= body.len()).then_some(start..end)
}
