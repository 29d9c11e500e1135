//! Command-line arguments (clap derive), validated into library options.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::BackendKind;
use crate::error::Result;
use crate::pipeline::RunOptions;
use crate::synth::{SynthDtype, SynthOptions};

/// Rank a dataset's labels by how much a human should re-check them.
#[derive(Debug, Parser)]
#[command(name = "triage", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score every item of DATASET and write the review queue and report to --out
    /// (with --shard I/N: score one shard and write its partial to --out).
    Run(RunCmd),
    /// Combine the partials of every shard (`triage run --shard I/N`, any order) into
    /// the outputs one `triage run` writes.
    Merge(MergeCmd),
    /// Write a synthetic dataset (segmentation or classification) with planted annotation errors.
    Synth(SynthArgs),
    /// Import reviewers' decisions into DATASET/reviews.jsonl: a CSV (id, decision,
    /// optional corrected_label), a Label Studio JSON export or a CVAT XML export.
    ReviewImport(ReviewImportArgs),
    /// Send a run's review queue to a reviewers' tool (Label Studio, CVAT), each item's
    /// current annotation ready to correct.
    Export(ExportCmd),
    /// Write a new version of DATASET to --out with the reviewers' corrections
    /// (DATASET/reviews.jsonl) in place; DATASET is only read.
    Apply(ApplyArgs),
}

/// `triage review-import`.
#[derive(Debug, clap::Args)]
pub struct ReviewImportArgs {
    /// Dataset directory holding triage.toml; decisions go to DATASET/reviews.jsonl.
    pub dataset: PathBuf,
    /// A CSV with columns id, decision (error|ok|unsure) and optionally corrected_label;
    /// or a Label Studio export (.json) or CVAT for images export (.xml) of the tasks
    /// `triage export` wrote: an unchanged annotation is confirmed (ok), a changed one
    /// relabelled (error, with the new label or mask).
    pub decisions: PathBuf,
}

/// `triage export`.
#[derive(Debug, clap::Args)]
pub struct ExportCmd {
    #[command(subcommand)]
    pub tool: ExportTool,
}

/// The tools `triage export` writes for.
#[derive(Debug, Subcommand)]
pub enum ExportTool {
    /// Label Studio tasks (JSON), with label_config.xml beside them.
    Labelstudio(ExportArgs),
    /// CVAT for images 1.1 annotations (XML).
    Cvat(ExportArgs),
}

/// `triage export labelstudio|cvat`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The run's --out directory (queue.jsonl, report.json).
    pub run_out: PathBuf,
    /// The file to write (tasks.json, annotations.xml).
    #[arg(long)]
    pub out: PathBuf,
    /// The dataset, when not the one the run's report.json names.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Prefix of the images' paths in the tasks: a URL or a directory.
    #[arg(long, value_name = "URL_OR_DIR")]
    pub images_root: Option<String>,
    /// Only the first K items of the queue.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Also the items to label next (to_label.jsonl).
    #[arg(long)]
    pub to_label: bool,
}

/// `triage apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Dataset directory holding triage.toml and reviews.jsonl (only read).
    pub dataset: PathBuf,
    /// The new dataset's directory (new or empty).
    #[arg(long)]
    pub out: PathBuf,
}

/// `triage run`.
#[derive(Debug, clap::Args)]
pub struct RunCmd {
    /// Dataset directory holding triage.toml.
    pub dataset: PathBuf,
    #[command(flatten)]
    pub args: RunArgs,
}

/// `triage merge`.
#[derive(Debug, clap::Args)]
pub struct MergeCmd {
    /// The shards' --out directories (or their partial.jsonl files), every shard once.
    #[arg(required = true, value_name = "PART")]
    pub parts: Vec<PathBuf>,
    #[command(flatten)]
    pub args: RunArgs,
}

/// The options of `triage run` (and of `triage merge`, which takes the
/// score options from the partials).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Score only shard I of N (contiguous items in manifest order) and write its partial
    /// result (partial.jsonl) to --out, for `triage merge`.
    #[arg(long, value_name = "I/N", value_parser = crate::records::Shard::parse)]
    pub shard: Option<crate::records::Shard>,
    /// Keep a checkpoint of the scored batches in --out, and continue from the one there
    /// (after a crash or kill): outputs are the same as an uninterrupted run's. Without a
    /// checkpoint (or with one of other inputs or options) it starts afresh.
    #[arg(long)]
    pub resume: bool,
    /// Score cache directory: items whose probabilities and annotation are unchanged since the
    /// last run with this cache (same options and backend) are not scored again; their rows are
    /// reused, and the outputs equal a full run's. report.json `score_cache` counts them.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// With `[inputs] annotations`: annotators whose Cohen's kappa with the consensus of the
    /// other annotators is under K are listed in report.json `agreement.below_threshold`.
    #[arg(long, value_name = "K", default_value_t = crate::agreement::DEFAULT_MIN_ANNOTATOR_KAPPA)]
    pub min_annotator_kappa: f64,
    /// With `[inputs] annotations` (segmentation): annotators whose mIoU with the other
    /// annotators is under T are listed in report.json `agreement.below_threshold`.
    #[arg(long, value_name = "T", default_value_t = crate::agreement::DEFAULT_MIN_ANNOTATOR_IOU)]
    pub min_annotator_iou: f64,
    /// Without a `batch` column in items.csv: group items into batches by their `annotated_at`
    /// date, one batch per day or per ISO week (report.json `drift`; default: day).
    #[arg(long, value_enum, value_name = "WINDOW")]
    pub drift_window: Option<crate::io::campaign::Window>,
    /// Output directory for queue.jsonl, queue.csv and report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Compute backend: cpu (reference), gpu (wgpu), or auto (a hardware GPU if present, else cpu).
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
    /// When the GPU fails mid-run (device lost, out of memory, driver error): fail (exit 2),
    /// or log a warning and finish on the CPU (recorded in report.json's backend.fallback).
    #[arg(long, value_enum, default_value_t = GpuFallback::Fail)]
    pub gpu_fallback: GpuFallback,
    /// Bytes of probabilities per batch, e.g. 32MiB, 256M, 1G, 500MB (K/M/G and KiB/MiB/GiB are
    /// powers of 1024, KB/MB/GB of 1000, a bare number is bytes). Two batches are held at once;
    /// a batch holds at least one item. Peak memory follows it, not the dataset.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_bytes)]
    pub batch_size: usize,
    /// Write only the K highest-priority rows to the queue files (the report covers all items).
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Which rows the queue files list: all (every item) or flagged (the --budget's rows, spot
    /// checks included, and every item a check flags, in queue order, with their queue ranks;
    /// recommended for large sets). --top K still cuts to K rows.
    #[arg(long, value_enum, value_name = "ROWS", default_value_t = crate::queue::QueueRows::All)]
    pub queue_rows: crate::queue::QueueRows,
    /// Run exactly these checks, comma-separated (e.g. wrong_label,outlier,leakage); the others
    /// are recorded in report.json as skipped, "not selected". Default: every check but
    /// data_valuation (Datalab's defaults). The names: docs/reference.md, "Checks and views".
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub checks: Option<Vec<String>>,
    /// The probabilities are logits: apply a softmax first.
    #[arg(long)]
    pub logits: bool,
    /// Order the queue by one label-quality score, lowest quality first (help text:
    /// [`crate::priority::RankBy::help`], its list from the score table).
    #[arg(long, value_name = "SCORE", default_value = "default", value_parser = crate::priority::RankBy::parse, help = crate::priority::RankBy::help())]
    pub rank_by: crate::priority::RankBy,
    /// With embeddings: neighbours per item in the kNN graph, 1 to 256.
    #[arg(long, default_value_t = crate::neighbors::DEFAULT_K, value_parser = parse_knn_k)]
    pub knn_k: usize,
    /// With embeddings: near-duplicates are pairs at cosine distance <= this
    /// (absolute; 0.05 = cosine similarity 0.95).
    #[arg(long, value_name = "D", conflicts_with = "dup_relative")]
    pub dup_threshold: Option<f32>,
    /// With embeddings: near-duplicates are pairs at <= F x the median
    /// nearest-neighbour distance (relative rule, instead of --dup-threshold).
    #[arg(long, value_name = "F")]
    pub dup_relative: Option<f32>,
    /// Segmentation: near-duplicate masks with mean IoU below this conflict.
    #[arg(long, default_value_t = 0.5)]
    pub conflict_iou: f64,
    /// kNN graph: exact brute force, ivf, hnsw, or auto (exact up to 20000 items, ivf beyond;
    /// hnsw with --index).
    #[arg(long, value_enum, default_value_t = crate::neighbors::KnnMethod::Auto)]
    pub knn: crate::neighbors::KnnMethod,
    /// Save the HNSW index in DIR and reuse it next run, inserting only new items.
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// Byte-identical outputs across runs: serial index build, no timings.
    #[arg(long)]
    pub deterministic: bool,
    /// Items in tonight's review budget (the head of the queue); default: every
    /// item, in plain priority order (no de-duplication, minimums or spot checks).
    #[arg(long, value_name = "K")]
    pub budget: Option<usize>,
    /// Keep every member of a near-duplicate cluster in the budget (default:
    /// only the highest-priority one; the others are listed as also_in_cluster).
    #[arg(long)]
    pub no_dedup: bool,
    /// Minimum share of the ranked budget per class (0 to 1/num_classes; default 0).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub min_per_class: f64,
    /// Share of the budget drawn at random from items the ranking skips (0 to 1; default 0).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub spot_check: f64,
    /// Seed of the spot-check draw (and of --label-strategy random).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Choose K unlabelled items to label next (to_label.jsonl / .csv); default:
    /// every unlabelled item, by uncertainty. --min-per-class shares it out by predicted class.
    #[arg(long, value_name = "K")]
    pub label_budget: Option<usize>,
    /// How to choose them: diverse (lowest margin, spread over the kNN graph,
    /// one per near-duplicate cluster; margin without embeddings), margin, entropy or random.
    #[arg(long, value_enum, default_value_t = crate::queue::selection::Strategy::Diverse)]
    pub label_strategy: crate::queue::selection::Strategy,
    /// Every item whose `annotator` column is one of these goes into the budget.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub review_all_from: Vec<String>,
    /// An earlier run's output directory: mark rows new/still/changed and list what dropped out.
    #[arg(long, value_name = "DIR")]
    pub previous: Option<PathBuf>,
    /// Earlier runs, night over night: a directory of their report.json files (`*.json`) or
    /// output directories (`*/report.json`); report.json `history` and the page's "Night over
    /// night" panel list their figures with this run's last.
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,
    /// Print one line on stderr with the time of every stage (read, score, neighbours, queue,
    /// write, report, overlays, total); report.json has them too, under `timings`.
    #[arg(long)]
    pub timings: bool,
}

/// What to do when the GPU fails mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpuFallback {
    /// Stop with an error (exit 2).
    Fail,
    /// Log a warning and finish on the CPU.
    Cpu,
}

/// Storage type of synthetic probabilities.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    F16,
    F32,
}

/// `triage synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of items.
    #[arg(long, default_value_t = 32)]
    pub items: usize,
    /// Image height and width.
    #[arg(long, num_args = 2, value_names = ["H", "W"], default_values_t = [128, 128])]
    pub size: Vec<usize>,
    /// Number of classes (class 0 is background).
    #[arg(long, default_value_t = 5)]
    pub classes: usize,
    /// Storage type of the probabilities.
    #[arg(long, value_enum, default_value_t = DtypeArg::F16)]
    pub dtype: DtypeArg,
    /// Random seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// segmentation (masks, images, embeddings) or classification ((N, C) probabilities,
    /// labels, about 3 % planted wrong labels; --size is unused).
    #[arg(long, value_enum, default_value_t = SynthTask::Segmentation)]
    pub task: SynthTask,
}

/// What `triage synth` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SynthTask {
    Segmentation,
    Classification,
}

impl RunArgs {
    /// Validate into library options.
    /// The flags as library options, checked by [`RunOptions::validate`]
    /// (the one place every option is checked, for the library's callers
    /// too).
    pub fn into_options(self, dataset: PathBuf) -> Result<RunOptions> {
        let threshold = match (self.dup_threshold, self.dup_relative) {
            (_, Some(f)) => crate::neighbors::Threshold::Relative(f),
            (Some(d), None) => crate::neighbors::Threshold::Absolute(d),
            (None, None) => {
                crate::neighbors::Threshold::Absolute(crate::neighbors::DEFAULT_THRESHOLD)
            }
        };
        let review_all_from: Vec<String> = self
            .review_all_from
            .iter()
            .map(|a| a.trim().to_string())
            .collect();
        let queue = crate::queue::QueueOptions {
            policy: crate::queue::policy::Policy {
                budget: self.budget,
                dedup: !self.no_dedup,
                min_per_class: self.min_per_class,
                spot_check: self.spot_check,
                seed: self.seed,
                review_all_from,
            },
            previous: self.previous.clone(),
            rows: self.queue_rows,
        };
        let neighbors = crate::neighbors::stage::NeighborOptions {
            k: self.knn_k,
            threshold,
            conflict_iou: self.conflict_iou,
            method: self.knn,
            index_dir: self.index.clone(),
            deterministic: self.deterministic,
        };
        let opts = RunOptions {
            dataset,
            out: self.out,
            backend: self.backend,
            gpu_fallback: self.gpu_fallback == GpuFallback::Cpu,
            batch_size: self.batch_size,
            top: self.top,
            logits: self.logits,
            rank_by: self.rank_by,
            progress: std::io::stderr().is_terminal(),
            neighbors,
            checks: self
                .checks
                .map(|v| v.into_iter().map(|s| s.trim().to_string()).collect()),
            queue,
            shard: self.shard,
            resume: self.resume,
            cache: self.cache,
            min_annotator_kappa: self.min_annotator_kappa,
            min_annotator_iou: self.min_annotator_iou,
            drift_window: self.drift_window,
            history: self.history,
            control: Default::default(),
            label: crate::queue::selection::SelectOptions {
                budget: self.label_budget,
                strategy: self.label_strategy,
                min_per_class: self.min_per_class,
                seed: self.seed,
            },
        };
        opts.validate()?;
        Ok(opts)
    }
}

/// The options `triage run DATASET ARGS...` would run with, parsed by the
/// same clap definitions and checked by [`RunOptions::validate`]: the way
/// other front ends (the Python API) take the CLI's options, with its
/// error text. `args` are the command line's tokens after the dataset
/// (`["--out", "x", "--budget", "10"]`); a parse error is
/// [`crate::Error::Usage`] holding clap's message (its first line, without
/// the `error: ` prefix, and the usage hint).
pub fn run_options(dataset: PathBuf, args: &[String]) -> Result<RunOptions> {
    let argv = [
        "triage".into(),
        "run".into(),
        dataset.clone().into_os_string(),
    ]
    .into_iter()
    .chain(args.iter().map(std::ffi::OsString::from));
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        crate::Error::Usage(first.trim_start_matches("error: ").to_string())
    })?;
    match cli.command {
        Command::Run(RunCmd { args, .. }) => {
            let mut opts = args.into_options(dataset)?;
            opts.progress = false;
            Ok(opts)
        }
        _ => Err(crate::Error::Internal(
            "`triage run` parsed as another command".into(),
        )),
    }
}

/// Parse `--knn-k`: an integer in `1..=`[`crate::neighbors::MAX_K`].
pub fn parse_knn_k(s: &str) -> std::result::Result<usize, String> {
    let k: usize = s.trim().parse().map_err(|_| {
        format!(
            "{s:?} is not a number of neighbours (1 to {})",
            crate::neighbors::MAX_K
        )
    })?;
    if k == 0 {
        return Err("--knn-k must be at least 1".into());
    }
    crate::neighbors::check_k(k).map_err(|e| e.to_string())?;
    Ok(k)
}

/// Parse a byte size: a number (decimals allowed) and an optional unit. `K`, `M`, `G`, `T`
/// (optionally followed by `iB`) are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of 1000;
/// `B` or no unit is bytes. Must be at least 1 byte.
pub fn parse_bytes(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 32MiB, 256M or 1G"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?}; use K, M, G (KiB, MiB, GiB) or KB, MB, GB"
            ));
        }
    };
    let bytes = (value * scale).round();
    if !(bytes >= 1.0 && bytes <= usize::MAX as f64) {
        return Err(format!("{s:?}: the batch size must be at least 1 byte"));
    }
    Ok(bytes as usize)
}

impl SynthArgs {
    /// Validate into library options.
    pub fn into_options(self) -> SynthOptions {
        SynthOptions {
            out: self.out,
            items: self.items,
            height: self.size[0],
            width: self.size[1],
            classes: self.classes,
            dtype: match self.dtype {
                DtypeArg::F16 => SynthDtype::F16,
                DtypeArg::F32 => SynthDtype::F32,
            },
            seed: self.seed,
            task: match self.task {
                SynthTask::Segmentation => crate::config::Task::Segmentation,
                SynthTask::Classification => crate::config::Task::Classification,
            },
        }
    }
}

/// Parse, run, and return the process exit code: 0 on success, 2 on error.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Run(RunCmd { dataset, args }) => {
            let show_timings = args.timings;
            args.into_options(dataset)
                .and_then(|opts| report_run(&opts, crate::pipeline::run(&opts)?, show_timings))
        }
        Command::Merge(MergeCmd { parts, args }) => {
            let show_timings = args.timings;
            // The dataset comes from the partials; this path is not read.
            args.into_options(PathBuf::new()).and_then(|opts| {
                report_run(&opts, crate::pipeline::merge(&parts, &opts)?, show_timings)
            })
        }
        Command::Synth(args) => crate::synth::synth(&args.into_options()).map(|s| {
            eprintln!(
                "triage: wrote {} items ({} with planted errors, {} bytes)",
                s.items, s.planted, s.bytes_written
            );
        }),
        Command::ReviewImport(args) => crate::queue::review::import(&args.dataset, &args.decisions)
            .map(|s| {
                let tool = if s.confirmed + s.relabelled > 0 {
                    format!(": {} confirmed, {} relabelled", s.confirmed, s.relabelled)
                } else {
                    String::new()
                };
                eprintln!(
                    "triage: imported {} decisions ({} new{tool}); {} in {}",
                    s.imported,
                    s.new,
                    s.total,
                    s.file.display()
                );
            }),
        Command::Export(ExportCmd { tool }) => {
            let (tool, a) = match tool {
                ExportTool::Labelstudio(a) => (crate::export::Tool::LabelStudio, a),
                ExportTool::Cvat(a) => (crate::export::Tool::Cvat, a),
            };
            crate::export::export(&crate::export::ExportOptions {
                tool,
                run_out: a.run_out,
                out: a.out,
                dataset: a.dataset,
                images_root: a.images_root,
                top: a.top,
                to_label: a.to_label,
            })
            .map(|s| {
                let files: Vec<String> = s.files.iter().map(|f| f.display().to_string()).collect();
                eprintln!(
                    "triage: exported {} items to {}",
                    s.items,
                    files.join(" and ")
                );
            })
        }
        Command::Apply(a) => crate::export::apply(&a.dataset, &a.out).map(|s| {
            eprintln!(
                "triage: wrote {} items ({} corrected) to {}",
                s.items,
                s.corrected,
                s.out.display()
            );
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("triage: error: {e}");
            2
        }
    }
}

/// Print the end-of-run lines on stderr.
fn report_run(opts: &RunOptions, s: crate::pipeline::RunSummary, show_timings: bool) -> Result<()> {
    if show_timings {
        eprintln!("triage: timings: {}", s.timings.line());
    }
    let in_overlays = |f: &&std::path::PathBuf| {
        f.parent().and_then(|p| p.file_name())
            == Some(std::ffi::OsStr::new(crate::report::OVERLAY_DIR))
    };
    let overlays = s.files.iter().filter(in_overlays).count();
    let secs = s.timings.total.as_secs_f64();
    let reused = match &s.score_cache {
        Some(c) => format!(" ({} reused from the cache, {} scored)", c.reused, c.scored),
        None => String::new(),
    };
    eprintln!(
        "triage: {} items{reused} on {} in {secs:.2} s ({:.0} items/s); wrote {}{}",
        s.n_items,
        s.backend,
        s.n_items as f64 / secs.max(1e-9),
        s.files
            .iter()
            .filter(|f| !in_overlays(f))
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if overlays > 0 {
            format!(
                " and {overlays} overlays in {}",
                opts.out.join(crate::report::OVERLAY_DIR).display()
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
