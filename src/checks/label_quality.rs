//! The label-quality checks, each scoring an item from the scores the score
//! stage stored on it:
//! a label the model rejects ([`WrongLabel`]), an uncertain model
//! ([`Uncertain`]), a miscalibrated item ([`Miscalibrated`]) and, for
//! segmentation, outlines that disagree ([`BoundaryDisagreement`]); and the
//! reasons written for every item ([`row_reasons`], [`seg_reasons`]), which
//! take their thresholds from the same checks.

use super::{Check, Inputs, Need, Threshold, each};
use crate::config::Task;
use crate::priority::{Context, RowFacts, SegFacts};
use crate::records::{Confused, ItemResult};
use crate::scores::{ItemScores, Score};

/// [`WrongLabel`] flags `1 − normalized_margin` above this: the model
/// prefers another class than the label.
pub const WRONG_LABEL_ABOVE: f64 = 0.5;
/// [`Uncertain`] flags a normalised entropy at or above this.
pub const UNCERTAIN_ENTROPY: f64 = 0.5;
/// [`Miscalibrated`] flags an item's own calibration error at or above this.
pub const MISCALIBRATED_ECE: f64 = 0.25;
/// [`BoundaryDisagreement`] flags `1 − boundary_iou` above this.
pub const BOUNDARY_DISAGREEMENT_ABOVE: f64 = 0.5;
/// A segmentation item's worst class is named in its reasons when its IoU
/// is below this.
pub const WORST_CLASS_IOU: f64 = 0.5;
/// A segmentation item's share of disagreeing pixels is named in its
/// reasons when its pixel accuracy is below this.
pub const PIXEL_AGREEMENT: f64 = 0.95;

/// The annotated label is probably wrong: score `1 − normalized_margin`
/// (segmentation: `1 − normalized_margin_softmin`), flagged above
/// [`WRONG_LABEL_ABOVE`].
pub struct WrongLabel;

impl Check for WrongLabel {
    fn name(&self) -> &'static str {
        "wrong_label"
    }
    fn needs(&self) -> &'static [Need] {
        &[]
    }
    fn score_text(&self, task: Task) -> &'static str {
        match task {
            Task::Segmentation => "1 - normalized_margin_softmin",
            Task::Classification => "1 - normalized_margin",
        }
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(WRONG_LABEL_ABOVE)
            .because("the model prefers another class than the label")
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        each(inputs, wrong_label)
    }
    fn of_item(&self) -> Option<fn(&ItemResult) -> Option<f64>> {
        Some(wrong_label)
    }
}

/// [`WrongLabel`]'s score of `it`.
fn wrong_label(it: &ItemResult) -> Option<f64> {
    let term = match it.scores.is_segmentation() {
        true => Score::NormalizedMarginSoftmin,
        false => Score::NormalizedMargin,
    };
    it.scores.get(term).map(|v| 1.0 - v)
}

/// The model is unsure: score the mean normalised entropy, flagged at or
/// above [`UNCERTAIN_ENTROPY`].
pub struct Uncertain;

impl Check for Uncertain {
    fn name(&self) -> &'static str {
        "uncertain"
    }
    fn needs(&self) -> &'static [Need] {
        &[]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "entropy"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::at_least(UNCERTAIN_ENTROPY)
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        each(inputs, uncertain)
    }
    fn of_item(&self) -> Option<fn(&ItemResult) -> Option<f64>> {
        Some(uncertain)
    }
}

/// [`Uncertain`]'s score of `it`.
fn uncertain(it: &ItemResult) -> Option<f64> {
    it.scores.get(Score::Entropy)
}

/// The model's confidence misses its accuracy on the item: score the item's
/// own calibration error, flagged at or above [`MISCALIBRATED_ECE`].
pub struct Miscalibrated;

impl Check for Miscalibrated {
    fn name(&self) -> &'static str {
        "miscalibrated"
    }
    fn needs(&self) -> &'static [Need] {
        &[]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "ece (the item's own calibration error)"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::at_least(MISCALIBRATED_ECE)
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        each(inputs, miscalibrated)
    }
    fn of_item(&self) -> Option<fn(&ItemResult) -> Option<f64>> {
        Some(miscalibrated)
    }
}

/// [`Miscalibrated`]'s score of `it`.
fn miscalibrated(it: &ItemResult) -> Option<f64> {
    it.scores.get(Score::Ece)
}

/// Outlines disagree: score `1 − boundary_iou`, flagged above
/// [`BOUNDARY_DISAGREEMENT_ABOVE`]. Segmentation only.
pub struct BoundaryDisagreement;

impl Check for BoundaryDisagreement {
    fn name(&self) -> &'static str {
        "boundary_disagreement"
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Segmentation]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "1 - boundary_iou (segmentation only)"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(BOUNDARY_DISAGREEMENT_ABOVE)
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        each(inputs, boundary_disagreement)
    }
    fn of_item(&self) -> Option<fn(&ItemResult) -> Option<f64>> {
        Some(boundary_disagreement)
    }
}

/// [`BoundaryDisagreement`]'s score of `it`.
fn boundary_disagreement(it: &ItemResult) -> Option<f64> {
    it.scores.get(Score::BoundaryIou).map(|v| 1.0 - v)
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
    if let Some(nm) = scores.get(Score::NormalizedMargin) {
        r.push(format!(
            "normalized margin {} (priority = 1 - normalized margin)",
            f3(nm)
        ));
    }
    if let Some(h) = scores.get(Score::Entropy)
        && Uncertain.threshold(Task::Classification).flags(h)
    {
        r.push(format!("model is uncertain: normalized entropy {}", f3(h)));
    }
    r
}

/// Write every segmentation item's reasons ([`seg_reasons`], from its
/// stored facts and the dataset's medians of mIoU and Boundary IoU). Run
/// once every item is scored, so one run and merged shards say the same.
pub fn explain_segmentation(items: &mut [ItemResult], class_names: &[String]) {
    let median = |score: Score| {
        crate::metrics::confusion::median(items.iter().filter_map(|i| i.scores.get(score)))
    };
    let ctx = Context {
        median_miou: median(Score::Miou),
        median_boundary_iou: median(Score::BoundaryIou),
    };
    for item in items.iter_mut() {
        if let Some(f) = item.seg_facts() {
            let reasons = seg_reasons(&item.scores, f, item.confused(), &ctx, class_names);
            item.extra_mut().reasons = reasons;
        }
    }
}

/// The name of class `k`: the manifest's, or else its index.
fn class_name(names: &[String], k: usize) -> String {
    names
        .get(k)
        .map_or_else(|| k.to_string(), |n| format!("{n:?}"))
}

/// Reasons for a segmentation item, most important first.
///
/// The worst class `c` is named when its IoU is below [`WORST_CLASS_IOU`];
/// with its largest confusion `confused` (annotated `a` where the model
/// predicts `b`, one of them `c`) the reason names both classes:
/// `annotated "cell" where the model sees "membrane" (1513 px; "membrane"
/// predicted but absent from the annotation, IoU 0.000)`.
pub fn seg_reasons(
    scores: &ItemScores,
    facts: &SegFacts,
    confused: Option<Confused>,
    ctx: &Context,
    names: &[String],
) -> Vec<String> {
    if !scores.is_segmentation() {
        return vec![];
    }
    if scores.pixels() == 0 {
        return vec!["every pixel is ignore_index: nothing to score".into()];
    }
    let mut r = Vec::new();
    let with_median = |v: f64, m: Option<f64>| match m {
        Some(m) => format!("{} (dataset median {})", f3(v), f3(m)),
        None => f3(v),
    };
    if let Some((c, iou, g, p)) = facts.worst_class
        && iou < WORST_CLASS_IOU
    {
        let name = class_name(names, c);
        let what = if g == 0 {
            "predicted but absent from the annotation".to_string()
        } else if p == 0 {
            "annotated but never predicted".to_string()
        } else {
            format!("{g} px annotated, {p} px predicted")
        };
        match confused.filter(|x| x.annotated as usize == c || x.predicted as usize == c) {
            Some(x) => r.push(format!(
                "annotated {} where the model sees {} ({} px; {name} {what}, IoU {})",
                class_name(names, x.annotated as usize),
                class_name(names, x.predicted as usize),
                x.pixels,
                f3(iou)
            )),
            None => r.push(format!("class {name} {what}: IoU {}", f3(iou))),
        }
    }
    if let Some(v) = scores.get(Score::Miou) {
        r.push(format!(
            "mask mIoU vs prediction {}",
            with_median(v, ctx.median_miou)
        ));
    }
    if let Some(v) = scores.get(Score::BoundaryIou) {
        r.push(format!(
            "Boundary IoU {}",
            with_median(v, ctx.median_boundary_iou)
        ));
    }
    if let Some(v) = scores.get(Score::NormalizedMarginSoftmin) {
        r.push(format!(
            "label quality (normalized margin, softmin) {}",
            f3(v)
        ));
    }
    if let Some(a) = scores.get(Score::PixelAccuracy)
        && a < PIXEL_AGREEMENT
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
    use super::*;

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

    #[test]
    fn reasons_name_the_classes_and_values() {
        let names: Vec<String> = ["cat", "dog"].iter().map(|s| s.to_string()).collect();
        let s = ItemScores::default()
            .with(Score::NormalizedMargin, Some(0.05))
            .with(Score::Entropy, Some(0.2));
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

    #[test]
    fn a_swapped_or_missing_class_names_both_classes() {
        let names: Vec<String> = ["background", "cell", "vessel", "nucleus", "membrane"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = ItemScores::segmentation(16384);
        let ctx = Context::default();
        // A membrane object annotated as cell: "membrane" is predicted but
        // never annotated; its largest confusion is its column's cell → membrane.
        let swapped = SegFacts {
            worst_class: Some((4, 0.0, 0, 1513)),
            ..SegFacts::default()
        };
        let x = Confused {
            annotated: 1,
            predicted: 4,
            pixels: 1513,
        };
        let r = seg_reasons(&scores, &swapped, Some(x), &ctx, &names);
        assert_eq!(
            r[0],
            "annotated \"cell\" where the model sees \"membrane\" (1513 px; \"membrane\" predicted but absent from the annotation, IoU 0.000)"
        );
        // A missing object: the model sees vessel where background is annotated.
        let missing = SegFacts {
            worst_class: Some((2, 0.0, 0, 976)),
            ..SegFacts::default()
        };
        let x = Confused {
            annotated: 0,
            predicted: 2,
            pixels: 976,
        };
        let r = seg_reasons(&scores, &missing, Some(x), &ctx, &names);
        assert!(
            r[0].starts_with("annotated \"background\" where the model sees \"vessel\" (976 px;")
        );
        // Without class names: the indices.
        let r = seg_reasons(&scores, &missing, Some(x), &ctx, &[]);
        assert!(r[0].starts_with("annotated 0 where the model sees 2 (976 px; 2 predicted"));
        // Without a confusion (or one of other classes): the class alone.
        let r = seg_reasons(&scores, &missing, None, &ctx, &names);
        assert_eq!(
            r[0],
            "class \"vessel\" predicted but absent from the annotation: IoU 0.000"
        );
        let other = Confused {
            annotated: 1,
            predicted: 3,
            pixels: 5,
        };
        assert_eq!(
            seg_reasons(&scores, &missing, Some(other), &ctx, &names)[0],
            r[0]
        );
    }
}
