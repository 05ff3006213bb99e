//! End-to-end benchmarks: the real shell (tokio, on its own threads) with
//! real Unix-socket clients (std `UnixStream`s in client threads), each figure
//! against a baseline measured in the same run: the same bytes through a
//! plain `UnixStream::pair()` with no relay in between.
//!
//! Run all: `cargo bench --bench relay`; one: `cargo bench --bench relay -- 4`.
//! The relay runs as the CLI runs it, on a current-thread runtime of its own;
//! `RELAY_BENCH_RT=multi` puts it on a 2-worker multi-thread runtime instead.
//!
//! Scenarios: 1 throughput, 2 small frames (exec.log tap off/on), 3 fan-out,
//! 4 round-trip latency, 5 fairness with a stalled client, 6 the core alone,
//! 7 idle wakeups.
//!
//! Guest model: wait for `core.exec.request`, emit the scenario's stdout frames
//! for that id (round-robin over open sessions), then `core.exec.exited{0}`;
//! echo each `core.exec.stdin` as `core.exec.stdout`; answer a
//! `core.exec.signal` with `core.exec.exited{137}`.
//! Ring port guest: a VMM thread with its own current-thread tokio runtime,
//! waiting on a dup of the ring's wake fd (registered as a tokio `UnixStream`).
//! Stream port guest: a blocking thread on one end of a std socketpair.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use agent_relay::core::{Action, ClientId, Config, Event, Relay};
use agent_relay::shell::{GuestPort, RingVmm, Shell, ShellHandle};
use agent_relay::wire::payload::{Data, ExecExited, ExecRequest, Ready, build_frame, peek_data};
use agent_relay::wire::{FLAG_TERMINAL, Frame, FrameDecoder, MsgType, peek_envelope};
use bytes::Bytes;

/// Bytes per guest write (the ring's largest chunk) and per client read.
const CHUNK: usize = 64 << 10;
/// Chunks each ring queue holds.
const RING_CHUNKS: usize = 64;
const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Guest model

/// What the guest emits per exec session.
#[derive(Debug, Clone, Copy)]
struct Workload {
    /// stdout frames per session.
    frames: u64,
    /// Payload bytes per stdout frame.
    payload: usize,
}

impl Workload {
    const ECHO: Workload = Workload {
        frames: 0,
        payload: 0,
    };
    fn echo(self) -> bool {
        self.frames == 0
    }
}

struct Session {
    id: u32,
    left: u64,
    frame: Bytes,
}

/// Produces the guest's output byte stream: sessions' stdout frames
/// round-robin, then their exits. Shared by the guest and the baselines.
struct Emitter {
    work: Workload,
    sessions: VecDeque<Session>,
    buf: Vec<u8>,
    pos: usize,
}

fn exited(id: u32, code: i32) -> Frame {
    build_frame(MsgType::ExecExited, id, &ExecExited { code })
}

fn ready_frame() -> Frame {
    let ready = Ready {
        boot_time_ns: 1,
        init_time_ns: 2,
        ready_time_ns: 3,
    };
    build_frame(MsgType::Ready, 0, &ready)
}

impl Emitter {
    fn new(work: Workload) -> Emitter {
        Emitter {
            work,
            sessions: VecDeque::new(),
            buf: Vec::with_capacity(4 * CHUNK),
            pos: 0,
        }
    }

    fn start(&mut self, id: u32) {
        if self.work.echo() {
            return;
        }
        let data = Data {
            data: vec![b'x'; self.work.payload],
        };
        let frame = build_frame(MsgType::ExecStdout, id, &data).into_bytes();
        self.sessions.push_back(Session {
            id,
            left: self.work.frames,
            frame,
        });
    }

    fn kill(&mut self, id: u32) {
        let had = match self.sessions.iter().position(|s| s.id == id) {
            Some(i) => self.sessions.remove(i).is_some(),
            None => self.work.echo(),
        };
        if had {
            self.push_raw(exited(id, 137).as_bytes());
        }
    }

    fn push_raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Tops the pending output up to at least `want` bytes, if sessions have more.
    fn fill(&mut self, want: usize) {
        while self.buf.len() - self.pos < want {
            let Some(mut s) = self.sessions.pop_front() else {
                return;
            };
            if s.left > 0 {
                self.buf.extend_from_slice(&s.frame);
                s.left -= 1;
                self.sessions.push_back(s);
            } else {
                self.buf.extend_from_slice(exited(s.id, 0).as_bytes());
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 4 * CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// The guest agent model: decodes what the relay forwards, feeds the emitter.
struct Guest {
    dec: FrameDecoder,
    em: Emitter,
}

impl Guest {
    fn new(work: Workload) -> Guest {
        let mut em = Emitter::new(work);
        em.push_raw(ready_frame().as_bytes());
        Guest {
            dec: FrameDecoder::new(),
            em,
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.dec.extend(bytes);
        while let Ok(Some(f)) = self.dec.next_frame() {
            let Ok(env) = peek_envelope(f.body()) else {
                continue;
            };
            match env.t {
                MsgType::ExecRequest => self.em.start(f.id()),
                MsgType::ExecStdin => {
                    if let Ok(data) = peek_data(&env.payload) {
                        let data = Data {
                            data: data.into_owned(),
                        };
                        let out = build_frame(MsgType::ExecStdout, f.id(), &data);
                        self.em.push_raw(out.as_bytes());
                    }
                }
                MsgType::ExecSignal => self.em.kill(f.id()),
                _ => {}
            }
        }
    }
}

/// The VMM side of a ring port: a current-thread runtime waiting on the wake fd.
fn ring_guest(mut vmm: RingVmm, work: Workload, stop: Arc<AtomicBool>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("guest runtime");
    rt.block_on(async move {
        // A dup of the wake fd (a socket), registered with this runtime's
        // reactor through tokio's safe UnixStream (AsyncFd's constructors are
        // unsafe in this tokio). Draining it with try_read is `clear_wake`.
        let fd = vmm.as_fd().try_clone_to_owned().expect("dup wake fd");
        let wake = UnixStream::from(fd);
        wake.set_nonblocking(true).expect("nonblocking");
        let wake = tokio::net::UnixStream::from_std(wake).expect("register wake fd");
        let mut scratch = [0u8; 64];
        let mut g = Guest::new(work);
        let mut rbuf = vec![0u8; CHUNK];
        loop {
            let mut progressed = false;
            loop {
                let n = vmm.read(&mut rbuf);
                if n == 0 {
                    break;
                }
                progressed = true;
                g.on_bytes(&rbuf[..n]);
            }
            loop {
                g.em.fill(CHUNK);
                let p = g.em.pending();
                if p.is_empty() {
                    break;
                }
                let n = vmm.write(&p[..p.len().min(CHUNK)]);
                if n == 0 {
                    break;
                }
                g.em.consume(n);
                progressed = true;
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
            if !progressed {
                wake.readable().await.expect("wake fd");
                loop {
                    match wake.try_read(&mut scratch) {
                        Ok(0) => return, // the relay's end is gone
                        Ok(_) => {}
                        Err(_) => break, // WouldBlock: drained, readiness cleared
                    }
                }
            }
        }
    });
}

/// A guest on a blocking byte stream (the stream port, and the baselines).
fn stream_guest(mut s: UnixStream, work: Workload) {
    let mut g = Guest::new(work);
    let mut rbuf = vec![0u8; CHUNK];
    loop {
        loop {
            g.em.fill(CHUNK);
            let p = g.em.pending();
            if p.is_empty() {
                break;
            }
            let n = p.len().min(CHUNK);
            if s.write_all(&p[..n]).is_err() {
                return;
            }
            g.em.consume(n);
        }
        match s.read(&mut rbuf) {
            Ok(0) | Err(_) => return,
            Ok(n) => g.on_bytes(&rbuf[..n]),
        }
    }
}

// ---------------------------------------------------------------------------
// The relay under test

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Ring,
    Stream,
}

impl Port {
    fn describe(self) -> &'static str {
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

struct Running {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    handle: ShellHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    relay: Option<JoinHandle<()>>,
    guest: Option<JoinHandle<()>>,
    guest_stop: Arc<AtomicBool>,
}

fn start(port: Port, work: Workload, config: Config, tap: bool) -> Running {
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

// ---------------------------------------------------------------------------
// Clients

struct Client {
    s: UnixStream,
    dec: FrameDecoder,
    buf: Vec<u8>,
    offset: u32,
}

impl Client {
    fn raw(s: UnixStream) -> Client {
        Client {
            s,
            dec: FrameDecoder::new(),
            buf: vec![0u8; CHUNK],
            offset: 0,
        }
    }

    /// Connects and reads the handshake: id offset, then the ready frame.
    fn connect(r: &Running) -> Client {
        let s = UnixStream::connect(&r.sock).expect("connect");
        let mut c = Client::raw(s);
        let mut off = [0u8; 4];
        c.s.read_exact(&mut off).expect("handshake offset");
        c.offset = u32::from_be_bytes(off);
        let ready = c.next_frame().expect("ready frame");
        assert_eq!(
            peek_envelope(ready.body()).expect("ready").t,
            MsgType::Ready
        );
        c
    }

    fn id(&self) -> u32 {
        self.offset + 1
    }

    fn exec(&mut self) -> u32 {
        let req = ExecRequest::new("bench");
        let id = self.id();
        let f = build_frame(MsgType::ExecRequest, id, &req);
        self.s.write_all(f.as_bytes()).expect("send request");
        id
    }

    fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Ok(Some(f)) = self.dec.next_frame() {
                return Some(f);
            }
            match self.s.read(&mut self.buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.dec.extend(&self.buf[..n]),
            }
        }
    }

    /// Reads until `id`'s terminal frame: (frames, bytes) received, or
    /// `None` if the connection ended first.
    fn until_exited(&mut self, id: u32) -> Option<(u64, u64)> {
        let (mut frames, mut bytes) = (0u64, 0u64);
        while let Some(f) = self.next_frame() {
            frames += 1;
            bytes += f.len() as u64;
            if f.id() == id && f.flags() & FLAG_TERMINAL != 0 {
                return Some((frames, bytes));
            }
        }
        None
    }
}

/// One client's transfer.
#[derive(Debug, Clone, Copy)]
struct Xfer {
    frames: u64,
    bytes: u64,
    start: Instant,
    end: Instant,
}

impl Xfer {
    fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs()
    }
}

/// Aggregate MB/s and frames/s over a set of concurrent transfers.
fn aggregate(x: &[Xfer]) -> (f64, f64) {
    let start = x.iter().map(|x| x.start).min().expect("some");
    let end = x.iter().map(|x| x.end).max().expect("some");
    let secs = (end - start).as_secs_f64();
    let bytes: u64 = x.iter().map(|x| x.bytes).sum();
    let frames: u64 = x.iter().map(|x| x.frames).sum();
    (bytes as f64 / 1e6 / secs, frames as f64 / secs)
}

/// `n` clients stream one exec each through the relay, all at once.
fn relay_streams(r: &Running, n: usize) -> Vec<Xfer> {
    let out = try_relay_streams(r, n);
    let lost = out.iter().filter(|x| x.is_none()).count();
    if lost > 0 {
        panic!(
            "{lost} of {n} clients lost their connection before exec.exited; relay counters: {:?}",
            r.handle.counters()
        );
    }
    out.into_iter().flatten().collect()
}

/// As [`relay_streams`]; `None` for a client whose connection ended early.
fn try_relay_streams(r: &Running, n: usize) -> Vec<Option<Xfer>> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let mut c = Client::connect(r);
            let b = barrier.clone();
            thread::spawn(move || {
                b.wait();
                let start = Instant::now();
                let id = c.exec();
                let (frames, bytes) = c.until_exited(id)?;
                Some(Xfer {
                    frames,
                    bytes,
                    start,
                    end: Instant::now(),
                })
            })
        })
        .collect();
    barrier.wait();
    threads
        .into_iter()
        .map(|t| t.join().expect("client"))
        .collect()
}

/// The baseline: `n` socketpairs, each with a writer thread emitting the same
/// frame stream in the same chunks and a reader thread decoding it.
fn pair_streams(work: Workload, n: usize) -> Vec<Xfer> {
    let barrier = Arc::new(Barrier::new(2 * n + 1));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..n {
        let (mut w, rd) = UnixStream::pair().expect("pair");
        let b = barrier.clone();
        writers.push(thread::spawn(move || {
            let mut em = Emitter::new(work);
            em.start(1);
            b.wait();
            loop {
                em.fill(CHUNK);
                let p = em.pending();
                if p.is_empty() {
                    return;
                }
                let n = w.write(&p[..p.len().min(CHUNK)]).expect("write");
                em.consume(n);
            }
        }));
        let b = barrier.clone();
        readers.push(thread::spawn(move || {
            let mut c = Client::raw(rd);
            b.wait();
            let start = Instant::now();
            let (frames, bytes) = c.until_exited(1).expect("baseline stream");
            Xfer {
                frames,
                bytes,
                start,
                end: Instant::now(),
            }
        }));
    }
    barrier.wait();
    for w in writers {
        w.join().expect("writer");
    }
    readers
        .into_iter()
        .map(|t| t.join().expect("reader"))
        .collect()
}

// ---------------------------------------------------------------------------
// Measurement helpers

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn proc_field(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmRSS:").unwrap_or(0)
}

/// Context switches (voluntary + nonvoluntary) per live thread: tid -> (name, n).
fn ctx_switches() -> HashMap<String, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        let path = format!("/proc/self/task/{tid}/status");
        let Ok(s) = std::fs::read_to_string(&path) else {
            continue;
        };
        let get = |f: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(f))
                .map(|v| v.trim().to_owned())
        };
        let n: u64 = ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
            .iter()
            .filter_map(|f| get(f).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        out.insert(tid, (get("Name:").unwrap_or_default(), n));
    }
    out
}

fn own_tid() -> String {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Samples peak `queued_to_clients` and peak RSS while running.
struct Sampler {
    stop: Arc<AtomicBool>,
    t: JoinHandle<(u64, u64)>,
}

impl Sampler {
    fn start(h: &ShellHandle) -> Sampler {
        let h = h.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = thread::spawn(move || {
            let (mut q, mut rss) = (0u64, 0u64);
            while !s.load(Ordering::Acquire) {
                q = q.max(h.counters().queued_to_clients);
                rss = rss.max(rss_kib());
                thread::sleep(Duration::from_millis(1));
            }
            (q, rss)
        });
        Sampler { stop, t }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        self.t.join().expect("sampler")
    }
}

struct Row {
    scenario: String,
    figure: String,
    baseline: String,
    ratio: String,
    target: String,
    pass: Option<bool>,
}

fn row(
    scenario: &str,
    figure: String,
    baseline: String,
    ratio: String,
    target: &str,
    pass: Option<bool>,
) -> Row {
    Row {
        scenario: scenario.into(),
        figure,
        baseline,
        ratio,
        target: target.into(),
        pass,
    }
}

const REPS: usize = 5;

/// A scenario appends its rows.
type Scenario = fn(&mut Vec<Row>);

// ---------------------------------------------------------------------------
// Scenarios

/// A config whose per-client hard cap (and global cap) is large enough that a
/// reader running at full speed is not closed as a slow consumer when the
/// guest outpaces it (see scenario 1's "default budgets" row).
fn raised_caps() -> Config {
    Config {
        client_hard_cap: 256 << 20,
        global_cap: 1 << 30,
        ..Config::default()
    }
}

/// Runs `reps` single-client streams with the default budgets; returns how
/// many runs lost the client as a slow consumer.
fn default_budget_closes(work: Workload, clients: usize, reps: usize) -> (usize, u64) {
    let r = start(Port::Ring, work, Config::default(), false);
    let mut lost = 0;
    for _ in 0..reps {
        lost += try_relay_streams(&r, clients)
            .iter()
            .filter(|x| x.is_none())
            .count();
        // A closed client's killed session must end before its slot frees.
        thread::sleep(Duration::from_millis(20));
    }
    let closes = r.handle.counters().slow_consumer_closes;
    (lost, closes)
}

fn s1_throughput(rows: &mut Vec<Row>) {
    let work = Workload {
        frames: 64 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[1] {}", Port::Ring.describe());
    let r = start(Port::Ring, work, raised_caps(), false);
    relay_streams(&r, 1); // warm-up
    let relay = median((0..REPS).map(|_| relay_streams(&r, 1)[0].mbps()).collect());
    drop(r);
    pair_streams(work, 1);
    let base = median((0..REPS).map(|_| pair_streams(work, 1)[0].mbps()).collect());
    let ratio = relay / base;
    rows.push(row(
        "1 guest->client 64 MiB, 16 KiB frames (hard cap raised to 256 MiB)",
        format!("{relay:.0} MB/s"),
        format!("{base:.0} MB/s"),
        format!("{ratio:.2}x"),
        ">= 0.9x",
        Some(ratio >= 0.9),
    ));
    let (lost, closes) = default_budget_closes(work, 1, REPS);
    rows.push(row(
        "1 same, default budgets (8 MiB hard cap): reader closed as slow consumer",
        format!("{lost} of {REPS} runs"),
        "0 (socketpair)".into(),
        format!("{closes} slow-consumer closes"),
        "0 runs",
        Some(lost == 0),
    ));
}

fn s2_small_frames(rows: &mut Vec<Row>) {
    let work = Workload {
        frames: 200_000,
        payload: 64,
    };
    println!("[2] {}", Port::Ring.describe());
    let mut rate = [0.0f64; 2];
    for (i, tap) in [false, true].into_iter().enumerate() {
        let r = start(Port::Ring, work, raised_caps(), tap);
        let mut v = Vec::new();
        for _ in 0..REPS {
            let x = relay_streams(&r, 1)[0];
            v.push(x.frames as f64 / x.secs());
        }
        rate[i] = median(v);
    }
    let base = median(
        (0..REPS)
            .map(|_| {
                let x = pair_streams(work, 1)[0];
                x.frames as f64 / x.secs()
            })
            .collect(),
    );
    for (i, name) in ["tap off", "tap on"].iter().enumerate() {
        rows.push(row(
            &format!("2 200k x 64 B frames, {name} (hard cap raised)"),
            format!("{:.2} M frames/s", rate[i] / 1e6),
            format!("{:.2} M frames/s", base / 1e6),
            format!("{:.2}x", rate[i] / base),
            "-",
            None,
        ));
    }
    let cost = (rate[0] / rate[1] - 1.0) * 100.0;
    rows.push(row(
        "2 exec.log tap cost",
        format!("{cost:+.1} % time"),
        "tap off".into(),
        format!("{:.2}x", rate[1] / rate[0]),
        "<= 15 %",
        Some(cost <= 15.0),
    ));
}

fn s3_fanout(rows: &mut Vec<Row>) {
    let work = Workload {
        frames: 16 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[3] {}", Port::Ring.describe());
    let r = start(Port::Ring, work, raised_caps(), false);
    let mut agg = Vec::new();
    let mut mins = Vec::new();
    let mut maxs = Vec::new();
    for _ in 0..REPS {
        let x = relay_streams(&r, 8);
        agg.push(aggregate(&x).0);
        mins.push(x.iter().map(Xfer::mbps).fold(f64::INFINITY, f64::min));
        maxs.push(x.iter().map(Xfer::mbps).fold(0.0, f64::max));
    }
    drop(r);
    let (agg, min, max) = (median(agg), median(mins), median(maxs));
    let base = median(
        (0..REPS)
            .map(|_| aggregate(&pair_streams(work, 8)).0)
            .collect(),
    );
    rows.push(row(
        "3 fan-out 8 clients x 16 MiB, aggregate (hard cap raised)",
        format!("{agg:.0} MB/s"),
        format!("{base:.0} MB/s"),
        format!("{:.2}x", agg / base),
        "-",
        None,
    ));
    rows.push(row(
        "3 fan-out per-client min / max",
        format!("{min:.0} / {max:.0} MB/s"),
        format!("{:.0} MB/s (1/8)", base / 8.0),
        format!("{:.2}", min / max),
        "-",
        None,
    ));
}

fn pct(v: &[Duration], p: usize) -> Duration {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

/// Sequential stdin -> stdout round trips on an open exec session.
fn ping_pong(c: &mut Client, id: u32, n: usize) -> Vec<Duration> {
    let stdin = build_frame(
        MsgType::ExecStdin,
        id,
        &Data {
            data: vec![b'p'; 64],
        },
    );
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.s.write_all(stdin.as_bytes()).expect("send stdin");
        loop {
            let f = c.next_frame().expect("echo");
            if f.id() == id {
                break;
            }
        }
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn s4_latency(rows: &mut Vec<Row>) {
    const N: usize = 20_000;
    println!("[4] {}", Port::Stream.describe());
    let r = start(Port::Stream, Workload::ECHO, Config::default(), false);
    let mut c = Client::connect(&r);
    let id = c.exec();
    ping_pong(&mut c, id, 1000);
    let relay = ping_pong(&mut c, id, N);
    drop(c);
    drop(r);
    // Baseline: the same guest model on a plain socketpair, no relay.
    let (a, b) = UnixStream::pair().expect("pair");
    let g = thread::spawn(move || stream_guest(b, Workload::ECHO));
    let mut c = Client::raw(a);
    c.next_frame().expect("ready");
    ping_pong(&mut c, 1, 1000);
    let base = ping_pong(&mut c, 1, N);
    drop(c);
    g.join().expect("echo guest");
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (p50, p99) = (us(pct(&relay, 50)), us(pct(&relay, 99)));
    let (b50, b99) = (us(pct(&base, 50)), us(pct(&base, 99)));
    rows.push(row(
        "4 round trip 64 B, p50",
        format!("{p50:.1} us"),
        format!("{b50:.1} us"),
        format!("{:.2}x", p50 / b50),
        "-",
        None,
    ));
    rows.push(row(
        "4 round trip 64 B, p99",
        format!("{p99:.1} us"),
        format!("{b99:.1} us"),
        format!("{:.2}x", p99 / b99),
        "<= 2x",
        Some(p99 / b99 <= 2.0),
    ));
}

fn s5_fairness(rows: &mut Vec<Row>) {
    let work = Workload {
        frames: 16 * MIB / (16 << 10),
        payload: 16 << 10,
    };
    println!("[5] {}", Port::Ring.describe());
    let config = Config::default();
    let r = start(Port::Ring, work, config.clone(), false);
    let (mut alone, mut stalled) = (Vec::new(), Vec::new());
    let (mut peak_q, mut peak_rss_delta) = (0u64, 0u64);
    let mut closes = 0;
    let mut lost = 0;
    let mut done = |x: Vec<Option<Xfer>>| -> f64 {
        lost += x.iter().filter(|x| x.is_none()).count();
        let x: Vec<Xfer> = x.into_iter().flatten().collect();
        if x.is_empty() {
            0.0
        } else {
            aggregate(&x).0 * 7.0 / x.len() as f64
        }
    };
    for _ in 0..REPS {
        alone.push(done(try_relay_streams(&r, 7)));
        thread::sleep(Duration::from_millis(50));
        let rss0 = rss_kib();
        let closes0 = r.handle.counters().slow_consumer_closes;
        let mut staller = Client::connect(&r);
        let sampler = Sampler::start(&r.handle);
        staller.exec();
        let x = try_relay_streams(&r, 7);
        let (q, rss) = sampler.finish();
        stalled.push(done(x));
        peak_q = peak_q.max(q);
        peak_rss_delta = peak_rss_delta.max(rss.saturating_sub(rss0) * 1024);
        closes += r.handle.counters().slow_consumer_closes - closes0;
        drop(staller);
        // Let the killed session's exit free the slot before the next round.
        thread::sleep(Duration::from_millis(50));
    }
    drop(r);
    let (alone, stalled) = (median(alone), median(stalled));
    let share = stalled / alone;
    rows.push(row(
        "5 fairness: 7 clients' share with a staller",
        format!("{stalled:.0} MB/s"),
        format!("{alone:.0} MB/s (7 alone)"),
        format!("{share:.2}"),
        ">= 0.9 share",
        Some(share >= 0.9),
    ));
    let mib = |b: u64| b as f64 / MIB as f64;
    let within = peak_q <= config.global_cap as u64
        && peak_q <= (config.client_hard_cap + 7 * config.client_soft_budget) as u64
        && peak_rss_delta <= config.global_cap as u64;
    rows.push(row(
        "5 fairness: relay memory (peak queued / RSS delta)",
        format!("{:.1} MiB / {:.1} MiB", mib(peak_q), mib(peak_rss_delta)),
        format!(
            "hard cap {:.0} MiB, global {:.0} MiB",
            mib(config.client_hard_cap as u64),
            mib(config.global_cap as u64)
        ),
        format!("slow-consumer closes {closes} in {REPS} runs (readers lost {lost})"),
        "within budgets",
        Some(within),
    ));
}

fn s6_core(rows: &mut Vec<Row>) {
    println!("[6] core alone, no I/O (as benches/core.rs)");
    const FRAMES: usize = 100_000;
    let one = build_frame(
        MsgType::ExecStdout,
        1,
        &Data {
            data: vec![b'x'; 64],
        },
    )
    .into_bytes();
    let stream: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * FRAMES)
        .collect();
    let mut rates = [0.0f64; 2];
    for (i, tap) in [false, true].into_iter().enumerate() {
        let mut relay = Relay::new(Config {
            exec_log: tap,
            ..Config::default()
        });
        relay.handle(0, Event::GuestBytes(ready_frame().as_bytes()));
        relay.handle(0, Event::ClientConnected(ClientId(1)));
        let req = ExecRequest::new("cat");
        let req = build_frame(MsgType::ExecRequest, 1, &req);
        relay.handle(0, Event::ClientBytes(ClientId(1), req.as_bytes()));
        while relay.poll_action().is_some() {}
        let mut v = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut frames = 0;
            for chunk in stream.chunks(CHUNK) {
                relay.handle(0, Event::GuestBytes(chunk));
                let mut written = 0;
                while let Some(a) = relay.poll_action() {
                    if let Action::ToClient { frame, .. } = a {
                        written += frame.len();
                        frames += 1;
                    }
                }
                relay.handle(0, Event::ClientWritten(ClientId(1), written));
            }
            assert_eq!(frames, FRAMES);
            v.push(FRAMES as f64 / t.elapsed().as_secs_f64());
        }
        rates[i] = median(v);
    }
    rows.push(row(
        "6 core alone, 64 B frames, tap off",
        format!("{:.1} M frames/s", rates[0] / 1e6),
        "-".into(),
        "-".into(),
        ">= 10 M frames/s",
        Some(rates[0] >= 10e6),
    ));
    rows.push(row(
        "6 core alone, 64 B frames, tap on",
        format!("{:.1} M frames/s", rates[1] / 1e6),
        "-".into(),
        "-".into(),
        "-",
        None,
    ));
}

fn s7_idle(rows: &mut Vec<Row>) {
    println!("[7] {}", Port::Ring.describe());
    let rss0 = rss_kib();
    let r = start(Port::Ring, Workload::ECHO, Config::default(), false);
    let clients: Vec<Client> = (0..16).map(|_| Client::connect(&r)).collect();
    thread::sleep(Duration::from_millis(200));
    let me = own_tid();
    let before = ctx_switches();
    let secs = 2.0;
    thread::sleep(Duration::from_secs_f64(secs));
    let after = ctx_switches();
    let rss = rss_kib();
    let mut total = 0u64;
    let mut who = Vec::new();
    for (tid, (name, n)) in &after {
        if *tid == me {
            continue;
        }
        if let Some((_, m)) = before.get(tid) {
            let d = n.saturating_sub(*m);
            total += d;
            if d > 0 {
                who.push(format!("{name}:{d}"));
            }
        }
    }
    let live = r.handle.counters().live_clients;
    drop(clients);
    drop(r);
    let per_s = total as f64 / secs;
    if !who.is_empty() {
        println!("    idle wakeups by thread: {}", who.join(", "));
    }
    rows.push(row(
        "7 idle, 16 clients, 2 s: wakeups",
        format!("{per_s:.1} /s"),
        format!("{live} clients live"),
        "-".into(),
        "no periodic wakeups (< 1/s)",
        Some(per_s < 1.0),
    ));
    rows.push(row(
        "7 idle: RSS (process, and delta for relay + 16 clients)",
        format!(
            "{:.1} MiB (+{:.1} MiB)",
            rss as f64 / 1024.0,
            rss.saturating_sub(rss0) as f64 / 1024.0
        ),
        "-".into(),
        "-".into(),
        "-",
        None,
    ));
}

fn main() {
    let picked: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let want = |n: u32| picked.is_empty() || picked.contains(&n);
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "agent-relay end-to-end benchmarks ({cpus} CPUs; medians of {REPS} runs where repeated)"
    );
    let t0 = Instant::now();
    let mut rows = Vec::new();
    let scenarios: [(u32, Scenario); 7] = [
        (1, s1_throughput),
        (2, s2_small_frames),
        (3, s3_fanout),
        (4, s4_latency),
        (5, s5_fairness),
        (6, s6_core),
        (7, s7_idle),
    ];
    for (n, f) in scenarios {
        if want(n) {
            f(&mut rows);
        }
    }
    println!();
    println!("| scenario | figure | baseline | ratio | target | pass |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let pass = match r.pass {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "-",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario, r.figure, r.baseline, r.ratio, r.target, pass
        );
    }
    println!();
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}
