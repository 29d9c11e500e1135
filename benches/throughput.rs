//! Scoring throughput per backend, all scores together (uncertainty, label
//! quality, calibration bins, confusion counts, Boundary IoU bands), on a
//! 32 × 19 × 512 × 512 batch in float32 and float16, beside the limits
//! measured in the same run: plain host memory-read bandwidth, and for the
//! GPU the host-to-device upload and device-to-device copy bandwidth.
//!
//! Run: `cargo bench --bench throughput`. Criterion prints the median time
//! and throughput (bytes of probabilities per second) of each case. The GPU
//! group runs when wgpu finds an adapter (lavapipe counts).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use std::hint::black_box;
use triage::backend::cpu::CpuBackend;
use triage::backend::gpu::{AdapterPolicy, GpuBackend};
use triage::backend::{Backend, ProbBuf, SegBatch, SegItem};

const N: usize = 32;
const C: usize = 19;
const H: usize = 512;
const W: usize = 512;

/// Deterministic softmax-like probabilities: one dominant class per 64x64
/// block with a little per-pixel variation, and label maps that mostly agree.
fn batch(f16: bool) -> SegBatch {
    let hw = H * W;
    let items = (0..N)
        .into_par_iter()
        .map(|n| {
            let mut probs = vec![0f32; C * hw];
            let mut labels = vec![0u16; hw];
            for i in 0..hw {
                let (y, x) = (i / W, i % W);
                let top = ((y / 64) * 8 + x / 64 + n) % C;
                let jitter = ((i * 2654435761usize) >> 7) % 1000;
                let main = 0.5 + 0.45 * jitter as f32 / 1000.0;
                let rest = (1.0 - main) / (C - 1) as f32;
                for k in 0..C {
                    probs[k * hw + i] = if k == top { main } else { rest };
                }
                labels[i] = if jitter < 30 {
                    ((top + 1) % C) as u16
                } else {
                    top as u16
                };
            }
            let probs = if f16 {
                ProbBuf::F16(
                    probs
                        .iter()
                        .map(|&v| half::f16::from_f32(v).to_bits())
                        .collect(),
                )
            } else {
                ProbBuf::F32(probs)
            };
            SegItem {
                probs,
                labels,
                height: H,
                width: W,
            }
        })
        .collect();
    SegBatch {
        items,
        classes: C,
        ignore_index: 255,
        logits: false,
    }
}

fn bench(c: &mut Criterion) {
    let backend = CpuBackend::new();
    let mut group = c.benchmark_group("cpu_32x19x512x512");
    group.sample_size(10);

    let b32 = batch(false);
    let bytes32: usize = b32.items.iter().map(|i| i.probs.bytes()).sum();
    group.throughput(Throughput::Bytes(bytes32 as u64));
    group.bench_function("memory_read_f32", |bench| {
        bench.iter(|| {
            // Integer wrapping sums vectorise, so this is bound by memory, not adds.
            let s: u32 = b32
                .items
                .par_iter()
                .flat_map(|it| match &it.probs {
                    ProbBuf::F32(v) => v.par_chunks(1 << 16).collect::<Vec<_>>(),
                    ProbBuf::F16(_) => vec![],
                })
                .map(|c| {
                    let words: &[u32] = bytemuck::cast_slice(c);
                    words.iter().fold(0u32, |a, &w| a.wrapping_add(w))
                })
                .reduce(|| 0, u32::wrapping_add);
            black_box(s)
        })
    });
    group.bench_function("score_all_f32", |bench| {
        bench.iter(|| black_box(backend.score_items(&b32).map(|r| r.len()).unwrap_or(0)))
    });
    drop(b32);

    let b16 = batch(true);
    let bytes16: usize = b16.items.iter().map(|i| i.probs.bytes()).sum();
    group.throughput(Throughput::Bytes(bytes16 as u64));
    group.bench_function("score_all_f16", |bench| {
        bench.iter(|| black_box(backend.score_items(&b16).map(|r| r.len()).unwrap_or(0)))
    });
    group.finish();
    drop(b16);

    let gpu = match GpuBackend::new(AdapterPolicy::AnyAdapter) {
        Ok(Some(g)) => g,
        Ok(None) => {
            eprintln!("gpu group skipped: no adapter");
            return;
        }
        Err(e) => {
            eprintln!("gpu group skipped: {e}");
            return;
        }
    };
    let info = gpu.info();
    eprintln!(
        "gpu adapter: {} ({}, {})",
        info.adapter.unwrap_or_default(),
        info.api.unwrap_or_default(),
        info.device_type.unwrap_or_default()
    );
    let mut group = c.benchmark_group("gpu_32x19x512x512");
    group.sample_size(10);
    let b32 = batch(false);
    group.throughput(Throughput::Bytes(bytes32 as u64));
    group.bench_function("upload_h2d", |bench| {
        bench.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let (h2d, _) = gpu.bandwidth_probe(bytes32 as u64).expect("probe");
                total += std::time::Duration::from_secs_f64(h2d);
            }
            total
        })
    });
    group.bench_function("copy_d2d", |bench| {
        bench.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let (_, d2d) = gpu.bandwidth_probe(bytes32 as u64).expect("probe");
                total += std::time::Duration::from_secs_f64(d2d);
            }
            total
        })
    });
    group.bench_function("score_all_f32", |bench| {
        bench.iter(|| black_box(gpu.score_items(&b32).map(|r| r.len()).expect("gpu")))
    });
    drop(b32);
    let b16 = batch(true);
    group.throughput(Throughput::Bytes(bytes16 as u64));
    group.bench_function("score_all_f16", |bench| {
        bench.iter(|| black_box(gpu.score_items(&b16).map(|r| r.len()).expect("gpu")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
