//! `inv_exec_log` (rules `whole_characters` and `exec_log_says_what_ran`,
//! with the tap on): the exec.log records say what the guest sent and what
//! ran, rebuilt here from the model's facts, per exec session.
//!
//! Sessions are numbered from 1 in the order the model opens exec sessions
//! (`Fact::ExecOpened`). For each session:
//!
//! - **Lifecycle**: its `system` records, in order, are exactly: a start
//!   (`exec started: ` ... ` (client slot N)`, N its client's slot) in the
//!   event that opened it; a kill (`exec killed` ...) in the event its
//!   client departed (`Fact::Departed`) while it was open, not killed, and
//!   the guest not gone; an end in the event its terminal frame reached the
//!   core (`exec exited with code C` for a `core.exec.exited` whose payload
//!   decodes, `exec failed to start` ... for `core.exec.failed`, `exec `
//!   ... otherwise), or, still open and not killed when the guest went away,
//!   `exec ended: the guest went away before it exited` in that event. No
//!   record of the session comes before its start or after its end.
//! - **Text**: each stream (stdout and stderr; a pty session's one `output`
//!   stream takes both) is the data of the session's output frames
//!   (`Fact::ExecFrame`) in order, decoded as `String::from_utf8_lossy`
//!   decodes the whole stream, except that an unfinished character at the
//!   stream's end waits for the next frame: after every event, the text of
//!   the stream's records (each decoded alone, as the writer does) equals
//!   the lossy decoding of the bytes so far minus such a tail; at the
//!   session's end the tail is written as U+FFFD. Record boundaries are not
//!   judged.
//!
//! Records without a session are only `--- sandbox started ---`, at most
//! once. A killed session whose end never comes keeps its tail (the tap
//! flushes only at an end).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use agent_relay::core::{Action, ClientId, Event, LogSource, SANDBOX_STARTED};
use agent_relay::wire::payload::{ExecExited, peek_data};
use agent_relay::wire::{FLAG_TERMINAL, MsgType, PREFIX_LEN, peek_parts};

use super::super::super::cbor;
use super::super::invariant::Invariant;
use super::super::model::{Fact, Model};
use super::{Check, Verdict};

/// The end record of a session still open when the guest went away
/// (docs/ARCHITECTURE.md, rule `exec_log_says_what_ran`).
const GUEST_GONE: &str = "exec ended: the guest went away before it exited";

/// A lifecycle record owed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Life {
    Start,
    Kill,
    /// An end: its exact text, or the prefix it must have.
    End(Want),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Exact(String),
    Prefix(&'static str),
}

/// One stream's text: bytes not yet decodable (an unfinished character),
/// the text owed and the text logged since they last agreed.
#[derive(Debug, Default)]
struct Text {
    raw: Vec<u8>,
    want: String,
    got: String,
}

impl Text {
    /// Appends output; the whole characters join the owed text.
    fn push(&mut self, data: &[u8]) {
        self.raw.extend_from_slice(data);
        let whole = self.raw.len() - unfinished(&self.raw);
        self.want
            .push_str(&String::from_utf8_lossy(&self.raw[..whole]));
        self.raw.drain(..whole);
    }

    /// The stream ended: what waits is not a character.
    fn finish(&mut self) {
        self.want.push_str(&String::from_utf8_lossy(&self.raw));
        self.raw.clear();
    }
}

/// How many bytes at the end of `raw` are an unfinished character: the
/// incomplete sequence a lossy decoder reaches the end of input inside.
fn unfinished(raw: &[u8]) -> usize {
    match raw.utf8_chunks().last() {
        Some(chunk)
            if std::str::from_utf8(chunk.invalid()).is_err_and(|e| e.error_len().is_none()) =>
        {
            chunk.invalid().len()
        }
        _ => 0,
    }
}

#[derive(Debug)]
struct Session {
    slot: usize,
    tty: bool,
    /// No more records owed: killed, or ended.
    killed: bool,
    ended: bool,
    /// Lifecycle records owed and not yet seen.
    owed: VecDeque<Life>,
    /// Its start record was logged / its end record was.
    logged_start: bool,
    logged_end: bool,
    /// stdout (or a pty's output), stderr.
    streams: [Text; 2],
}

/// A record the core logged in this event.
#[derive(Debug)]
struct Logged {
    session: Option<u64>,
    source: LogSource,
    text: String,
}

/// See the module docs.
#[derive(Debug)]
pub struct ExecLog {
    on: bool,
    /// Exec sessions opened so far.
    opened: u64,
    sessions: BTreeMap<u64, Session>,
    /// The number of each session by owner and id, while it may still log.
    by_id: BTreeMap<(ClientId, u32), u64>,
    /// The guest went away: the open sessions got their ends, kills log nothing.
    ended_all: bool,
    sandbox_started: bool,
    /// This event's records, in order.
    logged: Vec<Logged>,
    /// Sessions this event touched.
    touched: BTreeSet<u64>,
}

impl Check for ExecLog {
    const INVARIANT: Invariant = Invariant::ExecLog;
    const WANTS: u64 =
        Fact::EVENT | Fact::ACTION | Fact::DEPARTED | Fact::EXEC_OPENED | Fact::EXEC_FRAME;

    fn new(m: &Model) -> Self {
        ExecLog {
            on: m.cfg.exec_log,
            opened: 0,
            sessions: BTreeMap::new(),
            by_id: BTreeMap::new(),
            ended_all: false,
            sandbox_started: false,
            logged: Vec::new(),
            touched: BTreeSet::new(),
        }
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, _v: &mut Verdict) {
        if !self.on {
            return;
        }
        match *f {
            Fact::Action(Action::Log(r)) => {
                let mut text = String::new();
                let _ = write!(text, "{}", r.text);
                self.logged.push(Logged {
                    session: r.session,
                    source: r.source,
                    text,
                });
                self.touched.extend(r.session);
            }
            Fact::Event(Event::GuestClosed) if !self.ended_all => self.guest_gone(),
            Fact::ExecOpened { c, id, body } => {
                self.opened += 1;
                let n = self.opened;
                let tty = request_tty(body);
                self.sessions.insert(
                    n,
                    Session {
                        slot: m.client(c).slot,
                        tty,
                        killed: false,
                        ended: false,
                        owed: VecDeque::from([Life::Start]),
                        logged_start: false,
                        logged_end: false,
                        streams: Default::default(),
                    },
                );
                self.by_id.insert((c, id), n);
                self.touched.insert(n);
            }
            Fact::ExecFrame {
                c,
                id,
                t,
                flags,
                frame,
            } => self.frame(c, id, t, flags, &frame[PREFIX_LEN..]),
            Fact::Departed(c) if !self.ended_all => {
                let numbers: Vec<u64> = self
                    .by_id
                    .range((c, 0)..=(c, u32::MAX))
                    .map(|(_, &n)| n)
                    .collect();
                for n in numbers {
                    let s = self.sessions.get_mut(&n).expect("listed");
                    if !s.killed && !s.ended {
                        s.killed = true;
                        s.owed.push_back(Life::Kill);
                        self.touched.insert(n);
                    }
                }
            }
            _ => {}
        }
    }

    fn settled(&mut self, _m: &Model, v: &mut Verdict) {
        if !self.on || (self.logged.is_empty() && self.touched.is_empty()) {
            return;
        }
        let logged = std::mem::take(&mut self.logged);
        for r in &logged {
            if let Err(why) = self.record(r) {
                self.logged.clear();
                self.touched.clear();
                return v.fail::<Self>(why);
            }
        }
        let touched = std::mem::take(&mut self.touched);
        for n in touched {
            let Some(s) = self.sessions.get_mut(&n) else {
                continue;
            };
            if let Some(life) = s.owed.front() {
                return v.fail::<Self>(format!(
                    "session {n}: its {life:?} record is owed in this event, but none came"
                ));
            }
            for (k, t) in s.streams.iter_mut().enumerate() {
                if t.want != t.got {
                    let stream = match (s.tty, k) {
                        (true, _) => "output",
                        (false, 0) => "stdout",
                        (false, _) => "stderr",
                    };
                    return v.fail::<Self>(format!(
                        "session {n} {stream}: {}{}",
                        differ(&t.got, &t.want),
                        if t.raw.is_empty() {
                            String::new()
                        } else {
                            format!(" and the unfinished {:02x?}", t.raw)
                        }
                    ));
                }
                t.want.clear();
                t.got.clear();
            }
        }
    }
}

impl ExecLog {
    /// The guest went away: every session still open and not killed ends,
    /// its unfinished characters written first.
    fn guest_gone(&mut self) {
        self.ended_all = true;
        for (&n, s) in &mut self.sessions {
            if !s.killed && !s.ended {
                s.ended = true;
                s.streams.iter_mut().for_each(Text::finish);
                s.owed
                    .push_back(Life::End(Want::Exact(GUEST_GONE.to_owned())));
                self.touched.insert(n);
            }
        }
        self.by_id.clear();
    }

    /// A guest frame of an exec session: its output, and its end.
    fn frame(&mut self, c: ClientId, id: u32, t: Option<MsgType>, flags: u8, body: &[u8]) {
        let Some(&n) = self.by_id.get(&(c, id)) else {
            return;
        };
        let s = self.sessions.get_mut(&n).expect("by_id names sessions");
        self.touched.insert(n);
        let k = match t {
            Some(MsgType::ExecStdout) => Some(0),
            Some(MsgType::ExecStderr) => Some(if s.tty { 0 } else { 1 }),
            _ => None,
        };
        if let Some(k) = k
            && let Ok(parts) = peek_parts(body)
            && let Ok(data) = peek_data(&parts.payload)
        {
            s.streams[k].push(&data);
        }
        if flags & FLAG_TERMINAL != 0 {
            s.ended = true;
            s.streams.iter_mut().for_each(Text::finish);
            let want = match t {
                Some(MsgType::ExecExited) => peek_parts(body)
                    .ok()
                    .and_then(|p| cbor::payload::<ExecExited>(&p.payload))
                    .map_or(Want::Prefix("exec exited"), |e| {
                        Want::Exact(format!("exec exited with code {}", e.code))
                    }),
                Some(MsgType::ExecFailed) => Want::Prefix("exec failed to start"),
                _ => Want::Prefix("exec "),
            };
            s.owed.push_back(Life::End(want));
            self.by_id.remove(&(c, id));
        }
    }

    /// One record the core logged, judged in its place.
    fn record(&mut self, r: &Logged) -> Result<(), String> {
        let Some(n) = r.session else {
            if r.source != LogSource::System || r.text != SANDBOX_STARTED || self.sandbox_started {
                return Err(format!(
                    "a {} record without a session: {}",
                    r.source.as_str(),
                    show(&r.text)
                ));
            }
            self.sandbox_started = true;
            return Ok(());
        };
        let Some(s) = self.sessions.get_mut(&n) else {
            return Err(format!(
                "a {} record of session {n}, which was never opened ({} exec sessions so far): {}",
                r.source.as_str(),
                self.opened,
                show(&r.text)
            ));
        };
        let k = match (r.source, s.tty) {
            (LogSource::System, _) => return system(n, s, &r.text),
            (LogSource::Output, true) | (LogSource::Stdout, false) => 0,
            (LogSource::Stderr, false) => 1,
            (source, tty) => {
                return Err(format!(
                    "session {n} (tty {tty}): a {} record",
                    source.as_str()
                ));
            }
        };
        if !s.logged_start || s.logged_end {
            return Err(format!(
                "session {n}: a {} record {} its {}: {}",
                r.source.as_str(),
                if s.logged_end { "after" } else { "before" },
                if s.logged_end { "end" } else { "start" },
                show(&r.text)
            ));
        }
        s.streams[k].got.push_str(&r.text);
        Ok(())
    }
}

/// A session's `system` record against the next lifecycle record it owes.
fn system(n: u64, s: &mut Session, text: &str) -> Result<(), String> {
    let Some(life) = s.owed.pop_front() else {
        return Err(format!(
            "session {n}: a system record none was owed: {}",
            show(text)
        ));
    };
    let ok = match &life {
        Life::Start => {
            let slot = format!(" (client slot {})", s.slot);
            s.logged_start = true;
            text.starts_with("exec started: ") && text.ends_with(&slot)
        }
        Life::Kill => text.starts_with("exec killed"),
        Life::End(want) => {
            s.logged_end = true;
            match want {
                Want::Exact(w) => text == w,
                Want::Prefix(p) => {
                    text.starts_with(p)
                        && !text.starts_with("exec started")
                        && !text.starts_with("exec killed")
                }
            }
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "session {n}: its {life:?} record (slot {}) is owed, but the record says {}",
            s.slot,
            show(text)
        ))
    }
}

/// An exec request's `tty` (false when its payload does not say).
fn request_tty(body: &[u8]) -> bool {
    match cbor::envelope(body) {
        Some((_, p)) => cbor::exec_request_tty(&p),
        None => peek_parts(body)
            .ok()
            .and_then(|p| cbor::exec_request_tty(&p.payload)),
    }
    .unwrap_or(false)
}

/// Text for a report: its length and at most 120 characters of it.
fn show(text: &str) -> String {
    let n = text.chars().count();
    let head: String = text.chars().take(120).collect();
    let more = if n > 120 { "..." } else { "" };
    format!("{n} chars {head:?}{more}")
}

/// Where the logged text first differs from the owed text.
fn differ(got: &str, want: &str) -> String {
    let same = got
        .chars()
        .zip(want.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let from = same.saturating_sub(8);
    let tail = |t: &str| t.chars().skip(from).take(24).collect::<String>();
    format!(
        "the records say {} chars, the guest sent {}; they differ at char {same}: logged {:?}, sent {:?}",
        got.chars().count(),
        want.chars().count(),
        tail(got),
        tail(want)
    )
}
