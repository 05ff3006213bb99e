//! Rule `late_bulk_dropped`: in the current generation a client's bulk
//! record for one of the last correlations the guest ended on its slot is
//! late: dropped and counted, the client kept; a record for an id never
//! opened is still a violation.

use super::*;

/// A bulk record for a correlation the guest has just ended is late, not a
/// violation: the client could not have seen the end yet. It is dropped and
/// counted; an id never opened is still a violation.
#[test]
fn core_current_late_bulk_record_dropped() {
    let mut h = two_clients(Gen::Current);
    let id = cid(0);
    h.client(1, &empty(V10, MsgType::FsRequest, id));
    h.guest(&named(V10, "core.fs.response", id, 1, &[0xa0]));
    h.expect(
        Event::ClientBytes(ClientId(1), &bulk(id, 1, 1, 0, b"late")),
        &[],
    );
    assert_eq!(h.relay.counters().late_bulk_dropped, 1);
    let acts = h.client(1, &bulk(id + 1, 1, 1, 0, b"never"));
    assert_eq!(
        violation(&acts, 1),
        Some(Violation::BulkWithoutCorrelation { id: id + 1 })
    );
}
