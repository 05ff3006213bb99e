//! Rule `owner_only_socket`: the client socket is created 0600 (bound
//! under a temporary name, chmod, renamed); a stale socket is replaced, a
//! live one refused, a regular file never touched; the file is removed when
//! the relay stops, even when its future is dropped. The socket exists
//! before the guest speaks: the generation plays no part here.

use std::os::unix::fs::PermissionsExt;

use agent_relay::core::Config;
use agent_relay::shell::{BindError, GuestPort, Shell, ShellError};

use crate::shell_support::*;

#[tokio::test]
async fn shell_socket_is_owner_only_and_removed_on_exit() {
    let mut h = Harness::start(Config::default()).await;
    let mode = std::fs::metadata(&h.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    // No temporary file is left next to it.
    let names: Vec<_> = std::fs::read_dir(h.sock.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("agent.sock")]);
    let mut c = connect(&h.sock).await;
    h.stop().await;
    assert!(!h.sock.exists(), "socket file left behind");
    c.client.expect_closed().await;
}

#[tokio::test]
async fn shell_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    // A socket file nobody listens on any more (a crashed relay's).
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let (port, guest) = tokio::io::duplex(1 << 16);
    let shell = Shell::new(&sock, GuestPort::stream(port));
    let handle = shell.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shell.run(stopped));
    let mut guest = Reader::new(guest);
    guest.send(&ready(V1, 11)).await;
    handle.wait_ready(PROMPT).await.unwrap();
    let c = connect(&sock).await;
    assert_eq!(c.offset, 0);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(stop);
    task.await.unwrap().unwrap();
    assert!(!sock.exists());
}

#[tokio::test]
async fn shell_live_socket_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let other = tokio::net::UnixListener::bind(&sock).unwrap();
    let (port, _guest) = tokio::io::duplex(1 << 16);
    let shell = Shell::new(&sock, GuestPort::stream(port));
    let err = tokio::time::timeout(PROMPT, shell.run(std::future::pending::<()>()))
        .await
        .expect("fails at once")
        .expect_err("must refuse a live socket");
    assert!(
        matches!(err, ShellError::Bind(BindError::AlreadyListening { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "another process (a running relay?) is listening on {}",
            sock.display()
        )
    );
    // The other listener still owns the path and still works.
    assert!(sock.exists());
    let connecting = tokio::net::UnixStream::connect(&sock);
    let (accepted, connected) = tokio::join!(other.accept(), connecting);
    accepted.unwrap();
    connected.unwrap();
}

#[tokio::test]
async fn shell_refuses_to_replace_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    std::fs::write(&sock, b"precious").unwrap();
    let (port, _guest) = tokio::io::duplex(1 << 16);
    let err = Shell::new(&sock, GuestPort::stream(port))
        .run(std::future::pending::<()>())
        .await
        .expect_err("must not delete a regular file");
    assert!(matches!(
        err,
        ShellError::Bind(BindError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read(&sock).unwrap(), b"precious");
}

/// The driver runs as a task of its own; dropping the relay's future (here by
/// aborting the task that runs it) still stops it: clients are closed and the
/// socket file removed.
#[tokio::test]
async fn shell_dropped_run_future_closes_clients_and_removes_the_socket() {
    let mut h = Harness::start(Config::default()).await;
    let mut c = connect(&h.sock).await;
    let task = h.take_task();
    task.abort();
    let _ = task.await;
    c.client.expect_closed().await;
    let deadline = tokio::time::Instant::now() + PROMPT;
    while h.sock.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socket file left behind"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
