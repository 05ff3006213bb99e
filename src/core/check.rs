//! `Relay::check`: the core asserts its own consistency. With the `testing`
//! feature (the simulator and the tests turn it on), a relay made with
//! `Relay::checked` runs it after every [`Relay::handle`], in release builds
//! too, where `debug_assertions` is off. Benchmarks, which are built with the
//! same feature, use plain relays and pay nothing for it.

use super::relay::Relay;
use super::timer::{Key, SlotDeadline, Timer};

fn quarantine(slot: usize) -> Key {
    Key::Slot(slot as u32, SlotDeadline::Quarantine)
}

/// Sums over the slots, to compare with the counters.
#[derive(Default)]
struct Sums {
    live: u64,
    queued_to_clients: u64,
    sessions: u64,
    requests: u64,
    execs: u32,
    over: u32,
}

impl Relay {
    /// Panics if the core's bookkeeping disagrees with itself: counters equal
    /// the sums over slots, the client map and the slots agree, queued bytes
    /// equal what is queued, fences stand on departed slots only.
    pub fn check(&self) {
        let queued_to_guest = self.sched.check();
        assert_eq!(
            self.counters.queued_to_guest, queued_to_guest as u64,
            "queued_to_guest counter"
        );
        let sums = self.check_slots();
        let c = &self.counters;
        assert_eq!(
            self.by_client.len() + self.waiting.len(),
            sums.live as usize,
            "client map size"
        );
        assert_eq!(c.live_clients, sums.live, "live_clients counter");
        assert_eq!(
            c.queued_to_clients, sums.queued_to_clients,
            "queued_to_clients counter"
        );
        assert_eq!(c.live_sessions, sums.sessions, "live_sessions counter");
        assert_eq!(c.open_requests, sums.requests, "open_requests counter");
        assert_eq!(self.over_clients, sums.over, "clients over their budget");
        let pause = self.over_clients > 0 || self.deadlines.get(Key::Global).is_some();
        if !self.guest_gone {
            assert_eq!(
                self.guest_paused_since.is_some(),
                pause,
                "the guest is paused exactly while someone is over budget"
            );
        }
        if self.exec_limits.is_some() {
            assert_eq!(self.active_execs, sums.execs, "active executions");
        }
        self.check_fences();
        self.check_deadlines();
        self.check_leases();
        if self.layout.is_none() {
            assert!(
                self.slots.is_empty(),
                "slots before the generation is known"
            );
        }
    }

    fn check_slots(&self) -> Sums {
        let mut sums = Sums {
            live: self.waiting.len() as u64,
            ..Sums::default()
        };
        for (i, slot) in self.slots.iter().enumerate() {
            for corr in slot.open.values() {
                sums.sessions += u64::from(corr.kind.is_session());
                sums.requests += u64::from(!corr.kind.is_session());
                sums.execs += u32::from(corr.counts);
            }
            assert!(
                slot.open.len() <= self.cfg.max_correlations.max(1),
                "slot {i} over the correlation bound"
            );
            let Some(conn) = &slot.conn else {
                continue;
            };
            sums.live += 1;
            sums.queued_to_clients += conn.queued as u64;
            assert_eq!(
                self.by_client.get(&conn.client),
                Some(&(i as u32)),
                "{} holds slot {i} but the client map disagrees",
                conn.client
            );
            assert!(
                self.deadlines.get(quarantine(i)).is_none(),
                "slot {i} is held and quarantined"
            );
            assert!(
                !conn.over || conn.queued > self.cfg.client_soft_budget / 2,
                "grace runs for {} at half its soft budget or less",
                conn.client
            );
            assert!(
                conn.over || conn.queued <= self.cfg.client_soft_budget,
                "{} is over its soft budget without a grace period",
                conn.client
            );
            assert_eq!(
                self.deadlines
                    .get(Key::Slot(i as u32, SlotDeadline::Grace))
                    .is_some(),
                conn.over,
                "{} is over its budget exactly while its grace runs",
                conn.client
            );
            sums.over += u32::from(conn.over);
        }
        sums
    }

    /// Incarnations: held by live owners only, awaited by departed ones
    /// only, never zero, never two alike.
    fn check_leases(&self) {
        if !self.leases.on {
            return;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.incarnation.is_some() {
                assert!(
                    slot.conn.is_some(),
                    "slot {i}: an incarnation without a client"
                );
            }
            if slot.awaiting.is_some() {
                assert!(
                    slot.conn.is_none(),
                    "slot {i}: awaits an ack but has a client"
                );
                assert!(
                    self.deadlines.get(quarantine(i)).is_none(),
                    "slot {i}: leased and timed"
                );
            }
            for inc in slot.incarnation.iter().chain(slot.awaiting.iter()) {
                assert_ne!(*inc, [0; 16], "slot {i}: a zero incarnation");
                assert!(seen.insert(*inc), "slot {i}: an incarnation twice");
            }
        }
    }

    /// Every armed deadline belongs to state that waits on it.
    fn check_deadlines(&self) {
        for (key, t) in self.deadlines.iter() {
            let ok = match (key, t.timer) {
                (Key::Slot(i, SlotDeadline::Grace), Timer::SlowConsumerGrace(c)) => {
                    let conn = self.slots[i as usize].conn.as_ref();
                    conn.is_some_and(|conn| conn.over && conn.client == c)
                }
                (Key::Slot(i, SlotDeadline::Quarantine), Timer::Quarantine { slot }) => {
                    let s = &self.slots[i as usize];
                    slot == i && s.conn.is_none() && !s.open.is_empty()
                }
                (Key::Global, Timer::GlobalGrace) => true,
                (Key::Flush(c), Timer::CloseFlush(d)) => c == d && self.flushing.contains_key(&c),
                (Key::Clock, Timer::ClockSync) => !self.clock.queued && !self.guest_gone,
                _ => false,
            };
            assert!(
                ok,
                "deadline {key:?} at {}: {} waits on nothing",
                t.at, t.timer
            );
        }
        for &client in self.flushing.keys() {
            assert!(
                self.deadlines.get(Key::Flush(client)).is_some(),
                "{client} flushes without a deadline"
            );
        }
    }

    fn check_fences(&self) {
        for (&seq, &slot) in &self.fences {
            assert!(seq <= self.sched.handed, "a fence from the future");
            assert!(
                self.slots[slot as usize].conn.is_none(),
                "fence on slot {slot}, which has a client"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::{Config, Relay};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// The check is only worth its cost if it fires: a fresh relay passes,
    /// the same relay with one counter off by one does not.
    #[test]
    fn check_fires_on_a_counter_that_disagrees_with_the_slots() {
        let mut relay = Relay::new(Config::default());
        relay.check();
        relay.counters.live_clients += 1;
        let fired = catch_unwind(AssertUnwindSafe(|| relay.check()));
        assert!(
            fired.is_err(),
            "a live_clients counter of 1 with no client passed"
        );
    }
}
