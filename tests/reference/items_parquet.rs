//! `items.parquet` read by pyarrow and polars (`py/items_parquet_ref.py`):
//! the documented columns with their types, one row per item, and for every
//! `queue.jsonl` row the same rank, priority, label, prediction, flags and
//! scores (exact floats). On the demo (segmentation) and the shipped
//! CIFAR-10 set (classification). Needs `TRIAGE_REF_PYTHON` with pyarrow
//! and polars; skipped without it unless `TRIAGE_REQUIRE_REF=1`.

use std::path::Path;

use crate::common::run_ok;

fn reference(python: &std::ffi::OsStr, out: &Path) -> serde_json::Value {
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/py/items_parquet_ref.py"))
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn column_names(r: &serde_json::Value) -> Vec<String> {
    r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[0].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn items_parquet_reads_in_pyarrow_and_polars_as_queue_jsonl_says() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the items.parquet reference: set TRIAGE_REF_PYTHON");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets");
    let tmp = tempfile::tempdir().unwrap();

    // Segmentation: 32 items, no label/predicted columns.
    let out = tmp.path().join("demo");
    run_ok(&root.join("demo"), &out, &["--backend", "cpu"]);
    let r = reference(&python, &out);
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
    assert_eq!(
        (r["rows"].as_u64(), r["queue_rows"].as_u64()),
        (Some(32), Some(32))
    );
    assert_eq!(
        (r["polars_rows"].as_u64(), r["polars_ids_unique"].as_u64()),
        (Some(32), Some(32))
    );
    let names = column_names(&r);
    assert_eq!(names[..4], ["id", "rank", "priority", "unlabelled"]);
    for c in [
        "flag_wrong_label",
        "flag_duplicate_conflict",
        "miou",
        "boundary_iou",
        "brier",
    ] {
        assert!(names.iter().any(|n| n == c), "{c} in {names:?}");
    }
    assert!(!names.iter().any(|n| n == "label"), "{names:?}");
    let types: Vec<(&str, &str, bool)> = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap(),
                c[1].as_str().unwrap(),
                c[2].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(types[0], ("id", "string", false));
    assert_eq!(types[1], ("rank", "int64", true));
    assert_eq!(types[2], ("priority", "double", true));
    assert_eq!(types[3], ("unlabelled", "bool", false));

    // Classification: 10 000 items with label and predicted.
    let out = tmp.path().join("cifar");
    run_ok(
        &root.join("cifar10-label-errors"),
        &out,
        &["--backend", "cpu"],
    );
    let r = reference(&python, &out);
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
    assert_eq!(r["rows"].as_u64(), Some(10_000));
    assert_eq!(r["polars_ids_unique"].as_u64(), Some(10_000));
    let names = column_names(&r);
    assert_eq!(
        names[..6],
        ["id", "rank", "priority", "label", "predicted", "unlabelled"]
    );
    for c in [
        "self_confidence",
        "normalized_margin",
        "entropy",
        "brier",
        "ece",
    ] {
        assert!(names.iter().any(|n| n == c), "{c} in {names:?}");
    }
}
