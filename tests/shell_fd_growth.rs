//! 1,000 connect/disconnect cycles leave no file descriptor and no task
//! behind. Alone in its binary so nothing else opens fds meanwhile.

mod shell_support;

use agent_relay::core::Config;
use shell_support::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn shell_1000_connect_disconnect_cycles_leak_no_fd_and_no_task() {
    let mut h = Harness::start(Config::default()).await;
    // Warm up once so lazily created runtime resources exist before counting.
    drop(connect(&h.sock).await);
    h.wait_counters("warm-up client gone", |c| c.live_clients == 0)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let fds = open_fds();
    let tasks = alive_tasks();

    for i in 0..1000u32 {
        let mut c = connect(&h.sock).await;
        if i % 2 == 0 {
            // Half of them open a session first, so cleanup sends a kill.
            c.client.send(&exec_request(c.offset + 1)).await;
            h.guest.recv().await.unwrap();
            drop(c);
            let kill = h.guest.recv().await.unwrap();
            // The guest reports the killed process, which frees the slot.
            h.guest.send(&exited(kill.id, 137)).await;
        }
    }
    let c = h
        .wait_counters("all clients gone", |c| c.live_clients == 0)
        .await;
    assert_eq!(c.kills_sent, 500);
    // Aborted tasks finish on their next poll; give them a moment.
    let settled = tokio::time::timeout(PROMPT, async {
        loop {
            if open_fds() <= fds && alive_tasks() <= tasks {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "fds {fds} -> {}, tasks {tasks} -> {}",
        open_fds(),
        alive_tasks()
    );
    h.stop().await;
}
