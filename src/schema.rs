//! `report.json`, `clusters.jsonl` and the queue rows (`queue.jsonl`,
//! `queue.csv`, the page's queue table), as types: the writers build them
//! ([`crate::output`], [`crate::queue`], [`crate::neighbors::stage`],
//! [`crate::checks`]) and the HTML page reads the same values
//! ([`crate::report`]), never the written bytes, so a renamed or retyped
//! key fails to compile instead of silently emptying a section of the page.
//!
//! Fields are written in declaration order. Floats that are not finite
//! are written as `null` (build them through [`finite`]). `f32` values are
//! widened to `f64` before they are stored, so they print as the widened
//! value, as `report.json` always has.
//!
//! The schema sits below the stages that fill it (neighbours, checks,
//! queue, report, output), not inside `report/`, so that each of them can
//! name its section without importing a module of the same layer.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};

use crate::backend::BackendInfo;
use crate::config::Task;
use crate::metrics::calibration::ReliabilityBin;
use crate::priority::PriorityFormula;

/// `x` when it is finite, else `None` (written as `null`).
pub fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// Deserialize a key that must be present, possibly `null` (a plain
/// `Option` field would also accept a missing key).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// Deserialize a key that may be absent (outer `None`) or `null` (inner
/// `None`).
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub n_items: usize,
    pub task: Task,
    pub num_classes: usize,
    pub classes: Vec<String>,
    /// Scored samples: items (classification) or non-ignored pixels.
    pub samples: u64,
    #[serde(deserialize_with = "present")]
    pub accuracy: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub ece: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub mce: Option<f64>,
    /// The 15 bins of the reliability diagram.
    pub reliability: Vec<ReliabilityBin>,
    /// `confusion[label][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<PerClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
    pub priority: PriorityFormula,
    pub backend: BackendInfo,
    pub options: Options,
    /// With `--cache`: how many items were reused, how many scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_cache: Option<ScoreCache>,
    /// When the run started, RFC 3339 UTC with milliseconds
    /// (`2026-12-03T22:08:18.123Z`). Absent with `--deterministic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Absent with `--deterministic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// With embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<Duplicates>,
    /// With `[inputs] annotations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<AgreementSection>,
    pub queue_policy: QueuePolicy,
    /// Where the queue's evidence ends.
    pub queue: QueueSummary,
    /// One per check, in check order.
    pub views: IndexMap<String, View>,
    /// With `reviews.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// With `--previous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// Every check: its inputs, whether it ran (or why not), its summary.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub checks: IndexMap<String, CheckSummary>,
    /// With unlabelled items: what to label next (`to_label.jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    /// Absent with `--deterministic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// With a time column (`batch`, `annotated_at`) in items.csv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// With `--history`: the earlier runs' figures and this run's, night
    /// over night, in time order, this run last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Night>>,
}

/// `per_class[k]`: classification has `precision` and `recall`,
/// segmentation `iou`, `dice` and `boundary_iou` (each `null` where
/// undefined).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PerClass {
    pub class: usize,
    pub name: String,
    /// Annotated samples of the class.
    pub support: u64,
    /// Predicted samples of the class.
    pub predicted: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub precision: Option<Option<f64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub recall: Option<Option<f64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub iou: Option<Option<f64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub dice: Option<Option<f64>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub boundary_iou: Option<Option<f64>>,
}

/// A column of `per_class`, for the page to read by type, not by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassMetric {
    Support,
    Predicted,
    Precision,
    Recall,
    Iou,
    Dice,
    BoundaryIou,
}

impl PerClass {
    /// The value of column `m` (`None`: absent or `null`).
    pub fn get(&self, m: ClassMetric) -> Option<f64> {
        match m {
            ClassMetric::Support => Some(self.support as f64),
            ClassMetric::Predicted => Some(self.predicted as f64),
            ClassMetric::Precision => self.precision.flatten(),
            ClassMetric::Recall => self.recall.flatten(),
            ClassMetric::Iou => self.iou.flatten(),
            ClassMetric::Dice => self.dice.flatten(),
            ClassMetric::BoundaryIou => self.boundary_iou.flatten(),
        }
    }
}

/// `segmentation`: the pooled mask scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segmentation {
    #[serde(deserialize_with = "present")]
    pub miou: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub mdice: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub mboundary_iou: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub mean_item_miou: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub mean_item_boundary_iou: Option<f64>,
    pub ignore_index: u16,
    pub boundary_band: String,
}

/// `options`: the run's options as given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    pub dataset: PathBuf,
    pub batch_size: usize,
    #[serde(deserialize_with = "present")]
    pub top: Option<usize>,
    pub logits: bool,
    pub backend: String,
    pub gpu_fallback: String,
    #[serde(deserialize_with = "present")]
    pub budget: Option<usize>,
    pub dedup: bool,
    pub min_per_class: f64,
    pub spot_check: f64,
    pub seed: u64,
    pub review_all_from: Vec<String>,
    #[serde(deserialize_with = "present")]
    pub previous: Option<PathBuf>,
    /// `--rank-by`: `default` or the score the priority ranks by.
    #[serde(default = "default_rank_by")]
    pub rank_by: String,
    /// `--queue-rows` when it is not `all` (absent: the queue files list
    /// every row, as before the option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_rows: Option<String>,
    /// `--checks` (absent: the checks on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<String>>,
    /// `--history DIR` (absent without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<PathBuf>,
}

fn default_rank_by() -> String {
    "default".into()
}

/// `score_cache` (`--cache`): the items whose rows came from the score
/// cache (`reused`) and those scored (`scored`; items restored from a
/// `--resume` checkpoint count here). A merge adds its shards'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreCache {
    pub reused: usize,
    pub scored: usize,
}

impl ScoreCache {
    /// Add another shard's counts.
    pub fn add(&mut self, other: &ScoreCache) {
        self.reused += other.reused;
        self.scored += other.scored;
    }
}

/// `timings`: seconds per stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timings {
    pub read_s: f64,
    pub score_s: f64,
    #[serde(deserialize_with = "present")]
    pub neighbors_s: Option<f64>,
    pub queue_s: f64,
    pub write_s: f64,
    pub report_s: f64,
    pub overlays_s: f64,
    pub total_s: f64,
    /// Each check that ran (within `queue_s`), in the checks' order: its
    /// seconds. (Absent in earlier reports.)
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub checks_s: IndexMap<String, f64>,
}

/// `memory`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    #[serde(deserialize_with = "present")]
    pub peak_rss_bytes: Option<u64>,
}

/// `duplicates`: what the neighbour stage found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Duplicates {
    /// `exact`, `exact-gpu`, `ivf` or `hnsw`.
    pub method: String,
    /// With `--index`.
    #[serde(deserialize_with = "present")]
    pub index: Option<SavedIndex>,
    pub k: usize,
    pub distance: String,
    pub rule: ThresholdRule,
    pub threshold: f64,
    pub median_nn_distance: f64,
    pub pairs: usize,
    pub conflicting_pairs: usize,
    pub pairs_by_method: PairsByMethod,
    pub clusters: usize,
    pub conflicting_clusters: usize,
    pub cluster_rule: String,
    pub cluster_diameter_bound: f64,
    /// The conflict raise of the priority.
    pub priority: String,
    /// With the `ivf` graph: its parameters and its recall, checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ivf: Option<IvfSummary>,
}

/// `duplicates.ivf`: the IVF graph's parameters, and its recall@k on a
/// sample of items against brute force, measured in the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IvfSummary {
    pub lists: usize,
    pub spill: usize,
    /// Rounds of the neighbours-of-neighbours refinement the check asked for.
    pub refine_rounds: usize,
    /// Items whose k nearest were found by brute force for the check.
    pub recall_sample: usize,
    /// Recall@k on them (after the refinement).
    pub recall_estimate: f64,
    /// The recall the refinement aims at.
    pub recall_target: f64,
}

/// `duplicates.index`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedIndex {
    pub dir: String,
    pub loaded: usize,
    pub inserted: usize,
}

/// `duplicates.rule`: `{"absolute": t}` or `{"relative": f, "of": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ThresholdRule {
    Relative { relative: f64, of: String },
    Absolute { absolute: f64 },
}

/// `duplicates.pairs_by_method`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairsByMethod {
    pub knn: usize,
    pub embedding_hash: usize,
    pub image_hash: usize,
}

/// `queue_policy`: the policy's options and what it chose.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuePolicy {
    #[serde(deserialize_with = "present")]
    pub budget: Option<usize>,
    pub budget_size: usize,
    pub in_budget: usize,
    pub dedup: bool,
    pub min_per_class: f64,
    pub per_class_minimum: usize,
    pub stratify_by: String,
    pub spot_check: f64,
    pub spot_check_items: usize,
    pub seed: u64,
    pub review_all_from: Vec<String>,
    pub review_all_items: usize,
}

/// `queue`: where the queue's evidence ends ([`crate::queue::evidence`]
/// has the rule and its formula).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Rows in the queue.
    pub rows: usize,
    /// Rows that at least one check flags.
    pub flagged: usize,
    /// The rank of the last row with evidence; the rows ranked below it
    /// are "no issue found". 0: no row has evidence.
    pub evidence_ends_at: usize,
    /// The rule, in words.
    pub evidence_rule: String,
}

/// `views[name]`: the queue's items a check flags, highest score first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct View {
    pub score: String,
    pub flagged_when: String,
    pub flagged: usize,
    pub items: Vec<ViewItem>,
}

/// One listed item of a view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewItem {
    pub id: String,
    pub score: f64,
    /// Rank in the queue (1-based).
    pub rank: usize,
}

/// `review`: the queue's precision from stored decisions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    pub file: PathBuf,
    pub decisions: usize,
    pub unknown_ids: usize,
    pub left_queue: usize,
    pub changed_since_review: Vec<String>,
    pub precision_definition: String,
    pub overall: Tally,
    pub per_signal: IndexMap<String, Tally>,
    pub per_issue_type: IndexMap<String, Tally>,
}

/// Decisions counted over some items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub reviewed: usize,
    pub errors: usize,
    pub ok: usize,
    pub unsure: usize,
    /// `errors / (errors + ok)`; `null` without a decided item.
    #[serde(deserialize_with = "present")]
    pub precision: Option<f64>,
}

/// `previous`: the in-budget rows against an earlier run's queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Previous {
    pub dir: PathBuf,
    pub tolerance: f64,
    pub new: usize,
    pub still: usize,
    pub changed: usize,
    /// The previous run's in-budget rows that are not in budget now.
    pub dropped: Vec<Dropped>,
}

/// `history[i]`: one run's dataset figures (`null` where they do not
/// apply: `ece` without a calibrated sample, `miou` for classification,
/// `review_precision` without decided review decisions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Night {
    /// The earlier run's name in the `--history` directory (its
    /// `report.json` file's or its output directory's); this run's: its
    /// `--out` directory's name.
    pub run: String,
    /// `started_at` of that run; `null` when it has none (`--deterministic`,
    /// or a report written before the field existed).
    #[serde(deserialize_with = "present")]
    pub at: Option<String>,
    /// `n_items`: every item, labelled or not.
    pub items: usize,
    /// `queue.flagged / labelled items` (labelled: `n_items −
    /// selection.unlabelled`); `null` without a labelled item.
    #[serde(deserialize_with = "present")]
    pub flagged_share: Option<f64>,
    /// `checks[name].flagged / labelled items`, for the checks that ran
    /// (not `select_for_labelling`, which counts unlabelled items).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub flagged_share_by_check: IndexMap<String, f64>,
    #[serde(deserialize_with = "present")]
    pub ece: Option<f64>,
    /// `segmentation.miou`.
    #[serde(deserialize_with = "present")]
    pub miou: Option<f64>,
    /// `review.overall.precision`.
    #[serde(deserialize_with = "present")]
    pub review_precision: Option<f64>,
}

impl Night {
    /// An earlier run's night, as read ([`crate::io::history::load`]).
    pub fn of(n: &crate::io::history::Night) -> Night {
        Night {
            run: n.run.clone(),
            at: n.at.clone(),
            items: n.items,
            flagged_share: finite(n.flagged_share()),
            flagged_share_by_check: n
                .flagged_share_by_check()
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .collect(),
            ece: finite(n.ece),
            miou: finite(n.miou),
            review_precision: finite(n.review_precision),
        }
    }

    /// This run's figures from its report `r` (built, `history` not yet
    /// set), named `run`, through the same counts an earlier report gives
    /// ([`crate::io::history::Night`]).
    pub fn tonight(r: &Report, run: String) -> Night {
        let unlabelled = r.selection.as_ref().map_or(0, |s| s.unlabelled);
        Night::of(&crate::io::history::Night {
            run,
            at: r.started_at.clone(),
            items: r.n_items,
            labelled: r.n_items.saturating_sub(unlabelled),
            flagged: r.queue.flagged,
            flagged_by_check: r
                .checks
                .iter()
                .filter(|(name, _)| name.as_str() != crate::io::history::LABELLING_CHECK)
                .filter_map(|(name, c)| Some((name.clone(), c.flagged?)))
                .collect(),
            ece: r.ece,
            miou: r.segmentation.as_ref().and_then(|s| s.miou),
            review_precision: r.review.as_ref().and_then(|v| v.overall.precision),
        })
    }
}

/// A row of `previous.dropped`, as the previous run wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub id: String,
    pub rank: u64,
    pub priority: f64,
}

/// `checks[name]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub needs: Vec<String>,
    pub status: CheckStatus,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flagged: Option<usize>,
    /// The check's dataset-level facts, for the checks that have some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<CheckDetails>,
}

/// `checks[name].status`: `ran`, or `skipped` (with its `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ran,
    Skipped,
}

/// `checks[name].summary`: one struct per check that summarises, written
/// as its bare fields (untagged; their field names tell them apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CheckDetails {
    ClassImbalance(ClassImbalanceSummary),
    LowAgreement(LowAgreementSummary),
    Drift(DriftSummary),
    Leakage(LeakageSummary),
    Outlier(OutlierSummary),
    NonIid(NonIidSummary),
    DataValuation(DataValuationSummary),
    Underperforming(UnderperformingSummary),
    Null(NullSummary),
}

/// `checks.null.summary`: the embedding rows left out of the kNN graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullSummary {
    pub null_rows: usize,
    /// Rows with a NaN or infinite component.
    pub non_finite: usize,
    /// Rows of zeros.
    pub zero: usize,
    /// Rows of equal components (D ≥ 4).
    pub constant: usize,
}

/// `checks.underperforming_group.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnderperformingSummary {
    /// DBSCAN clusters of the kNN graph with at least 5 items.
    pub clusters: usize,
    /// Those whose mean self-confidence lies below the clusters' mean.
    pub clusters_below_mean: usize,
    /// The lowest ratio of a cluster's mean self-confidence to the
    /// clusters' mean (1 when none lies below it): Datalab's dataset score.
    pub worst_ratio: f64,
    /// Items in that cluster (0 without one).
    pub worst_items: usize,
    /// The dataset's score: `1 − worst_ratio`.
    pub score: f64,
}

/// `checks.outlier.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierSummary {
    /// `knn`: from the mean distance to the k nearest neighbours.
    pub method: String,
    /// Neighbours per item.
    pub k: usize,
    /// The median of the items' mean kNN distance (floored at 1e-6): the
    /// scale of the scores.
    pub median_distance: f64,
    /// The mean kNN distance above which an item is an outlier (Q3 +
    /// 1.7·IQR).
    pub outlier_distance: f64,
    /// The dataset's score: the mean item score (1 − Datalab's summary
    /// score).
    pub score: f64,
}

/// `checks.non_iid.summary`: whether the items' order is independent of
/// their embedding neighbourhoods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NonIidSummary {
    /// The order tested: `items` (items.csv order) or `time` (the
    /// campaign's batches in order, from the `batch` or `annotated_at`
    /// column; items order within a batch).
    pub order: String,
    /// Datalab's KS statistic of the index distances between neighbours.
    pub statistic: f64,
    /// Its p-value under random order (25 permutations, a Gaussian kernel
    /// density estimate of their statistics, as Datalab computes it).
    pub p_value: f64,
    /// Whether `p_value < alpha`: the order is not independent.
    pub non_iid: bool,
    pub alpha: f64,
    /// The dataset's score: `1 − p_value`.
    pub score: f64,
}

/// `checks.data_valuation.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataValuationSummary {
    /// Neighbours per item (the first k of the graph's rows).
    pub valuation_k: usize,
    /// The mean KNN-Shapley value.
    pub mean_value: f64,
    /// The dataset's score: the mean item score (1 − Datalab's summary
    /// score).
    pub score: f64,
}

/// `checks.leakage.summary`: the near-duplicate pairs whose items lie in
/// different splits, and how much of each evaluation split has a
/// near-duplicate in the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakageSummary {
    /// The split the others are measured against: `train` when a split has
    /// that name (any case), else `null` (and `split_share` is empty).
    pub train_split: Option<String>,
    /// Every cross-split pair, closest first (ties: by ids).
    pub pairs: Vec<LeakPair>,
    /// Per split other than `train_split`: the share of its items with a
    /// near-duplicate in `train_split`.
    pub split_share: BTreeMap<String, f64>,
}

/// One cross-split near-duplicate pair (`a` before `b` in items order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakPair {
    pub a: String,
    pub b: String,
    pub split_a: String,
    pub split_b: String,
    /// Cosine distance of their embeddings.
    pub distance: f64,
    /// Found as identical (embedding or image hash, or distance 0).
    pub exact: bool,
}

/// `checks.class_imbalance.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassImbalanceSummary {
    /// A class is rare under this fraction of a uniform share.
    pub rare_fraction: f64,
    /// `1 / classes`.
    pub uniform_share: f64,
    /// The rare classes that have items.
    pub rare_classes: Vec<ClassShare>,
    /// The classes with no item.
    pub absent_classes: Vec<ClassShare>,
}

/// A class and its share of the labelled items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassShare {
    pub class: usize,
    pub name: String,
    pub items: u64,
    pub share: f64,
}

/// `checks.low_agreement.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowAgreementSummary {
    /// The agreement (classification: share of agreeing pairs;
    /// segmentation: mean pairwise mIoU) under which an item is flagged.
    pub min_item_agreement: f64,
    /// Flagged items whose annotators' majority contradicts the official
    /// label.
    pub majority_contradicts_official: usize,
}

/// `report.json` `selection`: the batch of unlabelled items to label next
/// (`to_label.jsonl`, [`crate::queue::selection`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Selection {
    /// The strategy used (`diverse`, `margin`, `entropy`, `random`).
    pub strategy: String,
    /// The strategy asked for (`--label-strategy`).
    pub requested: String,
    /// Why the strategy used differs from the one asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the `score` column is.
    pub score: String,
    /// `--label-budget`; `null`: every unlabelled item is listed.
    pub budget: Option<usize>,
    /// Unlabelled items in the dataset.
    pub unlabelled: usize,
    /// Rows of `to_label.jsonl`.
    pub selected: usize,
    /// `--min-per-class`, and the rows it reserves per predicted class.
    pub min_per_class: f64,
    pub per_class_minimum: usize,
    pub stratify_by: String,
    /// `--seed` (the `random` strategy's draw).
    pub seed: u64,
    /// `diverse`: the neighbours of the one kNN graph that an item in the
    /// batch holds back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn_k: Option<usize>,
    /// The batch per predicted class (segmentation: the rarest class of
    /// the prediction), in class order, classes with none left out.
    pub per_class: IndexMap<String, usize>,
    /// With embeddings: distinct near-duplicate clusters among the batch's
    /// items, and items of the batch sharing one with an earlier row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters_in_batch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicates_in_batch: Option<usize>,
}

/// One line of `clusters.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRow {
    pub cluster: usize,
    /// The centre first, then the others by row.
    pub members: Vec<ClusterMember>,
    pub centre: String,
    pub majority_label: String,
    pub conflict: bool,
    pub conflict_fraction: f64,
    pub max_distance: f64,
}

/// A member of a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterMember {
    pub id: String,
    pub label: String,
}

/// A line of `queue.jsonl`: one item's row, built once by the writer
/// ([`crate::output`]) and written from this one value as the
/// `queue.jsonl` line, the `queue.csv` record and the page's table row
/// ([`crate::report`]); tests read the files back into it.
///
/// Keys are written in declaration order. A field that is `Option` with
/// `skip_serializing_if` is a column the run may not have: absent (`None`)
/// when the run has no such column, `Some(None)` (`null`) where the
/// column exists but the row has no value. Text borrows from the run's
/// inputs while the row is written (`'a`) and is owned when read back
/// (`QueueRow<'static>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueRow<'a> {
    /// 1-based position in the queue.
    pub rank: usize,
    pub id: Cow<'a, str>,
    /// `null` when not finite.
    #[serde(deserialize_with = "present")]
    pub priority: Option<f64>,
    pub in_budget: bool,
    pub spot_check: bool,
    pub review_all: bool,
    /// Representatives: ids of the other members of the near-duplicate cluster.
    pub also_in_cluster: Vec<Cow<'a, str>>,
    /// With `--previous`: `new`, `still` or `changed` for in-budget rows.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub status: Option<Option<Cow<'a, str>>>,
    /// The policy's reasons first, then the checks'.
    pub reasons: Vec<Cow<'a, str>>,
    /// The checks that flag the item (their names, as in `report.json`
    /// `checks`), in the checks' order; empty when none does. (Absent in
    /// the queue files of earlier versions: read as empty.)
    #[serde(default)]
    pub flags: Vec<Cow<'a, str>>,
    /// Classification: the annotated class's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Cow<'a, str>>,
    /// Classification: the predicted class's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted: Option<Cow<'a, str>>,
    /// Classification with annotations: the annotators' majority, `null`
    /// without one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub consensus_label: Option<Option<Cow<'a, str>>>,
    pub scores: RowScores,
    /// Every check that ran: its score of the item (`null` where
    /// undefined or the check was not given the item), keyed by the
    /// check's name, in the checks' order (the `check_<name>` columns of
    /// `queue.csv` and `items.parquet`). (Absent in the queue files of
    /// earlier versions: read as empty.)
    #[serde(default)]
    pub check_scores: RowScores,
    /// With embeddings: the near-duplicate cluster, `null` outside one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some"
    )]
    pub cluster: Option<Option<usize>>,
    /// With embeddings: the flagged neighbours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbors: Option<Vec<RowNeighbor<'a>>>,
    /// The manifest's other columns, as text, in manifest order (a name
    /// that clashes with a key above is prefixed `item_`).
    #[serde(flatten)]
    pub carried: Carried<'a>,
}

impl QueueRow<'_> {
    /// `status` as text (`None`: no such column or `null`).
    pub fn status(&self) -> Option<&str> {
        self.status.as_ref()?.as_deref()
    }

    /// `consensus_label` as text (`None`: no such column or `null`).
    pub fn consensus(&self) -> Option<&str> {
        self.consensus_label.as_ref()?.as_deref()
    }

    /// `cluster` (`None`: no such column or `null`).
    pub fn cluster_id(&self) -> Option<usize> {
        self.cluster.flatten()
    }
}

/// A row's `scores` object: `(name, value)` in output order (as
/// [`crate::scores::ItemScores::finite_fields`] lists them), `None`
/// (`null`) for a score that is undefined or not finite; also its
/// `check_scores` (the checks' names and scores, in the checks' order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowScores(pub Vec<(Cow<'static, str>, Option<f64>)>);

impl RowScores {
    /// The scores of `s`.
    pub fn of(s: &crate::scores::ItemScores) -> RowScores {
        RowScores(
            s.finite_fields()
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), finite(v)))
                .collect(),
        )
    }

    /// The finite value of score `name` (`None`: absent or `null`).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == name).and_then(|(_, v)| *v)
    }

    /// Whether the row has score `name` (its value possibly `null`).
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The score names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }
}

impl Serialize for RowScores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_ref(), &finite(*v))?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for RowScores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RowScores(d.deserialize_map(Pairs::default())?))
    }
}

/// The manifest columns a row carries: `(key, text)` in manifest order,
/// written as keys of the row itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl Carried<'_> {
    /// The text of column `key`, if the row carries it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

impl Serialize for Carried<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_ref(), v.as_ref())?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Carried<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Carried(d.deserialize_map(Pairs::default())?))
    }
}

/// Reads a JSON object into its `(key, value)` pairs, in order.
struct Pairs<K, V>(std::marker::PhantomData<(K, V)>);

impl<K, V> Default for Pairs<K, V> {
    fn default() -> Self {
        Pairs(std::marker::PhantomData)
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<K, V> {
    type Value = Vec<(K, V)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(kv) = map.next_entry()? {
            out.push(kv);
        }
        Ok(out)
    }
}

/// One of a row's `neighbors`: a flagged near-duplicate partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowNeighbor<'a> {
    pub id: Cow<'a, str>,
    /// Cosine distance (an `f32` widened).
    pub distance: f64,
    /// Its annotated label.
    pub label: Cow<'a, str>,
    /// Its label differs from the row's.
    pub conflict: bool,
}

/// `agreement`: the classification or the segmentation form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AgreementSection {
    Classification(Agreement),
    Segmentation(SegAgreement),
}

/// `agreement` (with `[inputs] annotations`, segmentation): every count
/// pooled over all items and all unordered pairs of their annotators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegAgreement {
    pub annotators: usize,
    pub rows: usize,
    pub items_with_2plus: usize,
    /// Unordered annotator pairs compared (over all items).
    pub pairs: usize,
    /// Per class: `Σ intersections / Σ unions` (IoU), `2 Σ intersections /
    /// Σ areas` (Dice) and the same over the Boundary IoU bands.
    pub per_class: Vec<SegClassAgreement>,
    pub per_annotator: Vec<SegAnnotatorRow>,
    pub min_annotator_iou: f64,
    /// Annotators whose `miou_with_others` is under `min_annotator_iou`.
    pub below_threshold: Vec<String>,
    pub priority: String,
}

/// One class in the segmentation `agreement.per_class`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegClassAgreement {
    pub class: String,
    #[serde(deserialize_with = "present")]
    pub iou: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub dice: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub boundary_iou: Option<f64>,
}

/// One annotator in the segmentation `agreement.per_annotator`: pooled over
/// the pairs it is in; `area_bias[k]` = its area of class `k` over the mean
/// area of the others on the same items, minus 1 (`null` where the others
/// drew none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegAnnotatorRow {
    pub annotator: String,
    pub items: usize,
    #[serde(deserialize_with = "present")]
    pub miou_with_others: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub boundary_iou_with_others: Option<f64>,
    pub area_bias: Vec<Option<f64>>,
}

/// `agreement` (with `[inputs] annotations`, classification): agreement
/// between the annotators of `annotations.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    /// Annotators, rows of the file, items with at least 2 annotations.
    pub annotators: usize,
    pub rows: usize,
    pub items_with_2plus: usize,
    /// Nominal, over the items with at least 2 annotations.
    #[serde(deserialize_with = "present")]
    pub krippendorff_alpha: Option<f64>,
    /// Over the `fleiss_items` items with exactly `fleiss_m` annotations
    /// (the most common count of 2 or more; ties to the larger).
    #[serde(deserialize_with = "present")]
    pub fleiss_kappa: Option<f64>,
    pub fleiss_items: usize,
    pub fleiss_m: usize,
    /// Annotator pairs sharing at least 20 items (counted over the items
    /// with at most 100 annotators): at most 1000 of them, those sharing
    /// the most items (ties: the earlier pair), in annotator order
    /// ([`crate::agreement::MAX_COHEN_PAIRS`]).
    pub cohen_kappa: Vec<CohenPair>,
    /// How many pairs share at least 20 items (listed or not).
    #[serde(default)]
    pub cohen_pairs: usize,
    /// Items with more than 100 annotators, left out of the pairwise
    /// Cohen's kappa only ([`crate::agreement::MAX_COHEN_ANNOTATORS`]).
    #[serde(default)]
    pub cohen_items_left_out: usize,
    /// One-vs-rest alpha per class, in class order.
    pub per_class: Vec<ClassAlpha>,
    pub per_annotator: Vec<AnnotatorRow>,
    pub min_annotator_kappa: f64,
    /// Annotators whose `kappa_with_consensus` is under `min_annotator_kappa`.
    pub below_threshold: Vec<String>,
    /// How disagreement raises the priority.
    pub priority: String,
}

/// One pair of annotators in `agreement.cohen_kappa`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CohenPair {
    pub a: String,
    pub b: String,
    pub items: usize,
    #[serde(deserialize_with = "present")]
    pub kappa: Option<f64>,
}

/// One class in `agreement.per_class`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassAlpha {
    pub class: String,
    #[serde(deserialize_with = "present")]
    pub alpha: Option<f64>,
}

/// One annotator in `agreement.per_annotator`. The consensus of an item,
/// for an annotator, is the strict majority of the item's other
/// annotators (items where it ties, or with no other, are left out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnotatorRow {
    pub annotator: String,
    pub items: usize,
    #[serde(deserialize_with = "present")]
    pub agreement_with_consensus: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub kappa_with_consensus: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub agreement_with_model: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub agreement_with_official: Option<f64>,
}

/// `report.json` `drift` (with a time column in items.csv,
/// [`crate::drift`]): per batch, per annotator and batch, and the alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// How items are grouped: `batch` (the column), `day` or `week`
    /// (`annotated_at` windows, `--drift-window`).
    pub grouping: String,
    /// The tests and the false-alarm control, in words.
    pub method: String,
    /// The false discovery rate controlled over every test (Benjamini–Hochberg).
    pub fdr: f64,
    /// Tests run.
    pub tests: usize,
    /// Families of tests (a series' quantity and statistic over its
    /// batches; a class's share; the class mix): the first level's `M`.
    pub families: usize,
    /// Families selected by the first level (`R`).
    pub families_alarmed: usize,
    /// The checks whose flagged share is followed (the keys of `flagged`).
    pub checks: Vec<String>,
    pub batches: Vec<DriftBatch>,
    /// Per annotator and batch (an annotator's batches only), annotators in
    /// order of first appearance.
    pub annotators: Vec<DriftCell>,
    /// Every alarm: one per series and metric and run of consecutive
    /// alarmed batches, at the run's first batch.
    pub alarms: Vec<DriftAlarm>,
}

/// A value per followed check, keyed by the check's name: a JSON object.
/// The names are shared (`Arc<str>`) by every row of the section, so tens
/// of thousands of rows hold no copy of them.
pub type ByCheck<T> = IndexMap<std::sync::Arc<str>, T>;

/// `drift.batches[i]`: one batch of the campaign, the dataset's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftBatch {
    /// As written in the input, or the window's first date.
    pub batch: String,
    /// Its earliest `annotated_at` date, with that column.
    #[serde(deserialize_with = "present")]
    pub first_date: Option<String>,
    /// Labelled items.
    pub items: u64,
    /// Per followed check: the share of the batch's items it flags.
    pub flagged: ByCheck<f64>,
    /// Per followed check: the p-chart's upper limit (null: not tested).
    pub limits: ByCheck<Option<f64>>,
    #[serde(deserialize_with = "present")]
    pub mean_label_quality: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub mean_confidence: Option<f64>,
    /// Krippendorff's alpha of the batch's items (with annotations).
    #[serde(deserialize_with = "present")]
    pub alpha: Option<f64>,
    /// Annotation rows with a consensus of the other annotators, and the
    /// share agreeing with it.
    pub annotations: u64,
    #[serde(deserialize_with = "present")]
    pub agreement_with_consensus: Option<f64>,
    /// Per class: its share of the batch's labelled items.
    pub class_share: Vec<f64>,
    /// Per class: the p-chart's upper limit on that share (null: not tested).
    pub class_limit: Vec<Option<f64>>,
    /// The class mix against the campaign before the batch.
    #[serde(deserialize_with = "present")]
    pub chi_square: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub chi_square_df: Option<usize>,
    #[serde(deserialize_with = "present")]
    pub chi_square_p: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub psi: Option<f64>,
    /// A dataset-level or class alarm falls on this batch.
    pub alarm: bool,
    /// Segmentation: the batch's masks against the model's predictions
    /// (absent for classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<DriftSeg>,
}

/// `drift.batches[i].segmentation`, `drift.annotators[i].segmentation`:
/// a segmentation cell's items' masks against the model's predictions
/// (each item's own scores; formulas: docs/definitions.md, "Drift").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftSeg {
    /// The mean of the items' mIoU (`miou`).
    #[serde(deserialize_with = "present")]
    pub mean_miou: Option<f64>,
    /// The mean of the items' Boundary IoU (`boundary_iou`).
    #[serde(deserialize_with = "present")]
    pub mean_boundary_iou: Option<f64>,
    /// Per class: the annotated-area bias, the mean over the items whose
    /// mask or prediction holds the class of `(a − p) / (a + p)` (`a`, `p`
    /// its annotated and predicted pixels); null where no item holds it.
    pub area_bias: Vec<Option<f64>>,
}

/// `drift.annotators[i]`: one annotator's figures in one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCell {
    pub annotator: String,
    pub batch: String,
    /// Items of items.csv this annotator labelled in the batch.
    pub items: u64,
    pub flagged: ByCheck<f64>,
    pub limits: ByCheck<Option<f64>>,
    #[serde(deserialize_with = "present")]
    pub mean_label_quality: Option<f64>,
    /// Its annotation rows with a consensus of the other annotators, and
    /// the share agreeing with it.
    pub annotations: u64,
    #[serde(deserialize_with = "present")]
    pub agreement_with_consensus: Option<f64>,
    /// The smallest Benjamini–Hochberg adjusted p-value of the cell's
    /// tests (null: none tested).
    #[serde(deserialize_with = "present")]
    pub q: Option<f64>,
    pub alarm: bool,
    /// Segmentation: its items' masks against the model's predictions
    /// (absent for classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<DriftSeg>,
}

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// An annotator's flagged share, agreement or (segmentation) mean mIoU.
    Annotator,
    /// A class's share of the batch (or the batch's class mix).
    ClassShare,
    /// The dataset's flagged share, mean label quality or (segmentation)
    /// mean mIoU.
    Quality,
    /// Segmentation: an annotator's annotated-area bias on a class (without
    /// an `annotator` column, the dataset's).
    AreaBias,
}

/// `drift.alarms[i]`. `metric` is `statistic:quantity` (`p_chart:wrong_label`,
/// `cusum:wrong_label`, `p_chart:disagreement`, `mean:label_quality`,
/// `mean:miou`, `mean:area_bias`, `p_chart:share`,
/// `chi_square:class_mix`); `value`, `baseline` and
/// `limit` are in the statistic's units (a share, the CUSUM statistic, a
/// mean, the chi-square statistic); fields that do not apply are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlarm {
    pub kind: DriftKind,
    #[serde(deserialize_with = "present")]
    pub annotator: Option<String>,
    #[serde(deserialize_with = "present")]
    pub class: Option<String>,
    pub batch: String,
    pub metric: String,
    pub value: f64,
    #[serde(deserialize_with = "present")]
    pub baseline: Option<f64>,
    #[serde(deserialize_with = "present")]
    pub limit: Option<f64>,
    pub p: f64,
}

/// `checks.drift.summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftSummary {
    /// The false discovery rate the alarms are controlled at.
    pub fdr: f64,
    /// Tests run over every series and batch.
    pub tests: usize,
    /// Alarms (`drift.alarms`).
    pub alarms: usize,
    /// Annotator × batch cells (or batches, without an annotator column)
    /// whose items the check flags.
    pub alarmed_cells: usize,
}
