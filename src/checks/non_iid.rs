//! Is the items' order independent of their embedding neighbourhoods
//! ([`NonIid`])? cleanlab Datalab's permutation test on the kNN graph
//! (`cleanlab/datalab/internal/issue_manager/noniid.py`, cleanlab 2.9),
//! on the run's one graph: neighbours in embedding space should lie at
//! random distances in the order, not close together.
//!
//! With `N` items in order (positions `0..N`) and the graph's neighbours
//! `j` of each item `i`, the index distances `Δ = |pos(i) − pos(j)|` are
//! compared with their distribution under a random order (item pairs
//! uniformly at random: `P(Δ = d) = (N − d) / (N(N−1)/2)`) by the largest
//! gap between the two CDFs (a Kolmogorov–Smirnov statistic, Datalab's
//! `_get_statistics`). The same statistic over 25 random orders (numpy's
//! legacy `permutation` from MT19937 seeded 0, as Datalab draws them)
//! gives a Gaussian kernel density (Scott's bandwidth); the p-value is its
//! mass at or above the observed statistic (scipy's
//! `gaussian_kde.integrate_box(obs, 100)` in closed form). Each item's
//! score is Datalab's per-item statistic: the area between the CDF of its
//! own index distances and the CDF expected for its position, over
//! `max(i, N − i)`, through `tanh` (Datalab's score `q = 1 − tanh(·)`, as
//! `1 − q`).

use rand_mt::Mt;

use super::{Check, Explained, Inputs, Need, Place, Threshold};
use crate::config::Task;
use crate::index::KnnGraph;
use crate::schema::{CheckDetails, NonIidSummary};

/// The dataset is non-IID when the p-value is below this (the issue's
/// 1 %; Datalab's default is 5 %).
pub const ALPHA: f64 = 0.01;

/// Random orders drawn for the test (Datalab's `num_permutations`).
pub const PERMUTATIONS: usize = 25;

/// The non-IID check: per-item scores, and one flag, on the item with the
/// highest score, when the dataset's p-value is below [`ALPHA`] (as
/// Datalab flags the item with the lowest quality score when its p-value
/// is below its threshold). Needs embeddings.
#[derive(Default)]
pub struct NonIid {
    /// The test, run once (its per-row scores shared, not copied, by
    /// `scores` and `explain`).
    memo: std::sync::Mutex<Option<std::sync::Arc<Test>>>,
}

/// The test's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub order: &'static str,
    pub statistic: f64,
    pub p_value: f64,
    /// Per row: the item's score (`None` without neighbours).
    pub scores: Vec<Option<f64>>,
    /// The row whose score is the flagging threshold: the highest score
    /// (first in order on ties; an item tied with it is flagged too), when
    /// `p_value < ALPHA`.
    pub flagged: Option<usize>,
}

/// The KS statistic of index distances, given as a histogram `hist[d]`
/// (`d` in `0..n`) of `m` values: `max_r |r/m − B(s_r)|` over the sorted
/// values `s_0 ≤ … ≤ s_m` (with `n − 1` appended, as Datalab appends it),
/// `B(d)` the CDF of a random pair's distance at `d` (at `d = 0`, its last
/// value, as numpy's index `−1` reads it).
pub fn ks_statistic<T: Copy + Into<u64>>(hist: &[T], bg_cdf: &[f64]) -> f64 {
    let m: u64 = hist.iter().map(|&c| c.into()).sum();
    if m == 0 || bg_cdf.is_empty() {
        return f64::NAN;
    }
    let n = hist.len();
    let mf = m as f64;
    let mut r: u64 = 0;
    let mut best = 0.0f64;
    for (d, &c) in hist.iter().enumerate() {
        // The appended `n − 1` joins the last value's run.
        let c = c.into() + u64::from(d == n - 1);
        if c == 0 {
            continue;
        }
        let b = if d == 0 {
            bg_cdf[bg_cdf.len() - 1]
        } else {
            bg_cdf[d - 1]
        };
        let (lo, hi) = (r as f64 / mf, (r + c - 1) as f64 / mf);
        best = best.max((lo - b).abs()).max((hi - b).abs());
        r += c;
    }
    best
}

/// `B`: the CDF of `|i − j|` for a random pair of `n` positions, summed
/// in order as numpy's `cumsum` does.
pub fn background_cdf(n: usize) -> Vec<f64> {
    if n < 2 {
        return Vec::new();
    }
    let pairs = (n as u128 * (n as u128 - 1)) as f64 / 2.0;
    let mut acc = 0.0;
    (1..n)
        .map(|d| {
            acc += (n - d) as f64 / pairs;
            acc
        })
        .collect()
}

/// numpy's legacy `RandomState.permutation(n)` from `rng`: a Fisher–Yates
/// shuffle from the end, each index drawn by masked rejection of 32-bit
/// draws (`random_interval`). `n < 2^32`.
pub fn permutation(rng: &mut Mt, n: usize) -> Vec<u32> {
    let mut a: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let max = i as u32;
        let mut mask = max;
        for s in [1, 2, 4, 8, 16] {
            mask |= mask >> s;
        }
        let j = loop {
            let v = rng.next_u32() & mask;
            if v <= max {
                break v;
            }
        };
        a.swap(i, j as usize);
    }
    a
}

/// The histogram of the index distances between every item and its
/// neighbours, the item at `row` placed at `pos[row]`. `T` holds a count of
/// up to `rows × k` ([`ks_of`] picks `u32` when that fits: half the
/// memory to hit at random, 25 times over).
fn distance_histogram<T: Copy + Default + std::ops::AddAssign + From<u8>>(
    graph: &KnnGraph,
    pos: &[u32],
) -> Vec<T> {
    let n = pos.len();
    let mut hist = vec![T::default(); n];
    for (i, &pi) in pos.iter().enumerate() {
        if (i + 1) * graph.k > graph.ids.len() {
            break;
        }
        for (j, _) in graph.neighbours(i) {
            if let Some(&pj) = pos.get(j) {
                hist[pi.abs_diff(pj) as usize] += T::from(1);
            }
        }
    }
    hist
}

/// `Φ`, the standard normal CDF.
fn ndtr(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// scipy's `gaussian_kde(samples).integrate_box(lo, 100)` in one
/// dimension (Scott's bandwidth `σ·P^(−1/5)`, `σ` the sample standard
/// deviation): the kernel mass from `lo` to 100. With every sample equal
/// (no bandwidth; scipy fails there) the share of samples at or above
/// `lo`.
pub fn kde_tail(samples: &[f64], lo: f64) -> f64 {
    let p = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / p;
    let var = samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (p - 1.0);
    let h = (var * p.powf(-2.0 / 5.0)).sqrt();
    if h.is_nan() || h <= 0.0 {
        return samples.iter().filter(|&&x| x >= lo).count() as f64 / p;
    }
    samples
        .iter()
        .map(|x| ndtr((100.0 - x) / h) - ndtr((lo - x) / h))
        .sum::<f64>()
        / p
}

/// Datalab's per-item statistic at position `i` of `n` with the sorted
/// index distances `xs` of its neighbours, as the score `tanh(stat /
/// max(i, n − i))`.
pub fn item_score(i: usize, n: usize, xs: &[u32]) -> Option<f64> {
    if xs.is_empty() || n < 2 {
        return None;
    }
    let (nf, d) = ((n - 1) as f64, i.min(n - 1 - i) as f64);
    let area = |x: f64| {
        if x <= d {
            x * x / nf
        } else if x <= nf - d {
            d * d / nf + (x - d) * (x + 3.0 * d) / (2.0 * nf)
        } else {
            d * d / nf + (nf - 2.0 * d) * (nf + 2.0 * d) / (2.0 * nf) + (x - (nf - d))
        }
    };
    let kk = xs.len() as f64;
    let mut pts = Vec::with_capacity(xs.len() + 2);
    pts.push(0.0);
    pts.extend(xs.iter().map(|&x| f64::from(x)));
    pts.push(nf);
    let stat: f64 = pts
        .windows(2)
        .enumerate()
        .map(|(j, w)| ((j as f64 / kk) * (w[1] - w[0]) - (area(w[1]) - area(w[0]))).abs())
        .sum();
    Some((stat / i.max(n - i) as f64).tanh())
}

/// The KS statistic of the graph's index distances with the rows at `pos`.
fn ks_of(graph: &KnnGraph, pos: &[u32], bg: &[f64]) -> f64 {
    if (graph.ids.len() as u64) < u64::from(u32::MAX) {
        ks_statistic(&distance_histogram::<u32>(graph, pos), bg)
    } else {
        ks_statistic(&distance_histogram::<u64>(graph, pos), bg)
    }
}

/// The test over every row of `graph`, the row at `r` at position
/// `pos[r]` (a permutation of `0..n`).
pub fn test(graph: &KnnGraph, pos: &[u32], order: &'static str) -> Test {
    let n = pos.len();
    let bg = background_cdf(n);
    let statistic = ks_of(graph, pos, &bg);
    use rayon::prelude::*;
    // The permutations come from one stream, in order; their statistics
    // are computed a thread's worth at a time (memory: 12 bytes an item
    // per permutation held).
    let mut rng = Mt::new(0);
    let mut permuted: Vec<f64> = Vec::with_capacity(PERMUTATIONS);
    let at_once = rayon::current_num_threads().clamp(1, PERMUTATIONS);
    while permuted.len() < PERMUTATIONS {
        let batch: Vec<Vec<u32>> = (0..at_once.min(PERMUTATIONS - permuted.len()))
            .map(|_| permutation(&mut rng, n))
            .collect();
        permuted.par_extend(batch.into_par_iter().map(|perm| {
            // The item at position p moves to position perm[p].
            let moved: Vec<u32> = pos.iter().map(|&p| perm[p as usize]).collect();
            ks_of(graph, &moved, &bg)
        }));
    }
    let p_value = if statistic.is_nan() || n < 3 {
        f64::NAN
    } else {
        kde_tail(&permuted, statistic).clamp(0.0, 1.0)
    };
    let scores: Vec<Option<f64>> = (0..n)
        .into_par_iter()
        .map(|r| {
            if (r + 1) * graph.k > graph.ids.len() {
                return None;
            }
            let me = pos[r];
            let mut xs: Vec<u32> = graph
                .neighbours(r)
                .filter_map(|(j, _)| pos.get(j).map(|&pj| me.abs_diff(pj)))
                .collect();
            xs.sort_unstable();
            item_score(me as usize, n, &xs)
        })
        .collect();
    let flagged = (p_value < ALPHA)
        .then(|| {
            // The highest score; on ties the first in order.
            (0..n)
                .filter_map(|r| scores[r].map(|s| (s, pos[r], r)))
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, _, r)| r)
        })
        .flatten();
    Test {
        order,
        statistic,
        p_value,
        scores,
        flagged,
    }
}

/// Each row's position in the tested order: the campaign's batches in
/// order, items order within a batch (`"batch"` or the time window's
/// name), else items order (`"items"`).
fn order(inputs: &Inputs<'_>) -> (Vec<u32>, &'static str) {
    let n = inputs.manifest.len();
    match inputs.campaign {
        Some(c) if c.of_row.len() == n => {
            let mut rows: Vec<u32> = (0..n as u32).collect();
            rows.sort_by_key(|&r| c.of_row[r as usize]);
            let mut pos = vec![0u32; n];
            for (p, &r) in rows.iter().enumerate() {
                pos[r as usize] = p as u32;
            }
            (pos, "time")
        }
        _ => ((0..n as u32).collect(), "items"),
    }
}

impl NonIid {
    fn tested(&self, inputs: &Inputs<'_>) -> Option<std::sync::Arc<Test>> {
        if let Some(t) = self.memo.lock().ok().and_then(|m| m.clone()) {
            return Some(t);
        }
        let result = inputs.neighbors?;
        let (pos, name) = order(inputs);
        let t = std::sync::Arc::new(test(&result.graph, &pos, name));
        if let Ok(mut m) = self.memo.lock() {
            *m = Some(t.clone());
        }
        Some(t)
    }
}

impl Check for NonIid {
    fn name(&self) -> &'static str {
        "non_iid"
    }
    fn raises_priority(&self) -> bool {
        true
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Embeddings]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "tanh(area between the CDF of the item's index distances to its neighbours and the CDF \
         expected at its position / max(i, N - i)) (cleanlab Datalab's non-IID score q, as 1 - q)"
    }
    fn fitted(&self) -> bool {
        true
    }
    fn threshold(&self, _: Task) -> Threshold {
        // One item, the highest score, when the dataset's p-value is below
        // ALPHA: its score is the threshold (NaN, flagging nothing,
        // otherwise).
        let cut = self
            .memo
            .lock()
            .ok()
            .and_then(|m| {
                let t = m.as_ref()?;
                let r = t.flagged?;
                t.scores.get(r).copied().flatten()
            })
            .unwrap_or(f64::NAN);
        Threshold::at_least(cut).because(
            "the item with the highest score, when the order is not independent (p < 0.01)",
        )
    }

    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let Some(t) = self.tested(inputs) else {
            return vec![None; inputs.items.len()];
        };
        inputs
            .items
            .iter()
            .map(|it| t.scores.get(it.index).copied().flatten())
            .collect()
    }

    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let Some(t) = self.tested(inputs) else {
            return Explained::default();
        };
        let reasons = inputs
            .items
            .iter()
            .filter(|it| flags.get(it.index).copied().unwrap_or(false))
            .map(|it| {
                (
                    it.index,
                    Place::Last,
                    format!(
                        "non-IID order: neighbours lie close together in {} order (p = {:.2e}); \
                         this item's the most",
                        if t.order == "items" {
                            "items.csv"
                        } else {
                            "time"
                        },
                        t.p_value
                    ),
                )
            })
            .collect();
        Explained {
            reasons,
            summary: Some(CheckDetails::NonIid(NonIidSummary {
                order: t.order.into(),
                statistic: t.statistic,
                p_value: t.p_value,
                non_iid: t.p_value < ALPHA,
                alpha: ALPHA,
                score: 1.0 - t.p_value,
            })),
            drift: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_numpys_from_seed_0() {
        // np.random.seed(0); np.random.permutation(10); np.random.permutation(7)
        let mut rng = Mt::new(0);
        assert_eq!(permutation(&mut rng, 10), [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]);
        assert_eq!(permutation(&mut rng, 7), [3, 1, 2, 6, 5, 0, 4]);
    }

    #[test]
    fn hand_worked_ks_statistic() {
        // Four items in a ring, each with its next as neighbour: distances
        // 1, 1, 1, 3; sorted with 3 appended: 1 1 1 3 3 (M = 4). A random
        // pair's distance: P(1) = 3/6, P(2) = 2/6, P(3) = 1/6, so the CDF
        // at the values is .5 .5 .5 1 1 against r/M = 0 .25 .5 .75 1: the
        // largest gap 0.5.
        let bg = background_cdf(4);
        assert_eq!(bg, vec![0.5, 0.5 + 2.0 / 6.0, 0.5 + 2.0 / 6.0 + 1.0 / 6.0]);
        assert_eq!(ks_statistic(&[0u64, 3, 0, 1], &bg), 0.5);
        assert_eq!(ks_statistic(&[0u32, 3, 0, 1], &bg), 0.5);
        let graph = KnnGraph {
            k: 1,
            ids: vec![1, 2, 3, 0],
            dist: vec![0.1; 4],
            method: "exact",
            loaded: 0,
        };
        assert_eq!(
            distance_histogram::<u32>(&graph, &[0, 1, 2, 3]),
            [0, 3, 0, 1]
        );
    }

    #[test]
    fn kde_tail_is_scipys() {
        // scipy.stats.gaussian_kde([.1, .12, .09, .15, .11]).integrate_box(.13, 100)
        let p = kde_tail(&[0.1, 0.12, 0.09, 0.15, 0.11], 0.13);
        assert!((p - 0.2637665092911289).abs() < 1e-12, "{p}");
        // No spread: the share at or above.
        assert_eq!(kde_tail(&[0.2; 4], 0.2), 1.0);
        assert_eq!(kde_tail(&[0.2; 4], 0.3), 0.0);
    }
}
