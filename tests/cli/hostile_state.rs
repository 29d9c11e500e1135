//! Damaged or forged state is never trusted (issue 25): the checkpoint of
//! `--resume`, a shard's partial and the score cache of `--cache` are read
//! back checked (a checksum on every record, every field against the run),
//! and the checkpoint is never written through a planted link. The
//! annotator tables stay bounded with thousands of annotators.
//!
//! The edits below work on the files as the binary under test writes them:
//! a sealed line (`<16 hex digits of xxh3-64> <JSON>`) is edited in its JSON
//! and sealed again (a forgery, which the checksum cannot see), an unsealed
//! one is edited as it is; so each test also shows the failure of a build
//! without checksums, where the same edit panics or is trusted.

use std::path::{Path, PathBuf};
use triage::score::cache::ROW_ENTRY_BYTES;

use xxhash_rust::xxh3::xxh3_64;

use crate::common::*;
use triage::schema::{Agreement, AgreementSection, QueueRow};

const CHECKPOINT: &str = ".triage-checkpoint.jsonl";

/// The JSON of a state-file line, and whether it was sealed.
fn unseal(line: &str) -> (bool, &str) {
    let b = line.as_bytes();
    let sealed = b.len() > 17
        && b[16] == b' '
        && b[..16]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    if sealed {
        (true, &line[17..])
    } else {
        (false, line)
    }
}

/// `json` as a line of the same kind (sealed with a valid checksum, or not).
fn reseal(json: &str, sealed: bool) -> String {
    if sealed {
        format!("{:016x} {json}", xxh3_64(json.as_bytes()))
    } else {
        json.to_string()
    }
}

/// Replace line `n` (0-based) of the text file `path` by `edit` of its JSON,
/// sealed again as it was.
fn forge_line(path: &Path, n: usize, edit: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let (sealed, json) = unseal(&lines[n]);
    let new = edit(json);
    assert_ne!(new, json, "the edit changed nothing");
    lines[n] = reseal(&new, sealed);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `json` with the number after the first `key` (e.g. `"pred":`) replaced.
fn set_number(json: &str, key: &str, value: &str) -> String {
    let at = json
        .find(key)
        .unwrap_or_else(|| panic!("{key} not in {json}"))
        + key.len();
    let end = at
        + json[at..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
            .unwrap();
    format!("{}{value}{}", &json[..at], &json[end..])
}

/// [`cpu_args`] with `--deterministic`.
fn det_args<'a>(d: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = cpu_args(d, out, &["--deterministic"]);
    a.extend_from_slice(extra);
    a
}

/// Run and insist on exit 0 (never 101); returns stderr.
fn ok(args: &[&str]) -> String {
    let o = triage(args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(args, &o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run and insist on exit 2 (an error, never a panic); returns stderr.
fn refused(args: &[&str]) -> String {
    let o = triage(args);
    assert_eq!(o.status.code(), Some(2), "{}", describe(args, &o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn same_files(want: &Path, got: &Path, files: &[&str], what: &str) {
    for f in files {
        let a = std::fs::read(want.join(f)).unwrap();
        let b = std::fs::read(got.join(f)).unwrap_or_default();
        assert!(a == b, "{what}: {f} differs from a clean run");
    }
}

// ---------------------------------------------------------------- checkpoint

#[cfg(unix)]
#[test]
fn a_checkpoint_link_is_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let demo = Path::new("datasets/demo");
    // A link to a file elsewhere: refused, the file is left as it was.
    let outside = t.join("precious.txt");
    std::fs::write(&outside, b"keep me").unwrap();
    let out = t.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join(CHECKPOINT)).unwrap();
    let o = triage(&det_args(demo, &out, &["--resume"]));
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(CHECKPOINT) && err.contains("symbolic link"),
        "{err}"
    );
    // A dangling link: its target is not created.
    let made = t.join("made.txt");
    let out2 = t.join("out2");
    std::fs::create_dir_all(&out2).unwrap();
    std::os::unix::fs::symlink(&made, out2.join(CHECKPOINT)).unwrap();
    let o = triage(&det_args(demo, &out2, &["--resume"]));
    assert!(!made.exists(), "the dangling link's target was created");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
}

/// A checkpoint of a killed classification run (at least `k` lines).
fn killed_checkpoint(d: &Path, t: &Path, extra: &[&str], k: usize) -> PathBuf {
    for attempt in 0..5 {
        let out = t.join(format!("killed{attempt}"));
        if crate::resume::kill_after(d, &out, extra, k) && out.join(CHECKPOINT).is_file() {
            return out;
        }
    }
    panic!("the run was never killed mid-way");
}

#[test]
fn a_forged_class_index_in_a_checkpoint_is_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("ds");
    synth_classification(&d, 3000, 10);
    let extra = ["--batch-size", "1000", "--budget", "50"];
    let full = t.join("full");
    ok(&det_args(&d, &full, &extra));
    let out = killed_checkpoint(&d, t, &extra, 6);
    let cp = out.join(CHECKPOINT);
    // The second batch (line 2, after the header): its first row predicts
    // class 10⁶ of 10, with a valid checksum.
    forge_line(&cp, 2, |j| set_number(j, "\"pred\":", "1000000"));
    let mut a = det_args(&d, &out, &extra);
    a.push("--resume");
    let err = ok(&a);
    assert!(
        err.contains("pred") && err.contains("starting afresh"),
        "the forged row is named and the checkpoint discarded: {err}"
    );
    assert!(!cp.exists());
    same_files(
        &full,
        &out,
        &["queue.jsonl", "queue.csv", "report.json"],
        "forged checkpoint",
    );
    // A damaged line (one digit changed, checksum not recomputed): the
    // same. Unsealed (an older or foreign file): a fresh start too.
    let out = killed_checkpoint(&d, t, &extra, 6);
    let cp = out.join(CHECKPOINT);
    let text = std::fs::read_to_string(&cp).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = lines[1].find("\"priority\":").unwrap() + 11;
    let digit = lines[1][at..]
        .find(|c: char| ('1'..='8').contains(&c))
        .unwrap()
        + at;
    let mut bytes = lines[1].clone().into_bytes();
    bytes[digit] += 1;
    lines[1] = String::from_utf8(bytes).unwrap();
    std::fs::write(&cp, lines.join("\n") + "\n").unwrap();
    let err = ok(&a);
    if unseal(&lines[0]).0 {
        assert!(
            err.contains("checksum") && err.contains("starting afresh"),
            "{err}"
        );
    }
    same_files(
        &full,
        &out,
        &["queue.jsonl", "report.json"],
        "damaged checkpoint",
    );
}

// ------------------------------------------------------------------- partial

/// Two shards' partials of a 300-item, 6-class dataset, in `t/p0`, `t/p1`.
fn partials(d: &Path, t: &Path) -> Vec<PathBuf> {
    synth_classification(d, 300, 6);
    (0..2)
        .map(|i| {
            let p = t.join(format!("p{i}"));
            let s = format!("{i}/2");
            ok(&det_args(d, &p, &["--shard", &s]));
            p
        })
        .collect()
}

fn merge_args<'a>(parts: &'a [PathBuf], out: &'a Path) -> Vec<&'a str> {
    let mut a = vec!["merge"];
    a.extend(parts.iter().map(|p| p.to_str().unwrap()));
    a.extend(["--out", out.to_str().unwrap(), "--deterministic"]);
    a
}

#[test]
fn forged_and_damaged_partials_are_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("ds");
    let parts = partials(&d, t);
    let clean = std::fs::read(parts[1].join("partial.jsonl")).unwrap();
    let out = t.join("merged");
    // The clean partials merge.
    ok(&merge_args(&parts, &out));
    let out = t.join("merged-bad");
    let file = parts[1].join("partial.jsonl");
    let restore = || std::fs::write(&file, &clean).unwrap();

    // A row predicting class 10⁶ of 6 (valid checksum).
    forge_line(&file, 1, |j| set_number(j, "\"pred\":", "1000000"));
    let err = refused(&merge_args(&parts, &out));
    assert!(
        err.contains("partial.jsonl") && err.contains("line 2") && err.contains("row.pred"),
        "{err}"
    );
    restore();

    // A header whose `items` is 10¹⁸.
    forge_line(&file, 0, |j| {
        set_number(j, "\"items\":", "1000000000000000000")
    });
    let err = refused(&merge_args(&parts, &out));
    assert!(
        err.contains("partial.jsonl") && err.contains("line 1: items"),
        "{err}"
    );
    restore();

    // The pooled confusion counts cut to two thirds (36 → 24 cells): a
    // third of the samples would be lost.
    forge_line(&file, 0, |j| {
        let key = "\"counts\":[";
        let at = j.find(key).unwrap() + key.len();
        let end = at + j[at..].find(']').unwrap();
        let cells: Vec<&str> = j[at..end].split(',').collect();
        assert_eq!(cells.len(), 36);
        format!("{}{}{}", &j[..at], cells[..24].join(","), &j[end..])
    });
    let err = refused(&merge_args(&parts, &out));
    assert!(
        err.contains("partial.jsonl") && err.contains("stats.confusion.counts"),
        "{err}"
    );
    restore();

    // One digit of a row's priority changed, the checksum left as it was.
    let text = String::from_utf8(clean.clone()).unwrap();
    let start = text.match_indices('\n').nth(1).unwrap().0 + 1; // line 3
    let at = start + text[start..].find("\"priority\":").unwrap() + 11;
    let digit = at + text[at..].find(|c: char| ('1'..='8').contains(&c)).unwrap();
    let mut bytes = clean.clone();
    bytes[digit] += 1;
    std::fs::write(&file, &bytes).unwrap();
    let err = refused(&merge_args(&parts, &out));
    assert!(
        err.contains("partial.jsonl") && err.contains("line 3"),
        "{err}"
    );
    assert!(
        !out.join("queue.jsonl").exists(),
        "a refused merge writes nothing"
    );
}

// --------------------------------------------------------------------- cache

/// The byte offset of entry `k` of a classification cache file, and the
/// entry size ([`ROW_ENTRY_BYTES`]: 24 bytes of key, prediction and
/// confidence, 4 per declared per-sample score, an 8-byte checksum).
fn cache_entry(bytes: &[u8], k: usize) -> (usize, usize) {
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let header = std::str::from_utf8(&bytes[..nl - 1]).unwrap();
    let v: serde_json::Value = serde_json::from_str(unseal(header).1).unwrap();
    let entries = v["entries"].as_u64().unwrap() as usize;
    let size = (bytes.len() - nl) / entries;
    assert_eq!(size, ROW_ENTRY_BYTES);
    assert_eq!(size, 32 + 4 * triage::scores::N_SAMPLE);
    (nl + k * size, size)
}

fn row_of<'a, 'r>(queue: &'a [QueueRow<'r>], id: &str) -> (usize, &'a QueueRow<'r>) {
    queue.iter().enumerate().find(|(_, r)| r.id == id).unwrap()
}

/// The report's classification `agreement` section.
fn agreement_of(out: &Path) -> Agreement {
    match read_report_typed(out).agreement {
        Some(AgreementSection::Classification(a)) => a,
        other => panic!("no classification agreement: {other:?}"),
    }
}

#[test]
fn damaged_cache_entries_are_rescored_said_and_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let d = t.join("ds");
    synth_classification(&d, 2000, 10);
    let full = t.join("full");
    ok(&det_args(&d, &full, &[]));
    let queue = read_queue_rows(&full);
    // The item ranked last: a zeroed normalised margin (its priority is
    // 1 − that) would put it first, with priority 1.
    let last = queue.last().unwrap().id.to_string();
    let k: usize = last
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap();
    let cache = t.join("cache");
    let cs = cache.to_str().unwrap();
    ok(&det_args(&d, &t.join("cold"), &["--cache", cs]));
    let file = cache.join("scores-all.cache");
    let clean = std::fs::read(&file).unwrap();
    let (at, size) = cache_entry(&clean, k);

    // One float (its normalised margin) zeroed.
    let nm = 24 + 4 * triage::scores::Score::NormalizedMargin as usize;
    let mut b = clean.clone();
    b[at + nm..at + nm + 4].fill(0);
    std::fs::write(&file, &b).unwrap();
    let warm = t.join("warm");
    let err = ok(&det_args(&d, &warm, &["--cache", cs]));
    let got = read_queue_rows(&warm);
    let (want_rank, want_row) = row_of(&queue, &last);
    let (rank, row) = row_of(&got, &last);
    assert_eq!(want_rank, 1999);
    assert_eq!(
        (rank, row.priority),
        (want_rank, want_row.priority),
        "item {last}: rank and priority"
    );
    assert_eq!(row, want_row);
    same_files(
        &full,
        &warm,
        &["queue.jsonl", "queue.csv"],
        "a zeroed float",
    );
    assert!(err.contains("1 damaged entries"), "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        clean,
        "the cache holds the rescored entry, not the damaged one"
    );

    // Its predicted class set to 10⁶ of 10, with a valid checksum.
    let mut b = clean.clone();
    b[at + 16..at + 20].copy_from_slice(&1_000_000u32.to_le_bytes());
    let sum = xxh3_64(&b[at..at + size - 8]);
    b[at + size - 8..at + size].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(&file, &b).unwrap();
    let out = t.join("forged");
    let err = ok(&det_args(&d, &out, &["--cache", cs]));
    assert!(err.contains("1 damaged entries"), "{err}");
    same_files(&full, &out, &["queue.jsonl", "queue.csv"], "a forged class");
    assert_eq!(std::fs::read(&file).unwrap(), clean);

    // A header claiming 2⁶⁴ − 1 entries: the file is not used, nothing is
    // sized by it.
    let nl = clean.iter().position(|&b| b == b'\n').unwrap();
    let header = std::str::from_utf8(&clean[..nl]).unwrap();
    let (sealed, json) = unseal(header);
    let huge = set_number(json, "\"entries\":", "18446744073709551615");
    let mut b = reseal(&huge, sealed).into_bytes();
    b.extend_from_slice(&clean[nl..]);
    std::fs::write(&file, &b).unwrap();
    let out = t.join("huge");
    let err = ok(&det_args(&d, &out, &["--cache", cs]));
    assert!(err.contains("not used"), "{err}");
    same_files(&full, &out, &["queue.jsonl", "queue.csv"], "a huge entries");
}

#[test]
fn forged_segmentation_cache_entries_are_rescored() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let demo = Path::new("datasets/demo");
    let full = t.join("full");
    ok(&det_args(demo, &full, &[]));
    let cache = t.join("cache");
    let cs = cache.to_str().unwrap();
    ok(&det_args(demo, &t.join("cold"), &["--cache", cs]));
    let file = cache.join("scores-all.cache");
    let clean = std::fs::read(&file).unwrap();
    // Every entry with annotated classes claims class 10⁶ of 5 first
    // (valid checksums).
    let text = String::from_utf8(clean.clone()).unwrap();
    let key = "\"label_set\":[";
    let forged: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            l.find(key)
                .is_some_and(|at| l.as_bytes()[at + key.len()].is_ascii_digit())
        })
        .map(|(n, _)| n)
        .collect();
    assert!(forged.len() > 10, "{}", forged.len());
    for &n in &forged {
        forge_line(&file, n, |j| set_number(j, key, "1000000"));
    }
    let out = t.join("forged");
    let err = ok(&det_args(demo, &out, &["--cache", cs]));
    same_files(
        &full,
        &out,
        &["queue.jsonl", "queue.csv", "clusters.jsonl"],
        "forged segmentation entries",
    );
    let said = format!("{} damaged entries", forged.len());
    assert!(err.contains(&said), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), clean);
}

// ---------------------------------------------------------------- annotators

/// A classification dataset of `items` items with `annotators` annotators
/// labelling every item (labels drawn from a fixed generator).
fn crowd(d: &Path, items: usize, annotators: usize, classes: usize) {
    synth_classification(d, items, classes);
    let ids: Vec<String> = read_queue_rows(&{
        let o = d.join("plain");
        run_ok(d, &o, &["--backend", "cpu"]);
        o
    })
    .into_iter()
    .map(|r| r.id.into_owned())
    .collect();
    let mut st = 3u64;
    let mut csv = String::from("id,annotator,label\n");
    for id in &ids {
        for a in 0..annotators {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            csv.push_str(&format!(
                "{id},annotator-{a:04},{}\n",
                (st >> 33) % classes as u64
            ));
        }
    }
    std::fs::write(d.join("annotations.csv"), csv).unwrap();
    let mut toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    toml.push_str("annotations = \"annotations.csv\"\n");
    std::fs::write(d.join("triage.toml"), toml).unwrap();
}

#[cfg(unix)]
#[test]
fn thousands_of_annotators_per_item_stay_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    crowd(&d, 20, 4000, 3);
    assert!(std::fs::metadata(d.join("annotations.csv")).unwrap().len() < 2 << 20);
    let out = tmp.path().join("out");
    let a = det_args(&d, &out, &[]);
    let m = triage_measured(&a, None, std::time::Duration::from_secs(120));
    assert!(!m.timed_out, "still running after 120 s");
    assert_eq!(
        m.output.status.code(),
        Some(0),
        "{}",
        describe(&a, &m.output)
    );
    // Bounds: 400 MB of memory, 4 MB of report (its 4000 annotator rows).
    assert!(m.peak_rss < 400 << 20, "peak RSS {} MB", m.peak_rss >> 20);
    let size = std::fs::metadata(out.join("report.json")).unwrap().len();
    assert!(size < 4 << 20, "report.json is {size} bytes");
    let ag = agreement_of(&out);
    assert_eq!(ag.annotators, 4000);
    assert_eq!(ag.per_annotator.len(), 4000);
    // Every item has 4000 annotators: over the 100 of the pair tables.
    assert_eq!(ag.cohen_items_left_out, 20);
    assert_eq!(ag.cohen_kappa.len(), 0);
}

#[test]
fn the_listed_cohen_pairs_are_bounded_by_the_documented_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    // 60 annotators on each of 40 items: 1770 pairs sharing 40 items each.
    crowd(&d, 40, 60, 4);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--backend", "cpu"]);
    let ag = agreement_of(&out);
    let pairs = &ag.cohen_kappa;
    assert_eq!(pairs.len(), 1000);
    assert_eq!(ag.cohen_pairs, 1770);
    // All tie on their 40 items: the first 1000 pairs in annotator order.
    let mut want = Vec::new();
    for a in 0..60 {
        for b in a + 1..60 {
            want.push((format!("annotator-{a:04}"), format!("annotator-{b:04}")));
        }
    }
    for (p, (a, b)) in pairs.iter().zip(&want) {
        assert_eq!((p.a.as_str(), p.b.as_str()), (a.as_str(), b.as_str()));
        assert_eq!(p.items, 40);
    }
}

#[test]
fn too_many_annotator_masks_on_one_item_are_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    copy_dir(Path::new("datasets/demo"), &d);
    // 33 annotators draw item00003 (all with its own mask): 528 pairs.
    let mut csv = String::from("id,annotator,mask\n");
    for a in 0..33 {
        csv.push_str(&format!("item00003,ann{a},masks/item00003.png\n"));
    }
    csv.push_str("item00004,ann0,masks/item00004.png\nitem00004,ann1,masks/item00004.png\n");
    std::fs::write(d.join("annotations.csv"), csv).unwrap();
    let mut toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    toml.push_str("annotations = \"annotations.csv\"\n");
    std::fs::write(d.join("triage.toml"), toml).unwrap();
    let out = tmp.path().join("out");
    let err = refused(&det_args(&d, &out, &[]));
    assert!(
        err.contains("annotations.csv")
            && err.contains("item00003")
            && err.contains("annotator")
            && err.contains("32"),
        "{err}"
    );
}
