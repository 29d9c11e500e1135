//! Near-duplicates whose labels disagree: planted pairs in clustered
//! embeddings, HNSW recall against the exact oracle, index reuse,
//! determinism, ciFAIR's hand-judged pairs, and bad embeddings.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triage::neighbors::{Embeddings, diameter_bound, knn};

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

fn random_unit(rng: &mut ChaCha8Rng, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    unit(&mut v);
    v
}

/// `v` at cosine distance exactly `dist` from unit `u` (up to rounding).
fn at_distance(rng: &mut ChaCha8Rng, u: &[f32], dist: f64) -> Vec<f32> {
    let mut w = random_unit(rng, u.len());
    let dot: f32 = w.iter().zip(u).map(|(a, b)| a * b).sum();
    for (x, &y) in w.iter_mut().zip(u) {
        *x -= dot * y;
    }
    unit(&mut w);
    let c = (1.0 - dist) as f32;
    let s = (1.0 - c * c).max(0.0).sqrt();
    u.iter().zip(&w).map(|(a, b)| c * a + s * b).collect()
}

/// Clustered embeddings: `clusters` centres, members at cosine distance
/// 0.15–0.35 from their centre (so ordinary items are not near-duplicates).
fn clustered(
    rng: &mut ChaCha8Rng,
    n: usize,
    d: usize,
    clusters: usize,
) -> (Vec<Vec<f32>>, Vec<usize>) {
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| random_unit(rng, d)).collect();
    let mut rows = Vec::with_capacity(n);
    let mut of = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % clusters;
        let dist = rng.random_range(0.15..0.35);
        rows.push(at_distance(rng, &centres[c], dist));
        of.push(c);
    }
    (rows, of)
}

struct Planted {
    dir: tempfile::TempDir,
    conflicts: Vec<(usize, usize)>,
    clean: Vec<(usize, usize)>,
}

/// A classification dataset of `n` clustered items (label = cluster % 10)
/// plus `pairs` planted near-duplicate pairs: even ones with the copy's label
/// flipped (conflicts), odd ones clean. The model agrees with the original
/// label, so the flipped copy is the wrong one.
fn planted_dataset(n: usize, pairs: usize, seed: u64) -> Planted {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = 48;
    let (mut rows, of) = clustered(&mut rng, n, d, 40);
    let mut labels: Vec<u32> = of.iter().map(|&c| (c % 10) as u32).collect();
    let mut conflicts = Vec::new();
    let mut clean = Vec::new();
    for p in 0..pairs {
        let a = p * (n / pairs);
        let b = rows.len();
        let dist = rng.random_range(0.001..0.02);
        rows.push(at_distance(&mut rng, &rows[a].clone(), dist));
        if p % 2 == 0 {
            labels.push((labels[a] + 1 + rng.random_range(0..9)) % 10);
            conflicts.push((a, b));
        } else {
            labels.push(labels[a]);
            clean.push((a, b));
        }
    }
    let total = rows.len();
    // The model: 0.8 on the original (cluster) label.
    let mut probs = vec![0.0f32; total * 10];
    for i in 0..total {
        let truth = if i < n {
            labels[i]
        } else {
            labels[conflicts.iter().chain(&clean).find(|p| p.1 == i).unwrap().0]
        };
        for k in 0..10 {
            probs[i * 10 + k] = if k as u32 == truth { 0.8 } else { 0.2 / 9.0 };
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path();
    std::fs::write(
        ds.join("triage.toml"),
        "task = \"classification\"\nnum_classes = 10\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nembeddings = \"emb.npy\"\n",
    )
    .unwrap();
    let mut csv = String::from("id,label\n");
    for (i, l) in labels.iter().enumerate() {
        csv.push_str(&format!("x{i},{l}\n"));
    }
    std::fs::write(ds.join("items.csv"), csv).unwrap();
    write_f32(&ds.join("probs.npy"), &[total, 10], &probs);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    write_f32(&ds.join("emb.npy"), &[total, d], &flat);
    Planted {
        dir,
        conflicts,
        clean,
    }
}

fn clusters(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("clusters.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Flagged conflicting pairs from the queue, as sorted index pairs.
fn conflict_pairs(q: &[serde_json::Value]) -> HashSet<(usize, usize)> {
    let idx = |s: &str| s[1..].parse::<usize>().unwrap();
    let mut out = HashSet::new();
    for r in q {
        let a = idx(r["id"].as_str().unwrap());
        for nb in r["neighbors"].as_array().unwrap() {
            if nb["conflict"] == true {
                let b = idx(nb["id"].as_str().unwrap());
                out.insert((a.min(b), a.max(b)));
            }
        }
    }
    out
}

#[test]
fn planted_conflicts_are_found_and_rank_high_without_chaining() {
    let p = planted_dataset(1200, 40, 1);
    let out = p.dir.path().join("out");
    run_ok(p.dir.path(), &out, &[]);
    let q = read_queue(&out);
    let found = conflict_pairs(&q);
    let want: HashSet<(usize, usize)> = p.conflicts.iter().copied().collect();
    assert_eq!(found, want, "exactly the planted conflicts, no clean pair");
    // Clean planted pairs are near-duplicates but not conflicts.
    for &(a, b) in &p.clean {
        let r = q.iter().find(|r| r["id"] == format!("x{a}")).unwrap();
        let nb = r["neighbors"].as_array().unwrap();
        assert!(
            nb.iter()
                .any(|n| n["id"] == format!("x{b}") && n["conflict"] == false),
            "{r}"
        );
        assert_eq!(r["scores"]["dup_conflict"], 0.0);
    }
    // The wrong copies (label flipped) are the top 20 of the queue.
    let wrong: HashSet<String> = p.conflicts.iter().map(|&(_, b)| format!("x{b}")).collect();
    let top: HashSet<String> = q[..20]
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(top, wrong);
    let r0 = &q[0];
    assert!(
        r0["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("near-duplicate of"),
        "{r0}"
    );
    assert!(r0["cluster"].is_u64());
    // Clusters: pairs only here, each within the diameter bound.
    let report = read_report(&out);
    let t = report["duplicates"]["threshold"].as_f64().unwrap() as f32;
    assert!((t - 0.05).abs() < 1e-6);
    let cs = clusters(&out);
    assert_eq!(cs.len(), 40);
    assert_eq!(cs.iter().filter(|c| c["conflict"] == true).count(), 20);
    for c in &cs {
        assert!(c["max_distance"].as_f64().unwrap() as f32 <= diameter_bound(t));
        assert_eq!(c["members"].as_array().unwrap().len(), 2);
    }
    assert_eq!(report["duplicates"]["conflicting_pairs"], 20);
    assert_eq!(report["duplicates"]["pairs"], 40);
}

#[test]
fn a_dense_group_does_not_chain() {
    // 12 points along a great circle, 2° apart: every neighbour pair is a
    // near-duplicate under a threshold of 1 − cos 5° (0.0038), so a
    // single-link clustering would chain all 12 (22° wide).
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let d = 16;
    let u = random_unit(&mut rng, d);
    let w = at_distance(&mut rng, &u, 1.0); // orthogonal
    let rows: Vec<Vec<f32>> = (0..12)
        .map(|i| {
            let a = (2.0 * i as f32).to_radians();
            u.iter()
                .zip(&w)
                .map(|(x, y)| a.cos() * x + a.sin() * y)
                .collect()
        })
        .collect();
    let ids = triage::io::manifest::Ids::numbered(12);
    let e = Embeddings::from_rows(Path::new("e"), rows.concat(), 12, d, &ids).unwrap();
    let g = knn::exact(&e, 6);
    struct Same;
    impl triage::neighbors::LabelOracle for Same {
        fn same_label(&self, _: usize, _: usize) -> bool {
            true
        }
        fn conflict(&self, _: usize, _: usize) -> triage::Result<(bool, Option<f64>)> {
            Ok((false, None))
        }
    }
    let t = 1.0 - 5f32.to_radians().cos();
    let r =
        triage::neighbors::analyse(&e, g, triage::neighbors::Threshold::Absolute(t), &[], &Same)
            .unwrap();
    assert!(r.clusters.len() >= 3, "{:?}", r.clusters);
    for c in &r.clusters {
        // Members within 2 steps (4°) of the centre: at most 8° across.
        assert!(c.max_distance <= diameter_bound(t), "{c:?}");
        assert!(c.max_distance <= 1.0 - 8.5f32.to_radians().cos());
    }
}

#[test]
fn hnsw_recall_at_10_against_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (rows, _) = clustered(&mut rng, 4000, 32, 50);
    let ids = triage::io::manifest::Ids::numbered(4000);
    let e = Embeddings::from_rows(Path::new("e"), rows.concat(), 4000, 32, &ids).unwrap();
    let exact = knn::exact(&e, 10);
    let approx = knn::hnsw(&e, 10, None, false).unwrap();
    let r = knn::recall(&approx, &exact);
    eprintln!("HNSW recall@10 on 4000 clustered points: {r:.4}");
    assert!(r >= 0.99, "recall@10 {r}");
    // Distances in the graph are exact either way.
    for i in [0usize, 17, 3999] {
        for (j, d) in approx.neighbours(i) {
            let want = triage::neighbors::embeddings::cosine_distance(e.row(i), e.row(j));
            assert_eq!(d, want);
        }
    }
}

/// The IVF self-join: recall@10 against the exact graph on loose clusters
/// (members 0.15–0.35 from their centre), its own recall check close to the
/// measured recall, exact distances, and the same graph run after run.
#[test]
fn ivf_recall_at_10_against_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 20_000;
    let (rows, _) = clustered(&mut rng, n, 32, 200);
    let ids = triage::io::manifest::Ids::numbered(n);
    let e = Embeddings::from_rows(Path::new("e"), rows.concat(), n, 32, &ids).unwrap();
    let exact = knn::exact(&e, 10);
    let p = knn::IvfParams::for_size(n);
    let (approx, check) = knn::ivf(&e, 10, &p);
    let r = knn::recall(&approx, &exact);
    eprintln!("IVF recall@10 on {n} clustered points: {r:.4} (check: {check:?}, {p:?})");
    assert!(r >= 0.99, "recall@10 {r}");
    assert_eq!(approx.method, "ivf");
    assert!(
        check.sample > 0 && (check.recall - r).abs() < 0.02,
        "{check:?} vs {r}"
    );
    for i in [0usize, 17, n - 1] {
        for (j, d) in approx.neighbours(i) {
            let want = triage::neighbors::embeddings::cosine_distance(e.row(i), e.row(j));
            assert_eq!(d, want);
        }
    }
    let (again, _) = knn::ivf(&e, 10, &p);
    assert_eq!(again, approx, "deterministic");
    // With less spill the join misses neighbours; the check sees it, and
    // the refinement finds neighbours across the cells' borders.
    let tight = knn::IvfParams {
        lists: 400,
        spill: 2,
        max_refine: 0,
        ..p
    };
    let (g, c) = knn::ivf(&e, 10, &tight);
    let r0 = knn::recall(&g, &exact);
    assert!(r0 < 0.99 && (c.recall - r0).abs() < 0.03, "{c:?} vs {r0}");
    let (g, c) = knn::ivf(
        &e,
        10,
        &knn::IvfParams {
            max_refine: 2,
            ..tight
        },
    );
    let r2 = knn::recall(&g, &exact);
    assert!(c.rounds > 0 && r2 > r0, "{c:?} {r2} vs {r0}");
}

/// The planted conflicts are found through `--knn ivf` as through the
/// exact graph, and the report records the IVF check.
#[test]
fn ivf_finds_the_planted_conflicts() {
    let p = planted_dataset(1200, 40, 1);
    let out = p.dir.path().join("ivf");
    run_ok(p.dir.path(), &out, &["--knn", "ivf"]);
    let found = conflict_pairs(&read_queue(&out));
    let want: HashSet<(usize, usize)> = p.conflicts.iter().copied().collect();
    assert_eq!(found, want);
    let r = read_report(&out);
    assert_eq!(r["duplicates"]["method"], "ivf");
    assert!(r["duplicates"]["ivf"]["recall_estimate"].as_f64().unwrap() >= 0.99);
}

#[test]
fn saved_index_gives_the_same_pairs_as_a_fresh_build() {
    let p = planted_dataset(1500, 30, 4);
    let ds = p.dir.path();
    let tmp = tempfile::tempdir().unwrap();
    // Night 1: the first 1000 items; night 2: all of them, reusing the index.
    let night1 = tmp.path().join("n1");
    std::fs::create_dir_all(&night1).unwrap();
    for f in ["triage.toml", "probs.npy", "emb.npy", "items.csv"] {
        std::fs::copy(ds.join(f), night1.join(f)).unwrap();
    }
    let keep = 1000;
    let csv: Vec<String> = std::fs::read_to_string(ds.join("items.csv"))
        .unwrap()
        .lines()
        .take(keep + 1)
        .map(String::from)
        .collect();
    std::fs::write(night1.join("items.csv"), csv.join("\n") + "\n").unwrap();
    let probs: Vec<f32> = npyz::NpyFile::new(std::fs::File::open(ds.join("probs.npy")).unwrap())
        .unwrap()
        .into_vec()
        .unwrap();
    write_f32(&night1.join("probs.npy"), &[keep, 10], &probs[..keep * 10]);
    let emb: Vec<f32> = npyz::NpyFile::new(std::fs::File::open(ds.join("emb.npy")).unwrap())
        .unwrap()
        .into_vec()
        .unwrap();
    write_f32(&night1.join("emb.npy"), &[keep, 48], &emb[..keep * 48]);

    let index = tmp.path().join("index");
    let idx = index.to_str().unwrap();
    run_ok(&night1, &tmp.path().join("o1"), &["--index", idx]);
    assert!(index.join("triage.hnsw.graph").exists() && index.join("index.json").exists());
    run_ok(ds, &tmp.path().join("o2"), &["--index", idx]);
    run_ok(ds, &tmp.path().join("fresh"), &["--knn", "hnsw"]);
    run_ok(ds, &tmp.path().join("exact"), &["--knn", "exact"]);
    let reused = conflict_pairs(&read_queue(&tmp.path().join("o2")));
    let fresh = conflict_pairs(&read_queue(&tmp.path().join("fresh")));
    let exact = conflict_pairs(&read_queue(&tmp.path().join("exact")));
    assert_eq!(reused, fresh);
    assert_eq!(fresh, exact);
    let r2 = read_report(&tmp.path().join("o2"));
    let rf = read_report(&tmp.path().join("fresh"));
    assert_eq!(r2["duplicates"]["pairs"], rf["duplicates"]["pairs"]);
    assert_eq!(r2["duplicates"]["method"], "hnsw");
    assert_eq!(
        r2["duplicates"]["index"]["loaded"], 1000,
        "night 2 loads night 1's index"
    );
    assert_eq!(
        r2["duplicates"]["index"]["inserted"], 530,
        "and inserts only the new items"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(index.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["ids"].as_array().unwrap().len(),
        1530,
        "1500 clustered items + 30 planted copies"
    );
}

/// A saved index is untrusted state: a dump damaged after it was saved
/// (one byte changed in its vectors) no longer matches the checksums its
/// manifest recorded, so it is rebuilt (said on stderr) and the pairs
/// equal the exact graph's; an `index.json` that is a device is refused
/// with exit 2 naming it.
#[test]
fn a_damaged_saved_index_is_rebuilt_not_trusted() {
    let p = planted_dataset(800, 20, 6);
    let ds = p.dir.path();
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let idx = index.to_str().unwrap();
    run_ok(ds, &tmp.path().join("o1"), &["--index", idx]);
    let data = index.join("triage.hnsw.data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    let o = run_ok(ds, &tmp.path().join("o2"), &["--index", idx]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rebuilding"), "{err}");
    let r = read_report(&tmp.path().join("o2"));
    assert_eq!(
        r["duplicates"]["index"]["loaded"], 0,
        "the damaged dump is not loaded"
    );
    run_ok(ds, &tmp.path().join("exact"), &["--knn", "exact"]);
    assert_eq!(
        conflict_pairs(&read_queue(&tmp.path().join("o2"))),
        conflict_pairs(&read_queue(&tmp.path().join("exact")))
    );
    // The rebuilt dump is reused by the next run.
    run_ok(ds, &tmp.path().join("o3"), &["--index", idx]);
    let r = read_report(&tmp.path().join("o3"));
    assert_eq!(r["duplicates"]["index"]["loaded"], 820);

    #[cfg(unix)]
    {
        std::fs::remove_file(index.join("index.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", index.join("index.json")).unwrap();
        let out = tmp.path().join("o4");
        let args = [
            "run",
            ds.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--index",
            idx,
        ];
        let m = triage_measured(&args, None, std::time::Duration::from_secs(60));
        let err = String::from_utf8_lossy(&m.output.stderr);
        assert_eq!(m.output.status.code(), Some(2), "{err}");
        assert!(
            err.contains("index.json") && err.contains("device"),
            "{err}"
        );
        assert!(
            !m.timed_out && m.peak_rss < 300 << 20,
            "{} MB",
            m.peak_rss >> 20
        );
    }
}

#[test]
fn deterministic_runs_are_byte_identical() {
    let p = planted_dataset(600, 10, 5);
    let tmp = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for run in 0..2 {
        let out = tmp.path().join(format!("o{run}"));
        run_ok(p.dir.path(), &out, &["--knn", "hnsw", "--deterministic"]);
        let files: Vec<Vec<u8>> = ["queue.jsonl", "queue.csv", "clusters.jsonl", "report.json"]
            .iter()
            .map(|f| std::fs::read(out.join(f)).unwrap())
            .collect();
        outputs.push(files);
    }
    assert!(outputs[0] == outputs[1], "two --deterministic runs differ");
}

#[test]
fn relative_threshold_and_report() {
    let p = planted_dataset(500, 10, 6);
    let out = p.dir.path().join("out");
    run_ok(p.dir.path(), &out, &["--dup-relative", "0.1"]);
    let r = read_report(&out);
    let median = r["duplicates"]["median_nn_distance"].as_f64().unwrap();
    let t = r["duplicates"]["threshold"].as_f64().unwrap();
    assert!((t - 0.1 * median).abs() < 1e-6, "{t} vs 0.1 × {median}");
    assert_eq!(
        r["duplicates"]["rule"]["relative"].as_f64().unwrap() as f32,
        0.1
    );
    for row in read_queue(&out) {
        for nb in row["neighbors"].as_array().unwrap() {
            assert!(nb["distance"].as_f64().unwrap() <= t + 1e-7);
        }
    }
}

/// ciFAIR's hand-judged CIFAR duplicate pairs, with their real labels and
/// distances: embeddings are built so each pair sits at its published
/// distance, every other pair far apart. Exactly the 13 pairs whose labels
/// disagree must come out as conflicts, each with its distance.
#[test]
fn cifair_pairs_with_disagreeing_labels() {
    let Some(data) = shared_data() else {
        eprintln!("skipped: ../shared/data not present");
        return;
    };
    let text = std::fs::read_to_string(data.join("cifair/pairs_with_labels.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (cd, cla, clb, cdis) = (
        col("distance"),
        col("label_a"),
        col("label_b"),
        col("labels_disagree"),
    );
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let d = 128;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    let mut want = HashSet::new();
    let mut dist = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let u = random_unit(&mut rng, d);
        let dd: f64 = f[cd].parse().unwrap();
        let a = rows.len();
        rows.push(u.clone());
        rows.push(if dd == 0.0 {
            u.clone()
        } else {
            at_distance(&mut rng, &u, dd.min(0.3))
        });
        labels.push(f[cla].parse::<u32>().unwrap());
        labels.push(f[clb].parse::<u32>().unwrap());
        if f[cdis] == "1" {
            want.insert((a, a + 1));
        }
        dist.insert((a, a + 1), dd.min(0.3));
    }
    assert_eq!(want.len(), 13, "the data's 13 disagreeing pairs");
    let n = rows.len();
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path();
    std::fs::write(
        ds.join("triage.toml"),
        "task = \"classification\"\nnum_classes = 100\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nembeddings = \"emb.npy\"\n",
    )
    .unwrap();
    let mut csv = String::from("id,label\n");
    let mut probs = vec![0.5f32 / 99.0; n * 100];
    for (i, l) in labels.iter().enumerate() {
        csv.push_str(&format!("x{i},{l}\n"));
        probs[i * 100 + *l as usize] = 0.5;
    }
    std::fs::write(ds.join("items.csv"), csv).unwrap();
    write_f32(&ds.join("probs.npy"), &[n, 100], &probs);
    write_f32(&ds.join("emb.npy"), &[n, d], &rows.concat());
    let out = ds.join("out");
    // Random 128-D directions sit at distance ~1 ± 0.09; 0.31 admits every
    // pair (distances are capped at 0.3) and nothing else.
    run_ok(ds, &out, &["--dup-threshold", "0.31"]);
    let q = read_queue(&out);
    assert_eq!(conflict_pairs(&q), want);
    let r = read_report(&out);
    assert_eq!(
        r["duplicates"]["pairs"].as_u64().unwrap() as usize,
        n / 2,
        "every hand-judged pair is a near-duplicate"
    );
    let exact_pairs = r["duplicates"]["pairs_by_method"]["embedding_hash"]
        .as_u64()
        .unwrap();
    assert!(
        exact_pairs > 0,
        "judgment-0 pairs (distance 0) are found by hashing too"
    );
    for row in &q {
        let a: usize = row["id"].as_str().unwrap()[1..].parse().unwrap();
        for nb in row["neighbors"].as_array().unwrap() {
            let b: usize = nb["id"].as_str().unwrap()[1..].parse().unwrap();
            let got = nb["distance"].as_f64().unwrap();
            let exp = dist[&(a.min(b), a.max(b))];
            assert!((got - exp).abs() < 1e-4, "pair {a},{b}: {got} vs {exp}");
        }
    }
}

/// A bad-input case: its name, how it corrupts the dataset, and what the error must say.
type BadCase<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a [&'a str]);

#[test]
fn bad_embeddings_fail_clearly() {
    let p = planted_dataset(50, 2, 8);
    let ds = p.dir.path();
    let total = 52;
    let cases: Vec<BadCase> = vec![
        (
            "N mismatch",
            Box::new(|| {
                write_f32(
                    &ds.join("emb.npy"),
                    &[total - 1, 4],
                    &vec![0.5; (total - 1) * 4],
                )
            }),
            &["emb.npy", "51 rows", "52 items", "embeddings"],
        ),
        // A NaN, zero or constant row is not fatal: the `null` check flags
        // it (tests/cli/checks.rs, null_embedding_rows_are_flagged_not_fatal).
        (
            "D = 0",
            Box::new(|| write_f32(&ds.join("emb.npy"), &[total, 0], &[])),
            &["emb.npy", "dimension", "0"],
        ),
    ];
    for (what, make, needles) in cases {
        make();
        let out = ds.join(format!("out-{}", what.replace(' ', "_")));
        let args = ["run", ds.to_str().unwrap(), "--out", out.to_str().unwrap()];
        let o = triage(&args);
        assert_eq!(o.status.code(), Some(2), "{what}: {}", describe(&args, &o));
        let err = String::from_utf8_lossy(&o.stderr);
        for n in needles {
            assert!(err.contains(n), "{what}: {n:?} missing from {err}");
        }
        assert!(!out.exists(), "{what}: no outputs");
    }
}
