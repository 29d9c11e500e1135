//! `--history DIR`, night over night: three nights of one dataset with
//! labels moved between them, each run given the earlier nights' outputs;
//! `report.json` `history` has every night in time order, tonight last,
//! each night's flagged share counted here from that night's own
//! `queue.jsonl` and `items.csv`; `*.json` files kept under other names
//! are ordered by their `started_at`, not their names; and hostile history
//! entries (not JSON, a wrong type, a value out of range, a bad time, a
//! huge file, links leading out of DIR, a missing DIR) exit 2 naming the
//! file and the field, writing nothing.

use std::path::Path;

use crate::common::*;
use serde_json::Value;

/// Items and classes of the dataset.
const N: usize = 16;
const C: usize = 3;

/// Item `i`'s probabilities: a clear winner `i % C` for most items, an
/// uncertain row for every fifth.
fn probs() -> Vec<f32> {
    (0..N)
        .flat_map(|i| {
            let win = i % C;
            let top = if i % 5 == 0 { 0.45 } else { 0.9 };
            (0..C).map(move |k| {
                if k == win {
                    top
                } else {
                    (1.0 - top) / (C - 1) as f32
                }
            })
        })
        .collect()
}

const NAMES: [&str; C] = ["a", "b", "c"];

/// The labels of night `night` (0, 1, 2): the predicted class, except for
/// the items moved to the next class that night (more each night), and
/// item 15 unlabelled.
fn labels(night: usize) -> Vec<Option<&'static str>> {
    let moved: &[usize] = match night {
        0 => &[1, 2],
        1 => &[1, 2, 3, 4, 6],
        _ => &[2, 7, 8, 9, 11, 12, 13],
    };
    (0..N)
        .map(|i| {
            if i == N - 1 {
                return None;
            }
            let k = if moved.contains(&i) {
                (i + 1) % C
            } else {
                i % C
            };
            Some(NAMES[k])
        })
        .collect()
}

fn write_dataset(d: &Path, night: usize) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"a\", \"b\", \"c\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    write_f32(&d.join("probs.npy"), &[N, C], &probs());
    let mut csv = String::from("id,label\n");
    for (i, l) in labels(night).iter().enumerate() {
        csv.push_str(&format!("r{i},{}\n", l.unwrap_or("")));
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
}

/// The flagged share of a night, counted from its own outputs: queue rows
/// with at least one flag over the items with a label in its items.csv.
fn counted_share(dataset: &Path, out: &Path) -> f64 {
    let flagged = read_queue(out)
        .iter()
        .filter(|r| r["flags"].as_array().is_some_and(|f| !f.is_empty()))
        .count();
    let csv = std::fs::read_to_string(dataset.join("items.csv")).unwrap();
    let labelled = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1).is_some_and(|v| !v.is_empty()))
        .count();
    flagged as f64 / labelled as f64
}

fn history(out: &Path) -> Vec<Value> {
    read_report(out)["history"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no history in {}", out.display()))
}

/// Run `--history dir`; `Err` with the command and its output unless it
/// succeeded.
fn run_with(dataset: &Path, out: &Path, dir: &Path) -> std::process::Output {
    let args = cpu_args(dataset, out, &["--history", dir.to_str().unwrap()]);
    triage(&args)
}

#[test]
fn three_nights_are_listed_in_time_order_with_their_own_flagged_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let hist = tmp.path().join("nightly");
    std::fs::create_dir_all(&hist).unwrap();
    let mut shares = Vec::new();
    let mut times = Vec::new();
    for night in 0..3 {
        let d = tmp.path().join(format!("ds{night}"));
        write_dataset(&d, night);
        let out = hist.join(format!("2026-12-0{}", night + 1));
        let o = run_with(&d, &out, &hist);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report = read_report(&out);
        let h = history(&out);
        // An empty DIR: a history of one night, tonight.
        assert_eq!(h.len(), night + 1, "{h:?}");
        shares.push(counted_share(&d, &out));
        times.push(report["started_at"].as_str().unwrap().to_string());
        for (k, n) in h.iter().enumerate() {
            assert_eq!(n["run"], format!("2026-12-0{}", k + 1));
            assert_eq!(n["items"], N);
            let got = n["flagged_share"].as_f64().unwrap();
            assert!(
                (got - shares[k]).abs() < 1e-12,
                "night {k}: {got} vs {}",
                shares[k]
            );
            assert_eq!(n["at"], times[k], "night {k}");
            assert!(n["ece"].is_number());
            assert!(n["miou"].is_null() && n["review_precision"].is_null());
        }
        // Tonight, last, is this report's own figures.
        let last = h.last().unwrap();
        assert_eq!(last["ece"], report["ece"]);
        let wrong = report["checks"]["wrong_label"]["flagged"].as_u64().unwrap() as f64;
        assert_eq!(
            last["flagged_share_by_check"]["wrong_label"]
                .as_f64()
                .unwrap(),
            wrong / (N - 1) as f64
        );
        assert!(report["checks"]["select_for_labelling"].is_object());
        assert!(last["flagged_share_by_check"]["select_for_labelling"].is_null());
        assert_eq!(report["options"]["history"], hist.to_str().unwrap());
        let page = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(
            page.contains("<h2>Night over night</h2>"),
            "no history panel"
        );
        assert!(page.contains(&format!("{} nights", night + 1)));
        assert_eq!(
            page.matches("class=\"history-tonight\"").count(),
            2,
            "share and ECE"
        );
    }
    // The moved labels changed the share, so equality above is no accident.
    assert!(shares[0] < shares[2], "{shares:?}");
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");

    // Run again into the last night's directory: its old report is not
    // an earlier night.
    let d = tmp.path().join("ds2");
    let out = hist.join("2026-12-03");
    let o = run_with(&d, &out, &hist);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(history(&out).len(), 3);

    // The same reports kept as files, named against their time order:
    // ordered by started_at, then tonight.
    let flat = tmp.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    std::fs::copy(hist.join("2026-12-01/report.json"), flat.join("z.json")).unwrap();
    std::fs::copy(hist.join("2026-12-02/report.json"), flat.join("a.json")).unwrap();
    std::fs::write(flat.join("notes.txt"), "not a report, not read").unwrap();
    let out = tmp.path().join("tonight");
    let o = run_with(&d, &out, &flat);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let h = history(&out);
    let runs: Vec<&str> = h.iter().map(|n| n["run"].as_str().unwrap()).collect();
    assert_eq!(runs, ["z.json", "a.json", "tonight"]);
    assert!((h[0]["flagged_share"].as_f64().unwrap() - shares[0]).abs() < 1e-12);
    assert!((h[1]["flagged_share"].as_f64().unwrap() - shares[1]).abs() < 1e-12);
}

/// `triage run --history dir` must exit 2 naming every needle, writing
/// nothing.
fn assert_refused(dataset: &Path, dir: &Path, needles: &[&str]) {
    refused_run(dataset, &["--history", dir.to_str().unwrap()], needles);
}

#[test]
fn hostile_history_entries_are_refused_naming_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    write_dataset(&d, 0);
    let first = tmp.path().join("first");
    run_ok(&d, &first, &["--backend", "cpu"]);
    let good = std::fs::read_to_string(first.join("report.json")).unwrap();
    let good_value: Value = serde_json::from_str(&good).unwrap();

    // One good night beside each bad entry, in a fresh directory.
    let case = |name: &str| {
        let dir = tmp.path().join(format!("case-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0-good.json"), &good).unwrap();
        dir
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut v = good_value.clone();
        edit(&mut v);
        serde_json::to_string(&v).unwrap()
    };

    let dir = case("not-json");
    std::fs::write(dir.join("bad.json"), "this is not JSON {").unwrap();
    assert_refused(&d, &dir, &["bad.json", "not valid JSON"]);

    let dir = case("wrong-type");
    std::fs::write(
        dir.join("typed.json"),
        with(&|v| v["queue"]["flagged"] = "many".into()),
    )
    .unwrap();
    assert_refused(&d, &dir, &["typed.json", "queue.flagged", "invalid type"]);

    let dir = case("missing");
    std::fs::write(dir.join("other.json"), r#"{"name": "a config"}"#).unwrap();
    assert_refused(&d, &dir, &["other.json", "n_items"]);

    let dir = case("range");
    std::fs::write(dir.join("ece.json"), with(&|v| v["ece"] = 3.5.into())).unwrap();
    assert_refused(&d, &dir, &["ece.json", ": ece", "not in [0, 1]"]);

    let dir = case("count");
    std::fs::write(
        dir.join("count.json"),
        with(&|v| v["queue"]["flagged"] = (N + 1).into()),
    )
    .unwrap();
    assert_refused(&d, &dir, &["count.json", "queue.flagged"]);

    let dir = case("time");
    std::fs::write(
        dir.join("time.json"),
        with(&|v| v["started_at"] = "yesterday".into()),
    )
    .unwrap();
    assert_refused(&d, &dir, &["time.json", "started_at", "RFC 3339"]);

    let dir = case("nested");
    std::fs::create_dir_all(dir.join("run7")).unwrap();
    std::fs::write(
        dir.join("run7/report.json"),
        with(&|v| v["segmentation"] = serde_json::json!({"miou": [1]})),
    )
    .unwrap();
    assert_refused(&d, &dir, &["run7/report.json", "segmentation.miou"]);

    // Huge (sparse): refused by its size, not read.
    let dir = case("huge");
    let f = std::fs::File::create(dir.join("huge.json")).unwrap();
    f.set_len(65 << 20).unwrap();
    assert_refused(&d, &dir, &["huge.json", "over the limit"]);

    let missing = tmp.path().join("no-such-dir");
    assert_refused(&d, &missing, &["no-such-dir", "does not exist"]);

    let dir = case("file");
    assert_refused(
        &d,
        &dir.join("0-good.json"),
        &["0-good.json", "not a directory"],
    );
}

#[cfg(unix)]
#[test]
fn links_out_of_the_history_directory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    write_dataset(&d, 1);
    let outside = tmp.path().join("outside");
    run_ok(&d, &outside, &["--backend", "cpu"]);

    let dir = tmp.path().join("links-file");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(outside.join("report.json"), dir.join("link.json")).unwrap();
    assert_refused(&d, &dir, &["link.json", "outside the --history directory"]);

    let dir = tmp.path().join("links-dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("run")).unwrap();
    assert_refused(
        &d,
        &dir,
        &["run/report.json", "outside the --history directory"],
    );

    let dir = tmp.path().join("links-dangling");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("nothing"), dir.join("gone.json")).unwrap();
    assert_refused(&d, &dir, &["gone.json", "symbolic link to nothing"]);

    // A link to a run inside DIR (a `latest` link) is that run, read once.
    let dir = tmp.path().join("links-inside");
    std::fs::create_dir_all(&dir).unwrap();
    copy_dir(&outside, &dir.join("2026-12-01"));
    std::os::unix::fs::symlink(dir.join("2026-12-01"), dir.join("latest")).unwrap();
    let out = tmp.path().join("tonight");
    let o = run_with(&d, &out, &dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let runs: Vec<String> = history(&out)
        .iter()
        .map(|n| n["run"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs, ["2026-12-01", "tonight"]);
}
