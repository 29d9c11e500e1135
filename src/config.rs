//! The dataset manifest, `<dataset>/triage.toml`, parsed and validated once.
//!
//! ```toml
//! task = "classification"            # or "segmentation"
//! num_classes = 10                   # or: classes = ["road", "car", ...]
//! ignore_index = 255                 # segmentation only; default 255
//! [inputs]                           # paths relative to the dataset directory
//! items = "items.csv"                # optional for classification
//! probs = "probs.npy"                # (N, C) or (N, C, H, W) .npy, or a directory of <id>.npy
//! labels = "labels.npy"              # classification: instead of a `label` column
//! embeddings = "embeddings.npy"      # optional, (N, D)
//! annotations = "annotations.csv"    # optional: id, annotator, label (or mask)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest's file name inside a dataset directory.
pub const MANIFEST: &str = "triage.toml";

/// What the labels annotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Classification,
    Segmentation,
}

impl Task {
    /// The name written in `triage.toml` and `report.json`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Segmentation => "segmentation",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    task: Task,
    num_classes: Option<usize>,
    classes: Option<Vec<String>>,
    ignore_index: Option<u32>,
    inputs: RawInputs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputs {
    items: Option<PathBuf>,
    probs: PathBuf,
    labels: Option<PathBuf>,
    embeddings: Option<PathBuf>,
    annotations: Option<PathBuf>,
}

/// A validated dataset description; every path is resolved against the
/// dataset directory.
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    pub dir: PathBuf,
    pub task: Task,
    /// One name per class; `"0"`, `"1"`, ... when only `num_classes` is given.
    pub class_names: Vec<String>,
    /// Label value that counts nowhere (segmentation).
    pub ignore_index: u16,
    pub items: Option<PathBuf>,
    pub probs: PathBuf,
    pub labels: Option<PathBuf>,
    pub embeddings: Option<PathBuf>,
    /// Several annotators' labels or masks (`annotations.csv`: `id`,
    /// `annotator`, `label` or `mask`).
    pub annotations: Option<PathBuf>,
}

impl DatasetConfig {
    /// Number of classes `C`.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Read and validate `<dir>/triage.toml`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        if !dir.is_dir() {
            return Err(Error::input(dir, "dataset directory not found"));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let raw: RawConfig =
            toml::from_str(&text).map_err(|e| Error::input(&path, e.to_string().trim_end()))?;
        let bad = |field: &str, msg: String| Error::input(&path, msg).field(field.to_string());

        let class_names = match (raw.num_classes, raw.classes) {
            (None, None) => {
                return Err(bad(
                    "num_classes",
                    "give `num_classes` or a `classes` list".into(),
                ));
            }
            (Some(n), None) => (0..n).map(|k| k.to_string()).collect(),
            (n, Some(names)) => {
                if let Some(n) = n
                    && n != names.len()
                {
                    return Err(bad(
                        "classes",
                        format!("num_classes = {n} but `classes` lists {}", names.len()),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                for name in &names {
                    if !seen.insert(name.as_str()) {
                        return Err(bad("classes", format!("class name {name:?} appears twice")));
                    }
                }
                names
            }
        };
        if class_names.len() < 2 {
            return Err(bad(
                "num_classes",
                format!("need at least 2 classes, got {}", class_names.len()),
            ));
        }
        let ignore = raw.ignore_index.unwrap_or(255);
        if ignore > u16::MAX as u32 {
            return Err(bad(
                "ignore_index",
                format!("{ignore} does not fit a 16-bit label map"),
            ));
        }
        if raw.task == Task::Segmentation && (ignore as usize) < class_names.len() {
            return Err(bad(
                "ignore_index",
                format!(
                    "{ignore} is a class id (there are {} classes); choose a value >= num_classes",
                    class_names.len()
                ),
            ));
        }
        if raw.task == Task::Segmentation && class_names.len() > u16::MAX as usize {
            return Err(bad("num_classes", "at most 65535 classes".into()));
        }
        let resolve = |p: PathBuf| dir.join(p);
        let cfg = DatasetConfig {
            dir: dir.to_path_buf(),
            task: raw.task,
            class_names,
            ignore_index: ignore as u16,
            items: raw.inputs.items.map(resolve),
            probs: resolve(raw.inputs.probs),
            labels: raw.inputs.labels.map(resolve),
            embeddings: raw.inputs.embeddings.map(resolve),
            annotations: raw.inputs.annotations.map(resolve),
        };
        if cfg.task == Task::Segmentation && cfg.items.is_none() {
            return Err(bad(
                "inputs.items",
                "segmentation needs `items` (a CSV with `id` and `mask` columns)".into(),
            ));
        }
        if cfg.task == Task::Classification && cfg.items.is_none() && cfg.labels.is_none() {
            return Err(bad(
                "inputs.labels",
                "classification needs `labels` or an `items` CSV with a `label` column".into(),
            ));
        }
        Ok(cfg)
    }

    /// The class index for a label written as an index or a class name.
    pub fn parse_class(&self, text: &str) -> Option<u32> {
        let t = text.trim();
        if let Ok(k) = t.parse::<u32>()
            && (k as usize) < self.num_classes()
        {
            return Some(k);
        }
        self.class_names
            .iter()
            .position(|n| n == t)
            .map(|k| k as u32)
    }
}
