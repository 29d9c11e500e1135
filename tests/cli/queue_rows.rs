//! `--queue-rows all|flagged`: what the queue files list. The expected
//! `flagged` files are cut, line by line, from the same run's `all` files
//! (rows in the budget with `--budget`, and rows some check flags), so the
//! rows, their ranks and every byte of them are checked against the
//! default listing; the report is the same but for `options.queue_rows`.

use std::path::Path;

use crate::common::*;
use crate::queue_policy::small_dataset;

/// The lines of `path`.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Whether the `all` listing's `queue.jsonl` line belongs in the
/// `flagged` listing: in the budget (with a budget given) or flagged.
fn listed(line: &str, budget: bool) -> bool {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let flagged = !v["flags"].as_array().unwrap().is_empty();
    (budget && v["in_budget"].as_bool().unwrap()) || flagged
}

/// Run `extra` with `all` and with `flagged`; check the flagged files
/// against those cut from the all files, and return the numbers of rows
/// (all, flagged).
fn check(dataset: &Path, tmp: &Path, extra: &[&str], budget: bool) -> (usize, usize) {
    let (all, flagged) = (tmp.join("all"), tmp.join("flagged"));
    let mut a = extra.to_vec();
    a.extend(["--queue-rows", "all", "--deterministic"]);
    let o = triage(&cpu_args(dataset, &all, &a));
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    let mut f = extra.to_vec();
    f.extend(["--queue-rows", "flagged", "--deterministic"]);
    let o = triage(&cpu_args(dataset, &flagged, &f));
    assert_eq!(o.status.code(), Some(0), "{}", describe(&f, &o));

    let (jall, call) = (
        lines(&all.join("queue.jsonl")),
        lines(&all.join("queue.csv")),
    );
    // No CSV record spans lines here: record k + 1 is JSON line k's row.
    assert_eq!(call.len(), jall.len() + 1);
    let keep: Vec<bool> = jall.iter().map(|l| listed(l, budget)).collect();
    let want_json: Vec<&String> = jall
        .iter()
        .zip(&keep)
        .filter(|p| *p.1)
        .map(|p| p.0)
        .collect();
    let mut want_csv = vec![&call[0]];
    want_csv.extend(call[1..].iter().zip(&keep).filter(|p| *p.1).map(|p| p.0));
    let got_json = lines(&flagged.join("queue.jsonl"));
    let got_csv = lines(&flagged.join("queue.csv"));
    assert_eq!(got_json.iter().collect::<Vec<_>>(), want_json);
    assert_eq!(got_csv.iter().collect::<Vec<_>>(), want_csv);

    let (mut ra, mut rf) = (read_report(&all), read_report(&flagged));
    assert_eq!(ra["options"].get("queue_rows"), None, "absent for all");
    assert_eq!(rf["options"]["queue_rows"], "flagged");
    rf["options"].as_object_mut().unwrap().remove("queue_rows");
    ra["options"].as_object_mut().unwrap().remove("dataset");
    rf["options"].as_object_mut().unwrap().remove("dataset");
    assert_eq!(ra, rf);
    (jall.len(), got_json.len())
}

#[test]
fn flagged_lists_the_budget_and_the_flagged_rows_with_their_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    std::fs::create_dir(&d).unwrap();
    small_dataset(&d);
    // A budget with a spot check: the budget's rows stay, flagged or not.
    let (n, k) = check(
        &d,
        tmp.path(),
        &["--budget", "3", "--spot-check", "0.34"],
        true,
    );
    assert!(k < n && k >= 3, "{k} of {n} rows");

    // Without a budget: only the flagged rows, and gaps in the ranks.
    let c = tmp.path().join("synth");
    synth_classification(&c, 400, 4);
    let t2 = tmp.path().join("nobudget");
    std::fs::create_dir(&t2).unwrap();
    let (n, k) = check(&c, &t2, &[], false);
    assert!(k > 0 && k < n, "{k} of {n} rows");
}

#[test]
fn top_cuts_the_flagged_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("synth");
    synth_classification(&c, 400, 4);
    let (f, t) = (tmp.path().join("f"), tmp.path().join("t"));
    run_ok(&c, &f, &["--backend", "cpu", "--queue-rows", "flagged"]);
    run_ok(
        &c,
        &t,
        &["--backend", "cpu", "--queue-rows", "flagged", "--top", "5"],
    );
    let (all, top) = (lines(&f.join("queue.jsonl")), lines(&t.join("queue.jsonl")));
    assert_eq!(top, all[..5]);
    assert_eq!(
        lines(&t.join("queue.csv")),
        lines(&f.join("queue.csv"))[..6]
    );
}

#[test]
fn a_bad_queue_rows_value_exits_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("synth");
    synth_classification(&c, 50, 3);
    let out = tmp.path().join("out");
    for bad in ["some", "", "ALL", "flagged,all"] {
        let args = cpu_args(&c, &out, &["--queue-rows", bad]);
        let o = triage(&args);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&args, &o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--queue-rows"),
            "{}",
            describe(&args, &o)
        );
        assert!(!out.exists(), "{bad:?}: {} was written", out.display());
    }
}
