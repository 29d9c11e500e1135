//! The engines' drivers in `scale/`: the Slurm and Kubernetes per-shard
//! commands (`scale/shard.sh` with the scheduler's index variable set) and
//! the Ray driver (`scale/ray_triage.py` on a local Ray cluster) produce
//! partials that merge to the single-run result, byte for byte.
//!
//! The Ray test needs a Python with `ray` (`$TRIAGE_RAY_PYTHON`, else
//! `python3`); without one it reports itself skipped, unless
//! `TRIAGE_REQUIRE_RAY=1` (set by `.ci/run`, which installs Ray).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const FILES: [&str; 4] = ["queue.jsonl", "queue.csv", "clusters.jsonl", "report.json"];

/// `datasets/demo` by absolute path (the drivers pass it on as given, and
/// report.json records it), and its single-run outputs.
fn single_run(tmp: &Path) -> (PathBuf, PathBuf) {
    let demo = std::fs::canonicalize("datasets/demo").unwrap();
    let single = tmp.join("single");
    run_ok(&demo, &single, &["--deterministic", "--budget", "8"]);
    (demo, single)
}

fn assert_same(single: &Path, merged: &Path, what: &str) {
    for f in FILES {
        let a = std::fs::read(single.join(f)).unwrap();
        let b = std::fs::read(merged.join(f)).unwrap_or_default();
        assert!(a == b, "{what}: {f} differs from the single run");
    }
}

#[test]
fn slurm_and_kubernetes_shard_commands_merge_to_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (demo, single) = single_run(tmp.path());
    let parts = tmp.path().join("parts");
    // Shard 0 as a Slurm array task, 1 and 2 as Kubernetes completion indexes.
    for (i, var) in [
        (0, "SLURM_ARRAY_TASK_ID"),
        (1, "JOB_COMPLETION_INDEX"),
        (2, "JOB_COMPLETION_INDEX"),
    ] {
        let o = Command::new("scale/shard.sh")
            .args([demo.to_str().unwrap(), parts.to_str().unwrap(), "3", "--"])
            .arg("--deterministic")
            .env("TRIAGE_BIN", env!("CARGO_BIN_EXE_triage"))
            .env_remove("TRIAGE_SHARD")
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .env(var, i.to_string())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(parts.join(format!("part-{i}/partial.jsonl")).is_file());
    }
    let merged = tmp.path().join("merged");
    let o = Command::new("scale/merge.sh")
        .args([parts.to_str().unwrap(), "3", merged.to_str().unwrap(), "--"])
        .args(["--deterministic", "--budget", "8"])
        .env("TRIAGE_BIN", env!("CARGO_BIN_EXE_triage"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&single, &merged, "scale/shard.sh + scale/merge.sh");
    // Without an index variable the shard command refuses to guess.
    let o = Command::new("scale/shard.sh")
        .args([demo.to_str().unwrap(), parts.to_str().unwrap(), "3"])
        .env_remove("TRIAGE_SHARD")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no shard index"));
}

/// A Python that imports `ray`, or `None` (then the test skips, or fails
/// under `TRIAGE_REQUIRE_RAY=1`).
fn ray_python() -> Option<String> {
    let python = std::env::var("TRIAGE_RAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import ray"])
        .output()
        .is_ok_and(|o| o.status.success());
    let required = std::env::var("TRIAGE_REQUIRE_RAY").is_ok_and(|v| v == "1");
    match (ok, required) {
        (true, _) => Some(python),
        (false, true) => panic!("TRIAGE_REQUIRE_RAY=1 but {python} cannot import ray"),
        (false, false) => {
            eprintln!("skipped: no Python with ray (pip install ray; TRIAGE_RAY_PYTHON)");
            None
        }
    }
}

#[test]
fn ray_driver_runs_shards_as_tasks_and_merges_to_the_single_run() {
    let Some(python) = ray_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (demo, single) = single_run(tmp.path());
    let merged = tmp.path().join("merged");
    let ray = |dataset: &Path, out: &Path| {
        Command::new(&python)
            .arg("scale/ray_triage.py")
            .arg(dataset)
            .args([
                "--out",
                out.to_str().unwrap(),
                "--shards",
                "3",
                "--retries",
                "1",
            ])
            .args(["--", "--deterministic", "--budget", "8"])
            .env("TRIAGE_BIN", env!("CARGO_BIN_EXE_triage"))
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .output()
            .unwrap()
    };
    let o = ray(&demo, &merged);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same(&single, &merged, "scale/ray_triage.py");

    // A shard that keeps failing (a corrupt mask in its range) fails the job,
    // with triage's error, and no merged output.
    let bad = tmp.path().join("bad");
    copy_dir(&demo, &bad);
    std::fs::write(bad.join("masks/item00020.png"), b"not a png").unwrap();
    let out = tmp.path().join("bad-out");
    let o = ray(&bad, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("item00020"), "{err}");
    assert!(!out.join("queue.jsonl").exists());
}
