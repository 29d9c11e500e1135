//! The host side of each compute shader in `shaders/`, one module per shader
//! stem: its uniform block, the buffers it binds, its dispatches, and the
//! layout of what it writes back.
//!
//! | module | shader | entry points |
//! |---|---|---|
//! | [`score_pixels`] | `score_pixels.wgsl` (+ the files below) | `score_pixels` |
//! | [`calibration`] | `calibration.wgsl` | (part of `score_pixels`) |
//! | [`boundary_iou`] | `boundary_iou.wgsl` | `row_uniform`, `band_count` |
//! | [`knn`] | `knn.wgsl` | `knn` |
//! | [`mask_iou`] | `mask_iou.wgsl` | `mask_iou` |
//!
//! `score_pixels` is one fused pass (every probability is read once), so
//! `pixel_stats.wgsl`, `calibration.wgsl`, `confusion.wgsl` and
//! `softmin.wgsl` are not modules of their own on the device: WGSL has no
//! `#include`, and [`super::shaders`] concatenates them after the entry
//! file, behind the constants the host generates
//! ([`score_pixels::wgsl_constants`]). On the host:
//!
//! * `calibration.wgsl` contributes the bin count and the fixed-point scale
//!   of the bins' confidence sums: [`calibration`];
//! * `softmin.wgsl` contributes the weight `e^{-s/T}`, whose temperature and
//!   finishing step are [`crate::metrics::softmin`]'s (`1/T` travels in the
//!   uniform block, [`score_pixels::PixelParams::softmin_inv_t`]: a
//!   compile-time constant would let the driver fold it into `exp` and
//!   round the weights differently from before);
//! * `pixel_stats.wgsl` (per-sample scores) and `confusion.wgsl` (counts into
//!   the item's `C × C` matrix, label-major, the layout of
//!   [`crate::metrics::confusion::Confusion::from_counts`]) write nothing the
//!   host reads by offset beyond what [`score_pixels`] already defines (the
//!   partial record and the row record), so they have no host module.
//!
//! No kernel module keeps state: each adds methods to [`super::GpuBackend`]
//! and draws its buffers from the context's cache ([`super::context`]).

pub mod boundary_iou;
pub mod calibration;
pub mod knn;
pub mod mask_iou;
pub mod score_pixels;

/// Invocations per workgroup of `score_pixels`, `boundary_iou` and `mask_iou`
/// (`WG` in the generated WGSL constants).
pub const WG: u32 = 256;

/// Uniform blocks of successive dispatches are placed at this stride
/// (≥ every adapter's uniform offset alignment).
pub const UNIFORM_STRIDE: u64 = 256;

/// Write `blocks` into one byte vector, block `i` at `i × UNIFORM_STRIDE`.
pub fn uniform_blocks<T: bytemuck::Pod>(blocks: impl ExactSizeIterator<Item = T>) -> Vec<u8> {
    let stride = UNIFORM_STRIDE as usize;
    let mut bytes = vec![0u8; blocks.len() * stride];
    for (i, p) in blocks.enumerate() {
        let at = i * stride;
        bytes[at..at + std::mem::size_of::<T>()].copy_from_slice(bytemuck::bytes_of(&p));
    }
    bytes
}

/// A whole-buffer binding at `binding`.
pub fn whole(binding: u32, buf: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buf.as_entire_binding(),
    }
}

/// The uniform block at `offset` of `buf`, `size` bytes, at `binding`.
pub fn block(binding: u32, buf: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: buf,
            offset,
            size: wgpu::BufferSize::new(size),
        }),
    }
}
