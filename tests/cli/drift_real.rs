//! Drift on real data: the CIFAR-10 test set's original labels and
//! out-of-sample predicted probabilities (Northcutt et al. 2021,
//! ../shared/data/label-errors, Apache-2.0), laid out as a campaign: the
//! 10,000 items in their published order, 20 batches of 500 consecutive
//! items, the item at row `r` annotated by `a{r % 10}` (50 items per
//! annotator × batch cell). The set's real label errors (54 verified) and
//! the model's real mistakes (7 % of items) are spread over the order, so
//! the campaign holds no drift and must raise no alarm; with annotator a3's
//! labels replaced by uniformly random classes from batch 12 on, the alarm
//! must name a3 at batch 12 or 13, and no other annotator nor class.
//!
//! The issue asked for CIFAR-10H's raw per-annotator records; they are not
//! reachable from the development machine (only the per-image counts are),
//! so this keeps the real labels, the real model and the real errors, and
//! plants the annotators' layout.

use std::path::Path;

use triage::schema::{DriftKind, Report};

use crate::common::*;

const N: usize = 10_000;
const BATCH: usize = 500;
const ANNOTATORS: usize = 10;
const DRIFTED: usize = 3;
const FROM_BATCH: usize = 12;

/// The uint16 labels of a version-1 `.npy` file of shape (N,).
fn read_labels(p: &Path) -> Vec<u16> {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let header = u16::from_le_bytes([b[8], b[9]]) as usize;
    let text = std::str::from_utf8(&b[10..10 + header]).unwrap();
    assert!(
        text.contains("'<u2'") && text.contains(&format!("({N},)")),
        "{text}"
    );
    b[10 + header..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Write the campaign under `d`; `plant`: a3's labels random from batch 12.
fn campaign(d: &Path, src: &Path, plant: bool) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::copy(src.join("pred_probs/cifar10.npy"), d.join("probs.npy")).unwrap();
    let labels = read_labels(&src.join("labels/cifar10.npy"));
    assert_eq!(labels.len(), N);
    let mut rng = Rng::new(31);
    let mut csv = String::from("id,label,annotator,batch\n");
    for (r, &l) in labels.iter().enumerate() {
        let (a, b) = (r % ANNOTATORS, r / BATCH);
        let label = if plant && a == DRIFTED && b >= FROM_BATCH {
            (rng.next() * 10.0) as u64
        } else {
            u64::from(l)
        };
        csv.push_str(&format!("{r},{label},a{a},b{b:02}\n"));
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nnum_classes = 10\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
}

fn drift_of(d: &Path) -> Report {
    let out = d.join("out");
    run_ok(d, &out, &["--deterministic"]);
    read_report_typed(&out)
}

/// The manifest rows that the `drift` check flags in the queue.
fn drift_flagged(d: &Path) -> Vec<usize> {
    let mut rows: Vec<usize> = read_queue(&d.join("out"))
        .iter()
        .filter(|r| r["flags"].as_array().unwrap().iter().any(|f| f == "drift"))
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    rows.sort_unstable();
    rows
}

#[test]
fn the_real_cifar10_campaign_raises_no_alarm_and_a_randomised_annotator_is_caught() {
    let Some(shared) = shared_data() else {
        eprintln!("skipped: ../shared/data is absent");
        return;
    };
    let src = shared.join("label-errors");
    let tmp = tempfile::tempdir().unwrap();

    let clean = drift_of(&{
        let d = tmp.path().join("clean");
        campaign(&d, &src, false);
        d
    });
    let drift = clean.drift.as_ref().expect("report.json drift");
    assert_eq!(drift.batches.len(), N / BATCH);
    assert_eq!(drift.annotators.len(), ANNOTATORS * N / BATCH);
    assert!(drift.tests > 500, "{} tests", drift.tests);
    assert!(
        drift.alarms.is_empty(),
        "the real campaign alarmed: {:#?}",
        drift.alarms
    );
    // The followed checks do flag real items: the campaign is not silent.
    let flagged: f64 = drift
        .batches
        .iter()
        .map(|b| b.flagged["wrong_label"] * b.items as f64)
        .sum();
    assert!(flagged > 100.0, "wrong_label flags {flagged} items");

    assert!(drift_flagged(&tmp.path().join("clean")).is_empty());
    let planted_dir = tmp.path().join("planted");
    campaign(&planted_dir, &src, true);
    let planted = drift_of(&planted_dir);
    let alarms = &planted.drift.as_ref().expect("report.json drift").alarms;
    eprintln!("planted: {alarms:#?}");
    let first = alarms
        .iter()
        .filter(|a| a.kind == DriftKind::Annotator)
        .map(|a| {
            assert_eq!(
                a.annotator.as_deref(),
                Some("a3"),
                "a stray annotator alarm: {a:?}"
            );
            a.batch.clone()
        })
        .min()
        .expect("no annotator alarm for the randomised annotator");
    let want = [
        format!("b{FROM_BATCH:02}"),
        format!("b{:02}", FROM_BATCH + 1),
    ];
    assert!(
        want.contains(&first),
        "first a3 alarm at {first}, not {want:?}"
    );
    // A dataset-level `quality` alarm is allowed (a3 really lowers the
    // batch's quality, from batch 12 on); a class alarm is not: random labels
    // keep the balanced class mix.
    for a in alarms {
        assert!(
            matches!(a.kind, DriftKind::Annotator | DriftKind::Quality),
            "unexpected alarm {a:?}"
        );
        if a.kind == DriftKind::Quality {
            assert!(a.batch.as_str() >= want[0].as_str(), "{a:?}");
        }
    }
}
