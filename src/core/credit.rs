//! Rule `input_credit` (current generation, `workload_transport_barrier_version
//! == 2`): the guest grants input capacity in two classes, and the relay never
//! hands it a frame that does not fit. Control (requests, signals, acks,
//! notices, the clock) starts at 8 MiB / 256 frames, data (raw bulk records,
//! stdin, fs and tcp data, tcp end of stream) at 32 MiB / 256 frames; grants
//! are absolute and cumulative, and a frame is charged whole, its 4-byte
//! length prefix included. A grant that would lower any field is ignored (and
//! counted). Frames before ready (the init acks) are not charged.
//!
//! Rule `fair_data_credit`: no client holds more than a fair share of the
//! data window, so one process that never reads its stdin cannot stop every
//! other client's data. The guest's grants are not per client, so the relay
//! estimates who holds what: each data frame sent is remembered, and the data
//! the guest returns is taken off the most recently sent frames first (a
//! stuck consumer's frames are the old ones: it stopped being sent to when it
//! reached its share). A client may send while its estimate plus the frame
//! stays within `window / max(active clients, 2)`.

use std::collections::VecDeque;

use crate::wire::CreditClass;
use crate::wire::payload::WorkloadTransportCredit;

use super::types::Counters;

/// Starting control grant: bytes.
pub const CONTROL_BYTES: u64 = 8 << 20;
/// Starting control grant: frames.
pub const CONTROL_FRAMES: u64 = 256;
/// Starting data grant: bytes.
pub const DATA_BYTES: u64 = 32 << 20;
/// Starting data grant: frames.
pub const DATA_FRAMES: u64 = 256;
/// The input-credit contract the relay implements.
pub const BARRIER_VERSION: u8 = 2;

/// Bytes and frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    pub bytes: u64,
    pub frames: u64,
}

/// One data frame the guest has not given back, for the fairness estimate.
#[derive(Debug)]
struct Held {
    slot: u32,
    /// Bytes of it not yet taken off by returns.
    bytes: u64,
}

/// Grants, use and the fairness estimate.
#[derive(Debug)]
pub(crate) struct Credit {
    granted: [Window; 2],
    used: [Window; 2],
    /// Sent data frames, oldest first; returns come off the back.
    held: VecDeque<Held>,
    /// Per slot: estimated data bytes and frames the guest holds.
    per_slot: Vec<Window>,
    /// Data bytes returned and not yet taken off `held`.
    returned: u64,
}

fn index(class: CreditClass) -> usize {
    match class {
        CreditClass::Control => 0,
        CreditClass::Data => 1,
    }
}

impl Credit {
    /// The starting grants, for a relay of `slots` slots.
    pub fn new(slots: usize) -> Credit {
        Credit {
            granted: [
                Window {
                    bytes: CONTROL_BYTES,
                    frames: CONTROL_FRAMES,
                },
                Window {
                    bytes: DATA_BYTES,
                    frames: DATA_FRAMES,
                },
            ],
            used: [Window::default(); 2],
            held: VecDeque::new(),
            per_slot: vec![Window::default(); slots],
            returned: 0,
        }
    }

    /// Whether a frame of `len` bytes (prefix included) fits `class`.
    pub fn fits(&self, class: CreditClass, len: usize) -> bool {
        let (g, u) = (self.granted[index(class)], self.used[index(class)]);
        u.bytes + len as u64 <= g.bytes && u.frames < g.frames
    }

    /// Whether slot `slot` may send a data frame of `len` bytes now, with
    /// `active` slots holding or queueing data (itself included).
    pub fn fair(&self, slot: usize, len: usize, active: usize) -> bool {
        let share = |total: u64| total / active.max(2) as u64;
        let mine = self.per_slot[slot];
        mine.bytes == 0 && mine.frames == 0
            || mine.bytes + len as u64 <= share(DATA_BYTES) && mine.frames < share(DATA_FRAMES)
    }

    /// Whether slot `slot` holds data credit by the estimate.
    pub fn holds(&self, slot: usize) -> bool {
        self.per_slot[slot].frames > 0
    }

    /// A frame of `len` bytes of `class` was handed to the guest.
    pub fn charge(&mut self, class: CreditClass, len: usize, slot: Option<u32>) {
        let u = &mut self.used[index(class)];
        u.bytes += len as u64;
        u.frames += 1;
        if let (CreditClass::Data, Some(slot)) = (class, slot) {
            self.held.push_back(Held {
                slot,
                bytes: len as u64,
            });
            let w = &mut self.per_slot[slot as usize];
            w.bytes += len as u64;
            w.frames += 1;
        }
    }

    /// A `core.workload.transport.credit` arrived: absolute grants. False
    /// (and nothing changes) if it would lower any of them.
    pub fn grant(&mut self, g: &WorkloadTransportCredit) -> bool {
        let new = [
            Window {
                bytes: g.control_bytes,
                frames: g.control_frames,
            },
            Window {
                bytes: g.bulk_bytes,
                frames: g.bulk_frames,
            },
        ];
        let lowers = new
            .iter()
            .zip(&self.granted)
            .any(|(n, o)| n.bytes < o.bytes || n.frames < o.frames);
        if lowers {
            return false;
        }
        let data = index(CreditClass::Data);
        self.returned += new[data].bytes - self.granted[data].bytes;
        self.granted = new;
        self.take_returns();
        true
    }

    /// Takes returned data bytes off the most recently sent frames; a frame
    /// whose bytes are all back is no longer held.
    fn take_returns(&mut self) {
        while self.returned > 0 {
            let Some(last) = self.held.back_mut() else {
                self.returned = 0;
                return;
            };
            let take = last.bytes.min(self.returned);
            last.bytes -= take;
            self.returned -= take;
            let w = &mut self.per_slot[last.slot as usize];
            w.bytes -= take;
            if last.bytes == 0 {
                w.frames -= 1;
                self.held.pop_back();
            }
        }
    }

    /// The departed client of `slot` is gone from the guest (its disconnect
    /// notice was taken): whatever it held is freed.
    pub fn forget_slot(&mut self, slot: usize) {
        self.held.retain(|h| h.slot as usize != slot);
        self.per_slot[slot] = Window::default();
    }

    /// Copies grants and use into the counters.
    pub fn publish(&self, c: &mut Counters) {
        let [control, data] = self.granted;
        c.credit_control_bytes = control.bytes;
        c.credit_control_frames = control.frames;
        c.credit_data_bytes = data.bytes;
        c.credit_data_frames = data.frames;
        let [control, data] = self.used;
        c.used_control_bytes = control.bytes;
        c.used_control_frames = control.frames;
        c.used_data_bytes = data.bytes;
        c.used_data_frames = data.frames;
    }

    /// Asserts the estimate's bookkeeping (see `Relay::check`).
    #[cfg(any(test, feature = "testing"))]
    pub fn check(&self) {
        for (i, g) in self.granted.iter().enumerate() {
            let u = self.used[i];
            assert!(
                u.bytes <= g.bytes && u.frames <= g.frames,
                "class {i} over its grant"
            );
        }
        let mut sums = vec![Window::default(); self.per_slot.len()];
        for h in &self.held {
            sums[h.slot as usize].bytes += h.bytes;
            sums[h.slot as usize].frames += 1;
        }
        assert_eq!(sums, self.per_slot, "per-slot estimate");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(c: &Credit, data_bytes: u64, data_frames: u64) -> WorkloadTransportCredit {
        WorkloadTransportCredit {
            control_bytes: c.granted[0].bytes,
            control_frames: c.granted[0].frames,
            bulk_bytes: data_bytes,
            bulk_frames: data_frames,
        }
    }

    /// The estimate's own check fires: spent beyond a grant, or a slot's
    /// held sum that disagrees with the frames held.
    #[test]
    fn credit_check_fires_on_bookkeeping_that_disagrees() {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        let fresh = Credit::new(2);
        fresh.check();
        let mut over = Credit::new(2);
        over.used[1].bytes = over.granted[1].bytes + 1;
        assert!(catch_unwind(AssertUnwindSafe(|| over.check())).is_err());
        let mut held = Credit::new(2);
        held.per_slot[1].frames = 1;
        assert!(catch_unwind(AssertUnwindSafe(|| held.check())).is_err());
    }

    #[test]
    fn core_credit_fits_whole_frames_and_counts_frames() {
        let mut c = Credit::new(2);
        assert!(c.fits(CreditClass::Data, DATA_BYTES as usize));
        assert!(!c.fits(CreditClass::Data, DATA_BYTES as usize + 1));
        for _ in 0..DATA_FRAMES {
            c.charge(CreditClass::Data, 10, Some(0));
        }
        assert!(!c.fits(CreditClass::Data, 10), "out of frames");
        assert!(c.fits(CreditClass::Control, 10), "classes are separate");
    }

    #[test]
    fn core_credit_lowering_grant_ignored() {
        let mut c = Credit::new(1);
        let mut g = grant(&c, DATA_BYTES + 5, DATA_FRAMES + 1);
        assert!(c.grant(&g));
        g.control_frames -= 1;
        assert!(
            !c.grant(&g),
            "one field lower: the whole message is ignored"
        );
        assert_eq!(c.granted[0].frames, CONTROL_FRAMES);
        assert!(
            c.grant(&grant(&c, DATA_BYTES + 5, DATA_FRAMES + 1)),
            "equal is fine"
        );
    }

    /// Returns come off the most recent frames: a client that stopped being
    /// sent to keeps its estimate; one that keeps sending is paid back.
    #[test]
    fn core_credit_returns_come_off_the_newest_frames() {
        let mut c = Credit::new(2);
        c.charge(CreditClass::Data, 100, Some(0)); // slot 0, then stuck
        c.charge(CreditClass::Data, 40, Some(1));
        c.charge(CreditClass::Data, 40, Some(1));
        let g = grant(&c, DATA_BYTES + 80, DATA_FRAMES + 2);
        assert!(c.grant(&g));
        assert_eq!(c.per_slot[1], Window::default());
        assert_eq!(
            c.per_slot[0],
            Window {
                bytes: 100,
                frames: 1
            }
        );
        c.check();
        assert!(!c.fair(0, (DATA_BYTES / 2) as usize, 2), "over its share");
        assert!(c.fair(1, (DATA_BYTES / 2) as usize, 2));
    }
}
