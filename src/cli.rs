//! Command-line arguments (clap derive), validated into library options.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::BackendKind;
use crate::error::{Error, Result};
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
    /// Score every item of DATASET and write the review queue and report to --out.
    Run(RunArgs),
    /// Write a synthetic segmentation dataset with planted annotation errors.
    Synth(SynthArgs),
}

/// `triage run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Dataset directory holding triage.toml.
    pub dataset: PathBuf,
    /// Output directory for queue.jsonl, queue.csv and report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Compute backend: cpu (reference), gpu (wgpu), or auto (a hardware GPU if present, else cpu).
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
    /// Segmentation items per batch; peak memory grows with it, not with the dataset.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Write only the K highest-priority rows to the queue files (the report covers all items).
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// The probabilities are logits: apply a softmax first.
    #[arg(long)]
    pub logits: bool,
    /// With embeddings: neighbours per item in the kNN graph.
    #[arg(long, default_value_t = crate::neighbors::DEFAULT_K)]
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
    /// kNN graph: exact brute force, hnsw, or auto (exact up to 20000 items).
    #[arg(long, value_enum, default_value_t = crate::neighbors::KnnMethod::Auto)]
    pub knn: crate::neighbors::KnnMethod,
    /// Save the HNSW index in DIR and reuse it next run, inserting only new items.
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// Byte-identical outputs across runs: serial index build, no timings.
    #[arg(long)]
    pub deterministic: bool,
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
}

impl RunArgs {
    /// Validate into library options.
    pub fn into_options(self) -> Result<RunOptions> {
        if self.batch_size == 0 {
            return Err(Error::Usage("--batch-size must be at least 1".into()));
        }
        if self.top == Some(0) {
            return Err(Error::Usage("--top must be at least 1".into()));
        }
        if self.knn_k == 0 {
            return Err(Error::Usage("--knn-k must be at least 1".into()));
        }
        let threshold = match (self.dup_threshold, self.dup_relative) {
            (_, Some(f)) if !(f.is_finite() && f > 0.0) => {
                return Err(Error::Usage(format!("--dup-relative must be > 0, got {f}")));
            }
            (_, Some(f)) => crate::neighbors::Threshold::Relative(f),
            (Some(d), None) if !(0.0..=2.0).contains(&d) => {
                return Err(Error::Usage(format!(
                    "--dup-threshold is a cosine distance in [0, 2], got {d}"
                )));
            }
            (Some(d), None) => crate::neighbors::Threshold::Absolute(d),
            (None, None) => {
                crate::neighbors::Threshold::Absolute(crate::neighbors::DEFAULT_THRESHOLD)
            }
        };
        if !(0.0..=1.0).contains(&self.conflict_iou) {
            return Err(Error::Usage(format!(
                "--conflict-iou must be in [0, 1], got {}",
                self.conflict_iou
            )));
        }
        let neighbors = crate::neighbors::stage::NeighborOptions {
            k: self.knn_k,
            threshold,
            conflict_iou: self.conflict_iou,
            method: self.knn,
            index_dir: self.index.clone(),
            deterministic: self.deterministic,
        };
        Ok(RunOptions {
            dataset: self.dataset,
            out: self.out,
            backend: self.backend,
            batch_size: self.batch_size,
            top: self.top,
            logits: self.logits,
            progress: std::io::stderr().is_terminal(),
            neighbors,
        })
    }
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
        Command::Run(args) => args.into_options().and_then(|opts| {
            let s = crate::pipeline::run(&opts)?;
            let in_overlays = |f: &&std::path::PathBuf| {
                f.parent().and_then(|p| p.file_name())
                    == Some(std::ffi::OsStr::new(crate::report::OVERLAY_DIR))
            };
            let overlays = s.files.iter().filter(in_overlays).count();
            eprintln!(
                "triage: scored {} items on {}; wrote {}{}",
                s.n_items,
                s.backend,
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
        }),
        Command::Synth(args) => crate::synth::synth(&args.into_options()).map(|s| {
            eprintln!(
                "triage: wrote {} items ({} with planted errors, {} bytes)",
                s.items, s.planted, s.bytes_written
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
