//! Scoring throughput per backend, all scores together (uncertainty, label
//! quality, calibration bins, confusion counts, Boundary IoU bands), on a
//! 32 × 19 × 512 × 512 batch in float32 and float16, beside the limits
//! measured in the same run: plain host memory-read bandwidth, and for the
//! GPU the host-to-device upload and device-to-device copy bandwidth.
//!
//! Run: `cargo bench --bench throughput`. Criterion prints the median time
//! and throughput (bytes of probabilities per second) of each case. The GPU
//! group runs when wgpu finds an adapter (lavapipe counts).
//!
//! After the criterion groups, a second pass times the limits and the
//! scorers itself (median of `TRIAGE_BENCH_REPS` runs, default 7) and prints
//! one `limit ...`, `measure ...` or `ratio ...` line each, so the ratios the
//! GPU goals are judged by come from one run on one machine:
//! - `limit gpu_copy_d2d`: a device-to-device buffer copy (bytes read +
//!   written per second), the kernels' limit;
//! - `limit gpu_h2d_dma`: a copy from a mapped host-visible buffer to a
//!   device-local one (the host-to-device link);
//! - `measure gpu_upload_write_buffer`: `queue.write_buffer` + wait, the
//!   upload path the backend uses;
//! - `measure gpu_kernel_score_pixels_f32`: the fused per-pixel shader alone
//!   on probabilities already resident on the device (the Boundary IoU passes
//!   are not in it; they are in `score_all`);
//! - `measure gpu_score_all_f32`: the GPU backend end to end (upload included);
//! - `ratio gpu_kernel/d2d` (goal ≥ 0.5), `ratio gpu_upload/h2d`,
//!   `ratio gpu_score_all/h2d`, `ratio gpu_score_all/cpu_score_all`.
//!
//! Environment: `TRIAGE_BENCH_ITEMS` (items in the batch, default 32),
//! `TRIAGE_BENCH_REPS` (default 7), `TRIAGE_BENCH_CRITERION=0` (skip the
//! criterion groups), `TRIAGE_BENCH_RATIOS=0` (skip the second pass). The
//! second pass runs only under `cargo bench` (the `--bench` argument).

use criterion::{Criterion, Throughput, criterion_group};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;
use triage::backend::cpu::CpuBackend;
use triage::backend::gpu::{AdapterPolicy, GpuBackend};
use triage::backend::{Backend, ProbBuf, SegBatch, SegItem};

const C: usize = 19;
const H: usize = 512;
const W: usize = 512;

/// Deterministic softmax-like probabilities: one dominant class per 64x64
/// block with a little per-pixel variation, and label maps that mostly agree.
fn batch(f16: bool) -> SegBatch {
    let hw = H * W;
    let items = (0..items())
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
                planes: None,
                labels,
                height: H,
                width: W,
                unlabelled: false,
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

/// Items in the batch: `TRIAGE_BENCH_ITEMS`, default 32.
fn items() -> usize {
    env_usize("TRIAGE_BENCH_ITEMS", 32).max(1)
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_flag(key: &str, default: bool) -> bool {
    std::env::var(key).map_or(default, |v| v != "0")
}

fn bench(c: &mut Criterion) {
    let backend = CpuBackend::new();
    let mut group = c.benchmark_group(format!("cpu_{}x{C}x{H}x{W}", items()));
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
    let mut group = c.benchmark_group(format!("gpu_{}x{C}x{H}x{W}", items()));
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

fn main() {
    if env_flag("TRIAGE_BENCH_CRITERION", true) {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not.
    if std::env::args().any(|a| a == "--bench") && env_flag("TRIAGE_BENCH_RATIOS", true) {
        ratios();
    }
}

// ---------------------------------------------------------------------------
// The second pass: limits, kernels and scorers timed here, then ratios.

const GB: f64 = 1e9;

/// Median of `reps` timings (seconds) after one untimed warm-up.
fn median(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps.max(1)).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn ratios() {
    let reps = env_usize("TRIAGE_BENCH_REPS", 7);
    let cpu = CpuBackend::new();
    let b32 = batch(false);
    let bytes: usize = b32.items.iter().map(|i| i.probs.bytes()).sum();
    let b = bytes as f64;
    println!();
    println!(
        "== limits and ratios: {}x{C}x{H}x{W} f32 batch ({:.0} MB), own timing, median of {reps}, GB = 1e9 bytes",
        items(),
        b / 1e6
    );
    let read = median(reps, || {
        timed(|| {
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
            black_box(s);
        })
    });
    println!(
        "limit host_memory_read {:.2} GB/s ({read:.4} s; {} threads)",
        b / read / GB,
        rayon::current_num_threads()
    );
    let cpu_all = median(reps, || {
        timed(|| {
            black_box(cpu.score_items(&b32).map(|r| r.len()).unwrap_or(0));
        })
    });
    println!(
        "measure cpu_score_all_f32 {cpu_all:.4} s = {:.3} GB/s",
        b / cpu_all / GB
    );
    println!("ratio cpu_score_all/host_memory_read {:.4}", read / cpu_all);

    let Some(raw) = RawGpu::new() else {
        println!("gpu: no adapter; GPU limits and ratios skipped");
        return;
    };
    println!(
        "gpu adapter (limits probe): {} ({}, {}); max buffer {} MB, max storage binding {} MB",
        raw.name,
        raw.api,
        raw.kind,
        raw.limits.max_buffer_size / 1_000_000,
        raw.limits.max_storage_buffer_binding_size / 1_000_000
    );
    let probe = (bytes as u64)
        .min(raw.limits.max_buffer_size)
        .next_multiple_of(4)
        .min(raw.limits.max_buffer_size / 4 * 4);
    let pb = probe as f64;
    let d2d = raw.copy_d2d(probe, reps);
    println!(
        "limit gpu_copy_d2d {:.2} GB/s (bytes read + written; {:.0} MB copied in {d2d:.5} s)",
        2.0 * pb / d2d / GB,
        pb / 1e6
    );
    let dma = raw.h2d_dma(probe, reps);
    println!(
        "limit gpu_h2d_dma {:.2} GB/s (copy from a mapped host-visible buffer; {dma:.5} s)",
        pb / dma / GB
    );
    let write = raw.h2d_write_buffer(probe, reps);
    println!(
        "measure gpu_upload_write_buffer {:.2} GB/s (queue.write_buffer + wait; {write:.5} s)",
        pb / write / GB
    );
    let kernel = raw.score_pixels(&b32, reps);
    match &kernel {
        Ok(k) => println!(
            "measure gpu_kernel_score_pixels_f32 {:.5} s: probabilities {:.2} GB/s, moved {:.2} GB/s \
             (probabilities + labels read, prediction map written; {} tiles of {} pixels)",
            k.secs,
            b / k.secs / GB,
            k.moved as f64 / k.secs / GB,
            k.tiles,
            k.tile_len
        ),
        Err(e) => println!("measure gpu_kernel_score_pixels_f32 skipped: {e}"),
    }
    // The backend's own adapter (the same choice: hardware first).
    let gpu_all = match GpuBackend::new(AdapterPolicy::AnyAdapter) {
        Ok(Some(g)) => {
            let t = median(reps, || {
                timed(|| {
                    black_box(g.score_items(&b32).map(|r| r.len()).expect("gpu"));
                })
            });
            println!(
                "measure gpu_score_all_f32 {t:.4} s = {:.3} GB/s (backend: {})",
                b / t / GB,
                g.info().adapter.unwrap_or_default()
            );
            Some(t)
        }
        _ => None,
    };
    if let Ok(k) = &kernel {
        let kbw = k.moved as f64 / k.secs;
        let cbw = 2.0 * pb / d2d;
        println!(
            "ratio gpu_kernel/d2d {:.4} (goal >= 0.5; bytes moved per second, kernel vs copy)",
            kbw / cbw
        );
    }
    println!(
        "ratio gpu_upload/h2d {:.4} (queue.write_buffer vs the DMA copy from mapped memory)",
        dma / write
    );
    if let Some(t) = gpu_all {
        println!(
            "ratio gpu_score_all/h2d {:.4} (the GPU scorer, upload included, vs the host-to-device link)",
            (b / t) / (pb / dma)
        );
        println!(
            "ratio gpu_score_all/upload {:.4} (vs queue.write_buffer of the same bytes)",
            (b / t) / (pb / write)
        );
        println!(
            "ratio gpu_score_all/cpu_score_all {:.3} (speedup of the scorer alone; whole runs: benches/whole_run.py)",
            cpu_all / t
        );
        if let Ok(k) = &kernel {
            println!(
                "ratio gpu_kernel_time/score_all_time {:.4} (share of the scorer spent in score_pixels)",
                k.secs / t
            );
        }
    }
}

/// A wgpu device of its own, on the adapter the backend would pick
/// (hardware first, then Vulkan/Metal/DX12 over GL), for the limits and
/// the kernel alone.
struct RawGpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: wgpu::Limits,
    name: String,
    api: String,
    kind: String,
}

struct KernelTiming {
    secs: f64,
    moved: u64,
    tiles: usize,
    tile_len: u64,
}

/// Mirror of `Params` in `shaders/score_pixels.wgsl`; checked field by field
/// against the WGSL source before use.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct PixelParams {
    count: u32,
    class_stride: u32,
    sample_stride: u32,
    data_base: u32,
    label_base: u32,
    pred_base: u32,
    partial_base: u32,
    slot: u32,
    first_index: u32,
    row_base: u32,
    groups_x: u32,
    n_groups: u32,
    classes: u32,
    ignore_index: u32,
    is_f16: u32,
    logits: u32,
    rows_mode: u32,
    sum_tolerance: f32,
    rounding_slack: f32,
    ln_classes: f32,
    softmin_inv_t: f32,
    _pad: [u32; 3],
}

const SCORE_PIXELS: &str = include_str!("../shaders/score_pixels.wgsl");
use triage::backend::gpu::{
    PARTIAL_WORDS, PIXEL_PARAM_FIELDS as PARAM_FIELDS, UNIFORM_STRIDE, WG, score_pixels_source,
    wgsl_fields,
};
const MAX_TILE: u64 = 1 << 16;

impl RawGpu {
    fn new() -> Option<RawGpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            let rank = match i.device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Other => 3,
                wgpu::DeviceType::Cpu => 4,
            };
            (rank, i.backend == wgpu::Backend::Gl)
        });
        let adapter = adapters.into_iter().next()?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("throughput-bench"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| eprintln!("gpu limits probe: cannot open the device: {e}"))
        .ok()?;
        Some(RawGpu {
            device,
            queue,
            limits,
            name: info.name.clone(),
            api: format!("{:?}", info.backend),
            kind: format!("{:?}", info.device_type),
        })
    }

    fn wait(&self) {
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            panic!("gpu wait: {e}");
        }
    }

    /// Median seconds of one repetition of the work `record` adds to an
    /// encoder. Short work (a copy or kernel of a few ms on a fast GPU) is
    /// recorded several times into one submission, enough to last about
    /// 50 ms, so the submit-and-wait overhead does not count.
    fn repeated(&self, reps: usize, record: impl Fn(&mut wgpu::CommandEncoder)) -> f64 {
        let run = |times: u32| {
            timed(|| {
                let mut enc = self
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
                for _ in 0..times {
                    record(&mut enc);
                }
                self.queue.submit([enc.finish()]);
                self.wait();
            })
        };
        let once = run(1).min(run(1));
        let times = ((0.05 / once.max(1e-6)).ceil() as u32).clamp(1, 200);
        median(reps, || run(times)) / f64::from(times)
    }

    fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).next_multiple_of(16),
            usage,
            mapped_at_creation: false,
        })
    }

    /// Host bytes that are not all zero (a zero fill can be special-cased).
    fn pattern(bytes: u64) -> Vec<u8> {
        (0..bytes as usize)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    fn copy_d2d(&self, bytes: u64, reps: usize) -> f64 {
        let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let a = self.buffer("d2d_a", bytes, usage);
        let b = self.buffer("d2d_b", bytes, usage);
        self.queue.write_buffer(&a, 0, &Self::pattern(bytes));
        self.queue.submit([]);
        self.wait();
        self.repeated(reps, |enc| enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes))
    }

    fn h2d_write_buffer(&self, bytes: u64, reps: usize) -> f64 {
        let a = self.buffer(
            "h2d_dst",
            bytes,
            wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::STORAGE,
        );
        let host = Self::pattern(bytes);
        self.wait();
        median(reps, || {
            timed(|| {
                self.queue.write_buffer(&a, 0, &host);
                self.queue.submit([]);
                self.wait();
            })
        })
    }

    fn h2d_dma(&self, bytes: u64, reps: usize) -> f64 {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("h2d_staging"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        match staging.slice(..).get_mapped_range_mut() {
            Ok(mut view) => view.copy_from_slice(&Self::pattern(bytes)),
            Err(e) => panic!("map the staging buffer: {e}"),
        }
        staging.unmap();
        let dst = self.buffer(
            "h2d_dst",
            bytes,
            wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::STORAGE,
        );
        self.repeated(reps, |enc| {
            enc.copy_buffer_to_buffer(&staging, 0, &dst, 0, bytes)
        })
    }

    /// `score_pixels` alone over the batch, planar tiles as the backend cuts
    /// them, the probabilities already on the device (as many tiles as fit
    /// one storage binding stay resident and are cycled through). One
    /// submission of every tile's dispatch, timed to completion.
    fn score_pixels(&self, batch: &SegBatch, reps: usize) -> Result<KernelTiming, String> {
        let fields = wgsl_fields(SCORE_PIXELS, "Params");
        if fields != PARAM_FIELDS {
            return Err(format!(
                "shaders/score_pixels.wgsl's Params changed ({fields:?}); update benches/throughput.rs"
            ));
        }
        // The module as the backend builds it: the record layout's generated
        // constants, then the shader files.
        let (wg, partial_words) = (u64::from(WG), PARTIAL_WORDS as u64);
        let src = score_pixels_source();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("score_pixels"),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("score_pixels"),
                layout: None,
                module: &module,
                entry_point: Some("score_pixels"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("score_pixels does not compile here: {e}"));
        }

        let n = batch.items.len() as u64;
        let hw = (H * W) as u64;
        let c = C as u64;
        let max_binding = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            .min(1 << 30);
        let tile_len = (max_binding / (c * 4)).min(MAX_TILE) / wg * wg;
        if tile_len == 0 {
            return Err("one tile does not fit a storage binding".into());
        }
        let tile_bytes = tile_len * c * 4;
        let per_item = hw.div_ceil(tile_len);
        let tiles = (n * per_item) as usize;
        let resident = (max_binding / tile_bytes).clamp(1, tiles as u64) as usize;
        let wg_per_tile = tile_len / wg;
        let max_dim = self.limits.max_compute_workgroups_per_dimension;

        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let input = self.buffer("input", resident as u64 * tile_bytes, storage);
        let labels = self.buffer("labels", n * hw * 4, storage);
        let pred = self.buffer("pred", n * hw * 4, storage);
        let partials = self.buffer(
            "partials",
            tiles as u64 * wg_per_tile * partial_words * 4,
            storage,
        );
        let confusion = self.buffer("confusion", n * c * c * 4, storage);
        let invalid = self.buffer("invalid", n * 4, storage);
        let rows = self.buffer("rows", 16, storage);
        let params = self.buffer(
            "params",
            tiles as u64 * UNIFORM_STRIDE,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );

        // Resident tiles, planar: class k of the tile at k * tile_len.
        let mut staged = vec![0u8; (resident as u64 * tile_bytes) as usize];
        for (r, dst) in staged.chunks_mut(tile_bytes as usize).enumerate() {
            let (item, first) = (r as u64 / per_item, (r as u64 % per_item) * tile_len);
            let count = (hw - first).min(tile_len) as usize;
            let ProbBuf::F32(v) = &batch.items[item as usize].probs else {
                return Err("the kernel probe takes an f32 batch".into());
            };
            for k in 0..C {
                let a = k * hw as usize + first as usize;
                let o = k * tile_len as usize * 4;
                dst[o..o + count * 4].copy_from_slice(bytemuck::cast_slice(&v[a..a + count]));
            }
        }
        self.queue.write_buffer(&input, 0, &staged);
        drop(staged);
        let words: Vec<u32> = batch
            .items
            .iter()
            .flat_map(|it| it.labels.iter().map(|&l| u32::from(l)))
            .collect();
        self.queue
            .write_buffer(&labels, 0, bytemuck::cast_slice(&words));
        self.queue.write_buffer(
            &invalid,
            0,
            bytemuck::cast_slice(&vec![u32::MAX; n as usize]),
        );
        let mut pbytes = vec![0u8; tiles * UNIFORM_STRIDE as usize];
        let mut dispatch = Vec::with_capacity(tiles);
        for t in 0..tiles {
            let (item, first) = (t as u64 / per_item, (t as u64 % per_item) * tile_len);
            let count = (hw - first).min(tile_len);
            let n_groups = count.div_ceil(wg) as u32;
            let (gx, gy) = if n_groups <= max_dim {
                (n_groups.max(1), 1)
            } else {
                (max_dim, n_groups.div_ceil(max_dim))
            };
            let p = PixelParams {
                count: count as u32,
                class_stride: tile_len as u32,
                sample_stride: 1,
                data_base: ((t % resident) as u64 * tile_len * c) as u32,
                label_base: (item * hw + first) as u32,
                pred_base: (item * hw + first) as u32,
                partial_base: (t as u64 * wg_per_tile) as u32,
                slot: item as u32,
                first_index: first as u32,
                row_base: 0,
                groups_x: gx,
                n_groups,
                classes: C as u32,
                ignore_index: u32::from(batch.ignore_index),
                is_f16: 0,
                logits: 0,
                rows_mode: 0,
                sum_tolerance: triage::metrics::pixel_stats::SUM_TOLERANCE,
                rounding_slack: triage::metrics::pixel_stats::rounding_slack(C),
                ln_classes: (C as f32).ln(),
                softmin_inv_t: (1.0 / triage::backend::SOFTMIN_TEMPERATURE) as f32,
                _pad: [0; 3],
            };
            let o = t * UNIFORM_STRIDE as usize;
            pbytes[o..o + std::mem::size_of::<PixelParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
            dispatch.push((gx, gy));
        }
        self.queue.write_buffer(&params, 0, &pbytes);
        let layout = pipeline.get_bind_group_layout(0);
        let groups: Vec<wgpu::BindGroup> = (0..tiles)
            .map(|t| {
                fn whole(b: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
                    b.as_entire_binding()
                }
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &params,
                                offset: t as u64 * UNIFORM_STRIDE,
                                size: wgpu::BufferSize::new(UNIFORM_STRIDE),
                            }),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: whole(&input),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: whole(&labels),
                        },
                        wgpu::BindGroupEntry {
                            binding: 3,
                            resource: whole(&pred),
                        },
                        wgpu::BindGroupEntry {
                            binding: 4,
                            resource: whole(&partials),
                        },
                        wgpu::BindGroupEntry {
                            binding: 5,
                            resource: whole(&confusion),
                        },
                        wgpu::BindGroupEntry {
                            binding: 6,
                            resource: whole(&invalid),
                        },
                        wgpu::BindGroupEntry {
                            binding: 7,
                            resource: whole(&rows),
                        },
                    ],
                })
            })
            .collect();
        self.queue.submit([]);
        self.wait();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let secs = self.repeated(reps, |enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("score_pixels"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            for (bg, &(gx, gy)) in groups.iter().zip(&dispatch) {
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(format!("score_pixels dispatch failed: {e}"));
        }
        let px = n * hw;
        Ok(KernelTiming {
            secs,
            moved: px * c * 4 + px * 8,
            tiles,
            tile_len,
        })
    }
}
