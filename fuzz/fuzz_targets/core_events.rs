//! Arbitrary event sequences into the core, through the simulator's driver:
//! the core never panics and the simulator's safety invariants hold after
//! every event, in both protocol generations (legacy, current, or detected
//! from the guest's ready). Frames are built from small structured choices
//! so the fuzzer reaches deep states: the current generation's init exchange,
//! a v=10 ready with or without input credit and exec limits, credit grants
//! and other workload control on `u32::MAX`, pongs, errors, raw bulk records
//! both ways, frames for ids nobody owns, pings, tcp, unknown types and the
//! id-0 shutdown; raw byte ops cover everything else. The driver keeps the
//! core's contract: unique client ids, no bytes from a paused client,
//! bounded reads, and no guest bytes while the core has the guest paused
//! (rule `backpressure_bounded_wait`): the guest's bytes wait in its own
//! buffer until `ResumeGuest`, and go in reads of at most `READ_MAX`.

#![no_main]

use std::collections::BTreeMap;

use agent_relay::core::{
    Action, ClientId, Config, CurrentSettings, Event, HandshakeForm, LegacySettings, Protocol,
};
use agent_relay::testkit::frames;
use agent_relay::wire::MsgType;
use agent_relay::wire::payload::{ExecLimits, ExecResize, WorkloadTransportCredit, encode_payload};
use agent_relay::wire::{FLAG_SESSION_START, FLAG_SHUTDOWN, FLAG_TERMINAL, LEGACY_VERSION};
use agent_relay_sim::case::Case;
use agent_relay_sim::driver::{Driver, TraceMode};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const READ_MAX: usize = 4096;
/// Ids per slot in the current generation.
const STEP: u32 = u32::MAX / 128;

#[derive(Arbitrary, Debug)]
enum Op {
    GuestFrame {
        kind: u8,
        slot: u8,
        off: u8,
        split: u8,
        len: u8,
    },
    GuestRaw(Vec<u8>),
    GuestWritten(u16),
    GuestClosed,
    Connect,
    Disconnect(u8),
    ClientFrame {
        client: u8,
        kind: u8,
        off: u8,
        bad_flags: bool,
        out_of_range: bool,
        len: u8,
    },
    ClientRaw {
        client: u8,
        bytes: Vec<u8>,
    },
    ClientWritten {
        client: u8,
        n: u16,
    },
    Tick {
        advance: u16,
    },
    WallClock {
        ahead: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_clients: u8,
    bounds: bool,
    budget: u8,
    /// 0 legacy, 1 current, 2 detected; the guest's ready says which it is.
    protocol: u8,
    /// Current ready: credit (barrier 2), exec limits, the correlation bound.
    barrier: bool,
    limits: bool,
    correlations: u8,
    ops: Vec<Op>,
}

/// The world of one input: its generation and what the guest's ready says.
struct Setup {
    v: u8,
    slots: u32,
    legacy_step: u32,
    barrier: bool,
    limits: bool,
}

fuzz_target!(|input: Input| {
    let (cfg, setup) = config(&input);
    // CORE_EVENTS_CASE=FILE: a failing input is also written as a regression
    // case (shrink it with `agent-relay-sim --replay FILE --shrink`).
    let case = std::env::var_os("CORE_EVENTS_CASE");
    let mut run = Run {
        d: Driver::new(cfg.clone(), READ_MAX, TraceMode::Off, case.is_some()),
        now: 0,
        wall: 1_700_000_000_000,
        next_client: 1,
        clients: BTreeMap::new(),
        guest_out: Vec::new(),
    };
    for op in input.ops.iter().take(400) {
        run.step(op, &setup);
        if let Some(v) = run.d.checker.failure().cloned() {
            if let Some(path) = &case {
                let case = Case {
                    seed: 0,
                    invariant: v.invariant,
                    config: cfg.clone(),
                    read_max: READ_MAX,
                    finish: false,
                    events: run.d.take_recorded(),
                };
                let _ = std::fs::write(path, case.to_text());
            }
            panic!("{v}");
        }
    }
});

/// The driver and what the target keeps of the world.
struct Run {
    d: Driver,
    now: u64,
    wall: u64,
    next_client: u64,
    /// Connected clients and the id range start their handshake gave.
    clients: BTreeMap<u64, Option<u32>>,
    /// Bytes the guest wrote that the core has not read yet (it had the
    /// guest paused).
    guest_out: Vec<u8>,
}

impl Run {
    /// Feeds the event of one op, if it makes one.
    fn step(&mut self, op: &Op, setup: &Setup) {
        let mut buf = Vec::new();
        let event = match op {
            Op::GuestFrame {
                kind,
                slot,
                off,
                split,
                len,
            } => {
                guest_frame(setup, &mut buf, *kind, *slot, *off, *len);
                // Optionally deliver the first part now and the rest next.
                let cut = usize::from(*split) % (buf.len() + 1);
                if cut > 0 && cut < buf.len() {
                    self.guest_write(&buf[..cut]);
                    buf.drain(..cut);
                }
                self.guest_write(&buf);
                None
            }
            Op::GuestRaw(bytes) => {
                self.guest_write(bytes);
                None
            }
            Op::GuestWritten(n) => Some(Event::GuestWritten(usize::from(*n))),
            Op::GuestClosed => Some(Event::GuestClosed),
            Op::Connect => {
                let c = self.next_client;
                self.next_client += 1;
                self.clients.insert(c, None);
                Some(Event::ClientConnected(ClientId(c)))
            }
            Op::Disconnect(k) => pick(&self.clients, *k).map(|c| {
                self.clients.remove(&c);
                Event::ClientDisconnected(ClientId(c))
            }),
            Op::ClientFrame { .. } | Op::ClientRaw { .. } => self.client_bytes(op, setup, &mut buf),
            Op::ClientWritten { client, n } => pick(&self.clients, *client)
                .map(|c| Event::ClientWritten(ClientId(c), usize::from(*n))),
            Op::Tick { advance } => {
                self.now += u64::from(*advance);
                Some(Event::Tick)
            }
            Op::WallClock { ahead } => {
                self.wall = self
                    .wall
                    .wrapping_add(u64::from(*ahead))
                    .saturating_sub(1_000);
                Some(Event::WallClock((self.wall + self.now) * 1_000_000))
            }
        };
        if let Some(event) = event {
            self.feed(event);
        }
        // A resume lets what the guest holds in.
        self.guest_write(&[]);
    }

    /// A structured or raw frame from a client that may send now.
    fn client_bytes<'b>(&self, op: &Op, setup: &Setup, buf: &'b mut Vec<u8>) -> Option<Event<'b>> {
        let client = match op {
            Op::ClientFrame { client, .. } | Op::ClientRaw { client, .. } => *client,
            _ => return None,
        };
        let c = pick(&self.clients, client).filter(|&c| !self.d.checker.paused(ClientId(c)))?;
        match op {
            Op::ClientFrame {
                kind,
                off,
                bad_flags,
                out_of_range,
                len,
                ..
            } => {
                let start = self.clients[&c].unwrap_or(0);
                let id = if *out_of_range {
                    start.wrapping_add(setup.step())
                } else {
                    start + u32::from(*off % 8)
                };
                client_frame(setup, buf, *kind, id, *len);
                if *bad_flags {
                    buf[8] ^= 0x01;
                }
            }
            Op::ClientRaw { bytes, .. } => *buf = bytes.iter().copied().take(READ_MAX).collect(),
            _ => return None,
        }
        Some(Event::ClientBytes(ClientId(c), buf))
    }

    fn feed(&mut self, event: Event<'_>) {
        self.d.feed(self.now, event);
        follow(&self.d, &mut self.clients);
    }

    /// The guest writes `bytes`: they join what it holds, and the core reads
    /// it all, `READ_MAX` at a time, unless (or until) it pauses the guest.
    fn guest_write(&mut self, bytes: &[u8]) {
        self.guest_out.extend_from_slice(bytes);
        while !self.guest_out.is_empty() && !self.d.checker.guest_paused() {
            let n = self.guest_out.len().min(READ_MAX);
            let chunk: Vec<u8> = self.guest_out.drain(..n).collect();
            self.feed(Event::GuestBytes(&chunk));
        }
    }
}

fn config(input: &Input) -> (Config, Setup) {
    let max_clients = u32::from(input.max_clients % 4) + 1;
    let unit = 256usize << (input.budget % 6);
    let protocol = match input.protocol % 3 {
        0 => Protocol::Legacy,
        1 => Protocol::Current,
        _ => Protocol::Auto,
    };
    let cfg = Config {
        protocol,
        client_soft_budget: unit,
        client_hard_cap: unit * 4,
        global_cap: unit * 8,
        grace: 100,
        client_to_guest_cap: unit,
        guest_window: unit,
        quarantine: 1_000,
        exec_log: input.budget & 0x80 != 0,
        legacy: LegacySettings {
            max_clients,
            handshake: if input.bounds {
                HandshakeForm::Bounds
            } else {
                HandshakeForm::Offset
            },
        },
        current: CurrentSettings {
            clients: max_clients,
            max_correlations: usize::from(input.correlations % 8) + 1,
            ..CurrentSettings::default()
        },
        ..Config::default()
    };
    let setup = Setup {
        v: if protocol == Protocol::Legacy { 1 } else { 10 },
        slots: max_clients,
        legacy_step: cfg.step(),
        barrier: input.barrier,
        limits: input.limits,
    };
    (cfg, setup)
}

impl Setup {
    fn current(&self) -> bool {
        self.v >= 2
    }

    /// Ids per slot, as the clients see them.
    fn step(&self) -> u32 {
        if self.current() {
            STEP
        } else {
            self.legacy_step
        }
    }

    /// The first id of `slot`.
    fn start(&self, slot: u8) -> u32 {
        let s = u32::from(slot) % self.slots;
        if self.current() {
            s * STEP + 1
        } else {
            s * self.legacy_step
        }
    }
}

/// A guest frame: its ready (and init before it), output for an id of a
/// slot, terminal replies, and in the current generation workload control,
/// raw bulk records and frames for ids nobody owns.
fn guest_frame(s: &Setup, buf: &mut Vec<u8>, kind: u8, slot: u8, off: u8, len: u8) {
    let id = s.start(slot) + u32::from(off % 8);
    let v = s.v;
    let data = vec![b'x'; usize::from(len)];
    let t = FLAG_TERMINAL;
    match kind % 16 {
        0 if s.current() => {
            let limits = s.limits.then(|| ExecLimits {
                max_executions: 1,
                ..ExecLimits::default()
            });
            buf.extend_from_slice(&frames::init_resolved(v));
            buf.extend_from_slice(&frames::ready_current(v, 1, s.barrier.then_some(2), limits));
        }
        0 => *buf = frames::ready(LEGACY_VERSION, 1).into(),
        1 => frames::push_data(buf, v, MsgType::ExecStdout, id, 0, &data),
        2 => frames::push_data(buf, v, MsgType::ExecStderr, id, 0, &data),
        3 => *buf = frames::exited(v, id, 0).into(),
        4 => frames::push_raw(buf, v, MsgType::FsResponse, id, t, &[0xa0]),
        5 => frames::push_data(buf, v, MsgType::FsData, id, 0, &data),
        6 => frames::push_raw(
            buf,
            v,
            MsgType::ExecStarted,
            id,
            0,
            &[0xa1, 0x63, b'p', b'i', b'd', 0x01],
        ),
        7 => frames::push_raw(buf, v, MsgType::Pong, id, t, &[0xa0]),
        8 => frames::push_raw(buf, v, MsgType::CoreError, id, t, &[0xa0]),
        9 => frames::push_bulk(buf, id, 1 + len % 2, 2, u64::from(off), &data),
        10 => {
            let step = u64::from(len) * 8;
            let g = WorkloadTransportCredit {
                control_bytes: (8 << 20) + step * 1024,
                control_frames: 256 + step,
                bulk_bytes: (32 << 20) + step * 1024,
                bulk_frames: 256 + step,
            };
            *buf = frames::credit(v, &g).into();
        }
        11 => frames::push_raw(buf, v, MsgType::WorkloadFrozen, u32::MAX, t, &[0xa0]),
        12 => {
            let nobody = [
                0,
                STEP * (1 + u32::from(off % 127)),
                128 * STEP + u32::from(off % 127),
            ];
            frames::push_data(
                buf,
                v,
                MsgType::ExecStdout,
                nobody[usize::from(len % 3)],
                0,
                b"n",
            );
        }
        13 => *buf = frames::init_resolved(v).into(),
        14 => frames::push_raw(buf, v, MsgType::TcpConnected, id, 0, &[0xa0]),
        _ => frames::push_unknown(buf, v, "core.future.reply", id, t, false),
    }
}

/// A client frame: exec, stdin, signals, fs, shutdown, and in the current
/// generation pings, tcp, bulk records, unknown types, output acks and the
/// id-0 shutdown (sometimes empty).
fn client_frame(s: &Setup, buf: &mut Vec<u8>, kind: u8, id: u32, len: u8) {
    let v = s.v;
    let data = vec![b'i'; usize::from(len)];
    match kind % 14 {
        0 => *buf = frames::exec_request(v, id, len % 2 == 0, 1).into(),
        1 => frames::push_data(buf, v, MsgType::ExecStdin, id, 0, &data),
        2 => *buf = frames::signal(v, id, if len % 2 == 0 { 9 } else { 2 }).into(),
        3 => frames::push_raw(
            buf,
            v,
            MsgType::ExecResize,
            id,
            0,
            &encode_payload(&ExecResize { rows: 1, cols: 2 }),
        ),
        4 => frames::push_raw(buf, v, MsgType::FsRequest, id, FLAG_SESSION_START, &[0xa0]),
        5 => frames::push_data(buf, v, MsgType::FsData, id, 0, &data),
        6 => frames::push_raw(buf, v, MsgType::Shutdown, id, FLAG_SHUTDOWN, &[0xa0]),
        7 => frames::push_raw(buf, v, MsgType::Ping, id, 0, &[0xa0]),
        8 => frames::push_raw(buf, v, MsgType::TcpConnect, id, FLAG_SESSION_START, &[0xa0]),
        9 => frames::push_bulk(buf, id, 1 + len % 2, 1, 0, b"b"),
        10 => frames::push_unknown(
            buf,
            v,
            "core.future.request",
            id,
            if len % 3 == 0 { FLAG_SESSION_START } else { 0 },
            len % 2 == 0,
        ),
        11 if len % 2 == 0 => buf.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0, FLAG_SHUTDOWN]),
        11 => frames::push_raw(buf, v, MsgType::Shutdown, 0, FLAG_SHUTDOWN, &[0xf6]),
        12 => frames::push_raw(buf, v, MsgType::TcpData, id, 0, &data),
        _ => frames::push_raw(
            buf,
            v,
            MsgType::ExecOutputAck,
            id,
            0,
            &[
                0xa1, 0x68, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'd', 0x01,
            ],
        ),
    }
}

fn pick(clients: &BTreeMap<u64, Option<u32>>, k: u8) -> Option<u64> {
    (!clients.is_empty()).then(|| {
        *clients
            .keys()
            .nth(usize::from(k) % clients.len())
            .expect("in range")
    })
}

/// Tracks handshakes (id ranges) and closes from the last event's actions.
fn follow(d: &Driver, clients: &mut BTreeMap<u64, Option<u32>>) {
    for a in &d.actions {
        match a {
            Action::Handshake { client, bytes } => {
                let start = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                clients.insert(client.0, Some(start));
            }
            Action::Refuse { client, .. } | Action::CloseClient { client, .. } => {
                clients.remove(&client.0);
            }
            _ => {}
        }
    }
}
