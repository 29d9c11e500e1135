//! The checks: one contract for every kind of issue `triage` looks for, in
//! the manner of cleanlab's Datalab issue managers
//! (`cleanlab/datalab/internal/issue_manager/issue_manager.py`).
//!
//! A [`Check`] has a name, declares the inputs it [`Need`]s, and gives every
//! item a score in [0, 1] (higher: more likely an issue; `None` where the
//! score is undefined for the item) and a flag rule on that score. [`run`]
//! runs every check of [`registry`] over the scored items: a check whose
//! inputs are missing is [`Outcome::Skipped`] with the reason recorded;
//! one that ran returns a [`Finding`]: per-item flags, the reasons it adds
//! to flagged items, and a dataset summary. The queue's views
//! (`report.json` `views`), the review precision per issue type and the
//! `checks` section are all read from the findings, so each threshold is
//! written once, in its check.
//!
//! Checks that use neighbours share the one kNN graph of the neighbour
//! stage ([`Inputs::neighbors`]), built once per run.
//!
//! **Adding a check** takes a file under `src/checks/` that implements
//! [`Check`], and one line in [`registry`] (plus its row in the README's
//! table of checks): [`class_imbalance`] was added so.

pub mod class_imbalance;
pub mod label_quality;
pub mod low_agreement;
pub mod near_duplicate;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::config::{DatasetConfig, Task};
use crate::io::manifest::Manifest;
use crate::neighbors::NeighborResult;
use crate::records::ItemResult;
use crate::schema::CheckSummary;

/// An input a check may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A classification dataset.
    Classification,
    /// A segmentation dataset.
    Segmentation,
    /// Embeddings, and so the neighbour stage's kNN graph.
    Embeddings,
    /// Several annotators per item (`[inputs] annotations`).
    Annotations,
}

impl Need {
    /// The name written in `report.json` `checks`.
    pub fn name(self) -> &'static str {
        match self {
            Need::Classification => "classification",
            Need::Segmentation => "segmentation",
            Need::Embeddings => "embeddings",
            Need::Annotations => "annotations",
        }
    }

    /// Why a check needing this input is skipped, when it is missing.
    fn missing(self) -> &'static str {
        match self {
            Need::Classification => "classification only",
            Need::Segmentation => "segmentation only",
            Need::Embeddings => "needs embeddings ([inputs] embeddings)",
            Need::Annotations => "needs several annotators ([inputs] annotations)",
        }
    }
}

/// What the checks read: the scored items and what the run found about them.
pub struct Inputs<'a> {
    pub cfg: &'a DatasetConfig,
    pub manifest: &'a Manifest,
    /// The scored items, in priority order (the order of the flags).
    pub items: &'a [ItemResult],
    /// The neighbour stage's result (its graph and pairs are by row in
    /// items order, [`ItemResult::index`]), when embeddings were given.
    pub neighbors: Option<&'a NeighborResult>,
    /// The annotators' labels, with `[inputs] annotations`.
    pub annotations: Option<&'a crate::io::annotations::Annotations>,
    /// Segmentation with annotations: each item's annotator pairs and their
    /// mIoU, by row.
    pub annotator_pairs: Option<&'a crate::agreement::ItemPairs>,
}

impl Inputs<'_> {
    /// Whether `need` is available.
    pub fn has(&self, need: Need) -> bool {
        match need {
            Need::Classification => self.cfg.task == Task::Classification,
            Need::Segmentation => self.cfg.task == Task::Segmentation,
            Need::Embeddings => self.neighbors.is_some(),
            Need::Annotations => self.annotations.is_some(),
        }
    }
}

/// When a check flags an item: its score above a value (or at least it),
/// with a sentence saying what that means.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub value: f64,
    /// `>=` instead of `>`.
    pub inclusive: bool,
    /// What crossing it means; empty for none.
    pub why: String,
}

impl Threshold {
    /// Flags a score `> value`.
    pub fn above(value: f64) -> Self {
        Threshold {
            value,
            inclusive: false,
            why: String::new(),
        }
    }

    /// Flags a score `>= value`.
    pub fn at_least(value: f64) -> Self {
        Threshold {
            inclusive: true,
            ..Self::above(value)
        }
    }

    /// With `why`, said after the value in the text.
    pub fn because(self, why: impl Into<String>) -> Self {
        Threshold {
            why: why.into(),
            ..self
        }
    }

    /// Whether `score` crosses it.
    pub fn flags(&self, score: f64) -> bool {
        if self.inclusive {
            score >= self.value
        } else {
            score > self.value
        }
    }

    /// `"> 0.5 (why)"`, the value as Rust prints it (shortest round trip).
    pub fn text(&self) -> String {
        let op = if self.inclusive { ">=" } else { ">" };
        if self.why.is_empty() {
            format!("{op} {}", self.value)
        } else {
            format!("{op} {} ({})", self.value, self.why)
        }
    }
}

/// One kind of issue.
pub trait Check: Sync {
    /// Stable name: the key of its view in `report.json` `views`.
    fn name(&self) -> &'static str;

    /// The inputs it needs; it is skipped when one is missing.
    fn needs(&self) -> &'static [Need];

    /// What its score is, as `report.json` describes it.
    fn score_text(&self, task: Task) -> &'static str;

    /// When the score flags an item: one value, from which both the test
    /// ([`Check::flags`]) and its text in `report.json`
    /// ([`Check::flagged_when`]) follow.
    fn threshold(&self) -> Threshold;

    /// When the score flags an item, as `report.json` describes it.
    fn flagged_when(&self) -> String {
        self.threshold().text()
    }

    /// The item's score in [0, 1], higher when the issue is more likely;
    /// `None` when undefined for the item.
    fn score(&self, item: &ItemResult) -> Option<f64>;

    /// Whether a (finite) score flags its item.
    fn flags(&self, score: f64) -> bool {
        self.threshold().flags(score)
    }

    /// Run the check: the reasons it adds to flagged items, and its summary.
    /// `flags` holds its flag per item (priority order). The default adds
    /// no reason (the item's score lines already say it) and summarises
    /// nothing beyond the count of flagged items.
    fn explain(&self, _inputs: &Inputs<'_>, _flags: &[bool]) -> Explained {
        Explained::default()
    }
}

/// Where an added reason goes among the item's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Before the score reasons (the most important).
    First,
    /// After them.
    Last,
}

/// What [`Check::explain`] returns.
#[derive(Debug, Clone, Default)]
pub struct Explained {
    /// `(position in priority order, place, reason)`: reasons added to the
    /// item's own in the queue files.
    pub reasons: Vec<(usize, Place, String)>,
    /// Dataset-level facts, written in `report.json` `checks`.
    pub summary: Map<String, Value>,
}

/// What a check that ran found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Per item, in priority order: whether the check flags it.
    pub flags: Vec<bool>,
    /// How many items it flags.
    pub flagged: usize,
    pub explained: Explained,
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub enum Outcome {
    Ran(Finding),
    /// An input was missing; the reason names it.
    Skipped(&'static str),
}

/// A check and its outcome.
pub struct CheckRun {
    pub check: Box<dyn Check>,
    pub outcome: Outcome,
}

impl CheckRun {
    /// Whether the check ran and flags the item at priority position `pos`.
    pub fn flagged(&self, pos: usize) -> bool {
        match &self.outcome {
            Outcome::Ran(f) => f.flags.get(pos).copied().unwrap_or(false),
            Outcome::Skipped(_) => false,
        }
    }
}

/// Every check, in the order of `report.json` `views`; a check that needs
/// dataset-wide facts for its scores (class counts) takes them from
/// `inputs` here.
pub fn registry(inputs: &Inputs<'_>) -> Vec<Box<dyn Check>> {
    vec![
        Box::new(label_quality::WrongLabel),
        Box::new(label_quality::Uncertain),
        Box::new(label_quality::Miscalibrated),
        Box::new(label_quality::BoundaryDisagreement),
        Box::new(near_duplicate::DuplicateConflict),
        Box::new(class_imbalance::ClassImbalance::new(inputs)),
        Box::new(low_agreement::LowAgreement::new(inputs.cfg.task)),
    ]
}

/// Run every check of [`registry`] over `inputs`.
pub fn run(inputs: &Inputs<'_>) -> Vec<CheckRun> {
    use rayon::prelude::*;
    registry(inputs)
        .into_iter()
        .map(|check| {
            let outcome = match check.needs().iter().find(|&&n| !inputs.has(n)) {
                Some(n) => Outcome::Skipped(n.missing()),
                None => {
                    let flags: Vec<bool> = inputs
                        .items
                        .par_iter()
                        .map(|it| {
                            check
                                .score(it)
                                .is_some_and(|v| v.is_finite() && check.flags(v))
                        })
                        .collect();
                    let flagged = flags.iter().filter(|&&f| f).count();
                    let explained = check.explain(inputs, &flags);
                    Outcome::Ran(Finding {
                        flags,
                        flagged,
                        explained,
                    })
                }
            };
            CheckRun { check, outcome }
        })
        .collect()
}

/// `report.json` `checks`: per check, its inputs, whether it ran (or why
/// not), how many items it flags and its summary.
pub fn section(runs: &[CheckRun]) -> IndexMap<String, CheckSummary> {
    runs.iter()
        .map(|r| {
            let needs = r.check.needs().iter().map(|n| n.name().into()).collect();
            let summary = match &r.outcome {
                Outcome::Ran(f) => CheckSummary {
                    needs,
                    status: "ran".into(),
                    reason: None,
                    flagged: Some(f.flagged),
                    summary: f.explained.summary.clone(),
                },
                Outcome::Skipped(why) => CheckSummary {
                    needs,
                    status: "skipped".into(),
                    reason: Some((*why).into()),
                    flagged: None,
                    summary: Map::new(),
                },
            };
            (r.check.name().to_string(), summary)
        })
        .collect()
}

/// The reasons every check added, by priority position, for the writers
/// ([`Reasons::of`]).
pub fn reasons(runs: &[CheckRun]) -> Reasons<'_> {
    let mut by_pos: Vec<(usize, Place, &str)> = runs
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Ran(f) => Some(&f.explained.reasons),
            Outcome::Skipped(_) => None,
        })
        .flatten()
        .map(|(p, place, s)| (*p, *place, s.as_str()))
        .collect();
    // Stable: the check order is kept within a position.
    by_pos.sort_by_key(|&(p, _, _)| p);
    Reasons { by_pos }
}

/// The checks' added reasons, by priority position (see [`reasons`]).
#[derive(Debug, Clone, Default)]
pub struct Reasons<'a> {
    by_pos: Vec<(usize, Place, &'a str)>,
}

impl Reasons<'_> {
    /// Every reason of `item`, at priority position `pos`, most important
    /// first: the checks' [`Place::First`] reasons, the item's stored
    /// reasons with its classification score reasons
    /// ([`label_quality::row_reasons`], derived here rather than stored),
    /// then the checks' [`Place::Last`] reasons.
    pub fn of(&self, pos: usize, item: &ItemResult, class_names: &[String]) -> Vec<String> {
        let start = self.by_pos.partition_point(|&(p, _, _)| p < pos);
        let added = self.by_pos[start..]
            .iter()
            .take_while(|&&(p, _, _)| p == pos);
        let placed = |place: Place| {
            added
                .clone()
                .filter(move |&&(_, pl, _)| pl == place)
                .map(|&(_, _, s)| s.to_string())
        };
        let mut out: Vec<String> = placed(Place::First).collect();
        match &item.row {
            Some(facts) => {
                out.extend(label_quality::row_reasons(&item.scores, facts, class_names));
                out.extend_from_slice(&item.reasons);
            }
            None => out.extend_from_slice(&item.reasons),
        }
        out.extend(placed(Place::Last));
        out
    }
}

#[cfg(test)]
mod threshold_tests {
    use super::*;

    #[test]
    fn the_text_and_the_test_come_from_one_value() {
        let t = Threshold::above(0.5).because("why");
        assert_eq!(t.text(), "> 0.5 (why)");
        assert!(!t.flags(0.5) && t.flags(0.500_000_1));
        let t = Threshold::at_least(0.25);
        assert_eq!(t.text(), ">= 0.25");
        assert!(t.flags(0.25) && !t.flags(0.249_999));
        assert_eq!(Threshold::above(0.0).text(), "> 0");
    }

    /// Every check that needs no dataset to build: its text names its
    /// threshold, which flags exactly the scores past it, in its range.
    #[test]
    fn every_check_flags_what_its_text_says() {
        let checks: Vec<Box<dyn Check>> = vec![
            Box::new(label_quality::WrongLabel),
            Box::new(label_quality::Uncertain),
            Box::new(label_quality::Miscalibrated),
            Box::new(label_quality::BoundaryDisagreement),
            Box::new(near_duplicate::DuplicateConflict),
            Box::new(low_agreement::LowAgreement::new(Task::Classification)),
            Box::new(low_agreement::LowAgreement::new(Task::Segmentation)),
        ];
        let mut names = std::collections::HashSet::new();
        for c in &checks {
            let t = c.threshold();
            let text = c.flagged_when();
            let op = if t.inclusive { ">= " } else { "> " };
            let number: f64 = text
                .strip_prefix(op)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: {text:?}", c.name()));
            assert_eq!(number, t.value, "{}", c.name());
            assert!(
                (0.0..1.0).contains(&t.value),
                "{}: a score in [0, 1]",
                c.name()
            );
            assert_eq!(c.flags(t.value), t.inclusive, "{}", c.name());
            assert!(
                c.flags(t.value + 1e-9) && !c.flags(t.value - 1e-9),
                "{}",
                c.name()
            );
            let named = names.insert((c.name(), text.clone()));
            assert!(named, "{}: twice", c.name());
        }
    }
}
