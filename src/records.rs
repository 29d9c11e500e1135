//! The records every stage shares, at the bottom of the crate: the per-item
//! result, a flagged near-duplicate partner, the pooled dataset sums, the
//! kept prediction maps and the run's timings. The score stage fills them,
//! the neighbour stage, the queue, the outputs and the report read them;
//! this module imports none of those (only the score types of
//! [`crate::priority`] and the metric sums of [`crate::metrics`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::boundary_iou::BandCounts;
use crate::metrics::calibration::PooledBins;
use crate::metrics::confusion::Confusion;
use crate::priority::{RowFacts, SegFacts};
use crate::scores::{ItemScores, Score, Stage, TABLE};

/// The class of an unlabelled classification item, as the score stage
/// carries it (`labels.npy` -1, an empty `label` cell).
pub const UNLABELLED: u32 = u32::MAX;

/// One scored item.
///
/// Every item holds one through the queue and write stages, so it keeps
/// inline only what every item has (its row, scores, priority, classes and
/// cluster: 160 bytes) and boxes the rest in [`ItemExtra`]: the
/// segmentation facts, stored reasons and flagged neighbours that a
/// classification item without a near-duplicate never has (8 bytes for it
/// then; BENCHMARKS.md "Many items"). Read those through the accessors
/// ([`ItemResult::reasons`], [`ItemResult::dims`], ...), set them through
/// [`ItemResult::extra_mut`]. Serialised (checkpoints, partials, cache
/// entries) as one flat record with every field, boxed or not
/// ([`ItemWire`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "ItemWire")]
pub struct ItemResult {
    /// Row in items order.
    pub index: usize,
    pub scores: ItemScores,
    /// The review priority: set once by the pipeline, after the checks,
    /// from the scores and the raises the agreement and neighbour stages
    /// recorded ([`crate::priority::priorities`]); 0 until then (so in
    /// checkpoints, partials and cache entries).
    pub priority: f64,
    /// Classification: annotated and predicted class.
    pub row: Option<RowFacts>,
    /// Near-duplicate cluster id, when embeddings are given.
    pub cluster: Option<usize>,
    /// Stratification class of `--min-per-class`: the annotated label
    /// (classification) or the class with the lowest IoU in the item
    /// (segmentation; `None` when no class has a defined IoU).
    pub class: Option<u32>,
    /// With annotations (classification): the strict majority of the
    /// item's annotators (`None` when tied or unannotated).
    pub consensus: Option<u32>,
    /// The item has no annotation (an empty `label` or `mask` cell, or -1
    /// in `labels.npy`): it has only the label-free scores, never enters
    /// the review queue, and is offered to the selection for labelling
    /// ([`crate::queue::selection`]); `class` is then its predicted class.
    pub unlabelled: bool,
    /// What few items carry (`None`: all empty).
    pub extra: Option<Box<ItemExtra>>,
}

// Every item holds one through the queue and write stages: keep it small
// (BENCHMARKS.md "Many items").
const _: () = assert!(std::mem::size_of::<ItemResult>() <= 160);

/// The fields of an [`ItemResult`] that most items leave empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemExtra {
    /// Stored reasons (segmentation: its score reasons). Classification
    /// rows store none: their score reasons are derived from `scores` and
    /// `row` when written (two strings per row would dominate the memory of
    /// a large run); the writers read every reason through
    /// `crate::checks::Reasons::of`, which adds the checks' reasons too.
    pub reasons: Vec<String>,
    /// Segmentation: its worst class, for its reasons (written once every
    /// item is scored, as they quote the dataset's medians).
    pub seg_facts: Option<SegFacts>,
    /// Segmentation: the worst class's largest confusion in the item
    /// ([`crate::metrics::confusion::Confusion::largest_confusion`]), so
    /// its reasons name both classes.
    pub confused: Option<Confused>,
    /// Segmentation: the sorted set of annotated classes, compared by the
    /// neighbour checks (empty for classification, whose label is in `row`;
    /// read both through [`ItemResult::label_set`]).
    pub label_set: Vec<u32>,
    /// Segmentation: the mask's height and width.
    pub dims: Option<(usize, usize)>,
    /// Flagged near-duplicate partners.
    pub neighbors: Vec<NeighborRef>,
}

impl ItemExtra {
    /// `Some(boxed)`, or `None` when every field is empty.
    pub fn boxed(self) -> Option<Box<ItemExtra>> {
        (self != ItemExtra::default()).then(|| Box::new(self))
    }
}

/// An [`ItemResult`] as checkpoints, partials and cache entries hold it:
/// every field at the top level, in this order (the boxed ones included),
/// so the record reads the same whatever is boxed in memory.
#[derive(Deserialize)]
struct ItemWire {
    index: usize,
    scores: ItemScores,
    priority: f64,
    reasons: Vec<String>,
    row: Option<RowFacts>,
    seg_facts: Option<SegFacts>,
    #[serde(default)]
    confused: Option<Confused>,
    label_set: Vec<u32>,
    dims: Option<(usize, usize)>,
    cluster: Option<usize>,
    neighbors: Vec<NeighborRef>,
    class: Option<u32>,
    #[serde(default)]
    consensus: Option<u32>,
    #[serde(default)]
    unlabelled: bool,
}

/// [`ItemWire`] by reference, for writing.
#[derive(Serialize)]
struct ItemWireRef<'a> {
    index: usize,
    scores: &'a ItemScores,
    priority: f64,
    reasons: &'a [String],
    row: &'a Option<RowFacts>,
    seg_facts: Option<&'a SegFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confused: Option<Confused>,
    label_set: &'a [u32],
    dims: Option<(usize, usize)>,
    cluster: Option<usize>,
    neighbors: &'a [NeighborRef],
    class: Option<u32>,
    consensus: Option<u32>,
    unlabelled: bool,
}

impl From<ItemWire> for ItemResult {
    fn from(w: ItemWire) -> Self {
        ItemResult {
            index: w.index,
            scores: w.scores,
            priority: w.priority,
            row: w.row,
            cluster: w.cluster,
            class: w.class,
            consensus: w.consensus,
            unlabelled: w.unlabelled,
            extra: ItemExtra {
                reasons: w.reasons,
                seg_facts: w.seg_facts,
                confused: w.confused,
                label_set: w.label_set,
                dims: w.dims,
                neighbors: w.neighbors,
            }
            .boxed(),
        }
    }
}

impl Serialize for ItemResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ItemWireRef {
            index: self.index,
            scores: &self.scores,
            priority: self.priority,
            reasons: self.reasons(),
            row: &self.row,
            seg_facts: self.seg_facts(),
            confused: self.confused(),
            label_set: self.annotated_classes(),
            dims: self.dims(),
            cluster: self.cluster,
            neighbors: self.neighbors(),
            class: self.class,
            consensus: self.consensus,
            unlabelled: self.unlabelled,
        }
        .serialize(s)
    }
}

/// Pixels of an item annotated one class where the model predicts another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confused {
    pub annotated: u32,
    pub predicted: u32,
    pub pixels: u64,
}

impl ItemResult {
    /// The annotated label (classification) or the sorted set of annotated
    /// classes (segmentation), compared by the neighbour checks.
    pub fn label_set(&self) -> &[u32] {
        if self.unlabelled {
            return &[];
        }
        match &self.row {
            Some(facts) => std::slice::from_ref(&facts.label),
            None => self.annotated_classes(),
        }
    }

    /// The boxed fields, allocated (empty) on first use.
    pub fn extra_mut(&mut self) -> &mut ItemExtra {
        self.extra.get_or_insert_default()
    }

    /// Stored reasons ([`ItemExtra::reasons`]).
    pub fn reasons(&self) -> &[String] {
        self.extra.as_deref().map_or(&[], |e| &e.reasons)
    }

    /// Segmentation: its worst class and areas ([`ItemExtra::seg_facts`]).
    pub fn seg_facts(&self) -> Option<&SegFacts> {
        self.extra.as_deref().and_then(|e| e.seg_facts.as_ref())
    }

    /// Segmentation: the worst class's largest confusion
    /// ([`ItemExtra::confused`]).
    pub fn confused(&self) -> Option<Confused> {
        self.extra.as_deref().and_then(|e| e.confused)
    }

    /// Segmentation: the sorted set of annotated classes as stored
    /// ([`ItemExtra::label_set`]; empty for classification).
    pub fn annotated_classes(&self) -> &[u32] {
        self.extra.as_deref().map_or(&[], |e| &e.label_set)
    }

    /// Segmentation: the mask's height and width ([`ItemExtra::dims`]).
    pub fn dims(&self) -> Option<(usize, usize)> {
        self.extra.as_deref().and_then(|e| e.dims)
    }

    /// Flagged near-duplicate partners ([`ItemExtra::neighbors`]).
    pub fn neighbors(&self) -> &[NeighborRef] {
        self.extra.as_deref().map_or(&[], |e| &e.neighbors)
    }
}

/// The largest pooled count `triage` accepts from a file it reads back (a
/// checkpoint, a partial, a cache entry): the samples (classification rows,
/// segmentation pixels) and the pixels of the items in all, each at most
/// `2^53` (a million 1024 × 1024 images are `2^40`). Below it no pooled sum
/// can overflow.
pub const MAX_POOLED: u64 = 1 << 53;

/// What a record read back from a state file is checked against: the run's
/// class count and task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunDims {
    pub classes: usize,
    pub segmentation: bool,
}

/// A field of a record read back from a file that does not fit the run:
/// the field (`row.pred`, `stats.confusion.counts`, ...) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same, with its field under `outer` (`stats` + `bins` →
    /// `stats.bins`).
    pub fn under(mut self, outer: &str) -> Self {
        self.field = format!("{outer}.{}", self.field);
        self
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl ItemResult {
    /// Check a score-stage result read back from a file (a checkpoint row,
    /// a partial row, a segmentation cache entry; a checksum does not stop
    /// a forged record) against the run, so that no later stage can index
    /// out of range or trust a field the score stage never sets:
    ///
    /// - every class index (`row.label`, `row.pred`, `class`, `label_set`,
    ///   `seg_facts.worst_class`, `seg_facts.areas`, `confused`) is below
    ///   `classes`; `label_set` and `seg_facts.areas` are sorted by class
    ///   without repeats (an area entry with some pixel, each count at most
    ///   [`MAX_POOLED`]); `confused` only with `seg_facts`, two
    ///   different classes and some pixels;
    /// - the task's fields and only those: classification, `row` exactly
    ///   when labelled (and then `class = row.label`), no `dims`,
    ///   `scores.seg`, `seg_facts` or `label_set`; segmentation, no `row`,
    ///   `dims` of at least 1 × 1 and at most [`MAX_POOLED`] pixels,
    ///   `scores.seg` with `pixels ≤ height × width`;
    /// - what later stages set is unset: `reasons`, `neighbors`,
    ///   `cluster`, `consensus`, and the scores `dup_conflict`,
    ///   `knn_disagreement`, `annotator_agreement`.
    ///
    /// Its `index` is the reader's to check (against the shard or batch).
    pub fn validate(&self, d: RunDims) -> Result<(), Invalid> {
        let c = d.classes;
        let class = |field: &str, k: u32| {
            if (k as usize) < c {
                Ok(())
            } else {
                Err(Invalid::new(
                    field,
                    format!("class {k}, but the run has {c} classes"),
                ))
            }
        };
        let unset = |field: &str, set: bool| {
            if set {
                Err(Invalid::new(
                    field,
                    "set, but the score stage never sets it",
                ))
            } else {
                Ok(())
            }
        };
        unset("reasons", !self.reasons().is_empty())?;
        unset("neighbors", !self.neighbors().is_empty())?;
        unset("cluster", self.cluster.is_some())?;
        unset("consensus", self.consensus.is_some())?;
        // The scores of later stages (neighbours, agreement).
        for d in TABLE.iter().filter(|d| d.stage != Stage::Score) {
            unset(
                &format!("scores.{}", d.name),
                self.scores.get(d.score).is_some(),
            )?;
        }
        if let Some(k) = self.class {
            class("class", k)?;
        }
        let mut last = None;
        for (j, &k) in self.annotated_classes().iter().enumerate() {
            class(&format!("label_set[{j}]"), k)?;
            if last.is_some_and(|l| l >= k) {
                return Err(Invalid::new(
                    format!("label_set[{j}]"),
                    "not sorted without repeats",
                ));
            }
            last = Some(k);
        }
        if let Some(f) = self.seg_facts() {
            if let Some((k, ..)) = f.worst_class {
                let k = u32::try_from(k).unwrap_or(u32::MAX);
                class("seg_facts.worst_class", k)?;
            }
            let mut last = None;
            for (j, &(k, a, p)) in f.areas.iter().enumerate() {
                let field = format!("seg_facts.areas[{j}]");
                class(&field, k)?;
                if last.is_some_and(|l| l >= k) || a.max(p) > MAX_POOLED || a + p == 0 {
                    return Err(Invalid::new(
                        field,
                        "not sorted by class without repeats, or a count out of range",
                    ));
                }
                last = Some(k);
            }
        }
        if let Some(x) = self.confused() {
            class("confused.annotated", x.annotated)?;
            class("confused.predicted", x.predicted)?;
            if x.annotated == x.predicted || x.pixels == 0 {
                return Err(Invalid::new(
                    "confused",
                    "not a confusion (the same class, or no pixel)",
                ));
            }
            unset("confused", self.seg_facts().is_none())?;
        }
        if d.segmentation {
            unset("row", self.row.is_some())?;
            let Some((h, w)) = self.dims() else {
                return Err(Invalid::new("dims", "missing (a segmentation item)"));
            };
            let area = (h as u64)
                .checked_mul(w as u64)
                .filter(|&a| a > 0 && a <= MAX_POOLED)
                .ok_or_else(|| {
                    Invalid::new(
                        "dims",
                        format!("{h} × {w}: not between 1 and {MAX_POOLED} pixels"),
                    )
                })?;
            if !self.scores.is_segmentation() {
                return Err(Invalid::new(
                    "scores.segmentation",
                    "missing (a segmentation item)",
                ));
            }
            let pixels = self.scores.get(Score::Pixels);
            if !pixels.is_some_and(|p| p >= 0.0 && p.fract() == 0.0 && p <= area as f64) {
                return Err(Invalid::new(
                    "scores.pixels",
                    format!("{pixels:?}: not a pixel count of a {h} × {w} item"),
                ));
            }
            if self.unlabelled {
                unset("label_set", !self.annotated_classes().is_empty())?;
                unset("seg_facts", self.seg_facts().is_some())?;
            }
        } else {
            unset("dims", self.dims().is_some())?;
            unset("scores.segmentation", self.scores.is_segmentation())?;
            unset("seg_facts", self.seg_facts().is_some())?;
            unset("label_set", !self.annotated_classes().is_empty())?;
            match (&self.row, self.unlabelled) {
                (Some(_), true) => unset("row", true)?,
                (None, false) => {
                    return Err(Invalid::new("row", "missing (a labelled row)"));
                }
                (Some(r), false) => {
                    class("row.label", r.label)?;
                    class("row.pred", r.pred)?;
                    if self.class != Some(r.label) {
                        return Err(Invalid::new("class", "not the row's label"));
                    }
                }
                (None, true) => {}
            }
        }
        Ok(())
    }

    /// What this (validated) item adds to the pooled sums: `(samples,
    /// pixels)`: a labelled classification row one sample; a labelled
    /// segmentation item its `scores.seg.pixels` samples and its
    /// `height × width` pixels; an unlabelled item nothing.
    pub fn pooled(&self) -> (u64, u64) {
        if self.unlabelled {
            return (0, 0);
        }
        match (self.scores.is_segmentation(), self.dims()) {
            (true, Some((h, w))) => (self.scores.pixels(), (h as u64).saturating_mul(w as u64)),
            _ => (1, 0),
        }
    }
}

/// The pooled sums' share of items read back from a file, added with
/// checked arithmetic: samples and pixels, each at most [`MAX_POOLED`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub samples: u64,
    pub pixels: u64,
}

impl Tally {
    /// Add `(samples, pixels)` ([`ItemResult::pooled`]).
    pub fn add(&mut self, (samples, pixels): (u64, u64)) -> Result<(), Invalid> {
        self.add_tally(Tally { samples, pixels })
    }

    /// Add another tally.
    pub fn add_tally(&mut self, o: Tally) -> Result<(), Invalid> {
        let over = || {
            Invalid::new(
                "items",
                format!("more than {MAX_POOLED} samples or pixels in all"),
            )
        };
        let s = self.samples.checked_add(o.samples).ok_or_else(over)?;
        let p = self.pixels.checked_add(o.pixels).ok_or_else(over)?;
        if s > MAX_POOLED || p > MAX_POOLED {
            return Err(over());
        }
        (self.samples, self.pixels) = (s, p);
        Ok(())
    }
}

/// Pooled sums as a record holds them: the reliability table, the
/// confusion cells `(label, pred, count)` and (segmentation) the band
/// counts.
#[derive(Debug, Clone, Copy)]
pub struct SumsRef<'a> {
    pub bins: &'a PooledBins,
    pub cells: &'a [(u32, u32, u64)],
    pub bands: Option<&'a BandCounts>,
}

/// Check pooled sums read back from a file against the run and against
/// the items they are the sums of (`items`, their [`Tally`]): every cell's
/// classes below `classes`; the reliability table consistent
/// ([`PooledBins::check`]); as many samples in the table as in the cells
/// as the items hold (`items.samples`), as many correct samples as cells
/// on the diagonal; segmentation, band counts of `classes` classes, none
/// over the items' pixels ([`BandCounts::check`]); classification, none.
pub fn check_sums(s: SumsRef<'_>, d: RunDims, items: Tally) -> Result<(), Invalid> {
    let (n, correct) = s.bins.check().map_err(|m| Invalid::new("bins", m))?;
    let (mut cells, mut diag) = (0u64, 0u64);
    for (j, &(l, p, k)) in s.cells.iter().enumerate() {
        if l as usize >= d.classes || p as usize >= d.classes {
            return Err(Invalid::new(
                format!("confusion[{j}]"),
                format!("cell ({l}, {p}), but the run has {} classes", d.classes),
            ));
        }
        cells = cells
            .checked_add(k)
            .ok_or_else(|| Invalid::new("confusion", "the counts overflow"))?;
        if l == p {
            diag += k; // <= cells
        }
    }
    if n != cells || n != items.samples {
        return Err(Invalid::new(
            "bins",
            format!(
                "{n} samples in the reliability table, {cells} in the confusion cells, {} in the items",
                items.samples
            ),
        ));
    }
    if correct != diag {
        return Err(Invalid::new(
            "bins.correct",
            format!("{correct} correct samples, {diag} on the confusion diagonal"),
        ));
    }
    match (s.bands, d.segmentation) {
        (Some(b), true) => b
            .check(d.classes, items.pixels)
            .map_err(|m| Invalid::new("bands", m)),
        (None, false) => Ok(()),
        (Some(_), false) => Err(Invalid::new("bands", "set for a classification run")),
        (None, true) => Err(Invalid::new("bands", "missing (a segmentation run)")),
    }
}

/// A flagged near-duplicate partner of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighborRef {
    /// The partner's row in items order.
    pub index: usize,
    /// Cosine distance.
    pub distance: f32,
    /// The partner's label (segmentation: its annotated classes joined by `+`).
    pub label: String,
    /// Whether the two labels disagree.
    pub conflict: bool,
}

/// Dataset-level pooled statistics: the score stage's sums, which shards
/// add exactly ([`DatasetStats::merge`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetStats {
    /// The reliability table of every sample, added exactly (any order).
    pub bins: PooledBins,
    pub confusion: Confusion,
    /// Segmentation only.
    pub bands: Option<BandCounts>,
    /// Segmentation: the predicted maps of the highest-priority items, for
    /// the report's overlays (empty when the backend keeps none; not kept
    /// in a shard's partial: the overlays read their items again).
    #[serde(skip)]
    pub preds: Option<PredMaps>,
}

impl DatasetStats {
    /// All-zero sums for `classes` classes (`segmentation`: with Boundary
    /// IoU band counts), keeping no prediction maps.
    pub fn zeros(classes: usize, segmentation: bool) -> Self {
        DatasetStats {
            bins: PooledBins::default(),
            confusion: Confusion::new(classes),
            bands: segmentation.then(|| BandCounts::zeros(classes)),
            preds: None,
        }
    }

    /// Add sums read back from a file, checked by [`check_sums`] (whose
    /// totals, with [`Tally`], stay under [`MAX_POOLED`], so nothing
    /// saturates; saturating, not overflowing, all the same).
    pub fn add_sums(&mut self, s: SumsRef<'_>) {
        self.bins.merge_saturating(s.bins);
        for &(l, p, n) in s.cells {
            self.confusion
                .add_count_saturating(l as usize, p as usize, n);
        }
        if let (Some(a), Some(b)) = (&mut self.bands, s.bands) {
            a.add_saturating(b);
        }
    }

    /// Add another shard's sums (counts exactly; see [`PooledBins`]).
    pub fn merge(&mut self, other: &DatasetStats) {
        self.bins.merge(&other.bins);
        self.confusion.merge(&other.confusion);
        if let (Some(a), Some(b)) = (&mut self.bands, &other.bands) {
            a.add(b);
        }
    }
}

/// Shard `index` of `count` (`--shard I/N`): the contiguous run of items
/// `[index·n/count, (index+1)·n/count)` in manifest order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parse `I/N` with `0 ≤ I < N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("expected I/N (e.g. 0/4), got {s:?}"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("bad shard index {i:?}"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("bad shard count {n:?}"))?;
        if count == 0 || index >= count {
            return Err(format!("need 0 <= I < N, got {index}/{count}"));
        }
        Ok(Shard { index, count })
    }

    /// The items of this shard among `n`.
    pub fn range(&self, n: usize) -> std::ops::Range<usize> {
        let at = |i: usize| ((i as u128 * n as u128) / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

/// Wall-clock time of every stage of a run (`report.json` `timings`).
///
/// `read` is spent on the reader thread, overlapped with `score`, so the two
/// can add up to more than the time they took together. `write`, `report`
/// and `overlays` are filled in by `output::write_all`.
/// How a caller watches and stops a run (the Python API): a flag that
/// stops it, and a hook told `(items scored, items to score)` as batches
/// finish (called on the run's threads).
#[derive(Clone, Default)]
pub struct Control {
    /// Set to stop the run: it returns [`crate::Error::Cancelled`] before
    /// its next batch (or stage), and writes nothing.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Told the progress of the score stage.
    pub on_progress: Option<std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("cancel", &self.cancel)
            .field("on_progress", &self.on_progress.is_some())
            .finish()
    }
}

impl Control {
    /// `Err(Cancelled)` once the cancel flag is set.
    pub fn check(&self) -> crate::Result<()> {
        match &self.cancel {
            Some(c) if c.load(std::sync::atomic::Ordering::Relaxed) => Err(crate::Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// Tell the hook `done` of `total`.
    pub fn progress(&self, done: u64, total: u64) {
        if let Some(f) = &self.on_progress {
            f(done, total);
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub read: Duration,
    pub score: Duration,
    /// The neighbour stage, when embeddings were given.
    pub neighbors: Option<Duration>,
    /// Sorting by priority and the queue policy (the checks included).
    pub queue: Duration,
    /// Each check that ran, within `queue`: its name and time.
    pub checks: Vec<(&'static str, Duration)>,
    /// Writing the queue files and `clusters.jsonl`.
    pub write: Duration,
    /// Building `report.json`'s sections, then rendering and writing `report.html`.
    pub report: Duration,
    /// Drawing and writing the overlays.
    pub overlays: Duration,
    /// Waiting for every output to reach the disk (`fsync`) and renaming
    /// them into place: the last step, so it is in the `--timings` line and
    /// in `total` there, but not in `report.json` (written before it).
    pub sync: Duration,
    /// From the start of the run to the end, outputs renamed into place
    /// (`report.json` records the time just before it is written).
    pub total: Duration,
}

impl Timings {
    /// One line for `--timings`: every stage in seconds.
    pub fn line(&self) -> String {
        let s = |d: Duration| format!("{:.3}", d.as_secs_f64());
        format!(
            "read {} s (overlapped), score {} s, neighbours {}, queue {} s, write {} s, report {} s, overlays {} s, sync {} s, total {} s",
            s(self.read),
            s(self.score),
            self.neighbors.map_or("-".into(), |d| format!("{} s", s(d))),
            s(self.queue),
            s(self.write),
            s(self.report),
            s(self.overlays),
            s(self.sync),
            s(self.total)
        )
    }
}

/// The predicted class maps of the (at most `capacity`) items with the
/// highest priority seen so far (ties to the lower index, as the queue
/// orders them), kept while scoring so the report's overlays need not read
/// those items again. Memory is bounded by `capacity × H × W × 2` bytes.
#[derive(Debug, Clone, Default)]
pub struct PredMaps {
    capacity: usize,
    /// `(priority, index, height, width, map)`, unordered.
    maps: Vec<(f64, usize, usize, usize, Vec<u16>)>,
}

impl PredMaps {
    /// Room for `capacity` maps.
    pub fn new(capacity: usize) -> Self {
        PredMaps {
            capacity,
            maps: Vec::with_capacity(capacity),
        }
    }

    /// Keep `map` (`height × width`) of item `index` if it ranks among the
    /// `capacity` highest priorities so far (NaN ranks last).
    pub fn offer(
        &mut self,
        priority: f64,
        index: usize,
        height: usize,
        width: usize,
        map: Vec<u16>,
    ) {
        if self.capacity == 0 || map.len() != height * width {
            return;
        }
        let p = if priority.is_nan() {
            f64::NEG_INFINITY
        } else {
            priority
        };
        // Higher priority first, then lower index.
        let before = |a: (f64, usize), b: (f64, usize)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
        if self.maps.len() < self.capacity {
            self.maps.push((p, index, height, width, map));
            return;
        }
        let worst = (0..self.maps.len()).fold(0, |w, i| {
            let (a, b) = (&self.maps[i], &self.maps[w]);
            if before((b.0, b.1), (a.0, a.1)) { i } else { w }
        });
        let w = &self.maps[worst];
        if before((p, index), (w.0, w.1)) {
            self.maps[worst] = (p, index, height, width, map);
        }
    }

    /// The kept map of item `index`: `(height, width, map)`.
    pub fn get(&self, index: usize) -> Option<(usize, usize, &[u16])> {
        self.maps
            .iter()
            .find(|m| m.1 == index)
            .map(|m| (m.2, m.3, m.4.as_slice()))
    }
}

#[cfg(test)]
mod area_tests {
    use super::*;

    /// A segmentation item read back with forged areas is refused, naming
    /// the entry: a class out of range, out of order, or no pixel.
    #[test]
    fn forged_areas_are_refused() {
        let item = |areas: Vec<(u32, u64, u64)>| ItemResult {
            index: 0,
            scores: ItemScores::segmentation(16),
            priority: 0.0,
            row: None,
            cluster: None,
            class: None,
            consensus: None,
            unlabelled: false,
            extra: ItemExtra {
                seg_facts: Some(SegFacts {
                    worst_class: None,
                    areas,
                }),
                label_set: vec![0, 1],
                dims: Some((4, 4)),
                ..ItemExtra::default()
            }
            .boxed(),
        };
        let d = RunDims {
            classes: 2,
            segmentation: true,
        };
        assert_eq!(item(vec![(0, 10, 12), (1, 6, 4)]).validate(d), Ok(()));
        for (areas, field) in [
            (vec![(2, 1, 1)], "seg_facts.areas[0]"),
            (vec![(1, 1, 1), (0, 1, 1)], "seg_facts.areas[1]"),
            (vec![(0, 0, 0)], "seg_facts.areas[0]"),
            (vec![(0, u64::MAX, 1)], "seg_facts.areas[0]"),
        ] {
            let e = item(areas.clone()).validate(d).unwrap_err();
            assert_eq!(e.field, field, "{areas:?}: {e}");
        }
    }
}
