//! `inv_boundedness`: memory stays within what the configuration and rule
//! `backpressure_bounded_wait` imply (derived in `sim/README.md`). With `S`
//! the soft budget, `G` the global cap, `R` the driver's read size (the
//! largest `GuestBytes` or `ClientBytes`) and `F` the largest guest frame
//! seen so far:
//!
//! - a client's queue (handed, not yet written) stays within its hard cap
//!   and within `S + R + F + own`, `own` being the relay's own bytes (its
//!   handshake, answers to its frames) handed to it since its queue was last
//!   within `S`: a guest read starts only with every queue within `S` (else
//!   the guest is paused), and adds at most the read and the partial frame
//!   it completes;
//! - the sum of the queues stays within the global cap and within
//!   `G/2 + R + F + own`, `own` counted since the sum was last within `G/2`;
//! - a slow-consumer close names the bytes the model has queued;
//! - a client over its cap toward the guest is paused; the guest window
//!   holds; the core's own counts equal the model's; the core's held bytes
//!   stay within the bound derived from the configuration.

use agent_relay::core::{ClientId, Relay};

use super::super::invariant::Invariant;
use super::super::model::{Client, Fact, Model, State};
use super::{Check, Verdict};

/// The largest frame handed to the guest, and the bound on the core's own
/// buffers.
#[derive(Debug)]
pub struct Boundedness {
    largest_to_guest: usize,
    held_bound: usize,
}

impl Check for Boundedness {
    const INVARIANT: Invariant = Invariant::Boundedness;
    const WANTS: u64 = Fact::TO_GUEST | Fact::OUTPUT_ADDED | Fact::SLOW_CLOSE_QUEUED;

    /// The core's held bytes: at most one partial guest frame; per slot one
    /// partial client frame, plus frames toward the guest up to the pause
    /// bound, which one read (and the frame it completes) may overshoot.
    fn new(m: &Model) -> Self {
        let frame_max = Model::frame_max();
        let slots = Model::slots_bound(&m.cfg);
        let per_slot = frame_max + m.cfg.client_to_guest_cap + m.read_max + frame_max;
        Boundedness {
            largest_to_guest: 0,
            held_bound: frame_max + slots * per_slot,
        }
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::ToGuest(frame) => {
                if m.inflight >= m.cfg.guest_window {
                    let why = format!(
                        "frame handed to the guest with {} bytes in flight, window {}",
                        m.inflight, m.cfg.guest_window
                    );
                    v.fail::<Self>(why);
                }
                self.largest_to_guest = self.largest_to_guest.max(frame.len());
            }
            Fact::OutputAdded(c) => output_added(m, c, v),
            Fact::SlowCloseQueued { c, queued } => {
                let have = m.client(c).queued;
                if queued != have {
                    let why = format!(
                        "{c} closed as slow with {queued} bytes queued; the model has {have}"
                    );
                    v.fail::<Self>(why);
                }
            }
            _ => {}
        }
    }

    /// A client's budgets after an event.
    fn after_client(&mut self, m: &Model, c: ClientId, k: &Client, relay: &Relay, v: &mut Verdict) {
        if k.state == State::Gone {
            return;
        }
        if k.state == State::Live && k.out_bytes > m.cfg.client_to_guest_cap && !k.paused {
            let why = format!(
                "{c} has {} bytes queued toward the guest, over {}, and is not paused",
                k.out_bytes, m.cfg.client_to_guest_cap
            );
            v.fail::<Self>(why);
        }
        let have = relay.client_queued(c);
        // Detecting the generation, the relay seats no one before ready.
        let waiting = m.layout.is_none() && k.state == State::Pending && k.queued == 0;
        if have != Some(k.queued) && !(waiting && have.is_none()) {
            let why = format!(
                "core says {c} has {have:?} bytes queued, the model {}",
                k.queued
            );
            v.fail::<Self>(why);
        }
    }

    /// The whole relay's counts and bounds after an event.
    fn after_event(&mut self, m: &Model, relay: &Relay, v: &mut Verdict) {
        let queued = relay.counters().queued_to_clients;
        if queued != m.sum_queued as u64 {
            let why = format!(
                "core counts {queued} bytes queued for clients, the model {}",
                m.sum_queued
            );
            return v.fail::<Self>(why);
        }
        if relay.guest_inflight() != m.inflight
            || m.inflight > m.cfg.guest_window + self.largest_to_guest
        {
            let why = format!(
                "guest in flight: core {}, model {}, window {}",
                relay.guest_inflight(),
                m.inflight,
                m.cfg.guest_window
            );
            return v.fail::<Self>(why);
        }
        // Held bytes only grow when bytes come in.
        let held = if m.bytes_in { relay.held_bytes() } else { 0 };
        if held > self.held_bound {
            let why = format!(
                "core holds {held} bytes, over the bound {}",
                self.held_bound
            );
            v.fail::<Self>(why);
        }
    }
}

/// Bytes were handed to `c`: within the caps and the bounds the rule implies.
fn output_added(m: &Model, c: ClientId, v: &mut Verdict) {
    let (soft, hard, global) = (
        m.cfg.client_soft_budget,
        m.cfg.client_hard_cap,
        m.cfg.global_cap,
    );
    let overshoot = m.read_max + m.budget.largest_from_guest;
    let k = m.client(c);
    let (q, own) = (k.queued, k.own_over);
    if q > hard {
        let why = format!("{c} has {q} bytes queued, over its hard cap {hard}");
        return v.fail::<Boundedness>(why);
    }
    if q > soft + overshoot + own {
        let why = format!(
            "{c} has {q} bytes queued, over its soft budget {soft} plus one read and the largest frame ({overshoot}) plus the relay's own bytes since it was within its budget ({own})"
        );
        return v.fail::<Boundedness>(why);
    }
    let (sum, own) = (m.sum_queued, m.budget.own_sum);
    if sum > global {
        let why = format!("{sum} bytes queued for all clients, over the global cap {global}");
        return v.fail::<Boundedness>(why);
    }
    if sum > global / 2 + overshoot + own {
        let why = format!(
            "{sum} bytes queued for all clients, over half the global cap {} plus one read and the largest frame ({overshoot}) plus the relay's own bytes since the sum was within half ({own})",
            global / 2
        );
        v.fail::<Boundedness>(why);
    }
}
