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
//!    value, `q_y`, and `Σ q_k ln q_k`.
//!
//! The sum, the normalisation, `pred`, `top1`, `top2` and `q_y` are therefore
//! bit-identical to the scalar path, and so are the prediction, confidence,
//! margin, least confidence, self-confidence and normalised margin (both end
//! in [`finish`]). Only the entropy differs: `ln` is a polynomial (Cephes'
//! `logf`, relative error ≲ 2 ulp; subnormal `q_k` are clamped to the
//! smallest normal, which changes `q ln q` by under 1e-36), so the entropy
//! agrees with the reference within [`ENTROPY_TOLERANCE`].
//!
//! Logits (softmax inputs) always take the scalar path.
//!
//! Levels: AVX2 + FMA + F16C on x86-64, detected at run time; everything else
//! (other CPUs, or `TRIAGE_SIMD=off` in the environment) uses the scalar
//! reference, which stays the definition of every number.

use std::sync::OnceLock;

use crate::metrics::pixel_stats::{SUM_TOLERANCE, SampleScores, finish, rounding_slack};

/// Samples scored per kernel call (the vector width in `f32` lanes).
pub const LANES: usize = 8;

/// Largest difference between the SIMD and the scalar normalised entropy of
/// one sample (it lies in [0, 1]).
pub const ENTROPY_TOLERANCE: f32 = 1e-5;

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

/// The softmin weights `exp((1 − s) / T)` of eight scores, as
/// [`super::Softmin::weight_of`] computes them one at a time: the argument
/// is computed identically (f64 subtraction and division), the exponential
/// by a degree-12 polynomial after range reduction (relative error ≲ 2 ulp
/// of f64 against libm). Must only be called at [`Level::Avx2`].
pub fn softmin_weights(s: &[f32; LANES]) -> [f64; LANES] {
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

/// The scalar part shared by both kernels' callers: validate `labels` etc. is
/// the caller's job; this turns the per-lane quantities into scores.
#[inline]
#[allow(clippy::too_many_arguments)]
fn finish_lanes(
    classes: usize,
    labels: &[u32; LANES],
    top1: &[f32; LANES],
    top2: &[f32; LANES],
    pred: &[u32; LANES],
    py: &[f32; LANES],
    plogp: &[f32; LANES],
) -> [SampleScores; LANES] {
    std::array::from_fn(|j| {
        finish(
            classes, labels[j], top1[j], top2[j], pred[j], py[j], plogp[j],
        )
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Element, LANES, SUM_TOLERANCE, SampleScores, finish_lanes, rounding_slack};

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

    /// `ln x` for `x > 0` (Cephes `logf`, as in Julien Pommier's
    /// `avx_mathfun.h`): `x = m·2^e` with `m ∈ [√½, √2)`, then a degree-9
    /// polynomial in `m − 1`. Subnormal inputs are clamped to the smallest
    /// normal. Lanes with `x ≤ 0` return garbage; callers mask them.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn ln(x: __m256) -> __m256 {
        {
            let one = _mm256_set1_ps(1.0);
            let x = _mm256_max_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x0080_0000)));
            let bits = _mm256_castps_si256(x);
            let exp = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(0x7f));
            // The mantissa as a value in [0.5, 1).
            let m = _mm256_or_ps(
                _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(!0x7f80_0000))),
                _mm256_set1_ps(0.5),
            );
            let mut e = _mm256_add_ps(_mm256_cvtepi32_ps(exp), one);
            // m < √½: use 2m and e − 1, so the argument is in [√½ − 1, √2 − 1).
            let small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707_106_77), _CMP_LT_OQ);
            let tmp = _mm256_and_ps(m, small);
            let mut x = _mm256_sub_ps(m, one);
            e = _mm256_sub_ps(e, _mm256_and_ps(one, small));
            x = _mm256_add_ps(x, tmp);
            let z = _mm256_mul_ps(x, x);
            let mut y = _mm256_set1_ps(7.037_683_6e-2);
            for c in [
                -1.151_461e-1,
                1.167_699_9e-1,
                -1.242_014_1e-1,
                1.424_932_3e-1,
                -1.666_805_8e-1,
                2.000_071_4e-1,
                -2.499_999_4e-1,
                3.333_333e-1,
            ] {
                y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(c));
            }
            y = _mm256_mul_ps(_mm256_mul_ps(y, x), z);
            y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.121_944_4e-4), y);
            y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5), y);
            x = _mm256_add_ps(x, y);
            _mm256_fmadd_ps(e, _mm256_set1_ps(0.693_359_4), x)
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
        let base = data.as_ptr();
        // Pass 1: validate and sum in class order (plain adds, as the
        // reference does).
        let zero = _mm256_setzero_ps();
        let inf = _mm256_set1_ps(f32::INFINITY);
        let mut sum = zero;
        let mut ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        for k in 0..classes {
            // SAFETY: `(classes − 1)·stride + 8 ≤ data.len()`.
            let x = unsafe { load8(base.add(k * stride)) };
            // Finite and non-negative: 0 ≤ x < ∞ (false for NaN).
            let good = _mm256_and_ps(
                _mm256_cmp_ps(x, zero, _CMP_GE_OQ),
                _mm256_cmp_ps(x, inf, _CMP_LT_OQ),
            );
            ok = _mm256_and_ps(ok, good);
            sum = _mm256_add_ps(sum, x);
        }
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let dev = _mm256_and_ps(_mm256_sub_ps(sum, _mm256_set1_ps(1.0)), abs_mask);
        // |s − 1| > tolerance (or NaN) is invalid.
        ok = _mm256_and_ps(
            ok,
            _mm256_cmp_ps(dev, _mm256_set1_ps(SUM_TOLERANCE), _CMP_LE_OQ),
        );
        if _mm256_movemask_ps(ok) != 0xff {
            return None;
        }
        let divide = _mm256_cmp_ps(dev, _mm256_set1_ps(rounding_slack(classes)), _CMP_GT_OQ);
        let any_divide = _mm256_movemask_ps(divide) != 0;

        // Pass 2: normalise, track the top two, the prediction and q_y, and
        // accumulate Σ q ln q.
        let lab = unsafe { _mm256_loadu_si256(labels.as_ptr() as *const __m256i) };
        let mut top1 = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut top2 = top1;
        let mut pred = _mm256_setzero_si256();
        let mut py = zero;
        let mut plogp = zero;
        for k in 0..classes {
            let x = unsafe { load8(base.add(k * stride)) };
            // Lanes already normalised keep their values bit for bit; the
            // division is skipped when no lane needs it.
            let q = if any_divide {
                _mm256_blendv_ps(x, _mm256_div_ps(x, sum), divide)
            } else {
                x
            };
            let pos = _mm256_cmp_ps(q, zero, _CMP_GT_OQ);
            let t = _mm256_mul_ps(q, ln(q));
            plogp = _mm256_add_ps(plogp, _mm256_and_ps(t, pos));
            let gt1 = _mm256_cmp_ps(q, top1, _CMP_GT_OQ);
            let gt2 = _mm256_cmp_ps(q, top2, _CMP_GT_OQ);
            top2 = _mm256_blendv_ps(_mm256_blendv_ps(top2, q, gt2), top1, gt1);
            top1 = _mm256_blendv_ps(top1, q, gt1);
            let kv = _mm256_set1_epi32(k as i32);
            pred = _mm256_blendv_epi8(pred, kv, _mm256_castps_si256(gt1));
            let is_y = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lab, kv));
            py = _mm256_blendv_ps(py, q, is_y);
        }
        let mut t1 = [0.0f32; LANES];
        let mut t2 = [0.0f32; LANES];
        let mut pr = [0u32; LANES];
        let mut qy = [0.0f32; LANES];
        let mut pl = [0.0f32; LANES];
        // SAFETY: each array holds 8 lanes.
        unsafe {
            _mm256_storeu_ps(t1.as_mut_ptr(), top1);
            _mm256_storeu_ps(t2.as_mut_ptr(), top2);
            _mm256_storeu_si256(pr.as_mut_ptr() as *mut __m256i, pred);
            _mm256_storeu_ps(qy.as_mut_ptr(), py);
            _mm256_storeu_ps(pl.as_mut_ptr(), plogp);
        }
        Some(finish_lanes(classes, labels, &t1, &t2, &pr, &qy, &pl))
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
    pub unsafe fn softmin_weights(s: &[f32; LANES]) -> [f64; LANES] {
        // SAFETY: `s` holds 8 values.
        let v = unsafe { _mm256_loadu_ps(s.as_ptr()) };
        let t = _mm256_set1_pd(super::super::SOFTMIN_TEMPERATURE);
        let one = _mm256_set1_pd(1.0);
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
        let wl = exp_pd(_mm256_div_pd(_mm256_sub_pd(one, lo), t));
        let wh = exp_pd(_mm256_div_pd(_mm256_sub_pd(one, hi), t));
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

    fn check_against_scalar(c: usize, data: &[f32], labels: &[u32], n: usize) {
        let mut p = vec![0.0f32; c];
        let mut q = vec![0.0f32; c];
        for g in (0..n).step_by(LANES) {
            let lab: [u32; LANES] = std::array::from_fn(|j| labels[g + j]);
            let got = score_lanes(&data[g..], n, c, &lab).expect("valid");
            for j in 0..LANES {
                for k in 0..c {
                    p[k] = data[k * n + g + j];
                }
                let want = score_sample(&p, lab[j], false, &mut q).unwrap();
                let s = got[j];
                assert_eq!(s.pred, want.pred, "sample {}", g + j);
                assert_eq!(s.confidence.to_bits(), want.confidence.to_bits());
                assert_eq!(s.margin.to_bits(), want.margin.to_bits());
                assert_eq!(
                    s.least_confidence.to_bits(),
                    want.least_confidence.to_bits()
                );
                assert_eq!(s.self_confidence.to_bits(), want.self_confidence.to_bits());
                assert_eq!(
                    s.normalized_margin.to_bits(),
                    want.normalized_margin.to_bits()
                );
                assert!(
                    (s.entropy - want.entropy).abs() <= ENTROPY_TOLERANCE,
                    "sample {}: entropy {} vs {}",
                    g + j,
                    s.entropy,
                    want.entropy
                );
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
        for (c, n) in [(2, 64), (3, 56), (19, 512), (1000, 32)] {
            let (data, labels) = planar(c, n, c as u64);
            check_against_scalar(c, &data, &labels, n);
        }
    }

    #[test]
    fn polynomial_log_is_within_two_ulp_of_libm() {
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
            worst = worst.max((s.entropy as f64 - h).abs());
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
                let want = crate::backend::Softmin::weight_of(s[j]);
                worst = worst.max(((w[j] - want) / want).abs());
            }
        }
        // A few ulp of f64 (2.2e-16 each).
        assert!(worst < 1e-15, "worst relative error {worst}");
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
        let a = score_lanes(&h, n, c, &lab);
        let b = score_lanes(&widened, n, c, &lab);
        assert!(a.is_some());
        assert_eq!(a, b);
    }
}
