//! The agreement stage (with `[inputs] annotations`, classification):
//! how far the annotators of `annotations.csv` agree, per dataset, class,
//! pair and annotator (`report.json` `agreement`), and per item
//! (`annotator_agreement` and the majority, from which [`disagreement`]
//! gives the priority raise of [`crate::priority::agreement_raise`]; the
//! pipeline applies it in [`crate::priority::priorities`]).
//!
//! The formulas are in [`crate::metrics::agreement`]. Per annotator `a`:
//! `items` it labelled; its consensus on an item is the strict majority of
//! the item's *other* annotators (leave-one-out; ties and items with no
//! other annotator are left out); `agreement_with_consensus` and
//! `kappa_with_consensus` (Cohen's) compare its labels with those;
//! `agreement_with_model` and `agreement_with_official` with the model's
//! predicted class and the item's own label. Cohen's kappa is computed for
//! every annotator pair sharing at least [`MIN_PAIR_ITEMS`] items (over
//! the items with at most [`MAX_COHEN_ANNOTATORS`] annotators) and at most
//! [`MAX_COHEN_PAIRS`] of them are listed; the per-class alpha is
//! one-vs-rest (the class against every other).
//!
//! **Bounds.** Nothing is sized by `annotators²`: per item the labels are
//! counted by class ([`ClassCounts`], `O(m log m)` for `m` annotators, for
//! its share of agreeing pairs, its majority and each annotator's
//! leave-one-out consensus), the pair tables hold only pairs that share
//! items and are built one annotator at a time ([`cohen_pairs`]), and the
//! report lists a bounded number of pairs. Memory follows the rows of
//! `annotations.csv`; the pair work is at most
//! `(MAX_COHEN_ANNOTATORS − 1) / 2` updates per row. Segmentation: an item
//! has at most [`MAX_SEG_ANNOTATORS`] masks (refused above, when the
//! annotations are read), so its pixel-by-pixel pair comparisons are
//! bounded.

use crate::config::DatasetConfig;
use crate::error::Result;
use crate::io::annotations::Annotations;
use crate::io::manifest::Manifest;
use crate::metrics::agreement::{
    ClassCounts, CohenSums, cohen_kappa_of, fleiss_kappa, krippendorff_alpha,
};
use crate::records::ItemResult;
use crate::schema::{
    Agreement, AnnotatorRow, ClassAlpha, CohenPair, SegAgreement, SegAnnotatorRow,
    SegClassAgreement,
};
use crate::scores::Score;

/// Items an annotator pair must share for its Cohen's kappa.
pub const MIN_PAIR_ITEMS: usize = 20;

/// Classification: an item's annotator pairs enter the pairwise Cohen's
/// kappa tables only when it has at most this many annotators (CIFAR-10H
/// has about 50 an image). An item with more (a survey-style item rated by
/// thousands) is left out of those tables only, and counted in
/// `agreement.cohen_items_left_out`; it counts in every other figure.
/// So the pair work is at most `(MAX_COHEN_ANNOTATORS − 1) / 2` pair
/// updates per row of `annotations.csv`.
pub const MAX_COHEN_ANNOTATORS: usize = 100;

/// Classification: at most this many annotator pairs are listed in
/// `agreement.cohen_kappa`: the pairs that share the most items (ties:
/// the earlier pair in annotator order), listed in annotator order;
/// `agreement.cohen_pairs` counts them all.
pub const MAX_COHEN_PAIRS: usize = 1000;

/// Segmentation: an item may have at most this many annotator masks (every
/// pair of them is compared, pixel by pixel); an item with more is refused,
/// naming it.
pub const MAX_SEG_ANNOTATORS: usize = 32;

/// Default `--min-annotator-kappa`.
pub const DEFAULT_MIN_ANNOTATOR_KAPPA: f64 = 0.8;

/// Default `--min-annotator-iou` (the annotator mask IoU of at least 0.75
/// quoted in practice).
pub const DEFAULT_MIN_ANNOTATOR_IOU: f64 = 0.75;

/// Segmentation: per item, its annotator pairs `(a, b, mIoU)` (for the
/// reasons of the `low_agreement` check).
pub type ItemPairs = Vec<Vec<(u32, u32, Option<f64>)>>;

/// Per-class sums of one annotator pair (or of many).
#[derive(Clone)]
struct ClassSums {
    inter: Vec<u64>,
    union: Vec<u64>,
    /// `|A_k| + |B_k|` (Dice).
    areas: Vec<u64>,
    band_inter: Vec<u64>,
    band_union: Vec<u64>,
}

impl ClassSums {
    fn zeros(c: usize) -> Self {
        ClassSums {
            inter: vec![0; c],
            union: vec![0; c],
            areas: vec![0; c],
            band_inter: vec![0; c],
            band_union: vec![0; c],
        }
    }

    fn add(&mut self, o: &ClassSums) {
        for (dst, src) in [
            (&mut self.inter, &o.inter),
            (&mut self.union, &o.union),
            (&mut self.areas, &o.areas),
            (&mut self.band_inter, &o.band_inter),
            (&mut self.band_union, &o.band_union),
        ] {
            for (x, y) in dst.iter_mut().zip(src) {
                *x += y;
            }
        }
    }

    fn ratio(num: u64, den: u64) -> Option<f64> {
        (den > 0).then(|| num as f64 / den as f64)
    }

    fn iou(&self, k: usize) -> Option<f64> {
        Self::ratio(self.inter[k], self.union[k])
    }

    fn boundary_iou(&self, k: usize) -> Option<f64> {
        Self::ratio(self.band_inter[k], self.band_union[k])
    }

    fn dice(&self, k: usize) -> Option<f64> {
        Self::ratio(2 * self.inter[k], self.areas[k])
    }
}

/// One segmentation item's comparisons.
struct SegItemPairs {
    index: usize,
    /// `(a, b, sums, pair mIoU)`.
    pairs: Vec<(u32, u32, ClassSums, Option<f64>)>,
    /// Each annotator's area per class.
    areas: Vec<(u32, Vec<u64>)>,
}

/// Compare every pair of annotators of segmentation item `i` (`dims`):
/// label × label counts on `backend`, Boundary IoU bands as
/// [`crate::metrics::boundary_iou::pair_band_counts`].
fn compare_item(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    ann: &Annotations,
    i: usize,
    dims: (usize, usize),
    backend: &dyn crate::backend::Backend,
) -> Result<SegItemPairs> {
    let (c, ign) = (cfg.num_classes(), cfg.ignore_index);
    let mut masks = Vec::new();
    for (a, x) in &ann.items[i] {
        if let Some(m) = x.mask(cfg, i, &manifest.ids[i], dims)? {
            masks.push((*a, m));
        }
    }
    let areas = masks
        .iter()
        .map(|(a, m)| {
            let mut v = vec![0u64; c];
            for &x in m {
                if let Some(n) = v.get_mut(x as usize) {
                    *n += 1;
                }
            }
            (*a, v)
        })
        .collect();
    let mut pairs = Vec::new();
    for x in 0..masks.len() {
        for y in x + 1..masks.len() {
            let ((a, ma), (b, mb)) = (&masks[x], &masks[y]);
            let conf = backend.mask_confusion(ma, mb, c, ign)?;
            let bands = backend.mask_bands(ma, mb, dims, c, ign)?;
            let mut s = ClassSums::zeros(c);
            for k in 0..c {
                let (ak, bk, ik) = (conf.label_count(k), conf.pred_count(k), conf.get(k, k));
                s.inter[k] = ik;
                s.union[k] = ak + bk - ik;
                s.areas[k] = ak + bk;
                s.band_inter[k] = bands.inter[k];
                s.band_union[k] = bands.union(k);
            }
            pairs.push((*a, *b, s, conf.mean_iou()));
        }
    }
    Ok(SegItemPairs {
        index: i,
        pairs,
        areas,
    })
}

/// The segmentation `agreement` section over `items` (matched by
/// [`ItemResult::index`]): every unordered pair of an item's annotators is
/// compared and the counts pooled per class (all pairs), per annotator (its
/// pairs) and per item (the mean of its pairs' mIoU, its
/// `annotator_agreement`, from which [`disagreement`] `= 1 −
/// annotator_agreement` raises its priority in
/// [`crate::priority::priorities`]). A mask of the wrong size is an error
/// naming it.
pub fn apply_segmentation(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    ann: &Annotations,
    items: &mut [ItemResult],
    backend: &dyn crate::backend::Backend,
    min_annotator_iou: f64,
) -> Result<(SegAgreement, ItemPairs)> {
    use rayon::prelude::*;
    let c = cfg.num_classes();
    let na = ann.annotators.len();
    let mut dims = vec![None; ann.items.len()];
    for it in items.iter() {
        dims[it.index] = it.dims();
    }
    let compared: Vec<SegItemPairs> = (0..ann.items.len())
        .into_par_iter()
        .filter(|&i| ann.items[i].len() >= 2)
        .filter_map(|i| dims[i].map(|d| compare_item(cfg, manifest, ann, i, d, backend)))
        .collect::<Result<_>>()?;
    let mut total = ClassSums::zeros(c);
    let mut by_ann = vec![ClassSums::zeros(c); na];
    let mut own = vec![vec![0f64; c]; na];
    let mut others = vec![vec![0f64; c]; na];
    let mut item_pairs: ItemPairs = vec![Vec::new(); ann.items.len()];
    let mut agreement = vec![None; ann.items.len()];
    let mut n_pairs = 0;
    for it in &compared {
        for (a, b, s, miou) in &it.pairs {
            total.add(s);
            by_ann[*a as usize].add(s);
            by_ann[*b as usize].add(s);
            item_pairs[it.index].push((*a, *b, *miou));
            n_pairs += 1;
        }
        let m = it.areas.len() as f64;
        for (a, area) in &it.areas {
            for k in 0..c {
                let rest: u64 = it
                    .areas
                    .iter()
                    .filter(|(b, _)| b != a)
                    .map(|(_, v)| v[k])
                    .sum();
                own[*a as usize][k] += area[k] as f64;
                others[*a as usize][k] += rest as f64 / (m - 1.0);
            }
        }
        agreement[it.index] = crate::metrics::confusion::mean_defined(it.pairs.iter().map(|p| p.3));
    }
    let mut labelled = vec![0usize; na];
    for v in &ann.items {
        for (a, _) in v {
            labelled[*a as usize] += 1;
        }
    }
    let mean_of =
        |f: &dyn Fn(usize) -> Option<f64>| crate::metrics::confusion::mean_defined((0..c).map(f));
    let per_annotator: Vec<SegAnnotatorRow> = (0..na)
        .map(|a| SegAnnotatorRow {
            annotator: ann.annotators[a].clone(),
            items: labelled[a],
            miou_with_others: mean_of(&|k| by_ann[a].iou(k)),
            boundary_iou_with_others: mean_of(&|k| by_ann[a].boundary_iou(k)),
            area_bias: (0..c)
                .map(|k| (others[a][k] > 0.0).then(|| own[a][k] / others[a][k] - 1.0))
                .collect(),
        })
        .collect();
    let below_threshold = per_annotator
        .iter()
        .filter(|r| r.miou_with_others.is_some_and(|v| v < min_annotator_iou))
        .map(|r| r.annotator.clone())
        .collect();
    for it in items.iter_mut() {
        let a = agreement[it.index];
        it.scores
            .set(Score::AnnotatorAgreement, Some(a.unwrap_or(f64::NAN)));
    }
    let section = SegAgreement {
        annotators: na,
        rows: ann.rows(),
        items_with_2plus: ann.items.iter().filter(|v| v.len() >= 2).count(),
        pairs: n_pairs,
        per_class: (0..c)
            .map(|k| SegClassAgreement {
                class: cfg.class_names[k].clone(),
                iou: total.iou(k),
                dice: total.dice(k),
                boundary_iou: total.boundary_iou(k),
            })
            .collect(),
        per_annotator,
        min_annotator_iou,
        below_threshold,
        priority: crate::priority::AGREEMENT_RAISE.into(),
    };
    Ok((section, item_pairs))
}

/// Read the annotations of `cfg` (if any) for `manifest`. Segmentation:
/// an item with more than [`MAX_SEG_ANNOTATORS`] masks is an error naming
/// it (checked here, before anything is scored).
pub fn load(cfg: &DatasetConfig, manifest: &Manifest) -> Result<Option<Annotations>> {
    let ann = match &cfg.annotations {
        Some(path) => crate::io::annotations::load(cfg, manifest, path)?,
        None => match crate::io::annotations::from_label_set(cfg) {
            Some(ann) => ann,
            None => return Ok(None),
        },
    };
    let path = &ann.path;
    if cfg.task == crate::config::Task::Segmentation
        && let Some(i) = ann.items.iter().position(|v| v.len() > MAX_SEG_ANNOTATORS)
    {
        return Err(crate::Error::input(
            path,
            format!(
                "{} annotator masks, over the limit of {MAX_SEG_ANNOTATORS} an item (every pair of masks is compared pixel by pixel)",
                ann.items[i].len()
            ),
        )
        .item(manifest.ids[i].to_string())
        .field("annotator"));
    }
    Ok(Some(ann))
}

/// Compute the `agreement` section over `items` (any order; matched by
/// [`ItemResult::index`]) and set each item's `annotator_agreement` and its
/// annotators' majority (`consensus`), from which [`disagreement`] raises
/// its priority in [`crate::priority::priorities`].
pub fn apply(
    cfg: &DatasetConfig,
    ann: &Annotations,
    items: &mut [ItemResult],
    min_annotator_kappa: f64,
) -> Agreement {
    let c = cfg.num_classes();
    let na = ann.annotators.len();
    let units: Vec<Vec<u32>> = (0..ann.items.len())
        .map(|i| ann.labels(i).map(|(_, l)| l).collect())
        .collect();
    let alpha = krippendorff_alpha(units.iter().map(|u| u.as_slice()), c);
    // Fleiss: the most common count of 2 or more (ties to the larger).
    let mut by_m = std::collections::BTreeMap::<usize, usize>::new();
    for u in units.iter().filter(|u| u.len() >= 2) {
        *by_m.entry(u.len()).or_default() += 1;
    }
    let fleiss_m = by_m
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)))
        .map_or(0, |(m, _)| *m);
    let (fleiss, fleiss_items) = fleiss_kappa(units.iter().map(|u| u.as_slice()), c, fleiss_m);

    // Per annotator against its consensus, model and official label.
    let mut vs_consensus: Vec<Vec<(u32, u32)>> = vec![Vec::new(); na];
    let mut labelled = vec![0usize; na];
    let mut with_model = vec![0usize; na];
    let mut with_official = vec![0usize; na];
    let facts: Vec<Option<(u32, u32)>> = {
        let mut f = vec![None; ann.items.len()];
        for it in items.iter() {
            if let Some(r) = &it.row {
                f[it.index] = Some((r.label, r.pred));
            }
        }
        f
    };
    let mut counted: Vec<ClassCounts> = Vec::with_capacity(units.len());
    for (i, fact) in facts.iter().enumerate() {
        let counts = ClassCounts::new(&units[i]);
        for (a, la) in ann.labels(i) {
            let a = a as usize;
            labelled[a] += 1;
            if let Some((official, pred)) = *fact {
                with_official[a] += (la == official) as usize;
                with_model[a] += (la == pred) as usize;
            }
            if let Some(cons) = counts.majority_without_one(la) {
                vs_consensus[a].push((la, cons));
            }
        }
        counted.push(counts);
    }
    let name = |a: usize| ann.annotators[a].clone();
    let share = |k: usize, n: usize| (n > 0).then(|| k as f64 / n as f64);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let kappa_with_consensus: Vec<Option<f64>> = vs_consensus
        .iter()
        .map(|v| cohen_kappa_of(v, &mut xs, &mut ys))
        .collect();
    let agree_with_consensus: Vec<Option<f64>> = vs_consensus
        .iter()
        .map(|v| share(v.iter().filter(|(x, y)| x == y).count(), v.len()))
        .collect();
    drop(vs_consensus);
    let pairs = cohen_pairs(ann, &units, c);
    let cohen: Vec<CohenPair> = pairs
        .listed
        .into_iter()
        .map(|(a, b, items, kappa)| CohenPair {
            a: name(a as usize),
            b: name(b as usize),
            items,
            kappa,
        })
        .collect();
    let per_annotator: Vec<AnnotatorRow> = (0..na)
        .map(|a| AnnotatorRow {
            annotator: name(a),
            items: labelled[a],
            agreement_with_consensus: agree_with_consensus[a],
            kappa_with_consensus: kappa_with_consensus[a],
            agreement_with_model: share(with_model[a], labelled[a]),
            agreement_with_official: share(with_official[a], labelled[a]),
        })
        .collect();
    let below_threshold = per_annotator
        .iter()
        .filter(|r| {
            r.kappa_with_consensus
                .is_some_and(|k| k < min_annotator_kappa)
        })
        .map(|r| r.annotator.clone())
        .collect();

    // Per item: the share of agreeing pairs and the majority, which the
    // raise reads.
    for it in items.iter_mut() {
        let u = &counted[it.index];
        let a = u.pair_agreement();
        it.scores
            .set(Score::AnnotatorAgreement, Some(a.unwrap_or(f64::NAN)));
        it.consensus = u.majority();
    }

    Agreement {
        annotators: na,
        rows: ann.rows(),
        items_with_2plus: units.iter().filter(|u| u.len() >= 2).count(),
        krippendorff_alpha: alpha,
        fleiss_kappa: fleiss,
        fleiss_items,
        fleiss_m,
        cohen_kappa: cohen,
        cohen_pairs: pairs.total,
        cohen_items_left_out: pairs.items_left_out,
        per_class: per_class_alpha(&units, c)
            .into_iter()
            .enumerate()
            .map(|(k, alpha)| ClassAlpha {
                class: cfg.class_names[k].clone(),
                alpha,
            })
            .collect(),
        per_annotator,
        min_annotator_kappa,
        below_threshold,
        priority: crate::priority::AGREEMENT_RAISE.into(),
    }
}

/// The pairwise Cohen's kappa tables ([`cohen_pairs`]).
struct CohenPairs {
    /// `(a, b, shared items, kappa)`, at most [`MAX_COHEN_PAIRS`], in
    /// annotator order.
    listed: Vec<(u32, u32, usize, Option<f64>)>,
    /// Pairs sharing at least [`MIN_PAIR_ITEMS`] items.
    total: usize,
    /// Items with more than [`MAX_COHEN_ANNOTATORS`] annotators.
    items_left_out: usize,
}

/// The most `annotators × classes` class counts [`cohen_pairs`] keeps, as
/// one [`CohenSums`] per annotator (two `u64` a cell, 32 MiB at the
/// bound); above it, it sorts label pairs.
const DENSE_MARGINS: usize = 2 << 20;

/// Cohen's kappa of every annotator pair sharing at least
/// [`MIN_PAIR_ITEMS`] of the items with at most [`MAX_COHEN_ANNOTATORS`]
/// annotators, one annotator `a` at a time: its items' other annotators
/// `b > a` collect the label pairs they share with it, and those with
/// enough are scored and offered to the listed pairs (the
/// [`MAX_COHEN_PAIRS`] that share the most items; ties to the earlier
/// pair). Memory: the rows, and the label pairs of one annotator's items;
/// when `annotators × classes` is at most [`DENSE_MARGINS`], each `b`'s
/// [`CohenSums`] (shared items, agreements, both sides' class counts) instead,
/// which gives the same bits without storing or sorting the pairs.
fn cohen_pairs(ann: &Annotations, units: &[Vec<u32>], classes: usize) -> CohenPairs {
    let dense = ann.annotators.len().saturating_mul(classes) <= DENSE_MARGINS;
    cohen_pairs_by(ann, units, classes, dense)
}

/// [`cohen_pairs`] with the margins (`dense`) or the sorted label pairs.
fn cohen_pairs_by(
    ann: &Annotations,
    units: &[Vec<u32>],
    classes: usize,
    dense: bool,
) -> CohenPairs {
    use std::cmp::Reverse;
    let na = ann.annotators.len();
    let pairable = |i: usize| units[i].len() <= MAX_COHEN_ANNOTATORS;
    let items_left_out = (0..units.len()).filter(|&i| !pairable(i)).count();
    // Each annotator's items (ascending), with its label; every item's
    // `(annotator, label)` in one flat table (annotators ascending, as
    // `Annotations` keeps them), `at[i]..at[i + 1]`.
    let mut own: Vec<Vec<(usize, u32)>> = vec![Vec::new(); na];
    let mut flat: Vec<(u32, u32)> = Vec::with_capacity(units.iter().map(Vec::len).sum());
    let mut at = Vec::with_capacity(units.len() + 1);
    at.push(0);
    for i in 0..units.len() {
        if pairable(i) {
            for (a, l) in ann.labels(i) {
                own[a as usize].push((i, l));
                flat.push((a, l));
            }
        }
        at.push(flat.len());
    }
    let mut margins: Vec<CohenSums> = match dense {
        true => (0..na).map(|_| CohenSums::new(classes)).collect(),
        false => Vec::new(),
    };
    let mut shared: Vec<Vec<(u32, u32)>> = vec![Vec::new(); na];
    let mut touched: Vec<u32> = Vec::new();
    // The listed pairs: a min-heap on (items, earlier pair first).
    type Key = (usize, Reverse<(u32, u32)>);
    let mut best: std::collections::BinaryHeap<Reverse<(Key, Option<u64>)>> = Default::default();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut total = 0;
    for (a, mine) in own.iter().enumerate() {
        for &(i, la) in mine {
            let row = &flat[at[i]..at[i + 1]];
            let after = row.partition_point(|&(b, _)| b as usize <= a);
            for &(b, lb) in &row[after..] {
                if dense {
                    let m = &mut margins[b as usize];
                    if m.n == 0 {
                        touched.push(b);
                    }
                    m.add(la, lb);
                    continue;
                }
                let list = &mut shared[b as usize];
                if list.is_empty() {
                    touched.push(b);
                }
                list.push((la, lb));
            }
        }
        touched.sort_unstable();
        for &b in &touched {
            let n = if dense {
                margins[b as usize].n
            } else {
                shared[b as usize].len()
            };
            if n >= MIN_PAIR_ITEMS {
                total += 1;
                let key: Key = (n, Reverse((a as u32, b)));
                if best.len() < MAX_COHEN_PAIRS || best.peek().is_some_and(|w| key > w.0.0) {
                    let kappa = if dense {
                        margins[b as usize].kappa()
                    } else {
                        cohen_kappa_of(&shared[b as usize], &mut xs, &mut ys)
                    };
                    best.push(Reverse((key, kappa.map(f64::to_bits))));
                    if best.len() > MAX_COHEN_PAIRS {
                        best.pop();
                    }
                }
            }
            if dense {
                margins[b as usize].clear();
            } else {
                shared[b as usize].clear();
            }
        }
        touched.clear();
    }
    let mut listed: Vec<(u32, u32, usize, Option<f64>)> = best
        .into_iter()
        .map(|Reverse(((n, Reverse((a, b))), k))| (a, b, n, k.map(f64::from_bits)))
        .collect();
    listed.sort_unstable_by_key(|p| (p.0, p.1));
    CohenPairs {
        listed,
        total,
        items_left_out,
    }
}

/// The item's disagreement (after [`apply`] or [`apply_segmentation`]),
/// what [`crate::priority::agreement_raise`] raises it by: 1 when its annotators'
/// strict majority contradicts its official label, else
/// `1 − annotator_agreement`; `None` below 2 annotations.
pub fn disagreement(it: &ItemResult) -> Option<f64> {
    let a = it
        .scores
        .get(Score::AnnotatorAgreement)
        .filter(|a| a.is_finite())?;
    let official = it.row.map(|r| r.label);
    let contradicted = it.consensus.zip(official).is_some_and(|(m, o)| m != o);
    Some(if contradicted { 1.0 } else { 1.0 - a })
}

/// One-vs-rest alpha of every class, in one pass over the units: with the
/// labels recoded to (class, not class), a unit with `m` values of which
/// `k` are the class adds `k(k−1)/(m−1)` and `(m−k)(m−k−1)/(m−1)` to the
/// two diagonal cells and `k`, `m − k` to the marginals, so only units
/// where the class occurs need visiting (the others add `m` to the "not"
/// diagonal and marginal).
fn per_class_alpha(units: &[Vec<u32>], c: usize) -> Vec<Option<f64>> {
    let mut n1 = vec![0f64; c];
    let mut o11 = vec![0f64; c];
    // `Σ m` over pairable units, and per class the "not" diagonal's
    // shortfall against `m` in the units where the class occurs.
    let mut n = 0f64;
    let mut o00_short = vec![0f64; c];
    let mut counts = vec![0u32; c];
    for u in units {
        let m = u.len();
        if m < 2 {
            continue;
        }
        n += m as f64;
        let w = 1.0 / (m - 1) as f64;
        for &v in u {
            counts[v as usize] += 1;
        }
        for &v in u {
            let k = counts[v as usize];
            if k == 0 {
                continue;
            }
            let (kf, mf) = (k as f64, m as f64);
            n1[v as usize] += kf;
            o11[v as usize] += kf * (kf - 1.0) * w;
            o00_short[v as usize] += mf - (mf - kf) * (mf - kf - 1.0) * w;
            counts[v as usize] = 0;
        }
    }
    (0..c)
        .map(|k| {
            let n0 = n - n1[k];
            let o00 = n - o00_short[k];
            let expected = n * n - n1[k] * n1[k] - n0 * n0;
            (n >= 2.0 && expected > 0.0).then(|| 1.0 - (n - 1.0) * (n - o11[k] - o00) / expected)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass per-class alpha equals the general alpha of the units
    /// recoded to (class, not class).
    #[test]
    fn per_class_alpha_equals_the_recoded_alpha() {
        let units: Vec<Vec<u32>> = vec![
            vec![0, 0, 1],
            vec![2, 2],
            vec![1, 1, 1, 0],
            vec![0],
            vec![2, 0, 1],
            vec![1, 1],
            vec![0, 0, 0],
        ];
        let got = per_class_alpha(&units, 4);
        for (k, g) in got.iter().enumerate() {
            let recoded: Vec<Vec<u32>> = units
                .iter()
                .map(|u| u.iter().map(|&v| (v as usize == k) as u32).collect())
                .collect();
            let want = krippendorff_alpha(recoded.iter().map(|u| u.as_slice()), 2);
            match (g, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "class {k}: {g} vs {w}"),
                (None, None) => {}
                other => panic!("class {k}: {other:?}"),
            }
        }
        assert_eq!(got[3], None, "a class never used has no alpha");
    }

    /// Both ways of building the pair tables give the hand-worked kappas.
    /// Annotators x, y and z on 24 items of 3 classes: x and y agree on 18
    /// (x: 8 × class 0, 8 × 1, 8 × 2; y: the same but items 0–5 shifted to
    /// the next class), so p_o = 18/24, y's margins are (2, 14, 8) against
    /// x's (8, 8, 8): p_e = (8·2 + 8·14 + 8·8) / 24² = 192/576 = 1/3,
    /// κ = (3/4 − 1/3) / (2/3) = 0.625. z labels only items 0–9 (fewer than
    /// MIN_PAIR_ITEMS shared), so its pairs count nowhere.
    #[test]
    fn cohen_pairs_by_margins_or_sorted_pairs_give_the_hand_worked_kappa() {
        use crate::io::annotations::Annotation;
        let x: Vec<u32> = (0..24).map(|i| i / 8).collect();
        let y: Vec<u32> = (0..24)
            .map(|i| if i < 6 { (i / 8 + 1) % 3 } else { i / 8 })
            .collect();
        let items: Vec<Vec<(u32, Annotation)>> = (0..24)
            .map(|i| {
                let mut v = vec![
                    (0, Annotation::Label(x[i as usize])),
                    (1, Annotation::Label(y[i as usize])),
                ];
                if i < 10 {
                    v.push((2, Annotation::Label(0)));
                }
                v
            })
            .collect();
        let ann = Annotations {
            path: "annotations.csv".into(),
            annotators: vec!["x".into(), "y".into(), "z".into()],
            items,
            ..Annotations::default()
        };
        let units: Vec<Vec<u32>> = (0..24)
            .map(|i| ann.labels(i).map(|(_, l)| l).collect())
            .collect();
        for dense in [true, false] {
            let p = cohen_pairs_by(&ann, &units, 3, dense);
            assert_eq!(p.total, 1, "dense {dense}");
            assert_eq!(p.listed.len(), 1);
            let (a, b, n, k) = p.listed[0];
            assert_eq!((a, b, n), (0, 1, 24));
            assert!((k.unwrap() - 0.625).abs() < 1e-12, "dense {dense}: {k:?}");
        }
    }
}
