//! The Datalab-defined checks against cleanlab's Datalab
//! (`cleanlab[datalab]`, run by `py/datalab_ref.py` on the same arrays):
//! `outlier` (kNN distances), `non_iid` (the permutation test and its
//! per-item scores), `underperforming_group` (DBSCAN on the graph) and
//! `data_valuation` (KNN-Shapley), each triage score
//! `1 − q` of Datalab's quality score `q`. Datalab builds its own exact
//! cosine kNN graph in float64 from the float32 embeddings triage reads,
//! so scores agree within float32 distance rounding. On planted data: 12
//! outliers among four blobs, flagged by both and scored highest; a blob
//! where the model gives the label 2 % (an underperforming group, flagged
//! by both); the same items in a random
//! order (no non-IID alarm) and sorted by class (an alarm, p ≈ 0). Needs
//! `TRIAGE_REF_PYTHON` with cleanlab; skipped without it unless
//! `TRIAGE_REQUIRE_REF=1`.

use std::path::Path;

use crate::common::{read_queue, run_ok, write_f32, write_npy_raw};
use rand::{Rng, SeedableRng};

const N: usize = 400;
const DIM: usize = 16;
const CLASSES: usize = 4;
const OUTLIERS: usize = 12;

/// Four blobs around random directions, 12 outliers in random directions
/// of their own (the last 12 items before ordering), labels the blob
/// (outliers: a random class), probabilities that mostly agree. `sorted`:
/// items ordered by label (non-IID), else shuffled. Returns the outliers'
/// rows.
fn dataset(d: &Path, sorted: bool) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let gauss = |rng: &mut rand_chacha::ChaCha8Rng| -> f32 {
        // Box–Muller.
        let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let centres: Vec<Vec<f32>> = (0..CLASSES)
        .map(|_| (0..DIM).map(|_| 3.0 * gauss(&mut rng)).collect())
        .collect();
    let mut items: Vec<(usize, Vec<f32>, bool)> = (0..N)
        .map(|i| {
            if i >= N - OUTLIERS {
                let v: Vec<f32> = (0..DIM).map(|_| 3.0 * gauss(&mut rng)).collect();
                (rng.random_range(0..CLASSES), v, true)
            } else {
                let c = i % CLASSES;
                let v = centres[c]
                    .iter()
                    .map(|x| x + 0.4 * gauss(&mut rng))
                    .collect();
                (c, v, false)
            }
        })
        .collect();
    // Shuffle (Fisher–Yates), then sort by label when asked (stable).
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
    if sorted {
        items.sort_by_key(|it| it.0);
    }
    let mut csv = String::from("id,label\n");
    let (mut emb, mut probs, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (c, v, outlier)) in items.iter().enumerate() {
        csv.push_str(&format!("i{i:03},c{c}\n"));
        emb.extend_from_slice(v);
        // The fourth blob is where the model fails the labels.
        let p = if *c == CLASSES - 1 && !outlier {
            0.02
        } else {
            0.55 + 0.4 * rng.random::<f32>()
        };
        let rest = (1.0 - p) / (CLASSES - 1) as f32;
        probs.extend((0..CLASSES).map(|k| if k == *c { p } else { rest }));
        labels.extend_from_slice(&(*c as i64).to_le_bytes());
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    write_f32(&d.join("embeddings.npy"), &[N, DIM], &emb);
    write_f32(&d.join("probs.npy"), &[N, CLASSES], &probs);
    write_npy_raw(&d.join("labels.npy"), "<i8", &[N], &labels);
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"c0\", \"c1\", \"c2\", \"c3\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nembeddings = \"embeddings.npy\"\n",
    )
    .unwrap();
    items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.2)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn the_audit_checks_match_datalab() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the Datalab reference: set TRIAGE_REF_PYTHON");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/py/datalab_ref.py");
    let tmp = tempfile::tempdir().unwrap();
    let mut p_values = Vec::new();
    for sorted in [false, true] {
        let d = tmp.path().join(if sorted { "sorted" } else { "shuffled" });
        std::fs::create_dir_all(&d).unwrap();
        let planted = dataset(&d, sorted);
        let out = d.join("out");
        run_ok(
            &d,
            &out,
            &[
                "--backend",
                "cpu",
                "--knn",
                "exact",
                "--checks",
                "outlier,non_iid,underperforming_group,data_valuation",
            ],
        );
        let o = std::process::Command::new(&python)
            .arg(&script)
            .arg(&d)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let rows = read_queue(&out);
        assert_eq!(rows.len(), N);
        let mut got = vec![serde_json::Value::Null; N];
        for r in &rows {
            let i: usize = r["id"].as_str().unwrap()[1..].parse().unwrap();
            got[i] = r.clone();
        }
        let report = crate::common::read_report(&out);
        let checks = &report["checks"];
        // Per check: the largest |triage − (1 − q)| and the flags compared.
        for (name, tol) in [
            ("outlier", 1e-5),
            ("non_iid", 1e-5),
            ("underperforming_group", 1e-12),
            ("data_valuation", 1e-12),
        ] {
            let mut worst = 0.0f64;
            for (i, row) in got.iter().enumerate() {
                let q = want[name]["score"][i].as_f64().unwrap();
                let s = row["check_scores"][name].as_f64().unwrap();
                worst = worst.max((s - (1.0 - q)).abs());
                if name != "non_iid" {
                    let flagged = row["flags"].as_array().unwrap().iter().any(|f| f == name);
                    assert_eq!(
                        flagged,
                        want[name]["flag"][i].as_bool().unwrap(),
                        "{name}: item {i} (score {s}, Datalab q {q})"
                    );
                }
            }
            eprintln!("{name} (sorted: {sorted}): largest difference from 1 − q {worst:.2e}");
            assert!(worst < tol, "{name}: {worst} from Datalab's");
            assert_eq!(checks[name]["status"], "ran", "{name}");
        }
        // Every planted outlier is flagged (by both: the flags agree), and
        // they are the twelve highest scores.
        let flagged: Vec<usize> = (0..N)
            .filter(|&i| want["outlier"]["flag"][i].as_bool().unwrap())
            .collect();
        assert!(planted.iter().all(|i| flagged.contains(i)), "{flagged:?}");
        let mut by_score: Vec<usize> = (0..N).collect();
        let score = |i: usize| got[i]["check_scores"]["outlier"].as_f64().unwrap();
        by_score.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
        let mut top: Vec<usize> = by_score[..OUTLIERS].to_vec();
        top.sort_unstable();
        assert_eq!(top, planted, "the highest outlier scores");
        // non_iid: the same p-value; triage flags at p < 0.01, Datalab at
        // p < 0.05, each the item with the lowest quality.
        let p = want["p_value"].as_f64().unwrap();
        let summary = &checks["non_iid"]["summary"];
        let got_p = summary["p_value"].as_f64().unwrap();
        assert!((got_p - p).abs() < 1e-6, "p-value {got_p}, Datalab {p}");
        assert_eq!(summary["non_iid"], serde_json::json!(p < 0.01));
        let flagged: Vec<usize> = (0..N)
            .filter(|&i| {
                got[i]["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "non_iid")
            })
            .collect();
        let datalab: Vec<usize> = (0..N)
            .filter(|&i| want["non_iid"]["flag"][i].as_bool().unwrap())
            .collect();
        if p < 0.01 {
            assert_eq!(flagged, datalab);
        } else {
            assert!(flagged.is_empty(), "{flagged:?} at p = {p}");
        }
        // The failing blob (97 items, less a border item DBSCAN may leave
        // as noise) is the one underperforming group.
        let group = (0..N)
            .filter(|&i| {
                got[i]["flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "underperforming_group")
            })
            .count();
        let blob = (N - OUTLIERS) / CLASSES;
        assert!(
            (blob - 3..=blob).contains(&group),
            "{group} items in the flagged group"
        );
        p_values.push(p);
    }
    // The shuffled order raises no alarm; the sorted one does.
    assert!(p_values[0] > 0.05, "shuffled: p = {}", p_values[0]);
    assert!(p_values[1] < 1e-6, "sorted: p = {}", p_values[1]);
}
