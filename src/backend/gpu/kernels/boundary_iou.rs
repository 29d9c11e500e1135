//! Host side of `shaders/boundary_iou.wgsl`: Boundary IoU's band counts of
//! every item of a segmentation group, from the label map (uploaded by
//! [`super::score_pixels`]) and the prediction map `score_pixels` wrote.
//!
//! Per item, two dispatches over its pixels: `row_uniform` marks the pixels
//! whose row window is inside the image and uniform (bindings 0–3), then
//! `band_count` adds the per-class band intersection and sizes into the
//! item's `3 × C` counters `[inter | gt | pred]` (bindings 0–4).
//!
//! The same two passes count two annotators' maps of one item
//! ([`GpuBackend::mask_bands_gpu`], `pair = 1`: a pixel either map ignores
//! counts in neither band), as
//! [`crate::metrics::boundary_iou::pair_band_counts`] defines.

use bytemuck::{Pod, Zeroable};

use super::super::GpuBackend;
use super::super::context::grid;
use super::score_pixels::PixelBuffers;
use super::{UNIFORM_STRIDE, WG, block, uniform_blocks, whole};
use crate::backend::{SegBatch, SegItem};
use crate::error::Result;
use crate::metrics::boundary_iou::{BandCounts, band_width};

/// Storage buffers the host writes and reads back.
const STORAGE_RW: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// Mirror of `Params` in `shaders/boundary_iou.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub struct BandParams {
    pub height: u32,
    pub width: u32,
    pub d: u32,
    pub classes: u32,
    pub ignore_index: u32,
    pub label_base: u32,
    pub pred_base: u32,
    pub flag_base: u32,
    pub slot: u32,
    pub groups_x: u32,
    pub n_groups: u32,
    /// 1: the two maps are two annotators' ([`GpuBackend::mask_bands_gpu`]).
    pub pair: u32,
}

/// The buffers both passes bind.
struct BandBindings<'a> {
    params: &'a wgpu::Buffer,
    buffers: &'a PixelBuffers,
    flags: &'a wgpu::Buffer,
    bands: &'a wgpu::Buffer,
}

impl GpuBackend {
    /// Boundary IoU's band counts of every item of a group: per item, the
    /// row-uniform pass, then the band count, into `bands` (3 × C counters
    /// per item, cleared by the caller). Slot `s` of the label, prediction
    /// and flag maps starts at `s × buffers.slot_len`.
    pub(in crate::backend::gpu) fn dispatch_bands(
        &self,
        items: &[&SegItem],
        batch: &SegBatch,
        buffers: &PixelBuffers,
        flags: &wgpu::Buffer,
        bands: &wgpu::Buffer,
    ) -> Result<()> {
        let ctx = &self.ctx;
        let n = items.len() as u64;
        let params = ctx.buffer(
            "band_params",
            n * UNIFORM_STRIDE,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        ctx.queue.write_buffer(
            &params,
            0,
            &self.band_params(items, batch, buffers.slot_len),
        );
        let bound = BandBindings {
            params: &params,
            buffers,
            flags,
            bands,
        };
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
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
                    let bg = self.band_bind_group(pipeline, s, n_bindings, &bound);
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, &bg, &[]);
                    pass.dispatch_workgroups(gx, gy, 1);
                }
            }
        }
        ctx.queue.submit([enc.finish()]);
        ctx.check()
    }

    /// Boundary IoU band counts of two annotators' `h × w` maps `a` and `b`
    /// on the GPU: the row-uniform pass and the band count over one item.
    pub(in crate::backend::gpu) fn mask_bands_gpu(
        &self,
        a: &[u16],
        b: &[u16],
        (h, w): (usize, usize),
        classes: usize,
        ignore: u16,
    ) -> Result<BandCounts> {
        let ctx = &self.ctx;
        let n = h * w;
        if a.len() != n || b.len() != n {
            return Err(super::super::context::gpu_error(format!(
                "mask sizes differ: {} and {} pixels for {h} x {w}",
                a.len(),
                b.len()
            )));
        }
        if n == 0 || classes == 0 {
            return Ok(BandCounts::zeros(classes));
        }
        let map_bytes = (n * 4) as u64;
        let count_bytes = (3 * classes * 4) as u64;
        if map_bytes > ctx.max_binding() || count_bytes > ctx.max_binding() {
            return Err(super::super::context::gpu_error(format!(
                "a {n}-pixel mask pair with {classes} classes exceeds the adapter's binding limit"
            )));
        }
        let widen = |m: &[u16]| -> Vec<u32> { m.iter().map(|&v| u32::from(v)).collect() };
        let _session = ctx.session();
        let la = ctx.buffer("pair_labels", map_bytes, STORAGE_RW);
        let lb = ctx.buffer("pair_pred", map_bytes, STORAGE_RW);
        let flags = ctx.buffer("pair_flags", map_bytes, STORAGE_RW);
        let bands = ctx.buffer("pair_bands", count_bytes, STORAGE_RW);
        ctx.queue
            .write_buffer(&la, 0, bytemuck::cast_slice(&widen(a)));
        ctx.queue
            .write_buffer(&lb, 0, bytemuck::cast_slice(&widen(b)));
        let n_groups = (n as u32).div_ceil(WG);
        let (gx, gy) = grid(n_groups, ctx.limits.max_compute_workgroups_per_dimension);
        let params = ctx.uniform(
            "pair_band_params",
            &BandParams {
                height: h as u32,
                width: w as u32,
                d: band_width(h, w) as u32,
                classes: classes as u32,
                ignore_index: u32::from(ignore),
                label_base: 0,
                pred_base: 0,
                flag_base: 0,
                slot: 0,
                groups_x: gx,
                n_groups,
                pair: 1,
            },
        );
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.clear_buffer(&bands, 0, Some(count_bytes.next_multiple_of(4)));
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("pair_bands"),
                timestamp_writes: None,
            });
            let entries = [
                whole(0, &params),
                whole(1, &la),
                whole(2, &lb),
                whole(3, &flags),
                whole(4, &bands),
            ];
            for (pipeline, n_bindings) in [(&ctx.row_uniform, 4), (&ctx.band_count, 5)] {
                let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("pair_bands"),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries[..n_bindings],
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        ctx.queue.submit([enc.finish()]);
        let raw: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_back(&bands, count_bytes)?);
        let part = |k: usize| {
            raw[k * classes..(k + 1) * classes]
                .iter()
                .map(|&x| u64::from(x))
                .collect()
        };
        Ok(BandCounts {
            inter: part(0),
            gt: part(1),
            pred: part(2),
        })
    }

    /// The uniform block of every item, at [`UNIFORM_STRIDE`].
    fn band_params(&self, items: &[&SegItem], batch: &SegBatch, slot_len: u64) -> Vec<u8> {
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension;
        uniform_blocks(items.iter().enumerate().map(|(s, it)| {
            let n_groups = ((it.height * it.width) as u32).div_ceil(WG);
            let (gx, _) = grid(n_groups, max_dim);
            let base = (s as u64 * slot_len) as u32;
            BandParams {
                height: it.height as u32,
                width: it.width as u32,
                d: band_width(it.height, it.width) as u32,
                classes: batch.classes as u32,
                ignore_index: u32::from(batch.ignore_index),
                label_base: base,
                pred_base: base,
                flag_base: base,
                slot: s as u32,
                groups_x: gx,
                n_groups,
                pair: 0,
            }
        }))
    }

    /// The bind group of item `slot` for `pipeline`'s first `n_bindings`
    /// bindings (`row_uniform` does not touch the band counts, so its
    /// derived layout has no binding 4).
    fn band_bind_group(
        &self,
        pipeline: &wgpu::ComputePipeline,
        slot: usize,
        n_bindings: usize,
        b: &BandBindings<'_>,
    ) -> wgpu::BindGroup {
        let entries = [
            block(0, b.params, slot as u64 * UNIFORM_STRIDE, UNIFORM_STRIDE),
            whole(1, &b.buffers.labels),
            whole(2, &b.buffers.pred),
            whole(3, b.flags),
            whole(4, b.bands),
        ];
        self.ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries[..n_bindings],
            })
    }
}
