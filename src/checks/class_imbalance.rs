//! Classes too rare to learn ([`ClassImbalance`]), after cleanlab's
//! `ClassImbalanceIssueManager` (Datalab's `class_imbalance` issue type).

use super::{Check, Explained, Inputs, Need, Place, Threshold, each};
use crate::config::Task;
use crate::schema::{CheckDetails, ClassImbalanceSummary, ClassShare};

/// A class is rare when its share of the labelled items is below this
/// fraction of a uniform share `1/C` (cleanlab's default threshold, 0.1).
pub const RARE_FRACTION: f64 = 0.1;

/// Items of a rare class. With `n_k` items labelled `k` out of `N`, and `C`
/// classes, the share is `s_k = n_k / N`; an item labelled `y` scores
/// `1 − min(1, C · s_y)` (0 for a class at or above a uniform share, near 1
/// for a vanishing one) and is flagged when the score is above
/// `1 −` [`RARE_FRACTION`], i.e. `s_y < 0.1 / C`. Unlike cleanlab, which
/// flags only the rarest class, every class under the threshold is flagged.
/// The counts are taken from the items it is given ([`Counts`]).
/// Classification only.
pub struct ClassImbalance;

/// The labels of the items a check is given, counted per class.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    /// Items per class (empty for segmentation).
    counts: Vec<u64>,
    total: u64,
}

impl Counts {
    /// Count the labels of `inputs`' items.
    pub fn of(inputs: &Inputs<'_>) -> Self {
        let mut counts = Vec::new();
        if inputs.cfg.task == Task::Classification {
            counts = vec![0u64; inputs.cfg.num_classes()];
            for it in inputs.items {
                if let Some(f) = &it.row
                    && let Some(n) = counts.get_mut(f.label as usize)
                {
                    *n += 1;
                }
            }
        }
        let total = counts.iter().sum();
        Counts { counts, total }
    }

    /// The score of an item labelled `k`.
    fn class_score(&self, k: usize) -> Option<f64> {
        let n = *self.counts.get(k)?;
        if self.total == 0 {
            return None;
        }
        let share = n as f64 / self.total as f64;
        Some(1.0 - (self.counts.len() as f64 * share).min(1.0))
    }
}

impl Check for ClassImbalance {
    fn name(&self) -> &'static str {
        "class_imbalance"
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Classification]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "1 - min(1, classes * share of the item's label)"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(1.0 - RARE_FRACTION).because(format!(
            "the label's class holds under {}% of a uniform share",
            100.0 * RARE_FRACTION
        ))
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let counts = Counts::of(inputs);
        each(inputs, |it| counts.class_score(it.row?.label as usize))
    }

    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let by_class = Counts::of(inputs);
        let (counts, total) = (&by_class.counts, by_class.total);
        let names = &inputs.cfg.class_names;
        let name = |k: usize| names.get(k).map_or("?", String::as_str);
        let c = counts.len();
        let rare: Vec<usize> = (0..c)
            .filter(|&k| {
                by_class
                    .class_score(k)
                    .is_some_and(|v| self.threshold(Task::Classification).flags(v))
            })
            .collect();
        let mut out = Explained::default();
        for it in inputs.items {
            if let (true, Some(f)) = (flags[it.index], &it.row) {
                let k = f.label as usize;
                out.reasons.push((
                    it.index,
                    Place::Last,
                    format!(
                        "rare class {:?}: {} of {} labelled items ({:.2}%), under {}% of a uniform share (1/{c})",
                        name(k),
                        counts[k],
                        total,
                        100.0 * counts[k] as f64 / total as f64,
                        100.0 * RARE_FRACTION
                    ),
                ));
            }
        }
        let class_list = |ks: &mut dyn Iterator<Item = usize>| -> Vec<ClassShare> {
            ks.map(|k| ClassShare {
                class: k,
                name: name(k).to_string(),
                items: counts[k],
                share: counts[k] as f64 / total.max(1) as f64,
            })
            .collect()
        };
        out.summary = Some(CheckDetails::ClassImbalance(ClassImbalanceSummary {
            rare_fraction: RARE_FRACTION,
            uniform_share: 1.0 / c.max(1) as f64,
            rare_classes: class_list(&mut rare.into_iter().filter(|&k| counts[k] > 0)),
            absent_classes: class_list(&mut (0..c).filter(|&k| counts[k] == 0)),
        }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(counts: &[u64]) -> Counts {
        Counts {
            counts: counts.to_vec(),
            total: counts.iter().sum(),
        }
    }

    fn flags(v: f64) -> bool {
        ClassImbalance.threshold(Task::Classification).flags(v)
    }

    #[test]
    fn rare_classes_are_those_under_a_tenth_of_a_uniform_share() {
        // 4 classes, 1000 items: uniform share 0.25, rare below 0.025 (25 items).
        let c = check(&[500, 451, 24, 25]);
        // Class 2: share 0.024, score 1 − 4·0.024 = 0.904 > 0.9: flagged.
        let s2 = c.class_score(2).unwrap();
        assert!((s2 - 0.904).abs() < 1e-12, "{s2}");
        assert!(flags(s2));
        // Class 3 sits exactly on the threshold (share 0.025): not flagged.
        let s3 = c.class_score(3).unwrap();
        assert!((s3 - 0.9).abs() < 1e-12 && !flags(s3), "{s3}");
        // Classes at or above a uniform share score 0.
        assert_eq!(c.class_score(0), Some(0.0));
        assert_eq!(c.class_score(1), Some(0.0));
        assert_eq!(c.class_score(9), None);
        assert_eq!(check(&[0, 0]).class_score(0), None);
    }
}
