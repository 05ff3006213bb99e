//! exec.log: the JSON Lines file the relay taps exec output into.
//!
//! One object per [`LogRecord`]: `{"t": "2026-11-25T12:00:00.123Z", "s": "stdout",
//! "d": "text", "id": 3, "run": 2, "seq": 17}` (`id` is absent on `system` records that
//! belong to no session, such as the start and stop markers). The file
//! rotates at a configurable size (10 MiB by default) into `exec.log.1`, `.2`,
//! `.3`, and is appended to across restarts.
//!
//! Session numbers start at 1 in every run of the relay, so every record
//! also carries `run`, the number of the writer that wrote it: one more than
//! the last run found in the directory ([`last_run`]), 1 in a new one.
//! `run` and `id` together name a session across restarts. Last comes
//! `seq`, the line's number within its run (1, 2, ... with no gap: a record
//! skipped or lost takes none), so a reader can tell that lines it never
//! saw were rotated away, and how many.
//!
//! The log holds everything the sandbox printed, so the directory is created
//! owner-only (0700) and the files are made 0600 whatever the umask. A lock
//! file (`exec.log.lock`, held with `flock` for as long as the writer runs)
//! keeps a second relay from appending to the same directory.
//!
//! Writing happens on a dedicated thread fed by a queue bounded in bytes (the
//! tap's memory counts toward the relay's memory bound): the routing task
//! never waits. If the disk stalls and the queue is full, records are counted
//! as skipped instead of delaying routing, and one `system` record saying how
//! many were skipped is written once the writer has caught up with half its
//! queue (so a queue with room for the notice but not the next record does
//! not write a notice per skipped record). This module
//! never blocks its caller and never decides what gets logged (the core does).
//!
//! The file never ends inside a line the writer could have ended: when a
//! write fails (a full disk), what it left of a line is cut back, the
//! records that did not make it are counted as lost, a warning names the
//! path and the error, and the first record written once writing works
//! again is preceded by one `system` record, `N records lost: exec.log could
//! not be written (why)`. A file some earlier writer left ending inside a
//! line gets that line ended before anything is appended.
//!
//! Of the rules in docs/ARCHITECTURE.md, the writer keeps the numbering part
//! of `exec_log_says_what_ran` (`run` and `seq`, above) and the decoding part
//! of `whole_characters`: a record's runs of bytes are decoded lossily and
//! escaped in one pass ([`json::push_runs_lossy`]), which equals decoding
//! them joined because the core never ends a run but the last inside a
//! character.

pub mod json;

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::cause::io_context;
use crate::core::{LogRecord, LogSource};

/// The marker written when the relay stops in order.
pub const SANDBOX_STOPPED: &str = "--- sandbox stopped ---";

/// Name of the live log file inside the log directory.
pub const FILE_NAME: &str = "exec.log";

/// Name of the lock file inside the log directory.
pub const LOCK_FILE: &str = "exec.log.lock";

/// Bytes a queued record costs beyond its text (the record, its box and the
/// queue's slot), for the queue's byte bound.
pub const RECORD_OVERHEAD: usize = 64;

/// Where and how exec.log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLogOptions {
    /// Directory holding `exec.log` and its rotated files (created if missing).
    pub dir: PathBuf,
    /// Size at which `exec.log` is rotated.
    pub rotate_bytes: u64,
    /// Rotated files kept (`exec.log.1` ..= `exec.log.N`).
    pub keep: u32,
    /// Bytes of records (text plus [`RECORD_OVERHEAD`] each) queued for the
    /// writer thread before records are skipped.
    pub queue_bytes: usize,
}

impl ExecLogOptions {
    /// Defaults: rotate at 10 MiB, keep 3 rotated files (40 MiB on disk at
    /// most), queue up to 8 MiB of records.
    pub fn new(dir: impl Into<PathBuf>) -> ExecLogOptions {
        ExecLogOptions {
            dir: dir.into(),
            rotate_bytes: 10 << 20,
            keep: 3,
            queue_bytes: 8 << 20,
        }
    }
}

/// Where a line stands: the writer's run and the line's number in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The run (see the module docs).
    pub run: u64,
    /// The line's number within the run, from 1.
    pub seq: u64,
}

/// One line of exec.log: `{"t":..,"s":..,"d":..,"id":..,"run":..,"seq":..}`
/// and a newline, exactly as `serde_json` writes the fields (the record's
/// bytes are decoded and escaped in one pass; see [`json`]). A system
/// record about one session carries its number; others have no `id`. `run`
/// and `seq` come last, so [`last_run`] finds them at the end of a line.
pub fn encode_line(at: SystemTime, record: &LogRecord, place: Place, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"t\":");
    json::push_string_lossy(rfc3339_millis(at).as_bytes(), out);
    out.extend_from_slice(b",\"s\":");
    json::push_string_lossy(record.source.as_str().as_bytes(), out);
    out.extend_from_slice(b",\"d\":");
    json::push_runs_lossy(record.text.runs().iter(), out);
    if let Some(id) = record.session {
        // Writing into a Vec cannot fail.
        let _ = write!(out, ",\"id\":{id}");
    }
    let _ = write!(out, ",\"run\":{},\"seq\":{}", place.run, place.seq);
    out.extend_from_slice(b"}\n");
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
    tx: Option<Sender<StampedBox>>,
    /// Bytes queued for the writer thread now (it subtracts what it wrote).
    queued: Arc<AtomicUsize>,
    queue_bytes: usize,
    skipped: u64,
    skipped_total: u64,
    done: Option<oneshot::Receiver<()>>,
    path: PathBuf,
    run: u64,
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
    /// Creates the directory (0700), takes its lock, opens `exec.log` for
    /// appending (0600) and starts the writer thread. Errors name the path
    /// and say what failed.
    pub fn open(opts: ExecLogOptions) -> io::Result<ExecLog> {
        ExecLog::start(opts, |_| {})
    }

    fn start(opts: ExecLogOptions, setup: impl FnOnce(&mut RotatingFile)) -> io::Result<ExecLog> {
        create_private_dir(&opts.dir)?;
        let lock = lock_dir(&opts.dir)?;
        let queued = Arc::new(AtomicUsize::new(0));
        // Under the lock: no other writer picks the same number.
        let run = last_run(&opts.dir).map_or(1, |r| r + 1);
        let mut writer = RotatingFile::open(&opts, queued.clone(), run)?;
        setup(&mut writer);
        let path = writer.path.clone();
        let (tx, rx) = channel::<StampedBox>();
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("exec-log".into())
            .spawn(move || {
                writer.run(rx);
                // Released only once the last record is on disk.
                drop(lock);
                let _ = done_tx.send(());
            })
            .map_err(|e| io_context(&e, "starting the exec.log writer thread for", &opts.dir))?;
        Ok(ExecLog {
            tx: Some(tx),
            queued,
            queue_bytes: opts.queue_bytes,
            skipped: 0,
            skipped_total: 0,
            done: Some(done_rx),
            path,
            run,
            wall_base: SystemTime::now(),
            mono_base: tokio::time::Instant::now(),
        })
    }

    /// Path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This writer's run number, in every record it writes.
    pub fn run(&self) -> u64 {
        self.run
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
            // Skipping goes on until the writer has caught up with half its
            // queue: room for one small notice but not the next record would
            // otherwise write a notice per skipped record.
            if self.queued_bytes() > self.queue_bytes / 2 {
                self.skip();
                return;
            }
            let notice = LogRecord {
                session: None,
                source: LogSource::System,
                text: format!("{} records skipped", self.skipped).into(),
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

    /// Bytes of records queued for the writer thread now.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn try_send(&mut self, at: SystemTime, record: LogRecord) -> bool {
        let Some(tx) = &self.tx else { return false };
        let cost = record_cost(&record);
        if self.queued.load(Ordering::Relaxed) + cost > self.queue_bytes {
            return false;
        }
        self.queued.fetch_add(cost, Ordering::Relaxed);
        if tx.send(Box::new(Stamped { at, record })).is_err() {
            tracing::warn!(path = %self.path.display(), "exec.log writer stopped; records are dropped");
            self.tx = None;
            return false;
        }
        true
    }

    /// Writes the stop marker (and any pending skipped notice), then waits up
    /// to `timeout` for the writer thread to flush and exit.
    pub async fn close(mut self, timeout: Duration) {
        self.log(LogRecord {
            session: None,
            source: LogSource::System,
            text: SANDBOX_STOPPED.into(),
        });
        self.tx = None;
        if let Some(done) = self.done.take()
            && tokio::time::timeout(timeout, done).await.is_err()
        {
            tracing::warn!(path = %self.path.display(), "exec.log writer did not finish in time");
        }
    }
}

/// What a queued record counts against [`ExecLogOptions::queue_bytes`].
fn record_cost(record: &LogRecord) -> usize {
    record.text.byte_len() + RECORD_OVERHEAD
}

/// Creates `dir` (and missing parents) owner-only, whatever the umask. A
/// directory that already exists keeps its mode; a warning says when others
/// can read it.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    "the exec.log directory is readable by other users (mode {:o})",
                    meta.permissions().mode() & 0o777
                );
            }
            return Ok(());
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_context(&e, "inspecting the exec.log directory", dir)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_context(&e, "creating the exec.log directory", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_context(&e, "making owner-only (0700) the exec.log directory", dir))
}

/// Takes `dir`'s lock file, held until the returned file is dropped, and
/// writes our pid into it. A lock held by another process is refused.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = open_private(&path, false)
        .map_err(|e| io_context(&e, "opening the exec.log lock file", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "another relay{holder} is writing exec.log in {}: two relays cannot share one exec.log directory (its lock is {})",
                    dir.display(),
                    path.display()
                ),
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(io_context(&e, "locking the exec.log lock file", &path));
        }
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| io_context(&e, "writing the exec.log lock file", &path))?;
    Ok(file)
}

/// Opens `path` (created if missing) with mode 0600, also when it existed or
/// the umask would have widened it; `append` opens it for appending.
fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).mode(0o600);
    if append {
        options.append(true);
    } else {
        options.read(true).write(true);
    }
    let file = options.open(path)?;
    if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// How long the writer waits for more records before it flushes.
const FLUSH_IDLE: Duration = Duration::from_millis(20);

/// Bytes of whole lines the writer gathers before it writes them.
const WRITE_BUFFER: usize = 64 << 10;

/// A line gathered for writing: where it ends in the buffer, its number,
/// and, for the notice of lost records, how many lost records it reports.
#[derive(Debug, Clone, Copy)]
struct Gathered {
    end: usize,
    seq: u64,
    reports: u64,
}

/// The writer thread's state: the open file, its size and the lines
/// gathered for it.
///
/// It never leaves half a line: lines are gathered whole, and when a write
/// fails (a full disk) the file is cut back to the end of the last whole
/// line written, or, if that fails too, the broken line is ended with a
/// newline before anything else is written. The records that did not make
/// it are counted as lost; the first record written after that is preceded
/// by one `system` record saying how many, and a warning names the path and
/// the error when the failures begin.
struct RotatingFile {
    path: PathBuf,
    file: Sink,
    /// Bytes in the file: whole lines, and a broken one when `broken`.
    on_disk: u64,
    /// The file ends inside a line a failed write left behind.
    broken: bool,
    rotate_bytes: u64,
    keep: u32,
    /// Whole lines not written yet.
    buf: Vec<u8>,
    gathered: Vec<Gathered>,
    /// The line being serialised, reused from record to record.
    line: Vec<u8>,
    /// The producer's byte gauge; the writer gives back what it wrote.
    queued: Arc<AtomicUsize>,
    /// Records lost to failed writes and not yet reported on disk.
    lost: u64,
    /// A notice of lost records is among the gathered lines.
    notice_gathered: bool,
    /// Why writing fails, while it does (warned once per stretch).
    failing: Option<String>,
    /// This writer's run number.
    run: u64,
    /// The number of the next line.
    next_seq: u64,
}

/// The open file.
struct Sink {
    file: File,
    /// Bytes the file takes before writes fail with ENOSPC (the unit tests'
    /// full disk).
    #[cfg(test)]
    room: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Sink {
    fn new(file: File) -> Sink {
        Sink {
            file,
            #[cfg(test)]
            room: None,
        }
    }

    /// One write to the file.
    fn write_some(&mut self, data: &[u8]) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(room) = &self.room {
            let left = room.load(Ordering::Relaxed);
            if left == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.file.write(&data[..n])?;
            room.fetch_sub(n as u64, Ordering::Relaxed);
            return Ok(n);
        }
        self.file.write(data)
    }
}

impl RotatingFile {
    fn open(opts: &ExecLogOptions, queued: Arc<AtomicUsize>, run: u64) -> io::Result<RotatingFile> {
        let path = opts.dir.join(FILE_NAME);
        let file = open_private(&path, true).map_err(|e| io_context(&e, "opening", &path))?;
        let on_disk = file
            .metadata()
            .map_err(|e| io_context(&e, "inspecting", &path))?
            .len();
        // A relay that died mid-write (or a disk that stayed full) may have
        // left half a line: end it before appending.
        let broken = on_disk > 0 && last_byte(&path).is_ok_and(|b| b != b'\n');
        Ok(RotatingFile {
            path,
            file: Sink::new(file),
            on_disk,
            broken,
            rotate_bytes: opts.rotate_bytes.max(1),
            keep: opts.keep,
            buf: Vec::with_capacity(WRITE_BUFFER),
            gathered: Vec::new(),
            line: Vec::new(),
            queued,
            lost: 0,
            notice_gathered: false,
            failing: None,
            run,
            next_seq: 1,
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
                    self.flush();
                    match rx.recv() {
                        Ok(s) => s,
                        Err(_) => break,
                    }
                }
            };
            self.write(&next);
            self.queued
                .fetch_sub(record_cost(&next.record), Ordering::Relaxed);
        }
        self.flush();
        if self.lost > 0 {
            tracing::warn!(
                path = %self.path.display(),
                lost = self.lost,
                "exec.log closed with records lost that no notice reports"
            );
        }
    }

    /// Bytes the file will hold once the gathered lines are written.
    fn size(&self) -> u64 {
        self.on_disk + self.buf.len() as u64
    }

    fn write(&mut self, s: &Stamped) {
        let mut line = std::mem::take(&mut self.line);
        let mut notice = Vec::new();
        self.encode(s, &mut notice, &mut line);
        let size = self.size() + (notice.len() + line.len()) as u64;
        if self.size() > 0 && size > self.rotate_bytes {
            if let Err(e) = self.rotate() {
                // Better a file past its size than records lost.
                tracing::warn!(path = %self.path.display(), "exec.log rotation: {e}");
            }
            // Writing out what was gathered may have failed: numbers and
            // the notice as they are now.
            self.encode(s, &mut notice, &mut line);
        }
        if !notice.is_empty() {
            self.gather(&notice, self.lost);
            self.notice_gathered = true;
        }
        if self.buf.is_empty() && line.len() >= WRITE_BUFFER {
            // A big line is written from where it is, not copied first.
            std::mem::swap(&mut self.buf, &mut line);
            self.gathered.push(Gathered {
                end: self.buf.len(),
                seq: self.next_seq,
                reports: 0,
            });
            self.next_seq += 1;
            self.flush();
            std::mem::swap(&mut self.buf, &mut line);
        } else {
            self.gather(&line, 0);
            if self.buf.len() >= WRITE_BUFFER {
                self.flush();
            }
        }
        self.line = line;
    }

    /// The lines `s` becomes: the notice of lost records first, when one
    /// is due (else `notice` is left empty), then the record, numbered from
    /// the next line on.
    fn encode(&self, s: &Stamped, notice: &mut Vec<u8>, line: &mut Vec<u8>) {
        notice.clear();
        line.clear();
        let mut place = Place {
            run: self.run,
            seq: self.next_seq,
        };
        if self.lost > 0 && !self.notice_gathered {
            let record = LogRecord {
                session: None,
                source: LogSource::System,
                text: format!(
                    "{} records lost: exec.log could not be written ({})",
                    self.lost,
                    self.failing.as_deref().unwrap_or("write failed")
                )
                .into(),
            };
            encode_line(s.at, &record, place, notice);
            place.seq += 1;
        }
        encode_line(s.at, &s.record, place, line);
    }

    fn gather(&mut self, line: &[u8], reports: u64) {
        self.buf.extend_from_slice(line);
        self.gathered.push(Gathered {
            end: self.buf.len(),
            seq: self.next_seq,
            reports,
        });
        self.next_seq += 1;
    }

    /// Writes the gathered lines. What a failure leaves of a line is cut
    /// back; the lines not written whole are counted as lost.
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.broken {
            match self.file.write_some(b"\n") {
                Ok(1) => {
                    self.on_disk += 1;
                    self.broken = false;
                }
                Ok(_) => {}
                Err(e) => self.failed(&e),
            }
        }
        let mut done = 0;
        let mut error = None;
        while done < self.buf.len() && !self.broken {
            match self.file.write_some(&self.buf[done..]) {
                Ok(0) => error = Some(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => error = Some(e),
            }
            if error.is_some() {
                break;
            }
        }
        // Lines written whole, and what the failure left of the next one.
        let mut whole = 0;
        let mut lost = 0;
        for g in &self.gathered {
            if g.end <= done {
                whole = g.end;
                self.lost -= g.reports;
            } else {
                if g.reports == 0 {
                    lost += 1;
                }
                // Lines not written take no number.
                self.next_seq = self.next_seq.min(g.seq);
            }
        }
        self.on_disk += whole as u64;
        if done > whole {
            // Half a line: cut it off, or at least end it.
            let len = self.on_disk;
            if let Err(e) = self.file.file.set_len(len) {
                tracing::warn!(path = %self.path.display(), "exec.log: cutting back a half-written line: {e}");
                self.on_disk += (done - whole) as u64;
                self.broken = true;
            }
        }
        self.buf.clear();
        self.gathered.clear();
        self.notice_gathered = false;
        self.lost += lost;
        match error {
            Some(e) => self.failed(&e),
            None if self.broken => {}
            None => {
                if self.failing.take().is_some() {
                    tracing::info!(path = %self.path.display(), "exec.log is written again");
                }
            }
        }
    }

    /// A write failed: warned once per stretch of failures.
    fn failed(&mut self, e: &io::Error) {
        if self.failing.is_none() {
            tracing::warn!(
                path = %self.path.display(),
                errno = e.raw_os_error(),
                "exec.log cannot be written: {e}; records are lost (and counted) until it can"
            );
        }
        self.failing = Some(e.to_string());
    }

    /// `exec.log.{keep-1}` -> `.{keep}`, ..., `exec.log` -> `.1`, new `exec.log`.
    fn rotate(&mut self) -> io::Result<()> {
        self.flush();
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            // The oldest goes first, so no rename replaces an existing file:
            // on ext4 a rename over a file forces the renamed file's data out
            // (auto_da_alloc), a disk write per rotation on the writer thread.
            match std::fs::remove_file(numbered(self.keep)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            // Gone if an earlier rotation renamed it but could not open the
            // next one.
            match std::fs::rename(&self.path, numbered(1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let file = open_private(&self.path, true)?;
        #[cfg(test)]
        let file = Sink {
            file,
            room: self.file.room.clone(),
        };
        #[cfg(not(test))]
        let file = Sink::new(file);
        self.file = file;
        self.on_disk = 0;
        self.broken = false;
        Ok(())
    }
}

/// The run of the newest record in `dir` that carries one: its `exec.log`,
/// then `exec.log.1`, `.2` and on, each read from its end. `None` when no
/// record carries a run (no file, or files written before runs existed).
pub fn last_run(dir: &Path) -> Option<u64> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name();
            let n = name
                .to_str()?
                .strip_prefix(FILE_NAME)?
                .strip_prefix('.')?
                .parse::<u32>()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|(n, _)| *n);
    std::iter::once(dir.join(FILE_NAME))
        .chain(rotated.into_iter().map(|(_, p)| p))
        .find_map(|p| last_run_in(&p).ok().flatten())
}

/// Lines looked at from the end of one file before it is taken for a file
/// of records without runs.
const RUN_SCAN_LINES: usize = 4096;

/// The run of the last line of the file at `path` that carries one. Only
/// the end of each line is read: `run` is the last field. (A line cut off
/// at the file's end is not a record.)
fn last_run_in(path: &Path) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt as _;
    if !std::fs::metadata(path)?.is_file() {
        // Not a file of records (opening a FIFO would wait for a writer).
        return Ok(None);
    }
    let file = File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut chunk = vec![0u8; 64 << 10];
    let mut tail = [0u8; 48];
    let mut lines = 0;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let buf = &mut chunk[..(end - start) as usize];
        file.read_exact_at(buf, start)?;
        for i in (0..buf.len()).rev().filter(|&i| buf[i] == b'\n') {
            // The line that ends at this newline.
            let at = start + i as u64;
            let from = at.saturating_sub(tail.len() as u64);
            let t = &mut tail[..(at - from) as usize];
            file.read_exact_at(t, from)?;
            if let Some(run) = run_at_end(t) {
                return Ok(Some(run));
            }
            lines += 1;
            if lines >= RUN_SCAN_LINES {
                return Ok(None);
            }
        }
        end = start;
    }
    Ok(None)
}

/// The run of a line that ends `..,"run":N,"seq":M}` (or `..,"run":N}`).
fn run_at_end(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let (head, number) = split_number(body)?;
    let (head, number) = match head.strip_suffix(b",\"seq\":") {
        Some(head) => split_number(head)?,
        None => (head, number),
    };
    if !head.ends_with(b",\"run\":") {
        return None;
    }
    std::str::from_utf8(number).ok()?.parse().ok()
}

/// `text` without the digits it ends with, and those digits (at least one).
fn split_number(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let digits = text.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    (digits > 0).then(|| text.split_at(text.len() - digits))
}

/// The last byte of the file at `path`.
fn last_byte(path: &Path) -> io::Result<u8> {
    use std::os::unix::fs::FileExt as _;
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, len.saturating_sub(1))?;
    Ok(b[0])
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
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

    /// Issue 18's bug: with room for the small notice but not for the next
    /// big record, every skipped record got a "1 records skipped" notice of
    /// its own. Skipping now lasts until the writer has caught up with half
    /// its queue; then one notice says how many, and the record follows.
    /// (The writer is stalled on a FIFO nobody reads, so only this test
    /// moves the queue's fill.)
    #[tokio::test]
    async fn exec_log_one_notice_per_stretch_of_skipped_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exec.log");
        let ok = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(ok.unwrap().success());
        let _reader = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(&path)
            .unwrap();
        let queue = 256 << 10;
        let mut log = ExecLog::open(ExecLogOptions {
            queue_bytes: queue,
            ..ExecLogOptions::new(dir.path())
        })
        .unwrap();
        let big = || LogRecord {
            session: Some(1),
            source: LogSource::Stdout,
            text: "z".repeat(8 << 10).into(),
        };
        let cost = record_cost(&big());
        // Fill the pipe (64 KiB) so the writer blocks, and wait until it does.
        for _ in 0..12 {
            log.log(big());
        }
        let mut last = usize::MAX;
        while log.queued_bytes() != last {
            last = log.queued_bytes();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(last > 0 && log.skipped == 0, "the writer holds records");
        log.queued.store(queue, Ordering::Relaxed);
        log.log(big());
        assert_eq!(log.skipped, 1, "a full queue skips");
        // Room for a notice, not for the record: before, a notice went out
        // and the record was skipped, every time.
        log.queued.store(queue - cost + 1, Ordering::Relaxed);
        for _ in 0..10 {
            log.log(big());
        }
        assert_eq!(log.queued_bytes(), queue - cost + 1, "nothing was queued");
        assert_eq!(log.skipped, 11);
        log.queued.store(queue / 2, Ordering::Relaxed);
        log.log(big());
        assert_eq!(log.skipped, 0, "the notice went out");
        let notice = "11 records skipped".len() + RECORD_OVERHEAD;
        assert_eq!(log.queued_bytes(), queue / 2 + notice + cost);
        assert_eq!(log.skipped_total(), 11);
        log.queued.store(0, Ordering::Relaxed);
    }

    /// Issue 18: a full disk left exec.log ending mid-record, and nothing
    /// counted what was lost. The half-written line is cut back, the records
    /// that did not make it are counted, and once writing works again one
    /// `system` record says how many were lost, before the next record.
    #[tokio::test]
    async fn exec_log_full_disk_leaves_whole_lines_and_counts_the_lost() {
        let dir = tempfile::tempdir().unwrap();
        let room = Arc::new(std::sync::atomic::AtomicU64::new(250));
        let r2 = room.clone();
        let mut log = ExecLog::start(ExecLogOptions::new(dir.path()), |w| {
            w.file.room = Some(r2);
        })
        .unwrap();
        let record = |i: usize| LogRecord {
            session: Some(1),
            source: LogSource::Stdout,
            text: format!("{i} {}", "x".repeat(40)).into(),
        };
        for i in 0..10 {
            log.log(record(i));
        }
        let path = dir.path().join(FILE_NAME);
        let read = || std::fs::read_to_string(&path).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while log.queued_bytes() > 0 || room.load(Ordering::Relaxed) > 0 {
            assert!(std::time::Instant::now() < until, "the writer never wrote");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(FLUSH_IDLE * 3).await;
        // Two lines fit in 250 bytes; the third was cut back.
        let body = read();
        assert!(body.ends_with('\n'), "half a line left: {body:?}");
        assert_eq!(body.lines().count(), 2, "{body}");
        // The disk has room again.
        room.store(u64::MAX, Ordering::Relaxed);
        log.log(record(10));
        log.close(Duration::from_secs(20)).await;
        let body = read();
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is a record"))
            .collect();
        let texts: Vec<&str> = lines.iter().map(|l| l["d"].as_str().unwrap()).collect();
        assert_eq!(texts.len(), 5, "{body}");
        assert!(texts[0].starts_with("0 ") && texts[1].starts_with("1 "));
        assert_eq!(
            texts[2],
            "8 records lost: exec.log could not be written (No space left on device (os error 28))"
        );
        assert_eq!(lines[2]["s"], "system");
        assert!(texts[3].starts_with("10 "));
        assert_eq!(texts[4], SANDBOX_STOPPED);
        // Lost records take no number: a reader sees no gap.
        let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }

    /// A file that ends inside a line (a relay that died mid-write) gets the
    /// line ended before anything is appended: the next record is whole.
    #[tokio::test]
    async fn exec_log_appends_after_a_half_line_on_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "{\"t\":\"2026-11-25T12:00:00.000Z\",\"s\":\"std").unwrap();
        let mut log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
        log.log(LogRecord {
            session: Some(1),
            source: LogSource::Stdout,
            text: "next".into(),
        });
        log.close(Duration::from_secs(20)).await;
        let body = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 3, "{body}");
        assert!(serde_json::from_str::<serde_json::Value>(lines[0]).is_err());
        let next: serde_json::Value = serde_json::from_str(lines[1]).expect(lines[1]);
        assert_eq!(next["d"], "next");
    }

    /// The hand-written line is what serde_json writes for the same
    /// fields, whatever bytes the record holds.
    #[test]
    fn exec_log_line_is_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            t: String,
            s: &'static str,
            d: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<u64>,
            run: u64,
            seq: u64,
        }
        let at = UNIX_EPOCH + Duration::from_millis(1_764_590_400_123);
        let texts: [&[u8]; 4] = [
            b"plain",
            b"\"q\" \\ \n\t\x00\x1f\x7f",
            b"\xff\xe2\x82 \xe2\x82\xac",
            b"",
        ];
        for (i, text) in texts.into_iter().enumerate() {
            let record = LogRecord {
                session: (i % 2 == 0).then_some(i as u64),
                source: crate::core::LogSource::Stderr,
                text: crate::core::LogText::from(String::from_utf8_lossy(text).into_owned()),
            };
            let mut raw = crate::core::LogText::new();
            raw.push(text, None);
            let raw_record = LogRecord {
                text: raw,
                ..record.clone()
            };
            let decoded = String::from_utf8_lossy(text);
            let line = Line {
                t: rfc3339_millis(at),
                s: "stderr",
                d: &decoded,
                id: record.session,
                run: 7,
                seq: 123,
            };
            let mut want = serde_json::to_vec(&line).unwrap();
            want.push(b'\n');
            for r in [&record, &raw_record] {
                let mut got = Vec::new();
                encode_line(at, r, Place { run: 7, seq: 123 }, &mut got);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }

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
