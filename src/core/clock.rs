//! Rule `clock_sync` (current generation): the guest's wall clock follows the
//! host's. The relay sends `core.clock.sync {unix_time_nanos}` on id 0 at
//! ready, at least every `clock_period`, and whenever the host's wall clock
//! jumped: it moved 6 s or more ahead of the monotonic time passed since the
//! last reading, or went back. Wall time arrives as a value
//! (`Event::WallClock`); the driver reports it when the system clock is set,
//! so nothing polls. The timestamp in the frame is the wall time when the
//! frame is handed to the guest, extrapolated from the last reading.
//!
//! The clock's state lives in the current generation's dialect
//! (`dialect.rs`), which builds the frame; the period is `Timer::ClockSync`,
//! armed when a sync is handed over.

use super::types::Millis;

/// A forward jump at least this large since the last reading asks for a sync.
pub const JUMP_FORWARD_MS: u64 = 6_000;
/// Backward steps smaller than this are reading jitter (readings are
/// milliseconds apart on the driver's monotonic clock), not a step back.
pub const JUMP_BACK_TOLERANCE_NS: u64 = 2_000_000;

/// The clock-sync state.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// The last wall reading and the monotonic time it was taken at.
    reading: Option<(Millis, u64)>,
    /// A sync frame waits in the queue toward the guest.
    pub queued: bool,
}

impl Clock {
    /// A wall reading at `now`: true if it shows a jump.
    pub fn observe(&mut self, now: Millis, wall: u64) -> bool {
        let jumped = self.reading.is_some_and(|(then, was)| {
            let expected = was.saturating_add((now - then).saturating_mul(1_000_000));
            wall >= expected.saturating_add(JUMP_FORWARD_MS * 1_000_000)
                || wall.saturating_add(JUMP_BACK_TOLERANCE_NS) < expected
        });
        self.reading = Some((now, wall));
        jumped
    }

    /// The wall time at `now`, extrapolated from the last reading.
    pub fn wall_at(&self, now: Millis) -> Option<u64> {
        let (then, was) = self.reading?;
        Some(was.saturating_add(now.saturating_sub(then).saturating_mul(1_000_000)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn core_clock_jump_forward_of_six_seconds_or_a_step_back() {
        let mut c = Clock::default();
        assert!(!c.observe(0, 100 * S), "a first reading is no jump");
        assert!(!c.observe(1_000, 101 * S), "in step");
        assert!(!c.observe(2_000, 107 * S - 1), "just under 6 s ahead");
        assert!(c.observe(3_000, 114 * S), "6 s ahead");
        assert!(c.observe(4_000, 114 * S), "a second stood still: 1 s back");
        assert!(!c.observe(4_000, 114 * S - 1_000_000), "1 ms back: jitter");
    }

    #[test]
    fn core_clock_wall_extrapolated() {
        let mut c = Clock::default();
        assert_eq!(c.wall_at(5), None);
        c.observe(10, 50 * S);
        assert_eq!(c.wall_at(1_010), Some(51 * S));
    }
}
