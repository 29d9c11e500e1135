//! `triage synth` datasets: determinism, planted errors ranking first,
//! batch-size independence and memory bounded by the batch.

use std::collections::HashSet;
use std::path::Path;

use crate::common::*;

fn synth(out: &Path, extra: &[&str]) {
    let mut args = vec!["synth", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = triage(&args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&args, &o));
}

fn truth(ds: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(ds.join("truth.json")).unwrap()).unwrap()
}

fn planted_ids(t: &serde_json::Value) -> HashSet<String> {
    t["planted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn same_seed_same_bytes_and_smaller_sets_are_prefixes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c, big) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
        tmp.path().join("big"),
    );
    let args = [
        "--items",
        "6",
        "--size",
        "40",
        "48",
        "--classes",
        "4",
        "--seed",
        "9",
    ];
    synth(&a, &args);
    synth(&b, &args);
    synth(
        &c,
        &[
            "--items",
            "6",
            "--size",
            "40",
            "48",
            "--classes",
            "4",
            "--seed",
            "10",
        ],
    );
    synth(
        &big,
        &[
            "--items",
            "12",
            "--size",
            "40",
            "48",
            "--classes",
            "4",
            "--seed",
            "9",
        ],
    );
    for f in [
        "probs.npy",
        "items.csv",
        "truth.json",
        "triage.toml",
        "masks/item00003.png",
        "images/item00005.png",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs between runs"
        );
    }
    let pa = std::fs::read(a.join("probs.npy")).unwrap();
    assert_ne!(
        pa,
        std::fs::read(c.join("probs.npy")).unwrap(),
        "another seed, other data"
    );
    // (N, C, H, W) f16: 6 · 4 · 40 · 48 · 2 bytes after the header.
    let data = 6 * 4 * 40 * 48 * 2;
    let header = pa.len() - data;
    assert!(String::from_utf8_lossy(&pa[..header]).contains("'shape': (6, 4, 40, 48, )"));
    assert!(String::from_utf8_lossy(&pa[..header]).contains("'descr': '<f2'"));
    let pbig = std::fs::read(big.join("probs.npy")).unwrap();
    let hbig = pbig.len() - 2 * data;
    assert_eq!(
        &pbig[hbig..hbig + data],
        &pa[header..],
        "item i depends only on (seed, i)"
    );
    assert_eq!(
        std::fs::read(a.join("masks/item00005.png")).unwrap(),
        std::fs::read(big.join("masks/item00005.png")).unwrap()
    );
    let t = truth(&a);
    assert_eq!(t["items"], 6);
    let listed = t["planted"].as_array().unwrap().len() + t["clean"].as_array().unwrap().len();
    assert_eq!(listed, 6, "every item is planted or clean");
}

#[test]
fn planted_errors_rank_at_the_top_of_the_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    synth(
        &ds,
        &[
            "--items",
            "40",
            "--size",
            "96",
            "96",
            "--classes",
            "5",
            "--seed",
            "4",
            "--dtype",
            "f32",
        ],
    );
    let t = truth(&ds);
    let planted = planted_ids(&t);
    let kinds: HashSet<&str> = t["planted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(planted.len() >= 4, "{} planted", planted.len());
    for k in [
        "shifted_boundary",
        "missing_object",
        "swapped_classes",
        "duplicate_conflict",
    ] {
        assert!(kinds.contains(k), "every kind is exercised: {kinds:?}");
    }
    // Planted pixels are the annotation's differences from the truth.
    for p in t["planted"].as_array().unwrap() {
        assert!(p["pixels"].as_u64().unwrap() > 0, "{p}");
    }

    let out = tmp.path().join("out");
    run_ok(&ds, &out, &["--backend", "cpu"]);
    let q = read_queue_rows(&out);
    assert_eq!(q.len(), 40);
    let top: HashSet<String> = q[..planted.len()]
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(
        top, planted,
        "the planted items are exactly the top of the queue"
    );
    let scores: Vec<f64> = q.iter().map(|r| r.priority.unwrap()).collect();
    let pos: Vec<bool> = q.iter().map(|r| planted.contains(r.id.as_ref())).collect();
    assert_eq!(auroc(&scores, &pos), 1.0);
    // Each planted item is explained by a mask signal.
    for r in &q[..planted.len()] {
        assert!(
            r.reasons.iter().any(|s| s.contains("IoU")),
            "{}: {:?}",
            r.id,
            r.reasons
        );
    }
}

#[test]
fn planted_errors_rank_high_across_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    for seed in ["1", "2"] {
        let ds = tmp.path().join(format!("ds{seed}"));
        synth(
            &ds,
            &[
                "--items",
                "30",
                "--size",
                "64",
                "80",
                "--classes",
                "3",
                "--seed",
                seed,
            ],
        );
        let planted = planted_ids(&truth(&ds));
        let out = tmp.path().join(format!("out{seed}"));
        run_ok(&ds, &out, &[]);
        let q = read_queue_rows(&out);
        let scores: Vec<f64> = q.iter().map(|r| r.priority.unwrap()).collect();
        let pos: Vec<bool> = q.iter().map(|r| planted.contains(r.id.as_ref())).collect();
        let a = auroc(&scores, &pos);
        assert!(a >= 0.95, "seed {seed}: AUROC {a}");
    }
}

#[test]
fn batch_size_does_not_change_the_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("ds");
    synth(
        &ds,
        &[
            "--items",
            "7",
            "--size",
            "48",
            "40",
            "--classes",
            "4",
            "--seed",
            "4",
        ],
    );
    let mut queues = Vec::new();
    let mut reports = Vec::new();
    // One item is 4 · 48 · 40 · 2 B = 15 360 B (f16): batches of 1, 1, 2, 6
    // and all 7 items (a batch always holds at least one item).
    for b in ["1", "16K", "31000", "100000", "64MiB"] {
        let out = tmp.path().join(format!("out{b}"));
        run_ok(&ds, &out, &["--batch-size", b]);
        queues.push(std::fs::read_to_string(out.join("queue.jsonl")).unwrap());
        let mut r = read_report(&out);
        r.as_object_mut().unwrap().remove("timings");
        r.as_object_mut().unwrap().remove("options");
        r.as_object_mut().unwrap().remove("memory");
        r.as_object_mut().unwrap().remove("started_at");
        reports.push(r);
    }
    for (i, q) in queues.iter().enumerate().skip(1) {
        assert_eq!(q, &queues[0], "queue differs at batch size index {i}");
        assert_eq!(
            reports[i], reports[0],
            "report differs at batch size index {i}"
        );
    }
}

fn peak_rss(out: &Path) -> u64 {
    let r = read_report(out);
    r["memory"]["peak_rss_bytes"]
        .as_u64()
        .expect("peak_rss_bytes is reported on Linux")
}

#[test]
fn memory_is_bounded_by_the_batch_not_the_dataset() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc to read peak RSS from");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    let large = tmp.path().join("large");
    // f32 probabilities: 12 items = 12 · 5 · 256 · 256 · 4 B = 15.7 MB; 48 items = 63 MB.
    let common = [
        "--size",
        "256",
        "256",
        "--classes",
        "5",
        "--dtype",
        "f32",
        "--seed",
        "1",
    ];
    synth(&small, &[&["--items", "12"][..], &common[..]].concat());
    synth(&large, &[&["--items", "48"][..], &common[..]].concat());
    // Batches of 2.6 MB: two items of 1.3 MB each. The least peak of three
    // runs of each: one run's peak moves by ±15 MB with how the threads
    // meet (12 items have read 114–144 MB on one machine), which would
    // hide the 47 MB this test looks for.
    let least = |d: &Path, name: &str| {
        (0..3)
            .map(|k| {
                let o = tmp.path().join(format!("{name}{k}"));
                run_ok(d, &o, &["--batch-size", "2.6MB"]);
                peak_rss(&o)
            })
            .min()
            .unwrap_or(0)
    };
    let (ps, pl) = (least(&small, "os"), least(&large, "ol"));
    eprintln!("peak RSS (least of 3 runs): 12 items {ps} B, 48 items {pl} B");
    // Holding the probabilities would add ≥ 47 MB; allow 8 MB of noise.
    assert!(
        pl < ps + (8 << 20),
        "peak RSS grew from {ps} to {pl} bytes with 4× the items"
    );
}

/// The shipped demo is exactly what `triage synth` (defaults, seed 0) writes,
/// and the README's main command ranks its planted errors first.
#[test]
fn shipped_demo_is_reproducible_and_ranks_planted_first() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo");
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    synth(&fresh, &[]);
    for f in [
        "probs.npy",
        "truth.json",
        "items.csv",
        "triage.toml",
        "masks/item00011.png",
        "embeddings.npy",
    ] {
        assert!(
            std::fs::read(demo.join(f)).unwrap() == std::fs::read(fresh.join(f)).unwrap(),
            "datasets/demo/{f} differs from `triage synth --out DIR`; regenerate it"
        );
    }
    let out = tmp.path().join("out");
    run_ok(&demo, &out, &[]);
    let planted = planted_ids(&truth(&demo));
    // 8 mask errors and one near-duplicate whose classes disagree with its source.
    assert_eq!(planted.len(), 9);
    let q = read_queue_rows(&out);
    let top: HashSet<String> = q[..planted.len()]
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(top, planted);
}

/// Classification streams in byte-sized batches: a 1000-class set twelve
/// times larger than one batch gives exactly the queue and report of a
/// single batch, and the planted wrong labels of `synth --task
/// classification` rank first.
#[test]
fn classification_batches_in_bytes_give_the_one_batch_result() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("cls");
    // 3000 × 1000 float32 = 12 MB of probabilities.
    synth(
        &ds,
        &[
            "--task",
            "classification",
            "--items",
            "3000",
            "--classes",
            "1000",
            "--dtype",
            "f32",
            "--seed",
            "5",
        ],
    );
    let mut outs = Vec::new();
    // 1 MiB = 262 rows per batch (12 batches); 1 byte = one row per batch; 64 MiB = one batch.
    for b in ["1MiB", "1", "64MiB"] {
        let out = tmp.path().join(format!("out{b}"));
        run_ok(&ds, &out, &["--batch-size", b, "--backend", "cpu"]);
        let mut r = read_report(&out);
        for k in ["timings", "options", "memory", "started_at"] {
            r.as_object_mut().unwrap().remove(k);
        }
        outs.push((std::fs::read(out.join("queue.jsonl")).unwrap(), r));
    }
    for (i, (q, r)) in outs.iter().enumerate().skip(1) {
        assert!(q == &outs[0].0, "queue.jsonl differs for batch size {i}");
        assert_eq!(r, &outs[0].1, "report differs for batch size {i}");
    }
    assert_eq!(outs[0].1["n_items"], 3000);
    assert_eq!(outs[0].1["samples"], 3000);

    // The planted wrong labels (truth.json) are found: AUROC of the priority.
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ds.join("truth.json")).unwrap()).unwrap();
    let planted: std::collections::HashSet<String> = truth["planted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        (50..=140).contains(&planted.len()),
        "{} planted",
        planted.len()
    );
    let q = String::from_utf8(outs[0].0.clone()).unwrap();
    let (mut scores, mut pos) = (Vec::new(), Vec::new());
    for line in q.lines() {
        let row: triage::schema::QueueRow = serde_json::from_str(line).unwrap();
        scores.push(row.priority.unwrap());
        pos.push(planted.contains(row.id.as_ref()));
    }
    let a = auroc(&scores, &pos);
    assert!(a >= 0.95, "AUROC {a}");
}

/// Run `triage run` with `TRIAGE_SIMD` set to `simd`.
fn run_with_simd(ds: &Path, out: &Path, simd: &str) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(["run", ds.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--backend", "cpu"])
        .env("TRIAGE_SIMD", simd)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every number of `a` equals `b` within `tol` (strings, booleans and the
/// shape exactly); returns the largest difference seen.
fn max_diff(a: &serde_json::Value, b: &serde_json::Value, path: &str, tol: f64) -> f64 {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let d = (x.as_f64().unwrap() - y.as_f64().unwrap()).abs();
            assert!(d <= tol, "{path}: {x} vs {y}");
            d
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            x.iter()
                .zip(y)
                .map(|(u, v)| max_diff(u, v, path, tol))
                .fold(0.0, f64::max)
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{path}");
            x.iter()
                .map(|(k, u)| max_diff(u, &y[k], &format!("{path}.{k}"), tol))
                .fold(0.0, f64::max)
        }
        _ => {
            assert_eq!(a, b, "{path}");
            0.0
        }
    }
}

/// The AVX2 scoring kernels against the scalar reference (`TRIAGE_SIMD=off`),
/// end to end, for float16 segmentation (images whose pixel count is not a
/// multiple of 8, so the padded last group is exercised) and float32
/// classification: the same queue order, the same reasons, every number
/// within 1e-5 (only the entropy may differ at all), and report.json naming
/// the kernels used.
#[test]
fn simd_and_scalar_runs_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let sets = [
        (
            "seg",
            vec![
                "--items",
                "6",
                "--size",
                "37",
                "29",
                "--classes",
                "7",
                "--dtype",
                "f16",
            ],
        ),
        (
            "cls",
            vec![
                "--task",
                "classification",
                "--items",
                "301",
                "--classes",
                "43",
                "--dtype",
                "f32",
            ],
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    let has_avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    #[cfg(not(target_arch = "x86_64"))]
    let has_avx2 = false;
    for (name, args) in sets {
        let ds = tmp.path().join(name);
        synth(&ds, &args);
        let (on, off) = (
            tmp.path().join(format!("{name}-on")),
            tmp.path().join(format!("{name}-off")),
        );
        run_with_simd(&ds, &on, "on");
        run_with_simd(&ds, &off, "off");
        let (mut ra, mut rb) = (read_report(&on), read_report(&off));
        assert_eq!(
            ra["backend"]["simd"],
            if has_avx2 { "avx2" } else { "scalar" }
        );
        assert_eq!(rb["backend"]["simd"], "scalar");
        for r in [&mut ra, &mut rb] {
            for k in ["timings", "memory", "backend", "started_at"] {
                r.as_object_mut().unwrap().remove(k);
            }
        }
        max_diff(&ra, &rb, name, 1e-5);
        let (qa, qb) = (read_queue(&on), read_queue(&off));
        let ids = |q: &[serde_json::Value]| -> Vec<String> {
            q.iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids(&qa), ids(&qb), "{name}: queue order");
        for (a, b) in qa.iter().zip(&qb) {
            max_diff(a, b, name, 1e-5);
        }
    }
}
