//! Per-item scores, the priority that orders the review queue, and the
//! human-readable reasons attached to each item.
//!
//! **`--rank-by SCORE`** ([`RankBy`]) replaces the item's own term by one
//! label-quality score ([`RankBy::rankable`]), lowest quality first:
//! `1 − v` for a score where lower is worse, `v / max` (brier: `v / 2`) for
//! one where higher is worse. The raises below apply to it alike.
//!
//! **Classification** (default): `priority = 1 − normalized_margin`, where
//! `normalized_margin = (p_y − max_{k≠y} p_k + 1) / 2`. It puts first the items
//! whose annotated label the model rejects most confidently. On the
//! human-verified label errors of Northcutt et al. (2021) it ranks the errors
//! with AUROC 0.991 on CIFAR-10 and 0.998 on MNIST (cleanlab's
//! self-confidence: 0.988 and 0.998).
//!
//! **Segmentation:** `priority = 1 − mean(miou, boundary_iou,
//! normalized_margin_softmin)`, over the terms defined for the item. `miou`
//! catches missing or swapped objects (a class present on one side only has
//! IoU 0), `boundary_iou` catches shifted outlines that barely move the mask
//! IoU, and the softmin of the per-pixel normalised margin catches small but
//! confident disagreements that whole-mask ratios average away.
//!
//! **The agreement raise** (with annotations): an item whose annotators
//! disagree is raised by [`agreement_raise`],
//! `p' = p + AGREEMENT_WEIGHT · disagreement · (1 − p)` (text:
//! [`AGREEMENT_RAISE`]).
//!
//! **The conflict raise** (with embeddings): an item with a conflicting
//! near-duplicate is raised by [`conflict_raise`],
//! `p'' = p' + DUP_WEIGHT · dup_conflict · (1 − p') · p' / (p' + p'_j)`,
//! where `p'` is its priority after the agreement raise and `p'_j` that of
//! its closest conflicting partner (text: [`CONFLICT_RAISE`]).
//!
//! **The audit raise** (when a data-audit check ran, one whose
//! [`crate::checks::Check::raises_priority`]: `leakage`, `outlier`, ...):
//! an item such a check flags is raised by [`audit_raise`], `p''' = p'' +
//! AUDIT_WEIGHT · audit · (1 − p'')`, `audit` the highest score among the
//! audit checks that flag it (text: [`audit_raise_text`]).
//!
//! [`priorities`] is the one place that computes them, for every item at
//! once, after the checks: the stages only record what a raise needs
//! ([`Raises`]). All lie in [0, 1]; higher means review first.

use serde::{Deserialize, Serialize};

use crate::config::Task;
use crate::scores::{Applies, Direction, ItemScores, Score, Stage};

/// What an item's own priority term is (`--rank-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankBy {
    /// The task's default: classification `1 − normalized_margin`,
    /// segmentation `1 − mean(miou, boundary_iou,
    /// normalized_margin_softmin)` ([`formula`]).
    #[default]
    Default,
    /// One label-quality score ([`RankBy::rankable`]), lowest quality first
    /// ([`badness`]).
    Score(Score),
}

impl RankBy {
    /// `--rank-by` as the user writes it: `default` or a rankable score's
    /// name as written in queue.jsonl.
    pub fn parse(s: &str) -> Result<RankBy, String> {
        if s == "default" {
            return Ok(RankBy::Default);
        }
        match Score::from_name(s) {
            Some(score) if Self::rankable(score) => Ok(RankBy::Score(score)),
            Some(_) => Err(format!(
                "{s} is not a label-quality score; choose one of: default, {}",
                Self::names().join(", ")
            )),
            None => Err(format!(
                "no score is named {s:?}; choose one of: default, {}",
                Self::names().join(", ")
            )),
        }
    }

    /// Its name, as `--rank-by` takes it and `report.json` records it.
    pub fn name(self) -> &'static str {
        match self {
            RankBy::Default => "default",
            RankBy::Score(s) => s.name(),
        }
    }

    /// A label-quality score: one the score stage computes from the item's
    /// label (so a wrong label moves it), with a direction. The expected
    /// calibration error is left out: it measures the model's confidence,
    /// not the label.
    pub fn rankable(score: Score) -> bool {
        let d = score.decl();
        d.needs_label
            && d.stage == Stage::Score
            && d.direction != Direction::Neither
            && score != Score::Ece
    }

    /// `--rank-by`'s help: the choices follow from the score table.
    pub fn help() -> String {
        format!(
            "Order the queue by one label-quality score, lowest quality first, instead of the \
             default priority: {} (any task); {} (segmentation). The raises for annotator \
             disagreement and near-duplicate conflicts apply",
            Self::names_for(Applies::Any).join(", "),
            Self::names_for(Applies::Segmentation).join(", ")
        )
    }

    /// The names of the rankable scores that apply to `applies`, in table
    /// order.
    fn names_for(applies: Applies) -> Vec<&'static str> {
        crate::scores::TABLE
            .iter()
            .filter(|d| Self::rankable(d.score) && d.applies == applies)
            .map(|d| d.name)
            .collect()
    }

    /// The names of the rankable scores, in table order.
    pub fn names() -> Vec<&'static str> {
        crate::scores::TABLE
            .iter()
            .filter(|d| Self::rankable(d.score))
            .map(|d| d.name)
            .collect()
    }

    /// Refuse a score the task does not have (a segmentation score on a
    /// classification dataset), naming the ones it has.
    pub fn check(self, task: Task) -> Result<(), String> {
        match self {
            RankBy::Score(s)
                if task == Task::Classification && s.decl().applies == Applies::Segmentation =>
            {
                Err(format!(
                    "--rank-by {}: a segmentation score, and this dataset is classification; choose one of: default, {}",
                    s.name(),
                    Self::names_for(Applies::Any).join(", ")
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A rankable score's value `v` as a priority term in [0, 1], higher =
/// review first: `1 − v` where lower is worse (every such score lies in
/// [0, 1]), `v / 2` for brier (in [0, 2]), `v` for another score where
/// higher is worse.
pub fn badness(score: Score, v: f64) -> f64 {
    let p = match score.decl().direction {
        Direction::LowerWorse => 1.0 - v,
        Direction::HigherWorse if score == Score::Brier => v / 2.0,
        Direction::HigherWorse | Direction::Neither => v,
    };
    p.clamp(0.0, 1.0)
}

/// The formula, as recorded in `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityFormula {
    pub formula: String,
    pub terms: Vec<String>,
    pub range: [f64; 2],
    pub higher_means: String,
    /// With embeddings: the raise of an item with a conflicting
    /// near-duplicate ([`CONFLICT_RAISE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_raise: Option<String>,
    /// When an audit check ran: the raise of an item it flags
    /// ([`audit_raise_text`]), naming the audit checks that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_raise: Option<String>,
}

/// The formula used for `task` under `rank`; `with_neighbors`: the
/// neighbour stage ran, so the conflict raise applies; `audit_checks`: the
/// audit checks that ran (the audit raise applies when there is one).
pub fn formula(
    task: Task,
    with_neighbors: bool,
    audit_checks: &[&str],
    rank: RankBy,
) -> PriorityFormula {
    let formula = base_formula(task, with_neighbors, rank);
    PriorityFormula {
        audit_raise: (!audit_checks.is_empty()).then(|| audit_raise_text(audit_checks)),
        ..formula
    }
}

fn base_formula(task: Task, with_neighbors: bool, rank: RankBy) -> PriorityFormula {
    let conflict_raise = with_neighbors.then(|| CONFLICT_RAISE.to_string());
    if let RankBy::Score(s) = rank {
        let name = s.name();
        let formula = match s.decl().direction {
            Direction::LowerWorse => format!("1 - {name}"),
            _ if s == Score::Brier => format!("{name} / 2"),
            _ => name.to_string(),
        };
        return PriorityFormula {
            formula,
            terms: vec![name.into()],
            range: [0.0, 1.0],
            higher_means: "review first".into(),
            conflict_raise,
            audit_raise: None,
        };
    }
    match task {
        Task::Classification => PriorityFormula {
            formula: "1 - normalized_margin".into(),
            terms: vec!["normalized_margin".into()],
            range: [0.0, 1.0],
            higher_means: "review first".into(),
            conflict_raise,
            audit_raise: None,
        },
        Task::Segmentation => PriorityFormula {
            formula:
                "1 - mean(miou, boundary_iou, normalized_margin_softmin) over the defined terms"
                    .into(),
            terms: ["miou", "boundary_iou", "normalized_margin_softmin"]
                .map(String::from)
                .to_vec(),
            range: [0.0, 1.0],
            higher_means: "review first".into(),
            conflict_raise,
            audit_raise: None,
        },
    }
}

/// Weight of the audit checks' score in [`audit_raise`].
pub const AUDIT_WEIGHT: f64 = 0.1;

/// [`audit_raise`] as `report.json` `priority.audit_raise` writes it, with
/// the audit checks that ran.
pub fn audit_raise_text(audit_checks: &[&str]) -> String {
    format!(
        "p + {AUDIT_WEIGHT} * audit * (1 - p), audit = the highest score among the audit checks ({}) that flag the item",
        audit_checks.join(", ")
    )
}

/// The priority of an item a data-audit check flags: `p + AUDIT_WEIGHT ·
/// audit · (1 − p)`, `audit` the highest score in [0, 1] among the audit
/// checks that flag it. A tenth of the way to 1 at most: the item moves
/// up among the items of like label evidence, never above strong label
/// evidence (a clean item at 0.2 flagged at score 1 reaches 0.28; the
/// label errors of the demo stand at 0.45 and above), since the queue is
/// for re-checking labels and the audit issues have their own views and
/// `check_scores`. With 0.5 the demo's eight leaked clean twins rose
/// above its planted label errors. Stays in [0, 1].
pub fn audit_raise(p: f64, audit: f64) -> f64 {
    p + AUDIT_WEIGHT * audit.clamp(0.0, 1.0) * (1.0 - p)
}

/// Weight of `dup_conflict` in [`conflict_raise`].
pub const DUP_WEIGHT: f64 = 0.5;

/// [`conflict_raise`] as `report.json` `duplicates.priority` writes it.
pub const CONFLICT_RAISE: &str = "p + 0.5 * dup_conflict * (1 - p) * p / (p + p_partner), p_partner = priority of the closest conflicting near-duplicate";

/// The priority of an item with a conflicting near-duplicate:
/// `p + DUP_WEIGHT · dup_conflict · (1 − p) · p / (p + p_partner)`, where
/// `p` is the item's priority from its own scores and `p_partner` that of
/// its closest conflicting partner. One of two conflicting labels is wrong;
/// the share `p / (p + p_partner)` (½ when both are 0) gives most of the
/// raise to the side the model already doubts, so a correct item does not
/// climb just because its duplicate is mislabelled. Stays in [0, 1].
pub fn conflict_raise(p: f64, p_partner: f64, dup_conflict: f64) -> f64 {
    let share = if p + p_partner > 0.0 {
        p / (p + p_partner)
    } else {
        0.5
    };
    p + DUP_WEIGHT * dup_conflict * (1.0 - p) * share
}

/// Weight of the disagreement raise ([`agreement_raise`]).
pub const AGREEMENT_WEIGHT: f64 = 0.5;

/// [`agreement_raise`] as `report.json` `agreement.priority` writes it.
pub const AGREEMENT_RAISE: &str = "p + 0.5 * disagreement * (1 - p), disagreement = 1 - annotator_agreement, or 1 when the annotators' majority differs from the official label";

/// The priority of an item whose annotators disagree:
/// `p + AGREEMENT_WEIGHT · disagreement · (1 − p)`, where `disagreement`
/// is `1 − annotator_agreement`, or 1 when the annotators' majority
/// contradicts the official label. An item the annotators agree on keeps
/// `p`; stays in [0, 1].
pub fn agreement_raise(p: f64, disagreement: f64) -> f64 {
    p + AGREEMENT_WEIGHT * disagreement.clamp(0.0, 1.0) * (1.0 - p)
}

/// What raises an item's priority above its own scores', as the stages
/// that find it record it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Raises {
    /// With annotations: the item's disagreement in [0, 1]
    /// (`crate::agreement::disagreement`); `None` when undefined.
    pub disagreement: Option<f64>,
    /// With embeddings: the row of its closest conflicting near-duplicate
    /// (ties to the lower row) and its `dup_conflict`; `None` without one.
    pub conflict: Option<(usize, f64)>,
    /// The highest score among the audit checks that flag it
    /// ([`crate::checks::audit_score`]); `None` when none does.
    pub audit: Option<f64>,
}

/// What an item's priority is computed from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terms<'a> {
    /// Its scores; `None` for an unlabelled item, whose own priority is 0
    /// (it never enters the review queue).
    pub scores: Option<&'a ItemScores>,
    pub raises: Raises,
}

/// The priority of every item, `rows[i]` being the item at row `i`:
///
/// 1. `p = `[`priority`]`(scores)` (0 for an unlabelled item);
/// 2. `p' = `[`agreement_raise`]`(p, disagreement)` where the disagreement
///    is defined, else `p`;
/// 3. `p'' = `[`conflict_raise`]`(p', p'_partner, dup_conflict)` where the
///    item has a conflicting partner, else `p'`; `p'_partner` is the
///    partner's priority after step 2 (0 for a row out of range);
/// 4. `p''' = `[`audit_raise`]`(p'', audit)` where an audit check flags
///    the item, else `p''`.
///
/// Called once per run, after the checks; nothing else sets an item's
/// priority. `rank` chooses the item's own term ([`priority`]).
pub fn priorities(rows: &[Terms<'_>], rank: RankBy) -> Vec<f64> {
    let raised: Vec<f64> = rows
        .iter()
        .map(|t| {
            let p = t.scores.map_or(0.0, |s| priority(s, rank));
            match t.raises.disagreement {
                Some(d) => agreement_raise(p, d),
                None => p,
            }
        })
        .collect();
    rows.iter()
        .zip(&raised)
        .map(|(t, &p)| match t.raises.conflict {
            Some((partner, dc)) => {
                conflict_raise(p, raised.get(partner).copied().unwrap_or(0.0), dc)
            }
            None => p,
        })
        .zip(rows)
        .map(|(p, t)| match t.raises.audit {
            Some(a) => audit_raise(p, a),
            None => p,
        })
        .collect()
}

/// The priority of an item from its own scores under `rank`; 0 when no
/// term is defined.
pub fn priority(scores: &ItemScores, rank: RankBy) -> f64 {
    if let RankBy::Score(s) = rank {
        return scores.get(s).map_or(0.0, |v| badness(s, v));
    }
    match scores.is_segmentation() {
        false => scores
            .get(Score::NormalizedMargin)
            .map_or(0.0, |nm| 1.0 - nm),
        true => {
            let terms = [
                Score::Miou,
                Score::BoundaryIou,
                Score::NormalizedMarginSoftmin,
            ]
            .map(|t| scores.get(t));
            crate::metrics::confusion::mean_defined(terms.into_iter()).map_or(0.0, |q| 1.0 - q)
        }
    }
}

/// Facts about a classification item used to explain it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RowFacts {
    pub label: u32,
    pub pred: u32,
    pub p_label: f64,
    pub p_pred: f64,
}

/// Facts about a segmentation item used to explain it: its worst class;
/// and its area per class, which the drift stage follows
/// ([`crate::drift`], the annotated-area bias).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegFacts {
    /// `(class, IoU, annotated pixels, predicted pixels)` of the class with
    /// the lowest IoU.
    pub worst_class: Option<(usize, f64, u64, u64)>,
    /// `(class, annotated pixels, predicted pixels)` of every class the
    /// mask or the prediction holds (either count above 0), by class
    /// ascending: the row and column sums of the item's confusion (scored
    /// pixels only). Empty in a record written before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub areas: Vec<(u32, u64, u64)>,
}

/// Dataset-wide medians that put an item's values in context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    pub median_miou: Option<f64>,
    pub median_boundary_iou: Option<f64>,
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn classification_priority_is_one_minus_normalized_margin() {
        let s = ItemScores::default().with(Score::NormalizedMargin, Some(0.125));
        assert_eq!(priority(&s, RankBy::Default), 0.875);
    }

    #[test]
    fn conflict_raise_favours_the_side_the_model_doubts() {
        // p = 0.6, partner 0.2, dup_conflict 0.8: 0.6 + 0.5·0.8·0.4·0.75 = 0.72.
        assert!((conflict_raise(0.6, 0.2, 0.8) - 0.72).abs() < 1e-12);
        // The partner: 0.2 + 0.5·0.8·0.8·0.25 = 0.28.
        assert!((conflict_raise(0.2, 0.6, 0.8) - 0.28).abs() < 1e-12);
        // Both at 0 share the raise equally: 0 + 0.5·1·1·0.5.
        assert_eq!(conflict_raise(0.0, 0.0, 1.0), 0.25);
        assert_eq!(conflict_raise(1.0, 0.0, 1.0), 1.0);
        assert!(CONFLICT_RAISE.starts_with(&format!("p + {DUP_WEIGHT} * dup_conflict")));
    }

    #[test]
    fn priorities_raise_for_agreement_then_for_the_conflict() {
        let s = |nm: f64| ItemScores::default().with(Score::NormalizedMargin, Some(nm));
        let (a, b, c) = (s(0.4), s(0.8), s(0.5));
        let rows = [
            Terms {
                scores: Some(&a),
                raises: Raises {
                    disagreement: Some(0.5),
                    conflict: Some((1, 0.8)),
                    audit: None,
                },
            },
            Terms {
                scores: Some(&b),
                raises: Raises {
                    disagreement: None,
                    conflict: Some((0, 0.8)),
                    audit: None,
                },
            },
            Terms {
                scores: Some(&c),
                raises: Raises::default(),
            },
            Terms::default(),
        ];
        let p = priorities(&rows, RankBy::Default);
        // Row 0: 0.6 raised to 0.6 + 0.5·0.5·0.4 = 0.7, then by its partner
        // at 0.2 (no disagreement): 0.7 + 0.5·0.8·0.3·0.7/0.9.
        let p0 = agreement_raise(0.6, 0.5);
        assert_eq!(p[0], conflict_raise(p0, 1.0 - 0.8, 0.8));
        assert!((p[0] - (0.7 + 0.4 * 0.3 * 0.7 / 0.9)).abs() < 1e-12);
        // Row 1 sees its partner's raised priority.
        assert_eq!(p[1], conflict_raise(1.0 - 0.8, p0, 0.8));
        assert_eq!(p[2], 0.5);
        assert_eq!(p[3], 0.0, "an unlabelled item");
    }

    #[test]
    fn the_audit_raise_comes_last() {
        // 1 − 0.8 = 0.2, raised for the conflict to 0.2 + 0.5·0.6·0.8·(0.2/0.7),
        // then by an audit score of 0.9: p + 0.1·0.9·(1 − p).
        let (a, b) = (
            ItemScores::default().with(Score::NormalizedMargin, Some(0.8)),
            ItemScores::default().with(Score::NormalizedMargin, Some(0.5)),
        );
        let rows = [
            Terms {
                scores: Some(&a),
                raises: Raises {
                    disagreement: None,
                    conflict: Some((1, 0.6)),
                    audit: Some(0.9),
                },
            },
            Terms {
                scores: Some(&b),
                raises: Raises::default(),
            },
        ];
        let p = priorities(&rows, RankBy::Default);
        let p1 = 0.2 + 0.5 * 0.6 * 0.8 * (0.2 / 0.7);
        assert!((p[0] - (p1 + 0.09 * (1.0 - p1))).abs() < 1e-12, "{}", p[0]);
        assert_eq!(p[1], 0.5, "the partner's own priority is not raised");
        assert_eq!(audit_raise(0.0, 1.0), 0.1);
        assert_eq!(audit_raise(0.3, 0.0), 0.3);
        assert_eq!(
            audit_raise_text(&["leakage", "outlier"]),
            "p + 0.1 * audit * (1 - p), audit = the highest score among the audit checks (leakage, outlier) that flag the item"
        );
    }

    #[test]
    fn segmentation_priority_skips_undefined_terms() {
        let s = ItemScores::segmentation(100)
            .with(Score::Miou, Some(0.5))
            .with(Score::NormalizedMarginSoftmin, Some(0.9));
        assert!((priority(&s, RankBy::Default) - 0.3).abs() < 1e-12);
        let empty = ItemScores::segmentation(0);
        assert_eq!(priority(&empty, RankBy::Default), 0.0);
    }

    #[test]
    fn rank_by_takes_the_label_quality_scores_by_name() {
        assert_eq!(
            RankBy::names(),
            [
                "self_confidence",
                "normalized_margin",
                "brier",
                "miou",
                "dice",
                "boundary_iou",
                "pixel_accuracy",
                "self_confidence_softmin",
                "normalized_margin_softmin",
            ]
        );
        let help = RankBy::help();
        assert!(
            help.contains(": self_confidence, normalized_margin, brier (any task); miou, dice, boundary_iou, pixel_accuracy, self_confidence_softmin, normalized_margin_softmin (segmentation)"),
            "{help}"
        );
        assert_eq!(RankBy::parse("default"), Ok(RankBy::Default));
        assert_eq!(
            RankBy::parse("self_confidence"),
            Ok(RankBy::Score(Score::SelfConfidence))
        );
        let e = RankBy::parse("entropy").unwrap_err();
        assert!(e.contains("not a label-quality score"), "{e}");
        assert!(
            e.contains("default, self_confidence, normalized_margin, brier"),
            "{e}"
        );
        let e = RankBy::parse("confidence").unwrap_err();
        assert!(e.starts_with("no score is named \"confidence\""), "{e}");
        assert!(RankBy::parse("ece").is_err());
        assert!(RankBy::parse("pixels").is_err());
        let e = RankBy::Score(Score::Miou)
            .check(Task::Classification)
            .unwrap_err();
        assert!(
            e.ends_with("choose one of: default, self_confidence, normalized_margin, brier"),
            "{e}"
        );
        assert_eq!(RankBy::Score(Score::Miou).check(Task::Segmentation), Ok(()));
        assert_eq!(
            RankBy::Score(Score::Brier).check(Task::Classification),
            Ok(())
        );
    }

    #[test]
    fn rank_by_a_score_orders_by_its_quality_lowest_first() {
        let s = ItemScores::default()
            .with(Score::NormalizedMargin, Some(0.125))
            .with(Score::SelfConfidence, Some(0.25))
            .with(Score::Brier, Some(1.5));
        assert_eq!(priority(&s, RankBy::Score(Score::SelfConfidence)), 0.75);
        assert_eq!(priority(&s, RankBy::Score(Score::NormalizedMargin)), 0.875);
        // brier in [0, 2], higher worse: 1.5 / 2.
        assert_eq!(priority(&s, RankBy::Score(Score::Brier)), 0.75);
        // An undefined term: 0, as for the default.
        assert_eq!(priority(&s, RankBy::Score(Score::Miou)), 0.0);
        let seg = ItemScores::segmentation(100)
            .with(Score::Miou, Some(0.5))
            .with(Score::BoundaryIou, Some(0.1));
        assert_eq!(priority(&seg, RankBy::Score(Score::BoundaryIou)), 0.9);
        assert_eq!(
            formula(
                Task::Classification,
                false,
                &[],
                RankBy::Score(Score::Brier)
            )
            .formula,
            "brier / 2"
        );
        assert_eq!(
            formula(
                Task::Segmentation,
                true,
                &["outlier"],
                RankBy::Score(Score::Miou)
            )
            .formula,
            "1 - miou"
        );
        // The raises apply to the chosen term.
        let rows = [Terms {
            scores: Some(&s),
            raises: Raises {
                disagreement: Some(1.0),
                conflict: None,
                audit: None,
            },
        }];
        assert_eq!(
            priorities(&rows, RankBy::Score(Score::SelfConfidence)),
            [0.75 + 0.5 * 0.25]
        );
    }
}
