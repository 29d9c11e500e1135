//! Drift over a labelling campaign: per batch, and per annotator × batch,
//! what changed against that series' own earlier batches, and whether the
//! change is significant once every test of the run is accounted for.
//!
//! **Series.** The dataset (every labelled item) and each annotator (its
//! items in items.csv's `annotator` column, and its rows of
//! `annotations.csv`). A series' batches are those where it has items, in
//! campaign order ([`crate::io::campaign`]). An annotation row is in its
//! own batch when annotations.csv has time columns
//! ([`Campaign::annotation_batch`]), else in its item's.
//!
//! **Quantities and tests** (formulas and sources: docs/definitions.md,
//! "Drift"). For a series, a batch `t` is compared with the series' items
//! of the batches before it (its *baseline*, at least [`MIN_BASELINE`]
//! items):
//! - *p-chart* on each followed check's flagged share (and on the share of
//!   an annotator's labels that disagree with the leave-one-out consensus
//!   of the item's other annotators): with `x` of the batch's `n` items
//!   flagged, `X` of the baseline's `N`, the one-sided p-value is
//!   `P(H ≥ x)` for `H` hypergeometric (`N + n` items, `X + x` flagged,
//!   `n` drawn): the exact conditional p-chart, i.e. Fisher's exact test
//!   of the batch against the baseline (rises only). A test where nothing
//!   is flagged in the baseline nor the batch (`p ≡ 1`) is not run.
//! - *CUSUM* (Page 1954) on the same series: `z_t = Φ⁻¹(1 − p_t)` of the
//!   p-chart's p-value, `S_t = max(0, S_{t−1} + z_t − k)`, `k = 0.5`;
//!   tested once a run of `S > 0` lasts 2 batches, with the p-value bound
//!   `min(Σ_{L=1..T} Φ̄((S_t + kL)/√L), e^{−2kS_t})` (a union bound over
//!   the run's possible starts, `T` tests so far; and the drifted Brownian
//!   motion's), valid since each `z` is at most standard normal under no
//!   change.
//! - *means*, Welch's t-test of the batch's mean against the baseline's
//!   (Welch–Satterthwaite degrees of freedom, Student's t tail), with at
//!   least [`MIN_MEAN_ITEMS`] items on each side: the dataset's mean label
//!   quality (`self_confidence`), one-sided for a fall; segmentation, every
//!   series' mean mIoU against the prediction, one-sided for a fall, and
//!   per class each annotator's (without an `annotator` column, the
//!   dataset's) mean annotated-area bias ([`area_bias`]: `(a − p)/(a + p)`
//!   of the item's annotated and predicted pixels of the class, from the
//!   scores' confusion, [`ItemFact::areas`]), two-sided.
//! - *class share*, dataset: per class a p-chart of its share (rises), and
//!   the chi-square test of homogeneity of the batch's class counts
//!   against the baseline's (run when Cochran's rule holds: no expected
//!   count under 1, at most 20 % under 5). The population stability index
//!   is reported, not tested.
//!
//! **False alarms.** Every p-value of the run (all series, quantities,
//! statistics and batches) enters one Benjamini–Hochberg step-up
//! procedure at [`FDR`]: a test alarms when its adjusted p-value `q`
//! satisfies `1 − q ≥ ALARM_SCORE` (`q ≤ 1 %`), the score and threshold of
//! the `drift` check. Under no drift at all (every null true) BH keeps the
//! chance of any alarm at or under `FDR`.
//!
//! **Cost.** One pass over the items and the annotation rows into cells
//! (a hash map keyed by series and batch), then each series' batches once
//! per quantity: `O(items + annotation rows + cells × quantities +
//! batches × classes)` tests (segmentation: `+ cells × classes` for the
//! area bias, and an item's areas are the classes it holds), each an exact tail sum that stops once its
//! terms are negligible, and one sort of the p-values.

use std::collections::HashMap as StdHashMap;

/// A hash map with foldhash's per-process seeded hasher.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::io::annotations::Annotations;
use crate::io::campaign::Campaign;
use crate::metrics::agreement::{ClassCounts, krippendorff_alpha};
use crate::schema::{ByCheck, Drift, DriftAlarm, DriftBatch, DriftCell, DriftKind, DriftSeg};

/// The false discovery rate the alarms are controlled at.
pub const FDR: f64 = 0.01;
/// A test alarms when `1 − q ≥ ALARM_SCORE` (`q` its BH-adjusted p-value):
/// `1 − FDR`, exactly.
pub const ALARM_SCORE: f64 = 0.99;
/// A series' batch is tested once the series has this many items before it.
pub const MIN_BASELINE: u64 = 20;
/// The CUSUM's reference value `k` (in standard deviations).
pub const CUSUM_K: f64 = 0.5;
/// Items a side needs for a Welch test of a mean (label quality, mIoU,
/// area bias).
pub const MIN_MEAN_ITEMS: u64 = 30;
/// PSI's floor on a share (an empty class would make it infinite).
pub const PSI_FLOOR: f64 = 1e-4;

/// One labelled item, as the drift stage sees it.
#[derive(Debug, Clone, Copy)]
pub struct ItemFact<'a> {
    /// Its manifest row.
    pub row: usize,
    /// Its annotated class (classification).
    pub class: Option<u32>,
    /// Bit `j`: the `j`-th followed check flags it.
    pub flags: u64,
    /// Its label quality (`self_confidence`).
    pub label_quality: Option<f64>,
    /// The model's confidence `p_(1)` (`1 − least_confidence`).
    pub confidence: Option<f64>,
    /// Segmentation: its mask's mIoU against the prediction (`miou`).
    pub miou: Option<f64>,
    /// Segmentation: its mask's Boundary IoU against the prediction
    /// (`boundary_iou`).
    pub boundary_iou: Option<f64>,
    /// Segmentation: `(class, annotated pixels, predicted pixels)` of the
    /// classes its mask or prediction holds
    /// ([`crate::priority::SegFacts::areas`]); empty for classification.
    pub areas: &'a [(u32, u64, u64)],
}

/// An item's annotated-area bias on a class it or its prediction holds:
/// `(a − p) / (a + p)` for `a` annotated and `p` predicted pixels, in
/// `[−1, 1]` (`−1`: only predicted; `+1`: only annotated; `0`: the same
/// area), `tanh(½ ln(a / p))`, so a monotone, bounded form of the log
/// ratio; `None` when neither holds it (`a + p = 0`).
pub fn area_bias(annotated: u64, predicted: u64) -> Option<f64> {
    let t = annotated + predicted;
    (t > 0).then(|| (annotated as f64 - predicted as f64) / t as f64)
}

/// What [`analyse`] found: the `report.json` section and, per tested cell,
/// its verdict for the `drift` check.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub section: Drift,
    /// Keyed by (series: 0 the dataset, `1 + a` annotator `a`; batch).
    verdicts: HashMap<(u32, u32), Verdict>,
    /// Whether items are judged by their annotator's series (items.csv
    /// has an `annotator` column) or the dataset's.
    by_annotator: bool,
}

/// A tested cell's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The smallest BH-adjusted p-value of the cell's tests.
    pub q: f64,
    /// Why it alarms (empty when it does not).
    pub reason: String,
}

impl Analysis {
    /// The verdict on the cell of the item at manifest `row`: its
    /// annotator's series (with an `annotator` column; none for an item
    /// without annotator) or the dataset's, at its batch; `None` when that
    /// cell was not tested.
    pub fn verdict(&self, campaign: &Campaign, row: usize) -> Option<&Verdict> {
        let batch = *campaign.of_row.get(row)?;
        let series = match (&campaign.annotator_of_row, self.by_annotator) {
            (Some(of), true) => 1 + (*of.get(row)?)?,
            _ => 0,
        };
        self.verdicts.get(&(series, batch))
    }
}

/// Whether a BH-adjusted p-value alarms.
pub fn alarms(q: f64) -> bool {
    1.0 - q >= ALARM_SCORE
}

// ---------------------------------------------------------------------------
// Distributions.

/// `ln Γ(x)`, `x > 0` (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// Factorials tabulated: the p-charts' limits evaluate thousands of
/// hypergeometric tails on series of a few thousand items.
const LN_FACTORIALS: usize = 1 << 16;

/// `ln n!`: from a table of `ln_gamma(k + 1)` for `n <` [`LN_FACTORIALS`]
/// (the same values, computed once per process), else [`ln_gamma`].
fn ln_factorial(n: u64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    match usize::try_from(n) {
        Ok(i) if i < LN_FACTORIALS => TABLE.get_or_init(|| {
            (0..LN_FACTORIALS)
                .map(|k| ln_gamma(k as f64 + 1.0))
                .collect()
        })[i],
        _ => ln_gamma(n as f64 + 1.0),
    }
}

/// `P(H ≥ x)` for `H` hypergeometric: `n` drawn without replacement from
/// `total` items of which `marked` are marked. Sums the tail on the far
/// side of the mode, term by term by the ratio of successive
/// probabilities, until a term no longer changes the sum.
pub fn hypergeom_sf(x: u64, total: u64, marked: u64, n: u64) -> f64 {
    if marked > total || n > total {
        return f64::NAN;
    }
    let lo = (n + marked).saturating_sub(total);
    let hi = n.min(marked);
    if x <= lo {
        return 1.0;
    }
    if x > hi {
        return 0.0;
    }
    let (nn, kk, dd) = (total as f64, marked as f64, n as f64);
    let pmf = |k: u64| {
        (ln_choose(marked, k) + ln_choose(total - marked, n - k) - ln_choose(total, n)).exp()
    };
    let mode = (((n + 1) as f64) * ((marked + 1) as f64) / (nn + 2.0)).floor() as u64;
    if x > mode {
        // Upper tail, terms decreasing.
        let mut p = pmf(x);
        let mut sum = p;
        let mut k = x;
        while k < hi {
            let kf = k as f64;
            p *= (kk - kf) * (dd - kf) / ((kf + 1.0) * (nn - kk - dd + kf + 1.0));
            sum += p;
            k += 1;
            if p < sum * 1e-17 {
                break;
            }
        }
        sum.min(1.0)
    } else {
        // 1 − P(H ≤ x − 1), the lower tail summed downwards.
        let mut k = x - 1;
        let mut p = pmf(k);
        let mut sum = p;
        while k > lo {
            let kf = k as f64;
            p *= kf * (nn - kk - dd + kf) / ((kk - kf + 1.0) * (dd - kf + 1.0));
            sum += p;
            k -= 1;
            if p < sum * 1e-17 {
                break;
            }
        }
        (1.0 - sum).clamp(0.0, 1.0)
    }
}

/// The regularised upper incomplete gamma `Q(a, x)` (series below
/// `a + 1`, Lentz's continued fraction above; Numerical Recipes §6.2).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        let (mut ap, mut del) = (a, 1.0 / a);
        let mut sum = del;
        for _ in 0..10_000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * front).clamp(0.0, 1.0)
    } else {
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (front * h).clamp(0.0, 1.0)
    }
}

/// The regularised incomplete beta `I_x(a, b)` (Lentz's continued
/// fraction, on the side where it converges fast; Numerical Recipes
/// §6.4).
pub fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x > (a + 1.0) / (a + b + 2.0) {
        return (1.0 - beta_inc(b, a, 1.0 - x)).clamp(0.0, 1.0);
    }
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (front * h / a).clamp(0.0, 1.0)
}

/// `P(T ≥ t)` for `T` Student's t with `df > 0` degrees of freedom:
/// `½ I_{df/(df+t²)}(df/2, ½)` for `t ≥ 0`.
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    let tail = 0.5 * beta_inc(0.5 * df, 0.5, df / (df + t * t));
    if t >= 0.0 { tail } else { 1.0 - tail }
}

/// `P(χ²_df ≥ x)`.
pub fn chi_square_sf(x: f64, df: usize) -> f64 {
    gamma_q(df as f64 / 2.0, x / 2.0)
}

/// `Φ̄(z) = P(Z ≥ z)` for a standard normal `Z`.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z >= 0.0 {
        0.5 * gamma_q(0.5, z * z / 2.0)
    } else {
        1.0 - 0.5 * gamma_q(0.5, z * z / 2.0)
    }
}

/// `z` with `Φ̄(z) = p` (Acklam's rational approximation, one Halley
/// step); `+∞` at 0, `−∞` at 1.
pub fn normal_isf(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::INFINITY;
    }
    if p >= 1.0 {
        return f64::NEG_INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    // x = Φ⁻¹(p) (lower quantile); the answer is −x.
    let tail = |q: f64| {
        let r = (-2.0 * q.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    };
    let mut x = if p < 0.02425 {
        tail(p)
    } else if p > 1.0 - 0.02425 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // Halley: Φ(x) − p, with Φ(x) = Φ̄(−x).
    let e = normal_sf(-x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    if u.is_finite() {
        x -= u / (1.0 + x * u / 2.0);
    }
    -x
}

/// The CUSUM p-value bound at `s > 0` after `t` tested batches: the
/// smaller of the union bound over the run's possible lengths,
/// `Σ_{L=1..t} Φ̄((s + kL)/√L)`, and `e^{−2ks}` (the chance that a
/// Brownian motion with drift `−k` ever climbs `s`, which bounds its
/// walk at integer times), and at most 1.
pub fn cusum_p(s: f64, t: u64) -> f64 {
    union_bound(s, t, (-2.0 * CUSUM_K * s).exp().min(1.0))
}

/// `min(cap, Σ_{L=1..t} Φ̄((s + kL)/√L))`, summed until the terms no
/// longer change it or it reaches `cap`.
fn union_bound(s: f64, t: u64, cap: f64) -> f64 {
    let mut sum = 0.0;
    for l in 1..=t {
        let lf = l as f64;
        let term = normal_sf((s + CUSUM_K * lf) / lf.sqrt());
        sum += term;
        if sum >= cap {
            return cap;
        }
        // Past L = s/k the terms only fall.
        if lf > s / CUSUM_K && term < sum * 1e-12 {
            break;
        }
    }
    sum
}

/// The population stability index of shares `now` against `before`:
/// `Σ_k (a_k − b_k) ln(a_k / b_k)`, each share floored at [`PSI_FLOOR`].
pub fn psi(now: &[f64], before: &[f64]) -> f64 {
    now.iter()
        .zip(before)
        .map(|(&a, &b)| {
            let (a, b) = (a.max(PSI_FLOOR), b.max(PSI_FLOOR));
            (a - b) * (a / b).ln()
        })
        .sum()
}

/// The chi-square test of homogeneity of two count vectors (the batch
/// and its baseline) over the classes either has: `(χ², df, p)`; `None`
/// when fewer than 2 classes occur, a side is empty, or Cochran's rule
/// fails (an expected count under 1, or more than 20 % under 5).
pub fn chi_square_homogeneity(now: &[u64], before: &[u64]) -> Option<(f64, usize, f64)> {
    let n1: u64 = now.iter().sum();
    let n0: u64 = before.iter().sum();
    if n1 == 0 || n0 == 0 {
        return None;
    }
    let total = (n0 + n1) as f64;
    let (mut chi, mut classes, mut cells, mut small) = (0.0, 0usize, 0usize, 0usize);
    for (&a, &b) in now.iter().zip(before) {
        let col = (a + b) as f64;
        if col == 0.0 {
            continue;
        }
        classes += 1;
        for (obs, side) in [(a as f64, n1 as f64), (b as f64, n0 as f64)] {
            let e = side * col / total;
            if e < 1.0 {
                return None;
            }
            if e < 5.0 {
                small += 1;
            }
            cells += 1;
            chi += (obs - e) * (obs - e) / e;
        }
    }
    if classes < 2 || small * 5 > cells {
        return None;
    }
    let df = classes - 1;
    Some((chi, df, chi_square_sf(chi, df)))
}

/// Benjamini–Hochberg: each p-value's adjusted value
/// `q_(i) = min_{j ≥ i} min(1, m p_(j) / j)`, and the step-up cut-off
/// `(i*/m)·α` for the largest `i*` with `p_(i*) ≤ (i*/m)·α` (`α/m` when
/// there is none).
pub fn benjamini_hochberg(p: &[f64], alpha: f64) -> (Vec<f64>, f64) {
    let m = p.len();
    if m == 0 {
        return (Vec::new(), alpha);
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    let mut cutoff = alpha / m as f64;
    let mut found = false;
    for rank in (1..=m).rev() {
        let i = order[rank - 1];
        let v = (p[i] * m as f64 / rank as f64).min(1.0);
        running = running.min(v);
        q[i] = running;
        let step = rank as f64 * alpha / m as f64;
        if !found && p[i] <= step {
            cutoff = step;
            found = true;
        }
    }
    (q, cutoff)
}

/// Simes' combination of a family's p-values: `min_i n p_(i) / i`, at
/// most 1 (a valid p-value for "every null of the family holds" under
/// independence or positive dependence; Simes 1986).
pub fn simes(p: &[f64]) -> f64 {
    let mut v: Vec<f64> = p.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &x)| x * n / (i + 1) as f64)
        .fold(1.0, f64::min)
}

/// What [`two_level`] decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    /// Per test: its adjusted p-value `q = max(q_family, min(1, q_within · M / R))`;
    /// it alarms when `q ≤ α` ([`alarms`]).
    pub q: Vec<f64>,
    /// Per family: the p-value at or under which its tests alarm (a
    /// selected family: its within-family BH cut-off at `α R / M`; another:
    /// `α (R + 1) / (M n_f)`, where a lone test would first select it).
    pub cutoff: Vec<f64>,
    /// `R`: the families selected.
    pub selected: usize,
}

/// Two-level Benjamini–Hochberg (Benjamini & Bogomolov 2014) over tests
/// `p` in families (`family[i]` < `families`): BH at `alpha` over the
/// families' Simes p-values selects `R` of the `M` families; within each
/// selected family, BH at `alpha · R / M` over its tests. Controls the
/// false discovery rate over families at `alpha`, and the average one
/// within the selected families; with no drift at all, the chance of any
/// alarm is at most `alpha`.
pub fn two_level(p: &[f64], family: &[usize], families: usize, alpha: f64) -> Levels {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); families];
    for (i, &f) in family.iter().enumerate() {
        members[f].push(i);
    }
    let fam_p: Vec<f64> = members
        .iter()
        .map(|m| simes(&m.iter().map(|&i| p[i]).collect::<Vec<_>>()))
        .collect();
    let (fam_q, _) = benjamini_hochberg(&fam_p, alpha);
    let selected = fam_q.iter().filter(|&&q| alarms_at(q, alpha)).count();
    let m = families.max(1) as f64;
    let r = selected.max(1) as f64;
    let mut q = vec![1.0; p.len()];
    let mut cutoff = vec![0.0; families];
    for (f, mem) in members.iter().enumerate() {
        let ps: Vec<f64> = mem.iter().map(|&i| p[i]).collect();
        let (within, c) = benjamini_hochberg(&ps, alpha * r / m);
        for (k, &i) in mem.iter().enumerate() {
            q[i] = fam_q[f].max((within[k] * m / r).min(1.0));
        }
        cutoff[f] = if alarms_at(fam_q[f], alpha) {
            c
        } else {
            alpha * (selected + 1) as f64 / (m * mem.len().max(1) as f64)
        };
    }
    Levels {
        q,
        cutoff,
        selected,
    }
}

fn alarms_at(q: f64, alpha: f64) -> bool {
    if alpha == FDR { alarms(q) } else { q <= alpha }
}

// ---------------------------------------------------------------------------
// The analysis.

/// What a test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Quantity {
    /// The `j`-th followed check's flagged share.
    Check(usize),
    /// The share of annotation rows against the consensus.
    Disagreement,
    LabelQuality,
    /// Segmentation: the mean mIoU against the prediction.
    Miou,
    /// Segmentation: a class's mean annotated-area bias ([`area_bias`]).
    AreaBias,
    /// A class's share.
    Share,
    ClassMix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stat {
    PChart,
    Cusum,
    Mean,
    ChiSquare,
}

impl Stat {
    fn name(self) -> &'static str {
        match self {
            Stat::PChart => "p_chart",
            Stat::Cusum => "cusum",
            Stat::Mean => "mean",
            Stat::ChiSquare => "chi_square",
        }
    }
}

/// One test.
#[derive(Debug, Clone)]
struct Test {
    series: u32,
    class: Option<u32>,
    batch: u32,
    /// Position among the series' batches (the batch, for class tests).
    pos: u32,
    quantity: Quantity,
    stat: Stat,
    value: f64,
    baseline: Option<f64>,
    p: f64,
    /// For its limit: p-chart `(n, N, X)`; CUSUM `(t, 0, 0)`; mean: the
    /// standard error's bits; chi-square: `df`.
    aux: (u64, u64, u64),
}

/// Sums of one (series, batch) cell.
#[derive(Debug, Clone, Default)]
struct Acc {
    items: u64,
    flagged: Vec<u64>,
    lq_n: u64,
    lq_sum: f64,
    lq_sq: f64,
    conf_n: u64,
    conf_sum: f64,
    ann_n: u64,
    ann_dis: u64,
    /// Segmentation: mIoU, Boundary IoU, and per class the area bias
    /// (empty for classification).
    miou: Moments,
    biou: Moments,
    area: Vec<Moments>,
}

/// The count, sum and sum of squares of some values.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: u64,
    sum: f64,
    sq: f64,
}

impl Moments {
    fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum += v;
        self.sq += v * v;
    }

    fn merge(&mut self, o: &Moments) {
        self.n += o.n;
        self.sum += o.sum;
        self.sq += o.sq;
    }

    fn mean(&self) -> Option<f64> {
        mean(self.n, self.sum)
    }
}

/// Welch's t-test of the mean of `now` against that of `before`:
/// `(m₁, m₀, se, ν)`, `se = √(s₁²/n₁ + s₀²/n₀)` (`s²` the unbiased
/// variances) and the Welch–Satterthwaite degrees of freedom
/// `ν = se⁴ / ((s₁²/n₁)²/(n₁ − 1) + (s₀²/n₀)²/(n₀ − 1))`; `t = (m₁ − m₀)/se`
/// is referred to Student's t with `ν` degrees of freedom (Welch 1947).
/// `None` unless each side has at least [`MIN_MEAN_ITEMS`] values and
/// `se > 0`.
fn welch(now: &Moments, before: &Moments) -> Option<(f64, f64, f64, f64)> {
    if now.n < MIN_MEAN_ITEMS || before.n < MIN_MEAN_ITEMS {
        return None;
    }
    let var = |m: &Moments, mu: f64| {
        (m.sq / m.n as f64 - mu * mu).max(0.0) * m.n as f64 / (m.n - 1) as f64
    };
    let (m1, m0) = (now.sum / now.n as f64, before.sum / before.n as f64);
    let (w1, w0) = (
        var(now, m1) / now.n as f64,
        var(before, m0) / before.n as f64,
    );
    let se2 = w1 + w0;
    let nu = se2 * se2 / (w1 * w1 / (now.n - 1) as f64 + w0 * w0 / (before.n - 1) as f64);
    (se2 > 0.0).then(|| (m1, m0, se2.sqrt(), nu))
}

impl Acc {
    fn count(&self, q: Quantity) -> (u64, u64) {
        match q {
            Quantity::Check(j) => (self.items, self.flagged[j]),
            _ => (self.ann_n, self.ann_dis),
        }
    }
}

fn mean(n: u64, sum: f64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// Analyse the campaign: `items` the labelled items (their flags by the
/// followed `checks`, in that order, at most 64; segmentation, their mIoU,
/// Boundary IoU and areas), `annotations` the annotators' labels
/// (classification; each row in [`Campaign::annotation_batch`]).
pub fn analyse(
    campaign: &Campaign,
    classes: &[String],
    checks: &[&str],
    items: &[ItemFact<'_>],
    annotations: Option<&Annotations>,
) -> Analysis {
    let q_checks = checks.len().min(64);
    let n_batches = campaign.batches.len();
    let c = classes.len();
    // Annotator names: items.csv's, then annotations.csv's others.
    let mut names: Vec<String> = campaign.annotators.clone();
    let mut by_name: HashMap<String, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as u32))
        .collect();
    let ann_index: Vec<u32> = annotations
        .map(|ann| {
            ann.annotators
                .iter()
                .map(|n| {
                    let next = names.len() as u32;
                    let a = *by_name.entry(n.clone()).or_insert(next);
                    if a == next {
                        names.push(n.clone());
                    }
                    a
                })
                .collect()
        })
        .unwrap_or_default();
    // Cells.
    // Cells by (series, batch): a dense table when it is no larger than a
    // few entries per item and annotation row, else a hash map.
    let n_series = names.len() + 1;
    let rows_in = items.len() + annotations.map_or(0, Annotations::rows);
    let dense_size = n_series.saturating_mul(n_batches);
    let mut dense: Vec<u32> = if dense_size <= 8 * rows_in + 4096 {
        vec![u32::MAX; dense_size]
    } else {
        Vec::new()
    };
    let mut cells: HashMap<(u32, u32), usize> = HashMap::default();
    let mut keys: Vec<(u32, u32)> = Vec::new();
    let mut accs: Vec<Acc> = Vec::new();
    // Segmentation: any item with an mIoU or areas.
    let seg = items
        .iter()
        .any(|it| it.miou.is_some() || !it.areas.is_empty());
    let area_classes = if seg { c } else { 0 };
    let mut cell = |key: (u32, u32), accs: &mut Vec<Acc>| -> usize {
        let mut new = || {
            accs.push(Acc {
                flagged: vec![0; q_checks],
                area: vec![Moments::default(); area_classes],
                ..Acc::default()
            });
            keys.push(key);
            accs.len() - 1
        };
        if dense.is_empty() {
            *cells.entry(key).or_insert_with(new)
        } else {
            let at = key.0 as usize * n_batches + key.1 as usize;
            match dense[at] {
                u32::MAX => {
                    let i = new();
                    dense[at] = i as u32;
                    i
                }
                i => i as usize,
            }
        }
    };
    let mut class_counts = vec![vec![0u64; c]; n_batches];
    for it in items {
        let Some(&b) = campaign.of_row.get(it.row) else {
            continue;
        };
        let who = campaign
            .annotator_of_row
            .as_ref()
            .and_then(|v| v.get(it.row).copied().flatten());
        if let Some(k) = it.class
            && (k as usize) < c
        {
            class_counts[b as usize][k as usize] += 1;
        }
        for series in std::iter::once(0).chain(who.map(|a| a + 1)) {
            let i = cell((series, b), &mut accs);
            let acc = &mut accs[i];
            acc.items += 1;
            for (j, f) in acc.flagged.iter_mut().enumerate() {
                *f += (it.flags >> j) & 1;
            }
            if let Some(v) = it.label_quality.filter(|v| v.is_finite()) {
                acc.lq_n += 1;
                acc.lq_sum += v;
                acc.lq_sq += v * v;
            }
            if let Some(v) = it.confidence.filter(|v| v.is_finite()) {
                acc.conf_n += 1;
                acc.conf_sum += v;
            }
            if let Some(v) = it.miou.filter(|v| v.is_finite()) {
                acc.miou.add(v);
            }
            if let Some(v) = it.boundary_iou.filter(|v| v.is_finite()) {
                acc.biou.add(v);
            }
            for &(k, a, p) in it.areas {
                if let (Some(m), Some(v)) = (acc.area.get_mut(k as usize), area_bias(a, p)) {
                    m.add(v);
                }
            }
        }
    }
    // Annotation rows against the leave-one-out consensus; units by batch
    // for alpha.
    let mut units: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n_batches];
    if let Some(ann) = annotations {
        let mut labels: Vec<u32> = Vec::new();
        for (row, rows_of) in ann.items.iter().enumerate() {
            let Some(&b) = campaign.of_row.get(row) else {
                continue;
            };
            labels.clear();
            labels.extend(ann.labels(row).map(|(_, l)| l));
            if labels.is_empty() {
                continue;
            }
            let counts = ClassCounts::new(&labels);
            for (k, (a, x)) in rows_of.iter().enumerate() {
                let crate::io::annotations::Annotation::Label(l) = *x else {
                    continue;
                };
                let Some(cons) = counts.majority_without_one(l) else {
                    continue;
                };
                // The row's own batch (annotations.csv's time columns),
                // else its item's.
                let b = campaign.annotation_batch(row, k).unwrap_or(b);
                let who = ann_index.get(*a as usize).copied().unwrap_or(0);
                for series in [0, who + 1] {
                    let i = cell((series, b), &mut accs);
                    accs[i].ann_n += 1;
                    accs[i].ann_dis += u64::from(cons != l);
                }
            }
            if labels.len() >= 2 {
                units[b as usize].push(labels.clone());
            }
        }
    }
    // Each series' batches in order.
    let mut series_cells: Vec<Vec<(u32, usize)>> = vec![Vec::new(); n_series];
    for (i, &(s, b)) in keys.iter().enumerate() {
        series_cells[s as usize].push((b, i));
    }
    for v in &mut series_cells {
        v.sort_unstable();
    }
    let mut quantities: Vec<Quantity> = (0..q_checks).map(Quantity::Check).collect();
    quantities.push(Quantity::Disagreement);

    // The tests.
    let mut tests: Vec<Test> = Vec::new();
    for (s, list) in series_cells.iter().enumerate() {
        let s = s as u32;
        for &q in &quantities {
            let (mut nb, mut xb, mut t, mut cus, mut run) = (0u64, 0u64, 0u64, 0.0f64, 0u32);
            for (pos, &(b, i)) in list.iter().enumerate() {
                let (n, x) = accs[i].count(q);
                if n == 0 {
                    continue;
                }
                if nb >= MIN_BASELINE {
                    t += 1;
                    let base = xb as f64 / nb as f64;
                    let p = if xb + x == 0 {
                        1.0
                    } else {
                        let p = hypergeom_sf(x, nb + n, xb + x, n);
                        tests.push(Test {
                            series: s,
                            class: None,
                            batch: b,
                            pos: pos as u32,
                            quantity: q,
                            stat: Stat::PChart,
                            value: x as f64 / n as f64,
                            baseline: Some(base),
                            p,
                            aux: (n, nb, xb),
                        });
                        p
                    };
                    let z = normal_isf(p).clamp(-8.0, 8.0);
                    cus = (cus + z - CUSUM_K).max(0.0);
                    run = if cus > 0.0 { run + 1 } else { 0 };
                    if run >= 2 {
                        tests.push(Test {
                            series: s,
                            class: None,
                            batch: b,
                            pos: pos as u32,
                            quantity: q,
                            stat: Stat::Cusum,
                            value: cus,
                            baseline: Some(base),
                            p: cusum_p(cus, t),
                            aux: (t, 0, 0),
                        });
                    }
                }
                nb += n;
                xb += x;
            }
        }
    }
    // Dataset: mean label quality, class shares and mix.
    let mut chi_rows: Vec<Option<(f64, usize, f64)>> = vec![None; n_batches];
    let mut psi_rows: Vec<Option<f64>> = vec![None; n_batches];
    // Means: Welch against the series' earlier batches. The label quality
    // (dataset) and the mIoU (every series) one-sided, for a fall; the
    // area bias per class two-sided (annotators' series; without an
    // annotator column, the dataset's).
    let area_series = |s: usize| (s > 0) == campaign.annotator_of_row.is_some();
    for (s, list) in series_cells.iter().enumerate() {
        let mut lq0 = Moments::default();
        let mut miou0 = Moments::default();
        let mut area0 = vec![Moments::default(); area_classes];
        for (pos, &(b, i)) in list.iter().enumerate() {
            let a = &accs[i];
            let mut mean_test = |quantity, class, value, baseline, p, se: f64, nu: f64| {
                tests.push(Test {
                    series: s as u32,
                    class,
                    batch: b,
                    pos: pos as u32,
                    quantity,
                    stat: Stat::Mean,
                    value,
                    baseline: Some(baseline),
                    p,
                    aux: (se.to_bits(), nu.to_bits(), 0),
                });
            };
            if s == 0 {
                let now = Moments {
                    n: a.lq_n,
                    sum: a.lq_sum,
                    sq: a.lq_sq,
                };
                if let Some((m1, m0, se, nu)) = welch(&now, &lq0) {
                    let p = student_t_sf((m0 - m1) / se, nu);
                    mean_test(Quantity::LabelQuality, None, m1, m0, p, se, nu);
                }
                lq0.merge(&now);
            }
            if let Some((m1, m0, se, nu)) = welch(&a.miou, &miou0) {
                let p = student_t_sf((m0 - m1) / se, nu);
                mean_test(Quantity::Miou, None, m1, m0, p, se, nu);
            }
            miou0.merge(&a.miou);
            if area_series(s) {
                for (k, before) in area0.iter_mut().enumerate() {
                    if let Some((m1, m0, se, nu)) = welch(&a.area[k], before) {
                        let p = (2.0 * student_t_sf(((m1 - m0) / se).abs(), nu)).min(1.0);
                        mean_test(Quantity::AreaBias, Some(k as u32), m1, m0, p, se, nu);
                    }
                    before.merge(&a.area[k]);
                }
            }
        }
    }
    {
        let mut before = vec![0u64; c];
        let mut nb = 0u64;
        for b in 0..n_batches {
            let now = &class_counts[b];
            let n: u64 = now.iter().sum();
            if n > 0 && nb >= MIN_BASELINE {
                for k in 0..c {
                    if now[k] + before[k] == 0 {
                        continue;
                    }
                    tests.push(Test {
                        series: 0,
                        class: Some(k as u32),
                        batch: b as u32,
                        pos: b as u32,
                        quantity: Quantity::Share,
                        stat: Stat::PChart,
                        value: now[k] as f64 / n as f64,
                        baseline: Some(before[k] as f64 / nb as f64),
                        p: hypergeom_sf(now[k], nb + n, before[k] + now[k], n),
                        aux: (n, nb, before[k]),
                    });
                }
                let a: Vec<f64> = now.iter().map(|&x| x as f64 / n as f64).collect();
                let bb: Vec<f64> = before.iter().map(|&x| x as f64 / nb as f64).collect();
                psi_rows[b] = Some(psi(&a, &bb));
                if let Some((chi, df, p)) = chi_square_homogeneity(now, &before) {
                    chi_rows[b] = Some((chi, df, p));
                    // The class contributing most to the statistic.
                    let total = (n + nb) as f64;
                    let top = (0..c)
                        .filter(|&k| now[k] + before[k] > 0)
                        .map(|k| {
                            let e = n as f64 * (now[k] + before[k]) as f64 / total;
                            (k, (now[k] as f64 - e).powi(2) / e)
                        })
                        .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)))
                        .map(|(k, _)| k as u32);
                    tests.push(Test {
                        series: 0,
                        class: top,
                        batch: b as u32,
                        pos: b as u32,
                        quantity: Quantity::ClassMix,
                        stat: Stat::ChiSquare,
                        value: chi,
                        baseline: None,
                        p,
                        aux: (df as u64, 0, 0),
                    });
                }
            }
            for k in 0..c {
                before[k] += now[k];
            }
            nb += n;
        }
    }

    // False alarms: two-level BH over the families (series × quantity ×
    // statistic × class) and their batches.
    let p: Vec<f64> = tests.iter().map(|t| t.p).collect();
    let mut fam_index: HashMap<(u32, Option<u32>, Quantity, Stat), usize> = HashMap::default();
    let family: Vec<usize> = tests
        .iter()
        .map(|t| {
            let next = fam_index.len();
            *fam_index
                .entry((
                    t.series,
                    t.class.filter(|_| t.quantity != Quantity::ClassMix),
                    t.quantity,
                    t.stat,
                ))
                .or_insert(next)
        })
        .collect();
    let levels = two_level(&p, &family, fam_index.len(), FDR);
    let q = &levels.q;
    let limit_of = |i: usize| -> Option<f64> { limit(&tests[i], levels.cutoff[family[i]]) };

    let check_name = |q: Quantity| -> String {
        match q {
            Quantity::Check(j) => checks[j].to_string(),
            Quantity::Disagreement => "disagreement".into(),
            Quantity::LabelQuality => "label_quality".into(),
            Quantity::Miou => "miou".into(),
            Quantity::AreaBias => "area_bias".into(),
            Quantity::Share => "share".into(),
            Quantity::ClassMix => "class_mix".into(),
        }
    };
    let annotator_name = |s: u32| (s > 0).then(|| names[s as usize - 1].clone());
    let batch_name = |b: u32| campaign.batches[b as usize].name.clone();

    // p-chart limits per (series, batch, check).
    let mut limits: HashMap<(u32, u32, usize), f64> = HashMap::default();
    let mut class_limits: HashMap<(u32, u32), f64> = HashMap::default();
    for (i, t) in tests.iter().enumerate() {
        match (t.stat, t.quantity) {
            (Stat::PChart, Quantity::Check(j)) => {
                if let Some(l) = limit_of(i) {
                    limits.insert((t.series, t.batch, j), l);
                }
            }
            (Stat::PChart, Quantity::Share) => {
                if let (Some(l), Some(k)) = (limit_of(i), t.class) {
                    class_limits.insert((t.batch, k), l);
                }
            }
            _ => {}
        }
    }

    // Verdicts per (series, batch): the most significant test (the class
    // mix is the dataset's, not a cell's).
    let mut best: HashMap<(u32, u32), usize> = HashMap::default();
    for (i, t) in tests.iter().enumerate() {
        if matches!(t.quantity, Quantity::Share | Quantity::ClassMix) {
            continue;
        }
        let e = best.entry((t.series, t.batch)).or_insert(i);
        if (q[i], tests[i].p) < (q[*e], tests[*e].p) {
            *e = i;
        }
    }
    let pct = |x: f64| {
        if x < 0.01 && x > 0.0 {
            format!("{:.1} %", 100.0 * x)
        } else {
            format!("{:.0} %", 100.0 * x)
        }
    };
    let pfmt = |p: f64| {
        if p < 0.001 {
            format!("{p:.0e}")
        } else {
            format!("{p:.3}")
        }
    };
    let mut verdicts: HashMap<(u32, u32), Verdict> = HashMap::default();
    for (&key, &i) in &best {
        let t = &tests[i];
        let reason = if alarms(q[i]) {
            let who = match annotator_name(t.series) {
                Some(a) => format!("annotator {a}, batch {}", batch_name(t.batch)),
                None => format!("batch {}", batch_name(t.batch)),
            };
            let base = t.baseline.unwrap_or(f64::NAN);
            match (t.stat, t.quantity) {
                (Stat::PChart, Quantity::Check(j)) => format!(
                    "{who}: {} flagged by {} against {} before (p = {})",
                    pct(t.value),
                    checks[j],
                    pct(base),
                    pfmt(t.p)
                ),
                (Stat::PChart, _) => format!(
                    "{who}: {} of labels against the other annotators' consensus, {} before (p = {})",
                    pct(t.value),
                    pct(base),
                    pfmt(t.p)
                ),
                (Stat::Cusum, q) => format!(
                    "{who}: {} sustained above its {} before (CUSUM {:.1} over its limit {:.1}, p = {})",
                    match q {
                        Quantity::Check(j) => format!("share flagged by {}", checks[j]),
                        _ => "share of labels against the consensus".to_string(),
                    },
                    pct(base),
                    t.value,
                    limit_of(i).unwrap_or(f64::NAN),
                    pfmt(t.p)
                ),
                (_, Quantity::Miou) => format!(
                    "{who}: mean mIoU against the model {:.3}, {:.3} before (p = {})",
                    t.value,
                    base,
                    pfmt(t.p)
                ),
                (_, Quantity::AreaBias) => format!(
                    "{who}: class {}: annotated-area bias {:+.3} against {:+.3} before (p = {})",
                    t.class
                        .and_then(|k| classes.get(k as usize))
                        .map_or("?", String::as_str),
                    t.value,
                    base,
                    pfmt(t.p)
                ),
                (_, _) => format!(
                    "{who}: mean label quality {:.3} against {:.3} before (p = {})",
                    t.value,
                    base,
                    pfmt(t.p)
                ),
            }
        } else {
            String::new()
        };
        verdicts.insert(key, Verdict { q: q[i], reason });
    }

    // Alarms: runs of consecutive alarmed positions per series and metric.
    type Key = (DriftKind, u32, Option<u32>, Quantity);
    let mut runs: IndexMap<Key, Vec<(u32, usize)>> = IndexMap::new();
    for (i, t) in tests.iter().enumerate() {
        if !alarms(q[i]) {
            continue;
        }
        let kind = match (t.series, t.quantity) {
            (_, Quantity::Share | Quantity::ClassMix) => DriftKind::ClassShare,
            (_, Quantity::AreaBias) => DriftKind::AreaBias,
            (0, _) => DriftKind::Quality,
            _ => DriftKind::Annotator,
        };
        // The chi-square names a class, but its series is the mix.
        let class = match t.quantity {
            Quantity::ClassMix => None,
            _ => t.class,
        };
        runs.entry((kind, t.series, class, t.quantity))
            .or_default()
            .push((t.pos, i));
    }
    let mut alarm_list: Vec<(u32, DriftAlarm)> = Vec::new();
    for ((kind, series, _, _), mut v) in runs {
        v.sort_by(|a, b| a.0.cmp(&b.0).then(tests[a.1].p.total_cmp(&tests[b.1].p)));
        let mut start = 0;
        while start < v.len() {
            let mut end = start + 1;
            while end < v.len() && v[end].0 <= v[end - 1].0 + 1 {
                end += 1;
            }
            // The most significant test at the run's first position.
            let ti = v[start].1;
            let t = &tests[ti];
            alarm_list.push((
                t.batch,
                DriftAlarm {
                    kind,
                    annotator: annotator_name(series),
                    class: t.class.map(|k| classes[k as usize].clone()),
                    batch: batch_name(t.batch),
                    metric: format!("{}:{}", t.stat.name(), check_name(t.quantity)),
                    value: t.value,
                    baseline: t.baseline,
                    limit: limit_of(ti),
                    p: t.p,
                },
            ));
            start = end;
        }
    }
    alarm_list.sort_by_key(|a| a.0);
    let alarms_out: Vec<DriftAlarm> = alarm_list.into_iter().map(|(_, a)| a).collect();

    // Per batch and per annotator rows.
    let mut batch_alarm = vec![false; n_batches];
    let mut cell_alarm: HashMap<(u32, u32), bool> = HashMap::default();
    for (i, t) in tests.iter().enumerate() {
        if alarms(q[i]) {
            if t.series == 0 {
                batch_alarm[t.batch as usize] = true;
            }
            cell_alarm.insert((t.series, t.batch), true);
        }
    }
    let shared_names: Vec<Arc<str>> = checks.iter().take(q_checks).map(|&n| n.into()).collect();
    let flagged_of = |series: u32, b: u32, a: &Acc| {
        if a.items == 0 {
            return (ByCheck::new(), ByCheck::new());
        }
        let mut f = ByCheck::with_capacity(q_checks);
        let mut l = ByCheck::with_capacity(q_checks);
        for (j, name) in shared_names.iter().enumerate() {
            f.insert(name.clone(), a.flagged[j] as f64 / a.items as f64);
            l.insert(name.clone(), limits.get(&(series, b, j)).copied());
        }
        (f, l)
    };
    let agreement = |a: &Acc| (a.ann_n > 0).then(|| 1.0 - a.ann_dis as f64 / a.ann_n as f64);
    let seg_of = |a: &Acc| {
        seg.then(|| DriftSeg {
            mean_miou: a.miou.mean(),
            mean_boundary_iou: a.biou.mean(),
            area_bias: a.area.iter().map(Moments::mean).collect(),
        })
    };
    let dataset: HashMap<u32, usize> = series_cells[0].iter().copied().collect();
    let empty = Acc {
        flagged: vec![0; q_checks],
        area: vec![Moments::default(); area_classes],
        ..Acc::default()
    };
    let batches: Vec<DriftBatch> = (0..n_batches)
        .map(|b| {
            let a = dataset.get(&(b as u32)).map_or(&empty, |&i| &accs[i]);
            let (flagged, limits) = flagged_of(0, b as u32, a);
            let n: u64 = class_counts[b].iter().sum();
            let chi = chi_rows[b];
            DriftBatch {
                batch: campaign.batches[b].name.clone(),
                first_date: campaign.batches[b]
                    .first_day
                    .map(crate::io::campaign::format_day),
                items: a.items,
                flagged,
                limits,
                mean_label_quality: mean(a.lq_n, a.lq_sum),
                mean_confidence: mean(a.conf_n, a.conf_sum),
                alpha: krippendorff_alpha(units[b].iter().map(Vec::as_slice), c),
                annotations: a.ann_n,
                agreement_with_consensus: agreement(a),
                class_share: class_counts[b]
                    .iter()
                    .map(|&x| if n > 0 { x as f64 / n as f64 } else { 0.0 })
                    .collect(),
                class_limit: (0..c)
                    .map(|k| class_limits.get(&(b as u32, k as u32)).copied())
                    .collect(),
                chi_square: chi.map(|x| x.0),
                chi_square_df: chi.map(|x| x.1),
                chi_square_p: chi.map(|x| x.2),
                psi: psi_rows[b],
                alarm: batch_alarm[b],
                segmentation: seg_of(a),
            }
        })
        .collect();
    let mut annotators: Vec<DriftCell> = Vec::new();
    for (s, list) in series_cells.iter().enumerate().skip(1) {
        for &(b, i) in list {
            let a = &accs[i];
            let (flagged, limits) = flagged_of(s as u32, b, a);
            let key = (s as u32, b);
            annotators.push(DriftCell {
                annotator: names[s - 1].clone(),
                batch: batch_name(b),
                items: a.items,
                flagged,
                limits,
                mean_label_quality: mean(a.lq_n, a.lq_sum),
                annotations: a.ann_n,
                agreement_with_consensus: agreement(a),
                q: best.get(&key).map(|&i| q[i]),
                alarm: cell_alarm.get(&key).copied().unwrap_or(false),
                segmentation: seg_of(a),
            });
        }
    }
    let section = Drift {
        grouping: campaign.grouping.clone(),
        method: format!(
            "per series (the dataset, each annotator) and batch against the series' earlier \
             batches (at least {MIN_BASELINE} items): exact conditional p-chart (Fisher's exact \
             test, one-sided) on each check's flagged share and on the share of labels against \
             the consensus, one-sided CUSUM (k = {CUSUM_K}) on the p-chart's z-scores, Welch's \
             t-test on the mean label quality (one-sided) and, segmentation, on the mean mIoU \
             against the model (one-sided) and each class's mean annotated-area bias \
             (a - p)/(a + p) (two-sided; at least {MIN_MEAN_ITEMS} items a side), per-class \
             p-chart and chi-square test of the class mix; false alarms controlled by two-level Benjamini-Hochberg at {} % (Benjamini and \
             Bogomolov 2014): a family is a series' quantity and statistic (or a class's share, or \
             the class mix) over the batches; BH over the families' Simes p-values selects R of M, \
             and within a selected family BH at {} % x R/M over its batches",
            FDR * 100.0,
            FDR * 100.0
        ),
        fdr: FDR,
        tests: tests.len(),
        families: fam_index.len(),
        families_alarmed: levels.selected,
        checks: checks
            .iter()
            .take(q_checks)
            .map(|s| s.to_string())
            .collect(),
        batches,
        annotators,
        alarms: alarms_out,
    };
    Analysis {
        section,
        verdicts,
        by_annotator: campaign.annotator_of_row.is_some(),
    }
}

/// A test's limit at the BH cut-off `cutoff`: the value at or beyond which
/// it alarms (p-chart: the share; CUSUM: `S`; mean: the lower limit;
/// chi-square: the statistic). `None` when no value can reach it.
fn limit(t: &Test, cutoff: f64) -> Option<f64> {
    match t.stat {
        Stat::PChart => {
            let (n, nb, xb) = t.aux;
            let p_at = |k: u64| hypergeom_sf(k, nb + n, xb + k, n);
            if p_at(n) > cutoff {
                return None;
            }
            let (mut lo, mut hi) = (0u64, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if p_at(mid) <= cutoff {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            Some(lo as f64 / n as f64)
        }
        Stat::Cusum => {
            let t_count = t.aux.0;
            if cusum_p(64.0, t_count) > cutoff {
                return None;
            }
            Some(smallest_alarming(0.0, 64.0, 50, |s| {
                cusum_p(s, t_count) <= cutoff
            }))
        }
        Stat::Mean => {
            let (se, nu) = (f64::from_bits(t.aux.0), f64::from_bits(t.aux.1));
            // The t with `P(T ≥ t) = tail`.
            let t_at =
                |tail: f64| smallest_alarming_from(64.0, 60, |x| student_t_sf(x, nu) <= tail);
            let m0 = t.baseline?;
            Some(match t.quantity {
                // Two-sided, on the side of the value.
                Quantity::AreaBias if t.value >= m0 => m0 + t_at(cutoff / 2.0)? * se,
                Quantity::AreaBias => m0 - t_at(cutoff / 2.0)? * se,
                _ => m0 - t_at(cutoff)? * se,
            })
        }
        Stat::ChiSquare => {
            let df = t.aux.0 as usize;
            smallest_alarming_from(1e3 + 100.0 * df as f64, 100, |x| {
                chi_square_sf(x, df) <= cutoff
            })
        }
    }
}

/// [`smallest_alarming`] over `[0, hi]`, `hi` doubled from `start` until
/// `alarms(hi)` holds; `None` when it does not by 1e12.
fn smallest_alarming_from(start: f64, steps: u32, alarms: impl Fn(f64) -> bool) -> Option<f64> {
    let mut hi = start;
    while !alarms(hi) {
        hi *= 2.0;
        if hi > 1e12 {
            return None;
        }
    }
    Some(smallest_alarming(0.0, hi, steps, alarms))
}

/// Bisection of `[lo, hi]` (`alarms(hi)` true, `alarms` monotone) in
/// `steps` halvings: the upper end of the last bracket, a value at which
/// `alarms` holds within `(hi − lo) / 2^steps` of the smallest one.
fn smallest_alarming(mut lo: f64, mut hi: f64, steps: u32, alarms: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..steps {
        let mid = 0.5 * (lo + hi);
        if alarms(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

#[cfg(test)]
mod tests;
