//! Core alone: frames/s routed with the exec.log tap off and on, and the
//! frame decoder's throughput. Run: `cargo bench --bench core`.

use std::time::Duration;

use agent_relay::core::{Action, ClientId, Config, Event, Relay};
use agent_relay::wire::payload::{Data, ExecRequest, Ready, build_frame};
use agent_relay::wire::{FrameDecoder, MsgType};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const FRAMES: usize = 100_000;
const CHUNK: usize = 64 * 1024;

fn stream(payload: usize) -> Vec<u8> {
    let data = Data {
        data: vec![b'x'; payload],
    };
    let one = build_frame(MsgType::ExecStdout, 1, &data).into_bytes();
    one.iter()
        .copied()
        .cycle()
        .take(one.len() * FRAMES)
        .collect()
}

fn ready_relay(exec_log: bool) -> Relay {
    let mut relay = Relay::new(Config {
        exec_log,
        ..Config::default()
    });
    let ready = Ready {
        boot_time_ns: 0,
        init_time_ns: 0,
        ready_time_ns: 0,
    };
    relay.handle(
        0,
        Event::GuestBytes(build_frame(MsgType::Ready, 0, &ready).as_bytes()),
    );
    relay.handle(0, Event::ClientConnected(ClientId(1)));
    let req = ExecRequest::new("cat");
    let req = build_frame(MsgType::ExecRequest, 1, &req);
    relay.handle(0, Event::ClientBytes(ClientId(1), req.as_bytes()));
    while relay.poll_action().is_some() {}
    relay
}

/// Routes the whole stream; returns frames delivered.
fn route(relay: &mut Relay, bytes: &[u8]) -> usize {
    let mut frames = 0;
    for chunk in bytes.chunks(CHUNK) {
        relay.handle(0, Event::GuestBytes(chunk));
        let mut written = 0;
        while let Some(action) = relay.poll_action() {
            if let Action::ToClient { frame, .. } = action {
                written += frame.len();
                frames += 1;
            }
        }
        relay.handle(0, Event::ClientWritten(ClientId(1), written));
    }
    frames
}

fn bench_route(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_route_64B");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.measurement_time(Duration::from_secs(3));
    let bytes = stream(64);
    for tap in [false, true] {
        let name = if tap { "tap_on" } else { "tap_off" };
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            let mut relay = ready_relay(tap);
            b.iter(|| {
                let n = route(&mut relay, bytes);
                assert_eq!(n, FRAMES);
            });
        });
    }
    g.finish();
}

fn bench_decoder(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_decoder");
    g.measurement_time(Duration::from_secs(3));
    for payload in [64usize, 16 * 1024] {
        let bytes = stream(payload);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(payload), &bytes, |b, bytes| {
            b.iter(|| {
                let mut d = FrameDecoder::new();
                let mut n = 0;
                for chunk in bytes.chunks(CHUNK) {
                    d.extend(chunk);
                    while let Ok(Some(f)) = d.next_frame() {
                        n += f.len();
                    }
                }
                assert_eq!(n, bytes.len());
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench_route, bench_decoder);
criterion_main!(benches);
