//! The CPU reference backend (rayon).
//!
//! Every per-sample number comes from
//! [`crate::metrics::pixel_stats`]: one sample at a time (the scalar
//! reference), or eight at a time with the AVX2 kernels of [`super::simd`]
//! where the CPU has them (bit-identical but for the entropy, which agrees
//! within [`super::simd::ENTROPY_TOLERANCE`]; the per-item f64 sums of a
//! segmentation run are accumulated lane by lane, so they differ from the
//! reference's order by rounding only; `TRIAGE_SIMD=off` forces the
//! reference). Work is split into fixed chunks whose partial sums are merged
//! in chunk order, so results do not depend on the number of threads or on
//! how the samples were batched.

use rayon::prelude::*;

use super::simd::{self, Element, LANES, Level};
use super::{
    Backend, BackendInfo, ProbBuf, RowBatch, RowScores, ScoreSums, SegBatch, SegItem, SegItemStats,
};
use crate::error::Result;
use crate::index::KnnGraph;
use crate::io::embeddings::Embeddings;
use crate::metrics::boundary_iou::{band_mask, band_width, count_bands};
use crate::metrics::calibration::CalibrationBins;
use crate::metrics::confusion::Confusion;
use crate::metrics::pixel_stats::{SampleScores, normalise, score_normalised};
use crate::metrics::softmin::{self, Softmin};

/// Pixels per work unit inside one item.
const PIXEL_CHUNK: usize = 16 * 1024;
/// Rows per work unit in a classification batch.
const ROW_CHUNK: usize = 4096;

/// The rayon backend.
#[derive(Debug, Clone, Copy)]
pub struct CpuBackend {
    /// The kernels it runs: [`simd::level`] (the best this CPU has), or
    /// the scalar reference ([`CpuBackend::scalar`]).
    level: Level,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    /// A backend using rayon's global pool and the best SIMD level this
    /// CPU has ([`simd::level`]).
    pub fn new() -> Self {
        CpuBackend {
            level: simd::level(),
        }
    }

    /// The scalar reference path on every CPU: the numbers every other
    /// configuration (SIMD, GPU) is compared with in the parity suite.
    pub fn scalar() -> Self {
        CpuBackend {
            level: Level::Scalar,
        }
    }

    /// The SIMD level its kernels use.
    pub fn level(&self) -> Level {
        self.level
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
            simd: Some(self.level.name().into()),
        }
    }

    fn score_rows(&self, batch: &RowBatch) -> Result<RowScores> {
        let n = batch.labels.len();
        let parts: Vec<(Vec<SampleScores>, CalibrationBins, Option<usize>)> = (0..n)
            .step_by(ROW_CHUNK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|start| {
                let end = (start + ROW_CHUNK).min(n);
                let mut samples = Vec::with_capacity(end - start);
                let mut bins = CalibrationBins::default();
                let mut invalid = None;
                let mut record = |row: usize, s: Option<SampleScores>| match s {
                    Some(s) => {
                        bins.add(s.confidence, s.pred == batch.labels[row]);
                        samples.push(s);
                    }
                    None => {
                        invalid.get_or_insert(row);
                        samples.push(SampleScores::default());
                    }
                };
                if self.level == Level::Avx2 && !batch.logits {
                    match &batch.probs {
                        ProbBuf::F32(v) => rows_simd(v, batch, start..end, &mut record),
                        ProbBuf::F16(v) => rows_simd(v, batch, start..end, &mut record),
                    }
                } else {
                    rows_scalar(batch, start..end, &mut record);
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
        batch
            .items
            .par_iter()
            .map(|item| score_item(item, batch, self.level))
            .collect()
    }

    /// Items left in their files are read stripe by stripe by the workers
    /// that score them ([`SegItem::planes`]).
    fn reads_planes(&self) -> bool {
        true
    }

    fn knn_exact(&self, emb: &Embeddings, k: usize) -> Result<KnnGraph> {
        Ok(crate::index::exact(emb, k))
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

    fn mask_bands(
        &self,
        a: &[u16],
        b: &[u16],
        (h, w): (usize, usize),
        classes: usize,
        ignore: u16,
    ) -> Result<crate::metrics::boundary_iou::BandCounts> {
        if a.len() != h * w || b.len() != h * w {
            return Err(crate::error::Error::Internal(format!(
                "mask sizes differ: {} and {} pixels for {h} x {w}",
                a.len(),
                b.len()
            )));
        }
        Ok(crate::metrics::boundary_iou::pair_band_counts(
            a, b, h, w, classes, ignore, None,
        ))
    }
}

/// Score `rows` one at a time with the scalar reference; `record(row, None)`
/// marks an invalid row.
fn rows_scalar(
    batch: &RowBatch,
    rows: std::ops::Range<usize>,
    record: &mut impl FnMut(usize, Option<SampleScores>),
) {
    let c = batch.classes;
    let mut p = vec![0.0f32; c];
    let mut q = vec![0.0f32; c];
    for row in rows {
        gather_row(&batch.probs, row * c, &mut p);
        let s = normalise(&p, batch.logits, &mut q)
            .ok()
            .map(|()| score_normalised(&q, batch.labels[row]));
        record(row, s);
    }
}

/// Score `rows` eight at a time: each group is transposed to class-major
/// order and scored by [`simd::score_lanes`]; a group with an invalid row is
/// rescored with the scalar reference.
fn rows_simd<T: Element>(
    data: &[T],
    batch: &RowBatch,
    rows: std::ops::Range<usize>,
    record: &mut impl FnMut(usize, Option<SampleScores>),
) {
    let c = batch.classes;
    let mut scratch = Vec::with_capacity(c * LANES);
    let mut g = rows.start;
    while g < rows.end {
        let e = (g + LANES).min(rows.end);
        simd::transpose_rows(data, g..e, c, &mut scratch);
        let labels: [u32; LANES] =
            std::array::from_fn(|j| if g + j < e { batch.labels[g + j] } else { 0 });
        match simd::score_lanes(&scratch, LANES, c, &labels) {
            Some(s) => {
                for (j, row) in (g..e).enumerate() {
                    record(row, Some(s[j]));
                }
            }
            None => rows_scalar(batch, g..e, record),
        }
        g = e;
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

/// Copy the `C` planar values of pixel `i` (plane stride `stride`).
#[inline]
fn gather_pixel<T: Element>(data: &[T], i: usize, stride: usize, p: &mut [f32]) {
    for (k, dst) in p.iter_mut().enumerate() {
        *dst = data[k * stride + i].to_f32();
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

impl ChunkStats {
    /// Add the scores `s` of a pixel annotated `label` (or ignored) and
    /// write its prediction to `out`.
    #[inline]
    fn record(&mut self, s: &SampleScores, label: u16, ignore: u16, out: &mut u16) {
        let w = (
            softmin::weight(s.scores.self_confidence),
            softmin::weight(s.scores.normalized_margin),
        );
        self.record_weighted(s, label, ignore, out, w);
    }

    /// [`ChunkStats::record`] with the softmin weights of the
    /// self-confidence and the normalised margin already computed.
    #[inline]
    fn record_weighted(
        &mut self,
        s: &SampleScores,
        label: u16,
        ignore: u16,
        out: &mut u16,
        (w_sc, w_nm): (f64, f64),
    ) {
        *out = s.pred as u16;
        if label == ignore {
            return;
        }
        self.pixels += 1;
        self.sums.add(&s.scores);
        self.softmin_sc.add_weighted(s.scores.self_confidence, w_sc);
        self.softmin_nm
            .add_weighted(s.scores.normalized_margin, w_nm);
        self.bins.add(s.confidence, s.pred == label as u32);
        self.confusion.add(label as usize, s.pred as usize);
    }
}

/// Where one stripe's values are: pixel `j` of the stripe (`j <
/// pred.len()`) has its class-`k` value at `data[k * stride + start + j]`
/// and its annotation at `labels[start + j]`; `offset + start + j` is its
/// index in the item (what an error reports).
struct Stripe<'a, T> {
    data: &'a [T],
    stride: usize,
    labels: &'a [u16],
    start: usize,
    offset: usize,
    /// The item is unlabelled ([`SegItem::unlabelled`]): `labels` is not read.
    unlabelled: bool,
}

impl<T> Clone for Stripe<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Stripe<'_, T> {}

/// Score the pixels of stripe `sp` one at a time with the scalar reference.
fn pixels_scalar<T: Element>(
    sp: Stripe<'_, T>,
    batch: &SegBatch,
    pred: &mut [u16],
    st: &mut ChunkStats,
) {
    let c = batch.classes;
    let mut p = vec![0.0f32; c];
    let mut q = vec![0.0f32; c];
    for (j, out) in pred.iter_mut().enumerate() {
        let i = sp.start + j;
        gather_pixel(sp.data, i, sp.stride, &mut p);
        if normalise(&p, batch.logits, &mut q).is_err() {
            st.first_invalid.get_or_insert(sp.offset + i);
            continue;
        }
        if sp.unlabelled {
            // Scored against its own prediction: self-confidence is the top
            // probability, and the normalised-margin slot holds the margin.
            let mut s = score_normalised(&q, 0);
            s.scores.self_confidence = s.confidence;
            s.scores.normalized_margin = s.scores.margin;
            // Never the ignore index, so every pixel counts.
            let ignore = if s.pred == 0 { 1 } else { 0 };
            st.record(&s, s.pred as u16, ignore, out);
            continue;
        }
        let label = sp.labels[i];
        let y = if label == batch.ignore_index {
            0
        } else {
            label as u32
        };
        let s = score_normalised(&q, y);
        st.record(&s, label, batch.ignore_index, out);
    }
}

/// Score the pixels of stripe `sp` eight at a time with
/// [`simd::score_run`] (planar data: one load reads a class of eight
/// neighbouring pixels; the running sums stay in vector registers). A group
/// with an invalid pixel is rescored with the scalar reference, which
/// records the first invalid pixel.
fn pixels_simd<T: Element>(
    sp: Stripe<'_, T>,
    batch: &SegBatch,
    pred: &mut [u16],
    st: &mut ChunkStats,
) {
    let mut bad: Vec<(usize, usize)> = Vec::new();
    let r = simd::score_run(
        sp.data,
        sp.stride,
        batch.classes,
        sp.labels,
        batch.ignore_index,
        sp.start,
        pred,
        &mut st.bins,
        &mut st.confusion,
        &mut |i, n| bad.push((i, n)),
    );
    st.pixels += r.pixels;
    st.sums.merge(&r.sums);
    st.softmin_sc.merge(&r.softmin_self_confidence);
    st.softmin_nm.merge(&r.softmin_normalized_margin);
    for (i, n) in bad {
        let j = i - sp.start;
        let sub = Stripe { start: i, ..sp };
        pixels_scalar(sub, batch, &mut pred[j..j + n], st);
    }
}

/// Score one stripe with the SIMD kernel where it applies, else the scalar
/// reference.
fn score_stripe<T: Element>(
    sp: Stripe<'_, T>,
    batch: &SegBatch,
    pred: &mut [u16],
    level: Level,
) -> ChunkStats {
    let mut st = ChunkStats {
        pixels: 0,
        sums: ScoreSums::default(),
        softmin_sc: Softmin::default(),
        softmin_nm: Softmin::default(),
        bins: CalibrationBins::default(),
        confusion: Confusion::new(batch.classes),
        first_invalid: None,
    };
    // Unlabelled items take the scalar reference (the SIMD kernel reads
    // each pixel's annotation).
    if level == Level::Avx2 && !batch.logits && !sp.unlabelled {
        pixels_simd(sp, batch, pred, &mut st);
    } else {
        pixels_scalar(sp, batch, pred, &mut st);
    }
    st
}

fn score_item(item: &SegItem, batch: &SegBatch, level: Level) -> Result<SegItemStats> {
    let c = batch.classes;
    let hw = item.height * item.width;
    let mut pred = vec![0u16; hw];
    // The annotation's Boundary IoU band does not depend on the prediction:
    // mark it on one thread while the pixels are scored on the others.
    let d = band_width(item.height, item.width);
    let mut bg = vec![0u8; hw];
    let mut stats = SegItemStats {
        pixels: 0,
        sums: ScoreSums::default(),
        softmin_self_confidence: Softmin::default(),
        softmin_normalized_margin: Softmin::default(),
        bins: CalibrationBins::default(),
        confusion: Confusion::new(c),
        bands: crate::metrics::boundary_iou::BandCounts::zeros(c),
        first_invalid: None,
        pred: None,
    };
    let (scored, ()) = rayon::join(
        || {
            score_chunks(item, batch, level, &mut pred, &mut |ch: ChunkStats| {
                stats.pixels += ch.pixels;
                stats.sums.merge(&ch.sums);
                stats.softmin_self_confidence.merge(&ch.softmin_sc);
                stats.softmin_normalized_margin.merge(&ch.softmin_nm);
                stats.bins.merge(&ch.bins);
                stats.confusion.merge(&ch.confusion);
                if stats.first_invalid.is_none() {
                    stats.first_invalid = ch.first_invalid;
                }
            })
        },
        || band_mask(&item.labels, item.height, item.width, d, &mut bg),
    );
    scored?;
    if stats.first_invalid.is_none() {
        // An unlabelled item has no annotation band: its counts stay 0.
        if !item.unlabelled {
            let mut bp = vec![0u8; hw];
            band_mask(&pred, item.height, item.width, d, &mut bp);
            stats.bands = count_bands(&item.labels, &bg, &pred, &bp, c, batch.ignore_index);
        }
        stats.pred = Some(pred);
    }
    Ok(stats)
}

/// Bytes of one stripe's values (its `C` plane pieces): small enough to
/// stay in a core's L2 cache from being read to being scored.
const STRIPE_BYTES: usize = 256 * 1024;

/// Pixels per stripe for `classes` values of `size` bytes: as many as fit
/// [`STRIPE_BYTES`], a multiple of [`LANES`], at least 256 and at most
/// [`PIXEL_CHUNK`]. The same for values in memory and values read from
/// their file, so both give bit-identical results.
fn stripe_pixels(classes: usize, size: usize) -> usize {
    (STRIPE_BYTES / (classes * size).max(1)).clamp(256, PIXEL_CHUNK) / LANES * LANES
}

thread_local! {
    /// Each worker's stripe buffers for values read from a file, reused
    /// (one per stored type).
    static STRIPE_F32: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static STRIPE_F16: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Read pixels `start..start + n` of every class plane (stride `hw`) from
/// `src` into `buf` (`classes × n`, planar) and score them.
fn read_and_score<T: Element + Default>(
    buf: &mut Vec<T>,
    read: &dyn Fn(usize, &mut [T]) -> Result<()>,
    (hw, start): (usize, usize),
    item: &SegItem,
    batch: &SegBatch,
    pred: &mut [u16],
    level: Level,
) -> Result<ChunkStats> {
    let n = pred.len();
    buf.resize(batch.classes * n, T::default());
    for (k, plane) in buf.chunks_exact_mut(n).enumerate() {
        read(k * hw + start, plane)?;
    }
    let sp = Stripe {
        data: buf,
        stride: n,
        labels: &item.labels[start..start + n],
        start: 0,
        offset: start,
        unlabelled: item.unlabelled,
    };
    Ok(score_stripe(sp, batch, pred, level))
}

/// Score the stripe of pixels from `start` on of an item whose values are
/// in memory (`data`, the whole item, planar).
fn score_in_memory<T: Element>(
    data: &[T],
    item: &SegItem,
    batch: &SegBatch,
    start: usize,
    pred: &mut [u16],
    level: Level,
) -> ChunkStats {
    let sp = Stripe {
        data,
        stride: item.height * item.width,
        labels: &item.labels,
        start,
        offset: 0,
        unlabelled: item.unlabelled,
    };
    score_stripe(sp, batch, pred, level)
}

/// Bytes of the stripes' confusion tables held at once by [`score_chunks`]
/// beyond one window of `2 × threads` stripes.
const CONFUSION_WINDOW_BYTES: usize = 64 << 20;

/// Score the pixels of `item` in parallel stripes of [`stripe_pixels`],
/// writing the prediction map, and hand the stripes' partial results to
/// `sink` in order (so sums add in the same order at any thread count).
/// Stripes go in windows whose `C × C` confusion tables take at most
/// [`CONFUSION_WINDOW_BYTES`] (or `2 × threads` stripes, when more): memory
/// stays bounded at 1000 classes, where a 512² item has a thousand
/// stripes of 8 MB tables each. Values left in their file are read by the
/// worker that scores them, into its own buffer.
fn score_chunks(
    item: &SegItem,
    batch: &SegBatch,
    level: Level,
    pred: &mut [u16],
    sink: &mut dyn FnMut(ChunkStats),
) -> Result<()> {
    let c = batch.classes;
    let hw = item.height * item.width;
    let f16 = match (&item.planes, &item.probs) {
        (Some(src), _) => src.is_f16(),
        (None, p) => matches!(p, ProbBuf::F16(_)),
    };
    let stripe = stripe_pixels(c, if f16 { 2 } else { 4 });
    let table = (c * c * std::mem::size_of::<u64>()).max(1);
    let per_window = (CONFUSION_WINDOW_BYTES / table).max(2 * rayon::current_num_threads());
    let window = stripe.saturating_mul(per_window).max(stripe);
    for (wi, pred) in pred.chunks_mut(window).enumerate() {
        let chunks = score_window(item, batch, level, pred, (wi * window, stripe, hw, f16))?;
        chunks.into_iter().for_each(&mut *sink);
    }
    Ok(())
}

/// The stripes of one window of [`score_chunks`] (`base`: its first pixel).
fn score_window(
    item: &SegItem,
    batch: &SegBatch,
    level: Level,
    pred: &mut [u16],
    (base, stripe, hw, f16): (usize, usize, usize, bool),
) -> Result<Vec<ChunkStats>> {
    pred.par_chunks_mut(stripe)
        .enumerate()
        .map(|(ci, pred)| {
            let start = base + ci * stripe;
            match (&item.planes, &item.probs) {
                (Some(src), _) if f16 => STRIPE_F16.with_borrow_mut(|buf| {
                    let read = |e: usize, out: &mut [u16]| src.read_f16(e, out);
                    read_and_score(buf, &read, (hw, start), item, batch, pred, level)
                }),
                (Some(src), _) => STRIPE_F32.with_borrow_mut(|buf| {
                    let read = |e: usize, out: &mut [f32]| src.read_f32(e, out);
                    read_and_score(buf, &read, (hw, start), item, batch, pred, level)
                }),
                (None, ProbBuf::F32(v)) => Ok(score_in_memory(v, item, batch, start, pred, level)),
                (None, ProbBuf::F16(v)) => Ok(score_in_memory(v, item, batch, start, pred, level)),
            }
        })
        .collect()
}
