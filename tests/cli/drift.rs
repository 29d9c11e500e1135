//! Drift over a labelling campaign, end to end: the time columns of
//! items.csv, refused when half filled or unparseable (exit 2, naming the
//! file, the item and the field); a planted campaign whose annotator's
//! error rate rises is alarmed at that batch or the next and names that
//! annotator only; the `drift` check marks that annotator's queue rows.

use std::path::Path;

use crate::common::*;

const CLASSES: usize = 5;

/// A classification campaign: `annotators` × `batches` × `per_cell` items,
/// batch `b` annotated on 2026-11-01 + b (column `annotated_at`, with a time
/// of day). The model is right and confident (0.9) about every item's true
/// class; annotator `a` labels an item wrongly (another class, at random)
/// with probability `error(a, b)`.
fn campaign(
    dir: &Path,
    annotators: usize,
    batches: usize,
    per_cell: usize,
    seed: u64,
    error: impl Fn(usize, usize) -> f64,
) {
    let mut rng = Rng::new(seed);
    std::fs::write(
        dir.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"c0\", \"c1\", \"c2\", \"c3\", \"c4\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    let mut csv = String::from("id,label,annotator,annotated_at\n");
    let mut probs = Vec::new();
    let mut n = 0;
    for b in 0..batches {
        for a in 0..annotators {
            for i in 0..per_cell {
                let truth = (rng.next() * CLASSES as f64) as usize % CLASSES;
                let label = if rng.next() < error(a, b) {
                    (truth + 1 + (rng.next() * (CLASSES - 1) as f64) as usize % (CLASSES - 1))
                        % CLASSES
                } else {
                    truth
                };
                csv.push_str(&format!(
                    "i{n},{label},a{a},2026-11-{:02}T{:02}:{:02}:00Z\n",
                    1 + b,
                    8 + i % 10,
                    i % 60
                ));
                for k in 0..CLASSES {
                    probs.push(if k == truth { 0.9 } else { 0.025 });
                }
                n += 1;
            }
        }
    }
    std::fs::write(dir.join("items.csv"), csv).unwrap();
    write_f32(&dir.join("probs.npy"), &[n, CLASSES], &probs);
}

fn small(dir: &Path, items_csv: &str) {
    std::fs::write(
        dir.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"cat\", \"dog\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("items.csv"), items_csv).unwrap();
    write_f64(
        &dir.join("probs.npy"),
        &[3, 2],
        &[0.7, 0.3, 0.2, 0.8, 0.5, 0.5],
    );
}

#[test]
fn a_date_that_does_not_parse_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small(
        d,
        "id,label,annotated_at\na,cat,2026-11-01\nb,dog,2026-11-31\nc,cat,2026-11-02\n",
    );
    refused_run(
        d,
        &[],
        &[
            "items.csv: item \"b\": annotated_at: line 3: annotated_at \"2026-11-31\" is not an ISO date",
            "day 31 is not in 2026-11",
        ],
    );
    small(
        d,
        "id,label,annotated_at\na,cat,2026-11-01\nb,dog,01/11/2026\nc,cat,2026-11-02\n",
    );
    refused_run(d, &[], &["item \"b\": annotated_at: line 3", "YYYY-MM-DD"]);
}

#[test]
fn a_batch_column_in_only_some_rows_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small(d, "id,label,batch\na,cat,w1\nb,dog,\nc,cat,w2\n");
    refused_run(
        d,
        &[],
        &["items.csv: item \"b\": batch: line 3: empty batch, while line 2 has one"],
    );
    small(
        d,
        "id,label,annotated_at\na,cat,\nb,dog,2026-11-01\nc,cat,2026-11-02\n",
    );
    refused_run(
        d,
        &[],
        &["item \"a\": annotated_at: line 2: empty annotated_at, while line 3 has one"],
    );
    // A window without dates is a usage error.
    small(d, "id,label\na,cat\nb,dog\nc,cat\n");
    refused_run(
        d,
        &["--drift-window", "week"],
        &["--drift-window week", "annotated_at"],
    );
    refused_run(d, &["--drift-window", "month"], &["month"]);
}

#[test]
fn without_a_time_column_the_drift_check_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small(d, "id,label\na,cat\nb,dog\nc,cat\n");
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu"]);
    let r = read_report_typed(&out);
    assert!(r.drift.is_none());
    let c = &r.checks["drift"];
    assert_eq!(
        c.reason.as_deref(),
        Some("needs a time column (batch or annotated_at in items.csv)")
    );
}

/// Annotator a3's error rate rises from 3 % to 15 % on day 7 of 12 (6
/// annotators, 120 items each a day): its alarm falls on day 7 or 8, no
/// other annotator and no class alarms (the dataset's `quality` alarms,
/// which a3 causes, are allowed), and a3's flagged rows from then carry
/// the drift reason.
#[test]
fn a_planted_annotator_is_alarmed_and_its_rows_are_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let at = 6; // 2026-11-07
    campaign(d, 6, 12, 120, 31, |a, b| {
        if a == 3 && b >= at { 0.15 } else { 0.03 }
    });
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu", "--drift-window", "day"]);
    let r = read_report_typed(&out);
    let drift = r.drift.as_ref().expect("a drift section");
    assert_eq!(drift.grouping, "day");
    assert_eq!(drift.batches.len(), 12);
    assert_eq!(drift.batches[at].batch, "2026-11-07");
    assert_eq!(drift.annotators.len(), 6 * 12);
    assert!(
        drift.checks.iter().any(|c| c == "wrong_label"),
        "{:?}",
        drift.checks
    );
    let mine: Vec<_> = drift
        .alarms
        .iter()
        .filter(|a| a.annotator.as_deref() == Some("a3"))
        .collect();
    assert!(!mine.is_empty(), "{:?}", drift.alarms);
    let first = mine.iter().map(|a| a.batch.as_str()).min().unwrap();
    assert!(
        first == "2026-11-07" || first == "2026-11-08",
        "first a3 alarm on {first}: {mine:?}"
    );
    for a in &drift.alarms {
        use triage::schema::DriftKind;
        match a.kind {
            DriftKind::Annotator => assert_eq!(a.annotator.as_deref(), Some("a3"), "{a:?}"),
            DriftKind::Quality => assert!(a.batch.as_str() >= "2026-11-07", "{a:?}"),
            _ => panic!("a stray alarm: {a:?}"),
        }
    }
    // The JSON keys, exactly.
    let v = read_report(&out);
    let keys: Vec<&str> = v["drift"]["alarms"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "kind",
            "annotator",
            "class",
            "batch",
            "metric",
            "value",
            "baseline",
            "limit",
            "p"
        ]
    );
    // The check ran and marks a3's flagged rows of the alarmed days.
    let c = &r.checks["drift"];
    assert!(c.flagged.unwrap_or(0) > 0, "{c:?}");
    let rows = read_queue_rows(&out);
    let marked: Vec<_> = rows
        .iter()
        .filter(|row| row.reasons.iter().any(|s| s.starts_with("annotator ")))
        .collect();
    assert!(!marked.is_empty());
    for row in &marked {
        let reason = &row.reasons[0];
        assert!(
            reason.starts_with("annotator a3, batch 2026-11-")
                && (reason.contains("flagged by wrong_label against")
                    || reason.contains("flagged by wrong_label sustained above"))
                && reason.contains("p = "),
            "{reason}"
        );
    }
}

/// The chi-square test of every batch's class mix and the p-value of the
/// planted annotator's first p-chart alarm equal scipy's
/// (`py/drift_ref.py`: `chi2_contingency` without correction, one-sided
/// `fisher_exact`), from counts read back from the items and the report;
/// skipped without `TRIAGE_REF_PYTHON`, required with `TRIAGE_REQUIRE_REF=1`.
#[test]
fn chi_square_and_fisher_p_values_match_scipy() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the reference packages: set TRIAGE_REF_PYTHON");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let at = 6;
    campaign(d, 6, 12, 120, 31, |a, b| {
        if a == 3 && b >= at { 0.15 } else { 0.03 }
    });
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu"]);
    let r = read_report_typed(&out);
    let drift = r.drift.as_ref().unwrap();
    // Class counts per day, from items.csv.
    let text = std::fs::read_to_string(d.join("items.csv")).unwrap();
    let mut counts = vec![vec![0u64; CLASSES]; 12];
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let day: usize = f[3][8..10].parse().unwrap();
        counts[day - 1][f[1].parse::<usize>().unwrap()] += 1;
    }
    let mut chi_cases = Vec::new();
    let mut chi_batches = Vec::new();
    for (b, row) in drift.batches.iter().enumerate() {
        if row.chi_square.is_some() {
            let before: Vec<u64> = (0..CLASSES)
                .map(|k| counts[..b].iter().map(|c| c[k]).sum())
                .collect();
            chi_cases.push(serde_json::json!([counts[b], before]));
            chi_batches.push(b);
        }
    }
    assert!(chi_batches.len() >= 10, "{chi_batches:?}");
    // a3's first p-chart alarm: its cell's counts against its earlier cells.
    let alarm = drift
        .alarms
        .iter()
        .find(|a| a.annotator.as_deref() == Some("a3") && a.metric == "p_chart:wrong_label")
        .expect("a3's p-chart alarm");
    let (mut big_x, mut big_n) = (0u64, 0u64);
    let mut fisher = None;
    for c in drift.annotators.iter().filter(|c| c.annotator == "a3") {
        let x = (c.flagged["wrong_label"] * c.items as f64).round() as u64;
        if c.batch == alarm.batch {
            fisher = Some(serde_json::json!([x, c.items, big_x, big_n]));
            break;
        }
        big_x += x;
        big_n += c.items;
    }
    let case = serde_json::json!({"chi": chi_cases, "fisher": [fisher.unwrap()]});
    let mut child = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/py/drift_ref.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(case.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rel = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-300);
    for (i, &b) in chi_batches.iter().enumerate() {
        let row = &drift.batches[b];
        let w = &want["chi"][i];
        assert!(
            rel(row.chi_square.unwrap(), w[0].as_f64().unwrap()),
            "batch {b}: {row:?} vs {w}"
        );
        assert_eq!(row.chi_square_df, w[1].as_u64().map(|v| v as usize));
        assert!(
            rel(row.chi_square_p.unwrap(), w[2].as_f64().unwrap()),
            "batch {b}: {row:?} vs {w}"
        );
    }
    let p = want["fisher"][0].as_f64().unwrap();
    assert!(rel(alarm.p, p), "triage {} vs scipy {p}", alarm.p);
}

const SEG_CLASSES: usize = 3;
const SEG_SIDE: usize = 16;

/// A segmentation campaign: 3 annotators × 8 batches (`batch` w1..w8,
/// `annotated_at` 2026-11-01 + b) × 32 items of 16 × 16 pixels, classes
/// background, cell, vessel. Each item holds a cell square (side 5 to 7)
/// in its left half and a vessel square (side 4 to 6) in its right half;
/// the model predicts those squares (0.8 on the class, 0.1 on each other).
/// The annotation moves each edge of each square by −1, 0 or +1 pixel
/// (1/4, 1/2, 1/4); with `thicken = Some((a, b))`, annotator `a`'s cell
/// squares from batch `b` on are also dilated by 2 pixels into the
/// background.
fn seg_campaign(dir: &Path, seed: u64, thicken: Option<(usize, usize)>) {
    let mut rng = Rng::new(seed);
    let (h, w, c) = (SEG_SIDE, SEG_SIDE, SEG_CLASSES);
    std::fs::write(
        dir.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"background\", \"cell\", \"vessel\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    let mut csv = String::from("id,mask,annotator,batch,annotated_at\n");
    let mut probs: Vec<f32> = Vec::new();
    let mut n = 0;
    let pick = |lo: usize, hi: usize, r: &mut Rng| {
        lo + (r.next() * (hi - lo + 1) as f64) as usize % (hi - lo + 1)
    };
    for b in 0..8 {
        for a in 0..3 {
            for _ in 0..32 {
                // (class, x0, y0, side): the true squares.
                let s1 = pick(5, 7, &mut rng);
                let s2 = pick(4, 6, &mut rng);
                let squares = [
                    (
                        1u8,
                        pick(1, 8 - s1, &mut rng),
                        pick(1, h - 1 - s1, &mut rng),
                        s1,
                    ),
                    (
                        2u8,
                        pick(9, w - 1 - s2, &mut rng),
                        pick(1, h - 1 - s2, &mut rng),
                        s2,
                    ),
                ];
                let mut truth = vec![0u8; h * w];
                let mut mask = vec![0u8; h * w];
                for &(k, x0, y0, s) in &squares {
                    for y in y0..y0 + s {
                        for x in x0..x0 + s {
                            truth[y * w + x] = k;
                        }
                    }
                    let jitter = |r: &mut Rng| match r.next() {
                        u if u < 0.25 => -1i64,
                        u if u < 0.75 => 0,
                        _ => 1,
                    };
                    let (x0, y0, s) = (x0 as i64, y0 as i64, s as i64);
                    let (xa, xb) = (x0 + jitter(&mut rng), x0 + s + jitter(&mut rng));
                    let (ya, yb) = (y0 + jitter(&mut rng), y0 + s + jitter(&mut rng));
                    for y in ya.max(0)..yb.min(h as i64) {
                        for x in xa.max(0)..xb.min(w as i64) {
                            mask[y as usize * w + x as usize] = k;
                        }
                    }
                }
                if thicken.is_some_and(|(ta, tb)| a == ta && b >= tb) {
                    for _ in 0..2 {
                        let before = mask.clone();
                        for y in 0..h {
                            for x in 0..w {
                                if before[y * w + x] != 0 {
                                    continue;
                                }
                                let near = [(0i64, -1i64), (0, 1), (-1, 0), (1, 0)].iter().any(
                                    |&(dy, dx)| {
                                        let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                                        (0..h as i64).contains(&yy)
                                            && (0..w as i64).contains(&xx)
                                            && before[yy as usize * w + xx as usize] == 1
                                    },
                                );
                                if near {
                                    mask[y * w + x] = 1;
                                }
                            }
                        }
                    }
                }
                let rel = format!("masks/s{n}.png");
                write_mask(&dir.join(&rel), h, w, &mask);
                csv.push_str(&format!(
                    "s{n},{rel},a{a},w{},2026-11-{:02}\n",
                    b + 1,
                    b + 1
                ));
                for k in 0..c {
                    for &t in &truth {
                        probs.push(if t as usize == k { 0.8 } else { 0.1 });
                    }
                }
                n += 1;
            }
        }
    }
    std::fs::write(dir.join("items.csv"), csv).unwrap();
    write_f32(&dir.join("probs.npy"), &[n, c, h, w], &probs);
}

/// Annotator a1's cell masks are dilated by 2 pixels from batch w5: an
/// `area_bias` alarm names a1 and class cell at w5 or w6. Allowed beside
/// it, all a1's doing: a1's background area bias (the dilation takes
/// background pixels), a1's `annotator` alarms (its mIoU, its flagged
/// shares), and the dataset's `quality` alarms. No other annotator, no
/// vessel alarm. The report's batch and cell rows carry the segmentation
/// figures, and the page lists the alarm.
#[test]
fn a_thickening_segmentation_annotator_is_alarmed_on_its_class() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    seg_campaign(d, 77, Some((1, 4)));
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu"]);
    let r = read_report_typed(&out);
    let drift = r.drift.as_ref().expect("a drift section");
    assert_eq!(drift.batches.len(), 8);
    use triage::schema::DriftKind;
    let first = drift
        .alarms
        .iter()
        .filter(|a| {
            a.kind == DriftKind::AreaBias
                && a.annotator.as_deref() == Some("a1")
                && a.class.as_deref() == Some("cell")
        })
        .map(|a| a.batch.as_str())
        .min();
    assert!(
        matches!(first, Some("w5" | "w6")),
        "first cell alarm {first:?}: {:?}",
        drift.alarms
    );
    for a in &drift.alarms {
        match a.kind {
            DriftKind::AreaBias => {
                assert_eq!(a.annotator.as_deref(), Some("a1"), "{a:?}");
                assert!(
                    matches!(a.class.as_deref(), Some("cell" | "background")),
                    "{a:?}"
                );
                assert_eq!(a.metric, "mean:area_bias");
                assert!(a.batch.as_str() >= "w5", "{a:?}");
            }
            DriftKind::Annotator => assert_eq!(a.annotator.as_deref(), Some("a1"), "{a:?}"),
            DriftKind::Quality => assert!(a.batch.as_str() >= "w5", "{a:?}"),
            DriftKind::ClassShare => panic!("a stray alarm: {a:?}"),
        }
    }
    // The cell alarm's value: a1's mean bias on cell in that batch.
    let alarm = drift
        .alarms
        .iter()
        .find(|a| a.kind == DriftKind::AreaBias && a.class.as_deref() == Some("cell"))
        .unwrap();
    let cell = drift
        .annotators
        .iter()
        .find(|c| c.annotator == "a1" && c.batch == alarm.batch)
        .unwrap();
    let seg = cell.segmentation.as_ref().expect("segmentation figures");
    assert_eq!(seg.area_bias.len(), SEG_CLASSES);
    assert!((seg.area_bias[1].unwrap() - alarm.value).abs() < 1e-12);
    assert!(
        alarm.value > 0.3 && alarm.baseline.unwrap().abs() < 0.1,
        "{alarm:?}"
    );
    assert!(alarm.value > alarm.limit.unwrap());
    // Another annotator's cell in that batch: a bias near 0, mIoU higher.
    let other = drift
        .annotators
        .iter()
        .find(|c| c.annotator == "a0" && c.batch == alarm.batch)
        .and_then(|c| c.segmentation.as_ref())
        .unwrap();
    assert!(other.area_bias[1].unwrap().abs() < 0.1, "{other:?}");
    assert!(other.mean_miou.unwrap() > seg.mean_miou.unwrap());
    assert!(
        drift.batches[0]
            .segmentation
            .as_ref()
            .unwrap()
            .mean_boundary_iou
            .is_some()
    );
    // The page lists it.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("area_bias") && page.contains("mean:area_bias"));
}

/// The same campaign without the dilation: no alarm at all.
#[test]
fn a_segmentation_campaign_without_drift_raises_no_alarm() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    seg_campaign(d, 77, None);
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu"]);
    let r = read_report_typed(&out);
    let drift = r.drift.as_ref().expect("a drift section");
    assert!(drift.tests > 100, "{}", drift.tests);
    assert!(drift.alarms.is_empty(), "{:?}", drift.alarms);
    let seg = drift.annotators[0].segmentation.as_ref().unwrap();
    assert!(seg.area_bias.iter().all(Option::is_some), "{seg:?}");
}

/// `small`, with annotations.csv (`annotations` its text) and items.csv
/// in batch w1.
fn small_annotated(dir: &Path, annotations: &str) {
    small(
        dir,
        "id,label,batch,annotated_at\na,cat,w1,2026-11-02\nb,dog,w1,2026-11-02\nc,cat,w1,2026-11-02\n",
    );
    let mut toml = std::fs::read_to_string(dir.join("triage.toml")).unwrap();
    toml.push_str("annotations = \"annotations.csv\"\n");
    std::fs::write(dir.join("triage.toml"), toml).unwrap();
    std::fs::write(dir.join("annotations.csv"), annotations).unwrap();
}

/// annotations.csv's time columns by items.csv's rules: a batch in only
/// some rows, or a date that does not parse, exits 2 naming the file, the
/// line, the item and the field; a batch column while the items are
/// grouped by date windows is refused too.
#[test]
fn bad_time_columns_in_annotations_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small_annotated(
        d,
        "id,annotator,label,batch\na,x,cat,w1\nb,x,dog,\nc,x,cat,w2\n",
    );
    refused_run(
        d,
        &[],
        &["annotations.csv: item \"b\": batch: line 3: empty batch, while line 2 has one"],
    );
    small_annotated(
        d,
        "id,annotator,label,annotated_at\na,x,cat,2026-11-01\nb,y,dog,2026-02-30T10:00\n",
    );
    refused_run(
        d,
        &[],
        &[
            "annotations.csv: item \"b\": annotated_at: line 3: annotated_at \"2026-02-30T10:00\" is not an ISO date",
            "day 30 is not in 2026-02",
        ],
    );
    // Items grouped by day, annotations by batch name.
    small(
        d,
        "id,label,annotated_at\na,cat,2026-11-01\nb,dog,2026-11-01\nc,cat,2026-11-02\n",
    );
    let mut toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    toml.push_str("annotations = \"annotations.csv\"\n");
    std::fs::write(d.join("triage.toml"), toml).unwrap();
    std::fs::write(
        d.join("annotations.csv"),
        "id,annotator,label,batch\na,x,cat,w1\n",
    )
    .unwrap();
    refused_run(
        d,
        &[],
        &[
            "annotations.csv: batch: a batch column, but the items are grouped by annotated_at (day windows",
        ],
    );
}

/// An annotation row's own batch places it: x's label of item b, in
/// batch w0 (dated before the items' w1, so first; its row comes after
/// z's and y's, so the rows' times are sorted with them), is counted in
/// x × w0;
/// its other rows in w1 (their items'). Labels (x, y, z): a (cat, cat,
/// cat), b (dog, cat, cat), c (cat, dog, dog): x's leave-one-out
/// consensus is cat, cat, dog, so (x, w1) agrees 1 of 2 (a yes, c no),
/// (x, w0) 0 of 1; y's and z's consensus on b and c ties (left out).
#[test]
fn an_annotation_row_is_placed_in_its_own_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small_annotated(
        d,
        "id,annotator,label,batch,annotated_at\n\
         a,x,cat,w1,2026-11-02\na,y,cat,w1,2026-11-02\na,z,cat,w1,2026-11-03\n\
         b,z,cat,w1,2026-11-02\nb,y,cat,w1,2026-11-02\nb,x,dog,w0,2026-10-30T09:00Z\n\
         c,x,cat,w1,2026-11-02\nc,y,dog,w1,2026-11-02\nc,z,dog,w1,2026-11-02\n",
    );
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu"]);
    let r = read_report_typed(&out);
    let drift = r.drift.as_ref().expect("a drift section");
    let names: Vec<&str> = drift.batches.iter().map(|b| b.batch.as_str()).collect();
    assert_eq!(names, ["w0", "w1"]);
    assert_eq!(drift.batches[0].first_date.as_deref(), Some("2026-10-30"));
    assert_eq!((drift.batches[0].items, drift.batches[1].items), (0, 3));
    let cell = |who: &str, b: &str| {
        drift
            .annotators
            .iter()
            .find(|c| c.annotator == who && c.batch == b)
            .map(|c| (c.annotations, c.agreement_with_consensus))
    };
    assert_eq!(cell("x", "w0"), Some((1, Some(0.0))));
    assert_eq!(cell("x", "w1"), Some((2, Some(0.5))));
    assert_eq!(cell("y", "w1"), Some((1, Some(1.0))));
    assert_eq!(cell("y", "w0"), None);
    assert_eq!(
        (
            drift.batches[1].annotations,
            drift.batches[1].agreement_with_consensus
        ),
        (4, Some(0.75))
    );
}
