//! The checks: one contract for every kind of issue `triage` looks for, in
//! the manner of cleanlab's Datalab issue managers
//! (`cleanlab/datalab/internal/issue_manager/issue_manager.py`).
//!
//! A [`Check`] has a name, declares the inputs it [`Need`]s, computes every
//! item's score from them ([`Check::scores`]: in its [`Check::range`],
//! [0, 1] unless it says otherwise; higher: more likely an issue; `None`
//! where the score is undefined for the item) and flags the items whose
//! score crosses its one [`Threshold`]. [`run`] runs every check of
//! [`registry`] over the scored items, in row order, before any priority
//! exists: a check whose inputs are missing is [`Outcome::Skipped`] with
//! the reason recorded; one that ran returns a [`Finding`]: per-item scores
//! and flags by row ([`ItemResult::index`]), the reasons it adds to flagged
//! items, and its typed summary. The queue's views (`report.json` `views`),
//! the review precision per issue type and the `checks` section are all
//! read from the findings, so each threshold is written once, in its check.
//!
//! Checks that use neighbours share the one kNN graph of the neighbour
//! stage ([`Inputs::neighbors`]), built once per run.
//!
//! **Adding a check** takes a file under `src/checks/` that implements
//! [`Check`], and one line in [`registry`] (plus its row in the table of
//! checks in docs/reference.md): [`class_imbalance`] was added so. The tests
//! hold every check of the registry to this contract, and that table to the
//! thresholds.

pub mod class_imbalance;
pub mod data_valuation;
pub mod drift;
pub mod label_quality;
pub mod leakage;
pub mod low_agreement;
pub mod near_duplicate;
pub mod non_iid;
pub mod null;
pub mod outlier;
pub mod underperforming_group;

use std::ops::RangeInclusive;

use indexmap::IndexMap;

use crate::config::{DatasetConfig, Task};
use crate::io::manifest::Manifest;
use crate::neighbors::NeighborResult;
use crate::records::ItemResult;
use crate::schema::{CheckDetails, CheckStatus, CheckSummary};

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
    /// A time column in items.csv (`batch` or `annotated_at`).
    Time,
    /// A `split` column in items.csv with two or more values.
    Splits,
    /// Pairs of identical or nearly identical items: embeddings (the
    /// neighbour stage's pairs), or an `image` column (identical files).
    Twins,
}

impl Need {
    /// The name written in `report.json` `checks`.
    pub fn name(self) -> &'static str {
        match self {
            Need::Classification => "classification",
            Need::Segmentation => "segmentation",
            Need::Embeddings => "embeddings",
            Need::Annotations => "annotations",
            Need::Time => "time",
            Need::Splits => "splits",
            Need::Twins => "embeddings_or_images",
        }
    }

    /// Why a check needing this input is skipped, when it is missing.
    fn missing(self) -> &'static str {
        match self {
            Need::Classification => "classification only",
            Need::Segmentation => "segmentation only",
            Need::Embeddings => "needs embeddings ([inputs] embeddings)",
            Need::Annotations => "needs several annotators ([inputs] annotations)",
            Need::Time => "needs a time column (batch or annotated_at in items.csv)",
            Need::Splits => "needs a split column in items.csv with two or more values",
            Need::Twins => "needs embeddings ([inputs] embeddings) or an image column in items.csv",
        }
    }
}

/// What the checks read: the scored items and what the run found about them.
pub struct Inputs<'a> {
    pub cfg: &'a DatasetConfig,
    pub manifest: &'a Manifest,
    /// The labelled items, in row order ([`ItemResult::index`] ascending).
    pub items: &'a [ItemResult],
    /// The neighbour stage's result (its graph and pairs are by row in
    /// items order, [`ItemResult::index`]), when embeddings were given.
    pub neighbors: Option<&'a NeighborResult>,
    /// Without embeddings, with an `image` column: the pairs of items whose
    /// image files are identical (`found_by` `image_hash`, distance 0).
    pub identical: Option<&'a [crate::neighbors::DupPair]>,
    /// The annotators' labels, with `[inputs] annotations`.
    pub annotations: Option<&'a crate::io::annotations::Annotations>,
    /// Segmentation with annotations: each item's annotator pairs and their
    /// mIoU, by row.
    pub annotator_pairs: Option<&'a crate::agreement::ItemPairs>,
    /// The campaign's batches and each item's batch and annotator, with a
    /// time column in items.csv ([`crate::io::campaign`]).
    pub campaign: Option<&'a crate::io::campaign::Campaign>,
    /// `--checks`: the checks to run (`None`: those on by default,
    /// [`Check::by_default`]); the others are skipped, "not selected".
    pub selected: Option<&'a [String]>,
    /// The checks before this one in [`registry`] order, with their
    /// outcomes ([`run`] fills it in; the `drift` check follows their
    /// flags). Empty when given to [`run`].
    pub earlier: &'a [CheckRun],
}

impl Inputs<'_> {
    /// Whether `need` is available.
    pub fn has(&self, need: Need) -> bool {
        match need {
            Need::Classification => self.cfg.task == Task::Classification,
            Need::Segmentation => self.cfg.task == Task::Segmentation,
            Need::Embeddings => self.neighbors.is_some(),
            Need::Annotations => self.annotations.is_some(),
            Need::Time => self.campaign.is_some(),
            Need::Splits => leakage::splits(self.manifest).is_some(),
            Need::Twins => self.neighbors.is_some() || self.identical.is_some(),
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

    /// Whether `score` crosses it (never for NaN).
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

/// One kind of issue: what it needs, how it scores an item, and when the
/// score flags it.
pub trait Check: Sync {
    /// Stable name: the key of its view in `report.json` `views`.
    fn name(&self) -> &'static str;

    /// The inputs it needs; it is skipped when one is missing.
    fn needs(&self) -> &'static [Need];

    /// Whether the items it flags are raised in priority by its score
    /// ([`crate::priority::audit_raise`]): the data-audit checks, whose
    /// issue the item's own scores do not carry.
    fn raises_priority(&self) -> bool {
        false
    }

    /// Whether it runs without `--checks` naming it (as Datalab runs every
    /// issue type but data valuation by default).
    fn by_default(&self) -> bool {
        true
    }

    /// What its score is, as `report.json` describes it.
    fn score_text(&self, task: Task) -> &'static str;

    /// Where every defined score lies: [0, 1] unless the check says
    /// otherwise.
    fn range(&self) -> RangeInclusive<f64> {
        0.0..=1.0
    }

    /// When the score flags an item (for `task`): one value, from which
    /// both the test ([`Threshold::flags`], applied by [`run_one`]) and its text in `report.json`
    /// ([`Check::flagged_when`]) follow.
    fn threshold(&self, task: Task) -> Threshold;

    /// Whether [`Check::threshold`] is fitted to the data by
    /// [`Check::scores`] (as Datalab fits its outlier cutoff to the
    /// distances' quartiles): read it only after the scores; before, its
    /// value is NaN and flags nothing. Its text then names the rule, and
    /// `report.json` the fitted value.
    fn fitted(&self) -> bool {
        false
    }

    /// When the score flags an item, as `report.json` describes it.
    fn flagged_when(&self, task: Task) -> String {
        self.threshold(task).text()
    }

    /// Every item's score, one per item of `inputs.items` in that order:
    /// in [`Check::range`], higher when the issue is more likely; `None`
    /// where undefined for the item. Called only when every input of
    /// [`Check::needs`] is there. [`each`] scores item by item.
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>>;

    /// The item's score when it follows from the item's own record (as the
    /// label-quality checks' do): the same value [`Check::scores`] gives
    /// it. [`run_one`] then keeps no column of scores for the check and
    /// reads an item's from the item when asked ([`Finding::score`]).
    /// `None` (the default): the scores need more than the item, and are
    /// kept, 8 bytes a row.
    fn of_item(&self) -> Option<fn(&ItemResult) -> Option<f64>> {
        None
    }

    /// The reasons it adds to flagged items, and its summary. `flags` holds
    /// its flag per row ([`ItemResult::index`]). The default adds no reason
    /// (the item's score lines already say it) and summarises nothing
    /// beyond the count of flagged items.
    fn explain(&self, _inputs: &Inputs<'_>, _flags: &[bool]) -> Explained {
        Explained::default()
    }
}

/// [`Check::scores`] item by item: `score` of each item of `inputs.items`,
/// in parallel, in that order.
pub fn each(
    inputs: &Inputs<'_>,
    score: impl Fn(&ItemResult) -> Option<f64> + Sync + Send,
) -> Vec<Option<f64>> {
    use rayon::prelude::*;
    inputs.items.par_iter().map(score).collect()
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
    /// `(row, place, reason)`: reasons added to the item at that row
    /// ([`ItemResult::index`]) in the queue files, in the order given.
    pub reasons: Vec<(usize, Place, String)>,
    /// Dataset-level facts, written in `report.json` `checks`.
    pub summary: Option<CheckDetails>,
    /// The `drift` check's section of `report.json` (`drift`).
    pub drift: Option<Box<crate::schema::Drift>>,
}

/// One bit per row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bits(Vec<u64>);

impl Bits {
    /// `n` bits, all clear.
    pub fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }

    /// Set bit `i` (past the end: nothing).
    pub fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Bit `i` (past the end: clear).
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 != 0)
    }
}

/// What a check that ran found, by row ([`ItemResult::index`]; rows of no
/// item given to it, the unlabelled ones, have no score and no flag): a
/// bit a row for each of given and flagged, and, for a check whose score
/// needs more than the item ([`Check::of_item`]), 8 bytes a row of scores.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Per row: the check was given its item.
    given: Bits,
    /// Per row: its score, NaN where undefined; `None` when the scores are
    /// read from the items (`of_item`).
    stored: Option<Vec<f64>>,
    /// The check's [`Check::of_item`].
    of_item: Option<fn(&ItemResult) -> Option<f64>>,
    /// Per row: whether the check flags it.
    flags: Bits,
    /// How many items it flags.
    pub flagged: usize,
    pub explained: Explained,
}

impl Finding {
    /// The score of `item`; `None` where undefined or the check was not
    /// given the item.
    pub fn score(&self, item: &ItemResult) -> Option<f64> {
        if !self.given(item.index) {
            return None;
        }
        let v = match (&self.stored, self.of_item) {
            (Some(stored), _) => stored.get(item.index).copied(),
            (None, Some(of_item)) => of_item(item),
            (None, None) => None,
        };
        v.filter(|v| !v.is_nan())
    }

    /// Whether the check was given the item at `row`.
    pub fn given(&self, row: usize) -> bool {
        self.given.get(row)
    }

    /// Whether the check flags the item at `row`.
    pub fn flagged(&self, row: usize) -> bool {
        self.flags.get(row)
    }
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
    /// How long it took (`report.json` `timings.checks_s`; zero when
    /// skipped).
    pub took: std::time::Duration,
}

impl CheckRun {
    /// Whether the check ran and flags the item at `row`
    /// ([`ItemResult::index`]).
    pub fn flagged(&self, row: usize) -> bool {
        match &self.outcome {
            Outcome::Ran(f) => f.flagged(row),
            Outcome::Skipped(_) => false,
        }
    }

    /// The check's score of `item`, when it ran and the score is defined.
    pub fn score(&self, item: &ItemResult) -> Option<f64> {
        match &self.outcome {
            Outcome::Ran(f) => f.score(item),
            Outcome::Skipped(_) => None,
        }
    }
}

/// Every check, in the order of `report.json` `views`. The checks hold no
/// state across runs: what they need from the dataset (class counts, the
/// kNN graph, the annotations) they read from their [`Inputs`] when they
/// run; a check may memoise what its `scores` computed for its `explain`
/// (`drift`), which is why this builds fresh checks for every call.
pub fn registry() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(label_quality::WrongLabel),
        Box::new(label_quality::Uncertain),
        Box::new(label_quality::Miscalibrated),
        Box::new(label_quality::BoundaryDisagreement),
        Box::new(near_duplicate::DuplicateConflict),
        Box::new(leakage::Leakage),
        Box::new(null::Null),
        Box::new(outlier::Outlier::default()),
        Box::new(non_iid::NonIid::default()),
        Box::new(underperforming_group::UnderperformingGroup::default()),
        Box::new(data_valuation::DataValuation::default()),
        Box::new(class_imbalance::ClassImbalance),
        Box::new(low_agreement::LowAgreement),
        Box::new(drift::Drift::default()),
    ]
}

/// The reason a check left out by `--checks` is skipped with.
pub const NOT_SELECTED: &str = "not selected";

/// The reason a check off by default is skipped with when `--checks` is
/// not given.
pub const OFF_BY_DEFAULT: &str = "not selected (off by default: name it in --checks)";

/// Refuse a `--checks` list naming a check [`registry`] does not have, or
/// none at all (a usage error listing the names).
pub fn validate_selection(names: &[String]) -> crate::Result<()> {
    let known: Vec<&'static str> = registry().iter().map(|c| c.name()).collect();
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !known.contains(n))
        .collect();
    if names.is_empty() || !unknown.is_empty() {
        return Err(crate::Error::Usage(format!(
            "--checks: unknown check {:?}; the checks are {}",
            unknown.first().copied().unwrap_or(""),
            known.join(", ")
        )));
    }
    Ok(())
}

/// Run every check of [`registry`] over `inputs`, in order, each seeing
/// the outcomes of those before it ([`Inputs::earlier`]); a check not
/// selected ([`Inputs::selected`]) is skipped.
pub fn run(inputs: &Inputs<'_>) -> Vec<CheckRun> {
    let mut runs: Vec<CheckRun> = Vec::new();
    for check in registry() {
        let chosen = match inputs.selected {
            Some(names) => names.iter().any(|n| n == check.name()),
            None => check.by_default(),
        };
        if !chosen {
            let why = if inputs.selected.is_some() {
                NOT_SELECTED
            } else {
                OFF_BY_DEFAULT
            };
            runs.push(CheckRun {
                check,
                outcome: Outcome::Skipped(why),
                took: std::time::Duration::ZERO,
            });
            continue;
        }
        let t = std::time::Instant::now();
        let outcome = run_one(
            check.as_ref(),
            &Inputs {
                earlier: &runs,
                ..*inputs
            },
        );
        runs.push(CheckRun {
            check,
            outcome,
            took: t.elapsed(),
        });
    }
    runs
}

/// The `drift` section of `report.json`, when the `drift` check ran:
/// taken out of its finding (it can be large: a row per annotator and
/// batch).
pub fn take_drift_section(runs: &mut [CheckRun]) -> Option<crate::schema::Drift> {
    runs.iter_mut().find_map(|r| match &mut r.outcome {
        Outcome::Ran(f) => f.explained.drift.take().map(|b| *b),
        Outcome::Skipped(_) => None,
    })
}

/// The rows [`Finding`] holds for `inputs`: past the last item and the
/// manifest's rows.
fn rows(inputs: &Inputs<'_>) -> usize {
    inputs
        .items
        .iter()
        .map(|it| it.index + 1)
        .max()
        .unwrap_or(0)
        .max(inputs.manifest.ids.len())
}

/// Run `check` over `inputs`: skipped when an input it needs is missing;
/// else its scores, an item flagged when its score is finite and crosses
/// the check's [`Check::threshold`] (built once, after the scores; a check
/// has no other way to flag), and its explanation of those flags.
pub fn run_one(check: &dyn Check, inputs: &Inputs<'_>) -> Outcome {
    if let Some(n) = check.needs().iter().find(|&&n| !inputs.has(n)) {
        return Outcome::Skipped(n.missing());
    }
    let task = inputs.cfg.task;
    let n = rows(inputs);
    let of_item = check.of_item();
    let mut stored = of_item.is_none().then(|| vec![f64::NAN; n]);
    let mut given = Bits::new(n);
    let mut flags = vec![false; n];
    let scores = check.scores(inputs);
    // Once, after the scores (a fitted threshold is known then), not per
    // item.
    let threshold = check.threshold(task);
    for (it, s) in inputs.items.iter().zip(scores) {
        given.set(it.index);
        if let Some(v) = s {
            if let Some(slot) = stored.as_mut().and_then(|st| st.get_mut(it.index)) {
                *slot = v;
            }
            flags[it.index] = v.is_finite() && threshold.flags(v);
        }
    }
    let flagged = flags.iter().filter(|&&f| f).count();
    let explained = check.explain(inputs, &flags);
    let mut bits = Bits::new(n);
    for (row, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
        bits.set(row);
    }
    Outcome::Ran(Finding {
        given,
        stored,
        of_item,
        flags: bits,
        flagged,
        explained,
    })
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
                    status: CheckStatus::Ran,
                    reason: None,
                    flagged: Some(f.flagged),
                    summary: f.explained.summary.clone(),
                },
                Outcome::Skipped(why) => CheckSummary {
                    needs,
                    status: CheckStatus::Skipped,
                    reason: Some((*why).into()),
                    flagged: None,
                    summary: None,
                },
            };
            (r.check.name().to_string(), summary)
        })
        .collect()
}

/// The audit raise's term of `item` ([`crate::priority::audit_raise`]):
/// the highest score among the checks that ran, raise priority
/// ([`Check::raises_priority`]) and flag it; `None` when none does.
pub fn audit_score(runs: &[CheckRun], item: &ItemResult) -> Option<f64> {
    runs.iter()
        .filter(|r| r.check.raises_priority() && r.flagged(item.index))
        .filter_map(|r| r.score(item))
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

/// Whether the check named `name` raises the priority of the items it
/// flags ([`Check::raises_priority`]).
pub fn raises_priority(name: &str) -> bool {
    registry()
        .iter()
        .any(|c| c.name() == name && c.raises_priority())
}

/// The reasons every check added, by row, for the writers
/// ([`Reasons::of`]).
pub fn reasons(runs: &[CheckRun]) -> Reasons<'_> {
    let mut by_row: Vec<(usize, Place, &str)> = runs
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Ran(f) => Some(&f.explained.reasons),
            Outcome::Skipped(_) => None,
        })
        .flatten()
        .map(|(row, place, s)| (*row, *place, s.as_str()))
        .collect();
    // Stable: the check order is kept within a row.
    by_row.sort_by_key(|&(row, _, _)| row);
    Reasons { by_row, runs }
}

/// The checks' added reasons, by row ([`ItemResult::index`]; see
/// [`reasons`]), and the checks that flag each row.
#[derive(Clone, Default)]
pub struct Reasons<'a> {
    by_row: Vec<(usize, Place, &'a str)>,
    runs: &'a [CheckRun],
}

impl std::fmt::Debug for Reasons<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reasons")
            .field("by_row", &self.by_row)
            .field("checks", &self.runs.len())
            .finish()
    }
}

impl Reasons<'_> {
    /// The names of the checks that ran, in the checks' order (the
    /// `flag_<name>` columns of `items.parquet`).
    pub fn ran(&self) -> Vec<&'static str> {
        self.runs
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Ran(_)))
            .map(|r| r.check.name())
            .collect()
    }

    /// Per check of [`Reasons::ran`]: whether it flags `item`.
    pub fn flag_row(&self, item: &ItemResult) -> Vec<bool> {
        self.runs
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Ran(_)))
            .map(|r| r.flagged(item.index))
            .collect()
    }

    /// Per check of [`Reasons::ran`]: its score of `item` (`None` where
    /// undefined, not finite or the check was not given the item): a
    /// queue row's `check_scores`, the `check_<name>` columns.
    pub fn score_row(&self, item: &ItemResult) -> Vec<Option<f64>> {
        self.runs
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Ran(_)))
            .map(|r| r.score(item).filter(|v| v.is_finite()))
            .collect()
    }

    /// Whether some check flags `item` ([`Reasons::flagged_by`] not empty),
    /// without collecting the names.
    pub fn any_flags(&self, item: &ItemResult) -> bool {
        self.runs.iter().any(|r| r.flagged(item.index))
    }

    /// The names of the checks that flag `item` (a queue row's `flags`),
    /// in the checks' order.
    pub fn flagged_by(&self, item: &ItemResult) -> Vec<&'static str> {
        self.runs
            .iter()
            .filter(|r| r.flagged(item.index))
            .map(|r| r.check.name())
            .collect()
    }

    /// Every reason of `item`, most important first: the checks'
    /// [`Place::First`] reasons, the item's stored reasons with its
    /// classification score reasons ([`label_quality::row_reasons`],
    /// derived here rather than stored), then the checks' [`Place::Last`]
    /// reasons. The reasons are found by the item's row; `_pos`, its
    /// position in the queue, is what the writers pass and is not needed.
    pub fn of(&self, _pos: usize, item: &ItemResult, class_names: &[String]) -> Vec<String> {
        let row = item.index;
        let start = self.by_row.partition_point(|&(r, _, _)| r < row);
        let added = self.by_row[start..]
            .iter()
            .take_while(|&&(r, _, _)| r == row);
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
                out.extend_from_slice(item.reasons());
            }
            None => out.extend_from_slice(item.reasons()),
        }
        out.extend(placed(Place::Last));
        out
    }
}

#[cfg(test)]
mod tests;
