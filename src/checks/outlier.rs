//! Items far from every other ([`Outlier`]): the mean distance to the
//! item's k nearest neighbours on the run's one kNN graph, scored and
//! flagged as cleanlab's Datalab `OutlierIssueManager` does for features
//! (`cleanlab/datalab/internal/issue_manager/outlier.py`, cleanlab 2.9).

use std::sync::Mutex;

use super::{Check, Explained, Inputs, Need, Place, Threshold};
use crate::config::Task;
use crate::index::KnnGraph;
use crate::schema::{CheckDetails, OutlierSummary};

/// Datalab's `threshold` for features: an item is an outlier when its mean
/// kNN distance lies more than `1/0.37037 − 1` interquartile ranges above
/// the third quartile.
pub const DATALAB_THRESHOLD: f64 = 0.37037;

/// Datalab's floor of the scaling factor (`internal/constants.py`
/// `EPSILON`).
const EPSILON: f64 = 1e-6;

/// An item whose neighbours are all much farther than its peers' are: with
/// `a` its mean cosine distance to its k nearest neighbours and `s` the
/// median of `a` over every item of the graph (at least `100·ε₆₄`), Datalab
/// scores `q = exp(−a / max(s, 10⁻⁶))` (`q = 1` where `a < 100·ε₆₄/2`, its
/// precision fix for cosine); the score is `1 − q`. Flagged when `a > Q3 +
/// (1/0.37037 − 1)·(Q3 − Q1)`, the quartiles of `a` (linear interpolation,
/// numpy's default), i.e. when the score exceeds `1 − exp(−that/s)`.
/// Undefined for an item without neighbours. Needs embeddings.
#[derive(Default)]
pub struct Outlier {
    /// What the scores found, for the threshold and the explanation.
    memo: Mutex<Option<Fit>>,
}

/// The dataset's distance statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Neighbours per item in the graph.
    pub k: usize,
    /// `max(median(a), 100·ε₆₄)`.
    pub scale: f64,
    /// The mean distance above which an item is flagged.
    pub cutoff: f64,
    /// The score above which an item is flagged: `1 − exp(−cutoff/scale)`.
    pub score_cutoff: f64,
    /// The mean score.
    pub mean_score: f64,
}

/// The mean distance of row `i` of `graph` to its neighbours (`None`
/// without any).
pub fn mean_distance(graph: &KnnGraph, i: usize) -> Option<f64> {
    if (i + 1) * graph.k > graph.ids.len() {
        return None;
    }
    let (sum, n) = graph
        .neighbours(i)
        .fold((0.0f64, 0usize), |(s, n), (_, d)| (s + f64::from(d), n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// numpy's `percentile(v, q)` (linear) of sorted `v` (not empty).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Datalab's scores `1 − q` of the mean distances `a`, and the fit.
pub fn fit(a: &[Option<f64>], k: usize) -> (Vec<Option<f64>>, Option<Fit>) {
    let mut sorted: Vec<f64> = a.iter().flatten().copied().collect();
    if sorted.is_empty() {
        return (vec![None; a.len()], None);
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let scale = median.max(100.0 * f64::EPSILON).max(EPSILON);
    let tiny = 100.0 * f64::EPSILON / 2.0;
    let score = |a: f64| {
        if a < tiny {
            0.0
        } else {
            1.0 - (-a / scale).exp()
        }
    };
    let (q1, q3) = (percentile(&sorted, 25.0), percentile(&sorted, 75.0));
    let cutoff = q3 + (1.0 / DATALAB_THRESHOLD - 1.0) * (q3 - q1);
    let scores: Vec<Option<f64>> = a.iter().map(|a| a.map(score)).collect();
    let mean_score = scores.iter().flatten().sum::<f64>() / n as f64;
    let fit = Fit {
        k,
        scale,
        cutoff,
        score_cutoff: score(cutoff),
        mean_score,
    };
    (scores, Some(fit))
}

impl Outlier {
    fn fitted(&self) -> Option<Fit> {
        self.memo.lock().ok().and_then(|m| *m)
    }
}

impl Check for Outlier {
    fn name(&self) -> &'static str {
        "outlier"
    }
    fn raises_priority(&self) -> bool {
        true
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Embeddings]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "1 - exp(-a/s), a the mean cosine distance to the k nearest neighbours, s its median over \
         the items (cleanlab Datalab's outlier score q = exp(-a/s), as 1 - q)"
    }
    fn fitted(&self) -> bool {
        true
    }
    fn threshold(&self, _: Task) -> Threshold {
        // Known once the scores are fitted (NaN, which flags nothing, before).
        let v = self.fitted().map_or(f64::NAN, |f| f.score_cutoff);
        Threshold::above(v).because("mean kNN distance above Q3 + 1.7·IQR, Datalab's rule")
    }

    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let Some(result) = inputs.neighbors else {
            return vec![None; inputs.items.len()];
        };
        let a: Vec<Option<f64>> = (0..inputs.manifest.len())
            .map(|i| mean_distance(&result.graph, i))
            .collect();
        let (scores, fit) = fit(&a, result.graph.k);
        if let Ok(mut m) = self.memo.lock() {
            *m = fit;
        }
        inputs
            .items
            .iter()
            .map(|it| scores.get(it.index).copied().flatten())
            .collect()
    }

    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let (Some(result), Some(fit)) = (inputs.neighbors, self.fitted()) else {
            return Explained::default();
        };
        let reasons = inputs
            .items
            .iter()
            .filter(|it| flags.get(it.index).copied().unwrap_or(false))
            .filter_map(|it| {
                let d = mean_distance(&result.graph, it.index)?;
                Some((
                    it.index,
                    Place::First,
                    format!(
                        "outlier: mean cosine distance to its {} nearest neighbours {d:.4} \
                         (dataset median {:.4}; outliers above {:.4})",
                        fit.k, fit.scale, fit.cutoff
                    ),
                ))
            })
            .collect();
        Explained {
            reasons,
            summary: Some(CheckDetails::Outlier(OutlierSummary {
                method: "knn".into(),
                k: fit.k,
                median_distance: fit.scale,
                outlier_distance: fit.cutoff,
                score: fit.mean_score,
            })),
            drift: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_numpys_linear_ones() {
        // numpy.percentile([1, 2, 4, 8, 16], [25, 50, 75, 90]) = 2, 4, 8, 12.8
        let v = [1.0, 2.0, 4.0, 8.0, 16.0];
        for (q, want) in [(25.0, 2.0), (50.0, 4.0), (75.0, 8.0), (90.0, 12.8)] {
            assert!((percentile(&v, q) - want).abs() < 1e-12, "{q}");
        }
        assert_eq!(percentile(&[3.0], 75.0), 3.0);
    }

    #[test]
    fn hand_worked_fit() {
        // a = 1, 1, 1, 1, 10: median 1, Q1 = Q3 = 1, so the cutoff is 1 and
        // only the 10 lies above it; its score is 1 − e^−10.
        let a = [Some(1.0), Some(1.0), None, Some(1.0), Some(1.0), Some(10.0)];
        let (s, fitted) = fit(&a, 10);
        let fit = fitted.unwrap();
        assert_eq!((fit.scale, fit.cutoff), (1.0, 1.0));
        assert_eq!(s[2], None);
        assert!((s[5].unwrap() - (1.0 - (-10.0f64).exp())).abs() < 1e-15);
        assert!((s[0].unwrap() - (1.0 - (-1.0f64).exp())).abs() < 1e-15);
        assert!(s[5].unwrap() > fit.score_cutoff && s[0].unwrap() <= fit.score_cutoff);
        // Identical items (distance 0) are not outliers: score 0.
        let (s, _) = super::fit(&[Some(0.0), Some(0.5), Some(0.5)], 2);
        assert_eq!(s[0], Some(0.0));
    }
}
