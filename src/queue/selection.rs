//! What to label next: a batch of unlabelled items, uncertain and diverse
//! (`to_label.jsonl`, `report.json` `selection`).
//!
//! # Contract
//!
//! A queue, not a check: it lives beside the review queue, not in
//! [`crate::checks`] (its batch is chosen for the set, not by a threshold
//! on each item's score, see [`checks_section`]). It follows the checks'
//! contract all the same, so `report.json` lists it with them
//! ([`checks_section`]): it declares its input, the **unlabelled items** (an
//! empty `label` or `mask` cell, -1 in `labels.npy`), and is skipped with
//! that reason when there are none ([`run`] returns `None`; `report.json`
//! `checks.select_for_labelling` says why). It scores only those items
//! (the review checks of [`crate::checks::registry`] score only the labelled
//! ones), flags the batch, gives every row its reasons, and summarises the
//! batch ([`crate::schema::Selection`]). It reads the one kNN graph of the
//! neighbour stage.
//!
//! # Strategies (`--label-strategy`)
//!
//! Uncertainty is the **margin** `m = p_(1) − p_(2)` (classification: the
//! row's; segmentation: the softmin of the per-pixel margin,
//! `margin_softmin`), lowest first, or the **entropy**, highest first; ties
//! go to the lower row, and items without a value come last.
//!
//! * `margin`: the `K` lowest margins. Score `1 − m`.
//! * `entropy`: the `K` highest normalised entropies. Score: the entropy.
//! * `random`: `K` items drawn uniformly without replacement (ChaCha8
//!   seeded with `--seed`). No score.
//! * `diverse` (the default; `margin` when there are no embeddings): the
//!   idea of Cluster-Margin (Citovsky et al., "Batch Active Learning at
//!   Scale", NeurIPS 2021), with the clusters read off the kNN graph
//!   instead of built by a separate clustering. Items are taken in margin
//!   order, in three passes:
//!   1. an item is taken unless one of its `k` nearest neighbours is in the
//!      batch already, or it is a k-nearest neighbour of one that is, or a
//!      member of its near-duplicate cluster is;
//!   2. then, to fill the batch, the items passed over for a neighbour,
//!      still at most one per near-duplicate cluster;
//!   3. then, only when the pool has fewer near-duplicate clusters (and
//!      singletons) than the budget, the remaining near-duplicates.
//!
//!   So a near-duplicate never takes a slot while another cluster could,
//!   and a batch spreads over the pool's neighbourhoods as far as the
//!   budget allows, at `O(N·k)` after the sort. Score `1 − m`.
//!
//! **Per-class minimum** (`--min-per-class F`): `q = floor(F · K)` rows
//! are reserved for each predicted class present (ascending), the first
//! `q` of that class in the strategy's order; the rest of the batch is
//! filled in that order. Rows are written in the strategy's order.
//!
//! **Without `--label-budget`** every unlabelled item is listed, by the
//! strategy's uncertainty alone (`diverse` lists by margin: diversity is a
//! property of a batch).

use std::collections::HashSet;

use indexmap::IndexMap;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::config::{DatasetConfig, Task};
use crate::index::KnnGraph;
use crate::io::manifest::Manifest;
use crate::records::ItemResult;
use crate::schema;
use crate::scores::Score;

/// The selection strategies (`--label-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Lowest margin, spread over the kNN graph's neighbourhoods and at most
    /// one item per near-duplicate cluster (margin without embeddings).
    #[default]
    Diverse,
    /// Lowest margin between the two most likely classes.
    Margin,
    /// Highest normalised entropy.
    Entropy,
    /// Uniformly at random (seeded with --seed).
    Random,
}

impl Strategy {
    /// Its name in `report.json`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Diverse => "diverse",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::Random => "random",
        }
    }
}

/// The selection's options.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SelectOptions {
    /// `--label-budget K`; `None`: list every unlabelled item.
    pub budget: Option<usize>,
    pub strategy: Strategy,
    /// `--min-per-class`: a share of the batch per predicted class.
    pub min_per_class: f64,
    /// `--seed`.
    pub seed: u64,
}

/// One row of `to_label.jsonl`, in rank order.
#[derive(Debug, Clone, PartialEq)]
pub struct ToLabel {
    /// Position of the item in the unlabelled items given to [`run`].
    pub pos: usize,
    /// The strategy's score (higher: label sooner); `None` for `random`.
    pub score: Option<f64>,
    pub reasons: Vec<String>,
}

/// The batch and its `report.json` section.
#[derive(Debug, Clone)]
pub struct Selection {
    pub rows: Vec<ToLabel>,
    pub section: schema::Selection,
}

/// The name of the selection in `report.json` `checks`.
pub const NAME: &str = "select_for_labelling";

/// Its entry in `report.json` `checks`: ran (flagging the batch) or
/// skipped for want of unlabelled items.
pub fn check_summary(sel: Option<&Selection>) -> schema::CheckSummary {
    schema::CheckSummary {
        needs: vec!["unlabelled".into()],
        status: match sel {
            Some(_) => schema::CheckStatus::Ran,
            None => schema::CheckStatus::Skipped,
        },
        reason: sel.is_none().then(|| {
            "needs unlabelled items (an empty label or mask cell, or -1 in labels.npy)".into()
        }),
        flagged: sel.map(|s| s.rows.len()),
        summary: None,
    }
}

/// `report.json` `checks`: the review checks' entries
/// ([`crate::checks::section`]), then the selection's ([`check_summary`]).
///
/// The selection is listed there but is not a [`crate::checks::Check`]: it
/// scores the unlabelled items, which the checks never see, and its batch
/// is chosen for the set (one item per neighbourhood, per-class minimums,
/// a budget), so no threshold on an item's own score says whether the item
/// is in it, as a check's flags must.
pub fn checks_section(
    runs: &[crate::checks::CheckRun],
    sel: Option<&Selection>,
) -> IndexMap<String, schema::CheckSummary> {
    let mut section = crate::checks::section(runs);
    section.insert(NAME.into(), check_summary(sel));
    section
}

/// The uncertainty `pool[p]` is ranked by (margin: lower first).
fn margin_of(it: &ItemResult) -> Option<f64> {
    let m = it
        .scores
        .get(Score::MarginSoftmin)
        .or(it.scores.get(Score::Margin));
    m.filter(|v| v.is_finite())
}

/// Positions `0..pool.len()` ordered by `key` ascending (`None` last),
/// ties to the lower row.
fn order_by(pool: &[ItemResult], key: impl Fn(&ItemResult) -> Option<f64>) -> Vec<usize> {
    let keys: Vec<Option<f64>> = pool.iter().map(key).collect();
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.sort_by(|&a, &b| {
        let ka = keys[a].unwrap_or(f64::INFINITY);
        let kb = keys[b].unwrap_or(f64::INFINITY);
        ka.total_cmp(&kb)
            .then(keys[a].is_none().cmp(&keys[b].is_none()))
            .then(pool[a].index.cmp(&pool[b].index))
    });
    order
}

/// How a `diverse` row got its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// First of its neighbourhood.
    Spread,
    /// Next to an earlier row (`pos`) that holds it back.
    Near(usize),
    /// In the near-duplicate cluster of an earlier row (`pos`).
    Duplicate(usize),
}

/// The `diverse` order of the whole pool (see the module documentation):
/// positions with the pass that placed each.
fn diverse_order(pool: &[ItemResult], graph: &KnnGraph) -> Vec<(usize, Pass)> {
    let by_margin = order_by(pool, margin_of);
    let n_nodes = graph.ids.len() / graph.k.max(1);
    let mut pos_of = vec![usize::MAX; n_nodes];
    for (p, it) in pool.iter().enumerate() {
        if it.index < n_nodes {
            pos_of[it.index] = p;
        }
    }
    let neighbours = |p: usize| {
        let i = pool[p].index;
        let nb = if i < n_nodes {
            Some(graph.neighbours(i))
        } else {
            None
        };
        nb.into_iter()
            .flatten()
            .map(|(j, _)| pos_of[j])
            .filter(|&q| q != usize::MAX)
    };
    let mut out = Vec::with_capacity(pool.len());
    let mut taken = vec![false; pool.len()];
    // The earlier row that holds an item back, by position.
    let mut held: Vec<Option<usize>> = vec![None; pool.len()];
    let mut cluster_row: std::collections::HashMap<usize, usize> = Default::default();
    let take = |p: usize, pass: Pass, out: &mut Vec<(usize, Pass)>, taken: &mut Vec<bool>| {
        taken[p] = true;
        out.push((p, pass));
    };
    // Pass 1: spread.
    for &p in &by_margin {
        if pool[p]
            .cluster
            .is_some_and(|c| cluster_row.contains_key(&c))
        {
            continue;
        }
        if held[p].is_some() {
            continue;
        }
        if let Some(q) = neighbours(p).find(|&q| taken[q]) {
            held[p] = Some(q);
            continue;
        }
        take(p, Pass::Spread, &mut out, &mut taken);
        if let Some(c) = pool[p].cluster {
            cluster_row.insert(c, p);
        }
        for q in neighbours(p) {
            held[q].get_or_insert(p);
        }
    }
    // Pass 2: fill, one per cluster still.
    for &p in &by_margin {
        if taken[p]
            || pool[p]
                .cluster
                .is_some_and(|c| cluster_row.contains_key(&c))
        {
            continue;
        }
        let near = held[p].unwrap_or(p);
        take(p, Pass::Near(near), &mut out, &mut taken);
        if let Some(c) = pool[p].cluster {
            cluster_row.insert(c, p);
        }
    }
    // Pass 3: the near-duplicates left.
    for &p in &by_margin {
        if taken[p] {
            continue;
        }
        let rep = pool[p]
            .cluster
            .and_then(|c| cluster_row.get(&c).copied())
            .unwrap_or(p);
        take(p, Pass::Duplicate(rep), &mut out, &mut taken);
    }
    out
}

/// Choose what to label next among `pool` (the unlabelled items, in items
/// order) with the neighbour stage's `graph` when there is one; `None`
/// when the pool is empty (the check is skipped).
pub fn run(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    pool: &[ItemResult],
    graph: Option<&KnnGraph>,
    opts: &SelectOptions,
) -> Option<Selection> {
    if pool.is_empty() {
        return None;
    }
    let n = pool.len();
    let budget = opts.budget.map(|b| b.min(n));
    let (strategy, note) = match (opts.strategy, graph) {
        (Strategy::Diverse, None) => (
            Strategy::Margin,
            Some(
                "no embeddings: the margin alone ([inputs] embeddings adds diversity)".to_string(),
            ),
        ),
        (s, _) => (s, None),
    };
    // The strategy's full order, with each row's pass (diverse only).
    let order: Vec<(usize, Option<Pass>)> = match (strategy, graph, budget) {
        (Strategy::Diverse, Some(g), Some(_)) => diverse_order(pool, g)
            .into_iter()
            .map(|(p, pass)| (p, Some(pass)))
            .collect(),
        (Strategy::Diverse | Strategy::Margin, _, _) => order_by(pool, margin_of)
            .into_iter()
            .map(|p| (p, None))
            .collect(),
        (Strategy::Entropy, _, _) => order_by(pool, |it| it.scores.get(Score::Entropy).map(|e| -e))
            .into_iter()
            .map(|p| (p, None))
            .collect(),
        (Strategy::Random, _, _) => {
            let mut v: Vec<usize> = (0..n).collect();
            v.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed));
            v.into_iter().map(|p| (p, None)).collect()
        }
    };
    // The batch: each predicted class's minimum share, then by order.
    let k = budget.unwrap_or(n);
    let q = match budget {
        Some(k) => (opts.min_per_class * k as f64).floor() as usize,
        None => 0,
    };
    let mut chosen = vec![false; n];
    let mut reserved_for: Vec<Option<u32>> = vec![None; n];
    let mut count = 0;
    if q > 0 {
        let mut per: std::collections::BTreeMap<u32, usize> = Default::default();
        let plain: HashSet<usize> = order.iter().take(k).map(|&(p, _)| p).collect();
        let firsts =
            super::policy::first_per_class(order.iter().map(|&(p, _)| (p, pool[p].class)), q);
        for (c, members) in firsts {
            for p in members {
                if count < k && !chosen[p] {
                    chosen[p] = true;
                    count += 1;
                    *per.entry(c).or_default() += 1;
                    if !plain.contains(&p) {
                        reserved_for[p] = Some(c);
                    }
                }
            }
        }
    }
    for &(p, _) in &order {
        if count >= k {
            break;
        }
        if !chosen[p] {
            chosen[p] = true;
            count += 1;
        }
    }
    let ids = &manifest.ids;
    let names = &cfg.class_names;
    let class_name = |c: Option<u32>| {
        c.and_then(|c| names.get(c as usize))
            .map_or("?", String::as_str)
    };
    let knn_k = graph.map(|g| g.k);
    let rows: Vec<ToLabel> = order
        .iter()
        .filter(|&&(p, _)| chosen[p])
        .map(|&(p, pass)| {
            let it = &pool[p];
            let m = margin_of(it);
            let e = it.scores.get(Score::Entropy);
            let mut reasons = Vec::new();
            if let Some(c) = reserved_for[p] {
                reasons.push(format!(
                    "minimum share for predicted class {:?} (--min-per-class)",
                    class_name(Some(c))
                ));
            }
            let f3 = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
            let top = it.scores.get(Score::LeastConfidence).map(|lc| 1.0 - lc);
            let what = match (it.scores.is_segmentation(), strategy) {
                (_, Strategy::Random) => format!("random draw (--seed {})", opts.seed),
                (true, Strategy::Entropy) => format!(
                    "mean pixel entropy {} (softmin of the pixel margin {})",
                    f3(e),
                    f3(m)
                ),
                (true, _) => format!(
                    "softmin of the pixel margin {} (mean margin {}, mean entropy {}): its least sure pixels",
                    f3(m),
                    f3(it.scores.get(Score::Margin)),
                    f3(e)
                ),
                (false, Strategy::Entropy) => format!(
                    "normalised entropy {} (predicted {:?} at {})",
                    f3(e),
                    class_name(it.class),
                    f3(top)
                ),
                (false, _) => format!(
                    "margin {} between its two most likely classes (predicted {:?} at {})",
                    f3(m),
                    class_name(it.class),
                    f3(top)
                ),
            };
            reasons.push(what);
            match pass {
                Some(Pass::Spread) => reasons.push(format!(
                    "the least sure of its neighbourhood: none of its {} nearest neighbours ranks before it",
                    knn_k.unwrap_or(0)
                )),
                Some(Pass::Near(q)) => reasons.push(format!(
                    "fills the batch: {:?}, a nearest neighbour, ranks before it",
                    &ids[pool[q].index]
                )),
                Some(Pass::Duplicate(q)) => reasons.push(format!(
                    "near-duplicate of {:?}, which ranks before it: the pool has fewer clusters than the budget",
                    &ids[pool[q].index]
                )),
                None => {}
            }
            let score = match strategy {
                Strategy::Random => None,
                Strategy::Entropy => e,
                Strategy::Margin | Strategy::Diverse => m.map(|m| 1.0 - m),
            };
            ToLabel { pos: p, score, reasons }
        })
        .collect();
    let mut per_class: std::collections::BTreeMap<u32, usize> = Default::default();
    let mut unclassed = 0;
    for r in &rows {
        match pool[r.pos].class {
            Some(c) => *per_class.entry(c).or_default() += 1,
            None => unclassed += 1,
        }
    }
    let mut per_class: IndexMap<String, usize> = per_class
        .into_iter()
        .map(|(c, v)| (class_name(Some(c)).to_string(), v))
        .collect();
    if unclassed > 0 {
        per_class.insert("(none)".into(), unclassed);
    }
    let (clusters_in_batch, duplicates_in_batch) = match graph {
        Some(_) => {
            let mut seen = HashSet::new();
            let mut dups = 0;
            for r in &rows {
                if let Some(c) = pool[r.pos].cluster
                    && !seen.insert(c)
                {
                    dups += 1;
                }
            }
            (Some(seen.len()), Some(dups))
        }
        None => (None, None),
    };
    let section = schema::Selection {
        strategy: strategy.name().into(),
        requested: opts.strategy.name().into(),
        note,
        score: match strategy {
            Strategy::Random => "none (a random draw)",
            Strategy::Entropy => "normalised entropy (segmentation: its mean over the pixels)",
            _ => "1 - margin (segmentation: 1 - the softmin of the pixel margin)",
        }
        .into(),
        budget: opts.budget,
        unlabelled: n,
        selected: rows.len(),
        min_per_class: opts.min_per_class,
        per_class_minimum: q,
        stratify_by: match cfg.task {
            Task::Classification => "predicted class",
            Task::Segmentation => "the rarest class of the prediction",
        }
        .into(),
        seed: opts.seed,
        knn_k: (strategy == Strategy::Diverse).then_some(knn_k).flatten(),
        per_class,
        clusters_in_batch,
        duplicates_in_batch,
    };
    Some(Selection { rows, section })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::{ItemScores, Score};

    #[test]
    fn the_history_skips_this_check_by_its_name() {
        assert_eq!(NAME, crate::io::history::LABELLING_CHECK);
    }

    fn item(index: usize, margin: f64, cluster: Option<usize>) -> ItemResult {
        ItemResult {
            index,
            scores: ItemScores::default()
                .with(Score::Margin, Some(margin))
                .with(Score::Entropy, Some(1.0 - margin))
                .with(Score::LeastConfidence, Some(0.5)),
            priority: 0.0,
            row: None,
            cluster,
            extra: None,
            class: Some((index % 2) as u32),
            consensus: None,
            unlabelled: true,
        }
    }

    /// A graph where `groups` of nodes are each other's only neighbours
    /// (k = 2, padded).
    fn graph(n: usize, groups: &[Vec<usize>]) -> KnnGraph {
        let k = 2;
        let mut ids = vec![u32::MAX; n * k];
        let dist = vec![0.1; n * k];
        for g in groups {
            for &i in g {
                let others: Vec<usize> = g.iter().copied().filter(|&j| j != i).take(k).collect();
                for (s, j) in others.into_iter().enumerate() {
                    ids[i * k + s] = j as u32;
                }
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
    fn diverse_takes_one_per_neighbourhood_before_filling() {
        // Margins: node 0 lowest; 0,1,2 are one neighbourhood; 3 alone;
        // 4,5 a near-duplicate cluster that are not graph neighbours.
        let pool: Vec<ItemResult> = [0.01, 0.02, 0.03, 0.5, 0.2, 0.21]
            .iter()
            .enumerate()
            .map(|(i, &m)| item(i, m, if i >= 4 { Some(7) } else { None }))
            .collect();
        let g = graph(6, &[vec![0, 1, 2]]);
        let order: Vec<usize> = diverse_order(&pool, &g).iter().map(|x| x.0).collect();
        // Pass 1: 0 (holds 1, 2 back), 4 (cluster 7), 3; pass 2: 1, 2;
        // pass 3: 5 (cluster 7 used).
        assert_eq!(order, vec![0, 4, 3, 1, 2, 5]);
        // Margin alone would take 0, 1, 2 first.
        assert_eq!(order_by(&pool, margin_of)[..3], [0, 1, 2]);
    }
}
