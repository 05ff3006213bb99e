//! The invariants: each its own type with its own state, fed the model's
//! [`Fact`]s and, once an event's actions are drained, asked about the
//! model and the core. [`Check`] is what they share; [`Verdict`] keeps the
//! first failure. The list at the bottom is the one place that names them
//! all, in the order they judge a fact.
//!
//! Adding an invariant: a file here with a type implementing [`Check`], one
//! line in the list, one variant of [`Invariant`] (its name in reports and
//! regression cases).

mod bounded_wait;
mod boundedness;
mod cleanup;
mod completeness;
mod control_first;
mod credit;
mod driver_contract;
mod exec_log;
mod fair_credit;
mod fairness;
mod init_ack;
mod isolation;
mod late_reply;
mod leases;
mod liveness;
mod no_loss;
mod notice;
mod ranges;
mod routing;
mod survives;
mod to_guest;
mod workload;

use agent_relay::core::{ClientId, Relay};
use bytes::Bytes;

use super::invariant::{Failure, Invariant};
use super::model::{Client, Ctl, Fact, Facts, Model, Stray, frame_id};

use bounded_wait::BoundedWait;
use boundedness::Boundedness;
use cleanup::Cleanup;
use completeness::Completeness;
use control_first::ControlFirst;
use credit::Credit;
use driver_contract::DriverContract;
use exec_log::ExecLog;
use fair_credit::FairCredit;
use fairness::Fairness;
use init_ack::InitAck;
use isolation::Isolation;
use late_reply::NoLateReply;
use leases::RangeLeases;
use liveness::{CleanupEnd, SessionsEnd, ToGuestEnd};
use no_loss::NoLossWhileReading;
use notice::NoticeAfterKills;
use ranges::CanonicalRanges;
use routing::Routing;
use survives::GuestSurvives;
use to_guest::ToGuest;
use workload::WorkloadPrivate;

/// One invariant: its name, and what it does with what the model reports.
/// Every method has a default that judges nothing.
pub trait Check {
    /// The invariant it judges: the only one it may report.
    const INVARIANT: Invariant;

    /// The facts [`Check::on_fact`] judges, as a mask of [`Fact::bit`]s
    /// (the others are not passed to it).
    const WANTS: u64 = u64::MAX;

    /// It, before the first event (the model is fresh).
    fn new(m: &Model) -> Self;

    /// Its name in reports and regression cases.
    fn name(&self) -> &'static str {
        Self::INVARIANT.name()
    }

    /// A fact the model reports.
    fn on_fact(&mut self, _m: &Model, _f: &Fact<'_>, _v: &mut Verdict) {}

    /// The event's actions are drained and the guest frames it brought
    /// applied: event-wide checks that come before any client's.
    fn settled(&mut self, _m: &Model, _v: &mut Verdict) {}

    /// Then, for each client the event touched, in order.
    fn after_client(
        &mut self,
        _m: &Model,
        _c: ClientId,
        _client: &Client,
        _relay: &Relay,
        _v: &mut Verdict,
    ) {
    }

    /// Then the whole relay against the model.
    fn after_event(&mut self, _m: &Model, _relay: &Relay, _v: &mut Verdict) {}

    /// The run ended with its faults healed and every actor idle.
    fn at_end(&mut self, _m: &Model, _v: &mut Verdict) {}
}

/// The first failure, and how many facts were judged.
#[derive(Debug, Default)]
pub struct Verdict {
    failure: Option<Failure>,
    /// The event being judged (1-based).
    event: u64,
    checks: u64,
}

impl Verdict {
    /// `C` is broken: recorded unless something failed first.
    pub fn fail<C: Check>(&mut self, why: String) {
        self.fail_as(C::INVARIANT, why);
    }

    /// `invariant` is broken (one the world judges, or a failure of `C`
    /// spelled out by the caller).
    pub fn fail_as(&mut self, invariant: Invariant, detail: String) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                invariant,
                detail,
                event: self.event,
                known: None,
            });
        }
    }

    /// The first failure.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Facts and states judged so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }
}

/// The text of a frame to a current guest that is no queued frame where it
/// may leave (each [`Stray`] is one invariant's).
fn stray_why(frame: &Bytes, stray: Stray, head: Option<Ctl>) -> String {
    let what = match stray {
        Stray::LeaseNotFirst => "not the connected record owed first",
        Stray::LeaseOutOfPlace => "a lease record no handshake owes, or out of its place",
        Stray::WrongIncarnation => {
            "the head's disconnect notice with another incarnation than its owner's"
        }
        Stray::NotHead => "a queued frame that is not the head of its queue",
        Stray::ClockOutOfPlace => "a clock sync out of its place in the control queue",
        Stray::NoticeOutOfPlace => "a disconnect notice no departure owes, or out of its place",
        Stray::KillOutOfPlace => {
            "a SIGKILL no departed client's open exec session owes, or out of its place"
        }
        Stray::Unknown => "no frame a client sent that is still due",
    };
    format!(
        "frame id {} ({} bytes) to the guest is {what}; the control queue's head is {head:?}",
        frame_id(frame),
        frame.len()
    )
}

/// The text of a control-queue head that waits though it may leave.
fn head_waits_why(m: &Model) -> Option<(Ctl, String)> {
    let head = m.head_ready?;
    let why = format!(
        "the control queue's head {:?} ({} bytes) waits although the window is open and it fits the credit",
        head.who, head.len
    );
    Some((head.who, why))
}

macro_rules! invariants {
    ($($field:ident: $ty:ident,)*) => {
        /// Every invariant, in the order they judge.
        #[derive(Debug)]
        pub struct Invariants {
            $($field: $ty,)*
            /// The first failure.
            pub verdict: Verdict,
        }

        impl Invariants {
            /// Every invariant, before the first event.
            pub fn new(m: &Model) -> Invariants {
                Invariants {
                    $($field: $ty::new(m),)*
                    verdict: Verdict::default(),
                }
            }

            /// The names, in order.
            pub fn names(&self) -> Vec<&'static str> {
                vec![$(self.$field.name(),)*]
            }

            /// See [`Check::settled`].
            pub fn settled(&mut self, m: &Model) {
                self.verdict.event = m.events;
                $(self.$field.settled(m, &mut self.verdict);)*
            }

            /// See [`Check::after_client`].
            pub fn after_client(&mut self, m: &Model, c: ClientId, client: &Client, relay: &Relay) {
                self.verdict.checks += 1;
                $(self.$field.after_client(m, c, client, relay, &mut self.verdict);)*
            }

            /// See [`Check::after_event`].
            pub fn after_event(&mut self, m: &Model, relay: &Relay) {
                self.verdict.checks += 1;
                $(self.$field.after_event(m, relay, &mut self.verdict);)*
            }

            /// See [`Check::at_end`].
            pub fn at_end(&mut self, m: &Model) {
                self.verdict.event = m.events;
                $(self.$field.at_end(m, &mut self.verdict);)*
            }
        }

        impl Facts for Invariants {
            // An invariant that judges no fact has the mask 0.
            #[allow(clippy::bad_bit_mask)]
            fn fact(&mut self, m: &Model, f: Fact<'_>) {
                self.verdict.event = m.events;
                self.verdict.checks += 1;
                let bit = f.bit();
                $(
                    if <$ty as Check>::WANTS & bit != 0 {
                        self.$field.on_fact(m, &f, &mut self.verdict);
                    }
                )*
            }
        }
    };
}

invariants! {
    driver_contract: DriverContract,
    to_guest: ToGuest,
    no_loss: NoLossWhileReading,
    isolation: Isolation,
    completeness: Completeness,
    workload: WorkloadPrivate,
    late_reply: NoLateReply,
    routing: Routing,
    survives: GuestSurvives,
    boundedness: Boundedness,
    bounded_wait: BoundedWait,
    leases: RangeLeases,
    cleanup: Cleanup,
    fairness: Fairness,
    credit: Credit,
    init_ack: InitAck,
    notice: NoticeAfterKills,
    control_first: ControlFirst,
    fair_credit: FairCredit,
    ranges: CanonicalRanges,
    exec_log: ExecLog,
    sessions_end: SessionsEnd,
    to_guest_end: ToGuestEnd,
    cleanup_end: CleanupEnd,
}
