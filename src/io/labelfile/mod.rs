//! Labels files: a dataset's labels read where teams keep them, named in
//! `triage.toml`'s `[inputs]` instead of a `label` / `mask` column:
//! `coco = "instances.json"` ([`coco`]), `cvat = "annotations.xml"`
//! ([`cvat`]) or `labelstudio = "export.json"` ([`labelstudio`]).
//!
//! **Contract.** Each reader parses one file into the same [`Doc`]: the
//! file's categories, and its images in file order, each with its
//! annotations (one per annotator), each annotation with its regions (one
//! COCO RLE per region, rasterised from polygons exactly as pycocotools'
//! `frPyObjects` does, [`crate::io::coco_rle`]) or its image-level tags
//! (classification). Everything read is checked: the error names the
//! file, the item (the image's file name or id) and the field. A reader
//! never panics and never allocates by an unchecked number (sizes go
//! through [`coco_rle::MAX_PIXELS`](crate::io::coco_rle::MAX_PIXELS)).
//!
//! How a [`Doc`] becomes the dataset's items, classes and label maps (the
//! class rule, the uncovered-pixel rule, the overlap rule) is
//! [`attach`]'s, the same for every format.

pub mod coco;
pub mod cvat;
pub mod labelstudio;
pub mod ls_brush;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{DatasetConfig, IdFrom, LabelFormat, LabelsInput, Overlap, Task, Unlabeled};
use crate::error::{Error, Result};
use crate::io::coco_rle::Rle;
use crate::io::manifest::{Cells, Manifest};
use crate::labelset::{ItemAnnotation, ItemLabels, LabelSet, Painted};
use crate::records::UNLABELLED;

/// The largest labels file read, in bytes (2 GiB: COCO's train2017
/// instances are 448 MiB).
pub const MAX_LABELS_FILE_BYTES: u64 = 2 << 30;

/// A category (class) as the labels file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// The file's id for it: COCO's `id`; CVAT's and Label Studio's
    /// position in the order below.
    pub id: i64,
    pub name: String,
}

/// One labels file, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doc {
    /// The categories: COCO's `categories` sorted by id; CVAT's `<labels>`
    /// in file order; Label Studio's label names in order of first
    /// appearance.
    pub categories: Vec<Category>,
    /// The images, in file order (COCO `images`, CVAT `<image>`, Label
    /// Studio tasks).
    pub images: Vec<DocImage>,
}

/// One image of a labels file.
#[derive(Debug, Clone, PartialEq)]
pub struct DocImage {
    /// The file's own id for the image (COCO `id`, CVAT `id`, Label Studio
    /// task `id`), as text.
    pub key: String,
    /// The image's file name or URL as the file gives it (COCO
    /// `file_name`, CVAT `name`, Label Studio `data.image`).
    pub file_name: String,
    /// The item id `triage export` wrote into the task (Label Studio
    /// `data.triage_id`), so an export maps back to its items; `None`
    /// otherwise.
    pub item: Option<String>,
    /// Size in pixels; 0 × 0 when the file gives none (classification).
    pub height: usize,
    pub width: usize,
    /// Its annotations, one per annotator (a file without annotators has
    /// at most one, with `annotator: None`). Empty: the image has no
    /// annotation (unlabelled in Label Studio and CVAT; in COCO an image
    /// with no annotations is one annotation with no regions, all
    /// uncovered).
    pub annotations: Vec<DocAnnotation>,
    /// Which of `annotations` is the image's label (the others feed the
    /// agreement stage): Label Studio's latest non-cancelled annotation,
    /// else the first. `None` when there is none.
    pub official: Option<usize>,
}

/// One annotator's annotation of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct DocAnnotation {
    /// COCO `annotator`, Label Studio `completed_by`, CVAT job assignee;
    /// `None` when the file names none.
    pub annotator: Option<String>,
    /// Segmentation: the regions, in file order.
    pub regions: Vec<DocRegion>,
    /// Classification: the image-level categories (indices into
    /// [`Doc::categories`]), in file order.
    pub tags: Vec<usize>,
}

/// One region of a segmentation annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct DocRegion {
    /// Index into [`Doc::categories`].
    pub category: usize,
    /// COCO `iscrowd`: the region's pixels are ignored.
    pub crowd: bool,
    /// The region's pixels, over the whole image (`h`, `w` are the
    /// image's).
    pub rle: Rle,
}

/// Read the labels file `path` of `format`, at most
/// [`MAX_LABELS_FILE_BYTES`], a regular file (symbolic links refused,
/// [`crate::fsx::open_input`]).
pub fn parse(format: LabelFormat, path: &Path) -> Result<Doc> {
    let bytes = crate::fsx::read_input(path, MAX_LABELS_FILE_BYTES, format.field())?;
    match format {
        LabelFormat::Coco => coco::parse(path, &bytes),
        LabelFormat::Cvat => cvat::parse(path, &bytes),
        LabelFormat::LabelStudio => labelstudio::parse(path, &bytes),
    }
}

/// An error about `path`, image `item`, `field`.
pub(crate) fn bad(path: &Path, item: Option<&str>, field: &str, msg: impl Into<String>) -> Error {
    let e = Error::input(path, msg.into()).field(field.to_string());
    match item {
        Some(id) => e.item(id),
        None => e,
    }
}

/// An item's label as sent to (or read back from) a reviewers' tool.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemLabel {
    /// Classification: the class id.
    Class(u32),
    /// Segmentation: the row-major `height × width` label map (class ids,
    /// or the ignore index).
    Mask(Vec<u16>),
}

/// What an export writer needs to know of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportMeta {
    pub task: crate::config::Task,
    pub class_names: Vec<String>,
    pub ignore_index: u16,
}

/// One item sent to the reviewers, in queue order (`triage export`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportItem {
    /// The item's id (written into the task so the export maps back:
    /// Label Studio `data.triage_id`; CVAT's image `name` is `image`).
    pub id: String,
    /// The image the reviewer sees: a URL or a path (`--images-root`
    /// joined with the item's `image` cell), or the id when there is none.
    pub image: String,
    /// Size in pixels (segmentation; 0 × 0 for classification).
    pub height: usize,
    pub width: usize,
    /// 1-based rank in the queue.
    pub rank: usize,
    /// The item's priority (higher first).
    pub priority: f64,
    /// The queue's reasons, in order.
    pub reasons: Vec<String>,
    /// The current annotation, which the reviewer corrects; `None`:
    /// unlabelled.
    pub current: Option<ItemLabel>,
    /// The model's prediction (argmax).
    pub predicted: ItemLabel,
}

/// The category → class rule, [`attach`]'s first step. Returns the class
/// of each category and, when `triage.toml` lists no classes, the class
/// names made from the categories.
///
/// - `classes` listed in `triage.toml`: a category is the class of the
///   same name (exactly); a category no class names is an error.
/// - `num_classes` alone: a category's id is its class id (COCO's ids; CVAT
///   and Label Studio number their labels from 0 in file order), and must
///   be below `num_classes`.
/// - Neither: the classes are the categories in id order; for segmentation
///   with `unlabeled = "background"` (the default) a class `background`
///   comes first, as class 0, the value of uncovered pixels (a category
///   named `background`, in any case, is that class, not a second one).
fn class_rule(
    cfg: &DatasetConfig,
    input: &LabelsInput,
    doc: &Doc,
) -> Result<(Vec<u32>, Option<Vec<String>>)> {
    let path = &input.path;
    if input.classes_from_file {
        let mut names = Vec::new();
        let with_background =
            cfg.task == Task::Segmentation && input.unlabeled == Unlabeled::Background;
        if with_background {
            names.push("background".to_string());
        }
        let mut class_of = Vec::with_capacity(doc.categories.len());
        for cat in &doc.categories {
            if with_background && cat.name.eq_ignore_ascii_case("background") {
                class_of.push(0);
                continue;
            }
            class_of.push(names.len() as u32);
            names.push(cat.name.clone());
        }
        let max = cfg.task.max_classes();
        if names.len() > max {
            return Err(bad(
                path,
                None,
                "categories",
                format!(
                    "{} categories; a {} dataset has at most {max} classes",
                    names.len(),
                    cfg.task.name()
                ),
            ));
        }
        if names.len() < 2 {
            return Err(bad(
                path,
                None,
                "categories",
                format!(
                    "{} classes from the file's categories; triage needs at least 2 \
                     (list them in triage.toml's `classes`)",
                    names.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            if !seen.insert(n.as_str()) {
                return Err(bad(
                    path,
                    None,
                    "categories",
                    format!(
                        "two categories are named {n:?}; list the classes in triage.toml's \
                         `classes` and give them distinct names"
                    ),
                ));
            }
        }
        return Ok((class_of, Some(names)));
    }
    let c = cfg.num_classes();
    let mut class_of = Vec::with_capacity(doc.categories.len());
    for cat in &doc.categories {
        let k = if input.classes_named {
            cfg.class_names.iter().position(|n| *n == cat.name)
        } else {
            usize::try_from(cat.id).ok().filter(|&k| k < c)
        };
        let Some(k) = k else {
            let why = if input.classes_named {
                format!(
                    "category {:?} (id {}) is none of triage.toml's classes",
                    cat.name, cat.id
                )
            } else {
                format!(
                    "category {:?} has id {}, not a class id {} (num_classes = {c}); \
                     list the classes by name in triage.toml's `classes` to map by name",
                    cat.name,
                    cat.id,
                    crate::config::class_range(c)
                )
            };
            return Err(bad(path, None, "categories", why));
        };
        class_of.push(k as u32);
    }
    Ok((class_of, None))
}

/// Item ids of the file's images by `id_from`; duplicates are an error
/// that names the other rules.
fn image_ids(input: &LabelsInput, doc: &Doc) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(doc.images.len());
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(doc.images.len());
    for (i, img) in doc.images.iter().enumerate() {
        let id = match input.id_from {
            IdFrom::Id => img.key.clone(),
            IdFrom::Path | IdFrom::Stem => {
                // URLs (Label Studio's `/data/upload/3/x.png?d=..`): the path part.
                let name = img.file_name.split(['?', '#']).next().unwrap_or("");
                let p = Path::new(name);
                let base = if input.id_from == IdFrom::Stem {
                    PathBuf::from(p.file_name().unwrap_or_default())
                } else {
                    p.to_path_buf()
                };
                base.with_extension("").to_string_lossy().into_owned()
            }
        };
        if id.trim().is_empty() || id.trim() != id {
            return Err(bad(
                &input.path,
                Some(&img.file_name),
                "id",
                format!(
                    "image {i} gives the id {id:?} (id_from = {:?}), empty or with spaces at \
                     either end",
                    input.id_from
                ),
            ));
        }
        if let Some(first) = seen.insert(id.clone(), i) {
            return Err(bad(
                &input.path,
                Some(&id),
                "id",
                format!(
                    "images {first} ({:?}) and {i} ({:?}) both give the id {id:?}; set \
                     [inputs] id_from = \"path\" (the file name with its directories) or \
                     \"id\" (the file's image id)",
                    doc.images[first].file_name, img.file_name
                ),
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Read `cfg`'s labels file (if it names one) and match it to the items:
/// sets `cfg.label_set` and, when `triage.toml` lists no classes,
/// `cfg.class_names` ([`class_rule`]). Called once, right after
/// [`DatasetConfig::load`]; a no-op for other datasets.
///
/// **Items.** Without `[inputs] items`, the items are the file's images
/// in file order, each with the id `id_from` gives it, and the stacked
/// probabilities' rows follow that order. With an items CSV, its rows
/// are the items (and the probabilities' order); each id must be an image
/// of the file and each image an item of the CSV (an image without
/// probabilities, or probabilities without labels, is an error naming
/// it), and the CSV may not have its own `label` / `mask` column.
///
/// **Label maps** (segmentation). An annotation's map starts as the
/// uncovered value (class 0, or the ignore index with `unlabeled =
/// "ignore"`), then its regions are painted by the overlap rule: `later`
/// (file order, the later on top; CVAT's regions come sorted by
/// `z_order`) or `smaller` (larger areas first, so the smaller region is
/// on top; ties keep file order). Crowd regions (COCO `iscrowd`) are
/// painted last, as the ignore index. The official annotation ([`DocImage::official`])
/// is the item's label; with several annotators named, all of them feed
/// the agreement stage as `annotations.csv` does.
///
/// **Labels** (classification). An annotation's class is its first tag;
/// an item whose official annotation has no tag is unlabelled.
pub fn attach(cfg: &mut DatasetConfig) -> Result<()> {
    let Some(input) = cfg.labels_file.clone() else {
        return Ok(());
    };
    if cfg.label_set.is_some() {
        return Ok(());
    }
    let path = input.path.clone();
    let doc = parse(input.format, &path)?;
    let (class_of, names) = class_rule(cfg, &input, &doc)?;
    if let Some(names) = names {
        let ignore = cfg.ignore_index as usize;
        if cfg.task == Task::Segmentation && ignore < names.len() {
            return Err(bad(
                &path,
                None,
                "categories",
                format!(
                    "{} classes from the file, so the ignore index {ignore} is a class id; \
                     set ignore_index >= {} in triage.toml",
                    names.len(),
                    names.len()
                ),
            ));
        }
        cfg.class_names = names;
    }
    let ids = image_ids(&input, &doc)?;
    let order: Vec<usize> = match &cfg.items {
        None => (0..doc.images.len()).collect(),
        Some(items) => {
            let m = Manifest::load(items)?;
            for col in ["label", "mask"] {
                if m.column(col).is_some() {
                    return Err(Error::input(
                        items,
                        format!(
                            "a `{col}` column, and triage.toml names the labels file {}: \
                             one of them gives the labels; drop the column or the file",
                            path.display()
                        ),
                    )
                    .field(col));
                }
            }
            let at: HashMap<&str, usize> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            let mut used = vec![false; ids.len()];
            let mut order = Vec::with_capacity(m.len());
            for id in &m.ids {
                let Some(&i) = at.get(id) else {
                    return Err(Error::input(
                        items,
                        format!(
                            "item {id:?} has probabilities but no image in the labels file {} \
                             (ids from {:?})",
                            path.display(),
                            input.id_from
                        ),
                    )
                    .item(id)
                    .field("id"));
                };
                used[i] = true;
                order.push(i);
            }
            if let Some(i) = used.iter().position(|u| !u) {
                return Err(bad(
                    &path,
                    Some(&ids[i]),
                    "images",
                    format!(
                        "the image {:?} has no probabilities: its id {:?} is not in {}",
                        doc.images[i].file_name,
                        ids[i],
                        items.display()
                    ),
                ));
            }
            order
        }
    };
    let fill = match input.unlabeled {
        Unlabeled::Background => 0,
        Unlabeled::Ignore => cfg.ignore_index,
    };
    let mut annotators: Vec<String> = Vec::new();
    let mut annotator_at: HashMap<String, u32> = HashMap::new();
    let mut items = Vec::with_capacity(order.len());
    for &i in &order {
        let img = &doc.images[i];
        let mut annotations = Vec::with_capacity(img.annotations.len());
        for a in &img.annotations {
            let annotator = a.annotator.as_ref().map(|name| {
                *annotator_at.entry(name.clone()).or_insert_with(|| {
                    annotators.push(name.clone());
                    (annotators.len() - 1) as u32
                })
            });
            let class = |cat: usize| -> Result<u32> {
                class_of
                    .get(cat)
                    .copied()
                    .ok_or_else(|| Error::Internal(format!("category index {cat} out of range")))
            };
            let label = a.tags.first().map(|&t| class(t)).transpose()?;
            let mut regions: Vec<(u64, bool, Painted)> = Vec::with_capacity(a.regions.len());
            for r in &a.regions {
                if (r.rle.h, r.rle.w) != (img.height, img.width) {
                    return Err(bad(
                        &path,
                        Some(&ids[i]),
                        "segmentation",
                        format!(
                            "a region is {}x{} but the image is {}x{}",
                            r.rle.h, r.rle.w, img.height, img.width
                        ),
                    ));
                }
                let area: u64 = r
                    .rle
                    .counts
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .map(|&c| u64::from(c))
                    .sum();
                let value = if r.crowd {
                    cfg.ignore_index
                } else {
                    class(r.category)? as u16
                };
                regions.push((
                    area,
                    r.crowd,
                    Painted {
                        value,
                        counts: r.rle.counts.clone(),
                    },
                ));
            }
            // Stable sorts: file order breaks ties.
            if input.overlap == Overlap::Smaller {
                regions.sort_by_key(|r| std::cmp::Reverse(r.0));
            }
            regions.sort_by_key(|r| r.1);
            annotations.push(ItemAnnotation {
                annotator,
                label,
                fill,
                regions: regions.into_iter().map(|r| r.2).collect(),
            });
        }
        items.push(ItemLabels {
            id: ids[i].clone(),
            file_name: img.file_name.clone(),
            height: img.height,
            width: img.width,
            annotations,
            official: img.official,
        });
    }
    cfg.label_set = Some(Arc::new(LabelSet {
        path,
        annotators,
        items,
    }));
    Ok(())
}

/// The item table of a dataset with a labels file: the items CSV's rows,
/// or the file's images, with a `label` (classification: the class id,
/// empty when unlabelled) or `mask` (segmentation: the labels file's name,
/// empty when unlabelled; the readers paint the map from the set) column
/// and, without an items CSV, an `image` column: each image's file name
/// joined to `[inputs] images` when it is given, else the file name itself
/// when every one is a relative path to a file inside the dataset
/// directory (else the items have no image). `None` for other datasets.
pub fn manifest(cfg: &DatasetConfig) -> Option<Result<Manifest>> {
    let set = cfg.label_set.as_ref()?;
    Some((|| {
        let mut m = match &cfg.items {
            Some(items) => Manifest::load(items)?,
            None if cfg
                .labels_file
                .as_ref()
                .and_then(|l| l.images.as_ref())
                .is_some() =>
            {
                // `[inputs] images`: each image's name joined to it (the
                // readers check each path against the dataset's roots).
                let dir = cfg
                    .labels_file
                    .as_ref()
                    .and_then(|l| l.images.clone())
                    .unwrap_or_default();
                let image = |it: &ItemLabels| {
                    let name = it.file_name.split(['?', '#']).next().unwrap_or("");
                    dir.join(name.trim_start_matches('/'))
                        .to_string_lossy()
                        .into_owned()
                };
                Manifest {
                    columns: vec!["id".into(), "image".into()],
                    ids: set.items.iter().map(|it| it.id.clone()).collect(),
                    rows: Cells::tabulate(set.items.len(), 2, |i, j| match j {
                        0 => set.items[i].id.clone(),
                        _ => image(&set.items[i]),
                    }),
                }
            }
            None => {
                let relative = set.items.iter().all(|it| {
                    let p = Path::new(&it.file_name);
                    !it.file_name.contains("://")
                        && p.is_relative()
                        && p.components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)))
                        && cfg.dir.join(p).is_file()
                });
                let mut m = Manifest {
                    columns: vec!["id".into()],
                    ids: set.items.iter().map(|it| it.id.clone()).collect(),
                    rows: Cells::tabulate(set.items.len(), 1, |i, _| &set.items[i].id),
                };
                if relative {
                    m.columns.push("image".into());
                    m.rows = m.rows.with_column(|i| set.items[i].file_name.clone());
                }
                m
            }
        };
        if m.ids.len() != set.items.len() || m.ids.iter().zip(&set.items).any(|(a, b)| *a != b.id) {
            return Err(Error::input(
                cfg.items_file(),
                "the items changed since the labels file was matched to them",
            ));
        }
        let name = set
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let cell = |it: &ItemLabels| match cfg.task {
            Task::Classification => it
                .official
                .and_then(|k| it.annotations.get(k))
                .and_then(|a| a.label)
                .map_or_else(String::new, |c| c.to_string()),
            Task::Segmentation if it.official.is_some() => name.clone(),
            Task::Segmentation => String::new(),
        };
        m.columns.push(
            match cfg.task {
                Task::Classification => "label",
                Task::Segmentation => "mask",
            }
            .into(),
        );
        m.rows = m
            .rows
            .with_column(|i| set.items.get(i).map(&cell).unwrap_or_default());
        Ok(m)
    })())
}

/// Item `index`'s official label map, `expect` = the probabilities'
/// `(H, W)`, which the image's size must equal. `None` when the dataset
/// has no labels file.
pub fn mask(
    cfg: &DatasetConfig,
    id: &str,
    index: usize,
    expect: (usize, usize),
) -> Option<Result<Vec<u16>>> {
    let set = cfg.label_set.as_ref()?;
    let it = set.items.get(index)?;
    Some(paint(cfg, it, it.official?, id, expect))
}

/// Annotation `k` of item `it` painted, checked against the probabilities'
/// size `expect`.
pub fn paint(
    cfg: &DatasetConfig,
    it: &ItemLabels,
    k: usize,
    id: &str,
    expect: (usize, usize),
) -> Result<Vec<u16>> {
    let Some(set) = cfg.label_set.as_ref() else {
        return Err(Error::Internal("no labels file".into()));
    };
    if (it.height, it.width) != expect {
        return Err(bad(
            &set.path,
            Some(id),
            "mask",
            format!(
                "the labels file's image is {}x{} (HxW) but the probabilities are {}x{}",
                it.height, it.width, expect.0, expect.1
            ),
        ));
    }
    it.annotations
        .get(k)
        .and_then(|a| a.paint(it.height, it.width))
        .ok_or_else(|| Error::Internal(format!("item {id}: a region does not fit its image")))
}

/// Item `i`'s current annotation: its class, or its mask read as the run
/// reads it; `None` when unlabelled.
pub fn current_label(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    labels: Option<&[u32]>,
    i: usize,
    dims: (usize, usize),
) -> Result<Option<ItemLabel>> {
    let id = &manifest.ids[i];
    match cfg.task {
        Task::Classification => Ok(labels
            .and_then(|l| l.get(i).copied())
            .filter(|&c| c != UNLABELLED)
            .map(ItemLabel::Class)),
        Task::Segmentation => {
            let col = manifest.column("mask").ok_or_else(|| {
                Error::input(cfg.items_file(), "segmentation needs a `mask` column").field("mask")
            })?;
            let cell = manifest.rows.cell(i, col).trim();
            if cell.is_empty() {
                return Ok(None);
            }
            let m = match crate::io::inputs::given_mask(cfg, id, i, dims) {
                Some(m) => m?,
                None => {
                    let path = cfg.item_file(id, "mask", cell)?;
                    crate::io::mask::read_dataset_mask(cfg, &path, id, dims)?
                }
            };
            Ok(Some(ItemLabel::Mask(m)))
        }
    }
}
