//! A labels file's labels matched to the dataset's items: what
//! [`crate::io::labelfile::attach`] makes of a COCO, CVAT or Label Studio
//! file once its categories are classes and its images are items. Plain
//! data at the bottom of the crate, so the configuration can hold it and
//! every reader (score stage, overlays, agreement, reviews) can paint an
//! item's label map from it.

use std::path::PathBuf;

/// The labels of every item, in manifest order.
#[derive(Debug, Clone, Default)]
pub struct LabelSet {
    /// The labels file.
    pub path: PathBuf,
    /// The annotators the file names, in order of first appearance.
    pub annotators: Vec<String>,
    /// One per item, in manifest order.
    pub items: Vec<ItemLabels>,
}

/// One item's image in the labels file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemLabels {
    /// The item's id.
    pub id: String,
    /// The image's file name or URL as the file gives it.
    pub file_name: String,
    /// Size in pixels (0 × 0 for classification without sizes).
    pub height: usize,
    pub width: usize,
    /// The annotations, one per annotator.
    pub annotations: Vec<ItemAnnotation>,
    /// Which annotation is the item's label; `None`: unlabelled.
    pub official: Option<usize>,
}

/// One annotation of one item, its categories already classes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemAnnotation {
    /// Index into [`LabelSet::annotators`].
    pub annotator: Option<u32>,
    /// Classification: the class (the first image-level tag), `None`
    /// when the annotation has no tag.
    pub label: Option<u32>,
    /// Segmentation: the value of the pixels no region covers (class 0 or
    /// the ignore index, `[inputs] unlabeled`).
    pub fill: u16,
    /// Segmentation: the regions in painting order (the overlap rule
    /// applied; crowd regions last, as the ignore index), each a value and
    /// a COCO RLE over the item's `height × width` pixels (column-major
    /// runs, first run 0s; they sum to `height · width`, checked when
    /// read).
    pub regions: Vec<Painted>,
}

/// A region to paint: every pixel of its runs of 1s gets `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Painted {
    pub value: u16,
    pub counts: Vec<u32>,
}

impl ItemAnnotation {
    /// The row-major `h × w` label map: `fill`, then each region painted
    /// in order. `None` when a region's runs do not sum to `h · w`
    /// (checked when read, so never for a set made by `attach`).
    pub fn paint(&self, h: usize, w: usize) -> Option<Vec<u16>> {
        let n = h.checked_mul(w)?;
        let mut out = vec![self.fill; n];
        for r in &self.regions {
            let mut pos = 0usize;
            let mut one = false;
            for &c in &r.counts {
                let end = pos.checked_add(c as usize)?;
                if end > n {
                    return None;
                }
                if one {
                    for p in pos..end {
                        // Column-major position p = col * h + row.
                        out[(p % h) * w + p / h] = r.value;
                    }
                }
                pos = end;
                one = !one;
            }
            if pos != n {
                return None;
            }
        }
        Some(out)
    }
}
