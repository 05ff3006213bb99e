//! The real 0.7.13 SDK clients, `OptimizedAgentClient` (what the microsandbox
//! SDK wraps) and the generic `AgentClient`, through the real shell
//! (`agent_relay::shell::Shell` on a Unix socket in a tempdir) with the demo
//! agent as the guest: in the current generation (exec, ping, 128 clients,
//! departure kills and the disconnect notice, signals and kills reaching a
//! process flooded with stdin it never reads, fair data credit), and in the
//! legacy generation in both prologue forms.
//!
//! Both clients are driven through one small adapter ([`Sdk`]); a test body
//! is written once and run for each. Waits have generous deadlines and wait
//! for events (agent notes, relay counters), never for time to pass.

mod shell_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_relay::core::{Config, Counters};
use agent_relay::demo_agent::{AgentNote, DemoAgent, Generation};
use agent_relay::shell::{GuestPort, Shell, ShellError, ShellHandle};
use agent_relay::wire::MsgType;
use microsandbox_agent_client::{AgentClient, EncodedMessage, OptimizedAgentClient, TypedMessage};
use msp7::core::Ping;
use msp7::exec::{
    ExecExited, ExecFailed, ExecLimits, ExecRequest, ExecSignal, ExecStderr, ExecStdin,
    ExecStdinAck, ExecStdout,
};
use msp7::message::{Message, MessageType};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Upper bound for anything that should happen promptly (the machine is shared).
const PROMPT: Duration = Duration::from_secs(30);

// -------------------------------------------------------------------------------------------------
// What a session shows its client
// -------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    StdinAck(u64),
    Exited(i32),
    Failed(String),
    Other(String),
}

/// Everything one session showed until it ended.
#[derive(Debug, Default)]
struct Seen {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    acked: u64,
    end: Option<Ev>,
}

impl Seen {
    /// Takes one event; true once the session ended.
    fn take(&mut self, ev: Ev) -> bool {
        match ev {
            Ev::Stdout(d) => self.stdout.extend(d),
            Ev::Stderr(d) => self.stderr.extend(d),
            Ev::StdinAck(n) => self.acked = self.acked.max(n),
            Ev::Exited(_) | Ev::Failed(_) => {
                self.end = Some(ev);
                return true;
            }
            Ev::Started | Ev::Other(_) => {}
        }
        false
    }
}

// -------------------------------------------------------------------------------------------------
// The two clients behind one adapter
// -------------------------------------------------------------------------------------------------

trait Events {
    /// The next event; `None` once the session's stream ended.
    async fn next(&mut self) -> Option<Ev>;
    /// An event already received, without waiting.
    fn try_next(&mut self) -> Option<Ev>;
}

trait Sdk: Sized {
    type Rx: Events;
    async fn connect(path: &Path) -> Result<Self, String>;
    async fn exec(&self, req: &ExecRequest) -> (u32, Self::Rx);
    async fn stdin(&self, id: u32, data: &[u8]) -> Result<(), String>;
    async fn signal(&self, id: u32, signal: i32) -> Result<(), String>;
    /// A `core.ping`; the reply's type name.
    async fn ping(&self) -> Result<String, String>;
    fn exec_limits(&self) -> Option<ExecLimits>;
    /// Whether the client took the prologue for the legacy form.
    fn legacy(&self) -> bool;
    /// Closes the connection.
    async fn close(self);
}

fn event7(msg: &Message) -> Ev {
    let p = |t: MessageType| -> Option<Ev> {
        Some(match t {
            MessageType::ExecStarted => Ev::Started,
            MessageType::ExecStdout => Ev::Stdout(msg.payload::<ExecStdout>().ok()?.data),
            MessageType::ExecStderr => Ev::Stderr(msg.payload::<ExecStderr>().ok()?.data),
            MessageType::ExecStdinAck => Ev::StdinAck(msg.payload::<ExecStdinAck>().ok()?.consumed),
            MessageType::ExecExited => Ev::Exited(msg.payload::<ExecExited>().ok()?.code),
            MessageType::ExecFailed => Ev::Failed(msg.payload::<ExecFailed>().ok()?.message),
            _ => return None,
        })
    };
    p(msg.t).unwrap_or_else(|| Ev::Other(msg.t.as_str().to_owned()))
}

struct OptRx(mpsc::Receiver<Message>);

impl Events for OptRx {
    async fn next(&mut self) -> Option<Ev> {
        self.0.recv().await.map(|m| event7(&m))
    }

    fn try_next(&mut self) -> Option<Ev> {
        self.0.try_recv().ok().map(|m| event7(&m))
    }
}

impl Sdk for OptimizedAgentClient {
    type Rx = OptRx;

    async fn connect(path: &Path) -> Result<Self, String> {
        OptimizedAgentClient::connect(path)
            .await
            .map_err(|e| e.to_string())
    }

    async fn exec(&self, req: &ExecRequest) -> (u32, OptRx) {
        let (id, rx) = self
            .stream(MessageType::ExecRequest, req)
            .await
            .expect("exec request sent");
        (id, OptRx(rx))
    }

    async fn stdin(&self, id: u32, data: &[u8]) -> Result<(), String> {
        let stdin = ExecStdin {
            data: data.to_vec(),
        };
        self.send(id, MessageType::ExecStdin, &stdin)
            .await
            .map_err(|e| e.to_string())
    }

    async fn signal(&self, id: u32, signal: i32) -> Result<(), String> {
        self.send(id, MessageType::ExecSignal, &ExecSignal { signal })
            .await
            .map_err(|e| e.to_string())
    }

    async fn ping(&self) -> Result<String, String> {
        self.request(MessageType::Ping, &Ping {})
            .await
            .map(|m| m.t.as_str().to_owned())
            .map_err(|e| e.to_string())
    }

    fn exec_limits(&self) -> Option<ExecLimits> {
        self.ready().ok().and_then(|r| r.exec_limits)
    }

    fn legacy(&self) -> bool {
        self.is_legacy_protocol()
    }

    async fn close(self) {
        OptimizedAgentClient::close(self).await;
    }
}

/// The generic client's events, forwarded from its stream by a task.
struct GenRx(mpsc::UnboundedReceiver<Ev>);

impl Events for GenRx {
    async fn next(&mut self) -> Option<Ev> {
        self.0.recv().await
    }

    fn try_next(&mut self) -> Option<Ev> {
        self.0.try_recv().ok()
    }
}

impl Sdk for AgentClient {
    type Rx = GenRx;

    async fn connect(path: &Path) -> Result<Self, String> {
        AgentClient::connect(path).await.map_err(|e| e.to_string())
    }

    async fn exec(&self, req: &ExecRequest) -> (u32, GenRx) {
        let mut stream = self
            .stream(TypedMessage::new(MessageType::ExecRequest, req))
            .await
            .expect("exec request sent");
        let id = stream.id();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = stream.recv().await {
                if tx.send(event_named(&msg)).is_err() {
                    return;
                }
            }
        });
        (id, GenRx(rx))
    }

    async fn stdin(&self, id: u32, data: &[u8]) -> Result<(), String> {
        let stdin = ExecStdin {
            data: data.to_vec(),
        };
        self.send(id, TypedMessage::new(MessageType::ExecStdin, stdin))
            .await
            .map_err(|e| e.to_string())
    }

    async fn signal(&self, id: u32, signal: i32) -> Result<(), String> {
        let sig = ExecSignal { signal };
        self.send(id, TypedMessage::new(MessageType::ExecSignal, sig))
            .await
            .map_err(|e| e.to_string())
    }

    async fn ping(&self) -> Result<String, String> {
        self.request(EncodedMessage::new(MessageType::Ping, vec![0xa0]))
            .await
            .map(|m| m.t)
            .map_err(|e| e.to_string())
    }

    fn exec_limits(&self) -> Option<ExecLimits> {
        self.ready().agent.exec_limits
    }

    fn legacy(&self) -> bool {
        self.ready().is_legacy_protocol()
    }

    async fn close(self) {
        // Streams hold the client too; closing aborts its reader and writer.
        AgentClient::close(&self).await;
    }
}

fn event_named(msg: &microsandbox_agent_client::message::Message) -> Ev {
    let p = || -> Option<Ev> {
        Some(match msg.t.as_str() {
            "core.exec.started" => Ev::Started,
            "core.exec.stdout" => Ev::Stdout(msg.payload::<ExecStdout>().ok()?.data),
            "core.exec.stderr" => Ev::Stderr(msg.payload::<ExecStderr>().ok()?.data),
            "core.exec.stdin.ack" => Ev::StdinAck(msg.payload::<ExecStdinAck>().ok()?.consumed),
            "core.exec.exited" => Ev::Exited(msg.payload::<ExecExited>().ok()?.code),
            "core.exec.failed" => Ev::Failed(msg.payload::<ExecFailed>().ok()?.message),
            _ => return None,
        })
    };
    p().unwrap_or_else(|| Ev::Other(msg.t.clone()))
}

// -------------------------------------------------------------------------------------------------
// The relay under test: the shell on a Unix socket, the demo agent as its guest
// -------------------------------------------------------------------------------------------------

struct Relay {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    handle: ShellHandle,
    notes: Notes,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ShellError>>>,
}

impl Relay {
    /// The shell with `config`, its guest `agent` (noting every frame it
    /// reads), ready.
    async fn start(config: Config, agent: DemoAgent) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("agent.sock");
        let (port, guest) = tokio::io::duplex(1 << 20);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(agent.with_notes(tx).note_frames(true).run(guest));
        let shell = Shell::new(&sock, GuestPort::stream(port)).config(config);
        let handle = shell.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(shell.run(stopped));
        handle.wait_ready(PROMPT).await.expect("the guest is ready");
        Relay {
            _dir: dir,
            sock,
            handle,
            notes: Notes {
                rx,
                seen: Vec::new(),
            },
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn current() -> Relay {
        Relay::start(
            Config::default(),
            DemoAgent::new().generation(Generation::Current),
        )
        .await
    }

    async fn connect<C: Sdk>(&self) -> C {
        C::connect(&self.sock).await.expect("connect")
    }

    /// Waits until `f(counters)` holds.
    async fn wait_counters(&self, what: &str, f: impl Fn(&Counters) -> bool) -> Counters {
        shell_support::counters_reach(&self.handle, PROMPT, what, f).await
    }

    async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            let ran = tokio::time::timeout(PROMPT, task).await;
            ran.expect("the shell stops in time")
                .expect("shell task")
                .expect("shell ran");
        }
    }
}

/// What the demo agent did, in order.
struct Notes {
    rx: mpsc::UnboundedReceiver<AgentNote>,
    seen: Vec<AgentNote>,
}

impl Notes {
    /// The index of the first note (seen already or still to come) for
    /// which `f` holds.
    async fn until(&mut self, what: &str, f: impl Fn(&AgentNote) -> bool) -> usize {
        if let Some(i) = self.seen.iter().position(&f) {
            return i;
        }
        let found = tokio::time::timeout(PROMPT, async {
            while let Some(note) = self.rx.recv().await {
                self.seen.push(note);
                if f(self.seen.last().expect("just pushed")) {
                    return Some(self.seen.len() - 1);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(i)) => i,
            Ok(None) => panic!("the demo agent stopped before {what}"),
            Err(_) => panic!(
                "timed out waiting for {what}; the agent noted {:?}",
                self.tail()
            ),
        }
    }

    fn tail(&self) -> &[AgentNote] {
        &self.seen[self.seen.len().saturating_sub(20)..]
    }
}

fn received(id: u32, t: MsgType) -> impl Fn(&AgentNote) -> bool {
    move |n| matches!(n, AgentNote::Received { id: i, t: Some(x), .. } if *i == id && *x == t)
}

fn exited(id: u32, code: i32) -> impl Fn(&AgentNote) -> bool {
    move |n| matches!(n, AgentNote::Exited { id: i, code: c } if *i == id && *c == code)
}

// -------------------------------------------------------------------------------------------------
// Session helpers
// -------------------------------------------------------------------------------------------------

fn request(cmd: &str, args: &[&str]) -> ExecRequest {
    ExecRequest {
        cmd: cmd.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: vec![],
        cwd: None,
        user: None,
        tty: false,
        rows: 24,
        cols: 80,
        rlimits: vec![],
    }
}

async fn next_event<R: Events>(rx: &mut R) -> Ev {
    let ev = tokio::time::timeout(PROMPT, rx.next()).await;
    ev.expect("an event in time")
        .expect("the session's stream is open")
}

/// Waits for `core.exec.started` (the SDK sends stdin only after it).
async fn started<R: Events>(rx: &mut R) {
    match next_event(rx).await {
        Ev::Started => {}
        other => panic!("expected exec.started, got {other:?}"),
    }
}

/// Collects the session's events until it ends.
async fn finish<R: Events>(rx: &mut R, seen: &mut Seen) {
    while !seen.take(next_event(rx).await) {}
}

/// Sends up to `total` bytes of stdin as the SDK does under exec limits:
/// chunks of at most `stdin_chunk_size`, never more than `input_limit`
/// unacknowledged (`core.exec.stdin.ack`). With `stop_when_full`, returns
/// once the limit leaves no room for another chunk (the process stopped
/// taking its stdin); otherwise waits for acks. Returns the bytes sent.
async fn feed<C: Sdk>(
    c: &C,
    id: u32,
    rx: &mut C::Rx,
    seen: &mut Seen,
    total: u64,
    stop_when_full: bool,
) -> u64 {
    let limits = c.exec_limits().expect("a current ready has exec_limits");
    let (chunk, limit) = (
        u64::from(limits.stdin_chunk_size),
        u64::from(limits.input_limit),
    );
    let mut sent = 0u64;
    loop {
        while let Some(ev) = rx.try_next() {
            assert!(
                !seen.take(ev),
                "the session ended while fed: {:?}",
                seen.end
            );
        }
        if sent >= total {
            return sent;
        }
        let n = chunk.min(total - sent);
        if sent + n - seen.acked > limit {
            if stop_when_full {
                return sent;
            }
            let ev = next_event(rx).await;
            assert!(
                !seen.take(ev),
                "the session ended while fed: {:?}",
                seen.end
            );
            continue;
        }
        let data = vec![b'x'; usize::try_from(n).expect("a chunk")];
        c.stdin(id, &data).await.expect("stdin written");
        sent += n;
    }
}

// -------------------------------------------------------------------------------------------------
// Scenarios, each run with both clients
// -------------------------------------------------------------------------------------------------

/// stdin in, stdout and stderr out, the exit code; the first client's
/// first id is the start of its range (1 for the first slot in every form).
async fn exec_round_trip<C: Sdk>(c: &C, current: bool) {
    let script = "read x; echo \"out $x\"; echo err >&2; exit 7";
    let (id, mut rx) = c.exec(&request("sh", &["-c", script])).await;
    assert_eq!(id, 1, "the first id of the first slot");
    started(&mut rx).await;
    c.stdin(id, b"hi\n").await.expect("stdin");
    c.stdin(id, b"").await.expect("eof");
    let mut seen = Seen::default();
    finish(&mut rx, &mut seen).await;
    assert_eq!(seen.end, Some(Ev::Exited(7)));
    assert_eq!(seen.stdout, b"out hi\n");
    assert_eq!(seen.stderr, b"err\n");
    if current {
        assert_eq!(
            seen.acked, 3,
            "core.exec.stdin.ack counted what was written"
        );
    }
}

async fn ping_round_trip<C: Sdk>() {
    let mut relay = Relay::current().await;
    let c: C = relay.connect().await;
    assert_eq!(c.ping().await.as_deref(), Ok("core.pong"));
    assert_eq!(
        c.ping().await.as_deref(),
        Ok("core.pong"),
        "again, on a new id"
    );
    relay
        .notes
        .until("the first ping", received(1, MsgType::Ping))
        .await;
    relay
        .notes
        .until("the second ping", received(2, MsgType::Ping))
        .await;
    c.close().await;
    relay.stop().await;
}

/// 128 clients at once, each answered on its own range; the 129th is
/// accepted and closed (its handshake fails with EOF); a slot is handed out
/// again once its client left and its killed process ended.
async fn all_slots_and_one_refused<C: Sdk>() {
    let relay = Relay::current().await;
    let mut clients: Vec<C> = Vec::new();
    for _ in 0..128 {
        clients.push(relay.connect().await);
    }
    relay
        .wait_counters("128 live clients", |c| c.live_clients == 128)
        .await;
    for c in &clients {
        assert_eq!(c.ping().await.as_deref(), Ok("core.pong"));
    }
    let refused = C::connect(&relay.sock).await;
    let err = refused.err().expect("the 129th client is refused");
    let eof = err.to_lowercase();
    assert!(
        eof.contains("eof") || eof.contains("closed") || eof.contains("end of file"),
        "the handshake fails at end of file: {err}"
    );
    relay
        .wait_counters("one refusal", |c| c.refused_clients == 1)
        .await;
    // The last one leaves with a process running (see
    // core_current_found.rs: a client that leaves with nothing open leaves
    // a stale fence on its slot).
    let last = clients.pop().expect("a client");
    let (_, mut rx) = last.exec(&request("sleep", &["600"])).await;
    started(&mut rx).await;
    last.close().await;
    relay
        .wait_counters("the slot freed", |c| {
            c.live_clients == 127 && c.live_sessions == 0
        })
        .await;
    let again: C = relay.connect().await;
    assert_eq!(again.ping().await.as_deref(), Ok("core.pong"));
    for c in clients {
        c.close().await;
    }
    again.close().await;
    relay.stop().await;
}

/// A client that leaves with an exec running: the guest reads one SIGKILL
/// for it, then the disconnect notice for the client's range, and the
/// process exits 137.
async fn departure_kill_then_notice<C: Sdk>() {
    let mut relay = Relay::current().await;
    let c: C = relay.connect().await;
    let (id, mut rx) = c.exec(&request("sleep", &["600"])).await;
    started(&mut rx).await;
    c.close().await;
    let notes = &mut relay.notes;
    let kill = notes
        .until("the kill", received(id, MsgType::ExecSignal))
        .await;
    let notice = notes
        .until("the notice", received(0, MsgType::RelayClientDisconnected))
        .await;
    assert!(
        kill < notice,
        "the kill before the notice: {:?}",
        notes.tail()
    );
    let gone = notes
        .until("the range gone", |n| {
            matches!(n, AgentNote::RangeGone { id_start: 1, id_end_exclusive, .. }
                if *id_end_exclusive == u32::MAX / 128)
        })
        .await;
    assert!(notice < gone);
    notes.until("exit 137", exited(id, 137)).await;
    let c = relay
        .wait_counters("the kill and the notice sent", |c| {
            c.kills_sent == 1 && c.notices_sent == 1
        })
        .await;
    assert_eq!(c.protocol_violations, 0);
    relay.stop().await;
}

/// A process that never reads its stdin, fed as the SDK feeds it until the
/// exec limit leaves no room: another client's stdin still flows, and
/// signal 2 (Ctrl-C) still reaches the process.
async fn sigint_reaches_a_flooded_process<C: Sdk>() {
    let limits = ExecLimits {
        input_limit: 1 << 20,
        stdin_chunk_size: 64 << 10,
        ..ExecLimits::default()
    };
    let ours = agent_relay::wire::payload::ExecLimits {
        input_limit: limits.input_limit,
        stdin_chunk_size: limits.stdin_chunk_size,
        ..Default::default()
    };
    let agent = DemoAgent::new()
        .generation(Generation::Current)
        .exec_limits(ours);
    let relay = Relay::start(Config::default(), agent).await;
    let a: C = relay.connect().await;
    let script = "trap 'echo interrupted; exit 42' INT; while :; do sleep 0.05; done";
    let (id, mut rx) = a.exec(&request("sh", &["-c", script])).await;
    started(&mut rx).await;
    let mut seen = Seen::default();
    let sent = feed(&a, id, &mut rx, &mut seen, u64::MAX, true).await;
    assert!(
        sent >= 1 << 20,
        "flooded: {sent} bytes sent, {} taken",
        seen.acked
    );

    let b: C = relay.connect().await;
    let (bid, mut brx) = b.exec(&request("wc", &["-c"])).await;
    started(&mut brx).await;
    let mut bseen = Seen::default();
    feed(&b, bid, &mut brx, &mut bseen, 3 << 20, false).await;
    b.stdin(bid, b"").await.expect("eof");
    finish(&mut brx, &mut bseen).await;
    assert_eq!(bseen.end, Some(Ev::Exited(0)));
    assert_eq!(String::from_utf8_lossy(&bseen.stdout).trim(), "3145728");

    a.signal(id, 2).await.expect("signal sent");
    finish(&mut rx, &mut seen).await;
    assert_eq!(seen.end, Some(Ev::Exited(42)), "the trap ran");
    assert_eq!(seen.stdout, b"interrupted\n");
    a.close().await;
    b.close().await;
    relay.stop().await;
}

/// A client floods stdin without waiting for acks into a process that never
/// reads it: it holds no more than its fair share of the data credit, so
/// another client's stdin keeps flowing; when it leaves, the departure kill
/// passes its data still waiting and reaches the process.
async fn departure_kill_reaches_a_flooded_process<C: Sdk>() {
    let mut relay = Relay::current().await;
    let a: C = relay.connect().await;
    let (aid, mut arx) = a.exec(&request("sleep", &["600"])).await;
    started(&mut arx).await;
    let flood = async {
        let data = vec![b'y'; 16 << 10];
        while a.stdin(aid, &data).await.is_ok() {}
    };
    let other = async {
        relay
            .wait_counters("the flooder holding its share of the data credit", |c| {
                c.used_data_frames >= 100
            })
            .await;
        let b: C = relay.connect().await;
        let (bid, mut brx) = b.exec(&request("wc", &["-c"])).await;
        started(&mut brx).await;
        let mut bseen = Seen::default();
        feed(&b, bid, &mut brx, &mut bseen, 4 << 20, false).await;
        b.stdin(bid, b"").await.expect("eof");
        finish(&mut brx, &mut bseen).await;
        b.close().await;
        bseen
    };
    let bseen = tokio::select! {
        () = flood => panic!("the flood ended before the other client did"),
        seen = other => seen,
    };
    assert_eq!(bseen.end, Some(Ev::Exited(0)));
    assert_eq!(String::from_utf8_lossy(&bseen.stdout).trim(), "4194304");
    a.close().await;
    let notes = &mut relay.notes;
    let kill = notes
        .until("the kill", received(aid, MsgType::ExecSignal))
        .await;
    let notice = notes
        .until("the notice", received(0, MsgType::RelayClientDisconnected))
        .await;
    assert!(kill < notice);
    notes.until("exit 137", exited(aid, 137)).await;
    let c = relay
        .wait_counters("the notices sent", |c| c.notices_sent == 2)
        .await;
    assert!(c.departed_frames_dropped >= 1, "{c:?}");
    assert_eq!(c.protocol_violations, 0);
    relay.stop().await;
}

/// The 0.7.13 clients against a `v = 1` guest (the legacy demo agent): an
/// exec round trip; a ping is refused by the client itself (the guest's
/// generation has none), and the relay sees no violation.
async fn legacy_guest<C: Sdk>(config: Config, offset_form: bool) {
    let relay = Relay::start(config, DemoAgent::new()).await;
    let c: C = relay.connect().await;
    assert_eq!(
        c.legacy(),
        offset_form,
        "the client reads the prologue form as the relay wrote it"
    );
    assert!(c.ping().await.is_err(), "no core.ping at generation 1");
    exec_round_trip(&c, false).await;
    c.close().await;
    let counters = relay.handle.counters();
    assert_eq!(counters.generation, 1);
    assert_eq!(counters.protocol_violations, 0);
    relay.stop().await;
}

async fn current_exec<C: Sdk>() {
    let relay = Relay::current().await;
    let c: C = relay.connect().await;
    assert!(!c.legacy());
    assert_eq!(c.exec_limits(), Some(ExecLimits::default()));
    exec_round_trip(&c, true).await;
    c.close().await;
    assert_eq!(relay.handle.counters().generation, 10);
    relay.stop().await;
}

macro_rules! both_clients {
    ($($name:ident => $body:expr;)*) => {
        mod optimized {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    type C = OptimizedAgentClient;
                    $body
                }
            )*
        }
        mod generic {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    type C = AgentClient;
                    $body
                }
            )*
        }
    };
}

both_clients! {
    current_exec_stdin_stdout_stderr_and_exit_code => current_exec::<C>().await;
    current_ping_round_trip => ping_round_trip::<C>().await;
    current_128_clients_at_once_and_the_129th_refused => all_slots_and_one_refused::<C>().await;
    current_dropped_client_exec_killed_then_the_notice => departure_kill_then_notice::<C>().await;
    current_sigint_reaches_a_process_that_never_reads_its_flooded_stdin =>
        sigint_reaches_a_flooded_process::<C>().await;
    current_departure_kill_reaches_a_flooded_process_while_others_flow =>
        departure_kill_reaches_a_flooded_process::<C>().await;
    legacy_guest_offset_prologue => legacy_guest::<C>(Config::legacy(), true).await;
    legacy_guest_bounds_prologue => legacy_guest::<C>(Config::bounds_handshake(), false).await;
}
