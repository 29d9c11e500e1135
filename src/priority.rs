//! Per-item scores, the priority that orders the review queue, and the
//! human-readable reasons attached to each item.
//!
//! **Classification:** `priority = 1 − normalized_margin`, where
//! `normalized_margin = (p_y − max_{k≠y} p_k + 1) / 2`. It puts first the items
//! whose annotated label the model rejects most confidently. On the
//! human-verified label errors of Northcutt et al. (2021) it ranks the errors
//! with AUROC 0.991 on CIFAR-10 and 0.998 on MNIST (cleanlab's
//! self-confidence: 0.988 and 0.998).
//!
//! **Segmentation:** `priority = 1 − mean(miou, boundary_iou,
//! normalized_margin_softmin)`, over the terms defined for the item. `miou`
//! catches missing or swapped objects (a class present on one side only has
//! IoU 0), `boundary_iou` catches shifted outlines that barely move the mask
//! IoU, and the softmin of the per-pixel normalised margin catches small but
//! confident disagreements that whole-mask ratios average away.
//!
//! Both lie in [0, 1]; higher means review first.

use serde::Serialize;

use crate::config::Task;

/// The scores reported for one item. `None` is written as `null` (a score
/// that is undefined for the item, e.g. mIoU when every pixel is ignored).
#[derive(Debug, Clone, Default, PartialEq)]
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
}

/// Segmentation-only item scores.
#[derive(Debug, Clone, Default, PartialEq)]
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
        }
        if self.dup_conflict.is_some() || self.knn_disagreement.is_some() {
            f.push(("dup_conflict", self.dup_conflict));
            f.push(("knn_disagreement", self.knn_disagreement));
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
            "dup_conflict" => self.dup_conflict,
            "knn_disagreement" => self.knn_disagreement,
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
/// segmentation, 2 more with neighbours).
pub const MAX_FIELDS: usize = 15;

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

/// The formula, as recorded in `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PriorityFormula {
    pub formula: &'static str,
    pub terms: Vec<&'static str>,
    pub range: [f64; 2],
    pub higher_means: &'static str,
}

/// The formula used for `task`.
pub fn formula(task: Task) -> PriorityFormula {
    match task {
        Task::Classification => PriorityFormula {
            formula: "1 - normalized_margin",
            terms: vec!["normalized_margin"],
            range: [0.0, 1.0],
            higher_means: "review first",
        },
        Task::Segmentation => PriorityFormula {
            formula: "1 - mean(miou, boundary_iou, normalized_margin_softmin) over the defined terms",
            terms: vec!["miou", "boundary_iou", "normalized_margin_softmin"],
            range: [0.0, 1.0],
            higher_means: "review first",
        },
    }
}

/// The priority of an item; 0 when no term is defined.
pub fn priority(scores: &ItemScores) -> f64 {
    match &scores.seg {
        None => scores.normalized_margin.map_or(0.0, |nm| 1.0 - nm),
        Some(s) => {
            let terms = [s.miou, s.boundary_iou, s.normalized_margin_softmin];
            crate::metrics::confusion::mean_defined(terms.into_iter()).map_or(0.0, |q| 1.0 - q)
        }
    }
}

/// Facts about a classification item used to explain it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowFacts {
    pub label: u32,
    pub pred: u32,
    pub p_label: f64,
    pub p_pred: f64,
}

/// Facts about a segmentation item used to explain it: its worst class.
#[derive(Debug, Clone, PartialEq)]
pub struct SegFacts {
    /// `(class, IoU, annotated pixels, predicted pixels)` of the class with
    /// the lowest IoU.
    pub worst_class: Option<(usize, f64, u64, u64)>,
}

/// Dataset-wide medians that put an item's values in context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    pub median_miou: Option<f64>,
    pub median_boundary_iou: Option<f64>,
}

fn f3(x: f64) -> String {
    let mut s = String::with_capacity(8);
    push_f3(&mut s, x);
    s
}

/// Append `x` as `format!("{x:.3}")` would: three decimals, rounded from the
/// exact binary value (half to even). Values in `[+0, 10⁶)` whose
/// thousandths are not within 1e-6 of a half are written from an integer
/// (`round(1000·x)` is then the exact decimal rounding, as the error of the
/// product is below 2e-7); all others go through `format!`.
fn push_f3(s: &mut String, x: f64) {
    use std::fmt::Write;
    let y = x * 1000.0;
    let frac = y - y.floor();
    if x.is_sign_positive() && x < 1e6 && (frac - 0.5).abs() > 1e-6 {
        let n = y.round() as u64;
        let _ = write!(s, "{}.{:03}", n / 1000, n % 1000);
    } else {
        let _ = write!(s, "{x:.3}");
    }
}

/// Reasons for a classification item, most important first.
pub fn row_reasons(scores: &ItemScores, facts: &RowFacts, names: &[String]) -> Vec<String> {
    let name = |k: u32| names.get(k as usize).map_or("?", String::as_str);
    let mut r = Vec::new();
    if facts.pred != facts.label {
        r.push(format!(
            "model disagrees with the label: labelled {:?} (p={}), predicted {:?} (p={})",
            name(facts.label),
            f3(facts.p_label),
            name(facts.pred),
            f3(facts.p_pred)
        ));
    } else {
        r.push(format!(
            "model agrees with the label {:?} (p={})",
            name(facts.label),
            f3(facts.p_label)
        ));
    }
    if let Some(nm) = scores.normalized_margin {
        r.push(format!(
            "normalized margin {} (priority = 1 - normalized margin)",
            f3(nm)
        ));
    }
    if let Some(h) = scores.entropy
        && h >= 0.5
    {
        r.push(format!("model is uncertain: normalized entropy {}", f3(h)));
    }
    r
}

/// Reasons for a segmentation item, most important first.
pub fn seg_reasons(
    scores: &ItemScores,
    facts: &SegFacts,
    ctx: &Context,
    names: &[String],
) -> Vec<String> {
    let Some(s) = &scores.seg else {
        return vec![];
    };
    if s.pixels == 0 {
        return vec!["every pixel is ignore_index: nothing to score".into()];
    }
    let mut r = Vec::new();
    let with_median = |v: f64, m: Option<f64>| match m {
        Some(m) => format!("{} (dataset median {})", f3(v), f3(m)),
        None => f3(v),
    };
    if let Some((c, iou, g, p)) = facts.worst_class
        && iou < 0.5
    {
        let name = names.get(c).map_or("?", String::as_str);
        let what = if g == 0 {
            "predicted but absent from the annotation".to_string()
        } else if p == 0 {
            "annotated but never predicted".to_string()
        } else {
            format!("{g} px annotated, {p} px predicted")
        };
        r.push(format!("class {name:?} {what}: IoU {}", f3(iou)));
    }
    if let Some(v) = s.miou {
        r.push(format!(
            "mask mIoU vs prediction {}",
            with_median(v, ctx.median_miou)
        ));
    }
    if let Some(v) = s.boundary_iou {
        r.push(format!(
            "Boundary IoU {}",
            with_median(v, ctx.median_boundary_iou)
        ));
    }
    if let Some(v) = s.normalized_margin_softmin {
        r.push(format!(
            "label quality (normalized margin, softmin) {}",
            f3(v)
        ));
    }
    if let Some(a) = s.pixel_accuracy
        && a < 0.95
    {
        r.push(format!(
            "{:.1}% of pixels disagree with the prediction",
            100.0 * (1.0 - a)
        ));
    }
    r
}

#[cfg(test)]
mod tests {

    #[test]
    fn finite_value_reads_each_field_as_the_queue_files_do() {
        use super::{ItemScores, SegScores};
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
            })),
            dup_conflict: Some(0.3),
            knn_disagreement: Some(0.6),
        };
        let fields = s.finite_fields();
        assert_eq!(fields.len(), 15);
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

    #[test]
    fn three_decimals_match_format_everywhere() {
        let mut xs = vec![
            0.0,
            -0.0,
            1.0,
            0.0005,
            0.0015,
            0.0025,
            0.1235,
            0.9995,
            1.0005,
            0.125,
            0.3125,
            999.9995,
            123456.7895,
            1e6,
            2e9,
            -0.4,
            f64::NAN,
            f64::INFINITY,
            1e-300,
            0.49999999,
        ];
        let mut st = 3u64;
        for _ in 0..200_000 {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (st >> 11) as f64 / (1u64 << 53) as f64;
            xs.push(u);
            // Values near a half-thousandth, where rounding is delicate.
            xs.push(((u * 1000.0).floor() + 0.5) / 1000.0);
            xs.push(f32::from_bits((st >> 32) as u32 & 0x3f7f_ffff) as f64);
        }
        for x in xs {
            assert_eq!(f3(x), format!("{x:.3}"), "{x:e}");
        }
    }

    use super::*;

    #[test]
    fn classification_priority_is_one_minus_normalized_margin() {
        let s = ItemScores {
            normalized_margin: Some(0.125),
            ..ItemScores::default()
        };
        assert_eq!(priority(&s), 0.875);
    }

    #[test]
    fn segmentation_priority_skips_undefined_terms() {
        let s = ItemScores {
            seg: Some(Box::new(SegScores {
                miou: Some(0.5),
                boundary_iou: None,
                normalized_margin_softmin: Some(0.9),
                ..SegScores::default()
            })),
            ..ItemScores::default()
        };
        assert!((priority(&s) - 0.3).abs() < 1e-12);
        let empty = ItemScores {
            seg: Some(Box::default()),
            ..ItemScores::default()
        };
        assert_eq!(priority(&empty), 0.0);
    }

    #[test]
    fn reasons_name_the_classes_and_values() {
        let names: Vec<String> = ["cat", "dog"].iter().map(|s| s.to_string()).collect();
        let s = ItemScores {
            normalized_margin: Some(0.05),
            entropy: Some(0.2),
            ..ItemScores::default()
        };
        let r = row_reasons(
            &s,
            &RowFacts {
                label: 0,
                pred: 1,
                p_label: 0.04,
                p_pred: 0.94,
            },
            &names,
        );
        assert_eq!(
            r[0],
            "model disagrees with the label: labelled \"cat\" (p=0.040), predicted \"dog\" (p=0.940)"
        );
        assert!(r[1].contains("0.050"));
        assert_eq!(r.len(), 2, "low entropy adds no uncertainty reason");
    }
}
