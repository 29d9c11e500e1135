//! Regions of the embedding space where the model fails the labels
//! ([`UnderperformingGroup`]): clusters of the run's one kNN graph whose
//! mean label quality lies far below the clusters' mean, as cleanlab's
//! Datalab finds them
//! (`cleanlab/datalab/internal/issue_manager/underperforming_group.py`,
//! cleanlab 2.9).

use super::{Check, Explained, Inputs, Need, Place, Threshold};
use crate::config::Task;
use crate::index::KnnGraph;
use crate::schema::{CheckDetails, UnderperformingSummary};
use crate::scores::Score;

/// DBSCAN's `eps`: neighbours within this cosine distance (scikit-learn's
/// default, as Datalab leaves it).
pub const EPS: f32 = 0.5;

/// DBSCAN's `min_samples`, the item itself counted (scikit-learn's
/// default), and Datalab's `min_cluster_samples`: smaller clusters are
/// not judged.
pub const MIN_SAMPLES: usize = 5;

/// A cluster is underperforming below this ratio of its mean label
/// quality to the clusters' mean (Datalab's `threshold`).
pub const RATIO: f64 = 0.1;

/// Clusters by DBSCAN on the kNN graph (an item's neighbourhood: itself
/// and its graph neighbours within [`EPS`]; core with at least
/// [`MIN_SAMPLES`]; scikit-learn's `dbscan_inner` order), clusters of
/// fewer than [`MIN_SAMPLES`] items dropped. With `sc` the self-confidence
/// `p[label]` of each labelled item, `m` its mean over the items of the
/// kept clusters and `m_c` over cluster `c`: an item of a cluster with
/// `m_c < m` has Datalab's quality `q = m_c / m`, every other item `q = 1`.
/// The score is `1 − q`, flagged above `1 − 0.1` (the cluster's mean label
/// quality under a tenth of the clusters'). Datalab flags only the one
/// worst cluster (chosen by a comparison of a cluster's quality with the
/// running ratio, as its code has it); this flags every cluster under the
/// ratio, so it finds at least what Datalab finds. Needs classification
/// and embeddings.
#[derive(Default)]
pub struct UnderperformingGroup {
    /// The clusters, found once for `scores` and `explain`.
    memo: std::sync::Mutex<Option<std::sync::Arc<Found>>>,
}

/// DBSCAN labels by row (`None`: noise), with the rows of `graph`
/// (`rows` of them).
pub fn dbscan(graph: &KnnGraph, rows: usize) -> Vec<Option<u32>> {
    let within = |i: usize| {
        let row = ((i + 1) * graph.k <= graph.ids.len()).then(|| graph.neighbours(i));
        std::iter::once(i).chain(
            row.into_iter()
                .flatten()
                .filter(move |&(j, d)| d <= EPS && j != i && j < rows)
                .map(|(j, _)| j),
        )
    };
    let core: Vec<bool> = (0..rows)
        .map(|i| within(i).count() >= MIN_SAMPLES)
        .collect();
    let mut label: Vec<Option<u32>> = vec![None; rows];
    let mut next = 0u32;
    let mut stack = Vec::new();
    for start in 0..rows {
        if label[start].is_some() || !core[start] {
            continue;
        }
        let mut i = start;
        loop {
            if label[i].is_none() {
                label[i] = Some(next);
                if core[i] {
                    stack.extend(within(i).filter(|&v| label[v].is_none()));
                }
            }
            match stack.pop() {
                Some(v) => i = v,
                None => break,
            }
        }
        next += 1;
    }
    label
}

/// What the clusters' label quality says: per row, Datalab's `q`, and the
/// summary facts.
pub struct Found {
    pub quality: Vec<f64>,
    pub cluster: Vec<Option<u32>>,
    /// Kept clusters (at least [`MIN_SAMPLES`] items).
    pub clusters: usize,
    /// `(cluster, items, mean self-confidence, ratio)` of the clusters
    /// under the clusters' mean, lowest ratio first.
    pub below: Vec<(u32, usize, f64, f64)>,
    pub mean: f64,
}

/// Judge the clusters of `graph` by `sc` (self-confidence by row; `None`:
/// unlabelled, left out of every mean).
pub fn judge(graph: &KnnGraph, sc: &[Option<f64>]) -> Found {
    let rows = sc.len();
    let cluster = dbscan(graph, rows);
    let n_ids = cluster
        .iter()
        .flatten()
        .map(|&c| c as usize + 1)
        .max()
        .unwrap_or(0);
    let mut size = vec![0usize; n_ids];
    let (mut sum, mut count) = (vec![0.0f64; n_ids], vec![0usize; n_ids]);
    for (r, c) in cluster.iter().enumerate() {
        if let Some(c) = c {
            size[*c as usize] += 1;
            if let Some(v) = sc[r] {
                sum[*c as usize] += v;
                count[*c as usize] += 1;
            }
        }
    }
    let kept = |c: usize| size[c] >= MIN_SAMPLES && count[c] > 0;
    let (all_sum, all_n) = (0..n_ids)
        .filter(|&c| kept(c))
        .fold((0.0, 0usize), |(s, n), c| (s + sum[c], n + count[c]));
    let mean = if all_n > 0 {
        all_sum / all_n as f64
    } else {
        f64::NAN
    };
    let mut ratio = vec![1.0f64; n_ids];
    let mut below = Vec::new();
    for c in (0..n_ids).filter(|&c| kept(c)) {
        let m = sum[c] / count[c] as f64;
        if m < mean {
            ratio[c] = m / mean;
            below.push((c as u32, size[c], m, ratio[c]));
        }
    }
    below.sort_by(|a, b| a.3.total_cmp(&b.3).then(a.0.cmp(&b.0)));
    let quality = cluster
        .iter()
        .map(|c| c.map_or(1.0, |c| ratio[c as usize]))
        .collect();
    Found {
        quality,
        cluster,
        clusters: (0..n_ids).filter(|&c| kept(c)).count(),
        below,
        mean,
    }
}

impl UnderperformingGroup {
    fn found(&self, inputs: &Inputs<'_>) -> Option<std::sync::Arc<Found>> {
        if let Some(f) = self.memo.lock().ok().and_then(|m| m.clone()) {
            return Some(f);
        }
        let f = std::sync::Arc::new(found(inputs)?);
        if let Ok(mut m) = self.memo.lock() {
            *m = Some(f.clone());
        }
        Some(f)
    }
}

fn found(inputs: &Inputs<'_>) -> Option<Found> {
    let result = inputs.neighbors?;
    let mut sc = vec![None; inputs.manifest.len()];
    for it in inputs.items {
        if let Some(slot) = sc.get_mut(it.index) {
            *slot = it.scores.get(Score::SelfConfidence);
        }
    }
    Some(judge(&result.graph, &sc))
}

impl Check for UnderperformingGroup {
    fn name(&self) -> &'static str {
        "underperforming_group"
    }
    fn raises_priority(&self) -> bool {
        true
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Classification, Need::Embeddings]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "1 - m_c/m for an item of a DBSCAN cluster of the kNN graph whose mean self-confidence m_c \
         lies below the clusters' mean m, else 0 (cleanlab Datalab's underperforming-group \
         score q, as 1 - q)"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(1.0 - RATIO)
            .because("its cluster's mean label quality is under a tenth of the clusters' mean")
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let Some(f) = self.found(inputs) else {
            return vec![None; inputs.items.len()];
        };
        inputs
            .items
            .iter()
            .map(|it| f.quality.get(it.index).map(|q| 1.0 - q))
            .collect()
    }
    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let Some(f) = self.found(inputs) else {
            return Explained::default();
        };
        let reasons = inputs
            .items
            .iter()
            .filter(|it| flags.get(it.index).copied().unwrap_or(false))
            .filter_map(|it| {
                let c = f.cluster.get(it.index).copied().flatten()?;
                let &(_, size, m, ratio) = f.below.iter().find(|b| b.0 == c)?;
                Some((
                    it.index,
                    Place::Last,
                    format!(
                        "underperforming group: its embedding cluster ({size} items) has mean \
                         label quality {m:.3}, {ratio:.3} of the clusters' {:.3}",
                        f.mean
                    ),
                ))
            })
            .collect();
        let worst = f.below.first().map_or(1.0, |b| b.3);
        Explained {
            reasons,
            summary: Some(CheckDetails::Underperforming(UnderperformingSummary {
                clusters: f.clusters,
                clusters_below_mean: f.below.len(),
                worst_ratio: worst,
                worst_items: f.below.first().map_or(0, |b| b.1),
                score: 1.0 - worst,
            })),
            drift: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two groups of six items, each item's neighbours the other five of
    /// its group (distance 0.1), and two loners far from everything.
    fn graph() -> KnnGraph {
        let k = 5;
        let mut ids = Vec::new();
        let mut dist = Vec::new();
        for i in 0..14u32 {
            if i < 12 {
                let g = i / 6 * 6;
                ids.extend((g..g + 6).filter(|&j| j != i));
                dist.extend([0.1f32; 5]);
            } else {
                ids.extend((0..5).map(|j| j + (i - 12)));
                dist.extend([0.9f32; 5]);
            }
        }
        KnnGraph {
            k,
            ids,
            dist,
            method: "exact",
            loaded: 0,
        }
    }

    #[test]
    fn hand_worked_clusters_and_quality() {
        let labels = dbscan(&graph(), 14);
        assert_eq!(&labels[..6], &[Some(0); 6]);
        assert_eq!(&labels[6..12], &[Some(1); 6]);
        assert_eq!(&labels[12..], &[None, None], "the loners are noise");
        // Group 0 at self-confidence 0.9, group 1 at 0.05: the clusters'
        // mean 0.475; group 1's ratio 0.05/0.475 = 0.105 (not flagged),
        // group 0 above the mean (q = 1).
        let mut sc: Vec<Option<f64>> = (0..14)
            .map(|i| Some(if i < 6 { 0.9 } else { 0.05 }))
            .collect();
        let f = judge(&graph(), &sc);
        assert_eq!(f.clusters, 2);
        assert!((f.mean - 0.475).abs() < 1e-12);
        assert_eq!(f.quality[0], 1.0);
        assert!((f.quality[7] - 0.05 / 0.475).abs() < 1e-12);
        assert_eq!(f.quality[12], 1.0, "noise");
        // At 0.04 the ratio 0.04/0.47 ≈ 0.085 is under 0.1.
        for v in sc.iter_mut().skip(6).take(6) {
            *v = Some(0.04);
        }
        let f = judge(&graph(), &sc);
        assert!(1.0 - f.quality[6] > 1.0 - RATIO);
        assert_eq!(f.below.len(), 1);
        assert_eq!((f.below[0].0, f.below[0].1), (1, 6));
    }
}
