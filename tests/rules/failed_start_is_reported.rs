//! Rule `failed_start_is_reported`: on `StartupFailed` the shell writes what
//! the core still owes the guest (the failure's ack), stops and reports why
//! (`ShellError::Startup`); no socket is left behind. (The CLI's exit status
//! 3 with the guest's words: `tests/cli_current.rs`, `tests/cli_serve.rs`.)

use agent_relay::core::{Config, Protocol, StartupFailure};
use agent_relay::shell::{GuestPort, Shell, ShellError};
use agent_relay::wire::MsgType;
use agent_relay::wire::payload::InitAck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::generation::{GENERATIONS, Gen};
use crate::shell_support::*;

/// The guest's initialization failure: the guest gets its ack
/// (`failure: true`), the shell stops with the guest's words, the socket
/// file is gone.
#[tokio::test]
async fn shell_guest_init_failure_is_acknowledged_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let (port, mut guest) = tokio::io::duplex(1 << 16);
    let shell = Shell::new(&sock, GuestPort::stream(port));
    let run = tokio::spawn(shell.run(std::future::pending::<()>()));
    let words = "user nobody2 not found";
    let v = Gen::Current.v();
    guest.write_all(&init_failed(v, words)).await.unwrap();
    let ack = frame(v, MsgType::InitAck, 0, &InitAck { failure: true });
    let mut got = vec![0; ack.len()];
    tokio::time::timeout(PROMPT, guest.read_exact(&mut got))
        .await
        .expect("the ack in time")
        .unwrap();
    assert_eq!(got, ack[..]);
    let err = tokio::time::timeout(PROMPT, run)
        .await
        .expect("the shell stops")
        .unwrap()
        .expect_err("a failed start");
    match &err {
        ShellError::Startup(StartupFailure::GuestInit { message }) => assert_eq!(message, words),
        _ => panic!("{err:?}"),
    }
    assert!(err.to_string().contains(words), "{err}");
    assert!(!sock.exists(), "socket file left behind");
}

/// A guest of the other generation than configured: the shell stops and
/// says which, in either generation.
#[tokio::test]
async fn shell_guest_of_the_other_generation_is_a_failed_start() {
    for g in GENERATIONS {
        let other = match g {
            Gen::Legacy => Protocol::Current,
            Gen::Current => Protocol::Legacy,
        };
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let (port, mut guest) = tokio::io::duplex(1 << 16);
        let config = Config {
            protocol: other,
            ..Config::default()
        };
        let shell = Shell::new(&sock, GuestPort::stream(port)).config(config);
        let run = tokio::spawn(shell.run(std::future::pending::<()>()));
        guest.write_all(&g.ready()).await.unwrap();
        let err = tokio::time::timeout(PROMPT, run)
            .await
            .expect("the shell stops")
            .unwrap()
            .expect_err("a failed start");
        let want = StartupFailure::GenerationMismatch {
            configured: other,
            guest: g.v(),
        };
        assert!(
            matches!(&err, ShellError::Startup(why) if *why == want),
            "{g:?}: {err:?}"
        );
        assert!(!sock.exists(), "{g:?}: socket file left behind");
    }
}
