//! `logs`' command line: [`LogsArgs`] (its `--help` text is the reference
//! for what `logs` shows) and the values `--session` and `--run` take.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

use super::{LogView, Since, Zone, parse_since};

/// Print an exec.log directory (exec.log and its rotations), oldest first.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct LogsArgs {
    /// The exec.log directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Keep printing new records as they are written.
    #[arg(long, short)]
    pub follow: bool,
    /// Only records from this source: stdout, stderr, output or system.
    ///
    /// `stdout`, `stderr`: what a session without a tty printed on each.
    ///
    /// `output`: what a session with a tty printed: its one merged stream (a
    /// pty has no separate stderr, so such a session has no stdout or stderr
    /// records).
    ///
    /// `system`: the relay's own records: each session's start (command,
    /// arguments, client slot) and end (exit code, start failure, killed
    /// when its client left, or ended when the guest went away or the relay
    /// stopped), the sandbox's start and stop, records skipped or lost.
    #[arg(long, value_name = "S", value_parser = ["stdout", "stderr", "output", "system"])]
    pub source: Option<String>,
    /// Only records of this session (its output and its `system` records):
    /// `N` is session N of the latest run (the run of the newest record
    /// when `logs` starts), `RUN:N` session N of that run. Session numbers
    /// start at 1 in every run of the relay; the human view tags records
    /// `[RUN:N stdout]`.
    #[arg(long, value_name = "[RUN:]N")]
    pub session: Option<SessionArg>,
    /// Only records of this run: a run number (each start of the relay on
    /// this directory is one more; the human view tags the sandbox's start
    /// `[run RUN system]`), `latest` or `all`. With `--session N` it is the
    /// latest run unless given.
    #[arg(long, value_name = "RUN")]
    pub run: Option<RunSel>,
    /// Only records from this time on: `2026-11-25T12:00:00Z` (RFC 3339; UTC
    /// unless an offset is given, as exec.log stores it), `2026-11-25`, or a
    /// time ago such as `90s`, `10m`, `2h`, `3d`.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<Since>,
    /// Print the raw JSON lines (one valid JSON value per line), as stored.
    #[arg(long)]
    pub json: bool,
    /// Show times in UTC, marked `Z` (the default; exec.log stores UTC).
    #[arg(long, conflicts_with = "local")]
    pub utc: bool,
    /// Show times in the local time zone, marked with its offset
    /// (`13:00:00.123+01:00`): the zone `TZ` names (`Europe/Paris`, a
    /// POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`; empty: UTC), or
    /// `/etc/localtime` when `TZ` is unset.
    #[arg(long)]
    pub local: bool,
}

/// The end of `logs --help`.
const AFTER_HELP: &str = "\
Each record is shown on a line: its time, [RUN:SESSION SOURCE] and its text, \
control characters escaped, continuation lines indented. A line a process \
printed in several writes is joined into one. Times are UTC, marked Z \
(12:00:00.123Z), or with --local the local time marked with its offset; the \
first record and the first of each new day show the date \
(2026-11-25T12:00:00.123Z).

exec.log holds JSON lines {\"t\", \"s\", \"d\", \"id\", \"run\", \"seq\"}: the time \
(RFC 3339, UTC), the source, the text, the session number (absent on \
records about no session), the run and the line's number in its run.";

impl LogsArgs {
    /// What to show, for stdout (see [`LogView::for_stdout`]).
    pub fn view(&self) -> LogView {
        let run = match (&self.session, self.run) {
            (Some(SessionArg { run: Some(r), .. }), _) => Some(RunSel::Only(*r)),
            (_, run) => run,
        };
        LogView {
            json: self.json,
            source: self.source.clone(),
            session: self.session.map(|s| s.number),
            run,
            since: self.since.map(|s| s.millis),
            zone: self
                .local
                .then(|| Zone::from_tz(std::env::var_os("TZ").as_deref())),
            ..LogView::for_stdout()
        }
    }
}

/// `--session [RUN:]N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionArg {
    /// The run, when given.
    pub run: Option<u64>,
    /// The session number within it.
    pub number: u64,
}

impl FromStr for SessionArg {
    type Err = String;

    fn from_str(text: &str) -> Result<SessionArg, String> {
        let bad = || {
            format!(
                "invalid session {text:?}: give N (session N of the latest run) or RUN:N (session N of run RUN)"
            )
        };
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        Ok(match text.split_once(':') {
            Some((run, n)) => SessionArg {
                run: Some(number(run)?),
                number: number(n)?,
            },
            None => SessionArg {
                run: None,
                number: number(text)?,
            },
        })
    }
}

/// Which runs' records are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSel {
    /// The run of the newest record when `logs` starts (the first run to
    /// appear, in a directory holding none yet).
    Latest,
    /// This run.
    Only(u64),
    /// Every run.
    All,
}

impl FromStr for RunSel {
    type Err = String;

    fn from_str(text: &str) -> Result<RunSel, String> {
        match text.trim() {
            "latest" => Ok(RunSel::Latest),
            "all" => Ok(RunSel::All),
            n => n
                .parse()
                .map(RunSel::Only)
                .map_err(|_| format!("invalid run {text:?}: give a run number, `latest` or `all`")),
        }
    }
}
