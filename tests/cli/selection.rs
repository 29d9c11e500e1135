//! Unlabelled items and the selection for labelling (`--label-budget`,
//! `to_label.*`): label-free scores checked against values computed here
//! from the written probabilities, the review queue left to the labelled
//! items, a batch of exactly K unlabelled items with no two from one
//! near-duplicate cluster, and the same batch however the run is split.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::common::*;

const N: usize = 300;
const C: usize = 4;
/// Items `LABELLED..N` are unlabelled.
const LABELLED: usize = 200;
/// Planted: groups of `COPIES` unlabelled items with the same (very
/// uncertain) probabilities and near-identical embeddings, from `PLANT`.
const PLANT: usize = 200;
const GROUPS: usize = 8;
const COPIES: usize = 4;

fn lcg(st: &mut u64) -> f64 {
    *st = st
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*st >> 11) as f64 / (1u64 << 53) as f64
}

/// The probabilities of every item, as written (f32).
fn probs() -> Vec<[f32; C]> {
    let mut st = 5u64;
    (0..N)
        .map(|i| {
            if (PLANT..PLANT + GROUPS * COPIES).contains(&i) {
                // Margin 0.01·(g+1): lower than any other item's.
                let g = ((i - PLANT) / COPIES) as f32;
                let top = 0.4 + 0.005 * g;
                let second = top - 0.01 * (g + 1.0);
                let rest = (1.0 - top - second) / 2.0;
                let mut p = [top, second, rest, rest];
                p.rotate_right(g as usize % C);
                return p;
            }
            // A clear winner: margin at least ~0.2.
            let mut p = [0f32; C];
            let win = (lcg(&mut st) * C as f64) as usize % C;
            for (k, v) in p.iter_mut().enumerate() {
                *v = 0.05 + 0.1 * lcg(&mut st) as f32 + if k == win { 1.0 } else { 0.0 };
            }
            let s: f32 = p.iter().sum();
            p.map(|v| v / s)
        })
        .collect()
}

/// `(entropy / ln C, margin, least confidence)` of a row, from the
/// definitions, in f64.
fn label_free(p: &[f32; C]) -> (f64, f64, f64) {
    let q: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let s: f64 = q.iter().sum();
    let q: Vec<f64> = q.iter().map(|v| v / s).collect();
    let h: f64 = -q
        .iter()
        .filter(|&&v| v > 0.0)
        .map(|v| v * v.ln())
        .sum::<f64>();
    let mut sorted = q.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    (h / (C as f64).ln(), sorted[0] - sorted[1], 1.0 - sorted[0])
}

fn ids() -> Vec<String> {
    (0..N).map(|i| format!("it{i:03}")).collect()
}

/// A classification dataset in `d`: `label` cells empty for the unlabelled
/// items (or, with `npy`, -1 in `labels.npy`), with embeddings when asked.
fn dataset(d: &Path, npy: bool, embeddings: bool) {
    std::fs::create_dir_all(d).unwrap();
    let mut st = 9u64;
    let labels: Vec<i64> = (0..N)
        .map(|i| match i < LABELLED {
            true => (lcg(&mut st) * C as f64) as i64 % C as i64,
            false => -1,
        })
        .collect();
    let mut csv = String::from(if npy { "id\n" } else { "id,label\n" });
    for (i, id) in ids().iter().enumerate() {
        match (npy, labels[i]) {
            (true, _) => csv.push_str(&format!("{id}\n")),
            (false, -1) => csv.push_str(&format!("{id},\n")),
            (false, l) => csv.push_str(&format!("{id},{l}\n")),
        }
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    let flat: Vec<f32> = probs().iter().flatten().copied().collect();
    write_f32(&d.join("probs.npy"), &[N, C], &flat);
    let mut toml = String::from(
        "task = \"classification\"\nclasses = [\"a\", \"b\", \"c\", \"d\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    );
    if npy {
        let bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy_raw(&d.join("labels.npy"), "<i8", &[N], &bytes);
        toml.push_str("labels = \"labels.npy\"\n");
    }
    if embeddings {
        let dim = 8;
        let mut e: Vec<f32> = (0..N * dim).map(|_| lcg(&mut st) as f32 - 0.5).collect();
        for g in 0..GROUPS {
            let first = PLANT + g * COPIES;
            for c in 1..COPIES {
                for k in 0..dim {
                    e[(first + c) * dim + k] = e[first * dim + k] + 1e-4 * (lcg(&mut st) as f32);
                }
            }
        }
        write_f32(&d.join("embeddings.npy"), &[N, dim], &e);
        toml.push_str("embeddings = \"embeddings.npy\"\n");
    }
    std::fs::write(d.join("triage.toml"), toml).unwrap();
}

fn read_to_label(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("to_label.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn index_of(id: &str) -> usize {
    id[2..].parse().unwrap()
}

#[test]
fn unlabelled_items_get_label_free_scores_and_stay_out_of_the_review_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    dataset(&d, false, false);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic", "--label-strategy", "margin"]);
    let queue = read_queue_rows(&out);
    assert_eq!(queue.len(), LABELLED, "only the labelled items are queued");
    assert!(queue.iter().all(|r| index_of(&r.id) < LABELLED));
    let rows = read_to_label(&out);
    assert_eq!(
        rows.len(),
        N - LABELLED,
        "without a budget every unlabelled item is listed"
    );
    let p = probs();
    let mut prev = f64::NEG_INFINITY;
    for r in &rows {
        let i = index_of(r["id"].as_str().unwrap());
        assert!(i >= LABELLED, "{i} is labelled");
        let s = r["scores"].as_object().unwrap();
        let keys: HashSet<&str> = s.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            HashSet::from(["entropy", "margin", "least_confidence"]),
            "no label-quality score for an unlabelled item"
        );
        let (h, m, lc) = label_free(&p[i]);
        for (name, want) in [("entropy", h), ("margin", m), ("least_confidence", lc)] {
            let got = s[name].as_f64().unwrap();
            assert!((got - want).abs() < 1e-6, "{i} {name}: {got} vs {want}");
        }
        // Margin order, lowest first.
        assert!(m >= prev - 1e-6, "row {i} out of margin order");
        prev = m;
        assert!((r["score"].as_f64().unwrap() - (1.0 - m)).abs() < 1e-6);
    }
    let rep = read_report(&out);
    let typed = read_report_typed(&out);
    assert_eq!(typed.n_items, N);
    assert_eq!(
        typed.samples, LABELLED as u64,
        "the pooled sums are the labelled items'"
    );
    assert_eq!(typed.selection.unwrap().unlabelled, N - LABELLED);
    // (`checks` is read as JSON: its summary is typed elsewhere.)
    assert_eq!(rep["checks"]["select_for_labelling"]["status"], "ran");

    // The labelled part alone gives the same queue and the same sums.
    let lab = tmp.path().join("labelled");
    copy_dir(&d, &lab);
    let csv = std::fs::read_to_string(d.join("items.csv")).unwrap();
    let kept: Vec<&str> = csv.lines().take(LABELLED + 1).collect();
    std::fs::write(lab.join("items.csv"), kept.join("\n") + "\n").unwrap();
    let flat: Vec<f32> = p[..LABELLED].iter().flatten().copied().collect();
    write_f32(&lab.join("probs.npy"), &[LABELLED, C], &flat);
    let out_l = tmp.path().join("out_l");
    run_ok(&lab, &out_l, &["--deterministic"]);
    assert_eq!(
        std::fs::read(out.join("queue.jsonl")).unwrap(),
        std::fs::read(out_l.join("queue.jsonl")).unwrap(),
        "the unlabelled items change nothing in the review queue"
    );
    let rl = read_report(&out_l);
    for key in ["ece", "mce", "accuracy", "confusion", "reliability"] {
        assert_eq!(rep[key], rl[key], "{key}");
    }
    assert!(!out_l.join("to_label.jsonl").exists());
    assert_eq!(rl["checks"]["select_for_labelling"]["status"], "skipped");

    // -1 in labels.npy means the same as an empty cell.
    let dn = tmp.path().join("npy");
    dataset(&dn, true, false);
    let out_n = tmp.path().join("out_n");
    run_ok(
        &dn,
        &out_n,
        &["--deterministic", "--label-strategy", "margin"],
    );
    for f in ["queue.jsonl", "to_label.jsonl", "to_label.csv"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(out_n.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn the_batch_has_k_unlabelled_items_from_distinct_clusters_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    dataset(&d, false, true);
    let k = 10usize;
    let ks = k.to_string();
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut a = vec!["--deterministic", "--label-budget", &ks];
        a.extend_from_slice(extra);
        run_ok(&d, &out, &a);
        out
    };
    let out = run("diverse", &[]);
    let rows = read_to_label(&out);
    assert_eq!(rows.len(), k);
    let idx: Vec<usize> = rows
        .iter()
        .map(|r| index_of(r["id"].as_str().unwrap()))
        .collect();
    assert!(idx.iter().all(|&i| i >= LABELLED), "{idx:?}");
    // Every planted group is one near-duplicate cluster; the batch takes
    // one item of each (the lowest margins), then others.
    let group = |i: usize| {
        (PLANT..PLANT + GROUPS * COPIES)
            .contains(&i)
            .then(|| (i - PLANT) / COPIES)
    };
    let groups: Vec<usize> = idx.iter().filter_map(|&i| group(i)).collect();
    let distinct: HashSet<usize> = groups.iter().copied().collect();
    assert_eq!(
        groups.len(),
        distinct.len(),
        "two copies in one batch: {idx:?}"
    );
    assert_eq!(distinct.len(), GROUPS, "every planted group is represented");
    let clusters: Vec<u64> = rows.iter().filter_map(|r| r["cluster"].as_u64()).collect();
    assert_eq!(
        clusters.len(),
        clusters.iter().collect::<HashSet<_>>().len(),
        "one row per near-duplicate cluster"
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("<h2>To label next</h2>"));
    assert!(page.contains(&format!("<td>{}</td>", rows[0]["id"].as_str().unwrap())));
    let sel = read_report_typed(&out).selection.unwrap();
    assert_eq!(sel.strategy, "diverse");
    assert_eq!(sel.duplicates_in_batch, Some(0));
    assert_eq!(sel.selected, k);
    // An unlabelled near-duplicate never conflicts with anything.
    let queue = read_queue_rows(&out);
    let conflicts: Vec<usize> = queue
        .iter()
        .flat_map(|r| r.neighbors.as_ref().unwrap())
        .filter(|n| n.conflict)
        .map(|n| index_of(&n.id))
        .collect();
    assert!(conflicts.iter().all(|&i| i < LABELLED), "{conflicts:?}");

    // Pure margin fills the batch with copies.
    let m = read_to_label(&run("margin", &["--label-strategy", "margin"]));
    let mg: Vec<usize> = m
        .iter()
        .filter_map(|r| group(index_of(r["id"].as_str().unwrap())))
        .collect();
    assert_eq!(mg.len(), k);
    assert!(mg.iter().collect::<HashSet<_>>().len() < k / 2, "{mg:?}");

    // The same inputs give the same batch: again, in small batches, in
    // shards merged, and on the GPU when there is one.
    let again = run("again", &["--batch-size", "1K"]);
    assert_eq!(
        std::fs::read(out.join("to_label.jsonl")).unwrap(),
        std::fs::read(again.join("to_label.jsonl")).unwrap()
    );
    let parts: Vec<String> = (0..3)
        .map(|i| {
            let p = tmp.path().join(format!("part{i}"));
            let s = format!("{i}/3");
            run_ok(&d, &p, &["--deterministic", "--shard", &s]);
            p.to_str().unwrap().to_string()
        })
        .collect();
    let merged = tmp.path().join("merged");
    let mut a = vec!["merge"];
    a.extend(parts.iter().map(String::as_str));
    a.extend([
        "--out",
        merged.to_str().unwrap(),
        "--deterministic",
        "--label-budget",
        &ks,
    ]);
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    for f in ["to_label.jsonl", "to_label.csv", "queue.jsonl"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(merged.join(f)).unwrap(),
            "{f}"
        );
    }
    // A warm score cache gives the same batch.
    let cache = tmp.path().join("cache");
    let cs = cache.to_str().unwrap();
    run("cold", &["--cache", cs]);
    let warm = run("warm", &["--cache", cs]);
    assert_eq!(read_report_typed(&warm).score_cache.unwrap().scored, 0);
    assert_eq!(
        std::fs::read(out.join("to_label.jsonl")).unwrap(),
        std::fs::read(warm.join("to_label.jsonl")).unwrap()
    );
    // The GPU scores the rows; the batch is the CPU's.
    let gpu = tmp.path().join("gpu");
    if run_gpu(&d, &gpu, &["--deterministic", "--label-budget", &ks]) {
        let ids = |v: &[serde_json::Value]| v.iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&read_to_label(&gpu)), ids(&rows));
    }
}

/// Bad selection input: exit 2, nothing written, the error names it.
#[test]
fn bad_selection_input() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    dataset(&d, true, false);
    let out = tmp.path().join("out");
    let o = triage(&[
        "run",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--label-budget",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--label-budget"));
    // Only -1 means unlabelled: -2 is an error naming the file, item and field.
    let mut labels: Vec<i64> = (0..N as i64).map(|i| i % C as i64).collect();
    labels[7] = -2;
    let bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy_raw(&d.join("labels.npy"), "<i8", &[N], &bytes);
    let o = triage(&["run", d.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in ["labels.npy", "\"it007\"", "label", "-2"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(!out.join("to_label.jsonl").exists() && !out.join("report.json").exists());
}

#[test]
fn random_entropy_and_per_class_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    dataset(&d, false, false);
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut a = vec!["--deterministic"];
        a.extend_from_slice(extra);
        run_ok(&d, &out, &a);
        read_to_label(&out)
            .iter()
            .map(|r| index_of(r["id"].as_str().unwrap()))
            .collect::<Vec<usize>>()
    };
    let r1 = run(
        "r1",
        &[
            "--label-budget",
            "12",
            "--label-strategy",
            "random",
            "--seed",
            "1",
        ],
    );
    let r1b = run(
        "r1b",
        &[
            "--label-budget",
            "12",
            "--label-strategy",
            "random",
            "--seed",
            "1",
        ],
    );
    let r2 = run(
        "r2",
        &[
            "--label-budget",
            "12",
            "--label-strategy",
            "random",
            "--seed",
            "2",
        ],
    );
    assert_eq!(r1.len(), 12);
    assert_eq!(r1, r1b, "seeded");
    assert_ne!(r1, r2, "another seed, another draw");
    assert!(r1.iter().all(|&i| i >= LABELLED));

    // Entropy: highest first, by the definition.
    let p = probs();
    let e = run("e", &["--label-strategy", "entropy"]);
    let hs: Vec<f64> = e.iter().map(|&i| label_free(&p[i]).0).collect();
    assert!(hs.windows(2).all(|w| w[0] >= w[1] - 1e-6), "{hs:?}");

    // --min-per-class 0.25 of 8 reserves 2 rows per predicted class.
    let pred = |i: usize| {
        (0..C)
            .max_by(|&a, &b| p[i][a].total_cmp(&p[i][b]).then(b.cmp(&a)))
            .unwrap()
    };
    let plain = run(
        "plain",
        &["--label-budget", "8", "--label-strategy", "margin"],
    );
    let shared = run(
        "shared",
        &[
            "--label-budget",
            "8",
            "--label-strategy",
            "margin",
            "--min-per-class",
            "0.25",
        ],
    );
    assert_eq!(shared.len(), 8);
    let mut per: HashMap<usize, usize> = HashMap::new();
    for &i in &shared {
        *per.entry(pred(i)).or_default() += 1;
    }
    for k in 0..C {
        assert!(
            per.get(&k).copied().unwrap_or(0) >= 2,
            "class {k}: {per:?} {shared:?}"
        );
    }
    assert_ne!(plain, shared, "the shares change the plain margin batch");
}

/// Segmentation: an empty `mask` cell makes the item unlabelled; its mean
/// entropy, margin and least confidence and the softmin of its margin are
/// computed here from the values written, and the GPU gives the same.
#[test]
fn unlabelled_segmentation_items() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("seg");
    std::fs::create_dir_all(d.join("masks")).unwrap();
    let (n, c, h, w) = (6usize, 3usize, 8usize, 8usize);
    let hw = h * w;
    let mut st = 3u64;
    let mut probs = vec![0f32; n * c * hw];
    for i in 0..n {
        for px in 0..hw {
            let raw: Vec<f32> = (0..c).map(|_| 0.05 + lcg(&mut st) as f32).collect();
            let s: f32 = raw.iter().sum();
            for k in 0..c {
                probs[(i * c + k) * hw + px] = raw[k] / s;
            }
        }
    }
    write_f32(&d.join("probs.npy"), &[n, c, h, w], &probs);
    let mut csv = String::from("id,mask\n");
    for i in 0..n {
        if i % 3 == 1 {
            csv.push_str(&format!("s{i},\n"));
        } else {
            let m: Vec<u8> = (0..hw).map(|p| ((p / 3 + i) % c) as u8).collect();
            write_mask(&d.join(format!("masks/s{i}.png")), h, w, &m);
            csv.push_str(&format!("s{i},masks/s{i}.png\n"));
        }
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"x\", \"y\", \"z\"]\nignore_index = 255\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    let cpu = tmp.path().join("cpu");
    run_ok(&d, &cpu, &["--deterministic", "--backend", "cpu"]);
    let queue = read_queue_rows(&cpu);
    assert_eq!(queue.len(), 4);
    let rows = read_to_label(&cpu);
    let got: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        HashSet::from([&"s1", &"s4"])
    );
    let rep = read_report_typed(&cpu);
    assert_eq!(
        rep.samples,
        4 * hw as u64,
        "only the annotated pixels are pooled"
    );
    for r in &rows {
        let i: usize = r["id"].as_str().unwrap()[1..].parse().unwrap();
        let (mut eh, mut em, mut el) = (0f64, 0f64, 0f64);
        let (mut num, mut den) = (0f64, 0f64);
        for px in 0..hw {
            let q: Vec<f64> = (0..c)
                .map(|k| probs[(i * c + k) * hw + px] as f64)
                .collect();
            let s: f64 = q.iter().sum();
            let q: Vec<f64> = q.iter().map(|v| v / s).collect();
            let mut sorted = q.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let m = sorted[0] - sorted[1];
            eh += -q.iter().map(|v| v * v.ln()).sum::<f64>() / (c as f64).ln();
            em += m;
            el += 1.0 - sorted[0];
            // softmin_T(m) = Σ m e^{-m/T} / Σ e^{-m/T}, T = 0.1.
            num += m * (-m / 0.1).exp();
            den += (-m / 0.1).exp();
        }
        let s = r["scores"].as_object().unwrap();
        for (name, want) in [
            ("entropy", eh / hw as f64),
            ("margin", em / hw as f64),
            ("least_confidence", el / hw as f64),
            ("margin_softmin", num / den),
        ] {
            let v = s[name].as_f64().unwrap();
            assert!((v - want).abs() < 1e-5, "s{i} {name}: {v} vs {want}");
        }
        for absent in [
            "miou",
            "self_confidence_softmin",
            "normalized_margin_softmin",
            "ece",
        ] {
            assert!(!s.contains_key(absent), "s{i} has {absent}");
        }
    }

    let gpu = tmp.path().join("gpu");
    if !run_gpu(&d, &gpu, &["--deterministic"]) {
        return;
    }
    let g = read_to_label(&gpu);
    assert_eq!(g.len(), rows.len());
    for (a, b) in rows.iter().zip(&g) {
        assert_eq!(a["id"], b["id"]);
        for (k, v) in a["scores"].as_object().unwrap() {
            let (x, y) = (v.as_f64().unwrap(), b["scores"][k].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                "{k}: cpu {x} gpu {y}"
            );
        }
    }
}

/// A dataset without any label: no review queue rows, every item listed.
#[test]
fn an_entirely_unlabelled_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    dataset(&d, false, true);
    let csv: String = ids().iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(d.join("items.csv"), format!("id\n{csv}")).unwrap();
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic", "--label-budget", "20"]);
    assert!(read_queue_rows(&out).is_empty());
    let rows = read_to_label(&out);
    assert_eq!(rows.len(), 20);
    let rep = read_report_typed(&out);
    assert_eq!(rep.n_items, N);
    assert_eq!(rep.selection.unwrap().unlabelled, N);
    assert!(out.join("report.html").exists());
}
