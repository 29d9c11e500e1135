//! SIMD kernels of [`crate::metrics::pixel_stats`] for the CPU backend.
//!
//! Eight samples (pixels, or classification rows) are scored at once, one per
//! vector lane, reading class `k` of all eight with one load. The arithmetic
//! per lane is the reference's, in the same order:
//!
//! 1. **Validate and sum**, in class order: `s = Σ_k p_k` (f32 adds, no fused
//!    multiply-add), every `p_k` finite and `≥ 0`, `|s − 1| ≤`
//!    [`SUM_TOLERANCE`]. A group with any invalid lane is handed back to the
//!    scalar reference, which names the class and value.
//! 2. **Normalise and score**: `q_k = p_k / s` where `|s − 1| > C·ε` (else
//!    `q_k = p_k`), the running top two values, the lowest index of the top
//!    value, `q_y`, and `Σ q_k ln q_k` (f32, in class order).
//!
//! Both steps share one read of the data: the values are scored as they are
//! while they are validated and summed, and only a group where the reference
//! divides (a sum off by more than its own rounding, rare in practice) is
//! read a second time. Planes of a segmentation item lie `h·w` values apart,
//! more streams than the hardware prefetcher follows, so each load also
//! prefetches its plane a little ahead.
//!
//! The sum, the normalisation, `pred`, `top1`, `top2` and `q_y` are therefore
//! bit-identical to the scalar path, and so are the prediction, confidence,
//! margin, least confidence, self-confidence and normalised margin (the
//! vector finish does the f32 operations of [`crate::metrics::pixel_stats::finish`]). Only the entropy
//! differs: `ln` is a degree-7 polynomial on the mantissa (absolute error
//! ≤ 4e-7 + 2e-7·|ln q|, so `q ln q` within 4.8e-7 for `q ∈ (0, 1]`), and the
//! entropy agrees with the reference within [`ENTROPY_TOLERANCE`].
//!
//! For segmentation, [`score_run`] also keeps the per-item sums (the five
//! mean scores and the two softmins, in f64) in vector registers, lane by
//! lane, folded at the end of the run: they differ from the reference's
//! one-pixel-at-a-time f64 sums by rounding only. Counts (pixels, the
//! calibration bins, the confusion matrix) are exact.
//!
//! Logits (softmax inputs) always take the scalar path.
//!
//! Levels: AVX2 + FMA + F16C on x86-64, detected at run time; everything else
//! (other CPUs, or `TRIAGE_SIMD=off` in the environment) uses the scalar
//! reference, which stays the definition of every number.

use std::sync::OnceLock;

use super::ScoreSums;
use crate::metrics::calibration::CalibrationBins;
use crate::metrics::confusion::Confusion;
use crate::metrics::pixel_stats::{SUM_TOLERANCE, SampleScores, rounding_slack};
use crate::metrics::softmin::Softmin;
use crate::scores::PerSample;

/// Samples scored per kernel call (the vector width in `f32` lanes).
pub const LANES: usize = 8;

/// Largest difference between the SIMD and the scalar normalised entropy of
/// one sample (it lies in [0, 1]).
pub const ENTROPY_TOLERANCE: f32 = 1e-5;

/// Largest difference between the SIMD and the scalar value of each
/// declared per-sample score of one sample: 0 where the SIMD kernel does
/// the scalar reference's f32 operations lane for lane (bit-identical).
pub const TOLERANCE: PerSample<f32> = PerSample {
    entropy: ENTROPY_TOLERANCE,
    margin: 0.0,
    least_confidence: 0.0,
    self_confidence: 0.0,
    normalized_margin: 0.0,
    // Bit-identical but in float16 groups that derive their divided pass
    // (`Σ q² = (Σ x²)/s²`), within a few ulp of the sum.
    brier: 1e-5,
};

/// Which kernels the CPU backend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The scalar reference, one sample at a time.
    Scalar,
    /// 8-lane AVX2 with FMA and F16C (x86-64).
    Avx2,
}

impl Level {
    /// The name recorded in `report.json`: `"scalar"` or `"avx2"`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
        }
    }
}

/// The best level this CPU supports, or [`Level::Scalar`] when the
/// environment variable `TRIAGE_SIMD` is `off` (or `0`, `false`, `scalar`).
/// Decided once per process.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let off = std::env::var("TRIAGE_SIMD").is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "off" | "0" | "false" | "scalar" | "no"
            )
        });
        if off { Level::Scalar } else { detect() }
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        Level::Avx2
    } else {
        Level::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Scalar
}

/// A stored probability type the kernels read: `f32`, or `f16` as raw bits.
pub trait Element: Copy + Send + Sync + 'static {
    /// The value as `f32` (exact for both types).
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for u16 {
    #[inline]
    fn to_f32(self) -> f32 {
        half::f16::from_bits(self).to_f32()
    }
}

/// Score [`LANES`] samples whose class-`k` values sit at
/// `data[k * stride + j]`, `j < LANES`, with annotated `labels` (each `< C`).
///
/// Returns `None` when any lane is invalid (not finite, negative, or not
/// summing to 1); the caller then rescores the lanes with the scalar
/// reference to report the error. Must only be called at
/// [`Level::Avx2`] (see [`level`]).
///
/// # Panics
/// If `data` is shorter than `(C − 1)·stride + LANES`, `C < 2`, or a label is
/// `≥ C`.
pub fn score_lanes<T: Element>(
    data: &[T],
    stride: usize,
    classes: usize,
    labels: &[u32; LANES],
) -> Option<[SampleScores; LANES]> {
    assert!(classes >= 2 && stride >= LANES);
    assert!(data.len() >= (classes - 1) * stride + LANES);
    assert!(labels.iter().all(|&l| (l as usize) < classes));
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(level(), Level::Avx2, "score_lanes needs AVX2");
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked by `level`),
        // and every load stays inside `data` (checked above).
        unsafe { avx2::score_lanes(data, stride, classes, labels) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, stride, classes, labels);
        unreachable!("score_lanes needs AVX2")
    }
}

/// The softmin weights of eight scores as [`score_run`] computes them:
/// [`crate::metrics::softmin::weight`]'s `exp((1 − s)/T)`, vectorised as
/// `exp((1 − s)·INV_TEMPERATURE)` in f64, the exponential by a degree-12 polynomial
/// after range reduction (≲ 2 ulp of f64 against libm), the argument within
/// 1 ulp of the reference's `(1 − s)/T`. Only the tests call it alone.
/// Must only be called at [`Level::Avx2`].
#[cfg(test)]
fn softmin_weights(s: &[f32; LANES]) -> [f64; LANES] {
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(level(), Level::Avx2, "softmin_weights needs AVX2");
        // SAFETY: the CPU supports AVX2 and FMA (checked by `level`).
        unsafe { avx2::softmin_weights(s) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = s;
        unreachable!("softmin_weights needs AVX2")
    }
}

/// Copy the rows `rows` (each `classes` long, row-major in `data`) into
/// `out` transposed, `out[k * LANES + j] = data[(rows.start + j) * classes + k]`
/// as `f32`. Lanes past the end of `rows` are filled with a valid one-hot
/// sample (`1` at class 0), so they score without error and are ignored.
pub fn transpose_rows<T: Element>(
    data: &[T],
    rows: std::ops::Range<usize>,
    classes: usize,
    out: &mut Vec<f32>,
) {
    let n = rows.len();
    assert!(n <= LANES && rows.end * classes <= data.len());
    out.clear();
    out.resize(classes * LANES, 0.0);
    #[cfg(target_arch = "x86_64")]
    if n == LANES && level() == Level::Avx2 {
        // SAFETY: AVX2 is available and every read is inside the 8 rows
        // (checked above), every write inside `out` (resized above).
        unsafe { avx2::transpose8(data, rows.start, classes, out) };
        return;
    }
    for (j, row) in rows.enumerate() {
        let src = &data[row * classes..(row + 1) * classes];
        for (k, &v) in src.iter().enumerate() {
            out[k * LANES + j] = v.to_f32();
        }
    }
    // Class 0 of each missing lane.
    out[n..LANES].fill(1.0);
}

/// Copy pixels `pixels` (at most [`LANES`]) of a planar `classes × hw` item
/// into `out` as `f32` with stride [`LANES`]; missing lanes get a valid
/// one-hot sample, as in [`transpose_rows`].
pub fn gather_tail<T: Element>(
    data: &[T],
    hw: usize,
    pixels: std::ops::Range<usize>,
    classes: usize,
    out: &mut Vec<f32>,
) {
    let n = pixels.len();
    assert!(n <= LANES && pixels.end <= hw && classes * hw <= data.len());
    out.clear();
    out.resize(classes * LANES, 0.0);
    for k in 0..classes {
        for (j, i) in pixels.clone().enumerate() {
            out[k * LANES + j] = data[k * hw + i].to_f32();
        }
    }
    // Class 0 of each missing lane.
    out[n..LANES].fill(1.0);
}

/// The f64 sums of one run of pixels scored by [`score_run`], over its
/// non-ignored pixels. Lanes are summed separately and folded at the end,
/// so the sums differ from the reference's one-pixel-at-a-time order by
/// rounding only (relative ~1e-15 per term).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunSums {
    /// Non-ignored pixels scored.
    pub pixels: u64,
    /// Sums of the five per-pixel scores.
    pub sums: ScoreSums,
    /// Softmin sums of the self-confidence.
    pub softmin_self_confidence: Softmin,
    /// Softmin sums of the normalised margin.
    pub softmin_normalized_margin: Softmin,
}

/// Score the pixels `start..start + pred.len()` of one planar item
/// (`data[k·hw + i]` is class `k` of pixel `i`; `labels[i]` its annotation,
/// `ignore` for none), eight at a time, in one call that keeps every
/// running sum in registers.
///
/// For every pixel it writes the prediction to `pred`; for every
/// non-ignored one it adds to `bins` and `confusion` (exact counts, as the
/// reference) and to the returned [`RunSums`]. A group of eight with an
/// invalid pixel is skipped and handed to `invalid(first_pixel, count)`,
/// for the caller to rescore with the scalar reference (which names the
/// value). The per-pixel scores are those of [`score_lanes`]; the softmin
/// weight `exp((1 − s)·(1/T))` is within 4e-15 relative of the reference's
/// `exp((1 − s)/T)`. Must only be called at [`Level::Avx2`].
///
/// # Panics
/// If `classes < 2`, the item is shorter than `classes × hw` or `labels`
/// than `hw`, the range passes `hw`, or a non-ignored label is `≥ classes`.
#[allow(clippy::too_many_arguments)]
pub fn score_run<T: Element>(
    data: &[T],
    hw: usize,
    classes: usize,
    labels: &[u16],
    ignore: u16,
    start: usize,
    pred: &mut [u16],
    bins: &mut CalibrationBins,
    confusion: &mut Confusion,
    invalid: &mut dyn FnMut(usize, usize),
) -> RunSums {
    assert!(classes >= 2 && hw >= 1);
    assert!(data.len() >= classes * hw && labels.len() >= hw);
    assert!(start + pred.len() <= hw);
    assert_eq!(confusion.classes(), classes);
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(level(), Level::Avx2, "score_run needs AVX2");
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked by `level`);
        // the bounds above keep every load of a full group inside `data`
        // (pixel i + 7 < hw for a full group, so (C − 1)·hw + i + 8 ≤ C·hw).
        unsafe {
            avx2::score_run(
                data, hw, classes, labels, ignore, start, pred, bins, confusion, invalid,
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, labels, ignore, start, pred, bins, confusion, invalid);
        unreachable!("score_run needs AVX2")
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{
        CalibrationBins, Confusion, Element, LANES, RunSums, SUM_TOLERANCE, SampleScores,
        ScoreSums, Softmin, rounding_slack,
    };
    use crate::metrics::softmin::INV_TEMPERATURE;
    use crate::scores::{N_SAMPLE, PerSample};

    /// Load the 8 values at `p` as `f32`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8<T: Element>(p: *const T) -> __m256 {
        // SAFETY (all branches): the caller guarantees 8 readable values at
        // `p` and AVX2/F16C support.
        unsafe {
            if std::mem::size_of::<T>() == 4 {
                _mm256_loadu_ps(p as *const f32)
            } else {
                _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
            }
        }
    }

    /// `ln x` for `0 ≤ x < ∞`, within `4e-7 + 2e-7·|ln x|` for normal `x`
    /// (so `q·ln q` within 4.8e-7 for `q ∈ (0, 1]`): `x = m·2^e` with `m ∈ [1, 2)` read from the bits, then
    /// `ln x = e·ln 2 + f·P(f)` with `f = m − 1 ∈ [0, 1)` and `P` a degree-6
    /// near-minimax fit of `ln(1 + f)/f` (fitted for the absolute error of
    /// `ln(1 + f)`, max 2.2e-7, 3.3e-7 once evaluated in f32). Zero and
    /// subnormal `x` give a finite value near `−88` (the exponent field is
    /// 0), so `x · ln x` is `0` or a subnormal: no mask is needed.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn ln(x: __m256) -> __m256 {
        let bits = _mm256_castps_si256(x);
        let e = _mm256_cvtepi32_ps(_mm256_sub_epi32(
            _mm256_srli_epi32::<23>(bits),
            _mm256_set1_epi32(0x7f),
        ));
        let m = _mm256_or_ps(
            _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x007f_ffff))),
            _mm256_set1_ps(1.0),
        );
        let f = _mm256_sub_ps(m, _mm256_set1_ps(1.0));
        let mut p = _mm256_set1_ps(LN1P_COEFFS[6]);
        for &c in LN1P_COEFFS[..6].iter().rev() {
            p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c));
        }
        _mm256_fmadd_ps(
            e,
            _mm256_set1_ps(std::f32::consts::LN_2),
            _mm256_mul_ps(p, f),
        )
    }

    /// [`ln`] of eight values (for the tests).
    #[cfg(test)]
    pub unsafe fn ln8(x: &[f32; LANES]) -> [f32; LANES] {
        let mut out = [0.0f32; LANES];
        // SAFETY: both arrays hold 8 lanes.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), ln(_mm256_loadu_ps(x.as_ptr()))) };
        out
    }

    /// Coefficients of `P(f) ≈ ln(1 + f)/f` on `[0, 1)`, constant term
    /// first (an iteratively reweighted least-squares fit to the minimax
    /// absolute error of `f·P(f)`).
    const LN1P_COEFFS: [f32; 7] = [
        0.999_981_16,
        -0.499_471_78,
        0.328_242_18,
        -0.225_897_98,
        0.134_674_49,
        -0.055_145_163,
        0.010_764_503,
    ];

    /// The most classes for which a float16 group that divides derives its
    /// divided pass from the first one (see [`group`]): with 1000 classes
    /// the f32 sum of different terms moved the entropy by 1.4e-5, more
    /// than [`super::ENTROPY_TOLERANCE`]; at 64, C ulps of the sum stay
    /// under 4e-6.
    const DERIVED_DIVIDE_MAX_CLASSES: usize = 64;

    /// How far ahead (in bytes) [`pass`] prefetches each class plane.
    const PREFETCH_BYTES: usize = 1024;

    /// The running per-lane quantities of one pass over the classes.
    struct Pass {
        top1: __m256,
        top2: __m256,
        pred: __m256i,
        plogp: __m256,
        sumsq: __m256,
    }

    /// One pass over the classes of the 8 lanes at `base` (stride
    /// `stride`): `q = x / sum` in the lanes of `divide` when `DIVIDE`
    /// (else `q = x`), the running top two (`top2 = max(top2, min(top1, q))`
    /// is the reference's `if q > top1 {..} else if q > top2 {..}` for
    /// values that are not NaN), the lowest index of the top value, and
    /// `Σ q ln q` (one f32 accumulator in class order, as the reference
    /// sums: with 1000 classes a different order alone moves the entropy by
    /// ~1e-5). Also returns the
    /// plain sum of `x` in class order and the smallest `x`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pass<T: Element, const DIVIDE: bool>(
        base: *const T,
        stride: usize,
        classes: usize,
        sum_in: __m256,
        divide: __m256,
    ) -> (Pass, __m256, __m256) {
        let mut top1 = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut top2 = top1;
        let mut pred = _mm256_setzero_si256();
        let mut plogp = _mm256_setzero_ps();
        let mut sumsq = _mm256_setzero_ps();
        let mut sum = _mm256_setzero_ps();
        let mut low = _mm256_set1_ps(f32::INFINITY);
        let mut kv = _mm256_setzero_si256();
        let one = _mm256_set1_epi32(1);
        for k in 0..classes {
            // SAFETY: `(classes − 1)·stride + 8 ≤ data.len()` (the caller).
            let at = base.wrapping_add(k * stride);
            // The planes are a megabyte apart: ask for this class's data
            // PREFETCH_BYTES ahead, as the hardware does not track 19+
            // streams. A prefetch never faults, even past the end.
            _mm_prefetch::<_MM_HINT_T0>((at as *const u8).wrapping_add(PREFETCH_BYTES) as *const i8);
            let x = unsafe { load8(at) };
            sum = _mm256_add_ps(sum, x);
            low = _mm256_min_ps(low, x);
            let q = if DIVIDE {
                _mm256_blendv_ps(x, _mm256_div_ps(x, sum_in), divide)
            } else {
                x
            };
            plogp = _mm256_add_ps(plogp, _mm256_mul_ps(q, ln(q)));
            sumsq = _mm256_add_ps(sumsq, _mm256_mul_ps(q, q));
            let gt1 = _mm256_cmp_ps(q, top1, _CMP_GT_OQ);
            pred = _mm256_blendv_epi8(pred, kv, _mm256_castps_si256(gt1));
            top2 = _mm256_max_ps(top2, _mm256_min_ps(top1, q));
            top1 = _mm256_max_ps(top1, q);
            kv = _mm256_add_epi32(kv, one);
        }
        (
            Pass {
                top1,
                top2,
                pred,
                plogp,
                sumsq,
            },
            sum,
            low,
        )
    }

    /// The per-lane quantities of one group of eight samples, after
    /// validation and (where the reference divides) normalisation.
    struct Group {
        pass: Pass,
        py: __m256,
    }

    /// Validate, normalise and reduce the 8 lanes at `base` (class `k` at
    /// `base + k·stride`); `None` if any lane is invalid.
    ///
    /// One optimistic pass reads every value once: it validates and sums
    /// (in class order, plain adds, as the reference does) while scoring
    /// the values as they are. Only when some lane's sum is off by more
    /// than the rounding of the sum (so the reference divides) is a second
    /// pass made over the divided values.
    ///
    /// # Safety
    /// AVX2/FMA/F16C; `(classes − 1)·stride + 8` values readable at `base`;
    /// every `labels[j] < classes`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group<T: Element>(
        base: *const T,
        stride: usize,
        classes: usize,
        labels: &[u32; LANES],
    ) -> Option<Group> {
        let zero = _mm256_setzero_ps();
        // SAFETY: the caller's bounds.
        let (mut r, sum, low) = unsafe { pass::<T, false>(base, stride, classes, zero, zero) };
        // Valid: every value ≥ 0 (`low` ≥ 0; a NaN anywhere makes the sum
        // NaN) and |s − 1| ≤ tolerance (false for a NaN or infinite sum, so
        // with all values ≥ 0 every value is also finite).
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let dev = _mm256_and_ps(_mm256_sub_ps(sum, _mm256_set1_ps(1.0)), abs_mask);
        let ok = _mm256_and_ps(
            _mm256_cmp_ps(low, zero, _CMP_GE_OQ),
            _mm256_cmp_ps(dev, _mm256_set1_ps(SUM_TOLERANCE), _CMP_LE_OQ),
        );
        if _mm256_movemask_ps(ok) != 0xff {
            return None;
        }
        let divide = _mm256_cmp_ps(dev, _mm256_set1_ps(rounding_slack(classes)), _CMP_GT_OQ);
        let divide_mask = _mm256_movemask_ps(divide);
        if divide_mask != 0 {
            if std::mem::size_of::<T>() == 2 && classes <= DERIVED_DIVIDE_MAX_CLASSES {
                // float16 values rarely sum to 1 within f32 rounding, so
                // nearly every group divides: derive the divided pass from
                // this one instead of reading every value again. Division
                // by s > 0 is monotone and correctly rounded, so
                // max_k fl(x_k/s) = fl(max_k x_k / s) (the top two, exactly),
                // and two different float16 values (2⁻¹¹ apart relatively)
                // stay different after it, so the argmax, ties and all, is
                // the reference's. Σ q ln q = (Σ x ln x)/s − ln s: the
                // entropy, within its tolerance (summing other terms in f32
                // moves the sum by up to ~C ulps of it, hence at most
                // [`DERIVED_DIVIDE_MAX_CLASSES`] classes). Not for float32,
                // where two neighbouring values can round to one quotient
                // and the argmax would differ from the reference's.
                let ln_s = ln(sum);
                r.top1 = _mm256_blendv_ps(r.top1, _mm256_div_ps(r.top1, sum), divide);
                r.top2 = _mm256_blendv_ps(r.top2, _mm256_div_ps(r.top2, sum), divide);
                let plogp = _mm256_sub_ps(_mm256_div_ps(r.plogp, sum), ln_s);
                r.plogp = _mm256_blendv_ps(r.plogp, plogp, divide);
                let sumsq = _mm256_div_ps(_mm256_div_ps(r.sumsq, sum), sum);
                r.sumsq = _mm256_blendv_ps(r.sumsq, sumsq, divide);
            } else {
                // SAFETY: as above.
                r = unsafe { pass::<T, true>(base, stride, classes, sum, divide) }.0;
            }
        }
        // q_y: the eight labelled values gathered, widened with one vector
        // conversion, and divided as the pass divides (the same f32 ops).
        // SAFETY: labels[j] < classes and j < 8 (the caller).
        let raw: [T; LANES] =
            std::array::from_fn(|j| unsafe { *base.add(labels[j] as usize * stride + j) });
        // SAFETY: `raw` holds 8 values.
        let x = unsafe { load8(raw.as_ptr()) };
        let py = if divide_mask != 0 {
            _mm256_blendv_ps(x, _mm256_div_ps(x, sum), divide)
        } else {
            x
        };
        Some(Group { pass: r, py })
    }

    /// The scores of a [`Group`], lane for lane the f32 operations of
    /// [`crate::metrics::pixel_stats::finish`] (so bit-identical to it).
    struct Scores {
        pred: __m256i,
        confidence: __m256,
        scores: PerSample<__m256>,
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn finish8(g: &Group, labels: __m256i, ln_c: f32) -> Scores {
        let (p, one) = (&g.pass, _mm256_set1_ps(1.0));
        // The largest probability among the other classes.
        let is_y = _mm256_castsi256_ps(_mm256_cmpeq_epi32(p.pred, labels));
        let other = _mm256_blendv_ps(p.top1, p.top2, is_y);
        let neg = _mm256_xor_ps(p.plogp, _mm256_set1_ps(-0.0));
        Scores {
            pred: p.pred,
            confidence: p.top1,
            scores: PerSample {
                entropy: _mm256_max_ps(
                    _mm256_div_ps(neg, _mm256_set1_ps(ln_c)),
                    _mm256_setzero_ps(),
                ),
                margin: _mm256_sub_ps(p.top1, p.top2),
                least_confidence: _mm256_sub_ps(one, p.top1),
                self_confidence: g.py,
                normalized_margin: _mm256_mul_ps(
                    _mm256_add_ps(_mm256_sub_ps(g.py, other), one),
                    _mm256_set1_ps(0.5),
                ),
                brier: _mm256_max_ps(
                    _mm256_add_ps(
                        _mm256_sub_ps(p.sumsq, _mm256_mul_ps(_mm256_set1_ps(2.0), g.py)),
                        one,
                    ),
                    _mm256_setzero_ps(),
                ),
            },
        }
    }

    /// See [`super::score_lanes`]; the caller checked bounds and features.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn score_lanes<T: Element>(
        data: &[T],
        stride: usize,
        classes: usize,
        labels: &[u32; LANES],
    ) -> Option<[SampleScores; LANES]> {
        // SAFETY: the caller's bounds.
        let g = unsafe { group(data.as_ptr(), stride, classes, labels) }?;
        // SAFETY: `labels` holds 8 lanes.
        let lab = unsafe { _mm256_loadu_si256(labels.as_ptr() as *const __m256i) };
        let s = finish8(&g, lab, (classes as f32).ln());
        let mut conf = [0.0f32; LANES];
        let mut f = [[0.0f32; LANES]; N_SAMPLE];
        let mut pr = [0u32; LANES];
        // SAFETY: each array holds 8 lanes.
        unsafe {
            _mm256_storeu_si256(pr.as_mut_ptr() as *mut __m256i, s.pred);
            _mm256_storeu_ps(conf.as_mut_ptr(), s.confidence);
            for (dst, v) in f.iter_mut().zip(s.scores.to_array()) {
                _mm256_storeu_ps(dst.as_mut_ptr(), v);
            }
        }
        Some(std::array::from_fn(|j| SampleScores {
            pred: pr[j],
            confidence: conf[j],
            scores: PerSample::from_array(std::array::from_fn(|a| f[a][j])),
        }))
    }

    /// `(lanes 0–3, lanes 4–7)` of `v` as f64.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn widen(v: __m256) -> (__m256d, __m256d) {
        (
            _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
            _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
        )
    }

    /// f64 lane masks `(lanes 0–3, lanes 4–7)` of the bits of `valid`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lane_masks(valid: u32) -> (__m256d, __m256d) {
        let bits = _mm256_set_epi64x(8, 4, 2, 1);
        let m = |v: u32| {
            let v = _mm256_set1_epi64x(v as i64);
            _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(v, bits), bits))
        };
        (m(valid & 0xf), m(valid >> 4))
    }

    /// See [`super::score_run`]; the caller checked bounds and features.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn score_run<T: Element>(
        data: &[T],
        hw: usize,
        classes: usize,
        labels: &[u16],
        ignore: u16,
        start: usize,
        pred: &mut [u16],
        bins: &mut CalibrationBins,
        confusion: &mut Confusion,
        invalid: &mut dyn FnMut(usize, usize),
    ) -> RunSums {
        let ln_c = (classes as f32).ln();
        // Σ of each per-sample score (table order); then the softmin of
        // the self-confidence (Σ s·w, Σ w) and of the normalised margin.
        const SC: usize = N_SAMPLE;
        const NM: usize = N_SAMPLE + 2;
        let mut acc = [_mm256_setzero_pd(); N_SAMPLE + 4];
        let one = _mm256_set1_pd(1.0);
        let inv_t = _mm256_set1_pd(INV_TEMPERATURE);
        let mut pixels = 0u64;
        let mut scratch: Vec<f32> = Vec::new();
        let mut j = 0;
        while j < pred.len() {
            let i = start + j;
            let n = (pred.len() - j).min(LANES);
            let mut lab = [0u32; LANES];
            let mut valid = 0u32;
            for l in 0..n {
                let y = labels[i + l];
                if y != ignore {
                    assert!(
                        (y as usize) < classes,
                        "label {y} of pixel {} ≥ {classes}",
                        i + l
                    );
                    lab[l] = y as u32;
                    valid |= 1 << l;
                }
            }
            let g = if n == LANES {
                // SAFETY: a full group: (C − 1)·hw + i + 8 ≤ C·hw ≤ data.len().
                unsafe { group(data.as_ptr().add(i), hw, classes, &lab) }
            } else {
                super::gather_tail(data, hw, i..i + n, classes, &mut scratch);
                // SAFETY: `scratch` holds classes × 8 values.
                unsafe { group(scratch.as_ptr(), LANES, classes, &lab) }
            };
            let Some(g) = g else {
                invalid(i, n);
                j += n;
                continue;
            };
            // SAFETY: `lab` holds 8 lanes.
            let labv = unsafe { _mm256_loadu_si256(lab.as_ptr() as *const __m256i) };
            let s = finish8(&g, labv, ln_c);
            let mut pr = [0u32; LANES];
            // SAFETY: `pr` holds 8 lanes.
            unsafe { _mm256_storeu_si256(pr.as_mut_ptr() as *mut __m256i, s.pred) };
            for l in 0..n {
                pred[j + l] = pr[l] as u16;
            }
            if valid != 0 {
                pixels += valid.count_ones() as u64;
                let mut conf = [0.0f32; LANES];
                // SAFETY: `conf` holds 8 lanes.
                unsafe { _mm256_storeu_ps(conf.as_mut_ptr(), s.confidence) };
                for l in (0..n).filter(|l| valid >> l & 1 != 0) {
                    bins.add(conf[l], pr[l] == lab[l]);
                    confusion.add(lab[l] as usize, pr[l] as usize);
                }
                let (mlo, mhi) = lane_masks(valid);
                for (a, v) in s.scores.to_array().into_iter().enumerate() {
                    let (lo, hi) = widen(v);
                    acc[a] = _mm256_add_pd(acc[a], _mm256_and_pd(lo, mlo));
                    acc[a] = _mm256_add_pd(acc[a], _mm256_and_pd(hi, mhi));
                }
                for (a, v) in [
                    (SC, s.scores.self_confidence),
                    (NM, s.scores.normalized_margin),
                ] {
                    let (lo, hi) = widen(v);
                    for (x, m) in [(lo, mlo), (hi, mhi)] {
                        let w = exp_pd(_mm256_mul_pd(_mm256_sub_pd(one, x), inv_t));
                        acc[a] = _mm256_add_pd(acc[a], _mm256_and_pd(_mm256_mul_pd(x, w), m));
                        acc[a + 1] = _mm256_add_pd(acc[a + 1], _mm256_and_pd(w, m));
                    }
                }
            }
            j += n;
        }
        let mut f = [0.0f64; N_SAMPLE + 4];
        for (dst, v) in f.iter_mut().zip(acc) {
            let mut l = [0.0f64; 4];
            // SAFETY: `l` holds 4 lanes.
            unsafe { _mm256_storeu_pd(l.as_mut_ptr(), v) };
            *dst = (l[0] + l[1]) + (l[2] + l[3]);
        }
        RunSums {
            pixels,
            sums: ScoreSums::from_array(std::array::from_fn(|a| f[a])),
            softmin_self_confidence: Softmin {
                weighted: f[SC],
                weight: f[SC + 1],
            },
            softmin_normalized_margin: Softmin {
                weighted: f[NM],
                weight: f[NM + 1],
            },
        }
    }

    /// `e^x` for four f64 lanes, `|x| ≤ 700`: `x = n ln 2 + r` with
    /// `|r| ≤ ln 2 / 2` (ln 2 split in two parts, fdlibm's `ln2_hi`/`ln2_lo`), `e^r` by
    /// its Taylor series to `r¹²/12!`, then `2^n` put in the exponent.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp_pd(x: __m256d) -> __m256d {
        let x = _mm256_min_pd(
            _mm256_max_pd(x, _mm256_set1_pd(-700.0)),
            _mm256_set1_pd(700.0),
        );
        let n = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_pd(x, _mm256_set1_pd(std::f64::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(f64::from_bits(0x3fe6_2e42_fee0_0000)), x);
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(f64::from_bits(0x3dea_39ef_3579_3c76)), r);
        // Horner from 1/12! down to 1.
        let mut inv = [1.0f64; 13];
        for k in 1..13 {
            inv[k] = inv[k - 1] / k as f64;
        }
        let mut p = _mm256_set1_pd(inv[12]);
        for k in (0..12).rev() {
            p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(inv[k]));
        }
        // 2^n: (n + 1023) << 52 as the bits of a double.
        let ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
        let bits = _mm256_slli_epi64::<52>(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)));
        _mm256_mul_pd(p, _mm256_castsi256_pd(bits))
    }

    /// See [`super::softmin_weights`].
    #[target_feature(enable = "avx2,fma")]
    #[cfg(test)]
    pub unsafe fn softmin_weights(s: &[f32; LANES]) -> [f64; LANES] {
        // SAFETY: `s` holds 8 values.
        let v = unsafe { _mm256_loadu_ps(s.as_ptr()) };
        let inv_t = _mm256_set1_pd(INV_TEMPERATURE);
        let one = _mm256_set1_pd(1.0);
        let (lo, hi) = widen(v);
        let wl = exp_pd(_mm256_mul_pd(_mm256_sub_pd(one, lo), inv_t));
        let wh = exp_pd(_mm256_mul_pd(_mm256_sub_pd(one, hi), inv_t));
        let mut out = [0.0f64; LANES];
        // SAFETY: `out` holds 8 values.
        unsafe {
            _mm256_storeu_pd(out.as_mut_ptr(), wl);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), wh);
        }
        out
    }

    /// Transpose rows `start..start + 8` (each `classes` long) into `out`
    /// (`classes × 8`), 8×8 blocks in registers, the remainder scalar.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn transpose8<T: Element>(
        data: &[T],
        start: usize,
        classes: usize,
        out: &mut [f32],
    ) {
        let src = &data[start * classes..(start + LANES) * classes];
        let dst = out.as_mut_ptr();
        let blocks = classes / LANES;
        for b in 0..blocks {
            let k0 = b * LANES;
            // SAFETY: row j's classes k0..k0 + 8 lie inside `src`; the 8
            // stores cover out[k0·8 .. (k0 + 8)·8] ⊆ out.
            unsafe {
                let r: [__m256; 8] =
                    std::array::from_fn(|j| load8(src.as_ptr().add(j * classes + k0)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let o = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (i, v) in o.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.add((k0 + i) * LANES), v);
                }
            }
        }
        for k in blocks * LANES..classes {
            for j in 0..LANES {
                out[k * LANES + j] = src[j * classes + k].to_f32();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::pixel_stats::score_sample;
    use crate::scores::{N_SAMPLE, TABLE};

    /// A deterministic stream in [0, 1).
    fn lcg(state: &mut u64) -> f32 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 40) as f32) / (1u64 << 24) as f32
    }

    /// `n` samples of `c` classes, planar (`c × n`), with peaked, flat,
    /// one-hot, tied, tiny-valued (subnormal) and slightly unnormalised rows.
    fn planar(c: usize, n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut st = seed;
        let mut data = vec![0.0f32; c * n];
        let mut labels = vec![0u32; n];
        for i in 0..n {
            let mut p: Vec<f32> = (0..c).map(|_| lcg(&mut st).powi(3)).collect();
            match i % 7 {
                0 => p.iter_mut().for_each(|v| *v = 1.0),
                1 => {
                    p.iter_mut().for_each(|v| *v = 0.0);
                    p[i % c] = 1.0;
                }
                2 => {
                    p[0] = 1e-41;
                    p[1] = 5.0;
                }
                3 => {
                    p[c - 1] = 4.0;
                    p[0] = 4.0;
                }
                _ => {}
            }
            let s: f32 = p.iter().sum();
            p.iter_mut().for_each(|v| *v /= s);
            if i % 5 == 0 {
                // Off by 2e-4: within the tolerance, divided out.
                p[0] += 2e-4;
            }
            for (k, v) in p.iter().enumerate() {
                data[k * n + i] = *v;
            }
            labels[i] = (lcg(&mut st) * c as f32) as u32 % c as u32;
        }
        (data, labels)
    }

    fn check_against_scalar<T: Element>(c: usize, data: &[T], labels: &[u32], n: usize) {
        let mut p = vec![0.0f32; c];
        let mut q = vec![0.0f32; c];
        for g in (0..n).step_by(LANES) {
            let lab: [u32; LANES] = std::array::from_fn(|j| labels[g + j]);
            let got = score_lanes(&data[g..], n, c, &lab).expect("valid");
            for j in 0..LANES {
                for k in 0..c {
                    p[k] = data[k * n + g + j].to_f32();
                }
                let want = score_sample(&p, lab[j], false, &mut q).unwrap();
                let s = got[j];
                assert_eq!(s.pred, want.pred, "sample {}", g + j);
                assert_eq!(s.confidence.to_bits(), want.confidence.to_bits());
                // Every declared per-sample score: bit-identical, or within
                // its stated tolerance.
                let tol = TOLERANCE.to_array();
                let (got, want) = (s.scores.to_array(), want.scores.to_array());
                for (a, d) in TABLE[..N_SAMPLE].iter().enumerate() {
                    assert!(
                        got[a].to_bits() == want[a].to_bits() || (got[a] - want[a]).abs() <= tol[a],
                        "sample {}: {} {} vs {} ({c} classes, tolerance {})",
                        g + j,
                        d.name,
                        got[a],
                        want[a],
                        tol[a]
                    );
                }
            }
        }
    }

    /// On a CPU with AVX2, FMA and F16C the kernels must be the ones in use
    /// (unless `TRIAGE_SIMD=off` asked for the reference): a detection bug
    /// would otherwise silently leave every SIMD test skipped.
    #[test]
    fn the_simd_path_is_taken_where_the_cpu_has_it() {
        let off = std::env::var("TRIAGE_SIMD").is_ok_and(|v| v.trim().eq_ignore_ascii_case("off"));
        #[cfg(target_arch = "x86_64")]
        if !off
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            assert_eq!(level(), Level::Avx2);
        }
        if off {
            assert_eq!(level(), Level::Scalar);
        }
    }

    #[test]
    fn simd_matches_the_scalar_reference() {
        if level() != Level::Avx2 {
            // The scalar path is the only one here (or TRIAGE_SIMD=off); it is
            // the reference itself, tested in pixel_stats.
            eprintln!("simd: level {:?}, kernel test skipped", level());
            return;
        }
        for (c, n) in [(2, 64), (3, 56), (19, 512), (64, 40), (1000, 32)] {
            let (data, labels) = planar(c, n, c as u64);
            check_against_scalar(c, &data, &labels, n);
            // The same rounded to float16: sums off by more than f32
            // rounding, so nearly every group takes the divided path.
            let h: Vec<u16> = data
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            check_against_scalar(c, &h, &labels, n);
        }
    }

    #[test]
    fn two_class_entropy_is_within_2e6_of_f64() {
        if level() != Level::Avx2 {
            return;
        }
        // ln(q) for q over (0, 1], through the entropy of a two-class sample.
        let mut worst = 0.0f64;
        let mut st = 9u64;
        for _ in 0..20_000 {
            let a = lcg(&mut st).max(1e-30);
            let data = [a; LANES]
                .into_iter()
                .chain([1.0 - a; LANES])
                .collect::<Vec<f32>>();
            let s = score_lanes(&data, LANES, 2, &[0; LANES]).unwrap()[0];
            let q0 = a as f64;
            let q1 = (1.0 - a) as f64;
            let h = -(q0 * q0.ln() + if q1 > 0.0 { q1 * q1.ln() } else { 0.0 }) / 2f64.ln();
            worst = worst.max((s.scores.entropy as f64 - h).abs());
        }
        assert!(worst < 2e-6, "worst entropy error {worst}");
    }

    #[test]
    fn softmin_weights_match_libm() {
        if level() != Level::Avx2 {
            return;
        }
        let mut st = 5u64;
        let mut worst = 0.0f64;
        for i in 0..4000 {
            let s: [f32; LANES] = std::array::from_fn(|j| match (i + j) % 50 {
                0 => 0.0,
                1 => 1.0,
                _ => lcg(&mut st),
            });
            let w = softmin_weights(&s);
            for j in 0..LANES {
                let want = crate::metrics::softmin::weight(s[j]);
                worst = worst.max(((w[j] - want) / want).abs());
            }
        }
        // A few ulp of f64 (2.2e-16 each): 1 ulp of an argument up to 10
        // (1.8e-15) and the polynomial's 2 ulp.
        assert!(worst < 4e-15, "worst relative error {worst}");
    }

    /// The vectorised weights give the scalar `metrics::softmin` value:
    /// random scores summed into one `Softmin` with the SIMD weights and
    /// one with the reference's `add`.
    #[test]
    fn simd_softmin_matches_the_scalar_definition() {
        if level() != Level::Avx2 {
            return;
        }
        let mut st = 17u64;
        for run in 0..200 {
            let n: usize = 1 + run * 7;
            let (mut simd, mut scalar) = (Softmin::default(), Softmin::default());
            for _ in 0..n.div_ceil(LANES) {
                let s: [f32; LANES] = std::array::from_fn(|_| lcg(&mut st));
                let w = softmin_weights(&s);
                for j in 0..LANES {
                    simd.add_weighted(s[j], w[j]);
                    scalar.add(s[j]);
                }
            }
            let (a, b) = (
                simd.value().unwrap_or(f64::NAN),
                scalar.value().unwrap_or(0.0),
            );
            assert!(
                (a - b).abs() <= 1e-13 * b.abs().max(1e-3),
                "run {run}: {a} vs {b}"
            );
            assert!(
                (simd.weight / scalar.weight - 1.0).abs() < 1e-14,
                "run {run}"
            );
        }
    }

    #[test]
    fn invalid_lanes_are_handed_back() {
        if level() != Level::Avx2 {
            return;
        }
        let good = [0.25f32; 4 * LANES];
        for (lane, v) in [(0, f32::NAN), (3, -0.1), (7, f32::INFINITY), (5, 0.3)] {
            let mut d = good.to_vec();
            d[LANES + lane] = v; // class 1
            assert!(score_lanes(&d, LANES, 4, &[0; LANES]).is_none(), "{v}");
        }
        assert!(score_lanes(&good, LANES, 4, &[3; LANES]).is_some());
    }

    #[test]
    fn f16_and_transposed_rows_match_the_planar_f32_kernel() {
        let c = 37; // not a multiple of 8: 4 blocks and a remainder
        let n = 8;
        let (planar_data, labels) = planar(c, n, 3);
        // Row-major copy, as a classification batch stores it.
        let mut rows = vec![0.0f32; n * c];
        for k in 0..c {
            for i in 0..n {
                rows[i * c + k] = planar_data[k * n + i];
            }
        }
        let mut t = Vec::new();
        transpose_rows(&rows, 0..n, c, &mut t);
        assert_eq!(t, planar_data);
        // A short group is padded with one-hot lanes.
        transpose_rows(&rows, 0..3, c, &mut t);
        assert_eq!(t[3], 1.0);
        assert_eq!(t[LANES + 3], 0.0);
        assert_eq!(t[LANES + 2], planar_data[LANES + 2]);
        if level() != Level::Avx2 {
            return;
        }
        let h: Vec<u16> = planar_data
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        let widened: Vec<f32> = h.iter().map(|&b| b.to_f32()).collect();
        let lab: [u32; LANES] = std::array::from_fn(|j| labels[j]);
        let a = score_lanes(&h, n, c, &lab).expect("valid");
        let b = score_lanes(&widened, n, c, &lab).expect("valid");
        // Exact but for the entropy, which float16 derives from the first
        // pass (within its tolerance of the reference, checked above).
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.pred, x.confidence), (y.pred, y.confidence));
            let tol = TOLERANCE.to_array();
            let (xs, ys) = (x.scores.to_array(), y.scores.to_array());
            for a in 0..N_SAMPLE {
                assert!(xs[a] == ys[a] || (xs[a] - ys[a]).abs() <= tol[a] && tol[a] > 0.0);
            }
        }
    }

    #[test]
    fn polynomial_log_is_within_its_stated_bound() {
        if level() != Level::Avx2 {
            return;
        }
        // Every 1009th f32 from the smallest normal up to 2 (the range of
        // probabilities, and past 1 where the reference's sum can land).
        let (lo, hi) = (f32::MIN_POSITIVE.to_bits(), 2.0f32.to_bits());
        let mut worst = (0.0f64, 0.0f32);
        let xs: Vec<f32> = (lo..=hi)
            .step_by(1009)
            .map(f32::from_bits)
            .chain([1.0, 0.5, 1.0 - f32::EPSILON / 2.0, f32::MIN_POSITIVE])
            .collect();
        for c in xs.chunks(LANES) {
            let mut x = [1.0f32; LANES];
            x[..c.len()].copy_from_slice(c);
            // SAFETY: AVX2 is available (checked above).
            let y = unsafe { avx2::ln8(&x) };
            for j in 0..LANES {
                let want = (x[j] as f64).ln();
                // f32 itself holds ln x to 2^-24 relative (ulp of 87 is 8e-6).
                let e = (y[j] as f64 - want).abs() - 2e-7 * want.abs();
                if e > worst.0 {
                    worst = (e, x[j]);
                }
            }
        }
        assert!(
            worst.0 < 4e-7,
            "worst |ln error| − 2e-7·|ln x| {} at {}",
            worst.0,
            worst.1
        );
        // Zero and subnormals give a finite value, so q·ln q is 0 or tiny.
        let y = unsafe { avx2::ln8(&[0.0, 1e-41, 1e-45, 0.0, 0.0, 0.0, 0.0, 0.0]) };
        assert!(y.iter().all(|v| v.is_finite() && *v < -80.0), "{y:?}");
    }

    /// The reference's per-pixel accumulation of one run, as `pixels_scalar`
    /// of the CPU backend does it.
    fn reference_run(
        data: &[f32],
        hw: usize,
        c: usize,
        labels: &[u16],
        ignore: u16,
    ) -> (RunSums, Vec<u16>, CalibrationBins, Confusion, Vec<usize>) {
        let mut r = RunSums::default();
        let mut pred = vec![0u16; hw];
        let mut bins = CalibrationBins::default();
        let mut conf = Confusion::new(c);
        let mut bad = Vec::new();
        let (mut p, mut q) = (vec![0.0f32; c], vec![0.0f32; c]);
        for i in 0..hw {
            for k in 0..c {
                p[k] = data[k * hw + i];
            }
            let y = if labels[i] == ignore {
                0
            } else {
                labels[i] as u32
            };
            let Ok(s) = score_sample(&p, y, false, &mut q) else {
                bad.push(i);
                continue;
            };
            pred[i] = s.pred as u16;
            if labels[i] == ignore {
                continue;
            }
            r.pixels += 1;
            r.sums.add(&s.scores);
            r.softmin_self_confidence.add(s.scores.self_confidence);
            r.softmin_normalized_margin.add(s.scores.normalized_margin);
            bins.add(s.confidence, s.pred == y);
            conf.add(y as usize, s.pred as usize);
        }
        (r, pred, bins, conf, bad)
    }

    #[test]
    fn a_run_matches_the_reference_accumulation() {
        if level() != Level::Avx2 {
            return;
        }
        // 7 classes, 203 pixels: 25 full groups and a tail of 3; every
        // 11th pixel ignored; one invalid pixel (NaN) in group 4.
        let (c, hw, ignore) = (7, 203, 255u16);
        let (mut data, lab) = planar(c, hw, 11);
        data[2 * hw + 35] = f32::NAN;
        let labels: Vec<u16> = lab
            .iter()
            .enumerate()
            .map(|(i, &y)| if i % 11 == 3 { ignore } else { y as u16 })
            .collect();
        let (want, want_pred, want_bins, want_conf, want_bad) =
            reference_run(&data, hw, c, &labels, ignore);
        assert_eq!(want_bad, vec![35]);
        // Two runs (0..96, 96..203), as two chunks of an item.
        let mut pred = vec![0u16; hw];
        let mut bins = CalibrationBins::default();
        let mut conf = Confusion::new(c);
        let mut bad = Vec::new();
        let (a, b) = pred.split_at_mut(96);
        let r1 = score_run(
            &data,
            hw,
            c,
            &labels,
            ignore,
            0,
            a,
            &mut bins,
            &mut conf,
            &mut |i, n| bad.push((i, n)),
        );
        let r2 = score_run(
            &data,
            hw,
            c,
            &labels,
            ignore,
            96,
            b,
            &mut bins,
            &mut conf,
            &mut |i, n| bad.push((i, n)),
        );
        // The invalid group is handed back whole: pixels 32..40.
        assert_eq!(bad, vec![(32, 8)]);
        // Scoring the handed-back group as the reference does completes the run.
        let skipped = (32..40).filter(|&i| labels[i] != ignore && i != 35).count() as u64;
        assert_eq!(r1.pixels + r2.pixels + skipped, want.pixels);
        for i in (0..hw).filter(|i| !(32..40).contains(i)) {
            assert_eq!(pred[i], want_pred[i], "pixel {i}");
        }
        // Counts exact once the skipped group's reference counts are added.
        let (mut full_bins, mut full_conf) = (bins.clone(), conf.clone());
        let mut p = vec![0.0f32; c];
        let mut q = vec![0.0f32; c];
        for i in (32..40).filter(|&i| labels[i] != ignore && i != 35) {
            for k in 0..c {
                p[k] = data[k * hw + i];
            }
            let s = score_sample(&p, labels[i] as u32, false, &mut q).unwrap();
            full_bins.add(s.confidence, s.pred == labels[i] as u32);
            full_conf.add(labels[i] as usize, s.pred as usize);
        }
        assert_eq!(full_bins.count, want_bins.count);
        assert_eq!(full_bins.correct, want_bins.correct);
        assert_eq!(full_conf, want_conf);
        // Sums: the reference minus the skipped group, within f64 rounding.
        let mut keep = labels.clone();
        keep[32..40].fill(ignore);
        let (want_rest, ..) = reference_run(&data, hw, c, &keep, ignore);
        assert_eq!(r1.pixels + r2.pixels, want_rest.pixels);
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol * b.abs().max(1.0);
        let (g1, g2, w) = (
            r1.sums.to_array(),
            r2.sums.to_array(),
            want_rest.sums.to_array(),
        );
        let tols = TOLERANCE.to_array();
        for a in 0..N_SAMPLE {
            let got = g1[a] + g2[a];
            // A score with a per-sample tolerance (the entropy: the
            // polynomial log's error, ≤ 4e-7 per pixel relative to ln C)
            // carries it into the sum; the others only f64 rounding.
            let tol = if tols[a] > 0.0 { 1e-6 } else { 1e-13 };
            assert!(close(got, w[a], tol), "sum {a}: {got} vs {}", w[a]);
        }
        for (g1, g2, w) in [
            (
                r1.softmin_self_confidence,
                r2.softmin_self_confidence,
                want_rest.softmin_self_confidence,
            ),
            (
                r1.softmin_normalized_margin,
                r2.softmin_normalized_margin,
                want_rest.softmin_normalized_margin,
            ),
        ] {
            let (sw, ww) = (g1.weighted + g2.weighted, g1.weight + g2.weight);
            assert!(close(sw, w.weighted, 1e-13), "{sw} vs {}", w.weighted);
            assert!(close(ww, w.weight, 1e-13), "{ww} vs {}", w.weight);
        }
    }

    #[test]
    fn a_run_of_uniform_regions_matches_the_reference_exactly() {
        if level() != Level::Avx2 {
            return;
        }
        // Regions of 40 equal pixels (most groups of 8 share their cell and
        // bin, some straddle two regions), 5 classes, 250 pixels.
        let (c, hw, ignore) = (5, 250, 9u16);
        let mut data = vec![0.0f32; c * hw];
        let mut labels = vec![0u16; hw];
        for i in 0..hw {
            let r = i / 40;
            let top = r % c;
            let conf = [0.95f32, 0.6, 0.35, 0.99, 0.7, 0.51, 0.8][r % 7];
            for k in 0..c {
                data[k * hw + i] = if k == top {
                    conf
                } else {
                    (1.0 - conf) / (c - 1) as f32
                };
            }
            labels[i] = if r == 3 { ignore } else { ((r * 3) % c) as u16 };
        }
        let (want, want_pred, want_bins, want_conf, bad) =
            reference_run(&data, hw, c, &labels, ignore);
        assert!(bad.is_empty());
        let mut pred = vec![0u16; hw];
        let mut bins = CalibrationBins::default();
        let mut conf = Confusion::new(c);
        let got = score_run(
            &data,
            hw,
            c,
            &labels,
            ignore,
            0,
            &mut pred,
            &mut bins,
            &mut conf,
            &mut |i, n| panic!("group {i}+{n} handed back"),
        );
        assert_eq!(pred, want_pred);
        assert_eq!(got.pixels, want.pixels);
        assert_eq!(conf, want_conf);
        assert_eq!(bins.count, want_bins.count);
        assert_eq!(bins.correct, want_bins.correct);
        for m in 0..crate::metrics::calibration::BINS {
            let (a, b) = (bins.confidence_sum[m], want_bins.confidence_sum[m]);
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "bin {m}: {a} vs {b}"
            );
        }
    }
}
