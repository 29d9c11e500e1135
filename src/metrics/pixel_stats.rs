//! Per-sample uncertainty and label-quality scores (a sample is one
//! classification row or one segmentation pixel).
//!
//! For a probability vector `p` over `C` classes and annotated label `y`
//! (definitions: `docs/definitions.md`, "Per-sample uncertainty scores"
//! and "Label quality"):
//!
//! | score | formula | range, meaning |
//! |---|---|---|
//! | `entropy` | `-Σ_k p_k ln p_k / ln C`, with `0 ln 0 = 0` | [0, 1], high = uncertain |
//! | `margin` | `p_(1) - p_(2)` | [0, 1], low = uncertain |
//! | `least_confidence` | `1 - p_(1)` | [0, 1], high = uncertain |
//! | `self_confidence` | `p_y` | [0, 1], low = label suspect |
//! | `normalized_margin` | `(p_y - max_{k≠y} p_k + 1) / 2` | [0, 1], low = label suspect |
//! | `brier` | `Σ_k (p_k - [k = y])² = Σ_k p_k² - 2 p_y + 1` | [0, 2], high = label suspect |
//!
//! The prediction is `ŷ = argmax p` with ties broken toward the lowest class
//! index, and the confidence is `p_(1)`.
//!
//! Input validation is part of the contract: every `p_k` must be finite and
//! non-negative and `|Σ p - 1| ≤ 1e-3`; within that tolerance `p` is divided
//! by its sum. With logits, `p = softmax(x)` (computed as
//! `exp(x - max x) / Σ exp(x - max x)`) and only finiteness is required.
//!
//! All per-sample arithmetic is `f32`, in class order, exactly as written here;
//! the CPU backend calls [`score_sample`] for every sample, so this function
//! defines the reference numbers.

use crate::scores::PerSample;

/// Tolerance on `|Σ_k p_k - 1|` below which a sample is renormalised silently
/// (divided by its sum; see [`normalise`]).
pub const SUM_TOLERANCE: f32 = 1e-3;

/// Why a sample's probabilities were rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Invalid {
    /// `p[class]` is NaN or infinite.
    NonFinite { class: usize, value: f32 },
    /// `p[class] < 0`.
    Negative { class: usize, value: f32 },
    /// The probabilities sum to `sum`, more than [`SUM_TOLERANCE`] from 1.
    NotNormalised { sum: f32 },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::NonFinite { class, value } => {
                write!(f, "class {class}: probability is not finite ({value})")
            }
            Invalid::Negative { class, value } => {
                write!(
                    f,
                    "class {class}: probability is negative ({value}); these look like logits: \
                     pass --logits to apply a softmax"
                )
            }
            Invalid::NotNormalised { sum } => write!(
                f,
                "probabilities sum to {sum}, not 1 (tolerance {SUM_TOLERANCE}); pass --logits if these are logits"
            ),
        }
    }
}

/// The scores of one sample: its prediction and the declared per-sample
/// scores ([`crate::scores::PerSample`], one field per line of the score
/// table's `sample` block).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SampleScores {
    /// `argmax p`, lowest index on ties.
    pub pred: u32,
    /// `p_(1)`, the top probability after renormalisation.
    pub confidence: f32,
    /// The declared per-sample scores.
    pub scores: PerSample<f32>,
}

/// Validate, normalise and score one sample.
///
/// `p` holds the `C ≥ 2` values of one sample (probabilities, or logits when
/// `logits` is set); `label` is the annotated class, which must be `< C`.
/// `scratch` must have the same length as `p`; it receives the normalised
/// probabilities.
#[inline]
pub fn score_sample(
    p: &[f32],
    label: u32,
    logits: bool,
    scratch: &mut [f32],
) -> Result<SampleScores, Invalid> {
    normalise(p, logits, scratch)?;
    Ok(score_normalised(scratch, label))
}

/// Check `p` and write the normalised probabilities into `q`.
///
/// * `logits`: `q = softmax(p)` (max-subtracted); values must be finite.
/// * otherwise every `p_k` must be finite and non-negative and `s = Σ p_k`
///   within [`SUM_TOLERANCE`] of 1. If `|s − 1| ≤ C·ε_f32` (the rounding of
///   the sum itself) `q = p` exactly; else `q = p / s`.
#[inline]
pub fn normalise(p: &[f32], logits: bool, q: &mut [f32]) -> Result<(), Invalid> {
    debug_assert_eq!(p.len(), q.len());
    if logits {
        let mut max = f32::NEG_INFINITY;
        for (class, &x) in p.iter().enumerate() {
            if !x.is_finite() {
                return Err(Invalid::NonFinite { class, value: x });
            }
            max = max.max(x);
        }
        let mut sum = 0.0f32;
        for (qk, &x) in q.iter_mut().zip(p) {
            *qk = (x - max).exp();
            sum += *qk;
        }
        for qk in q.iter_mut() {
            *qk /= sum;
        }
        return Ok(());
    }
    let mut sum = 0.0f32;
    for (class, &x) in p.iter().enumerate() {
        if !x.is_finite() {
            return Err(Invalid::NonFinite { class, value: x });
        }
        if x < 0.0 {
            return Err(Invalid::Negative { class, value: x });
        }
        sum += x;
    }
    if (sum - 1.0).abs() > SUM_TOLERANCE {
        return Err(Invalid::NotNormalised { sum });
    }
    if (sum - 1.0).abs() <= rounding_slack(p.len()) {
        // Already normalised up to the rounding of the sum itself: keep the
        // values bit for bit, so a confidence of exactly 1.0 stays 1.0.
        q.copy_from_slice(p);
    } else {
        for (qk, &x) in q.iter_mut().zip(p) {
            *qk = x / sum;
        }
    }
    Ok(())
}

/// `C · ε_f32`: a bound on the rounding error of an f32 sum of `C` values
/// that are already normalised. Sums within it of 1 are left untouched.
#[inline]
pub fn rounding_slack(classes: usize) -> f32 {
    classes as f32 * f32::EPSILON
}

/// Score probabilities that are already valid and normalised.
#[inline]
pub fn score_normalised(q: &[f32], label: u32) -> SampleScores {
    let c = q.len();
    let mut top1 = f32::NEG_INFINITY;
    let mut top2 = f32::NEG_INFINITY;
    let mut pred = 0u32;
    let mut plogp = 0.0f32;
    let mut sumsq = 0.0f32;
    for (k, &x) in q.iter().enumerate() {
        if x > 0.0 {
            plogp += x * x.ln();
        }
        sumsq += x * x;
        if x > top1 {
            top2 = top1;
            top1 = x;
            pred = k as u32;
        } else if x > top2 {
            top2 = x;
        }
    }
    finish(c, label, top1, top2, pred, q[label as usize], plogp, sumsq)
}

/// The scores of one sample from the quantities one pass over its
/// normalised probabilities gives: the top two values `top1 ≥ top2`, the
/// (lowest) index `pred` of `top1`, `py = q_y`, `plogp = Σ_{q_k>0} q_k ln q_k`
/// and `sumsq = Σ_k q_k²` (each summed in class order).
/// [`score_normalised`] ends here; the SIMD kernels of the CPU backend do
/// these same f32 operations lane by lane, so every score but the entropy
/// is bit-identical between them.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn finish(
    c: usize,
    label: u32,
    top1: f32,
    top2: f32,
    pred: u32,
    py: f32,
    plogp: f32,
    sumsq: f32,
) -> SampleScores {
    // The largest probability among the other classes.
    let other = if pred == label { top2 } else { top1 };
    let ln_c = (c as f32).ln();
    SampleScores {
        pred,
        confidence: top1,
        scores: PerSample {
            entropy: (-plogp / ln_c).max(0.0),
            margin: top1 - top2,
            least_confidence: 1.0 - top1,
            self_confidence: py,
            normalized_margin: (py - other + 1.0) * 0.5,
            brier: (sumsq - 2.0 * py + 1.0).max(0.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (a as f64 - b).abs() < 1e-6
    }

    #[test]
    fn hand_worked_three_classes() {
        // p = (0.7, 0.2, 0.1), label 1.
        let p = [0.7f32, 0.2, 0.1];
        let mut q = [0.0; 3];
        let s = score_sample(&p, 1, false, &mut q).unwrap();
        let h = -(0.7f64 * 0.7f64.ln() + 0.2 * 0.2f64.ln() + 0.1 * 0.1f64.ln()) / 3f64.ln();
        assert_eq!(s.pred, 0);
        assert!(close(s.scores.entropy, h), "{} vs {h}", s.scores.entropy);
        assert!(close(s.scores.margin, 0.5));
        assert!(close(s.scores.least_confidence, 0.3));
        assert!(close(s.scores.self_confidence, 0.2));
        // (0.2 - 0.7 + 1) / 2
        assert!(close(s.scores.normalized_margin, 0.25));
        // Brier: 0.7² + (0.2 - 1)² + 0.1² = 0.49 + 0.64 + 0.01.
        assert!(close(s.scores.brier, 1.14));
        assert!(close(s.confidence, 0.7));
    }

    #[test]
    fn label_is_argmax_uses_runner_up() {
        let p = [0.1f32, 0.6, 0.3];
        let mut q = [0.0; 3];
        let s = score_sample(&p, 1, false, &mut q).unwrap();
        // (0.6 - 0.3 + 1) / 2
        assert!(close(s.scores.normalized_margin, 0.65));
    }

    #[test]
    fn ties_break_to_lowest_index_and_one_hot_has_zero_entropy() {
        let mut q = [0.0; 4];
        let s = score_sample(&[0.25, 0.25, 0.25, 0.25], 3, false, &mut q).unwrap();
        assert_eq!(s.pred, 0);
        assert!(close(s.scores.entropy, 1.0));
        assert_eq!(s.scores.margin, 0.0);
        assert!(close(s.scores.normalized_margin, 0.5));
        let s = score_sample(&[0.0, 0.0, 1.0, 0.0], 2, false, &mut q).unwrap();
        assert_eq!(s.pred, 2);
        assert_eq!(s.scores.entropy, 0.0);
        assert_eq!(s.confidence, 1.0);
        assert_eq!(s.scores.normalized_margin, 1.0);
        // One-hot on the label: a perfect Brier score; on another class,
        // the worst one (1² + 1²).
        assert_eq!(s.scores.brier, 0.0);
        let s = score_sample(&[0.0, 0.0, 1.0, 0.0], 1, false, &mut q).unwrap();
        assert_eq!(s.scores.brier, 2.0);
    }

    #[test]
    fn renormalises_within_tolerance_and_rejects_beyond() {
        let mut q = [0.0; 2];
        // IMDB-style: exceeds 1 by 2e-5.
        let s = score_sample(&[0.50001, 0.50001], 0, false, &mut q).unwrap();
        assert_eq!(q[0], q[1]);
        assert!((q[0] - 0.5).abs() < 1e-7);
        assert_eq!(s.pred, 0);
        let e = score_sample(&[0.6, 0.5], 0, false, &mut q).unwrap_err();
        assert!(matches!(e, Invalid::NotNormalised { .. }), "{e:?}");
        let e = score_sample(&[1.1, -0.1], 0, false, &mut q).unwrap_err();
        assert_eq!(
            e,
            Invalid::Negative {
                class: 1,
                value: -0.1
            }
        );
        let e = score_sample(&[f32::NAN, 1.0], 0, false, &mut q).unwrap_err();
        assert!(matches!(e, Invalid::NonFinite { class: 0, .. }));
        let e = score_sample(&[0.5, f32::INFINITY], 0, true, &mut q).unwrap_err();
        assert!(matches!(e, Invalid::NonFinite { class: 1, .. }));
    }

    #[test]
    fn logits_softmax() {
        let mut q = [0.0; 2];
        // softmax(0, ln 3) = (0.25, 0.75)
        let s = score_sample(&[0.0, 3f32.ln()], 0, true, &mut q).unwrap();
        assert!(close(q[0], 0.25) && close(q[1], 0.75));
        assert_eq!(s.pred, 1);
        assert!(close(s.scores.self_confidence, 0.25));
        // Large logits do not overflow.
        let s = score_sample(&[1000.0, 0.0], 0, true, &mut q).unwrap();
        assert_eq!(s.confidence, 1.0);
    }

    #[test]
    fn exact_one_survives_rounding_level_sums() {
        // 1.0 + 1e-8 rounds to 1.0 in f32 but a division would still perturb
        // nothing; 1.0 + 3e-7 is a sum off by ~2 ulp: kept bit for bit, so the
        // confidence stays exactly 1.0 (the ECE edge case).
        let mut q = [0.0; 3];
        let p = [1.0f32, 3e-7, 0.0];
        let s = score_sample(&p, 0, false, &mut q).unwrap();
        assert_eq!(s.confidence, 1.0);
        assert_eq!(q, p);
        // 2e-5 over (beyond 3·ε) is divided out.
        let p = [1.0f32, 2e-5, 0.0];
        let s = score_sample(&p, 0, false, &mut q).unwrap();
        assert!(s.confidence < 1.0);
        assert!((s.confidence as f64 - 1.0 / 1.00002).abs() < 1e-7);
    }
}
