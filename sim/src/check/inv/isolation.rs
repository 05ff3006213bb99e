//! `inv_isolation`: no client sees another client's frames or affects its
//! sessions. A client gets a handshake (its own slot's range, then the
//! cached ready frame) or a refusal, never a slot another client still
//! holds; it is refused only when the relay is really full or the guest
//! gone; it is closed only for something it did (the violation it
//! committed, matched by variant with the rule the model saw broken; its
//! own budgets, as rule `backpressure_bounded_wait` says; the guest
//! leaving); it is paused only while live; no exec.log record appears with
//! the tap off; a departed client keeps no slot; and a client waiting for
//! an answer gets one in its event.

use agent_relay::core::{Action, ClientId, CloseReason, RefuseReason, Relay, SlowLimit};

use super::super::invariant::Invariant;
use super::super::model::{Client, Due, Fact, Model, Prologue, State};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct Isolation;

impl Check for Isolation {
    const INVARIANT: Invariant = Invariant::Isolation;
    const WANTS: u64 = Fact::ACTION
        | Fact::HANDSHAKE
        | Fact::PROLOGUE
        | Fact::SLOT_HELD
        | Fact::REFUSE
        | Fact::CLOSE
        | Fact::SLOW_CLOSE;

    fn new(_m: &Model) -> Self {
        Isolation
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::Action(action) => judge_action(m, action, v),
            Fact::Handshake { c, due } => match due {
                Due::Yes => {}
                Due::BeforeReady => v.fail::<Self>(format!("handshake to {c} before core.ready")),
                Due::Unexpected => v.fail::<Self>(format!("unexpected handshake to {c}")),
            },
            Fact::Prologue { c, found } if m.current.is_none() => match found {
                Prologue::Slot(_) => {}
                Prologue::NotRangeThenReady => v.fail::<Self>(format!(
                    "handshake to {c} is not its range then the cached ready frame"
                )),
                Prologue::NotASlot { start, end } => v.fail::<Self>(format!(
                    "handshake to {c} gives range {start}..{end}, not a slot's"
                )),
            },
            Fact::SlotHeld { c, slot, other } => {
                let o = m.client(other);
                let why = format!(
                    "{c} got slot {slot} while {other} still holds it ({:?}, {} sessions, {} frames and {} kills toward the guest)",
                    o.state,
                    o.sessions.len(),
                    o.out.len(),
                    o.kills.len()
                );
                v.fail::<Self>(why);
            }
            Fact::Refuse { c, reason } => refused(m, c, reason, v),
            Fact::Close { c, reason } => closed(m, c, reason, v),
            Fact::SlowClose { c, queued, limit } => slow_close(m, c, queued, limit, v),
            _ => {}
        }
    }

    /// A departed client lost its slot; a waiting one got an answer.
    fn after_client(&mut self, m: &Model, c: ClientId, k: &Client, relay: &Relay, v: &mut Verdict) {
        match k.state {
            State::Gone if relay.client_range(c).is_some() => {
                v.fail::<Self>(format!("{c} left but still has a slot"));
            }
            State::Pending
                if k.bad.is_none() && (k.hs_due || (k.connecting && m.ready.is_some())) =>
            {
                v.fail::<Self>(format!("{c} got neither a handshake nor a refusal"));
            }
            State::Gone | State::Pending | State::Live => {}
        }
    }
}

/// What an action alone says: no start-up failure (the world's guest
/// starts), a flush expires only for a client the guest's departure closed,
/// pauses only for live clients, no record with the tap off.
fn judge_action(m: &Model, action: &Action, v: &mut Verdict) {
    match action {
        Action::StartupFailed(why) => {
            v.fail::<Isolation>(format!("start-up failure: {why}"));
        }
        Action::FlushExpired { client } => {
            let gone = m
                .clients
                .get(client)
                .is_some_and(|k| k.state == State::Gone);
            if !m.guest_gone || !gone {
                v.fail::<Isolation>(format!(
                    "{client}: flush expired, but it was not closed by the guest going away"
                ));
            }
        }
        Action::PauseClient(c) | Action::ResumeClient(c)
            if m.clients.get(c).is_none_or(|k| k.state != State::Live) =>
        {
            v.fail::<Isolation>(format!("{action:?} for a client not live"));
        }
        Action::Log(_) if !m.cfg.exec_log => {
            v.fail::<Isolation>("exec.log record with the tap off".into());
        }
        _ => {}
    }
}

/// A refusal goes only to a client waiting for its answer, and only for
/// the reason that holds.
fn refused(m: &Model, c: ClientId, reason: &RefuseReason, v: &mut Verdict) {
    if m.clients
        .get(&c)
        .is_none_or(|k| !(k.connecting || k.hs_due))
    {
        return v.fail::<Isolation>(format!("refused {c} which was not connecting"));
    }
    match reason {
        RefuseReason::GuestGone if !m.guest_gone => {
            v.fail::<Isolation>(format!("refused {c}: guest gone, but it is not"));
        }
        RefuseReason::GuestGone => {}
        RefuseReason::Full { .. } => check_full(m, c, v),
        RefuseReason::StartupFailed => v.fail::<Isolation>(format!(
            "refused {c}: start-up failure, but the world's guest starts"
        )),
    }
}

/// Refusing `c` as full is right only if every slot is held.
fn check_full(m: &Model, c: ClientId, v: &mut Verdict) {
    // The clients waiting for a slot, and the slots some handshaken client
    // (live or departed) still holds: every one of those is in its slot's
    // list of holders.
    let pending = m
        .present
        .iter()
        .filter(|&&o| o != c && m.client(o).state == State::Pending)
        .count();
    let slots = m
        .by_slot
        .iter()
        .filter(|holders| holders.iter().any(|&o| o != c && m.client(o).holds_slot()))
        .count();
    let held = slots + pending;
    let max = m
        .layout
        .map_or(m.cfg.legacy.max_clients as usize, |l| l.slots());
    if held < max {
        let why = format!("refused {c} as full while only {held} of {max} slots are held");
        v.fail::<Isolation>(why);
    }
}

/// A close goes to a known client once, for a violation it committed (the
/// variant of the rule the model saw broken) or the guest going away; slow
/// consumers are judged by [`slow_close`].
fn closed(m: &Model, c: ClientId, reason: &CloseReason, v: &mut Verdict) {
    let Some(k) = m.clients.get(&c) else {
        return v.fail::<Isolation>(format!("closed unknown {c}"));
    };
    if k.state == State::Gone {
        return v.fail::<Isolation>(format!("closed {c} twice"));
    }
    match reason {
        CloseReason::Violation(why) => match k.bad {
            None => v.fail::<Isolation>(format!(
                "{c} closed for a violation it did not commit: {why}"
            )),
            Some(expected) if !expected.matches(why) => v.fail::<Isolation>(format!(
                "{c} closed for {why:?}; the rule it broke is {expected:?}"
            )),
            Some(_) => {}
        },
        CloseReason::GuestGone if !m.guest_gone => {
            v.fail::<Isolation>(format!("{c} closed: guest gone, but it is not"));
        }
        CloseReason::GuestGone | CloseReason::SlowConsumer { .. } => {}
    }
}

/// Closing `c` as a slow consumer at `limit` is what rule
/// `backpressure_bounded_wait` says: at the end of its grace period (a tick
/// at or after its deadline); at its hard cap (its next frame would pass
/// it); at the end of the sum's grace period (a tick) or at the global cap
/// (a frame would pass it), the client holding the most, ties going to the
/// lowest slot. (A close that takes a client keeping pace is
/// `inv_no_loss_while_reading`'s to judge first.)
fn slow_close(m: &Model, c: ClientId, queued: usize, limit: SlowLimit, v: &mut Verdict) {
    let k = m.client(c);
    let next = m.next_frame_len(k);
    let (now, grace) = (m.now, m.cfg.grace);
    let fair = match limit {
        SlowLimit::HardCap => k.queued + next > m.cfg.client_hard_cap,
        SlowLimit::Grace => k.over_since.is_some_and(|t| m.tick && t + grace <= now),
        SlowLimit::GlobalCap => {
            let due = if m.tick {
                m.budget.global_since.is_some_and(|t| t + grace <= now)
            } else {
                // A departed client is handed nothing more.
                let largest = m
                    .present
                    .iter()
                    .map(|&o| m.next_frame_len(m.client(o)))
                    .max()
                    .unwrap_or(0);
                m.sum_queued + largest > m.cfg.global_cap
            };
            due && holds_the_most(m, c)
        }
    };
    if !fair {
        let why = format!(
            "{c} closed as slow ({limit:?}) with {queued} bytes queued, next frame {next} bytes, unjustified (sum {}, the sum's grace since {:?}, {c} over since {:?}, now {now})",
            m.sum_queued, m.budget.global_since, k.over_since
        );
        v.fail::<Isolation>(why);
    }
}

/// `c` holds the most output of all clients with a slot, and of those
/// holding as much, has the lowest slot.
fn holds_the_most(m: &Model, c: ClientId) -> bool {
    let k = m.client(c);
    m.present.iter().all(|&o| {
        let om = m.client(o);
        o == c
            || om.queued < k.queued
            || (om.queued == k.queued && (om.state != State::Live || om.slot > k.slot))
    })
}
