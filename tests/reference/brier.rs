//! The per-sample Brier score (`brier`, declared in the score table) against
//! scikit-learn's `brier_score_loss` (`scale_by_half=False`, the multiclass
//! definition `Σ_k (p_k − [k = y])²`) on the shipped CIFAR-10 set: the value
//! of 500 rows one by one, and the dataset mean. Needs `TRIAGE_REF_PYTHON`
//! (a Python with numpy and scikit-learn); skipped without it unless
//! `TRIAGE_REQUIRE_REF=1`.

use std::path::Path;

use crate::common::{read_queue, run_ok};

#[test]
fn brier_matches_scikit_learn_on_cifar10() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the scikit-learn Brier reference: set TRIAGE_REF_PYTHON");
        return;
    };
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/cifar10-label-errors");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run_ok(&data, &out, &["--backend", "cpu"]);
    let queue = read_queue(&out);
    assert_eq!(queue.len(), 10_000);
    let by_id: std::collections::HashMap<&str, f64> = queue
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["scores"]["brier"].as_f64().unwrap(),
            )
        })
        .collect();
    let brier = |id: usize| -> f64 { by_id[id.to_string().as_str()] };
    let rows: Vec<usize> = (0..500).map(|i| i * 19 + 7).collect();
    let arg: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/py/brier_ref.py"))
        .arg(data.join("probs.npy"))
        .arg(data.join("labels.npy"))
        .arg(arg.join(","))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The probabilities are float64 in the file and scored in float32.
    for r in rows {
        let w = want["rows"][r.to_string()].as_f64().unwrap();
        let g = brier(r);
        assert!((g - w).abs() < 2e-6, "row {r}: brier {g}, scikit-learn {w}");
    }
    let mean = queue
        .iter()
        .map(|r| r["scores"]["brier"].as_f64().unwrap())
        .sum::<f64>()
        / queue.len() as f64;
    let w = want["mean"].as_f64().unwrap();
    assert!(
        (mean - w).abs() < 1e-6,
        "mean brier {mean}, scikit-learn {w}"
    );
    // A real signal: the 54 human-verified label errors score far worse
    // than the rest on average.
    let verified: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("verified_errors.json")).unwrap())
            .unwrap();
    let errs: Vec<usize> = verified["verified_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mean_err = errs.iter().map(|&r| brier(r)).sum::<f64>() / errs.len() as f64;
    assert!(
        mean_err > 3.0 * mean,
        "verified errors' mean brier {mean_err} vs all rows {mean}"
    );
}
