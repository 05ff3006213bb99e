//! Compatibility with the current generation's reference codec,
//! microsandbox-protocol 0.7.13 (a dev-dependency, renamed `msp7`): our
//! message table agrees with the crate's on every type, and every frame the
//! relay builds toward a current guest (or toward a client, for the exec
//! limit) decodes with the crate, with the fields expected. The relay is
//! driven directly (`agent_relay::core::Relay`), no sockets.

mod common;

use common::{to_client, to_guest};

use std::collections::BTreeSet;

use agent_relay::core::{
    Action, ClientId, CloseReason, Config, CurrentSettings, Event, Relay, StartupFailure,
};
use agent_relay::wire::{CreditClass, MsgType};
use bytes::Bytes;
use msp7::codec::{decode_message_frame, encode_to_buf};
use msp7::core::{
    ClockSync, CoreError, CoreErrorKind, InitAck, InitResolved, Ready, RelayClientDisconnected,
    ResolvedUser,
};
use msp7::exec::{ExecFailed, ExecFailureKind, ExecLimits, ExecRequest, ExecSignal};
use msp7::message::{FLAG_TERMINAL, Message, MessageType};
use msp7::transport::{relay_client_id_range, validate_relay_client_range};
use strum::IntoEnumIterator;

// -------------------------------------------------------------------------------------------------
// The table
// -------------------------------------------------------------------------------------------------

#[test]
fn compat7_table_agrees_on_flags_credit_class_and_exec_control() {
    for t in MessageType::iter() {
        let ours = MsgType::from_wire(t.as_str().as_bytes())
            .unwrap_or_else(|| panic!("{} is missing from our table", t.as_str()));
        let info = ours.info();
        assert_eq!(info.flags, t.flags(), "{}: flags", t.as_str());
        let data = info.credit == CreditClass::Data;
        assert_eq!(
            data,
            t.uses_workload_data_credit(),
            "{}: credit class",
            t.as_str()
        );
        assert_eq!(
            info.exec_control,
            t.is_exec_control(),
            "{}: exec control",
            t.as_str()
        );
    }
}

#[test]
fn compat7_table_has_exactly_the_crates_names() {
    let theirs: BTreeSet<&str> = MessageType::iter().map(|t| t.as_str()).collect();
    let ours: BTreeSet<&str> = MsgType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(ours, theirs);
    assert_eq!(theirs.len(), 46);
}

/// Who may send each type, reviewed by hand against the crates' doc comments
/// and the upstream relay (microsandbox-runtime 0.7.13): `g` the guest, `c` a
/// client through the relay, `r` the relay itself, `rt` the runtime on its
/// own path. The fourth column says why for every type no client may send.
const SENDERS: &[(&str, &str, &str)] = &[
    (
        "core.ready",
        "g",
        "the guest's start; the relay caches it and serves it",
    ),
    ("core.shutdown", "c rt", ""),
    ("core.exec.request", "c", ""),
    ("core.exec.started", "g", "guest output"),
    ("core.exec.stdin", "c", ""),
    ("core.exec.stdout", "g", "guest output"),
    ("core.exec.stderr", "g", "guest output"),
    ("core.exec.exited", "g", "guest output"),
    (
        "core.exec.failed",
        "g r",
        "guest output; the relay builds one for a request over the exec limit",
    ),
    ("core.exec.resize", "c", ""),
    ("core.exec.signal", "c r", ""),
    ("core.fs.request", "c", ""),
    ("core.fs.response", "g", "guest output"),
    ("core.fs.data", "g c", ""),
    (
        "core.init.resolved",
        "g",
        "before ready, answered by the relay",
    ),
    (
        "core.init.ack",
        "r",
        "relay only: a forged one would end the guest's init wait for everybody",
    ),
    (
        "core.relay.client.disconnected",
        "r",
        "relay only: upstream lets a client forge it against another client's range, \
         which makes agentd drop that client's fs and tcp state",
    ),
    (
        "core.clock.sync",
        "r",
        "relay only: a client must not set the sandbox's wall clock",
    ),
    ("core.ping", "c", ""),
    ("core.pong", "g", "guest reply"),
    ("core.touch", "c", ""),
    ("core.touched", "g", "guest reply"),
    (
        "core.workload.freeze",
        "rt",
        "runtime only, on the workload-control id u32::MAX outside every client range",
    ),
    ("core.workload.frozen", "g", "guest reply on u32::MAX"),
    (
        "core.workload.thaw",
        "rt",
        "runtime only, on the workload-control id u32::MAX",
    ),
    ("core.workload.thawed", "g", "guest reply on u32::MAX"),
    (
        "core.workload.transport.credit",
        "g",
        "the guest's input grants to the relay, on u32::MAX",
    ),
    ("core.root_disk.prepare", "c", ""),
    ("core.root_disk.grow", "c", ""),
    ("core.root_disk.state", "g", "guest reply"),
    ("core.error", "g", "guest reply"),
    ("core.bulk.accepted", "g", "guest reply"),
    ("core.bulk.credit", "g c", ""),
    ("core.bulk.finish", "g c", ""),
    ("core.bulk.cancel", "g c", ""),
    ("core.exec.stdin.error", "g", "guest output"),
    ("core.exec.output.ack", "c", ""),
    ("core.exec.stdin.ack", "g", "guest output"),
    ("core.tcp.connect", "c", ""),
    ("core.tcp.connected", "g", "guest reply"),
    ("core.tcp.data", "g c", ""),
    ("core.tcp.eof", "g c", ""),
    ("core.tcp.close", "c", ""),
    ("core.tcp.closed", "g", "guest reply"),
    ("core.tcp.failed", "g", "guest reply"),
    (
        "core.bootstrap",
        "rt",
        "runtime only: preloaded into the console before the agent starts, never from an SDK",
    ),
];

#[test]
fn compat7_senders_are_the_hand_reviewed_list() {
    let listed: BTreeSet<&str> = SENDERS.iter().map(|(n, _, _)| *n).collect();
    let theirs: BTreeSet<&str> = MessageType::iter().map(|t| t.as_str()).collect();
    assert_eq!(listed, theirs, "the list covers every 0.7.13 type once");
    assert_eq!(listed.len(), SENDERS.len(), "no name twice");
    for (name, who, why) in SENDERS {
        let t = MsgType::from_wire(name.as_bytes()).expect("known");
        let s = t.info().senders;
        let words: BTreeSet<&str> = who.split(' ').collect();
        let got = (s.guest, s.client, s.relay, s.runtime);
        let want = (
            words.contains("g"),
            words.contains("c"),
            words.contains("r"),
            words.contains("rt"),
        );
        assert_eq!(got, want, "{name}: (guest, client, relay, runtime)");
        assert_eq!(
            why.is_empty(),
            s.client,
            "{name}: a reason is stated exactly for the types no client may send"
        );
    }
}

// -------------------------------------------------------------------------------------------------
// A driver: every write is taken at once
// -------------------------------------------------------------------------------------------------

struct Drive {
    relay: Relay,
    now: u64,
}

impl Drive {
    fn new(cfg: Config) -> Drive {
        Drive {
            relay: Relay::new(cfg).checked(),
            now: 0,
        }
    }

    /// Feeds `ev`, then acknowledges every write until the relay is idle;
    /// returns every action on the way.
    fn ev(&mut self, ev: Event<'_>) -> Vec<Action> {
        common::settle(&mut self.relay, self.now, ev)
    }

    fn guest(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.ev(Event::GuestBytes(bytes))
    }

    fn client(&mut self, c: u64, bytes: &[u8]) -> Vec<Action> {
        self.ev(Event::ClientBytes(ClientId(c), bytes))
    }
}

fn handshake(acts: &[Action], c: u64) -> Option<Bytes> {
    acts.iter().find_map(|a| match a {
        Action::Handshake { client, bytes } if *client == ClientId(c) => Some(bytes.clone()),
        _ => None,
    })
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_to_buf(msg, &mut buf).expect("0.7.13 encodes");
    buf
}

fn message<T: serde::Serialize>(t: MessageType, id: u32, payload: &T) -> Vec<u8> {
    encode(&Message::with_payload(t, id, payload).expect("payload encodes"))
}

/// Decodes a whole frame with 0.7.13, checks its header and generation, and
/// returns its payload as `P`.
fn decoded<P: serde::de::DeserializeOwned>(frame: &[u8], t: MessageType, id: u32, flags: u8) -> P {
    let msg = decode_message_frame(frame).expect("0.7.13 decodes the frame");
    assert_eq!(msg.t, t);
    assert_eq!(
        (msg.id, msg.flags, msg.v),
        (id, flags, 10),
        "{}",
        t.as_str()
    );
    msg.payload::<P>().expect("0.7.13 decodes the payload")
}

fn limits(max_executions: u32) -> ExecLimits {
    ExecLimits {
        max_executions,
        ..ExecLimits::default()
    }
}

/// A `v = 10` ready as 0.7.13 encodes it, with the credit contract and exec
/// limits.
fn ready7(max_executions: u32) -> Vec<u8> {
    let ready = Ready {
        boot_time_ns: 5,
        init_time_ns: 6,
        ready_time_ns: 7,
        agent_version: "0.7.13".into(),
        workload_transport_barrier_version: Some(2),
        exec_limits: Some(limits(max_executions)),
        ..Ready::default()
    };
    message(MessageType::Ready, 0, &ready)
}

fn exec7(id: u32) -> Vec<u8> {
    let req = ExecRequest {
        cmd: "sleep".into(),
        args: vec!["60".into()],
        env: vec![],
        cwd: None,
        user: None,
        tty: false,
        rows: 24,
        cols: 80,
        rlimits: vec![],
    };
    message(MessageType::ExecRequest, id, &req)
}

// -------------------------------------------------------------------------------------------------
// Frames the relay builds
// -------------------------------------------------------------------------------------------------

#[test]
fn compat7_init_ack_decodes_with_0_7_13() {
    let mut d = Drive::new(Config::current());
    let resolved = InitResolved {
        default_user: ResolvedUser {
            uid: 1000,
            gid: 100,
        },
    };
    let acts = d.guest(&message(MessageType::InitResolved, 0, &resolved));
    let frames = to_guest(&acts);
    assert_eq!(frames.len(), 1, "{acts:?}");
    let ack: InitAck = decoded(&frames[0], MessageType::InitAck, 0, 0);
    assert!(!ack.failure);
    assert_eq!(
        &frames[0][9..],
        &message(MessageType::InitAck, 0, &InitAck::default())[9..]
    );
}

#[test]
fn compat7_init_failure_ack_decodes_and_the_start_fails() {
    let mut d = Drive::new(Config::current());
    let err = CoreError {
        kind: CoreErrorKind::InitializationFailed,
        message: "user alice not found".into(),
        offending_type: None,
        init_failure: None,
        workload_failure: None,
    };
    let acts = d.guest(&message(MessageType::CoreError, 0, &err));
    let frames = to_guest(&acts);
    assert_eq!(frames.len(), 1, "{acts:?}");
    let ack: InitAck = decoded(&frames[0], MessageType::InitAck, 0, 0);
    assert!(ack.failure);
    let failed = acts.iter().find_map(|a| match a {
        Action::StartupFailed(why) => Some(why.clone()),
        _ => None,
    });
    assert_eq!(
        failed,
        Some(StartupFailure::GuestInit {
            message: "user alice not found".into()
        })
    );
}

/// The relay's own frames of a session's life: the clock sync at ready, the
/// exec-limit refusal toward the client, the departure's SIGKILL and the
/// disconnect notice after it.
#[test]
fn compat7_clock_sync_exec_failed_kill_and_notice_decode_with_0_7_13() {
    let mut d = Drive::new(Config::current());
    let wall = 1_700_000_000_123_456_789u64;
    d.ev(Event::WallClock(wall));
    let acts = d.guest(&ready7(1));
    let sync = to_guest(&acts);
    assert_eq!(sync.len(), 1, "one clock sync at ready: {acts:?}");
    let s: ClockSync = decoded(&sync[0], MessageType::ClockSync, 0, 0);
    assert_eq!(s.unix_time_nanos, wall);

    let acts = d.ev(Event::ClientConnected(ClientId(1)));
    let (start, end) = relay_client_id_range(0).expect("slot 0");
    let hs = handshake(&acts, 1).expect("handshake");
    assert_eq!(&hs[..8], [start.to_be_bytes(), end.to_be_bytes()].concat());

    let acts = d.client(1, &exec7(start));
    assert_eq!(
        to_guest(&acts),
        vec![Bytes::from(exec7(start))],
        "forwarded whole"
    );
    // A second execution past `max_executions: 1`: answered by the relay.
    let acts = d.client(1, &exec7(start + 1));
    assert!(to_guest(&acts).is_empty(), "not forwarded: {acts:?}");
    let refused = to_client(&acts, 1);
    assert_eq!(refused.len(), 1, "{acts:?}");
    let f: ExecFailed = decoded(
        &refused[0],
        MessageType::ExecFailed,
        start + 1,
        FLAG_TERMINAL,
    );
    assert_eq!(f.kind, ExecFailureKind::ResourceLimit);
    assert_eq!(
        (
            f.errno,
            f.errno_name.as_deref(),
            f.message.as_str(),
            f.stage.as_deref()
        ),
        (
            None,
            None,
            "active execution limit reached",
            Some("execution_admission")
        )
    );

    let acts = d.ev(Event::ClientDisconnected(ClientId(1)));
    let frames = to_guest(&acts);
    assert_eq!(frames.len(), 2, "one kill, then the notice: {acts:?}");
    let kill: ExecSignal = decoded(&frames[0], MessageType::ExecSignal, start, 0);
    assert_eq!(kill.signal, 9);
    let n: RelayClientDisconnected =
        decoded(&frames[1], MessageType::RelayClientDisconnected, 0, 0);
    assert_eq!(
        (n.id_start, n.id_end_exclusive, n.incarnation),
        (start, end, None)
    );
    assert_eq!(
        validate_relay_client_range(n.id_start, n.id_end_exclusive),
        Some(0)
    );
}

// -------------------------------------------------------------------------------------------------
// The prologue and the ready frame
// -------------------------------------------------------------------------------------------------

/// 128 clients, half waiting from before ready (seated at ready in arrival
/// order), half after: each gets `relay_client_id_range(slot)` and the ready
/// frame; the 129th is refused.
#[test]
fn compat7_prologue_is_relay_client_id_range_for_all_128_slots() {
    let mut d = Drive::new(Config::current());
    let ready = ready7(128);
    let mut prologues = Vec::new();
    for c in 0..64 {
        let acts = d.ev(Event::ClientConnected(ClientId(c)));
        assert!(handshake(&acts, c).is_none(), "no handshake before ready");
    }
    let acts = d.guest(&ready);
    for c in 0..64 {
        prologues.push(handshake(&acts, c).expect("seated at ready"));
    }
    for c in 64..128 {
        let acts = d.ev(Event::ClientConnected(ClientId(c)));
        prologues.push(handshake(&acts, c).expect("handshake"));
    }
    for (slot, bytes) in prologues.iter().enumerate() {
        let (start, end) = relay_client_id_range(slot as u32).expect("a canonical slot");
        assert_eq!(&bytes[..4], start.to_be_bytes(), "slot {slot}");
        assert_eq!(&bytes[4..8], end.to_be_bytes(), "slot {slot}");
        assert_eq!(
            &bytes[8..],
            &ready[..],
            "slot {slot}: the ready frame, whole"
        );
    }
    assert_eq!(relay_client_id_range(128), None);
    let acts = d.ev(Event::ClientConnected(ClientId(128)));
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Refuse { client, .. } if *client == ClientId(128))),
        "the 129th is refused: {acts:?}"
    );
}

/// A ready as 0.7.13 encodes it, with the credit contract 2 and exec limits,
/// fed in odd chunks: accepted (the starting grants are in force) and served
/// byte for byte.
#[test]
fn compat7_ready_with_barrier_and_exec_limits_served_byte_for_byte() {
    let mut d = Drive::new(Config::default());
    let ready = ready7(7);
    for chunk in ready.chunks(3) {
        d.guest(chunk);
    }
    assert!(d.relay.ready_frame().is_some(), "accepted");
    assert_eq!(d.relay.ready_frame().map(|b| &b[..]), Some(&ready[..]));
    let c = d.relay.counters().clone();
    assert_eq!(c.generation, 10);
    assert_eq!(
        (c.credit_control_bytes, c.credit_control_frames),
        (8 << 20, 256)
    );
    assert_eq!((c.credit_data_bytes, c.credit_data_frames), (32 << 20, 256));
    let acts = d.ev(Event::ClientConnected(ClientId(9)));
    let hs = handshake(&acts, 9).expect("handshake");
    assert_eq!(&hs[8..], &ready[..]);
    let msg = decode_message_frame(&hs[8..]).expect("0.7.13 decodes what we serve");
    let served: Ready = msg.payload().expect("ready payload");
    assert_eq!(served.exec_limits, Some(limits(7)));
    assert_eq!(served.workload_transport_barrier_version, Some(2));
    assert_eq!(served.agent_version, "0.7.13");
}

/// Types no client may send, as 0.7.13 encodes them on an id of the
/// sender's range (flags the type's own): the sender is closed, and all
/// that reaches the guest is the relay's notice that its range is gone.
#[test]
fn compat7_types_clients_may_not_send_close_the_sender() {
    let (start, _) = relay_client_id_range(0).expect("slot 0");
    for t in MessageType::iter() {
        let ours = MsgType::from_wire(t.as_str().as_bytes()).expect("known");
        if ours.client_may_send() {
            continue;
        }
        let mut d = Drive::new(Config::current());
        d.guest(&ready7(4));
        d.ev(Event::ClientConnected(ClientId(1)));
        let frame = encode(&Message::new(t, start, vec![0xa0]));
        let acts = d.client(1, &frame);
        for f in to_guest(&acts) {
            let msg = decode_message_frame(&f).expect("decodes");
            assert_eq!(
                msg.t,
                MessageType::RelayClientDisconnected,
                "{}",
                t.as_str()
            );
        }
        let closed = acts.iter().any(|a| {
            matches!(a, Action::CloseClient { client, reason: CloseReason::Violation(_) }
                if *client == ClientId(1))
        });
        assert!(closed, "{}: {acts:?}", t.as_str());
    }
}

// -------------------------------------------------------------------------------------------------
// The bootstrap and range leases
// -------------------------------------------------------------------------------------------------

/// Every field of a guest bootstrap, as JSON a 0.7.13 runtime would write.
const FULL_BOOTSTRAP: &str = r#"{
  "init_failure_ack": true,
  "block_root": {"kind": "oci-erofs", "lower": "/dev/vda", "upper": {"kind": "tmpfs", "size_mib": 512}},
  "dir_mounts": [{"tag": "ws", "guest_path": "/ws", "flags": {"noexec": true}}],
  "file_mounts": [{"tag": "cfg", "filename": "a.json", "guest_path": "/etc/a.json", "flags": {"readonly": true}}],
  "disk_mounts": [{"id": "data", "guest_path": "/data", "fstype": "ext4"}],
  "tmpfs_mounts": [{"path": "/tmp", "size_mib": 64, "mode": 1023}],
  "hostname": "box",
  "host_alias": "host.internal",
  "network": {"interface": "eth0", "mac": [2, 0, 0, 0, 0, 2], "mtu": 1500,
              "ipv4": {"address": "172.16.0.2", "prefix_len": 30, "gateway": "172.16.0.1", "dns": "172.16.0.1"},
              "ipv6": {"address": "fd42::2", "prefix_len": 64, "gateway": "fd42::1"}},
  "rlimits": [{"resource": "nofile", "soft": 1024, "hard": 4096}],
  "user": "1000:1000",
  "default_cwd": "/ws",
  "default_env": [{"key": "GREETING", "value": "snowman \u2603"}],
  "security_profile": "restricted",
  "handoff_init": {"cmd": "/sbin/init", "args": ["--x"], "env": [{"key": "A", "value": "B"}]},
  "exec_limits": {"max_executions": 8}
}"#;

/// The bootstrap frame the relay sends (`serve --guest-bootstrap`,
/// `Shell::bootstrap`) is what 0.7.13 reads: the same JSON parsed by the
/// crate's `GuestBootstrap` and by ours, then ours encoded, decodes with the
/// crate's codec to the crate's value (every field, addresses and enums
/// included); it is the first thing the relay hands the guest, outside
/// credit, before any client or ready.
#[test]
fn compat7_bootstrap_frame_decodes_to_the_crates_bootstrap() {
    use agent_relay::wire::bootstrap::GuestBootstrap;
    let want: msp7::bootstrap::GuestBootstrap = serde_json::from_str(FULL_BOOTSTRAP).unwrap();
    let ours: GuestBootstrap = serde_json::from_str(FULL_BOOTSTRAP).unwrap();
    let frame = ours.frame().into_bytes();
    let got: msp7::bootstrap::GuestBootstrap = decoded(&frame, MessageType::Bootstrap, 0, 0);
    assert_eq!(got, want);
    let misspelt = r#"{"defualt_env": []}"#;
    let err = serde_json::from_str::<GuestBootstrap>(misspelt).unwrap_err();
    assert!(err.to_string().contains("defualt_env"), "{err}");

    let cfg = Config {
        current: CurrentSettings {
            bootstrap: Some(frame.clone()),
            ..CurrentSettings::default()
        },
        ..Config::current()
    };
    let mut relay = Relay::new(cfg);
    relay.handle(0, Event::ClientConnected(ClientId(1)));
    let first = std::iter::from_fn(|| relay.poll_action()).collect::<Vec<_>>();
    assert_eq!(to_guest(&first), vec![frame]);
    assert_eq!(relay.counters().used_control_frames, 0);
}

/// Rule `range_leases` against 0.7.13's own record codec: with a ready that
/// offers `relay_lease` format 1, each client's connected record (read with
/// the crate's decoder) names its canonical range and a nonzero incarnation
/// of its own, ahead of its frames; the departure's notice names the same
/// incarnation; the slot stays taken until the crate's disconnect ack for
/// that incarnation arrives, and is then free, with its execution released.
#[test]
fn compat7_range_lease_records_notice_and_ack() {
    use msp7::transport::{
        RelayClientDisconnectedAck, RelayLeaseReady, encode_relay_client_disconnected_ack,
        try_decode_relay_client_connected_from_bytes,
    };
    let ready = Ready {
        agent_version: "0.7.13".into(),
        workload_transport_barrier_version: Some(2),
        exec_limits: Some(limits(1)),
        relay_lease: Some(RelayLeaseReady::range_lease_v1()),
        ..Ready::default()
    };
    let mut d = Drive::new(Config {
        current: CurrentSettings {
            clients: 2,
            incarnation_seed: 7,
            ..CurrentSettings::default()
        },
        ..Config::current()
    });
    d.guest(&message(MessageType::Ready, 0, &ready));
    let connected = |acts: &[Action]| {
        let frames = to_guest(acts);
        assert_eq!(frames.len(), 1, "{acts:?}");
        let mut buf = bytes::BytesMut::from(&frames[0][..]);
        let r = try_decode_relay_client_connected_from_bytes(&mut buf)
            .expect("0.7.13 reads the record")
            .expect("a whole record");
        assert!(buf.is_empty());
        r
    };
    let first = connected(&d.ev(Event::ClientConnected(ClientId(1))));
    assert_eq!(
        (first.id_start, first.id_end_exclusive),
        relay_client_id_range(0).unwrap()
    );
    assert_ne!(first.incarnation, [0; 16]);
    let second = connected(&d.ev(Event::ClientConnected(ClientId(2))));
    assert_ne!(second.incarnation, first.incarnation);
    let start = first.id_start;
    assert_eq!(to_guest(&d.client(1, &exec7(start))).len(), 1);
    let acts = d.ev(Event::ClientDisconnected(ClientId(1)));
    let frames = to_guest(&acts);
    assert_eq!(frames.len(), 2, "the kill, then the notice: {acts:?}");
    let notice: RelayClientDisconnected =
        decoded(&frames[1], MessageType::RelayClientDisconnected, 0, 0);
    assert_eq!(notice.incarnation, Some(first.incarnation));
    // Slot 0 awaits its ack: a third client is refused (slot 1 is taken),
    // and client 2's exec is over the limit while the departed one counts.
    let acts = d.ev(Event::ClientConnected(ClientId(3)));
    assert!(
        matches!(acts.as_slice(), [Action::Refuse { .. }]),
        "{acts:?}"
    );
    let acts = d.client(2, &exec7(second.id_start));
    assert!(to_guest(&acts).is_empty(), "refused at the limit: {acts:?}");
    let stale = RelayClientDisconnectedAck {
        id_start: first.id_start,
        id_end_exclusive: first.id_end_exclusive,
        incarnation: second.incarnation,
    };
    d.guest(&encode_relay_client_disconnected_ack(stale));
    assert_eq!(d.relay.counters().lease_acks_ignored, 1);
    let ack = RelayClientDisconnectedAck {
        id_start: first.id_start,
        id_end_exclusive: first.id_end_exclusive,
        incarnation: first.incarnation,
    };
    d.guest(&encode_relay_client_disconnected_ack(ack));
    assert_eq!(d.relay.counters().lease_acks, 1);
    assert_eq!(d.relay.counters().guest_corrupt, 0);
    let again = connected(&d.ev(Event::ClientConnected(ClientId(4))));
    assert_eq!(again.id_start, first.id_start);
    assert_ne!(again.incarnation, first.incarnation);
    let acts = d.client(2, &exec7(second.id_start + 1));
    assert_eq!(to_guest(&acts).len(), 1, "the execution was released");
}
