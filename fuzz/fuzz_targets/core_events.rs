//! Arbitrary event sequences into the core, through the simulator's driver:
//! the core never panics and the simulator's safety invariants
//! (`inv_routing`, `inv_completeness`, `inv_to_guest`, `inv_cleanup`,
//! `inv_isolation`, `inv_boundedness`, `inv_fairness`) hold after every event. Frames are
//! built from small structured choices so the fuzzer reaches deep states;
//! raw byte ops cover everything else. The driver keeps the core's contract:
//! unique client ids, no bytes from a paused client, bounded reads.

#![no_main]

use std::collections::BTreeMap;

use agent_relay::core::{Action, ClientId, Config, Event, HandshakeForm};
use agent_relay::wire::MsgType;
use agent_relay::wire::payload::{ExecResize, encode_payload};
use agent_relay::wire::{FLAG_SESSION_START, FLAG_SHUTDOWN, FLAG_TERMINAL};
use agent_relay_sim::driver::{Driver, TraceMode};
use agent_relay_sim::frames;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const READ_MAX: usize = 4096;

#[derive(Arbitrary, Debug)]
enum Op {
    GuestFrame { kind: u8, slot: u8, off: u8, split: u8, len: u8 },
    GuestRaw(Vec<u8>),
    GuestWritten(u16),
    GuestClosed,
    Connect,
    Disconnect(u8),
    ClientFrame { client: u8, kind: u8, off: u8, bad_flags: bool, out_of_range: bool, len: u8 },
    ClientRaw { client: u8, bytes: Vec<u8> },
    ClientWritten { client: u8, n: u16 },
    Tick { advance: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_clients: u8,
    bounds: bool,
    budget: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let max_clients = u32::from(input.max_clients % 4) + 1;
    let unit = 256usize << (input.budget % 6);
    let cfg = Config {
        max_clients,
        handshake: if input.bounds { HandshakeForm::Bounds } else { HandshakeForm::Offset },
        client_soft_budget: unit,
        client_hard_cap: unit * 4,
        global_cap: unit * 8,
        grace: 100,
        client_to_guest_cap: unit,
        guest_window: unit,
        quarantine: 1_000,
        exec_log: input.budget & 0x80 != 0,
    };
    let step = cfg.step();
    let mut d = Driver::new(cfg, READ_MAX, TraceMode::Off, false);
    let mut now = 0u64;
    let mut next_client = 1u64;
    // Connected clients and the id range start their handshake gave.
    let mut clients: BTreeMap<u64, Option<u32>> = BTreeMap::new();
    let pick = |clients: &BTreeMap<u64, Option<u32>>, k: u8| {
        (!clients.is_empty()).then(|| *clients.keys().nth(usize::from(k) % clients.len()).expect("in range"))
    };
    for op in input.ops.iter().take(400) {
        let mut buf = Vec::new();
        let event = match op {
            Op::GuestFrame { kind, slot, off, split, len } => {
                let id = (u32::from(*slot) % max_clients) * step + u32::from(*off % 8);
                let data = vec![b'x'; usize::from(*len)];
                match kind % 7 {
                    0 => buf = frames::ready(1),
                    1 => frames::push_data_frame(&mut buf, MsgType::ExecStdout, id, 0, &data),
                    2 => frames::push_data_frame(&mut buf, MsgType::ExecStderr, id, 0, &data),
                    3 => buf = frames::exited(id, 0),
                    4 => frames::push_raw_frame(&mut buf, MsgType::FsResponse, id, FLAG_TERMINAL, &[0xa0]),
                    5 => frames::push_data_frame(&mut buf, MsgType::FsData, id, 0, &data),
                    _ => frames::push_raw_frame(&mut buf, MsgType::ExecStarted, id, 0, &[0xa1, 0x63, b'p', b'i', b'd', 0x01]),
                }
                // Optionally deliver the first part now and the rest next.
                let cut = usize::from(*split) % (buf.len() + 1);
                if cut > 0 && cut < buf.len() {
                    d.feed(now, Event::GuestBytes(&buf[..cut]));
                    follow(&d, &mut clients);
                    buf.drain(..cut);
                }
                Some(Event::GuestBytes(&buf))
            }
            Op::GuestRaw(bytes) => {
                buf = bytes.clone();
                Some(Event::GuestBytes(&buf))
            }
            Op::GuestWritten(n) => Some(Event::GuestWritten(usize::from(*n))),
            Op::GuestClosed => Some(Event::GuestClosed),
            Op::Connect => {
                let c = next_client;
                next_client += 1;
                clients.insert(c, None);
                Some(Event::ClientConnected(ClientId(c)))
            }
            Op::Disconnect(k) => pick(&clients, *k).map(|c| {
                clients.remove(&c);
                Event::ClientDisconnected(ClientId(c))
            }),
            Op::ClientFrame { client, kind, off, bad_flags, out_of_range, len } => {
                match pick(&clients, *client) {
                    Some(c) if !d.checker.paused(ClientId(c)) => {
                        let start = clients[&c].unwrap_or(0);
                        let id = if *out_of_range {
                            start.wrapping_add(step)
                        } else {
                            start + u32::from(*off % 8)
                        };
                        let data = vec![b'i'; usize::from(*len)];
                        match kind % 7 {
                            0 => buf = frames::exec_request(id, *len % 2 == 0, 1),
                            1 => frames::push_data_frame(&mut buf, MsgType::ExecStdin, id, 0, &data),
                            2 => buf = frames::signal(id, if *len % 2 == 0 { 9 } else { 2 }),
                            3 => frames::push_raw_frame(&mut buf, MsgType::ExecResize, id, 0, &encode_payload(&ExecResize { rows: 1, cols: 2 })),
                            4 => frames::push_raw_frame(&mut buf, MsgType::FsRequest, id, FLAG_SESSION_START, &[0xa0]),
                            5 => frames::push_data_frame(&mut buf, MsgType::FsData, id, 0, &data),
                            _ => frames::push_raw_frame(&mut buf, MsgType::Shutdown, id, FLAG_SHUTDOWN, &[0xa0]),
                        }
                        if *bad_flags {
                            buf[8] ^= 0x01;
                        }
                        Some(Event::ClientBytes(ClientId(c), &buf))
                    }
                    _ => None,
                }
            }
            Op::ClientRaw { client, bytes } => match pick(&clients, *client) {
                Some(c) if !d.checker.paused(ClientId(c)) => {
                    buf = bytes.iter().copied().take(READ_MAX).collect();
                    Some(Event::ClientBytes(ClientId(c), &buf))
                }
                _ => None,
            },
            Op::ClientWritten { client, n } => {
                pick(&clients, *client).map(|c| Event::ClientWritten(ClientId(c), usize::from(*n)))
            }
            Op::Tick { advance } => {
                now += u64::from(*advance);
                Some(Event::Tick)
            }
        };
        if let Some(event) = event {
            d.feed(now, event);
            follow(&d, &mut clients);
        }
        if let Some(v) = d.checker.violation() {
            panic!("{v}");
        }
    }
});

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
