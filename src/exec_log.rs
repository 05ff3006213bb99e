//! exec.log: the JSON Lines file the relay taps exec output into.
//!
//! One object per [`LogRecord`]: `{"t": "2026-11-25T12:00:00.123Z", "s": "stdout",
//! "d": "text", "id": 3}` (`id` is absent on `system` records). The file
//! rotates at a configurable size (10 MiB by default) into `exec.log.1`,
//! `.2`, `.3`, and is appended to across restarts.
//!
//! Writing happens on a dedicated thread fed by a bounded channel: the routing
//! task only ever calls `try_send`. If the disk stalls, records are counted as
//! skipped instead of delaying routing, and one `system` record saying how many
//! were skipped is written as soon as the channel has room again. This module
//! never blocks its caller and never decides what gets logged (the core does).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::oneshot;

use crate::core::{LogRecord, LogSource};

/// The marker written when the relay stops in order.
pub const SANDBOX_STOPPED: &str = "--- sandbox stopped ---";

/// Name of the live log file inside the log directory.
pub const FILE_NAME: &str = "exec.log";

/// Where and how exec.log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLogOptions {
    /// Directory holding `exec.log` and its rotated files (created if missing).
    pub dir: PathBuf,
    /// Size at which `exec.log` is rotated.
    pub rotate_bytes: u64,
    /// Rotated files kept (`exec.log.1` ..= `exec.log.N`).
    pub keep: u32,
    /// Records the channel to the writer thread holds before records are skipped.
    pub queue: usize,
}

impl ExecLogOptions {
    /// Defaults: rotate at 10 MiB, keep 3 rotated files (40 MiB on disk at
    /// most), queue 4,096 records.
    pub fn new(dir: impl Into<PathBuf>) -> ExecLogOptions {
        ExecLogOptions {
            dir: dir.into(),
            rotate_bytes: 10 << 20,
            keep: 3,
            queue: 4096,
        }
    }
}

/// One line of exec.log, as serialised.
#[derive(Serialize)]
struct Line<'a> {
    t: String,
    s: &'static str,
    d: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
}

/// A record stamped with the wall-clock time it was produced.
struct Stamped {
    at: SystemTime,
    record: LogRecord,
}

/// The producer side of exec.log, owned by the routing task. Cheap and
/// non-blocking: see the module docs.
#[derive(Debug)]
pub struct ExecLog {
    tx: Option<SyncSender<StampedBox>>,
    skipped: u64,
    skipped_total: u64,
    done: Option<oneshot::Receiver<()>>,
    path: PathBuf,
    /// Wall clock at open, and tokio's monotonic clock at the same moment:
    /// records are stamped `wall_base + elapsed`, so the routing task never
    /// reads the system clock itself.
    wall_base: SystemTime,
    mono_base: tokio::time::Instant,
}

/// Boxed so the channel slots stay small.
type StampedBox = Box<Stamped>;

impl std::fmt::Debug for Stamped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stamped")
            .field("record", &self.record)
            .finish()
    }
}

impl ExecLog {
    /// Creates the directory, opens `exec.log` for appending and starts the
    /// writer thread.
    pub fn open(opts: ExecLogOptions) -> io::Result<ExecLog> {
        std::fs::create_dir_all(&opts.dir)?;
        let mut writer = RotatingFile::open(&opts)?;
        let path = writer.path.clone();
        let (tx, rx) = sync_channel::<StampedBox>(opts.queue.max(1));
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("exec-log".into())
            .spawn(move || {
                writer.run(rx);
                let _ = done_tx.send(());
            })?;
        Ok(ExecLog {
            tx: Some(tx),
            skipped: 0,
            skipped_total: 0,
            done: Some(done_rx),
            path,
            wall_base: SystemTime::now(),
            mono_base: tokio::time::Instant::now(),
        })
    }

    /// Path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records skipped so far because the writer fell behind.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Queues a record, stamped now. Never blocks: if the writer is behind,
    /// the record is counted as skipped.
    pub fn log(&mut self, record: LogRecord) {
        let at = self.wall_base + self.mono_base.elapsed();
        if self.skipped > 0 {
            let notice = LogRecord {
                session: None,
                source: LogSource::System,
                text: format!("{} records skipped", self.skipped),
            };
            if !self.try_send(at, notice) {
                self.skip();
                return;
            }
            self.skipped = 0;
        }
        if !self.try_send(at, record) {
            self.skip();
        }
    }

    fn skip(&mut self) {
        self.skipped += 1;
        self.skipped_total += 1;
    }

    fn try_send(&mut self, at: SystemTime, record: LogRecord) -> bool {
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Box::new(Stamped { at, record })) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!(path = %self.path.display(), "exec.log writer stopped; records are dropped");
                self.tx = None;
                false
            }
        }
    }

    /// Writes the stop marker (and any pending skipped notice), then waits up
    /// to `timeout` for the writer thread to flush and exit.
    pub async fn close(mut self, timeout: Duration) {
        self.log(LogRecord {
            session: None,
            source: LogSource::System,
            text: SANDBOX_STOPPED.to_owned(),
        });
        self.tx = None;
        if let Some(done) = self.done.take()
            && tokio::time::timeout(timeout, done).await.is_err()
        {
            tracing::warn!(path = %self.path.display(), "exec.log writer did not finish in time");
        }
    }
}

/// How long the writer waits for more records before it flushes.
const FLUSH_IDLE: Duration = Duration::from_millis(20);

/// The writer thread's state: the open file and its size.
struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    rotate_bytes: u64,
    keep: u32,
    /// The line being serialised, reused from record to record.
    line: Vec<u8>,
}

impl RotatingFile {
    fn open(opts: &ExecLogOptions) -> io::Result<RotatingFile> {
        let path = opts.dir.join(FILE_NAME);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file: BufWriter::new(file),
            size,
            rotate_bytes: opts.rotate_bytes.max(1),
            keep: opts.keep,
            line: Vec::new(),
        })
    }

    fn run(&mut self, rx: Receiver<StampedBox>) {
        loop {
            // Flush once the queue has stayed empty for a moment: a burst of
            // small records then costs one write, not one each.
            let next = match rx.recv_timeout(FLUSH_IDLE) {
                Ok(s) => s,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.file.flush() {
                        tracing::warn!(path = %self.path.display(), "exec.log flush: {e}");
                    }
                    match rx.recv() {
                        Ok(s) => s,
                        Err(_) => break,
                    }
                }
            };
            if let Err(e) = self.write(&next) {
                tracing::warn!(path = %self.path.display(), "exec.log write: {e}");
            }
        }
        if let Err(e) = self.file.flush() {
            tracing::warn!(path = %self.path.display(), "exec.log flush: {e}");
        }
    }

    fn write(&mut self, s: &Stamped) -> io::Result<()> {
        let line = Line {
            t: rfc3339_millis(s.at),
            s: s.record.source.as_str(),
            d: &s.record.text,
            id: match s.record.source {
                LogSource::System => None,
                _ => s.record.session,
            },
        };
        let mut bytes = std::mem::take(&mut self.line);
        bytes.clear();
        serde_json::to_writer(&mut bytes, &line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let written = (|| {
            if self.size > 0 && self.size + bytes.len() as u64 > self.rotate_bytes {
                self.rotate()?;
            }
            self.file.write_all(&bytes)?;
            self.size += bytes.len() as u64;
            Ok(())
        })();
        self.line = bytes;
        written
    }

    /// `exec.log.{keep-1}` -> `.{keep}`, ..., `exec.log` -> `.1`, new `exec.log`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

/// Formats a wall-clock time as RFC 3339 UTC with milliseconds:
/// `2026-11-25T12:00:00.123Z`. Times before 1970 print as the epoch.
pub fn rfc3339_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_log_rfc3339_known_instants() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // 2026-11-25T12:00:00.123Z
        assert_eq!(
            rfc3339_millis(at(1_795_608_000, 123)),
            "2026-11-25T12:00:00.123Z"
        );
        // Leap day.
        assert_eq!(
            rfc3339_millis(at(951_782_400, 999)),
            "2000-02-29T00:00:00.999Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_704_067_199, 5)),
            "2023-12-31T23:59:59.005Z"
        );
    }
}
