//! Embedding rows with nothing to compare ([`Null`]): a non-finite
//! component, all zeros, or every component equal. The run does not fail
//! on them: the rows are left out of the kNN graph (their items get no
//! neighbours, and no one has them as one) and flagged here, while their
//! items keep every score of their other inputs. Datalab's `null` issue
//! type (`cleanlab/datalab/internal/issue_manager/null.py`) scores a
//! row's share of non-null cells `q`; this check's score is `1 − q`, the
//! share of non-finite components, and 1 for a zero or constant row.

use super::{Check, Explained, Inputs, Need, Place, Threshold};
use crate::config::Task;
use crate::schema::{CheckDetails, NullSummary};

/// The null-embedding check: flagged above 0. Needs embeddings.
pub struct Null;

impl Check for Null {
    fn name(&self) -> &'static str {
        "null"
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Embeddings]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "the share of the embedding row's components that are not finite (1 - Datalab's non-null \
         share), 1 for a row of zeros or of equal components, 0 for a usable row"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(0.0)
            .because("the embedding row cannot be compared: left out of the kNN graph")
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let Some(result) = inputs.neighbors else {
            return vec![None; inputs.items.len()];
        };
        inputs
            .items
            .iter()
            .map(|it| {
                Some(
                    result
                        .null
                        .binary_search_by_key(&it.index, |&(r, _)| r)
                        .map_or(0.0, |k| result.null[k].1.score(result.dim)),
                )
            })
            .collect()
    }
    fn explain(&self, inputs: &Inputs<'_>, flags: &[bool]) -> Explained {
        let Some(result) = inputs.neighbors else {
            return Explained::default();
        };
        use crate::io::embeddings::NullRow;
        let reasons = result
            .null
            .iter()
            .filter(|(r, _)| flags.get(*r).copied().unwrap_or(false))
            .map(|&(r, why)| {
                (
                    r,
                    Place::First,
                    format!(
                        "null embedding: {}; no near-duplicates or neighbours could be found for it",
                        why.text(result.dim)
                    ),
                )
            })
            .collect();
        let count = |f: fn(&NullRow) -> bool| result.null.iter().filter(|(_, w)| f(w)).count();
        Explained {
            reasons,
            summary: Some(CheckDetails::Null(NullSummary {
                null_rows: result.null.len(),
                non_finite: count(|w| matches!(w, NullRow::NonFinite(_))),
                zero: count(|w| matches!(w, NullRow::Zero)),
                constant: count(|w| matches!(w, NullRow::Constant)),
            })),
            drift: None,
        }
    }
}
