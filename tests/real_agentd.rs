//! The harness that runs the real `microsandbox-agentd 0.7.13` loop as a
//! sandboxed host process (tests/agentd_support), checked by talking to
//! agentd directly with the 0.7.13 codec: no relay here.

mod agentd_support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentd_support::wire::Wire;
use agentd_support::{
    Agentd, AgentdOptions, Ending, ExecLimits, PROMPT, bootstrap_frame, launcher_bootstrap,
    older_launcher_bootstrap, pids_with_arg, status_field,
};
use msp7::core::{ClockSync, InitAck, InitResolved, Ping, Ready};
use msp7::exec::{ExecExited, ExecOutputAck, ExecRequest, ExecStarted, ExecStdout};
use msp7::message::{FLAG_SESSION_START, FLAG_TERMINAL, Message, MessageType};

/// Plays the host's side of start-up after the bootstrap: reads
/// `core.init.resolved`, acknowledges it, returns `core.ready`'s payload.
fn finish_boot(agentd: &Agentd, wire: &mut Wire) -> Ready {
    let failed = |what: &str, e: std::io::Error| -> ! {
        panic!("{what}: {e}; agentd's stderr:\n{}", agentd.stderr())
    };
    let resolved = wire
        .recv(PROMPT)
        .unwrap_or_else(|e| failed("core.init.resolved", e));
    assert_eq!(resolved.t, MessageType::InitResolved, "{resolved:?}");
    let user: InitResolved = resolved.payload().expect("init.resolved payload");
    assert_eq!((user.default_user.uid, user.default_user.gid), (0, 0));
    wire.send_payload(MessageType::InitAck, 0, &InitAck::default())
        .unwrap_or_else(|e| failed("send core.init.ack", e));
    let ready = wire
        .recv(PROMPT)
        .unwrap_or_else(|e| failed("core.ready", e));
    assert_eq!(ready.t, MessageType::Ready, "{ready:?}");
    assert_eq!(ready.id, 0);
    ready.payload().expect("ready payload")
}

/// Starts agentd bootstrapped by the test (as a relay would), booted.
fn booted() -> (Agentd, Wire, Ready) {
    let (agentd, port) = Agentd::spawn(AgentdOptions::relay()).expect("spawn agentd");
    let mut wire = Wire::new(port);
    wire.send_bytes(&bootstrap_frame(&launcher_bootstrap()))
        .expect("send core.bootstrap");
    let ready = finish_boot(&agentd, &mut wire);
    (agentd, wire, ready)
}

fn exec(wire: &mut Wire, id: u32, cmd: &str, args: &[&str]) {
    let request = ExecRequest {
        cmd: cmd.to_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        cwd: None,
        user: None,
        tty: false,
        rows: 24,
        cols: 80,
        rlimits: Vec::new(),
    };
    let msg = Message::with_payload(MessageType::ExecRequest, id, &request).expect("encode");
    assert_eq!(msg.flags, FLAG_SESSION_START);
    wire.send(&msg).expect("send core.exec.request");
}

/// The session `id`'s stdout and exit code, reading until its
/// `core.exec.exited`.
fn run_to_exit(agentd: &Agentd, wire: &mut Wire, id: u32) -> (Vec<u8>, i32) {
    let deadline = Instant::now() + PROMPT;
    let mut started = false;
    let mut stdout = Vec::new();
    let mut ack = ExecOutputAck::default();
    let mut seen = Vec::new();
    loop {
        let msg = wire
            .recv(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|e| {
                panic!(
                    "session {id}: {e} after {seen:?}; agentd's stderr:\n{}",
                    agentd.stderr()
                )
            });
        seen.push((msg.t, msg.id, msg.p.len()));
        if msg.id != id {
            continue;
        }
        match msg.t {
            MessageType::ExecStarted => {
                let _: ExecStarted = msg.payload().expect("started payload");
                started = true;
            }
            MessageType::ExecStdout => {
                assert!(started, "stdout before core.exec.started");
                let data = msg.payload::<ExecStdout>().expect("stdout payload").data;
                // Under exec_limits agentd holds core.exec.exited back until
                // every chunk is acknowledged (bytes plus 256 per chunk).
                ack.consume(data.len()).expect("ack counter");
                wire.send_payload(MessageType::ExecOutputAck, id, &ack)
                    .expect("send core.exec.output.ack");
                stdout.extend(data);
            }
            MessageType::ExecExited => {
                assert!(started, "exited before core.exec.started");
                assert_eq!(msg.flags, FLAG_TERMINAL);
                return (stdout, msg.payload::<ExecExited>().expect("exited").code);
            }
            other => panic!("unexpected {other:?} for session {id}: {msg:?}"),
        }
    }
}

/// Init saw the hang-up, or agentd, writing before init ended it, died of
/// it first (`Broken pipe`): the only loop error a hang-up may cause.
fn assert_ended_by_hang_up(agentd: &Agentd) {
    match agentd.ending() {
        Some(Ending::HungUp) => {}
        Some(Ending::AgentdExited(_)) => {
            let error = agentd.loop_error().unwrap_or_default();
            assert!(error.contains("Broken pipe"), "{}", agentd.stderr());
        }
        other => panic!("{other:?}; stderr:\n{}", agentd.stderr()),
    }
}

/// A `sleep` argument of about `seconds` that no other process has: the
/// digits of this test process's pid appended, so that concurrent runs of
/// this binary cannot see each other's sleeps.
fn unique_sleep(seconds: &str) -> String {
    format!("{seconds}{}", std::process::id())
}

/// The home directory of uid 0 in this host's /etc/passwd.
fn root_home() -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 5 && fields[2] == "0")
        .map(|fields| fields[5].to_owned())
        .expect("uid 0 in /etc/passwd")
}

/// Waits for the tree to end and checks that nothing of it is left.
fn assert_all_gone(agentd: &mut Agentd, within: Duration) {
    let status = agentd.wait_exit(within);
    assert!(
        status.is_some(),
        "the tree still runs {within:?} after; stderr:\n{}",
        agentd.stderr()
    );
    let left = agentd.remaining_pids();
    assert!(left.is_empty(), "processes of the tree left: {left:?}");
}

#[test]
fn relay_bootstrap_ready_and_echo() {
    let (mut agentd, mut wire, ready) = booted();
    assert_eq!(ready.agent_version, "0.7.13");
    let lease = ready.relay_lease.expect("agentd offers relay leases");
    assert_eq!(lease.max_format, 1);
    assert_eq!(ready.exec_limits, Some(ExecLimits::default()));
    assert!(ready.bulk_transport.is_none());

    exec(&mut wire, 1, "echo", &["hi"]);
    let (stdout, code) = run_to_exit(&agentd, &mut wire, 1);
    assert_eq!(String::from_utf8_lossy(&stdout), "hi\n");
    assert_eq!(code, 0);

    assert!(agentd.is_alive());
    assert_eq!(agentd.loop_error(), None, "{}", agentd.stderr());
}

#[test]
fn harness_bootstrap_as_an_older_launcher() {
    let opts = AgentdOptions::harness(older_launcher_bootstrap());
    let (mut agentd, port) = Agentd::spawn(opts).expect("spawn agentd");
    let mut wire = Wire::new(port);
    // No core.bootstrap from the test: agentd's first frame is init.resolved.
    let ready = finish_boot(&agentd, &mut wire);
    assert_eq!(ready.agent_version, "0.7.13");
    assert_eq!(ready.exec_limits, None);

    // An exec runs in agentd's working directory with agentd's PATH (plus
    // the scripts directory agentd puts first); HOME comes from the user's
    // passwd entry, not from agentd's environment.
    exec(
        &mut wire,
        3,
        "sh",
        &["-c", "printf %s \"$PWD|$PATH|$HOME\""],
    );
    let (stdout, code) = run_to_exit(&agentd, &mut wire, 3);
    let workdir = agentd.work_dir().display().to_string();
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        format!("{workdir}|/.msb/scripts:/usr/bin:/bin|{}", root_home())
    );
    assert_eq!(code, 0);
    assert!(agentd.is_alive());
}

#[test]
fn agentd_runs_sandboxed_and_the_tree_goes_at_hang_up() {
    let (mut agentd, mut wire, _) = booted();
    exec(&mut wire, 1, "echo", &["hi"]);
    assert_eq!(run_to_exit(&agentd, &mut wire, 1), (b"hi\n".to_vec(), 0));

    let pid = agentd.agentd_pid().expect("agentd's pid");
    // Its own namespace, PID 2 there; its parent is init, not this process.
    let nspid = status_field(pid, "NSpid").expect("NSpid");
    let levels: Vec<&str> = nspid.split_whitespace().collect();
    assert_eq!(levels.len(), 2, "NSpid {nspid}");
    assert_ne!(levels[1], "1", "agentd must not be PID 1");
    let ppid: u32 = status_field(pid, "PPid").unwrap().parse().unwrap();
    assert_ne!(ppid, std::process::id());
    assert_eq!(agentd.pid_of("init"), Some(ppid));
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        let caps = u64::from_str_radix(&status_field(pid, field).unwrap(), 16).unwrap();
        for (cap, name) in agentd_support::DROPPED_CAPS {
            assert_eq!(caps & (1 << cap), 0, "{name} in agentd's {field}");
        }
    }
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env = String::from_utf8_lossy(&env);
    assert!(env.contains("PATH=/usr/bin:/bin\0"), "{env:?}");
    assert!(!env.contains("CARGO"), "{env:?}");
    assert!(!agentd.remaining_pids().is_empty());
    assert_eq!(agentd.loop_error(), None);

    drop(wire);
    assert_all_gone(&mut agentd, PROMPT);
    assert_ended_by_hang_up(&agentd);
}

#[test]
fn clock_sync_cannot_set_the_host_clock() {
    let (mut agentd, mut wire, _) = booted();
    let pid = agentd.agentd_pid().expect("agentd's pid");
    let eff = u64::from_str_radix(&status_field(pid, "CapEff").unwrap(), 16).unwrap();
    let bnd = u64::from_str_radix(&status_field(pid, "CapBnd").unwrap(), 16).unwrap();
    // Never send the request to an agentd that could act on it.
    assert_eq!((eff | bnd) & (1 << 25), 0, "agentd holds CAP_SYS_TIME");

    let wall = SystemTime::now();
    let mono = Instant::now();
    let an_hour_ahead = wall.duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(3600);
    let sync = ClockSync {
        unix_time_nanos: an_hour_ahead.as_nanos() as u64,
    };
    wire.send_payload(MessageType::ClockSync, 0, &sync)
        .expect("send core.clock.sync");
    // Frames are handled in order: the pong means the sync was handled.
    wire.send_payload(MessageType::Ping, 7, &Ping {})
        .expect("send core.ping");
    let pong = wire
        .recv_type(MessageType::Pong, PROMPT, &mut Vec::new())
        .expect("core.pong");
    assert_eq!(pong.id, 7);

    let expected = wall + mono.elapsed();
    let now = SystemTime::now();
    let drift = now
        .duration_since(expected)
        .unwrap_or_else(|e| e.duration());
    assert!(
        drift < Duration::from_secs(60),
        "the host clock moved by {drift:?}"
    );
    let stderr = agentd.stderr();
    assert!(
        stderr.contains("clock: failed to sync realtime clock"),
        "agentd did not try and fail: {stderr}"
    );
    assert!(agentd.is_alive());
    assert_eq!(agentd.loop_error(), None);
}

#[test]
fn a_running_exec_goes_with_the_tree_at_hang_up() {
    let mark = unique_sleep("31.4159");
    let (mut agentd, mut wire, _) = booted();
    exec(&mut wire, 5, "sleep", &[&mark]);
    let started = wire
        .recv_type(MessageType::ExecStarted, PROMPT, &mut Vec::new())
        .expect("core.exec.started");
    assert_eq!(started.id, 5);
    let deadline = Instant::now() + PROMPT;
    while pids_with_arg(&mark).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!pids_with_arg(&mark).is_empty(), "the sleep is not running");

    drop(wire);
    assert_all_gone(&mut agentd, PROMPT);
    assert_eq!(
        pids_with_arg(&mark),
        Vec::<u32>::new(),
        "the sleep survived"
    );
    assert_ended_by_hang_up(&agentd);
}

#[test]
fn a_killed_agentd_closes_the_relay_end() {
    let (mut agentd, mut wire, _) = booted();
    assert!(agentd.kill_agentd());
    let err = wire.recv(PROMPT).expect_err("no frame after the kill");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    assert_all_gone(&mut agentd, PROMPT);
    assert_eq!(
        agentd.ending(),
        Some(Ending::AgentdExited("signal: 9 (SIGKILL)".to_owned()))
    );
}

#[test]
fn core_shutdown_powers_the_tree_off() {
    let (mut agentd, mut wire, _) = booted();
    let mark = unique_sleep("27.1828");
    exec(&mut wire, 9, "sleep", &[&mark]);
    wire.recv_type(MessageType::ExecStarted, PROMPT, &mut Vec::new())
        .expect("core.exec.started");
    wire.send(&Message::new(MessageType::Shutdown, 0, Vec::new()))
        .expect("send core.shutdown");
    assert_all_gone(&mut agentd, PROMPT);
    assert_eq!(
        agentd.ending(),
        Some(Ending::PowerOff),
        "{}",
        agentd.stderr()
    );
    assert_eq!(pids_with_arg(&mark), Vec::<u32>::new());
}

#[test]
fn dropping_the_handle_ends_a_busy_tree() {
    let (mut agentd, mut wire, _) = booted();
    let mark = unique_sleep("23.1406");
    exec(&mut wire, 11, "sleep", &[&mark]);
    wire.recv_type(MessageType::ExecStarted, PROMPT, &mut Vec::new())
        .expect("core.exec.started");
    let ns = agentd.pid_namespace().expect("namespace");
    let launcher = agentd.pid_of("launcher").expect("launcher");
    drop(agentd);
    // The relay's end is still open: only the handle ended the tree.
    assert_eq!(pids_with_arg(&mark), Vec::<u32>::new());
    assert!(!std::path::Path::new(&format!("/proc/{launcher}")).exists());
    assert_eq!(ns.pids(), Vec::<u32>::new());
    drop(wire);
}
