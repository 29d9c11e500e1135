//! Numbers checked against independent expectations, and every backend
//! configuration against the CPU reference (`parity`, used by `gpu_parity`):
//! one test binary, so that the tests link wgpu once instead of once per
//! file. The parity suite's reference is the scalar CPU path
//! (`CpuBackend::scalar`), so one run compares it with the AVX2 kernels and
//! every GPU configuration.

#[path = "../common/mod.rs"]
mod common;

mod boundary_iou_isbi;
mod brier;
mod coco_file;
mod coco_rle;
mod cvat;
mod datalab;
mod gpu_parity;
mod hand_worked;
mod items_parquet;
mod label_errors;
mod ls_brush;
mod neighbors;
mod parity;
mod planes;
