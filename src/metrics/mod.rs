//! Metric definitions: one file per metric family, each the CPU reference
//! that defines the numbers (stated, with sources, in `docs/definitions.md`), mirrored by a
//! shader of the same stem in `shaders/`.

pub mod agreement;
pub mod boundary_iou;
pub mod calibration;
pub mod confusion;
pub mod mask_iou;
pub mod pixel_stats;
pub mod softmin;
