//! The demo agent, driven over an in-memory duplex with our wire codec; every
//! frame it sends is decoded by the reference codec, microsandbox-protocol
//! 0.4.4, so the flags and payloads are proven compatible. Last, the demo
//! agent behind `serve --demo-agent`, reached with `agent-relay exec`.

mod cli_support;

use std::time::Duration;

use agent_relay::demo_agent::{FS_UNSUPPORTED, run_demo_agent};
use agent_relay::wire::MsgType;
use agent_relay::wire::payload::{Data, ExecRequest, ExecSignal, build_frame};
use microsandbox_protocol::codec::try_decode_from_buf;
use microsandbox_protocol::exec as ref_exec;
use microsandbox_protocol::message::{FLAG_TERMINAL, Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Host {
    io: DuplexStream,
    buf: Vec<u8>,
}

impl Host {
    /// Starts the agent and checks that `core.ready` comes first.
    async fn start() -> Host {
        let (host, guest) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            run_demo_agent(guest).await.expect("demo agent failed");
        });
        let mut host = Host {
            io: host,
            buf: Vec::new(),
        };
        let ready = host.next().await;
        assert_eq!(ready.t, MessageType::Ready);
        assert_eq!(ready.flags, 0);
        let _: microsandbox_protocol::core::Ready = ready.payload().expect("ready payload");
        host
    }

    async fn send<T: serde::Serialize>(&mut self, t: MsgType, id: u32, payload: &T) {
        let frame = build_frame(t, id, payload);
        self.io.write_all(frame.as_bytes()).await.expect("write");
    }

    async fn exec(&mut self, id: u32, cmd: &str, args: &[&str]) {
        let req = ExecRequest::new(cmd).args(args.iter().copied());
        self.send(MsgType::ExecRequest, id, &req).await;
    }

    /// The next frame, decoded by the reference codec.
    async fn next(&mut self) -> Message {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(msg) = try_decode_from_buf(&mut self.buf).expect("reference decode") {
                    assert_eq!(msg.flags, msg.t.flags(), "flags of {:?}", msg.t);
                    return msg;
                }
                let mut chunk = [0u8; 8192];
                let n = self.io.read(&mut chunk).await.expect("read");
                assert!(n > 0, "agent closed the stream");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("timed out waiting for a frame")
    }

    /// Frames of session `id` up to its terminal one: (stdout, stderr, last).
    async fn collect(&mut self, id: u32) -> (Vec<u8>, Vec<u8>, Message) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            let msg = self.next().await;
            assert_eq!(msg.id, id);
            match msg.t {
                MessageType::ExecStarted => {
                    let _: ref_exec::ExecStarted = msg.payload().expect("started");
                }
                MessageType::ExecStdout => {
                    let d: ref_exec::ExecStdout = msg.payload().expect("stdout");
                    assert!(d.data.len() <= 16 * 1024);
                    out.extend(d.data);
                }
                MessageType::ExecStderr => {
                    let d: ref_exec::ExecStderr = msg.payload().expect("stderr");
                    err.extend(d.data);
                }
                _ => {
                    assert_eq!(msg.flags & FLAG_TERMINAL, FLAG_TERMINAL);
                    return (out, err, msg);
                }
            }
        }
    }
}

#[tokio::test]
async fn cli_demo_agent_echo_runs_and_exits_zero() {
    let mut host = Host::start().await;
    host.exec(7, "echo", &["hi"]).await;
    let started = host.next().await;
    assert_eq!(started.t, MessageType::ExecStarted);
    assert_eq!(started.id, 7);
    let (out, err, last) = host.collect(7).await;
    assert_eq!(out, b"hi\n");
    assert!(err.is_empty());
    assert_eq!(last.t, MessageType::ExecExited);
    assert_eq!(last.flags, FLAG_TERMINAL);
    let exited: ref_exec::ExecExited = last.payload().unwrap();
    assert_eq!(exited.code, 0);
}

#[tokio::test]
async fn cli_demo_agent_missing_program_fails_not_found() {
    let mut host = Host::start().await;
    host.exec(3, "/nonexistent/program", &[]).await;
    let (_, _, last) = host.collect(3).await;
    assert_eq!(last.t, MessageType::ExecFailed);
    let failed: ref_exec::ExecFailed = last.payload().unwrap();
    assert_eq!(failed.kind, ref_exec::ExecFailureKind::NotFound);
    assert_eq!(failed.errno_name.as_deref(), Some("ENOENT"));
}

#[tokio::test]
async fn cli_demo_agent_bad_cwd_and_not_executable() {
    let mut host = Host::start().await;
    let mut req = ExecRequest {
        cwd: Some("/nonexistent-dir".into()),
        ..ExecRequest::new("true")
    };
    host.send(MsgType::ExecRequest, 1, &req).await;
    let (_, _, last) = host.collect(1).await;
    let failed: ref_exec::ExecFailed = last.payload().unwrap();
    assert_eq!(failed.kind, ref_exec::ExecFailureKind::BadCwd);

    // A file without the execute bit: EACCES.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho no\n").unwrap();
    req.cwd = None;
    req.cmd = script.display().to_string();
    host.send(MsgType::ExecRequest, 2, &req).await;
    let (_, _, last) = host.collect(2).await;
    let failed: ref_exec::ExecFailed = last.payload().unwrap();
    assert_eq!(failed.kind, ref_exec::ExecFailureKind::PermissionDenied);
}

#[tokio::test]
async fn cli_demo_agent_stdin_reaches_cat_and_eof_ends_it() {
    let mut host = Host::start().await;
    host.exec(5, "cat", &[]).await;
    host.send(
        MsgType::ExecStdin,
        5,
        &Data {
            data: b"one ".to_vec(),
        },
    )
    .await;
    host.send(
        MsgType::ExecStdin,
        5,
        &Data {
            data: b"two\n".to_vec(),
        },
    )
    .await;
    host.send(MsgType::ExecStdin, 5, &Data { data: vec![] })
        .await;
    let (out, _, last) = host.collect(5).await;
    assert_eq!(out, b"one two\n");
    let exited: ref_exec::ExecExited = last.payload().unwrap();
    assert_eq!(exited.code, 0);
}

#[tokio::test]
async fn cli_demo_agent_signal_9_exits_137() {
    let mut host = Host::start().await;
    host.exec(9, "sleep", &["30"]).await;
    let started = host.next().await;
    assert_eq!(started.t, MessageType::ExecStarted);
    host.send(MsgType::ExecSignal, 9, &ExecSignal { signal: 9 })
        .await;
    let (_, _, last) = host.collect(9).await;
    let exited: ref_exec::ExecExited = last.payload().unwrap();
    assert_eq!(exited.code, 137);
}

#[tokio::test]
async fn cli_demo_agent_signal_15_exits_143() {
    let mut host = Host::start().await;
    host.exec(4, "sleep", &["30"]).await;
    assert_eq!(host.next().await.t, MessageType::ExecStarted);
    host.send(MsgType::ExecSignal, 4, &ExecSignal { signal: 15 })
        .await;
    let (_, _, last) = host.collect(4).await;
    let exited: ref_exec::ExecExited = last.payload().unwrap();
    assert_eq!(exited.code, 143);
}

#[tokio::test]
async fn cli_demo_agent_fs_request_refused_terminal() {
    let mut host = Host::start().await;
    // Any payload will do: the demo agent refuses every fs operation.
    host.send(MsgType::FsRequest, 11, &Data { data: vec![] })
        .await;
    let msg = host.next().await;
    assert_eq!(msg.t, MessageType::FsResponse);
    assert_eq!(msg.id, 11);
    assert_eq!(msg.flags, FLAG_TERMINAL);
    let resp: microsandbox_protocol::fs::FsResponse = msg.payload().unwrap();
    assert!(!resp.ok);
    assert_eq!(resp.error.as_deref(), Some(FS_UNSUPPORTED));
}

#[tokio::test]
async fn cli_demo_agent_sessions_run_concurrently_and_stream_stderr() {
    let mut host = Host::start().await;
    // Session 1 waits for stdin; session 2 runs to the end meanwhile.
    host.exec(1, "sh", &["-c", "read x; echo got $x"]).await;
    host.exec(2, "sh", &["-c", "echo err >&2; seq 1 20000; exit 3"])
        .await;
    let mut out2 = Vec::new();
    let mut err2 = Vec::new();
    let mut seen1 = Vec::new();
    let code2 = loop {
        let msg = host.next().await;
        if msg.id == 1 {
            seen1.push(msg.t.clone());
            continue;
        }
        match msg.t {
            MessageType::ExecStdout => {
                out2.extend(msg.payload::<ref_exec::ExecStdout>().unwrap().data)
            }
            MessageType::ExecStderr => {
                err2.extend(msg.payload::<ref_exec::ExecStderr>().unwrap().data)
            }
            MessageType::ExecExited => break msg.payload::<ref_exec::ExecExited>().unwrap().code,
            _ => {}
        }
    };
    assert_eq!(code2, 3);
    assert_eq!(err2, b"err\n");
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    assert_eq!(out2, expected.as_bytes());
    assert!(!seen1.contains(&MessageType::ExecExited));
    host.send(
        MsgType::ExecStdin,
        1,
        &Data {
            data: b"x\n".to_vec(),
        },
    )
    .await;
    let (out1, _, last) = host.collect(1).await;
    assert_eq!(out1, b"got x\n");
    assert_eq!(last.payload::<ref_exec::ExecExited>().unwrap().code, 0);
}

#[tokio::test]
async fn cli_demo_agent_tty_output_arrives_as_stdout() {
    let mut host = Host::start().await;
    let req = ExecRequest {
        env: vec!["GREETING=hello".into()],
        cwd: Some("/".into()),
        tty: true,
        ..ExecRequest::new("sh").args(["-c", "echo out; echo err >&2"])
    };
    host.send(MsgType::ExecRequest, 6, &req).await;
    let (out, err, _) = host.collect(6).await;
    assert!(err.is_empty());
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("out\n") && out.contains("err\n"), "{out}");
}

#[tokio::test]
async fn cli_demo_agent_undecodable_request_fails_terminal() {
    let mut host = Host::start().await;
    // A valid envelope whose payload is not an ExecRequest.
    host.send(MsgType::ExecRequest, 8, &Data { data: vec![1] })
        .await;
    let msg = host.next().await;
    assert_eq!(msg.t, MessageType::ExecFailed);
    assert_eq!(msg.flags, FLAG_TERMINAL);
    let failed: ref_exec::ExecFailed = msg.payload().unwrap();
    assert_eq!(failed.kind, ref_exec::ExecFailureKind::BadArgs);
}

/// Whether a live (not zombie) process's command line starts with `needle`.
fn process_running(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok).any(|entry| {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'));
                !zombie
                    && String::from_utf8_lossy(&cmdline)
                        .replace('\0', " ")
                        .starts_with(needle)
            })
        })
        .unwrap_or(false)
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn cli_demo_agent_kill_reaches_the_whole_process_group() {
    let mut host = Host::start().await;
    for (id, signal, code) in [(1u32, 9, 137), (2, 15, 143)] {
        // The shell forks `sleep` (it has more to do after it).
        let script = format!("sleep 41.{id}; true");
        host.exec(id, "sh", &["-c", &script]).await;
        assert_eq!(host.next().await.t, MessageType::ExecStarted);
        let running = format!("sleep 41.{id}");
        wait_until("sleep to start", || process_running(&running)).await;
        host.send(MsgType::ExecSignal, id, &ExecSignal { signal })
            .await;
        let (_, _, last) = host.collect(id).await;
        let exited: ref_exec::ExecExited = last.payload().unwrap();
        assert_eq!(exited.code, code, "signal {signal}");
        wait_until("sleep to be killed with its shell", || {
            !process_running(&running)
        })
        .await;
    }
}

#[tokio::test]
async fn cli_demo_agent_holds_unread_stdin_up_to_a_bound_then_stalls() {
    let (mut host, guest) = tokio::io::duplex(64 << 10);
    tokio::spawn(async move {
        run_demo_agent(guest).await.expect("demo agent failed");
    });
    let mut buf = vec![0u8; 64 << 10];
    let n = host.read(&mut buf).await.unwrap();
    assert!(n > 0, "ready");
    let req = ExecRequest::new("sleep").args(["4"]);
    host.write_all(build_frame(MsgType::ExecRequest, 1, &req).as_bytes())
        .await
        .unwrap();
    // `sleep` never reads its stdin: the agent holds up to its bound, then
    // stops reading, and our writes stall.
    let chunk = build_frame(
        MsgType::ExecStdin,
        1,
        &Data {
            data: vec![b'x'; 64 << 10],
        },
    );
    let mut written = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), host.write_all(chunk.as_bytes())).await {
            Ok(r) => r.unwrap(),
            Err(_) => break,
        }
        written += chunk.len();
        assert!(
            written < 16 << 20,
            "the agent took {written} bytes of unread stdin"
        );
    }
    // The bound, the pipe to the child, the duplex and one read: a few MiB.
    assert!(
        written <= agent_relay::demo_agent::STDIN_BOUND + (2 << 20),
        "{written}"
    );
    // Once `sleep` exits, the agent reads on: its exit comes through, and
    // the agent serves new sessions.
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = host.read(&mut chunk).await.unwrap();
            assert!(n > 0, "agent closed the stream");
            seen.extend_from_slice(&chunk[..n]);
            if let Some(msg) = try_decode_from_buf(&mut seen).unwrap()
                && msg.t != MessageType::ExecStarted
            {
                return (msg, host);
            }
        }
    });
    let (msg, _host) = tokio::time::timeout(TIMEOUT, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.t, MessageType::ExecExited);
}

/// `exec -- sh -c 'sleep ... & echo spawned'` through `serve --demo-agent`,
/// in both generations: the background `sleep` stays in `sh`'s process
/// group, and the group goes when the session ends; serve's stop leaves
/// nothing behind either.
#[test]
fn cli_demo_agent_session_end_leaves_no_background_process() {
    for (generation, arg) in [("legacy", "57.125"), ("current", "57.375")] {
        let mut server = cli_support::Server::start(&["--demo-protocol", generation]);
        let script = format!("sleep {arg} >/dev/null 2>&1 </dev/null & echo spawned");
        let out = cli_support::output_of(server.exec(&[], &["sh", "-c", &script]));
        assert!(out.status.success(), "{}", cli_support::text(&out.stderr));
        assert_eq!(out.stdout, b"spawned\n");
        let needle = format!("sleep {arg}");
        cli_support::wait_until(&format!("{needle} gone ({generation})"), || {
            !cli_support::process_running(&needle)
        });
        server.stop("TERM");
    }
}
