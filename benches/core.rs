//! Core alone: frames/s routed with the exec.log tap off and on, and the
//! frame decoder's throughput. Run: `cargo bench --bench core`.

use std::time::Duration;

use agent_relay::wire::FrameDecoder;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/mod.rs"]
mod common;

use common::{CHUNK, FRAMES, ready_relay, route, stream};

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
