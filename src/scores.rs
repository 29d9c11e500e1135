//! Every score triage reports for an item, declared once.
//!
//! [`ItemScores`] is the record each item carries from the score stage to
//! the outputs; [`ItemScores::fields`] lists its scores in their documented
//! output order (the queue files' score columns and `report.json`).

use serde::{Deserialize, Serialize};

/// The scores reported for one item. `None` is written as `null` (a score
/// that is undefined for the item, e.g. mIoU when every pixel is ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemScores {
    /// Mean normalised entropy.
    pub entropy: Option<f64>,
    /// Mean top-1 minus top-2 probability.
    pub margin: Option<f64>,
    /// Mean `1 − p_(1)`.
    pub least_confidence: Option<f64>,
    /// Mean `p_y`.
    pub self_confidence: Option<f64>,
    /// Mean `(p_y − max_{k≠y} p_k + 1) / 2`.
    pub normalized_margin: Option<f64>,
    /// Calibration error over the item's samples (15 bins).
    pub ece: Option<f64>,
    /// Segmentation only: the rest.
    pub seg: Option<Box<SegScores>>,
    /// With embeddings: `1 − d/(2·threshold)` for the closest conflicting
    /// near-duplicate at cosine distance `d`, 0 without one.
    pub dup_conflict: Option<f64>,
    /// With embeddings: fraction of the k nearest neighbours whose label differs.
    pub knn_disagreement: Option<f64>,
    /// With annotations: the share of the item's annotator pairs that agree
    /// (NaN, written `null`, for an item with fewer than 2 annotations).
    #[serde(default)]
    pub annotator_agreement: Option<f64>,
}

/// Segmentation-only item scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegScores {
    /// Mean IoU over the classes present in the annotation or the prediction.
    pub miou: Option<f64>,
    /// Mean Dice over the same classes.
    pub dice: Option<f64>,
    /// Mean Boundary IoU over the classes whose band union is non-empty.
    pub boundary_iou: Option<f64>,
    /// Fraction of non-ignored pixels where the prediction equals the label.
    pub pixel_accuracy: Option<f64>,
    /// Softmin (T = 0.1) of the per-pixel self-confidence (cleanlab's image score).
    pub self_confidence_softmin: Option<f64>,
    /// Softmin (T = 0.1) of the per-pixel normalised margin.
    pub normalized_margin_softmin: Option<f64>,
    /// Number of non-ignored pixels.
    pub pixels: u64,
    /// Unlabelled items only: softmin (T = 0.1) of the per-pixel margin
    /// `p_(1) − p_(2)`, the label-free counterpart of
    /// `normalized_margin_softmin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin_softmin: Option<f64>,
}

impl ItemScores {
    /// `(name, value)` for every reported score, in output order.
    pub fn fields(&self) -> Fields {
        let mut f = Fields::default();
        for kv in [
            ("entropy", self.entropy),
            ("margin", self.margin),
            ("least_confidence", self.least_confidence),
            ("self_confidence", self.self_confidence),
            ("normalized_margin", self.normalized_margin),
            ("ece", self.ece),
        ] {
            f.push(kv);
        }
        if let Some(s) = &self.seg {
            for kv in [
                ("miou", s.miou),
                ("dice", s.dice),
                ("boundary_iou", s.boundary_iou),
                ("pixel_accuracy", s.pixel_accuracy),
                ("self_confidence_softmin", s.self_confidence_softmin),
                ("normalized_margin_softmin", s.normalized_margin_softmin),
                ("pixels", Some(s.pixels as f64)),
            ] {
                f.push(kv);
            }
            if s.margin_softmin.is_some() {
                f.push(("margin_softmin", s.margin_softmin));
            }
        }
        if self.dup_conflict.is_some() || self.knn_disagreement.is_some() {
            f.push(("dup_conflict", self.dup_conflict));
            f.push(("knn_disagreement", self.knn_disagreement));
        }
        if self.annotator_agreement.is_some() {
            f.push(("annotator_agreement", self.annotator_agreement));
        }
        f
    }

    /// The finite value of score `name` (as in [`ItemScores::finite_fields`]),
    /// without building the whole field list: `None` when the item has no
    /// such score or its value is not finite.
    pub fn finite_value(&self, name: &str) -> Option<f64> {
        let seg = self.seg.as_ref();
        let v = match name {
            "entropy" => self.entropy,
            "margin" => self.margin,
            "least_confidence" => self.least_confidence,
            "self_confidence" => self.self_confidence,
            "normalized_margin" => self.normalized_margin,
            "ece" => self.ece,
            "miou" => seg?.miou,
            "dice" => seg?.dice,
            "boundary_iou" => seg?.boundary_iou,
            "pixel_accuracy" => seg?.pixel_accuracy,
            "self_confidence_softmin" => seg?.self_confidence_softmin,
            "normalized_margin_softmin" => seg?.normalized_margin_softmin,
            "pixels" => Some(seg?.pixels as f64),
            "margin_softmin" => seg?.margin_softmin,
            "dup_conflict" => self.dup_conflict,
            "knn_disagreement" => self.knn_disagreement,
            "annotator_agreement" => self.annotator_agreement,
            _ => None,
        };
        v.filter(|x| x.is_finite())
    }

    /// [`ItemScores::fields`] with every non-finite value as `None` (the
    /// queue files and the report write it as `null`).
    pub fn finite_fields(&self) -> Fields {
        let mut f = self.fields();
        for (_, v) in f.items[..f.len].iter_mut() {
            *v = v.filter(|x| x.is_finite());
        }
        f
    }
}

/// The most score fields an item has (6 for every item, 7 more for
/// segmentation, 2 more with neighbours, 1 more with annotations).
pub const MAX_FIELDS: usize = 17;

/// An item's `(name, value)` score fields in their documented order, held
/// inline: the queue files format one set per row, so no allocation per
/// row. Reads as a slice; iterates by value.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    items: [(&'static str, Option<f64>); MAX_FIELDS],
    len: usize,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            items: [("", None); MAX_FIELDS],
            len: 0,
        }
    }
}

impl Fields {
    fn push(&mut self, kv: (&'static str, Option<f64>)) {
        self.items[self.len] = kv;
        self.len += 1;
    }
}

impl std::ops::Deref for Fields {
    type Target = [(&'static str, Option<f64>)];
    fn deref(&self) -> &Self::Target {
        &self.items[..self.len]
    }
}

impl IntoIterator for Fields {
    type Item = (&'static str, Option<f64>);
    type IntoIter = std::iter::Take<std::array::IntoIter<Self::Item, MAX_FIELDS>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_value_reads_each_field_as_the_queue_files_do() {
        let s = ItemScores {
            entropy: Some(0.5),
            margin: Some(f64::NAN),
            least_confidence: Some(0.25),
            self_confidence: None,
            normalized_margin: Some(0.125),
            ece: Some(f64::INFINITY),
            seg: Some(Box::new(SegScores {
                miou: Some(0.75),
                dice: Some(0.8),
                boundary_iou: None,
                pixel_accuracy: Some(0.9),
                self_confidence_softmin: Some(0.01),
                normalized_margin_softmin: Some(0.02),
                pixels: 4096,
                margin_softmin: None,
            })),
            dup_conflict: Some(0.3),
            knn_disagreement: Some(0.6),
            annotator_agreement: Some(f64::NAN),
        };
        let fields = s.finite_fields();
        assert_eq!(fields.len(), 16);
        assert_eq!(s.finite_value("annotator_agreement"), None, "NaN is null");
        for (name, v) in fields.iter() {
            assert_eq!(s.finite_value(name), *v, "{name}");
        }
        assert_eq!(s.finite_value("margin"), None);
        assert_eq!(s.finite_value("pixels"), Some(4096.0));
        assert_eq!(s.finite_value("no_such_score"), None);
        // Classification items have no segmentation scores.
        let c = ItemScores {
            seg: None,
            ..s.clone()
        };
        assert_eq!(c.finite_value("miou"), None);
        assert_eq!(c.finite_value("entropy"), Some(0.5));
    }
}
