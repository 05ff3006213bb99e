//! `driver_contract` (harness): the driver fed only events the core's
//! contract allows: no guest bytes while the core has the guest paused
//! (rule `backpressure_bounded_wait`), no read longer than the driver's read
//! size (the bounds of `inv_boundedness` count one read), and never a
//! departed client's id again. The core is not to blame for what follows a
//! broken contract.

use agent_relay::core::Event;

use super::super::invariant::Invariant;
use super::super::model::{Fact, Model};
use super::{Check, Verdict};

/// See the module docs.
#[derive(Debug)]
pub struct DriverContract;

impl Check for DriverContract {
    const INVARIANT: Invariant = Invariant::DriverContract;
    const WANTS: u64 = Fact::EVENT | Fact::ID_REUSED | Fact::CLIENT_READ;

    fn new(_m: &Model) -> Self {
        DriverContract
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        match *f {
            Fact::Event(Event::GuestBytes(b)) => {
                let len = b.len();
                if m.budget.paused {
                    let why = format!("fed {len} guest bytes while the core has the guest paused");
                    v.fail::<Self>(why);
                } else if len > m.read_max {
                    let why = format!("fed {len} guest bytes in one read, over {}", m.read_max);
                    v.fail::<Self>(why);
                }
            }
            Fact::IdReused(c) => v.fail::<Self>(format!("driver reused the id of departed {c}")),
            Fact::ClientRead { c, len } if len > m.read_max => {
                let why = format!("fed {len} bytes of {c} in one read, over {}", m.read_max);
                v.fail::<Self>(why);
            }
            _ => {}
        }
    }
}
