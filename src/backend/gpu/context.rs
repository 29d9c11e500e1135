//! The GPU context of one run: adapter choice, device, pipelines, reusable
//! buffers, and the error plumbing that turns validation errors, device loss
//! and out-of-memory into [`Error::Backend`] instead of panics or hangs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::BackendInfo;
use crate::error::{Error, Result};

/// Longest wait for one submission before the run is declared hung.
const POLL_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for a mapped read-back once the GPU is idle.
const MAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Most samples per `score_pixels` tile (one dispatch).
pub const MAX_TILE: u64 = 1 << 16;
/// Most bytes of host staging per upload chunk.
pub const CHUNK_BYTES: u64 = 64 << 20;
/// Largest storage binding ever used, so u32 word indices and f16 element
/// indices never overflow.
const BINDING_CAP: u64 = 1 << 30;

/// The sizes the host cuts work into. [`SizeLimits::default`] is what every
/// run uses (the adapter's own binding limit, [`MAX_TILE`], [`CHUNK_BYTES`]);
/// the parity tests pass smaller ones so that one item spans several tiles,
/// upload chunks, slot groups and kNN chunks.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// Most samples per tile; rounded down to a multiple of the workgroup
    /// size (256), and never below it.
    pub max_tile: u64,
    /// Most bytes of host staging per upload chunk (at least one tile).
    pub chunk_bytes: u64,
    /// Cap on the storage binding size; the adapter's limit applies when it
    /// is smaller.
    pub binding: u64,
    /// Most embedding rows per kNN chunk; the binding limit applies when it
    /// is smaller.
    pub knn_rows: usize,
}

impl Default for SizeLimits {
    fn default() -> Self {
        SizeLimits {
            max_tile: MAX_TILE,
            chunk_bytes: CHUNK_BYTES,
            binding: BINDING_CAP,
            knn_rows: usize::MAX,
        }
    }
}

/// Which adapters are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Any adapter, software ones (lavapipe) included: `--backend gpu`.
    AnyAdapter,
    /// Only a hardware GPU, discrete or integrated: `--backend auto`.
    HardwareOnly,
}

pub(crate) fn gpu_error(message: impl Into<String>) -> Error {
    Error::Backend {
        backend: "gpu".into(),
        message: message.into(),
    }
}

/// The device, its queue, the compiled pipelines and a buffer cache.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub info: BackendInfo,
    pub score_pixels: wgpu::ComputePipeline,
    pub row_uniform: wgpu::ComputePipeline,
    pub band_count: wgpu::ComputePipeline,
    pub knn: wgpu::ComputePipeline,
    pub mask_iou: wgpu::ComputePipeline,
    /// How the host cuts work (see [`SizeLimits`]).
    pub sizes: SizeLimits,
    /// Errors reported asynchronously by wgpu (validation, OOM, device lost).
    errors: Arc<Mutex<Vec<String>>>,
    /// Reusable buffers by (name, index), see [`GpuContext::buffer_at`].
    buffers: Mutex<HashMap<(&'static str, usize), wgpu::Buffer>>,
    /// The read-back staging buffer, grown when too small. Its lock is held
    /// for a whole [`GpuContext::read_back`].
    staging: Mutex<Option<wgpu::Buffer>>,
    /// Held for a whole backend operation, see [`GpuContext::session`].
    session: Mutex<()>,
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl GpuContext {
    /// Find an adapter allowed by `policy` and build the context on it.
    /// `Ok(None)` means no acceptable adapter exists.
    pub fn new(policy: AdapterPolicy, sizes: SizeLimits) -> Result<Option<Self>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        adapters.retain(|a| {
            let t = a.get_info().device_type;
            policy == AdapterPolicy::AnyAdapter
                || matches!(
                    t,
                    wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
                )
        });
        // Prefer hardware, then Vulkan/Metal/DX12 over GL.
        adapters.sort_by_key(|a| {
            let i = a.get_info();
            (rank(i.device_type), i.backend == wgpu::Backend::Gl)
        });
        let Some(adapter) = adapters.into_iter().next() else {
            return Ok(None);
        };
        let ai = adapter.get_info();
        // Ask for what the adapter can do, not wgpu's conservative defaults
        // (lavapipe: 2 GiB buffers instead of 256 MiB).
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("triage"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| gpu_error(format!("cannot open device on {}: {e}", ai.name)))?;

        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut v) = errors.lock() {
                    v.push(e.to_string());
                }
            }));
        }
        {
            let errors = errors.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut v) = errors.lock() {
                    v.push(format!("device lost ({reason:?}): {msg}"));
                }
            });
        }

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = |label: &str, src: String| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        };
        let pixels = module("score_pixels", super::shaders::score_pixels_source());
        let bands = module("boundary_iou", super::shaders::boundary_iou_source());
        let pipeline = |m: &wgpu::ShaderModule, entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: m,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let score_pixels = pipeline(&pixels, "score_pixels");
        let row_uniform = pipeline(&bands, "row_uniform");
        let band_count = pipeline(&bands, "band_count");
        let knn = pipeline(&module("knn", super::shaders::knn_source()), "knn");
        let mask_iou = pipeline(
            &module("mask_iou", super::shaders::mask_iou_source()),
            "mask_iou",
        );
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(gpu_error(format!("shader validation failed: {e}")));
        }

        let info = backend_info(&ai);
        Ok(Some(GpuContext {
            device,
            queue,
            limits,
            info,
            score_pixels,
            row_uniform,
            band_count,
            knn,
            mask_iou,
            sizes,
            errors,
            buffers: Mutex::default(),
            staging: Mutex::default(),
            session: Mutex::default(),
        }))
    }

    /// The largest storage binding used: the adapter's, capped at 1 GiB so
    /// u32 word indices and f16 element indices never overflow, and at
    /// [`SizeLimits::binding`].
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            .min(BINDING_CAP)
            .min(self.sizes.binding)
    }

    /// Exclusive use of the cached buffers for one backend operation (a
    /// batch, a kNN graph, a mask pair). Operations share the cache's
    /// buffers, so concurrent callers (the neighbour stage compares mask
    /// pairs from several threads) are served one at a time; the lock is
    /// taken once per operation, never nested.
    pub fn session(&self) -> std::sync::MutexGuard<'_, ()> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached buffer named `name` of at least `size` bytes (grown as
    /// needed, reused across batches). Contents are whatever the last user
    /// left: callers write or clear what they read.
    pub fn buffer(&self, name: &'static str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.buffer_at(name, 0, size, usage)
    }

    /// Buffer `index` of the family `name` (several live at once, e.g. one per
    /// embedding chunk), cached like [`GpuContext::buffer`]. A name is always
    /// requested with the same `usage`.
    pub fn buffer_at(
        &self,
        name: &'static str,
        index: usize,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let size = size.max(16).next_multiple_of(16);
        let mut cache = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = cache.get(&(name, index))
            && b.size() >= size
            && b.usage() == usage
        {
            return b.clone();
        }
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage,
            mapped_at_creation: false,
        });
        cache.insert((name, index), b.clone());
        b
    }

    /// A uniform buffer holding `value` (cached under `name`).
    pub fn uniform<T: bytemuck::Pod>(&self, name: &'static str, value: &T) -> wgpu::Buffer {
        let b = self.buffer(
            name,
            std::mem::size_of::<T>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        self.queue.write_buffer(&b, 0, bytemuck::bytes_of(value));
        b
    }

    /// Fail if wgpu reported an error since the last check.
    pub fn check(&self) -> Result<()> {
        let mut v = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if v.is_empty() {
            Ok(())
        } else {
            let msg = v.join("; ");
            v.clear();
            Err(gpu_error(msg))
        }
    }

    /// Wait for all submitted work, bounded by [`POLL_TIMEOUT`].
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(POLL_TIMEOUT),
            })
            .map_err(|e| gpu_error(format!("waiting for the GPU failed: {e}")))?;
        self.check()
    }

    /// Copy the first `size` bytes (a multiple of 4) of `src` back to the
    /// host, through one staging buffer reused across calls (grown when too
    /// small). Waits are bounded ([`POLL_TIMEOUT`], then [`MAP_TIMEOUT`] for
    /// the mapping); on any failure the staging buffer is dropped, so a
    /// mapping left pending can never be reused.
    pub fn read_back(&self, src: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut slot = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        let staging = match slot.take() {
            Some(b) if b.size() >= size => b,
            _ => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: size.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        let bytes = self.map_copy(src, &staging, size)?;
        // Only a buffer that was mapped, read and unmapped goes back.
        *slot = Some(staging);
        Ok(bytes)
    }

    /// Copy `size` bytes of `src` into `staging`, map them, read them, unmap.
    fn map_copy(&self, src: &wgpu::Buffer, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(src, 0, staging, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        let range = staging.slice(..size);
        range.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv_timeout(MAP_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(gpu_error(format!("cannot map the result buffer: {e}"))),
            Err(_) => return Err(gpu_error("the result buffer was never mapped")),
        }
        let bytes = {
            let view = range
                .get_mapped_range()
                .map_err(|e| gpu_error(format!("cannot read the result buffer: {e}")))?;
            view.to_vec()
        };
        staging.unmap();
        Ok(bytes)
    }
}

/// What `report.json` says about the adapter.
fn backend_info(ai: &wgpu::AdapterInfo) -> BackendInfo {
    BackendInfo {
        name: "gpu".into(),
        threads: None,
        adapter: Some(ai.name.clone()),
        api: Some(format!("{:?}", ai.backend)),
        device_type: Some(
            match ai.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete",
                wgpu::DeviceType::IntegratedGpu => "integrated",
                wgpu::DeviceType::VirtualGpu => "virtual",
                wgpu::DeviceType::Cpu => "cpu (software)",
                wgpu::DeviceType::Other => "other",
            }
            .into(),
        ),
        fallback: None,
        simd: None,
    }
}

/// Workgroup grid for `n` workgroups: one row up to 65535, then 2-D.
pub fn grid(n: u32, max_dim: u32) -> (u32, u32) {
    if n <= max_dim {
        (n.max(1), 1)
    } else {
        (max_dim, n.div_ceil(max_dim))
    }
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn grid_goes_2d_past_the_limit() {
        assert_eq!(grid(1, 65535), (1, 1));
        assert_eq!(grid(65535, 65535), (65535, 1));
        assert_eq!(grid(65536, 65535), (65535, 2));
        assert_eq!(grid(200_000, 65535), (65535, 4));
    }
}
