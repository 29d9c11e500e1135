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
//! `MCE = max_m |acc_m − conf_m|`. The dataset ECE pools every sample and is
//! not a mean of per-item ECEs. An item's table sums its confidences in
//! `f64`; the dataset's ([`PooledBins`]) adds the items' tables exactly, in
//! fixed point, so the pooled figures do not depend on the order the items
//! (or shards of items) are added in.

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

/// Fractional bits of [`PooledBins`]' fixed-point confidence sums.
const FIXED_FRAC: i32 = 64;

/// `x ≥ 0` in units of `2^-64`, exactly when `x` is a multiple of `2^-64`
/// (every `f64` sum of `f32` confidences ≥ `2^-40` is), otherwise rounded
/// to the nearest unit (ties to even). Negative, non-finite or huge
/// (`≥ 2^62`) values, which no confidence sum reaches, give 0.
fn to_fixed(x: f64) -> i128 {
    if !(x.is_finite() && x > 0.0 && x < (1u64 << 62) as f64) {
        return 0;
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = (bits & ((1u64 << 52) - 1)) as i128;
    let (mant, exp) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1i128 << 52), biased - 1075)
    };
    // x = mant · 2^exp, so x · 2^64 = mant · 2^(exp + 64).
    let shift = exp + FIXED_FRAC;
    if shift >= 0 {
        mant << shift
    } else if shift <= -64 {
        0
    } else {
        let s = (-shift) as u32;
        let (q, r) = (mant >> s, mant & ((1i128 << s) - 1));
        let half = 1i128 << (s - 1);
        q + i128::from(r > half || (r == half && q & 1 == 1))
    }
}

/// The dataset's reliability table: the sum of its items' tables, counts as
/// integers and confidence sums in fixed point (units of `2^-64`, `i128`),
/// so adding is exact and the result is the same in any order: one run, or
/// shards merged in any order, give the same bits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PooledBins {
    pub count: [u64; BINS],
    pub correct: [u64; BINS],
    /// Per bin, `Σ confidence_sum · 2^64` over the added tables.
    pub confidence_fixed: [i128; BINS],
}

impl PooledBins {
    /// Add one item's (or batch's) table.
    pub fn add(&mut self, t: &CalibrationBins) {
        for m in 0..BINS {
            self.count[m] += t.count[m];
            self.correct[m] += t.correct[m];
            self.confidence_fixed[m] += to_fixed(t.confidence_sum[m]);
        }
    }

    /// Add one sample (its `f32` confidence is exact in fixed point).
    pub fn add_sample(&mut self, confidence: f32, correct: bool) {
        let m = bin_index(confidence);
        self.count[m] += 1;
        self.correct[m] += correct as u64;
        self.confidence_fixed[m] += to_fixed(confidence as f64);
    }

    /// Add another pooled table.
    pub fn merge(&mut self, other: &PooledBins) {
        for m in 0..BINS {
            self.count[m] += other.count[m];
            self.correct[m] += other.correct[m];
            self.confidence_fixed[m] += other.confidence_fixed[m];
        }
    }

    /// Check a table read from a file (a checkpoint, a partial, a cache
    /// entry): in every bin `correct ≤ count` and `0 ≤ confidence_fixed ≤
    /// 2 · count · 2^64` (a confidence is in [0, 1]; 2 leaves room for any
    /// rounding), and the counts add up without overflow. Returns
    /// `(Σ count, Σ correct)`, or the bin that fails.
    pub fn check(&self) -> Result<(u64, u64), String> {
        let (mut n, mut k) = (0u64, 0u64);
        for m in 0..BINS {
            let (c, r, f) = (self.count[m], self.correct[m], self.confidence_fixed[m]);
            if r > c {
                return Err(format!("bin {m}: {r} correct of {c} samples"));
            }
            if f < 0 || f > (c as i128) << (FIXED_FRAC + 1) {
                return Err(format!(
                    "bin {m}: a confidence sum outside [0, 2] per sample ({c} samples)"
                ));
            }
            n = n
                .checked_add(c)
                .ok_or_else(|| "the bin counts overflow".to_string())?;
            k += r; // r <= c, so k <= n
        }
        Ok((n, k))
    }

    /// [`PooledBins::merge`], saturating instead of overflowing (for sums
    /// read from a file, whose totals are checked beforehand).
    pub fn merge_saturating(&mut self, other: &PooledBins) {
        for m in 0..BINS {
            self.count[m] = self.count[m].saturating_add(other.count[m]);
            self.correct[m] = self.correct[m].saturating_add(other.correct[m]);
            self.confidence_fixed[m] =
                self.confidence_fixed[m].saturating_add(other.confidence_fixed[m]);
        }
    }

    /// As a table of `f64` sums (each sum rounded once), for ECE, MCE and
    /// the reliability rows.
    pub fn bins(&self) -> CalibrationBins {
        let unit = (-FIXED_FRAC as f64).exp2();
        CalibrationBins {
            count: self.count,
            correct: self.correct,
            confidence_sum: self.confidence_fixed.map(|f| f as f64 * unit),
        }
    }
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
mod pooled_tests {
    use super::*;

    #[test]
    fn fixed_point_is_exact_for_confidence_sums_and_rounds_otherwise() {
        assert_eq!(to_fixed(1.0), 1i128 << 64);
        assert_eq!(to_fixed(0.5), 1i128 << 63);
        assert_eq!(to_fixed(3.25), 13i128 << 62);
        assert_eq!(to_fixed(0.0), 0);
        assert_eq!(to_fixed(-1.0), 0);
        assert_eq!(to_fixed(f64::NAN), 0);
        // 2^-64 is one unit; 1.5 · 2^-65 rounds to one unit, 2^-66 to none,
        // 2^-65 (a tie) to even (zero).
        assert_eq!(to_fixed((-64f64).exp2()), 1);
        assert_eq!(to_fixed(1.5 * (-65f64).exp2()), 1);
        assert_eq!(to_fixed((-66f64).exp2()), 0);
        assert_eq!(to_fixed((-65f64).exp2()), 0);
        assert_eq!(to_fixed(3.0 * (-65f64).exp2()), 2);
        // Every f32 confidence ≥ 2^-40 converts exactly and back.
        for c in [
            1.0f32 / 3.0,
            0.1,
            0.999_999_9,
            1.0 / 65536.0,
            (-40f32).exp2(),
        ] {
            let f = to_fixed(c as f64);
            assert_eq!(f as f64 * (-64f64).exp2(), c as f64, "{c}");
        }
    }

    #[test]
    fn pooled_tables_are_the_same_in_any_order() {
        // 300 item tables of random confidences, pooled in three orders and
        // in two "shards": identical bits each time, and within 1e-12 of the
        // plain f64 sum.
        let mut st = 7u64;
        let mut next = || {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (st >> 40) as f32 / (1u64 << 24) as f32
        };
        let tables: Vec<CalibrationBins> = (0..300)
            .map(|_| {
                let mut t = CalibrationBins::default();
                for _ in 0..50 {
                    let c = next().max(0.1);
                    t.add(c, next() < c);
                }
                t
            })
            .collect();
        let pool = |order: &[usize]| {
            let mut p = PooledBins::default();
            for &i in order {
                p.add(&tables[i]);
            }
            p
        };
        let forward: Vec<usize> = (0..300).collect();
        let backward: Vec<usize> = (0..300).rev().collect();
        let strided: Vec<usize> = (0..300).map(|i| (i * 7) % 300).collect();
        let a = pool(&forward);
        assert_eq!(a, pool(&backward));
        assert_eq!(a, pool(&strided));
        let mut shards = pool(&forward[200..]);
        shards.merge(&pool(&forward[..200]));
        assert_eq!(a, shards);
        let mut plain = CalibrationBins::default();
        for t in &tables {
            plain.merge(t);
        }
        let b = a.bins();
        assert_eq!(b.count, plain.count);
        assert_eq!(b.correct, plain.correct);
        for m in 0..BINS {
            assert!(
                (b.confidence_sum[m] - plain.confidence_sum[m]).abs() < 1e-12,
                "bin {m}"
            );
        }
        // i128 sums survive report-style JSON.
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<PooledBins>(&text).unwrap(), a);
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
