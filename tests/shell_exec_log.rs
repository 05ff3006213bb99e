//! exec.log: JSON Lines format, rotation, appending across restarts, records
//! skipped (never blocking) when the disk stalls, and a UTF-8 character split
//! across two stdout frames logged whole, through the whole shell.

mod shell_support;

use std::path::Path;
use std::time::Duration;

use agent_relay::core::{Config, LogRecord, LogSource};
use agent_relay::shell::exec_log::{ExecLog, ExecLogOptions, SANDBOX_STOPPED};
use serde_json::Value;
use shell_support::*;
use tokio::io::AsyncReadExt;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn record(session: u64, text: &str) -> LogRecord {
    LogRecord {
        session: Some(session),
        source: LogSource::Stdout,
        text: text.into(),
    }
}

fn is_rfc3339_millis_utc(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && t.bytes()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}

#[tokio::test]
async fn exec_log_rotates_into_three_files_and_appends_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ExecLogOptions {
        rotate_bytes: 1000,
        ..ExecLogOptions::new(dir.path())
    };
    let mut log = ExecLog::open(opts.clone()).unwrap();
    for i in 0..200 {
        log.log(record(1, &format!("line {i:04} {}", "x".repeat(40))));
        if i % 32 == 0 {
            // Stay under the queue bound: this test is about rotation.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    log.close(PROMPT).await;
    let base = dir.path().join("exec.log");
    let numbered = |n: u32| dir.path().join(format!("exec.log.{n}"));
    for p in [base.clone(), numbered(1), numbered(2), numbered(3)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 0 && len <= 1000, "{} is {len} bytes", p.display());
    }
    assert!(!numbered(4).exists(), "only three rotated files are kept");
    // The newest lines are in exec.log, the older ones in .1, .2, .3.
    let live = lines(&base);
    assert_eq!(live.last().unwrap()["d"], SANDBOX_STOPPED);
    assert!(live.last().unwrap().get("id").is_none());
    let older = lines(&numbered(1));
    let first = older.first().unwrap();
    assert_eq!(first["s"], "stdout");
    assert_eq!(first["id"], 1);
    assert!(
        is_rfc3339_millis_utc(first["t"].as_str().unwrap()),
        "{first}"
    );

    // A restart appends to the live file.
    let before = lines(&base).len();
    let mut log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
    log.log(record(2, "after restart"));
    log.close(PROMPT).await;
    let after = lines(&base);
    assert_eq!(after.len(), before + 2);
    assert_eq!(after[before]["d"], "after restart");
}

#[tokio::test]
async fn exec_log_stalled_disk_skips_records_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exec.log");
    // A FIFO nobody drains stands in for a stalled disk.
    let ok = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut reader = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&path)
        .unwrap();
    let mut log = ExecLog::open(ExecLogOptions {
        queue_bytes: 4 * (88 + agent_relay::shell::exec_log::RECORD_OVERHEAD),
        rotate_bytes: 1 << 30,
        ..ExecLogOptions::new(dir.path())
    })
    .unwrap();
    const N: usize = 3000;
    let t0 = std::time::Instant::now();
    for i in 0..N {
        log.log(record(1, &format!("{i:05} {}", "y".repeat(80))));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "logging blocked on the stalled writer"
    );
    let skipped = log.skipped_total();
    assert!(skipped > 0, "the stall skipped nothing");

    // The disk comes back.
    let drain = tokio::spawn(async move {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.unwrap();
        all
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    log.log(record(1, "after the stall"));
    log.close(PROMPT).await;
    let all = tokio::time::timeout(PROMPT, drain).await.unwrap().unwrap();
    let lines: Vec<Value> = String::from_utf8(all)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = lines.len();
    assert_eq!(lines[n - 1]["d"], SANDBOX_STOPPED);
    assert_eq!(lines[n - 2]["d"], "after the stall");
    // Each time room returned, one system record said how many were skipped.
    let notices: Vec<u64> = lines
        .iter()
        .filter(|l| l["s"] == "system")
        .filter_map(|l| {
            l["d"]
                .as_str()?
                .strip_suffix(" records skipped")?
                .parse()
                .ok()
        })
        .collect();
    assert!(!notices.is_empty(), "no skipped notice");
    assert_eq!(notices.iter().sum::<u64>(), skipped);
    let data = lines.iter().filter(|l| l["s"] == "stdout").count();
    assert_eq!(
        data - 1 + skipped as usize,
        N,
        "every record is written or counted"
    );
}

#[tokio::test]
async fn exec_log_utf8_split_across_frames_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let l2 = logs.clone();
    let mut h = Harness::start_with(Config::default(), |s| s.exec_log(l2)).await;
    let mut c = connect(&h.sock).await;
    let id = c.offset + 1;
    c.client.send(&exec_request(V1, id, false, 0)).await;
    h.guest.recv().await.unwrap();
    // "é" is C3 A9; "€" is E2 82 AC: both split across frames.
    h.guest.send(&stdout(V1, id, b"caf\xc3")).await;
    h.guest.send(&stdout(V1, id, b"\xa9 \xe2\x82")).await;
    h.guest.send(&stdout(V1, id, b"\xac!")).await;
    h.guest.send(&exited(V1, id, 0)).await;
    for _ in 0..4 {
        c.client.recv().await.unwrap();
    }
    h.stop().await;

    let lines = lines(&logs.join("exec.log"));
    assert_eq!(lines.first().unwrap()["d"], "--- sandbox started ---");
    assert_eq!(lines.last().unwrap()["d"], SANDBOX_STOPPED);
    let out: String = lines
        .iter()
        .filter(|l| l["s"] == "stdout")
        .map(|l| {
            assert_eq!(l["id"], 1);
            l["d"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(out, "café €!");
    for l in &lines {
        assert!(!l["d"].as_str().unwrap().contains('\u{fffd}'), "{l}");
        assert!(is_rfc3339_millis_utc(l["t"].as_str().unwrap()), "{l}");
    }
}

#[tokio::test]
async fn exec_log_queue_is_bounded_in_bytes_not_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exec.log");
    // A FIFO nobody drains: the writer thread blocks on its first write.
    let ok = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    let _reader = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&path)
        .unwrap();
    const BOUND: usize = 1 << 20;
    let mut log = ExecLog::open(ExecLogOptions {
        queue_bytes: BOUND,
        ..ExecLogOptions::new(dir.path())
    })
    .unwrap();
    let big = "z".repeat(64 << 10);
    for _ in 0..100 {
        log.log(record(1, &big));
        assert!(log.queued_bytes() <= BOUND, "{} queued", log.queued_bytes());
    }
    // A few records fit (one may sit in the writer's pipe write); the rest
    // were counted as skipped rather than held.
    assert!(log.skipped_total() >= 100 - 17, "{}", log.skipped_total());
}

#[tokio::test]
async fn exec_log_files_are_owner_only_and_a_second_writer_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("a").join("logs");
    let log = ExecLog::open(ExecLogOptions::new(&logs)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&logs), 0o700);
    assert_eq!(mode(&logs.join("exec.log")), 0o600);
    assert_eq!(mode(&logs.join("exec.log.lock")), 0o600);

    let err = ExecLog::open(ExecLogOptions::new(&logs)).expect_err("the directory is in use");
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {}", std::process::id()))
            && text.contains(&logs.display().to_string())
            && text.contains("two relays cannot share one exec.log directory"),
        "{text}"
    );
    // Closing releases the lock.
    log.close(PROMPT).await;
    ExecLog::open(ExecLogOptions::new(&logs))
        .unwrap()
        .close(PROMPT)
        .await;
}

/// Rule `exec_log_says_what_ran` through the shell (issue 18): a session
/// still running when the relay stops gets its end record before the stop
/// marker, and one still running when the guest goes away gets its own.
#[tokio::test]
async fn exec_log_sessions_open_at_stop_get_an_end_record() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let l2 = logs.clone();
    let mut h = Harness::start_with(Config::default(), |s| s.exec_log(l2)).await;
    let mut c = connect(&h.sock).await;
    let id = c.offset + 1;
    c.client.send(&exec_request(V1, id, false, 0)).await;
    h.guest.recv().await.unwrap();
    h.guest.send(&stdout(V1, id, b"still running\n")).await;
    c.client.recv().await.unwrap();
    h.stop().await;
    let lines = lines(&logs.join("exec.log"));
    let n = lines.len();
    assert_eq!(lines[n - 1]["d"], SANDBOX_STOPPED);
    assert_eq!(
        lines[n - 2]["d"],
        "exec ended: the relay stopped before it exited",
        "{lines:?}"
    );
    assert_eq!(lines[n - 2]["id"], 1);
}

/// Unmounts a test's tmpfs (lazily: a writer thread may still hold a file).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Issue 18: a full disk left exec.log ending mid-record with nothing
/// counting what was lost. On a real full tmpfs (64 KiB; skipped where it
/// cannot be mounted, as without root): while the disk is full the file
/// ends with a whole line, and when room comes back one `system` record
/// says how many records were lost; every record is written or counted.
#[tokio::test]
async fn exec_log_full_tmpfs_leaves_whole_lines_and_counts_the_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _unmount = Unmount(mnt.clone());
    let path = mnt.join("exec.log");
    let mut log = ExecLog::open(ExecLogOptions::new(&mnt)).unwrap();
    log.log(record(1, "first"));
    while std::fs::metadata(&path).unwrap().len() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Fill the disk: exec.log keeps the rest of its first page.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    const N: usize = 100;
    for i in 0..N {
        log.log(record(1, &format!("{i:03} {}", "y".repeat(60))));
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    while log.queued_bytes() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The writer writes what it gathered once idle for 20 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let full = std::fs::read_to_string(&path).unwrap();
    assert!(
        full.ends_with('\n'),
        "half a record left: ...{:?}",
        &full[full.len().saturating_sub(80)..]
    );
    assert!(full.lines().count() < N, "the disk was not full");
    std::fs::remove_file(&filler).unwrap();
    log.log(record(1, "after"));
    log.close(PROMPT).await;
    let lines = lines(&path);
    let texts: Vec<&str> = lines.iter().map(|l| l["d"].as_str().unwrap()).collect();
    let n = texts.len();
    assert_eq!(texts[n - 1], SANDBOX_STOPPED);
    assert_eq!(texts[n - 2], "after");
    let lost: u64 = texts[n - 3]
        .strip_suffix(
            " records lost: exec.log could not be written (No space left on device (os error 28))",
        )
        .unwrap_or_else(|| panic!("no notice: {:?}", texts[n - 3]))
        .parse()
        .unwrap();
    let written = texts.iter().filter(|t| t.len() == 64).count();
    assert_eq!(
        written as u64 + lost,
        N as u64,
        "every record is written or counted"
    );
}

/// Issue 18: session numbers restart at 1 in every run, so `logs --session
/// 1` mixed runs. Every record now carries `run`: 1 in a new directory, one
/// more than the newest record's in a directory with runs (found from the
/// end of `exec.log`, or of the rotated files when it holds none, past a
/// line cut off at the end), 1 where the records have none.
#[tokio::test]
async fn exec_log_each_run_has_its_own_number() {
    let dir = tempfile::tempdir().unwrap();
    let runs = |path: &Path| -> Vec<u64> {
        lines(path)
            .iter()
            .map(|l| l["run"].as_u64().expect("every record has a run"))
            .collect()
    };
    let base = dir.path().join("exec.log");
    for want in 1..=2 {
        let mut log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
        assert_eq!(log.run(), want);
        log.log(record(1, "x"));
        log.close(PROMPT).await;
    }
    assert_eq!(runs(&base), [1, 1, 2, 2]);

    // Rotation: the live file is empty, the run is in exec.log.1.
    std::fs::rename(&base, dir.path().join("exec.log.1")).unwrap();
    std::fs::write(&base, "").unwrap();
    let log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
    assert_eq!(log.run(), 3);
    log.close(PROMPT).await;
    // A half line at the end is no record; a long last record is read from
    // its end only.
    let mut log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
    assert_eq!(log.run(), 4);
    log.log(record(1, &"z".repeat(200_000)));
    log.close(PROMPT).await;
    append_raw(
        &base,
        "{\"t\":\"2026-11-25T12:00:00.000Z\",\"run\":99}{\"d\":\"cut",
    );
    let log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
    assert_eq!(log.run(), 5);
    log.close(PROMPT).await;

    // Records written before runs existed.
    let old = tempfile::tempdir().unwrap();
    std::fs::write(
        old.path().join("exec.log"),
        "{\"t\":\"2026-11-25T12:00:00.000Z\",\"s\":\"stdout\",\"d\":\"old\",\"id\":1}\n",
    )
    .unwrap();
    let log = ExecLog::open(ExecLogOptions::new(old.path())).unwrap();
    assert_eq!(log.run(), 1);
    log.close(PROMPT).await;
}

fn append_raw(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}
