//! `triage run`: read a dataset, score it ([`crate::score`], streaming in
//! bounded memory), find neighbours, run the checks, order by priority,
//! plan the queue, write: data flows one way through these stages.
//!
//! The caller's [`RunOptions`] are resolved completely before the first
//! stage after scoring (for `triage merge`, the score options come from the
//! partials then), and those stages take one run context (`Run`: the
//! resolved options, the dataset and its manifest, the backend, the start
//! instant and the timings) instead of long parameter lists.
use std::path::PathBuf;
use std::time::Instant;

use crate::backend::{self, BackendKind};
use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::output::{self, Report};
use crate::records::{ItemResult, Timings};
use crate::scores::Score;

pub use crate::score::DEFAULT_BATCH_BYTES;

/// Options of one run, as the caller gives them (the CLI's flags, the
/// Python API), checked by [`RunOptions::validate`]. A run resolves them
/// into its context before the stages after scoring read them: for
/// [`merge`], the score options are replaced by the partials'.
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
    /// What the priority ranks by (`--rank-by`): the task's default or one
    /// label-quality score ([`crate::priority::RankBy`]).
    pub rank_by: crate::priority::RankBy,
    /// Near-duplicate and kNN settings (used when the dataset has embeddings).
    pub neighbors: crate::neighbors::stage::NeighborOptions,
    /// `--checks`: run exactly these checks (names of
    /// [`crate::checks::registry`]), the others skipped as "not selected";
    /// `None`: every check on by default ([`crate::checks::Check::by_default`]).
    pub checks: Option<Vec<String>>,
    /// Budget, de-duplication, stratification, spot checks, `--previous`.
    pub queue: crate::queue::QueueOptions,
    /// Score only this shard and write its partial (`--shard I/N`).
    pub shard: Option<crate::records::Shard>,
    /// Keep a checkpoint in `out` and continue from it (`--resume`).
    pub resume: bool,
    /// Reuse the rows of unchanged items from this score cache and leave
    /// this run's there (`--cache`, [`crate::score::cache`]).
    pub cache: Option<PathBuf>,
    /// Annotators whose kappa with the consensus is under this are listed
    /// in `agreement.below_threshold` (`--min-annotator-kappa`).
    pub min_annotator_kappa: f64,
    /// Segmentation: annotators whose mIoU with the others is under this
    /// are listed there (`--min-annotator-iou`).
    pub min_annotator_iou: f64,
    /// What to label next among the unlabelled items (`--label-budget`,
    /// `--label-strategy`; `--min-per-class` and `--seed` are the queue's).
    pub label: crate::queue::selection::SelectOptions,
    /// How `annotated_at` groups items into batches without a `batch`
    /// column (`--drift-window`; default: a day).
    pub drift_window: Option<crate::io::campaign::Window>,
    /// Earlier runs' reports, night over night (`--history`,
    /// [`crate::io::history`]): read before the first batch, written to
    /// `report.json` `history` with this run's figures last.
    pub history: Option<PathBuf>,
    /// Stop and progress hooks for a caller that is not the CLI (the
    /// Python API): a set cancel flag stops the run before its next batch
    /// or stage with [`Error::Cancelled`], and nothing is written.
    pub control: crate::records::Control,
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
            rank_by: Default::default(),
            neighbors: Default::default(),
            checks: None,
            queue: Default::default(),
            shard: None,
            resume: false,
            cache: None,
            min_annotator_kappa: crate::agreement::DEFAULT_MIN_ANNOTATOR_KAPPA,
            min_annotator_iou: crate::agreement::DEFAULT_MIN_ANNOTATOR_IOU,
            label: Default::default(),
            drift_window: None,
            history: None,
            control: Default::default(),
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
        if let Some(names) = &self.checks {
            crate::checks::validate_selection(names)?;
        }
        if self.label.budget == Some(0) {
            return Err(Error::Usage("--label-budget must be at least 1".into()));
        }
        if !(-1.0..=1.0).contains(&self.min_annotator_kappa) {
            return Err(Error::Usage(
                "--min-annotator-kappa must be in [-1, 1]".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_annotator_iou) {
            return Err(Error::Usage("--min-annotator-iou must be in [0, 1]".into()));
        }
        self.neighbors.validate()?;
        let pol = &self.queue.policy;
        if self.label.budget.is_some() && pol.budget.is_none() && pol.spot_check == 0.0 {
            // --min-per-class shares out the labelling batch alone.
            let mut p = pol.clone();
            p.min_per_class = 0.0;
            return p.validate();
        }
        pol.validate()
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
            history: self.history.clone(),
            rank_by: self.rank_by.name().into(),
            queue_rows: (self.queue.rows != crate::queue::QueueRows::All)
                .then(|| self.queue.rows.name().into()),
            checks: self.checks.clone(),
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
    /// With `--cache`: the items reused and scored.
    pub score_cache: Option<crate::schema::ScoreCache>,
}

/// Run the whole job: score every item and write the queue and the report;
/// with [`RunOptions::shard`], score the shard's items and write its
/// partial ([`crate::score::partial`]) instead.
///
/// `opts.dataset` may name the dataset's `triage.toml` rather than its
/// directory ([`crate::config::dataset_dir`]); the run records the
/// directory.
pub fn run(opts: &RunOptions) -> Result<RunSummary> {
    opts.validate()?;
    let cfg = crate::io::load_dataset(&opts.dataset)?;
    if cfg.dir != opts.dataset {
        let opts = RunOptions {
            dataset: cfg.dir.clone(),
            ..opts.clone()
        };
        return run_config(&cfg, &opts);
    }
    run_config(&cfg, opts)
}

/// One run's context: what every stage after scoring reads, built once per
/// [`run_config`] (when the score stage has listed and scored the items) or
/// [`merge`] (when the partials are read and checked), and handed to the
/// stages ([`assemble`], [`write_partial`], [`keep_cache`]) in place of
/// loose parameters.
///
/// Its options are resolved completely before it is built: a stage reads
/// options from [`Run::opts`] only, never from the caller's [`RunOptions`]
/// or from the partials, and never chooses between two sets of them.
struct Run {
    /// The options the run goes by: the caller's, except that a merge's
    /// score options (dataset, batch size, logits, backend, GPU fallback)
    /// are the ones its partials recorded ([`merged_options`]).
    /// `opts.recorded()` is `report.json`'s `options` section.
    opts: RunOptions,
    /// The dataset, as read (or given in memory).
    cfg: DatasetConfig,
    /// Its items, in row order.
    manifest: Manifest,
    /// The backend this process computes on, selected from the flags given
    /// to this command (for a merge: the merge's own `--backend`, on which
    /// its agreement and neighbour stages run; what the shards scored on is
    /// [`Run::scored_on`]).
    backend: Box<dyn crate::backend::Backend>,
    /// A merge: the backend the shards scored on, as they recorded it.
    /// `None`: this run scored on [`Run::backend`].
    scored_on: Option<crate::backend::BackendInfo>,
    /// When the run started (the `total` of [`Run::timings`] counts from it).
    start: Instant,
    /// Every stage's wall-clock time, filled in by the stages as they run.
    timings: Timings,
}

impl Run {
    /// The backend `report.json` and the summary name: the one the items
    /// were scored on. For a merge, the shards' (they recorded it); else
    /// this run's, read when asked, so that a fallback to the CPU during the
    /// run shows.
    fn backend_info(&self) -> crate::backend::BackendInfo {
        match &self.scored_on {
            Some(info) => info.clone(),
            None => self.backend.info(),
        }
    }
}

/// What the score stage (or a merge's reading of the partials) hands to the
/// stages after it, beside the [`Run`].
struct Scored {
    /// In items order.
    items: Vec<ItemResult>,
    stats: crate::records::DatasetStats,
    /// The queue's inputs (`--previous`, review decisions), read and checked.
    queue_inputs: crate::queue::QueueInputs,
    /// `score_cache`, with `--cache` (a merge: the shards' summed).
    score_cache: Option<crate::schema::ScoreCache>,
    /// `[inputs] annotations`, read and checked.
    annotations: Option<crate::io::annotations::Annotations>,
    /// The campaign's batches, with a time column in items.csv.
    campaign: Option<crate::io::campaign::Campaign>,
    /// `--history`: the earlier nights, read and checked.
    history: Option<Vec<crate::io::history::Night>>,
}

/// [`run`] on a dataset already described: read from its directory, or
/// given in memory ([`DatasetConfig::in_memory`]; such a run takes no
/// `--shard`, `--resume` or `--cache`, which key on the dataset's files).
/// `opts.dataset` is only recorded.
pub fn run_config(cfg: &DatasetConfig, opts: &RunOptions) -> Result<RunSummary> {
    let start = Instant::now();
    opts.validate()?;
    if cfg.memory.is_some() {
        let refused = [
            (opts.shard.is_some(), "--shard"),
            (opts.resume, "--resume"),
            (opts.cache.is_some(), "--cache"),
        ];
        if let Some((_, flag)) = refused.iter().find(|(on, _)| *on) {
            return Err(Error::Usage(format!(
                "{flag} works on a dataset directory (its files are the key), not on arrays in \
                 memory: save the arrays with a triage.toml and run that directory"
            )));
        }
    }
    let cfg = cfg.clone();
    prepare_out(opts, &cfg)?;
    opts.rank_by.check(cfg.task).map_err(Error::Usage)?;
    let backend = backend::select(opts.backend, opts.gpu_fallback)?;
    let mut timings = Timings::default();
    // Everything after scoring that can fail on user input is checked and
    // read once the items are known, before the first batch is scored.
    let mut queue_inputs = None;
    let mut annotations = None;
    let mut campaign = None;
    let mut history = None;
    let mut prepare = |m: &Manifest| -> Result<()> {
        crate::neighbors::stage::check_images(&cfg, m)?;
        if let Some(path) = &cfg.embeddings {
            crate::neighbors::stage::check(&cfg, m, path)?;
        }
        annotations = crate::agreement::load(&cfg, m)?;
        campaign = load_campaign(&cfg, m, opts.drift_window, annotations.as_ref())?;
        queue_inputs = Some(crate::queue::prepare(&cfg, m, &opts.queue)?);
        if opts.shard.is_none() {
            history = load_history(opts)?;
        }
        Ok(())
    };
    let score_opts = crate::score::ScoreOptions {
        batch_size: opts.batch_size,
        logits: opts.logits,
        progress: opts.progress,
        kept_maps: crate::report::MAX_OVERLAYS,
        rank_by: opts.rank_by,
        control: opts.control.clone(),
        shard: opts.shard,
    };
    let mut checkpoint = match opts.resume {
        true => Some(crate::score::checkpoint::Checkpoint::open(
            &opts.out,
            &crate::score::partial::fingerprint(&cfg, &opts.recorded())?,
            opts.shard,
            cfg.num_classes(),
            cfg.task == crate::config::Task::Segmentation,
        )?),
        false => None,
    };
    let cache_fingerprint = crate::score::cache::fingerprint(&cfg, opts.logits, &backend.info());
    let cache = opts.cache.as_ref().map(|dir| {
        crate::score::cache::Cache::load(dir, &cache_fingerprint, cfg.task, cfg.num_classes())
    });
    let mut recorder = crate::score::cache::Recorder::default();
    let (manifest, items, stats) = crate::score::score(
        &cfg,
        &score_opts,
        backend.as_ref(),
        &mut prepare,
        &mut timings,
        checkpoint.as_mut(),
        cache.as_ref().map(|c| (c, &mut recorder)),
    )?;
    let queue_inputs = queue_inputs.ok_or_else(|| {
        Error::Internal("the score stage returned without preparing the later stages".into())
    })?;
    let scored = Scored {
        items,
        stats,
        queue_inputs,
        score_cache: opts.cache.as_ref().map(|_| crate::schema::ScoreCache {
            reused: recorder.reused,
            scored: recorder.scored,
        }),
        annotations,
        campaign,
        history,
    };
    let mut run = Run {
        opts: opts.clone(),
        cfg,
        manifest,
        backend,
        scored_on: None,
        start,
        timings,
    };
    let mut summary = match opts.shard {
        Some(shard) => write_partial(&mut run, shard, scored)?,
        None => assemble(&mut run, scored)?,
    };
    if let Some(cp) = checkpoint {
        cp.remove()?;
    }
    // This run's entries go to the cache once its outputs are in place.
    keep_cache(&run, &recorder, &cache_fingerprint, &mut summary.files);
    Ok(summary)
}

/// `--shard`: write the shard's partial ([`crate::score::partial`]) to
/// `run.opts.out`, recording the run's options and the backend it scored on.
fn write_partial(
    run: &mut Run,
    shard: crate::records::Shard,
    scored: Scored,
) -> Result<RunSummary> {
    let options = run.opts.recorded();
    let backend = run.backend_info();
    let header = crate::score::partial::Header {
        format: crate::score::partial::FORMAT.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        fingerprint: crate::score::partial::fingerprint(&run.cfg, &options)?,
        shard,
        n_items: run.manifest.len(),
        items: scored.items.len(),
        options,
        backend: backend.clone(),
        stats: scored.stats,
        score_cache: scored.score_cache,
    };
    let files = crate::score::partial::write(&run.opts.out, &header, &scored.items)?;
    run.timings.total = run.start.elapsed();
    Ok(RunSummary {
        n_items: scored.items.len(),
        files,
        backend: backend.name,
        timings: run.timings.clone(),
        score_cache: scored.score_cache,
    })
}

/// With `--cache`: write this run's entries to the cache (`recorder`'s,
/// keyed by `fingerprint`) and add the file to `files`; call it once the
/// run's outputs are in place. The cache is left as it was when the run
/// fell back to the CPU, and a failed write is a warning: the outputs are
/// already written.
fn keep_cache(
    run: &Run,
    recorder: &crate::score::cache::Recorder,
    fingerprint: &str,
    files: &mut Vec<PathBuf>,
) {
    let Some(dir) = &run.opts.cache else { return };
    if let Some(why) = run.backend.info().fallback {
        eprintln!(
            "triage: the score cache is left as it was: the run fell back to the CPU ({why})"
        );
        return;
    }
    match recorder.write(dir, run.opts.shard, fingerprint, run.cfg.task) {
        Ok(path) => files.push(path),
        Err(e) => eprintln!("triage: warning: the score cache was not written: {e}"),
    }
}

/// Combine the partials `parts` of one dataset (every shard once, in any
/// order) and write what a single `triage run` of it writes, under `opts`'
/// queue, neighbour and output options (its score options come from the
/// partials, resolved before assembling: `report.json`'s `options` is
/// what a single run with the shards' options records; score-only options
/// such as `--cache` and `--resume` are the shards' and are not used here).
/// Its agreement and neighbour stages run on the backend `opts` selects;
/// `report.json` names the one the shards scored on. Everything is checked
/// before anything is written: a missing or repeated shard, partials of
/// other inputs, options or versions, or a dataset changed since, are
/// errors.
pub fn merge(parts: &[PathBuf], opts: &RunOptions) -> Result<RunSummary> {
    let start = Instant::now();
    opts.validate()?;
    if opts.shard.is_some() {
        return Err(Error::Usage("`triage merge` takes no --shard".into()));
    }

    let opened = parts
        .iter()
        .map(|p| crate::score::partial::open(p))
        .collect::<Result<Vec<_>>>()?;
    let Some(first) = opened.first() else {
        return Err(Error::Usage(
            "`triage merge` needs at least one partial".into(),
        ));
    };
    let h0 = first.header.clone();
    let first_path = first.path.clone();
    let cfg = crate::io::load_dataset(&h0.options.dataset)?;
    prepare_out(opts, &cfg)?;
    let now = crate::score::partial::fingerprint(&cfg, &h0.options)?;
    check_partials(&opened)?;
    if now != h0.fingerprint {
        return Err(Error::input(
            &cfg.dir,
            format!(
                "the dataset changed since its shards were scored (fingerprint {now}, partials {})",
                h0.fingerprint
            ),
        ));
    }
    // The options are resolved here, before any stage: the shards' score
    // options with this merge's queue, neighbour and output options.
    let resolved = merged_options(opts, &h0.options, &first_path)?;
    let manifest = Manifest::of_dataset(&cfg)?;
    if manifest.len() != h0.n_items {
        return Err(Error::input(
            &cfg.dir,
            format!("{} items now, {} when scored", manifest.len(), h0.n_items),
        ));
    }
    crate::neighbors::stage::check_images(&cfg, &manifest)?;
    if let Some(path) = &cfg.embeddings {
        crate::neighbors::stage::check(&cfg, &manifest, path)?;
    }
    let annotations = crate::agreement::load(&cfg, &manifest)?;
    let campaign = load_campaign(&cfg, &manifest, opts.drift_window, annotations.as_ref())?;
    opts.rank_by.check(cfg.task).map_err(Error::Usage)?;
    let queue_inputs = crate::queue::prepare(&cfg, &manifest, &opts.queue)?;
    let history = load_history(opts)?;
    let mut opened = opened;
    opened.sort_by_key(|o| o.header.shard.index);
    let mut items = Vec::with_capacity(h0.n_items);
    let mut stats = crate::records::DatasetStats::zeros(
        cfg.num_classes(),
        cfg.task == crate::config::Task::Segmentation,
    );
    let mut timings = Timings::default();
    let t_read = Instant::now();
    let mut score_cache: Option<crate::schema::ScoreCache> = None;
    let dims = crate::records::RunDims {
        classes: cfg.num_classes(),
        segmentation: cfg.task == crate::config::Task::Segmentation,
    };
    let mut tally = crate::records::Tally::default();
    for o in opened {
        if let Some(c) = &o.header.score_cache {
            score_cache.get_or_insert_default().add(c);
        }
        items.extend(o.items(dims, &mut stats, &mut tally)?);
    }
    timings.read = t_read.elapsed();
    if items.len() != h0.n_items || items.iter().enumerate().any(|(i, it)| it.index != i) {
        return Err(Error::input(
            &first_path,
            "the partials' items do not cover the dataset once, in order",
        ));
    }
    // This process's engine, from the merge's own flags (see `Run::backend`).
    let backend = backend::select(opts.backend, opts.gpu_fallback)?;
    let mut run = Run {
        opts: resolved,
        cfg,
        manifest,
        backend,
        scored_on: Some(h0.backend),
        start,
        timings,
    };
    let scored = Scored {
        items,
        stats,
        queue_inputs,
        score_cache,
        annotations,
        campaign,
        history,
    };
    assemble(&mut run, scored)
}

/// A merge's options, resolved: `opts` (the merge's queue, neighbour and
/// output options) with the score options — dataset, batch size, logits,
/// backend and GPU fallback — that the shards recorded (`recorded`, read
/// from the partial `from`). Its [`RunOptions::recorded`] is what a single
/// run of the dataset with the shards' options records.
fn merged_options(
    opts: &RunOptions,
    recorded: &crate::schema::Options,
    from: &std::path::Path,
) -> Result<RunOptions> {
    let backend = match recorded.backend.as_str() {
        "cpu" => BackendKind::Cpu,
        "gpu" => BackendKind::Gpu,
        "auto" => BackendKind::Auto,
        other => {
            return Err(Error::input(
                from,
                format!("unknown backend {other:?} in the partial's options"),
            ));
        }
    };
    let gpu_fallback = match recorded.gpu_fallback.as_str() {
        "cpu" => true,
        "fail" => false,
        other => {
            return Err(Error::input(
                from,
                format!("unknown GPU fallback {other:?} in the partial's options"),
            ));
        }
    };
    Ok(RunOptions {
        dataset: recorded.dataset.clone(),
        batch_size: recorded.batch_size,
        logits: recorded.logits,
        backend,
        gpu_fallback,
        ..opts.clone()
    })
}

/// Before anything is scored: refuse an `--out` that is or holds an input
/// ([`output::check_out`]), and finish or undo the commits of killed runs
/// and remove their temp files there and in `--cache`
/// ([`crate::io::atomic::clean`]).
fn prepare_out(opts: &RunOptions, cfg: &DatasetConfig) -> Result<()> {
    output::check_out(&opts.out, cfg)?;
    crate::io::atomic::clean(&opts.out)?;
    if let Some(dir) = &opts.cache {
        crate::io::atomic::clean(dir)?;
    }
    Ok(())
}

/// The campaign of the items `m` (their `batch` and `annotated_at`
/// columns, [`crate::io::campaign::load`]), named after the items CSV,
/// with the rows of `annotations` placed by their own time columns
/// ([`crate::io::campaign::Campaign::place_annotations`]).
fn load_campaign(
    cfg: &DatasetConfig,
    m: &Manifest,
    window: Option<crate::io::campaign::Window>,
    annotations: Option<&crate::io::annotations::Annotations>,
) -> Result<Option<crate::io::campaign::Campaign>> {
    let path = cfg.items.clone().unwrap_or_else(|| cfg.dir.clone());
    let mut campaign = crate::io::campaign::load(&path, m, window)?;
    if let (Some(c), Some(ann)) = (&mut campaign, annotations) {
        c.place_annotations(ann)?;
    }
    Ok(campaign)
}

/// `--history`'s earlier nights ([`crate::io::history::load`]), leaving
/// out this run's own `report.json` (about to be replaced) when the
/// directory holds it.
fn load_history(opts: &RunOptions) -> Result<Option<Vec<crate::io::history::Night>>> {
    let Some(dir) = &opts.history else {
        return Ok(None);
    };
    let own = opts.out.join("report.json");
    crate::io::history::load(dir, Some(&own)).map(Some)
}

/// The partials are one run's (same version, fingerprint and shard count)
/// and hold every shard exactly once.
fn check_partials(opened: &[crate::score::partial::Opened]) -> Result<()> {
    let Some(first) = opened.first() else {
        return Err(Error::Usage(
            "`triage merge` needs at least one partial".into(),
        ));
    };
    let h0 = &first.header;
    // Sized by the partials given, not by a count read from them.
    let mut by_index: std::collections::HashMap<usize, &PathBuf> = Default::default();
    for o in opened {
        let h = &o.header;
        if h.version != h0.version
            || h.fingerprint != h0.fingerprint
            || h.shard.count != h0.shard.count
            || h.n_items != h0.n_items
        {
            return Err(Error::input(
                &o.path,
                format!(
                    "from other inputs, options or version than {} (triage {} vs {}, fingerprint {} vs {}, {} vs {} shards)",
                    first.path.display(),
                    h.version,
                    h0.version,
                    h.fingerprint,
                    h0.fingerprint,
                    h.shard.count,
                    h0.shard.count
                ),
            ));
        }
        if let Some(other) = by_index.insert(h.shard.index, &o.path) {
            return Err(Error::input(
                &o.path,
                format!(
                    "shard {}/{} is given twice (also {})",
                    h.shard.index,
                    h.shard.count,
                    other.display()
                ),
            ));
        }
    }
    // Each index is below the count (checked when opened): one is missing
    // unless there are `count` of them, and then the first missing one is
    // at most their number.
    if let Some(missing) = (0..h0.shard.count).find(|i| !by_index.contains_key(i)) {
        return Err(Error::Usage(format!(
            "shard {missing}/{} is missing: give every shard's partial",
            h0.shard.count
        )));
    }
    Ok(())
}

/// Everything after scoring: reasons, agreement, neighbours, the checks
/// (on the labelled items in row order), then each item's priority, once
/// ([`assign_priority`]), the priority order, the queue, and the outputs
/// in `run.opts.out`. Reads its options from `run.opts` alone (resolved
/// before: `report.json`'s `options` is `run.opts.recorded()`) and names
/// the backend the items were scored on ([`Run::backend_info`]); fills in
/// `run.timings`.
fn assemble(run: &mut Run, s: Scored) -> Result<RunSummary> {
    let (opts, cfg, manifest) = (&run.opts, &run.cfg, &run.manifest);
    let backend = run.backend.as_ref();
    let mut items = s.items;
    let mut stats = s.stats;
    crate::checks::label_quality::explain_segmentation(&mut items, &cfg.class_names);
    let mut extras = output::Extras {
        control: opts.control.clone(),
        deterministic: opts.neighbors.deterministic,
        preds: stats.preds.take(),
        ..Default::default()
    };
    use crate::schema::AgreementSection;
    let (agreement, annotator_pairs) = match (&s.annotations, cfg.task) {
        (Some(ann), crate::config::Task::Classification) => (
            Some(AgreementSection::Classification(crate::agreement::apply(
                cfg,
                ann,
                &mut items,
                opts.min_annotator_kappa,
            ))),
            None,
        ),
        (Some(ann), crate::config::Task::Segmentation) => {
            let (section, pairs) = crate::agreement::apply_segmentation(
                cfg,
                manifest,
                ann,
                &mut items,
                backend,
                opts.min_annotator_iou,
            )?;
            extras.annotator_items = lowest_agreement(ann, &items);
            (Some(AgreementSection::Segmentation(section)), Some(pairs))
        }
        (None, _) => (None, None),
    };
    opts.control.check()?;
    let neighbor_summary = match &cfg.embeddings {
        Some(path) => {
            let t = Instant::now();
            let s = crate::neighbors::stage::apply(
                cfg,
                manifest,
                &mut items,
                path,
                &opts.neighbors,
                backend,
            )?;
            run.timings.neighbors = Some(t.elapsed());
            Some(s)
        }
        None => None,
    };
    // Without embeddings, identical images still show leakage between
    // splits (hashed only when there are splits to compare).
    let identical = match (&neighbor_summary, crate::checks::leakage::splits(manifest)) {
        (None, Some(_)) if cfg.memory.is_none() => {
            crate::neighbors::stage::identical_images(cfg, manifest)?
        }
        _ => None,
    };
    let t_queue = Instant::now();
    // The unlabelled items leave here: the review queue and its checks see
    // the labelled ones, the selection for labelling the others.
    let (mut labelled, mut pool) = split_unlabelled(items);
    let n_unlabelled = pool.len();
    let selection = crate::queue::selection::run(
        cfg,
        manifest,
        &pool,
        neighbor_summary.as_ref().map(|s| &s.result.graph),
        &opts.label,
    );
    let mut checks = crate::checks::run(&crate::checks::Inputs {
        cfg,
        manifest,
        items: &labelled,
        neighbors: neighbor_summary.as_ref().map(|s| &s.result),
        identical: identical.as_deref(),
        annotations: s.annotations.as_ref(),
        annotator_pairs: annotator_pairs.as_ref(),
        campaign: s.campaign.as_ref(),
        selected: opts.checks.as_deref(),
        earlier: &[],
    });
    assign_priority(&mut labelled, &mut pool, opts.rank_by, &checks);
    let items = by_priority(labelled);
    let plan = crate::queue::plan(cfg, manifest, &items, &opts.queue, s.queue_inputs, &checks)?;
    run.timings.queue = t_queue.elapsed();
    run.timings.checks = checks
        .iter()
        .filter(|r| matches!(r.outcome, crate::checks::Outcome::Ran(_)))
        .map(|r| (r.check.name(), r.took))
        .collect();
    let t_report = Instant::now();
    let info = run.backend_info();
    let drift = crate::checks::take_drift_section(&mut checks);
    // When the run started, on the wall clock: now less the time it took.
    let started_at = (!opts.neighbors.deterministic).then(|| {
        let now = std::time::SystemTime::now();
        crate::io::history::format_utc(now.checked_sub(run.start.elapsed()).unwrap_or(now))
    });
    let report = Report::build(
        cfg,
        &items,
        &stats,
        output::Sections {
            options: opts.recorded(),
            rank: opts.rank_by,
            backend: &info,
            duplicates: neighbor_summary.as_ref().map(|s| s.duplicates.clone()),
            agreement,
            plan: &plan,
            checks: crate::queue::selection::checks_section(&checks, selection.as_ref()),
            score_cache: s.score_cache,
            selection: selection.as_ref().map(|s| s.section.clone()),
            drift,
            started_at,
            history: s.history.map(|earlier| (earlier, run_name(&opts.out))),
        },
    );
    run.timings.report = t_report.elapsed();
    if let Some(s) = &neighbor_summary {
        extras.clusters = Some(crate::neighbors::stage::cluster_rows(
            cfg, manifest, &items, &pool, &s.result,
        ));
    }
    if let Some(sel) = selection {
        extras.to_label = Some((pool, sel.rows));
    }
    opts.control.check()?;
    let reasons = crate::checks::reasons(&checks);
    let files = output::write_all(
        output::Queue {
            out: &opts.out,
            cfg,
            manifest,
            items: &items,
            plan: &plan,
            reasons: &reasons,
            top: opts.top,
            rows: opts.queue.rows,
        },
        report,
        extras,
        &mut run.timings,
        run.start,
    )?;
    run.timings.total = run.start.elapsed();
    Ok(RunSummary {
        n_items: items.len() + n_unlabelled,
        files,
        backend: info.name,
        timings: run.timings.clone(),
        score_cache: s.score_cache,
    })
}

/// This run's name in `report.json` `history`: its `--out` directory's
/// last component (the path as given when it has none, such as `.`).
fn run_name(out: &std::path::Path) -> String {
    out.file_name()
        .map_or_else(|| out.to_string_lossy(), |n| n.to_string_lossy())
        .into_owned()
}

/// The segmentation items with the lowest `annotator_agreement` (ties to
/// the lower row), at most [`crate::report::MAX_ANNOTATED`], with their
/// annotators' masks, for the page's annotator overlays.
fn lowest_agreement(
    ann: &crate::io::annotations::Annotations,
    items: &[ItemResult],
) -> Vec<crate::report::AnnotatedItem> {
    use crate::io::annotations::Annotation;
    let mut scored: Vec<(f64, usize, (usize, usize))> = items
        .iter()
        .filter_map(|it| {
            let a = it
                .scores
                .get(Score::AnnotatorAgreement)
                .filter(|a| a.is_finite())?;
            Some((a, it.index, it.dims()?))
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .take(crate::report::MAX_ANNOTATED)
        .map(|(_, index, dims)| crate::report::AnnotatedItem {
            index,
            dims,
            masks: ann.items[index]
                .iter()
                .filter_map(|(a, x)| match x {
                    Annotation::Mask(_) | Annotation::Given(_) => {
                        Some((ann.annotators[*a as usize].clone(), x.clone()))
                    }
                    Annotation::Label(_) => None,
                })
                .collect(),
        })
        .collect()
}

/// Set every item's priority, the one time it is set:
/// [`crate::priority::priorities`] over all items by row, from their scores
/// (none for an unlabelled item) and the raises the agreement stage
/// ([`crate::agreement::disagreement`]) and the neighbour stage
/// ([`crate::neighbors::stage::conflict`]) recorded on them; `rank` chooses
/// the items' own term (`--rank-by`).
fn assign_priority(
    labelled: &mut [ItemResult],
    pool: &mut [ItemResult],
    rank: crate::priority::RankBy,
    checks: &[crate::checks::CheckRun],
) {
    use crate::priority::{Raises, Terms};
    let n = labelled
        .iter()
        .chain(pool.iter())
        .map(|it| it.index + 1)
        .max()
        .unwrap_or(0);
    let mut rows = vec![Terms::default(); n];
    for it in labelled.iter().chain(pool.iter()) {
        rows[it.index] = Terms {
            scores: (!it.unlabelled).then_some(&it.scores),
            raises: Raises {
                disagreement: crate::agreement::disagreement(it),
                conflict: crate::neighbors::stage::conflict(it),
                audit: crate::checks::audit_score(checks, it),
            },
        };
    }
    let p = crate::priority::priorities(&rows, rank);
    for it in labelled.iter_mut().chain(pool.iter_mut()) {
        it.priority = p[it.index];
    }
}

/// `items` split into `(labelled, unlabelled)`, each in its original
/// order, in place: the unlabelled items (usually few) are moved out and
/// the labelled ones stay in `items`' own buffer, so the items are never
/// held twice (a partition into two new vectors would hold them twice at
/// its peak: about 400 bytes an item).
fn split_unlabelled(mut items: Vec<ItemResult>) -> (Vec<ItemResult>, Vec<ItemResult>) {
    let pool: Vec<ItemResult> = items.extract_if(.., |it| it.unlabelled).collect();
    (items, pool)
}

/// The items in queue order: priority descending (`f64::total_cmp`), ties
/// by row ([`ItemResult::index`], unique, so the order is total and an
/// unstable sort gives it exactly). One sort of `(priority, row, position)`
/// keys (24 bytes; in parallel with rayon when there are many), then each
/// (large) item is moved once, instead of O(N log N) times inside a sort.
fn by_priority(mut items: Vec<ItemResult>) -> Vec<ItemResult> {
    use rayon::slice::ParallelSliceMut;
    let mut keys: Vec<(f64, usize, usize)> = items
        .iter()
        .enumerate()
        .map(|(pos, it)| (it.priority, it.index, pos))
        .collect();
    let cmp =
        |a: &(f64, usize, usize), b: &(f64, usize, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    // Below this many keys a sort on one thread is as fast.
    const PARALLEL_FROM: usize = 1 << 16;
    if keys.len() >= PARALLEL_FROM {
        keys.par_sort_unstable_by(cmp);
    } else {
        keys.sort_unstable_by(cmp);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: usize, priority: f64, unlabelled: bool) -> ItemResult {
        ItemResult {
            index,
            scores: Default::default(),
            priority,
            row: None,
            cluster: None,
            extra: None,
            class: None,
            consensus: None,
            unlabelled,
        }
    }

    /// The unlabelled items leave in row order, the labelled ones stay in
    /// theirs; the queue order is priority descending, ties (and equal
    /// NaNs) by row, the same order with the parallel sort as without.
    #[test]
    fn split_and_priority_order() {
        let v: Vec<ItemResult> = (0..7).map(|i| item(i, 0.0, i % 3 == 1)).collect();
        let (lab, pool) = split_unlabelled(v);
        let rows = |v: &[ItemResult]| v.iter().map(|it| it.index).collect::<Vec<_>>();
        assert_eq!((rows(&lab), rows(&pool)), (vec![0, 2, 3, 5, 6], vec![1, 4]));

        let p = [0.5, 0.9, f64::NAN, 0.5, -0.0, 0.0, 0.9];
        let v: Vec<ItemResult> = p
            .iter()
            .enumerate()
            .map(|(i, &x)| item(i, x, false))
            .collect();
        // total_cmp: NaN (positive) above every number, 0.0 above -0.0.
        assert_eq!(rows(&by_priority(v)), vec![2, 1, 6, 0, 3, 5, 4]);
        // Many items (the parallel sort): against an independent order, a
        // stable sort by descending priority of items given in row order.
        let n = 200_000;
        let prio = |i: usize| ((i * 7919) % 1000) as f64 / 1000.0;
        let v: Vec<ItemResult> = (0..n).rev().map(|i| item(i, prio(i), false)).collect();
        let mut want: Vec<usize> = (0..n).collect();
        want.sort_by(|&a, &b| prio(b).partial_cmp(&prio(a)).unwrap());
        assert_eq!(rows(&by_priority(v)), want);
    }

    /// A merge records the shards' score options and its own queue and
    /// output options: resolved once, in `merged_options`.
    #[test]
    fn merged_options_take_the_score_options_from_the_partials() {
        let mut shard = RunOptions::new("data", "part0");
        shard.batch_size = 1234;
        shard.logits = true;
        shard.backend = BackendKind::Cpu;
        shard.gpu_fallback = true;
        let recorded = shard.recorded();
        let mut given = RunOptions::new("", "merged");
        given.top = Some(5);
        given.queue.policy.budget = Some(7);
        given.backend = BackendKind::Gpu;
        let from = std::path::Path::new("part0");
        let resolved = merged_options(&given, &recorded, from).expect("known options");
        let r = serde_json::to_value(resolved.recorded()).expect("serializable");
        let mut want = given.recorded();
        want.dataset = recorded.dataset.clone();
        want.batch_size = recorded.batch_size;
        want.logits = recorded.logits;
        want.backend = recorded.backend.clone();
        want.gpu_fallback = recorded.gpu_fallback.clone();
        assert_eq!(r, serde_json::to_value(want).expect("serializable"));
        assert_eq!(
            (r["top"].as_u64(), r["budget"].as_u64()),
            (Some(5), Some(7))
        );
        assert_eq!(resolved.out, given.out);

        for (field, value) in [("backend", "tpu"), ("gpu_fallback", "retry")] {
            let mut bad = recorded.clone();
            match field {
                "backend" => bad.backend = value.into(),
                _ => bad.gpu_fallback = value.into(),
            }
            let e = merged_options(&given, &bad, from).expect_err(field);
            assert!(e.to_string().contains(value), "{e}");
        }
    }
}
