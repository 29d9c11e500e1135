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
//! # coco = "instances.json"         # or cvat / labelstudio: labels from a labels file
//! # images = "images"               #   (docs/formats.md); its image names' directory
//! roots = ["/data/images"]           # optional: absolute directories outside the
//!                                    # dataset that its paths may point into
//! ```
//!
//! # Limits (the file is untrusted)
//!
//! - `triage.toml` itself: a regular file of at most [`MAX_MANIFEST_BYTES`].
//! - Classes: at most [`MAX_CLASSES`] for classification and
//!   [`MAX_SEGMENTATION_CLASSES`] for segmentation, refused before anything
//!   is sized by the count. What a class count `C` costs: a `C × C` table of
//!   64-bit counts (the confusion matrix) per classification batch, in the
//!   pooled statistics and in a shard's partial, written out in full in
//!   `report.json` (`confusion`, `C²` numbers); segmentation adds such a
//!   table per item and per scored stripe of an item on the CPU, a `C × C`
//!   table of 32-bit counts per item on the GPU (its storage binding), and
//!   per-class Boundary IoU counts. At 4096 classes one table is 128 MiB
//!   (64 MiB on the GPU, inside WebGPU's default 128 MiB binding) and the
//!   report's matrix 16.8 M numbers; at 1024 a segmentation table is 8 MiB.
//!
//! # Class names
//!
//! A label (in `items.csv`, `annotations.csv` or a review's correction) is
//! read as a class index when it is a numeral below the class count, else
//! as a class name. So a class whose *name* is a numeral naming a different
//! index (`classes = ["1", "0", "2"]`: the label `1` would be index 1, the
//! class named `"0"`) is ambiguous, and refused at load with the file and
//! the field named. A numeral equal to its own index (`classes = ["0",
//! "1"]`) reads the same either way and is fine. "Numeral" means what the
//! label reader takes for an index: the trimmed name parses as an unsigned
//! 32-bit integer (`"01"`, `"+1"` and `" 1"` are numerals naming 1).
//!
//! # Paths stay inside the dataset
//!
//! Every path the dataset names (the `[inputs]` paths, the `mask` and
//! `image` cells of `items.csv`, the `mask` cells of `annotations.csv`, the
//! per-item probability files `<probs dir>/<id>.npy`) goes through one rule,
//! [`DatasetRoots::check`]: the path, with every symbolic link followed
//! (canonicalised), must lie inside the canonicalised dataset directory or
//! one of the `[inputs] roots` (absolute directories, canonicalised at
//! load). Otherwise the run stops with exit 2 and an error naming the file
//! that names the path, the item and the field. A path that does not exist
//! passes the rule (there is nothing to read; the reader then reports it
//! missing). A per-item probability file must moreover be named by its id
//! as a plain relative name inside the probabilities directory: an id with
//! `..`, `.` or a leading `/` is refused. The rule is checked when a path is
//! resolved, just before the file is opened, not held across the read: it
//! guards against a crafted dataset, not against the dataset being changed
//! while `triage` runs.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest's file name inside a dataset directory.
pub const MANIFEST: &str = "triage.toml";

/// The largest `triage.toml` read, in bytes (4 MiB: 4096 class names of
/// 1 KiB each).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The most classes a classification dataset may have (see the module doc
/// for what a class count costs).
pub const MAX_CLASSES: usize = 4096;

/// The most classes a segmentation dataset may have.
pub const MAX_SEGMENTATION_CLASSES: usize = 1024;

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

    /// The most classes a dataset of this task may have.
    pub fn max_classes(self) -> usize {
        match self {
            Task::Classification => MAX_CLASSES,
            Task::Segmentation => MAX_SEGMENTATION_CLASSES,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    task: Task,
    num_classes: Option<u64>,
    classes: Option<Vec<String>>,
    ignore_index: Option<u32>,
    inputs: RawInputs,
    /// Raw mask values (as text keys) to class ids, e.g. Cityscapes
    /// `labelIds` to train ids.
    label_map: Option<std::collections::BTreeMap<String, u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputs {
    items: Option<PathBuf>,
    probs: PathBuf,
    labels: Option<PathBuf>,
    embeddings: Option<PathBuf>,
    annotations: Option<PathBuf>,
    roots: Option<Vec<PathBuf>>,
    coco: Option<PathBuf>,
    cvat: Option<PathBuf>,
    labelstudio: Option<PathBuf>,
    id_from: Option<IdFrom>,
    unlabeled: Option<Unlabeled>,
    overlap: Option<Overlap>,
    probs_layout: Option<ProbsLayout>,
    probs_key: Option<String>,
    images: Option<PathBuf>,
}

/// The format of a labels file named in `[inputs]` (`coco`, `cvat`,
/// `labelstudio`; [`crate::io::labelfile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFormat {
    Coco,
    Cvat,
    LabelStudio,
}

impl LabelFormat {
    /// The `[inputs]` key that names the file.
    pub fn field(self) -> &'static str {
        match self {
            LabelFormat::Coco => "coco",
            LabelFormat::Cvat => "cvat",
            LabelFormat::LabelStudio => "labelstudio",
        }
    }
}

/// How an item's id comes from a labels file's image (`[inputs] id_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdFrom {
    /// The image's file name without directories and extension (default).
    #[default]
    Stem,
    /// The image's file name as the file gives it, without its extension.
    Path,
    /// The file's own id of the image (COCO image `id`, CVAT `id`, Label
    /// Studio task `id`).
    Id,
}

/// What the pixels no region covers are (`[inputs] unlabeled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlabeled {
    /// Class 0 (default).
    #[default]
    Background,
    /// The ignore index.
    Ignore,
}

/// Which region wins a pixel two regions cover (`[inputs] overlap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The region later in the file (default: regions painted in file order).
    #[default]
    Later,
    /// The region of smaller area (ties: the later one).
    Smaller,
}

/// The axis order of segmentation probabilities (`[inputs] probs_layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbsLayout {
    /// `(N, C, H, W)`, per item `(C, H, W)` (default).
    #[default]
    Nchw,
    /// Channels last: `(N, H, W, C)`, per item `(H, W, C)`.
    Nhwc,
}

/// A labels file named in `[inputs]`, with the rules that turn it into
/// items and label maps ([`crate::io::labelfile`]).
#[derive(Debug, Clone)]
pub struct LabelsInput {
    pub format: LabelFormat,
    /// The file, resolved against the dataset directory.
    pub path: PathBuf,
    pub id_from: IdFrom,
    pub unlabeled: Unlabeled,
    pub overlap: Overlap,
    /// True when `triage.toml` lists neither `classes` nor `num_classes`:
    /// the classes come from the file's categories.
    pub classes_from_file: bool,
    /// True when `triage.toml` lists `classes` (categories match them by
    /// name); false with `num_classes` alone (a category's id is its class
    /// id) or no classes.
    pub classes_named: bool,
    /// `[inputs] images`: the directory the file's image names are
    /// relative to, as named (relative to the dataset directory, or
    /// absolute inside a root); the items' `image` column joins it with
    /// each image's file name.
    pub images: Option<PathBuf>,
}

/// The directories a dataset's paths may lead into: the dataset directory
/// and the `[inputs] roots`, all canonicalised (absolute, no symbolic
/// links).
#[derive(Debug, Clone)]
pub struct DatasetRoots {
    /// The canonical dataset directory.
    pub dataset: PathBuf,
    /// The canonical `[inputs] roots`.
    pub extra: Vec<PathBuf>,
}

impl DatasetRoots {
    /// The rule every path a dataset names goes through: `path` (already
    /// joined to the directory it is relative to), with every symbolic link
    /// followed, lies inside the dataset directory or a root. Returns
    /// `path` itself (as named, so messages keep the dataset's spelling).
    ///
    /// A path that does not exist passes (nothing can be read there; the
    /// reader reports it missing). Otherwise the error names `by` (the file
    /// that names the path), `item` and `field`, the path as named and where
    /// it leads.
    pub fn check(
        &self,
        path: &Path,
        named: &Path,
        by: &Path,
        item: Option<&str>,
        field: &str,
    ) -> Result<PathBuf> {
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
            Err(e) => return Err(Error::io(path, e)),
        };
        if real.starts_with(&self.dataset) || self.extra.iter().any(|r| real.starts_with(r)) {
            return Ok(path.to_path_buf());
        }
        let roots = if self.extra.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self.extra.iter().map(|r| r.display().to_string()).collect();
            format!(" and its roots ({})", list.join(", "))
        };
        let e = Error::input(
            by,
            format!(
                "the path {:?} leads to {}, outside the dataset directory {}{roots}; \
                 list a directory that holds it in triage.toml's [inputs] roots to allow it",
                named.display().to_string(),
                real.display(),
                self.dataset.display(),
            ),
        )
        .field(field.to_string());
        Err(match item {
            Some(id) => e.item(id),
            None => e,
        })
    }
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
    /// Where the dataset's paths may lead ([`DatasetRoots::check`]).
    pub roots: DatasetRoots,
    /// The arrays, when they were given in memory ([`DatasetConfig::in_memory`]);
    /// then `probs`, `labels` and `embeddings` are their names, not paths
    /// ([`crate::io::inputs`] opens them).
    pub memory: Option<std::sync::Arc<crate::memory::MemoryInputs>>,
    /// `[inputs] coco | cvat | labelstudio`: the labels file that stands
    /// for the `label` / `mask` column.
    pub labels_file: Option<LabelsInput>,
    /// The labels file, read and matched to the items
    /// ([`crate::io::labelfile::attach`]); `None` until then.
    pub label_set: Option<std::sync::Arc<crate::labelset::LabelSet>>,
    /// `label_map`: a mask PNG's raw value `v` reads as class
    /// `label_map[v]`; values the table does not list read as the ignore
    /// index (Cityscapes `labelIds` to train ids).
    pub label_map: Option<std::sync::Arc<Vec<u16>>>,
    /// `[inputs] probs_layout` (segmentation).
    pub probs_layout: ProbsLayout,
    /// `[inputs] probs_key`: the array read from a `.npz` archive
    /// (default `probs`).
    pub probs_key: Option<String>,
}

/// The dataset directory a command line's dataset argument names: the
/// directory itself, or, for a path to a file named `triage.toml`, the
/// directory that holds it (`data/triage.toml` is `data`; a bare
/// `triage.toml` is `.`).
///
/// Errors (naming `path`): it does not exist ("dataset directory not
/// found"), or it is another file ("a file, not a dataset directory"),
/// with the directory to pass instead when the file's own directory holds
/// a `triage.toml`.
pub fn dataset_dir(path: &Path) -> Result<PathBuf> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::input(path, "dataset directory not found"));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.is_dir() {
        return Ok(path.to_path_buf());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.file_name() == Some(std::ffi::OsStr::new(MANIFEST)) {
        return Ok(parent);
    }
    let hint = if parent.join(MANIFEST).is_file() {
        format!(
            "pass the directory holding {MANIFEST}: {}",
            parent.display()
        )
    } else {
        format!("pass the directory holding {MANIFEST}")
    };
    Err(Error::input(
        path,
        format!("this is a file, not a dataset directory; {hint}"),
    ))
}

/// Class ids `0 to c - 1` as messages write them (`0 to 9`): both ends
/// included, read the same by a Python or a Rust user.
pub fn class_range(c: usize) -> String {
    format!("0 to {}", c.saturating_sub(1))
}

/// At most the first `max` of `names`, quoted and comma-separated, then
/// `, … (N in all)` when there are more.
fn some_names(names: &[String], max: usize) -> String {
    let mut s: Vec<String> = names.iter().take(max).map(|n| format!("{n:?}")).collect();
    if names.len() > max {
        s.push(format!("… ({} in all)", names.len()));
    }
    s.join(", ")
}

/// Class names are unique, and a numeral names its own index (see the
/// module doc); `Err` says which is not.
fn check_class_names(names: &[String]) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            return Err(format!("class name {name:?} appears twice"));
        }
    }
    for (k, name) in names.iter().enumerate() {
        if let Ok(v) = name.trim().parse::<u32>()
            && v as usize != k
        {
            return Err(format!(
                "class {k} is named {name:?}, a numeral naming index {v}: a label \
                 {name:?} would read as index {v}, not as this class; give it a \
                 name that is not a numeral, or list the classes so that a \
                 numeral name equals its index"
            ));
        }
    }
    Ok(())
}

/// The ignore index fits a 16-bit label map and (segmentation) is no class id.
fn check_ignore_index(task: Task, ignore: u32, classes: usize) -> std::result::Result<(), String> {
    if ignore > u16::MAX as u32 {
        return Err(format!("{ignore} does not fit a 16-bit label map"));
    }
    if task == Task::Segmentation && (ignore as usize) < classes {
        return Err(format!(
            "{ignore} is a class id (there are {classes} classes); choose a value >= num_classes"
        ));
    }
    Ok(())
}

impl DatasetConfig {
    /// A dataset whose arrays are given in memory (or as ranges of files,
    /// [`crate::memory::ArraySource`]): the Python API's way in. The arrays
    /// are checked here as a dataset's files are on load, and errors name
    /// the argument (`probs`, `labels`, `masks`, `embeddings`, `ids`,
    /// `class_names`, `ignore_index`):
    ///
    /// - `probs`: float16/32/64, `(N, C)` (classification) or
    ///   `(N, C, H, W)` (segmentation), `N ≥ 1`, `2 ≤ C ≤` the task's
    ///   maximum ([`Task::max_classes`]);
    /// - `labels` (classification): integers, `(N,)` or `(N, 1)`; its
    ///   values (-1 unlabelled) are checked when read;
    /// - `masks` (segmentation, required): integers, `(N, H, W)`;
    /// - `embeddings`: floats, `(N, D)`, `D ≥ 1`;
    /// - `ids`: `N` unique non-empty strings (default `"0"`, `"1"`, ...);
    /// - `class_names`: `C` names as `classes` in `triage.toml` (default
    ///   `"0"`, `"1"`, ...); `ignore_index` as in `triage.toml` (default 255).
    ///
    /// `annotations` is an annotations CSV file, as `[inputs] annotations`.
    /// Nothing is read beyond the shapes here.
    pub fn in_memory(
        task: Task,
        class_names: Option<Vec<String>>,
        ignore_index: Option<u32>,
        annotations: Option<PathBuf>,
        inputs: crate::memory::MemoryInputs,
    ) -> Result<Self> {
        use crate::memory::ArraySource;
        let arg = |name: &str, msg: String| Error::input(name, msg).field("shape");
        let probs_shape = inputs.probs.shape().to_vec();
        let dims = match task {
            Task::Classification => 2,
            Task::Segmentation => 4,
        };
        if probs_shape.len() != dims {
            let want = if dims == 2 { "(N, C)" } else { "(N, C, H, W)" };
            return Err(arg(
                "probs",
                format!(
                    "expected shape {want} for {}, found {probs_shape:?}",
                    task.name()
                ),
            ));
        }
        if !inputs.probs.dtype().is_float() {
            return Err(
                Error::input("probs", "probabilities must be float16, float32 or float64")
                    .field("dtype"),
            );
        }
        let (n, c) = (probs_shape[0], probs_shape[1]);
        // (N, H, W, C) given for (N, C, H, W): the masks' (H, W) sit at axes
        // 1 and 2 of the probabilities, not 2 and 3.
        if let (Task::Segmentation, Some(m)) = (task, &inputs.masks)
            && m.shape().len() == 3
            && m.shape()[1..] == probs_shape[1..3]
            && m.shape()[1..] != probs_shape[2..]
        {
            return Err(arg(
                "probs",
                format!(
                    "shape {probs_shape:?} looks channels-last, (N, H, W, C), beside masks of \
                     shape {:?}; triage reads (N, C, H, W): pass \
                     np.ascontiguousarray(probs.transpose(0, 3, 1, 2))",
                    m.shape()
                ),
            ));
        }
        if n == 0 {
            return Err(Error::input(
                "probs",
                "empty dataset: there are no items to score",
            ));
        }
        let max = task.max_classes();
        if !(2..=max).contains(&c) {
            return Err(arg(
                "probs",
                format!(
                    "{c} classes; a {} dataset has from 2 to {max} (docs/threat-model.md)",
                    task.name()
                ),
            ));
        }
        let class_names = match class_names {
            Some(names) => {
                if names.len() != c {
                    return Err(Error::input(
                        "class_names",
                        format!(
                            "{} names but the probabilities have {c} classes",
                            names.len()
                        ),
                    ));
                }
                check_class_names(&names).map_err(|m| Error::input("class_names", m))?;
                names
            }
            None => (0..c).map(|k| k.to_string()).collect(),
        };
        let ignore = ignore_index.unwrap_or(255);
        check_ignore_index(task, ignore, c).map_err(|m| Error::input("ignore_index", m))?;
        let rows = |name: &str, s: &ArraySource, ok: &[usize]| -> Result<()> {
            let shape = s.shape();
            if !ok.contains(&shape.len()) || shape[0] != n {
                return Err(arg(
                    name,
                    format!("shape {shape:?} does not have one row per item ({n} items)"),
                ));
            }
            Ok(())
        };
        if let Some(l) = &inputs.labels {
            rows("labels", l, &[1, 2])?;
            if l.shape().len() == 2 && l.shape()[1] != 1 {
                return Err(arg(
                    "labels",
                    format!("labels must have shape (N,), found {:?}", l.shape()),
                ));
            }
            if l.dtype().is_float() {
                return Err(
                    Error::input("labels", "labels must have an integer dtype").field("dtype")
                );
            }
        }
        match (&inputs.masks, task) {
            (Some(m), Task::Segmentation) => {
                rows("masks", m, &[3])?;
                if m.shape()[1..] != probs_shape[2..] {
                    return Err(arg(
                        "masks",
                        format!(
                            "masks of shape {:?} do not match the probabilities' (N, H, W) {:?}",
                            m.shape(),
                            [n, probs_shape[2], probs_shape[3]]
                        ),
                    ));
                }
                if m.dtype().is_float() {
                    return Err(
                        Error::input("masks", "masks must have an integer dtype").field("dtype")
                    );
                }
            }
            (None, Task::Segmentation) => {
                return Err(Error::Usage(
                    "segmentation needs `masks`, (N, H, W) class ids".into(),
                ));
            }
            (Some(_), Task::Classification) => {
                return Err(Error::Usage(
                    "`masks` is for segmentation; classification takes `labels`".into(),
                ));
            }
            (None, Task::Classification) => {}
        }
        if task == Task::Segmentation && inputs.labels.is_some() {
            return Err(Error::Usage(
                "`labels` is for classification; segmentation takes `masks`".into(),
            ));
        }
        if let Some(e) = &inputs.embeddings {
            rows("embeddings", e, &[2])?;
            if e.shape()[1] == 0 {
                return Err(arg("embeddings", "embedding dimension D is 0".into()));
            }
            if !e.dtype().is_float() {
                return Err(Error::input(
                    "embeddings",
                    "embeddings must be float16, float32 or float64",
                )
                .field("dtype"));
            }
        }
        if let Some(ids) = &inputs.ids {
            if ids.len() != n {
                return Err(Error::input(
                    "ids",
                    format!("{} ids but {n} items", ids.len()),
                ));
            }
            let mut seen = std::collections::HashMap::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                if id.trim().is_empty() || id.trim() != id {
                    return Err(Error::input(
                        "ids",
                        format!("id {i} is empty or has leading or trailing spaces"),
                    )
                    .item(id.clone()));
                }
                if let Some(first) = seen.insert(id.as_str(), i) {
                    return Err(Error::input(
                        "ids",
                        format!("duplicate id: items {first} and {i} both use it"),
                    )
                    .item(id.clone()));
                }
            }
        }
        let dir = PathBuf::from("(arrays)");
        let named = |name: &str, given: bool| given.then(|| PathBuf::from(name));
        Ok(DatasetConfig {
            dir: dir.clone(),
            task,
            class_names,
            ignore_index: ignore as u16,
            items: None,
            probs: PathBuf::from("probs"),
            labels: named("labels", inputs.labels.is_some()),
            embeddings: named("embeddings", inputs.embeddings.is_some()),
            annotations,
            roots: DatasetRoots {
                dataset: dir,
                extra: Vec::new(),
            },
            memory: Some(std::sync::Arc::new(inputs)),
            labels_file: None,
            label_set: None,
            label_map: None,
            probs_layout: ProbsLayout::Nchw,
            probs_key: None,
        })
    }

    /// Number of classes `C`.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Read and validate `<dir>/triage.toml`. `dir` may also name the
    /// `triage.toml` file itself ([`dataset_dir`]).
    pub fn load(dir: &Path) -> Result<Self> {
        let dir = &dataset_dir(dir)?;
        let path = dir.join(MANIFEST);
        let text = crate::fsx::read_input_string(&path, MAX_MANIFEST_BYTES, "triage.toml")?;
        let mut raw: RawConfig =
            toml::from_str(&text).map_err(|e| Error::input(&path, e.to_string().trim_end()))?;
        let bad = |field: &str, msg: String| Error::input(&path, msg).field(field.to_string());

        let max = raw.task.max_classes();
        let too_many = |field: &str, n: u64| {
            bad(
                field,
                format!(
                    "{n} classes; a {} dataset has at most {max} (its class × class tables grow \
                     with the square of the count; docs/threat-model.md)",
                    raw.task.name()
                ),
            )
        };
        if let Some(n) = raw.num_classes
            && n > max as u64
        {
            return Err(too_many("num_classes", n));
        }
        if let Some(names) = &raw.classes
            && names.len() > max
        {
            return Err(too_many("classes", names.len() as u64));
        }
        let labels_named: Vec<(LabelFormat, PathBuf)> = [
            (LabelFormat::Coco, raw.inputs.coco.take()),
            (LabelFormat::Cvat, raw.inputs.cvat.take()),
            (LabelFormat::LabelStudio, raw.inputs.labelstudio.take()),
        ]
        .into_iter()
        .filter_map(|(f, p)| p.map(|p| (f, p)))
        .collect();
        if labels_named.len() > 1 {
            return Err(bad(
                &format!("inputs.{}", labels_named[1].0.field()),
                "name one labels file (`coco`, `cvat` or `labelstudio`), not several".into(),
            ));
        }
        let labels_named = labels_named.into_iter().next();
        if let Some((f, _)) = &labels_named
            && raw.inputs.labels.is_some()
        {
            return Err(bad(
                "inputs.labels",
                format!(
                    "`labels` and `{}` both give the labels; name one",
                    f.field()
                ),
            ));
        }
        if labels_named.is_none() {
            for (given, key) in [
                (raw.inputs.id_from.is_some(), "id_from"),
                (raw.inputs.unlabeled.is_some(), "unlabeled"),
                (raw.inputs.overlap.is_some(), "overlap"),
                (raw.inputs.images.is_some(), "images"),
            ] {
                if given {
                    return Err(bad(
                        &format!("inputs.{key}"),
                        format!(
                            "`{key}` applies to a labels file: name one with `coco`, `cvat` or \
                             `labelstudio`"
                        ),
                    ));
                }
            }
        }
        let classes_from_file =
            labels_named.is_some() && raw.num_classes.is_none() && raw.classes.is_none();
        let classes_named = raw.classes.is_some();
        let class_names = match (raw.num_classes, raw.classes) {
            // Filled from the labels file's categories by
            // `io::labelfile::attach`.
            (None, None) if classes_from_file => Vec::new(),
            (None, None) => {
                return Err(bad(
                    "num_classes",
                    "give `num_classes` or a `classes` list".into(),
                ));
            }
            // Bounded by `max` above.
            (Some(n), None) => (0..n).map(|k| k.to_string()).collect(),
            (n, Some(names)) => {
                if let Some(n) = n
                    && n != names.len() as u64
                {
                    return Err(bad(
                        "classes",
                        format!("num_classes = {n} but `classes` lists {}", names.len()),
                    ));
                }
                check_class_names(&names).map_err(|m| bad("classes", m))?;
                names
            }
        };
        if class_names.len() < 2 && !classes_from_file {
            return Err(bad(
                "num_classes",
                format!("need at least 2 classes, got {}", class_names.len()),
            ));
        }
        let ignore = raw.ignore_index.unwrap_or(255);
        check_ignore_index(raw.task, ignore, class_names.len())
            .map_err(|m| bad("ignore_index", m))?;
        let label_map = match raw.label_map {
            None => None,
            Some(_) if raw.task != Task::Segmentation => {
                return Err(bad(
                    "label_map",
                    "`label_map` maps mask values; it is for segmentation".into(),
                ));
            }
            Some(table) => {
                let mut map = vec![ignore as u16; 1 << 16];
                for (key, &class) in &table {
                    let field = format!("label_map.{key}");
                    let raw_value: u16 = key.trim().parse().map_err(|_| {
                        bad(
                            &field,
                            format!("the key {key:?} is not a mask value (an integer 0 to 65535)"),
                        )
                    })?;
                    if (class as usize) >= class_names.len() && class != ignore {
                        return Err(bad(
                            &field,
                            format!(
                                "maps to {class}, which is neither a class id ({}) nor the \
                                 ignore index {ignore}",
                                class_range(class_names.len())
                            ),
                        ));
                    }
                    map[raw_value as usize] = class as u16;
                }
                Some(std::sync::Arc::new(map))
            }
        };
        if raw.task == Task::Classification && raw.inputs.probs_layout.is_some() {
            return Err(bad(
                "inputs.probs_layout",
                "`probs_layout` orders segmentation probabilities' axes; classification's are (N, C)"
                    .into(),
            ));
        }
        if let Some(key) = &raw.inputs.probs_key
            && (key.is_empty() || key.len() > 255 || key.contains(['/', '\\', '\0']))
        {
            return Err(bad(
                "inputs.probs_key",
                format!("{key:?} is not an array name of a .npz archive"),
            ));
        }
        let dataset = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let mut extra = Vec::new();
        for r in raw.inputs.roots.unwrap_or_default() {
            if !r.is_absolute() {
                return Err(bad(
                    "inputs.roots",
                    format!(
                        "root {:?} is not an absolute path (paths inside the dataset need no root)",
                        r.display().to_string()
                    ),
                ));
            }
            let real = r.canonicalize().map_err(|e| {
                bad(
                    "inputs.roots",
                    format!("root {:?} cannot be resolved: {e}", r.display().to_string()),
                )
            })?;
            if !real.is_dir() {
                return Err(bad(
                    "inputs.roots",
                    format!("root {:?} is not a directory", r.display().to_string()),
                ));
            }
            extra.push(real);
        }
        let roots = DatasetRoots { dataset, extra };
        let resolve = |p: PathBuf, field: &str| {
            roots.check(&dir.join(&p), &p, &path, None, &format!("inputs.{field}"))
        };
        let opt = |p: Option<PathBuf>, field: &str| p.map(|p| resolve(p, field)).transpose();
        let cfg = DatasetConfig {
            dir: dir.to_path_buf(),
            task: raw.task,
            class_names,
            ignore_index: ignore as u16,
            items: opt(raw.inputs.items, "items")?,
            probs: resolve(raw.inputs.probs, "probs")?,
            labels: opt(raw.inputs.labels, "labels")?,
            embeddings: opt(raw.inputs.embeddings, "embeddings")?,
            annotations: opt(raw.inputs.annotations, "annotations")?,
            roots,
            memory: None,
            labels_file: None,
            label_set: None,
            label_map,
            probs_layout: raw.inputs.probs_layout.unwrap_or_default(),
            probs_key: raw.inputs.probs_key,
        };
        let mut cfg = cfg;
        if let Some((format, p)) = labels_named {
            let named = p.clone();
            cfg.labels_file = Some(LabelsInput {
                format,
                path: cfg.roots.check(
                    &dir.join(&p),
                    &named,
                    &path,
                    None,
                    &format!("inputs.{}", format.field()),
                )?,
                id_from: raw.inputs.id_from.unwrap_or_default(),
                unlabeled: raw.inputs.unlabeled.unwrap_or_default(),
                overlap: raw.inputs.overlap.unwrap_or_default(),
                classes_from_file,
                classes_named,
                images: raw.inputs.images.take(),
            });
            return Ok(cfg);
        }
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

    /// The items CSV, for naming it in errors (`items.csv` when the dataset
    /// has none).
    pub fn items_file(&self) -> &Path {
        self.items.as_deref().unwrap_or(Path::new("items.csv"))
    }

    /// A path named by the dataset, relative to the dataset directory (or
    /// absolute), after [`DatasetRoots::check`]: `by` is the file that
    /// names it, `item` and `field` where.
    pub fn resolve(
        &self,
        named: &Path,
        by: &Path,
        item: Option<&str>,
        field: &str,
    ) -> Result<PathBuf> {
        self.roots
            .check(&self.dir.join(named), named, by, item, field)
    }

    /// The file named by item `id`'s `column` cell (`mask`, `image`) of the
    /// items CSV, resolved by [`DatasetConfig::resolve`].
    pub fn item_file(&self, id: &str, column: &str, cell: &str) -> Result<PathBuf> {
        self.resolve(Path::new(cell.trim()), self.items_file(), Some(id), column)
    }

    /// Item `id`'s probabilities in a directory of per-item files,
    /// `<probs>/<id>.npy`: the id must name a file inside the directory
    /// (no `..`, `.` or root component), and the file must pass
    /// [`DatasetRoots::check`].
    pub fn item_probs(&self, id: &str) -> Result<PathBuf> {
        let name = PathBuf::from(format!("{id}.npy"));
        let plain = name.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(Error::input(
                self.items_file(),
                format!(
                    "the id {id:?} does not name a file inside the probabilities directory {} \
                     (it holds `..`, `.` or a leading `/`)",
                    self.probs.display()
                ),
            )
            .item(id)
            .field("id"));
        }
        self.roots.check(
            &self.probs.join(&name),
            &name,
            self.items_file(),
            Some(id),
            "id",
        )
    }

    /// True when the classes have names of their own (`classes` in
    /// `triage.toml`, a labels file's categories, `class_names` given in
    /// memory), not only the numerals `"0"`, `"1"`, ... that `num_classes`
    /// alone gives.
    pub fn classes_named(&self) -> bool {
        self.class_names
            .iter()
            .enumerate()
            .any(|(k, n)| *n != k.to_string())
    }

    /// The message for a label `text` that [`DatasetConfig::parse_class`]
    /// refused, `what` being its field (`label`, `corrected_label`): empty
    /// text is named as such; an integer is out of the class range (`0 to C-1`, both ends
    /// included); other text is no class name, and the message says where
    /// names are listed: the first few names when the classes have names
    /// (and the name differing only in case or spaces, if one does), else
    /// how to list them (`classes = [...]` in `triage.toml`, or
    /// `class_names` for arrays given in memory).
    pub fn unknown_class(&self, what: &str, text: &str) -> String {
        let c = self.num_classes();
        let range = class_range(c);
        if text.trim().is_empty() {
            return format!("empty {what}: give a class index {range} or a class name");
        }
        if text.trim().parse::<i64>().is_ok() {
            return format!("{what} {text:?} is not a class index {range} ({c} classes)");
        }
        let head = format!("{what} {text:?} is neither a class index {range} nor a class name");
        let in_memory = self.memory.is_some();
        if !self.classes_named() {
            return if in_memory {
                format!(
                    "{head}: no class names were given; to label by name, pass \
                     class_names=[\"cat\", \"dog\", ...] (one per class, in index order)"
                )
            } else {
                format!(
                    "{head}: triage.toml names no classes (num_classes = {c}); to label by \
                     name, list the names in class index order in triage.toml: \
                     classes = [\"cat\", \"dog\", ...]"
                )
            };
        }
        let folded = text.trim().to_lowercase();
        let near = self
            .class_names
            .iter()
            .find(|n| n.trim().to_lowercase() == folded);
        let source = if in_memory {
            "class_names"
        } else if self
            .labels_file
            .as_ref()
            .is_some_and(|l| l.classes_from_file)
        {
            "the labels file's categories"
        } else {
            "triage.toml's classes"
        };
        let mut msg = format!("{head}; {source} are {}", some_names(&self.class_names, 5));
        if let Some(n) = near {
            msg.push_str(&format!(" (did you mean {n:?}? a name must match exactly)"));
        }
        msg
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, toml: &str) {
        std::fs::write(dir.join(MANIFEST), toml).unwrap();
    }

    fn load_err(dir: &Path, toml: &str) -> String {
        write(dir, toml);
        DatasetConfig::load(dir).unwrap_err().to_string()
    }

    #[test]
    fn class_counts_are_bounded_before_anything_is_sized() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let inputs = "[inputs]\nprobs = \"p.npy\"\nlabels = \"l.npy\"\n";
        let e = load_err(
            d,
            &format!("task = \"classification\"\nnum_classes = 4000000000000\n{inputs}"),
        );
        assert!(
            e.contains("triage.toml") && e.contains("num_classes") && e.contains("at most 4096"),
            "{e}"
        );
        write(
            d,
            &format!("task = \"classification\"\nnum_classes = 4096\n{inputs}"),
        );
        assert_eq!(DatasetConfig::load(d).unwrap().num_classes(), 4096);
        let e = load_err(
            d,
            "task = \"segmentation\"\nnum_classes = 1025\nignore_index = 2000\n\
             [inputs]\nitems = \"i.csv\"\nprobs = \"p.npy\"\n",
        );
        assert!(e.contains("at most 1024"), "{e}");
        let names: Vec<String> = (0..4097).map(|k| format!("\"c{k}\"")).collect();
        let e = load_err(
            d,
            &format!(
                "task = \"classification\"\nclasses = [{}]\n{inputs}",
                names.join(",")
            ),
        );
        assert!(e.contains("classes") && e.contains("4097 classes"), "{e}");
    }

    #[test]
    fn numeral_names_must_equal_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let inputs = "[inputs]\nprobs = \"p.npy\"\nlabels = \"l.npy\"\n";
        let e = load_err(
            d,
            &format!("task = \"classification\"\nclasses = [\"1\", \"0\", \"2\"]\n{inputs}"),
        );
        assert!(
            e.contains("triage.toml")
                && e.contains(": classes:")
                && e.contains("class 0 is named \"1\""),
            "{e}"
        );
        // "01" reads as index 1 too.
        let e = load_err(
            d,
            &format!("task = \"classification\"\nclasses = [\"a\", \"b\", \"01\"]\n{inputs}"),
        );
        assert!(e.contains("class 2 is named \"01\""), "{e}");
        write(
            d,
            &format!("task = \"classification\"\nclasses = [\"0\", \"cat\", \"2\"]\n{inputs}"),
        );
        let cfg = DatasetConfig::load(d).unwrap();
        assert_eq!(cfg.parse_class("2"), Some(2));
        assert_eq!(cfg.parse_class("cat"), Some(1));
    }

    #[test]
    fn unknown_labels_name_the_inclusive_range_and_where_names_go() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let inputs = "[inputs]\nprobs = \"p.npy\"\nlabels = \"l.npy\"\n";
        write(
            d,
            &format!("task = \"classification\"\nnum_classes = 3\n{inputs}"),
        );
        let cfg = DatasetConfig::load(d).unwrap();
        assert!(!cfg.classes_named());
        assert_eq!(
            cfg.unknown_class("label", " "),
            "empty label: give a class index 0 to 2 or a class name"
        );
        assert_eq!(
            cfg.unknown_class("label", "-1"),
            "label \"-1\" is not a class index 0 to 2 (3 classes)"
        );
        assert!(
            cfg.unknown_class("label", "cat")
                .ends_with("in triage.toml: classes = [\"cat\", \"dog\", ...]")
        );
        write(
            d,
            &format!("task = \"classification\"\nclasses = [\"0\", \"Cat\", \"2\"]\n{inputs}"),
        );
        let cfg = DatasetConfig::load(d).unwrap();
        assert!(cfg.classes_named());
        assert_eq!(
            cfg.unknown_class("corrected_label", "cat"),
            "corrected_label \"cat\" is neither a class index 0 to 2 nor a class name; \
             triage.toml's classes are \"0\", \"Cat\", \"2\" (did you mean \"Cat\"? a name \
             must match exactly)"
        );
    }

    #[test]
    fn a_dataset_is_its_directory_or_its_triage_toml() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "x");
        assert_eq!(dataset_dir(d).unwrap(), d);
        assert_eq!(dataset_dir(&d.join(MANIFEST)).unwrap(), d);
        std::fs::write(d.join("items.csv"), "id\n").unwrap();
        let e = dataset_dir(&d.join("items.csv")).unwrap_err().to_string();
        assert!(
            e.ends_with(&format!(
                "items.csv: this is a file, not a dataset directory; pass the directory \
                 holding triage.toml: {}",
                d.display()
            )),
            "{e}"
        );
        let e = dataset_dir(&d.join("none")).unwrap_err().to_string();
        assert!(e.ends_with("none: dataset directory not found"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn paths_stay_inside_the_dataset_or_its_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("ds");
        let outside = tmp.path().join("elsewhere");
        std::fs::create_dir_all(d.join("masks")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("m.png"), b"x").unwrap();
        std::fs::write(d.join("masks/a.png"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.join("m.png"), d.join("masks/link.png")).unwrap();
        let toml = "task = \"classification\"\nnum_classes = 2\n[inputs]\nitems = \"items.csv\"\nprobs = \"p\"\n";
        write(&d, toml);
        let cfg = DatasetConfig::load(&d).unwrap();
        assert_eq!(
            cfg.item_file("a", "mask", "masks/a.png").unwrap(),
            d.join("masks/a.png")
        );
        // Inside after `..` is fine; a missing file passes (its reader says so).
        assert!(cfg.item_file("a", "mask", "masks/../masks/a.png").is_ok());
        assert!(cfg.item_file("a", "mask", "masks/none.png").is_ok());
        let out_abs = outside.join("m.png");
        for cell in [
            "../elsewhere/m.png",
            out_abs.to_str().unwrap(),
            "masks/link.png",
        ] {
            let e = cfg.item_file("x7", "mask", cell).unwrap_err().to_string();
            assert!(
                e.contains("items.csv")
                    && e.contains("item \"x7\"")
                    && e.contains(": mask:")
                    && e.contains("outside the dataset"),
                "{cell}: {e}"
            );
        }
        std::fs::create_dir_all(d.join("p")).unwrap();
        std::fs::write(tmp.path().join("ds/x.npy"), b"x").unwrap();
        let e = cfg.item_probs("../x").unwrap_err().to_string();
        assert!(e.contains("item \"../x\"") && e.contains("`..`"), "{e}");
        assert!(cfg.item_probs("sub/a").is_ok());
        // An [inputs] path leading out is refused at load.
        let e = load_err(
            &d,
            "task = \"classification\"\nnum_classes = 2\n[inputs]\nitems = \"items.csv\"\nprobs = \"../elsewhere/m.png\"\n",
        );
        assert!(
            e.contains("triage.toml") && e.contains("inputs.probs") && e.contains("outside"),
            "{e}"
        );
        // ... and accepted once its directory is a root.
        write(
            &d,
            &format!(
                "task = \"classification\"\nnum_classes = 2\n[inputs]\nitems = \"items.csv\"\n\
                 probs = \"../elsewhere/m.png\"\nroots = [{:?}]\n",
                outside.to_str().unwrap()
            ),
        );
        let cfg = DatasetConfig::load(&d).unwrap();
        assert!(cfg.item_file("x7", "mask", "masks/link.png").is_ok());
        assert!(
            cfg.item_file("x7", "mask", out_abs.to_str().unwrap())
                .is_ok()
        );
        let e = load_err(
            &d,
            "task = \"classification\"\nnum_classes = 2\n[inputs]\nprobs = \"p\"\nitems = \"i\"\nroots = [\"rel\"]\n",
        );
        assert!(e.contains("inputs.roots") && e.contains("absolute"), "{e}");
    }
}
