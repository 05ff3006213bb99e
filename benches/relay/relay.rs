//! The relay under test: the real `Shell` on a thread of its own, running as
//! the CLI runs it (one current-thread runtime; `RELAY_BENCH_RT=multi` puts it
//! on a 2-worker multi-thread runtime instead), fed by a guest on a ring or a
//! stream port.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use agent_relay::core::Config;
use agent_relay::shell::{GuestPort, Shell, ShellHandle};

use crate::guest::{Workload, ring_guest, stream_guest};

/// Chunks each ring queue holds.
const RING_CHUNKS: usize = 64;

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
    _dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub handle: ShellHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    relay: Option<JoinHandle<()>>,
    guest: Option<JoinHandle<()>>,
    guest_stop: Arc<AtomicBool>,
}

pub fn start(port: Port, work: Workload, config: Config, tap: bool) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let guest_stop = Arc::new(AtomicBool::new(false));
    let (src, guest) = match port {
        Port::Ring => {
            let (gp, vmm) = GuestPort::ring(RING_CHUNKS).expect("ring port");
            let st = guest_stop.clone();
            let t = thread::Builder::new()
                .name("guest-vmm".into())
                .spawn(move || ring_guest(vmm, work, st))
                .expect("spawn");
            (PortSrc::Ring(gp), t)
        }
        Port::Stream => {
            let (a, b) = UnixStream::pair().expect("pair");
            a.set_nonblocking(true).expect("nonblocking");
            let t = thread::Builder::new()
                .name("guest-stream".into())
                .spawn(move || stream_guest(b, work))
                .expect("spawn");
            (PortSrc::Stream(a), t)
        }
    };
    let (htx, hrx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sock2 = sock.clone();
    let log_dir = tap.then(|| dir.path().join("log"));
    let relay = thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            // As the CLI runs it: one current-thread runtime (the relay is one
            // task). RELAY_BENCH_RT=multi runs it on a 2-worker multi-thread
            // runtime instead, for comparison.
            let rt = if std::env::var("RELAY_BENCH_RT").as_deref() == Ok("multi") {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
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
                htx.send(shell.handle()).expect("handle");
                shell.run(stopped).await.expect("relay run");
            });
        })
        .expect("spawn");
    let handle = hrx.recv().expect("relay started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(handle.is_ready() && sock.exists()) {
        assert!(Instant::now() < deadline, "relay not ready");
        thread::sleep(Duration::from_millis(1));
    }
    Running {
        _dir: dir,
        sock,
        handle,
        stop: Some(stop),
        relay: Some(relay),
        guest: Some(guest),
        guest_stop,
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
