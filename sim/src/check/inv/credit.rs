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

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model, Window};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct Credit;

impl Check for Credit {
    const INVARIANT: Invariant = Invariant::Credit;
    const WANTS: u64 = Fact::CHARGED;

    fn new(_m: &Model) -> Self {
        Credit
    }

    /// A frame leaves now: it must fit its class.
    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        let Fact::Charged { class, len, .. } = *f else {
            return;
        };
        let Some(credit) = m.current.as_ref().and_then(|c| c.credit.as_ref()) else {
            return;
        };
        if !credit.fits(class, len) {
            let (g, u) = (credit.granted, credit.used);
            let why = format!(
                "a {class:?} frame of {len} bytes went to the guest with {u:?} used of {g:?} granted"
            );
            v.fail::<Self>(why);
        }
    }

    /// After an event: the core's grants and use, per class, are the model's.
    fn after_event(&mut self, m: &Model, relay: &Relay, v: &mut Verdict) {
        let Some(credit) = m.current.as_ref().and_then(|c| c.credit.as_ref()) else {
            return;
        };
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
            v.fail::<Self>(why);
        }
    }
}
