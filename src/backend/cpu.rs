//! The CPU reference backend (rayon).
//!
//! Every per-sample number comes from
//! [`crate::metrics::pixel_stats::score_sample`]. Work is split into fixed
//! chunks whose partial sums are merged in chunk order, so results do not
//! depend on the number of threads.

use rayon::prelude::*;

use super::{
    Backend, BackendInfo, ProbBuf, RowBatch, RowScores, ScoreSums, SegBatch, SegItem, SegItemStats,
    Softmin,
};
use crate::error::Result;
use crate::metrics::boundary_iou::band_counts;
use crate::metrics::calibration::CalibrationBins;
use crate::metrics::confusion::Confusion;
use crate::metrics::pixel_stats::{SampleScores, normalise, score_normalised};
use crate::neighbors::{Embeddings, KnnGraph};

/// Pixels per work unit inside one item.
const PIXEL_CHUNK: usize = 16 * 1024;
/// Rows per work unit in a classification batch.
const ROW_CHUNK: usize = 4096;

/// The rayon backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl CpuBackend {
    /// A backend using rayon's global pool.
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "cpu".into(),
            threads: Some(rayon::current_num_threads()),
            adapter: None,
            api: None,
            device_type: None,
            fallback: None,
        }
    }

    fn score_rows(&self, batch: &RowBatch) -> Result<RowScores> {
        let c = batch.classes;
        let n = batch.labels.len();
        let parts: Vec<(Vec<SampleScores>, CalibrationBins, Option<usize>)> = (0..n)
            .step_by(ROW_CHUNK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let end = (start + ROW_CHUNK).min(n);
                let mut p = vec![0.0f32; c];
                let mut q = vec![0.0f32; c];
                let mut samples = Vec::with_capacity(end - start);
                let mut bins = CalibrationBins::default();
                let mut invalid = None;
                for row in start..end {
                    gather_row(&batch.probs, row * c, &mut p);
                    let label = batch.labels[row];
                    match normalise(&p, batch.logits, &mut q) {
                        Ok(()) => {
                            let s = score_normalised(&q, label);
                            bins.add(s.confidence, s.pred == label);
                            samples.push(s);
                        }
                        Err(_) => {
                            invalid.get_or_insert(row);
                            samples.push(SampleScores::default());
                        }
                    }
                }
                (samples, bins, invalid)
            })
            .collect();
        let mut out = RowScores {
            samples: Vec::with_capacity(n),
            ..RowScores::default()
        };
        for (samples, bins, invalid) in parts {
            out.samples.extend(samples);
            out.bins.merge(&bins);
            if out.first_invalid.is_none() {
                out.first_invalid = invalid;
            }
        }
        Ok(out)
    }

    fn score_items(&self, batch: &SegBatch) -> Result<Vec<SegItemStats>> {
        Ok(batch
            .items
            .par_iter()
            .map(|item| score_item(item, batch))
            .collect())
    }

    fn knn_exact(&self, emb: &Embeddings, k: usize) -> Result<KnnGraph> {
        Ok(crate::neighbors::knn::exact(emb, k))
    }

    fn mask_confusion(
        &self,
        a: &[u16],
        b: &[u16],
        classes: usize,
        ignore: u16,
    ) -> Result<Confusion> {
        Ok(crate::metrics::mask_iou::pair_confusion(
            a, b, classes, ignore,
        ))
    }
}

/// Copy `p.len()` consecutive values starting at `start`.
#[inline]
fn gather_row(probs: &ProbBuf, start: usize, p: &mut [f32]) {
    match probs {
        ProbBuf::F32(v) => p.copy_from_slice(&v[start..start + p.len()]),
        ProbBuf::F16(v) => {
            let n = p.len();
            for (dst, &bits) in p.iter_mut().zip(&v[start..start + n]) {
                *dst = half::f16::from_bits(bits).to_f32();
            }
        }
    }
}

/// Copy the `C` planar values of pixel `i` (stride `hw`).
#[inline]
fn gather_pixel(probs: &ProbBuf, i: usize, hw: usize, p: &mut [f32]) {
    match probs {
        ProbBuf::F32(v) => {
            for (k, dst) in p.iter_mut().enumerate() {
                *dst = v[k * hw + i];
            }
        }
        ProbBuf::F16(v) => {
            for (k, dst) in p.iter_mut().enumerate() {
                *dst = half::f16::from_bits(v[k * hw + i]).to_f32();
            }
        }
    }
}

/// Partial results of one pixel chunk.
struct ChunkStats {
    pixels: u64,
    sums: ScoreSums,
    softmin_sc: Softmin,
    softmin_nm: Softmin,
    bins: CalibrationBins,
    confusion: Confusion,
    first_invalid: Option<usize>,
}

fn score_item(item: &SegItem, batch: &SegBatch) -> SegItemStats {
    let c = batch.classes;
    let hw = item.height * item.width;
    let mut pred = vec![0u16; hw];
    let chunks: Vec<ChunkStats> = pred
        .par_chunks_mut(PIXEL_CHUNK)
        .enumerate()
        .map(|(ci, pred_chunk)| {
            let start = ci * PIXEL_CHUNK;
            let mut p = vec![0.0f32; c];
            let mut q = vec![0.0f32; c];
            let mut st = ChunkStats {
                pixels: 0,
                sums: ScoreSums::default(),
                softmin_sc: Softmin::default(),
                softmin_nm: Softmin::default(),
                bins: CalibrationBins::default(),
                confusion: Confusion::new(c),
                first_invalid: None,
            };
            for (j, out) in pred_chunk.iter_mut().enumerate() {
                let i = start + j;
                gather_pixel(&item.probs, i, hw, &mut p);
                if normalise(&p, batch.logits, &mut q).is_err() {
                    st.first_invalid.get_or_insert(i);
                    continue;
                }
                let label = item.labels[i];
                let ignored = label == batch.ignore_index;
                let s = score_normalised(&q, if ignored { 0 } else { label as u32 });
                *out = s.pred as u16;
                if ignored {
                    continue;
                }
                st.pixels += 1;
                st.sums.add(&s);
                st.softmin_sc.add(s.self_confidence);
                st.softmin_nm.add(s.normalized_margin);
                st.bins.add(s.confidence, s.pred == label as u32);
                st.confusion.add(label as usize, s.pred as usize);
            }
            st
        })
        .collect();

    let mut stats = SegItemStats {
        pixels: 0,
        sums: ScoreSums::default(),
        softmin_self_confidence: Softmin::default(),
        softmin_normalized_margin: Softmin::default(),
        bins: CalibrationBins::default(),
        confusion: Confusion::new(c),
        bands: crate::metrics::boundary_iou::BandCounts::zeros(c),
        first_invalid: None,
    };
    for ch in &chunks {
        stats.pixels += ch.pixels;
        stats.sums.merge(&ch.sums);
        stats.softmin_self_confidence.merge(&ch.softmin_sc);
        stats.softmin_normalized_margin.merge(&ch.softmin_nm);
        stats.bins.merge(&ch.bins);
        stats.confusion.merge(&ch.confusion);
        if stats.first_invalid.is_none() {
            stats.first_invalid = ch.first_invalid;
        }
    }
    if stats.first_invalid.is_none() {
        stats.bands = band_counts(
            &item.labels,
            &pred,
            item.height,
            item.width,
            c,
            batch.ignore_index,
            None,
        );
    }
    stats
}
