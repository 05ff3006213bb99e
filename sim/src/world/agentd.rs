//! The current guest: agentd of microsandbox 0.7.x as the relay sees it. It
//! sends `core.init.resolved` before a `v = 10` ready that may advertise
//! input credit (barrier 2) and exec limits, and counts the init acks it
//! gets; it counts what it consumes of the relay's input, per credit class
//! and whole frames with their length prefix, and grants it back as
//! absolute cumulative `core.workload.transport.credit` on `u32::MAX` (late,
//! when the swarm says so, and now and then one that would lower a field);
//! an exec that never reads its stdin holds that data credit until it ends.
//! In edge worlds (55 % of those with credit, no exec limits and
//! room for correlations) it keeps the control charge of exec requests of
//! 64 KiB or more for 30 s (a guest slow to deal with a request), so that
//! clients can take the control window to its byte edge (`sdk.rs`).
//! In three in ten of the worlds with a guest window of 8 KiB or less it
//! repeats its init (a fault, not agentd 0.7.13, which sends one init frame
//! and waits for its ack): more `core.init.resolved` frames than the window
//! holds acks, then ready, before it reads anything, so some acks leave
//! after ready, once credit exists, and must still go uncharged.
//! It answers pings and touches on the requester's id, opens fs and tcp
//! sessions that reply with data and raw bulk records, refuses an exec past
//! `max_executions` (a generation-10 sender's) with `core.exec.failed`, and
//! exits a killed process some time after the SIGKILL, as a process's exit
//! reaches agentd.
//!
//! Range leases (`relay_lease {max_format: 1}` in three worlds in four;
//! 0.7.13 agentd always offers it): it reads a record with the lease magic
//! before frames, charges it 41 bytes and one frame of control credit, and
//! keeps each slot's incarnation. On a disconnect notice (AD/agent.rs
//! 2365-2450, 3195-3240) it kills the range's exec sessions and deletes them
//! at once, so their `core.exec.exited` never comes, and drops the range's
//! fs and tcp state. A notice naming the slot's incarnation ends the lease:
//! the 41-byte acknowledgement follows that owner's output, and nothing of
//! it comes after (agentd drops a stale owner's queued output). A notice
//! naming another incarnation is stale and ignored, with no
//! acknowledgement. Unleased, output of the killed sessions already queued
//! still follows the notice. What agentd's loop would die on (a frame it
//! cannot decode, a bad record or range, a notice without the incarnation
//! of a leased slot) is `inv_guest_survives`' to report; the model goes on.
//! Workload noise: frames on `u32::MAX`, for ids nobody owns, and (leased)
//! an acknowledgement for an incarnation nobody awaits.

use std::collections::BTreeMap;

use agent_relay::core::{ClientId, IdRange, Millis};
use agent_relay::wire::lease::{LeaseEvent, LeaseRecord};
use agent_relay::wire::payload::{
    Consumed, ExecFailed, ExecFailureKind, ExecLimits, RelayClientDisconnected,
    WorkloadTransportCredit,
};
use agent_relay::wire::{FLAG_TERMINAL, MsgType, PREFIX_LEN, peek_parts};

use super::super::cbor;
use super::super::current::{START, STEP, Window};
use super::World;
use super::faults::Fault;
use super::guest::GuestSession;
use agent_relay::testkit::frames;

/// The generation agentd 0.7.13 writes.
const V: u8 = 10;

/// A world's steps toward the control window's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Edge {
    /// Not this world, or done.
    Off,
    /// Execs are to take the window to a few KiB of its edge.
    Fill,
    /// One exec is to pass the edge by 1 to 4 bytes.
    Shoot,
}

/// A current guest's own state.
#[derive(Debug)]
pub(super) struct Agentd {
    barrier: bool,
    limits: Option<ExecLimits>,
    /// The last grant sent.
    granted: [Window; 2],
    /// Grants wait until then.
    hold_until: Millis,
    /// Frames consumed past the last grant before the next grant goes out.
    every: u64,
    /// Init acks received.
    pub(super) acks: u32,
    activity: u64,
    /// Its ready offers range leases.
    lease: bool,
    /// The incarnation of each leased slot.
    incarnations: BTreeMap<u32, [u8; 16]>,
    /// Where this world is in taking the control window to its edge
    /// (`World::sdk_edge_exec`).
    pub(super) edge: Edge,
    /// Edge worlds: the control charge of exec requests of 64 KiB or more,
    /// kept (not granted back) until `edge_until`, as a guest slow to
    /// deal with a request holds its input.
    pub(super) edge_held: Window,
    edge_until: Millis,
    /// Edge worlds: bytes of the execs sent to fill the window.
    pub(super) edge_sent: u64,
    /// Edge worlds: the client taking the steps, once one started.
    pub(super) edge_by: Option<ClientId>,
    /// The `core.init.resolved` frames it sends before ready: one, as
    /// agentd 0.7.13 does, or, in a guest that repeats its init (a fault
    /// the relay must bear), enough that their acks overflow a small guest
    /// window, so some leave after ready, when credit exists.
    inits: u64,
}

impl World {
    /// The guest of a current world: its contract and grant pace.
    pub(super) fn agentd_init(&mut self) {
        let barrier = self.rng.chance(600);
        let limits = self.rng.chance(300).then(|| ExecLimits {
            max_executions: self.rng.range(1, 4) as u32,
            ..ExecLimits::default()
        });
        let every = self.rng.pick(&[8, 64, 200, 255]);
        let lease = self.rng.chance(750);
        // Worlds where execs take the control window to its edge: with
        // credit, and exec requests nobody refuses.
        let edge = self.rng.chance(550)
            && barrier
            && limits.is_none()
            && self.cfg.current.max_correlations >= 16;
        let edge = if edge { Edge::Fill } else { Edge::Off };
        // An init ack is 33 bytes: past window / 33 of them, the rest wait
        // for the guest to read the first ones.
        let inits = if self.rng.chance(300) && self.cfg.guest_window <= 8 << 10 {
            self.cfg.guest_window as u64 / 25 + self.rng.range(1, 8)
        } else {
            1
        };
        self.guest.v = V;
        self.agentd = Some(Agentd {
            barrier,
            limits,
            granted: START,
            hold_until: 0,
            every,
            acks: 0,
            activity: 0,
            lease,
            incarnations: BTreeMap::new(),
            edge,
            edge_held: Window::default(),
            edge_until: 0,
            edge_sent: 0,
            edge_by: None,
            inits,
        });
    }

    /// The control credit the relay has left, as the guest knows it: its
    /// last grant less the control frames it consumed and those handed to
    /// it and not read yet (each whole, its prefix included), with input
    /// credit. A grant the relay has not read yet leaves it less: never
    /// more.
    pub(super) fn control_room(&self) -> Option<Window> {
        let a = self.agentd.as_ref()?;
        if !a.barrier || !self.guest.ready_sent {
            return None;
        }
        let mut used = self.guest.consumed[0];
        for f in self.guest.inflight.iter().filter(|f| charged_control(f)) {
            used.bytes += f.len() as u64;
            used.frames += 1;
        }
        Some(Window {
            bytes: a.granted[0].bytes.checked_sub(used.bytes)?,
            frames: a.granted[0].frames.checked_sub(used.frames)?,
        })
    }

    /// Boot: noise for ids nobody owns (if the swarm says so), the init
    /// context, then ready.
    pub(super) fn agentd_boot(&mut self) {
        if self.fault(Fault::GuestNoise) {
            for _ in 0..self.rng.range(1, 4) {
                let id = self.rng.next_u64() as u32;
                let out = &mut self.guest.out;
                frames::push_data(out, V, MsgType::ExecStdout, id, 0, b"boot");
            }
        }
        let a = self.agentd.as_ref().expect("current guest");
        let (barrier, limits, lease) = (a.barrier, a.limits, a.lease.then_some(1));
        let boot = self.rng.next_u64() >> 20;
        for _ in 0..a.inits {
            self.guest.out.extend_from_slice(&frames::init_resolved(V));
        }
        if a.inits > 1 {
            // It writes its whole boot before it reads anything.
            self.guest.stalled_until = self.now + self.rng.range(20, 200);
        }
        let ready = frames::ready_offering(V, boot, barrier.then_some(2), limits, lease);
        self.guest.out.extend_from_slice(&ready);
    }

    /// Faults heal: grants flow again.
    pub(super) fn agentd_heal(&mut self) {
        if let Some(a) = &mut self.agentd {
            a.hold_until = 0;
        }
    }

    /// A whole frame the relay handed over was read.
    pub(super) fn agentd_receive(&mut self, id: u32, frame: &[u8]) {
        let (flags, len) = (frame[PREFIX_LEN - 1], frame.len() as u64);
        if frame.get(9..13) == Some(b"MSBL") {
            // A lease record, read before frames, charged as control input.
            self.consume(0, len);
            if let Ok(r) = LeaseRecord::decode(frame)
                && r.event == LeaseEvent::Connected
                && let Some(slot) = canonical_slot(r.id_start, r.id_end)
            {
                let a = self.agentd.as_mut().expect("current guest");
                a.incarnations.insert(slot, r.incarnation);
            }
            return;
        }
        if flags == 0x08 {
            return self.consume(1, len);
        }
        let Ok(parts) = peek_parts(&frame[PREFIX_LEN..]) else {
            return;
        };
        let (t, payload) = (parts.t, parts.payload);
        if t == Some(MsgType::InitAck) {
            // Sent before ready: never charged.
            self.agentd.as_mut().expect("current guest").acks += 1;
            return;
        }
        let data = matches!(
            t,
            Some(MsgType::ExecStdin | MsgType::FsData | MsgType::TcpData | MsgType::TcpEof)
        );
        let stuck =
            t == Some(MsgType::ExecStdin) && self.guest.sessions.get(&id).is_some_and(|s| s.stuck);
        match (stuck, data) {
            (true, _) => {
                let s = self.guest.sessions.get_mut(&id).expect("stuck session");
                s.held.0 += len;
                s.held.1 += 1;
            }
            (false, true) => self.consume(1, len),
            (false, false) => {
                self.consume(0, len);
                let a = self.agentd.as_mut().expect("current guest");
                if a.edge != Edge::Off && t == Some(MsgType::ExecRequest) && len >= 64 << 10 {
                    a.edge_held.bytes += len;
                    a.edge_held.frames += 1;
                    a.edge_until = self.now + 30_000;
                }
            }
        }
        if let Some(t) = t {
            self.agentd_message(t, parts.v, id, &payload, stuck);
        }
    }

    fn agentd_message(&mut self, t: MsgType, v: u8, id: u32, payload: &[u8], stuck: bool) {
        match t {
            MsgType::RelayClientDisconnected => {
                if let Some(n) = cbor::payload::<RelayClientDisconnected>(payload) {
                    self.disconnected(&n);
                }
            }
            MsgType::ExecRequest if v >= 10 && self.executions_full() => {
                let failed = ExecFailed {
                    kind: ExecFailureKind::ResourceLimit,
                    errno: None,
                    errno_name: None,
                    message: "active execution limit reached".into(),
                    stage: Some("execution_admission".into()),
                };
                let f = frames::frame(V, MsgType::ExecFailed, id, &failed);
                self.guest.out.extend_from_slice(&f);
            }
            MsgType::ExecRequest => self.on_exec_request(id, payload),
            MsgType::ExecStdin if !stuck => {
                self.on_stdin(id, payload);
                self.stdin_ack(id);
            }
            MsgType::ExecSignal => self.on_signal(id, payload),
            MsgType::FsRequest => self.open_session(id, false),
            MsgType::TcpConnect => self.tcp_connect(id),
            MsgType::TcpClose if self.guest.sessions.get(&id).is_some_and(|s| s.tcp) => {
                let s = self.guest.sessions.get_mut(&id).expect("checked");
                s.left = 0;
            }
            MsgType::Ping => {
                let out = &mut self.guest.out;
                frames::push_raw(out, V, MsgType::Pong, id, FLAG_TERMINAL, &[0xa0]);
            }
            MsgType::Touch => {
                let a = self.agentd.as_mut().expect("current guest");
                a.activity += 1;
                let seq = a.activity;
                // {"activity_seq": n}
                let mut p = vec![0xa1, 0x6c];
                p.extend_from_slice(b"activity_seq");
                p.extend_from_slice(&[0x1b]);
                p.extend_from_slice(&seq.to_be_bytes());
                let out = &mut self.guest.out;
                frames::push_raw(out, V, MsgType::Touched, id, FLAG_TERMINAL, &p);
            }
            _ => {}
        }
    }

    /// With exec limits, as many executions run as it may have: the ones
    /// not deleted yet, killed ones included until their exit is sent.
    fn executions_full(&self) -> bool {
        let max = self.agentd.as_ref().and_then(|a| a.limits);
        max.is_some_and(|l| {
            let running = self.guest.sessions.values().filter(|s| s.exec).count();
            running >= l.max_executions as usize
        })
    }

    /// With exec limits, stdin consumed is acknowledged now and then.
    fn stdin_ack(&mut self, id: u32) {
        let limits = self.agentd.as_ref().is_some_and(|a| a.limits.is_some());
        if limits && self.guest.sessions.contains_key(&id) && self.rng.chance(200) {
            let ack = Consumed {
                consumed: self.rng.below(1 << 20),
            };
            let f = frames::frame(V, MsgType::ExecStdinAck, id, &ack);
            self.guest.out.extend_from_slice(&f);
        }
    }

    fn open_session(&mut self, id: u32, tcp: bool) {
        let left = if self.heal {
            0
        } else {
            self.rng.range(0, 4) as u32
        };
        let s = GuestSession {
            left,
            tcp,
            ..GuestSession::default()
        };
        self.guest.sessions.insert(id, s);
    }

    /// One connect in twenty fails; the others answer `core.tcp.connected`.
    fn tcp_connect(&mut self, id: u32) {
        if !self.heal && self.rng.chance(50) {
            // {"error": "refused"}
            let mut p = vec![0xa1, 0x65];
            p.extend_from_slice(b"error");
            p.extend_from_slice(&[0x67]);
            p.extend_from_slice(b"refused");
            let out = &mut self.guest.out;
            frames::push_raw(out, V, MsgType::TcpFailed, id, FLAG_TERMINAL, &p);
            return;
        }
        let out = &mut self.guest.out;
        frames::push_raw(out, V, MsgType::TcpConnected, id, 0, &[0xa0]);
        self.open_session(id, true);
    }

    /// A disconnect notice: a range agentd checks, then, leased, the slot's
    /// incarnation or a stale notice it ignores.
    fn disconnected(&mut self, n: &RelayClientDisconnected) {
        let (start, end) = (n.id_start, n.id_end_exclusive);
        let Some(slot) = canonical_slot(start, end) else {
            return; // agentd's loop would end here
        };
        let a = self.agentd.as_mut().expect("current guest");
        let held = a.incarnations.get(&slot).copied();
        match (n.incarnation, held) {
            (Some(inc), Some(h)) if inc == h => {
                a.incarnations.remove(&slot);
                self.drop_range(start, end, true);
                let range = IdRange { start, end };
                let ack = frames::lease_record(LeaseEvent::DisconnectedAck, range, inc);
                self.guest.out.extend_from_slice(&ack);
            }
            (Some(_), _) => {}    // stale: ignored, no acknowledgement
            (None, Some(_)) => {} // agentd's loop would end here
            (None, None) => self.drop_range(start, end, false),
        }
    }

    /// The range's sessions are gone: its exec sessions killed and deleted
    /// at once (their exits never come), its fs and tcp state dropped, with
    /// no terminal frame. Unleased, output the killed sessions had queued
    /// still follows; leased, agentd drops it.
    fn drop_range(&mut self, start: u32, end: u32, leased: bool) {
        let gone: Vec<u32> = self
            .guest
            .sessions
            .range(start..end)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            let s = self.guest.sessions.remove(&id).expect("listed");
            if s.exec && s.killed && !leased {
                for _ in 0..s.left {
                    let out = &mut self.guest.out;
                    frames::push_data(out, V, MsgType::ExecStdout, id, 0, b"late");
                }
            }
            self.release_held(s.held);
        }
    }

    /// One output frame of an fs or tcp session: data, or a raw bulk record
    /// from the guest; a tcp stream's end now and then.
    pub(super) fn agentd_output(&mut self, id: u32) {
        let size = if self.fault(Fault::Burst) {
            self.rng.range_usize(1 << 10, 64 << 10)
        } else {
            self.rng.size(300).max(1)
        };
        let s = self.guest.sessions.get_mut(&id).expect("open session");
        let (tcp, offset) = (s.tcp, s.offset);
        s.offset += size as u64;
        self.scratch.clear();
        self.scratch.resize(size, b'g');
        let out = &mut self.guest.out;
        match (tcp, self.rng.below(10)) {
            (false, 0..=4) => frames::push_data(out, V, MsgType::FsData, id, 0, &self.scratch),
            (true, 0..=3) => frames::push_data(out, V, MsgType::TcpData, id, 0, &self.scratch),
            (true, 4) => frames::push_raw(out, V, MsgType::TcpEof, id, 0, &[0xa0]),
            (_, _) => {
                let kind = if tcp { 2 } else { 1 };
                frames::push_bulk(out, id, kind, 2, offset, &self.scratch);
            }
        }
    }

    fn consume(&mut self, class: usize, len: u64) {
        self.guest.consumed[class].bytes += len;
        self.guest.consumed[class].frames += 1;
    }

    /// Grants back what was consumed, once enough was (at once when
    /// healing), unless the swarm holds grants back for a while; now and
    /// then a grant that would lower one field follows (the relay ignores
    /// it).
    pub(super) fn agentd_grant(&mut self) {
        let Some(a) = &self.agentd else {
            return;
        };
        if !a.barrier || !self.guest.ready_sent || (!self.heal && self.now < a.hold_until) {
            return;
        }
        if self.heal || self.now >= a.edge_until {
            self.agentd.as_mut().expect("checked").edge_held = Window::default();
        }
        let a = self.agentd.as_ref().expect("checked");
        let mut consumed = self.guest.consumed;
        consumed[0].bytes -= a.edge_held.bytes;
        consumed[0].frames -= a.edge_held.frames;
        let want = [0, 1].map(|i| Window {
            bytes: START[i].bytes + consumed[i].bytes,
            frames: START[i].frames + consumed[i].frames,
        });
        let pending = want[0].frames + want[1].frames - a.granted[0].frames - a.granted[1].frames;
        if pending == 0 || (!self.heal && pending < a.every) {
            return;
        }
        if self.fault(Fault::CreditLate) {
            let until = self.now + self.rng.range(1_000, 30_000);
            self.agentd.as_mut().expect("checked").hold_until = until;
            return;
        }
        self.push_grant(want);
        self.agentd.as_mut().expect("checked").granted = want;
        if self.fault(Fault::CreditLower) {
            let mut lower = want;
            let field = self.rng.below(4) as usize;
            let w = &mut lower[field / 2];
            if field.is_multiple_of(2) {
                w.bytes -= 1;
            } else {
                w.frames -= 1;
            }
            self.push_grant(lower);
        }
    }

    fn push_grant(&mut self, w: [Window; 2]) {
        let g = WorkloadTransportCredit {
            control_bytes: w[0].bytes,
            control_frames: w[0].frames,
            bulk_bytes: w[1].bytes,
            bulk_frames: w[1].frames,
        };
        self.guest.out.extend_from_slice(&frames::credit(V, &g));
    }

    /// Workload-control frames on `u32::MAX` (freeze and thaw replies, an
    /// error, a credit message that does not decode) and frames for ids
    /// nobody owns (0, a range boundary, the tail past the last slot).
    pub(super) fn agentd_noise(&mut self) {
        if !self.guest.ready_sent {
            return;
        }
        let out = &mut self.guest.out;
        let t = FLAG_TERMINAL;
        match self.rng.below(8) {
            0 => frames::push_raw(out, V, MsgType::WorkloadFrozen, u32::MAX, t, &[0xa0]),
            1 => frames::push_raw(out, V, MsgType::WorkloadThawed, u32::MAX, t, &[0xa0]),
            2 => frames::push_raw(
                out,
                V,
                MsgType::WorkloadTransportCredit,
                u32::MAX,
                0,
                &[0xa0],
            ),
            3 => frames::push_data(out, V, MsgType::ExecStdout, 0, 0, b"nobody"),
            4 => {
                let s = self.rng.range(1, 128) as u32;
                frames::push_data(out, V, MsgType::ExecStdout, s * STEP, 0, b"edge");
            }
            5 => {
                let id = 128 * STEP + self.rng.below(127) as u32;
                frames::push_raw(out, V, MsgType::Pong, id, t, &[0xa0]);
            }
            7 if self.agentd.as_ref().is_some_and(|a| a.lease) => {
                // An acknowledgement nobody awaits (the relay ignores it).
                let s = self.rng.below(128) as u32;
                let range = IdRange {
                    start: s * STEP + 1,
                    end: (s + 1) * STEP,
                };
                let mut inc = [0u8; 16];
                self.rng.fill(&mut inc);
                inc[0] |= 1;
                let ack = frames::lease_record(LeaseEvent::DisconnectedAck, range, inc);
                self.guest.out.extend_from_slice(&ack);
            }
            _ => frames::push_bulk(out, 0, 1, 2, 0, b"nobody"),
        }
    }
}

/// Whether the relay charged `frame`, handed to the guest, to control
/// credit: a lease record, or a frame neither a bulk record, nor of a data
/// type, nor an init ack (sent before ready, uncharged).
fn charged_control(frame: &[u8]) -> bool {
    if frame.get(9..13) == Some(b"MSBL") {
        return true;
    }
    if frame.get(PREFIX_LEN - 1) == Some(&0x08) {
        return false;
    }
    let t = frame
        .get(PREFIX_LEN..)
        .and_then(|body| peek_parts(body).ok())
        .and_then(|p| p.t);
    !matches!(
        t,
        Some(
            MsgType::InitAck
                | MsgType::ExecStdin
                | MsgType::FsData
                | MsgType::TcpData
                | MsgType::TcpEof
        )
    )
}

/// The slot whose canonical range is `[start, end)`, as agentd checks any
/// range the relay names (P7/transport.rs).
fn canonical_slot(start: u32, end: u32) -> Option<u32> {
    let s = start.wrapping_sub(1) / STEP;
    (s < 128 && start == s * STEP + 1 && end == (s + 1) * STEP).then_some(s)
}
