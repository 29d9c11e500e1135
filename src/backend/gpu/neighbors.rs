//! The neighbour stage on the GPU: the exact kNN graph (`shaders/knn.wgsl`)
//! and the label × label counts of near-duplicate masks
//! (`shaders/mask_iou.wgsl`).
//!
//! kNN: the embeddings are uploaded once, in chunks of rows that fit one
//! storage binding. Every (query chunk, candidate chunk) pair is one dispatch
//! that keeps the best `k + KNN_MARGIN` candidates per query; the host then
//! re-scores the union of the candidates with the CPU's dot product
//! ([`crate::index::from_candidates`]). The graph is therefore the
//! CPU reference's exactly, distances included, unless two candidates tie
//! within a few ulp at the margin's edge.

use bytemuck::{Pod, Zeroable};

use super::GpuBackend;
use super::context::{gpu_error, grid};
use crate::error::Result;
use crate::index::KnnGraph;
use crate::index::from_candidates;
use crate::io::embeddings::Embeddings;
use crate::metrics::confusion::Confusion;

/// Largest `k` the GPU exact kNN serves (the shader keeps 64 candidates).
pub const KNN_MAX_K: usize = 56;
/// Candidates kept beyond `k`, so float rounding cannot drop a neighbour.
pub const KNN_MARGIN: usize = 8;
/// Queries per workgroup (`TILE` in the shader).
const KNN_TILE: u32 = 64;
/// The method name a GPU-built graph carries.
pub const GPU_EXACT: &str = "exact-gpu";

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct KnnParams {
    nq: u32,
    nc: u32,
    d: u32,
    kk: u32,
    q_base: u32,
    c_base: u32,
    c_off: u32,
    grid_x: u32,
    first: u32,
    _pad: [u32; 3],
}

/// Loop iterations one invocation may run per dispatch. lavapipe stops
/// a shader's loops after 65535 iterations per outermost loop, silently; the
/// host splits the candidates so every dispatch stays below this.
const LOOP_BUDGET: usize = 60_000;

/// Bytes between two steps' uniforms (≥ every adapter's uniform offset
/// alignment).
const KNN_PARAMS_STRIDE: u64 = 256;

/// The buffers every dispatch of one query chunk binds.
struct KnnBuffers<'a> {
    params: &'a wgpu::Buffer,
    queries: &'a wgpu::Buffer,
    dist: &'a wgpu::Buffer,
    ids: &'a wgpu::Buffer,
}

/// Candidate rows per dispatch for dimension `d` and list length `kk`: whole
/// tiles whose loop iterations (staging, vec4 dot products, insertion, worst
/// case shifts) fit `LOOP_BUDGET`; at least one tile.
pub fn candidates_per_dispatch(d: usize, kk: usize) -> usize {
    let per_tile = 16 * d + d + 32 * d.div_ceil(32) + d.div_ceil(32) + 16 + 64 + 64 * kk;
    let budget = LOOP_BUDGET - 2 * 64;
    (budget / per_tile).max(1) * KNN_TILE as usize
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MaskParams {
    n: u32,
    classes: u32,
    ignore: u32,
    grid_x: u32,
}

fn storage(bytes: u64, label: &str, device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).next_multiple_of(16),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn uniform<T: Pod>(value: &T, device: &wgpu::Device, queue: &wgpu::Queue) -> wgpu::Buffer {
    let b = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("params"),
        size: (std::mem::size_of::<T>() as u64).next_multiple_of(16),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&b, 0, bytemuck::bytes_of(value));
    b
}

impl GpuBackend {
    /// Exact kNN with at most `chunk_rows` embedding rows per storage binding
    /// (the adapter's limit in normal use; smaller in tests, to exercise the
    /// chunk merge).
    pub fn knn_exact_chunked(
        &self,
        emb: &Embeddings,
        k: usize,
        chunk_rows: usize,
    ) -> Result<KnnGraph> {
        let ctx = &self.ctx;
        let (n, d) = (emb.n, emb.d);
        if k > KNN_MAX_K {
            return Err(gpu_error(format!(
                "the GPU exact kNN keeps at most {KNN_MAX_K} neighbours, got --knn-k {k}; \
                 use --knn hnsw or --backend cpu"
            )));
        }
        if n < 2 || k == 0 {
            return Ok(from_candidates(emb, k, &vec![Vec::new(); n], GPU_EXACT));
        }
        if n > u32::MAX as usize / 2 || d > u32::MAX as usize / 4 {
            return Err(gpu_error(format!(
                "{n} x {d} embeddings exceed u32 indexing"
            )));
        }
        let kk = (k + KNN_MARGIN).min(n - 1).max(1);
        let rows = chunk_rows.clamp(1, n);
        let row_bytes = (d * 4) as u64;
        if row_bytes > ctx.max_binding() {
            return Err(gpu_error(format!(
                "one embedding row ({row_bytes} bytes) exceeds the adapter's binding limit"
            )));
        }
        let chunks: Vec<(usize, usize, wgpu::Buffer)> = (0..n)
            .step_by(rows)
            .map(|s| {
                let e = (s + rows).min(n);
                let b = storage((e - s) as u64 * row_bytes, "embeddings", &ctx.device);
                ctx.queue
                    .write_buffer(&b, 0, bytemuck::cast_slice(&emb.data[s * d..e * d]));
                (s, e, b)
            })
            .collect();
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        let mut candidates: Vec<Vec<u32>> = vec![Vec::new(); n];
        let per_dispatch = candidates_per_dispatch(d, kk);
        const STRIDE: u64 = KNN_PARAMS_STRIDE;
        for (qs, qe, qbuf) in &chunks {
            let nq = qe - qs;
            let out_bytes = (nq * kk * 4) as u64;
            let out_dist = storage(out_bytes, "knn_dist", &ctx.device);
            let out_id = storage(out_bytes, "knn_id", &ctx.device);
            let groups = (nq as u32).div_ceil(KNN_TILE);
            let (gx, gy) = grid(groups, max_dim);
            // Every (candidate chunk, sub-range) of this query chunk, in order.
            let mut steps: Vec<(KnnParams, &wgpu::Buffer)> = Vec::new();
            for (cs, ce, cbuf) in &chunks {
                for off in (0..ce - cs).step_by(per_dispatch) {
                    let nc = per_dispatch.min(ce - cs - off);
                    steps.push((
                        KnnParams {
                            nq: nq as u32,
                            nc: nc as u32,
                            d: d as u32,
                            kk: kk as u32,
                            q_base: *qs as u32,
                            c_base: (cs + off) as u32,
                            c_off: off as u32,
                            grid_x: gx,
                            first: u32::from(steps.is_empty()),
                            _pad: [0; 3],
                        },
                        cbuf,
                    ));
                }
            }
            let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("knn_params"),
                size: steps.len() as u64 * STRIDE,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut bytes = vec![0u8; steps.len() * STRIDE as usize];
            for (i, (p, _)) in steps.iter().enumerate() {
                let at = i * STRIDE as usize;
                bytes[at..at + std::mem::size_of::<KnnParams>()]
                    .copy_from_slice(bytemuck::bytes_of(p));
            }
            ctx.queue.write_buffer(&params, 0, &bytes);
            let bufs = KnnBuffers {
                params: &params,
                queries: qbuf,
                dist: &out_dist,
                ids: &out_id,
            };
            self.dispatch_knn(&steps, &bufs, (gx, gy))?;
            let ids: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_back(&out_id, out_bytes)?);
            for (qi, list) in ids.chunks_exact(kk).enumerate() {
                candidates[qs + qi].extend(list.iter().copied().filter(|&j| j != u32::MAX));
            }
        }
        Ok(from_candidates(emb, k, &candidates, GPU_EXACT))
    }

    /// Run the `steps` of one query chunk (one dispatch each, its uniform
    /// at `i × KNN_PARAMS_STRIDE` of `bufs.params`), in submissions of 64 so
    /// no single submission runs for minutes.
    fn dispatch_knn(
        &self,
        steps: &[(KnnParams, &wgpu::Buffer)],
        bufs: &KnnBuffers<'_>,
        (gx, gy): (u32, u32),
    ) -> Result<()> {
        let ctx = &self.ctx;
        let layout = ctx.knn.get_bind_group_layout(0);
        const STRIDE: u64 = KNN_PARAMS_STRIDE;
        for (b, batch) in steps.chunks(64).enumerate() {
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("knn"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&ctx.knn);
                for (i, (_, cbuf)) in batch.iter().enumerate() {
                    let at = (b * 64 + i) as u64 * STRIDE;
                    let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("knn"),
                        layout: &layout,
                        entries: &[
                            wgpu::BindGroupEntry {
                                binding: 0,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: bufs.params,
                                    offset: at,
                                    size: wgpu::BufferSize::new(
                                        std::mem::size_of::<KnnParams>() as u64
                                    ),
                                }),
                            },
                            wgpu::BindGroupEntry {
                                binding: 1,
                                resource: bufs.queries.as_entire_binding(),
                            },
                            wgpu::BindGroupEntry {
                                binding: 2,
                                resource: cbuf.as_entire_binding(),
                            },
                            wgpu::BindGroupEntry {
                                binding: 3,
                                resource: bufs.dist.as_entire_binding(),
                            },
                            wgpu::BindGroupEntry {
                                binding: 4,
                                resource: bufs.ids.as_entire_binding(),
                            },
                        ],
                    });
                    pass.set_bind_group(0, &bg, &[]);
                    pass.dispatch_workgroups(gx, gy, 1);
                }
            }
            ctx.queue.submit([enc.finish()]);
            ctx.wait()?;
        }
        Ok(())
    }

    /// Exact kNN in chunks of the adapter's binding limit.
    pub(super) fn knn_exact_gpu(&self, emb: &Embeddings, k: usize) -> Result<KnnGraph> {
        let rows = (self.ctx.max_binding() / (emb.d.max(1) as u64 * 4)).max(1) as usize;
        self.knn_exact_chunked(emb, k, rows)
    }

    /// Label × label counts of two same-size maps on the GPU.
    pub(super) fn mask_confusion_gpu(
        &self,
        a: &[u16],
        b: &[u16],
        classes: usize,
        ignore: u16,
    ) -> Result<Confusion> {
        let ctx = &self.ctx;
        if a.len() != b.len() {
            return Err(gpu_error(format!(
                "mask sizes differ: {} vs {} pixels",
                a.len(),
                b.len()
            )));
        }
        let n = a.len();
        if n == 0 || classes == 0 {
            return Ok(Confusion::new(classes));
        }
        let words = n.div_ceil(2);
        let counts_bytes = (classes * classes * 4) as u64;
        if (words * 4) as u64 > ctx.max_binding() || counts_bytes > ctx.max_binding() {
            return Err(gpu_error(format!(
                "a {n}-pixel mask pair with {classes} classes exceeds the adapter's binding limit"
            )));
        }
        let pack = |m: &[u16]| -> Vec<u32> {
            m.chunks(2)
                .map(|p| u32::from(p[0]) | (u32::from(*p.get(1).unwrap_or(&ignore)) << 16))
                .collect()
        };
        let abuf = storage((words * 4) as u64, "mask_a", &ctx.device);
        let bbuf = storage((words * 4) as u64, "mask_b", &ctx.device);
        ctx.queue
            .write_buffer(&abuf, 0, bytemuck::cast_slice(&pack(a)));
        ctx.queue
            .write_buffer(&bbuf, 0, bytemuck::cast_slice(&pack(b)));
        let counts = storage(counts_bytes, "mask_counts", &ctx.device);
        let groups = (n as u32).div_ceil(256);
        let (gx, gy) = grid(groups, ctx.limits.max_compute_workgroups_per_dimension);
        let params = uniform(
            &MaskParams {
                n: n as u32,
                classes: classes as u32,
                ignore: u32::from(ignore),
                grid_x: gx,
            },
            &ctx.device,
            &ctx.queue,
        );
        let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("mask_iou"),
            layout: &ctx.mask_iou.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: abuf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: bbuf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: counts.as_entire_binding(),
                },
            ],
        });
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.clear_buffer(&counts, 0, None);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("mask_iou"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&ctx.mask_iou);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        ctx.queue.submit([enc.finish()]);
        let raw: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_back(&counts, counts_bytes)?);
        Ok(Confusion::from_counts(
            classes,
            raw.into_iter().map(u64::from).collect(),
        ))
    }
}
