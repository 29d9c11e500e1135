//! `triage run --resume`: killed with SIGKILL at random points (seeded), the
//! same command with `--resume` continues from the checkpoint in `--out`
//! and writes byte-for-byte what an uninterrupted run writes. A torn last
//! line is cut off; a checkpoint of other inputs means a fresh start, said
//! on stderr; shards resume too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const FILES: [&str; 4] = ["queue.jsonl", "queue.csv", "report.json", "clusters.jsonl"];
const CHECKPOINT: &str = ".triage-checkpoint.jsonl";

fn args<'a>(dataset: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = cpu_args(dataset, out, &["--deterministic"]);
    a.extend_from_slice(extra);
    a
}

fn lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Start `triage run ... --resume` and SIGKILL it once its checkpoint has
/// `k` lines (or let it finish if it gets there first). Returns whether it
/// was killed mid-run.
pub(crate) fn kill_after(dataset: &Path, out: &Path, extra: &[&str], k: usize) -> bool {
    let mut a = args(dataset, out, extra);
    a.push("--resume");
    let mut child = Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return false;
        }
        if lines(&out.join(CHECKPOINT)) >= k || t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub(crate) fn resume_ok(dataset: &Path, out: &Path, extra: &[&str]) -> String {
    let mut a = args(dataset, out, extra);
    a.push("--resume");
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    assert!(
        !out.join(CHECKPOINT).exists(),
        "the checkpoint is removed at the end"
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_same(full: &Path, resumed: &Path, what: &str) {
    for f in FILES {
        let a = std::fs::read(full.join(f)).ok();
        let b = std::fs::read(resumed.join(f)).ok();
        assert!(a == b, "{what}: {f} differs from the uninterrupted run");
    }
}

/// Kill points drawn from `seed` in `1..=batches`.
fn kill_points(seed: u64, batches: usize, n: usize) -> Vec<usize> {
    let mut st = seed;
    (0..n)
        .map(|_| {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (st >> 33) as usize % batches
        })
        .collect()
}

fn killed_and_resumed(dataset: &Path, extra: &[&str], batches: usize, seeds: &[u64]) {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let o = triage(&args(dataset, &full, extra));
    assert_eq!(o.status.code(), Some(0));
    let mut killed = 0;
    for &seed in seeds {
        for k in kill_points(seed, batches, 3) {
            let out: PathBuf = tmp.path().join(format!("s{seed}-k{k}"));
            killed += kill_after(dataset, &out, extra, k) as usize;
            let err = resume_ok(dataset, &out, extra);
            assert_same(
                &full,
                &out,
                &format!("seed {seed}, killed at line {k}: {err}"),
            );
        }
    }
    assert!(
        killed > 0,
        "no run was killed mid-way: the test tested nothing"
    );
}

#[test]
fn segmentation_killed_anywhere_resumes_to_the_same_outputs() {
    // One item per batch: 32 batches.
    killed_and_resumed(
        Path::new("datasets/demo"),
        &["--batch-size", "1"],
        33,
        &[1, 2],
    );
}

#[test]
fn classification_killed_anywhere_resumes_to_the_same_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    synth_classification(&d, 3000, 10);
    // 10 float16 classes = 20 bytes a row: 50 rows a batch, 60 batches.
    killed_and_resumed(&d, &["--batch-size", "1000", "--budget", "50"], 61, &[3, 4]);
}

#[test]
fn torn_foreign_and_missing_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = Path::new("datasets/demo");
    let extra = ["--batch-size", "1"];
    let full = tmp.path().join("full");
    assert_eq!(triage(&args(demo, &full, &extra)).status.code(), Some(0));

    // No checkpoint: --resume starts afresh.
    let fresh = tmp.path().join("fresh");
    resume_ok(demo, &fresh, &extra);
    assert_same(&full, &fresh, "no checkpoint");

    // A torn last line (the kill came mid-write: the start of a sealed
    // line, its checksum and part of its record) is cut off.
    let torn = tmp.path().join("torn");
    if kill_after(demo, &torn, &extra, 6) {
        let cp = torn.join(CHECKPOINT);
        let mut bytes = std::fs::read(&cp).unwrap();
        bytes.extend_from_slice(b"0123456789abcdef {\"start\": 5, \"end\": 6, \"sums\": {\"bi");
        std::fs::write(&cp, bytes).unwrap();
        let err = resume_ok(demo, &torn, &extra);
        assert!(err.contains("resuming from"), "{err}");
        assert_same(&full, &torn, "torn checkpoint");
    }

    // A checkpoint of other inputs or options (another fingerprint): a
    // fresh start.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join(CHECKPOINT),
        "{\"format\":\"triage-checkpoint/1\",\"fingerprint\":\"0123456789abcdef\",\"shard\":null}\n",
    )
    .unwrap();
    let err = resume_ok(demo, &other, &extra);
    assert!(err.contains("starting afresh"), "{err}");
    assert_same(&full, &other, "foreign checkpoint");

    // Shards resume too, and their partials merge to the single run.
    let parts: Vec<PathBuf> = (0..2)
        .map(|i| tmp.path().join(format!("part{i}")))
        .collect();
    for (i, p) in parts.iter().enumerate() {
        let spec = format!("{i}/2");
        let shard_extra = ["--batch-size", "1", "--shard", spec.as_str()];
        kill_after(demo, p, &shard_extra, 5);
        resume_ok(demo, p, &shard_extra);
        assert!(p.join("partial.jsonl").is_file());
    }
    let merged = tmp.path().join("merged");
    let mut a = vec![
        "merge",
        parts[0].to_str().unwrap(),
        parts[1].to_str().unwrap(),
    ];
    a.extend(["--out", merged.to_str().unwrap(), "--deterministic"]);
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    assert_same(&full, &merged, "resumed shards, merged");
}
