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

    // 3 MiB of output, far more than the client's socket buffer and its
    // budget hold while it is not reading, then the guest channel closes.
    // The relay stops reading the guest at the budget; the rest waits in
    // the guest's stream until the client reads.
    let chunk = vec![b'x'; 16 << 10];
    let guest = &mut h.guest;
    let send = async {
        for _ in 0..192 {
            guest.send(&stdout(V1, id, &chunk)).await;
        }
        guest.io.shutdown().await.expect("close the guest stream");
    };
    let read = async {
        let handle = &h.handle;
        counters_reach(handle, PROMPT, "the guest paused", |c| c.guest_pauses > 0).await;
        let mut frames = 0;
        while let Some(msg) = c.client.recv().await {
            assert_eq!(msg.t, MessageType::ExecStdout);
            frames += 1;
        }
        frames
    };
    let ((), frames) = tokio::join!(send, read);
    assert_eq!(
        frames, 192,
        "output the guest sent before it closed was lost"
    );
    h.wait_counters("guest gone", |c| c.live_clients == 0).await;
    h.stop().await;
}
