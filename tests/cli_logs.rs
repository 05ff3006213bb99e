//! `logs`: the follower across appends, rotations (several between two looks)
//! and truncation; sandbox output shown escaped so it cannot drive the
//! terminal or forge a line; `--json` always valid JSON; `--session` and
//! `--since`; and `--follow` through the built binary.
#![cfg(feature = "cli")]

mod cli_support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use agent_relay::cli::logs::{LogView, Tail};
use cli_support::*;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

fn look(tail: &mut Tail) -> Vec<String> {
    let mut lines = Vec::new();
    tail.poll(|l| {
        lines.push(l.text);
        Ok(())
    })
    .unwrap();
    lines
}

/// What the relay's writer does: `.{n-1}` -> `.{n}`, ..., `exec.log` -> `.1`,
/// keeping `keep` rotated files.
fn rotate(dir: &Path, keep: u32) {
    let name = |n: u32| dir.join(format!("exec.log.{n}"));
    let _ = std::fs::remove_file(name(keep));
    for n in (1..keep).rev() {
        if name(n).exists() {
            std::fs::rename(name(n), name(n + 1)).unwrap();
        }
    }
    std::fs::rename(dir.join("exec.log"), name(1)).unwrap();
}

#[test]
fn cli_logs_tail_follows_rotation_and_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("exec.log");
    let mut tail = Tail::new(dir.path());
    assert!(look(&mut tail).is_empty(), "no file yet");

    append(&live, "a\nb");
    assert_eq!(look(&mut tail), ["a"]);
    append(&live, "\nc\n");
    assert_eq!(look(&mut tail), ["b", "c"]);

    // Rotation: a last line lands in the old file just before the rename.
    append(&live, "d\n");
    rotate(dir.path(), 3);
    append(&live, "e\n");
    assert_eq!(look(&mut tail), ["d", "e"]);

    // Truncation in place starts over.
    std::fs::write(&live, "").unwrap();
    assert!(look(&mut tail).is_empty());
    append(&live, "f\n");
    assert_eq!(look(&mut tail), ["f"]);
}

#[test]
fn cli_logs_tail_loses_nothing_across_several_rotations_between_looks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("exec.log");
    append(&live, "1\n");
    let mut tail = Tail::new(dir.path());
    assert_eq!(look(&mut tail), ["1"]);
    // Three rotations before the next look, with lines in every file.
    append(&live, "2\n");
    rotate(dir.path(), 3);
    append(&live, "3\n");
    rotate(dir.path(), 3);
    append(&live, "4\n");
    rotate(dir.path(), 3);
    append(&live, "5\n");
    assert_eq!(look(&mut tail), ["2", "3", "4", "5"]);
    // More rotations than the relay keeps: the file we hold is deleted, yet
    // its rest is still read, first.
    append(&live, "6\n");
    for n in 7..=10 {
        rotate(dir.path(), 2);
        append(&live, &format!("{n}\n"));
    }
    let got = look(&mut tail);
    assert_eq!(got.first().map(String::as_str), Some("6"), "{got:?}");
    assert_eq!(got.last().map(String::as_str), Some("10"), "{got:?}");
    let mut sorted = got.clone();
    sorted.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(got, sorted, "out of order");
}

const REC_T: &str = "2026-11-25T12:00:00.123Z";

fn rec(t: &str, s: &str, d: &str, id: Option<u64>) -> String {
    let mut v = serde_json::json!({"t": t, "s": s, "d": d});
    if let Some(id) = id {
        v["id"] = id.into();
    }
    v.to_string()
}

#[test]
fn cli_logs_view_escapes_what_could_drive_a_terminal() {
    let view = LogView {
        json: false,
        source: None,
        session: None,
        run: None,
        since: None,
        color: false,
        max_chars: None,
        zone: None,
    };
    let evil = "ok\r12:00:00.000 [system] --- sandbox stopped ---\x1b]0;pwned\x07\x1b[2J\u{9b}31m\u{202e}x\x7f\n";
    let shown = view.format(&rec(REC_T, "stdout", evil, Some(3))).unwrap();
    assert_eq!(
        shown,
        "12:00:00.123Z [3 stdout] ok\\r12:00:00.000 [system] --- sandbox stopped ---\\e]0;pwned\\a\\e[2J\\u{9b}31m\\u{202e}x\\x7f"
    );
    // Continuation lines stay indented under the tag: no line starts with a
    // forged timestamp.
    let two = view
        .format(&rec(
            REC_T,
            "stdout",
            "a\n12:00:00.000 [system] forged\n",
            Some(1),
        ))
        .unwrap();
    assert_eq!(
        two,
        "12:00:00.123Z [1 stdout] a\n    12:00:00.000 [system] forged"
    );
    // The fields around the text are escaped too, and unparsed lines.
    let odd = view
        .format(&rec("x\x1bT\x1b[1m", "std\x1bout", "", None))
        .unwrap();
    assert!(!odd.contains('\x1b'), "{odd:?}");
    assert_eq!(
        view.format("not json \x1b[31m").unwrap(),
        "(unparsed) not json \\e[31m"
    );
    // Cut records (the demo's) too.
    let cut = LogView {
        max_chars: Some(5),
        ..view.clone()
    };
    assert_eq!(
        cut.format(&rec(REC_T, "stdout", "1\n2\x1b\n3\n4\n", Some(3)))
            .unwrap(),
        "12:00:00.123Z [3 stdout] 1\\n2\\e\\n... (9 bytes)"
    );
    let coloured = LogView {
        color: true,
        ..view.clone()
    };
    assert!(
        coloured
            .format(&rec(REC_T, "stdout", "x", Some(1)))
            .unwrap()
            .starts_with("\x1b[")
    );
}

fn write_log(dir: &Path, lines: &[String]) {
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(dir.join("exec.log"), body).unwrap();
}

#[test]
fn cli_logs_json_is_always_json_and_corrupt_lines_go_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    write_log(
        dir.path(),
        &[
            rec(REC_T, "stdout", "csi \u{9b}2J and \u{2028}", Some(1)),
            "{\"t\": \"cut off".to_owned(),
            "\x1b[31mnot json at all".to_owned(),
            rec(REC_T, "stderr", "fine", Some(1)),
        ],
    );
    let out = run(&["logs", dir.path().to_str().unwrap(), "--json"], b"");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        assert!(v["d"].is_string());
        assert!(line.chars().all(|c| !c.is_control()), "{line:?}");
    }
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        first["d"], "csi \u{9b}2J and \u{2028}",
        "the same value, escaped"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("exec.log line 2: not an exec.log record"),
        "{err}"
    );
    assert!(
        err.contains("exec.log line 3: not an exec.log record"),
        "{err}"
    );
}

#[test]
fn cli_logs_session_and_since_filter() {
    use agent_relay::core::{LogRecord, LogSource};
    use agent_relay::shell::exec_log::{ExecLog, ExecLogOptions};
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
        let record = |session, source, text: &str| LogRecord {
            session,
            source,
            text: text.into(),
        };
        log.log(record(Some(3), LogSource::System, "started: sh -c true"));
        log.log(record(Some(3), LogSource::Stdout, "three\n"));
        log.log(record(Some(4), LogSource::Stdout, "four\n"));
        log.log(record(Some(3), LogSource::System, "exited 0"));
        log.close(PROMPT).await;
    });
    let path = dir.path().to_str().unwrap();
    let out = run(&["logs", path, "--session", "3"], b"");
    let shown = text(&out.stdout);
    let tags: Vec<&str> = shown
        .lines()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        tags,
        [
            "[1:3 system] started: sh -c true",
            "[1:3 stdout] three",
            "[1:3 system] exited 0"
        ],
        "{shown}"
    );

    // --since: by absolute time (any offset) and by time ago.
    write_log(
        dir.path(),
        &[
            rec("2026-11-25T11:59:59.999Z", "stdout", "before\n", Some(1)),
            rec("2026-11-25T12:00:00.000Z", "stdout", "at\n", Some(1)),
            rec("2026-11-25T12:30:00.000Z", "stdout", "after\n", Some(1)),
        ],
    );
    let out = run(&["logs", path, "--since", "2026-11-25T13:00:00+01:00"], b"");
    assert_eq!(
        text(&out.stdout),
        "2026-11-25T12:00:00.000Z [1 stdout] at\n12:30:00.000Z [1 stdout] after\n"
    );
    let out = run(&["logs", path, "--since", "10m"], b"");
    assert_eq!(
        text(&out.stdout),
        "",
        "all records are older than 10 minutes"
    );
    let out = run(&["logs", path, "--since", "tomorrow"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid time \"tomorrow\""));
}

#[test]
fn cli_logs_errors_name_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = run(&["logs", missing.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot read {}: no such file or directory",
            missing.display()
        )),
        "{err}"
    );
    let out = run(&["logs", dir.path().to_str().unwrap()], b"");
    assert!(
        text(&out.stderr).contains("no exec.log in"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn cli_logs_follow_keeps_every_line_across_quick_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("exec.log");
    append(
        &live,
        &format!("{}\n", rec(REC_T, "stdout", "line 0\n", Some(1))),
    );
    let mut child = Command::new(BIN)
        .args(["logs", "--follow", dir.path().to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a line").expect("read");
    assert!(next().ends_with("line 0"));
    // Two rotations within microseconds, far less than one 200 ms look.
    for round in 1..=3 {
        for k in 0..3 {
            let n = round * 10 + k;
            append(
                &live,
                &format!(
                    "{}\n",
                    rec(REC_T, "stdout", &format!("line {n}\n"), Some(1))
                ),
            );
            if k < 2 {
                rotate(dir.path(), 3);
            }
        }
        for k in 0..3 {
            let want = format!("line {}", round * 10 + k);
            let got = next();
            assert!(got.ends_with(&want), "wanted {want:?}, got {got:?}");
        }
    }
    // A truncation restarts cleanly (the new content is shorter than what
    // was read, as after a truncation and a first short write).
    for k in 0..5 {
        append(
            &live,
            &format!(
                "{}\n",
                rec(REC_T, "stdout", &format!("padding {k}\n"), Some(1))
            ),
        );
        assert!(next().ends_with(&format!("padding {k}")));
    }
    std::fs::write(
        &live,
        format!("{}\n", rec(REC_T, "stdout", "truncated\n", Some(2))),
    )
    .unwrap();
    assert!(next().ends_with("truncated"));
    let _ = child.kill();
    let _ = child.wait();
}

/// `logs` as the binary parses it, printed into strings.
fn logs_in_process(args: &[&str]) -> (String, String) {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        logs: agent_relay::cli::logs::LogsArgs,
    }
    let cli = Cli::try_parse_from(std::iter::once("logs").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut view = cli.logs.view();
    view.color = false;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    agent_relay::cli::logs::show_dir(&cli.logs.dir, &view, &mut out, &mut err).unwrap();
    (text(&out), text(&err))
}

/// The tags of `logs` output, the time cut off (continuation lines as
/// they are).
fn tags(shown: &str) -> Vec<&str> {
    shown
        .lines()
        .map(|l| match l.starts_with(' ') {
            true => l,
            false => l.split_once(' ').map_or(l, |(_, rest)| rest),
        })
        .collect()
}

/// Issue 18: session numbers restart at 1 in every run, and `logs
/// --session 1` showed session 1 of every run, mixed. Records carry their
/// run; `--session N` is the latest run's session N, `--session RUN:N` and
/// `--run` pick another, `--run all` every run's; the human view tags
/// records `[RUN:N stdout]`.
#[test]
fn cli_logs_session_is_the_latest_runs_unless_a_run_is_given() {
    use agent_relay::core::{LogRecord, LogSource};
    use agent_relay::shell::exec_log::{ExecLog, ExecLogOptions};
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for run in ["first", "second"] {
            let mut log = ExecLog::open(ExecLogOptions::new(dir.path())).unwrap();
            log.log(LogRecord {
                session: Some(1),
                source: LogSource::Stdout,
                text: format!("{run} run\n").into(),
            });
            log.close(PROMPT).await;
        }
    });
    let path = dir.path().to_str().unwrap();
    let out = run(&["logs", path, "--session", "1"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(tags(&text(&out.stdout)), ["[2:1 stdout] second run"]);

    let (shown, _) = logs_in_process(&[path, "--session", "1:1"]);
    assert_eq!(tags(&shown), ["[1:1 stdout] first run"]);
    let (shown, _) = logs_in_process(&[path, "--session", "1", "--run", "1"]);
    assert_eq!(tags(&shown), ["[1:1 stdout] first run"]);
    let (shown, _) = logs_in_process(&[path, "--session", "1", "--run", "all"]);
    assert_eq!(
        tags(&shown),
        ["[1:1 stdout] first run", "[2:1 stdout] second run"]
    );
    let (shown, _) = logs_in_process(&[path, "--run", "latest"]);
    assert_eq!(
        tags(&shown),
        [
            "[2:1 stdout] second run",
            "[run 2 system] --- sandbox stopped ---"
        ]
    );
    let (shown, _) = logs_in_process(&[path]);
    assert_eq!(shown.lines().count(), 4, "every run without a filter");

    // Records written before runs existed are the latest "run" when no
    // record has one.
    let old = tempfile::tempdir().unwrap();
    write_log(
        old.path(),
        &[
            rec(REC_T, "stdout", "old one", Some(1)),
            rec(REC_T, "stdout", "old two", Some(2)),
        ],
    );
    let (shown, _) = logs_in_process(&[old.path().to_str().unwrap(), "--session", "1"]);
    assert_eq!(tags(&shown), ["[1 stdout] old one"]);

    let help = logs_help().1;
    for needle in [
        "--session <[RUN:]N>",
        "session N of the latest run",
        "--run <RUN>",
    ] {
        assert!(help.contains(needle), "{needle:?} not in:\n{help}");
    }
}

/// Issue 18: `logs --follow` lost 3,759 of 5,000 lines without a word when
/// rotation outran it (`--exec-log-keep 1`). Lines carry their number in
/// their run (`seq`), so a gap is seen and counted: stderr says how many
/// lines were missed, and the lines printed plus those reported missed are
/// every line written.
#[test]
fn cli_logs_follow_says_how_many_lines_rotation_took_away() {
    use agent_relay::core::{LogRecord, LogSource};
    use agent_relay::shell::exec_log::{ExecLog, ExecLogOptions, SANDBOX_STOPPED};

    // The count, from lines alone: a gap in a run, and a later run.
    let mut printer = agent_relay::cli::logs::Printer::new(LogView {
        color: false,
        ..LogView::for_stdout()
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let at = |run: u64, seq: u64| {
        format!(
            r#"{{"t":"{REC_T}","s":"stdout","d":"{run}.{seq}\n","id":1,"run":{run},"seq":{seq}}}"#
        )
    };
    for (n, raw) in [at(1, 1), at(1, 2), at(1, 5), at(2, 3)].iter().enumerate() {
        printer
            .line(raw, "exec.log.1", n as u64 + 1, &mut out, &mut err)
            .unwrap();
    }
    assert_eq!(text(&out).lines().count(), 4);
    let err = text(&err);
    assert!(
        err.contains("agent-relay logs: 2 lines missed: rotated away before they could be read (the next line read is exec.log.1 line 3"),
        "{err}"
    );
    assert!(err.contains("at least 2 lines missed"), "{err}");
    assert_eq!(printer.missed(), 4);

    // The real thing: a relay rotating every ~2 KB, keeping one file.
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let record = |i: usize| LogRecord {
        session: Some(1),
        source: LogSource::Stdout,
        text: format!("line {i}\n").into(),
    };
    let mut log = ExecLog::open(ExecLogOptions {
        rotate_bytes: 2000,
        keep: 1,
        ..ExecLogOptions::new(dir.path())
    })
    .unwrap();
    rt.block_on(async { log.log(record(0)) });
    wait_until("the first record", || {
        std::fs::metadata(dir.path().join("exec.log")).is_ok_and(|m| m.len() > 0)
    });
    let mut child = Command::new(BIN)
        .args(["logs", "--follow", "--json", dir.path().to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value {
        let line = lines.next().expect("a line").expect("read");
        serde_json::from_str(&line).expect("JSON")
    };
    assert_eq!(next()["d"], "line 0\n");
    const N: usize = 5000;
    rt.block_on(async {
        for i in 1..=N {
            log.log(record(i));
        }
        log.close(PROMPT).await;
    });
    let mut printed = 1;
    let last = loop {
        let line = next();
        printed += 1;
        if line["d"] == SANDBOX_STOPPED {
            break line["seq"].as_u64().unwrap();
        }
    };
    let _ = child.kill();
    let out = output_of(child);
    let err = text(&out.stderr);
    let missed: u64 = err
        .lines()
        .filter_map(|l| {
            l.strip_prefix("agent-relay logs: ")?
                .split_once(" lines missed")?
                .0
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(last, N as u64 + 2, "every record and the stop marker");
    assert!(
        missed > 0,
        "rotation never outran the follower: {printed} printed"
    );
    assert_eq!(
        printed + missed,
        last,
        "every line is printed or reported missed:\n{err}"
    );
}

/// Issue 18: an empty `NO_COLOR=` turned colour off and `TERM=dumb` kept it.
/// no-color.org: `NO_COLOR` counts when present and not empty; a dumb
/// terminal gets no escape sequences; a pipe never does.
#[test]
fn cli_logs_colour_follows_no_color_and_term() {
    use agent_relay::cli::logs::color_wanted;
    use std::ffi::OsString;
    fn env(
        no_color: Option<&'static str>,
        term: Option<&'static str>,
    ) -> impl Fn(&str) -> Option<OsString> {
        move |name| match name {
            "NO_COLOR" => no_color.map(OsString::from),
            "TERM" => term.map(OsString::from),
            _ => None,
        }
    }
    assert!(color_wanted(true, env(None, Some("xterm-256color"))));
    assert!(color_wanted(true, env(None, None)));
    assert!(
        color_wanted(true, env(Some(""), Some("xterm"))),
        "an empty NO_COLOR does not count"
    );
    assert!(!color_wanted(true, env(Some("1"), Some("xterm"))));
    assert!(
        !color_wanted(true, env(Some("0"), None)),
        "any non-empty value counts"
    );
    assert!(!color_wanted(true, env(None, Some("dumb"))));
    assert!(
        !color_wanted(false, env(None, Some("xterm"))),
        "not a terminal"
    );
}

/// `logs --help` as the binary renders it once src/cli/mod.rs uses
/// `logs::LogsArgs`: (short help, long help).
fn logs_help() -> (String, String) {
    use clap::CommandFactory as _;
    #[derive(clap::Parser)]
    #[command(name = "logs")]
    struct Cli {
        #[command(flatten)]
        logs: agent_relay::cli::logs::LogsArgs,
    }
    (
        Cli::command().render_help().to_string(),
        Cli::command().render_long_help().to_string(),
    )
}

/// Issue 18: `--source output` was not documented (the help said "Only
/// records from this source"). The help says what each source is.
#[test]
fn cli_logs_help_says_what_each_source_is() {
    let (short, long) = logs_help();
    assert!(
        short.contains("Only records from this source: stdout, stderr, output or system"),
        "{short}"
    );
    for needle in [
        "`stdout`, `stderr`: what a session without a tty printed on each",
        "`output`: what a session with a tty printed: its one merged stream",
        "`system`: the relay's own records",
        "[possible values: stdout, stderr, output, system]",
    ] {
        assert!(long.contains(needle), "{needle:?} not in:\n{long}");
    }
}

/// Issue 18: a line a process printed in two writes became two records of
/// one stream, and `logs` showed each on a line of its own. The human view
/// joins a record to the line before when that one is of the same session
/// and stream and did not end with a newline; `--json` keeps the records.
#[test]
fn cli_logs_joins_a_line_split_across_records() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        rec(REC_T, "stdout", "hel", Some(1)),
        rec(REC_T, "stdout", "lo\n", Some(1)),
        rec(REC_T, "stdout", "one\ntw", Some(1)),
        rec(REC_T, "stdout", "o\nthree\n", Some(1)),
        rec(REC_T, "stdout", "a", Some(1)),
        rec(REC_T, "stderr", "err\n", Some(1)),
        rec(REC_T, "stdout", "b", Some(2)),
        rec(REC_T, "output", "c", Some(1)),
        rec(REC_T, "system", "exec exited with code 0", Some(2)),
        rec(REC_T, "stdout", "partial", Some(1)),
    ];
    write_log(dir.path(), &records);
    let path = dir.path().to_str().unwrap();
    let out = run(&["logs", path], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        tags(&text(&out.stdout)),
        [
            "[1 stdout] hello",
            "[1 stdout] one",
            "    two",
            "    three",
            "[1 stdout] a",
            "[1 stderr] err",
            "[2 stdout] b",
            "[1 output] c",
            "[2 system] exec exited with code 0",
            "[1 stdout] partial",
        ]
    );
    assert!(text(&out.stdout).ends_with("partial\n"));
    let out = run(&["logs", path, "--json"], b"");
    assert_eq!(text(&out.stdout).lines().count(), records.len());
}

/// Issue 18: the human view printed `12:00:00.123`, UTC without saying so
/// and without a date. Times are marked `Z`, the first record and the first
/// of each new day show the date; `--local` shows the zone `TZ` names,
/// marked with its offset, its days changing at local midnight.
#[test]
fn cli_logs_times_say_their_zone_and_date() {
    use agent_relay::cli::logs::{LogsArgs, Zone, show_dir};
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    write_log(
        dir.path(),
        &[
            rec("2026-07-01T12:00:00.000Z", "stdout", "summer\n", Some(1)),
            rec("2026-11-25T22:59:59.999Z", "stdout", "late\n", Some(1)),
            rec("2026-11-25T23:00:00.000Z", "stdout", "midnight\n", Some(1)),
            rec(
                "2026-11-26T00:00:00.000Z",
                "stdout",
                "utc midnight\n",
                Some(1),
            ),
        ],
    );
    let path = dir.path().to_str().unwrap();
    let out = run(&["logs", path], b"");
    assert_eq!(
        text(&out.stdout),
        "2026-07-01T12:00:00.000Z [1 stdout] summer\n\
         2026-11-25T22:59:59.999Z [1 stdout] late\n\
         23:00:00.000Z [1 stdout] midnight\n\
         2026-11-26T00:00:00.000Z [1 stdout] utc midnight\n"
    );

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        logs: LogsArgs,
    }
    let cli = Cli::try_parse_from(["logs", path, "--local"]).unwrap();
    let mut view = cli.logs.view();
    assert!(view.zone.is_some(), "--local");
    view.color = false;
    view.zone = Some(Zone::from_tz(Some("CET-1CEST,M3.5.0,M10.5.0/3".as_ref())));
    let mut shown = Vec::new();
    show_dir(dir.path(), &view, &mut shown, &mut Vec::new()).unwrap();
    assert_eq!(
        text(&shown),
        "2026-07-01T14:00:00.000+02:00 [1 stdout] summer\n\
         2026-11-25T23:59:59.999+01:00 [1 stdout] late\n\
         2026-11-26T00:00:00.000+01:00 [1 stdout] midnight\n\
         01:00:00.000+01:00 [1 stdout] utc midnight\n"
    );
    assert!(Cli::try_parse_from(["logs", path, "--local", "--utc"]).is_err());
    assert_eq!(Zone::from_tz(Some("".as_ref())), Zone::utc());
    assert_eq!(Zone::from_tz(Some(":UTC0".as_ref())).offset_at(0), 0);

    // A zone file, before and after its last transition (its footer rule).
    let paris = Zone::from_tz(Some("Europe/Paris".as_ref()));
    if paris != Zone::utc() {
        let at = |t: &str| agent_relay::cli::logs::parse_timestamp(t).unwrap() / 1000;
        assert_eq!(paris.offset_at(at("2026-07-01T12:00:00Z")), 7200);
        assert_eq!(paris.offset_at(at("2026-11-25T12:00:00Z")), 3600);
        assert_eq!(paris.offset_at(at("2040-07-01T12:00:00Z")), 7200);
        assert_eq!(paris.offset_at(at("2040-12-01T12:00:00Z")), 3600);
        assert_eq!(paris.offset_at(at("1970-06-01T12:00:00Z")), 3600);
    } else {
        eprintln!("no /usr/share/zoneinfo/Europe/Paris here: the zone file part is skipped");
    }
    let help = logs_help().1;
    for needle in ["--local", "TZ", "marked `Z`", "show the date"] {
        assert!(help.contains(needle), "{needle:?} not in:\n{help}");
    }
}
