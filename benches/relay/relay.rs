//! The relay under test: the real `Shell` on a thread of its own, running as
//! the CLI runs it (one current-thread runtime; `RELAY_BENCH_RT=multi` puts it
//! on a 2-worker multi-thread runtime instead), fed by a guest of either
//! generation on a ring or a stream port. Knows the relay's threads, so
//! scenarios can read the CPU time they used.

use std::collections::HashSet;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use agent_relay::core::Config;
use agent_relay::shell::{GuestPort, Shell, ShellHandle};

use crate::cpu;
use crate::generation::Gen;
use crate::guest::{Workload, ring_guest, stream_guest};

/// Chunks each ring queue holds.
const RING_CHUNKS: usize = 64;

/// The thread running the relay's runtime.
const RELAY_THREAD: &str = "relay";
/// The exec.log writer's thread, named in `ExecLog::open` (src/shell/exec_log/mod.rs).
const EXEC_LOG_THREAD: &str = "exec-log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Ring,
    Stream,
}

impl Port {
    pub fn describe(self) -> &'static str {
        match self {
            Port::Ring => {
                "ring port (VMM thread: current-thread tokio runtime awaiting a dup of the wake fd)"
            }
            Port::Stream => "stream port (guest: blocking thread on a std UnixStream pair)",
        }
    }
}

enum PortSrc {
    Ring(GuestPort),
    Stream(UnixStream),
}

pub struct Running {
    /// The generation its guest speaks, and its clients with it.
    pub generation: Gen,
    _dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub handle: ShellHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    relay: Option<JoinHandle<()>>,
    guest: Option<JoinHandle<()>>,
    guest_stop: Arc<AtomicBool>,
    /// The runtime's threads: all the relay's own work runs on them.
    relay_tids: Vec<u32>,
    /// The exec.log writer thread, with the tap on.
    writer_tids: Vec<u32>,
}

/// CPU time in nanoseconds, of the relay's runtime threads and of the exec.log
/// writer thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayCpu {
    pub relay: u64,
    pub writer: u64,
}

impl RelayCpu {
    /// The CPU time used between `earlier` and `self`.
    pub fn since(self, earlier: RelayCpu) -> RelayCpu {
        RelayCpu {
            relay: self.relay - earlier.relay,
            writer: self.writer - earlier.writer,
        }
    }
}

/// A relay for a guest of generation `g` doing `work` on `port`, configured
/// as `config` says (for the current generation with the protocol set to
/// it), with the exec.log tap on or off.
pub fn start(port: Port, g: Gen, work: Workload, config: Config, tap: bool) -> Running {
    let config = g.config(config);
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let guest_stop = Arc::new(AtomicBool::new(false));
    let older: HashSet<u32> = cpu::threads().into_iter().map(|(tid, _)| tid).collect();
    let (src, guest) = match port {
        Port::Ring => {
            let (gp, vmm) = GuestPort::ring(RING_CHUNKS).expect("ring port");
            let st = guest_stop.clone();
            let t = thread::Builder::new()
                .name("guest-vmm".into())
                .spawn(move || ring_guest(vmm, work, g, st))
                .expect("spawn");
            (PortSrc::Ring(gp), t)
        }
        Port::Stream => {
            let (a, b) = UnixStream::pair().expect("pair");
            a.set_nonblocking(true).expect("nonblocking");
            let t = thread::Builder::new()
                .name("guest-stream".into())
                .spawn(move || stream_guest(b, work, g))
                .expect("spawn");
            (PortSrc::Stream(a), t)
        }
    };
    let (htx, hrx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sock2 = sock.clone();
    let log_dir = tap.then(|| dir.path().join("log"));
    let relay = thread::Builder::new()
        .name(RELAY_THREAD.into())
        .spawn(move || {
            // As the CLI runs it: one current-thread runtime (the relay is one
            // task). RELAY_BENCH_RT=multi runs it on a 2-worker multi-thread
            // runtime instead, for comparison.
            let mut tids = vec![cpu::own_tid()];
            let rt = if std::env::var("RELAY_BENCH_RT").as_deref() == Ok("multi") {
                let (wtx, wrx) = std::sync::mpsc::channel();
                let wtx = std::sync::Mutex::new(wtx);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .on_thread_start(move || {
                        let _ = wtx.lock().expect("tid channel").send(cpu::own_tid());
                    })
                    .enable_all()
                    .build();
                // The workers start with the runtime, before any task runs.
                tids.extend(wrx.iter().take(2));
                rt
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .expect("relay runtime");
            rt.block_on(async move {
                let gp = match src {
                    PortSrc::Ring(gp) => gp,
                    PortSrc::Stream(a) => GuestPort::stream(
                        tokio::net::UnixStream::from_std(a).expect("tokio stream"),
                    ),
                };
                let mut shell = Shell::new(sock2, gp).config(config);
                if let Some(d) = log_dir {
                    shell = shell.exec_log(d);
                }
                htx.send((shell.handle(), tids)).expect("handle");
                shell.run(stopped).await.expect("relay run");
            });
        })
        .expect("spawn");
    let (handle, relay_tids) = hrx.recv().expect("relay started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(handle.is_ready() && sock.exists()) {
        assert!(Instant::now() < deadline, "relay not ready");
        thread::sleep(Duration::from_millis(1));
    }
    let writer_tids = if tap {
        exec_log_thread(&older, deadline)
    } else {
        Vec::new()
    };
    Running {
        generation: g,
        _dir: dir,
        sock,
        handle,
        stop: Some(stop),
        relay: Some(relay),
        guest: Some(guest),
        guest_stop,
        relay_tids,
        writer_tids,
    }
}

/// The exec.log writer thread: the one thread started since `older` was
/// taken that carries its name. A new thread takes its name only once it
/// runs, so this waits for it (until `deadline`).
fn exec_log_thread(older: &HashSet<u32>, deadline: Instant) -> Vec<u32> {
    loop {
        let found: Vec<u32> = cpu::threads()
            .into_iter()
            .filter(|(tid, name)| name == EXEC_LOG_THREAD && !older.contains(tid))
            .map(|(tid, _)| tid)
            .collect();
        if !found.is_empty() {
            assert_eq!(found.len(), 1, "one exec.log writer thread");
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no exec.log writer thread {EXEC_LOG_THREAD:?} (named in src/shell/exec_log/mod.rs)"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

impl Running {
    /// CPU time used so far by the relay's threads and the exec.log writer,
    /// read once they have gone idle (see [`cpu::settle`]).
    pub fn cpu(&self) -> RelayCpu {
        let all: Vec<u32> = self
            .relay_tids
            .iter()
            .chain(&self.writer_tids)
            .copied()
            .collect();
        cpu::settle(&all);
        RelayCpu {
            relay: cpu::threads_ns(&self.relay_tids),
            writer: cpu::threads_ns(&self.writer_tids),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.guest_stop.store(true, Ordering::Release);
        drop(self.stop.take());
        if let Some(t) = self.relay.take() {
            let _ = t.join();
        }
        if let Some(t) = self.guest.take() {
            let _ = t.join();
        }
    }
}
