//! Rule `backpressure_bounded_wait`: a client that keeps reading never loses
//! output; one that stops costs the others at most one grace period; memory
//! stays within the caps.
//!
//! - **Over budget, the guest waits.** When a client's queued output passes
//!   its soft budget, or all clients' together pass half the global cap, the
//!   relay stops reading the guest ([`Action::PauseGuest`]) instead of
//!   queueing more; it reads again ([`Action::ResumeGuest`]) once no client
//!   is over and the sum is low again. Frames the last read completed are
//!   still routed, so a queue can pass its budget by one read batch and one
//!   frame, never more.
//! - **Progress is half the budget.** A client over its soft budget has one
//!   grace period, from the moment it went over, to take its queue down to
//!   half the budget; then it is no longer over. Reading a few bytes now and
//!   then is not progress, so a trickle cannot hold the guest: it is closed
//!   at the end of the grace period, as a stalled client is, and the guest
//!   is read again. A reader that keeps up is never closed, however fast the
//!   guest writes. The sum has its own grace period, from the moment it
//!   passed half the global cap, to fall to a quarter of it; if it does not,
//!   the client holding the most is closed, and the sum gets another.
//! - **Caps stay as the last line.** A frame that would take one client past
//!   its hard cap, or all past the global cap, closes the client (the one
//!   holding the most, for the global cap) at once. With a hard cap of at
//!   least the soft budget plus the largest frame plus one read batch (the
//!   CLI refuses less), and a global cap of twice that, a reading client
//!   never meets them.
//!
//! A client closed here is a slow consumer, with its sessions cleaned up as
//! on any departure.
//!
//! The decisions are plain functions of the numbers; the queues they judge
//! are the clients' (`clients.rs`), their deadlines `Timer::SlowConsumerGrace`
//! and `Timer::GlobalGrace`.

use super::types::Config;

/// Whether `len` more bytes for a client holding `queued` would pass its
/// hard cap.
#[inline]
pub(super) fn breaks_hard_cap(queued: usize, len: usize, cfg: &Config) -> bool {
    queued + len > cfg.client_hard_cap
}

/// Whether `len` more bytes with `total` queued for all clients would pass
/// the global cap.
#[inline]
pub(super) fn breaks_global_cap(total: usize, len: usize, cfg: &Config) -> bool {
    total + len > cfg.global_cap
}

/// Whether a client now holding `queued` went over its soft budget (it was
/// not over before): its grace period starts.
#[inline]
pub(super) fn goes_over(queued: usize, was_over: bool, cfg: &Config) -> bool {
    queued > cfg.client_soft_budget && !was_over
}

/// Whether a client over its budget, now holding `queued`, made progress:
/// half its budget or less.
#[inline]
pub(super) fn back_under(queued: usize, cfg: &Config) -> bool {
    queued <= cfg.client_soft_budget / 2
}

/// The sum's grace period with `total` queued for all clients, while it
/// `runs` or not: `Some(true)` it starts (over half the global cap),
/// `Some(false)` it ends (down to a quarter), `None` nothing changes.
#[inline]
pub(super) fn global_grace(total: usize, runs: bool, cfg: &Config) -> Option<bool> {
    match runs {
        false if total > cfg.global_cap / 2 => Some(true),
        true if total <= cfg.global_cap / 4 => Some(false),
        _ => None,
    }
}

/// The slot whose client holds the most output, and how much, of
/// `(slot, queued)` pairs (ties: the lowest slot).
pub(super) fn holder_of_most(
    queues: impl Iterator<Item = (usize, usize)>,
) -> Option<(usize, usize)> {
    queues.max_by_key(|&(i, q)| (q, std::cmp::Reverse(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            client_soft_budget: 100,
            client_hard_cap: 400,
            global_cap: 1_000,
            ..Config::default()
        }
    }

    #[test]
    fn core_budget_over_at_the_budget_back_under_at_half() {
        let c = cfg();
        assert!(!goes_over(100, false, &c), "at the budget is not over");
        assert!(goes_over(101, false, &c));
        assert!(!goes_over(500, true, &c), "already over: no new period");
        assert!(!back_under(51, &c));
        assert!(back_under(50, &c));
    }

    #[test]
    fn core_budget_caps_and_the_sum_s_grace() {
        let c = cfg();
        assert!(!breaks_hard_cap(300, 100, &c));
        assert!(breaks_hard_cap(300, 101, &c));
        assert!(!breaks_global_cap(900, 100, &c));
        assert!(breaks_global_cap(900, 101, &c));
        assert_eq!(global_grace(500, false, &c), None);
        assert_eq!(global_grace(501, false, &c), Some(true));
        assert_eq!(
            global_grace(251, true, &c),
            None,
            "between a quarter and half"
        );
        assert_eq!(global_grace(250, true, &c), Some(false));
    }

    #[test]
    fn core_budget_holder_of_most_ties_to_the_lowest_slot() {
        let q = [(0, 5), (1, 9), (2, 9), (3, 1)];
        assert_eq!(holder_of_most(q.into_iter()), Some((1, 9)));
        assert_eq!(holder_of_most(std::iter::empty()), None);
    }
}
