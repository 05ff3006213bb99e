//! `logs --follow`'s tail across appends, a rotation and a truncation.
#![cfg(feature = "cli")]

use std::io::Write;

use agent_relay::cli::logs::{LogView, Tail};

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

#[test]
fn cli_logs_tail_follows_rotation_and_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("exec.log");
    let mut tail = Tail::new(live.clone());
    assert!(tail.poll().unwrap().is_empty(), "no file yet");

    append(&live, "a\nb");
    assert_eq!(tail.poll().unwrap(), ["a"]);
    append(&live, "\nc\n");
    assert_eq!(tail.poll().unwrap(), ["b", "c"]);

    // Rotation: a last line lands in the old file just before the rename.
    append(&live, "d\n");
    std::fs::rename(&live, dir.path().join("exec.log.1")).unwrap();
    append(&live, "e\n");
    assert_eq!(tail.poll().unwrap(), ["d", "e"]);

    // Truncation in place starts over.
    std::fs::write(&live, "").unwrap();
    assert!(tail.poll().unwrap().is_empty());
    append(&live, "f\n");
    assert_eq!(tail.poll().unwrap(), ["f"]);
}

#[test]
fn cli_logs_view_formats_and_cuts() {
    let view = LogView {
        json: false,
        source: None,
        color: false,
        max_chars: Some(5),
    };
    let line = r#"{"t":"2026-11-25T12:00:00.123Z","s":"stdout","d":"1\n2\n3\n4\n","id":3}"#;
    assert_eq!(
        view.format(line).unwrap(),
        "12:00:00.123 [3 stdout] 1\\n2\\n3... (8 bytes)"
    );
    let coloured = LogView {
        color: true,
        max_chars: None,
        ..view.clone()
    };
    assert!(coloured.format(line).unwrap().starts_with("\x1b["));
    assert_eq!(view.format("not json").unwrap(), "(unparsed) not json");
    let stderr_only = LogView {
        source: Some("stderr".into()),
        ..view
    };
    assert!(stderr_only.format(line).is_none());
}
