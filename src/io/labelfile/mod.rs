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

use std::path::Path;

use crate::config::LabelFormat;
use crate::error::{Error, Result};
use crate::io::coco_rle::Rle;

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
