//! `triage run`: read a dataset, score it ([`crate::score`], streaming in
//! bounded memory), find neighbours, run the checks, order by priority,
//! plan the queue, write: data flows one way through these stages.
//!
use std::path::PathBuf;
use std::time::Instant;

use crate::backend::{self, BackendKind};
use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::model::{ItemResult, Timings};
use crate::output::{self, Report};

pub use crate::score::DEFAULT_BATCH_BYTES;

/// Options of one run, after validation.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dataset: PathBuf,
    pub out: PathBuf,
    pub backend: BackendKind,
    /// On a GPU failure mid-run, log a warning and finish on the CPU.
    pub gpu_fallback: bool,
    /// Bytes of probabilities per batch (as stored); a batch holds at least
    /// one item (segmentation) or one row (classification).
    pub batch_size: usize,
    /// Write only the first K queue rows (the report covers every item).
    pub top: Option<usize>,
    /// The probabilities are logits: apply a softmax first.
    pub logits: bool,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Near-duplicate and kNN settings (used when the dataset has embeddings).
    pub neighbors: crate::neighbors::stage::NeighborOptions,
    /// Budget, de-duplication, stratification, spot checks, `--previous`.
    pub queue: crate::queue::QueueOptions,
}

impl RunOptions {
    /// Defaults for `dataset` → `out`.
    pub fn new(dataset: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        RunOptions {
            dataset: dataset.into(),
            out: out.into(),
            backend: BackendKind::Auto,
            gpu_fallback: false,
            batch_size: DEFAULT_BATCH_BYTES,
            top: None,
            logits: false,
            progress: false,
            neighbors: Default::default(),
            queue: Default::default(),
        }
    }

    /// Check every option on its own (those that need the dataset, such as
    /// `--min-per-class` against the class count, are checked once it is
    /// read, still before the first batch): the batch size, `--top`, the
    /// neighbour options ([`NeighborOptions::validate`]) and the queue
    /// policy ([`crate::queue::policy::Policy::validate`]).
    ///
    /// [`NeighborOptions::validate`]: crate::neighbors::stage::NeighborOptions::validate
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Usage("--batch-size must be at least 1".into()));
        }
        if self.top == Some(0) {
            return Err(Error::Usage("--top must be at least 1".into()));
        }
        self.neighbors.validate()?;
        self.queue.policy.validate()
    }

    /// The options as `report.json` records them.
    pub fn recorded(&self) -> crate::schema::Options {
        let pol = &self.queue.policy;
        crate::schema::Options {
            dataset: self.dataset.clone(),
            batch_size: self.batch_size,
            top: self.top,
            logits: self.logits,
            backend: match self.backend {
                BackendKind::Cpu => "cpu",
                BackendKind::Gpu => "gpu",
                BackendKind::Auto => "auto",
            }
            .into(),
            gpu_fallback: if self.gpu_fallback { "cpu" } else { "fail" }.into(),
            budget: pol.budget,
            dedup: pol.dedup,
            min_per_class: pol.min_per_class,
            spot_check: pol.spot_check,
            seed: pol.seed,
            review_all_from: pol.review_all_from.clone(),
            previous: self.queue.previous.clone(),
        }
    }
}

/// What a finished run reports back.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub n_items: usize,
    pub files: Vec<PathBuf>,
    pub backend: String,
    /// Every stage's wall-clock time.
    pub timings: Timings,
}

/// Run the whole job: score every item and write the queue and the report.
pub fn run(opts: &RunOptions) -> Result<RunSummary> {
    let t0 = Instant::now();
    opts.validate()?;
    let cfg = DatasetConfig::load(&opts.dataset)?;
    let backend = backend::select(opts.backend, opts.gpu_fallback)?;
    let mut timings = Timings::default();
    // Everything after scoring that can fail on user input is checked and
    // read once the items are known, before the first batch is scored.
    let mut queue_inputs = None;
    let mut prepare = |m: &Manifest| -> Result<()> {
        if let Some(path) = &cfg.embeddings {
            crate::neighbors::stage::check(&cfg, m, path, &opts.neighbors)?;
        }
        queue_inputs = Some(crate::queue::prepare(&cfg, m, &opts.queue)?);
        Ok(())
    };
    let score_opts = crate::score::ScoreOptions {
        batch_size: opts.batch_size,
        logits: opts.logits,
        progress: opts.progress,
        kept_maps: crate::report::MAX_OVERLAYS,
    };
    let (manifest, items, stats) = crate::score::score(
        &cfg,
        &score_opts,
        backend.as_ref(),
        &mut prepare,
        &mut timings,
    )?;
    let queue_inputs = queue_inputs.expect("the score stage runs `prepare` before its first batch");
    let mut items = items;
    let mut stats = stats;
    let mut extras = output::Extras {
        deterministic: opts.neighbors.deterministic,
        preds: stats.preds.take(),
        ..Default::default()
    };
    let neighbor_summary = match &cfg.embeddings {
        Some(path) => {
            let t = Instant::now();
            let s = crate::neighbors::stage::apply(
                &cfg,
                &manifest,
                &mut items,
                path,
                &opts.neighbors,
                backend.as_ref(),
            )?;
            timings.neighbors = Some(t.elapsed());
            Some(s)
        }
        None => None,
    };
    let t_queue = Instant::now();
    items = by_priority(items);
    let checks = crate::checks::run(&crate::checks::Inputs {
        cfg: &cfg,
        manifest: &manifest,
        items: &items,
        neighbors: neighbor_summary.as_ref().map(|s| &s.result),
    });
    let plan = crate::queue::plan(&cfg, &manifest, &items, &opts.queue, queue_inputs, &checks)?;
    timings.queue = t_queue.elapsed();
    let t_report = Instant::now();
    let info = backend.info();
    let report = Report::build(
        &cfg,
        &items,
        &stats,
        output::Sections {
            options: opts.recorded(),
            backend: &info,
            duplicates: neighbor_summary.as_ref().map(|s| s.duplicates.clone()),
            plan: &plan,
            checks: crate::checks::section(&checks),
        },
    );
    timings.report = t_report.elapsed();
    if let Some(s) = &neighbor_summary {
        extras.clusters = Some(crate::neighbors::stage::cluster_rows(
            &cfg, &manifest, &items, &s.result,
        ));
    }
    let files = output::write_all(
        &opts.out,
        &cfg,
        &manifest,
        &items,
        &plan,
        &crate::checks::reasons(&checks),
        opts.top,
        report,
        extras,
        &mut timings,
        t0,
    )?;
    timings.total = t0.elapsed();
    Ok(RunSummary {
        n_items: items.len(),
        files,
        backend: backend.info().name,
        timings,
    })
}

/// The items in queue order: priority descending, ties by row. Sorts 16-byte
/// keys and moves each (large) item once, instead of moving items
/// O(N log N) times inside the sort.
fn by_priority(mut items: Vec<ItemResult>) -> Vec<ItemResult> {
    let mut keys: Vec<(f64, usize, usize)> = items
        .iter()
        .enumerate()
        .map(|(pos, it)| (it.priority, it.index, pos))
        .collect();
    keys.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    // Apply the permutation in place, cycle by cycle (`src[i]` is the
    // position whose item belongs at `i`), so the items are never held twice.
    let mut src: Vec<usize> = keys.into_iter().map(|(_, _, pos)| pos).collect();
    for start in 0..src.len() {
        let mut i = start;
        while src[i] != start {
            let j = src[i];
            items.swap(i, j);
            src[i] = i;
            i = j;
        }
        src[i] = i;
    }
    items
}
