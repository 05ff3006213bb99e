//! The core and wire layers stay sans-IO: no runtime, no clock, no I/O, no
//! randomness, no threads. A grep is crude, but it fails the build the moment
//! someone reaches for one of these.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "Instant::now",
    "SystemTime",
    "std::fs",
    "std::net",
    "std::io::stdin",
    "std::thread",
    "thread_rng",
    "rand::",
    "println!",
    "eprintln!",
];

fn scan(dir: &Path, hits: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            scan(&path, hits);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for word in FORBIDDEN {
                    if code.contains(word) {
                        hits.push(format!("{}:{}: {word}", path.display(), n + 1));
                    }
                }
            }
        }
    }
}

#[test]
fn core_and_wire_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut hits = Vec::new();
    scan(&root.join("core"), &mut hits);
    scan(&root.join("wire"), &mut hits);
    assert!(
        hits.is_empty(),
        "sans-IO layers reach for I/O:\n{}",
        hits.join("\n")
    );
}

/// Same events, same actions: two relays fed one script agree exactly.
#[test]
fn core_is_deterministic() {
    use agent_relay::core::{ClientId, Config, Event, Relay};
    let script: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let run = || {
        let mut relay = Relay::new(Config {
            exec_log: true,
            ..Config::default()
        });
        let mut out = Vec::new();
        for (i, chunk) in script.chunks(97).enumerate() {
            let c = ClientId(i as u64 % 5);
            match i % 4 {
                0 => relay.handle(i as u64, Event::ClientConnected(c)),
                1 => relay.handle(i as u64, Event::ClientBytes(c, chunk)),
                2 => relay.handle(i as u64, Event::GuestBytes(chunk)),
                _ => relay.handle(i as u64, Event::ClientDisconnected(c)),
            }
            while let Some(a) = relay.poll_action() {
                out.push(format!("{a:?}"));
            }
        }
        (out, relay.counters().clone())
    };
    assert_eq!(run(), run());
}
