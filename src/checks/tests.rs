//! The contract, checked for every check of [`registry`]: a unique name;
//! every defined score in the check's declared range; an item flagged
//! exactly when its score crosses the check's threshold; skipped, with the
//! reason naming the input, when an input is missing. Run over small
//! classification and segmentation datasets, with and without embeddings
//! and annotators, each with an unlabelled row the checks must not see.
//! [`verify`] returns what is wrong, so a check that breaks the contract
//! (shown below) fails it. The table of checks in docs/reference.md is held
//! to the thresholds here too.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::*;
use crate::agreement::ItemPairs;
use crate::index::KnnGraph;
use crate::io::annotations::{Annotation, Annotations};
use crate::neighbors::NeighborResult;
use crate::priority::RowFacts;
use crate::scores::{ItemScores, Score};

/// A dataset's inputs to the checks.
struct Fixture {
    _dir: tempfile::TempDir,
    cfg: DatasetConfig,
    manifest: Manifest,
    items: Vec<ItemResult>,
    neighbors: Option<NeighborResult>,
    annotations: Option<Annotations>,
    pairs: Option<ItemPairs>,
    campaign: Option<crate::io::campaign::Campaign>,
}

impl Fixture {
    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            cfg: &self.cfg,
            manifest: &self.manifest,
            items: &self.items,
            neighbors: self.neighbors.as_ref(),
            identical: None,
            annotations: self.annotations.as_ref(),
            annotator_pairs: self.pairs.as_ref(),
            campaign: self.campaign.as_ref(),
            selected: None,
            earlier: &[],
        }
    }
}

/// Rows of the fixtures; every 16th row, from row 7, is unlabelled and
/// left out of the items, as the pipeline leaves the pool out.
const N: usize = 48;

fn unlabelled(row: usize) -> bool {
    row % 16 == 7
}

/// A value in [0, 1) per row and salt, spread out.
fn u(row: usize, salt: u64) -> f64 {
    let mut st = (row as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    st = st
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (st >> 11) as f64 / (1u64 << 53) as f64
}

fn config(dir: &Path, toml: &str) -> DatasetConfig {
    std::fs::write(dir.join("triage.toml"), toml).unwrap();
    DatasetConfig::load(dir).unwrap()
}

fn item(index: usize, scores: ItemScores) -> ItemResult {
    ItemResult {
        index,
        scores,
        priority: 0.0,
        row: None,
        cluster: None,
        extra: None,
        class: None,
        consensus: None,
        unlabelled: false,
    }
}

/// The neighbour stage's result for `n` rows: rows in blocks of eight,
/// each row's next four in its block (cyclically) as its neighbours (so
/// each block is one DBSCAN cluster), and a conflict (`dup_conflict > 0`) on every 5th
/// labelled row, which its item lists as a conflicting partner.
fn neighbours(n: usize, items: &mut [ItemResult]) -> NeighborResult {
    let k = 4;
    let dup_conflict: Vec<f64> = (0..n)
        .map(|i| {
            if i % 5 == 0 && !unlabelled(i) {
                0.05 + 0.9 * u(i, 5)
            } else {
                0.0
            }
        })
        .collect();
    for it in items.iter_mut() {
        if dup_conflict[it.index] > 0.0 {
            let partner = (it.index + 1) % n;
            it.extra_mut().neighbors.push(crate::records::NeighborRef {
                index: partner,
                distance: 0.01,
                label: "b".into(),
                conflict: true,
            });
        }
        it.scores
            .set(Score::DupConflict, Some(dup_conflict[it.index]));
        it.scores.set(Score::KnnDisagreement, Some(u(it.index, 6)));
    }
    NeighborResult {
        graph: KnnGraph {
            k,
            ids: (0..n)
                .flat_map(|i| {
                    let g = i / 8 * 8;
                    (1..=4).map(move |d| (g + (i - g + d) % 8).min(n - 1))
                })
                .map(|j| j as u32)
                .collect(),
            // Every 11th row from row 3 far from its neighbours (outliers),
            // the others at 0.10-0.12.
            dist: (0..n * k)
                .map(|e| {
                    let i = e / k;
                    if i % 11 == 3 {
                        0.9
                    } else {
                        0.1 + 0.01 * (i % 3) as f32
                    }
                })
                .collect(),
            method: "exact",
            loaded: 0,
        },
        threshold: 0.05,
        rule: crate::neighbors::Threshold::Absolute(0.05),
        // Rows 13 and 29: a row of NaNs and a row of zeros (the `null` check).
        null: vec![
            (13, crate::io::embeddings::NullRow::NonFinite(16)),
            (29, crate::io::embeddings::NullRow::Zero),
        ],
        dim: 16,
        median_nn: 0.1,
        // The conflicting partners above as pairs, and an identical pair
        // (found by hash) every seventh row.
        pairs: (0..n)
            .filter(|&i| dup_conflict[i] > 0.0)
            .map(|i| crate::neighbors::DupPair {
                a: i,
                b: (i + 1) % n,
                distance: 0.01,
                found_by: "knn",
                conflict: true,
                mask_iou: None,
            })
            .chain((0..n).step_by(7).map(|i| crate::neighbors::DupPair {
                a: i,
                b: (i + 2) % n,
                distance: 0.0,
                found_by: "embedding_hash",
                conflict: false,
                mask_iou: None,
            }))
            .collect(),
        clusters: Vec::new(),
        cluster_of: vec![None; n],
        knn_disagreement: (0..n).map(|i| u(i, 6)).collect(),
        dup_conflict,
    }
}

/// Classification over classes a, b, c: class c is rare (one item), the
/// model disagrees with about a third of the labels; row 3 has no margin;
/// row 4's scores sit on the thresholds (`1 − margin` = 0.5, entropy 0.5,
/// ece 0.25).
fn classification(embeddings: bool, annotators: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "task = \"classification\"\nclasses = [\"a\", \"b\", \"c\"]\n[inputs]\nprobs = \"probs.npy\"\nlabels = \"labels.npy\"\n",
    );
    // Every third item in a `test` split (the `leakage` check runs with
    // embeddings).
    let manifest = Manifest {
        columns: vec!["id".into(), "split".into()],
        ids: (0..N).map(|i| format!("r{i}")).collect(),
        rows: crate::io::manifest::Cells::tabulate(N, 2, |i, j| match (j, i % 3) {
            (0, _) => format!("r{i}"),
            (_, 0) => "test".into(),
            _ => "train".into(),
        }),
    };
    let mut items: Vec<ItemResult> = (0..N)
        .filter(|&i| !unlabelled(i))
        .map(|i| {
            let label = if i == 5 { 2 } else { (i % 2) as u32 };
            let pred = if u(i, 1) < 0.3 {
                (label + 1) % 3
            } else {
                label
            };
            let on_threshold = i == 4;
            let mut it = item(
                i,
                ItemScores::default()
                    .with(
                        Score::NormalizedMargin,
                        match i {
                            3 => None,
                            4 => Some(0.5),
                            _ => Some(u(i, 2)),
                        },
                    )
                    .with(
                        Score::Entropy,
                        Some(if on_threshold { 0.5 } else { u(i, 3) }),
                    )
                    .with(
                        Score::Ece,
                        Some(if on_threshold { 0.25 } else { 0.5 * u(i, 4) }),
                    )
                    // Rows 16-23, one block of the graph, where the model
                    // fails the labels (an underperforming group).
                    .with(
                        Score::SelfConfidence,
                        Some(if (16..24).contains(&i) {
                            0.01
                        } else {
                            0.3 + 0.6 * u(i, 9)
                        }),
                    ),
            );
            it.row = Some(RowFacts {
                label,
                pred,
                p_label: 0.4,
                p_pred: 0.6,
            });
            it.class = Some(label);
            it
        })
        .collect();
    let neighbors = embeddings.then(|| neighbours(N, &mut items));
    let annotations = annotators.then(|| {
        let ann = Annotations {
            path: PathBuf::from("annotations.csv"),
            annotators: ["x", "y", "z"].map(String::from).to_vec(),
            items: (0..N)
                .map(|i| {
                    // 1 to 3 annotators; some disagree, some outvote the label.
                    let official = if i == 5 { 2 } else { (i % 2) as u32 };
                    (0..1 + i % 3)
                        .map(|a| {
                            let l = if u(i, 7 + a as u64) < 0.25 {
                                (official + 1) % 3
                            } else {
                                official
                            };
                            (a as u32, Annotation::Label(l))
                        })
                        .collect()
                })
                .collect(),
            ..Annotations::default()
        };
        crate::agreement::apply(&cfg, &ann, &mut items, 0.5);
        ann
    });
    // With both: a campaign of 3 batches (rows 0-23, 24-35, 36-47) and two
    // annotators (q: rows 4k + 3; p: the others); p's labels are all
    // rejected by the model in the last batch, none before (but row 4,
    // on the threshold).
    let campaign = (embeddings && annotators).then(|| {
        let batch = |i: usize| {
            if i < 24 {
                0
            } else if i < 36 {
                1
            } else {
                2
            }
        };
        let p = |i: usize| i % 4 != 3;
        for it in items.iter_mut() {
            let i = it.index;
            if p(i) && i != 4 {
                let nm = if batch(i) == 2 { 0.1 } else { 0.9 };
                it.scores.set(Score::NormalizedMargin, Some(nm));
            }
        }
        crate::io::campaign::Campaign {
            grouping: "batch".into(),
            batches: ["2026-11-01", "2026-11-02", "2026-11-03"]
                .map(|name| crate::io::campaign::Batch {
                    name: name.into(),
                    first_day: None,
                })
                .to_vec(),
            of_row: (0..N).map(|i| batch(i) as u32).collect(),
            annotators: vec!["p".into(), "q".into()],
            annotator_of_row: Some((0..N).map(|i| Some(u32::from(!p(i)))).collect()),
            of_annotation: None,
        }
    });
    Fixture {
        _dir: dir,
        cfg,
        manifest,
        items,
        neighbors,
        annotations,
        pairs: None,
        campaign,
    }
}

/// Segmentation over classes bg, fg: outlines from poor to exact, row 2
/// without a Boundary IoU; with annotators, 2 or 3 masks an item and their
/// pairs' mIoU.
fn segmentation(embeddings: bool, annotators: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "task = \"segmentation\"\nclasses = [\"bg\", \"fg\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    );
    let manifest = Manifest {
        columns: vec!["id".into(), "mask".into()],
        ids: (0..N).map(|i| format!("s{i}")).collect(),
        rows: crate::io::manifest::Cells::tabulate(N, 2, |i, j| match j {
            0 => format!("s{i}"),
            _ => format!("m{i}.png"),
        }),
    };
    let mut items: Vec<ItemResult> = (0..N)
        .filter(|&i| !unlabelled(i))
        .map(|i| {
            let mut it = item(
                i,
                ItemScores::segmentation(64)
                    .with(Score::Entropy, Some(u(i, 3)))
                    .with(Score::Ece, Some(0.5 * u(i, 4)))
                    .with(Score::Miou, Some(u(i, 8)))
                    .with(Score::BoundaryIou, (i != 2).then(|| u(i, 9)))
                    .with(Score::NormalizedMarginSoftmin, Some(u(i, 10))),
            );
            it.extra_mut().label_set = vec![0, 1];
            it.extra_mut().dims = Some((8, 8));
            it
        })
        .collect();
    let neighbors = embeddings.then(|| neighbours(N, &mut items));
    let (annotations, pairs) = if annotators {
        let mut pairs: ItemPairs = vec![Vec::new(); N];
        let mut ann = Annotations {
            path: PathBuf::from("annotations.csv"),
            annotators: ["x", "y", "z"].map(String::from).to_vec(),
            items: vec![Vec::new(); N],
            ..Annotations::default()
        };
        for it in items.iter_mut() {
            let i = it.index;
            let m = 2 + i % 2;
            ann.items[i] = (0..m as u32)
                .map(|a| {
                    (
                        a,
                        Annotation::Mask(PathBuf::from(format!("ann/{a}/{i}.png"))),
                    )
                })
                .collect();
            for a in 0..m as u32 {
                for b in a + 1..m as u32 {
                    pairs[i].push((a, b, Some(0.5 + 0.5 * u(i, 11 + a as u64))));
                }
            }
            it.scores.set(
                Score::AnnotatorAgreement,
                crate::metrics::confusion::mean_defined(pairs[i].iter().map(|p| p.2)),
            );
        }
        (Some(ann), Some(pairs))
    } else {
        (None, None)
    };
    Fixture {
        _dir: dir,
        cfg,
        manifest,
        items,
        neighbors,
        annotations,
        pairs,
        campaign: None,
    }
}

/// What a run of `checks` over `inputs` found: per check name, whether it
/// ran, and how many items it flagged and left unflagged.
type Seen = HashMap<&'static str, (bool, usize, usize)>;

/// Hold every check of `checks` to the contract over `inputs`; returns
/// each breach, and what each check did.
fn verify(checks: &[Box<dyn Check>], inputs: &Inputs<'_>) -> (Vec<String>, Seen) {
    let task = inputs.cfg.task;
    let mut bad = Vec::new();
    let mut seen = Seen::new();
    let mut names = HashSet::new();
    let labelled: HashSet<usize> = inputs.items.iter().map(|it| it.index).collect();
    // Each check of the registry sees the registry's checks before it.
    let all = run(inputs);
    for c in checks {
        let pos = all
            .iter()
            .position(|r| r.check.name() == c.name())
            .unwrap_or(0);
        let inputs = &Inputs {
            earlier: &all[..pos],
            ..*inputs
        };
        let name = c.name();
        if !names.insert(name) {
            bad.push(format!("{name}: two checks have this name"));
        }
        let missing = c.needs().iter().find(|&&n| !inputs.has(n));
        match (run_one(c.as_ref(), inputs), missing) {
            (Outcome::Skipped(why), Some(n)) => {
                if why != n.missing() {
                    bad.push(format!(
                        "{name}: skipped for {why:?}, not {:?}",
                        n.missing()
                    ));
                }
                seen.insert(name, (false, 0, 0));
            }
            (Outcome::Skipped(why), None) => {
                bad.push(format!("{name}: skipped ({why}) with every input there"));
            }
            (Outcome::Ran(_), Some(n)) => {
                bad.push(format!("{name}: ran without {}", n.name()));
            }
            (Outcome::Ran(f), None) => {
                let scores = c.scores(inputs);
                if scores.len() != inputs.items.len() {
                    bad.push(format!(
                        "{name}: {} scores for {} items",
                        scores.len(),
                        inputs.items.len()
                    ));
                }
                let threshold = c.threshold(task);
                let (mut yes, mut no) = (0, 0);
                for (it, s) in inputs.items.iter().zip(&scores) {
                    let row = it.index;
                    if let Some(v) = s
                        && !c.range().contains(v)
                    {
                        bad.push(format!(
                            "{name}: row {row} scores {v}, out of {:?}",
                            c.range()
                        ));
                    }
                    let want = s.is_some_and(|v| threshold.flags(v));
                    if f.flagged(row) != want {
                        bad.push(format!(
                            "{name}: row {row} (score {s:?}) flagged {}, its threshold {} says {want}",
                            f.flagged(row),
                            threshold.text()
                        ));
                    }
                    if f.score(it) != s.filter(|v| !v.is_nan()) {
                        bad.push(format!(
                            "{name}: row {row} reads {:?}, scored {s:?}",
                            f.score(it)
                        ));
                    }
                    if !f.given(row) {
                        bad.push(format!("{name}: row {row} scored but not marked given"));
                    }
                    if want { yes += 1 } else { no += 1 }
                }
                if f.flagged != yes {
                    bad.push(format!("{name}: counts {} flagged, flags {yes}", f.flagged));
                }
                let stray = (0..rows(inputs))
                    .filter(|r| !labelled.contains(r))
                    .find(|&r| f.flagged(r) || f.given(r));
                if let Some(r) = stray {
                    bad.push(format!(
                        "{name}: row {r}, given to no check, has a flag or a score"
                    ));
                }
                for (row, _, reason) in &f.explained.reasons {
                    if !labelled.contains(row) {
                        bad.push(format!(
                            "{name}: a reason for row {row}, no item's: {reason}"
                        ));
                    }
                }
                seen.insert(name, (true, yes, no));
            }
        }
    }
    (bad, seen)
}

#[test]
fn every_check_of_the_registry_keeps_the_contract() {
    let checks = registry();
    let mut ran: HashMap<&'static str, (usize, usize)> = HashMap::new();
    let fixtures = [
        classification(true, true),
        classification(false, false),
        segmentation(true, true),
        segmentation(false, false),
    ];
    for (k, fx) in fixtures.iter().enumerate() {
        let (bad, seen) = verify(&checks, &fx.inputs());
        assert!(bad.is_empty(), "fixture {k}:\n{}", bad.join("\n"));
        assert_eq!(seen.len(), checks.len(), "fixture {k}: every name once");
        for (name, (did, yes, no)) in seen {
            if did {
                let e = ran.entry(name).or_default();
                e.0 += yes;
                e.1 += no;
            }
        }
    }
    // Every check ran somewhere, flagging some items and not others, so
    // the flag test above compared both ways.
    for c in &checks {
        let (yes, no) = ran.get(c.name()).copied().unwrap_or_default();
        assert!(yes > 0 && no > 0, "{}: flagged {yes}, not {no}", c.name());
    }
}

/// `--checks` runs exactly the checks it names (an off-by-default one
/// included), the others skipped as "not selected"; a name no check has
/// is refused with the list of names.
#[test]
fn a_selection_runs_exactly_the_checks_it_names() {
    let fx = classification(true, false);
    let names = ["outlier".to_string(), "data_valuation".to_string()];
    let runs = run(&Inputs {
        selected: Some(&names),
        ..fx.inputs()
    });
    let outcomes: Vec<(&str, Option<&str>)> = runs
        .iter()
        .map(|r| match r.outcome {
            Outcome::Skipped(why) => (r.check.name(), Some(why)),
            Outcome::Ran(_) => (r.check.name(), None),
        })
        .collect();
    for (name, skipped) in &outcomes {
        if names.iter().any(|n| n == name) {
            assert_eq!(*skipped, None, "{name}");
        } else {
            assert_eq!(*skipped, Some(NOT_SELECTED), "{name}");
        }
    }
    assert_eq!(outcomes.len(), registry().len());
    assert!(validate_selection(&names).is_ok());
    let e = validate_selection(&["outlier".into(), "outliers".into()]).unwrap_err();
    assert!(
        e.to_string().contains("\"outliers\"") && e.to_string().contains("data_valuation"),
        "{e}"
    );
    assert!(validate_selection(&[]).is_err());
}

#[test]
fn a_missing_input_skips_its_checks_with_the_reason() {
    let fx = classification(false, false);
    let runs = run(&fx.inputs());
    let skipped: Vec<(&str, &str)> = runs
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Skipped(why) => Some((r.check.name(), why)),
            Outcome::Ran(_) => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("boundary_disagreement", "segmentation only"),
            (
                "duplicate_conflict",
                "needs embeddings ([inputs] embeddings)"
            ),
            (
                "leakage",
                "needs embeddings ([inputs] embeddings) or an image column in items.csv"
            ),
            ("null", "needs embeddings ([inputs] embeddings)"),
            ("outlier", "needs embeddings ([inputs] embeddings)"),
            ("non_iid", "needs embeddings ([inputs] embeddings)"),
            (
                "underperforming_group",
                "needs embeddings ([inputs] embeddings)"
            ),
            (
                "data_valuation",
                "not selected (off by default: name it in --checks)"
            ),
            (
                "low_agreement",
                "needs several annotators ([inputs] annotations)"
            ),
            (
                "drift",
                "needs a time column (batch or annotated_at in items.csv)"
            ),
        ]
    );
    let s = section(&runs);
    let dc = serde_json::to_value(&s["duplicate_conflict"]).unwrap();
    assert_eq!(
        dc,
        serde_json::json!({"needs": ["embeddings"], "status": "skipped", "reason": "needs embeddings ([inputs] embeddings)"})
    );
    let seg = segmentation(false, false);
    let runs = run(&seg.inputs());
    let ci = runs.iter().find(|r| r.check.name() == "class_imbalance");
    assert!(matches!(
        ci.map(|r| &r.outcome),
        Some(Outcome::Skipped("classification only"))
    ));
}

/// Scores past its declared range, and runs without its input.
struct OutOfRange;

impl Check for OutOfRange {
    fn name(&self) -> &'static str {
        "wrong_label"
    }
    fn needs(&self) -> &'static [Need] {
        &[]
    }
    fn score_text(&self, _: Task) -> &'static str {
        "2 x entropy"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(0.5)
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        each(inputs, |it| it.scores.get(Score::Entropy).map(|h| 2.0 * h))
    }
}

#[test]
fn a_check_that_breaks_the_contract_fails_it() {
    let fx = classification(false, false);
    let mut checks = registry();
    checks.push(Box::new(OutOfRange));
    let (bad, _) = verify(&checks, &fx.inputs());
    let has = |what: &str| bad.iter().any(|b| b.contains(what));
    assert!(has("wrong_label: two checks have this name"), "{bad:?}");
    assert!(has("out of 0.0..=1.0"), "{bad:?}");
}

#[test]
fn flags_and_reasons_are_by_row_not_by_position() {
    let fx = classification(true, true);
    let runs = run(&fx.inputs());
    let dc = runs
        .iter()
        .find(|r| r.check.name() == "duplicate_conflict")
        .unwrap();
    // Row 10 is the 10th item (row 7 is unlabelled): flagged by its row.
    let at = fx.items.iter().position(|it| it.index == 10).unwrap();
    assert_eq!(at, 9);
    assert!(dc.flagged(10) && dc.score(&fx.items[at]).is_some_and(|v| v > 0.0));
    let Outcome::Ran(f) = &dc.outcome else {
        panic!("duplicate_conflict ran")
    };
    assert!(!dc.flagged(7) && !f.given(7), "the unlabelled row");
    let reasons = reasons(&runs);
    let of = reasons.of(0, &fx.items[at], &fx.cfg.class_names);
    assert!(
        of[0].starts_with("near-duplicate of \"r11\""),
        "first, by its row: {of:?}"
    );
}

#[test]
fn the_text_and_the_test_come_from_one_value() {
    let t = Threshold::above(0.5).because("why");
    assert_eq!(t.text(), "> 0.5 (why)");
    assert!(!t.flags(0.5) && t.flags(0.500_000_1));
    let t = Threshold::at_least(0.25);
    assert_eq!(t.text(), ">= 0.25");
    assert!(t.flags(0.25) && !t.flags(0.249_999));
    assert_eq!(Threshold::above(0.0).text(), "> 0");
    assert!(!t.flags(f64::NAN));
}

/// Every check, for each task: its text names its threshold, which lies
/// in its range and flags exactly the scores past it.
#[test]
fn every_check_flags_what_its_text_says() {
    for task in [Task::Classification, Task::Segmentation] {
        let fx = match task {
            Task::Classification => classification(true, true),
            Task::Segmentation => segmentation(true, true),
        };
        for c in registry() {
            if c.fitted() {
                // Before its scores a fitted threshold flags nothing.
                let t = c.threshold(task);
                assert!(t.value.is_nan() && !t.flags(0.5), "{}", c.name());
                let _ = run_one(c.as_ref(), &fx.inputs());
                assert!(c.threshold(task).value.is_finite(), "{}: fitted", c.name());
            }
            let t = c.threshold(task);
            let text = c.flagged_when(task);
            let op = if t.inclusive { ">= " } else { "> " };
            let number: f64 = text
                .strip_prefix(op)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: {text:?}", c.name()));
            assert_eq!(number, t.value, "{}", c.name());
            assert!(c.range().contains(&t.value), "{}: in its range", c.name());
        }
    }
}

/// The table of checks in docs/reference.md states each threshold the code holds:
/// its "flagged when" cell names `> v` (or `≥ v`) for every task the check
/// runs on, and every number in the cell is such a `v` or `1 − v`.
#[test]
fn the_reference_table_states_the_thresholds_of_the_code() {
    let reference = include_str!("../../docs/reference.md");
    for c in registry() {
        let head = format!("| `{}` |", c.name());
        let row = reference
            .lines()
            .find(|l| l.starts_with(&head))
            .unwrap_or_else(|| panic!("docs/reference.md: no row for {}", c.name()));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let cell = cells[4];
        let tasks: Vec<Task> = [Task::Classification, Task::Segmentation]
            .into_iter()
            .filter(|t| {
                !c.needs().iter().any(|n| {
                    matches!(
                        (n, t),
                        (Need::Classification, Task::Segmentation)
                            | (Need::Segmentation, Task::Classification)
                    )
                })
            })
            .collect();
        if c.fitted() {
            // Its value follows from the data: the cell names the rule.
            assert!(
                cell.contains("fitted"),
                "docs/reference.md {}: {cell:?}",
                c.name()
            );
            continue;
        }
        let mut values = Vec::new();
        for t in tasks {
            let th = c.threshold(t);
            let op = if th.inclusive { "≥" } else { ">" };
            let said = format!("{op} {}", th.value);
            assert!(
                cell.contains(&said),
                "docs/reference.md {}: {cell:?} lacks {said:?}",
                c.name()
            );
            values.push(th.value);
        }
        let numbers = cell
            .split(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .filter(|w| w.starts_with(|ch: char| ch.is_ascii_digit()))
            .map(|w| w.trim_end_matches('.'));
        for w in numbers {
            let x: f64 = w.parse().unwrap_or_else(|_| panic!("{w:?}"));
            assert!(
                values
                    .iter()
                    .any(|v| (x - v).abs() < 1e-9 || (x - (1.0 - v)).abs() < 1e-9),
                "docs/reference.md {}: {x} in {cell:?} is no threshold of the code ({values:?})",
                c.name()
            );
        }
    }
}

/// The typed summaries write the JSON `report.json` has always had (keys in
/// this order), and read back to the same values.
#[test]
fn summaries_are_typed_and_written_as_before() {
    let fx = classification(true, true);
    let s = section(&run(&fx.inputs()));
    let text = serde_json::to_string(&s["class_imbalance"]).unwrap();
    assert_eq!(
        text,
        r#"{"needs":["classification"],"status":"ran","flagged":1,"summary":{"rare_fraction":0.1,"uniform_share":0.3333333333333333,"rare_classes":[{"class":2,"name":"c","items":1,"share":0.022222222222222223}],"absent_classes":[]}}"#
    );
    let text = serde_json::to_string(&s["low_agreement"]).unwrap();
    assert!(
        text.starts_with(r#"{"needs":["annotations"],"status":"ran","flagged":"#)
            && text.contains(
                r#""summary":{"min_item_agreement":0.5,"majority_contradicts_official":"#
            ),
        "{text}"
    );
    for (name, summary) in &s {
        let back: CheckSummary =
            serde_json::from_str(&serde_json::to_string(summary).unwrap()).unwrap();
        assert_eq!(&back, summary, "{name}");
    }
}

/// A bit a row: set and read back at the word edges, clear past the end.
#[test]
fn bits_read_back_what_was_set() {
    let mut b = Bits::new(130);
    for i in [0, 63, 64, 127, 129] {
        b.set(i);
    }
    let set: Vec<usize> = (0..140).filter(|&i| b.get(i)).collect();
    assert_eq!(set, [0, 63, 64, 127, 129]);
    b.set(1000);
    assert!(!b.get(1000));
}
