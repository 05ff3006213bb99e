//! Core alone: frames/s routed with the exec.log tap off and on, the frame
//! decoder's throughput, and exec.log's escaping against serde_json's (the
//! faster one is what the writer uses). Run: `cargo bench --bench core`.

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

/// exec.log's text escaping: ours (`json::push_string_lossy`) against
/// serde_json's (`String::from_utf8_lossy` then `to_writer`), on plain text,
/// text with escapes, and bytes that are not UTF-8.
fn bench_escape(c: &mut Criterion) {
    let mut g = c.benchmark_group("exec_log_escape");
    g.measurement_time(Duration::from_secs(3));
    let plain: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789 "
        .iter()
        .copied()
        .cycle()
        .take(64 << 10)
        .collect();
    let escapes: Vec<u8> = plain
        .iter()
        .enumerate()
        .map(|(i, &b)| if i % 40 == 0 { b'\n' } else { b })
        .collect();
    let binary: Vec<u8> = (0..64u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (name, input) in [
        ("plain", &plain),
        ("escapes", &escapes),
        ("binary", &binary),
    ] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        let mut out = Vec::with_capacity(4 * input.len());
        g.bench_with_input(BenchmarkId::new("ours", name), input, |b, input| {
            b.iter(|| {
                out.clear();
                agent_relay::shell::exec_log::json::push_string_lossy(input, &mut out);
                out.len()
            });
        });
        g.bench_with_input(BenchmarkId::new("serde_json", name), input, |b, input| {
            b.iter(|| {
                out.clear();
                let text = String::from_utf8_lossy(input);
                serde_json::to_writer(&mut out, &text).map(|()| out.len())
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench_route, bench_decoder, bench_escape);
criterion_main!(benches);
