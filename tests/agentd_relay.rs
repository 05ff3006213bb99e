//! The real guest agent behind the real relay, driven by the real SDK
//! client: microsandbox-agentd 0.7.13's loop (tests/agentd_support, a
//! sandboxed host process) as the guest of `agent_relay::shell::Shell`,
//! which sends it the bootstrap first, and microsandbox-agent-client
//! 0.7.13's `OptimizedAgentClient` (what the microsandbox SDK wraps) as the
//! clients. The CLI's `serve --guest-bootstrap` and `exec` are driven the
//! same way at the end.
//!
//! Every scenario runs twice where it makes sense: with the bootstrap's
//! `exec_limits` at 0.7.13's launcher default (module `launcher_limits`:
//! agentd then holds `core.exec.exited` back until the client acknowledged
//! every output chunk, and counts executions) and without (module
//! `no_limits`, an older launcher). Each test ends with agentd alive and no
//! agent-loop error, checked before the relay stops, then the tree's hang-up
//! and nothing of it left. Waits are for events or counters, with
//! deadlines; the only polling is of /proc for processes, with a deadline.
//!
//! The SDK client does not acknowledge output by itself: the microsandbox
//! SDK does, as its reader consumes it (`OutputAcknowledgements`). [`Exec`]
//! plays that part, coalescing what it read since its last acknowledgement,
//! and feeds stdin as the SDK does under exec limits (chunks of
//! `stdin_chunk_size`, at most `input_limit` unacknowledged).

// Not every item of the harness is used here.
#[allow(unused_imports)]
mod agentd_support;
mod cli_support;

use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agent_relay::core::{Config, Counters};
use agent_relay::shell::{DrainNotice, GuestPort, Shell, ShellError, ShellHandle};
use agent_relay::wire::bootstrap::GuestBootstrap;
use agent_relay::wire::payload::ExecLimits;
use agentd_support::{Agentd, AgentdOptions, Ending, pids_with_arg};
use bytes::Bytes;
use microsandbox_agent_client::{AgentFrame, OptimizedAgentClient};
use msp7::bulk::{
    BULK_FLOW_MASK_GUEST_TO_HOST, BULK_FLOW_MASK_HOST_TO_GUEST, BulkAccepted, BulkCredit,
    BulkFinish, BulkFlow, BulkKind, BulkOffer, BulkReceiveState, BulkRecord, BulkSendState,
    DEFAULT_BULK_WINDOW,
};
use msp7::core::{Ping, RelayClientDisconnected, Touch, Touched};
use msp7::exec::{
    ExecExited, ExecFailed, ExecFailureKind, ExecOutputAck, ExecRequest, ExecResize, ExecSignal,
    ExecStderr, ExecStdin, ExecStdinAck, ExecStdout,
};
use msp7::fs::{FsOp, FsOpenOptions, FsRequest, FsResponse, FsResponseData};
use msp7::message::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Upper bound for anything that should happen promptly (a loaded 2-core
/// machine, debug builds of the relay, agentd and the SDK).
const PROMPT: Duration = Duration::from_secs(20);

/// Ids per canonical slot of the current generation.
const STEP: u32 = u32::MAX / 128;

// -------------------------------------------------------------------------------------------------
// The two policies
// -------------------------------------------------------------------------------------------------

/// The bootstrap's `exec_limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limits {
    /// 0.7.13's launcher default (`GuestBootstrap::launcher_default`).
    Launcher,
    /// None (`GuestBootstrap::default`): an older launcher.
    Absent,
}

impl Limits {
    fn bootstrap(self) -> GuestBootstrap {
        match self {
            Limits::Launcher => GuestBootstrap::launcher_default(),
            Limits::Absent => GuestBootstrap::default(),
        }
    }

    /// What agentd's ready announces, in 0.7.13's type.
    fn announced(self) -> Option<msp7::exec::ExecLimits> {
        match self {
            Limits::Launcher => Some(msp7::exec::ExecLimits::default()),
            Limits::Absent => None,
        }
    }
}

// -------------------------------------------------------------------------------------------------
// The rig: agentd, the shell in front of it
// -------------------------------------------------------------------------------------------------

/// The cumulative counters, less `base`'s.
fn since(c: &Counters, base: &Counters) -> Counters {
    Counters {
        leases_granted: c.leases_granted - base.leases_granted,
        lease_acks: c.lease_acks - base.lease_acks,
        notices_sent: c.notices_sent - base.notices_sent,
        client_bytes_in: c.client_bytes_in - base.client_bytes_in,
        frames_to_clients: c.frames_to_clients - base.frames_to_clients,
        bytes_to_clients: c.bytes_to_clients - base.bytes_to_clients,
        ..c.clone()
    }
}

struct Rig {
    agentd: Agentd,
    _dir: tempfile::TempDir,
    sock: PathBuf,
    handle: ShellHandle,
    /// The counters once started.
    base: Counters,
    drains: mpsc::Receiver<DrainNotice>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ShellError>>>,
}

impl Rig {
    /// agentd's tree, and the shell (current generation) on a socket in a
    /// temporary directory sending it `bootstrap`; returns once agentd's
    /// `core.ready` reached the relay.
    async fn start(bootstrap: GuestBootstrap) -> Rig {
        let (agentd, port) = Agentd::spawn(AgentdOptions::relay()).expect("spawn agentd");
        port.set_nonblocking(true).expect("non-blocking port");
        let port = tokio::net::UnixStream::from_std(port).expect("tokio port");
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("relay.sock");
        let mut shell = Shell::new(&sock, GuestPort::stream(port))
            .config(Config::current())
            .bootstrap(bootstrap);
        let drains = shell.drain_notices();
        let handle = shell.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(shell.run(stopped));
        if let Err(e) = handle.wait_ready(PROMPT).await {
            panic!(
                "{e}; counters {:?}; agentd's stderr:\n{}",
                handle.counters(),
                agentd.stderr()
            );
        }
        let mut rig = Rig {
            agentd,
            _dir: dir,
            sock,
            handle,
            base: Counters::default(),
            drains,
            stop: Some(stop),
            task: Some(task),
        };
        rig.base = rig.counters();
        rig
    }

    /// The shell's counters, counted from the end of start-up.
    fn counters(&self) -> Counters {
        since(&self.handle.counters(), &self.base)
    }

    async fn connect(&self) -> Sdk {
        match Sdk::connect(&self.sock).await {
            Ok(sdk) => sdk,
            Err(e) => panic!(
                "connect: {e}; counters {:?}; agentd's stderr:\n{}",
                self.counters(),
                self.agentd.stderr()
            ),
        }
    }

    /// Waits until `f(counters)` holds.
    async fn counters_reach(&self, what: &str, f: impl Fn(&Counters) -> bool) -> Counters {
        let mut rx = self.handle.counters_watch();
        let got = tokio::time::timeout(PROMPT, async {
            loop {
                let c = since(&rx.borrow_and_update(), &self.base);
                if f(&c) {
                    return c;
                }
                if rx.changed().await.is_err() {
                    panic!("the shell stopped while waiting for {what}");
                }
            }
        })
        .await;
        got.unwrap_or_else(|_| {
            panic!(
                "timed out waiting for {what}: {:?}; agentd's stderr:\n{}",
                self.counters(),
                self.agentd.stderr()
            )
        })
    }

    /// agentd runs and its loop has not failed.
    fn assert_agentd_healthy(&mut self) {
        let alive = self.agentd.is_alive();
        assert!(
            alive,
            "agentd is gone; its stderr:\n{}",
            self.agentd.stderr()
        );
        assert_eq!(
            self.agentd.loop_error(),
            None,
            "agentd's stderr:\n{}",
            self.agentd.stderr()
        );
    }

    /// Stops the relay (its `run` returns `Ok`) and waits for what that
    /// leaves behind to go: the relay's end of the port closes, the tree
    /// ends at the hang-up, nothing of it is left.
    async fn stop_relay(&mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            let ran = tokio::time::timeout(PROMPT, task).await;
            ran.expect("the shell stops in time")
                .expect("shell task")
                .expect("the shell ran without error");
        }
        let agentd = &mut self.agentd;
        let status = tokio::task::block_in_place(|| agentd.wait_exit(PROMPT));
        assert!(
            status.is_some(),
            "the tree still runs after the relay stopped; stderr:\n{}",
            self.agentd.stderr()
        );
        let left = self.agentd.remaining_pids();
        assert!(left.is_empty(), "processes of the tree left: {left:?}");
    }

    /// The end of every test but shutdown's: agentd healthy, no violation
    /// counted unless `violations` expected, then the relay stopped.
    async fn finish(mut self, violations: u64) {
        self.assert_agentd_healthy();
        let c = self.counters();
        assert_eq!(c.protocol_violations, violations, "{c:?}");
        assert_eq!(c.guest_corrupt, 0, "{c:?}");
        assert_eq!(c.slow_consumer_closes, 0, "{c:?}");
        self.stop_relay().await;
        // After the relay closed its end, agentd may die writing to it
        // (Broken pipe) before init ends it: the only loop error allowed.
        if let Some(error) = self.agentd.loop_error() {
            assert!(error.contains("Broken pipe"), "{}", self.agentd.stderr());
        }
    }
}

// -------------------------------------------------------------------------------------------------
// The SDK client, and an execution as the microsandbox SDK drives it
// -------------------------------------------------------------------------------------------------

struct Sdk {
    c: OptimizedAgentClient,
    limits: Option<msp7::exec::ExecLimits>,
}

impl Sdk {
    async fn connect(path: &Path) -> Result<Sdk, String> {
        let c = OptimizedAgentClient::connect(path)
            .await
            .map_err(|e| e.to_string())?;
        let limits = c.ready().map_err(|e| e.to_string())?.exec_limits;
        Ok(Sdk { c, limits })
    }

    /// A `core.ping`; the reply's id (a fresh id of this client's range).
    async fn ping(&self) -> u32 {
        let reply = tokio::time::timeout(PROMPT, self.c.request(MessageType::Ping, &Ping {}))
            .await
            .expect("core.pong in time")
            .expect("core.pong");
        assert_eq!(reply.t, MessageType::Pong, "{reply:?}");
        reply.id
    }

    async fn exec(&self, req: &ExecRequest) -> Exec {
        let (id, rx) = self
            .c
            .stream(MessageType::ExecRequest, req)
            .await
            .expect("core.exec.request sent");
        Exec {
            id,
            rx,
            acks: self.limits.is_some(),
            ack: ExecOutputAck::default(),
            acks_sent: 0,
            queued: VecDeque::new(),
            keep: true,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdin_acked: 0,
            end: None,
        }
    }

    /// Runs `cmd args` to its end with no stdin.
    async fn run(&self, cmd: &str, args: &[&str]) -> Exec {
        let mut exec = self.exec(&request(cmd, args)).await;
        exec.finish(self).await;
        exec
    }

    async fn send<T: serde::Serialize>(&self, id: u32, t: MessageType, payload: &T) {
        self.c
            .send(id, t, payload)
            .await
            .unwrap_or_else(|e| panic!("send {t:?} on {id}: {e}"));
    }

    async fn close(self) {
        self.c.close().await;
    }
}

fn request(cmd: &str, args: &[&str]) -> ExecRequest {
    ExecRequest {
        cmd: cmd.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: Vec::new(),
        cwd: None,
        user: None,
        tty: false,
        rows: 24,
        cols: 80,
        rlimits: Vec::new(),
    }
}

#[derive(Debug)]
enum Ev {
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    StdinAck(u64),
    Exited(i32),
    Failed(ExecFailed),
    Other(MessageType),
}

/// How an execution ended.
#[derive(Debug, Clone)]
enum End {
    Exited(i32),
    Failed(ExecFailed),
}

impl End {
    fn code(&self) -> i32 {
        match self {
            End::Exited(code) => *code,
            End::Failed(f) => panic!("the execution failed: {f:?}"),
        }
    }
}

/// One execution's stream, read as the SDK reads it.
struct Exec {
    id: u32,
    rx: mpsc::Receiver<Message>,
    /// Acknowledge output (the ready announced exec limits).
    acks: bool,
    ack: ExecOutputAck,
    acks_sent: u64,
    /// Events read (and acknowledged) but not yet returned.
    queued: VecDeque<Ev>,
    /// Keep stdout and stderr in `stdout` / `stderr`.
    keep: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdin_acked: u64,
    end: Option<End>,
}

impl Exec {
    fn event(msg: &Message) -> Ev {
        let decoded = match msg.t {
            MessageType::ExecStarted => Some(Ev::Started),
            MessageType::ExecStdout => msg.payload::<ExecStdout>().ok().map(|p| Ev::Stdout(p.data)),
            MessageType::ExecStderr => msg.payload::<ExecStderr>().ok().map(|p| Ev::Stderr(p.data)),
            MessageType::ExecStdinAck => msg
                .payload::<ExecStdinAck>()
                .ok()
                .map(|p| Ev::StdinAck(p.consumed)),
            MessageType::ExecExited => msg.payload::<ExecExited>().ok().map(|p| Ev::Exited(p.code)),
            MessageType::ExecFailed => msg.payload::<ExecFailed>().ok().map(Ev::Failed),
            other => Some(Ev::Other(other)),
        };
        decoded.unwrap_or_else(|| panic!("undecodable {msg:?}"))
    }

    /// Takes one event into the execution's state; true if it was output.
    fn take(&mut self, ev: &Ev) -> bool {
        match ev {
            Ev::Stdout(d) | Ev::Stderr(d) => {
                self.ack.consume(d.len()).expect("ack counter");
                if self.keep {
                    match ev {
                        Ev::Stdout(_) => self.stdout.extend_from_slice(d),
                        _ => self.stderr.extend_from_slice(d),
                    }
                }
                return true;
            }
            Ev::StdinAck(n) => self.stdin_acked = self.stdin_acked.max(*n),
            Ev::Exited(code) => self.end = Some(End::Exited(*code)),
            Ev::Failed(f) => self.end = Some(End::Failed(f.clone())),
            Ev::Other(t) => eprintln!("execution {}: an unexpected {t:?}", self.id),
            Ev::Started => {}
        }
        false
    }

    /// The next event. Output read from the stream is acknowledged at once
    /// (with everything else already waiting, in one acknowledgement) when
    /// the ready announced exec limits.
    async fn next(&mut self, sdk: &Sdk) -> Ev {
        let id = self.id;
        self.next_or_closed(sdk)
            .await
            .unwrap_or_else(|| panic!("the stream of execution {id} closed"))
    }

    /// [`Exec::next`], or `None` once the stream closed without an end.
    async fn next_or_closed(&mut self, sdk: &Sdk) -> Option<Ev> {
        if let Some(ev) = self.queued.pop_front() {
            return Some(ev);
        }
        let msg = tokio::time::timeout(PROMPT, self.rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no event for execution {} in {PROMPT:?} (end {:?}, {} bytes out)",
                    self.id, self.end, self.ack.consumed
                )
            })?;
        let ev = Exec::event(&msg);
        let mut owed = self.take(&ev);
        while let Ok(more) = self.rx.try_recv() {
            let more = Exec::event(&more);
            owed |= self.take(&more);
            self.queued.push_back(more);
        }
        if owed && self.acks {
            sdk.send(self.id, MessageType::ExecOutputAck, &self.ack)
                .await;
            self.acks_sent += 1;
        }
        Some(ev)
    }

    /// Waits for `core.exec.started`.
    async fn started(&mut self, sdk: &Sdk) {
        match self.next(sdk).await {
            Ev::Started => {}
            other => panic!("execution {}: expected started, got {other:?}", self.id),
        }
    }

    /// Reads until the execution ends.
    async fn finish(&mut self, sdk: &Sdk) -> End {
        while self.end.is_none() {
            self.next(sdk).await;
        }
        self.end.clone().expect("ended")
    }

    /// Writes `data` then end of file to stdin as the SDK does: under exec
    /// limits in chunks of `stdin_chunk_size` with at most `input_limit`
    /// not yet acknowledged; without, in 64 KiB chunks.
    async fn feed(&mut self, sdk: &Sdk, data: &[u8]) {
        let (chunk, window) = match sdk.limits {
            Some(l) => (l.stdin_chunk_size as usize, Some(u64::from(l.input_limit))),
            None => (64 << 10, None),
        };
        let mut sent = 0usize;
        while sent < data.len() {
            let n = chunk.min(data.len() - sent);
            if let Some(window) = window {
                while (sent + n) as u64 - self.stdin_acked > window {
                    let ev = self.next(sdk).await;
                    assert!(self.end.is_none(), "ended while fed: {ev:?}");
                }
            }
            let stdin = ExecStdin {
                data: data[sent..sent + n].to_vec(),
            };
            sdk.send(self.id, MessageType::ExecStdin, &stdin).await;
            sent += n;
        }
        sdk.send(
            self.id,
            MessageType::ExecStdin,
            &ExecStdin { data: Vec::new() },
        )
        .await;
    }
}

// -------------------------------------------------------------------------------------------------
// Processes
// -------------------------------------------------------------------------------------------------

/// A `sleep` argument of about `seconds` seconds no other process has: this
/// process's pid and a counter appended.
fn unique_sleep(seconds: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{seconds}{}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls /proc until `n` processes have `mark` among their arguments.
async fn wait_running(mark: &str, n: usize) {
    let deadline = Instant::now() + PROMPT;
    while pids_with_arg(mark).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} processes with {mark} run",
            pids_with_arg(mark).len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls /proc until no process has `mark` among its arguments.
async fn wait_gone(mark: &str) {
    let deadline = Instant::now() + PROMPT;
    loop {
        let left = pids_with_arg(mark);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running: {left:?} ({mark})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `len` bytes of a xorshift sequence from `seed`.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// -------------------------------------------------------------------------------------------------
// Scenarios
// -------------------------------------------------------------------------------------------------

/// 1. The client's ready is agentd's (version 0.7.13, leases offered, the
///    bootstrap's exec limits); each client got a lease and its own
///    canonical range; each departure is acknowledged by agentd.
async fn handshake(limits: Limits) {
    let rig = Rig::start(limits.bootstrap()).await;
    let a = rig.connect().await;
    let b = rig.connect().await;
    for sdk in [&a, &b] {
        assert_eq!(sdk.c.agent_version(), "0.7.13");
        assert!(!sdk.c.is_legacy_protocol());
        assert_eq!(sdk.c.negotiated_version(), msp7::message::PROTOCOL_VERSION);
        let ready = sdk.c.ready().expect("ready");
        assert_eq!(ready.relay_lease.map(|l| l.max_format), Some(1));
        assert_eq!(ready.workload_transport_barrier_version, Some(2));
        assert_eq!(ready.exec_limits, limits.announced());
    }
    assert_eq!(a.ping().await, 1, "slot 0's first id");
    assert_eq!(b.ping().await, STEP + 1, "slot 1's first id");
    let c = rig
        .counters_reach("two leases", |c| c.leases_granted == 2)
        .await;
    assert_eq!((c.generation, c.live_clients), (10, 2), "{c:?}");
    assert_eq!(c.init_acks, 1, "{c:?}");
    a.close().await;
    b.close().await;
    rig.counters_reach("two lease acks", |c| {
        c.lease_acks == 2 && c.notices_sent == 2 && c.live_clients == 0
    })
    .await;
    rig.finish(0).await;
}

/// 2. Exit codes 0 and 3 with their output, and a command that does not
///    exist (`core.exec.failed` not_found); the client carries on.
async fn exec_codes(limits: Limits) {
    let rig = Rig::start(limits.bootstrap()).await;
    let sdk = rig.connect().await;
    let mut ok = sdk.run("sh", &["-c", "exit 0"]).await;
    assert_eq!(ok.finish(&sdk).await.code(), 0);
    let mut three = sdk
        .run("sh", &["-c", "echo out; echo err >&2; exit 3"])
        .await;
    assert_eq!(three.finish(&sdk).await.code(), 3);
    assert_eq!(text(&three.stdout), "out\n");
    assert_eq!(text(&three.stderr), "err\n");

    let missing = format!("no-such-command-{}", std::process::id());
    let mut nf = sdk.run(&missing, &[]).await;
    match nf.finish(&sdk).await {
        End::Failed(f) => assert_eq!(f.kind, ExecFailureKind::NotFound, "{f:?}"),
        other => panic!("{other:?}"),
    }
    let mut after = sdk.run("echo", &["still", "here"]).await;
    assert_eq!(after.finish(&sdk).await.code(), 0);
    assert_eq!(text(&after.stdout), "still here\n");
    let c = rig.counters();
    assert_eq!(c.execs_refused, 0, "{c:?}");
    sdk.close().await;
    rig.finish(0).await;
}

/// 3. 8 MiB of stdin through `cat` arrive whole, in order (the file `cat`
///    wrote is compared byte for byte) and `wc -c` counts them.
async fn stdin_8_mib(limits: Limits) {
    const LEN: usize = 8 << 20;
    let rig = Rig::start(limits.bootstrap()).await;
    let sdk = rig.connect().await;
    let data = pattern(0x5eed_0003, LEN);
    let script = "cat > stdin.bin && wc -c < stdin.bin";
    let started = Instant::now();
    let mut exec = sdk.exec(&request("sh", &["-c", script])).await;
    exec.started(&sdk).await;
    exec.feed(&sdk, &data).await;
    assert_eq!(exec.finish(&sdk).await.code(), 0, "{}", text(&exec.stderr));
    let took = started.elapsed();
    assert_eq!(text(&exec.stdout).trim(), LEN.to_string());
    let written = std::fs::read(rig.agentd.work_dir().join("stdin.bin")).expect("stdin.bin");
    assert!(written == data, "stdin.bin differs from what was sent");
    if limits == Limits::Launcher {
        assert_eq!(
            exec.stdin_acked, LEN as u64,
            "agentd acknowledged all stdin"
        );
    }
    eprintln!(
        "stdin_8_mib ({limits:?}): {LEN} bytes in {took:?}, {:.0} MB/s",
        LEN as f64 / took.as_secs_f64() / 1e6
    );
    sdk.close().await;
    rig.finish(0).await;
}

/// 4. 64 MiB of output (`cat` of a seeded pattern file in agentd's working
///    directory) arrive whole and in order at the SDK client.
///
///    Without exec limits agentd has no output window and writes at memory
///    speed, faster than this debug-built SDK client reads: the relay must
///    pause the guest (rule `backpressure_bounded_wait`), not close the
///    reader. (Before that rule, 84d1d29, the default 8 MiB hard cap closed
///    this reader as a slow consumer after about 10 MiB.)
async fn output_64_mib(limits: Limits) {
    const LEN: usize = 64 << 20;
    let rig = Rig::start(limits.bootstrap()).await;
    let expected = pattern(0x5eed_0004, LEN);
    std::fs::write(rig.agentd.work_dir().join("pattern.bin"), &expected).expect("pattern.bin");
    let sdk = rig.connect().await;
    let started = Instant::now();
    let mut exec = sdk.exec(&request("cat", &["pattern.bin"])).await;
    exec.keep = false;
    let mut at = 0usize;
    while exec.end.is_none() || !exec.queued.is_empty() {
        let Some(ev) = exec.next_or_closed(&sdk).await else {
            panic!(
                "the stream closed after {at} bytes; counters {:?}; agentd's stderr:\n{}",
                rig.counters(),
                rig.agentd.stderr()
            );
        };
        match ev {
            Ev::Stdout(d) => {
                assert!(
                    at + d.len() <= LEN && d == expected[at..at + d.len()],
                    "output differs at or after byte {at} (chunk of {})",
                    d.len()
                );
                at += d.len();
            }
            Ev::Started | Ev::Exited(_) | Ev::StdinAck(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = started.elapsed();
    assert_eq!(exec.end.as_ref().map(End::code), Some(0));
    assert_eq!(at, LEN, "all output arrived");
    let c = rig.counters();
    eprintln!(
        "output_64_mib ({limits:?}): {LEN} bytes in {took:?}, {:.0} MB/s, {} output acks, \
         guest paused {} times ({} ms)",
        LEN as f64 / took.as_secs_f64() / 1e6,
        exec.acks_sent,
        c.guest_pauses,
        c.guest_paused_ms
    );
    sdk.close().await;
    rig.finish(0).await;
}

/// 5. A client that leaves with `sleep` running: the process is killed, the
///    relay sent the kill and the notice, agentd acknowledged the lease, and
///    slot 0 is handed out again (the next client's first id is 1).
async fn kill_on_disconnect(limits: Limits) {
    let rig = Rig::start(limits.bootstrap()).await;
    let mark = unique_sleep("41.5");
    let sdk = rig.connect().await;
    let mut exec = sdk.exec(&request("sleep", &[&mark])).await;
    exec.started(&sdk).await;
    wait_running(&mark, 1).await;
    sdk.close().await;
    wait_gone(&mark).await;
    let c = rig
        .counters_reach("the lease acknowledged", |c| c.lease_acks == 1)
        .await;
    assert_eq!((c.kills_sent, c.notices_sent), (1, 1), "{c:?}");
    assert_eq!((c.live_clients, c.live_sessions), (0, 0), "{c:?}");
    let again = rig.connect().await;
    assert_eq!(again.ping().await, 1, "slot 0 is free again");
    let mut exec = again.run("true", &[]).await;
    assert_eq!(exec.finish(&again).await.code(), 0);
    again.close().await;
    rig.finish(0).await;
}

/// 6. 128 clients at once, each on its own canonical range; the 129th is
///    accepted and closed (the SDK's handshake fails with an early EOF).
async fn all_slots(limits: Limits) {
    let rig = Rig::start(limits.bootstrap()).await;
    let mut clients = Vec::new();
    for _ in 0..128 {
        clients.push(rig.connect().await);
    }
    let mut slots = BTreeSet::new();
    for sdk in &clients {
        let id = sdk.ping().await;
        assert_eq!((id - 1) % STEP, 0, "id {id} starts a canonical range");
        slots.insert((id - 1) / STEP);
    }
    assert_eq!(slots.len(), 128, "128 distinct ranges");
    assert_eq!(slots.last(), Some(&127));
    let c = rig
        .counters_reach("128 leases", |c| c.leases_granted == 128)
        .await;
    assert_eq!(c.live_clients, 128, "{c:?}");
    let refused = Sdk::connect(&rig.sock).await;
    let err = refused.err().expect("the 129th client is refused");
    let lower = err.to_lowercase();
    assert!(
        lower.contains("eof") || lower.contains("end of file") || lower.contains("closed"),
        "the handshake ends at end of file: {err}"
    );
    rig.counters_reach("one refusal", |c| c.refused_clients == 1)
        .await;
    for sdk in clients {
        sdk.close().await;
    }
    rig.counters_reach("128 lease acks", |c| c.lease_acks == 128)
        .await;
    rig.finish(0).await;
}

/// 7. `core.ping` and `core.touch` (requests without a session) get their
///    replies on their own ids.
async fn ping_and_touch(limits: Limits) {
    let rig = Rig::start(limits.bootstrap()).await;
    let sdk = rig.connect().await;
    let first = sdk.ping().await;
    let touched = sdk
        .c
        .request(MessageType::Touch, &Touch {})
        .await
        .expect("core.touched");
    assert_eq!(touched.t, MessageType::Touched, "{touched:?}");
    assert_eq!(touched.id, first + 1);
    let seq1 = touched.payload::<Touched>().expect("touched").activity_seq;
    let again = sdk
        .c
        .request(MessageType::Touch, &Touch {})
        .await
        .expect("core.touched");
    let seq2 = again.payload::<Touched>().expect("touched").activity_seq;
    assert!(seq2 > seq1, "activity {seq1} then {seq2}");
    assert_eq!(sdk.ping().await, first + 3);
    let c = rig
        .counters_reach("no request open", |c| c.open_requests == 0)
        .await;
    assert!(c.frames_to_clients >= 4, "{c:?}");
    sdk.close().await;
    rig.finish(0).await;
}

async fn next_frame(rx: &mut mpsc::Receiver<AgentFrame>, what: &str) -> AgentFrame {
    tokio::time::timeout(PROMPT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no frame in time: {what}"))
        .unwrap_or_else(|| panic!("the stream closed: {what}"))
}

fn fs_response(msg: &Message) -> FsResponse {
    assert_eq!(msg.t, MessageType::FsResponse, "{msg:?}");
    let resp: FsResponse = msg.payload().expect("fs response");
    assert!(resp.ok, "{resp:?}");
    resp
}

async fn fs_open(sdk: &Sdk, path: &Path, options: FsOpenOptions) -> u64 {
    let req = FsRequest {
        op: FsOp::OpenFile {
            path: path.display().to_string(),
            options,
        },
        bulk: None,
    };
    let msg = sdk
        .c
        .request(MessageType::FsRequest, &req)
        .await
        .expect("open");
    match fs_response(&msg).data {
        Some(FsResponseData::Handle(h)) => h,
        other => panic!("{other:?}"),
    }
}

async fn fs_close(sdk: &Sdk, handle: u64) {
    let req = FsRequest {
        op: FsOp::CloseHandle { handle },
        bulk: None,
    };
    let msg = sdk
        .c
        .request(MessageType::FsRequest, &req)
        .await
        .expect("close");
    fs_response(&msg);
}

/// Writes `data` at offset 0 of `handle` with raw BULK records; the number
/// of credit updates agentd sent.
async fn fs_write(sdk: &Sdk, handle: u64, data: &[u8]) -> usize {
    let offer = BulkOffer::filesystem_write();
    let req = FsRequest {
        op: FsOp::Write {
            handle,
            offset: 0,
            len: Some(data.len() as u64),
        },
        bulk: Some(offer),
    };
    let (id, mut rx) = sdk
        .c
        .stream_frames(MessageType::FsRequest, &req)
        .await
        .expect("write request");
    let accepted = match next_frame(&mut rx, "bulk.accepted").await {
        AgentFrame::Control(m) if m.t == MessageType::BulkAccepted => {
            m.payload::<BulkAccepted>().expect("accepted")
        }
        other => panic!("{other:?}"),
    };
    let accepted = accepted
        .validate_against(offer, BulkKind::Filesystem, BULK_FLOW_MASK_HOST_TO_GUEST)
        .expect("a valid acceptance");
    let mut sender = BulkSendState::new(
        BulkKind::Filesystem,
        BulkFlow::HostToGuest,
        accepted.max_record_payload,
        accepted.host_to_guest_credit_limit,
    )
    .expect("sender");
    let mut credits = 0;
    let mut sent = 0usize;
    while sent < data.len() {
        while sender.available_credit() == 0 {
            match next_frame(&mut rx, "bulk.credit").await {
                AgentFrame::Control(m) if m.t == MessageType::BulkCredit => {
                    let credit: BulkCredit = m.payload().expect("credit");
                    sender.apply_credit(credit).expect("credit applies");
                    credits += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        let room = sender
            .available_credit()
            .min(u64::from(sender.max_record_payload()));
        let n = usize::try_from(room).expect("room").min(data.len() - sent);
        let offset = sender.admit(n).expect("admit");
        let record = BulkRecord {
            id,
            kind: BulkKind::Filesystem,
            flow: BulkFlow::HostToGuest,
            offset,
            payload: Bytes::copy_from_slice(&data[sent..sent + n]),
        };
        sdk.c.send_bulk(record).await.expect("bulk record sent");
        sent += n;
    }
    let finish = sender.finish().expect("finish");
    sdk.send(id, MessageType::BulkFinish, &finish).await;
    loop {
        match next_frame(&mut rx, "the write's response").await {
            AgentFrame::Control(m) if m.t == MessageType::BulkCredit => credits += 1,
            AgentFrame::Control(m) => {
                fs_response(&m);
                return credits;
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Reads `handle` to its end with raw BULK records; the data and the number
/// of records.
async fn fs_read(sdk: &Sdk, handle: u64) -> (Vec<u8>, usize) {
    let offer = BulkOffer::filesystem_read();
    let req = FsRequest {
        op: FsOp::Read {
            handle,
            offset: 0,
            len: None,
        },
        bulk: Some(offer),
    };
    let (id, mut rx) = sdk
        .c
        .stream_frames(MessageType::FsRequest, &req)
        .await
        .expect("read request");
    let accepted = match next_frame(&mut rx, "bulk.accepted").await {
        AgentFrame::Control(m) if m.t == MessageType::BulkAccepted => {
            m.payload::<BulkAccepted>().expect("accepted")
        }
        other => panic!("{other:?}"),
    };
    let accepted = accepted
        .validate_against(offer, BulkKind::Filesystem, BULK_FLOW_MASK_GUEST_TO_HOST)
        .expect("a valid acceptance");
    let mut receiver = BulkReceiveState::new(
        BulkKind::Filesystem,
        BulkFlow::GuestToHost,
        accepted.max_record_payload,
        accepted.guest_to_host_credit_limit,
        DEFAULT_BULK_WINDOW,
    )
    .expect("receiver");
    let mut out = Vec::new();
    let mut records = 0;
    let mut finished = false;
    loop {
        match next_frame(&mut rx, "read records").await {
            AgentFrame::Bulk(record) => {
                assert_eq!(record.id, id);
                receiver.accept_record(&record).expect("a valid record");
                out.extend_from_slice(&record.payload);
                records += 1;
                if let Some(credit) = receiver.consume(out.len() as u64).expect("consume") {
                    sdk.send(id, MessageType::BulkCredit, &credit).await;
                }
            }
            AgentFrame::Control(m) if m.t == MessageType::BulkFinish => {
                let finish: BulkFinish = m.payload().expect("finish");
                receiver.accept_finish(finish).expect("an exact finish");
                finished = true;
            }
            AgentFrame::Control(m) => {
                fs_response(&m);
                assert!(finished, "the response after the finish");
                return (out, records);
            }
        }
    }
}

/// 8. fs: a file written with raw BULK records (more than one receive
///    window, so agentd's credit updates are needed) arrives whole; a file
///    read with raw BULK records (guest-to-host records routed by id, our
///    credit updates forwarded) arrives whole.
async fn fs_bulk(limits: Limits) {
    const LEN: usize = (8 << 20) + (1 << 20) + 123;
    let rig = Rig::start(limits.bootstrap()).await;
    let sdk = rig.connect().await;
    let work = rig.agentd.work_dir().to_owned();

    let data = pattern(0x5eed_0008, LEN);
    let target = work.join("written.bin");
    let options = FsOpenOptions {
        write: true,
        create: true,
        truncate: true,
        ..FsOpenOptions::default()
    };
    let started = Instant::now();
    let handle = fs_open(&sdk, &target, options).await;
    let credits = fs_write(&sdk, handle, &data).await;
    fs_close(&sdk, handle).await;
    let wrote = started.elapsed();
    let on_disk = std::fs::read(&target).expect("written.bin");
    assert_eq!(on_disk.len(), LEN);
    assert!(on_disk == data, "the written file differs");
    assert!(credits >= 1, "the write needed agentd's credit");

    let source = work.join("source.bin");
    let expected = pattern(0x5eed_0080, LEN);
    std::fs::write(&source, &expected).expect("source.bin");
    let started = Instant::now();
    let options = FsOpenOptions {
        read: true,
        ..FsOpenOptions::default()
    };
    let handle = fs_open(&sdk, &source, options).await;
    let (read, records) = fs_read(&sdk, handle).await;
    fs_close(&sdk, handle).await;
    let took = started.elapsed();
    assert_eq!(read.len(), LEN);
    assert!(read == expected, "the read file differs");
    eprintln!(
        "fs_bulk ({limits:?}): wrote {LEN} bytes in {wrote:?} ({credits} credit updates), \
         read them in {took:?} ({records} records)"
    );
    let c = rig.counters();
    assert_eq!(c.late_bulk_dropped, 0, "{c:?}");
    sdk.close().await;
    rig.finish(0).await;
}

/// 9. 300 cycles of connect, `true`, disconnect: every one succeeds, none
///    is refused, and agentd acknowledges every departure.
async fn connect_cycles(limits: Limits) {
    const CYCLES: u64 = 300;
    let rig = Rig::start(limits.bootstrap()).await;
    let started = Instant::now();
    for i in 0..CYCLES {
        let sdk = rig.connect().await;
        let mut exec = sdk.run("true", &[]).await;
        match exec.finish(&sdk).await {
            End::Exited(0) => {}
            other => panic!("cycle {i}: {other:?}"),
        }
        sdk.close().await;
    }
    let c = rig
        .counters_reach("every departure acknowledged", |c| {
            c.lease_acks == CYCLES && c.live_clients == 0
        })
        .await;
    assert_eq!(c.refused_clients, 0, "{c:?}");
    assert_eq!(c.leases_granted, CYCLES, "{c:?}");
    eprintln!(
        "connect_cycles ({limits:?}): {CYCLES} cycles in {:?}",
        started.elapsed()
    );
    rig.finish(0).await;
}

/// 10. 130 executions interrupted in a row (the client leaves while `sleep`
///     runs), then 128 clients at once, each starting an execution: none is
///     refused and all start, since the departed ones' executions stopped
///     counting at agentd's acknowledgements. Under exec limits the 129th
///     concurrent execution is answered `resource_limit`, as agentd would.
async fn interrupted_then_all_slots(limits: Limits) {
    const INTERRUPTED: u64 = 130;
    let rig = Rig::start(limits.bootstrap()).await;
    let started = Instant::now();
    let mark = unique_sleep("60.25");
    for i in 0..INTERRUPTED {
        let sdk = rig.connect().await;
        let mut exec = sdk.exec(&request("sleep", &[&mark])).await;
        match exec.next(&sdk).await {
            Ev::Started => {}
            other => panic!("interrupted execution {i}: {other:?}"),
        }
        sdk.close().await;
    }
    rig.counters_reach("every interrupted client acknowledged", |c| {
        c.lease_acks == INTERRUPTED && c.live_sessions == 0
    })
    .await;
    wait_gone(&mark).await;
    let interrupted = started.elapsed();

    let clients: Vec<Sdk> = {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..128 {
            let sock = rig.sock.clone();
            set.spawn(async move { Sdk::connect(&sock).await });
        }
        let mut clients = Vec::new();
        while let Some(joined) = set.join_next().await {
            clients.push(joined.expect("connect task").expect("connected"));
        }
        clients
    };
    let mark2 = unique_sleep("60.5");
    let mut execs = Vec::new();
    for sdk in &clients {
        execs.push(sdk.exec(&request("sleep", &[&mark2])).await);
    }
    for (sdk, exec) in clients.iter().zip(execs.iter_mut()) {
        exec.started(sdk).await;
    }
    wait_running(&mark2, 128).await;
    let c = rig.counters();
    assert_eq!(c.refused_clients, 0, "{c:?}");
    assert_eq!(c.execs_refused, 0, "{c:?}");
    if limits == Limits::Launcher {
        let mut over = clients[0].exec(&request("true", &[])).await;
        match over.finish(&clients[0]).await {
            End::Failed(f) => assert_eq!(f.kind, ExecFailureKind::ResourceLimit, "{f:?}"),
            other => panic!("the 129th execution: {other:?}"),
        }
        rig.counters_reach("the relay refused the 129th", |c| c.execs_refused == 1)
            .await;
    }
    for sdk in clients {
        sdk.close().await;
    }
    wait_gone(&mark2).await;
    rig.counters_reach("every client acknowledged", |c| {
        c.lease_acks == INTERRUPTED + 128 && c.live_clients == 0
    })
    .await;
    eprintln!(
        "interrupted_then_all_slots ({limits:?}): {INTERRUPTED} interrupted in {interrupted:?}, \
         all in {:?}",
        started.elapsed()
    );
    rig.finish(0).await;
}

/// 10b. `max_executions` lowered to 4: 10 executions interrupted one after
///      another (each departure acknowledged before the next client), then
///      4 concurrent executions all start (the relay counts what agentd
///      counts: the killed ones are gone); the 5th is refused.
async fn max_executions_follows_agentd() {
    let bootstrap = GuestBootstrap {
        exec_limits: Some(ExecLimits {
            max_executions: 4,
            ..ExecLimits::default()
        }),
        ..GuestBootstrap::default()
    };
    let rig = Rig::start(bootstrap).await;
    let mark = unique_sleep("61.75");
    for i in 0..10u64 {
        let sdk = rig.connect().await;
        let mut exec = sdk.exec(&request("sleep", &[&mark])).await;
        match exec.next(&sdk).await {
            Ev::Started => {}
            other => panic!("interrupted execution {i}: {other:?}"),
        }
        sdk.close().await;
        rig.counters_reach("the departure acknowledged", |c| c.lease_acks == i + 1)
            .await;
    }
    wait_gone(&mark).await;
    let sdk = rig.connect().await;
    let mark2 = unique_sleep("62.5");
    let mut execs = Vec::new();
    for _ in 0..4 {
        execs.push(sdk.exec(&request("sleep", &[&mark2])).await);
    }
    for exec in &mut execs {
        exec.started(&sdk).await;
    }
    wait_running(&mark2, 4).await;
    assert_eq!(rig.counters().execs_refused, 0);
    let mut fifth = sdk.exec(&request("true", &[])).await;
    match fifth.finish(&sdk).await {
        End::Failed(f) => assert_eq!(f.kind, ExecFailureKind::ResourceLimit, "{f:?}"),
        other => panic!("the 5th execution: {other:?}"),
    }
    rig.counters_reach("the relay refused the 5th", |c| c.execs_refused == 1)
        .await;
    sdk.close().await;
    wait_gone(&mark2).await;
    rig.counters_reach("acknowledged", |c| c.lease_acks == 11)
        .await;
    rig.finish(0).await;
}

/// 11. A tty execution sees its size, then the new size after a resize; a
///     SIGTERM ends `sleep` (agentd reports a death by signal as code -1)
///     and reaches a shell's trap (its exit code).
async fn tty_resize_and_signal(limits: Limits) {
    let rig = Rig::start(limits.bootstrap()).await;
    let sdk = rig.connect().await;
    let mut req = request("sh", &["-c", "stty size; read x; stty size"]);
    req.tty = true;
    let mut tty = sdk.exec(&req).await;
    while !text(&tty.stdout).contains("24 80") {
        let ev = tty.next(&sdk).await;
        assert!(tty.end.is_none(), "ended before its size: {ev:?}");
    }
    let resize = ExecResize {
        rows: 40,
        cols: 100,
    };
    sdk.send(tty.id, MessageType::ExecResize, &resize).await;
    let line = ExecStdin {
        data: b"go\n".to_vec(),
    };
    sdk.send(tty.id, MessageType::ExecStdin, &line).await;
    assert_eq!(tty.finish(&sdk).await.code(), 0);
    let out = text(&tty.stdout);
    let resized = out.find("40 100").expect("the new size");
    assert!(
        resized > out.find("24 80").expect("the old size"),
        "{out:?}"
    );

    let mark = unique_sleep("43.2");
    let mut sleep = sdk.exec(&request("sleep", &[&mark])).await;
    sleep.started(&sdk).await;
    wait_running(&mark, 1).await;
    sdk.send(
        sleep.id,
        MessageType::ExecSignal,
        &ExecSignal { signal: 15 },
    )
    .await;
    assert_eq!(sleep.finish(&sdk).await.code(), -1);
    wait_gone(&mark).await;

    let mark = unique_sleep("43.4");
    let script = format!("trap 'kill $p; exit 42' TERM; sleep {mark} & p=$!; echo up; wait");
    let mut trap = sdk.exec(&request("sh", &["-c", &script])).await;
    while !text(&trap.stdout).contains("up") {
        let ev = trap.next(&sdk).await;
        assert!(trap.end.is_none(), "ended early: {ev:?}");
    }
    wait_running(&mark, 1).await;
    sdk.send(trap.id, MessageType::ExecSignal, &ExecSignal { signal: 15 })
        .await;
    assert_eq!(trap.finish(&sdk).await.code(), 42);
    wait_gone(&mark).await;
    sdk.close().await;
    rig.finish(0).await;
}

/// 12. A client's `core.shutdown` (id 0, SHUTDOWN, payload `()`, as the
///     microsandbox SDK sends it) reaches agentd: the relay's drain notice
///     fires, agentd powers off (its sessions signalled and the namespace
///     ended), without a loop error; the relay then sees the guest gone.
async fn shutdown(limits: Limits) {
    let mut rig = Rig::start(limits.bootstrap()).await;
    let sdk = rig.connect().await;
    let mark = unique_sleep("44.1");
    let mut exec = sdk.exec(&request("sleep", &[&mark])).await;
    exec.started(&sdk).await;
    wait_running(&mark, 1).await;
    sdk.send(0, MessageType::Shutdown, &()).await;
    let notice = tokio::time::timeout(PROMPT, rig.drains.recv()).await;
    assert_eq!(notice.expect("a drain notice in time"), Some(DrainNotice));
    tokio::time::timeout(PROMPT, rig.handle.guest_closed())
        .await
        .expect("the relay sees the guest gone");
    let agentd = &mut rig.agentd;
    let status = tokio::task::block_in_place(|| agentd.wait_exit(PROMPT));
    assert!(status.is_some(), "{}", rig.agentd.stderr());
    assert_eq!(
        rig.agentd.ending(),
        Some(Ending::PowerOff),
        "{}",
        rig.agentd.stderr()
    );
    assert_eq!(rig.agentd.loop_error(), None, "{}", rig.agentd.stderr());
    wait_gone(&mark).await;
    assert!(rig.agentd.remaining_pids().is_empty());
    sdk.close().await;
    let c = rig.counters();
    assert_eq!(c.protocol_violations, 0, "{c:?}");
    rig.stop_relay().await;
}

// -------------------------------------------------------------------------------------------------
// 13. Frames that would end agentd's loop
// -------------------------------------------------------------------------------------------------

/// A frame: `[len][id][flags][body]`.
fn frame(id: u32, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + body.len());
    out.extend_from_slice(&(5 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(body);
    out
}

/// A CBOR text string (short).
fn cbor_text(s: &str) -> Vec<u8> {
    assert!(s.len() < 24);
    let mut out = vec![0x60 | s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

/// An envelope `{v, t, p}` with the given fields, `p` left out when `None`.
fn envelope(v: u8, t: &str, p: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![if p.is_some() { 0xa3 } else { 0xa2 }];
    out.extend(cbor_text("v"));
    if v < 24 {
        out.push(v);
    } else {
        out.extend([0x18, v]);
    }
    out.extend(cbor_text("t"));
    if t.len() < 24 {
        out.extend(cbor_text(t));
    } else {
        out.push(0x78);
        out.push(t.len() as u8);
        out.extend_from_slice(t.as_bytes());
    }
    if let Some(p) = p {
        out.extend(cbor_text("p"));
        assert!(p.len() < 24);
        out.push(0x40 | p.len() as u8);
        out.extend_from_slice(p);
    }
    out
}

/// The 41-byte range-lease record (connected) naming `[start, end)`.
fn lease_record(start: u32, end: u32) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0x25, 0, 0, 0, 0, 0];
    out.extend_from_slice(b"MSBL");
    out.extend([1, 1, 0, 0]);
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&end.to_be_bytes());
    out.extend(1..=16u8);
    assert_eq!(out.len(), 41);
    out
}

/// A client that speaks raw bytes: its prologue's range read.
struct Raw {
    io: tokio::net::UnixStream,
    start: u32,
    end: u32,
}

impl Raw {
    async fn connect(sock: &Path) -> Raw {
        let mut io = tokio::net::UnixStream::connect(sock)
            .await
            .expect("connect");
        let mut prologue = [0u8; 12];
        tokio::time::timeout(PROMPT, io.read_exact(&mut prologue))
            .await
            .expect("the prologue in time")
            .expect("the prologue");
        let word = |i: usize| u32::from_be_bytes(prologue[i..i + 4].try_into().expect("4"));
        let (start, end, len) = (word(0), word(4), word(8));
        let mut ready = vec![0u8; len as usize];
        tokio::time::timeout(PROMPT, io.read_exact(&mut ready))
            .await
            .expect("the ready frame in time")
            .expect("the ready frame");
        Raw { io, start, end }
    }

    /// Sends `bytes`; the relay must close the connection (end of file or
    /// a reset), whatever it wrote before.
    async fn send_and_be_closed(mut self, bytes: &[u8], what: &str) {
        // The relay may close before taking everything; a failed write is
        // an answer too.
        let _ = self.io.write_all(bytes).await;
        let closed = tokio::time::timeout(PROMPT, async {
            let mut buf = [0u8; 4096];
            loop {
                match self.io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{what}: the sender was not closed");
    }
}

/// 13. Each frame known to end agentd's loop, sent by a raw client: the
///     sender is closed (a protocol violation counted), agentd stays alive
///     without a loop error, and an SDK client keeps running commands after
///     each.
async fn malicious_frames(limits: Limits) {
    let mut rig = Rig::start(limits.bootstrap()).await;
    let sdk = rig.connect().await;
    let (other_start, other_end) = (1, STEP);
    type Build = fn(&Raw, u32, u32) -> Vec<u8>;
    let killers: Vec<(&str, Build)> = vec![
        ("a type name that does not exist (35 bytes)", |r, _, _| {
            let f = frame(r.start, 0, &envelope(10, "core.bogus.type", Some(&[0xa0])));
            assert_eq!(f.len(), 35);
            f
        }),
        ("an envelope without p", |r, _, _| {
            frame(r.start, 0, &envelope(10, "core.ping", None))
        }),
        ("v 1 with a payload agentd cannot decode", |r, _, _| {
            frame(r.start, 0, &envelope(1, "core.exec.signal", Some(&[0xa0])))
        }),
        ("an empty-bodied core.shutdown on id 0", |_, _, _| {
            frame(0, 0x04, &[])
        }),
        ("a bulk record with bad reserved bytes", |r, _, _| {
            let mut body = vec![1, 1, 0xff, 0];
            body.extend(0u64.to_be_bytes());
            body.push(0x42);
            frame(r.start, 0x08, &body)
        }),
        (
            "a disconnect notice for another client's range, on id 0",
            |_, s, e| notice_frame(0, s, e),
        ),
        (
            "a disconnect notice for another client's range, on its own id",
            |r, s, e| notice_frame(r.start, s, e),
        ),
        (
            "a lease record (MSBL at bytes 9..13) for another client's range",
            |_, s, e| lease_record(s, e),
        ),
        ("MSBL at bytes 9..13 of a frame on its own id", |r, _, _| {
            let mut body = b"MSBL".to_vec();
            body.extend([1, 2, 0, 0]);
            body.extend(r.start.to_be_bytes());
            body.extend(r.end.to_be_bytes());
            body.extend([7u8; 16]);
            frame(r.start, 0, &body)
        }),
    ];
    for (i, (what, build)) in killers.iter().enumerate() {
        let raw = Raw::connect(&rig.sock).await;
        assert_ne!(
            raw.start, other_start,
            "the raw client has a slot of its own"
        );
        let bytes = build(&raw, other_start, other_end);
        raw.send_and_be_closed(&bytes, what).await;
        let n = i as u64 + 1;
        rig.counters_reach(what, |c| c.protocol_violations == n)
            .await;
        rig.assert_agentd_healthy();
        let mut exec = sdk.run("echo", &["still", "serving"]).await;
        assert_eq!(exec.finish(&sdk).await.code(), 0, "after {what}");
        assert_eq!(text(&exec.stdout), "still serving\n", "after {what}");
        rig.assert_agentd_healthy();
    }
    sdk.close().await;
    rig.finish(killers.len() as u64).await;
}

fn notice_frame(id: u32, start: u32, end: u32) -> Vec<u8> {
    let notice = RelayClientDisconnected {
        id_start: start,
        id_end_exclusive: end,
        incarnation: None,
    };
    let msg =
        Message::with_payload(MessageType::RelayClientDisconnected, id, &notice).expect("encode");
    let mut out = Vec::new();
    msp7::codec::encode_to_buf(&msg, &mut out).expect("frame");
    out
}

// -------------------------------------------------------------------------------------------------
// 14. The CLI: serve --guest-bootstrap, exec
// -------------------------------------------------------------------------------------------------

/// Copies `from` to `to` until `from` ends, then shuts `to` down for
/// writing.
fn pump(
    mut from: std::os::unix::net::UnixStream,
    to: std::os::unix::net::UnixStream,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut to_w = &to;
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    })
}

/// 14. `agent-relay serve --guest-unix PATH --guest-bootstrap FILE` in
///     front of agentd (PATH a listener of the test's that copies bytes
///     both ways to agentd's port): the bootstrap's `default_env` reaches
///     an `agent-relay exec`'s process; SIGTERM ends serve with 0, and the
///     tree ends with it. With `boot_before_any_client`, agentd must have
///     started (bootstrap, init, its loop) before the exec connects (a
///     relay bug this file found: the shell's driver handed the core's
///     first actions to the guest only after a first event, so the
///     bootstrap waited for a client).
fn cli_serve_guest_bootstrap(limits: Limits, boot_before_any_client: bool) {
    use cli_support::{BIN, kill, output_of, spawn_exec, wait_exit, wait_for_path};
    use std::process::{Command, Stdio};

    let (mut agentd, port) = Agentd::spawn(AgentdOptions::relay()).expect("spawn agentd");
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = dir.path().join("guest.sock");
    let sock = dir.path().join("relay.sock");
    let file = dir.path().join("bootstrap.json");
    let exec_limits = match limits {
        Limits::Launcher => "\"exec_limits\": {}, ",
        Limits::Absent => "",
    };
    let json = format!(
        "{{{exec_limits}\"default_env\": [{{\"key\": \"RELAY_TEST_GREETING\", \
         \"value\": \"hello from the bootstrap\"}}]}}"
    );
    std::fs::write(&file, json).expect("bootstrap file");
    let listener = std::os::unix::net::UnixListener::bind(&guest).expect("bind guest");
    let proxy = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("serve connects");
        let to_agentd = pump(
            conn.try_clone().expect("clone"),
            port.try_clone().expect("clone"),
        );
        let from_agentd = pump(port, conn);
        to_agentd.join().expect("pump to agentd");
        from_agentd.join().expect("pump from agentd");
    });
    let stderr = std::fs::File::create(dir.path().join("serve.stderr")).expect("stderr");
    let mut serve = Command::new(BIN)
        .arg("serve")
        .arg("--guest-unix")
        .arg(&guest)
        .arg("--socket")
        .arg(&sock)
        .arg("--guest-bootstrap")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn serve");
    let serve_stderr = || std::fs::read_to_string(dir.path().join("serve.stderr")).unwrap();
    wait_for_path(&sock);
    if boot_before_any_client {
        // agentd prints this in its loop, after its bootstrap and the init
        // exchange: it started with no client connected.
        let started = Instant::now();
        while !agentd.stderr().contains("checkpoint workload freezer") {
            assert!(
                started.elapsed() < PROMPT,
                "agentd not started by serve without a client; its stderr:\n{}serve's:\n{}",
                agentd.stderr(),
                serve_stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let sock_arg = sock.to_str().expect("utf-8");
    let started = Instant::now();
    let out = output_of(spawn_exec(
        sock_arg,
        &[],
        &["sh", "-c", "echo $RELAY_TEST_GREETING"],
        Stdio::null(),
    ));
    assert!(
        out.status.success(),
        "exec: {:?}; its stderr: {}; serve's: {}; agentd's: {}",
        out.status,
        text(&out.stderr),
        serve_stderr(),
        agentd.stderr()
    );
    assert_eq!(text(&out.stdout), "hello from the bootstrap\n");
    eprintln!(
        "cli_serve_guest_bootstrap ({limits:?}): exec took {:?}",
        started.elapsed()
    );

    assert!(agentd.is_alive(), "{}", agentd.stderr());
    assert_eq!(agentd.loop_error(), None, "{}", agentd.stderr());
    kill("TERM", serve.id());
    let status = wait_exit(&mut serve);
    assert_eq!(status.code(), Some(0), "serve: {}", serve_stderr());
    proxy.join().expect("proxy");
    assert!(agentd.wait_exit(PROMPT).is_some(), "{}", agentd.stderr());
    let left = agentd.remaining_pids();
    assert!(left.is_empty(), "processes of the tree left: {left:?}");
    assert!(!sock.exists(), "serve removed its socket");
    if let Some(error) = agentd.loop_error() {
        assert!(error.contains("Broken pipe"), "{}", agentd.stderr());
    }
}

// -------------------------------------------------------------------------------------------------
// The tests: each scenario with the launcher's exec limits and without
// -------------------------------------------------------------------------------------------------

macro_rules! with_and_without_limits {
    ($($name:ident => $scenario:ident;)*) => {
        mod launcher_limits {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $scenario(Limits::Launcher).await;
                }
            )*

            #[test]
            fn cli_serve_guest_bootstrap_and_exec() {
                cli_serve_guest_bootstrap(Limits::Launcher, false);
            }
        }
        mod no_limits {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $scenario(Limits::Absent).await;
                }
            )*

            #[test]
            fn cli_serve_guest_bootstrap_and_exec() {
                cli_serve_guest_bootstrap(Limits::Absent, false);
            }
        }
    };
}

with_and_without_limits! {
    handshake_ready_is_agentds_and_each_client_leased => handshake;
    exec_exit_codes_and_a_missing_command => exec_codes;
    stdin_8_mib_through_cat_arrives_whole => stdin_8_mib;
    output_64_mib_arrives_whole => output_64_mib;
    disconnect_kills_the_process_and_frees_the_slot => kill_on_disconnect;
    all_128_slots_and_the_129th_refused => all_slots;
    ping_and_touch_replies => ping_and_touch;
    fs_write_and_read_with_raw_bulk_records => fs_bulk;
    connect_exec_disconnect_300_cycles => connect_cycles;
    interrupted_130_then_128_clients_at_once => interrupted_then_all_slots;
    tty_resize_and_signals => tty_resize_and_signal;
    client_shutdown_drains_and_powers_agentd_off => shutdown;
    malicious_frames_close_the_sender_and_agentd_survives => malicious_frames;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_executions_4_counts_as_agentd_does_after_10_interrupted() {
    max_executions_follows_agentd().await;
}

/// Regression (a relay bug this file found): with `Shell::bootstrap` and a
/// guest that is silent until it has read its bootstrap (0.7.13 agentd),
/// the bootstrap must go out with no client ever connecting. Before the fix
/// the shell's driver performed the core's first actions only after a
/// first event: agentd's ready never came and nothing was handed to the
/// guest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_reaches_a_silent_guest_without_any_client() {
    let (agentd, port) = Agentd::spawn(AgentdOptions::relay()).expect("spawn agentd");
    port.set_nonblocking(true).expect("non-blocking port");
    let port = tokio::net::UnixStream::from_std(port).expect("tokio port");
    let dir = tempfile::tempdir().expect("tempdir");
    let shell = Shell::new(dir.path().join("relay.sock"), GuestPort::stream(port))
        .config(Config::current())
        .bootstrap(GuestBootstrap::launcher_default());
    let handle = shell.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(shell.run(stopped));
    let ready = handle.wait_ready(PROMPT).await;
    assert!(
        ready.is_ok(),
        "{ready:?}; counters {:?}; agentd's stderr:\n{}",
        handle.counters(),
        agentd.stderr()
    );
    drop(stop);
    task.await.expect("shell task").expect("shell ran");
}

/// The same regression through the CLI: `serve --guest-bootstrap` starts
/// agentd before any client connects.
#[test]
fn cli_serve_bootstraps_agentd_before_any_client() {
    cli_serve_guest_bootstrap(Limits::Launcher, true);
}
