//! The guest agent model: it boots and sends `core.ready`, reads the frames
//! the relay hands it (honouring the window the core keeps), starts exec and
//! fs sessions, produces their output and exits, reacts to signals, and
//! injects the guest-side faults (noise, corruption, stray and late frames,
//! stalls, bursts). It sees the relay only through core events.

use std::collections::{BTreeMap, VecDeque};

use agent_relay::core::{Event, Millis};
use agent_relay::wire::payload::{ExecFailed, ExecFailureKind, ExecSignal, ExecStarted, peek_data};
use agent_relay::wire::{FLAG_TERMINAL, LEGACY_VERSION, MsgType, PREFIX_LEN, peek_envelope};
use bytes::Bytes;

use super::super::cbor;
use super::super::current::Window;
use super::World;
use super::faults::Fault;
use agent_relay::testkit::frames;

/// Exec output as text: characters of one to four bytes, so the exec.log
/// tap splits some; as long as the longest burst. Each stream of a session
/// reads on where its last frame stopped (`GuestSession::text_at`), so a
/// character cut at a frame's end is completed by the stream's next frame.
static TEXT: [u8; 64 << 10] = text();

const fn text() -> [u8; 64 << 10] {
    let unit = "ab\u{e9} \u{20ac}\u{1f600}\n".as_bytes();
    let mut out = [0; 64 << 10];
    let mut i = 0;
    while i < out.len() {
        out[i] = unit[i % unit.len()];
        i += 1;
    }
    out
}

#[derive(Debug, Default)]
pub(super) struct GuestSession {
    pub(super) exec: bool,
    pub(super) tty: bool,
    pub(super) left: u32,
    pub(super) killed: bool,
    /// Current: a tcp connection (neither exec nor fs).
    pub(super) tcp: bool,
    /// Current: it never reads its stdin; the data credit of what it was
    /// sent stays held until it ends.
    pub(super) stuck: bool,
    /// Current: data bytes and frames it holds.
    pub(super) held: (u64, u64),
    /// Current: the offset of its next bulk record.
    pub(super) offset: u64,
    /// Where its stdout and its stderr go on in `TEXT`.
    pub(super) text_at: [usize; 2],
}

/// The guest agent model.
#[derive(Debug, Default)]
pub(super) struct Guest {
    pub(super) out: Vec<u8>,
    pub(super) pos: usize,
    pub(super) inflight: VecDeque<Bytes>,
    /// Bytes of the front in-flight frame already written.
    pub(super) head_off: usize,
    pub(super) inflight_len: usize,
    pub(super) sessions: BTreeMap<u32, GuestSession>,
    pub(super) ready_at: Millis,
    pub(super) ready_sent: bool,
    pub(super) stalled_until: Millis,
    pub(super) pid: u32,
    /// The `v` it writes: 1, or 10 for a current guest.
    pub(super) v: u8,
    /// Input consumed since ready, per credit class (control, data): what
    /// a guest with input credit grants back.
    pub(super) consumed: [Window; 2],
}

impl Guest {
    pub(super) fn pending(&self) -> usize {
        self.out.len() - self.pos
    }

    /// It speaks the current generation (agentd).
    pub(super) fn current(&self) -> bool {
        self.v >= 2
    }
}

impl World {
    pub(super) fn guest_send(&mut self) {
        if !self.guest.ready_sent && (self.now >= self.guest.ready_at || self.heal) {
            self.guest_boot();
            self.guest.ready_sent = true;
        }
        self.guest_grant();
        let pending = self.guest.pending();
        // Backpressure: while the core has the guest paused, whatever the
        // guest wrote (faults included) waits in its own buffer.
        if pending == 0 || self.guest_paused {
            return;
        }
        let n = if self.heal {
            pending.min(64 << 10)
        } else if self.fault(Fault::TinyChunks) {
            self.rng.range_usize(1, 16).min(pending)
        } else {
            self.rng.range_usize(1, pending.min(16 << 10))
        };
        // Fed straight from the guest's buffer: performing the core's
        // actions never writes to it.
        let start = self.guest.pos;
        let out = std::mem::take(&mut self.guest.out);
        self.feed(Event::GuestBytes(&out[start..start + n]));
        self.guest.out = out;
        self.guest.pos += n;
        if self.guest.pos == self.guest.out.len() {
            self.guest.out.clear();
            self.guest.pos = 0;
        } else if self.guest.pos > (1 << 20) {
            self.guest.out.drain(..self.guest.pos);
            self.guest.pos = 0;
        }
    }

    pub(super) fn guest_read(&mut self) {
        if self.guest.inflight_len == 0 || self.now < self.guest.stalled_until {
            return;
        }
        if self.fault(Fault::GuestStall) {
            self.guest.stalled_until = self.now + self.rng.range(10, 500);
            return;
        }
        let total = self.guest.inflight_len;
        let n = if self.heal || self.rng.chance(500) {
            total
        } else {
            self.rng.range_usize(1, total)
        };
        self.guest.inflight_len -= n;
        let mut left = n;
        let mut whole = Vec::new();
        while left > 0 {
            let front = self
                .guest
                .inflight
                .front()
                .expect("inflight_len counts these");
            let rest = front.len() - self.guest.head_off;
            if left >= rest {
                left -= rest;
                self.guest.head_off = 0;
                whole.push(self.guest.inflight.pop_front().expect("just seen"));
            } else {
                self.guest.head_off += left;
                left = 0;
            }
        }
        self.feed(Event::GuestWritten(n));
        for frame in whole {
            self.guest_receive(&frame);
        }
    }

    /// A legacy guest boots: noise for ids nobody owns (if the swarm says
    /// so), then ready.
    pub(super) fn legacy_boot(&mut self) {
        if self.fault(Fault::GuestNoise) {
            for _ in 0..self.rng.range(1, 4) {
                let id = self.rng.next_u64() as u32;
                let out = &mut self.guest.out;
                frames::push_data(out, LEGACY_VERSION, MsgType::ExecStdout, id, 0, b"boot");
            }
        }
        let boot = self.rng.next_u64() >> 20;
        self.guest
            .out
            .extend_from_slice(&frames::ready(LEGACY_VERSION, boot));
    }

    /// A whole frame the guest read (`id` from its header) reaches a legacy
    /// guest's loop.
    pub(super) fn legacy_receive(&mut self, id: u32, frame: &[u8]) {
        let Ok(env) = peek_envelope(&frame[PREFIX_LEN..]) else {
            return;
        };
        match env.t {
            MsgType::ExecRequest => self.on_exec_request(id, &env.payload),
            MsgType::ExecStdin => self.on_stdin(id, &env.payload),
            MsgType::ExecSignal => self.on_signal(id, &env.payload),
            MsgType::FsRequest => {
                let left = if self.heal {
                    0
                } else {
                    self.rng.range(0, 4) as u32
                };
                self.guest.sessions.insert(
                    id,
                    GuestSession {
                        left,
                        ..GuestSession::default()
                    },
                );
            }
            _ => {}
        }
    }

    /// One exec request in twenty fails (not while healing); the others start.
    pub(super) fn on_exec_request(&mut self, id: u32, payload: &[u8]) {
        let tty = cbor::exec_request_tty(payload).unwrap_or(false);
        self.guest.pid += 1;
        if !self.heal && self.rng.chance(50) {
            let failed = ExecFailed {
                kind: ExecFailureKind::NotFound,
                errno: Some(2),
                errno_name: Some("ENOENT".into()),
                message: "no such file".into(),
                stage: None,
            };
            let f = frames::frame(self.guest.v, MsgType::ExecFailed, id, &failed);
            self.guest.out.extend_from_slice(&f);
            self.guest.sessions.remove(&id);
            return;
        }
        let pid = self.guest.pid;
        let started = frames::frame(self.guest.v, MsgType::ExecStarted, id, &ExecStarted { pid });
        self.guest.out.extend_from_slice(&started);
        let left = if self.heal {
            1
        } else {
            self.rng.size(30) as u32
        };
        let session = GuestSession {
            exec: true,
            tty,
            left,
            ..GuestSession::default()
        };
        self.guest.sessions.insert(id, session);
        if self.guest.current() && self.fault(Fault::StuckStdin) {
            let s = self.guest.sessions.get_mut(&id).expect("just inserted");
            s.stuck = true;
        }
    }

    /// A live exec session echoes three stdin frames in ten.
    pub(super) fn on_stdin(&mut self, id: u32, payload: &[u8]) {
        if self
            .guest
            .sessions
            .get(&id)
            .is_some_and(|s| s.exec && !s.killed)
            && self.rng.chance(300)
            && let Ok(data) = peek_data(payload)
        {
            let (out, v) = (&mut self.guest.out, self.guest.v);
            frames::push_data(out, v, MsgType::ExecStdout, id, 0, &data);
        }
    }

    /// KILL (and half the TERMs) end a live exec session, after one to five
    /// late output frames when the swarm says so. A current guest's exit
    /// comes later, when the session's turn comes (a killed process's exit
    /// reaches agentd's loop after the signal; a disconnect notice read
    /// before it deletes the session, and the exit never comes).
    pub(super) fn on_signal(&mut self, id: u32, payload: &[u8]) {
        let Some(sig) = cbor::payload::<ExecSignal>(payload) else {
            return;
        };
        let late = self.fault(Fault::GuestLate);
        let extra = if late { self.rng.range(1, 5) as u32 } else { 0 };
        if let Some(s) = self.guest.sessions.get_mut(&id)
            && s.exec
            && !s.killed
            && (sig.signal == 9 || (sig.signal == 15 && self.rng.chance(500)))
        {
            s.killed = true;
            s.left = extra;
            if extra == 0 && !self.guest.current() {
                let s = self.guest.sessions.remove(&id).expect("matched");
                let exited = frames::exited(self.guest.v, id, 128 + sig.signal);
                self.guest.out.extend_from_slice(&exited);
                self.release_held(s.held);
            }
        }
    }

    /// One step of the guest's sessions (every session once when healed):
    /// a session picked at random produces output, or ends when it has none
    /// left.
    pub(super) fn guest_work(&mut self) {
        let n = self.guest.sessions.len();
        if n == 0 {
            return;
        }
        let rounds = if self.heal { n } else { 1 };
        for _ in 0..rounds {
            let k = self.rng.below(self.guest.sessions.len() as u64) as usize;
            let Some(&id) = self.guest.sessions.keys().nth(k) else {
                return;
            };
            if self.fault(Fault::GuestCorrupt) {
                let len = self.rng.range_usize(1, 40);
                let at = self.guest.out.len();
                self.guest.out.resize(at + len, 0);
                self.rng.fill(&mut self.guest.out[at..]);
                self.guest.out[at] = 0xff;
            }
            let s = self.guest.sessions.get_mut(&id).expect("picked above");
            if s.left > 0 {
                s.left -= 1;
                let (exec, tty) = (s.exec, s.tty);
                self.session_output(id, exec, tty);
            } else {
                self.guest_end(id);
            }
        }
    }

    /// One output frame of session `id`: exec output, or fs data.
    pub(super) fn guest_output(&mut self, id: u32, exec: bool, tty: bool) {
        let (t, k) = match (exec, tty) {
            (false, _) => (MsgType::FsData, 0),
            (true, true) => (MsgType::ExecStdout, 0),
            (true, false) if self.rng.chance(700) => (MsgType::ExecStdout, 0),
            (true, false) => (MsgType::ExecStderr, 1),
        };
        let size = if self.fault(Fault::Burst) {
            self.rng.range_usize(1 << 10, 64 << 10)
        } else {
            self.rng.size(300)
        };
        // One payload in ten is random bytes (invalid UTF-8 for the tap);
        // real exec output is mostly text.
        let (out, v) = (&mut self.guest.out, self.guest.v);
        if self.rng.chance(100) {
            self.scratch.clear();
            self.scratch.resize(size, 0);
            self.rng.fill(&mut self.scratch);
            frames::push_data(out, v, t, id, 0, &self.scratch);
        } else {
            // The stream reads on: a character its last frame cut is
            // completed, one this frame cuts waits for the next (or ends the
            // session unfinished).
            let mut none = 0;
            let at = match self.guest.sessions.get_mut(&id) {
                Some(s) => &mut s.text_at[k],
                None => &mut none,
            };
            if *at + size > TEXT.len() {
                *at = 0;
            }
            let start = *at;
            *at += size;
            let out = &mut self.guest.out;
            frames::push_data(out, v, t, id, 0, &TEXT[start..start + size]);
        }
    }

    /// Session `id` ends: its exit (137 if it was killed) or fs response.
    fn guest_end(&mut self, id: u32) {
        let s = self.guest.sessions.remove(&id).expect("open session");
        let v = self.guest.v;
        if s.exec {
            let code = if s.killed { 137 } else { 0 };
            self.guest
                .out
                .extend_from_slice(&frames::exited(v, id, code));
        } else if s.tcp {
            let out = &mut self.guest.out;
            frames::push_raw(out, v, MsgType::TcpClosed, id, FLAG_TERMINAL, &[0xa0]);
        } else {
            frames::push_raw(
                &mut self.guest.out,
                v,
                MsgType::FsResponse,
                id,
                FLAG_TERMINAL,
                &[0xa1, 0x62, b'o', b'k', 0xf5],
            );
        }
        self.release_held(s.held);
    }

    /// A session ended: the data it held is consumed at last.
    pub(super) fn release_held(&mut self, held: (u64, u64)) {
        self.guest.consumed[1].bytes += held.0;
        self.guest.consumed[1].frames += held.1;
    }

    pub(super) fn guest_stray(&mut self) {
        let id = self.rng.next_u64() as u32;
        let flags = if self.rng.chance(300) {
            FLAG_TERMINAL
        } else {
            0
        };
        frames::push_data(
            &mut self.guest.out,
            self.guest.v,
            MsgType::ExecStdout,
            id,
            flags,
            b"stray",
        );
    }
}
