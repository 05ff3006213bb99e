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
//!   (`Fact::ExecFrame`) in order. The records hold those bytes (the writer
//!   decodes them) and the text they decode to, each record alone, is the
//!   stream's lossy UTF-8 (`String::from_utf8_lossy` of the whole stream),
//!   but that an unfinished character at the stream's end waits for the
//!   next frame and is U+FFFD at the session's end. Judged after every
//!   event, without decoding: the records' bytes so far equal the stream's
//!   bytes less such a tail (the tail written as the bytes of U+FFFD once
//!   the session ended), and where a record ends in an incomplete sequence
//!   the stream's next byte does not continue it (there too it is one
//!   invalid sequence), so each record decodes alone as the stream does.
//!   Record boundaries are not judged otherwise.
//!
//! Records without a session are only `--- sandbox started ---`, at most
//! once. A killed session whose end never comes keeps its tail (the tap
//! flushes only at an end).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use agent_relay::core::{Action, ClientId, Event, LogRecord, LogSource, SANDBOX_STARTED};
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

/// The text an end record must have.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Exact(String),
    Prefix(&'static str),
}

/// One stream's bytes: the guest's not yet matched by records (an
/// unfinished character at the end waits there), and the records' since
/// they last agreed, with where a record ended in an incomplete sequence
/// (its end in `got`, and the sequence's length).
#[derive(Debug, Default)]
struct Text {
    want: Vec<u8>,
    got: Vec<u8>,
    cuts: Vec<(usize, usize)>,
}

impl Text {
    /// The stream ended: an unfinished character at its end is written as
    /// U+FFFD.
    fn finish(&mut self) {
        let k = unfinished(&self.want);
        if k > 0 {
            self.want.truncate(self.want.len() - k);
            self.want.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }

    /// The records so far hold what the guest sent, but for an unfinished
    /// character at its end, and decode alone as the stream does: where a
    /// record ends in an incomplete sequence, the stream's next byte does
    /// not continue it (it is one invalid sequence there too). What agreed
    /// is forgotten.
    fn agrees(&mut self) -> Result<(), String> {
        let whole = self.want.len() - unfinished(&self.want);
        if self.got[..] != self.want[..whole] {
            return Err(differ(&self.got, &self.want[..whole]));
        }
        for &(end, k) in &self.cuts {
            let seq = &self.want[end - k..(end - k + 4).min(self.want.len())];
            let alone = std::str::from_utf8(seq)
                .is_err_and(|e| e.valid_up_to() == 0 && e.error_len() == Some(k));
            if !alone {
                return Err(format!(
                    "a record ends inside a character: {:02x?} and the stream goes on {:02x?}",
                    &seq[..k],
                    &seq[k..]
                ));
            }
        }
        self.want.drain(..whole);
        self.got.clear();
        self.cuts.clear();
        Ok(())
    }
}

/// How many bytes at the end of `bytes` are an unfinished character: an
/// incomplete sequence (one more bytes could complete, as `Utf8Error`
/// tells it from an invalid one) the input ends inside. Such a sequence is
/// at most three bytes and begins with a lead byte, where decoding starts
/// afresh, so the last four bytes tell.
fn unfinished(bytes: &[u8]) -> usize {
    let mut rest = &bytes[bytes.len().saturating_sub(4)..];
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => return 0,
            Err(e) => match e.error_len() {
                None => return rest.len() - e.valid_up_to(),
                Some(n) => rest = &rest[e.valid_up_to() + n..],
            },
        }
    }
}

/// One exec session, by what the model reported and what the core logged.
#[derive(Debug)]
struct Session {
    /// Its client's slot.
    slot: usize,
    /// A pty session: one `output` stream.
    tty: bool,
    /// Its kill record is owed (or came).
    killed: bool,
    /// Its end record is owed (or came): nothing more of it is logged.
    ended: bool,
    /// Lifecycle records owed and not yet seen.
    owed: VecDeque<Life>,
    /// Its start record came.
    logged_start: bool,
    /// A record that looks like its end came.
    logged_end: bool,
    /// stdout (or a pty's output), stderr.
    streams: [Text; 2],
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
    /// This event's `system` records of sessions, in order: judged against
    /// what the event owes once it is settled.
    systems: Vec<(u64, String)>,
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
            systems: Vec::new(),
            touched: BTreeSet::new(),
        }
    }

    fn on_fact(&mut self, m: &Model, f: &Fact<'_>, v: &mut Verdict) {
        if !self.on {
            return;
        }
        match *f {
            Fact::Action(Action::Log(r)) => {
                if let Err(why) = self.record(r) {
                    v.fail::<Self>(why);
                }
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
        if !self.on || self.touched.is_empty() {
            return;
        }
        let systems = std::mem::take(&mut self.systems);
        for (n, text) in &systems {
            let s = self.sessions.get_mut(n).expect("judged when logged");
            if let Err(why) = system(*n, s, text) {
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
                if let Err(why) = t.agrees() {
                    let stream = match (s.tty, k) {
                        (true, _) => "output",
                        (false, 0) => "stdout",
                        (false, _) => "stderr",
                    };
                    return v.fail::<Self>(format!(
                        "session {n} {stream}: {why}{}",
                        match unfinished(&t.want) {
                            0 => String::new(),
                            k => format!(
                                ", and an unfinished {:02x?} waits",
                                &t.want[t.want.len() - k..]
                            ),
                        }
                    ));
                }
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
            s.streams[k].want.extend_from_slice(&data);
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

    /// One record the core logged, judged in its place: a session's
    /// `system` record waits for the event's end (what it owes may be
    /// reported later), its output joins the stream's logged text.
    fn record(&mut self, r: &LogRecord) -> Result<(), String> {
        let text = || r.text.to_string();
        let Some(n) = r.session else {
            let text = text();
            if r.source != LogSource::System || text != SANDBOX_STARTED || self.sandbox_started {
                return Err(format!(
                    "a {} record without a session: {}",
                    r.source.as_str(),
                    show(&text)
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
                show(&text())
            ));
        };
        self.touched.insert(n);
        let k = match (r.source, s.tty) {
            (LogSource::System, _) => {
                let text = text();
                if text.starts_with("exec started") {
                    s.logged_start = true;
                } else if !text.starts_with("exec killed") {
                    s.logged_end = true;
                }
                self.systems.push((n, text));
                return Ok(());
            }
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
                show(&text())
            ));
        }
        // The writer decodes each record alone: where one ends in an
        // incomplete sequence, the stream must not continue it.
        let bytes = r.text.joined();
        let t = &mut s.streams[k];
        t.got.extend_from_slice(&bytes);
        let cut = unfinished(&bytes);
        if cut > 0 {
            t.cuts.push((t.got.len(), cut));
        }
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
            text.starts_with("exec started: ") && text.ends_with(&slot)
        }
        Life::Kill => text.starts_with("exec killed"),
        Life::End(want) => match want {
            Want::Exact(w) => text == w,
            Want::Prefix(p) => {
                text.starts_with(p)
                    && !text.starts_with("exec started")
                    && !text.starts_with("exec killed")
            }
        },
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

/// Where the logged bytes first differ from the owed ones, decoded.
fn differ(got: &[u8], want: &[u8]) -> String {
    let same = got.iter().zip(want).take_while(|(a, b)| a == b).count();
    // Back to a character's start, so the excerpt decodes as the stream.
    let mut from = same.saturating_sub(12);
    while from > 0 && want.get(from).is_some_and(|b| b & 0xc0 == 0x80) {
        from -= 1;
    }
    let near = |b: &[u8]| {
        String::from_utf8_lossy(&b[from.min(b.len())..(same + 24).min(b.len())]).into_owned()
    };
    format!(
        "the records hold {} bytes, the guest sent {}; they differ at byte {same}: logged {:?}, sent {:?}",
        got.len(),
        want.len(),
        near(got),
        near(want)
    )
}

#[cfg(test)]
mod tests {
    use super::{Text, unfinished};

    #[test]
    fn exec_log_unfinished_is_an_incomplete_sequence_at_the_end() {
        assert_eq!(unfinished(b""), 0);
        assert_eq!(unfinished("a\u{20ac}".as_bytes()), 0);
        assert_eq!(unfinished(&[b'a', 0xe2, 0x82]), 2);
        assert_eq!(unfinished(&[0xf0, 0x9f, 0x98]), 3);
        assert_eq!(unfinished(&[0xe2, 0x28]), 0, "invalid, not unfinished");
        assert_eq!(unfinished(&[0x9f, 0x98, 0x80, 0xe2]), 1);
        assert_eq!(unfinished(&[0xf0, 0x9f, 0x98, 0x80]), 0);
        assert_eq!(unfinished(&[0xff]), 0);
    }

    fn text(want: &[u8], records: &[&[u8]]) -> Text {
        let mut t = Text {
            want: want.to_vec(),
            ..Text::default()
        };
        for r in records {
            t.got.extend_from_slice(r);
            let cut = unfinished(r);
            if cut > 0 {
                t.cuts.push((t.got.len(), cut));
            }
        }
        t
    }

    /// A record may end in an incomplete sequence the stream does not
    /// continue (it decodes to the same U+FFFD), never in one it does.
    #[test]
    fn exec_log_records_decode_alone_as_the_stream() {
        assert!(text(&[0xdd, 0xf0, 0x9f, 0x98], &[&[0xdd]]).agrees().is_ok());
        assert!(
            text(&[0xf0, 0x9f, 0x98, 0x80], &[&[0xf0, 0x9f, 0x98], &[0x80]])
                .agrees()
                .is_err()
        );
        assert!(
            text(&[0xf0, 0x9f, 0x41], &[&[0xf0], &[0x9f, 0x41]])
                .agrees()
                .is_err()
        );
        let mut t = text(&[b'a', 0xe2, 0x82], &[b"a"]);
        assert!(t.agrees().is_ok(), "the unfinished tail waits");
        assert_eq!(t.want, [0xe2, 0x82]);
        t.finish();
        t.got.extend_from_slice("\u{FFFD}".as_bytes());
        assert!(t.agrees().is_ok(), "and ends as U+FFFD");
    }
}
