//! The `drift` check: items in an annotator × batch cell whose change
//! against that annotator's earlier batches is significant
//! ([`crate::drift`]); without an `annotator` column, the cell is the
//! dataset's batch. Needs a time column in items.csv (`batch` or
//! `annotated_at`). It reads the flags of the checks before it in the
//! registry ([`Inputs::earlier`]) and follows each one's flagged share
//! (all but `class_imbalance`, a property of the class and not of the
//! labelling).
//!
//! Score: `1 − q`, `q` the smallest Benjamini–Hochberg adjusted p-value
//! of the tests on the item's cell (undefined where the cell was not
//! tested: too little before it). Flagged at or above
//! [`crate::drift::ALARM_SCORE`], i.e. `q ≤` [`crate::drift::FDR`]: the
//! cell alarms. Its reason names the annotator, the batch, the share
//! against the share before and the p-value (segmentation: or the mean
//! mIoU, or the class and its annotated-area bias, against before).

use super::{Check, Explained, Inputs, Need, Place, Threshold};
use crate::config::Task;
use crate::drift::{ALARM_SCORE, Analysis, FDR, ItemFact, analyse};
use crate::schema::{CheckDetails, DriftSummary};
use crate::scores::Score;

/// Checks whose flagged share is not followed over time.
const NOT_FOLLOWED: [&str; 2] = ["class_imbalance", "drift"];

/// See the module's documentation. The analysis is computed once, by
/// [`Check::scores`], and handed to [`Check::explain`], which takes it
/// (or computes it, when called alone): [`super::registry`] builds a fresh
/// check for every run, so the memo never outlives the [`Inputs`] it was
/// computed from.
#[derive(Default)]
pub struct Drift {
    memo: std::sync::Mutex<Option<Analysis>>,
}

/// The drift analysis of `inputs` ([`crate::drift::analyse`]; `None`
/// without a campaign).
pub fn analysis(inputs: &Inputs<'_>) -> Option<Analysis> {
    let campaign = inputs.campaign?;
    let followed: Vec<&super::CheckRun> = inputs
        .earlier
        .iter()
        .filter(|r| {
            matches!(r.outcome, super::Outcome::Ran(_)) && !NOT_FOLLOWED.contains(&r.check.name())
        })
        .take(64)
        .collect();
    let names: Vec<&str> = followed.iter().map(|r| r.check.name()).collect();
    let facts: Vec<ItemFact> = inputs
        .items
        .iter()
        .map(|it| {
            let mut flags = 0u64;
            for (j, r) in followed.iter().enumerate() {
                if r.flagged(it.index) {
                    flags |= 1 << j;
                }
            }
            ItemFact {
                row: it.index,
                class: it.row.as_ref().map(|r| r.label),
                flags,
                label_quality: it.scores.get(Score::SelfConfidence),
                confidence: it.scores.get(Score::LeastConfidence).map(|v| 1.0 - v),
                miou: it.scores.get(Score::Miou),
                boundary_iou: it.scores.get(Score::BoundaryIou),
                areas: it.seg_facts().map_or(&[], |f| f.areas.as_slice()),
            }
        })
        .collect();
    Some(analyse(
        campaign,
        &inputs.cfg.class_names,
        &names,
        &facts,
        inputs.annotations,
    ))
}

impl Check for Drift {
    fn name(&self) -> &'static str {
        "drift"
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Time]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "1 - q, q the smallest Benjamini-Hochberg adjusted p-value of the drift tests on the \
         item's annotator x batch cell (without an annotator column: its batch)"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::at_least(ALARM_SCORE)
            .because("the cell changed against its earlier batches, at a 1 % false discovery rate")
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let (Some(a), Some(campaign)) = (analysis(inputs), inputs.campaign) else {
            return vec![None; inputs.items.len()];
        };
        let scores = inputs
            .items
            .iter()
            .map(|it| a.verdict(campaign, it.index).map(|v| 1.0 - v.q))
            .collect();
        if let Ok(mut memo) = self.memo.lock() {
            *memo = Some(a);
        }
        scores
    }
    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let memo = self.memo.lock().ok().and_then(|mut m| m.take());
        let (Some(a), Some(campaign)) = (memo.or_else(|| analysis(inputs)), inputs.campaign) else {
            return Explained::default();
        };
        let mut reasons = Vec::new();
        let mut cells = std::collections::HashSet::new();
        for it in inputs.items {
            if !flags.get(it.index).copied().unwrap_or(false) {
                continue;
            }
            if let Some(v) = a.verdict(campaign, it.index) {
                reasons.push((it.index, Place::First, v.reason.clone()));
                cells.insert(v.reason.as_str());
            }
        }
        let alarmed_cells = cells.len();
        let summary = CheckDetails::Drift(DriftSummary {
            fdr: FDR,
            tests: a.section.tests,
            alarms: a.section.alarms.len(),
            alarmed_cells,
        });
        Explained {
            reasons,
            summary: Some(summary),
            drift: Some(Box::new(a.section)),
        }
    }
}
