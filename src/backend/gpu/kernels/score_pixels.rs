//! Host side of `shaders/score_pixels.wgsl`, the fused per-sample pass:
//! the uniform block ([`PixelParams`]), tiles and upload chunks
//! ([`GpuBackend::run_tiles`]), the bind group, the record layouts the
//! shader writes ([`record`], [`row`]) and their decoding
//! ([`Partial::parse`]), and the two callers: segmentation groups and
//! classification rows.
//!
//! The record layouts are defined here only: [`wgsl_constants`] turns them
//! into WGSL `const` declarations that [`crate::backend::gpu`]'s shader
//! assembly prepends to the module, so the shader indexes its records by the
//! same names.

use bytemuck::{Pod, Zeroable};

use super::super::GpuBackend;
use super::super::context::{gpu_error, grid};
use super::{UNIFORM_STRIDE, WG, block, calibration, uniform_blocks, whole};
use crate::backend::{
    ProbBuf, RowBatch, RowScores, ScoreSums, SegBatch, SegItem, SegItemStats, Softmin,
};
use crate::error::{Error, Result};
use crate::metrics::boundary_iou::BandCounts;
use crate::metrics::calibration::{BINS, CalibrationBins};
use crate::metrics::confusion::Confusion;
use crate::metrics::pixel_stats::{SUM_TOLERANCE, SampleScores, rounding_slack};
use crate::metrics::softmin::INV_TEMPERATURE_F32;
use crate::scores::{N_SAMPLE, PerSample, TABLE};

/// The partial record each `score_pixels` workgroup writes: word offsets.
///
/// Words `SCORES..NSUM` hold `f32` sums over the workgroup's scored samples
/// (valid, not ignored): the [`N_SAMPLE`] per-sample scores in score-table
/// order ([`crate::scores::TABLE`]), then the softmin sums of the
/// self-confidence and of the normalised margin (the weights are the
/// unshifted `e^{-s/T}`, [`crate::metrics::softmin`]). Then the scored
/// sample count, and the three calibration tables of [`BINS`] words each
/// (counts, correct counts, fixed-point confidence sums, see
/// [`calibration`]). [`WORDS`](record::WORDS) rounds the record up to 8 words.
pub mod record {
    use super::{BINS, N_SAMPLE};

    /// First of the [`N_SAMPLE`] per-sample score sums.
    pub const SCORES: usize = 0;
    /// Σ s·w of the self-confidence.
    pub const SOFTMIN_SC_WEIGHTED: usize = SCORES + N_SAMPLE;
    /// Σ w of the self-confidence.
    pub const SOFTMIN_SC_WEIGHT: usize = SOFTMIN_SC_WEIGHTED + 1;
    /// Σ s·w of the normalised margin.
    pub const SOFTMIN_NM_WEIGHTED: usize = SOFTMIN_SC_WEIGHT + 1;
    /// Σ w of the normalised margin.
    pub const SOFTMIN_NM_WEIGHT: usize = SOFTMIN_NM_WEIGHTED + 1;
    /// The number of `f32` sums (words `SCORES..NSUM`).
    pub const NSUM: usize = SOFTMIN_NM_WEIGHT + 1;
    /// Scored samples (`u32`).
    pub const PIXELS: usize = NSUM;
    /// First of [`BINS`] per-bin sample counts.
    pub const BIN_COUNT: usize = PIXELS + 1;
    /// First of [`BINS`] per-bin correct counts.
    pub const BIN_CORRECT: usize = BIN_COUNT + BINS;
    /// First of [`BINS`] per-bin fixed-point confidence sums.
    pub const BIN_CONF: usize = BIN_CORRECT + BINS;
    /// Words per record.
    pub const WORDS: usize = (BIN_CONF + BINS).next_multiple_of(8);
}

/// The per-row record of a classification batch (`rows` binding): word
/// offsets. The prediction is a `u32`, the rest `f32` bits.
pub mod row {
    use super::N_SAMPLE;

    pub const PRED: usize = 0;
    pub const CONFIDENCE: usize = 1;
    /// First of the [`N_SAMPLE`] per-sample scores, in score-table order.
    pub const SCORES: usize = 2;
    /// Words per row (rounded up to 4).
    pub const WORDS: usize = (SCORES + N_SAMPLE).next_multiple_of(4);
}

/// `first_invalid` before any invalid sample was seen.
const NO_INVALID: u32 = u32::MAX;

/// The WGSL `const` declarations the `score_pixels` module is built with:
/// `(name, "type = value")` pairs, from the score table (`N_SAMPLE`, and
/// `S_NAME`, the index of each per-sample score in `SampleScores.v`),
/// [`record`], [`row`], [`WG`] and [`calibration`]. (The softmin's `1/T`
/// travels in the uniform block, [`PixelParams::softmin_inv_t`], see
/// `shaders/softmin.wgsl`.)
pub fn wgsl_constants() -> Vec<(String, String)> {
    let u = |v: usize| format!("u32 = {v}u");
    let mut out: Vec<(String, String)> = vec![
        ("WG".into(), format!("u32 = {WG}u")),
        ("N_SAMPLE".into(), u(N_SAMPLE)),
    ];
    for d in &TABLE[..N_SAMPLE] {
        out.push((
            format!("S_{}", d.name.to_ascii_uppercase()),
            u(d.score as usize),
        ));
    }
    for (name, v) in [
        ("PARTIAL_WORDS", record::WORDS),
        ("REC_SCORES", record::SCORES),
        ("REC_SOFTMIN_SC_WEIGHTED", record::SOFTMIN_SC_WEIGHTED),
        ("REC_SOFTMIN_SC_WEIGHT", record::SOFTMIN_SC_WEIGHT),
        ("REC_SOFTMIN_NM_WEIGHTED", record::SOFTMIN_NM_WEIGHTED),
        ("REC_SOFTMIN_NM_WEIGHT", record::SOFTMIN_NM_WEIGHT),
        ("REC_NSUM", record::NSUM),
        ("REC_PIXELS", record::PIXELS),
        ("REC_BIN_COUNT", record::BIN_COUNT),
        ("REC_BIN_CORRECT", record::BIN_CORRECT),
        ("REC_BIN_CONF", record::BIN_CONF),
        ("UNLABELLED", UNLABELLED_WORD as usize),
        ("ROW_WORDS", row::WORDS),
        ("ROW_PRED", row::PRED),
        ("ROW_CONFIDENCE", row::CONFIDENCE),
        ("ROW_SCORES", row::SCORES),
    ] {
        out.push((name.into(), u(v)));
    }
    out.extend(
        calibration::wgsl_constants()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v)),
    );
    out
}

/// The label word of an unlabelled item's pixel ([`SegItem::unlabelled`]):
/// above every u16 annotation, so it never meets an ignore index.
pub const UNLABELLED_WORD: u32 = 0xFFFF_FFFE;

/// Mirror of `Params` in `shaders/score_pixels.wgsl` (field for field; a
/// unit test of [`super::super::shaders`] compares the names).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub struct PixelParams {
    pub count: u32,
    pub class_stride: u32,
    pub sample_stride: u32,
    pub data_base: u32,
    pub label_base: u32,
    pub pred_base: u32,
    pub partial_base: u32,
    pub slot: u32,
    pub first_index: u32,
    pub row_base: u32,
    pub groups_x: u32,
    pub n_groups: u32,
    pub classes: u32,
    pub ignore_index: u32,
    pub is_f16: u32,
    pub logits: u32,
    pub rows_mode: u32,
    pub sum_tolerance: f32,
    pub rounding_slack: f32,
    pub ln_classes: f32,
    /// `1/T` of the softmin weights ([`INV_TEMPERATURE_F32`]).
    pub softmin_inv_t: f32,
    pub _pad: [u32; 3],
}

/// The field names of [`PixelParams`] (padding excluded), in order.
#[doc(hidden)]
pub const PIXEL_PARAM_FIELDS: [&str; 21] = [
    "count",
    "class_stride",
    "sample_stride",
    "data_base",
    "label_base",
    "pred_base",
    "partial_base",
    "slot",
    "first_index",
    "row_base",
    "groups_x",
    "n_groups",
    "classes",
    "ignore_index",
    "is_f16",
    "logits",
    "rows_mode",
    "sum_tolerance",
    "rounding_slack",
    "ln_classes",
    "softmin_inv_t",
];

/// One dispatch of `score_pixels`: `count` samples of one slot.
#[derive(Clone, Copy)]
pub struct Tile {
    pub slot: u32,
    /// Item-relative index of the first sample.
    pub first: u64,
    pub count: u64,
}

/// Buffers shared by the dispatches of one group.
pub struct PixelBuffers {
    pub slot_len: u64,
    pub row_mode: bool,
    pub labels: wgpu::Buffer,
    pub pred: wgpu::Buffer,
    pub confusion: wgpu::Buffer,
    pub invalid: wgpu::Buffer,
    pub rows: wgpu::Buffer,
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

/// How one [`GpuBackend::run_tiles`] call lays its tiles out.
pub struct TileLayout {
    /// Samples per tile (the last tile of an item may hold fewer).
    pub tile_len: u64,
    /// Bytes per value (4: f32, 2: f16).
    pub value_bytes: usize,
    pub classes: usize,
    /// Planar (class-major within a tile, segmentation) or row-major
    /// (classification rows).
    pub planar: bool,
}

impl TileLayout {
    fn tile_bytes(&self) -> u64 {
        self.tile_len * self.classes as u64 * self.value_bytes as u64
    }

    fn wg_per_tile(&self) -> u64 {
        self.tile_len / u64::from(WG)
    }
}

/// One workgroup's partial record, decoded.
pub struct Partial {
    pub pixels: u64,
    pub sums: ScoreSums,
    pub softmin_sc: Softmin,
    pub softmin_nm: Softmin,
    pub bins: CalibrationBins,
}

impl Partial {
    /// Decode one record of [`record::WORDS`] words (layout: [`record`]).
    /// The softmin sums are rescaled to the reference's shifted weights
    /// ([`Softmin::from_unshifted`]).
    pub fn parse(rec: &[u32]) -> Self {
        use record as r;
        let f = |i: usize| f64::from(f32::from_bits(rec[i]));
        let mut bins = CalibrationBins::default();
        for m in 0..BINS {
            bins.count[m] = u64::from(rec[r::BIN_COUNT + m]);
            bins.correct[m] = u64::from(rec[r::BIN_CORRECT + m]);
            bins.confidence_sum[m] = calibration::confidence_sum(rec[r::BIN_CONF + m]);
        }
        Partial {
            pixels: u64::from(rec[r::PIXELS]),
            sums: ScoreSums::from_array(std::array::from_fn(|a| f(r::SCORES + a))),
            softmin_sc: Softmin::from_unshifted(f(r::SOFTMIN_SC_WEIGHTED), f(r::SOFTMIN_SC_WEIGHT)),
            softmin_nm: Softmin::from_unshifted(f(r::SOFTMIN_NM_WEIGHTED), f(r::SOFTMIN_NM_WEIGHT)),
            bins,
        }
    }
}

/// Decode one row record (layout: [`row`]).
fn parse_row(r: &[u32]) -> SampleScores {
    let f = |i: usize| f32::from_bits(r[i]);
    SampleScores {
        pred: r[row::PRED],
        confidence: f(row::CONFIDENCE),
        scores: PerSample::from_array(std::array::from_fn(|a| f(row::SCORES + a))),
    }
}

/// The first invalid sample a `first_invalid` word stands for.
fn first_invalid(word: u32) -> Option<usize> {
    (word != NO_INVALID).then_some(word as usize)
}

const STORAGE_RW: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

impl GpuBackend {
    /// Samples per tile for `classes` values of `bytes` each: at most
    /// [`super::super::context::SizeLimits::max_tile`], a multiple of
    /// [`WG`], and one tile within a binding.
    pub(in crate::backend::gpu) fn tile_samples(
        &self,
        classes: usize,
        bytes: usize,
    ) -> Result<u64> {
        let per_sample = (classes * bytes) as u64;
        let fit = self.ctx.max_binding() / per_sample;
        let max_tile = self.ctx.sizes.max_tile.max(u64::from(WG));
        let t = fit.min(max_tile) / u64::from(WG) * u64::from(WG);
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
            softmin_inv_t: INV_TEMPERATURE_F32,
            ignore_index: u32::MAX,
            ..PixelParams::default()
        }
    }

    /// The uniform block of every tile, at [`UNIFORM_STRIDE`]: tile `i` reads
    /// its values at chunk position `i mod per_chunk` and writes its records
    /// from `i × wg_per_tile`.
    fn tile_params(
        &self,
        tiles: &[Tile],
        layout: &TileLayout,
        per_chunk: u64,
        base: PixelParams,
        buffers: &PixelBuffers,
    ) -> Vec<u8> {
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension;
        let (tile_len, classes) = (layout.tile_len, layout.classes as u64);
        let wg_per_tile = layout.wg_per_tile() as u32;
        let mut row_base = 0u64;
        uniform_blocks(tiles.iter().enumerate().map(|(i, t)| {
            let n_groups = t.count.div_ceil(u64::from(WG)) as u32;
            let (gx, _) = grid(n_groups, max_dim);
            let p = PixelParams {
                count: t.count as u32,
                class_stride: if layout.planar { tile_len as u32 } else { 1 },
                sample_stride: if layout.planar { 1 } else { classes as u32 },
                data_base: ((i as u64 % per_chunk) * tile_len * classes) as u32,
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
            p
        }))
    }

    /// Upload and score `tiles`. `fill(tile_index, dst)` writes the tile's
    /// values into `dst` as `layout` describes. Tiles are uploaded in chunks
    /// that fill one binding but stay under
    /// [`super::super::context::SizeLimits::chunk_bytes`] of host staging,
    /// into two alternating input buffers. Returns the partial records, one
    /// per workgroup ([`record::WORDS`] words each), in tile order.
    pub(in crate::backend::gpu) fn run_tiles(
        &self,
        tiles: &[Tile],
        layout: &TileLayout,
        base: PixelParams,
        buffers: &PixelBuffers,
        fill: &dyn Fn(usize, &mut [u8]),
    ) -> Result<Vec<u32>> {
        let ctx = &self.ctx;
        let tile_bytes = layout.tile_bytes();
        let per_chunk = (ctx.max_binding().min(ctx.sizes.chunk_bytes) / tile_bytes).max(1);
        let chunk_bytes = per_chunk * tile_bytes;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let inputs = [
            ctx.buffer("input_a", chunk_bytes, storage),
            ctx.buffer("input_b", chunk_bytes, storage),
        ];
        let n_partials = tiles.len() as u64 * layout.wg_per_tile();
        let partial_bytes = n_partials * record::WORDS as u64 * 4;
        let partials = ctx.buffer("partials", partial_bytes, STORAGE_RW);
        let params = ctx.buffer(
            "pixel_params",
            tiles.len() as u64 * UNIFORM_STRIDE,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let params_bytes = self.tile_params(tiles, layout, per_chunk, base, buffers);
        ctx.queue.write_buffer(&params, 0, &params_bytes);
        // Partials of workgroups past a short tile's end stay as written by
        // the shader (it writes every record of every dispatched workgroup);
        // records of groups that are never dispatched are cleared here.
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.clear_buffer(&partials, 0, None);
        ctx.queue.submit([enc.finish()]);

        let mut staging = vec![0u8; chunk_bytes as usize];
        for (ci, chunk) in tiles.chunks(per_chunk as usize).enumerate() {
            let first = ci * per_chunk as usize;
            let staged = &mut staging[..chunk.len() * tile_bytes as usize];
            for (k, dst) in staged.chunks_exact_mut(tile_bytes as usize).enumerate() {
                fill(first + k, dst);
            }
            let input = &inputs[ci % 2];
            ctx.queue.write_buffer(input, 0, staged);
            let bound = TileBindings {
                params: &params,
                input,
                partials: &partials,
                buffers,
            };
            self.dispatch_chunk(chunk, first, &bound)?;
        }
        let bytes = ctx.read_back(&partials, partial_bytes)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// One submission dispatching every tile of an uploaded chunk; tile `k`
    /// of the chunk is tile `first + k` of the call.
    fn dispatch_chunk(&self, chunk: &[Tile], first: usize, b: &TileBindings<'_>) -> Result<()> {
        let ctx = &self.ctx;
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        let layout = ctx.score_pixels.get_bind_group_layout(0);
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
                let offset = (first + k) as u64 * UNIFORM_STRIDE;
                let bg = self.pixel_bind_group(&layout, offset, b);
                pass.set_bind_group(0, &bg, &[]);
                let n_groups = t.count.div_ceil(u64::from(WG)) as u32;
                let (gx, gy) = grid(n_groups, max_dim);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        ctx.queue.submit([enc.finish()]);
        ctx.check()
    }

    fn pixel_bind_group(
        &self,
        layout: &wgpu::BindGroupLayout,
        offset: u64,
        b: &TileBindings<'_>,
    ) -> wgpu::BindGroup {
        self.ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout,
                entries: &[
                    block(0, b.params, offset, UNIFORM_STRIDE),
                    whole(1, b.input),
                    whole(2, &b.buffers.labels),
                    whole(3, &b.buffers.pred),
                    whole(4, b.partials),
                    whole(5, &b.buffers.confusion),
                    whole(6, &b.buffers.invalid),
                    whole(7, &b.buffers.rows),
                ],
            })
    }

    /// Score one group of segmentation items whose per-slot maps fit the
    /// slot buffers: labels up, the fused pass over every item's tiles, the
    /// Boundary IoU bands, the counters back, then the host reduction.
    pub(in crate::backend::gpu) fn score_group(
        &self,
        items: &[&SegItem],
        batch: &SegBatch,
    ) -> Result<Vec<SegItemStats>> {
        let ctx = &self.ctx;
        let c = batch.classes;
        let f16 = matches!(items[0].probs, ProbBuf::F16(_));
        let n = items.len() as u64;
        let (buffers, flags, bands) = self.group_buffers(items, c)?;
        let layout = TileLayout {
            tile_len: self.tile_samples(c, if f16 { 2 } else { 4 })?,
            value_bytes: if f16 { 2 } else { 4 },
            classes: c,
            planar: true,
        };
        let tiles = item_tiles(items, layout.tile_len);
        let mut base = self.base_params(c, f16, batch.logits);
        base.ignore_index = u32::from(batch.ignore_index);
        let fill = |ti: usize, dst: &mut [u8]| {
            fill_planar(items[tiles[ti].slot as usize], &tiles[ti], &layout, dst)
        };
        let partials = self.run_tiles(&tiles, &layout, base, &buffers, &fill)?;

        // Boundary IoU bands, one pair of dispatches per item.
        self.dispatch_bands(items, batch, &buffers, &flags, &bands)?;

        let words = |buf: &wgpu::Buffer, len: u64| -> Result<Vec<u32>> {
            Ok(bytemuck::pod_collect_to_vec(&ctx.read_back(buf, len * 4)?))
        };
        let counts = GroupCounts {
            conf: words(&buffers.confusion, n * (c * c) as u64)?,
            inval: words(&buffers.invalid, n)?,
            band: words(&bands, n * 3 * c as u64)?,
        };
        Ok(reduce_group(
            items.len(),
            c,
            &counts,
            &tiles,
            &partials,
            layout.wg_per_tile() as usize,
        ))
    }

    /// The group's slot buffers with the labels written (u16 widened to u32
    /// words, slot `s` at `s × slot_len`) and the counters cleared; also the
    /// Boundary IoU flag map and band counters.
    fn group_buffers(
        &self,
        items: &[&SegItem],
        c: usize,
    ) -> Result<(PixelBuffers, wgpu::Buffer, wgpu::Buffer)> {
        let ctx = &self.ctx;
        let slot_len = items
            .iter()
            .map(|it| (it.height * it.width) as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let n = items.len() as u64;
        let buffers = PixelBuffers {
            slot_len,
            row_mode: false,
            labels: ctx.buffer("labels", n * slot_len * 4, STORAGE_RW),
            pred: ctx.buffer("pred", n * slot_len * 4, STORAGE_RW),
            confusion: ctx.buffer("confusion", n * (c * c) as u64 * 4, STORAGE_RW),
            invalid: ctx.buffer("invalid", n * 4, STORAGE_RW),
            rows: ctx.buffer("rows_dummy", 16, STORAGE_RW),
        };
        let flags = ctx.buffer("flags", n * slot_len * 4, STORAGE_RW);
        let bands = ctx.buffer("bands", n * 3 * c as u64 * 4, STORAGE_RW);
        let mut words = vec![0u32; (n * slot_len) as usize];
        for (s, it) in items.iter().enumerate() {
            let dst = &mut words[s * slot_len as usize..];
            if it.unlabelled {
                // Above every u16 annotation: the shader scores such a
                // pixel against its own prediction.
                dst[..it.height * it.width].fill(UNLABELLED_WORD);
            } else {
                for (d, &l) in dst.iter_mut().zip(&it.labels) {
                    *d = u32::from(l);
                }
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
        ctx.check()?;
        Ok((buffers, flags, bands))
    }

    /// Score a batch of segmentation items: grouped so that each group's
    /// per-slot maps fit one binding, one [`GpuBackend::score_group`] each.
    pub(in crate::backend::gpu) fn score_items_gpu(
        &self,
        batch: &SegBatch,
    ) -> Result<Vec<SegItemStats>> {
        if batch.items.is_empty() {
            return Ok(Vec::new());
        }
        let _session = self.ctx.session();
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
        let mut group: Vec<&SegItem> = Vec::new();
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
        // An unlabelled item has no annotation band (as on the CPU).
        for (it, st) in batch.items.iter().zip(out.iter_mut()) {
            if it.unlabelled {
                st.bands = BandCounts::zeros(batch.classes);
            }
        }
        Ok(out)
    }

    /// Score a batch of classification rows: row-major tiles, per-row
    /// records ([`row`]) and the batch's reliability table.
    pub(in crate::backend::gpu) fn score_rows_gpu(&self, batch: &RowBatch) -> Result<RowScores> {
        let ctx = &self.ctx;
        let c = batch.classes;
        let n = batch.labels.len();
        if n == 0 {
            return Ok(RowScores::default());
        }
        let _session = ctx.session();
        let f16 = matches!(batch.probs, ProbBuf::F16(_));
        let vb = if f16 { 2 } else { 4 };
        let layout = TileLayout {
            tile_len: self.tile_samples(c, vb)?,
            value_bytes: vb,
            classes: c,
            planar: false,
        };
        let row_bytes = (row::WORDS * 4) as u64;
        let buffers = PixelBuffers {
            slot_len: 0,
            row_mode: true,
            labels: ctx.buffer("row_labels", n as u64 * 4, STORAGE_RW),
            pred: ctx.buffer("pred_dummy", 16, STORAGE_RW),
            confusion: ctx.buffer("confusion_dummy", 16, STORAGE_RW),
            invalid: ctx.buffer("invalid", 4, STORAGE_RW),
            rows: ctx.buffer("rows", n as u64 * row_bytes, STORAGE_RW),
        };
        ctx.queue
            .write_buffer(&buffers.labels, 0, bytemuck::cast_slice(&batch.labels));
        ctx.queue
            .write_buffer(&buffers.invalid, 0, bytemuck::bytes_of(&NO_INVALID));
        let tiles: Vec<Tile> = (0..n as u64)
            .step_by(layout.tile_len as usize)
            .map(|start| Tile {
                slot: 0,
                first: start,
                count: (n as u64 - start).min(layout.tile_len),
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
        let partials = self.run_tiles(&tiles, &layout, base, &buffers, &fill)?;
        let rows: Vec<u32> =
            bytemuck::pod_collect_to_vec(&ctx.read_back(&buffers.rows, n as u64 * row_bytes)?);
        let inval: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_back(&buffers.invalid, 4)?);
        let mut out = RowScores {
            samples: rows.chunks_exact(row::WORDS).map(parse_row).collect(),
            first_invalid: first_invalid(inval[0]),
            ..RowScores::default()
        };
        for rec in partials.chunks_exact(record::WORDS) {
            out.bins.merge(&Partial::parse(rec).bins);
        }
        Ok(out)
    }
}

/// The bindings of every tile of one chunk.
struct TileBindings<'a> {
    params: &'a wgpu::Buffer,
    input: &'a wgpu::Buffer,
    partials: &'a wgpu::Buffer,
    buffers: &'a PixelBuffers,
}

/// Every item cut into tiles of at most `tile_len` samples, in item order.
fn item_tiles(items: &[&SegItem], tile_len: u64) -> Vec<Tile> {
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
    tiles
}

/// Write tile `t` of `it` (planar `C × H × W` values) into `dst`: class
/// `k`'s `t.count` values at `k × tile_len` values.
fn fill_planar(it: &SegItem, t: &Tile, layout: &TileLayout, dst: &mut [u8]) {
    let hw = it.height * it.width;
    let (a, cnt, vb) = (t.first as usize, t.count as usize, layout.value_bytes);
    for k in 0..layout.classes {
        let plane = k * layout.tile_len as usize * vb;
        let src = k * hw + a..k * hw + a + cnt;
        match &it.probs {
            ProbBuf::F32(v) => {
                dst[plane..plane + cnt * 4].copy_from_slice(bytemuck::cast_slice(&v[src]))
            }
            ProbBuf::F16(v) => {
                dst[plane..plane + cnt * 2].copy_from_slice(bytemuck::cast_slice(&v[src]))
            }
        }
    }
}

/// The counters read back for a group: per item, the C × C confusion, the
/// first invalid pixel, and the 3 × C band counts.
struct GroupCounts {
    conf: Vec<u32>,
    inval: Vec<u32>,
    band: Vec<u32>,
}

/// The group's per-item results: the counters as they are, and the tiles'
/// partial records merged in workgroup order (so the sums do not depend on
/// how the dispatches were scheduled).
fn reduce_group(
    n_items: usize,
    c: usize,
    counts: &GroupCounts,
    tiles: &[Tile],
    partials: &[u32],
    wg_per_tile: usize,
) -> Vec<SegItemStats> {
    let (conf, inval, band) = (&counts.conf, &counts.inval, &counts.band);
    let mut out: Vec<SegItemStats> = (0..n_items)
        .map(|s| {
            let cm = conf[s * c * c..(s + 1) * c * c]
                .iter()
                .map(|&v| u64::from(v))
                .collect();
            let b = &band[s * 3 * c..(s + 1) * 3 * c];
            let first_invalid = first_invalid(inval[s]);
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
    let words = wg_per_tile * record::WORDS;
    for (ti, t) in tiles.iter().enumerate() {
        let st = &mut out[t.slot as usize];
        for rec in partials[ti * words..(ti + 1) * words].chunks_exact(record::WORDS) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_is_packed_and_fits() {
        // The per-sample sums, the four softmin sums, the pixel count, then
        // three tables of BINS words, rounded up to 8 words.
        assert_eq!(record::NSUM, N_SAMPLE + 4);
        assert_eq!(record::BIN_COUNT, N_SAMPLE + 5);
        assert_eq!(record::BIN_CORRECT, record::BIN_COUNT + BINS);
        assert_eq!(record::BIN_CONF, record::BIN_CORRECT + BINS);
        assert_eq!(record::WORDS % 8, 0);
        const { assert!(record::WORDS - (record::BIN_CONF + BINS) < 8) };
        const { assert!(record::BIN_CONF + BINS <= record::WORDS) };
        const { assert!(row::SCORES + N_SAMPLE <= row::WORDS) };
        assert_eq!(std::mem::size_of::<PixelParams>() % 16, 0);
        assert!(std::mem::size_of::<PixelParams>() as u64 <= UNIFORM_STRIDE);
    }

    #[test]
    fn parse_reads_every_field_at_its_offset() {
        let mut rec = vec![0u32; record::WORDS];
        for (i, w) in rec[..record::NSUM].iter_mut().enumerate() {
            *w = (i as f32 + 1.0).to_bits();
        }
        rec[record::PIXELS] = 77;
        for m in 0..BINS {
            rec[record::BIN_COUNT + m] = m as u32;
            rec[record::BIN_CORRECT + m] = 100 + m as u32;
            rec[record::BIN_CONF + m] = (m as u32) << 23;
        }
        let p = Partial::parse(&rec);
        assert_eq!(p.pixels, 77);
        // Word i holds i + 1: the per-sample sums in table order first.
        let want: [f64; N_SAMPLE] = std::array::from_fn(|a| a as f64 + 1.0);
        assert_eq!(p.sums.to_array(), want);
        assert_eq!(p.sums.entropy, 1.0);
        let (sc, nm) = (N_SAMPLE as f64 + 1.0, N_SAMPLE as f64 + 3.0);
        let s = crate::metrics::softmin::shift();
        assert_eq!(p.softmin_sc.weighted, sc * s);
        assert_eq!(p.softmin_sc.weight, (sc + 1.0) * s);
        assert_eq!(p.softmin_nm.weighted, nm * s);
        assert_eq!(p.softmin_nm.weight, (nm + 1.0) * s);
        assert_eq!(p.bins.count[14], 14);
        assert_eq!(p.bins.correct[3], 103);
        assert_eq!(p.bins.confidence_sum[2], 2.0);
    }
}
