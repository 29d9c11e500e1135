//! Several annotators per item (`[inputs] annotations`): the agreement
//! figures against the published packages (krippendorff, statsmodels,
//! scikit-learn, run by `py/agreement_ref.py` with `TRIAGE_REF_PYTHON`;
//! required when `TRIAGE_REQUIRE_REF=1`, as `.ci/run` sets), the planted
//! random annotator found, the priority raise as documented, and bad
//! annotation files refused.

use std::collections::HashMap;
use std::path::Path;

use crate::common::*;
use triage::schema::{Agreement, AgreementSection, Report, SegAgreement};

const N: usize = 600;
const C: usize = 6;
const ANNOTATORS: [&str; 6] = ["ann-a", "ann-b", "ann-c", "ann-d", "ann-e", "rand"];
/// Every annotator of this item (it has 6) gives the same label, which is
/// not the official one.
const PLANTED: usize = 11;

/// A classification dataset, and its official labels and predictions by id.
fn dataset(d: &Path) -> (Vec<String>, HashMap<String, (String, String)>) {
    synth_classification(d, N, C);
    let out = d.join("plain-out");
    run_ok(d, &out, &["--deterministic"]);
    let mut facts = HashMap::new();
    for row in read_queue_rows(&out) {
        let label = row.label.unwrap().into_owned();
        let pred = row.predicted.unwrap().into_owned();
        facts.insert(row.id.into_owned(), (label, pred));
    }
    let ids: Vec<String> = (0..N).map(|i| format!("{i}")).collect();
    assert!(ids.iter().all(|i| facts.contains_key(i)), "numbered ids");
    (ids, facts)
}

/// annotations.csv: item i has 1 + i % 6 annotators (a subset from a random start);
/// five annotators are right 96 % of the time, `rand` labels at random;
/// nobody uses class 5 (the good annotators call it 4).
fn write_annotations(d: &Path, ids: &[String], facts: &HashMap<String, (String, String)>) {
    let mut st = 7u64;
    let mut next = |k: u64| {
        st = st
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (st >> 33) % k
    };
    let mut csv = String::from("id,annotator,label\n");
    for (i, id) in ids.iter().enumerate() {
        let official: u32 = facts[id].0.parse().unwrap();
        let (m, start) = (1 + i % 6, next(6) as usize);
        for j in 0..m {
            let a = ANNOTATORS[(start + j) % 6];
            let label = if i == PLANTED {
                (official + 1) % 5
            } else if a == "rand" || next(100) >= 96 {
                next(5) as u32
            } else {
                official.min(4)
            };
            csv.push_str(&format!("{id},{a},{label}\n"));
        }
    }
    std::fs::write(d.join("annotations.csv"), csv).unwrap();
    let mut toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    toml.push_str("annotations = \"annotations.csv\"\n");
    std::fs::write(d.join("triage.toml"), toml).unwrap();
}

/// The reference packages' figures (`py/agreement_ref.py`) for dataset
/// `d`'s annotations, given the official labels and predictions; `None`
/// (the test skips them) without `TRIAGE_REF_PYTHON`, a failure when
/// `TRIAGE_REQUIRE_REF=1`.
fn reference(d: &Path, official: serde_json::Value, classes: usize) -> Option<serde_json::Value> {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the reference packages: set TRIAGE_REF_PYTHON");
        return None;
    };
    let off = d.join("official.json");
    std::fs::write(&off, official.to_string()).unwrap();
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/py/agreement_ref.py"))
        .arg(d.join("annotations.csv"))
        .arg(&off)
        .arg(classes.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

/// Alpha, Fleiss' kappa (and its items) and the per-class alpha of `ag`
/// equal the reference's `want`.
fn same_dataset_figures(ag: &Agreement, want: &serde_json::Value, classes: usize) {
    close(ag.krippendorff_alpha, &want["alpha"], "alpha");
    close(ag.fleiss_kappa, &want["fleiss"], "fleiss");
    assert_eq!(ag.fleiss_items, want["fleiss_items"]);
    assert_eq!(ag.fleiss_m, want["fleiss_m"]);
    for k in 0..classes {
        close(
            ag.per_class[k].alpha,
            &want["per_class"][k],
            &format!("class {k} alpha"),
        );
    }
}

/// Triage's figure `a` (`None`: `null`) equals the reference's `b`.
fn close(a: Option<f64>, b: &serde_json::Value, what: &str) {
    match (a, b.as_f64()) {
        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{what}: triage {x} vs reference {y}"),
        _ => assert!(
            a.is_none() && b.is_null(),
            "{what}: triage {a:?} vs reference {b}"
        ),
    }
}

/// The report's classification `agreement` section.
fn cls_agreement(r: &Report) -> &Agreement {
    match &r.agreement {
        Some(AgreementSection::Classification(a)) => a,
        other => panic!("no classification agreement: {other:?}"),
    }
}

/// The report's segmentation `agreement` section.
fn seg_agreement(r: &Report) -> &SegAgreement {
    match &r.agreement {
        Some(AgreementSection::Segmentation(a)) => a,
        other => panic!("no segmentation agreement: {other:?}"),
    }
}

#[test]
fn agreement_matches_the_reference_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let (ids, facts) = dataset(&d);
    write_annotations(&d, &ids, &facts);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic"]);
    let r = read_report_typed(&out);
    let ag = cls_agreement(&r);
    assert_eq!(ag.annotators, 6);
    assert_eq!(ag.rows, (0..N).map(|i| 1 + i % 6).sum::<usize>());
    assert_eq!(
        ag.below_threshold,
        ["rand"],
        "the planted random annotator, and only it, is below kappa 0.8"
    );
    assert!(ag.per_class[5].alpha.is_none(), "class 5 is never used");

    let official = serde_json::json!({
        "ids": ids,
        "labels": ids.iter().map(|i| facts[i].0.parse::<u32>().unwrap()).collect::<Vec<_>>(),
        "pred": ids.iter().map(|i| facts[i].1.parse::<u32>().unwrap()).collect::<Vec<_>>(),
    });
    let Some(want) = reference(&d, official, C) else {
        return;
    };
    same_dataset_figures(ag, &want, C);
    let pairs = &ag.cohen_kappa;
    assert_eq!(
        pairs.len(),
        want["cohen"].as_object().unwrap().len(),
        "the same pairs"
    );
    for p in pairs {
        let key = format!("{}|{}", p.a, p.b);
        let w = &want["cohen"][&key];
        assert_eq!(p.items, w[0], "{key}");
        close(p.kappa, &w[1], &format!("cohen {key}"));
    }
    for row in &ag.per_annotator {
        let a = row.annotator.as_str();
        let w = &want["per_annotator"][a];
        assert_eq!(row.items, w["items"], "{a}");
        for (f, v) in [
            ("agreement_with_consensus", row.agreement_with_consensus),
            ("kappa_with_consensus", row.kappa_with_consensus),
            ("agreement_with_model", row.agreement_with_model),
            ("agreement_with_official", row.agreement_with_official),
        ] {
            close(v, &w[f], &format!("{a} {f}"));
        }
    }
}

/// Every item's priority is raised as `agreement.priority` says, from its
/// priority without annotations; its `annotator_agreement` is the share of
/// agreeing pairs (null below 2 annotations).
#[test]
fn disagreement_raises_the_priority_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let (ids, facts) = dataset(&d);
    let before: HashMap<String, f64> = read_queue_rows(&d.join("plain-out"))
        .into_iter()
        .map(|r| (r.id.into_owned(), r.priority.unwrap()))
        .collect();
    write_annotations(&d, &ids, &facts);
    let text = std::fs::read_to_string(d.join("annotations.csv")).unwrap();
    let mut labels: HashMap<String, Vec<u32>> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        labels
            .entry(f[0].into())
            .or_default()
            .push(f[2].parse().unwrap());
    }
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic"]);
    let mut raised = 0;
    let mut expected_flagged = 0usize;
    for row in read_queue_rows(&out) {
        let id = row.id.as_ref();
        let v = &labels[id];
        let p = before[id];
        let got = row.priority.unwrap();
        let share = row.scores.get("annotator_agreement");
        if v.len() < 2 {
            assert!(share.is_none(), "{id}: one annotation, no agreement");
            assert_eq!(got, p, "{id}: not raised");
            continue;
        }
        let pairs = v.len() * (v.len() - 1) / 2;
        let agree = (0..v.len())
            .flat_map(|i| (i + 1..v.len()).map(move |j| (i, j)))
            .filter(|&(i, j)| v[i] == v[j])
            .count();
        let a = agree as f64 / pairs as f64;
        assert!((share.unwrap() - a).abs() < 1e-12, "{id}");
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &x in v {
            *counts.entry(x).or_default() += 1;
        }
        let top = *counts.values().max().unwrap();
        let leaders: Vec<u32> = counts
            .iter()
            .filter(|e| *e.1 == top)
            .map(|e| *e.0)
            .collect();
        let official: u32 = facts[id].0.parse().unwrap();
        let contradicted = leaders.len() == 1 && leaders[0] != official;
        let dis = if contradicted { 1.0 } else { 1.0 - a };
        let want = p + 0.5 * dis * (1.0 - p);
        assert!((got - want).abs() < 1e-12, "{id}: {got} vs {want}");
        raised += (got > p) as usize;
        // The low_agreement check: flagged above 0.5, with a reason first.
        let reason = row.reasons.first().map_or("", |r| r.as_ref());
        let flagged = dis > 0.5;
        expected_flagged += flagged as usize;
        assert_eq!(
            reason.starts_with("annotators disagree"),
            flagged,
            "{id}: {reason}"
        );
        let consensus = (leaders.len() == 1).then(|| leaders[0].to_string());
        assert_eq!(row.consensus().map(String::from), consensus, "{id}");
        if id == PLANTED.to_string() {
            assert!(contradicted && flagged, "the planted item");
            assert!(
                reason.contains("differs from the official label"),
                "{reason}"
            );
            for a in ANNOTATORS {
                assert!(reason.contains(a), "{a} named in {reason}");
            }
        }
    }
    assert!(raised > 100, "disagreement raised {raised} items");
    let r = read_report_typed(&out);
    assert_eq!(r.views["low_agreement"].flagged, expected_flagged);
    // (`checks` is read as JSON: its summary is typed elsewhere.)
    assert_eq!(
        read_report(&out)["checks"]["low_agreement"]["status"],
        "ran"
    );
    assert!(expected_flagged > 50, "{expected_flagged} flagged");
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains(r#"rand <span class="tag">below threshold</span>"#),
        "rand marked"
    );
    assert!(
        !page.contains(r#"ann-a <span class="tag">below"#),
        "ann-a not marked"
    );
    assert!(page.contains("One-vs-rest Krippendorff"), "per-class bars");
    let csv = std::fs::read_to_string(out.join("queue.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.contains(",consensus_label,"), "{header}");
    assert!(header.contains(",annotator_agreement,"), "{header}");
}

#[test]
fn bad_annotation_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let (ids, facts) = dataset(&d);
    write_annotations(&d, &ids, &facts);
    let good = std::fs::read_to_string(d.join("annotations.csv")).unwrap();
    let first = format!("{}\n", good.lines().nth(1).unwrap());
    let first_id = first.split(',').next().unwrap().to_string();
    let twice = format!("item \"{first_id}\": annotator:");
    for (extra, needles) in [
        ("nope,ann-a,1\n", vec!["not an item", "item \"nope\": id:"]),
        ("5, ,1\n", vec!["empty annotator", "item \"5\": annotator:"]),
        (
            first.as_str(),
            vec!["labels this item twice", twice.as_str()],
        ),
        ("7,ann-z,9\n", vec!["label \"9\"", "item \"7\": label:"]),
    ] {
        std::fs::write(d.join("annotations.csv"), format!("{good}{extra}")).unwrap();
        let out = tmp.path().join("bad-out");
        let a = ["run", d.to_str().unwrap(), "--out", out.to_str().unwrap()];
        let o = triage(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}", describe(&a, &o));
        assert!(err.contains("annotations.csv"), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
        assert!(!out.join("report.json").exists(), "nothing written");
    }
}

fn read_png(p: &Path) -> Vec<u16> {
    image::open(p)
        .unwrap()
        .to_luma8()
        .into_raw()
        .into_iter()
        .map(u16::from)
        .collect()
}

fn write_png(p: &Path, v: &[u16], w: usize) {
    let bytes: Vec<u8> = v.iter().map(|&x| x as u8).collect();
    write_mask(p, v.len() / w, w, &bytes);
}

/// Per-class `(inter, union, |a|+|b|)` of two maps, skipping pixels either
/// ignores (255): the definition, loop by loop.
fn pair_sums(a: &[u16], b: &[u16], c: usize) -> Vec<(u64, u64, u64)> {
    let mut s = vec![(0u64, 0u64, 0u64); c];
    for (&x, &y) in a.iter().zip(b) {
        if x == 255 || y == 255 {
            continue;
        }
        for (k, e) in s.iter_mut().enumerate() {
            let (ix, iy) = (x as usize == k, y as usize == k);
            e.0 += (ix && iy) as u64;
            e.1 += (ix || iy) as u64;
            e.2 += ix as u64 + iy as u64;
        }
    }
    s
}

/// Segmentation: every pair of an item's annotators compared, the counts
/// pooled per class and per annotator, checked loop by loop from the PNGs;
/// the planted noisy annotator is the one below 0.75, the one who draws
/// every region a pixel thicker has the largest area bias.
/// The demo with four annotators: `a1` (the official masks), `a2` (the
/// top 8 rows wiped to background), `thick` (every region grown by a pixel
/// into the background; not on item 31, which only `a1` annotates) and
/// `noisy` (random classes, on every 8th item). Returns each map.
fn seg_annotated(d: &Path) -> HashMap<(usize, &'static str), Vec<u16>> {
    copy_dir(Path::new("datasets/demo"), d);
    let (h, w, c) = (128usize, 128usize, 5usize);
    let mut csv = String::from("id,annotator,mask\n");
    let mut maps: HashMap<(usize, &'static str), Vec<u16>> = HashMap::new();
    let mut st = 3u64;
    for i in 0..32 {
        let id = format!("item{i:05}");
        let official = read_png(&d.join(format!("masks/{id}.png")));
        let mut a2 = official.clone();
        a2[..8 * w].fill(0);
        let mut thick = official.clone();
        for y in 0..h {
            for x in 0..w {
                if official[y * w + x] != 0 {
                    continue;
                }
                let mut best = 0u16;
                for (dy, dx) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)] {
                    let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                    if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                        let v = official[yy as usize * w + xx as usize];
                        if v != 255 {
                            best = best.max(v);
                        }
                    }
                }
                thick[y * w + x] = best;
            }
        }
        let noisy: Vec<u16> = (0..h * w)
            .map(|p| {
                st = st
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407)
                    ^ (p as u64 / 8);
                ((st >> 40) % c as u64) as u16
            })
            .collect();
        let mut who: Vec<(&str, Vec<u16>)> = vec![("a1", official)];
        if i != 31 {
            who.push(("a2", a2));
            who.push(("thick", thick));
        }
        if i % 8 == 0 {
            who.push(("noisy", noisy));
        }
        for (name, m) in who {
            let rel = format!("ann/{name}/{id}.png");
            write_png(&d.join(&rel), &m, w);
            csv.push_str(&format!("{id},{name},{rel}\n"));
            maps.insert((i, name), m);
        }
    }
    std::fs::write(d.join("annotations.csv"), &csv).unwrap();
    let mut toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    toml.push_str("annotations = \"annotations.csv\"\n");
    std::fs::write(d.join("triage.toml"), toml).unwrap();

    maps
}

#[test]
fn segmentation_agreement_pools_pairs_and_finds_the_planted_annotators() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    let maps = seg_annotated(&d);
    let c = 5usize;
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic", "--backend", "cpu"]);
    let r = read_report_typed(&out);
    let ag = seg_agreement(&r);
    assert_eq!(ag.below_threshold, ["noisy"]);

    // Expected, pooled loop by loop.
    let names = ["a1", "a2", "thick", "noisy"];
    let mut total = vec![(0u64, 0u64, 0u64); c];
    let mut by: HashMap<&str, Vec<(u64, u64, u64)>> = HashMap::new();
    let mut item_mean: HashMap<String, f64> = HashMap::new();
    let mut pairs = 0;
    for i in 0..32 {
        let here: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| maps.contains_key(&(i, n)))
            .collect();
        let mut mious = Vec::new();
        for x in 0..here.len() {
            for y in x + 1..here.len() {
                let s = pair_sums(&maps[&(i, here[x])], &maps[&(i, here[y])], c);
                pairs += 1;
                for k in 0..c {
                    for (acc, add) in [
                        (&mut total[k], s[k]),
                        (
                            &mut by.entry(here[x]).or_insert_with(|| vec![(0, 0, 0); c])[k],
                            s[k],
                        ),
                    ] {
                        acc.0 += add.0;
                        acc.1 += add.1;
                        acc.2 += add.2;
                    }
                    let e = &mut by.entry(here[y]).or_insert_with(|| vec![(0, 0, 0); c])[k];
                    e.0 += s[k].0;
                    e.1 += s[k].1;
                    e.2 += s[k].2;
                }
                let defined: Vec<f64> = s
                    .iter()
                    .filter(|e| e.1 > 0)
                    .map(|e| e.0 as f64 / e.1 as f64)
                    .collect();
                mious.push(defined.iter().sum::<f64>() / defined.len() as f64);
            }
        }
        if !mious.is_empty() {
            item_mean.insert(
                format!("item{i:05}"),
                mious.iter().sum::<f64>() / mious.len() as f64,
            );
        }
    }
    assert_eq!(ag.pairs, pairs);
    assert_eq!(ag.per_class.len(), c);
    for (k, (&(inter, union, areas), pc)) in total.iter().zip(&ag.per_class).enumerate() {
        close(
            pc.iou,
            &serde_json::json!(inter as f64 / union as f64),
            &format!("class {k} iou"),
        );
        close(
            pc.dice,
            &serde_json::json!(2.0 * inter as f64 / areas as f64),
            &format!("class {k} dice"),
        );
        assert!(
            pc.boundary_iou.unwrap() < pc.iou.unwrap() + 1e-9,
            "bands disagree more than areas"
        );
    }
    let rows = &ag.per_annotator;
    let bias =
        |n: &str, k: usize| rows.iter().find(|r| r.annotator == n).unwrap().area_bias[k].unwrap();
    for row in rows {
        let n = row.annotator.as_str();
        let s = &by[n];
        let defined: Vec<f64> = s
            .iter()
            .filter(|e| e.1 > 0)
            .map(|e| e.0 as f64 / e.1 as f64)
            .collect();
        let want = defined.iter().sum::<f64>() / defined.len() as f64;
        close(
            row.miou_with_others,
            &serde_json::json!(want),
            &format!("{n} miou_with_others"),
        );
    }
    for k in 1..c {
        // (The noisy annotator's random areas sit in everyone's "others".)
        for n in ["a1", "a2"] {
            assert!(
                bias("thick", k) > bias(n, k) + 0.02,
                "class {k}: thick {} vs {n} {}",
                bias("thick", k),
                bias(n, k)
            );
        }
    }
    // Per item: the mean pairwise mIoU; one annotator: null.
    for row in read_queue_rows(&out) {
        let id = row.id.as_ref();
        let got = row.scores.get("annotator_agreement");
        match item_mean.get(id) {
            Some(&m) => assert!((got.unwrap() - m).abs() < 1e-12, "{id}: {got:?} vs {m}"),
            None => assert!(got.is_none(), "{id}: one annotation"),
        }
        let flagged = item_mean.get(id).is_some_and(|&m| m < 0.75);
        let reason = row
            .reasons
            .iter()
            .map(|r| r.as_ref())
            .find(|r| r.starts_with("annotators disagree"))
            .unwrap_or("");
        assert_eq!(!reason.is_empty(), flagged, "{id}: {reason}");
        if flagged {
            assert!(reason.contains("noisy"), "{reason}");
        }
    }
    assert!(r.views["low_agreement"].flagged >= 1);
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains(r#"<section id="annotators">"#),
        "the page's annotator section"
    );
    assert!(
        page.contains(r#"noisy <span class="tag">below threshold</span>"#),
        "noisy marked"
    );
    assert!(page.contains("Lowest agreement"), "its worst items");
    // The lowest-agreement items (those with the noisy annotator), each
    // annotator's outline in its own colour: noisy is the 4th (orange).
    let mut order: Vec<(&String, &f64)> = item_mean.iter().collect();
    order.sort_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(b.0)));
    let overlay = |id: &str| {
        let rel = format!("overlays/{id}.annotators.png");
        assert!(page.contains(&rel), "{rel} on the page");
        let img = image::open(out.join(&rel)).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (128, 128));
        img
    };
    let count = |img: &image::RgbImage, c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    // The four items with the noisy annotator come first; its outline
    // (4th colour, orange) is everywhere, so it is drawn first and the
    // others' sparse outlines stay visible over it.
    let worst = overlay(order[0].0);
    assert!(
        count(&worst, [245, 130, 48]) > 1000,
        "noisy's outline everywhere"
    );
    assert!(
        count(&worst, [60, 180, 75]) > 20,
        "thick's outline (3rd colour, green) drawn over noisy's"
    );
    // The fifth has no noisy annotator: thick's outline (3rd colour,
    // green) shows around every region, a2's (2nd, blue) where it differs.
    let fifth = overlay(order[4].0);
    assert_eq!(count(&fifth, [245, 130, 48]), 0, "no noisy annotator here");
    assert!(count(&fifth, [60, 180, 75]) > 20, "thick's outline");

    // A mask of the wrong size is refused, naming it.
    let small = d.join("ann/a1/item00003.png");
    write_png(&small, &vec![0u16; 64 * 64], 64);
    let bad = tmp.path().join("bad");
    let a = ["run", d.to_str().unwrap(), "--out", bad.to_str().unwrap()];
    let o = triage(&a);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&a, &o));
    assert!(
        err.contains("ann/a1/item00003.png") && err.contains("item00003"),
        "{err}"
    );
    assert!(!bad.join("report.json").exists());
}

/// The pairwise mask counts of segmentation agreement run on the chosen
/// backend: the GPU's report section equals the CPU's (integer counts, so
/// the same ratios). Required when `TRIAGE_REQUIRE_GPU=1`.
#[test]
fn segmentation_agreement_on_the_gpu_equals_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    seg_annotated(&d);
    let cpu = tmp.path().join("cpu");
    run_ok(&d, &cpu, &["--deterministic", "--backend", "cpu"]);
    let gpu = tmp.path().join("gpu");
    if !run_gpu(&d, &gpu, &["--deterministic"]) {
        return;
    }
    let (rc, rg) = (read_report_typed(&cpu), read_report_typed(&gpu));
    assert_eq!(
        serde_json::to_value(seg_agreement(&rc)).unwrap(),
        serde_json::to_value(seg_agreement(&rg)).unwrap(),
        "agreement differs between cpu and gpu"
    );
}

/// Real crowd votes: the 5 Mechanical Turk workers per candidate of
/// Northcutt et al. (2021) on CIFAR-10 (../shared/data/label-errors,
/// Apache-2.0). A vote for the given label is that class, one for the
/// guessed label that class; "neither" and "both" name no class and are
/// left out (a missing annotation). Workers are anonymous, so the votes are
/// named `vote1..` in their order: alpha and Fleiss' kappa do not depend on
/// who voted, the per-annotator figures do and mean nothing here. Alpha and
/// Fleiss' kappa are checked against the reference packages.
#[test]
fn real_crowd_votes_on_cifar10_candidates() {
    let Some(shared) = shared_data() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let src = shared.join("label-errors");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("cifar10");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("pred_probs/cifar10.npy"), d.join("probs.npy")).unwrap();
    std::fs::copy(src.join("labels/cifar10.npy"), d.join("labels.npy")).unwrap();
    let votes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("mturk/cifar10.json")).unwrap())
            .unwrap();
    let mut csv = String::from("id,annotator,label\n");
    let mut kept = 0;
    for c in votes.as_array().unwrap() {
        let id = c["id"].as_u64().unwrap();
        let mut k = 0;
        for (key, class) in [
            ("given", c["given_original_label"].as_u64().unwrap()),
            ("guessed", c["our_guessed_label"].as_u64().unwrap()),
        ] {
            for _ in 0..c["mturk"][key].as_u64().unwrap() {
                k += 1;
                csv.push_str(&format!("{id},vote{k},{class}\n"));
                kept += 1;
            }
        }
    }
    std::fs::write(d.join("annotations.csv"), &csv).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nnum_classes = 10\n[inputs]\nprobs = \"probs.npy\"\nlabels = \"labels.npy\"\nannotations = \"annotations.csv\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--deterministic"]);
    let r = read_report_typed(&out);
    let ag = cls_agreement(&r);
    assert_eq!(ag.rows, kept);
    eprintln!(
        "CIFAR-10 crowd votes: {} candidates with 2+ votes, alpha {:?}, Fleiss kappa {:?} over {} items x {}; low_agreement flags {}",
        ag.items_with_2plus,
        ag.krippendorff_alpha,
        ag.fleiss_kappa,
        ag.fleiss_items,
        ag.fleiss_m,
        r.views["low_agreement"].flagged
    );
    let ids: Vec<String> = (0..10000).map(|i| i.to_string()).collect();
    let zeros = vec![0u32; 10000];
    let official = serde_json::json!({"ids": ids, "labels": zeros, "pred": zeros});
    let Some(want) = reference(&d, official, 10) else {
        return;
    };
    same_dataset_figures(ag, &want, 10);
}

/// Shards and merge with annotations: the merge reads the annotations
/// again and writes what one run writes, byte for byte.
#[test]
fn shards_with_annotations_merge_to_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let (ids, facts) = dataset(&d);
    write_annotations(&d, &ids, &facts);
    let single = tmp.path().join("single");
    run_ok(&d, &single, &["--deterministic"]);
    let parts: Vec<std::path::PathBuf> = (0..2).map(|i| tmp.path().join(format!("p{i}"))).collect();
    for (i, p) in parts.iter().enumerate() {
        run_ok(&d, p, &["--deterministic", "--shard", &format!("{i}/2")]);
    }
    let merged = tmp.path().join("merged");
    let mut a: Vec<&str> = vec!["merge"];
    a.extend(parts.iter().map(|p| p.to_str().unwrap()));
    a.extend(["--out", merged.to_str().unwrap(), "--deterministic"]);
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    for f in ["queue.jsonl", "queue.csv", "report.json"] {
        assert!(
            std::fs::read(single.join(f)).unwrap() == std::fs::read(merged.join(f)).unwrap(),
            "{f} differs between one run and the merge"
        );
    }
    assert!(
        cls_agreement(&read_report_typed(&merged))
            .krippendorff_alpha
            .is_some()
    );
}
