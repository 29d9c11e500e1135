//! Expected calibration error with a 15-bin reliability table
//! (Guo et al. 2017; torchmetrics' `MulticlassCalibrationError`, l1 norm).
//!
//! For each sample the confidence is `c = p_(1)` (an `f32`) and the
//! correctness is `a = [ŷ == y]`. There are `M = 15` equal-width bins; the bin
//! index is `m = min(floor(c · M), M - 1)`, computed in `f32` on every
//! backend. Bins are `[m/M, (m+1)/M)` except the last, which is closed, so a
//! confidence of exactly 1.0 lands in bin 14 (torchmetrics 1.x puts it in a
//! hidden 16th bin).
//!
//! `ECE = Σ_m (n_m / N) · |acc_m − conf_m|` over non-empty bins and
//! `MCE = max_m |acc_m − conf_m|`. Counts are integers and confidence sums
//! are `f64`, so tables from shards or items merge exactly by addition; the
//! dataset ECE pools every sample and is not a mean of per-item ECEs.

use serde::{Deserialize, Serialize};

/// Number of reliability bins.
pub const BINS: usize = 15;

/// The bin of a confidence `c` in [0, 1]: `min(floor(c · 15), 14)`, in `f32`.
#[inline]
pub fn bin_index(confidence: f32) -> usize {
    // `as usize` truncates toward zero, which is `floor` for every value it
    // does not saturate: a non-negative `x` truncates to `floor(x)`, and
    // anything below 1 (negatives and NaN) goes to 0 either way. So no
    // `floor` call (a libm call on baseline x86-64) on the per-pixel path.
    // The clamp closes the last bin.
    ((confidence * BINS as f32) as usize).min(BINS - 1)
}

/// A reliability table: per bin, the sample count, the number of correct
/// samples and the sum of confidences.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CalibrationBins {
    pub count: [u64; BINS],
    pub correct: [u64; BINS],
    pub confidence_sum: [f64; BINS],
}

/// One row of the reliability table as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Samples whose confidence fell in the bin.
    pub count: u64,
    /// Mean confidence in the bin (null when empty).
    pub confidence: Option<f64>,
    /// Fraction of correct predictions in the bin (null when empty).
    pub accuracy: Option<f64>,
}

impl CalibrationBins {
    /// Add one sample.
    #[inline]
    pub fn add(&mut self, confidence: f32, correct: bool) {
        let m = bin_index(confidence);
        self.count[m] += 1;
        self.correct[m] += correct as u64;
        self.confidence_sum[m] += confidence as f64;
    }

    /// Add another table (exact for counts; `f64` sums for confidences).
    pub fn merge(&mut self, other: &CalibrationBins) {
        for m in 0..BINS {
            self.count[m] += other.count[m];
            self.correct[m] += other.correct[m];
            self.confidence_sum[m] += other.confidence_sum[m];
        }
    }

    /// Total number of samples.
    pub fn total(&self) -> u64 {
        self.count.iter().sum()
    }

    /// Total number of correct samples.
    pub fn total_correct(&self) -> u64 {
        self.correct.iter().sum()
    }

    /// `Σ_m (n_m / N) |acc_m − conf_m|`; `None` when there are no samples.
    pub fn ece(&self) -> Option<f64> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let sum: f64 = (0..BINS)
            .filter(|&m| self.count[m] > 0)
            .map(|m| self.count[m] as f64 * self.gap(m))
            .sum();
        Some(sum / n as f64)
    }

    /// `max_m |acc_m − conf_m|` over non-empty bins; `None` when empty.
    pub fn mce(&self) -> Option<f64> {
        (0..BINS)
            .filter(|&m| self.count[m] > 0)
            .map(|m| self.gap(m))
            .reduce(f64::max)
    }

    fn gap(&self, m: usize) -> f64 {
        let n = self.count[m] as f64;
        (self.correct[m] as f64 / n - self.confidence_sum[m] / n).abs()
    }

    /// The 15 rows of the reliability diagram.
    pub fn table(&self) -> Vec<ReliabilityBin> {
        (0..BINS)
            .map(|m| {
                let n = self.count[m];
                let mean = |s: f64| (n > 0).then(|| s / n as f64);
                ReliabilityBin {
                    count: n,
                    confidence: mean(self.confidence_sum[m]),
                    accuracy: mean(self.correct[m] as f64),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_edges() {
        assert_eq!(bin_index(0.0), 0);
        assert_eq!(bin_index(1.0), 14, "1.0 goes into the closed last bin");
        assert_eq!(bin_index(14.0 / 15.0), 14);
        // 1/15 in f32 times 15 rounds to exactly 1.0.
        assert_eq!(bin_index(1.0 / 15.0), 1);
        assert_eq!(bin_index(0.999_999), 14);
        assert_eq!(bin_index(0.5), 7);
        assert_eq!(bin_index(0.066), 0);
    }

    #[test]
    fn bin_index_is_the_floor_definition_everywhere() {
        // min(floor(c · 15), 14), saturating below 0, written out with `floor`.
        let by_floor = |c: f32| ((c * 15.0).floor() as usize).min(14);
        let mut xs = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            1.0,
            f32::MIN_POSITIVE,
            1.0 - f32::EPSILON,
            2.0,
        ];
        for k in 0..=15 {
            let edge = k as f32 / 15.0;
            xs.extend([edge, edge.next_up(), edge.next_down()]);
        }
        xs.extend((0..100_000).map(|i| i as f32 / 99_999.0));
        for c in xs {
            assert_eq!(bin_index(c), by_floor(c), "confidence {c:e}");
        }
        assert_eq!(bin_index(1.0), 14);
        assert_eq!(bin_index(1.0 / 15.0), 1);
        assert_eq!(bin_index((1.0f32 / 15.0).next_down()), 0);
    }

    #[test]
    fn hand_worked_ece_and_mce() {
        // Bin 14: confidences 1.0 (right) and 0.95 (wrong): conf 0.975, acc 0.5.
        // Bin 7: 0.5 right, 0.5 right: conf 0.5, acc 1.0.
        let mut b = CalibrationBins::default();
        b.add(1.0, true);
        b.add(0.95, false);
        b.add(0.5, true);
        b.add(0.5, true);
        let ece = b.ece().unwrap();
        let expected = 0.5 * (0.975f64 - 0.5).abs() + 0.5 * 0.5;
        assert!((ece - expected).abs() < 1e-7, "{ece} vs {expected}");
        let mce = b.mce().unwrap();
        assert!((mce - 0.5).abs() < 1e-12);
        let t = b.table();
        assert_eq!(t.len(), 15);
        assert_eq!(t[14].count, 2);
        assert_eq!(t[7].count, 2);
        assert_eq!(t[0].accuracy, None);
        assert_eq!(t[7].accuracy, Some(1.0));
    }

    #[test]
    fn merge_is_exact_pooling() {
        let mut a = CalibrationBins::default();
        let mut b = CalibrationBins::default();
        let mut all = CalibrationBins::default();
        for (i, c) in [0.1f32, 0.2, 0.33, 0.9, 1.0, 0.4].iter().enumerate() {
            let target = if i % 2 == 0 { &mut a } else { &mut b };
            target.add(*c, i % 3 == 0);
            all.add(*c, i % 3 == 0);
        }
        a.merge(&b);
        assert_eq!(a.count, all.count);
        assert_eq!(a.correct, all.correct);
        assert_eq!(CalibrationBins::default().ece(), None);
    }
}
