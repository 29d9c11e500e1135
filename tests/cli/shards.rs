//! Shards and merge: `triage run --shard I/N` writes a partial, `triage
//! merge` combines the partials (any order) into exactly the outputs of one
//! `triage run` (byte for byte with `--deterministic`), and refuses a
//! missing, repeated or foreign shard with exit 2 and nothing written.

use std::path::{Path, PathBuf};

use crate::common::*;

fn shard(dataset: &Path, out: &Path, i: usize, n: usize, extra: &[&str]) {
    let spec = format!("{i}/{n}");
    let mut args = vec!["--shard", spec.as_str(), "--deterministic"];
    args.extend_from_slice(extra);
    run_ok(dataset, out, &args);
    assert!(out.join("partial.jsonl").is_file());
    assert!(
        !out.join("queue.jsonl").exists(),
        "a shard writes only its partial"
    );
}

fn merge(parts: &[PathBuf], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = vec!["merge"];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    triage(&args)
}

/// Single run and merge of `n` shards (given in a shuffled order) agree on
/// every output file, byte for byte.
fn same_as_single_run(dataset: &Path, n: usize, run_opts: &[&str], files: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let mut opts = vec!["--deterministic"];
    opts.extend_from_slice(run_opts);
    run_ok(dataset, &single, &opts);
    let parts: Vec<PathBuf> = (0..n)
        .map(|i| tmp.path().join(format!("part{i}")))
        .collect();
    for (i, p) in parts.iter().enumerate() {
        shard(dataset, p, i, n, &[]);
    }
    // A fixed shuffle: every other shard, then the rest backwards.
    let mut order: Vec<PathBuf> = parts.iter().step_by(2).cloned().collect();
    order.extend(parts.iter().skip(1).step_by(2).rev().cloned());
    let merged = tmp.path().join("merged");
    let o = merge(&order, &merged, &opts);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in files {
        let a = std::fs::read(single.join(f)).unwrap();
        let b = std::fs::read(merged.join(f)).unwrap_or_default();
        assert!(
            a == b,
            "{}: {f} differs between one run and {n} shards",
            dataset.display()
        );
    }
    // The merged report reads as the schema too.
    read_report_typed(&merged);
}

#[test]
fn segmentation_shards_merge_to_the_single_run() {
    let files = [
        "queue.jsonl",
        "queue.csv",
        "clusters.jsonl",
        "report.json",
        "report.html",
    ];
    same_as_single_run(Path::new("datasets/demo"), 3, &["--budget", "10"], &files);
    // More shards than items: the empty ones merge too.
    same_as_single_run(Path::new("datasets/demo"), 40, &[], &files);
}

/// A classification dataset with embeddings and planted near-duplicates
/// whose labels disagree.
pub(crate) fn classification_with_embeddings(d: &Path) {
    synth_classification(d, 500, 6);
    let (n, dim) = (500usize, 8usize);
    let mut st = 11u64;
    let mut next = || {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (st >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut e: Vec<f32> = (0..n * dim).map(|_| next()).collect();
    for i in (0..200).step_by(7) {
        for k in 0..dim {
            e[(i + 1) * dim + k] = e[i * dim + k] + 1e-4 * next();
        }
    }
    write_f32(&d.join("embeddings.npy"), &[n, dim], &e);
    let mut toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    toml.push_str("embeddings = \"embeddings.npy\"\n");
    std::fs::write(d.join("triage.toml"), toml).unwrap();
}

#[test]
fn classification_shards_with_embeddings_merge_to_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    classification_with_embeddings(&d);
    let files = ["queue.jsonl", "queue.csv", "clusters.jsonl", "report.json"];
    same_as_single_run(&d, 3, &["--budget", "40", "--spot-check", "0.1"], &files);
    let r = read_report_typed(&{
        let out = tmp.path().join("check");
        run_ok(&d, &out, &["--deterministic"]);
        out
    });
    assert!(
        r.duplicates.unwrap().conflicting_pairs > 0,
        "the planted pairs make the neighbour stage matter"
    );
}

#[test]
fn merge_refuses_missing_repeated_and_foreign_partials() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let demo = Path::new("datasets/demo");
    let p: Vec<PathBuf> = (0..3).map(|i| t.join(format!("p{i}"))).collect();
    for (i, part) in p.iter().enumerate() {
        shard(demo, part, i, 3, &[]);
    }
    // Another batch size: other options.
    let other = t.join("other");
    shard(demo, &other, 1, 3, &["--batch-size", "1MiB"]);
    let out = t.join("merged");
    for (parts, needle) in [
        (vec![p[0].clone(), p[2].clone()], "shard 1/3 is missing"),
        (
            vec![p[0].clone(), p[1].clone(), p[1].clone(), p[2].clone()],
            "shard 1/3 is given twice",
        ),
        (
            vec![p[0].clone(), other.clone(), p[2].clone()],
            "from other inputs, options or version",
        ),
        (vec![t.join("nowhere")], "nowhere"),
    ] {
        let o = merge(&parts, &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(!out.exists(), "a refused merge writes nothing");
    }
    // A partial cut short, or not a partial at all.
    let cut = t.join("cut");
    copy_dir(&p[1], &cut);
    let text = std::fs::read_to_string(cut.join("partial.jsonl")).unwrap();
    let keep: Vec<&str> = text.lines().collect();
    std::fs::write(
        cut.join("partial.jsonl"),
        keep[..keep.len() - 2].join("\n") + "\n",
    )
    .unwrap();
    let torn = t.join("torn");
    copy_dir(&p[1], &torn);
    std::fs::write(torn.join("partial.jsonl"), &text[..text.len() - 40]).unwrap();
    let junk = t.join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(
        junk.join("partial.jsonl"),
        "{\"format\": \"something else\"}\n",
    )
    .unwrap();
    for (bad, needle) in [
        (&cut, "truncated?"),
        (&torn, "line 12: bad item row"),
        (&junk, "not a triage partial"),
    ] {
        let o = merge(&[p[0].clone(), bad.clone(), p[2].clone()], &out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert!(err.contains("partial.jsonl"), "{err}");
        assert!(!out.exists(), "a refused merge writes nothing");
    }
    // A dataset changed since its shards were scored.
    let copy = t.join("demo");
    copy_dir(demo, &copy);
    let q: Vec<PathBuf> = (0..2).map(|i| t.join(format!("q{i}"))).collect();
    for (i, part) in q.iter().enumerate() {
        shard(&copy, part, i, 2, &[]);
    }
    let toml = std::fs::read_to_string(copy.join("triage.toml")).unwrap();
    std::fs::write(copy.join("triage.toml"), format!("{toml}\n# edited\n")).unwrap();
    let o = merge(&q, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("the dataset changed since"), "{err}");
    assert!(!out.exists());
    // A bad --shard is a usage error.
    for bad in ["3/3", "1", "a/2", "0/0"] {
        let o = triage(&[
            "run",
            "datasets/demo",
            "--out",
            out.to_str().unwrap(),
            "--shard",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "--shard {bad}");
        assert!(!out.exists());
    }
}
