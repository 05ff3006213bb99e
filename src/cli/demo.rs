//! `agent-relay demo`: the relay at work in a few seconds, with nothing to
//! set up. It starts a relay on a temporary socket, with the built-in demo
//! agent as the guest (a stand-in for the real guest agent: commands run on
//! this host) and an exec.log in a temporary directory, then runs several
//! clients at once:
//! - an interactive one that feeds stdin to `sh -c 'read x; ...'`;
//! - one streaming a few MB (`seq`), counting bytes and checking every line;
//! - one writing to stdout and stderr and exiting 3;
//! - one asking for a program that does not exist (a shell would exit 127);
//! - one starting `sleep 30` and then disconnecting: the relay kills the
//!   orphaned session with SIGKILL and the demo agent reports exit 137.
//!
//! It prints what each client saw, the exec.log and the relay's counters;
//! by default once per protocol generation: the legacy one (1, microsandbox
//! 0.4.4), then the current one (10, microsandbox 0.7.x), where the relay
//! also answers the demo agent's init exchange, keeps to its input credit
//! and sends the disconnect notice after the kill.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::DemoWhich;
use super::client::{Client, ExecEvent, exec_request};
use super::exec::failure_exit_code;
use super::logs::{LogLine, LogView, log_files};
use super::writer::OUTPUT_CHUNK_OVERHEAD;
use crate::core::Counters;
use crate::demo_agent::{AgentNote, DemoAgent, Generation};
use crate::shell::{GuestPort, Shell, ShellHandle};

/// The streaming client's command: `seq 1 STREAM_LINES`.
pub const STREAM_LINES: u32 = 500_000;

/// How long the whole demo may take before it gives up.
const DEADLINE: Duration = Duration::from_secs(30);

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "agent-relay-demo-{}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo for the generations `which` names, printing to stdout.
pub async fn run(which: DemoWhich) -> io::Result<()> {
    let started = Instant::now();
    let generations: &[Generation] = match which {
        DemoWhich::Legacy => &[Generation::Legacy],
        DemoWhich::Current => &[Generation::Current],
        DemoWhich::Both => &[Generation::Legacy, Generation::Current],
    };
    for &generation in generations {
        run_one(generation).await?;
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "done in {:.2} s. Next: `agent-relay serve --socket /tmp/relay.sock --demo-agent`, then",
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "`agent-relay exec --socket /tmp/relay.sock -- uname -a` in another terminal."
    )?;
    out.flush()
}

/// The five clients against a relay and a demo agent of `generation`.
async fn run_one(generation: Generation) -> io::Result<()> {
    let tmp = TempDir::new()?;
    let socket = tmp.0.join("agent.sock");
    let log_dir = tmp.0.join("log");
    print_header(generation, &socket, &log_dir)?;

    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let (ours, agents) = tokio::io::duplex(super::serve::DEMO_DUPLEX);
    let demo_agent = DemoAgent::new().generation(generation);
    let agent = tokio::spawn(demo_agent.with_notes(notes_tx).run(agents));
    let shell = Shell::new(&socket, GuestPort::stream(ours)).exec_log(&log_dir);
    let handle = shell.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(shell.run(stopped));
    handle
        .wait_ready(Duration::from_secs(5))
        .await
        .map_err(io::Error::other)?;

    let clients = tokio::time::timeout(DEADLINE, async {
        // All connected first, then all at work: no client takes a slot
        // another one just left.
        let (a, b, c, d, e) = tokio::try_join!(
            Client::connect(&socket),
            Client::connect(&socket),
            Client::connect(&socket),
            Client::connect(&socket),
            Client::connect(&socket),
        )?;
        tokio::try_join!(
            interactive(a),
            streaming(b),
            stderr_and_code(c),
            not_found(d),
            disconnect(e, &mut notes),
        )
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the demo clients took too long"))??;

    // The relay counts its kill when it sends it, the session's end when the
    // demo agent's exit frame comes back.
    let counters = wait_counters(&handle, |c| c.kills_sent >= 1 && c.live_sessions == 0).await;
    // Stopping the relay closes exec.log, ending it with the stop marker.
    drop(stop);
    relay
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
    agent.abort();

    let mut out = io::stdout().lock();
    let (a, b, c, d, e) = clients;
    for (n, report) in [a, b, c, d, e].into_iter().enumerate() {
        write!(out, "client {}: {report}", n + 1)?;
    }
    writeln!(out)?;
    writeln!(out, "exec.log (via `agent-relay logs`, long records cut):")?;
    print_log(&log_dir, &mut out)?;
    writeln!(out)?;
    writeln!(out, "relay counters:")?;
    print_counters(&counters, &mut out)?;
    writeln!(out)?;
    out.flush()
}

fn print_header(generation: Generation, socket: &Path, log_dir: &Path) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let which = match generation {
        Generation::Legacy => "legacy protocol generation (1, microsandbox 0.4.4)",
        Generation::Current => "current protocol generation (10, microsandbox 0.7.x)",
    };
    writeln!(out, "agent-relay demo: the {which}")?;
    writeln!(out, "  relay socket: {}", socket.display())?;
    writeln!(out, "  exec.log:     {}/exec.log", log_dir.display())?;
    writeln!(
        out,
        "  guest:        the built-in demo agent, a stand-in for the real guest agent"
    )?;
    writeln!(
        out,
        "                (no VM: it runs the commands below as processes on this host)"
    )?;
    writeln!(out)?;
    out.flush()
}

async fn wait_counters(relay: &ShellHandle, done: impl Fn(&Counters) -> bool) -> Counters {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let c = relay.counters();
        if done(&c) || Instant::now() > until {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Everything a client saw of one session.
#[derive(Debug, Default)]
struct Seen {
    pid: Option<u32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_frames: usize,
    exit: Option<String>,
    code: Option<i32>,
}

/// Reads session `id` to its end. Under a current guest's execution
/// policy each output chunk is acknowledged as it is taken (payload plus
/// 256 bytes, cumulative), as the guest holds output, and the exit, until it
/// is.
async fn collect(client: &mut Client, id: u32) -> io::Result<Seen> {
    let mut seen = Seen::default();
    let acks = client.prologue().exec_limits.is_some();
    let mut consumed = 0u64;
    while let Some((event_id, event)) = client.next_event().await? {
        if event_id != id {
            continue;
        }
        if let ExecEvent::Stdout(d) | ExecEvent::Stderr(d) = &event
            && acks
        {
            consumed += d.len() as u64 + OUTPUT_CHUNK_OVERHEAD;
            client.output_ack(id, consumed).await?;
        }
        match event {
            ExecEvent::Started { pid } => seen.pid = Some(pid),
            ExecEvent::Stdout(d) => {
                seen.stdout_frames += 1;
                seen.stdout.extend(d);
            }
            ExecEvent::Stderr(d) => seen.stderr.extend(d),
            ExecEvent::Exited { code } => {
                seen.exit = Some(format!("exited {code}"));
                seen.code = Some(code);
                return Ok(seen);
            }
            ExecEvent::Failed(f) => {
                let code = failure_exit_code(&f);
                seen.exit = Some(format!(
                    "failed to start: {:?}, {} (a shell would exit {code})",
                    f.kind, f.message
                ));
                seen.code = Some(code);
                return Ok(seen);
            }
            ExecEvent::StdinAck(_) | ExecEvent::Other(_) => {}
        }
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the relay closed the connection mid-session",
    ))
}

fn header(cmd: &str) -> String {
    format!("$ {cmd}\n")
}

async fn interactive(mut client: Client) -> io::Result<String> {
    let script = "read x; echo \"got $x\"";
    let id = client.exec(&exec_request("sh", &["-c", script])).await?;
    client.stdin(id, b"hello relay\n").await?;
    client.stdin(id, b"").await?;
    let seen = collect(&mut client, id).await?;
    let mut r = header(&format!("sh -c '{script}'   (interactive)"));
    let _ = writeln!(r, "    correlation id {id}, pid {}", seen.pid.unwrap_or(0));
    let _ = writeln!(r, "    sent stdin  {:?}, then EOF", "hello relay\n");
    let _ = writeln!(
        r,
        "    stdout      {:?}",
        String::from_utf8_lossy(&seen.stdout)
    );
    let _ = writeln!(r, "    {}", seen.exit.unwrap_or_default());
    Ok(r)
}

async fn streaming(mut client: Client) -> io::Result<String> {
    let limit = STREAM_LINES.to_string();
    let t0 = Instant::now();
    let id = client.exec(&exec_request("seq", &["1", &limit])).await?;
    let seen = collect(&mut client, id).await?;
    let secs = t0.elapsed().as_secs_f64();
    let expected: usize = (1..=STREAM_LINES).map(|n| n.to_string().len() + 1).sum();
    let in_order = seen.stdout.len() == expected
        && seen
            .stdout
            .split(|&b| b == b'\n')
            .zip(1..=STREAM_LINES)
            .all(|(line, n)| line == n.to_string().as_bytes());
    let mut r = header(&format!("seq 1 {limit}   (streaming)"));
    let _ = writeln!(
        r,
        "    stdout      {} bytes in {} frames ({:.0} MB/s), {}",
        seen.stdout.len(),
        seen.stdout_frames,
        seen.stdout.len() as f64 / 1e6 / secs.max(1e-6),
        if in_order {
            "every line present, in order"
        } else {
            "LINES MISSING OR OUT OF ORDER"
        }
    );
    let _ = writeln!(r, "    {}", seen.exit.unwrap_or_default());
    if !in_order {
        return Err(io::Error::other(format!(
            "streaming client got {} bytes, expected {expected}",
            seen.stdout.len()
        )));
    }
    Ok(r)
}

async fn stderr_and_code(mut client: Client) -> io::Result<String> {
    let script = "echo to stdout; echo to stderr >&2; exit 3";
    let id = client.exec(&exec_request("sh", &["-c", script])).await?;
    let seen = collect(&mut client, id).await?;
    let mut r = header(&format!("sh -c '{script}'"));
    let _ = writeln!(
        r,
        "    stdout      {:?}",
        String::from_utf8_lossy(&seen.stdout)
    );
    let _ = writeln!(
        r,
        "    stderr      {:?}",
        String::from_utf8_lossy(&seen.stderr)
    );
    let _ = writeln!(r, "    {}", seen.exit.unwrap_or_default());
    Ok(r)
}

async fn not_found(mut client: Client) -> io::Result<String> {
    let id = client.exec(&exec_request("no-such-program", &[])).await?;
    let seen = collect(&mut client, id).await?;
    let mut r = header("no-such-program");
    let _ = writeln!(r, "    {}", seen.exit.unwrap_or_default());
    Ok(r)
}

async fn disconnect(
    mut client: Client,
    notes: &mut mpsc::UnboundedReceiver<AgentNote>,
) -> io::Result<String> {
    let id = client.exec(&exec_request("sleep", &["30"])).await?;
    let pid = loop {
        match client.next_event().await? {
            Some((i, ExecEvent::Started { pid })) if i == id => break pid,
            Some(_) => continue,
            None => return Err(io::Error::other("relay closed before sleep started")),
        }
    };
    let t0 = Instant::now();
    drop(client);
    // The demo agent tells us what happened to the orphaned process.
    let mut signalled = None;
    let mut notice = false;
    let code = loop {
        match notes.recv().await {
            Some(AgentNote::Signalled { id: i, signal }) if i == id => signalled = Some(signal),
            Some(AgentNote::RangeGone { .. }) => notice = true,
            Some(AgentNote::Exited { id: i, code }) if i == id => break code,
            Some(_) => continue,
            None => return Err(io::Error::other("the demo agent stopped")),
        }
    };
    let mut r = "$ sleep 30   (then the client disconnects)\n".to_owned();
    let _ = writeln!(
        r,
        "    correlation id {id}, pid {pid}; the client disconnected right after the start"
    );
    let _ = writeln!(
        r,
        "    relay sent signal {} for the orphaned session; demo agent reports exit {code} after {} ms",
        signalled.map_or("?".to_owned(), |s| s.to_string()),
        t0.elapsed().as_millis()
    );
    if notice {
        let _ = writeln!(
            r,
            "    then core.relay.client.disconnected: the guest forgets that client's id range"
        );
    }
    if code != 137 {
        return Err(io::Error::other(format!(
            "sleep 30 ended with {code}, not 137 (SIGKILL)"
        )));
    }
    Ok(r)
}

/// Records of one stream shown before the rest is summarised.
const SHOWN_PER_STREAM: usize = 2;

/// Prints exec.log with the `logs` formatter, summarising long runs of
/// records from one stream so megabytes of `seq` output fit on a screen.
fn print_log(dir: &Path, out: &mut impl Write) -> io::Result<()> {
    let view = LogView {
        max_chars: Some(60),
        ..LogView::for_stdout()
    };
    let mut lines = Vec::new();
    for path in log_files(dir)? {
        for raw in std::fs::read_to_string(path)?.lines() {
            if let Ok(line) = serde_json::from_str::<LogLine>(raw) {
                lines.push(line);
            }
        }
    }
    // Per stream: the first records, then one line counting the rest,
    // printed where the stream's last record was.
    let key = |l: &LogLine| (l.id, l.s.clone());
    let mut remaining: HashMap<(Option<u64>, String), usize> = HashMap::new();
    for line in &lines {
        *remaining.entry(key(line)).or_default() += 1;
    }
    let mut shown: HashMap<(Option<u64>, String), (usize, usize, usize)> = HashMap::new();
    for line in &lines {
        let k = key(line);
        let (printed, skipped, skipped_bytes) = shown.entry(k.clone()).or_default();
        if *printed < SHOWN_PER_STREAM {
            *printed += 1;
            writeln!(out, "  {}", view.format_line(line))?;
        } else {
            *skipped += 1;
            *skipped_bytes += line.d.len();
        }
        let left = remaining.entry(k).or_default();
        *left -= 1;
        if *left == 0 && *skipped > 0 {
            writeln!(
                out,
                "  ... and {skipped} more {} records of session {} ({skipped_bytes} bytes)",
                line.s,
                line.id.map_or("-".to_owned(), |id| id.to_string()),
            )?;
        }
    }
    Ok(())
}

fn print_counters(c: &Counters, out: &mut impl Write) -> io::Result<()> {
    let current: [(&str, u64); 5] = [
        (
            "protocol generation (the v of the guest's ready)",
            c.generation,
        ),
        ("init acks sent", c.init_acks),
        ("disconnect notices sent", c.notices_sent),
        ("clock syncs sent", c.clock_syncs),
        ("input credit used: data bytes", c.used_data_bytes),
    ];
    let rows: [(&str, u64); 9] = [
        ("client frames in", c.client_frames_in),
        ("frames to guest", c.frames_to_guest),
        ("guest frames in", c.guest_frames_in),
        ("frames to clients", c.frames_to_clients),
        ("bytes to clients", c.bytes_to_clients),
        (
            "kills sent (SIGKILL for departed clients' sessions)",
            c.kills_sent,
        ),
        ("protocol violations", c.protocol_violations),
        ("slow-consumer closes", c.slow_consumer_closes),
        ("live sessions now", c.live_sessions),
    ];
    let current = if c.generation > 1 { &current[..] } else { &[] };
    for (name, value) in rows.iter().chain(current) {
        writeln!(out, "  {name:<54} {value}")?;
    }
    Ok(())
}
