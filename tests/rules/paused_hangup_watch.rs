//! Rule `paused_hangup_watch`: a client that half-closes its sending side
//! (`shutdown(SHUT_WR)`, as socat and `nc -N` do after their request) still
//! receives its output; it departs, and its sessions are killed, only when
//! its socket is fully closed. Real Unix sockets: the relay tells the two
//! apart by the socket's hang-up. Each body runs in both generations. (A
//! paused client that leaves: `tests/cli_current.rs`,
//! `cli_exec_ctrl_c_reaches_a_process_flooded_with_stdin`.)

use std::time::Duration;

use microsandbox_protocol::exec::{ExecExited, ExecSignal, ExecStdout};
use microsandbox_protocol::message::MessageType;
use tokio::io::AsyncWriteExt;

use crate::common::generation::{GENERATIONS, Gen};
use crate::shell_support::{Connected, Harness, exec_request, exited, stdout};
use crate::{shell, shell_client};

/// Long enough for the relay to read the end of stream after the request
/// (before the fix it disconnected the client right there).
const SEE_EOF: Duration = Duration::from_millis(100);

/// A shell of generation `g` with one client whose exec session the guest
/// has received (its id returned); with `half_close`, the client then shut
/// down its sending side and the relay had time to read the end of stream.
async fn session(g: Gen, half_close: bool) -> (Harness, Connected, u32) {
    let mut h = shell(g).await;
    let mut c = shell_client(g, &h).await;
    let id = c.offset + 1;
    c.client.send(&exec_request(g.v(), id, false, 0)).await;
    if half_close {
        c.client.io.shutdown().await.expect("shutdown(SHUT_WR)");
    }
    let req = h.guest.recv().await.expect("request reaches the guest");
    assert_eq!(req.t, MessageType::ExecRequest);
    if half_close {
        tokio::time::sleep(SEE_EOF).await;
    }
    (h, c, id)
}

/// The guest's next message is the SIGKILL for session `id`.
async fn expect_kill(h: &mut Harness, id: u32) {
    let kill = h
        .guest
        .recv()
        .await
        .expect("a kill for the departed session");
    assert_eq!((kill.t.clone(), kill.id), (MessageType::ExecSignal, id));
    assert_eq!(kill.payload::<ExecSignal>().unwrap().signal, 9);
}

#[tokio::test]
async fn shell_half_closed_client_still_receives_its_output() {
    for g in GENERATIONS {
        let ((mut h, mut c, id), v) = (session(g, true).await, g.v());
        h.guest.send(&stdout(v, id, b"still here\n")).await;
        h.guest.send(&exited(v, id, 0)).await;
        let out = c.client.recv().await.expect("output after the half-close");
        assert_eq!(out.t, MessageType::ExecStdout);
        assert_eq!(out.payload::<ExecStdout>().unwrap().data, b"still here\n");
        let end = c.client.recv().await.expect("exit after the half-close");
        assert_eq!(end.payload::<ExecExited>().unwrap().code, 0);

        let counters = h.counters();
        assert_eq!(counters.kills_sent, 0, "{g:?}: {counters:?}");
        assert_eq!(counters.live_clients, 1, "{g:?}: {counters:?}");
        h.stop().await;
    }
}

#[tokio::test]
async fn shell_half_closed_client_departs_when_fully_closed() {
    for g in GENERATIONS {
        let (mut h, c, id) = session(g, true).await;
        assert_eq!(
            h.counters().live_clients,
            1,
            "{g:?}: a half-close is not a departure"
        );

        // The session is silent, so no failed write can give the departure
        // away: only the hang-up does.
        drop(c);
        expect_kill(&mut h, id).await;
        h.wait_counters("departure counted", |c| {
            c.kills_sent == 1 && c.live_clients == 0
        })
        .await;
        h.stop().await;
    }
}

#[tokio::test]
async fn shell_client_closed_without_half_close_departs_at_once() {
    for g in GENERATIONS {
        let (mut h, c, id) = session(g, false).await;
        drop(c);
        expect_kill(&mut h, id).await;
        h.wait_counters("departure counted", |c| c.live_clients == 0)
            .await;
        h.stop().await;
    }
}
