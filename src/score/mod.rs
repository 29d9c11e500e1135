//! The streaming score stage of `triage run`: every item's scores and the
//! pooled dataset sums, in one pass over the probabilities.
//!
//! Both tasks stream in batches sized in bytes (`--batch-size`, default
//! [`DEFAULT_BATCH_BYTES`]): a reader thread fills one reusable batch buffer
//! with large sequential reads while the backend scores the other
//! ([`crate::io::stream::double_buffered`]). Exactly two batch buffers exist,
//! so the probabilities held at once are at most
//! `2 × max(batch size, one item)`, whatever the number of items; the
//! classification matrix is never resident. Reads are positioned `read`s
//! into owned, reused buffers: no memory-mapped pages pile up.
//!
//! When the backend reads planes itself ([`Backend::reads_planes`], the
//! CPU), float16/float32 segmentation values are not copied into the batch:
//! the reader thread decodes the masks and hands each item's file over
//! ([`SegItem::planes`]); each worker then reads the stripe it scores into
//! its own cache-sized buffer. Such an item counts in a batch for what stays
//! resident (6 bytes per pixel), and the time of those reads is added to
//! `timings.read`.
//!

pub mod cache;
pub mod checkpoint;
pub mod partial;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::{Backend, PlaneSource, ProbBuf, RowBatch, SegBatch, SegItem, SegItemStats};
use crate::config::{DatasetConfig, Task};
use crate::error::{Error, Result};
use crate::io::labels::class_labels;
use crate::io::manifest::Manifest;
use crate::io::npy::{Dtype, NpyArray};
use crate::io::seg_probs::SegProbs;
use crate::metrics::pixel_stats::{SampleScores, normalise};
use crate::priority::{self, RowFacts, SegFacts};
use crate::records::{DatasetStats, ItemExtra, ItemResult, PredMaps, Shard, Timings, UNLABELLED};
use crate::score::cache::{Cache, Key, Recorder, RowEntry, SegEntry};
use crate::score::checkpoint::{Checkpoint, Resumed};
use crate::scores::{ItemScores, Score};

/// Default `--batch-size`: bytes of probabilities per batch (32 MiB).
pub const DEFAULT_BATCH_BYTES: usize = 32 << 20;

/// The options the score stage reads.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Stop and progress hooks (the Python API).
    pub control: crate::records::Control,
    /// Bytes of probabilities per batch (as stored); a batch holds at least
    /// one item (segmentation) or one row (classification).
    pub batch_size: usize,
    /// The probabilities are logits: apply a softmax first.
    pub logits: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Segmentation: keep the predicted maps of this many highest-priority
    /// items (the report's overlays).
    pub kept_maps: usize,
    /// Score only this shard's items (`--shard I/N`).
    pub shard: Option<Shard>,
    /// What the priority ranks by: the kept maps are the highest by it.
    pub rank_by: priority::RankBy,
}

/// Score every item of `cfg` on `backend`: `prepare` runs on the items once
/// they are known, before the first batch is read (the checks of every later
/// stage that need no score), and `timings` gets the read and score times.
///
/// With a `checkpoint` (`--resume`), the items it holds are not scored
/// again, and every batch scored is appended to it before the next.
///
/// With a score cache (`--cache`, [`crate::score::cache`]), each item read is
/// keyed by its content; an item the cache holds is not scored (its entry
/// gives its result and sums), and every item's entry, reused or scored,
/// goes to the [`Recorder`] for the cache's next run.
pub fn score(
    cfg: &DatasetConfig,
    opts: &ScoreOptions,
    backend: &dyn Backend,
    prepare: &mut Prepare<'_>,
    timings: &mut Timings,
    checkpoint: Option<&mut Checkpoint>,
    cache: Option<(&Cache, &mut Recorder)>,
) -> Result<Scored> {
    let run = Run {
        cfg,
        opts,
        backend,
        checkpoint,
        cache,
    };
    match cfg.task {
        Task::Classification => score_classification(run, prepare, timings),
        Task::Segmentation => score_segmentation(run, prepare, timings),
    }
}

/// What one score stage works with.
struct Run<'a, 'c> {
    cfg: &'a DatasetConfig,
    opts: &'a ScoreOptions,
    backend: &'a dyn Backend,
    checkpoint: Option<&'a mut Checkpoint>,
    cache: Option<(&'c Cache, &'c mut Recorder)>,
}

/// What `checkpoint` held, when it starts at the run's first item and ends
/// inside its range (else the checkpoint starts over).
fn resumed(
    checkpoint: &mut Option<&mut Checkpoint>,
    range: &std::ops::Range<usize>,
) -> Result<Option<Resumed>> {
    let Some(cp) = checkpoint.as_deref_mut() else {
        return Ok(None);
    };
    match cp.take_resumed() {
        Some(r)
            if r.items.first().is_none_or(|it| it.index == range.start)
                && (range.start..=range.end).contains(&r.next) =>
        {
            Ok(Some(r))
        }
        Some(_) => {
            eprintln!("triage: the checkpoint does not fit this run's items; starting afresh");
            cp.restart()?;
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Put what the checkpoint held into the run's `items` and `stats` (the
/// cache's `recorder` counts those items as scored); the first item left
/// to score.
fn resume(
    checkpoint: &mut Option<&mut Checkpoint>,
    recorder: Option<&mut Recorder>,
    range: &std::ops::Range<usize>,
    items: &mut Vec<ItemResult>,
    stats: &mut DatasetStats,
    bar: &ProgressBar,
) -> Result<usize> {
    Ok(match resumed(checkpoint, range)? {
        Some(r) => {
            if let Some(rec) = recorder {
                rec.resumed(r.items.len());
            }
            r.restore(items, stats, bar)
        }
        None => range.start,
    })
}

fn progress_bar(n: usize, enabled: bool) -> ProgressBar {
    let target = if enabled {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(n as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} scoring [{bar:40}] {pos}/{len} items  {per_sec}  eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn empty_dataset(path: &Path) -> Error {
    Error::input(path, "empty dataset: there are no items to score")
}

// ---------------------------------------------------------------- classification

/// The score stage's result: the items (their rows), their results in
/// items order and the pooled sums.
pub type Scored = (Manifest, Vec<ItemResult>, DatasetStats);

/// Checks run on the items before the first batch is scored.
pub type Prepare<'a> = dyn FnMut(&Manifest) -> Result<()> + 'a;

/// Open a classification dataset's `(N, C)` probabilities and its items,
/// checking the dtype, the shape, the class count and the item count.
fn open_rows(cfg: &DatasetConfig) -> Result<(NpyArray, Manifest)> {
    let probs = crate::io::inputs::open(cfg, &cfg.probs)?;
    if !probs.dtype.is_float() {
        return Err(Error::input(
            &cfg.probs,
            "probabilities must be float16, float32 or float64",
        )
        .field("dtype"));
    }
    let (n, pc) = match probs.shape.as_slice() {
        [n, pc] => (*n, *pc),
        s => {
            return Err(Error::input(
                &cfg.probs,
                format!("expected shape (N, C) for classification, found {s:?}"),
            )
            .field("shape"));
        }
    };
    let manifest = match (&cfg.items, crate::io::inputs::memory_manifest(cfg, n)) {
        _ if cfg.label_set.is_some() => Manifest::of_dataset(cfg)?,
        (_, Some(m)) => m,
        (Some(p), None) => Manifest::load(p)?,
        (None, None) => Manifest::numbered(n),
    };
    if manifest.is_empty() || n == 0 {
        return Err(empty_dataset(cfg.items.as_deref().unwrap_or(&cfg.probs)));
    }
    if n != manifest.len() {
        let items = match (&cfg.items, &cfg.label_set) {
            (Some(p), _) => p.as_path(),
            (None, Some(set)) => set.path.as_path(),
            (None, None) => Path::new("?"),
        };
        return Err(Error::input(
            &cfg.probs,
            format!(
                "{n} rows of probabilities but {} items in {}",
                manifest.len(),
                items.display()
            ),
        )
        .field("shape"));
    }
    crate::io::seg_probs::same_classes(cfg, pc)?;
    Ok((probs, manifest))
}

fn score_classification(
    run: Run<'_, '_>,
    prepare: &mut Prepare<'_>,
    timings: &mut Timings,
) -> Result<Scored> {
    let Run {
        cfg,
        opts,
        backend,
        mut checkpoint,
        cache,
    } = run;
    let (cache, mut recorder) = cache.unzip();
    let c = cfg.num_classes();
    let (mut probs, manifest) = open_rows(cfg)?;
    let n = manifest.len();
    let labels = class_labels(cfg, &manifest)?;
    if let Some(why) = crate::io::labels::none_labelled(cfg, &manifest, &labels) {
        eprintln!("triage: warning: {why}");
    }
    prepare(&manifest)?;
    let range = opts.shard.map_or(0..n, |s| s.range(n));
    let bar = progress_bar(range.len(), opts.progress);
    let mut items = Vec::with_capacity(range.len());
    let mut stats = DatasetStats::zeros(c, false);
    // Rows per batch: as many as fit in the batch's bytes, at least one.
    let rows_per_batch = (opts.batch_size / (c * probs.dtype.size())).clamp(1, n);
    let slot = || RowSlot {
        start: 0,
        end: 0,
        batch: RowBatch {
            probs: ProbBuf::F32(Vec::new()),
            labels: Vec::new(),
            classes: c,
            logits: opts.logits,
        },
        rows: Vec::new(),
        keys: Vec::new(),
        reused: Vec::new(),
    };
    let stop = range.end;
    let mut next = resume(
        &mut checkpoint,
        recorder.as_deref_mut(),
        &range,
        &mut items,
        &mut stats,
        &bar,
    )?;
    let labels = &labels;
    let read = crate::io::stream::double_buffered(
        [slot(), slot()],
        |s: &mut RowSlot| {
            if next >= stop {
                return Ok(false);
            }
            opts.control.check()?;
            let end = (next + rows_per_batch).min(stop);
            probs.read_probs_into(next * c, (end - next) * c, &mut s.batch.probs)?;
            s.batch.labels.clear();
            // An unlabelled row is scored against class 0: its label-free
            // scores do not depend on it, and the rest are not kept.
            s.batch.labels.extend(
                labels[next..end]
                    .iter()
                    .map(|&l| if l == UNLABELLED { 0 } else { l }),
            );
            (s.start, s.end) = (next, end);
            next = end;
            Ok(true)
        },
        |s: &mut RowSlot| {
            let t = Instant::now();
            // Keyed here, on every core, not on the reader thread: hashing
            // a row costs about what scoring it does.
            if let Some(cache) = cache {
                s.keep_unknown(cache, c);
            }
            let (start, batch) = (s.start, &s.batch);
            let scores = match batch.labels.is_empty() {
                true => Vec::new(),
                false => {
                    let scores = backend.score_rows(batch)?;
                    if let Some(r) = scores.first_invalid {
                        return Err(diagnose(
                            &batch.probs,
                            r * c,
                            1,
                            c,
                            opts.logits,
                            &cfg.probs,
                            &manifest.ids[s.rows.get(r).copied().unwrap_or(start + r)],
                            None,
                        ));
                    }
                    scores.samples
                }
            };
            timings.score += t.elapsed();
            // Pooled row by row (not the batch's f64 table), so the sums do
            // not depend on where batches or shards begin. With a
            // checkpoint, the batch's sums are kept apart for it first.
            let mut delta = checkpoint.is_some().then(|| DatasetStats::zeros(c, false));
            let sink = delta.as_mut().unwrap_or(&mut stats);
            let mut fold = |i: usize, sc: &SampleScores| {
                let label = labels[i];
                if label == UNLABELLED {
                    items.push(unlabelled_row_item(i, sc));
                    return;
                }
                sink.bins.add_sample(sc.confidence, sc.pred == label);
                sink.confusion.add(label as usize, sc.pred as usize);
                items.push(row_item(i, sc, label));
            };
            match recorder.as_deref_mut() {
                None => {
                    for (j, sc) in scores.iter().enumerate() {
                        fold(start + j, sc);
                    }
                }
                Some(rec) => {
                    // The reused and the scored rows, in items order.
                    let mut scored = s.rows.iter().zip(&s.keys).zip(&scores);
                    let mut reused = s.reused.iter().peekable();
                    loop {
                        let upto = scored.next();
                        let until = upto.map_or(usize::MAX, |((i, _), _)| *i);
                        while let Some((i, e)) = reused.next_if(|r| r.0 < until) {
                            fold(*i, &e.scores());
                            rec.row(*e, true);
                        }
                        let Some(((i, key), sc)) = upto else { break };
                        fold(*i, sc);
                        rec.row(RowEntry::new(*key, sc), false);
                    }
                }
            }
            if let (Some(cp), Some(d)) = (checkpoint.as_deref_mut(), &delta) {
                let k = s.end - start;
                cp.append(start, s.end, &items[items.len() - k..], d)?;
                stats.merge(d);
            }
            bar.inc((s.end - start) as u64);
            opts.control
                .progress(bar.position(), bar.length().unwrap_or(0));
            Ok(())
        },
    )?;
    timings.read += read;
    bar.finish_and_clear();
    Ok((manifest, items, stats))
}

/// A classification batch: the rows `start..end` read, of which those
/// the score cache does not hold are in `batch`.
struct RowSlot {
    start: usize,
    end: usize,
    batch: RowBatch,
    /// With a cache: the rows in `batch` and their keys.
    rows: Vec<usize>,
    keys: Vec<Key>,
    /// With a cache: the rows it holds, with their entries.
    reused: Vec<(usize, RowEntry)>,
}

impl RowSlot {
    /// Key every row read (`c` values each); keep in `batch` only those
    /// `cache` does not hold, moved down in place.
    fn keep_unknown(&mut self, cache: &Cache, c: usize) {
        use rayon::prelude::*;
        self.rows.clear();
        self.keys.clear();
        self.reused.clear();
        let (probs, labels) = (&self.batch.probs, &self.batch.labels);
        let keys: Vec<Key> = (0..self.end - self.start)
            .into_par_iter()
            .with_min_len(256)
            .map(|r| crate::score::cache::row_key(probs, r * c..(r + 1) * c, labels[r]))
            .collect();
        let mut kept = 0;
        for (r, key) in keys.into_iter().enumerate() {
            let (i, label) = (self.start + r, self.batch.labels[r]);
            match cache.row(key) {
                Some(e) => self.reused.push((i, e)),
                None => {
                    if kept != r {
                        self.batch.probs.copy_within(r * c..(r + 1) * c, kept * c);
                        self.batch.labels[kept] = label;
                    }
                    self.rows.push(i);
                    self.keys.push(key);
                    kept += 1;
                }
            }
        }
        self.batch.probs.truncate(kept * c);
        self.batch.labels.truncate(kept);
    }
}

/// The reported scores of a classification row scored `s` against
/// `label`: each per-sample score itself (the mean over one sample) and
/// the row's calibration error `|correct − p_(1)|`; with `labelled` false
/// (an unlabelled row), only the scores that need no label.
pub fn row_scores(s: &SampleScores, label: u32, labelled: bool) -> ItemScores {
    let mut sc = ItemScores::default();
    sc.set_sample_means(&s.scores.map(f64::from), 1, labelled);
    if labelled {
        let correct = (s.pred == label) as u32 as f64;
        sc.set(Score::Ece, Some((correct - s.confidence as f64).abs()));
    }
    sc
}

/// The result of classification row `index`.
fn row_item(index: usize, s: &SampleScores, label: u32) -> ItemResult {
    let sc = row_scores(s, label, true);
    let facts = RowFacts {
        label,
        pred: s.pred,
        p_label: s.scores.self_confidence as f64,
        p_pred: s.confidence as f64,
    };
    ItemResult {
        index,
        priority: 0.0,
        scores: sc,
        row: Some(facts),
        cluster: None,
        class: Some(label),
        consensus: None,
        unlabelled: false,
        extra: None,
    }
}

/// The result of unlabelled classification row `index`: only its
/// label-free scores (entropy, margin, least confidence), stratified by
/// its predicted class; its priority is 0 (it never enters the review
/// queue).
fn unlabelled_row_item(index: usize, s: &SampleScores) -> ItemResult {
    ItemResult {
        index,
        priority: 0.0,
        scores: row_scores(s, s.pred, false),
        row: None,
        cluster: None,
        class: Some(s.pred),
        consensus: None,
        unlabelled: true,
        extra: None,
    }
}

/// The `c` values of pixel `px` (plane stride `hw`) of an item left in its
/// file, as a one-pixel buffer (stride 1).
fn pixel_values(src: &dyn PlaneSource, px: usize, hw: usize, c: usize) -> Result<ProbBuf> {
    if src.is_f16() {
        let mut v = vec![0u16; c];
        for (k, x) in v.iter_mut().enumerate() {
            src.read_f16(k * hw + px, std::slice::from_mut(x))?;
        }
        Ok(ProbBuf::F16(v))
    } else {
        let mut v = vec![0f32; c];
        for (k, x) in v.iter_mut().enumerate() {
            src.read_f32(k * hw + px, std::slice::from_mut(x))?;
        }
        Ok(ProbBuf::F32(v))
    }
}

/// Build the error for an invalid sample: `count` samples of `c` values with
/// stride `stride` starting at `start` (one row: stride 1; one pixel: stride
/// H·W). The message names the class and the value.
#[allow(clippy::too_many_arguments)]
fn diagnose(
    probs: &ProbBuf,
    start: usize,
    stride: usize,
    c: usize,
    logits: bool,
    file: &Path,
    item: &str,
    pixel: Option<(usize, usize)>,
) -> Error {
    let p: Vec<f32> = (0..c).map(|k| probs.get(start + k * stride)).collect();
    let mut q = vec![0.0; c];
    let what = match normalise(&p, logits, &mut q) {
        Err(e) => e.to_string(),
        Ok(()) => "invalid probabilities".to_string(),
    };
    let e = Error::input(file, what).item(item);
    match pixel {
        Some((x, y)) => e.field(format!("pixel (x={x}, y={y})")),
        None => e.field("probs"),
    }
}

// ---------------------------------------------------------------- segmentation

struct SegReader<'a> {
    cfg: &'a DatasetConfig,
    manifest: &'a Manifest,
    mask_col: usize,
    source: SegProbs,
    /// When the backend reads planes itself: float16/float32 values are
    /// left in their file ([`SegItem::planes`]) and the time its reads take
    /// is added here (nanoseconds).
    planes: Option<Arc<AtomicU64>>,
    /// One past the last item to read.
    end: usize,
}

impl SegReader<'_> {
    /// Bytes item `i` holds in a batch: its probabilities as stored, or,
    /// when they stay in their file ([`SegReader::planes`]), what scoring
    /// keeps per pixel: the annotation and the prediction map (2 bytes
    /// each) and the two Boundary IoU bands (1 byte each).
    fn item_bytes(&mut self, i: usize) -> Result<usize> {
        let c = self.cfg.num_classes();
        let lazy = self.planes.is_some();
        let (arr, _, h, w) = self.source.item(i, &self.manifest.ids[i])?;
        Ok(match arr.dtype {
            Dtype::F16 | Dtype::F32 if lazy && arr.has_planes() => 6 * h * w,
            dtype => c * h * w * dtype.size(),
        })
    }

    /// Fill `s` with the items from `*next` on while they fit in
    /// `batch_bytes` (at least one), reusing the spare items' buffers;
    /// `Ok(false)` when every item has been read. With a score `cache`, each
    /// item read is keyed; those it holds go to `s.reused` (at most
    /// [`MAX_REUSED`] a batch) instead of the batch.
    fn fill(
        &mut self,
        s: &mut SegSlot,
        next: &mut usize,
        batch_bytes: usize,
        cache: Option<&Cache>,
    ) -> Result<bool> {
        let n = self.end;
        if *next >= n {
            return Ok(false);
        }
        s.spare.append(&mut s.batch.items);
        s.rows.clear();
        s.keys.clear();
        s.reused.clear();
        s.start = *next;
        let mut bytes = 0usize;
        while *next < n && s.reused.len() < MAX_REUSED {
            let b = self.item_bytes(*next)?;
            if !s.batch.items.is_empty() && bytes + b > batch_bytes {
                break;
            }
            let mut item = s.spare.pop().unwrap_or_else(|| SegItem {
                probs: ProbBuf::F32(Vec::new()),
                planes: None,
                labels: Vec::new(),
                height: 0,
                width: 0,
                unlabelled: false,
            });
            self.read_item_into(*next, &mut item)?;
            if let Some(cache) = cache {
                let key = self.key(&item)?;
                if let Some(e) = cache.seg(key) {
                    s.reused.push((*next, e.clone()));
                    s.spare.push(item);
                    *next += 1;
                    continue;
                }
                s.keys.push(key);
            }
            s.rows.push(*next);
            s.batch.items.push(item);
            bytes += b;
            *next += 1;
        }
        s.end = *next;
        Ok(true)
    }

    /// The score cache's key of `item`, as read: its values (read once more
    /// when they stayed in their file; chunks hashed in parallel), its mask
    /// and its size.
    fn key(&self, item: &SegItem) -> Result<Key> {
        // An unlabelled item is scored otherwise than one annotated all 0.
        let salt: Key = if item.unlabelled { UNLABELLED_SALT } else { 0 };
        Ok(self.content_key(item)? ^ salt)
    }

    fn content_key(&self, item: &SegItem) -> Result<Key> {
        use crate::score::cache::{chunk_hash, raw_hash, seg_key};
        let len = self.cfg.num_classes() * item.height * item.width;
        let (labels, h, w) = (&item.labels, item.height, item.width);
        match &item.planes {
            None => {
                let f16 = matches!(item.probs, ProbBuf::F16(_));
                let p = &item.probs;
                seg_key(
                    f16,
                    len,
                    |at, n| Ok(chunk_hash(p, at..at + n)),
                    labels,
                    h,
                    w,
                )
            }
            Some(src) if src.is_f16() => {
                let read = |at: usize, n: usize| {
                    let mut buf = vec![0u16; n];
                    src.read_f16(at, &mut buf)?;
                    Ok(raw_hash(&buf))
                };
                seg_key(true, len, read, labels, h, w)
            }
            Some(src) => {
                let read = |at: usize, n: usize| {
                    let mut buf = vec![0f32; n];
                    src.read_f32(at, &mut buf)?;
                    Ok(raw_hash(&buf))
                };
                seg_key(false, len, read, labels, h, w)
            }
        }
    }

    /// Read item `i` into `item`, reusing its buffers.
    fn read_item_into(&mut self, i: usize, item: &mut SegItem) -> Result<()> {
        let c = self.cfg.num_classes();
        let id = &self.manifest.ids[i];
        let clock = self.planes.clone();
        let (arr, start, h, w) = self.source.item(i, &self.manifest.ids[i])?;
        let planes = match &clock {
            Some(clock) => arr.planes(start, clock)?,
            None => None,
        };
        match planes {
            Some(p) => {
                item.planes = Some(Arc::new(p));
                match &mut item.probs {
                    ProbBuf::F32(v) => v.clear(),
                    ProbBuf::F16(v) => v.clear(),
                }
            }
            None => {
                item.planes = None;
                arr.read_probs_into(start, c * h * w, &mut item.probs)
                    .map_err(|e| e.item(id))?;
            }
        }
        let cell = self.manifest.rows.cell(i, self.mask_col).trim();
        item.unlabelled = cell.is_empty();
        if item.unlabelled {
            item.labels.clear();
            item.labels.resize(h * w, 0);
        } else {
            item.labels = match crate::io::inputs::given_mask(self.cfg, id, i, (h, w)) {
                Some(m) => m?,
                None => {
                    let mask_path = self.cfg.item_file(id, "mask", cell)?;
                    crate::io::mask::read_dataset_mask(self.cfg, &mask_path, id, (h, w))?
                }
            };
        }
        item.height = h;
        item.width = w;
        Ok(())
    }
}

/// Mixed into the score cache key of an unlabelled segmentation item.
const UNLABELLED_SALT: Key = 0x756e_6c61_6265_6c6c_6564_5f69_7465_6d00;

/// Segmentation items reused from the score cache in one batch, at most
/// (so a checkpoint's batches stay small when most items are reused).
const MAX_REUSED: usize = 256;

/// A segmentation batch: the items `start..end` read, of which those the
/// score cache does not hold are in `batch`; and spare items whose buffers
/// the next fill reuses.
struct SegSlot {
    start: usize,
    end: usize,
    batch: SegBatch,
    spare: Vec<SegItem>,
    /// The items in `batch`, and with a cache their keys.
    rows: Vec<usize>,
    keys: Vec<Key>,
    /// With a cache: the items it holds, with their entries.
    reused: Vec<(usize, SegEntry)>,
}

fn score_segmentation(
    run: Run<'_, '_>,
    prepare: &mut Prepare<'_>,
    timings: &mut Timings,
) -> Result<Scored> {
    let Run {
        cfg,
        opts,
        backend,
        mut checkpoint,
        cache,
    } = run;
    let (cache, mut recorder) = cache.unzip();
    let c = cfg.num_classes();
    let items_path = cfg
        .items
        .clone()
        .or_else(|| cfg.label_set.as_ref().map(|s| s.path.clone()))
        .or_else(|| cfg.memory.as_ref().map(|_| cfg.probs.clone()))
        .ok_or_else(|| Error::Usage("segmentation needs an items CSV".into()))?;
    let manifest = Manifest::of_dataset(cfg)?;
    if manifest.is_empty() {
        return Err(empty_dataset(&items_path));
    }
    let mask_col = manifest.column("mask").ok_or_else(|| {
        Error::input(&items_path, "segmentation needs a `mask` column").field("mask")
    })?;
    let source = crate::io::seg_probs::open(cfg, &manifest)?;
    prepare(&manifest)?;
    let n = manifest.len();
    let range = opts.shard.map_or(0..n, |s| s.range(n));
    let bar = progress_bar(range.len(), opts.progress);
    let mut stats = DatasetStats {
        preds: Some(PredMaps::new(opts.kept_maps)),
        ..DatasetStats::zeros(c, true)
    };
    let mut items: Vec<ItemResult> = Vec::with_capacity(range.len());
    let batch_bytes = opts.batch_size;
    let mut reader = SegReader {
        cfg,
        manifest: &manifest,
        mask_col,
        source,
        planes: backend.reads_planes().then(|| Arc::new(AtomicU64::new(0))),
        end: range.end,
    };
    let plane_clock = reader.planes.clone();
    let slot = || SegSlot {
        start: 0,
        end: 0,
        batch: SegBatch {
            items: Vec::new(),
            classes: c,
            ignore_index: cfg.ignore_index,
            logits: opts.logits,
        },
        spare: Vec::new(),
        rows: Vec::new(),
        keys: Vec::new(),
        reused: Vec::new(),
    };
    let mut next = resume(
        &mut checkpoint,
        recorder.as_deref_mut(),
        &range,
        &mut items,
        &mut stats,
        &bar,
    )?;
    let read = crate::io::stream::double_buffered(
        [slot(), slot()],
        |s: &mut SegSlot| {
            opts.control.check()?;
            reader.fill(s, &mut next, batch_bytes, cache)
        },
        |s: &mut SegSlot| {
            let batch = &s.batch;
            let t = Instant::now();
            let mut results = match batch.items.is_empty() {
                true => Vec::new(),
                false => backend.score_items(batch)?,
            };
            timings.score += t.elapsed();
            // With a checkpoint, the batch's sums are kept apart for it
            // first (the kept prediction maps stay with the run's).
            let mut delta = checkpoint.is_some().then(|| DatasetStats {
                preds: stats.preds.take(),
                ..DatasetStats::zeros(c, true)
            });
            let before = items.len();
            let sink = delta.as_mut().unwrap_or(&mut stats);
            // The reused and the scored items, in items order.
            let mut scored = s.rows.iter().zip(&batch.items).zip(results.iter_mut());
            let mut keys = s.keys.iter();
            let mut reused = s.reused.drain(..).peekable();
            loop {
                let upto = scored.next();
                let until = upto.as_ref().map_or(usize::MAX, |((i, _), _)| **i);
                while let Some((i, e)) = reused.next_if(|r| r.0 < until) {
                    e.add_to(sink);
                    items.push(ItemResult {
                        index: i,
                        ..e.item.clone()
                    });
                    if let Some(rec) = recorder.as_deref_mut() {
                        rec.seg(e, true);
                    }
                }
                let Some(((&i, item), st)) = upto else { break };
                fold_seg_item(cfg, &manifest, opts, i, item, st, sink, &mut items)?;
                if let (Some(rec), Some(key)) = (recorder.as_deref_mut(), keys.next()) {
                    let mut bins = crate::metrics::calibration::PooledBins::default();
                    bins.add(&st.bins);
                    let item = items
                        .last()
                        .cloned()
                        .ok_or_else(|| Error::Internal("a scored item left no result".into()))?;
                    rec.seg(
                        SegEntry {
                            key: *key,
                            item,
                            bins,
                            confusion: st.confusion.nonzero(),
                            bands: st.bands.clone(),
                        },
                        false,
                    );
                }
            }
            if let (Some(cp), Some(d)) = (checkpoint.as_deref_mut(), &mut delta) {
                stats.preds = d.preds.take();
                cp.append(s.start, s.end, &items[before..], d)?;
                stats.merge(d);
            }
            bar.inc((s.end - s.start) as u64);
            opts.control
                .progress(bar.position(), bar.length().unwrap_or(0));
            Ok(())
        },
    )?;
    timings.read += read;
    if let Some(clock) = plane_clock {
        // Reads done by the scoring threads (inside `score`).
        timings.read += Duration::from_nanos(clock.load(Ordering::Relaxed));
    }
    bar.finish_and_clear();

    Ok((manifest, items, stats))
}

/// Add one scored item to the run: an invalid pixel becomes the error (its
/// values read once more when they stayed in the file), otherwise its sums
/// are pooled into `stats`, its prediction map offered to the kept maps, and
/// its result pushed to `items`.
#[allow(clippy::too_many_arguments)]
fn fold_seg_item(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    opts: &ScoreOptions,
    index: usize,
    item: &SegItem,
    st: &mut SegItemStats,
    stats: &mut DatasetStats,
    items: &mut Vec<ItemResult>,
) -> Result<()> {
    let c = cfg.num_classes();
    if let Some(px) = st.first_invalid {
        let hw = item.height * item.width;
        let file = match &cfg.probs {
            _ if crate::io::inputs::probs_dir(cfg) => cfg.item_probs(&manifest.ids[index])?,
            p => p.clone(),
        };
        // The pixel's values: from the batch, or read once more.
        let (values, px_at, stride) = match &item.planes {
            Some(src) => (pixel_values(src.as_ref(), px, hw, c)?, 0, 1),
            None => (item.probs.clone(), px, hw),
        };
        return Err(diagnose(
            &values,
            px_at,
            stride,
            c,
            opts.logits,
            &file,
            &manifest.ids[index],
            Some((px % item.width, px / item.width)),
        ));
    }
    if item.unlabelled {
        items.push(unlabelled_seg_item(index, item, st));
        return Ok(());
    }
    stats.bins.add(&st.bins);
    stats.confusion.merge(&st.confusion);
    if let Some(b) = &mut stats.bands {
        b.add(&st.bands);
    }
    let (scores, f) = seg_item_scores(st);
    let prio = priority::priority(&scores, opts.rank_by);
    if let (Some(kept), Some(map)) = (&mut stats.preds, st.pred.take()) {
        kept.offer(prio, index, item.height, item.width, map);
    }
    items.push(ItemResult {
        index,
        priority: 0.0,
        scores,
        row: None,
        cluster: None,
        class: f.worst_class.map(|w| w.0 as u32),
        consensus: None,
        unlabelled: false,
        extra: ItemExtra {
            label_set: (0..c)
                .filter(|&k| st.confusion.label_count(k) > 0)
                .map(|k| k as u32)
                .collect(),
            dims: Some((item.height, item.width)),
            confused: f
                .worst_class
                .and_then(|w| st.confusion.largest_confusion(w.0))
                .map(|(a, p, n)| crate::records::Confused {
                    annotated: a as u32,
                    predicted: p as u32,
                    pixels: n,
                }),
            seg_facts: Some(f),
            ..ItemExtra::default()
        }
        .boxed(),
    });
    Ok(())
}

/// The result of an unlabelled segmentation item (scored with
/// [`SegItem::unlabelled`]): the per-pixel means of the per-sample
/// scores that need no label, the softmin of the per-pixel margin
/// (`margin_softmin`), and nothing that needs a label. Its stratification
/// class is the rarest class its prediction contains (the prediction's
/// pixel counts are the diagonal of its confusion); its priority is 0.
fn unlabelled_seg_item(index: usize, item: &SegItem, st: &SegItemStats) -> ItemResult {
    let c = st.confusion.classes();
    let rarest = (0..c)
        .map(|k| (st.confusion.pred_count(k), k))
        .filter(|&(p, _)| p > 0)
        .min()
        .map(|(_, k)| k as u32);
    let scores = unlabelled_seg_item_scores(st);
    ItemResult {
        index,
        priority: 0.0,
        scores,
        row: None,
        cluster: None,
        class: rarest,
        consensus: None,
        unlabelled: true,
        extra: ItemExtra {
            dims: Some((item.height, item.width)),
            ..ItemExtra::default()
        }
        .boxed(),
    }
}

/// Turn a backend's sums and counts for an unlabelled item (scored with
/// [`SegItem::unlabelled`]) into its reported scores: the per-pixel means
/// of the per-sample scores that need no label, and the softmin of the
/// per-pixel margin (`margin_softmin`, which the normalised-margin softmin
/// holds for such an item).
pub fn unlabelled_seg_item_scores(st: &SegItemStats) -> ItemScores {
    let mut scores = ItemScores::segmentation(st.pixels);
    scores.set_sample_means(&st.sums, st.pixels, false);
    scores.set(Score::MarginSoftmin, st.softmin_normalized_margin.value());
    scores
}

/// Turn a backend's sums and counts into the item's reported scores.
pub fn seg_item_scores(st: &SegItemStats) -> (ItemScores, SegFacts) {
    let n = st.pixels as f64;
    let mean = |s: f64| (st.pixels > 0).then(|| s / n);
    let c = st.confusion.classes();
    let worst_class = (0..c)
        .filter_map(|k| st.confusion.iou(k).map(|v| (k, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, v)| {
            (
                k,
                v,
                st.confusion.label_count(k),
                st.confusion.pred_count(k),
            )
        });
    let mut scores = ItemScores::segmentation(st.pixels);
    scores.set_sample_means(&st.sums, st.pixels, true);
    for (score, v) in [
        (Score::Ece, st.bins.ece()),
        (Score::Miou, st.confusion.mean_iou()),
        (Score::Dice, st.confusion.mean_dice()),
        (Score::BoundaryIou, st.bands.mean_iou()),
        (Score::PixelAccuracy, mean(st.confusion.correct() as f64)),
        (
            Score::SelfConfidenceSoftmin,
            st.softmin_self_confidence.value(),
        ),
        (
            Score::NormalizedMarginSoftmin,
            st.softmin_normalized_margin.value(),
        ),
    ] {
        scores.set(score, v);
    }
    let areas = (0..c)
        .map(|k| {
            (
                k as u32,
                st.confusion.label_count(k),
                st.confusion.pred_count(k),
            )
        })
        .filter(|&(_, a, p)| a + p > 0)
        .collect();
    (scores, SegFacts { worst_class, areas })
}
