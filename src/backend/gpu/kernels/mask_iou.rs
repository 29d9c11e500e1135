//! Host side of `shaders/mask_iou.wgsl`: the label × label counts of two
//! same-size annotation maps (the mask IoU of a near-duplicate pair), in one
//! dispatch. Maps are packed two u16 labels per u32 word (an odd tail padded
//! with the ignore label, which is never counted).

use bytemuck::{Pod, Zeroable};

use super::super::GpuBackend;
use super::super::context::{gpu_error, grid};
use super::{WG, whole};
use crate::error::Result;
use crate::metrics::confusion::Confusion;

/// Storage buffers the host writes and reads back.
const STORAGE_RW: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// Mirror of `MaskParams` in `shaders/mask_iou.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MaskParams {
    pub n: u32,
    pub classes: u32,
    pub ignore: u32,
    pub grid_x: u32,
}

impl GpuBackend {
    /// Label × label counts of two same-size maps on the GPU.
    pub(in crate::backend::gpu) fn mask_confusion_gpu(
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
        let _session = ctx.session();
        let abuf = ctx.buffer("mask_a", (words * 4) as u64, STORAGE_RW);
        let bbuf = ctx.buffer("mask_b", (words * 4) as u64, STORAGE_RW);
        ctx.queue
            .write_buffer(&abuf, 0, bytemuck::cast_slice(&pack(a)));
        ctx.queue
            .write_buffer(&bbuf, 0, bytemuck::cast_slice(&pack(b)));
        let counts = ctx.buffer("mask_counts", counts_bytes, STORAGE_RW);
        let groups = (n as u32).div_ceil(WG);
        let (gx, gy) = grid(groups, ctx.limits.max_compute_workgroups_per_dimension);
        let params = ctx.uniform(
            "mask_params",
            &MaskParams {
                n: n as u32,
                classes: classes as u32,
                ignore: u32::from(ignore),
                grid_x: gx,
            },
        );
        let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("mask_iou"),
            layout: &ctx.mask_iou.get_bind_group_layout(0),
            entries: &[
                whole(0, &params),
                whole(1, &abuf),
                whole(2, &bbuf),
                whole(3, &counts),
            ],
        });
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        // The cached buffer may be larger than this pair's counts: clear
        // (and read back) only the first C × C words.
        enc.clear_buffer(&counts, 0, Some(counts_bytes.next_multiple_of(4)));
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
