//! Items whose annotators disagree ([`LowAgreement`]), for adjudication
//! (with `[inputs] annotations`; the scores come from
//! [`crate::agreement`]).

use super::{Check, Explained, Inputs, Need, Place, Threshold, each};
use crate::config::Task;
use crate::schema::{CheckDetails, LowAgreementSummary};
use crate::scores::Score;

/// Classification: an item is flagged when fewer than this share of its
/// annotator pairs agree (so a 2–1 split among three annotators is
/// flagged, a 3–1 split among four is not), or when its annotators'
/// majority contradicts its official label.
pub const MIN_ITEM_AGREEMENT: f64 = 0.5;

/// Segmentation: an item is flagged when the mean mIoU of its annotator
/// pairs is under this (the annotator IoU of at least 0.75 quoted in
/// practice).
pub const MIN_ITEM_IOU: f64 = 0.75;

/// At most this many annotators are named in a reason.
const NAMED: usize = 8;

/// Items with low agreement between annotators. Score: the item's
/// disagreement ([`crate::agreement::disagreement`]): classification, 1
/// when the annotators' majority contradicts the official label, else
/// `1 − annotator_agreement`; segmentation, `1 −` the mean pairwise mIoU.
/// Flagged when above `1 −` [`MIN_ITEM_AGREEMENT`] (classification) or
/// `1 −` [`MIN_ITEM_IOU`] (segmentation). Items with fewer than 2
/// annotations have no score.
pub struct LowAgreement;

/// The agreement under which an item of `task` is flagged.
fn min_agreement(task: Task) -> f64 {
    match task {
        Task::Classification => MIN_ITEM_AGREEMENT,
        Task::Segmentation => MIN_ITEM_IOU,
    }
}

impl Check for LowAgreement {
    fn name(&self) -> &'static str {
        "low_agreement"
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Annotations]
    }
    fn score_text(&self, task: Task) -> &'static str {
        match task {
            Task::Classification => {
                "1 if the annotators' majority contradicts the official label, else 1 - annotator_agreement (the share of agreeing annotator pairs)"
            }
            Task::Segmentation => {
                "1 - annotator_agreement (the mean mIoU of the item's annotator pairs)"
            }
        }
    }
    fn threshold(&self, task: Task) -> Threshold {
        let t = Threshold::above(1.0 - min_agreement(task));
        match task {
            Task::Classification => t.because(
                "fewer than half of the item's annotator pairs agree, or their majority contradicts the official label",
            ),
            Task::Segmentation => t.because(format!(
                "the item's annotator pairs' mean mIoU is under {}",
                min_agreement(task)
            )),
        }
    }
    /// The agreement stage's per-item disagreement
    /// ([`crate::agreement::disagreement`]).
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        each(inputs, crate::agreement::disagreement)
    }

    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let mut out = Explained::default();
        let Some(ann) = inputs.annotations else {
            return out;
        };
        let names = &inputs.cfg.class_names;
        let class = |k: u32| names.get(k as usize).map_or("?", String::as_str);
        let mut contradicted = 0usize;
        for it in inputs.items {
            let row = it.index;
            if !flags[row] {
                continue;
            }
            if let Some(pairs) = inputs.annotator_pairs {
                let named = |a: u32| ann.annotators[a as usize].as_str();
                let mut shown: Vec<String> = pairs[it.index]
                    .iter()
                    .take(NAMED)
                    .map(|&(a, b, m)| match m {
                        Some(m) => format!("{}–{} {m:.2}", named(a), named(b)),
                        None => format!("{}–{} -", named(a), named(b)),
                    })
                    .collect();
                if pairs[it.index].len() > NAMED {
                    shown.push(format!("and {} more pairs", pairs[it.index].len() - NAMED));
                }
                let share = it.scores.get(Score::AnnotatorAgreement).unwrap_or(f64::NAN);
                out.reasons.push((
                    row,
                    Place::First,
                    format!(
                        "annotators disagree (mean pairwise mIoU {share:.2}, under {MIN_ITEM_IOU}): {}",
                        shown.join(", ")
                    ),
                ));
                continue;
            }
            let labels: Vec<(u32, u32)> = ann.labels(it.index).collect();
            let mut who: Vec<String> = labels
                .iter()
                .take(NAMED)
                .map(|&(a, l)| format!("{} {:?}", ann.annotators[a as usize], class(l)))
                .collect();
            if labels.len() > NAMED {
                who.push(format!("and {} more", labels.len() - NAMED));
            }
            let share = it.scores.get(Score::AnnotatorAgreement).unwrap_or(f64::NAN);
            let mut reason = format!(
                "annotators disagree ({:.0}% of pairs agree): {}",
                100.0 * share,
                who.join(", ")
            );
            if let (Some(m), Some(f)) = (it.consensus, it.row)
                && m != f.label
            {
                contradicted += 1;
                reason.push_str(&format!(
                    "; their majority {:?} differs from the official label {:?}",
                    class(m),
                    class(f.label)
                ));
            }
            out.reasons.push((row, Place::First, reason));
        }
        out.summary = Some(CheckDetails::LowAgreement(LowAgreementSummary {
            min_item_agreement: min_agreement(inputs.cfg.task),
            majority_contradicts_official: contradicted,
        }));
        out
    }
}
