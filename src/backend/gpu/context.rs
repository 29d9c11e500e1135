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
    /// Errors reported asynchronously by wgpu (validation, OOM, device lost).
    errors: Arc<Mutex<Vec<String>>>,
    buffers: Mutex<HashMap<&'static str, wgpu::Buffer>>,
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
    pub fn new(policy: AdapterPolicy) -> Result<Option<Self>> {
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

        let info = BackendInfo {
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
        };
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
            errors,
            buffers: Mutex::default(),
        }))
    }

    /// The largest storage binding, capped at 1 GiB so u32 word indices and
    /// f16 element indices never overflow.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            .min(1 << 30)
    }

    /// A cached buffer named `name` of at least `size` bytes (grown as
    /// needed, reused across batches).
    pub fn buffer(&self, name: &'static str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let size = size.max(16).next_multiple_of(16);
        let mut cache = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = cache.get(name)
            && b.size() >= size
        {
            return b.clone();
        }
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage,
            mapped_at_creation: false,
        });
        cache.insert(name, b.clone());
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

    /// Copy `size` bytes of `src` back to the host.
    pub fn read_back(&self, src: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(gpu_error(format!("cannot map the result buffer: {e}"))),
            Err(_) => return Err(gpu_error("the result buffer was never mapped")),
        }
        let bytes = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| gpu_error(format!("cannot read the result buffer: {e}")))?;
            view.to_vec()
        };
        staging.unmap();
        Ok(bytes)
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
