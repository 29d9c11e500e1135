//! End-to-end numbers on inputs small enough to work out by hand.

use crate::common::*;

fn close(v: &serde_json::Value, expected: f64, what: &str) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{what} is {v}"));
    assert!(
        (got - expected).abs() < 2e-6,
        "{what}: got {got}, expected {expected}"
    );
}

/// Item `a` (4x4, 2 classes): the label map has class 0 in columns 0-1 and
/// class 1 in columns 2-3, with pixel (x=0, y=3) ignored (255). The model
/// gives 0.9 to its prediction and 0.1 to the other class everywhere; it
/// predicts the label except at (x=2, y=0), where it predicts 0.
/// Item `b` is the same label map predicted perfectly.
#[test]
fn segmentation_item_and_dataset_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"bg\", \"fg\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("items.csv"),
        "id,mask,split\nb,b.png,val\na,a.png,train\n",
    )
    .unwrap();
    let mut label = [0u8; 16];
    for y in 0..4 {
        for x in 0..4 {
            label[y * 4 + x] = (x >= 2) as u8;
        }
    }
    label[3 * 4] = 255;
    write_mask(&d.join("a.png"), 4, 4, &label);
    write_mask(&d.join("b.png"), 4, 4, &label);
    let mut probs = vec![0.0f32; 2 * 2 * 16];
    for (n, wrong) in [(0usize, None), (1, Some(2usize))] {
        for i in 0..16 {
            let pred = if Some(i) == wrong {
                0
            } else {
                (i % 4 >= 2) as usize
            };
            for k in 0..2 {
                probs[(n * 2 + k) * 16 + i] = if k == pred { 0.9 } else { 0.1 };
            }
        }
    }
    write_f32(&d.join("probs.npy"), &[2, 2, 4, 4], &probs);
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu", "--batch-size", "1"]);

    let q = read_queue(&out);
    assert_eq!(q.len(), 2);
    assert_eq!(q[0]["id"], "a", "the item with a disagreement ranks first");
    assert_eq!(q[0]["rank"], 1);
    assert_eq!(q[0]["split"], "train", "carried column");
    let s = &q[0]["scores"];
    // 15 non-ignored pixels; 14 agree.
    assert_eq!(s["pixels"], 15.0);
    // Class 0: G = 7, P = 8, I = 7. Class 1: G = 8, P = 7, I = 7.
    close(&s["miou"], 7.0 / 8.0, "miou");
    close(&s["dice"], 14.0 / 15.0, "dice");
    // d = max(1, round(0.02 * sqrt(32))) = 1: every pixel of a 4x4 map is in a band
    // (the outer ring touches the edge; the inner 2x2 straddles the class border).
    close(&s["boundary_iou"], 7.0 / 8.0, "boundary_iou");
    close(&s["pixel_accuracy"], 14.0 / 15.0, "pixel_accuracy");
    close(
        &s["self_confidence"],
        (14.0 * 0.9 + 0.1) / 15.0,
        "self_confidence",
    );
    close(
        &s["normalized_margin"],
        (14.0 * 0.9 + 0.1) / 15.0,
        "normalized_margin",
    );
    let h = -(0.9f64 * 0.9f64.ln() + 0.1 * 0.1f64.ln()) / 2f64.ln();
    close(&s["entropy"], h, "entropy");
    close(&s["margin"], 0.8, "margin");
    close(&s["least_confidence"], 0.1, "least_confidence");
    // One bin (0.9 -> bin 13): accuracy 14/15, confidence 0.9.
    close(&s["ece"], 14.0 / 15.0 - 0.9, "ece");
    let e1 = 1f64.exp();
    let e9 = 9f64.exp();
    let softmin = (14.0 * 0.9 * e1 + 0.1 * e9) / (14.0 * e1 + e9);
    close(
        &s["normalized_margin_softmin"],
        softmin,
        "normalized_margin_softmin",
    );
    close(
        &s["self_confidence_softmin"],
        softmin,
        "self_confidence_softmin",
    );
    close(
        &q[0]["priority"],
        1.0 - (0.875 + 0.875 + softmin) / 3.0,
        "priority",
    );
    let reasons: Vec<&str> = q[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("mIoU") && r.contains("0.875")),
        "{reasons:?}"
    );

    // Item b is perfect.
    close(&q[1]["scores"]["miou"], 1.0, "b miou");
    close(&q[1]["scores"]["boundary_iou"], 1.0, "b boundary_iou");

    // Dataset: pooled counts over both items (30 pixels, 29 correct).
    let r = read_report(&out);
    assert_eq!(r["n_items"], 2);
    assert_eq!(r["task"], "segmentation");
    close(&r["accuracy"], 29.0 / 30.0, "accuracy");
    assert_eq!(r["confusion"], serde_json::json!([[14, 0], [1, 15]]));
    // Class 0: I = 14, G = 14, P = 15 -> 14/15. Class 1: I = 15, G = 16, P = 15 -> 15/16.
    close(&r["per_class"][0]["iou"], 14.0 / 15.0, "class 0 iou");
    close(&r["per_class"][1]["iou"], 15.0 / 16.0, "class 1 iou");
    close(&r["per_class"][1]["dice"], 30.0 / 31.0, "class 1 dice");
    close(
        &r["per_class"][1]["boundary_iou"],
        15.0 / 16.0,
        "class 1 boundary_iou",
    );
    assert_eq!(r["per_class"][1]["support"], 16);
    close(&r["ece"], 29.0 / 30.0 - 0.9, "dataset ece");
    close(&r["mce"], 29.0 / 30.0 - 0.9, "dataset mce");
    assert_eq!(r["reliability"][13]["count"], 30);
    assert_eq!(r["backend"]["name"], "cpu");
    assert!(r["timings"]["total_s"].is_number());
    assert_eq!(
        r["priority"]["formula"],
        "1 - mean(miou, boundary_iou, normalized_margin_softmin) over the defined terms"
    );
}

#[test]
fn classification_scores_and_label_names() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"cat\", \"dog\", \"fox\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("items.csv"),
        "id,label,annotator\nx1,cat,ann\nx2,fox,ann\nx3,1,bob\n",
    )
    .unwrap();
    // x2 is labelled fox but the model says dog at 0.8.
    write_f64(
        &d.join("probs.npy"),
        &[3, 3],
        &[0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.4, 0.3],
    );
    let out = d.join("out");
    run_ok(d, &out, &["--top", "2"]);
    let q = read_queue(&out);
    assert_eq!(q.len(), 2, "--top 2 keeps two rows");
    assert_eq!(q[0]["id"], "x2");
    assert_eq!(q[0]["label"], "fox");
    assert_eq!(q[0]["predicted"], "dog");
    assert_eq!(q[0]["annotator"], "ann");
    close(
        &q[0]["scores"]["normalized_margin"],
        (0.1 - 0.8 + 1.0) / 2.0,
        "nm",
    );
    close(&q[0]["scores"]["self_confidence"], 0.1, "sc");
    close(&q[0]["scores"]["ece"], 0.8, "item ece = |0 - 0.8|");
    // Brier: 0.1² + 0.8² + (0.1 − 1)² = 0.01 + 0.64 + 0.81.
    close(&q[0]["scores"]["brier"], 1.46, "brier");
    close(
        &q[0]["priority"],
        1.0 - 0.15,
        "priority = 1 - normalized_margin",
    );
    assert!(
        q[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("labelled \"fox\" (p=0.100), predicted \"dog\" (p=0.800)")
    );
    // The checks that flag x2: wrong_label (1 − nm = 0.85 > 0.5), uncertain
    // (entropy −(2·0.1 ln 0.1 + 0.8 ln 0.8)/ln 3 = 0.582 ≥ 0.5), miscalibrated
    // (|0 − 0.8| ≥ 0.25); not class_imbalance (one item in each of 3 classes).
    assert_eq!(
        q[0]["flags"],
        serde_json::json!(["wrong_label", "uncertain", "miscalibrated"])
    );
    // x3 (dog, 0.4 vs 0.3): nm = 0.55, priority 0.45; x1: nm = 0.75, priority 0.25.
    assert_eq!(q[1]["id"], "x3");
    // x3: 1 − nm = 0.45, not wrong_label; entropy 0.991, ece |1 − 0.4| = 0.6.
    assert_eq!(
        q[1]["flags"],
        serde_json::json!(["uncertain", "miscalibrated"])
    );
    let r = read_report(&out);
    assert_eq!(r["n_items"], 3, "the report covers every item");
    close(&r["accuracy"], 2.0 / 3.0, "accuracy");
    assert_eq!(r["per_class"][1]["support"], 1);
    assert_eq!(r["per_class"][1]["predicted"], 2);
    let csv = std::fs::read_to_string(out.join("queue.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        "rank,id,priority,reasons,flags,label,predicted,entropy,margin,least_confidence,self_confidence,normalized_margin,brier,ece,check_wrong_label,check_uncertain,check_miscalibrated,check_class_imbalance,in_budget,spot_check,review_all,also_in_cluster,annotator"
    );
    // x3's check scores: wrong_label 1 − nm = 0.45, miscalibrated its ece 0.6.
    close(&q[1]["check_scores"]["wrong_label"], 0.45, "x3 wrong_label");
    close(
        &q[1]["check_scores"]["miscalibrated"],
        0.6,
        "x3 miscalibrated",
    );
    assert_eq!(csv.lines().count(), 3);
}

#[test]
fn logits_are_softmaxed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nnum_classes = 2\n[inputs]\nprobs = \"probs.npy\"\nlabels = \"labels.npy\"\n",
    )
    .unwrap();
    // softmax(0, ln 3) = (0.25, 0.75)
    write_f32(&d.join("probs.npy"), &[1, 2], &[0.0, 3f32.ln()]);
    write_u16(&d.join("labels.npy"), &[1], &[0]);
    let out = d.join("out");
    let args = ["run", d.to_str().unwrap(), "--out", out.to_str().unwrap()];
    assert_eq!(
        triage(&args).status.code(),
        Some(2),
        "logits are not probabilities"
    );
    run_ok(d, &out, &["--logits"]);
    let q = read_queue(&out);
    assert_eq!(q[0]["id"], "0", "ids are row numbers without items.csv");
    close(&q[0]["scores"]["self_confidence"], 0.25, "sc");
}
