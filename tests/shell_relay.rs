//! The shell over real Unix sockets with a scripted fake guest: handshake
//! bytes, routing and isolation, slow consumers, guest stalls, bad input and
//! cleanup of a vanished client's sessions.

mod shell_support;

use std::time::Duration;

use agent_relay::core::Config;
use agent_relay::shell::{GuestPort, Shell};
use agent_relay::wire::{Frame, MsgType};
use microsandbox_protocol::core::Ready;
use microsandbox_protocol::exec::{ExecSignal, ExecStdin, ExecStdout};
use microsandbox_protocol::message::MessageType;
use shell_support::*;
use tokio::io::AsyncWriteExt;

const STEP: u32 = u32::MAX / 16;

#[tokio::test]
async fn shell_handshake_is_0_4_4_offset_then_ready() {
    let mut h = Harness::start(Config::default()).await;
    // Raw bytes: 4-byte big-endian offset, then the guest's ready frame as is.
    let mut raw = tokio::net::UnixStream::connect(&h.sock).await.unwrap();
    let ready = ready(V1, 11);
    let mut got = vec![0u8; 4 + ready.len()];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut got)
        .await
        .unwrap();
    assert_eq!(&got[..4], &0u32.to_be_bytes());
    assert_eq!(&got[4..], &ready[..]);
    // The 0.4.4 reference decoder reads the same bytes as a ready message.
    let mut buf = got[4..].to_vec();
    let msg = microsandbox_protocol::codec::try_decode_from_buf(&mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(msg.t, MessageType::Ready);
    let r: Ready = msg.payload().unwrap();
    assert_eq!(
        (r.boot_time_ns, r.init_time_ns, r.ready_time_ns),
        (11, 5, 12)
    );
    // The next client gets the next slot's offset.
    let second = connect(&h.sock).await;
    assert_eq!(second.offset, STEP);
    h.stop().await;
}

#[tokio::test]
async fn shell_16_clients_get_only_their_own_frames_in_order_17th_refused() {
    let mut h = Harness::start(Config::default()).await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(connect(&h.sock).await);
    }
    let mut offsets: Vec<u32> = clients.iter().map(|c| c.offset).collect();
    offsets.sort();
    offsets.dedup();
    assert_eq!(offsets.len(), 16, "every client has its own range");

    // The 17th is refused: the socket closes without a handshake.
    let mut extra = Reader::new(tokio::net::UnixStream::connect(&h.sock).await.unwrap());
    assert!(extra.recv().await.is_none(), "17th client must be refused");
    h.wait_counters("refusal", |c| c.refused_clients == 1).await;

    for c in &mut clients {
        c.client
            .send(&exec_request(V1, c.offset + 1, false, 0))
            .await;
    }
    for _ in 0..16 {
        let m = h.guest.recv().await.unwrap();
        assert_eq!(m.t, MessageType::ExecRequest);
    }
    // Interleave output of all sessions, then end them.
    const N: usize = 20;
    for i in 0..N {
        for c in &clients {
            let id = c.offset + 1;
            h.guest
                .send(&stdout(V1, id, format!("{id}:{i}").as_bytes()))
                .await;
        }
    }
    for c in &clients {
        h.guest.send(&exited(V1, c.offset + 1, 0)).await;
    }
    for c in &mut clients {
        let id = c.offset + 1;
        for i in 0..N {
            let m = c.client.recv().await.unwrap();
            assert_eq!(m.id, id, "a frame of another client's session");
            assert_eq!(m.t, MessageType::ExecStdout);
            let out: ExecStdout = m.payload().unwrap();
            assert_eq!(out.data, format!("{id}:{i}").as_bytes(), "out of order");
        }
        let m = c.client.recv().await.unwrap();
        assert_eq!((m.t, m.id), (MessageType::ExecExited, id));
    }
    h.stop().await;
    // Shutdown closes every connected client.
    for c in &mut clients {
        c.client.expect_closed().await;
    }
}

/// Rule `backpressure_bounded_wait` through the real shell: a client that
/// never reads gets its output up to its budget, then the relay stops
/// reading the guest; the frame for a client that reads, behind the
/// stalled one's in the guest's stream, waits at most one grace period,
/// until the stalled client is closed (its session killed) and the guest
/// is read again.
#[tokio::test]
async fn shell_stalled_reader_holds_others_one_grace_period_then_closed() {
    let cfg = Config {
        client_soft_budget: 64 << 10,
        grace: 500,
        ..Config::default()
    };
    let mut h = Harness::start(cfg).await;
    let slow = connect(&h.sock).await;
    let mut fast = connect(&h.sock).await;
    let (mut slow_client, slow_id) = (slow.client, slow.offset + 1);
    let fast_id = fast.offset + 1;
    slow_client.send(&exec_request(V1, slow_id, false, 0)).await;
    fast.client.send(&exec_request(V1, fast_id, false, 0)).await;
    h.guest.recv().await.unwrap();
    h.guest.recv().await.unwrap();

    // 4 MiB for a client that never reads, then a frame for one that does.
    let chunk = vec![b'x'; 32 << 10];
    let guest = &mut h.guest;
    let send = async {
        for _ in 0..128 {
            guest.send(&stdout(V1, slow_id, &chunk)).await;
        }
        guest.send(&stdout(V1, fast_id, b"hello")).await;
    };
    let t0 = tokio::time::Instant::now();
    let ((), m) = tokio::join!(send, fast.client.recv());
    let waited = t0.elapsed();
    let m = m.unwrap();
    assert_eq!((m.t, m.id), (MessageType::ExecStdout, fast_id));
    let c = h.counters();
    assert_eq!(c.slow_consumer_closes, 1, "the stalled client went first");
    assert!(c.guest_pauses >= 1, "{c:?}");
    assert!(
        waited < Duration::from_millis(500 + 1_500),
        "the reader waited {waited:?}: more than one grace period"
    );
    let kill = h.guest.recv().await.unwrap();
    assert_eq!(
        (kill.t.clone(), kill.id),
        (MessageType::ExecSignal, slow_id)
    );
    assert_eq!(kill.payload::<ExecSignal>().unwrap().signal, 9);
    slow_client.expect_closed().await;
    h.guest.send(&stdout(V1, fast_id, b"still here")).await;
    let m = fast.client.recv().await.unwrap();
    assert_eq!(m.payload::<ExecStdout>().unwrap().data, b"still here");
    h.stop().await;
}

/// A client that reads, however slowly it starts, gets everything the
/// guest sends it: 8 MiB through a 64 KiB budget, with pauses of the guest
/// along the way, and no close.
#[tokio::test]
async fn shell_reader_slower_than_the_guest_loses_nothing() {
    let cfg = Config {
        client_soft_budget: 64 << 10,
        grace: 500,
        ..Config::default()
    };
    let mut h = Harness::start(cfg).await;
    let mut c = connect(&h.sock).await;
    let id = c.offset + 1;
    c.client.send(&exec_request(V1, id, false, 0)).await;
    h.guest.recv().await.unwrap();
    let chunk = vec![b'y'; 16 << 10];
    let guest = &mut h.guest;
    let send = async {
        for _ in 0..512 {
            guest.send(&stdout(V1, id, &chunk)).await;
        }
    };
    let read = async {
        let mut got = 0usize;
        while got < 512 * chunk.len() {
            let m = c.client.recv().await.expect("a frame");
            got += m.payload::<ExecStdout>().unwrap().data.len();
            if got.is_multiple_of(1 << 20) {
                // A reader that stops now and then, within the grace.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        got
    };
    let ((), got) = tokio::join!(send, read);
    assert_eq!(got, 8 << 20);
    let counters = h.counters();
    assert_eq!(counters.slow_consumer_closes, 0);
    assert!(counters.guest_pauses > 0, "{counters:?}");
    h.stop().await;
}

#[tokio::test]
async fn shell_bad_client_input_closes_only_that_client() {
    let mut h = Harness::start(Config::default()).await;
    let mut good = connect(&h.sock).await;
    let good_id = good.offset + 1;
    good.client.send(&exec_request(V1, good_id, false, 0)).await;
    assert_eq!(h.guest.recv().await.unwrap().id, good_id);

    // Oversized length field.
    let mut big = connect(&h.sock).await;
    big.client
        .io
        .write_all(&(5u32 << 20).to_be_bytes())
        .await
        .unwrap();
    big.client.expect_closed().await;
    // A valid header around a garbage envelope.
    let mut junk = connect(&h.sock).await;
    let garbage = Frame::build(junk.offset + 1, 0, &[0xff, 0x00, 0x13, 0x37]).unwrap();
    junk.client.send(garbage.as_bytes()).await;
    junk.client.expect_closed().await;
    // A well-formed frame for an id outside its range (the good client's).
    let mut thief = connect(&h.sock).await;
    thief.client.send(&stdin(V1, good_id, b"rm -rf /")).await;
    thief.client.expect_closed().await;

    let c = h
        .wait_counters("three violations", |c| c.protocol_violations == 3)
        .await;
    assert_eq!(c.live_clients, 1);
    // Nothing of theirs reached the guest; the good client still works both ways.
    good.client.send(&stdin(V1, good_id, b"ok")).await;
    let m = h.guest.recv().await.unwrap();
    assert_eq!((m.t.clone(), m.id), (MessageType::ExecStdin, good_id));
    assert_eq!(m.payload::<ExecStdin>().unwrap().data, b"ok");
    h.guest.send(&stdout(V1, good_id, b"fine")).await;
    let m = good.client.recv().await.unwrap();
    assert_eq!(m.payload::<ExecStdout>().unwrap().data, b"fine");
    h.stop().await;
}

#[tokio::test]
async fn shell_vanished_client_session_gets_sigkill_at_guest() {
    let mut h = Harness::start(Config::default()).await;
    let mut c = connect(&h.sock).await;
    let id = c.offset + 7;
    c.client.send(&exec_request(V1, id, false, 0)).await;
    c.client.send(&stdin(V1, id, b"partial input")).await;
    assert_eq!(h.guest.recv().await.unwrap().t, MessageType::ExecRequest);
    assert_eq!(h.guest.recv().await.unwrap().t, MessageType::ExecStdin);
    drop(c);
    let kill = h.guest.recv().await.unwrap();
    assert_eq!((kill.t.clone(), kill.id), (MessageType::ExecSignal, id));
    assert_eq!(kill.payload::<ExecSignal>().unwrap().signal, 9);
    h.wait_counters("kill counted", |c| c.kills_sent == 1 && c.live_clients == 0)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn shell_drain_notice_reaches_the_embedding() {
    let mut drains = None;
    let mut h = Harness::start_with(Config::default(), |mut s| {
        drains = Some(s.drain_notices());
        s
    })
    .await;
    let mut drains = drains.unwrap();
    let mut c = connect(&h.sock).await;
    let shutdown = empty(V1, MsgType::Shutdown, c.offset + 1);
    c.client.send(&shutdown).await;
    assert_eq!(h.guest.recv().await.unwrap().t, MessageType::Shutdown);
    tokio::time::timeout(PROMPT, drains.recv())
        .await
        .expect("drain notice in time")
        .expect("drain notice");
    h.stop().await;
}

/// The fake VMM side of a ring port: polls, as a VMM's console thread would
/// after its wake fd fires.
#[tokio::test]
async fn shell_stalled_ring_guest_loses_no_client_frame() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let (port, mut vmm) = GuestPort::ring(2).unwrap();
    let cfg = Config {
        guest_window: 1024,
        client_to_guest_cap: 2048,
        ..Config::default()
    };
    let shell = Shell::new(&sock, port).config(cfg);
    let handle = shell.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shell.run(stopped));
    let ready = ready(V1, 11);
    let mut sent = 0;
    while sent < ready.len() {
        sent += vmm.write(&ready[sent..]);
        tokio::task::yield_now().await;
    }
    handle.wait_ready(PROMPT).await.unwrap();

    // Four clients each send a request and 300 stdin frames while the guest
    // is not draining at all.
    const FRAMES: usize = 300;
    let mut writers = Vec::new();
    for _ in 0..4 {
        let mut c = connect(&sock).await;
        writers.push(tokio::spawn(async move {
            let id = c.offset + 1;
            c.client.send(&exec_request(V1, id, false, 0)).await;
            for i in 0..FRAMES {
                c.client
                    .send(&stdin(V1, id, format!("{i}").as_bytes()))
                    .await;
            }
            c
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = handle.counters();
    assert!(
        c.client_frames_in < 4 * (FRAMES as u64 + 1),
        "the relay kept accepting everything while the guest was stalled: {c:?}"
    );

    // The guest resumes: every frame arrives, once, in per-client order.
    let mut buf = Vec::new();
    let mut next: std::collections::HashMap<u32, usize> = Default::default();
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + PROMPT;
    while total < 4 * (FRAMES + 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "frames missing: {next:?}"
        );
        let mut chunk = [0u8; 4096];
        let n = vmm.read(&mut chunk);
        if n == 0 {
            // A VMM would poll its wake fd here; the test just yields.
            vmm.clear_wake();
            tokio::task::yield_now().await;
            continue;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(m) = microsandbox_protocol::codec::try_decode_from_buf(&mut buf).unwrap() {
            total += 1;
            match m.t {
                MessageType::ExecRequest => assert!(next.insert(m.id, 0).is_none()),
                MessageType::ExecStdin => {
                    let i = next.get_mut(&m.id).expect("stdin after its request");
                    let data: ExecStdin = m.payload().unwrap();
                    assert_eq!(data.data, format!("{i}").as_bytes(), "lost or reordered");
                    *i += 1;
                }
                t => panic!("unexpected {t:?}"),
            }
        }
    }
    assert!(next.values().all(|&n| n == FRAMES));
    for w in writers {
        w.await.unwrap();
    }
    drop(stop);
    task.await.unwrap().unwrap();
}
