//! `triage review-import` and what later runs do with the decisions: the
//! stored file, bad CSVs (nothing written), precision of the queue, reviewed
//! items leaving the queue and changed ones returning; `--previous`.

use std::path::Path;

use crate::common::*;
use serde_json::{Value, json};
use triage::schema::{Dropped, QueueRow, Review, Tally};

/// Six classification items, classes a b c, no embeddings.
/// priority = 1 - nm, nm = (p_y - max_{k != y} p_k + 1) / 2:
///
/// | id | label | probs         | priority | entropy | ece (= abs(correct - p1)) |
/// |----|-------|---------------|----------|---------|---------------------------|
/// | r0 | a     | .10 .80 .10   | .85      | .582    | .8                        |
/// | r1 | b     | .70 .20 .10   | .75      | .730    | .7                        |
/// | r2 | a     | .40 .50 .10   | .55      | .859    | .5                        |
/// | r3 | c     | .30 .30 .40   | .45      | .991    | .6                        |
/// | r4 | a     | .90 .05 .05   | .075     | .359    | .1                        |
/// | r5 | b     | .02 .96 .02   | .03      | .18     | .04                       |
const PROBS: [[f32; 3]; 6] = [
    [0.10, 0.80, 0.10],
    [0.70, 0.20, 0.10],
    [0.40, 0.50, 0.10],
    [0.30, 0.30, 0.40],
    [0.90, 0.05, 0.05],
    [0.02, 0.96, 0.02],
];
const LABELS: [&str; 6] = ["a", "b", "a", "c", "a", "b"];

fn write_items(d: &Path, labels: &[&str]) {
    let mut csv = String::from("id,label\n");
    for (i, l) in labels.iter().enumerate() {
        csv.push_str(&format!("r{i},{l}\n"));
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
}

fn write_probs(d: &Path, probs: &[[f32; 3]]) {
    let flat: Vec<f32> = probs.iter().flatten().copied().collect();
    write_f32(&d.join("probs.npy"), &[probs.len(), 3], &flat);
}

fn dataset() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"a\", \"b\", \"c\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    write_items(d, &LABELS);
    write_probs(d, &PROBS);
    tmp
}

fn import(d: &Path, csv_name: &str, text: &str) -> std::process::Output {
    let csv = d.join(csv_name);
    std::fs::write(&csv, text).unwrap();
    triage(&["review-import", d.to_str().unwrap(), csv.to_str().unwrap()])
}

/// FNV-1a 64, written out independently of the library.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 14695981039346656037;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(1099511628211);
    }
    format!("fnv1a64:{h:016x}")
}

fn read_reviews(d: &Path) -> Vec<Value> {
    std::fs::read_to_string(d.join("reviews.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const DECISIONS: &str =
    "id,decision,corrected_label\nr0,error,b\nr1,error,\nr2,ok,\nr3,unsure,\nr4,ok,\n";

#[test]
fn import_writes_and_merges_the_decisions_file() {
    let tmp = dataset();
    let d = tmp.path();
    let o = import(d, "decisions.csv", DECISIONS);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        describe(&["review-import"], &o)
    );
    let recs = read_reviews(d);
    assert_eq!(recs.len(), 5);
    let r0_probs: Vec<u8> = PROBS[0].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(
        recs[0],
        json!({
            "id": "r0",
            "decision": "error",
            "corrected_label": "b",
            "probs_hash": fnv(&r0_probs),
            "annotation_hash": fnv(&0u32.to_le_bytes()),
            "source": "decisions.csv",
        })
    );
    assert_eq!(recs[1]["corrected_label"], Value::Null);
    assert_eq!(recs[3]["decision"], "unsure");
    assert_eq!(recs[3]["annotation_hash"], fnv(&2u32.to_le_bytes()));
    // A second import replaces r1 in place and appends r5; the rest stay.
    let o = import(
        d,
        "more.csv",
        "decision,id,corrected_label\nok,r1,\nerror,r5,2\n",
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        describe(&["review-import"], &o)
    );
    let after = read_reviews(d);
    let ids: Vec<&str> = after.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r0", "r1", "r2", "r3", "r4", "r5"]);
    assert_eq!(after[1]["decision"], "ok");
    assert_eq!(after[1]["source"], "more.csv");
    assert_eq!(
        after[5]["corrected_label"], "c",
        "class index 2 is stored as its name"
    );
    assert_eq!(after[0], recs[0]);
}

#[test]
fn bad_csvs_are_rejected_and_leave_the_file_byte_identical() {
    let tmp = dataset();
    let d = tmp.path();
    let o = import(d, "good.csv", DECISIONS);
    assert_eq!(o.status.code(), Some(0));
    let before = std::fs::read(d.join("reviews.jsonl")).unwrap();
    let cases: [(&str, &[&str]); 8] = [
        ("id,verdict\nr0,error\n", &["no `decision` column"]),
        ("decision\nerror\n", &["no `id` column"]),
        (
            "id,decision\nr0,wrong\n",
            &["line 2", "decision \"wrong\"", "item \"r0\": decision"],
        ),
        (
            "id,decision\nr0,ok\nzz,error\n",
            &["line 3", "id \"zz\" is not an item", "item \"zz\": id"],
        ),
        (
            "id,decision,corrected_label\nr0,error,dragon\n",
            &[
                "line 2",
                "corrected_label \"dragon\"",
                "item \"r0\": corrected_label",
            ],
        ),
        (
            "id,decision\nr0,ok\nr1,ok\nr0,error\n",
            &["duplicate id", "lines 2 and 4", "item \"r0\""],
        ),
        ("", &["empty CSV"]),
        ("id,decision\n", &["no decisions"]),
    ];
    for (text, needles) in cases {
        let o = import(d, "bad.csv", text);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{text:?}: {err}");
        assert!(err.contains("bad.csv"), "names the CSV: {err}");
        for n in needles {
            assert!(err.contains(n), "{text:?}: want {n:?} in {err}");
        }
        assert_eq!(
            std::fs::read(d.join("reviews.jsonl")).unwrap(),
            before,
            "{text:?} left the decisions untouched"
        );
    }
    // A failed first import writes nothing at all, and no temp file is left.
    let tmp2 = dataset();
    let o = import(tmp2.path(), "bad.csv", "id,decision\nr0,ok\nzz,ok\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(!tmp2.path().join("reviews.jsonl").exists());
    for dir in [d, tmp2.path()] {
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(!name.starts_with(".reviews"), "temp file left: {name}");
        }
    }
}

fn ids(q: &[QueueRow<'_>]) -> Vec<String> {
    q.iter().map(|r| r.id.to_string()).collect()
}

/// A `review` tally.
fn tally(
    reviewed: usize,
    errors: usize,
    ok: usize,
    unsure: usize,
    precision: Option<f64>,
) -> Tally {
    Tally {
        reviewed,
        errors,
        ok,
        unsure,
        precision,
    }
}

/// The report's `review` section.
fn review_of(out: &Path) -> Review {
    read_report_typed(out).review.expect("a review section")
}

#[test]
fn later_runs_report_precision_drop_reviewed_items_and_bring_back_changed_ones() {
    let tmp = dataset();
    let d = tmp.path();
    assert_eq!(import(d, "decisions.csv", DECISIONS).status.code(), Some(0));
    let out = d.join("out");
    run_ok(d, &out, &["--budget", "2"]);
    // r0..r4 are reviewed and unchanged: only r5 is left to review.
    let q = read_queue_rows(&out);
    assert_eq!(ids(&q), ["r5"]);
    assert!(q[0].in_budget);
    let rv = review_of(&out);
    assert_eq!(rv.decisions, 5);
    assert_eq!(rv.left_queue, 5);
    assert!(rv.changed_since_review.is_empty());
    // Decisions: r0 error, r1 error, r2 ok, r3 unsure, r4 ok.
    // Overall: 2 errors / (2 + 2 ok) = 0.5, 5 reviewed.
    assert_eq!(rv.overall, tally(5, 2, 2, 1, Some(0.5)));
    // Signals from the budget of 2 over all six items: ranking = r0 r1 (both
    // errors: 1.0); below the budget = r2 r3 r4 (0 errors, 2 ok, 1 unsure: 0.0).
    let ps = &rv.per_signal;
    assert_eq!(ps["ranking"], tally(2, 2, 0, 0, Some(1.0)));
    assert_eq!(ps["below_budget"], tally(3, 0, 2, 1, Some(0.0)));
    assert_eq!(ps["spot_check"].reviewed, 0);
    assert_eq!(ps["spot_check"].precision, None);
    // Issue types. wrong_label (1 - nm > 0.5): r0 r1 r2 -> 2 errors, 1 ok.
    // uncertain (entropy >= 0.5): r0 r1 r2 r3 -> 2 errors, 1 ok, 1 unsure.
    // miscalibrated (ece >= 0.25): r0 r1 r2 r3 -> the same.
    let pt = &rv.per_issue_type;
    let two_thirds = 2.0 / 3.0;
    assert_eq!(pt["wrong_label"], tally(3, 2, 1, 0, Some(two_thirds)));
    for t in ["uncertain", "miscalibrated"] {
        assert_eq!(pt[t], tally(4, 2, 1, 1, Some(two_thirds)), "{t}");
    }
    assert_eq!(pt["boundary_disagreement"].reviewed, 0);

    // Change r1's predictions and r4's annotation: both come back, marked.
    // r1 (b): .60 .30 .10 -> nm (.3 - .6 + 1)/2 = .35, priority .65.
    // r4 relabelled c: nm (.05 - .9 + 1)/2 = .075, priority .925.
    let mut probs = PROBS;
    probs[1] = [0.60, 0.30, 0.10];
    write_probs(d, &probs);
    let mut labels = LABELS;
    labels[4] = "c";
    write_items(d, &labels);
    run_ok(d, &out, &["--budget", "2"]);
    let q = read_queue_rows(&out);
    assert_eq!(ids(&q), ["r4", "r1", "r5"]);
    assert_eq!(
        q[0].reasons[0],
        "reviewed before (ok), but its annotation changed since"
    );
    assert_eq!(
        q[1].reasons[0],
        "reviewed before (error), but its predictions changed since"
    );
    assert!(!q[2].in_budget, "budget 2: r4 and r1");
    let rv = review_of(&out);
    assert_eq!(rv.changed_since_review, ["r4", "r1"]);
    assert_eq!(rv.left_queue, 3);
    // Only r0 (error), r2 (ok), r3 (unsure) count now: 1 / 2.
    assert_eq!(rv.overall, tally(3, 1, 1, 1, Some(0.5)));
}

#[test]
fn a_changed_mask_brings_a_segmentation_item_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let s = triage(&[
        "synth",
        "--out",
        d.to_str().unwrap(),
        "--items",
        "6",
        "--size",
        "32",
        "32",
    ]);
    assert_eq!(s.status.code(), Some(0));
    let out = tmp.path().join("out");
    run_ok(&d, &out, &[]);
    let first = ids(&read_queue_rows(&out));
    let victim = first[0].clone();
    let o = import(&d, "dec.csv", &format!("id,decision\n{victim},ok\n"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        describe(&["review-import"], &o)
    );
    run_ok(&d, &out, &[]);
    let q = ids(&read_queue_rows(&out));
    assert_eq!(q.len(), 5);
    assert!(!q.contains(&victim));
    // Flip one pixel of its mask to another class.
    let mask_path = d.join("masks").join(format!("{victim}.png"));
    let mut img = image::open(&mask_path).unwrap().to_luma8();
    let p = img.get_pixel(0, 0).0[0];
    img.put_pixel(0, 0, image::Luma([if p == 1 { 2 } else { 1 }]));
    img.save(&mask_path).unwrap();
    run_ok(&d, &out, &[]);
    let q = read_queue_rows(&out);
    let back = q.iter().find(|r| r.id == victim.as_str()).unwrap();
    assert_eq!(
        back.reasons[0],
        "reviewed before (ok), but its annotation changed since"
    );
    assert_eq!(review_of(&out).changed_since_review, [victim]);
}

/// --previous: six items labelled a. Run 1 (budget 3): p0 .85, p1 .75, p2 .65
/// in the budget (p3 .55, p4 .45, p5 .25 below). Then p1 moves to .70 and p3
/// to .90. Run 2 (budget 3): p3 .90 (new), p0 .85 (still), p1 .70 (changed);
/// p2 (old rank 3) dropped out.
#[test]
fn previous_marks_new_still_changed_and_lists_dropped() {
    let tmp = dataset();
    let d = tmp.path();
    write_items(d, &["a"; 6]);
    let mut probs: [[f32; 3]; 6] = [
        [0.10, 0.80, 0.10],
        [0.20, 0.70, 0.10],
        [0.30, 0.60, 0.10],
        [0.40, 0.50, 0.10],
        [0.50, 0.40, 0.10],
        [0.70, 0.20, 0.10],
    ];
    write_probs(d, &probs);
    let out1 = d.join("out1");
    run_ok(d, &out1, &["--budget", "3"]);
    assert_eq!(ids(&read_queue_rows(&out1))[..3], ["r0", "r1", "r2"]);
    probs[1] = [0.25, 0.65, 0.10];
    probs[3] = [0.05, 0.85, 0.10];
    write_probs(d, &probs);
    let out2 = d.join("out2");
    run_ok(
        d,
        &out2,
        &["--budget", "3", "--previous", out1.to_str().unwrap()],
    );
    let q = read_queue_rows(&out2);
    assert_eq!(ids(&q), ["r3", "r0", "r1", "r2", "r4", "r5"]);
    assert!(q.iter().all(|r| r.status.is_some()), "a status column");
    let status: Vec<Option<&str>> = q.iter().map(|r| r.status()).collect();
    assert_eq!(
        status,
        [
            Some("new"),
            Some("still"),
            Some("changed"),
            None,
            None,
            None
        ]
    );
    let p = read_report_typed(&out2)
        .previous
        .expect("a previous section");
    assert_eq!(p.new, 1);
    assert_eq!(p.still, 1);
    assert_eq!(p.changed, 1);
    assert_eq!(
        p.dropped,
        [Dropped {
            id: "r2".into(),
            rank: 3,
            priority: 0.6500000059604645
        }]
    );
    let csv = std::fs::read_to_string(out2.join("queue.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",also_in_cluster,status")
    );
    // A missing previous directory is an error naming it.
    let args = [
        "run",
        d.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--previous",
        "/nonexistent/prev",
    ];
    let o = triage(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/prev/queue.jsonl"));
}
