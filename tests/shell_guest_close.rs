//! When the guest goes away, what it produced before is not lost: clients get
//! every frame already read from the guest, then end of stream.

mod shell_support;

use agent_relay::core::Config;
use microsandbox_protocol::message::MessageType;
use shell_support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn shell_guest_close_delivers_queued_output_then_closes() {
    let mut h = Harness::start(Config::default()).await;
    let mut c = connect(&h.sock).await;
    let id = c.offset + 1;
    c.client.send(&exec_request(V1, id, false, 0)).await;
    assert_eq!(
        h.guest.recv().await.map(|m| m.t),
        Some(MessageType::ExecRequest)
    );

    // 3 MiB of output, far more than the client's socket buffer holds while
    // it is not reading, then the guest channel closes.
    let chunk = vec![b'x'; 16 << 10];
    for _ in 0..192 {
        h.guest.send(&stdout(V1, id, &chunk)).await;
    }
    h.guest.io.shutdown().await.expect("close the guest stream");
    h.wait_counters("guest gone", |c| c.live_clients == 0).await;

    let mut frames = 0;
    while let Some(msg) = c.client.recv().await {
        assert_eq!(msg.t, MessageType::ExecStdout);
        frames += 1;
    }
    assert_eq!(
        frames, 192,
        "output read from the guest before it closed was lost"
    );
    h.stop().await;
}
