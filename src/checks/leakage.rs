//! The same or nearly the same item in two splits ([`Leakage`]): the
//! neighbour stage's near-duplicate pairs (its one kNN graph, and the
//! identical embeddings and images it finds by hash) whose items carry
//! different values in items.csv's `split` column; without embeddings, the
//! items whose `image` files are identical ([`Inputs::identical`]).

use std::collections::{BTreeMap, HashSet};

use super::{Check, Explained, Inputs, Need, Place, Threshold};
use crate::config::Task;
use crate::io::manifest::Manifest;
use crate::neighbors::DupPair;
use crate::schema::{CheckDetails, LeakPair, LeakageSummary};

/// The items.csv column that names each item's split.
pub const SPLIT_COLUMN: &str = "split";

/// The `split` column and its distinct non-empty values (trimmed), when it
/// exists and holds two or more: what [`Need::Splits`] asks for.
pub fn splits(manifest: &Manifest) -> Option<(usize, Vec<&str>)> {
    let col = manifest.column(SPLIT_COLUMN)?;
    let mut seen = HashSet::new();
    let mut values = Vec::new();
    for v in manifest.rows.column(col).map(str::trim) {
        if !v.is_empty() && seen.insert(v) {
            values.push(v);
        }
    }
    (values.len() >= 2).then_some((col, values))
}

/// An item with a near-duplicate in another split: score `1` for an
/// identical partner (same embedding or image hash, or cosine distance 0),
/// else `1 − d/(2·threshold)` for the closest partner in another split at
/// cosine distance `d` (so in [0.5, 1) within the near-duplicate
/// threshold), and `0` without one; flagged above 0. Pairs inside one split
/// are near-duplicates, not leakage; an item with an empty `split` cell has
/// no score. Whether the labels agree does not matter, and the summary's
/// pairs include unlabelled items (which, as for every check, get no score
/// or flag themselves). Needs embeddings and a `split` column with two or
/// more values.
pub struct Leakage;

/// The score of a cross-split pair at the near-duplicate threshold `t`.
fn pair_score(p: &DupPair, t: f32) -> f64 {
    if exact(p) {
        1.0
    } else {
        (1.0 - f64::from(p.distance) / (2.0 * f64::from(t.max(f32::MIN_POSITIVE)))).max(0.0)
    }
}

/// Found identical: by a hash, or at distance 0.
fn exact(p: &DupPair) -> bool {
    p.found_by != "knn" || p.distance <= 0.0
}

/// The split of the item at `row` (trimmed; `None` when empty).
fn split_of(manifest: &Manifest, col: usize, row: usize) -> Option<&str> {
    manifest
        .rows
        .get(row, col)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The run's pairs of (nearly) identical items and the near-duplicate
/// threshold: the neighbour stage's, or without embeddings the identical
/// image files (all exact, so no threshold applies).
fn twins<'r>(inputs: &Inputs<'r>) -> Option<(&'r [DupPair], f32)> {
    match (inputs.neighbors, inputs.identical) {
        (Some(r), _) => Some((r.pairs.as_slice(), r.threshold)),
        (None, Some(pairs)) => Some((pairs, 0.0)),
        (None, None) => None,
    }
}

/// The pairs whose two items lie in different splits.
fn cross_pairs<'r>(
    pairs: &'r [DupPair],
    manifest: &'r Manifest,
    col: usize,
) -> impl Iterator<Item = &'r DupPair> + 'r {
    pairs.iter().filter(move |p| {
        matches!(
            (split_of(manifest, col, p.a), split_of(manifest, col, p.b)),
            (Some(x), Some(y)) if x != y
        )
    })
}

impl Check for Leakage {
    fn name(&self) -> &'static str {
        "leakage"
    }
    fn raises_priority(&self) -> bool {
        true
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Twins, Need::Splits]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "1 for an identical item in another split, else 1 - d/(2·threshold) for the closest near-duplicate in another split, 0 without one"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(0.0).because("a near-duplicate lies in another split")
    }

    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let (Some((pairs, threshold)), Some((col, _))) = (twins(inputs), splits(inputs.manifest))
        else {
            return vec![None; inputs.items.len()];
        };
        let rows = inputs.manifest.len();
        let mut best = vec![0.0f64; rows];
        for p in cross_pairs(pairs, inputs.manifest, col) {
            let s = pair_score(p, threshold);
            for r in [p.a, p.b] {
                if let Some(b) = best.get_mut(r) {
                    *b = b.max(s);
                }
            }
        }
        inputs
            .items
            .iter()
            .map(|it| {
                split_of(inputs.manifest, col, it.index)?;
                best.get(it.index).copied()
            })
            .collect()
    }

    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let mut out = Explained::default();
        let (Some((twin_pairs, threshold)), Some((col, values))) =
            (twins(inputs), splits(inputs.manifest))
        else {
            return out;
        };
        let (manifest, ids) = (inputs.manifest, &inputs.manifest.ids);
        // Every cross-split pair, an unlabelled item's too (leakage is in
        // the data, not the labels); flags and reasons only on the items
        // given to the check.
        let mut pairs: Vec<&DupPair> = cross_pairs(twin_pairs, manifest, col).collect();
        pairs.sort_by(|x, y| {
            x.distance
                .total_cmp(&y.distance)
                .then_with(|| ids[x.a.min(x.b)].cmp(&ids[y.a.min(y.b)]))
                .then_with(|| ids[x.a.max(x.b)].cmp(&ids[y.a.max(y.b)]))
        });
        let split = |r: usize| split_of(manifest, col, r).unwrap_or("");
        for p in &pairs {
            for (me, other) in [(p.a, p.b), (p.b, p.a)] {
                if !flags.get(me).copied().unwrap_or(false) {
                    continue;
                }
                let what = if exact(p) {
                    "an identical item".to_string()
                } else {
                    format!(
                        "a near-duplicate (cosine distance {:.4} <= {:.4})",
                        p.distance, threshold
                    )
                };
                out.reasons.push((
                    me,
                    Place::First,
                    format!(
                        "leakage: {what} {:?} is in split {:?}, this item in {:?}",
                        &ids[other],
                        split(other),
                        split(me)
                    ),
                ));
            }
        }

        let train = values
            .iter()
            .find(|v| v.eq_ignore_ascii_case("train"))
            .map(|v| v.to_string());
        let mut split_share = BTreeMap::new();
        if let Some(train) = &train {
            let mut in_train = vec![false; manifest.len()];
            for p in &pairs {
                for (me, other) in [(p.a, p.b), (p.b, p.a)] {
                    if split(other) == train
                        && let Some(f) = in_train.get_mut(me)
                    {
                        *f = true;
                    }
                }
            }
            let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
            for it in inputs.items {
                let s = split(it.index);
                if s.is_empty() || s == train {
                    continue;
                }
                let c = counts.entry(s).or_default();
                c.0 += 1;
                c.1 += usize::from(in_train.get(it.index).copied().unwrap_or(false));
            }
            for (s, (n, hit)) in counts {
                split_share.insert(s.to_string(), hit as f64 / n as f64);
            }
        }
        out.summary = Some(CheckDetails::Leakage(LeakageSummary {
            train_split: train,
            pairs: pairs
                .iter()
                .map(|p| {
                    let (a, b) = (p.a.min(p.b), p.a.max(p.b));
                    LeakPair {
                        a: ids[a].to_string(),
                        b: ids[b].to_string(),
                        split_a: split(a).to_string(),
                        split_b: split(b).to_string(),
                        // `json!(f32)` widened to f64, as elsewhere.
                        distance: f64::from(p.distance),
                        exact: exact(p),
                    }
                })
                .collect(),
            split_share,
        }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(columns: &[&str], rows: &[&[&str]]) -> Manifest {
        Manifest::of_table(columns, rows)
    }

    /// The check needs two non-empty split values: one value, blank cells
    /// or no column at all leave it out; values are trimmed and listed in
    /// first-seen order.
    #[test]
    fn splits_need_a_column_with_two_values() {
        let one = manifest(
            &["id", "split"],
            &[&["a", "train"], &["b", " train "], &["c", ""]],
        );
        assert!(splits(&one).is_none());
        let none = manifest(&["id", "camera"], &[&["a", "x"], &["b", "y"]]);
        assert!(splits(&none).is_none());
        let two = manifest(
            &["id", "split"],
            &[&["a", " test"], &["b", ""], &["c", "train"], &["d", "test"]],
        );
        assert_eq!(splits(&two), Some((1, vec!["test", "train"])));
        assert_eq!(split_of(&two, 1, 1), None);
        assert_eq!(split_of(&two, 1, 0), Some("test"));
    }
}
