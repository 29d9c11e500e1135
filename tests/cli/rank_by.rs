//! `--rank-by SCORE`: the queue ordered by one label-quality score, on three
//! hand-worked items whose orders differ by score.

use std::path::Path;

use crate::common::*;

/// Three items labelled 0 of 3 classes:
///
/// | row | probabilities     | self_confidence | normalized_margin       | brier                          |
/// |-----|-------------------|-----------------|-------------------------|--------------------------------|
/// | 0   | 0.40, 0.30, 0.30  | 0.40            | (0.40−0.30+1)/2 = 0.550 | 0.36+0.09+0.09 = 0.540         |
/// | 1   | 0.35, 0.60, 0.05  | 0.35            | (0.35−0.60+1)/2 = 0.375 | 0.4225+0.36+0.0025 = 0.785     |
/// | 2   | 0.30, 0.35, 0.35  | 0.30            | (0.30−0.35+1)/2 = 0.475 | 0.49+0.1225+0.1225 = 0.735     |
fn three_items(d: &Path) {
    std::fs::create_dir_all(d).unwrap();
    let p = [0.40, 0.30, 0.30, 0.35, 0.60, 0.05, 0.30, 0.35, 0.35];
    write_f64(&d.join("probs.npy"), &[3, 3], &p);
    write_u16(&d.join("labels.npy"), &[3], &[0, 0, 0]);
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nnum_classes = 3\n[inputs]\nprobs = \"probs.npy\"\nlabels = \"labels.npy\"\n",
    )
    .unwrap();
}

/// (id, priority) in queue order.
fn order(out: &Path) -> Vec<(String, f64)> {
    read_queue_rows(out)
        .iter()
        .map(|r| {
            (
                r.id.to_string(),
                r.priority.expect("a labelled item has a priority"),
            )
        })
        .collect()
}

#[test]
fn rank_by_orders_the_queue_by_the_chosen_score() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    three_items(&d);
    // (--rank-by, the ids in queue order, their priorities, report.json's formula).
    let cases: [(&str, [&str; 3], [f64; 3], &str); 4] = [
        (
            "default",
            ["1", "2", "0"],
            [0.625, 0.525, 0.45],
            "1 - normalized_margin",
        ),
        (
            "normalized_margin",
            ["1", "2", "0"],
            [0.625, 0.525, 0.45],
            "1 - normalized_margin",
        ),
        (
            "self_confidence",
            ["2", "1", "0"],
            [0.70, 0.65, 0.60],
            "1 - self_confidence",
        ),
        (
            "brier",
            ["1", "2", "0"],
            [0.3925, 0.3675, 0.27],
            "brier / 2",
        ),
    ];
    for (rank, ids, prios, formula) in cases {
        let out = tmp.path().join(format!("out-{rank}"));
        run_ok(&d, &out, &["--backend", "cpu", "--rank-by", rank]);
        let got = order(&out);
        let got_ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(got_ids, ids, "--rank-by {rank}");
        for ((_, p), want) in got.iter().zip(prios) {
            // Scores are computed in f32.
            assert!((p - want).abs() < 1e-6, "--rank-by {rank}: {p} vs {want}");
        }
        let report = read_report_typed(&out);
        assert_eq!(report.priority.formula, formula, "--rank-by {rank}");
        assert_eq!(report.options.rank_by, rank);
    }
}

#[test]
fn rank_by_refuses_a_score_it_cannot_rank_by() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    three_items(&d);
    let out = tmp.path().join("out");
    for (rank, says) in [
        (
            "miou",
            "--rank-by miou: a segmentation score, and this dataset is classification; choose one of: default, self_confidence, normalized_margin, brier",
        ),
        (
            "entropy",
            "entropy is not a label-quality score; choose one of: default, self_confidence",
        ),
        ("p_label", "no score is named \"p_label\""),
    ] {
        let args = cpu_args(&d, &out, &["--rank-by", rank]);
        let o = triage(&args);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&args, &o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{}", describe(&args, &o));
        assert!(!out.join("queue.jsonl").exists());
    }
}
