//! `inv_credit`: with input credit (`Ready.workload_transport_barrier_version
//! == 2`), no frame goes to the guest beyond what its class was granted:
//! per class (control; data: raw bulk records, stdin, fs and tcp data, tcp
//! end of stream), the bytes of every frame handed over since ready, each
//! counted whole with its 4-byte length prefix, stay within the bytes
//! granted, and the frames within the frames granted. Grants start at 8 MiB
//! / 256 frames (control) and 32 MiB / 256 frames (data), are absolute and
//! cumulative, and a grant that would lower any field is ignored. The init
//! acks, sent before ready, are not charged. A frame is judged against the
//! grants the relay had read when it handed the frame over (the guest frames
//! before the first one that makes it act). After every event the core's
//! counts of what was granted and used per class equal the model's (a frame
//! charged to the wrong class shows there at once).

use agent_relay::core::Relay;

use super::current::{Class, Window};
use super::{Checker, Invariant};

impl Checker {
    /// A `class` frame of `len` bytes leaves now: it must fit.
    pub(super) fn judge_credit(&mut self, class: Class, len: usize) {
        let Some(credit) = self.current.as_ref().and_then(|c| c.credit.as_ref()) else {
            return;
        };
        self.checks += 1;
        if !credit.fits(class, len) {
            let (g, u) = (credit.granted, credit.used);
            let why = format!(
                "a {class:?} frame of {len} bytes went to the guest with {u:?} used of {g:?} granted"
            );
            self.fail(Invariant::Credit, why);
        }
    }

    /// After an event: the core's grants and use, per class, are the model's.
    pub(super) fn after_event_credit(&mut self, relay: &Relay) {
        let Some(credit) = self.current.as_ref().and_then(|c| c.credit.as_ref()) else {
            return;
        };
        self.checks += 1;
        let k = relay.counters();
        let w = |bytes, frames| Window { bytes, frames };
        let core = [
            [
                w(k.credit_control_bytes, k.credit_control_frames),
                w(k.credit_data_bytes, k.credit_data_frames),
            ],
            [
                w(k.used_control_bytes, k.used_control_frames),
                w(k.used_data_bytes, k.used_data_frames),
            ],
        ];
        if core != [credit.granted, credit.used] {
            let why = format!(
                "the core counts {core:?} granted and used (control, data), the model {:?}",
                [credit.granted, credit.used]
            );
            self.fail(Invariant::Credit, why);
        }
    }
}
