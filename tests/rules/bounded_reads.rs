//! Rule `bounded_reads`: guest bytes are read in bounded batches, reading
//! the guest is paced by writing, and not read at all while the core says
//! `PauseGuest`; in both generations. (Slow readers over real sockets:
//! `tests/shell_relay.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_relay::core::Config;
use agent_relay::shell::{GuestPort, RingVmm, Shell};
use tokio::io::AsyncReadExt;

use crate::common::generation::{GENERATIONS, Gen};
use crate::shell_support::*;

/// The VMM side of a ring port on its own thread: sends generation `g`'s
/// ready, waits for one exec request, then floods `frames` stdout frames of
/// `payload` bytes for it as fast as the ring takes them, then the exit, and
/// waits for `stop`.
fn flood(g: Gen, mut vmm: RingVmm, frames: usize, payload: usize, stop: Arc<AtomicBool>) {
    let write_all = |vmm: &mut RingVmm, mut b: &[u8]| {
        while !b.is_empty() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let n = vmm.write(b);
            if n == 0 {
                std::thread::yield_now();
            }
            b = &b[n..];
        }
    };
    write_all(&mut vmm, &g.ready());
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The request: [len][id]...; only the id matters here.
    while got.len() < 8
        || got.len() < 4 + u32::from_be_bytes([got[0], got[1], got[2], got[3]]) as usize
    {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let n = vmm.read(&mut buf);
        if n == 0 {
            std::thread::yield_now();
        }
        got.extend_from_slice(&buf[..n]);
    }
    let id = u32::from_be_bytes([got[4], got[5], got[6], got[7]]);
    let frame = stdout(g.v(), id, &vec![b'x'; payload]);
    for _ in 0..frames {
        write_all(&mut vmm, &frame);
    }
    write_all(&mut vmm, &exited(g.v(), id, 0));
    // Stay alive until the test has read everything: a VMM end that goes
    // away makes the relay close its clients (guest gone).
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A guest that fills the ring faster than anything can drain it must not get
/// a client that reads as fast as it can closed as a slow consumer: the
/// driver writes before it reads the next guest batch and lets the runtime
/// refresh socket readiness while a socket is full (here the client runs on
/// the relay's own single thread, so it only gets to read when the driver
/// yields).
#[tokio::test]
async fn shell_reader_at_full_speed_is_not_a_slow_consumer_of_a_flooding_ring() {
    const FRAMES: usize = 2048;
    const PAYLOAD: usize = 16 << 10; // 32 MiB in all: four times the hard cap
    for g in GENERATIONS {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let (port, vmm) = GuestPort::ring(64).unwrap();
        let stop_vmm = Arc::new(AtomicBool::new(false));
        let stop2 = stop_vmm.clone();
        let vmm_thread = std::thread::spawn(move || flood(g, vmm, FRAMES, PAYLOAD, stop2));
        let shell = Shell::new(&sock, port).config(g.config(Config::default()));
        let handle = shell.handle();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(shell.run(stopped));
        handle.wait_ready(PROMPT).await.unwrap();

        let mut c = connect_with(&sock, g == Gen::Current).await;
        let id = c.offset + 1;
        c.client.send(&exec_request(g.v(), id, false, 0)).await;
        let want =
            FRAMES * stdout(g.v(), id, &vec![b'x'; PAYLOAD]).len() + exited(g.v(), id, 0).len();
        let mut total = 0;
        let mut buf = vec![0u8; 64 << 10];
        let read_all = async {
            while total < want {
                match c.client.io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        tokio::time::timeout(PROMPT * 6, read_all)
            .await
            .expect("the flood arrives in time");
        let counters = handle.counters();
        assert_eq!(
            (total, counters.slow_consumer_closes),
            (want, 0),
            "{g:?}: a full-speed reader was cut off: {counters:?}"
        );
        stop_vmm.store(true, Ordering::Relaxed);
        drop(stop);
        task.await.unwrap().unwrap();
        vmm_thread.join().unwrap();
    }
}
