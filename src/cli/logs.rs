//! `agent-relay logs DIR`: reads `DIR/exec.log` and its rotations, oldest
//! first (`exec.log.3`, `.2`, `.1`, then `exec.log`), and prints them for
//! people (one line per record, coloured by session) or as the raw JSON
//! Lines. `--follow` keeps tailing the live file, polling its size every
//! 200 ms and following it across rotation and truncation.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Name of the live log file.
pub const LOG_FILE: &str = "exec.log";

/// How often `--follow` looks at the file.
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
    /// Relay session number; absent on `system` records.
    #[serde(default)]
    pub id: Option<u64>,
}

/// How records are shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogView {
    /// Print the raw JSON lines instead of text.
    pub json: bool,
    /// Only records whose `s` is this.
    pub source: Option<String>,
    /// ANSI colours by session.
    pub color: bool,
    /// Cut each record's text to this many characters (the demo uses it).
    pub max_chars: Option<usize>,
}

impl LogView {
    /// Text output, coloured when stdout is a terminal and `NO_COLOR` is unset.
    pub fn for_stdout() -> LogView {
        LogView {
            json: false,
            source: None,
            color: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            max_chars: None,
        }
    }

    /// Formats one raw line; `None` when the filter drops it. A line that is
    /// not a record is shown as it is (marked), never silently hidden.
    pub fn format(&self, raw: &str) -> Option<String> {
        let raw = raw.trim_end_matches(['\n', '\r']);
        if raw.is_empty() {
            return None;
        }
        let line = match serde_json::from_str::<LogLine>(raw) {
            Ok(line) => line,
            Err(_) if self.source.is_none() => return Some(format!("(unparsed) {raw}")),
            Err(_) => return None,
        };
        if self.source.as_ref().is_some_and(|s| *s != line.s) {
            return None;
        }
        if self.json {
            return Some(raw.to_owned());
        }
        Some(self.format_line(&line))
    }

    /// The text form of a record: `12:00:00.123 [3 stdout] text`.
    pub fn format_line(&self, line: &LogLine) -> String {
        let time = line
            .t
            .split_once('T')
            .map_or(line.t.as_str(), |(_, time)| time.trim_end_matches('Z'));
        let tag = match line.id {
            Some(id) => format!("[{id} {}]", line.s),
            None => format!("[{}]", line.s),
        };
        let text = line.d.strip_suffix('\n').unwrap_or(&line.d);
        let text = match self.max_chars {
            // Cut records stay on one line, their newlines shown as `\n`.
            Some(max) if text.chars().count() > max => {
                let cut: String = text.chars().take(max).collect();
                format!("{}... ({} bytes)", cut.replace('\n', "\\n"), line.d.len())
            }
            // Continuation lines are indented under the tag.
            _ => text.replace('\n', "\n    "),
        };
        if self.color {
            let colour = match line.id {
                Some(id) => SESSION_COLOURS[(id as usize) % SESSION_COLOURS.len()],
                None => "2", // dim for system markers
            };
            format!("\x1b[{colour}m{time} {tag}\x1b[0m {text}")
        } else {
            format!("{time} {tag} {text}")
        }
    }
}

/// ANSI foreground colours cycled by session number.
const SESSION_COLOURS: [&str; 6] = ["36", "32", "33", "35", "34", "31"];

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

/// Prints every record of `dir` to `out`; returns how many were printed.
pub fn print_all(dir: &Path, view: &LogView, out: &mut impl Write) -> io::Result<u64> {
    let files = log_files(dir)?;
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {LOG_FILE} in {}", dir.display()),
        ));
    }
    let mut printed = 0;
    for path in files {
        let file = match File::open(&path) {
            Ok(f) => f,
            // Rotated away between listing and opening: its records moved on.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).split(b'\n') {
            if let Some(text) = view.format(&String::from_utf8_lossy(&line?)) {
                writeln!(out, "{text}")?;
                printed += 1;
            }
        }
    }
    Ok(printed)
}

/// `logs DIR [--follow]`: prints everything, then with `follow` tails the
/// live file until the process is interrupted.
pub async fn run(dir: &Path, view: &LogView, follow: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if !follow {
        print_all(dir, view, &mut out)?;
        return Ok(());
    }
    // Old rotations first, then tail the live file from its start.
    let files = log_files(dir)?;
    for path in files.iter().filter(|p| !p.ends_with(LOG_FILE)) {
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).split(b'\n') {
                if let Some(text) = view.format(&String::from_utf8_lossy(&line?)) {
                    writeln!(out, "{text}")?;
                }
            }
        }
    }
    out.flush()?;
    drop(out);
    let mut tail = Tail::new(dir.join(LOG_FILE));
    loop {
        let mut out = io::stdout().lock();
        for line in tail.poll()? {
            if let Some(text) = view.format(&line) {
                writeln!(out, "{text}")?;
            }
        }
        out.flush()?;
        drop(out);
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// Follows one file path across rotation (a new inode) and truncation.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    file: Option<(File, u64)>,
    pos: u64,
    partial: Vec<u8>,
}

impl Tail {
    /// Tails `path` from its start (it need not exist yet).
    pub fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            file: None,
            pos: 0,
            partial: Vec::new(),
        }
    }

    /// Whole lines appended since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        let current = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.ino(), m.len()));
        // Finish the file we hold first: after a rotation it is `.1` and may
        // have gained lines before the rename.
        self.read_held(&mut lines)?;
        match (current, &self.file) {
            (None, _) => {}
            (Some((ino, _)), Some((_, held))) if ino != *held => {
                // Rotated: the rest of the old file was read above.
                self.open_new(&mut lines)?;
            }
            (Some((_, len)), Some(_)) if len < self.pos => {
                // Truncated in place: start over.
                self.pos = 0;
                self.partial.clear();
                if let Some((file, _)) = &mut self.file {
                    file.seek(SeekFrom::Start(0))?;
                }
                self.read_held(&mut lines)?;
            }
            (Some(_), None) => self.open_new(&mut lines)?,
            _ => {}
        }
        Ok(lines)
    }

    fn open_new(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        match File::open(&self.path) {
            Ok(file) => {
                let ino = file.metadata()?.ino();
                self.file = Some((file, ino));
                self.pos = 0;
                self.partial.clear();
                self.read_held(lines)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn read_held(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        let Some((file, _)) = &mut self.file else {
            return Ok(());
        };
        let mut buf = Vec::new();
        let n = file.read_to_end(&mut buf)?;
        self.pos += n as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        Ok(())
    }
}
