//! Rule `range_leases`: when the guest's ready offers `relay_lease` format
//! 1, each handshake draws a nonzero incarnation of its own and queues the
//! connected record ahead of every frame of that client; the departure's
//! notice names the incarnation; the slot is then taken until the guest's
//! disconnect ack for that incarnation, with no timer, at which the slot and
//! its executions are released; an ack for an incarnation no slot awaits is
//! counted and ignored. Current generation only. (Against 0.7.13's own
//! record codec: `tests/wire_compat_current.rs`; any run: the simulator's
//! `inv_range_leases`.)

use super::*;
use agent_relay::wire::lease::{LeaseEvent, LeaseRecord};

/// A current relay whose guest offers leases (and `limits`), two slots.
fn leased(cfg: Config, limits: Option<ExecLimits>) -> Harness {
    let cfg = Config {
        exec_log: false,
        current: CurrentSettings {
            clients: 2,
            incarnation_seed: 7,
            ..cfg.current
        },
        ..cfg
    };
    Gen::Current.harness_with(cfg, &ready_offering(V10, 1, None, limits, Some(1)))
}

/// The one connected record `acts` hand the guest.
fn connected(acts: &[Action]) -> LeaseRecord {
    let frames = to_guest(acts);
    assert_eq!(frames.len(), 1, "{acts:?}");
    let r = LeaseRecord::decode(&frames[0]).expect("a lease record");
    assert_eq!(r.event, LeaseEvent::Connected);
    r
}

/// Each handshake hands the guest a connected record for the slot's
/// canonical range with an incarnation of its own, before any frame of
/// that client, even when both wait for the guest's window.
#[test]
fn core_current_lease_record_goes_before_the_clients_frames() {
    let mut h = leased(
        Config {
            guest_window: 1,
            ..small()
        },
        None,
    );
    // Client 1's record fills the window.
    let first = connected(&h.connect(1));
    assert_eq!((first.id_start, first.id_end), (cid(0), crange(0).end));
    assert_ne!(first.incarnation, [0; 16]);
    // Client 2's record and its first frame wait, in that order.
    let acts = h.connect(2);
    assert!(to_guest(&acts).is_empty(), "{acts:?}");
    let req = exec_request(V10, cid(1), false, 0);
    assert!(to_guest(&h.client(2, &req)).is_empty());
    let sent = to_guest(&h.drive());
    assert_eq!(sent.len(), 2, "{sent:?}");
    let second = LeaseRecord::decode(&sent[0]).expect("the record first");
    assert_eq!((second.id_start, second.id_end), (cid(1), crange(1).end));
    assert_ne!(second.incarnation, first.incarnation);
    assert_ne!(second.incarnation, [0; 16]);
    assert_eq!(sent[1], req);
    assert_eq!(h.relay.counters().leases_granted, 2);
}

/// The notice names the departed owner's incarnation; its slot (and its
/// killed execution, against `max_executions`) waits for the guest's ack of
/// that incarnation, with no timer; a stale ack is ignored and counted.
#[test]
fn core_current_leased_slot_waits_for_the_guests_ack() {
    let limits = ExecLimits {
        max_executions: 1,
        ..ExecLimits::default()
    };
    let mut h = leased(small(), Some(limits));
    let first = connected(&h.connect(1));
    let second = connected(&h.connect(2));
    h.client(1, &exec_request(V10, cid(0), false, 0));
    let acts = h.disconnect(1);
    let notice = client_disconnected_leased(V10, crange(0), Some(first.incarnation));
    assert_eq!(to_guest(&acts), vec![kill(V10, cid(0)), notice]);
    assert_eq!(h.relay.poll_timeout(), None, "no quarantine timer");
    // Slot 0 awaits its ack: a third client is refused, and client 2's exec
    // is over the limit while the departed one counts.
    let acts = h.connect(3);
    assert!(matches!(acts[..], [Action::Refuse { .. }]), "{acts:?}");
    let acts = h.client(2, &exec_request(V10, cid(1), false, 0));
    assert!(to_guest(&acts).is_empty(), "refused at the limit: {acts:?}");
    let stale = lease_record(LeaseEvent::DisconnectedAck, crange(0), second.incarnation);
    h.guest(&stale);
    assert_eq!(h.relay.counters().lease_acks_ignored, 1);
    let ack = lease_record(LeaseEvent::DisconnectedAck, crange(0), first.incarnation);
    h.guest(&ack);
    assert_eq!(h.relay.counters().lease_acks, 1);
    let again = connected(&h.connect(4));
    assert_eq!(again.id_start, cid(0));
    assert_ne!(again.incarnation, first.incarnation);
    let acts = h.client(2, &exec_request(V10, cid(1) + 1, false, 0));
    assert_eq!(to_guest(&acts).len(), 1, "the execution was released");
}
