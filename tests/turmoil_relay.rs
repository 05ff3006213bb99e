//! The production shell driver on turmoil's simulated network: a guest host
//! serving the stream port over TCP, the relay host, several SDK client hosts
//! and one client host that crashes mid-session. Seeded runs with latency and
//! a held link. Assertions come from what the clients and the guest observe:
//! each client gets only its own session's frames, in order; the crashed
//! client's exec session gets exactly one SIGKILL at the guest, and no other
//! session does.

mod shell_support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::Duration;

use agent_relay::shell::{GuestPort, Listener, Shell};
use agent_relay::wire::MsgType;
use agent_relay::wire::payload::ExecRequest;
use microsandbox_protocol::exec::{ExecExited, ExecSignal, ExecStdout};
use microsandbox_protocol::message::MessageType;
use rand::SeedableRng;
use shell_support::{Reader, V1, exited, frame, ready, stdout};
use tokio::io::AsyncReadExt;
use turmoil::net::{TcpListener, TcpStream};

const GUEST_PORT: u16 = 9000;
const RELAY_PORT: u16 = 7000;
const CLIENTS: usize = 4;
const FRAMES: u32 = 25;

/// turmoil's listener behind the shell's transport trait.
struct SimListener(TcpListener);

impl Listener for SimListener {
    type Conn = TcpStream;

    async fn accept(&mut self) -> io::Result<TcpStream> {
        self.0.accept().await.map(|(s, _)| s)
    }
}

/// What the guest saw.
#[derive(Debug, Default)]
struct Observed {
    requests: Vec<u32>,
    kills: Vec<u32>,
    victim: Option<u32>,
    victim_frames: u32,
}

/// An exec request whose process prints `frames` lines then exits.
fn request(id: u32, frames: u32) -> bytes::Bytes {
    let req = ExecRequest::new("/bin/seq").args([frames.to_string()]);
    frame(V1, MsgType::ExecRequest, id, &req)
}

async fn connect_retry(host: &str, port: u16) -> TcpStream {
    loop {
        match TcpStream::connect((host, port)).await {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The fake guest agent: one session per request, a stdout frame per session
/// every 2 ms, exit 137 on SIGKILL.
async fn guest_agent(obs: Rc<RefCell<Observed>>) -> turmoil::Result {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, GUEST_PORT)).await?;
    let (stream, _) = listener.accept().await?;
    let (rd, wr) = stream.into_split();
    let (mut rd, mut wr) = (Reader::new(rd), Reader::new(wr));
    wr.send(&ready(V1, 11)).await;
    // id -> (next line, lines to print)
    let mut active: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    loop {
        tokio::select! {
            msg = rd.recv_forever() => {
                let Some(msg) = msg else { return Ok(()) };
                match msg.t {
                    MessageType::ExecRequest => {
                        let req: microsandbox_protocol::exec::ExecRequest = msg.payload()?;
                        let lines = req.args[0].parse()?;
                        obs.borrow_mut().requests.push(msg.id);
                        assert!(active.insert(msg.id, (0, lines)).is_none(), "session reused");
                    }
                    MessageType::ExecSignal => {
                        let sig: ExecSignal = msg.payload()?;
                        assert_eq!(sig.signal, 9);
                        obs.borrow_mut().kills.push(msg.id);
                        if active.remove(&msg.id).is_some() {
                            wr.send(&exited(V1, msg.id, 137)).await;
                        }
                    }
                    t => panic!("guest got unexpected {t:?}"),
                }
            }
            _ = tick.tick() => {
                let mut done = Vec::new();
                for (&id, (next, lines)) in active.iter_mut() {
                    if next < lines {
                        wr.send(&stdout(V1, id, next.to_string().as_bytes())).await;
                        *next += 1;
                        if obs.borrow().victim == Some(id) {
                            obs.borrow_mut().victim_frames += 1;
                        }
                    } else {
                        wr.send(&exited(V1, id, 0)).await;
                        done.push(id);
                    }
                }
                for id in done {
                    active.remove(&id);
                }
            }
        }
    }
}

async fn relay_host() -> turmoil::Result {
    let guest = connect_retry("guest", GUEST_PORT).await;
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, RELAY_PORT)).await?;
    Shell::with_listener(SimListener(listener), GuestPort::stream(guest))
        .run(std::future::pending::<()>())
        .await?;
    Ok(())
}

/// Connects, reads the 0.4.4 handshake, starts one session of `lines` lines.
async fn open_session(lines: u32) -> (Reader<TcpStream>, u32) {
    let mut stream = connect_retry("relay", RELAY_PORT).await;
    let mut offset = [0u8; 4];
    stream.read_exact(&mut offset).await.expect("handshake");
    let mut r = Reader::new(stream);
    let ready = r.recv_forever().await.expect("ready frame");
    assert_eq!(ready.t, MessageType::Ready);
    let id = u32::from_be_bytes(offset) + 1;
    r.send(&request(id, lines)).await;
    (r, id)
}

async fn sdk_client() -> turmoil::Result {
    let (mut r, id) = open_session(FRAMES).await;
    for i in 0..FRAMES {
        let m = r.recv_forever().await.expect("stdout frame");
        assert_eq!(m.id, id, "isolation: a frame of another session");
        assert_eq!(m.t, MessageType::ExecStdout);
        let out: ExecStdout = m.payload()?;
        assert_eq!(out.data, i.to_string().as_bytes(), "order");
    }
    let m = r.recv_forever().await.expect("exit frame");
    assert_eq!((m.t.clone(), m.id), (MessageType::ExecExited, id));
    assert_eq!(m.payload::<ExecExited>()?.code, 0);
    Ok(())
}

async fn victim(obs: Rc<RefCell<Observed>>) -> turmoil::Result {
    let (mut r, id) = open_session(u32::MAX).await;
    obs.borrow_mut().victim = Some(id);
    while let Some(m) = r.recv_forever().await {
        assert_eq!(m.id, id, "isolation: a frame of another session");
    }
    Ok(())
}

fn run_seed(seed: u64) {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(30))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(2 + seed % 7))
        .build_with_rng(Box::new(rand::rngs::SmallRng::seed_from_u64(seed)));
    let obs = Rc::new(RefCell::new(Observed::default()));
    let o = obs.clone();
    sim.host("guest", move || guest_agent(o.clone()));
    sim.host("relay", relay_host);
    let o = obs.clone();
    sim.host("victim", move || victim(o.clone()));
    for k in 0..CLIENTS {
        sim.client(format!("client{k}"), sdk_client());
    }

    let held_from = Duration::from_millis(5 + seed % 20);
    let mut held = false;
    let mut released = false;
    let mut crashed = false;
    loop {
        let finished = sim.step().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let now = sim.elapsed();
        // Delay one client's link for a while.
        if !held && now >= held_from {
            sim.hold("client1", "relay");
            held = true;
        }
        if held && !released && now >= held_from + Duration::from_millis(150) {
            sim.release("client1", "relay");
            released = true;
        }
        // Crash the victim once its process is producing output.
        if !crashed && obs.borrow().victim_frames >= 3 + (seed % 5) as u32 {
            sim.crash("victim");
            crashed = true;
        }
        let killed = !obs.borrow().kills.is_empty();
        if finished && crashed && killed {
            break;
        }
        assert!(
            now < Duration::from_secs(10),
            "seed {seed}: no progress: {:?}",
            obs.borrow()
        );
    }
    let obs = obs.borrow();
    eprintln!(
        "seed {seed}: done at {:?} simulated: {obs:?}",
        sim.elapsed()
    );
    let victim = obs.victim.expect("victim started");
    assert_eq!(obs.requests.len(), CLIENTS + 1, "seed {seed}: {obs:?}");
    assert_eq!(
        obs.kills,
        vec![victim],
        "seed {seed}: exactly one SIGKILL, for the crashed client's session"
    );
}

#[test]
fn turmoil_relay_isolation_and_crash_cleanup_seed_1() {
    run_seed(1);
}

#[test]
fn turmoil_relay_isolation_and_crash_cleanup_seed_2a() {
    run_seed(0x2a);
}

#[test]
fn turmoil_relay_isolation_and_crash_cleanup_seed_beef() {
    run_seed(0xbeef);
}
