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

/// 30 classification items with 8-dimensional embeddings, each its own
/// direction, and items.csv's `split`: rows 0–19 `train`, 20–24 `val`,
/// 25–29 `test`. Planted: `val` row 20 is train row 3 with a tiny nudge (a
/// near-duplicate across splits), `test` row 25 is train row 7 exactly (an
/// identical item), and train rows 10 and 11 are near-duplicates inside one
/// split (not leakage). Every label agrees with its copy's, so no
/// near-duplicate conflicts.
fn leaky_dataset(d: &Path, with_split: bool) {
    let n = 30;
    let dim = 8;
    let mut emb: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..dim).map(move |k| {
                // A direction per item: a splitmix64 hash of (i, k) in
                // [-0.5, 0.5), so two items are far apart.
                let mut z = ((i * dim + k) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
        })
        .collect();
    let copy = |emb: &mut Vec<f32>, from: usize, to: usize, nudge: f32| {
        for k in 0..dim {
            emb[to * dim + k] = emb[from * dim + k] + if k == 0 { nudge } else { 0.0 };
        }
    };
    copy(&mut emb, 3, 20, 1e-3);
    copy(&mut emb, 7, 25, 0.0);
    copy(&mut emb, 10, 11, 1e-3);
    let labels: Vec<usize> = (0..n)
        .map(|i| match i {
            20 => 3 % 3,
            25 => 7 % 3,
            11 => 10 % 3,
            _ => i % 3,
        })
        .collect();
    let mut csv = String::from(if with_split {
        "id,label,split\n"
    } else {
        "id,label\n"
    });
    let mut probs = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        let split = match i {
            0..20 => "train",
            20..25 => "val",
            _ => "test",
        };
        if with_split {
            csv.push_str(&format!("i{i:02},c{l},{split}\n"));
        } else {
            csv.push_str(&format!("i{i:02},c{l}\n"));
        }
        probs.extend((0..3).map(|k| if k == l { 0.8f32 } else { 0.1 }));
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    write_f32(&d.join("probs.npy"), &[n, 3], &probs);
    write_f32(&d.join("embeddings.npy"), &[n, dim], &emb);
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"c0\", \"c1\", \"c2\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nembeddings = \"embeddings.npy\"\n",
    )
    .unwrap();
}

#[test]
fn leakage_finds_the_planted_cross_split_copies_and_nothing_inside_a_split() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    leaky_dataset(d, true);
    let out = d.join("out");
    run_ok(d, &out, &[]);
    let r = read_report(&out);
    let lk = &r["checks"]["leakage"];
    assert_eq!(lk["status"], "ran", "{lk}");
    assert_eq!(lk["needs"], json!(["embeddings_or_images", "splits"]));
    // Both items of each planted pair, and no other.
    assert_eq!(lk["flagged"], 4, "{lk}");
    let s = &lk["summary"];
    assert_eq!(s["train_split"], "train");
    let pairs = s["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    // Closest first: the identical copy.
    assert_eq!(
        (&pairs[0]["a"], &pairs[0]["b"], &pairs[0]["exact"]),
        (&json!("i07"), &json!("i25"), &json!(true))
    );
    assert_eq!(
        (&pairs[0]["split_a"], &pairs[0]["split_b"]),
        (&json!("train"), &json!("test"))
    );
    assert_eq!(
        (&pairs[1]["a"], &pairs[1]["b"], &pairs[1]["exact"]),
        (&json!("i03"), &json!("i20"), &json!(false))
    );
    assert!(pairs[1]["distance"].as_f64().unwrap() > 0.0);
    // One of 5 `val` items and one of 5 `test` items has a copy in train.
    assert_eq!(s["split_share"], json!({"test": 0.2, "val": 0.2}));

    // The queue: the leaking rows carry the flag and a reason naming the
    // other split; the within-split pair (i10, i11) carries neither.
    let rows = read_queue(&out);
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    for (id, other, split) in [
        ("i25", "i07", "train"),
        ("i07", "i25", "test"),
        ("i20", "i03", "train"),
    ] {
        let r = row(id);
        assert!(
            r["flags"].as_array().unwrap().contains(&json!("leakage")),
            "{r}"
        );
        let reasons: Vec<&str> = r["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            reasons
                .iter()
                .any(|t| t.starts_with("leakage:") && t.contains(other) && t.contains(split)),
            "{reasons:?}"
        );
    }
    for id in ["i10", "i11", "i00"] {
        assert!(
            !row(id)["flags"]
                .as_array()
                .unwrap()
                .contains(&json!("leakage")),
            "{id}"
        );
    }
    // Its view: score 1 for the identical pair, 1 − d/(2t) in [0.5, 1) for the near one.
    let view = &r["views"]["leakage"];
    let score = |id: &str| {
        view["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(score("i25"), 1.0);
    let near = score("i20");
    assert!((0.5..1.0).contains(&near), "{near}");

    // Without a split column the check is skipped, with its reason.
    let tmp2 = tempfile::tempdir().unwrap();
    leaky_dataset(tmp2.path(), false);
    let out2 = tmp2.path().join("out");
    run_ok(tmp2.path(), &out2, &[]);
    let r2 = read_report(&out2);
    assert_eq!(r2["checks"]["leakage"]["status"], "skipped");
    assert_eq!(
        r2["checks"]["leakage"]["reason"],
        "needs a split column in items.csv with two or more values"
    );
}

/// Every check's per-item score under its documented formula
/// (docs/reference.md, the table of checks), from the row's own scores.
fn documented_score(check: &str, seg: bool, s: &Value) -> Option<f64> {
    let get = |k: &str| s.get(k).and_then(Value::as_f64);
    match check {
        "wrong_label" if seg => get("normalized_margin_softmin").map(|v| 1.0 - v),
        "wrong_label" => get("normalized_margin").map(|v| 1.0 - v),
        "uncertain" => get("entropy"),
        "miscalibrated" => get("ece"),
        "boundary_disagreement" => get("boundary_iou").map(|v| 1.0 - v),
        "duplicate_conflict" => get("dup_conflict"),
        _ => None,
    }
}

/// The documented flag rule of the label-quality checks.
fn documented_flag(check: &str, v: f64) -> Option<bool> {
    match check {
        "wrong_label" | "boundary_disagreement" => Some(v > 0.5),
        "uncertain" => Some(v >= 0.5),
        "miscalibrated" => Some(v >= 0.25),
        "duplicate_conflict" | "leakage" => Some(v > 0.0),
        "class_imbalance" => Some(v > 0.9),
        _ => None,
    }
}

#[test]
fn every_queue_row_carries_every_checks_score_in_jsonl_csv_and_parquet() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for (name, seg) in [("demo", true), ("cifar10-label-errors", false)] {
        let out = tmp.path().join(name);
        run_ok(&root.join("datasets").join(name), &out, &[]);
        let report = read_report(&out);
        let ran: Vec<&str> = report["checks"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, c)| c["status"] == "ran")
            .map(|(k, _)| k.as_str())
            .collect();
        assert!(
            ran.contains(&"wrong_label") && ran.contains(&"uncertain"),
            "{ran:?}"
        );
        let rows = read_queue(&out);
        let csv = std::fs::read_to_string(out.join("queue.csv")).unwrap();
        let mut records = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = records
            .headers()
            .unwrap()
            .iter()
            .map(String::from)
            .collect();
        let records: Vec<csv::StringRecord> = records.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), rows.len());
        let (mut checked, mut flagged) = (0, 0);
        for (row, rec) in rows.iter().zip(&records) {
            let cs = row["check_scores"].as_object().unwrap();
            assert_eq!(
                cs.keys().map(String::as_str).collect::<Vec<_>>(),
                ran,
                "{row}"
            );
            let flags: Vec<&str> = row["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            for (check, v) in cs {
                let col = header
                    .iter()
                    .position(|h| *h == format!("check_{check}"))
                    .unwrap();
                let cell = &rec[col];
                match v.as_f64() {
                    Some(x) => assert_eq!(cell.parse::<f64>().unwrap(), x, "{check} {row}"),
                    None => assert_eq!(cell, "", "{check} {row}"),
                }
                if let (Some(want), Some(x)) =
                    (documented_score(check, seg, &row["scores"]), v.as_f64())
                {
                    assert!(
                        (want - x).abs() < 1e-12,
                        "{check}: {x} against {want} in {row}"
                    );
                    checked += 1;
                }
                if let Some(x) = v.as_f64()
                    && let Some(f) = documented_flag(check, x)
                {
                    assert_eq!(flags.contains(&check.as_str()), f, "{check} = {x} in {row}");
                    flagged += usize::from(f);
                }
            }
        }
        // wrong_label, uncertain, miscalibrated (and boundary_disagreement).
        let per_row = if seg { 4 } else { 3 };
        assert!(
            checked >= per_row * rows.len(),
            "{name}: {checked} scores checked"
        );
        assert!(flagged > 0, "{name}");
        // items.parquet: the same scores, by id (every item, queue order aside).
        let by_id: std::collections::HashMap<&str, &Value> = rows
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r))
            .collect();
        let file = std::fs::File::open(out.join("items.parquet")).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader;
        let mut seen = 0;
        for rec in reader.get_row_iter(None).unwrap() {
            let rec = rec.unwrap();
            let cols: Vec<(String, parquet::record::Field)> = rec
                .get_column_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let id = match &cols[0].1 {
                parquet::record::Field::Str(s) => s.clone(),
                f => panic!("id {f:?}"),
            };
            let Some(row) = by_id.get(id.as_str()) else {
                continue;
            };
            for check in &ran {
                let field = &cols
                    .iter()
                    .find(|(k, _)| *k == format!("check_{check}"))
                    .unwrap()
                    .1;
                let want = row["check_scores"][*check].as_f64();
                match field {
                    parquet::record::Field::Double(x) => assert_eq!(Some(*x), want, "{id} {check}"),
                    parquet::record::Field::Null => assert_eq!(None, want, "{id} {check}"),
                    f => panic!("{f:?}"),
                }
            }
            seen += 1;
        }
        assert_eq!(seen, rows.len(), "{name}");
    }
}

/// Broken embedding rows (two NaN components, all zeros, all equal) do not
/// fail the run: the `null` check flags exactly those items, with their
/// share of bad components as score, they have no neighbours and are no
/// one's, and they keep the scores of their probabilities.
#[test]
fn null_embedding_rows_are_flagged_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    leaky_dataset(d, false);
    // leaky_dataset's 30 × 8 float32 rows, three of them broken.
    let path = d.join("embeddings.npy");
    let bytes = std::fs::read(&path).unwrap();
    let header = bytes.len() - 30 * 8 * 4;
    let mut emb: Vec<f32> = bytes[header..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    emb[4 * 8 + 1] = f32::NAN;
    emb[4 * 8 + 6] = f32::INFINITY;
    emb[9 * 8..10 * 8].fill(0.0);
    emb[17 * 8..18 * 8].fill(0.25);
    write_f32(&path, &[30, 8], &emb);
    let out = d.join("out");
    run_ok(d, &out, &["--knn", "exact"]);
    let report = read_report(&out);
    let null = &report["checks"]["null"];
    assert_eq!(null["status"], "ran");
    assert_eq!(null["flagged"], 3);
    assert_eq!(
        null["summary"],
        json!({"null_rows": 3, "non_finite": 1, "zero": 1, "constant": 1})
    );
    let rows = read_queue(&out);
    for r in &rows {
        let id = r["id"].as_str().unwrap();
        let want = match id {
            "i04" => 0.25,
            "i09" | "i17" => 1.0,
            _ => 0.0,
        };
        assert_eq!(r["check_scores"]["null"].as_f64(), Some(want), "{id}");
        let flagged = r["flags"].as_array().unwrap().iter().any(|f| f == "null");
        assert_eq!(flagged, want > 0.0, "{id}");
        // Every item keeps its label-quality scores.
        assert!(r["scores"]["normalized_margin"].as_f64().is_some(), "{id}");
        if want > 0.0 {
            let reason = r["reasons"][0].as_str().unwrap();
            assert!(reason.starts_with("null embedding: "), "{id}: {reason}");
        }
        // No one's neighbour is a broken row.
        for n in r["neighbors"].as_array().unwrap() {
            assert!(
                !["i04", "i09", "i17"].contains(&n["id"].as_str().unwrap()),
                "{r}"
            );
        }
    }
    assert!(rows.iter().any(|r| {
        r["id"] == "i04"
            && r["reasons"][0]
                .as_str()
                .unwrap()
                .contains("2 of its 8 components are not finite")
    }));
    // The outlier check sees only the usable rows: none of the broken ones
    // has a score.
    for r in rows
        .iter()
        .filter(|r| ["i04", "i09", "i17"].contains(&r["id"].as_str().unwrap()))
    {
        assert!(r["check_scores"]["outlier"].is_null(), "{r}");
    }
}

/// `--checks` runs exactly the named checks (the others skipped, "not
/// selected", and recorded in `options.checks`); an unknown name exits 2,
/// names the check and the valid ones, and writes nothing.
#[test]
fn checks_option_selects_and_refuses_unknown_names() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    leaky_dataset(d, true);
    let out = d.join("out");
    run_ok(d, &out, &["--checks", "leakage,data_valuation"]);
    let report = read_report(&out);
    for (name, c) in report["checks"].as_object().unwrap() {
        let want = if ["leakage", "data_valuation"].contains(&name.as_str()) {
            "ran"
        } else {
            "skipped"
        };
        assert_eq!(c["status"], want, "{name}");
        if want == "skipped" && name != "select_for_labelling" {
            assert_eq!(c["reason"], "not selected", "{name}");
        }
    }
    assert_eq!(
        report["options"]["checks"],
        json!(["leakage", "data_valuation"])
    );
    // Each check that ran has its time, within the queue stage's.
    let t = &report["timings"];
    let names: Vec<&String> = t["checks_s"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["leakage", "data_valuation"]);
    let sum: f64 = t["checks_s"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(sum >= 0.0 && sum <= t["queue_s"].as_f64().unwrap(), "{t}");
    let rows = read_queue(&out);
    let keys: Vec<&String> = rows[0]["check_scores"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["leakage", "data_valuation"]);
    refused_run(
        d,
        &["--checks", "leakage,outliers"],
        &["\"outliers\"", "underperforming_group"],
    );
}

/// Without embeddings, identical image files (by content) in different
/// splits are leakage: both items flagged at score 1 with an "identical
/// item" reason; identical files inside one split, and different files,
/// are not. Without an image column the check is skipped with its reason.
#[test]
fn identical_images_across_splits_are_leakage_without_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    leaky_dataset(d, true);
    // No embeddings; an image per item: i03 and i20 (train, val) the same
    // bytes, i01 and i02 (both train) the same, every other file its own.
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        toml.replace("embeddings = \"embeddings.npy\"\n", ""),
    )
    .unwrap();
    let out = d.join("out-noimage");
    run_ok(d, &out, &[]);
    assert_eq!(
        read_report(&out)["checks"]["leakage"]["reason"],
        "needs embeddings ([inputs] embeddings) or an image column in items.csv"
    );
    std::fs::create_dir_all(d.join("img")).unwrap();
    let csv = std::fs::read_to_string(d.join("items.csv")).unwrap();
    let mut lines = csv.lines();
    let mut with_image = format!("{},image\n", lines.next().unwrap());
    for (i, line) in lines.enumerate() {
        let content = match i {
            20 => "pixels of 3".to_string(),
            2 => "pixels of 1".to_string(),
            _ => format!("pixels of {i}"),
        };
        std::fs::write(d.join(format!("img/{i}.png")), content).unwrap();
        with_image.push_str(&format!("{line},img/{i}.png\n"));
    }
    std::fs::write(d.join("items.csv"), with_image).unwrap();
    let out = d.join("out");
    run_ok(d, &out, &[]);
    let report = read_report(&out);
    let leak = &report["checks"]["leakage"];
    assert_eq!(leak["status"], "ran", "{leak}");
    assert_eq!(leak["flagged"], 2, "{leak}");
    assert_eq!(
        leak["summary"]["pairs"].as_array().unwrap().len(),
        1,
        "{leak}"
    );
    assert_eq!(leak["summary"]["pairs"][0]["exact"], true);
    for r in read_queue(&out) {
        let id = r["id"].as_str().unwrap();
        let leaked = ["i03", "i20"].contains(&id);
        assert_eq!(
            r["check_scores"]["leakage"].as_f64(),
            Some(if leaked { 1.0 } else { 0.0 }),
            "{id}"
        );
        if leaked {
            assert!(
                r["reasons"][0]
                    .as_str()
                    .unwrap()
                    .starts_with("leakage: an identical item"),
                "{r}"
            );
        }
    }
}
