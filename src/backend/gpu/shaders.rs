//! WGSL sources, one file per metric family in `shaders/`, assembled into
//! modules. WGSL has no `#include`, so the fused per-sample pass is the entry
//! file followed by the metric files it calls.

const SCORE_PIXELS: &str = include_str!("../../../shaders/score_pixels.wgsl");
const PIXEL_STATS: &str = include_str!("../../../shaders/pixel_stats.wgsl");
const CALIBRATION: &str = include_str!("../../../shaders/calibration.wgsl");
const CONFUSION: &str = include_str!("../../../shaders/confusion.wgsl");
const BOUNDARY_IOU: &str = include_str!("../../../shaders/boundary_iou.wgsl");
const KNN: &str = include_str!("../../../shaders/knn.wgsl");
const MASK_IOU: &str = include_str!("../../../shaders/mask_iou.wgsl");

/// The fused per-sample module (entry point `score_pixels`).
pub fn score_pixels_source() -> String {
    [SCORE_PIXELS, PIXEL_STATS, CALIBRATION, CONFUSION].join("\n")
}

/// The Boundary IoU module (entry points `row_uniform`, `band_count`).
pub fn boundary_iou_source() -> String {
    BOUNDARY_IOU.to_string()
}

/// The exact kNN module (entry point `knn`).
pub fn knn_source() -> String {
    KNN.to_string()
}

/// The near-duplicate mask comparison module (entry point `mask_iou`).
pub fn mask_iou_source() -> String {
    MASK_IOU.to_string()
}
