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
use crate::priority::{ItemScores, RowFacts, SegFacts};

/// The class of an unlabelled classification item, as the score stage
/// carries it (`labels.npy` -1, an empty `label` cell).
pub const UNLABELLED: u32 = u32::MAX;

/// One scored item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemResult {
    /// Row in items order.
    pub index: usize,
    pub scores: ItemScores,
    pub priority: f64,
    /// Stored reasons (segmentation: its score reasons). Classification
    /// rows store none: their score reasons are derived from `scores` and
    /// `row` when written (two strings per row would dominate the memory of
    /// a large run); the writers read every reason through
    /// `crate::checks::Reasons::of`, which adds the checks' reasons too.
    pub reasons: Vec<String>,
    /// Classification: annotated and predicted class.
    pub row: Option<RowFacts>,
    /// Segmentation: its worst class, for its reasons (written once every
    /// item is scored, as they quote the dataset's medians).
    pub seg_facts: Option<SegFacts>,
    /// Segmentation: the sorted set of annotated classes, compared by the
    /// neighbour checks (empty for classification, whose label is in `row`;
    /// read both through [`ItemResult::label_set`]).
    pub label_set: Vec<u32>,
    /// Segmentation: the mask's height and width.
    pub dims: Option<(usize, usize)>,
    /// Near-duplicate cluster id, when embeddings are given.
    pub cluster: Option<usize>,
    /// Flagged near-duplicate partners.
    pub neighbors: Vec<NeighborRef>,
    /// Stratification class of `--min-per-class`: the annotated label
    /// (classification) or the class with the lowest IoU in the item
    /// (segmentation; `None` when no class has a defined IoU).
    pub class: Option<u32>,
    /// With annotations (classification): the strict majority of the
    /// item's annotators (`None` when tied or unannotated).
    #[serde(default)]
    pub consensus: Option<u32>,
    /// The item has no annotation (an empty `label` or `mask` cell, or -1
    /// in `labels.npy`): it has only the label-free scores, never enters
    /// the review queue, and is offered to the selection for labelling
    /// ([`crate::checks::selection`]); `class` is then its predicted class.
    #[serde(default)]
    pub unlabelled: bool,
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
            None => &self.label_set,
        }
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
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub read: Duration,
    pub score: Duration,
    /// The neighbour stage, when embeddings were given.
    pub neighbors: Option<Duration>,
    /// Sorting by priority and the queue policy.
    pub queue: Duration,
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
