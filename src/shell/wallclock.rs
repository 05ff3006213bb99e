//! Tells the driver when the host's wall clock was set, without polling: a
//! `timerfd` armed on the realtime clock with `TFD_TIMER_CANCEL_ON_SET` is
//! cancelled by the kernel whenever the clock jumps. One parked thread waits
//! on it (and on a stop eventfd) and wakes the driver, which reads the clock
//! and hands the reading to the core (rule `clock_sync`). An idle relay thus
//! wakes for the clock only when the core's periodic sync is due.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use rustix::io::Errno;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::sync::Notify;

/// Stops the watching thread when dropped.
#[derive(Debug)]
pub(crate) struct WallClockWatch {
    stop: Arc<OwnedFd>,
    changed: Arc<Notify>,
}

impl WallClockWatch {
    /// Starts watching.
    pub(crate) fn start() -> io::Result<WallClockWatch> {
        let timer = timerfd_create(
            TimerfdClockId::Realtime,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        let stop = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        let changed = Arc::new(Notify::new());
        let (thread_stop, thread_changed) = (stop.clone(), changed.clone());
        std::thread::Builder::new()
            .name("wall-clock".into())
            .spawn(move || {
                if let Err(e) = watch(&timer, &thread_stop, &thread_changed) {
                    tracing::warn!(
                        "wall-clock watch ended: {e}; clock jumps are seen at the next tick"
                    );
                }
            })?;
        Ok(WallClockWatch { stop, changed })
    }

    /// Completes after the wall clock was set (a stored notice counts).
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Drop for WallClockWatch {
    fn drop(&mut self) {
        let _ = rustix::io::write(&*self.stop, &1u64.to_ne_bytes());
    }
}

/// Arms the timer far in the future, cancelled by any clock set.
fn arm(timer: &OwnedFd) -> io::Result<()> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let far = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: now.tv_sec.saturating_add(10 * 365 * 86_400),
            tv_nsec: 0,
        },
    };
    let flags = TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET;
    timerfd_settime(timer, flags, &far)?;
    Ok(())
}

fn watch(timer: &OwnedFd, stop: &OwnedFd, changed: &Notify) -> io::Result<()> {
    arm(timer)?;
    loop {
        let mut fds = [
            PollFd::new(timer, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if !fds[1].revents().is_empty() {
            return Ok(());
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        let mut buf = [0u8; 8];
        match rustix::io::read(timer, &mut buf) {
            Err(Errno::CANCELED) => {
                changed.notify_one();
                arm(timer)?;
            }
            Ok(_) => arm(timer)?,
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
