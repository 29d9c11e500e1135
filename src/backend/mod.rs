//! Compute backends behind one small trait.
//!
//! The CPU backend ([`cpu::CpuBackend`], rayon) is the reference that defines
//! every number. Other backends must match it: bit-exact for integer counts
//! and within a stated tolerance for floats.
//!
//! A backend sees already-parsed batches ([`RowBatch`] for classification,
//! [`SegBatch`] for segmentation) and returns sums and counts only; turning
//! those into reported scores is done once, on the host, in
//! [`crate::pipeline`], so every backend shares it.

pub mod cpu;
pub mod fallback;
pub mod gpu;
pub mod simd;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::KnnGraph;
use crate::io::embeddings::Embeddings;
pub use crate::io::probs::{PlaneSource, ProbBuf};
use crate::metrics::boundary_iou::BandCounts;
use crate::metrics::calibration::CalibrationBins;
use crate::metrics::confusion::Confusion;
use crate::metrics::pixel_stats::SampleScores;

/// A batch of classification rows: `probs` is `n × classes`, row-major.
#[derive(Debug, Clone)]
pub struct RowBatch {
    pub probs: ProbBuf,
    /// The annotated label of each row, each `< classes`.
    pub labels: Vec<u32>,
    pub classes: usize,
    /// Apply a softmax to each row first.
    pub logits: bool,
}

/// What a backend returns for a [`RowBatch`].
#[derive(Debug, Clone, Default)]
pub struct RowScores {
    /// One entry per row (meaningless for rows at or after `first_invalid`).
    pub samples: Vec<SampleScores>,
    /// The batch's reliability table.
    pub bins: CalibrationBins,
    /// The first row whose values are invalid, if any.
    pub first_invalid: Option<usize>,
}

/// One segmentation item: `probs` is `classes × h × w` (C order) and `labels`
/// the `h × w` annotation, each value `< classes` or `== ignore_index`.
///
/// When `planes` is set, `probs` is empty and the values stay in their file:
/// the backend reads each stripe of pixels (its `C` plane pieces) into a
/// cache-sized buffer right before scoring it, so the values cross memory
/// once instead of being copied into a batch buffer and read back. Only a
/// backend whose [`Backend::reads_planes`] is true is given such items.
#[derive(Debug, Clone)]
pub struct SegItem {
    pub probs: ProbBuf,
    pub planes: Option<std::sync::Arc<dyn PlaneSource>>,
    pub labels: Vec<u16>,
    pub height: usize,
    pub width: usize,
    /// The item has no annotation (`labels` is ignored): every pixel is
    /// scored, against its own predicted class, so that the per-pixel
    /// self-confidence is the top probability and the "normalised margin"
    /// sums hold the margin `p_(1) − p_(2)` itself
    /// ([`SegItemStats::softmin_normalized_margin`] is then the softmin of
    /// the margin). Counts, bins and bands are then meaningless.
    pub unlabelled: bool,
}

/// A batch of segmentation items sharing the class count and options.
#[derive(Debug, Clone)]
pub struct SegBatch {
    pub items: Vec<SegItem>,
    pub classes: usize,
    pub ignore_index: u16,
    pub logits: bool,
}

/// Sums of the per-sample scores over an item's scored pixels (`f64`),
/// one per declared per-sample score ([`crate::scores::ScoreSums`]).
pub use crate::scores::ScoreSums;

/// The softmin sums and their temperature, defined in
/// [`crate::metrics::softmin`] (re-exported here for the backends' users).
pub use crate::metrics::softmin::{Softmin, TEMPERATURE as SOFTMIN_TEMPERATURE};

/// What a backend returns for one [`SegItem`]: sums and counts only.
#[derive(Debug, Clone)]
pub struct SegItemStats {
    /// Non-ignored pixels.
    pub pixels: u64,
    /// Sums of the per-pixel scores over non-ignored pixels.
    pub sums: ScoreSums,
    /// Softmin of the per-pixel self-confidence.
    pub softmin_self_confidence: Softmin,
    /// Softmin of the per-pixel normalised margin.
    pub softmin_normalized_margin: Softmin,
    /// Reliability table over the item's non-ignored pixels.
    pub bins: CalibrationBins,
    /// Label × prediction counts over non-ignored pixels.
    pub confusion: Confusion,
    /// Boundary-band counts per class (ignore pixels removed after banding).
    pub bands: BandCounts,
    /// The first pixel (row-major index) whose values are invalid, if any.
    pub first_invalid: Option<usize>,
    /// The predicted class map (`h × w`, argmax with ties to the lower class),
    /// when the backend has it on the host anyway (the CPU backend); the
    /// report's overlays reuse it instead of reading the item again.
    pub pred: Option<Vec<u16>>,
}

/// Describes the backend that produced the numbers (goes into `report.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `cpu` or `gpu`.
    pub name: String,
    /// Worker threads (CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Adapter name, graphics API and device type (GPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Why the run switched from the GPU to the CPU (`--gpu-fallback cpu`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The CPU scoring kernels: `avx2`, or `scalar` (the reference; other
    /// CPUs, or `TRIAGE_SIMD=off`). See [`simd`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simd: Option<String>,
}

/// The operations every backend provides.
pub trait Backend: Send + Sync {
    /// Who computed the numbers.
    fn info(&self) -> BackendInfo;

    /// Score a batch of classification rows.
    fn score_rows(&self, batch: &RowBatch) -> Result<RowScores>;

    /// Score a batch of segmentation items, one result per item, in order.
    fn score_items(&self, batch: &SegBatch) -> Result<Vec<SegItemStats>>;

    /// True when [`Backend::score_items`] accepts items whose values are
    /// left in their file ([`SegItem::planes`]) and reads them itself.
    fn reads_planes(&self) -> bool {
        false
    }

    /// Exact `k` nearest neighbours of every row of `emb` (unit rows) by
    /// cosine distance, nearest first, ties to the lower index
    /// ([`crate::index::exact`] defines the result).
    fn knn_exact(&self, emb: &Embeddings, k: usize) -> Result<KnnGraph>;

    /// Label × label counts of two same-size annotation maps
    /// ([`crate::metrics::mask_iou::pair_confusion`] defines the result).
    fn mask_confusion(
        &self,
        a: &[u16],
        b: &[u16],
        classes: usize,
        ignore: u16,
    ) -> Result<Confusion>;

    /// Boundary IoU band counts of two annotators' `h × w` maps
    /// ([`crate::metrics::boundary_iou::pair_band_counts`] defines the
    /// result, with the band width of the size).
    fn mask_bands(
        &self,
        a: &[u16],
        b: &[u16],
        dims: (usize, usize),
        classes: usize,
        ignore: u16,
    ) -> Result<crate::metrics::boundary_iou::BandCounts>;
}

/// Which backend the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The rayon CPU reference.
    Cpu,
    /// wgpu compute shaders.
    Gpu,
    /// A hardware GPU when one exists, else the CPU.
    #[default]
    Auto,
}

/// Create the backend for `kind`.
///
/// * `cpu`: the rayon reference.
/// * `gpu`: the best wgpu adapter, software ones (lavapipe) included; an
///   error (exit 2) when there is none.
/// * `auto`: a hardware GPU (discrete or integrated) when one works, else the
///   CPU. A software adapter is slower than the CPU path, so `auto` skips it.
///
/// With `fallback`, a GPU backend is wrapped in [`fallback::Fallback`]: a GPU
/// failure mid-run logs a warning and the run finishes on the CPU.
pub fn select(kind: BackendKind, fallback: bool) -> Result<Box<dyn Backend>> {
    let chosen = select_plain(kind)?;
    if fallback && chosen.info().name == "gpu" {
        Ok(Box::new(fallback::Fallback::new(chosen)))
    } else {
        Ok(chosen)
    }
}

fn select_plain(kind: BackendKind) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Cpu => Ok(Box::new(cpu::CpuBackend::new())),
        BackendKind::Gpu => match gpu::GpuBackend::new(gpu::AdapterPolicy::AnyAdapter)? {
            Some(g) => Ok(Box::new(g)),
            None => Err(Error::Backend {
                backend: "gpu".into(),
                message: "no GPU adapter found; install a Vulkan driver (on Debian/Ubuntu \
                          `apt-get install mesa-vulkan-drivers` gives the software one) \
                          or use --backend cpu"
                    .into(),
            }),
        },
        BackendKind::Auto => match gpu::GpuBackend::new(gpu::AdapterPolicy::HardwareOnly) {
            Ok(Some(g)) => Ok(Box::new(g)),
            Ok(None) => Ok(Box::new(cpu::CpuBackend::new())),
            Err(e) => {
                eprintln!("triage: warning: the hardware GPU is unusable ({e}); using the CPU");
                Ok(Box::new(cpu::CpuBackend::new()))
            }
        },
    }
}
