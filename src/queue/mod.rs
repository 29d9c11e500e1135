//! The review queue: which items go into tonight's budget ([`policy`]), what
//! reviewers already decided ([`review`]), what changed since the last run
//! ([`previous`]), and the per-issue views of `report.json` (one per check
//! of [`crate::checks`], from its flags).
//!
//! [`plan`] turns the scored items (in priority order) into the rows of
//! `queue.jsonl` (in queue order, with their flags) and the report sections
//! `queue_policy`, `views`, `review` and `previous`.

pub mod policy;
pub mod previous;
pub mod review;
pub mod selection;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use crate::checks::CheckRun;
use crate::config::{DatasetConfig, Task};
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::records::ItemResult;
use crate::schema;
use policy::{Candidate, Pick, Policy, Why};
use previous::Status;
use review::{Decision, ReviewRecord};

/// Queue flags of `triage run`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueOptions {
    pub policy: Policy,
    /// An earlier run's output directory to compare with.
    pub previous: Option<PathBuf>,
    /// Which rows the queue files list (`--queue-rows`).
    pub rows: QueueRows,
}

/// Which rows `queue.jsonl` and `queue.csv` list (`--queue-rows`); the
/// queue, its ranks and `report.json` are the same either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueRows {
    /// Every item of the queue.
    #[default]
    All,
    /// The rows of the budget when `--budget` is given (its spot checks and
    /// review-all items included), and every row a check flags; in queue
    /// order, each with its queue rank.
    Flagged,
}

impl QueueRows {
    /// Its name on the command line and in `report.json` `options.queue_rows`.
    pub fn name(self) -> &'static str {
        match self {
            QueueRows::All => "all",
            QueueRows::Flagged => "flagged",
        }
    }
}

/// The queue rows (positions in `plan.rows`) `rows` lists, in queue
/// order: row `r` is listed by `flagged` when `budget` (a `--budget` was
/// given) and `r.in_budget`, or when any check flags its item
/// (`flagged_by(item)` is not empty); `None` for `all` (every row).
pub fn listed_rows(
    rows: QueueRows,
    plan: &[RowPlan],
    budget: bool,
    flags: impl Fn(usize) -> bool + Sync,
) -> Option<Vec<usize>> {
    use rayon::prelude::*;
    match rows {
        QueueRows::All => None,
        QueueRows::Flagged => Some(
            plan.par_iter()
                .enumerate()
                .filter(|(_, r)| (budget && r.in_budget) || flags(r.item()))
                .map(|(i, _)| i)
                .collect(),
        ),
    }
}

/// Entries per view in `report.json`.
pub const VIEW_SIZE: usize = 50;

/// One row of the queue files, in queue order: 16 bytes a row (one is
/// kept for every item through the write stage), the rare parts boxed.
#[derive(Debug, Clone, PartialEq)]
pub struct RowPlan {
    /// Position in the priority-sorted items ([`RowPlan::item`]; `u32`:
    /// [`plan`] refuses 2^32 items or more).
    item: u32,
    pub in_budget: bool,
    pub spot_check: bool,
    pub review_all: bool,
    /// With `--previous`, for in-budget rows.
    pub status: Option<Status>,
    /// The cluster's other members and the policy's reasons, for the rows
    /// that have any (`None`: neither).
    extra: Option<Box<RowExtra>>,
}

/// What few queue rows carry besides their flags.
#[derive(Debug, Clone, PartialEq)]
struct RowExtra {
    also_in_cluster: Vec<String>,
    policy_reasons: Vec<String>,
}

impl RowPlan {
    /// Position in the priority-sorted items.
    pub fn item(&self) -> usize {
        self.item as usize
    }

    /// Representatives: ids of the other members of the near-duplicate
    /// cluster (empty for every other row).
    pub fn also_in_cluster(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.also_in_cluster)
    }

    /// Why the policy placed it here; written before the score reasons.
    pub fn policy_reasons(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.policy_reasons)
    }
}

const _: () = assert!(std::mem::size_of::<RowPlan>() <= 16);

/// The queue rows and the report sections built from them.
#[derive(Debug, Clone)]
pub struct QueuePlan {
    pub rows: Vec<RowPlan>,
    /// `report.json` `queue_policy`.
    pub queue_policy: schema::QueuePolicy,
    /// `report.json` `queue`: where the queue's evidence ends.
    pub evidence: schema::QueueSummary,
    /// `report.json` `views`.
    pub views: IndexMap<String, schema::View>,
    /// `report.json` `review`, with `reviews.jsonl`.
    pub review: Option<schema::Review>,
    /// `report.json` `previous`, with `--previous`.
    pub previous: Option<schema::Previous>,
    /// `--previous` was given: rows carry `status`.
    pub with_status: bool,
}

/// The JSON `scores` object of an item (non-finite values as `null`).
pub fn scores_json(it: &ItemResult) -> Map<String, Value> {
    it.scores
        .finite_fields()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, |x| json!(x))))
        .collect()
}

fn signal(why: Why) -> &'static str {
    match why {
        Why::Ranking => "ranking",
        Why::MinShare(_) => "min_per_class",
        Why::SpotCheck => "spot_check",
        Why::ReviewAll => "review_all",
        Why::Duplicate(_) => "duplicate",
        Why::Below => "below_budget",
    }
}

const SIGNALS: [&str; 6] = [
    "ranking",
    "min_per_class",
    "spot_check",
    "review_all",
    "duplicate",
    "below_budget",
];

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    error: usize,
    ok: usize,
    unsure: usize,
}

impl Tally {
    fn add(&mut self, d: Decision) {
        match d {
            Decision::Error => self.error += 1,
            Decision::Ok => self.ok += 1,
            Decision::Unsure => self.unsure += 1,
        }
    }

    fn json(&self) -> schema::Tally {
        let decided = self.error + self.ok;
        schema::Tally {
            reviewed: decided + self.unsure,
            errors: self.error,
            ok: self.ok,
            unsure: self.unsure,
            precision: (decided > 0).then(|| self.error as f64 / decided as f64),
        }
    }
}

fn candidates<'a>(
    items: &[ItemResult],
    positions: &[usize],
    annotator: Option<(usize, &'a Manifest)>,
) -> Vec<Candidate<'a>> {
    positions
        .iter()
        .map(|&p| {
            let it = &items[p];
            Candidate {
                class: it.class,
                // Below 2^32, as the items are (`plan`).
                cluster: it.cluster.and_then(|c| u32::try_from(c).ok()),
                annotator: annotator.map(|(col, m)| m.rows.cell(it.index, col).trim()),
            }
        })
        .collect()
}

/// One queue row: the pick's flags and the policy's reasons for it (a
/// changed review, a spot check, a class's minimum share, a duplicate left
/// out of the budget, a new annotator).
fn row_plan(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    items: &[ItemResult],
    qpos: &[usize],
    changed: &HashMap<usize, (&ReviewRecord, Vec<&str>)>,
    annot: Option<(usize, &Manifest)>,
    (pk, also): (&Pick, &[usize]),
) -> RowPlan {
    let id_of = |p: usize| &manifest.ids[items[p].index];
    let p = qpos[pk.pos];
    let mut why = Vec::new();
    if let Some((r, what)) = changed.get(&p) {
        why.push(format!(
            "reviewed before ({}), but its {} changed since",
            serde_json::to_value(r.decision)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            what.join(" and ")
        ));
    }
    match pk.why {
        Why::SpotCheck => {
            why.push("spot check (random draw among items the ranking did not pick)".into())
        }
        Why::MinShare(k) => why.push(format!(
            "minimum share for class {:?} (--min-per-class)",
            cfg.class_names.get(k as usize).map_or("?", String::as_str)
        )),
        Why::Duplicate(rep) => why.push(format!(
            "outside the budget: near-duplicate cluster represented by {}",
            id_of(qpos[rep as usize])
        )),
        _ => {}
    }
    if pk.review_all
        && let Some((col, m)) = annot
    {
        why.push(format!(
            "new annotator {:?}: every item reviewed (--review-all-from)",
            m.rows.cell(items[p].index, col).trim()
        ));
    }
    let also_in_cluster: Vec<String> = also.iter().map(|&j| id_of(qpos[j]).to_string()).collect();
    RowPlan {
        // Below 2^32: `plan` refuses more items.
        item: u32::try_from(p).unwrap_or(u32::MAX),
        in_budget: pk.in_budget,
        spot_check: pk.spot_check(),
        review_all: pk.review_all,
        status: None,
        extra: (!also_in_cluster.is_empty() || !why.is_empty()).then(|| {
            Box::new(RowExtra {
                also_in_cluster,
                policy_reasons: why,
            })
        }),
    }
}

/// `report.json` `queue_policy`: the policy's options and what it chose.
fn policy_section(
    cfg: &DatasetConfig,
    pol: &policy::Policy,
    rows: &[RowPlan],
    queued: usize,
) -> schema::QueuePolicy {
    let n_counts = policy::counts(queued, pol);
    schema::QueuePolicy {
        budget: pol.budget,
        budget_size: n_counts.budget,
        in_budget: rows.iter().filter(|r| r.in_budget).count(),
        dedup: pol.dedup,
        min_per_class: pol.min_per_class,
        per_class_minimum: n_counts.per_class_minimum,
        stratify_by: match cfg.task {
            Task::Classification => "annotated label",
            Task::Segmentation => "the item's class with the lowest IoU",
        }
        .into(),
        spot_check: pol.spot_check,
        spot_check_items: rows.iter().filter(|r| r.spot_check).count(),
        seed: pol.seed,
        review_all_from: pol.review_all_from.clone(),
        review_all_items: rows.iter().filter(|r| r.review_all).count(),
    }
}

/// The rule of [`evidence`], as `report.json` `queue.evidence_rule` and
/// the page's caption state it.
pub const EVIDENCE_RULE: &str = "A row has evidence when a check flags it and its priority stands above the clean items' level (Otsu's split of the queue's priorities, on the log-odds scale, into a high and a low group); the evidence ends at the last such row.";

/// Otsu's split of `values` into a low and a high group: the threshold
/// `t = v₍ₖ₎` (ascending order statistics `v₍₁₎ ≤ … ≤ v₍ₙ₎` of the finite
/// values) with `k ∈ [1, n − 1]` minimising the within-group sum of
/// squares
///
/// `SSE(v₍₁₎ … v₍ₖ₎) + SSE(v₍ₖ₊₁₎ … v₍ₙ₎)`, `SSE(x) = Σ x² − (Σ x)² / |x|`
///
/// (ties to the smaller `k`); a value is in the high group when it is
/// `> t`. `None` with fewer than two finite values.
pub fn otsu_threshold(values: impl Iterator<Item = f64>) -> Option<f64> {
    use rayon::slice::ParallelSliceMut;
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n < 2 {
        return None;
    }
    // Values equal under `total_cmp` have the same bits: an unstable sort
    // (in parallel for many) orders them exactly as a stable one.
    if n >= 1 << 16 {
        v.par_sort_unstable_by(f64::total_cmp);
    } else {
        v.sort_unstable_by(f64::total_cmp);
    }
    let (total, total2) = v.iter().fold((0.0, 0.0), |(s, q), &x| (s + x, q + x * x));
    let (mut s, mut q) = (0.0, 0.0);
    let mut best: Option<(f64, usize)> = None;
    for k in 1..n {
        let x = v[k - 1];
        s += x;
        q += x * x;
        let (lo, hi) = (k as f64, (n - k) as f64);
        let sse = (q - s * s / lo) + ((total2 - q) - (total - s) * (total - s) / hi);
        if best.is_none_or(|b| sse < b.0) {
            best = Some((sse, k));
        }
    }
    best.map(|(_, k)| v[k - 1])
}

/// A priority on the log-odds scale: `ln(p / (1 − p))`, `p` clamped to
/// `[10⁻⁶, 1 − 10⁻⁶]`.
pub fn log_odds(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// Where the queue's evidence ends (`report.json` `queue`). A row has
/// evidence when a check flags it *and* its priority stands above the
/// clean items' level. With `p(r)` the priority of the row of rank `r`
/// (1-based, queue order), `flag_c(r) ∈ {0, 1}` whether check `c` (every
/// check that ran) flags it, `ℓ(p) = ln(p / (1 − p))` ([`log_odds`]) and
/// `t` the [`otsu_threshold`] of `ℓ(p)` over all the rows (`−∞` with fewer
/// than two rows),
///
/// `evidence_ends_at = max { r : Σ_c flag_c(r) ≥ 1 ∧ ℓ(p(r)) > t }`, or 0
/// when no row qualifies,
///
/// so every row ranked below the cut is flagged by no check or sits at the
/// clean level: the page marks those "no issue found". The flags alone are
/// not enough: some checks flag most items of a dataset (the softmin label
/// quality of segmentation items, the calibration error of a classifier
/// over many classes); the priority alone would cut an error-free queue
/// too. The split is taken on the log-odds scale, which spreads the
/// priorities bunched near 0 (the many clean items) and near 1 (the
/// errors), so a small group of clear errors is not merged into the spread
/// of the clean bulk. `flagged` counts the rows any check flags, above the
/// cut or not.
pub fn evidence(
    checks: &[CheckRun],
    items: &[ItemResult],
    rows: &[RowPlan],
) -> schema::QueueSummary {
    let flagged = |r: &RowPlan| checks.iter().any(|c| c.flagged(items[r.item()].index));
    let level = |r: &RowPlan| log_odds(items[r.item()].priority);
    let t = otsu_threshold(rows.iter().map(level)).unwrap_or(f64::NEG_INFINITY);
    let mut count = 0;
    let mut last = 0;
    for (i, r) in rows.iter().enumerate() {
        if flagged(r) {
            count += 1;
            if level(r) > t {
                last = i + 1;
            }
        }
    }
    schema::QueueSummary {
        rows: rows.len(),
        flagged: count,
        evidence_ends_at: last,
        evidence_rule: EVIDENCE_RULE.into(),
    }
}

/// `report.json` `views`: per issue type, the queue's flagged items, highest
/// score first (ties: queue order), at most [`VIEW_SIZE`] listed: the
/// first [`VIEW_SIZE`] of that order are selected in linear time
/// (`select_nth_unstable_by`; the order is total, ranks being unique), and
/// only they are sorted.
fn views_section(
    task: Task,
    checks: &[CheckRun],
    manifest: &Manifest,
    items: &[ItemResult],
    rows: &[RowPlan],
) -> IndexMap<String, schema::View> {
    let id_of = |p: usize| &manifest.ids[items[p].index];
    let mut views = IndexMap::new();
    for d in checks {
        let mut hits: Vec<(f64, usize)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| d.flagged(items[r.item()].index))
            .filter_map(|(rank, r)| Some((d.score(&items[r.item()])?, rank)))
            .collect();
        let order = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if hits.len() > VIEW_SIZE {
            hits.select_nth_unstable_by(VIEW_SIZE, order);
            hits[..VIEW_SIZE].sort_unstable_by(order);
        } else {
            hits.sort_unstable_by(order);
        }
        let flagged = hits.len();
        let items = hits
            .iter()
            .take(VIEW_SIZE)
            .map(|&(score, rank)| schema::ViewItem {
                id: id_of(rows[rank].item()).to_string(),
                score,
                rank: rank + 1,
            })
            .collect();
        views.insert(
            d.check.name().into(),
            schema::View {
                score: d.check.score_text(task).into(),
                flagged_when: d.check.flagged_when(task),
                flagged,
                items,
            },
        );
    }
    views
}

/// Mark the in-budget rows `new`, `still` or `changed` against the previous
/// run's queue; `report.json` `previous` counts them.
fn previous_section(
    dir: &std::path::Path,
    prev: &[previous::PrevRow],
    manifest: &Manifest,
    items: &[ItemResult],
    rows: &mut [RowPlan],
) -> schema::Previous {
    let cmp = previous::Comparison::new(prev);
    let mut now: HashSet<&str> = HashSet::new();
    for r in rows.iter_mut().filter(|r| r.in_budget) {
        let it = &items[r.item()];
        let id = &manifest.ids[it.index];
        now.insert(id);
        r.status = Some(cmp.status(id, it.priority, &scores_json(it)));
    }
    let count = |s: Status| rows.iter().filter(|r| r.status == Some(s)).count();
    schema::Previous {
        dir: dir.to_path_buf(),
        tolerance: previous::TOLERANCE,
        new: count(Status::New),
        still: count(Status::Still),
        changed: count(Status::Changed),
        dropped: cmp.dropped(&now),
    }
}

/// The stored decisions and how they relate to the items now.
struct Decisions<'a> {
    records: &'a [ReviewRecord],
    /// Reviewed and unchanged since, by item position.
    current: &'a HashMap<usize, &'a ReviewRecord>,
    /// Reviewed, but the predictions or the annotation changed since.
    changed: &'a HashMap<usize, (&'a ReviewRecord, Vec<&'a str>)>,
    /// Decisions about ids that are not in the dataset.
    unknown: usize,
}

/// `report.json` `review`: the queue's precision from the unchanged
/// decisions, overall, per signal and per issue type.
fn review_section(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    items: &[ItemResult],
    pol: &policy::Policy,
    annot: Option<(usize, &Manifest)>,
    checks: &[CheckRun],
    done: &Decisions<'_>,
) -> schema::Review {
    let id_of = |p: usize| &manifest.ids[items[p].index];
    let (recs, current, changed, unknown) =
        (done.records, done.current, done.changed, done.unknown);
    let all: Vec<usize> = (0..items.len()).collect();
    let full = policy::select_owned(candidates(items, &all, annot), pol);
    let mut per_signal: BTreeMap<&str, Tally> =
        SIGNALS.iter().map(|&s| (s, Tally::default())).collect();
    let mut per_type: BTreeMap<&str, Tally> = checks
        .iter()
        .map(|d| (d.check.name(), Tally::default()))
        .collect();
    let mut overall = Tally::default();
    for pk in full.iter() {
        let Some(r) = current.get(&pk.pos) else {
            continue;
        };
        overall.add(r.decision);
        if let Some(t) = per_signal.get_mut(signal(pk.why)) {
            t.add(r.decision);
        }
        for d in checks {
            if d.flagged(items[pk.pos].index)
                && let Some(t) = per_type.get_mut(d.check.name())
            {
                t.add(r.decision);
            }
        }
    }
    let mut changed_ids: Vec<(usize, &str)> = changed.keys().map(|&p| (p, id_of(p))).collect();
    changed_ids.sort();
    schema::Review {
        file: cfg.dir.join(review::REVIEWS_FILE),
        decisions: recs.len(),
        unknown_ids: unknown,
        left_queue: current.len(),
        changed_since_review: changed_ids.iter().map(|x| x.1.to_string()).collect(),
        precision_definition:
            "errors / (errors + ok) over unchanged reviewed items; unsure is excluded".into(),
        overall: overall.json(),
        per_signal: per_signal
            .iter()
            .map(|(k, t)| (k.to_string(), t.json()))
            .collect(),
        per_issue_type: per_type
            .iter()
            .map(|(k, t)| (k.to_string(), t.json()))
            .collect(),
    }
}

/// What the queue stage reads besides the scores: the stored review
/// decisions and the previous run's queue, read and checked (with every
/// queue option) by [`prepare`] before the first batch is scored, so a typo
/// fails at once instead of after the scoring pass.
#[derive(Debug, Default)]
pub struct QueueInputs {
    reviews: Option<Vec<ReviewRecord>>,
    previous: Option<Vec<previous::PrevRow>>,
}

/// Check the queue options against the dataset (`--min-per-class` against
/// the class count, `--review-all-from` against the items' columns) and read
/// `reviews.jsonl` and `--previous`'s `queue.jsonl`. Everything here can
/// fail on user input, and needs no score.
pub fn prepare(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    opts: &QueueOptions,
) -> Result<QueueInputs> {
    let pol = &opts.policy;
    let c = cfg.num_classes();
    if pol.min_per_class * c as f64 > 1.0 + 1e-9 {
        return Err(Error::Usage(format!(
            "--min-per-class {} x {c} classes exceeds the whole budget; use at most 1/{c}",
            pol.min_per_class
        )));
    }
    if !pol.review_all_from.is_empty() && cfg.memory.is_some() {
        return Err(Error::Usage(
            "--review-all-from needs each item's annotator, which arrays in memory do not \
             carry: run a dataset directory whose items CSV has an `annotator` column"
                .into(),
        ));
    }
    if !pol.review_all_from.is_empty() && manifest.column("annotator").is_none() {
        return Err(Error::Usage(format!(
            "--review-all-from needs an `annotator` column in {}",
            cfg.items
                .as_deref()
                .map_or_else(|| "the items CSV".to_string(), |p| p.display().to_string())
        )));
    }
    Ok(QueueInputs {
        reviews: review::load(&cfg.dir)?,
        previous: opts.previous.as_deref().map(previous::load).transpose()?,
    })
}

/// Build the queue for `items` (sorted by priority, highest first) under
/// `opts`, with the inputs [`prepare`] read.
pub fn plan(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    items: &[ItemResult],
    opts: &QueueOptions,
    inputs: QueueInputs,
    checks: &[CheckRun],
) -> Result<QueuePlan> {
    let pol = &opts.policy;
    // Positions and cluster ids (rows) are kept as `u32` in the selection.
    let n = items.len().max(manifest.len());
    if u32::try_from(n).is_err() {
        return Err(crate::Error::Usage(format!(
            "{n} items: the queue holds fewer than 2^32"
        )));
    }
    let annot = manifest.column("annotator").map(|col| (col, manifest));
    let id_of = |p: usize| &manifest.ids[items[p].index];

    // Decisions already made, and whether their items changed since.
    let reviews = inputs.reviews;
    let mut current: HashMap<usize, &ReviewRecord> = HashMap::new();
    let mut changed: HashMap<usize, (&ReviewRecord, Vec<&str>)> = HashMap::new();
    let mut unknown = 0usize;
    if let Some(recs) = &reviews {
        let pos_of: HashMap<&str, usize> = (0..items.len()).map(|p| (id_of(p), p)).collect();
        let mut hasher = review::ContentHasher::new(cfg, manifest)?;
        for r in recs {
            let Some(&p) = pos_of.get(r.id.as_str()) else {
                unknown += 1;
                continue;
            };
            let it = &items[p];
            let h = hasher.hashes(it.index, it.row.map(|f| f.label))?;
            let mut what = Vec::new();
            if h.probs != r.probs_hash {
                what.push("predictions");
            }
            if h.annotation != r.annotation_hash {
                what.push("annotation");
            }
            if what.is_empty() {
                current.insert(p, r);
            } else {
                changed.insert(p, (r, what));
            }
        }
    }

    // The queue: every item but those reviewed and unchanged.
    let qpos: Vec<usize> = (0..items.len())
        .filter(|p| !current.contains_key(p))
        .collect();
    let picks = policy::select_owned(candidates(items, &qpos, annot), pol);
    let mut rows: Vec<RowPlan> = picks
        .iter()
        .map(|pk| {
            let also = picks.also_in_cluster(pk.pos);
            row_plan(cfg, manifest, items, &qpos, &changed, annot, (pk, also))
        })
        .collect();
    drop(picks);

    let queue_policy = policy_section(cfg, pol, &rows, qpos.len());
    let evidence = evidence(checks, items, &rows);
    // Views over the queue: the checks' flagged items.
    let views = views_section(cfg.task, checks, manifest, items, &rows);

    // Precision of the queue from the unchanged decisions.
    let review = reviews.as_ref().map(|recs| {
        let done = Decisions {
            records: recs,
            current: &current,
            changed: &changed,
            unknown,
        };
        review_section(cfg, manifest, items, pol, annot, checks, &done)
    });

    // Against the previous run.
    let with_status = opts.previous.is_some();
    let previous = match (&opts.previous, &inputs.previous) {
        (Some(dir), Some(prev)) => Some(previous_section(dir, prev, manifest, items, &mut rows)),
        _ => None,
    };
    Ok(QueuePlan {
        rows,
        queue_policy,
        evidence,
        views,
        review,
        previous,
        with_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_where_the_within_group_spread_is_least() {
        // Hand-worked: {0, .1, .2} | {.9, 1}: SSE 0.02 + 0.005 = 0.025;
        // {0, .1} | {.2, .9, 1}: 0.005 + 0.38; {0, .1, .2, .9} | {1}: 0.5675;
        // {0} | {.1, .2, .9, 1}: 0.6875. So t = 0.2.
        let t = otsu_threshold([1.0, 0.1, f64::NAN, 0.9, 0.0, 0.2].into_iter());
        assert_eq!(t, Some(0.2));
        // Nine high and 23 low: the split between them, whatever the order.
        let mut v: Vec<f64> = (0..23).map(|i| 0.03 + 0.012 * i as f64).collect();
        v.extend((0..9).map(|i| 0.45 + 0.05 * i as f64));
        v.reverse();
        let t = otsu_threshold(v.iter().copied()).unwrap();
        assert_eq!(v.iter().filter(|&&x| x > t).count(), 9);
        // Equal values: nothing above; too few values: no split.
        assert_eq!(otsu_threshold([0.5, 0.5, 0.5].into_iter()), Some(0.5));
        assert_eq!(otsu_threshold([0.5, f64::INFINITY].into_iter()), None);
        assert_eq!(otsu_threshold(std::iter::empty()), None);
    }

    /// Many values (the parallel sort): two well-separated groups split
    /// at the low group's largest value, whatever the input order.
    #[test]
    fn otsu_splits_many_values_between_their_groups() {
        let low = |i: usize| (i % 1000) as f64 / 10_000.0; // [0, 0.0999]
        let high = |i: usize| 0.9 + (i % 777) as f64 / 10_000.0;
        let mut v: Vec<f64> = (0..60_000).map(low).chain((0..10_000).map(high)).collect();
        v.reverse();
        v.swap(3, 65_000);
        assert_eq!(otsu_threshold(v.iter().copied()), Some(0.0999));
    }

    #[test]
    fn log_odds_are_symmetric_and_clamped() {
        assert_eq!(log_odds(0.5), 0.0);
        assert!((log_odds(0.9) - 9f64.ln()).abs() < 1e-12);
        assert!((log_odds(0.1) + log_odds(0.9)).abs() < 1e-12);
        assert_eq!(log_odds(0.0), log_odds(1e-9));
        assert!(log_odds(1.0).is_finite() && log_odds(0.0).is_finite());
        // NaN stays NaN, which Otsu leaves out.
        assert!(log_odds(f64::NAN).is_nan());
    }
}
