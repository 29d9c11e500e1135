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
//!
//! Layout: [`context`] holds the device, pipelines and buffer cache;
//! [`kernels`] has one host module per shader stem (uniform blocks,
//! bindings, dispatches, record layouts); [`shaders`] assembles the WGSL
//! sources. This module is the [`Backend`] face, delegating to the kernels.
//!
//! Every operation draws its device buffers from the context's cache, reused
//! across calls; concurrent calls on one `GpuBackend` are therefore served
//! one at a time ([`context::GpuContext::session`]).

mod context;
mod kernels;
mod shaders;

pub use kernels::knn::{GPU_EXACT, KNN_MARGIN, KNN_MAX_K, candidates_per_dispatch};

pub use context::AdapterPolicy;
use context::GpuContext;
#[doc(hidden)]
pub use context::SizeLimits;
#[doc(hidden)]
pub use kernels::score_pixels::PIXEL_PARAM_FIELDS;
/// The assembled `score_pixels` module and the sizes its host side uses, for
/// benchmarks that drive the kernel directly.
#[doc(hidden)]
pub use kernels::{UNIFORM_STRIDE, WG, score_pixels::record::WORDS as PARTIAL_WORDS};
#[doc(hidden)]
pub use shaders::{score_pixels_source, wgsl_fields};

use super::{Backend, BackendInfo, RowBatch, RowScores, SegBatch, SegItemStats};
use crate::error::Result;
use crate::index::KnnGraph;
use crate::io::embeddings::Embeddings;
use crate::metrics::confusion::Confusion;

/// Largest absolute difference allowed between a GPU float score and the CPU
/// reference (per-sample scores, per-item means and softmins, ECE). The
/// shaders use the same operations in the same order; differences come from
/// `log`/`exp` implementations (a few ulp) and workgroup-ordered summation.
pub const FLOAT_TOLERANCE: f64 = 2e-5;

/// Give the process a private, empty `XDG_RUNTIME_DIR` when it has none
/// (unset, empty, or not an absolute path), so that probing for a GPU
/// prints nothing: Mesa's Vulkan device-select layer tries the Wayland
/// display while wgpu enumerates adapters (wgpu enables the Wayland
/// surface extension wherever the driver has it), and libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` on
/// stderr when the variable is missing. In an empty directory of its own
/// the display is simply not found, silently.
///
/// The directory is created under [`std::env::temp_dir`] with a unique
/// name and mode 0700 (no other user can put a socket in it), and removed
/// when the returned guard drops. `None` when the variable was already
/// usable, on platforms without Wayland, or when the directory cannot be
/// created (then nothing changes).
///
/// # Safety
///
/// It sets an environment variable ([`std::env::set_var`]): call it
/// before the process starts any other thread, and while no other code
/// reads or writes the environment (the first statement of `main`).
pub unsafe fn private_runtime_dir() -> Option<tempfile::TempDir> {
    #[cfg(all(unix, not(target_os = "macos"), not(target_os = "android")))]
    {
        use std::os::unix::fs::PermissionsExt;
        const VAR: &str = "XDG_RUNTIME_DIR";
        let usable = std::env::var_os(VAR).is_some_and(|d| std::path::Path::new(&d).is_absolute());
        if usable {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("triage-runtime-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .ok()?;
        // SAFETY: the caller's contract: no other thread runs and nothing
        // else touches the environment now.
        unsafe { std::env::set_var(VAR, dir.path()) };
        Some(dir)
    }
    #[cfg(not(all(unix, not(target_os = "macos"), not(target_os = "android"))))]
    {
        None
    }
}

/// The GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
}

impl GpuBackend {
    /// Open the best adapter allowed by `policy`; `Ok(None)` when there is none.
    pub fn new(policy: AdapterPolicy) -> Result<Option<Self>> {
        Self::with_limits(policy, SizeLimits::default())
    }

    /// [`GpuBackend::new`] cutting work by `sizes` instead of the defaults:
    /// for tests that need several tiles, upload chunks, slot groups or kNN
    /// chunks per item from small inputs. Results do not depend on `sizes`.
    #[doc(hidden)]
    pub fn with_limits(policy: AdapterPolicy, sizes: SizeLimits) -> Result<Option<Self>> {
        Ok(GpuContext::new(policy, sizes)?.map(|ctx| GpuBackend { ctx }))
    }

    /// Samples per `score_pixels` tile for `classes` values of `bytes` bytes
    /// each (items with more pixels span several tiles). For tests.
    #[doc(hidden)]
    pub fn tile_len(&self, classes: usize, bytes: usize) -> Result<u64> {
        self.tile_samples(classes, bytes)
    }

    /// Measure the transfer limits the GPU path is judged against: seconds to
    /// upload `bytes` from host memory (`queue.write_buffer`, then wait) and
    /// seconds for a device-to-device copy of the same size. For benchmarks.
    pub fn bandwidth_probe(&self, bytes: u64) -> Result<(f64, f64)> {
        let ctx = &self.ctx;
        let _session = ctx.session();
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
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        self.ctx.info.clone()
    }

    fn score_rows(&self, batch: &RowBatch) -> Result<RowScores> {
        self.score_rows_gpu(batch)
    }

    fn score_items(&self, batch: &SegBatch) -> Result<Vec<SegItemStats>> {
        self.score_items_gpu(batch)
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

    fn mask_bands(
        &self,
        a: &[u16],
        b: &[u16],
        dims: (usize, usize),
        classes: usize,
        ignore: u16,
    ) -> Result<crate::metrics::boundary_iou::BandCounts> {
        self.mask_bands_gpu(a, b, dims, classes, ignore)
    }
}
