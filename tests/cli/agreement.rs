//! Several annotators per item (`[inputs] annotations`): the agreement
//! figures against the published packages (krippendorff, statsmodels,
//! scikit-learn, run by `py/agreement_ref.py` with `TRIAGE_REF_PYTHON`;
//! required when `TRIAGE_REQUIRE_REF=1`, as `.ci/run` sets), the planted
//! random annotator found, the priority raise as documented, and bad
//! annotation files refused.

use std::collections::HashMap;
use std::path::Path;

use crate::common::*;

const N: usize = 600;
const C: usize = 6;
const ANNOTATORS: [&str; 6] = ["ann-a", "ann-b", "ann-c", "ann-d", "ann-e", "rand"];
/// Every annotator of this item (it has 6) gives the same label, which is
/// not the official one.
const PLANTED: usize = 11;

/// A classification dataset, and its official labels and predictions by id.
fn dataset(d: &Path) -> (Vec<String>, HashMap<String, (String, String)>) {
    let s = triage(&[
        "synth",
        "--task",
        "classification",
        "--items",
        &N.to_string(),
        "--classes",
        &C.to_string(),
        "--out",
        d.to_str().unwrap(),
    ]);
    assert_eq!(s.status.code(), Some(0));
    let out = d.join("plain-out");
    run_ok(d, &out, &["--deterministic"]);
    let mut facts = HashMap::new();
    for row in read_queue(&out) {
        let id = row["id"].as_str().unwrap().to_string();
        let label = row["label"].as_str().unwrap().to_string();
        let pred = row["predicted"].as_str().unwrap().to_string();
        facts.insert(id, (label, pred));
    }
    let ids: Vec<String> = (0..N).map(|i| format!("{i}")).collect();
    assert!(ids.iter().all(|i| facts.contains_key(i)), "numbered ids");
    (ids, facts)
}

/// annotations.csv: item i has 1 + i % 6 annotators (a subset from a random start);
/// five annotators are right 96 % of the time, `rand` labels at random;
/// nobody uses class 5 (the good annotators call it 4).
fn write_annotations(d: &Path, ids: &[String], facts: &HashMap<String, (String, String)>) {
    let mut st = 7u64;
    let mut next = |k: u64| {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (st >> 33) % k
    };
    let mut csv = String::from("id,annotator,label\n");
    for (i, id) in ids.iter().enumerate() {
        let official: u32 = facts[id].0.parse().unwrap();
        let (m, start) = (1 + i % 6, next(6) as usize);
        for j in 0..m {
            let a = ANNOTATORS[(start + j) % 6];
            let label = if i == PLANTED {
                (official + 1) % 5
            } else if a == "rand" || next(100) >= 96 {
                next(5) as u32
            } else {
                official.min(4)
            };
            csv.push_str(&format!("{id},{a},{label}\n"));
        }
    }
    std::fs::write(d.join("annotations.csv"), csv).unwrap();
    let mut toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    toml.push_str("annotations = \"annotations.csv\"\n");
    std::fs::write(d.join("triage.toml"), toml).unwrap();
}

fn close(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{what}: triage {x} vs reference {y}"),
        _ => assert!(
            a.is_null() && b.is_null(),
            "{what}: triage {a} vs reference {b}"
        ),
    }
}

#[test]
fn agreement_matches_the_reference_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let (ids, facts) = dataset(&d);
    write_annotations(&d, &ids, &facts);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic"]);
    let r = read_report(&out);
    let ag = &r["agreement"];
    assert_eq!(ag["annotators"], 6);
    assert_eq!(
        ag["rows"].as_u64().unwrap() as usize,
        (0..N).map(|i| 1 + i % 6).sum::<usize>()
    );
    assert_eq!(
        ag["below_threshold"],
        serde_json::json!(["rand"]),
        "the planted random annotator, and only it, is below kappa 0.8"
    );
    assert!(
        ag["per_class"][5]["alpha"].is_null(),
        "class 5 is never used"
    );

    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the reference packages: set TRIAGE_REF_PYTHON");
        return;
    };
    let official = serde_json::json!({
        "ids": ids,
        "labels": ids.iter().map(|i| facts[i].0.parse::<u32>().unwrap()).collect::<Vec<_>>(),
        "pred": ids.iter().map(|i| facts[i].1.parse::<u32>().unwrap()).collect::<Vec<_>>(),
    });
    let off = tmp.path().join("official.json");
    std::fs::write(&off, official.to_string()).unwrap();
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/py/agreement_ref.py"))
        .arg(d.join("annotations.csv"))
        .arg(&off)
        .arg(C.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    close(&ag["krippendorff_alpha"], &want["alpha"], "alpha");
    close(&ag["fleiss_kappa"], &want["fleiss"], "fleiss");
    assert_eq!(ag["fleiss_items"], want["fleiss_items"]);
    assert_eq!(ag["fleiss_m"], want["fleiss_m"]);
    for k in 0..C {
        close(
            &ag["per_class"][k]["alpha"],
            &want["per_class"][k],
            &format!("class {k} alpha"),
        );
    }
    let pairs = ag["cohen_kappa"].as_array().unwrap();
    assert_eq!(
        pairs.len(),
        want["cohen"].as_object().unwrap().len(),
        "the same pairs"
    );
    for p in pairs {
        let key = format!("{}|{}", p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
        let w = &want["cohen"][&key];
        assert_eq!(p["items"], w[0], "{key}");
        close(&p["kappa"], &w[1], &format!("cohen {key}"));
    }
    for row in ag["per_annotator"].as_array().unwrap() {
        let a = row["annotator"].as_str().unwrap();
        let w = &want["per_annotator"][a];
        assert_eq!(row["items"], w["items"], "{a}");
        for f in [
            "agreement_with_consensus",
            "kappa_with_consensus",
            "agreement_with_model",
            "agreement_with_official",
        ] {
            close(&row[f], &w[f], &format!("{a} {f}"));
        }
    }
}

/// Every item's priority is raised as `agreement.priority` says, from its
/// priority without annotations; its `annotator_agreement` is the share of
/// agreeing pairs (null below 2 annotations).
#[test]
fn disagreement_raises_the_priority_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let (ids, facts) = dataset(&d);
    let before: HashMap<String, f64> = read_queue(&d.join("plain-out"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().into(),
                r["priority"].as_f64().unwrap(),
            )
        })
        .collect();
    write_annotations(&d, &ids, &facts);
    let text = std::fs::read_to_string(d.join("annotations.csv")).unwrap();
    let mut labels: HashMap<String, Vec<u32>> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        labels
            .entry(f[0].into())
            .or_default()
            .push(f[2].parse().unwrap());
    }
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic"]);
    let mut raised = 0;
    let mut expected_flagged = 0usize;
    for row in read_queue(&out) {
        let id = row["id"].as_str().unwrap();
        let v = &labels[id];
        let p = before[id];
        let got = row["priority"].as_f64().unwrap();
        let share = row["scores"]["annotator_agreement"].as_f64();
        if v.len() < 2 {
            assert!(share.is_none(), "{id}: one annotation, no agreement");
            assert_eq!(got, p, "{id}: not raised");
            continue;
        }
        let pairs = v.len() * (v.len() - 1) / 2;
        let agree = (0..v.len())
            .flat_map(|i| (i + 1..v.len()).map(move |j| (i, j)))
            .filter(|&(i, j)| v[i] == v[j])
            .count();
        let a = agree as f64 / pairs as f64;
        assert!((share.unwrap() - a).abs() < 1e-12, "{id}");
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &x in v {
            *counts.entry(x).or_default() += 1;
        }
        let top = *counts.values().max().unwrap();
        let leaders: Vec<u32> = counts
            .iter()
            .filter(|e| *e.1 == top)
            .map(|e| *e.0)
            .collect();
        let official: u32 = facts[id].0.parse().unwrap();
        let contradicted = leaders.len() == 1 && leaders[0] != official;
        let dis = if contradicted { 1.0 } else { 1.0 - a };
        let want = p + 0.5 * dis * (1.0 - p);
        assert!((got - want).abs() < 1e-12, "{id}: {got} vs {want}");
        raised += (got > p) as usize;
        // The low_agreement check: flagged above 0.5, with a reason first.
        let reason = row["reasons"][0].as_str().unwrap_or("");
        let flagged = dis > 0.5;
        expected_flagged += flagged as usize;
        assert_eq!(
            reason.starts_with("annotators disagree"),
            flagged,
            "{id}: {reason}"
        );
        let consensus = (leaders.len() == 1).then(|| leaders[0].to_string());
        assert_eq!(
            row["consensus_label"].as_str().map(String::from),
            consensus,
            "{id}"
        );
        if id == PLANTED.to_string() {
            assert!(contradicted && flagged, "the planted item");
            assert!(
                reason.contains("differs from the official label"),
                "{reason}"
            );
            for a in ANNOTATORS {
                assert!(reason.contains(a), "{a} named in {reason}");
            }
        }
    }
    assert!(raised > 100, "disagreement raised {raised} items");
    let r = read_report(&out);
    assert_eq!(r["views"]["low_agreement"]["flagged"], expected_flagged);
    assert_eq!(r["checks"]["low_agreement"]["status"], "ran");
    assert!(expected_flagged > 50, "{expected_flagged} flagged");
    let csv = std::fs::read_to_string(out.join("queue.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.contains(",consensus_label,"), "{header}");
    assert!(header.contains(",annotator_agreement,"), "{header}");
}

#[test]
fn bad_annotation_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let (ids, facts) = dataset(&d);
    write_annotations(&d, &ids, &facts);
    let good = std::fs::read_to_string(d.join("annotations.csv")).unwrap();
    let first = format!("{}\n", good.lines().nth(1).unwrap());
    let first_id = first.split(',').next().unwrap().to_string();
    let twice = format!("item \"{first_id}\": annotator:");
    for (extra, needles) in [
        ("nope,ann-a,1\n", vec!["not an item", "item \"nope\": id:"]),
        ("5, ,1\n", vec!["empty annotator", "item \"5\": annotator:"]),
        (
            first.as_str(),
            vec!["labels this item twice", twice.as_str()],
        ),
        ("7,ann-z,9\n", vec!["label \"9\"", "item \"7\": label:"]),
    ] {
        std::fs::write(d.join("annotations.csv"), format!("{good}{extra}")).unwrap();
        let out = tmp.path().join("bad-out");
        let a = ["run", d.to_str().unwrap(), "--out", out.to_str().unwrap()];
        let o = triage(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&a, &o));
        assert!(err.contains("annotations.csv"), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
        assert!(!out.join("report.json").exists(), "nothing written");
    }
}
