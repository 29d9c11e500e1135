//! A dataset's arrays, wherever they lie: the `.npy` files its
//! `triage.toml` names, or the arrays given in memory
//! ([`DatasetConfig::in_memory`], the Python API). Every reader of the run
//! opens them here, so both kinds go through the same [`NpyArray`] and
//! the same score stage.

use std::path::Path;

use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::manifest::{Cells, Manifest};
use crate::io::npy::NpyArray;
use crate::memory::ArraySource;

/// The names the in-memory arrays go by in errors (the Python API's
/// argument names), and as the configuration's paths.
pub const PROBS: &str = "probs";
/// See [`PROBS`].
pub const LABELS: &str = "labels";
/// See [`PROBS`].
pub const MASKS: &str = "masks";
/// See [`PROBS`].
pub const EMBEDDINGS: &str = "embeddings";

/// Open the array `path` of `cfg` (one of its `probs`, `labels`,
/// `embeddings` paths): the `.npy` file or `.npz` member
/// ([`crate::io::npz::open_input`]), or for an in-memory dataset the array
/// given under that name.
pub fn open(cfg: &DatasetConfig, path: &Path) -> Result<NpyArray> {
    let Some(mem) = &cfg.memory else {
        return crate::io::npz::open_input(cfg, path);
    };
    let source = match path.to_str() {
        Some(PROBS) => Some(&mem.probs),
        Some(LABELS) => mem.labels.as_ref(),
        Some(MASKS) => mem.masks.as_ref(),
        Some(EMBEDDINGS) => mem.embeddings.as_ref(),
        _ => None,
    };
    match source {
        Some(s) => NpyArray::from_source(path, s),
        None => Err(Error::Internal(format!(
            "no array named {} was given",
            path.display()
        ))),
    }
}

/// True when the probabilities are a directory of per-item files (never
/// for arrays given in memory).
pub fn probs_dir(cfg: &DatasetConfig) -> bool {
    cfg.memory.is_none() && cfg.probs.is_dir()
}

/// The items of an in-memory dataset of `n` items: the ids given (or
/// `"0"`, `"1"`, ...); segmentation items get a `mask` column (every item
/// labelled, its map in the `masks` array).
pub fn memory_manifest(cfg: &DatasetConfig, n: usize) -> Option<Manifest> {
    let mem = cfg.memory.as_ref()?;
    let mut m = match &mem.ids {
        Some(ids) => Manifest {
            columns: vec![],
            ids: ids.iter().collect(),
            rows: Cells::empty_rows(ids.len()),
        },
        None => Manifest::numbered(n),
    };
    if cfg.task == crate::config::Task::Segmentation {
        m.columns = vec!["id".into(), "mask".into()];
        m.rows = Cells::tabulate(m.ids.len(), 2, |i, j| match j {
            0 => &m.ids[i],
            _ => MASKS,
        });
    }
    Some(m)
}

/// The files an in-memory dataset reads (its arrays given as file ranges),
/// for [`crate::output::check_out`].
pub fn memory_files(cfg: &DatasetConfig) -> Vec<std::path::PathBuf> {
    let Some(mem) = &cfg.memory else {
        return Vec::new();
    };
    [
        Some(&mem.probs),
        mem.labels.as_ref(),
        mem.masks.as_ref(),
        mem.embeddings.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|s| match s {
        ArraySource::File { path, .. } => Some(path.clone()),
        ArraySource::Memory(_) => None,
    })
    .collect()
}

/// Item `index`'s label map when it is not a mask file: painted from the
/// dataset's labels file ([`crate::io::labelfile::mask`]), or an
/// in-memory dataset's `masks` row ([`memory_mask`]). `None` when the
/// item's `mask` cell names a PNG.
pub fn given_mask(
    cfg: &DatasetConfig,
    id: &str,
    index: usize,
    expect: (usize, usize),
) -> Option<Result<Vec<u16>>> {
    crate::io::labelfile::mask(cfg, id, index, expect)
        .or_else(|| memory_mask(cfg, id, index, expect))
}

/// Item `index`'s label map of an in-memory dataset (`masks`, `(N, H, W)`
/// integers), checked as a mask file is: every value a class id or the
/// ignore index. `None` for a dataset of files.
pub fn memory_mask(
    cfg: &DatasetConfig,
    id: &str,
    index: usize,
    expect: (usize, usize),
) -> Option<Result<Vec<u16>>> {
    cfg.memory.as_ref()?;
    Some((|| {
        let name = Path::new(MASKS);
        let mut arr = open(cfg, name)?;
        let (h, w) = expect;
        let [_, mh, mw] = arr.shape[..] else {
            return Err(Error::input(name, "masks must have shape (N, H, W)").field("shape"));
        };
        if (mh, mw) != (h, w) {
            return Err(Error::input(
                name,
                format!("the mask is {mh}×{mw} but the probabilities are {h}×{w}"),
            )
            .item(id)
            .field("mask"));
        }
        let raw = arr.read_ints_range(index * h * w, h * w)?;
        crate::io::mask::check_classes(&raw, w, cfg.num_classes(), cfg.ignore_index, name, id)?;
        // Every value is below 2^16: a class id or the 16-bit ignore index.
        Ok(raw.iter().map(|&v| v as u16).collect())
    })())
}
