//! Hostile conditions on the output side (issue 25): outputs committed as
//! a set (a rename refused half-way, a kill at every commit step), temp
//! files of killed runs cleaned up, links never followed when writing,
//! `--out` never over an input, spreadsheet formulas neutralised in the
//! CSVs, overlay file names unique for any ids.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::common::*;

/// A classification dataset in `d`: items `ids` (label `i % 3`, or none
/// where `unlabelled` says), an image of width `10 + i` per item when
/// `images`, 4-d embeddings when `emb`. Confidently wrong probabilities,
/// so every labelled item is in the queue.
fn cls(d: &Path, ids: &[&str], images: bool, emb: bool) {
    std::fs::create_dir_all(d).unwrap();
    let mut toml = String::from(
        "task = \"classification\"\nclasses = [\"cat\", \"dog\", \"fox\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    );
    if emb {
        toml.push_str("embeddings = \"emb.npy\"\n");
    }
    std::fs::write(d.join("triage.toml"), toml).unwrap();
    let mut w = csv::Writer::from_path(d.join("items.csv")).unwrap();
    let mut header = vec!["id", "label"];
    if images {
        header.push("image");
    }
    w.write_record(&header).unwrap();
    let mut probs = Vec::new();
    let mut e = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut rec = vec![id.to_string(), (i % 3).to_string()];
        if images {
            let rel = format!("img/{i}.png");
            std::fs::create_dir_all(d.join("img")).unwrap();
            image::RgbImage::from_pixel(10 + i as u32, 7, image::Rgb([20 * i as u8, 100, 200]))
                .save(d.join(&rel))
                .unwrap();
            rec.push(rel);
        }
        w.write_record(&rec).unwrap();
        let mut p = [0.1f32; 3];
        p[(i + 1) % 3] = 0.7;
        p[(i + 2) % 3] = 0.2;
        probs.extend_from_slice(&p);
        let a = i as f32 * 0.7;
        e.extend_from_slice(&[a.cos(), a.sin(), 0.3, 0.1 * i as f32]);
    }
    w.flush().unwrap();
    write_f32(&d.join("probs.npy"), &[ids.len(), 3], &probs);
    if emb {
        write_f32(&d.join("emb.npy"), &[ids.len(), 4], &e);
    }
}

/// Every file under `dir` (hidden ones too; a link as its target's name),
/// relative path → bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                walk(root, &p, out);
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let bytes = if md.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display()).into_bytes()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(rel, bytes);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names of this tool's temps, backups and journals anywhere under `dir`.
fn litter(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_keys()
        .filter(|k| {
            k.contains(".triage-tmp-")
                || k.contains(".triage-bak-")
                || k.contains(".triage-journal-")
        })
        .collect()
}

fn run(dataset: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    triage(&cpu_args(dataset, out, extra))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const IDS: [&str; 5] = ["i0", "i1", "i2", "i3", "i4"];

/// The issue's case: an overlay path occupied by a directory makes the
/// last renames fail; the run exits 2 and every old output is as it was.
#[test]
fn a_rename_refused_half_way_keeps_the_whole_old_set() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    cls(&d, &IDS, true, true);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--backend", "cpu"]);
    for f in ["queue.jsonl", "queue.csv", "report.json", "clusters.jsonl"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // The next run's overlay of i4 meets a directory.
    std::fs::remove_file(out.join("overlays/i4.png")).unwrap();
    std::fs::create_dir(out.join("overlays/i4.png")).unwrap();
    std::fs::write(out.join("overlays/i4.png/keep"), b"x").unwrap();
    let before = snapshot(&out);
    let o = run(&d, &out, &["--budget", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("i4.png") && stderr(&o).contains("directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        snapshot(&out),
        before,
        "every old file byte-identical, nothing added"
    );
}

/// Run `triage run` with the abort hook at commit step `k`, no core file.
#[cfg(unix)]
fn run_aborting(dataset: &Path, out: &Path, k: usize) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_triage"));
    cmd.args(cpu_args(dataset, out, &["--deterministic"]))
        .env("TRIAGE_TEST_ABORT_AT", k.to_string());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// A run killed (abort) before each step of its commit in turn: the
/// recovery leaves exactly the old set or exactly the new one, every file
/// compared byte for byte, and no litter. The new run drops the
/// embeddings, so the old `clusters.jsonl` must go with the new set.
#[cfg(unix)]
#[test]
fn a_kill_at_every_commit_step_leaves_the_old_or_the_new_set() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let d_old = tmp.path().join("ds_old");
    let d_new = tmp.path().join("ds_new");
    cls(&d_old, &IDS, true, true);
    cls(&d_new, &IDS, true, false);
    // Other images too, so every overlay changes.
    for i in 0..IDS.len() {
        image::RgbImage::from_pixel(10 + i as u32, 7, image::Rgb([1, 2, 3]))
            .save(d_new.join(format!("img/{i}.png")))
            .unwrap();
    }
    let old_out = tmp.path().join("old");
    run_ok(&d_old, &old_out, &["--backend", "cpu", "--deterministic"]);
    let old = snapshot(&old_out);
    assert!(old.contains_key("clusters.jsonl") && old.contains_key("overlays/i0.png"));
    let new_out = tmp.path().join("new");
    copy_dir(&old_out, &new_out);
    run_ok(&d_new, &new_out, &["--backend", "cpu", "--deterministic"]);
    let new = snapshot(&new_out);
    assert!(
        !new.contains_key("clusters.jsonl"),
        "the old set's extra file is gone"
    );
    for (k, v) in &new {
        assert_ne!(old.get(k), Some(v), "{k} changes between the runs");
    }

    let (mut olds, mut news) = (0, 0);
    let mut k = 0;
    loop {
        assert!(k < 200, "the commit never finished");
        let out = tmp.path().join(format!("k{k}"));
        copy_dir(&old_out, &out);
        let o = run_aborting(&d_new, &out, k);
        if o.status.success() {
            assert_eq!(snapshot(&out), new, "step {k}: no hook fired");
            break;
        }
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGABRT),
            "step {k}: {}",
            stderr(&o)
        );
        triage::io::atomic::clean(&out).unwrap();
        let now = snapshot(&out);
        assert!(litter(&out).is_empty(), "step {k}: {:?}", litter(&out));
        if now == old {
            olds += 1;
        } else {
            assert_eq!(now, new, "step {k}: a mix of the old and the new set");
            news += 1;
        }
        if k == 5 {
            // The next run itself recovers and finishes.
            let out2 = tmp.path().join("again");
            copy_dir(&old_out, &out2);
            let o = run_aborting(&d_new, &out2, k);
            assert!(!o.status.success());
            run_ok(&d_new, &out2, &["--backend", "cpu", "--deterministic"]);
            assert_eq!(snapshot(&out2), new);
        }
        std::fs::remove_dir_all(&out).unwrap();
        k += 1;
    }
    // Publishing the journal, 2 renames per replaced file (queue.jsonl,
    // queue.csv, items.parquet, report.html, report.json, 5 overlays, the
    // list), the old clusters.jsonl moved aside, the mark: 25 steps that end
    // old.
    assert_eq!(olds, 1 + 2 * 11 + 1 + 1, "steps ending in the old set");
    assert!(news > 0);
}

/// Temps of killed runs are removed by the next run in that `--out` (and
/// `overlays/`); one still locked by a live writer stays.
#[cfg(unix)]
#[test]
fn the_next_run_removes_stale_temps_but_not_live_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    cls(&d, &IDS, true, false);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--backend", "cpu"]);
    let stale = [
        ".queue.csv.triage-tmp-Ab12Cd",
        "overlays/.i0.png.triage-tmp-x9y8z7",
        ".report.json.triage-bak-00112233445566ff",
    ];
    for name in stale {
        std::fs::write(out.join(name), vec![7u8; 4096]).unwrap();
    }
    let live = out.join(".queue.jsonl.triage-tmp-L1ve00");
    std::fs::write(&live, b"a live writer's").unwrap();
    let held = std::fs::File::open(&live).unwrap();
    held.lock().unwrap();
    run_ok(&d, &out, &["--backend", "cpu"]);
    for name in stale {
        assert!(!out.join(name).exists(), "{name}");
    }
    assert_eq!(std::fs::read(&live).unwrap(), b"a live writer's");
    drop(held);
    run_ok(&d, &out, &["--backend", "cpu"]);
    assert!(litter(&out).is_empty(), "{:?}", litter(&out));
}

/// A real `kill -9` while the run writes its outputs (a hidden temp file
/// of at least 64 KiB seen): the next run removes what it left. Skipped (said on
/// stderr) when three runs end before such a temp file is seen, except in CI.
#[cfg(unix)]
#[test]
fn a_run_killed_mid_write_leaves_nothing_after_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    synth_classification(&d, 200_000, 10);
    let out = tmp.path().join("out");
    let mut seen = false;
    for _ in 0..3 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_triage"))
            .args(["run", d.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--backend", "cpu"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(120) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            // A temp with data in it, as the issue's (up to 150 MB).
            let written = out.is_dir()
                && std::fs::read_dir(&out).unwrap().flatten().any(|e| {
                    e.file_name().to_string_lossy().starts_with('.')
                        && e.metadata().is_ok_and(|m| m.len() >= 64 << 10)
                });
            if written {
                child.kill().unwrap();
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = child.kill();
        child.wait().unwrap();
        if seen {
            break;
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    if !seen {
        // A skip never passes in CI (`.ci/run` sets CI): there the kill
        // must have landed.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: three runs finished before a temp file was seen; the kill was never tested"
        );
        eprintln!("skipped: the runs finished before a temp file was seen");
        return;
    }
    run_ok(&d, &out, &["--backend", "cpu"]);
    let hidden: Vec<String> = snapshot(&out)
        .into_keys()
        .filter(|k| k.starts_with('.') && k != ".triage-outputs.json")
        .collect();
    assert!(hidden.is_empty(), "left behind: {hidden:?}");
    assert_eq!(read_queue_rows(&out).len(), read_report_typed(&out).n_items);
}

/// A link planted as `overlays/` is refused (exit 2, nothing written in its
/// target); a link planted at `queue.csv` is replaced, its target intact.
#[cfg(unix)]
#[test]
fn links_in_out_are_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    cls(&d, &IDS, true, false);
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("overlays")).unwrap();
    let o = run(&d, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("overlays") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(!out.join("queue.csv").exists());

    std::fs::remove_file(out.join("overlays")).unwrap();
    let outside = tmp.path().join("outside.csv");
    std::fs::write(&outside, b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, out.join("queue.csv")).unwrap();
    run_ok(&d, &out, &["--backend", "cpu"]);
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    assert!(
        std::fs::symlink_metadata(out.join("queue.csv"))
            .unwrap()
            .is_file()
    );
}

/// `--out` equal to the dataset directory (which holds an input named
/// `queue.csv`) or holding it is refused, the input untouched; an `--out`
/// inside the dataset directory is fine.
#[test]
fn out_over_an_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    cls(&d, &IDS, false, false);
    std::fs::rename(d.join("items.csv"), d.join("queue.csv")).unwrap();
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        toml.replace("items.csv", "queue.csv"),
    )
    .unwrap();
    let before = snapshot(&d);
    let cases = [
        d.clone(),
        d.join("."),
        tmp.path().to_path_buf(),
        tmp.path().join("other/../ds"),
    ];
    for out in cases {
        let o = run(&d, &out, &[]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: {}",
            out.display(),
            stderr(&o)
        );
        assert!(stderr(&o).contains("input of the run"), "{}", stderr(&o));
        assert_eq!(snapshot(&d), before, "{}", out.display());
    }
    run_ok(&d, &d.join("results"), &["--backend", "cpu"]);
}

/// The six characters of OWASP's rule, as the issue's payloads.
const PAYLOADS: [&str; 7] = [
    "=HYPERLINK(\"http://x\",\"y\")",
    "=cmd|' /C calc'!A0",
    "+1+cmd",
    "-2+3",
    "@SUM(A1)",
    "\tx",
    "\rx",
];

/// `'` + `v` when `v` begins with `=`, `+`, `-`, `@`, tab or CR.
fn neutral(v: &str) -> String {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Ids, labels, class names, predicted classes, an annotator column and
/// column headers that begin with a formula character come out of
/// `queue.csv` and `to_label.csv` with a leading `'`, and unchanged in
/// `queue.jsonl` and `to_label.jsonl`.
#[test]
fn spreadsheet_formulas_are_neutralised_in_the_csvs_only() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Seven classes named by the payloads (tab and CR ones included).
    let classes: Vec<String> = PAYLOADS
        .iter()
        .map(|c| {
            format!(
                "\"{}\"",
                c.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\t', "\\t")
                    .replace('\r', "\\r")
            )
        })
        .collect();
    std::fs::write(
        d.join("triage.toml"),
        format!(
            "task = \"classification\"\nclasses = [{}]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
            classes.join(", ")
        ),
    )
    .unwrap();
    // Ids are trimmed on reading, so the tab and CR payloads go to the
    // carried columns; five labelled items and five unlabelled ones.
    let ids: Vec<String> = PAYLOADS[..5]
        .iter()
        .map(|p| p.to_string())
        .chain((0..5).map(|i| format!("-u{i}")))
        .collect();
    let mut w = csv::Writer::from_path(d.join("items.csv")).unwrap();
    w.write_record(["id", "label", "annotator", "=evil()", "@h", "+h", "-h"])
        .unwrap();
    let c = PAYLOADS.len();
    let mut probs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let label = if i < 5 { i.to_string() } else { String::new() };
        // The labelled items carry payloads 2 to 6 here.
        let ann = PAYLOADS[(i + 2) % c];
        w.write_record([id.as_str(), &label, ann, "=1+1", "@x", "+x", "-x"])
            .unwrap();
        let mut p = vec![0.02f32; c];
        p[(i + 1) % c] = 1.0 - 0.02 * (c as f32 - 1.0);
        probs.extend_from_slice(&p);
    }
    w.flush().unwrap();
    write_f32(&d.join("probs.npy"), &[ids.len(), c], &probs);
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu", "--label-budget", "5"]);

    // queue.csv against queue.jsonl, row by row.
    let (header, rows) = read_csv(&out.join("queue.csv"));
    let jsonl = read_jsonl(&out.join("queue.jsonl"));
    assert_eq!(rows.len(), 5);
    assert_eq!(jsonl.len(), 5);
    for h in ["'=evil()", "'@h", "'+h", "'-h", "annotator", "id", "label"] {
        assert!(header.iter().any(|x| x == h), "{h} in {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, json) in rows.iter().zip(&jsonl) {
        let raw_id = json["id"].as_str().unwrap();
        assert!(
            PAYLOADS[..5].contains(&raw_id),
            "raw in queue.jsonl: {raw_id:?}"
        );
        assert_eq!(row[col("id")], format!("'{raw_id}"));
        for (csv_key, json_key) in [
            ("label", "label"),
            ("predicted", "predicted"),
            ("annotator", "annotator"),
            ("'=evil()", "=evil()"),
            ("'@h", "@h"),
            ("'+h", "+h"),
            ("'-h", "-h"),
        ] {
            let raw = json[json_key].as_str().unwrap();
            assert_eq!(row[col(csv_key)], neutral(raw), "{json_key}");
            assert!(row[col(csv_key)].starts_with('\''), "{json_key}: {raw:?}");
        }
        // Numbers triage formats stay numbers.
        assert!(row[col("rank")].parse::<u32>().is_ok());
        assert!(row[col("priority")].parse::<f64>().is_ok());
    }
    // The payloads by name, as a spreadsheet would see them.
    let cells: HashSet<&str> = rows.iter().flatten().map(String::as_str).collect();
    for p in PAYLOADS {
        assert!(
            cells.contains(format!("'{p}").as_str()),
            "{p:?} neutralised"
        );
        assert!(!cells.contains(p), "{p:?} raw in queue.csv");
    }

    // to_label.csv against to_label.jsonl.
    let (header, rows) = read_csv(&out.join("to_label.csv"));
    let jsonl = read_jsonl(&out.join("to_label.jsonl"));
    assert_eq!(rows.len(), 5);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, json) in rows.iter().zip(&jsonl) {
        let raw_id = json["id"].as_str().unwrap();
        assert!(raw_id.starts_with("-u"), "raw in to_label.jsonl: {raw_id}");
        assert_eq!(row[col("id")], format!("'{raw_id}"));
        let pred = json["predicted"].as_str().unwrap();
        assert!(PAYLOADS.contains(&pred));
        assert_eq!(row[col("predicted")], format!("'{pred}"));
        assert!(row[col("rank")].parse::<u32>().is_ok());
    }
}

/// The `(src, alt)` of every overlay picture of the page.
fn pictures(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<img src=\"overlays/") {
        rest = &rest[i + "<img src=\"".len()..];
        let src = &rest[..rest.find('"').unwrap()];
        let alt_at = rest.find("alt=\"overlay of ").unwrap() + "alt=\"overlay of ".len();
        let alt = &rest[alt_at..alt_at + rest[alt_at..].find('"').unwrap()];
        out.push((src.to_string(), alt.to_string()));
    }
    out
}

/// Every picture on the page is a file of its own: each `src` is one
/// item's, exists, and the overlay names differ without case too.
fn assert_pictures_distinct(out: &Path, html: &str, expected: usize) -> HashMap<String, String> {
    let pics = pictures(html);
    let mut owner: HashMap<String, String> = HashMap::new();
    for (src, alt) in &pics {
        if let Some(other) = owner.insert(src.clone(), alt.clone()) {
            assert_eq!(&other, alt, "{src} pictures two items");
        }
        assert!(out.join(src).is_file(), "{src} reported but not written");
    }
    let files: Vec<String> = std::fs::read_dir(out.join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), expected, "{files:?}");
    assert_eq!(owner.len(), expected, "{owner:?}");
    let folded: HashSet<String> = files.iter().map(|f| f.to_lowercase()).collect();
    assert_eq!(
        folded.len(),
        files.len(),
        "names equal without case: {files:?}"
    );
    owner
}

/// The issue's ids: `a/b` and its old sanitised form, `x` and
/// `x.annotators`, `A` and `a`. Each item's image has its own width, so
/// the page's pictures can be traced to their items.
#[test]
fn overlay_names_are_unique_for_any_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let ids = ["a/b", "a_b-e620c3190468cf61", "x", "x.annotators", "A", "a"];
    cls(&d, &ids, true, false);
    let out = tmp.path().join("out");
    let o = run_ok(&d, &out, &["--backend", "cpu"]);
    assert!(stderr(&o).contains("and 6 overlays"), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let owner = assert_pictures_distinct(&out, &html, ids.len());
    for (src, alt) in owner {
        let i = ids.iter().position(|id| *id == alt).unwrap();
        let img = image::open(out.join(&src)).unwrap();
        assert_eq!(img.width(), 10 + i as u32, "{src} is {alt}'s picture");
    }
    // The names, by the documented rule.
    for name in [
        "a-2fb.png",
        "a_b-2de620c3190468cf61.png",
        "x.png",
        "x-2eannotators.png",
        "-41.png",
        "a.png",
    ] {
        assert!(out.join("overlays").join(name).is_file(), "{name}");
    }
}

/// Segmentation with annotations: item `x`'s annotator overlay and item
/// `x.annotators`'s own overlay are two files, each card its own.
#[test]
fn an_id_ending_in_annotators_keeps_its_own_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ids = ["x", "x.annotators", "p", "q"];
    let (h, w, c) = (6usize, 8usize, 3usize);
    std::fs::write(
        d.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"bg\", \"road\", \"car\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nannotations = \"annotations.csv\"\n",
    )
    .unwrap();
    let mut items = String::from("id,mask\n");
    let mut ann = String::from("id,annotator,mask\n");
    let mut probs = vec![0.0f32; ids.len() * c * h * w];
    for (n, id) in ids.iter().enumerate() {
        let mask: Vec<u8> = (0..h * w).map(|p| ((p / w + n) % c) as u8).collect();
        write_mask(&d.join(format!("m/{n}.png")), h, w, &mask);
        items.push_str(&format!("{id},m/{n}.png\n"));
        for (k, a) in ["a1", "a2"].iter().enumerate() {
            let m: Vec<u8> = (0..h * w).map(|p| ((p % w + n + k) % c) as u8).collect();
            write_mask(&d.join(format!("ann/{a}/{n}.png")), h, w, &m);
            ann.push_str(&format!("{id},{a},ann/{a}/{n}.png\n"));
        }
        for p in 0..h * w {
            let top = (p + n) % c;
            for k in 0..c {
                probs[(n * c + k) * h * w + p] = if k == top { 0.8 } else { 0.1 };
            }
        }
    }
    std::fs::write(d.join("items.csv"), items).unwrap();
    std::fs::write(d.join("annotations.csv"), ann).unwrap();
    write_f32(&d.join("probs.npy"), &[ids.len(), c, h, w], &probs);
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Four items' overlays and four annotator overlays.
    let owner = assert_pictures_distinct(&out, &html, 2 * ids.len());
    assert_eq!(owner["overlays/x.annotators.png"], "x");
    assert_eq!(owner["overlays/x-2eannotators.png"], "x.annotators");
    assert_eq!(
        owner["overlays/x-2eannotators.annotators.png"],
        "x.annotators"
    );
}

/// `--index DIR`: hnsw_rs's dump never goes through a link planted at its
/// names (one to a file elsewhere, one dangling), and a killed run's temp
/// directory there is removed.
#[cfg(unix)]
#[test]
fn the_index_dump_never_follows_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    cls(&d, &IDS, false, true);
    let index = tmp.path().join("index");
    std::fs::create_dir(&index).unwrap();
    let outside = tmp.path().join("outside.bin");
    std::fs::write(&outside, b"precious").unwrap();
    std::os::unix::fs::symlink(&outside, index.join("triage.hnsw.graph")).unwrap();
    let made = tmp.path().join("made.bin");
    std::os::unix::fs::symlink(&made, index.join("triage.hnsw.data")).unwrap();
    let stale = index.join(".triage-index.triage-tmp-k1ll3d");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("triage.hnsw.data"), b"half a dump").unwrap();
    let idx = index.to_str().unwrap();
    for night in ["o1", "o2"] {
        run_ok(
            &d,
            &tmp.path().join(night),
            &["--backend", "cpu", "--index", idx],
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        assert!(!made.exists(), "a dangling link's target is never created");
        for f in ["triage.hnsw.graph", "triage.hnsw.data", "index.json"] {
            let md = std::fs::symlink_metadata(index.join(f)).unwrap();
            assert!(md.is_file() && md.len() > 0, "{f}");
        }
        assert!(!stale.exists());
        assert!(litter(&index).is_empty(), "{:?}", litter(&index));
    }
    let r = read_report_typed(&tmp.path().join("o2"));
    assert_eq!(
        r.duplicates.unwrap().index.unwrap().loaded,
        IDS.len(),
        "night 2 loads the dump"
    );
}
