//! `agent-relay logs DIR`: reads `DIR/exec.log` and its rotations, oldest
//! first (`exec.log.3`, `.2`, `.1`, then `exec.log`), and prints them for
//! people (a line per record, coloured by session, a line a process wrote
//! in several pieces joined: [`Printer`]) or as JSON Lines, as stored.
//! People get times in UTC marked `Z` (as stored), or with `--local` in the
//! zone `TZ` names, marked with its offset ([`Zone`]); the first record and
//! each record of a new day show the date.
//! `--follow` keeps tailing, following the files by identity across any
//! number of rotations and restarting a truncated file ([`Tail`]).
//!
//! exec.log holds whatever the sandbox printed, and this prints it to a
//! terminal: in the human format every control character and escape
//! sequence introducer (ESC, CR, BEL, DEL, the C1 controls, bidirectional
//! overrides) is shown escaped, so sandboxed code cannot forge a `[system]`
//! line, move the cursor or set the window title. `--json` prints one valid
//! JSON value per line, always: a stored line that is not a record is
//! reported on stderr instead.

mod args;
mod since;
mod tail;
mod zone;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use args::{LogsArgs, RunSel, SessionArg};
pub use since::{Since, parse_since, parse_timestamp};
pub use tail::{Tail, TailLine};
pub use zone::Zone;

/// Name of the live log file.
pub const LOG_FILE: &str = crate::shell::exec_log::FILE_NAME;

/// How often `--follow` looks at the directory.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// One exec.log record as written by the relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogLine {
    /// RFC 3339 timestamp, milliseconds, UTC.
    pub t: String,
    /// Source: `stdout`, `stderr`, `output` or `system`.
    pub s: String,
    /// The text.
    pub d: String,
    /// Relay session number; absent on `system` records about no session.
    #[serde(default)]
    pub id: Option<u64>,
    /// The relay's run (each start on the directory is one more); absent on
    /// records written before runs existed.
    #[serde(default)]
    pub run: Option<u64>,
    /// The line's number within its run (1, 2, ...; no gaps as written).
    #[serde(default)]
    pub seq: Option<u64>,
}

/// How records are shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogView {
    /// Print JSON lines instead of text.
    pub json: bool,
    /// Only records whose `s` is this.
    pub source: Option<String>,
    /// Only records whose `id` is this (of the latest run unless `run`
    /// says otherwise).
    pub session: Option<u64>,
    /// Only records of these runs; `None`: the latest with `session`, all
    /// without. [`LogView::resolve_latest`] turns "the latest" into a run.
    pub run: Option<RunSel>,
    /// Only records at or after this time (milliseconds since the epoch).
    pub since: Option<i64>,
    /// ANSI colours by session.
    pub color: bool,
    /// Cut each record's text to this many characters (the demo uses it).
    pub max_chars: Option<usize>,
    /// Times in this zone, marked with its offset (`--local`); `None`: UTC,
    /// marked `Z`, as exec.log stores them.
    pub zone: Option<Zone>,
}

/// What [`LogView::show`] made of one stored line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// Print this.
    Line(String),
    /// A filter dropped it.
    Hidden,
    /// Not a record; the text says why. Reported on stderr, never mixed into
    /// JSON output.
    Corrupt(String),
}

impl LogView {
    /// Text output, coloured as [`color_wanted`] says for stdout and the
    /// environment.
    pub fn for_stdout() -> LogView {
        LogView {
            json: false,
            source: None,
            session: None,
            run: None,
            since: None,
            color: color_wanted(io::stdout().is_terminal(), |name| std::env::var_os(name)),
            max_chars: None,
            zone: None,
        }
    }

    fn filtered(&self) -> bool {
        self.source.is_some()
            || self.session.is_some()
            || self.since.is_some()
            || matches!(self.run, Some(RunSel::Only(_) | RunSel::Latest))
    }

    /// Whether it asks for the latest run and does not know it yet.
    pub fn wants_latest(&self) -> bool {
        match self.run {
            Some(RunSel::Latest) => true,
            None => self.session.is_some(),
            Some(RunSel::Only(_) | RunSel::All) => false,
        }
    }

    /// Takes `latest` (the run of the newest record, if any record has one)
    /// as the run asked for when it asks for the latest; else as it was.
    pub fn resolve_latest(&mut self, latest: Option<u64>) {
        if self.wants_latest()
            && let Some(run) = latest
        {
            self.run = Some(RunSel::Only(run));
        }
    }

    /// Whether `line` passes the filters. A view that still wants the
    /// latest run (none known) keeps every run.
    pub fn keeps(&self, line: &LogLine) -> bool {
        self.source.as_ref().is_none_or(|s| *s == line.s)
            && self.session.is_none_or(|n| line.id == Some(n))
            && match self.run {
                Some(RunSel::Only(run)) => line.run == Some(run),
                _ => true,
            }
            && self
                .since
                .is_none_or(|since| parse_timestamp(&line.t).is_some_and(|t| t >= since))
    }

    /// Shows one stored line. In the human format with no filter, a line
    /// that is not a record is shown marked (escaped), never hidden.
    pub fn show(&self, raw: &str) -> Shown {
        match self.parse(raw) {
            Ok(line) => self.show_parsed(raw, &line),
            Err(shown) => shown,
        }
    }

    /// The record a stored line holds, or how to show a line that is none.
    fn parse(&self, raw: &str) -> Result<LogLine, Shown> {
        let raw = raw.trim_end_matches(['\n', '\r']);
        if raw.is_empty() {
            return Err(Shown::Hidden);
        }
        match serde_json::from_str::<LogLine>(raw) {
            Ok(line) => Ok(line),
            Err(e) if self.json || self.filtered() => {
                Err(Shown::Corrupt(format!("not an exec.log record ({e})")))
            }
            Err(_) => Err(Shown::Line(format!("(unparsed) {}", escape_controls(raw)))),
        }
    }

    /// [`LogView::show`] of a parsed record.
    fn show_parsed(&self, raw: &str, line: &LogLine) -> Shown {
        let raw = raw.trim_end_matches(['\n', '\r']);
        if !self.keeps(line) {
            return Shown::Hidden;
        }
        if self.json {
            return Shown::Line(json_safe(raw).into_owned());
        }
        Shown::Line(self.format_line(line))
    }

    /// [`LogView::show`] for callers that only print: `None` unless shown.
    pub fn format(&self, raw: &str) -> Option<String> {
        match self.show(raw) {
            Shown::Line(text) => Some(text),
            Shown::Hidden | Shown::Corrupt(_) => None,
        }
    }

    /// The text form of a record: `12:00:00.123Z [2:3 stdout] text` (run 2,
    /// session 3; `[run 2 system]` for a record about no session, `[3
    /// stdout]` and `[system]` for records without a run). The time is UTC
    /// (`Z`), or in the view's zone with its offset (`13:00:00.123+01:00`).
    pub fn format_line(&self, line: &LogLine) -> String {
        self.format_dated(line, false)
    }

    /// [`LogView::format_line`], the time preceded by its date when `dated`
    /// (`2026-11-25T12:00:00.123Z`).
    fn format_dated(&self, line: &LogLine, dated: bool) -> String {
        let text = line.d.strip_suffix('\n').unwrap_or(&line.d);
        let text = match self.max_chars {
            // Cut records stay on one line, their newlines shown as `\n`.
            Some(max) if text.chars().count() > max => {
                let cut: String = text.chars().take(max).collect();
                format!(
                    "{}... ({} bytes)",
                    escape_controls(&cut).replace('\n', "\\n"),
                    line.d.len()
                )
            }
            _ => self.body(text),
        };
        format!("{} {text}", self.head(line, dated))
    }

    /// The date and the time of day of a stored time, in the view's zone:
    /// `("2026-11-25", "12:00:00.123Z")`; `None` if it is not a time.
    fn when(&self, t: &str) -> Option<(String, String)> {
        let ms = parse_timestamp(t)?;
        let (offset, mark) = match &self.zone {
            None => (0, "Z".to_owned()),
            Some(zone) => {
                let offset = zone.offset_at(ms.div_euclid(1000));
                (offset, show_offset(offset))
            }
        };
        let local = ms + i64::from(offset) * 1000;
        let (y, m, d) = crate::shell::exec_log::civil_from_days(local.div_euclid(86_400_000));
        let of_day = local.rem_euclid(86_400_000);
        let time = format!(
            "{:02}:{:02}:{:02}.{:03}{mark}",
            of_day / 3_600_000,
            of_day / 60_000 % 60,
            of_day / 1000 % 60,
            of_day % 1000
        );
        Some((format!("{y:04}-{m:02}-{d:02}"), time))
    }

    /// A record's time (with its date when `dated`) and tag, coloured when
    /// the view is.
    fn head(&self, line: &LogLine, dated: bool) -> String {
        let time = match self.when(&line.t) {
            Some((date, time)) if dated => format!("{date}T{time}"),
            Some((_, time)) => time,
            // Not a time: as stored, escaped.
            None => escape_controls(&line.t).into_owned(),
        };
        let source = escape_controls(&line.s);
        let tag = match (line.run, line.id) {
            (Some(run), Some(id)) => format!("[{run}:{id} {source}]"),
            (Some(run), None) => format!("[run {run} {source}]"),
            (None, Some(id)) => format!("[{id} {source}]"),
            (None, None) => format!("[{source}]"),
        };
        if self.color {
            let colour = match line.id {
                Some(id) => SESSION_COLOURS[(id as usize) % SESSION_COLOURS.len()],
                None => "2", // dim for system markers
            };
            format!("\x1b[{colour}m{time} {tag}\x1b[0m")
        } else {
            format!("{time} {tag}")
        }
    }

    /// Record text for a terminal: escaped, continuation lines indented
    /// under the tag.
    fn body(&self, text: &str) -> String {
        escape_controls(text).replace('\n', "\n    ")
    }
}

/// Whether to colour output: only on a terminal (`is_terminal`), not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org: an empty
/// one does not count), and not when `TERM` is `dumb` (a terminal that
/// cannot show escape sequences). `env` reads a variable.
pub fn color_wanted(is_terminal: bool, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    let no_color = env("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = env("TERM").is_some_and(|t| t == "dumb");
    is_terminal && !no_color && !dumb
}

/// An offset east of UTC as `+01:00` (`+05:45`, `-03:30`; seconds only
/// when there are any).
fn show_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    let mut text = format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60);
    if !abs.is_multiple_of(60) {
        let _ = write!(text, ":{:02}", abs % 60);
    }
    text
}

/// ANSI foreground colours cycled by session number.
const SESSION_COLOURS: [&str; 6] = ["36", "32", "33", "35", "34", "31"];

/// Characters a terminal could act on, other than newline and tab: C0
/// controls, DEL, C1 controls, line/paragraph separators and bidirectional
/// embeddings, overrides and isolates.
fn is_dangerous(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character a terminal could act on (C0 and C1 controls,
/// DEL, line and paragraph separators, bidirectional controls) written as
/// an escape: `\e` (ESC), `\r`, `\a` (BEL), `\b`, `\x00`..`\x1f`, `\x7f`,
/// `\u{9b}` and the like for the rest. Newlines and tabs are kept.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !is_dangerous(c) => out.push(c),
            '\x1b' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// A stored line that parsed as JSON, with DEL, the C1 controls and the
/// line separators (which JSON allows raw in strings) written as `\u` escapes:
/// the same JSON value, safe on a terminal. They can only occur inside
/// strings, where the escape means the same character.
fn json_safe(raw: &str) -> Cow<'_, str> {
    let risky =
        |c: char| ('\u{7f}'..='\u{9f}').contains(&c) || matches!(c, '\u{2028}' | '\u{2029}');
    if !raw.chars().any(risky) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if risky(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The files to read, oldest first: `exec.log.N` .. `exec.log.1`, `exec.log`.
pub fn log_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix(LOG_FILE)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|n| n.parse::<u32>().ok())
        {
            rotated.push((n, entry.path()));
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    let live = dir.join(LOG_FILE);
    if live.exists() {
        files.push(live);
    }
    Ok(files)
}

/// Prints records one stored line at a time: [`LogView`] plus what one
/// line needs to know of the lines before it: the run "latest" means, in a
/// directory that had none when it started, and the last line's place, so
/// lines never read (rotated away before `--follow` looked) are reported on
/// stderr with their count, as the gap in `seq` gives it.
///
/// In the human view, output a process printed in several writes (records
/// of one session's stream whose text does not end with a newline) is
/// joined into one line: the next record of that stream continues it, any
/// other record ends it first. `--json` prints records as stored.
#[derive(Debug)]
pub struct Printer {
    view: LogView,
    /// The run and `seq` of the furthest record read.
    last: Option<(u64, u64)>,
    missed: u64,
    /// The stream (run, session, source) whose line is printed but not
    /// ended yet.
    open: Option<(Option<u64>, u64, String)>,
    /// The date of the last record printed (in the view's zone): a record
    /// of another day shows its date.
    date: Option<String>,
}

impl Printer {
    /// Prints with `view` (whose latest run is taken to be the first one
    /// seen, if it is not known yet).
    pub fn new(view: LogView) -> Printer {
        Printer {
            view,
            last: None,
            missed: 0,
            open: None,
            date: None,
        }
    }

    /// Ends the line a stream left open, if any (at the end of the output).
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.open.take().is_some() {
            writeln!(out)?;
        }
        Ok(())
    }

    /// Prints a record the view keeps, in the human form: joined to the
    /// open line when it continues its stream.
    fn print_record(&mut self, line: &LogLine, out: &mut impl Write) -> io::Result<()> {
        let stream = match line.id {
            Some(id)
                if self.view.max_chars.is_none()
                    && matches!(line.s.as_str(), "stdout" | "stderr" | "output") =>
            {
                Some((line.run, id, line.s.clone()))
            }
            _ => None,
        };
        let text = line.d.strip_suffix('\n');
        if stream.is_some() && stream == self.open {
            write!(out, "{}", self.view.body(text.unwrap_or(&line.d)))?;
        } else {
            self.finish(out)?;
            let date = self.view.when(&line.t).map(|(date, _)| date);
            let dated = date.is_some() && date != self.date;
            if date.is_some() {
                self.date = date;
            }
            write!(out, "{}", self.view.format_dated(line, dated))?;
        }
        self.open = None;
        match stream {
            Some(stream) if text.is_none() => self.open = Some(stream),
            _ => writeln!(out)?,
        }
        Ok(())
    }

    /// Lines known to be missed so far (a new run's first lines count only
    /// as far as its `seq` tells).
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// Notes where `line` stands; says on `err` how many lines before it
    /// were never read.
    fn place(&mut self, line: &LogLine, file: &str, number: u64, err: &mut impl Write) {
        let (Some(run), Some(seq)) = (line.run, line.seq) else {
            return;
        };
        let gap = match self.last {
            Some((r, s)) if r == run && seq > s + 1 => Some((seq - s - 1, "")),
            // A later run: its own lines before this one at least.
            Some((r, _)) if run > r && seq > 1 => Some((seq - 1, "at least ")),
            _ => None,
        };
        if let Some((n, at_least)) = gap {
            self.missed += n;
            let _ = writeln!(
                err,
                "agent-relay logs: {at_least}{n} lines missed: rotated away before they could be read \
                 (the next line read is {file} line {number}; serve --exec-log-keep keeps more files)"
            );
        }
        if self.last.is_none_or(|last| (run, seq) > last) {
            self.last = Some((run, seq));
        }
    }

    /// Prints one stored line to `out`; a line that is not a record goes to
    /// `err` (named by `file` and `number`) when the view says so.
    pub fn line(
        &mut self,
        raw: &str,
        file: &str,
        number: u64,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> io::Result<()> {
        let shown = match self.view.parse(raw) {
            Ok(line) => {
                self.place(&line, file, number, err);
                if self.view.wants_latest() && line.run.is_some() {
                    self.view.resolve_latest(line.run);
                }
                if !self.view.json && self.view.keeps(&line) {
                    return self.print_record(&line, out);
                }
                self.view.show_parsed(raw, &line)
            }
            Err(shown) => shown,
        };
        match shown {
            Shown::Line(text) => {
                self.finish(out)?;
                writeln!(out, "{text}")
            }
            Shown::Hidden => Ok(()),
            Shown::Corrupt(why) => {
                // A broken stderr must not stop the records.
                let _ = writeln!(
                    err,
                    "agent-relay logs: {file} line {number}: {why}; skipped"
                );
                Ok(())
            }
        }
    }
}

/// Prints what `tail` has not shown yet; corrupt lines go to `err`.
fn print_new(
    tail: &mut Tail,
    printer: &mut Printer,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    tail.poll(|line| printer.line(&line.text, &line.file, line.number, out, err))?;
    out.flush()
}

/// `logs DIR` without `--follow`, printing to `out` and `err`: every record,
/// oldest first, with the latest run resolved from the directory.
pub fn show_dir(
    dir: &Path,
    view: &LogView,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    check_dir(dir)?;
    let mut tail = Tail::new(dir);
    let mut printer = Printer::new(resolved(dir, view));
    print_new(&mut tail, &mut printer, out, err)?;
    printer.finish(out)?;
    out.flush()?;
    if !tail.found_any() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no {LOG_FILE} in {} (is it a relay's --exec-log directory?)",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// `view` with "the latest run" taken from the directory's newest record.
fn resolved(dir: &Path, view: &LogView) -> LogView {
    let mut view = view.clone();
    if view.wants_latest() {
        view.resolve_latest(crate::shell::exec_log::last_run(dir));
    }
    view
}

/// `logs DIR [--follow]`: prints everything, then with `follow` keeps
/// printing new records until the process is interrupted (or stdout closes).
pub async fn run(dir: &Path, view: &LogView, follow: bool) -> io::Result<()> {
    if !follow {
        return show_dir(dir, view, &mut io::stdout().lock(), &mut io::stderr());
    }
    check_dir(dir)?;
    let mut tail = Tail::new(dir);
    let mut printer = Printer::new(resolved(dir, view));
    loop {
        print_new(
            &mut tail,
            &mut printer,
            &mut io::stdout().lock(),
            &mut io::stderr(),
        )?;
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// Whether `dir` is a directory we can read, in words if not.
fn check_dir(dir: &Path) -> io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory (give the relay's --exec-log directory)",
                    dir.display()
                ),
            ));
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot read {}: {}",
                    dir.display(),
                    crate::shell::io_cause(&e)
                ),
            ));
        }
    }
    Ok(())
}
