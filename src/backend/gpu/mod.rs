//! The wgpu backend: every per-sample score in compute shaders (`shaders/`),
//! matching the CPU reference bit for bit on integer counts and within
//! [`FLOAT_TOLERANCE`] on float scores.
//!
//! Data flow for a segmentation batch:
//! 1. items are grouped into *slots* whose label, prediction and flag maps fit
//!    one storage binding each;
//! 2. each item is cut into *tiles* of at most `tile` pixels; a tile's `C`
//!    planes are copied into one of two alternating input buffers (so the copy
//!    of chunk i+1 overlaps the compute of chunk i), several tiles per chunk,
//!    sized by the adapter's own binding limit;
//! 3. `score_pixels` writes the prediction map, per-workgroup partial sums and
//!    the confusion counts; `row_uniform` and `band_count` then give the
//!    Boundary IoU band counts per item;
//! 4. partials are reduced on the host in `f64`, in workgroup order.
//!
//! Host memory stays at the batch plus two chunk buffers.

mod context;
mod neighbors;
mod shaders;

pub use neighbors::{GPU_EXACT, KNN_MARGIN, KNN_MAX_K, candidates_per_dispatch};

pub use context::AdapterPolicy;
use context::{GpuContext, gpu_error, grid};

use bytemuck::{Pod, Zeroable};

use super::{
    Backend, BackendInfo, ProbBuf, RowBatch, RowScores, ScoreSums, SegBatch, SegItemStats, Softmin,
};
use crate::error::{Error, Result};
use crate::index::KnnGraph;
use crate::io::embeddings::Embeddings;
use crate::metrics::boundary_iou::{BandCounts, band_width};
use crate::metrics::calibration::{BINS, CalibrationBins};
use crate::metrics::confusion::Confusion;
use crate::metrics::pixel_stats::{SUM_TOLERANCE, SampleScores, rounding_slack};

/// Largest absolute difference allowed between a GPU float score and the CPU
/// reference (per-sample scores, per-item means and softmins, ECE). The
/// shaders use the same operations in the same order; differences come from
/// `log`/`exp` implementations (a few ulp) and workgroup-ordered summation.
pub const FLOAT_TOLERANCE: f64 = 2e-5;

const WG: u32 = 256;
const PARTIAL_WORDS: usize = 56;
/// Uniform blocks are placed at this stride (≥ every adapter's offset alignment).
const UNIFORM_STRIDE: u64 = 256;
/// Most samples per tile (one dispatch).
const MAX_TILE: u64 = 1 << 16;
const NO_INVALID: u32 = u32::MAX;
/// Host staging per upload chunk.
const CHUNK_BYTES: u64 = 64 << 20;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct BandParams {
    height: u32,
    width: u32,
    d: u32,
    classes: u32,
    ignore_index: u32,
    label_base: u32,
    pred_base: u32,
    flag_base: u32,
    slot: u32,
    groups_x: u32,
    n_groups: u32,
    _pad: u32,
}

/// One dispatch of `score_pixels`: `count` samples of one slot.
#[derive(Clone, Copy)]
struct Tile {
    slot: u32,
    /// Item-relative index of the first sample.
    first: u64,
    count: u64,
}

/// The GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
}

impl GpuBackend {
    /// Open the best adapter allowed by `policy`; `Ok(None)` when there is none.
    pub fn new(policy: AdapterPolicy) -> Result<Option<Self>> {
        Ok(GpuContext::new(policy)?.map(|ctx| GpuBackend { ctx }))
    }

    /// Measure the transfer limits the GPU path is judged against: seconds to
    /// upload `bytes` from host memory (`queue.write_buffer`, then wait) and
    /// seconds for a device-to-device copy of the same size. For benchmarks.
    pub fn bandwidth_probe(&self, bytes: u64) -> Result<(f64, f64)> {
        let ctx = &self.ctx;
        let bytes = bytes.min(ctx.limits.max_buffer_size).next_multiple_of(4);
        let usage = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let a = ctx.buffer("probe_a", bytes, usage);
        let b = ctx.buffer("probe_b", bytes, usage);
        let host = vec![1u8; bytes as usize];
        ctx.wait()?;
        let t = std::time::Instant::now();
        ctx.queue.write_buffer(&a, 0, &host);
        ctx.queue.submit([]);
        ctx.wait()?;
        let h2d = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        Ok((h2d, t.elapsed().as_secs_f64()))
    }

    /// Samples per tile for `classes` values of `bytes` each: at most
    /// [`MAX_TILE`], a multiple of 256, and one tile within a binding.
    fn tile_samples(&self, classes: usize, bytes: usize) -> Result<u64> {
        let per_sample = (classes * bytes) as u64;
        let fit = self.ctx.max_binding() / per_sample;
        let t = fit.min(MAX_TILE) / u64::from(WG) * u64::from(WG);
        if t == 0 {
            return Err(gpu_error(format!(
                "{classes} classes do not fit one storage binding of {} bytes",
                self.ctx.max_binding()
            )));
        }
        Ok(t)
    }

    fn base_params(&self, classes: usize, f16: bool, logits: bool) -> PixelParams {
        PixelParams {
            classes: classes as u32,
            is_f16: u32::from(f16),
            logits: u32::from(logits),
            sum_tolerance: SUM_TOLERANCE,
            rounding_slack: rounding_slack(classes),
            ln_classes: (classes as f32).ln(),
            softmin_inv_t: (1.0 / super::SOFTMIN_TEMPERATURE) as f32,
            ignore_index: u32::MAX,
            ..PixelParams::default()
        }
    }

    /// Upload and score `tiles`. `fill(tile_index, dst)` writes the tile's
    /// values into `dst` laid out as `params_of(tile).class_stride` expects.
    /// Returns the partial records, one per workgroup, in tile order.
    #[allow(clippy::too_many_arguments)]
    fn run_tiles(
        &self,
        tiles: &[Tile],
        tile_len: u64,
        value_bytes: usize,
        classes: usize,
        base: PixelParams,
        planar: bool,
        buffers: &PixelBuffers,
        fill: &dyn Fn(usize, &mut [u8]),
    ) -> Result<Vec<u32>> {
        let ctx = &self.ctx;
        let tile_bytes = tile_len * classes as u64 * value_bytes as u64;
        // Chunks fill one binding, but stay under CHUNK_BYTES of host staging.
        let per_chunk = (ctx.max_binding().min(CHUNK_BYTES) / tile_bytes).max(1);
        let chunk_bytes = per_chunk * tile_bytes;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let inputs = [
            ctx.buffer("input_a", chunk_bytes, storage),
            ctx.buffer("input_b", chunk_bytes, storage),
        ];
        let wg_per_tile = (tile_len / u64::from(WG)) as u32;
        let n_partials = tiles.len() as u64 * u64::from(wg_per_tile);
        let partials = ctx.buffer(
            "partials",
            n_partials * PARTIAL_WORDS as u64 * 4,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        );
        let params_buf = ctx.buffer(
            "pixel_params",
            tiles.len() as u64 * UNIFORM_STRIDE,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        let mut staging = vec![0u8; chunk_bytes as usize];
        let mut params_bytes = vec![0u8; tiles.len() * UNIFORM_STRIDE as usize];
        let mut row_base = 0u64;
        for (i, t) in tiles.iter().enumerate() {
            let within = (i as u64 % per_chunk) * tile_len * classes as u64;
            let n_groups = t.count.div_ceil(u64::from(WG)) as u32;
            let (gx, _) = grid(n_groups, max_dim);
            let p = PixelParams {
                count: t.count as u32,
                class_stride: if planar { tile_len as u32 } else { 1 },
                sample_stride: if planar { 1 } else { classes as u32 },
                data_base: within as u32,
                label_base: buffers.label_base(t),
                pred_base: buffers.pred_base(t),
                partial_base: i as u32 * wg_per_tile,
                slot: t.slot,
                first_index: t.first as u32,
                row_base: row_base as u32,
                groups_x: gx,
                n_groups,
                ..base
            };
            row_base += t.count;
            let off = i * UNIFORM_STRIDE as usize;
            params_bytes[off..off + std::mem::size_of::<PixelParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
        }
        ctx.queue.write_buffer(&params_buf, 0, &params_bytes);
        // Partials of workgroups past a short tile's end stay as written by
        // the shader (it writes every record of every dispatched workgroup);
        // records of groups that are never dispatched are cleared here.
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.clear_buffer(&partials, 0, None);
        ctx.queue.submit([enc.finish()]);

        for (ci, chunk) in tiles.chunks(per_chunk as usize).enumerate() {
            let input = &inputs[ci % 2];
            let size = chunk.len() as u64 * tile_bytes;
            let staged = &mut staging[..size as usize];
            for (k, _) in chunk.iter().enumerate() {
                let ti = ci * per_chunk as usize + k;
                let off = k * tile_bytes as usize;
                fill(ti, &mut staged[off..off + tile_bytes as usize]);
            }
            ctx.queue.write_buffer(input, 0, staged);
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("score_pixels"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&ctx.score_pixels);
                for (k, t) in chunk.iter().enumerate() {
                    let ti = ci * per_chunk as usize + k;
                    let bg = self.pixel_bind_group(
                        &params_buf,
                        ti as u64 * UNIFORM_STRIDE,
                        input,
                        &partials,
                        buffers,
                    );
                    pass.set_bind_group(0, &bg, &[]);
                    let n_groups = t.count.div_ceil(u64::from(WG)) as u32;
                    let (gx, gy) = grid(n_groups, max_dim);
                    pass.dispatch_workgroups(gx, gy, 1);
                }
            }
            ctx.queue.submit([enc.finish()]);
            ctx.check()?;
        }
        let bytes = ctx.read_back(&partials, n_partials * PARTIAL_WORDS as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn pixel_bind_group(
        &self,
        params: &wgpu::Buffer,
        offset: u64,
        input: &wgpu::Buffer,
        partials: &wgpu::Buffer,
        b: &PixelBuffers,
    ) -> wgpu::BindGroup {
        fn whole(buf: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
            buf.as_entire_binding()
        }
        self.ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.ctx.score_pixels.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: params,
                            offset,
                            size: wgpu::BufferSize::new(UNIFORM_STRIDE),
                        }),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: whole(input),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: whole(&b.labels),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: whole(&b.pred),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: whole(partials),
                    },
                    wgpu::BindGroupEntry {
                        binding: 5,
                        resource: whole(&b.confusion),
                    },
                    wgpu::BindGroupEntry {
                        binding: 6,
                        resource: whole(&b.invalid),
                    },
                    wgpu::BindGroupEntry {
                        binding: 7,
                        resource: whole(&b.rows),
                    },
                ],
            })
    }

    /// Score one group of segmentation items that fits the slot buffers.
    fn score_group(
        &self,
        items: &[&super::SegItem],
        batch: &SegBatch,
    ) -> Result<Vec<SegItemStats>> {
        let ctx = &self.ctx;
        let c = batch.classes;
        let f16 = matches!(items[0].probs, ProbBuf::F16(_));
        let vb = if f16 { 2 } else { 4 };
        let slot_len = items
            .iter()
            .map(|it| (it.height * it.width) as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let n = items.len() as u64;
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let buffers = PixelBuffers {
            slot_len,
            row_mode: false,
            labels: ctx.buffer("labels", n * slot_len * 4, storage),
            pred: ctx.buffer("pred", n * slot_len * 4, storage),
            confusion: ctx.buffer("confusion", n * (c * c) as u64 * 4, storage),
            invalid: ctx.buffer("invalid", n * 4, storage),
            rows: ctx.buffer("rows_dummy", 16, storage),
        };
        let flags = ctx.buffer("flags", n * slot_len * 4, storage);
        let bands = ctx.buffer("bands", n * 3 * c as u64 * 4, storage);
        // Labels (u16 widened to u32 words), cleared counters.
        let mut words = vec![0u32; (n * slot_len) as usize];
        for (s, it) in items.iter().enumerate() {
            let dst = &mut words[s * slot_len as usize..];
            for (d, &l) in dst.iter_mut().zip(&it.labels) {
                *d = u32::from(l);
            }
        }
        ctx.queue
            .write_buffer(&buffers.labels, 0, bytemuck::cast_slice(&words));
        drop(words);
        ctx.queue.write_buffer(
            &buffers.invalid,
            0,
            bytemuck::cast_slice(&vec![NO_INVALID; n as usize]),
        );
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.clear_buffer(&buffers.confusion, 0, None);
        enc.clear_buffer(&bands, 0, None);
        ctx.queue.submit([enc.finish()]);

        let tile_len = self.tile_samples(c, vb)?;
        let mut tiles = Vec::new();
        for (s, it) in items.iter().enumerate() {
            let hw = (it.height * it.width) as u64;
            let mut start = 0;
            while start < hw {
                let count = (hw - start).min(tile_len);
                tiles.push(Tile {
                    slot: s as u32,
                    first: start,
                    count,
                });
                start += count;
            }
        }
        let mut base = self.base_params(c, f16, batch.logits);
        base.ignore_index = u32::from(batch.ignore_index);
        let fill = |ti: usize, dst: &mut [u8]| {
            let t = tiles[ti];
            let it = items[t.slot as usize];
            let hw = it.height * it.width;
            let (a, cnt) = (t.first as usize, t.count as usize);
            for k in 0..c {
                let plane = k * tile_len as usize * vb;
                match &it.probs {
                    ProbBuf::F32(v) => dst[plane..plane + cnt * 4]
                        .copy_from_slice(bytemuck::cast_slice(&v[k * hw + a..k * hw + a + cnt])),
                    ProbBuf::F16(v) => dst[plane..plane + cnt * 2]
                        .copy_from_slice(bytemuck::cast_slice(&v[k * hw + a..k * hw + a + cnt])),
                }
            }
        };
        let partials = self.run_tiles(&tiles, tile_len, vb, c, base, true, &buffers, &fill)?;

        // Boundary IoU bands, one pair of dispatches per item.
        self.dispatch_bands(items, batch, &buffers, &flags, &bands)?;

        let conf: Vec<u32> = bytemuck::pod_collect_to_vec(
            &ctx.read_back(&buffers.confusion, n * (c * c) as u64 * 4)?,
        );
        let inval: Vec<u32> =
            bytemuck::pod_collect_to_vec(&ctx.read_back(&buffers.invalid, n * 4)?);
        let band: Vec<u32> =
            bytemuck::pod_collect_to_vec(&ctx.read_back(&bands, n * 3 * c as u64 * 4)?);

        // Host reduction, in workgroup order.
        let wg_per_tile = (tile_len / u64::from(WG)) as usize;
        let counts = GroupCounts {
            conf: &conf,
            inval: &inval,
            band: &band,
        };
        Ok(reduce_group(
            items.len(),
            c,
            &counts,
            &tiles,
            &partials,
            wg_per_tile,
        ))
    }

    /// Boundary IoU's band counts of every item of a group: per item, the
    /// row-uniform pass, then the band count (`shaders/boundary_iou.wgsl`),
    /// into `bands` (3 × C counters per item).
    fn dispatch_bands(
        &self,
        items: &[&super::SegItem],
        batch: &SegBatch,
        buffers: &PixelBuffers,
        flags: &wgpu::Buffer,
        bands: &wgpu::Buffer,
    ) -> Result<()> {
        let ctx = &self.ctx;
        let c = batch.classes;
        let n = items.len() as u64;
        let slot_len = buffers.slot_len;
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        let band_params = ctx.buffer(
            "band_params",
            n * UNIFORM_STRIDE,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let mut pbytes = vec![0u8; (n * UNIFORM_STRIDE) as usize];
        for (s, it) in items.iter().enumerate() {
            let hw = (it.height * it.width) as u32;
            let n_groups = hw.div_ceil(WG);
            let (gx, _) = grid(n_groups, max_dim);
            let p = BandParams {
                height: it.height as u32,
                width: it.width as u32,
                d: band_width(it.height, it.width) as u32,
                classes: c as u32,
                ignore_index: u32::from(batch.ignore_index),
                label_base: (s as u64 * slot_len) as u32,
                pred_base: (s as u64 * slot_len) as u32,
                flag_base: (s as u64 * slot_len) as u32,
                slot: s as u32,
                groups_x: gx,
                n_groups,
                _pad: 0,
            };
            let off = s * UNIFORM_STRIDE as usize;
            pbytes[off..off + std::mem::size_of::<BandParams>()]
                .copy_from_slice(bytemuck::bytes_of(&p));
        }
        ctx.queue.write_buffer(&band_params, 0, &pbytes);
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("boundary_iou"),
                timestamp_writes: None,
            });
            for (s, it) in items.iter().enumerate() {
                let n_groups = ((it.height * it.width) as u32).div_ceil(WG);
                let (gx, gy) = grid(n_groups, max_dim);
                for (pipeline, n_bindings) in [(&ctx.row_uniform, 4), (&ctx.band_count, 5)] {
                    let entries = [
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &band_params,
                                offset: s as u64 * UNIFORM_STRIDE,
                                size: wgpu::BufferSize::new(UNIFORM_STRIDE),
                            }),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: buffers.labels.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: buffers.pred.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 3,
                            resource: flags.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 4,
                            resource: bands.as_entire_binding(),
                        },
                    ];
                    // `row_uniform` does not touch the band counts, so its
                    // derived layout has no binding 4.
                    let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries[..n_bindings],
                    });
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, &bg, &[]);
                    pass.dispatch_workgroups(gx, gy, 1);
                }
            }
        }
        ctx.queue.submit([enc.finish()]);
        ctx.check()?;
        Ok(())
    }
}

/// The counters read back for a group: per item, the C × C confusion, the
/// first invalid pixel, and the 3 × C band counts.
struct GroupCounts<'a> {
    conf: &'a [u32],
    inval: &'a [u32],
    band: &'a [u32],
}

/// The group's per-item results: the counters as they are, and the tiles'
/// partial records merged in workgroup order (so the sums do not depend on
/// how the dispatches were scheduled).
fn reduce_group(
    n_items: usize,
    c: usize,
    counts: &GroupCounts<'_>,
    tiles: &[Tile],
    partials: &[u32],
    wg_per_tile: usize,
) -> Vec<SegItemStats> {
    let (conf, inval, band) = (counts.conf, counts.inval, counts.band);
    let mut out: Vec<SegItemStats> = (0..n_items)
        .map(|s| {
            let cm = conf[s * c * c..(s + 1) * c * c]
                .iter()
                .map(|&v| u64::from(v))
                .collect();
            let b = &band[s * 3 * c..(s + 1) * 3 * c];
            let first_invalid = (inval[s] != NO_INVALID).then_some(inval[s] as usize);
            let bands = if first_invalid.is_some() {
                BandCounts::zeros(c)
            } else {
                BandCounts {
                    inter: b[..c].iter().map(|&v| u64::from(v)).collect(),
                    gt: b[c..2 * c].iter().map(|&v| u64::from(v)).collect(),
                    pred: b[2 * c..].iter().map(|&v| u64::from(v)).collect(),
                }
            };
            SegItemStats {
                pixels: 0,
                sums: ScoreSums::default(),
                softmin_self_confidence: Softmin::default(),
                softmin_normalized_margin: Softmin::default(),
                bins: CalibrationBins::default(),
                confusion: Confusion::from_counts(c, cm),
                bands,
                first_invalid,
                pred: None,
            }
        })
        .collect();
    for (ti, t) in tiles.iter().enumerate() {
        let st = &mut out[t.slot as usize];
        let recs =
            &partials[ti * wg_per_tile * PARTIAL_WORDS..(ti + 1) * wg_per_tile * PARTIAL_WORDS];
        for rec in recs.chunks_exact(PARTIAL_WORDS) {
            let pr = Partial::parse(rec);
            st.pixels += pr.pixels;
            st.sums.merge(&pr.sums);
            st.softmin_self_confidence.merge(&pr.softmin_sc);
            st.softmin_normalized_margin.merge(&pr.softmin_nm);
            st.bins.merge(&pr.bins);
        }
    }
    out
}

/// Buffers shared by the dispatches of one group.
struct PixelBuffers {
    slot_len: u64,
    row_mode: bool,
    labels: wgpu::Buffer,
    pred: wgpu::Buffer,
    confusion: wgpu::Buffer,
    invalid: wgpu::Buffer,
    rows: wgpu::Buffer,
}

impl PixelBuffers {
    fn label_base(&self, t: &Tile) -> u32 {
        if self.row_mode {
            t.first as u32
        } else {
            (u64::from(t.slot) * self.slot_len + t.first) as u32
        }
    }

    fn pred_base(&self, t: &Tile) -> u32 {
        self.label_base(t)
    }
}

/// One workgroup's partial record, decoded.
struct Partial {
    pixels: u64,
    sums: ScoreSums,
    softmin_sc: Softmin,
    softmin_nm: Softmin,
    bins: CalibrationBins,
}

impl Partial {
    fn parse(rec: &[u32]) -> Self {
        let f = |i: usize| f64::from(f32::from_bits(rec[i]));
        // The shader's weights are exp(−s/T); the reference uses exp((1−s)/T).
        let scale = (1.0 / super::SOFTMIN_TEMPERATURE).exp();
        let mut bins = CalibrationBins::default();
        for m in 0..BINS {
            bins.count[m] = u64::from(rec[10 + m]);
            bins.correct[m] = u64::from(rec[25 + m]);
            bins.confidence_sum[m] = f64::from(rec[40 + m]) / 8_388_608.0;
        }
        Partial {
            pixels: u64::from(rec[9]),
            sums: ScoreSums {
                entropy: f(0),
                margin: f(1),
                least_confidence: f(2),
                self_confidence: f(3),
                normalized_margin: f(4),
            },
            softmin_sc: Softmin {
                weighted: f(5) * scale,
                weight: f(6) * scale,
            },
            softmin_nm: Softmin {
                weighted: f(7) * scale,
                weight: f(8) * scale,
            },
            bins,
        }
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        self.ctx.info.clone()
    }

    fn score_rows(&self, batch: &RowBatch) -> Result<RowScores> {
        let ctx = &self.ctx;
        let c = batch.classes;
        let n = batch.labels.len();
        if n == 0 {
            return Ok(RowScores::default());
        }
        let f16 = matches!(batch.probs, ProbBuf::F16(_));
        let vb = if f16 { 2 } else { 4 };
        let tile_len = self.tile_samples(c, vb)?;
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let buffers = PixelBuffers {
            slot_len: 0,
            row_mode: true,
            labels: ctx.buffer("row_labels", n as u64 * 4, storage),
            pred: ctx.buffer("pred_dummy", 16, storage),
            confusion: ctx.buffer("confusion_dummy", 16, storage),
            invalid: ctx.buffer("invalid", 4, storage),
            rows: ctx.buffer("rows", n as u64 * 32, storage),
        };
        ctx.queue
            .write_buffer(&buffers.labels, 0, bytemuck::cast_slice(&batch.labels));
        ctx.queue
            .write_buffer(&buffers.invalid, 0, bytemuck::bytes_of(&NO_INVALID));
        let tiles: Vec<Tile> = (0..n as u64)
            .step_by(tile_len as usize)
            .map(|start| Tile {
                slot: 0,
                first: start,
                count: (n as u64 - start).min(tile_len),
            })
            .collect();
        let fill = |ti: usize, dst: &mut [u8]| {
            let t = tiles[ti];
            let (a, cnt) = (t.first as usize * c, t.count as usize * c);
            match &batch.probs {
                ProbBuf::F32(v) => {
                    dst[..cnt * 4].copy_from_slice(bytemuck::cast_slice(&v[a..a + cnt]))
                }
                ProbBuf::F16(v) => {
                    dst[..cnt * 2].copy_from_slice(bytemuck::cast_slice(&v[a..a + cnt]))
                }
            }
        };
        let mut base = self.base_params(c, f16, batch.logits);
        base.rows_mode = 1;
        let partials = self.run_tiles(&tiles, tile_len, vb, c, base, false, &buffers, &fill)?;
        let rows: Vec<u32> =
            bytemuck::pod_collect_to_vec(&ctx.read_back(&buffers.rows, n as u64 * 32)?);
        let inval: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_back(&buffers.invalid, 4)?);
        let mut out = RowScores {
            samples: Vec::with_capacity(n),
            first_invalid: (inval[0] != NO_INVALID).then_some(inval[0] as usize),
            ..RowScores::default()
        };
        for r in rows.chunks_exact(8) {
            let f = |i: usize| f32::from_bits(r[i]);
            out.samples.push(SampleScores {
                pred: r[0],
                confidence: f(1),
                entropy: f(2),
                margin: f(3),
                least_confidence: f(4),
                self_confidence: f(5),
                normalized_margin: f(6),
            });
        }
        for rec in partials.chunks_exact(PARTIAL_WORDS) {
            out.bins.merge(&Partial::parse(rec).bins);
        }
        Ok(out)
    }

    fn score_items(&self, batch: &SegBatch) -> Result<Vec<SegItemStats>> {
        if batch.items.is_empty() {
            return Ok(Vec::new());
        }
        if batch.items.iter().any(|it| it.planes.is_some()) {
            // `reads_planes` is false: the pipeline never does this. Were it
            // to, a backend error hands the batch to the CPU (`--gpu-fallback`).
            return Err(Error::Backend {
                backend: "gpu".into(),
                message: "items left in their files need a backend that reads planes".into(),
            });
        }
        let c = batch.classes as u64;
        let limit = self.ctx.max_binding();
        let mut out = Vec::with_capacity(batch.items.len());
        // Group items so that each group's per-slot maps fit one binding.
        let mut group: Vec<&super::SegItem> = Vec::new();
        let mut group_max = 0u64;
        let f16_first = matches!(batch.items[0].probs, ProbBuf::F16(_));
        for it in &batch.items {
            if matches!(it.probs, ProbBuf::F16(_)) != f16_first {
                return Err(gpu_error("a batch mixes float16 and float32 items"));
            }
            let hw = (it.height * it.width) as u64;
            if hw * 4 > limit {
                return Err(gpu_error(format!(
                    "an image of {}x{} pixels exceeds the GPU's storage binding of {limit} bytes",
                    it.height, it.width
                )));
            }
            let m = group_max.max(hw);
            let n = group.len() as u64 + 1;
            if !group.is_empty() && (n * m * 4 > limit || n * c * c * 4 > limit) {
                out.extend(self.score_group(&group, batch)?);
                group.clear();
                group_max = 0;
            }
            group_max = group_max.max(hw);
            group.push(it);
        }
        out.extend(self.score_group(&group, batch)?);
        Ok(out)
    }

    fn knn_exact(&self, emb: &Embeddings, k: usize) -> Result<KnnGraph> {
        self.knn_exact_gpu(emb, k)
    }

    fn mask_confusion(
        &self,
        a: &[u16],
        b: &[u16],
        classes: usize,
        ignore: u16,
    ) -> Result<Confusion> {
        self.mask_confusion_gpu(a, b, classes, ignore)
    }
}
