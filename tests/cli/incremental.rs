//! Incremental runs (`--cache DIR`): items whose probabilities and
//! annotation are unchanged since the last run with the cache are not
//! scored again, and the outputs equal a full re-run's (queue files and
//! clusters byte for byte with `--deterministic`, report.json but for its
//! `score_cache` counts). The cache is keyed by content: a moved item keeps
//! its entry; a changed value, label or mask does not. A cache of other
//! options, or a damaged one, is not used; a failed run leaves it as it was.

use std::path::{Path, PathBuf};

use crate::common::*;
use triage::schema::Report;

/// Byte offset of a `.npy` file's data (format 1.0 or 2.0 headers).
fn npy_data_offset(bytes: &[u8]) -> usize {
    match bytes[6] {
        1 => 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        _ => 12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
    }
}

/// `triage run` with the cache `cache`; returns its report and stderr.
fn cached(d: &Path, out: &Path, cache: &Path, extra: &[&str]) -> (Report, String) {
    let mut a = vec![
        "--deterministic",
        "--backend",
        "cpu",
        "--cache",
        cache.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    let o = run_ok(d, out, &a);
    (
        read_report_typed(out),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn full(d: &Path, out: &Path, extra: &[&str]) {
    let mut a = vec!["--deterministic", "--backend", "cpu"];
    a.extend_from_slice(extra);
    run_ok(d, out, &a);
}

/// `score_cache`: (reused, scored).
fn counts(report: &Report) -> (usize, usize) {
    let c = report.score_cache.expect("a score_cache section");
    (c.reused, c.scored)
}

/// `got` wrote what the full run `want` wrote: the queue files and clusters
/// byte for byte, report.json but for `score_cache`.
fn same_as_full(want: &Path, got: &Path, what: &str) {
    for f in ["queue.jsonl", "queue.csv", "clusters.jsonl"] {
        let a = std::fs::read(want.join(f)).ok();
        let b = std::fs::read(got.join(f)).ok();
        assert!(a == b, "{what}: {f} differs from a full re-run");
    }
    let mut a = read_report(want);
    let mut b = read_report(got);
    b.as_object_mut().unwrap().remove("score_cache");
    a.as_object_mut().unwrap().remove("score_cache");
    assert!(a == b, "{what}: report.json differs from a full re-run");
}

/// Rotate the `c` float16 values of row `r` of an `(N, C)` array by one.
fn rotate_row(path: &Path, r: usize, c: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = npy_data_offset(&b) + r * c * 2;
    b[at..at + 2 * c].rotate_left(2);
    std::fs::write(path, b).unwrap();
}

/// Swap rows `i` and `j` (each `width` bytes) of a `.npy` array.
fn swap_rows(path: &Path, i: usize, j: usize, width: usize) {
    let mut b = std::fs::read(path).unwrap();
    let off = npy_data_offset(&b);
    for k in 0..width {
        b.swap(off + i * width + k, off + j * width + k);
    }
    std::fs::write(path, b).unwrap();
}

/// Set label `i` of an int32 `labels.npy` to `(label + 1) % c`.
fn bump_label(path: &Path, i: usize, c: i32) {
    let mut b = std::fs::read(path).unwrap();
    let at = npy_data_offset(&b) + 4 * i;
    let l = i32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    b[at..at + 4].copy_from_slice(&((l + 1) % c).to_le_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn classification_reuses_unchanged_rows_and_equals_a_full_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("ds");
    crate::shards::classification_with_embeddings(&d);
    let (n, c) = (500usize, 6usize);
    let cache = t.join("cache");
    let (r, err) = cached(&d, &t.join("a"), &cache, &[]);
    assert_eq!(counts(&r), (0, n), "an empty cache reuses nothing");
    assert!(
        err.contains("(0 reused from the cache, 500 scored)"),
        "{err}"
    );

    // Tonight: three rows of probabilities and two labels changed, and two
    // items moved (their rows swapped in every input, embeddings too).
    for r in [3, 100, 250] {
        rotate_row(&d.join("probs.npy"), r, c);
    }
    bump_label(&d.join("labels.npy"), 7, c as i32);
    bump_label(&d.join("labels.npy"), 400, c as i32);
    swap_rows(&d.join("probs.npy"), 10, 20, 2 * c);
    swap_rows(&d.join("labels.npy"), 10, 20, 4);
    swap_rows(&d.join("embeddings.npy"), 10, 20, 4 * 8);
    full(
        &d,
        &t.join("full"),
        &["--budget", "40", "--batch-size", "100"],
    );
    assert!(
        read_report_typed(&t.join("full")).score_cache.is_none(),
        "no cache, no counts"
    );
    // Another batch size: rows do not depend on where batches begin.
    let (r, err) = cached(
        &d,
        &t.join("b"),
        &cache,
        &["--budget", "40", "--batch-size", "100"],
    );
    assert_eq!(counts(&r), (n - 5, 5), "only the changed rows are scored");
    assert!(
        err.contains("(495 reused from the cache, 5 scored)"),
        "{err}"
    );
    same_as_full(&t.join("full"), &t.join("b"), "after changes");

    // Nothing changed since: every row is reused.
    let (r, _) = cached(
        &d,
        &t.join("c"),
        &cache,
        &["--budget", "40", "--batch-size", "100"],
    );
    assert_eq!(counts(&r), (n, 0));
    same_as_full(&t.join("full"), &t.join("c"), "nothing changed");
}

#[test]
fn segmentation_reuses_unchanged_items_and_equals_a_full_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("demo");
    copy_dir(Path::new("datasets/demo"), &d);
    let cache = t.join("cache");
    let (r, _) = cached(&d, &t.join("a"), &cache, &["--batch-size", "1"]);
    assert_eq!(counts(&r), (0, 32));

    // Item 5's mask: a block of pixels relabelled. Item 9's probabilities:
    // classes 0 and 1 swapped on its first 500 pixels (stacked float16,
    // (N, 5, 128, 128)).
    let mask = d.join("masks/item00005.png");
    let mut m = image::open(&mask).unwrap().to_luma8();
    for y in 40..60 {
        for x in 40..60 {
            let v = m.get_pixel(x, y)[0];
            m.put_pixel(x, y, image::Luma([if v == 1 { 2 } else { 1 }]));
        }
    }
    m.save(&mask).unwrap();
    let probs = d.join("probs.npy");
    let mut b = std::fs::read(&probs).unwrap();
    let (off, hw) = (npy_data_offset(&b), 128 * 128);
    for px in 0..500 {
        let p0 = off + ((9 * 5) * hw + px) * 2;
        let p1 = off + ((9 * 5 + 1) * hw + px) * 2;
        for k in 0..2 {
            b.swap(p0 + k, p1 + k);
        }
    }
    std::fs::write(&probs, b).unwrap();

    full(&d, &t.join("full"), &["--budget", "10"]);
    let (r, err) = cached(&d, &t.join("b"), &cache, &["--budget", "10"]);
    assert_eq!(counts(&r), (30, 2), "only items 5 and 9 are scored: {err}");
    same_as_full(&t.join("full"), &t.join("b"), "segmentation after changes");
    let q = read_queue_rows(&t.join("b"));
    assert!(
        q.iter().any(|row| row.id == "item00005"),
        "the relabelled item is in the queue"
    );
}

#[test]
fn foreign_damaged_and_shared_caches() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("ds");
    crate::shards::classification_with_embeddings(&d);
    let cache = t.join("cache");
    cached(&d, &t.join("a"), &cache, &[]);
    full(&d, &t.join("full"), &[]);
    let file = cache.join("scores-all.cache");
    let kept = std::fs::read(&file).unwrap();

    // Other score options (--logits): the cache is not used.
    let (r, err) = cached(&d, &t.join("logits"), &cache, &["--logits"]);
    assert_eq!(counts(&r), (0, 500), "{err}");
    assert!(err.contains("not used"), "{err}");

    // A damaged cache file: not used, the run is whole.
    std::fs::write(&file, &kept[..kept.len() - 10]).unwrap();
    let (r, err) = cached(&d, &t.join("damaged"), &cache, &[]);
    assert_eq!(counts(&r), (0, 500));
    assert!(err.contains("not used"), "{err}");
    same_as_full(&t.join("full"), &t.join("damaged"), "damaged cache");
    let now = std::fs::read(&file).unwrap();
    assert_eq!(
        now, kept,
        "the damaged file is replaced by the run's entries"
    );

    // A failed run (a label out of range) leaves the cache as it was.
    let bad = t.join("bad");
    copy_dir(&d, &bad);
    let lb = bad.join("labels.npy");
    let mut b = std::fs::read(&lb).unwrap();
    let at = npy_data_offset(&b) + 4 * 5;
    b[at..at + 4].copy_from_slice(&99i32.to_le_bytes());
    std::fs::write(&lb, b).unwrap();
    let o = triage(&[
        "run",
        bad.to_str().unwrap(),
        "--out",
        t.join("bad-out").to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        kept,
        "a failed run leaves the cache"
    );
    assert!(!t.join("bad-out").join("report.json").exists());

    // Shards share one cache directory (a file each) and reuse from it;
    // the merge adds their counts and equals the single run.
    let parts: Vec<PathBuf> = (0..2).map(|i| t.join(format!("part{i}"))).collect();
    for round in 0..2 {
        for (i, p) in parts.iter().enumerate() {
            let spec = format!("{i}/2");
            let o = run_ok(
                &d,
                p,
                &[
                    "--deterministic",
                    "--backend",
                    "cpu",
                    "--shard",
                    &spec,
                    "--cache",
                    cache.to_str().unwrap(),
                ],
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("(250 reused"),
                "round {round}, shard {i}: {err}"
            );
        }
    }
    assert!(cache.join("scores-0-of-2.cache").is_file());
    let merged = t.join("merged");
    let mut a: Vec<&str> = vec!["merge"];
    a.extend(parts.iter().map(|p| p.to_str().unwrap()));
    a.extend(["--out", merged.to_str().unwrap(), "--deterministic"]);
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    assert_eq!(counts(&read_report_typed(&merged)), (500, 0));
    same_as_full(&t.join("full"), &merged, "merged shards with a cache");
    // The drivers pass the shards' options to the merge too: it takes
    // --cache and leaves the cache alone.
    let listing = || {
        let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let again = t.join("merged-again");
    a.extend(["--cache", cache.to_str().unwrap()]);
    let at = a.len() - 4;
    a[at] = again.to_str().unwrap();
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    assert!(listing() == before, "a merge leaves the cache as it was");
    same_as_full(&t.join("full"), &again, "merge given --cache");
}

/// On the GPU (lavapipe in CI, where `TRIAGE_REQUIRE_GPU=1` makes a missing
/// adapter a failure): the GPU's entries are reused by the GPU (not by the
/// CPU, whose floats agree only within a tolerance), and equal its full run.
#[test]
fn gpu_rows_are_reused_by_the_gpu_only() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = Path::new("datasets/demo");
    let cache = t.join("cache");
    let gpu = |out: &Path| {
        triage(&[
            "run",
            d.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--deterministic",
            "--backend",
            "gpu",
            "--cache",
            cache.to_str().unwrap(),
        ])
    };
    let o = gpu(&t.join("a"));
    if o.status.code() != Some(0) {
        let required = std::env::var("TRIAGE_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "TRIAGE_REQUIRE_GPU=1 but the GPU run failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("skipped: no GPU adapter");
        return;
    }
    let a = read_report_typed(&t.join("a"));
    assert_eq!(a.backend.name, "gpu", "the GPU ran");
    assert_eq!(counts(&a), (0, 32));
    let o = gpu(&t.join("b"));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(counts(&read_report_typed(&t.join("b"))), (32, 0));
    same_as_full(&t.join("a"), &t.join("b"), "GPU entries reused");
    // The CPU does not take the GPU's entries.
    let (r, err) = cached(d, &t.join("cpu"), &cache, &[]);
    assert_eq!(counts(&r), (0, 32), "{err}");
    assert!(err.contains("not used"), "{err}");
}

/// Killed mid-run, an incremental run resumes from its checkpoint and still
/// equals a full re-run; the items restored from the checkpoint count as
/// scored.
#[test]
fn a_killed_incremental_run_resumes_to_the_full_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("ds");
    synth_classification(&d, 3000, 10);
    let cache = t.join("cache");
    let extra = ["--batch-size", "1000"];
    cached(&d, &t.join("a"), &cache, &extra);
    // Every 10th row changed: every batch (50 rows) scores some.
    for r in (0..3000).step_by(10) {
        rotate_row(&d.join("probs.npy"), r, 10);
    }
    full(&d, &t.join("full"), &extra);
    let out = t.join("killed");
    let with_cache = ["--batch-size", "1000", "--cache", cache.to_str().unwrap()];
    let killed = crate::resume::kill_after(&d, &out, &with_cache, 20);
    let err = crate::resume::resume_ok(&d, &out, &with_cache);
    assert!(
        killed,
        "the run was killed mid-way (else this tests nothing)"
    );
    assert!(err.contains("resuming from"), "{err}");
    same_as_full(&t.join("full"), &out, "killed and resumed with a cache");
    let (reused, scored) = counts(&read_report_typed(&out));
    assert_eq!(reused + scored, 3000);
    assert!(scored >= 300, "the changed rows are scored: {scored}");
}
