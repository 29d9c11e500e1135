//! Classes too rare to learn ([`ClassImbalance`]), after cleanlab's
//! `ClassImbalanceIssueManager` (Datalab's `class_imbalance` issue type).

use serde_json::{Value, json};

use super::{Check, Explained, Inputs, Need, Place, Threshold};
use crate::config::Task;
use crate::records::ItemResult;

/// A class is rare when its share of the labelled items is below this
/// fraction of a uniform share `1/C` (cleanlab's default threshold, 0.1).
pub const RARE_FRACTION: f64 = 0.1;

/// Items of a rare class. With `n_k` items labelled `k` out of `N`, and `C`
/// classes, the share is `s_k = n_k / N`; an item labelled `y` scores
/// `1 − min(1, C · s_y)` (0 for a class at or above a uniform share, near 1
/// for a vanishing one) and is flagged when the score is above
/// `1 −` [`RARE_FRACTION`], i.e. `s_y < 0.1 / C`. Unlike cleanlab, which
/// flags only the rarest class, every class under the threshold is flagged.
/// Classification only.
pub struct ClassImbalance {
    /// Items per class (empty for segmentation).
    counts: Vec<u64>,
    total: u64,
}

impl ClassImbalance {
    /// Count the labels of `inputs`' items.
    pub fn new(inputs: &Inputs<'_>) -> Self {
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
        ClassImbalance { counts, total }
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
    fn threshold(&self) -> Threshold {
        Threshold::above(1.0 - RARE_FRACTION).because(format!(
            "the label's class holds under {}% of a uniform share",
            100.0 * RARE_FRACTION
        ))
    }
    fn score(&self, it: &ItemResult) -> Option<f64> {
        self.class_score(it.row?.label as usize)
    }

    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let names = &inputs.cfg.class_names;
        let name = |k: usize| names.get(k).map_or("?", String::as_str);
        let c = self.counts.len();
        let rare: Vec<usize> = (0..c)
            .filter(|&k| self.class_score(k).is_some_and(|v| self.flags(v)))
            .collect();
        let mut out = Explained::default();
        for (pos, it) in inputs.items.iter().enumerate() {
            if let (true, Some(f)) = (flags[pos], &it.row) {
                let k = f.label as usize;
                out.reasons.push((
                    pos,
                    Place::Last,
                    format!(
                        "rare class {:?}: {} of {} labelled items ({:.2}%), under {}% of a uniform share (1/{c})",
                        name(k),
                        self.counts[k],
                        self.total,
                        100.0 * self.counts[k] as f64 / self.total as f64,
                        100.0 * RARE_FRACTION
                    ),
                ));
            }
        }
        let class_list = |ks: &[usize]| -> Value {
            ks.iter()
                .map(|&k| {
                    json!({
                        "class": k,
                        "name": name(k),
                        "items": self.counts[k],
                        "share": self.counts[k] as f64 / self.total.max(1) as f64,
                    })
                })
                .collect()
        };
        let absent: Vec<usize> = (0..c).filter(|&k| self.counts[k] == 0).collect();
        out.summary
            .insert("rare_fraction".into(), json!(RARE_FRACTION));
        out.summary
            .insert("uniform_share".into(), json!(1.0 / c.max(1) as f64));
        out.summary.insert(
            "rare_classes".into(),
            class_list(
                &rare
                    .into_iter()
                    .filter(|&k| self.counts[k] > 0)
                    .collect::<Vec<_>>(),
            ),
        );
        out.summary
            .insert("absent_classes".into(), class_list(&absent));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(counts: &[u64]) -> ClassImbalance {
        ClassImbalance {
            counts: counts.to_vec(),
            total: counts.iter().sum(),
        }
    }

    #[test]
    fn rare_classes_are_those_under_a_tenth_of_a_uniform_share() {
        // 4 classes, 1000 items: uniform share 0.25, rare below 0.025 (25 items).
        let c = check(&[500, 451, 24, 25]);
        // Class 2: share 0.024, score 1 − 4·0.024 = 0.904 > 0.9: flagged.
        let s2 = c.class_score(2).unwrap();
        assert!((s2 - 0.904).abs() < 1e-12, "{s2}");
        assert!(c.flags(s2));
        // Class 3 sits exactly on the threshold (share 0.025): not flagged.
        let s3 = c.class_score(3).unwrap();
        assert!((s3 - 0.9).abs() < 1e-12 && !c.flags(s3), "{s3}");
        // Classes at or above a uniform share score 0.
        assert_eq!(c.class_score(0), Some(0.0));
        assert_eq!(c.class_score(1), Some(0.0));
        assert_eq!(c.class_score(9), None);
        assert_eq!(check(&[0, 0]).class_score(0), None);
    }
}
