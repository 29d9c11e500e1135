//! "The probabilities of item i" of a segmentation dataset, in one place:
//! one stacked `(N, C, H, W)` array (a `.npy` file, or a `.npz` archive's
//! member), or a directory of `<id>.npy` files, each `(C, H, W)`, opened and
//! checked (dtype, shape, class count) here. With `probs_layout = "nhwc"`
//! the arrays are channels-last, `(N, H, W, C)` and `(H, W, C)`: each item
//! is read whole and handed out transposed to `(C, H, W)`
//! ([`NpyArray::set_channels_last`]), so the readers need not know. The
//! score stage, the overlays and the review hashes read items through it.

use std::path::Path;

use crate::config::{DatasetConfig, ProbsLayout};
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::io::npy::NpyArray;

/// Where an item's probabilities live.
enum Source {
    /// One `(N, C, H, W)` array (`(N, H, W, C)` channels-last).
    Stacked(NpyArray),
    /// A directory of `<id>.npy`, each `(C, H, W)` (`(H, W, C)`); the last
    /// one opened is kept, so peeking at an item's size and reading it open
    /// it once. The dataset's description resolves `<id>.npy` inside it
    /// ([`DatasetConfig::item_probs`]).
    PerItem {
        cfg: Box<DatasetConfig>,
        /// The item, its array, height and width.
        open: Option<(usize, NpyArray, usize, usize)>,
    },
}

/// A segmentation dataset's probabilities, item by item.
pub struct SegProbs {
    source: Source,
    classes: usize,
    /// `probs_layout = "nhwc"`.
    nhwc: bool,
}

/// The class count, height and width of an item's `(C, H, W)` shape, or
/// of `(H, W, C)` when `nhwc`; `None` for a shape of another rank.
fn item_dims(shape: &[usize], nhwc: bool) -> Option<(usize, usize, usize)> {
    match (shape, nhwc) {
        (&[c, h, w], false) | (&[h, w, c], true) => Some((c, h, w)),
        _ => None,
    }
}

/// The shape an item file must have, for messages.
fn item_form(nhwc: bool) -> &'static str {
    if nhwc {
        "(H, W, C) (probs_layout = \"nhwc\")"
    } else {
        "(C, H, W)"
    }
}

impl SegProbs {
    /// The array holding item `i`, the element where the item starts, and
    /// its height and width. Per-item files are opened and validated here.
    /// A channels-last array hands the item out as `(C, H, W)`.
    pub fn item(&mut self, i: usize, id: &str) -> Result<(&mut NpyArray, usize, usize, usize)> {
        let (c, nhwc) = (self.classes, self.nhwc);
        match &mut self.source {
            Source::Stacked(arr) => {
                let (h, w) = if nhwc {
                    (arr.shape[1], arr.shape[2])
                } else {
                    (arr.shape[2], arr.shape[3])
                };
                Ok((arr, i * c * h * w, h, w))
            }
            Source::PerItem { cfg, open } => {
                if open.as_ref().map(|o| o.0) != Some(i) {
                    let path = cfg.item_probs(id)?;
                    let mut arr = NpyArray::open(&path).map_err(|e| e.item(id))?;
                    let Some((pc, h, w)) = item_dims(&arr.shape, nhwc) else {
                        return Err(Error::input(
                            &path,
                            format!("expected shape {}, found {:?}", item_form(nhwc), arr.shape),
                        )
                        .item(id)
                        .field("shape"));
                    };
                    if pc != c {
                        return Err(Error::input(
                            &path,
                            format!(
                                "{pc} classes but {c} in triage.toml{}",
                                layout_hint(cfg, &arr.shape[..], c, nhwc)
                            ),
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
                    if nhwc {
                        arr.set_channels_last(c, h * w);
                    }
                    *open = Some((i, arr, h, w));
                }
                match open {
                    Some((_, arr, h, w)) => Ok((arr, 0, *h, *w)),
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

/// [`same_classes`] for an array of `shape` (segmentation's stacked
/// `(N, C, H, W)`, or `(N, H, W, C)` with `probs_layout = "nhwc"`): when
/// another axis than the configured one has the class count, the message
/// says which layout the array looks like and how to read it.
pub fn same_classes_in(cfg: &DatasetConfig, pc: usize, shape: &[usize]) -> Result<()> {
    let c = cfg.num_classes();
    if pc != c {
        let nhwc = cfg.probs_layout == ProbsLayout::Nhwc;
        return Err(Error::input(
            &cfg.probs,
            format!(
                "{pc} classes in the probabilities but {c} in triage.toml{}",
                layout_hint(cfg, shape, c, nhwc)
            ),
        )
        .field("shape"));
    }
    Ok(())
}

/// For a 4-D `(N, C, H, W)` probabilities `shape` whose last axis, not its
/// second, has `c` entries: the hint that it is channels-last and the
/// transpose that fixes it (arrays given in memory). Empty otherwise.
pub fn channels_last_hint(shape: &[usize], c: usize) -> String {
    match shape {
        [_, second, _, last] if *last == c && *second != c => format!(
            " (the last axis has {c} entries: the array looks channels-last, (N, H, W, C); \
             triage reads (N, C, H, W): save np.ascontiguousarray(probs.transpose(0, 3, 1, 2)))"
        ),
        _ => String::new(),
    }
}

/// The hint for probabilities of `shape` (stacked, 4-D, or one item's,
/// 3-D) whose class axis under the configured layout (`nhwc`) does not
/// have `c` entries but the other layout's does. A dataset's files: set
/// (or remove) `probs_layout = "nhwc"`; arrays given in memory (no
/// `probs_layout`): [`channels_last_hint`]'s transpose. Empty when the
/// shape fits neither layout.
pub fn layout_hint(cfg: &DatasetConfig, shape: &[usize], c: usize, nhwc: bool) -> String {
    let lead = usize::from(shape.len() == 4);
    let (first, last) = match (shape.get(lead), shape.last()) {
        (Some(&f), Some(&l)) if shape.len() >= 3 => (f, l),
        _ => return String::new(),
    };
    let (axis, last_form) = if lead == 1 {
        ("second", "(N, H, W, C)")
    } else {
        ("first", "(H, W, C)")
    };
    match nhwc {
        false if last == c && first != c => {
            if cfg.memory.is_some() {
                channels_last_hint(shape, c)
            } else {
                format!(
                    " (the last axis has {c} entries and triage.toml says {c} classes: the \
                     array looks channels-last, {last_form}; set probs_layout = \"nhwc\" in \
                     triage.toml's [inputs] to read it so)"
                )
            }
        }
        true if first == c && last != c => format!(
            " (the {axis} axis has {c} entries and triage.toml says {c} classes: the array \
             looks channels-first; remove probs_layout = \"nhwc\" from triage.toml's [inputs])"
        ),
        _ => String::new(),
    }
}

/// The segmentation probabilities: a directory of per-item files (opened
/// and checked item by item), or one stacked `(N, C, H, W)` array
/// (`(N, H, W, C)` with `probs_layout = "nhwc"`), checked here against the
/// items and the class count.
pub fn open(cfg: &DatasetConfig, manifest: &Manifest) -> Result<SegProbs> {
    let items_path = cfg
        .items
        .as_deref()
        .or_else(|| cfg.label_set.as_ref().map(|s| s.path.as_path()))
        .unwrap_or(Path::new("the items CSV"));
    let nhwc = cfg.probs_layout == ProbsLayout::Nhwc;
    let source = if crate::io::inputs::probs_dir(cfg) {
        Source::PerItem {
            cfg: Box::new(cfg.clone()),
            open: None,
        }
    } else {
        let mut arr = crate::io::inputs::open(cfg, &cfg.probs)?;
        if !arr.dtype.is_float() {
            return Err(Error::input(
                &cfg.probs,
                "probabilities must be float16, float32 or float64",
            )
            .field("dtype"));
        }
        let dims = match (&arr.shape[..], nhwc) {
            (&[n, pc, h, w], false) | (&[n, h, w, pc], true) => Some((n, pc, h, w)),
            _ => None,
        };
        let Some((n, pc, h, w)) = dims else {
            let form = if nhwc {
                "(N, H, W, C) for segmentation with probs_layout = \"nhwc\""
            } else {
                "(N, C, H, W) for segmentation"
            };
            return Err(Error::input(
                &cfg.probs,
                format!("expected shape {form}, found {:?}", arr.shape),
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
        if nhwc {
            arr.set_channels_last(pc, h * w);
        }
        Source::Stacked(arr)
    };
    Ok(SegProbs {
        source,
        classes: cfg.num_classes(),
        nhwc,
    })
}
