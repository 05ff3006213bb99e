//! Rule `whole_characters`: the exec.log tap turns exec output into text
//! records without ever splitting a UTF-8 character. Each session stream
//! keeps at most three bytes of an unfinished character until the next frame
//! of that stream completes it; a session's end flushes what is left as
//! U+FFFD. Output that continues the record being built (same session, same
//! stream) within one event is appended to it, so a burst of small frames
//! read in one batch costs one record.
//!
//! Rule `exec_log_says_what_ran`: a `system` record marks each exec session's
//! start (its number, command and arguments, the client's slot) and its end:
//! exit code, start failure, killed because its client left, or, for a
//! session still open when the guest went away ([`Event::GuestClosed`]) or
//! the relay stopped ([`Relay::stopping`]), `exec ended:` and why. Every
//! start is matched by an end.
//!
//! [`Event::GuestClosed`]: super::Event::GuestClosed
//! [`Relay::stopping`]: super::Relay::stopping
//!
//! The tap never changes what is routed.

use std::borrow::Cow;
use std::collections::VecDeque;

use bytes::Bytes;

use super::guest::GuestFrame;
use super::logtext::{LogText, Stream};
use super::sessions::{CorrKind, Correlation};
use super::types::{Action, LogRecord, LogSource};
use crate::wire::payload::{ExecExited, ExecFailed, ExecRequest, decode_payload, peek_data};
use crate::wire::{FLAG_TERMINAL, MsgType, peek_envelope};

/// The exec.log marker written when the guest becomes ready.
pub const SANDBOX_STARTED: &str = "--- sandbox started ---";

/// The end record of a session still open when the guest went away.
pub const ENDED_GUEST_GONE: &str = "exec ended: the guest went away before it exited";

/// The end record of a session still open when the relay stopped.
pub const ENDED_RELAY_STOPPED: &str = "exec ended: the relay stopped before it exited";

/// The tap: on or off, and the record being built during one event.
#[derive(Debug)]
pub(crate) struct Tap {
    on: bool,
    /// Flushed into the actions when another record begins and at the end of
    /// every event.
    pending: Option<LogRecord>,
    /// Every open session got its end record (the guest went away or the
    /// relay stopped): the kills that follow say nothing more.
    ended_all: bool,
}

impl Tap {
    pub fn new(on: bool) -> Tap {
        Tap {
            on,
            pending: None,
            ended_all: false,
        }
    }

    /// The guest became ready.
    pub fn sandbox_started(&mut self, actions: &mut VecDeque<Action>) {
        self.system(actions, None, SANDBOX_STARTED.to_owned());
    }

    /// An exec session opened: what runs, for whom.
    pub fn exec_started(
        &mut self,
        actions: &mut VecDeque<Action>,
        number: u64,
        req: &ExecRequest,
        slot: usize,
    ) {
        if self.on {
            let mut text = format!("exec started: {}", quote(&req.cmd));
            for a in &req.args {
                text.push(' ');
                text.push_str(&quote(a));
            }
            text.push_str(&format!(" (client slot {slot})"));
            self.system(actions, Some(number), text);
        }
    }

    /// An exec session's client left and the relay killed it. Nothing when
    /// the session already got its end record (the guest went away: every
    /// client departs, and no SIGKILL reaches anybody).
    pub fn exec_killed(&mut self, actions: &mut VecDeque<Action>, number: u64) {
        if self.ended_all {
            return;
        }
        self.system(
            actions,
            Some(number),
            "exec killed: its client left (SIGKILL sent)".to_owned(),
        );
    }

    fn system(&mut self, actions: &mut VecDeque<Action>, session: Option<u64>, text: String) {
        if self.on {
            self.flush(actions);
            actions.push_back(Action::Log(LogRecord {
                session,
                source: LogSource::System,
                text: LogText::from(text),
            }));
        }
    }

    /// A guest frame of `corr`: its output becomes record text (whole
    /// characters only); its terminal frame flushes unfinished characters and
    /// says how the session ended.
    #[inline]
    pub fn guest_frame(
        &mut self,
        actions: &mut VecDeque<Action>,
        corr: &mut Correlation,
        f: &GuestFrame,
    ) {
        if let (CorrKind::Exec { tty }, true) = (corr.kind, self.on) {
            self.exec_frame(actions, corr, tty, f);
        }
    }

    fn exec_frame(
        &mut self,
        actions: &mut VecDeque<Action>,
        corr: &mut Correlation,
        tty: bool,
        f: &GuestFrame,
    ) {
        let number = corr.number;
        let source = |stream| match (tty, stream) {
            (true, _) => LogSource::Output,
            (false, Stream::Stdout) => LogSource::Stdout,
            (false, Stream::Stderr) => LogSource::Stderr,
        };
        let stream = match f.t {
            Some(MsgType::ExecStdout) => Some(Stream::Stdout),
            Some(MsgType::ExecStderr) => Some(Stream::Stderr),
            _ => None,
        };
        if let Some(stream) = stream
            && let Some(out) = output_data(f)
        {
            let (data, within) = match &out {
                Output::InFrame(d) => (*d, f.frame.as_bytes()),
                Output::Decoded(b) => (&b[..], b),
            };
            if !data.is_empty() {
                // A pty session has one stream; it keeps one carry.
                let carry = if tty { Stream::Stdout } else { stream };
                let text = self.record_text(actions, number, source(stream));
                corr.carries.of(carry).push_into(data, Some(within), text);
            }
        }
        if f.frame.flags() & FLAG_TERMINAL != 0 {
            for stream in [Stream::Stdout, Stream::Stderr] {
                if corr.carries.of(stream).is_carrying() {
                    let text = self.record_text(actions, number, source(stream));
                    corr.carries.of(stream).finish(text);
                }
            }
            self.system(actions, Some(number), ending(f));
        }
    }

    /// Every exec session still `open` and not killed gets its end record,
    /// `why`, in session order, its unfinished characters flushed as U+FFFD
    /// first: the guest went away (the departures that follow kill nothing
    /// that could still answer, so they log nothing) or the relay is
    /// stopping. A second call logs nothing.
    pub fn end_open<'a>(
        &mut self,
        actions: &mut VecDeque<Action>,
        open: impl Iterator<Item = &'a mut Correlation>,
        why: &str,
    ) {
        if self.ended_all {
            return;
        }
        self.ended_all = true;
        if !self.on {
            return;
        }
        let mut open: Vec<(u64, &mut Correlation)> = open.map(|c| (c.number, c)).collect();
        open.sort_by_key(|(number, _)| *number);
        for (number, corr) in open {
            let tty = matches!(corr.kind, CorrKind::Exec { tty: true });
            let stdout = if tty {
                LogSource::Output
            } else {
                LogSource::Stdout
            };
            for (stream, source) in [
                (Stream::Stdout, stdout),
                (Stream::Stderr, LogSource::Stderr),
            ] {
                if corr.carries.of(stream).is_carrying() {
                    let text = self.record_text(actions, number, source);
                    corr.carries.of(stream).finish(text);
                }
            }
            self.system(actions, Some(number), why.to_owned());
        }
    }

    /// The event is over: the record being built is queued.
    pub fn flush(&mut self, actions: &mut VecDeque<Action>) {
        if let Some(record) = self.pending.take() {
            emit(actions, record);
        }
    }

    /// The text of the record that output of `session`'s `source` goes into:
    /// the pending record if it continues it, else a new one (the finished
    /// one, if it holds anything, is queued).
    fn record_text(
        &mut self,
        actions: &mut VecDeque<Action>,
        session: u64,
        source: LogSource,
    ) -> &mut LogText {
        let continues =
            matches!(&self.pending, Some(r) if r.session == Some(session) && r.source == source);
        if !continues && let Some(done) = self.pending.take() {
            emit(actions, done);
        }
        let record = self.pending.get_or_insert_with(|| LogRecord {
            session: Some(session),
            source,
            text: LogText::new(),
        });
        &mut record.text
    }
}

/// Hands a finished output record over, its buffer no larger than its text
/// (what the writer's queue counts).
fn emit(actions: &mut VecDeque<Action>, mut record: LogRecord) {
    if !record.text.is_empty() {
        record.text.shrink_to_fit();
        actions.push_back(Action::Log(record));
    }
}

/// How a session's terminal frame says it ended.
fn ending(f: &GuestFrame) -> String {
    let payload = f.payload_bytes();
    let payload = payload.as_deref().unwrap_or_default();
    match f.t {
        Some(MsgType::ExecExited) => match decode_payload::<ExecExited>(payload) {
            Ok(e) => format!("exec exited with code {}", e.code),
            Err(_) => "exec exited".to_owned(),
        },
        Some(MsgType::ExecFailed) => match decode_payload::<ExecFailed>(payload) {
            Ok(e) => format!("exec failed to start: {:?}: {}", e.kind, e.message),
            Err(_) => "exec failed to start".to_owned(),
        },
        Some(t) => format!("exec ended by {t}"),
        None => "exec ended".to_owned(),
    }
}

/// An argument as a shell would need it to read it back.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `data` bytes of an output frame: a slice of the frame itself where
/// the first peek found the payload and it is canonical (no copy), else from
/// a second, full look.
fn output_data(f: &GuestFrame) -> Option<Output<'_>> {
    let body = f.frame.body();
    let data = match &f.payload {
        Some(range) => peek_data(&body[range.clone()]).ok()?,
        None => {
            let env = peek_envelope(body).ok()?;
            let data = peek_data(&env.payload).ok()?.into_owned();
            return Some(Output::Decoded(Bytes::from(data)));
        }
    };
    Some(match data {
        Cow::Borrowed(d) => Output::InFrame(d),
        Cow::Owned(d) => Output::Decoded(Bytes::from(d)),
    })
}

/// An output frame's data: inside the frame (the canonical layout), or
/// decoded into bytes of its own.
enum Output<'a> {
    InFrame(&'a [u8]),
    Decoded(Bytes),
}
