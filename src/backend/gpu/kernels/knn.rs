//! Host side of `shaders/knn.wgsl`: the exact kNN graph of the neighbour
//! stage.
//!
//! The embeddings are uploaded once, in chunks of rows that fit one
//! storage binding. Every (query chunk, candidate chunk) pair is one dispatch
//! that keeps the best `k + KNN_MARGIN` candidates per query; the host then
//! re-scores the union of the candidates with the CPU's dot product
//! ([`crate::index::from_candidates`]). The graph is therefore the
//! CPU reference's exactly, distances included, unless two candidates tie
//! within a few ulp at the margin's edge.

use bytemuck::{Pod, Zeroable};

use super::super::GpuBackend;
use super::super::context::{gpu_error, grid};
use super::{block, uniform_blocks, whole};
use crate::error::Result;
use crate::index::KnnGraph;
use crate::index::from_candidates;
use crate::io::embeddings::Embeddings;

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
pub struct KnnParams {
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
const KNN_PARAMS_STRIDE: u64 = super::UNIFORM_STRIDE;

/// Storage buffers the host writes and reads back.
const STORAGE_RW: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

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
        let _session = ctx.session();
        let chunks = self.upload_chunks(emb, rows);
        let mut candidates: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (qs, qe, qbuf) in &chunks {
            let out_bytes = ((qe - qs) * kk * 4) as u64;
            let out_dist = ctx.buffer("knn_dist", out_bytes, STORAGE_RW);
            let out_id = ctx.buffer("knn_id", out_bytes, STORAGE_RW);
            let (steps, gx, gy) = self.knn_steps((*qs, *qe), &chunks, d, kk);
            let params = ctx.buffer(
                "knn_params",
                steps.len() as u64 * KNN_PARAMS_STRIDE,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            let bytes = uniform_blocks(steps.iter().map(|(p, _)| *p));
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

    /// The embeddings uploaded in chunks of `rows` rows: `(first row, end
    /// row, buffer)`, chunk `i` in the cached buffer `("embeddings", i)`.
    fn upload_chunks(&self, emb: &Embeddings, rows: usize) -> Vec<(usize, usize, wgpu::Buffer)> {
        let ctx = &self.ctx;
        let (n, d) = (emb.n, emb.d);
        (0..n)
            .step_by(rows)
            .enumerate()
            .map(|(i, s)| {
                let e = (s + rows).min(n);
                let b = ctx.buffer_at("embeddings", i, ((e - s) * d * 4) as u64, STORAGE_RW);
                ctx.queue
                    .write_buffer(&b, 0, bytemuck::cast_slice(&emb.data[s * d..e * d]));
                (s, e, b)
            })
            .collect()
    }

    /// The dispatches of query chunk `qs..qe`: every (candidate chunk,
    /// sub-range of [`candidates_per_dispatch`] rows), in order, the first
    /// starting the lists empty; and the workgroup grid.
    fn knn_steps<'c>(
        &self,
        (qs, qe): (usize, usize),
        chunks: &'c [(usize, usize, wgpu::Buffer)],
        d: usize,
        kk: usize,
    ) -> (Vec<(KnnParams, &'c wgpu::Buffer)>, u32, u32) {
        let nq = qe - qs;
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension;
        let (gx, gy) = grid((nq as u32).div_ceil(KNN_TILE), max_dim);
        let per_dispatch = candidates_per_dispatch(d, kk);
        let mut steps: Vec<(KnnParams, &wgpu::Buffer)> = Vec::new();
        for (cs, ce, cbuf) in chunks {
            for off in (0..ce - cs).step_by(per_dispatch) {
                let nc = per_dispatch.min(ce - cs - off);
                let p = KnnParams {
                    nq: nq as u32,
                    nc: nc as u32,
                    d: d as u32,
                    kk: kk as u32,
                    q_base: qs as u32,
                    c_base: (cs + off) as u32,
                    c_off: off as u32,
                    grid_x: gx,
                    first: u32::from(steps.is_empty()),
                    _pad: [0; 3],
                };
                steps.push((p, cbuf));
            }
        }
        (steps, gx, gy)
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
                    let at = (b * 64 + i) as u64 * KNN_PARAMS_STRIDE;
                    let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("knn"),
                        layout: &layout,
                        entries: &[
                            block(0, bufs.params, at, std::mem::size_of::<KnnParams>() as u64),
                            whole(1, bufs.queries),
                            whole(2, cbuf),
                            whole(3, bufs.dist),
                            whole(4, bufs.ids),
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

    /// Exact kNN in chunks of the adapter's binding limit (or of
    /// [`SizeLimits::knn_rows`](super::super::context::SizeLimits::knn_rows)
    /// rows, when fewer).
    pub(in crate::backend::gpu) fn knn_exact_gpu(
        &self,
        emb: &Embeddings,
        k: usize,
    ) -> Result<KnnGraph> {
        let rows = (self.ctx.max_binding() / (emb.d.max(1) as u64 * 4)).max(1) as usize;
        let rows = rows.min(self.ctx.sizes.knn_rows);
        self.knn_exact_chunked(emb, k, rows)
    }
}
