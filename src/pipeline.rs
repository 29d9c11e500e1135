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
use crate::output::{self, Report};
use crate::records::{ItemResult, Timings};
use crate::scores::Score;

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
            neighbors: Default::default(),
            queue: Default::default(),
            shard: None,
            resume: false,
            cache: None,
            min_annotator_kappa: crate::agreement::DEFAULT_MIN_ANNOTATOR_KAPPA,
            min_annotator_iou: crate::agreement::DEFAULT_MIN_ANNOTATOR_IOU,
            label: Default::default(),
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
pub fn run(opts: &RunOptions) -> Result<RunSummary> {
    opts.validate()?;
    let cfg = crate::io::load_dataset(&opts.dataset)?;
    run_config(&cfg, opts)
}

/// [`run`] on a dataset already described: read from its directory, or
/// given in memory ([`DatasetConfig::in_memory`]; such a run takes no
/// `--shard`, `--resume` or `--cache`, which key on the dataset's files).
/// `opts.dataset` is only recorded.
pub fn run_config(cfg: &DatasetConfig, opts: &RunOptions) -> Result<RunSummary> {
    let t0 = Instant::now();
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
    let backend = backend::select(opts.backend, opts.gpu_fallback)?;
    let mut timings = Timings::default();
    // Everything after scoring that can fail on user input is checked and
    // read once the items are known, before the first batch is scored.
    let mut queue_inputs = None;
    let mut annotations = None;
    let mut prepare = |m: &Manifest| -> Result<()> {
        crate::neighbors::stage::check_images(&cfg, m)?;
        if let Some(path) = &cfg.embeddings {
            crate::neighbors::stage::check(&cfg, m, path)?;
        }
        annotations = crate::agreement::load(&cfg, m)?;
        queue_inputs = Some(crate::queue::prepare(&cfg, m, &opts.queue)?);
        Ok(())
    };
    let score_opts = crate::score::ScoreOptions {
        batch_size: opts.batch_size,
        logits: opts.logits,
        progress: opts.progress,
        kept_maps: crate::report::MAX_OVERLAYS,
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
    let queue_inputs = queue_inputs.expect("the score stage runs `prepare` before its first batch");
    let score_cache = opts.cache.as_ref().map(|_| crate::schema::ScoreCache {
        reused: recorder.reused,
        scored: recorder.scored,
    });
    // This run's entries go to the cache once its outputs are in place.
    let keep_cache = |files: &mut Vec<PathBuf>| {
        let Some(dir) = &opts.cache else { return };
        if let Some(why) = backend.info().fallback {
            eprintln!(
                "triage: the score cache is left as it was: the run fell back to the CPU ({why})"
            );
            return;
        }
        match recorder.write(dir, opts.shard, &cache_fingerprint, cfg.task) {
            Ok(path) => files.push(path),
            Err(e) => eprintln!("triage: warning: the score cache was not written: {e}"),
        }
    };
    if let Some(shard) = opts.shard {
        let options = opts.recorded();
        let header = crate::score::partial::Header {
            format: crate::score::partial::FORMAT.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            fingerprint: crate::score::partial::fingerprint(&cfg, &options)?,
            shard,
            n_items: manifest.len(),
            items: items.len(),
            options,
            backend: backend.info(),
            stats,
            score_cache,
        };
        let mut files = crate::score::partial::write(&opts.out, &header, &items)?;
        if let Some(cp) = checkpoint {
            cp.remove()?;
        }
        keep_cache(&mut files);
        timings.total = t0.elapsed();
        return Ok(RunSummary {
            n_items: items.len(),
            files,
            backend: backend.info().name,
            timings,
            score_cache,
        });
    }
    let scored = AssembleInput {
        cfg: &cfg,
        manifest: &manifest,
        items,
        stats,
        queue_inputs,
        backend_info: None,
        score_cache,
        annotations,
    };
    let mut summary = assemble(scored, opts, backend.as_ref(), &mut timings, t0)?;
    if let Some(cp) = checkpoint {
        cp.remove()?;
    }
    keep_cache(&mut summary.files);
    Ok(summary)
}

/// Combine the partials `parts` of one dataset (every shard once, in any
/// order) and write what a single `triage run` of it writes, under `opts`'
/// queue, neighbour and output options (its score options come from the
/// partials; score-only options such as `--cache` and `--resume` are the
/// shards' and are not used here). Everything is checked before anything is written: a missing
/// or repeated shard, partials of other inputs, options or versions, or a
/// dataset changed since, are errors.
pub fn merge(parts: &[PathBuf], opts: &RunOptions) -> Result<RunSummary> {
    let t0 = Instant::now();
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
    let queue_inputs = crate::queue::prepare(&cfg, &manifest, &opts.queue)?;
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
    let backend = backend::select(opts.backend, opts.gpu_fallback)?;
    let scored = AssembleInput {
        cfg: &cfg,
        manifest: &manifest,
        items,
        stats,
        queue_inputs,
        backend_info: Some((h0.options.clone(), h0.backend.clone())),
        score_cache,
        annotations,
    };
    // The score options recorded in report.json are the shards' (see
    // `assemble`); everything else is this merge's.
    assemble(scored, opts, backend.as_ref(), &mut timings, t0)
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

/// What the score stage (or a merge) hands to [`assemble`].
struct AssembleInput<'a> {
    cfg: &'a DatasetConfig,
    manifest: &'a Manifest,
    /// In items order.
    items: Vec<ItemResult>,
    stats: crate::records::DatasetStats,
    queue_inputs: crate::queue::QueueInputs,
    /// A merge: the options and backend the shards recorded.
    backend_info: Option<(crate::schema::Options, crate::backend::BackendInfo)>,
    /// `score_cache`, with `--cache`.
    score_cache: Option<crate::schema::ScoreCache>,
    /// `[inputs] annotations`, read and checked.
    annotations: Option<crate::io::annotations::Annotations>,
}

/// Everything after scoring: reasons, agreement, neighbours, the checks
/// (on the labelled items in row order), then each item's priority, once
/// ([`assign_priority`]), the priority order, the queue, and the outputs.
fn assemble(
    s: AssembleInput<'_>,
    opts: &RunOptions,
    backend: &dyn crate::backend::Backend,
    timings: &mut Timings,
    t0: Instant,
) -> Result<RunSummary> {
    let (cfg, manifest) = (s.cfg, s.manifest);
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
            timings.neighbors = Some(t.elapsed());
            Some(s)
        }
        None => None,
    };
    let t_queue = Instant::now();
    // The unlabelled items leave here: the review queue and its checks see
    // the labelled ones, the selection for labelling the others.
    let (mut labelled, mut pool): (Vec<ItemResult>, Vec<ItemResult>) =
        items.into_iter().partition(|it| !it.unlabelled);
    let n_unlabelled = pool.len();
    let selection = crate::queue::selection::run(
        cfg,
        manifest,
        &pool,
        neighbor_summary.as_ref().map(|s| &s.result.graph),
        &opts.label,
    );
    let checks = crate::checks::run(&crate::checks::Inputs {
        cfg,
        manifest,
        items: &labelled,
        neighbors: neighbor_summary.as_ref().map(|s| &s.result),
        annotations: s.annotations.as_ref(),
        annotator_pairs: annotator_pairs.as_ref(),
    });
    assign_priority(&mut labelled, &mut pool);
    let items = by_priority(labelled);
    let plan = crate::queue::plan(cfg, manifest, &items, &opts.queue, s.queue_inputs, &checks)?;
    timings.queue = t_queue.elapsed();
    let t_report = Instant::now();
    let (options, info) = match s.backend_info {
        Some((recorded, info)) => {
            // The shards' score options with this merge's queue options.
            let mut o = opts.recorded();
            o.dataset = recorded.dataset;
            o.batch_size = recorded.batch_size;
            o.logits = recorded.logits;
            o.backend = recorded.backend;
            o.gpu_fallback = recorded.gpu_fallback;
            (o, info)
        }
        None => (opts.recorded(), backend.info()),
    };
    let report = Report::build(
        cfg,
        &items,
        &stats,
        output::Sections {
            options,
            backend: &info,
            duplicates: neighbor_summary.as_ref().map(|s| s.duplicates.clone()),
            agreement,
            plan: &plan,
            checks: crate::queue::selection::checks_section(&checks, selection.as_ref()),
            score_cache: s.score_cache,
            selection: selection.as_ref().map(|s| s.section.clone()),
        },
    );
    timings.report = t_report.elapsed();
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
        },
        report,
        extras,
        timings,
        t0,
    )?;
    timings.total = t0.elapsed();
    Ok(RunSummary {
        n_items: items.len() + n_unlabelled,
        files,
        backend: info.name,
        timings: timings.clone(),
        score_cache: s.score_cache,
    })
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
            Some((a, it.index, it.dims?))
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
/// ([`crate::neighbors::stage::conflict`]) recorded on them.
fn assign_priority(labelled: &mut [ItemResult], pool: &mut [ItemResult]) {
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
            },
        };
    }
    let p = crate::priority::priorities(&rows);
    for it in labelled.iter_mut().chain(pool.iter_mut()) {
        it.priority = p[it.index];
    }
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
