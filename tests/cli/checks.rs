//! The check contract end to end: a check runs or is skipped with its
//! reason (`report.json` `checks`), its flags drive its view, and the
//! reasons it adds reach the queue rows. Shown on `class_imbalance`, the
//! check added through the contract, on a dataset with a planted rare class.

use std::path::Path;

use crate::common::*;
use serde_json::{Value, json};

/// 200 classification items over 5 classes: a uniform share is 0.2, so a
/// class is rare below 0.1 × 0.2 = 0.02, i.e. under 4 items.
///
/// | class | items | share | score 1 − min(1, 5·share) | flagged |
/// |-------|-------|-------|----------------------------|---------|
/// | c0    | 97    | .485  | 0                          | no      |
/// | c1    | 96    | .48   | 0                          | no      |
/// | c2    | 4     | .02   | 0.9 (on the threshold)     | no      |
/// | c3    | 3     | .015  | 0.925                      | yes     |
/// | c4    | 0     | 0     | (no item)                  | absent  |
fn rare_class_dataset(d: &Path) -> Vec<usize> {
    let mut labels = vec![0usize; 97];
    labels.extend([1; 96]);
    labels.extend([2; 4]);
    labels.extend([3; 3]);
    // Spread the rare items through the file.
    let n = labels.len();
    labels.swap(10, n - 1);
    labels.swap(120, n - 2);
    let mut csv = String::from("id,label\n");
    let mut probs = Vec::with_capacity(n * 5);
    for (i, &l) in labels.iter().enumerate() {
        csv.push_str(&format!("i{i:03},c{l}\n"));
        // The model agrees with every label, more or less surely.
        let p = 0.5 + 0.4 * ((i * 37 % 100) as f32 / 100.0);
        let rest = (1.0 - p) / 4.0;
        probs.extend((0..5).map(|k| if k == l { p } else { rest }));
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    write_f32(&d.join("probs.npy"), &[n, 5], &probs);
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"c0\", \"c1\", \"c2\", \"c3\", \"c4\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    labels
}

#[test]
fn class_imbalance_flags_the_rare_class_and_skipped_checks_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let labels = rare_class_dataset(d);
    let rare: Vec<String> = (0..labels.len())
        .filter(|&i| labels[i] == 3)
        .map(|i| format!("i{i:03}"))
        .collect();
    assert_eq!(rare.len(), 3);
    let out = d.join("out");
    run_ok(d, &out, &[]);
    let r = read_report(&out);

    let ci = &r["checks"]["class_imbalance"];
    assert_eq!(ci["status"], "ran");
    assert_eq!(ci["needs"], json!(["classification"]));
    assert_eq!(ci["flagged"], 3);
    assert_eq!(
        ci["summary"]["rare_classes"],
        json!([{"class": 3, "name": "c3", "items": 3, "share": 0.015}])
    );
    assert_eq!(
        ci["summary"]["absent_classes"],
        json!([{"class": 4, "name": "c4", "items": 0, "share": 0.0}])
    );
    // Its view lists exactly the rare items, each scored 1 − 5 · 0.015.
    let view = &r["views"]["class_imbalance"];
    assert_eq!(view["flagged"], 3);
    let mut ids: Vec<String> = view["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert!((v["score"].as_f64().unwrap() - 0.925).abs() < 1e-12, "{v}");
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, rare);

    // The checks whose inputs are missing are skipped, with the reason.
    for (name, reason) in [
        ("boundary_disagreement", "segmentation only"),
        (
            "duplicate_conflict",
            "needs embeddings ([inputs] embeddings)",
        ),
    ] {
        let c = &r["checks"][name];
        assert_eq!(c["status"], "skipped", "{name}");
        assert_eq!(c["reason"], reason, "{name}");
        assert_eq!(r["views"][name]["flagged"], 0, "{name}");
    }
    for name in ["wrong_label", "uncertain", "miscalibrated"] {
        assert_eq!(r["checks"][name]["status"], "ran", "{name}");
        assert_eq!(
            r["checks"][name]["flagged"], r["views"][name]["flagged"],
            "{name}: the view counts the check's flags"
        );
    }

    // The added reason is the rare items' last, and only theirs.
    for row in read_queue(&out) {
        let id = row["id"].as_str().unwrap();
        let reasons: Vec<&str> = row["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let has = reasons.iter().any(|s| s.starts_with("rare class"));
        assert_eq!(has, rare.iter().any(|x| x == id), "{id}: {reasons:?}");
        if has {
            assert_eq!(
                *reasons.last().unwrap(),
                "rare class \"c3\": 3 of 200 labelled items (1.50%), under 10% of a uniform share (1/5)"
            );
            assert!(reasons[0].starts_with("model agrees with the label \"c3\""));
        }
    }
}

#[test]
fn segmentation_with_embeddings_runs_the_neighbour_check_and_skips_class_imbalance() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run_ok(Path::new("datasets/demo"), &out, &["--deterministic"]);
    let r = read_report(&out);
    assert_eq!(r["checks"]["class_imbalance"]["status"], "skipped");
    assert_eq!(
        r["checks"]["class_imbalance"]["reason"],
        "classification only"
    );
    assert_eq!(
        r["checks"]["class_imbalance"]["needs"],
        json!(["classification"])
    );
    let dc = &r["checks"]["duplicate_conflict"];
    assert_eq!(dc["status"], "ran");
    assert_eq!(dc["needs"], json!(["embeddings"]));
    let flagged = dc["flagged"].as_u64().unwrap();
    assert!(flagged > 0, "the demo plants conflicting near-duplicates");
    assert_eq!(r["views"]["duplicate_conflict"]["flagged"], flagged);
    // Every flagged item names its conflicting partner first.
    let q = read_queue(&out);
    let with_conflict = q
        .iter()
        .filter(|row| row["scores"]["dup_conflict"].as_f64().unwrap() > 0.0)
        .inspect(|row| {
            assert!(
                row["reasons"][0]
                    .as_str()
                    .unwrap()
                    .starts_with("near-duplicate of"),
                "{row}"
            )
        })
        .count();
    assert_eq!(with_conflict as u64, flagged);
    // The formula records the conflict raise when the neighbour stage ran.
    assert_eq!(
        r["priority"]["conflict_raise"],
        Value::from(triage::priority::CONFLICT_RAISE)
    );
}
