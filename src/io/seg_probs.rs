//! "The probabilities of item i" of a segmentation dataset, in one place:
//! one stacked `(N, C, H, W)` array, or a directory of `<id>.npy` files, each
//! `(C, H, W)`, opened and checked (dtype, shape, class count) here. The
//! score stage, the overlays and the review hashes read items through it.

use std::path::Path;

use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::io::npy::NpyArray;

/// Where an item's probabilities live.
enum Source {
    /// One `(N, C, H, W)` array.
    Stacked(NpyArray),
    /// A directory of `<id>.npy`, each `(C, H, W)`; the last one opened is
    /// kept, so peeking at an item's size and reading it open it once. The
    /// dataset's description resolves `<id>.npy` inside it
    /// ([`DatasetConfig::item_probs`]).
    PerItem {
        cfg: Box<DatasetConfig>,
        open: Option<(usize, NpyArray)>,
    },
}

/// A segmentation dataset's probabilities, item by item.
pub struct SegProbs {
    source: Source,
    classes: usize,
}

impl SegProbs {
    /// The array holding item `i`, the element where the item starts, and
    /// its height and width. Per-item files are opened and validated here.
    pub fn item(&mut self, i: usize, id: &str) -> Result<(&mut NpyArray, usize, usize, usize)> {
        let c = self.classes;
        match &mut self.source {
            Source::Stacked(arr) => {
                let (h, w) = (arr.shape[2], arr.shape[3]);
                Ok((arr, i * c * h * w, h, w))
            }
            Source::PerItem { cfg, open } => {
                if open.as_ref().map(|(j, _)| *j) != Some(i) {
                    let path = cfg.item_probs(id)?;
                    let arr = NpyArray::open(&path).map_err(|e| e.item(id))?;
                    let [pc, _, _] = arr.shape[..] else {
                        return Err(Error::input(
                            &path,
                            format!("expected shape (C, H, W), found {:?}", arr.shape),
                        )
                        .item(id)
                        .field("shape"));
                    };
                    if pc != c {
                        return Err(Error::input(
                            &path,
                            format!("{pc} classes but {c} in triage.toml"),
                        )
                        .item(id)
                        .field("shape"));
                    }
                    if !arr.dtype.is_float() {
                        return Err(Error::input(
                            &path,
                            "probabilities must be float16, float32 or float64",
                        )
                        .item(id)
                        .field("dtype"));
                    }
                    *open = Some((i, arr));
                }
                match open {
                    Some((_, arr)) => {
                        let (h, w) = (arr.shape[1], arr.shape[2]);
                        Ok((arr, 0, h, w))
                    }
                    None => unreachable!("opened above"),
                }
            }
        }
    }
}

/// The probabilities' class count `pc` must be the configuration's.
pub fn same_classes(cfg: &DatasetConfig, pc: usize) -> Result<()> {
    same_classes_in(cfg, pc, &[])
}

/// [`same_classes`] for an array of `shape` (segmentation's `(N, C, H, W)`):
/// when its last axis, not its second, has the class count, the message
/// says the array looks channels-last and how to fix it.
pub fn same_classes_in(cfg: &DatasetConfig, pc: usize, shape: &[usize]) -> Result<()> {
    let c = cfg.num_classes();
    if pc != c {
        return Err(Error::input(
            &cfg.probs,
            format!(
                "{pc} classes in the probabilities but {c} in triage.toml{}",
                channels_last_hint(shape, c)
            ),
        )
        .field("shape"));
    }
    Ok(())
}

/// For a 4-D `(N, C, H, W)` probabilities `shape` whose last axis, not its
/// second, has `c` entries: the hint that it is channels-last and the fix.
/// Empty otherwise.
pub fn channels_last_hint(shape: &[usize], c: usize) -> String {
    match shape {
        [_, second, _, last] if *last == c && *second != c => format!(
            " (the last axis has {c} entries: the array looks channels-last, (N, H, W, C); \
             triage reads (N, C, H, W): save np.ascontiguousarray(probs.transpose(0, 3, 1, 2)))"
        ),
        _ => String::new(),
    }
}

/// The segmentation probabilities: a directory of per-item files (opened
/// and checked item by item), or one stacked `(N, C, H, W)` array, checked
/// here against the items and the class count.
pub fn open(cfg: &DatasetConfig, manifest: &Manifest) -> Result<SegProbs> {
    let items_path = cfg
        .items
        .as_deref()
        .or_else(|| cfg.label_set.as_ref().map(|s| s.path.as_path()))
        .unwrap_or(Path::new("the items CSV"));
    let source = if crate::io::inputs::probs_dir(cfg) {
        Source::PerItem {
            cfg: Box::new(cfg.clone()),
            open: None,
        }
    } else {
        let arr = crate::io::inputs::open(cfg, &cfg.probs)?;
        if !arr.dtype.is_float() {
            return Err(Error::input(
                &cfg.probs,
                "probabilities must be float16, float32 or float64",
            )
            .field("dtype"));
        }
        let [n, pc, _, _] = arr.shape[..] else {
            return Err(Error::input(
                &cfg.probs,
                format!(
                    "expected shape (N, C, H, W) for segmentation, found {:?}",
                    arr.shape
                ),
            )
            .field("shape"));
        };
        if n != manifest.len() {
            return Err(Error::input(
                &cfg.probs,
                format!(
                    "{n} items of probabilities but {} rows in {}",
                    manifest.len(),
                    items_path.display()
                ),
            )
            .field("shape"));
        }
        same_classes_in(cfg, pc, &arr.shape)?;
        Source::Stacked(arr)
    };
    Ok(SegProbs {
        source,
        classes: cfg.num_classes(),
    })
}
