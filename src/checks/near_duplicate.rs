//! Near-duplicates whose labels disagree ([`DuplicateConflict`]), read from
//! the neighbour stage's pairs and its one kNN graph
//! ([`crate::neighbors::stage`]).

use super::{Check, Explained, Inputs, Need, Place, Threshold, each};
use crate::config::Task;
use crate::records::ItemResult;
use crate::scores::Score;

/// A classification item whose k nearest neighbours carry another label at
/// least this often gets a reason saying so.
pub const KNN_DISAGREEMENT_REASON: f64 = 0.5;

/// A near-duplicate carries another label (segmentation: a disagreeing
/// mask). Score `dup_conflict = 1 − d/(2·threshold)` for the closest
/// conflicting partner at cosine distance `d` (0 without one), flagged
/// above 0. Needs embeddings.
///
/// Reasons: each conflicting partner, first among the item's reasons; and,
/// for classification, a kNN majority of other labels
/// (`knn_disagreement ≥` [`KNN_DISAGREEMENT_REASON`]), last.
pub struct DuplicateConflict;

impl Check for DuplicateConflict {
    fn name(&self) -> &'static str {
        "duplicate_conflict"
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Embeddings]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "dup_conflict (with embeddings)"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(0.0)
    }
    /// The neighbour stage's `dup_conflict` of the item's row, read from
    /// its result (the kNN graph's pairs), not from the item.
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let Some(result) = inputs.neighbors else {
            return vec![None; inputs.items.len()];
        };
        each(inputs, |it| result.dup_conflict.get(it.index).copied())
    }

    fn explain(&self, inputs: &Inputs<'_>, _flags: &[bool]) -> Explained {
        let mut out = Explained::default();
        let Some(result) = inputs.neighbors else {
            return out;
        };
        let (cfg, ids) = (inputs.cfg, &inputs.manifest.ids);
        let t = result.threshold;
        let label = |it: &ItemResult| {
            it.label_set()
                .iter()
                .map(|&k| cfg.class_names[k as usize].as_str())
                .collect::<Vec<_>>()
                .join("+")
        };
        for it in inputs.items {
            let row = it.index;
            for nb in it.neighbors().iter().filter(|n| n.conflict) {
                let text = match cfg.task {
                    Task::Classification => format!(
                        "near-duplicate of {:?} (cosine distance {:.4} <= {:.4}) labelled {:?}, this item {:?}",
                        &ids[nb.index],
                        nb.distance,
                        t,
                        nb.label,
                        label(it)
                    ),
                    Task::Segmentation => format!(
                        "near-duplicate of {:?} (cosine distance {:.4} <= {:.4}) whose mask disagrees",
                        &ids[nb.index], nb.distance, t
                    ),
                };
                out.reasons.push((row, Place::First, text));
            }
            if cfg.task == Task::Classification
                && let Some(kd) = it.scores.get(Score::KnnDisagreement)
                && kd >= KNN_DISAGREEMENT_REASON
            {
                let k = result.graph.neighbours(it.index).count();
                out.reasons.push((
                    row,
                    Place::Last,
                    format!(
                        "{} of its {k} nearest neighbours carry another label",
                        (kd * k as f64).round() as usize
                    ),
                ));
            }
        }
        out
    }
}
