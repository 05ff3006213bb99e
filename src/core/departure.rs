//! Rule `kill_on_departure`: a departing client's live exec sessions each get
//! one SIGKILL. Legacy: queued behind everything that client sent before.
//! Current: the kills pass that client's frames still waiting in its slot's
//! queue (its data, for room or credit, and control frames that must stay
//! behind that data, such as a stream's close), which are dropped (and
//! counted) rather than left waiting for a process that is being killed or
//! sent after the range is gone; then `core.relay.client.disconnected
//! {id_start, id_end_exclusive}` on id 0 tells the guest the range is gone,
//! after the kills (with range leases, naming the departed owner's
//! incarnation: `lease.rs`). Frames the relay builds carry the `v` of the
//! guest's ready. The slot is quarantined while anything stays open on it
//! (`quarantine.rs`), or, leased, until the guest acknowledges the notice.

use super::layout::Generation;
use super::relay::Relay;
use super::scheduler::{Mark, Outbound};
use super::types::{Action, CloseReason};
use crate::wire::payload::{
    RelayClientDisconnected, build_frame_v, sigkill_frame, sigkill_frame_v,
};
use crate::wire::{CreditClass, MsgType};

impl Relay {
    /// A client leaves (it disconnected, or `reason` says why we closed it).
    pub(super) fn depart(&mut self, slot: usize, reason: Option<CloseReason>) {
        let Some(conn) = self.slots[slot].conn.take() else {
            return;
        };
        self.by_client.remove(&conn.client);
        self.counters.live_clients -= 1;
        self.budget_released(slot, conn.queued, conn.over);
        if let Some(reason) = reason {
            self.start_flush(conn.client, conn.queued, &reason);
            self.actions.push_back(Action::CloseClient {
                client: conn.client,
                reason,
            });
        }
        let current = match self.generation {
            Some(Generation::Current { v }) => Some(v),
            _ => None,
        };
        if current.is_some() {
            let (frames, bytes) = self.sched.drop_queued(slot);
            self.counters.departed_frames_dropped += frames as u64;
            self.counters.queued_to_guest -= bytes as u64;
        }
        self.kill_sessions(slot, current);
        if let Some(v) = current {
            self.notice(slot, v);
        }
        self.start_quarantine(slot);
        self.pump_guest();
    }

    fn kill_sessions(&mut self, slot: usize, current: Option<u8>) {
        let kills: Vec<(u32, u64)> = self.slots[slot]
            .open
            .iter_mut()
            .filter(|(_, c)| c.kind.is_exec() && !c.killed)
            .map(|(&id, c)| {
                c.killed = true;
                (id, c.number)
            })
            .collect();
        for (id, number) in kills {
            self.counters.kills_sent += 1;
            self.tap.exec_killed(&mut self.actions, number);
            let frame = match current {
                Some(v) => sigkill_frame_v(v, id),
                None => sigkill_frame(id),
            };
            // Legacy: behind every frame this client sent earlier.
            let control = current.is_some() || !self.sched.has_data_queued(slot);
            let out = Outbound {
                slot: Some(slot as u32),
                id,
                frame: frame.into_bytes(),
                class: CreditClass::Control,
                charged: true,
                mark: Mark::Plain,
            };
            self.enqueue(out, control);
        }
    }

    /// The disconnect notice for `slot`'s range, after its kills.
    fn notice(&mut self, slot: usize, v: u8) {
        let Some(range) = self.layout.map(|l| l.range(slot as u32)) else {
            return;
        };
        let notice = RelayClientDisconnected {
            id_start: range.start,
            id_end_exclusive: range.end,
            incarnation: self.lease_depart(slot),
        };
        let frame = build_frame_v(v, MsgType::RelayClientDisconnected, 0, &notice);
        let out = Outbound {
            slot: Some(slot as u32),
            id: 0,
            frame: frame.into_bytes(),
            class: CreditClass::Control,
            charged: true,
            mark: Mark::Notice,
        };
        self.enqueue(out, true);
    }

    /// What a frame's hand-off means; true if `Drain` follows it.
    pub(super) fn marked(&mut self, out: &Outbound, seq: u64) -> bool {
        match out.mark {
            Mark::Plain => false,
            Mark::Drain => true,
            Mark::Opens => {
                let slot = out.slot.map(|s| s as usize);
                if let Some(corr) = slot.and_then(|s| self.slots[s].open.get_mut(&out.id)) {
                    corr.opened_at = Some(seq);
                }
                false
            }
            Mark::Notice => {
                self.counters.notices_sent += 1;
                // A fence only for what the notice retires.
                if let Some(slot) = out.slot
                    && self.slots[slot as usize]
                        .open
                        .values()
                        .any(|c| !c.kind.is_exec() || (c.killed && c.counts))
                {
                    self.fences.insert(seq, slot);
                }
                false
            }
            Mark::Clock => {
                self.clock_sent();
                self.counters.clock_syncs += 1;
                false
            }
        }
    }
}
