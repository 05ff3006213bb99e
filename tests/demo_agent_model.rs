//! The demo agent as a model of microsandbox-agentd 0.7.13, driven directly
//! over an in-memory duplex with frames from `testkit::frames`: range
//! leases (records, notices, acks), the frames that end agentd's loop, the
//! per-session output window, and no process left behind, neither when its
//! session ends nor when the agent stops.

use std::io;
use std::time::Duration;

use agent_relay::core::IdRange;
use agent_relay::demo_agent::{DemoAgent, Generation};
use agent_relay::testkit::frames;
use agent_relay::wire::lease::{
    Incarnation, LEASE_RECORD_LEN, LeaseEvent, LeaseRecord, has_lease_magic,
};
use agent_relay::wire::payload::{
    Consumed, Data, ExecExited, ExecLimits, ExecRequest, InitAck, ReadyFacts,
    WorkloadTransportCredit, decode_payload,
};
use agent_relay::wire::{CURRENT_VERSION, FLAG_BULK, LEGACY_VERSION, MsgType, peek_envelope};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent must stay quiet for "nothing more comes".
const QUIET: Duration = Duration::from_millis(300);
const V: u8 = CURRENT_VERSION;
const STEP: u32 = u32::MAX / 128;

/// Slot `s`'s canonical range.
fn slot(s: u32) -> IdRange {
    IdRange {
        start: s * STEP + 1,
        end: (s + 1) * STEP,
    }
}

/// What the agent wrote: a frame, or a lease record.
#[derive(Debug)]
enum Item {
    Frame {
        id: u32,
        t: MsgType,
        payload: Vec<u8>,
    },
    Lease(LeaseRecord),
}

impl Item {
    fn id(&self) -> Option<u32> {
        match self {
            Item::Frame { id, .. } => Some(*id),
            Item::Lease(_) => None,
        }
    }

    fn t(&self) -> Option<MsgType> {
        match self {
            Item::Frame { t, .. } => Some(*t),
            Item::Lease(_) => None,
        }
    }

    fn payload<T: serde::de::DeserializeOwned>(&self) -> T {
        match self {
            Item::Frame { payload, t, .. } => decode_payload(payload)
                .unwrap_or_else(|e| panic!("payload of {t} does not decode: {e}")),
            Item::Lease(r) => panic!("a lease record, not a frame: {r:?}"),
        }
    }
}

struct Host {
    io: DuplexStream,
    buf: Vec<u8>,
    agent: JoinHandle<io::Result<()>>,
}

impl Host {
    /// Starts a current-generation `agent`, answers its init, and returns
    /// the host with the ready's facts.
    async fn start(agent: DemoAgent) -> (Host, ReadyFacts) {
        let (host, guest) = tokio::io::duplex(1 << 20);
        let agent = tokio::spawn(agent.generation(Generation::Current).run(guest));
        let mut host = Host {
            io: host,
            buf: Vec::new(),
            agent,
        };
        let resolved = host.next_any().await;
        assert_eq!(resolved.t(), Some(MsgType::InitResolved));
        host.send(&frames::frame(V, MsgType::InitAck, 0, &InitAck::default()))
            .await;
        let ready = host.next_any().await;
        assert_eq!(ready.t(), Some(MsgType::Ready));
        let facts: ReadyFacts = ready.payload();
        (host, facts)
    }

    async fn current() -> Host {
        Host::start(DemoAgent::new()).await.0
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write to the agent");
    }

    async fn exec(&mut self, v: u8, id: u32, cmd: &str, args: &[&str]) {
        let req = ExecRequest::new(cmd).args(args.iter().copied());
        self.send(&frames::frame(v, MsgType::ExecRequest, id, &req))
            .await;
    }

    async fn lease(&mut self, range: IdRange, incarnation: Incarnation) {
        let record = frames::lease_record(LeaseEvent::Connected, range, incarnation);
        self.send(&record).await;
    }

    async fn notice(&mut self, range: IdRange, incarnation: Option<Incarnation>) {
        let notice = frames::client_disconnected_leased(V, range, incarnation);
        self.send(&notice).await;
    }

    /// The next item written, whatever it is; `None` at the end of the stream.
    async fn read_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.parse() {
                return Some(item);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.io.read(&mut chunk).await.expect("read from the agent");
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn parse(&mut self) -> Option<Item> {
        if has_lease_magic(&self.buf) {
            if self.buf.len() < LEASE_RECORD_LEN {
                return None;
            }
            let record = LeaseRecord::decode(&self.buf[..LEASE_RECORD_LEN]).expect("a record");
            self.buf.drain(..LEASE_RECORD_LEN);
            return Some(Item::Lease(record));
        }
        let len = u32::from_be_bytes(self.buf.get(..4)?.try_into().ok()?) as usize;
        if self.buf.len() < 4 + len {
            return None;
        }
        let frame: Vec<u8> = self.buf.drain(..4 + len).collect();
        let id = u32::from_be_bytes(frame[4..8].try_into().expect("an id"));
        let env = peek_envelope(&frame[9..]).expect("the agent's envelope decodes");
        assert_eq!(frame[8], env.t.flags(), "flags of {}", env.t);
        Some(Item::Frame {
            id,
            t: env.t,
            payload: env.payload.into_owned(),
        })
    }

    async fn next_any(&mut self) -> Item {
        tokio::time::timeout(TIMEOUT, self.read_item())
            .await
            .expect("timed out waiting for the agent")
            .expect("the agent closed the stream")
    }

    /// The next item that is not a credit grant.
    async fn next(&mut self) -> Item {
        loop {
            let item = self.next_any().await;
            if item.t() != Some(MsgType::WorkloadTransportCredit) {
                return item;
            }
        }
    }

    /// The next item that is not a credit grant, if one comes within
    /// `quiet`.
    async fn next_within(&mut self, quiet: Duration) -> Option<Item> {
        tokio::time::timeout(quiet, self.next()).await.ok()
    }

    /// Items up to and including the first for which `f` holds.
    async fn until(&mut self, f: impl Fn(&Item) -> bool) -> Vec<Item> {
        let mut seen = Vec::new();
        loop {
            let item = self.next().await;
            let done = f(&item);
            seen.push(item);
            if done {
                return seen;
            }
        }
    }

    /// Waits for the agent's run to end (the stream stays open).
    async fn ended(self) -> io::Result<()> {
        let Host { io, agent, .. } = self;
        let result = tokio::time::timeout(TIMEOUT, agent)
            .await
            .expect("the agent's loop ends")
            .expect("the agent task");
        drop(io);
        result
    }
}

/// Pids whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == want) {
            found.push(pid);
        }
    }
    found
}

/// How many processes run `argv`, looking a few times (200 ms at most) until
/// there are `want`: a process the agent just reported started can take a
/// moment to show its command line in /proc on a busy machine.
async fn seen(argv: &[&str], want: usize) -> usize {
    let mut n = 0;
    for _ in 0..10 {
        n = processes(argv).len();
        if n == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n
}

/// Waits (a little) until no process runs `argv`.
async fn gone(argv: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let left = processes(argv);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{argv:?} still running: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------------------------------------
// Leases
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn demo_agent_model_ready_offers_leases_and_exec_limits() {
    let (host, facts) = Host::start(DemoAgent::new()).await;
    assert_eq!(facts.relay_lease.map(|l| l.max_format), Some(1));
    assert_eq!(facts.exec_limits, Some(ExecLimits::default()));
    assert_eq!(facts.workload_transport_barrier_version, Some(2));
    drop(host.io);
    host.agent.await.expect("task").expect("a clean end");
}

/// A leased slot's notice with its incarnation: the session is killed
/// (its whole group) and deleted, no `exited` ever comes, the agent answers
/// with the ack, and nothing of that owner follows the ack although it was
/// writing output as fast as it could.
#[tokio::test]
async fn demo_agent_model_notice_with_incarnation_kills_deletes_and_acks() {
    let mut host = Host::current().await;
    let inc = [7; 16];
    host.lease(slot(0), inc).await;
    // The record is charged 41 bytes and one frame of control credit.
    let grant = loop {
        let item = host.next_any().await;
        if item.t() == Some(MsgType::WorkloadTransportCredit) {
            break item.payload::<WorkloadTransportCredit>();
        }
    };
    assert_eq!(
        (grant.control_bytes, grant.control_frames),
        ((8 << 20) + 41, 257),
        "the record's control credit, granted back"
    );
    let script = "sleep 58.25 >/dev/null 2>&1 </dev/null & while :; do echo tick; done";
    host.exec(V, 5, "sh", &["-c", script]).await;
    host.until(|i| i.t() == Some(MsgType::ExecStdout)).await;
    assert_eq!(seen(&["sleep", "58.25"], 1).await, 1);
    host.notice(slot(0), Some(inc)).await;
    let before = host.until(|i| matches!(i, Item::Lease(_))).await;
    let Some(Item::Lease(ack)) = before.last() else {
        unreachable!()
    };
    assert_eq!(
        *ack,
        LeaseRecord {
            event: LeaseEvent::DisconnectedAck,
            id_start: 1,
            id_end: STEP,
            incarnation: inc,
        }
    );
    assert!(
        before.iter().all(|i| i.t() != Some(MsgType::ExecExited)),
        "no exit for a deleted session"
    );
    let after = host.next_within(QUIET).await;
    assert!(after.is_none(), "nothing after the ack: {after:?}");
    gone(&["sleep", "58.25"]).await;
    // The slot can be leased again, by a new owner.
    host.lease(slot(0), [8; 16]).await;
    host.send(&frames::empty(V, MsgType::Ping, 9)).await;
    assert_eq!(host.next().await.t(), Some(MsgType::Pong));
    drop(host.io);
    host.agent.await.expect("task").expect("a clean end");
}

/// A notice naming an incarnation the slot does not hold changes nothing
/// and is not acknowledged; the right one then is.
#[tokio::test]
async fn demo_agent_model_stale_notice_is_ignored_without_ack() {
    let mut host = Host::current().await;
    host.lease(slot(3), [3; 16]).await;
    let id = slot(3).start + 10;
    host.exec(V, id, "sleep", &["58.5"]).await;
    assert_eq!(host.next().await.t(), Some(MsgType::ExecStarted));
    host.notice(slot(3), Some([4; 16])).await;
    // A ping behind it: its pong comes after whatever the notice caused.
    host.send(&frames::empty(V, MsgType::Ping, 7)).await;
    let pong = host.next().await;
    assert_eq!((pong.t(), pong.id()), (Some(MsgType::Pong), Some(7)));
    assert_eq!(seen(&["sleep", "58.5"], 1).await, 1, "still running");
    host.notice(slot(3), Some([3; 16])).await;
    assert!(matches!(host.next().await, Item::Lease(r) if r.incarnation == [3; 16]));
    gone(&["sleep", "58.5"]).await;
    let after = host.next_within(QUIET).await;
    assert!(after.is_none(), "no exit after the ack: {after:?}");
    drop(host.io);
    host.agent.await.expect("task").expect("a clean end");
}

/// Unleased (no record for the slot, no incarnation in the notice): the
/// sessions are killed and deleted without an exit, and no ack comes.
#[tokio::test]
async fn demo_agent_model_unleased_notice_kills_without_exit_or_ack() {
    let mut host = Host::current().await;
    let id = slot(1).start;
    host.exec(V, id, "sleep", &["58.75"]).await;
    assert_eq!(host.next().await.t(), Some(MsgType::ExecStarted));
    host.notice(slot(1), None).await;
    gone(&["sleep", "58.75"]).await;
    host.send(&frames::empty(V, MsgType::Ping, 7)).await;
    let next = host.next().await;
    assert_eq!(next.t(), Some(MsgType::Pong), "no exit, no ack: {next:?}");
    let after = host.next_within(QUIET).await;
    assert!(after.is_none(), "nothing else: {after:?}");
    drop(host.io);
    host.agent.await.expect("task").expect("a clean end");
}

// ------------------------------------------------------------------------------------------------
// What ends agentd's loop
// ------------------------------------------------------------------------------------------------

/// An envelope body `{k: v, ...}` from CBOR items written by hand.
fn body(items: &[&[u8]]) -> Vec<u8> {
    let mut b = vec![0xa0 | u8::try_from(items.len() / 2).expect("a small map")];
    for item in items {
        b.extend_from_slice(item);
    }
    b
}

const K_V: &[u8] = b"\x61v";
const K_T: &[u8] = b"\x61t";
const K_P: &[u8] = b"\x61p";
const PING: &[u8] = b"\x69core.ping";
const P_EMPTY: &[u8] = b"\x41\xa0";

fn record_bytes(event: u8, range: IdRange, incarnation: Incarnation) -> Vec<u8> {
    let mut r = frames::lease_record(LeaseEvent::Connected, range, incarnation).to_vec();
    r[14] = event;
    r
}

/// Inputs that end agentd's loop, each with what the error must name.
fn fatal_inputs() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let ping = |b: Vec<u8>| frames::body_frame(7, 0, &b).to_vec();
    let mut bad_reserved = frames::lease_record(LeaseEvent::Connected, slot(0), [1; 16]).to_vec();
    bad_reserved[16] = 1;
    let signal_v4 = frames::raw(4, MsgType::ExecSignal, 5, 0, &[0xa0]).to_vec();
    let leased_then = |second: Vec<u8>| {
        let mut b = frames::lease_record(LeaseEvent::Connected, slot(2), [2; 16]).to_vec();
        b.extend_from_slice(&second);
        b
    };
    vec![
        (
            "unknown type",
            frames::named(V, "core.bogus.type", 7, 0, &[0xa0]).to_vec(),
            "unknown message type",
        ),
        ("no v", ping(body(&[K_T, PING, K_P, P_EMPTY])), "has no `v`"),
        (
            "v twice",
            ping(body(&[K_V, b"\x0a", K_V, b"\x0a", K_T, PING, K_P, P_EMPTY])),
            "`v` more than once",
        ),
        (
            "v as text",
            ping(body(&[K_V, b"\x62\x31\x30", K_T, PING, K_P, P_EMPTY])),
            "`v` is not",
        ),
        (
            "v of 256",
            ping(body(&[K_V, b"\x19\x01\x00", K_T, PING, K_P, P_EMPTY])),
            "`v` is not",
        ),
        (
            "no t",
            ping(body(&[K_V, b"\x0a", K_P, P_EMPTY])),
            "decode frame",
        ),
        (
            "t twice",
            ping(body(&[K_V, b"\x0a", K_T, PING, K_T, PING, K_P, P_EMPTY])),
            "decode frame",
        ),
        (
            "p an integer",
            ping(body(&[K_V, b"\x0a", K_T, PING, K_P, b"\x01"])),
            "`p` is not",
        ),
        (
            "p twice",
            ping(body(&[K_V, b"\x0a", K_T, PING, K_P, P_EMPTY, K_P, P_EMPTY])),
            "`p` more than once",
        ),
        (
            "an empty body",
            frames::body_frame(0, 0x04, &[]).to_vec(),
            "no body",
        ),
        (
            "BULK with another flag",
            frames::with_flags(&frames::bulk(5, 1, 1, 0, b"x"), FLAG_BULK | 1).to_vec(),
            "bulk flag cannot be combined",
        ),
        (
            "a bulk record of kind 3",
            frames::bulk(5, 3, 1, 0, b"x").to_vec(),
            "invalid bulk frame",
        ),
        (
            "a lease record with reserved bits",
            bad_reserved,
            "malformed relay client lease",
        ),
        (
            "a lease record of event 2",
            record_bytes(2, slot(0), [1; 16]),
            "malformed relay client lease",
        ),
        (
            "a lease record for a non-canonical range",
            frames::lease_record(
                LeaseEvent::Connected,
                IdRange {
                    start: 2,
                    end: STEP,
                },
                [1; 16],
            )
            .to_vec(),
            "invalid relay client range",
        ),
        (
            "a zero incarnation",
            frames::lease_record(LeaseEvent::Connected, slot(0), [0; 16]).to_vec(),
            "cannot be zero",
        ),
        (
            "a slot reused before its ack",
            leased_then(frames::lease_record(LeaseEvent::Connected, slot(2), [9; 16]).to_vec()),
            "was replaced before acknowledged disconnect",
        ),
        (
            "a notice without the incarnation of a leased slot",
            leased_then(frames::client_disconnected(V, slot(2)).to_vec()),
            "omitted its incarnation",
        ),
        (
            "a notice for a non-canonical range",
            frames::client_disconnected(V, IdRange { start: 1, end: 5 }).to_vec(),
            "invalid relay client range",
        ),
        (
            "an undecodable payload from v 4",
            signal_v4,
            "cannot send core.error to protocol generation 4",
        ),
    ]
}

#[tokio::test]
async fn demo_agent_model_frames_agentd_cannot_decode_end_the_loop() {
    for (what, input, names) in fatal_inputs() {
        let mut host = Host::current().await;
        host.send(&input).await;
        let err = host
            .ended()
            .await
            .expect_err(&format!("{what}: the loop ends with an error"));
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        let text = err.to_string();
        assert!(
            text.starts_with("agent loop error: ") && text.contains(names),
            "{what}: {text:?} names {names:?}"
        );
    }
}

/// A sender of `v` 5 or more gets `core.error` for what it cannot have,
/// and the loop goes on.
#[tokio::test]
async fn demo_agent_model_refusals_a_current_sender_can_read_are_core_errors() {
    let mut host = Host::current().await;
    // A signal without its number.
    host.send(&frames::raw(V, MsgType::ExecSignal, 5, 0, &[0xa0]))
        .await;
    // An exec request with the wrong flags.
    let req = frames::frame(V, MsgType::ExecRequest, 6, &ExecRequest::new("true"));
    host.send(&frames::with_flags(&req, 0)).await;
    // An exec control frame over 4 KiB.
    let big = frames::raw(V, MsgType::ExecResize, 8, 0, &vec![0xa0; 5000]);
    host.send(&big).await;
    for (id, kind) in [
        (5, "invalid_payload"),
        (6, "invalid_flags"),
        (8, "invalid_payload"),
    ] {
        let item = host.next().await;
        assert_eq!((item.t(), item.id()), (Some(MsgType::CoreError), Some(id)));
        #[derive(serde::Deserialize)]
        struct E {
            kind: String,
            offending_type: Option<String>,
        }
        let e: E = item.payload();
        assert_eq!(e.kind, kind, "frame {id}");
        assert!(e.offending_type.is_some());
    }
    host.send(&frames::empty(V, MsgType::Ping, 9)).await;
    assert_eq!(host.next().await.t(), Some(MsgType::Pong));
    drop(host.io);
    host.agent.await.expect("task").expect("a clean end");
}

// ------------------------------------------------------------------------------------------------
// The output window
// ------------------------------------------------------------------------------------------------

const WINDOW: u32 = 64 << 10;

fn small_window() -> DemoAgent {
    DemoAgent::new().exec_limits(ExecLimits {
        output_limit: WINDOW,
        output_chunk_size: 16 << 10,
        ..ExecLimits::default()
    })
}

/// Output of session `id` taken until it ends, acknowledging only when the
/// agent went quiet; checks that the unacknowledged charge never exceeds
/// the window. Returns (bytes, times the agent stopped at the window).
async fn read_acking(host: &mut Host, id: u32) -> (usize, u32) {
    let (mut bytes, mut charged, mut acked, mut stops) = (0usize, 0u64, 0u64, 0u32);
    loop {
        let Some(item) = host.next_within(QUIET).await else {
            assert!(charged > acked, "quiet with nothing to acknowledge");
            stops += 1;
            acked = charged;
            let ack = frames::frame(V, MsgType::ExecOutputAck, id, &Consumed { consumed: acked });
            host.send(&ack).await;
            continue;
        };
        match item.t() {
            Some(MsgType::ExecStarted) => {}
            Some(MsgType::ExecStdout) => {
                let d: Data = item.payload();
                bytes += d.data.len();
                charged += d.data.len() as u64 + 256;
                assert!(
                    charged - acked <= u64::from(WINDOW),
                    "{} unacknowledged bytes exceed the window",
                    charged - acked
                );
            }
            Some(MsgType::ExecExited) => {
                assert_eq!(item.payload::<ExecExited>().code, 0);
                return (bytes, stops);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn demo_agent_model_output_stops_at_the_window_until_acknowledged() {
    let (mut host, _) = Host::start(small_window()).await;
    host.exec(V, 5, "head", &["-c", "300000", "/dev/zero"])
        .await;
    let (bytes, stops) = read_acking(&mut host, 5).await;
    assert_eq!(bytes, 300_000, "all of it, in the end");
    assert!(stops >= 4, "stopped at the window {stops} times");
    drop(host.io);
    host.agent.await.expect("task").expect("a clean end");
}

/// agentd applies exec limits to requests of `v` 10 on: an older client is
/// never paused; nor is any client with the window turned off.
#[tokio::test]
async fn demo_agent_model_output_of_an_older_client_is_not_held() {
    for (v, agent) in [
        (9, small_window()),
        (V, small_window().output_window(false)),
    ] {
        let (mut host, _) = Host::start(agent).await;
        host.exec(v, 5, "head", &["-c", "300000", "/dev/zero"])
            .await;
        let mut bytes = 0;
        loop {
            let item = host.next().await;
            match item.t() {
                Some(MsgType::ExecStdout) => bytes += item.payload::<Data>().data.len(),
                Some(MsgType::ExecExited) => break,
                _ => {}
            }
        }
        assert_eq!(bytes, 300_000, "v {v}");
        drop(host.io);
        host.agent.await.expect("task").expect("a clean end");
    }
}

/// With exits held as agentd holds them, `exited` waits for the last
/// acknowledgement; an acknowledgement past what was sent changes nothing.
#[tokio::test]
async fn demo_agent_model_exit_waits_for_the_last_acknowledgement() {
    let agent = DemoAgent::new().hold_exits_until_acknowledged(true);
    let (mut host, _) = Host::start(agent).await;
    host.exec(V, 5, "echo", &["hi"]).await;
    assert_eq!(host.next().await.t(), Some(MsgType::ExecStarted));
    let out = host.next().await;
    assert_eq!(out.payload::<Data>().data, b"hi\n");
    assert!(host.next_within(QUIET).await.is_none(), "held");
    let ack = |consumed| frames::frame(V, MsgType::ExecOutputAck, 5, &Consumed { consumed });
    host.send(&ack(1000)).await;
    assert!(host.next_within(QUIET).await.is_none(), "a forged ack");
    host.send(&ack(3 + 256)).await;
    let exited = host.next().await;
    assert_eq!(exited.t(), Some(MsgType::ExecExited));
    drop(host.io);
    host.agent.await.expect("task").expect("a clean end");
}

// ------------------------------------------------------------------------------------------------
// No process left behind
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn demo_agent_model_session_end_kills_its_process_group() {
    for generation in [Generation::Legacy, Generation::Current] {
        let (host_io, guest) = tokio::io::duplex(1 << 20);
        let agent = tokio::spawn(DemoAgent::new().generation(generation).run(guest));
        let mut host = Host {
            io: host_io,
            buf: Vec::new(),
            agent,
        };
        let v = if generation == Generation::Current {
            assert_eq!(host.next_any().await.t(), Some(MsgType::InitResolved));
            host.send(&frames::frame(V, MsgType::InitAck, 0, &InitAck::default()))
                .await;
            V
        } else {
            LEGACY_VERSION
        };
        assert_eq!(host.next_any().await.t(), Some(MsgType::Ready));
        let script = "sleep 57.25 >/dev/null 2>&1 </dev/null & echo spawned";
        host.exec(v, 5, "sh", &["-c", script]).await;
        let seen = host.until(|i| i.t() == Some(MsgType::ExecExited)).await;
        assert!(seen.iter().any(|i| i.t() == Some(MsgType::ExecStdout)));
        gone(&["sleep", "57.25"]).await;
        drop(host.io);
        host.agent.await.expect("task").expect("a clean end");
    }
}

/// The host closes the stream: every session goes, and `run` returns only
/// once their processes were reaped.
#[tokio::test]
async fn demo_agent_model_stream_end_kills_every_group() {
    let mut host = Host::current().await;
    let script = "sleep 57.5 >/dev/null 2>&1 </dev/null & exec sleep 57.5";
    host.exec(V, 5, "sh", &["-c", script]).await;
    assert_eq!(host.next().await.t(), Some(MsgType::ExecStarted));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen(&["sleep", "57.5"], 2).await, 2);
    let Host { io, agent, .. } = host;
    drop(io);
    tokio::time::timeout(TIMEOUT, agent)
        .await
        .expect("run ends")
        .expect("task")
        .expect("a clean end");
    gone(&["sleep", "57.5"]).await;
}

/// A legacy agent stalled on a process that never reads its stdin reads
/// nothing, so it cannot see the stream close; dropping it (its task
/// aborted) kills what it started.
#[tokio::test]
async fn demo_agent_model_dropped_agent_kills_every_group() {
    let (host_io, guest) = tokio::io::duplex(1 << 20);
    let agent = tokio::spawn(DemoAgent::new().run(guest));
    let mut host = Host {
        io: host_io,
        buf: Vec::new(),
        agent,
    };
    assert_eq!(host.next_any().await.t(), Some(MsgType::Ready));
    let script = "sleep 57.75 >/dev/null 2>&1 </dev/null & exec sleep 57.75";
    host.exec(LEGACY_VERSION, 5, "sh", &["-c", script]).await;
    assert_eq!(host.next().await.t(), Some(MsgType::ExecStarted));
    // More stdin than the agent holds for a process that does not read it.
    let chunk = frames::stdin(LEGACY_VERSION, 5, &[b'x'; 64 << 10]);
    for _ in 0..(agent_relay::demo_agent::STDIN_BOUND / (64 << 10)) + 4 {
        host.send(&chunk).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(seen(&["sleep", "57.75"], 2).await, 2);
    host.agent.abort();
    let aborted = host.agent.await;
    assert!(aborted.is_err_and(|e| e.is_cancelled()));
    gone(&["sleep", "57.75"]).await;
}
