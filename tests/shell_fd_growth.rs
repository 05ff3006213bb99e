//! 1,000 connect/disconnect cycles leave no file descriptor, no task and no
//! memory behind. Alone in its binary so nothing else opens fds meanwhile.

mod shell_support;

use agent_relay::core::Config;
use shell_support::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident set size in KiB.
fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn shell_1000_connect_disconnect_cycles_leak_no_fd_task_or_memory() {
    let mut h = Harness::start(Config::default()).await;
    // Warm up once so lazily created runtime resources exist before counting.
    drop(connect(&h.sock).await);
    h.wait_counters("warm-up client gone", |c| c.live_clients == 0)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let fds = open_fds();
    let tasks = alive_tasks();

    let mut rss_after_warmup = 0;
    for i in 0..1000u32 {
        if i == 200 {
            // Allocator pools and runtime buffers are warm by now.
            rss_after_warmup = rss_kib();
        }
        let mut c = connect(&h.sock).await;
        if i % 2 == 0 {
            // Half of them open a session first, so cleanup sends a kill.
            c.client
                .send(&exec_request(V1, c.offset + 1, false, 0))
                .await;
            h.guest.recv().await.unwrap();
            drop(c);
            let kill = h.guest.recv().await.unwrap();
            // The guest reports the killed process, which frees the slot.
            h.guest.send(&exited(V1, kill.id, 137)).await;
        }
    }
    let c = h
        .wait_counters("all clients gone", |c| c.live_clients == 0)
        .await;
    assert_eq!(c.kills_sent, 500);
    assert_eq!(c.live_sessions, 0, "sessions left behind");
    assert_eq!(
        c.queued_to_clients + c.queued_to_guest,
        0,
        "bytes left queued"
    );
    // 800 more cycles after warm-up: a leak of even 2 KiB a cycle would show.
    let grown = rss_kib().saturating_sub(rss_after_warmup);
    assert!(grown < 1_600, "RSS grew {grown} KiB over 800 cycles");
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
