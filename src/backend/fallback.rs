//! `--gpu-fallback cpu`: a GPU backend that, when the GPU itself fails
//! (device lost, out of memory, a shader or driver error, a size it cannot
//! serve), logs a warning and finishes the run on the CPU reference.
//!
//! Only [`Error::Backend`] triggers the switch: bad input is reported as bad
//! input whatever the backend. After the first failure every later call goes
//! to the CPU, and `report.json`'s `backend.fallback` records why, so a run
//! that fell back can never pass for a GPU run.

use std::sync::Mutex;

use super::cpu::CpuBackend;
use super::{Backend, BackendInfo, RowBatch, RowScores, SegBatch, SegItemStats};
use crate::error::{Error, Result};
use crate::index::KnnGraph;
use crate::io::embeddings::Embeddings;
use crate::metrics::confusion::Confusion;

/// A GPU backend with a logged switch to the CPU on GPU failure.
pub struct Fallback {
    gpu: Box<dyn Backend>,
    cpu: CpuBackend,
    reason: Mutex<Option<String>>,
}

impl Fallback {
    /// Wrap `gpu`.
    pub fn new(gpu: Box<dyn Backend>) -> Self {
        Fallback {
            gpu,
            cpu: CpuBackend::new(),
            reason: Mutex::new(None),
        }
    }

    /// Why the run left the GPU, if it did.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn call<T>(&self, op: impl Fn(&dyn Backend) -> Result<T>) -> Result<T> {
        if self.reason().is_some() {
            return op(&self.cpu);
        }
        match op(self.gpu.as_ref()) {
            Err(Error::Backend { message, .. }) => {
                eprintln!(
                    "triage: warning: the GPU failed ({message}); continuing on the CPU \
                     (--gpu-fallback cpu)"
                );
                *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                op(&self.cpu)
            }
            other => other,
        }
    }
}

impl Backend for Fallback {
    fn info(&self) -> BackendInfo {
        let mut info = self.gpu.info();
        if let Some(r) = self.reason() {
            info.name = "gpu, then cpu".into();
            info.threads = self.cpu.info().threads;
            info.fallback = Some(r);
            info.simd = self.cpu.info().simd;
        }
        info
    }

    fn score_rows(&self, batch: &RowBatch) -> Result<RowScores> {
        self.call(|b| b.score_rows(batch))
    }

    fn score_items(&self, batch: &SegBatch) -> Result<Vec<SegItemStats>> {
        self.call(|b| b.score_items(batch))
    }

    fn knn_exact(&self, emb: &Embeddings, k: usize) -> Result<KnnGraph> {
        self.call(|b| b.knn_exact(emb, k))
    }

    fn mask_confusion(
        &self,
        a: &[u16],
        b: &[u16],
        classes: usize,
        ignore: u16,
    ) -> Result<Confusion> {
        self.call(|be| be.mask_confusion(a, b, classes, ignore))
    }

    fn mask_bands(
        &self,
        a: &[u16],
        b: &[u16],
        dims: (usize, usize),
        classes: usize,
        ignore: u16,
    ) -> Result<crate::metrics::boundary_iou::BandCounts> {
        self.call(|be| be.mask_bands(a, b, dims, classes, ignore))
    }
}
