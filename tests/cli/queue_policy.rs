//! Queue policies: budget, de-duplication, per-class minimums, spot checks and
//! review-all, on hand-made items whose exact queue is worked out in comments,
//! plus one end-to-end run on a small classification dataset with planted
//! near-duplicate clusters.

use std::collections::HashSet;
use std::path::Path;

use crate::common::*;
use triage::queue::policy::{Candidate, Pick, Policy, Why, select};
use triage::schema::QueueRow;

fn cand(class: u32, cluster: Option<u32>, annotator: &'static str) -> Candidate<'static> {
    Candidate {
        class: Some(class),
        cluster,
        annotator: Some(annotator),
    }
}

/// Ten items in priority order (position = rank before the policy):
///
/// | pos | class | cluster | annotator |
/// |-----|-------|---------|-----------|
/// | 0   | 0     | A       | ann       |
/// | 1   | 0     | A       | ann       |
/// | 2   | 1     | -       | ann       |
/// | 3   | 0     | B       | ann       |
/// | 4   | 0     | -       | ann       |
/// | 5   | 0     | B       | new       |
/// | 6   | 1     | -       | ann       |
/// | 7   | 2     | -       | ann       |
/// | 8   | 2     | A       | ann       |
/// | 9   | 0     | -       | new       |
///
/// De-duplication: A is represented by 0 (1 and 8 are its copies), B by 3
/// (5 is its copy). Eligible for the ranking: 0, 2, 3, 4, 6, 7, 9.
fn ten() -> Vec<Candidate<'static>> {
    vec![
        cand(0, Some(100), "ann"),
        cand(0, Some(100), "ann"),
        cand(1, None, "ann"),
        cand(0, Some(7), "ann"),
        cand(0, None, "ann"),
        cand(0, Some(7), "new"),
        cand(1, None, "ann"),
        cand(2, None, "ann"),
        cand(2, Some(100), "ann"),
        cand(0, None, "new"),
    ]
}

fn order(p: &[Pick]) -> Vec<usize> {
    p.iter().map(|p| p.pos).collect()
}

fn budget_of(p: &[Pick]) -> Vec<usize> {
    p.iter().filter(|p| p.in_budget).map(|p| p.pos).collect()
}

fn get(p: &[Pick], pos: usize) -> &Pick {
    p.iter().find(|p| p.pos == pos).unwrap()
}

fn policy(budget: usize) -> Policy {
    Policy {
        budget: Some(budget),
        ..Policy::default()
    }
}

#[test]
fn budget_with_and_without_dedup() {
    // Budget 4 with de-dup: the first four eligible, 0 2 3 4; the rest keep
    // their priority order below: 1 5 6 7 8 9.
    let p = select(&ten(), &policy(4));
    assert_eq!(order(&p), vec![0, 2, 3, 4, 1, 5, 6, 7, 8, 9]);
    assert_eq!(budget_of(&p), vec![0, 2, 3, 4]);
    assert_eq!(p.also_in_cluster(0), [1, 8]);
    assert_eq!(p.also_in_cluster(3), [5]);
    assert_eq!(get(&p, 1).why, Why::Duplicate(0));
    assert_eq!(get(&p, 8).why, Why::Duplicate(0));
    assert_eq!(get(&p, 5).why, Why::Duplicate(3));
    assert_eq!(get(&p, 6).why, Why::Below);
    assert!(p.also_in_cluster(1).is_empty());
    assert!(p.iter().all(|p| !p.spot_check() && !p.review_all));

    // Without de-dup: simply the first four.
    let p = select(
        &ten(),
        &Policy {
            dedup: false,
            ..policy(4)
        },
    );
    assert_eq!(order(&p), (0..10).collect::<Vec<_>>());
    assert_eq!(budget_of(&p), vec![0, 1, 2, 3]);
    assert!((0..10).all(|pos| p.also_in_cluster(pos).is_empty()));

    // No budget: the plain ranking, every item in it, nothing de-duplicated.
    let p = select(&ten(), &Policy::default());
    assert_eq!(budget_of(&p), (0..10).collect::<Vec<_>>());
    assert_eq!(order(&p), (0..10).collect::<Vec<_>>());
    assert!(
        p.iter()
            .all(|pk| pk.why == Why::Ranking && p.also_in_cluster(pk.pos).is_empty())
    );
}

#[test]
fn per_class_minimum() {
    // Budget 5, F = 0.2: R = 5, q = floor(0.2 * 5) = 1. Reserved: class 0 -> 0,
    // class 1 -> 2, class 2 -> 7. The plain top 5 (0 2 3 4 6) fills the two
    // remaining slots with 3 and 4; 6 is pushed out. 7 is the only pick the
    // ranking would not have made.
    let p = select(
        &ten(),
        &Policy {
            min_per_class: 0.2,
            ..policy(5)
        },
    );
    assert_eq!(budget_of(&p), vec![0, 2, 3, 4, 7]);
    assert_eq!(order(&p), vec![0, 2, 3, 4, 7, 1, 5, 6, 8, 9]);
    assert_eq!(get(&p, 7).why, Why::MinShare(2));
    assert_eq!(get(&p, 4).why, Why::Ranking);
    assert_eq!(get(&p, 6).why, Why::Below);

    // F = 0.4: q = 2. Class 0 -> 0 3, class 1 -> 2 6, class 2 -> 7 (its only
    // eligible item): five reservations fill the budget; 4 drops out.
    let p = select(
        &ten(),
        &Policy {
            min_per_class: 0.4,
            ..policy(5)
        },
    );
    assert_eq!(budget_of(&p), vec![0, 2, 3, 6, 7]);
    assert_eq!(get(&p, 6).why, Why::Ranking, "6 is in the plain top 5");
    assert_eq!(get(&p, 7).why, Why::MinShare(2));
    assert_eq!(get(&p, 4).why, Why::Below);

    // F = 0 changes nothing.
    assert_eq!(
        select(&ten(), &policy(5)),
        select(
            &ten(),
            &Policy {
                min_per_class: 0.0,
                ..policy(5)
            }
        )
    );
}

#[test]
fn review_all_is_in_addition_and_overrides_dedup() {
    // Annotator "new" made 5 (a copy of 3) and 9. Budget 4 ranks 0 2 3 4 as
    // before (5 and 9 never compete); both join the budget on top: 6 items.
    let p = select(
        &ten(),
        &Policy {
            review_all_from: vec!["new".into()],
            ..policy(4)
        },
    );
    assert_eq!(budget_of(&p), vec![0, 2, 3, 4, 5, 9]);
    assert_eq!(order(&p), vec![0, 2, 3, 4, 5, 9, 1, 6, 7, 8]);
    assert_eq!(get(&p, 5).why, Why::ReviewAll);
    assert!(get(&p, 5).review_all && get(&p, 9).review_all);
    assert!(!get(&p, 0).review_all);
    assert_eq!(p.also_in_cluster(3), [5]);
}

fn many(n: usize) -> Vec<Candidate<'static>> {
    (0..n).map(|i| cand((i % 3) as u32, None, "ann")).collect()
}

fn spots(p: &[Pick]) -> Vec<usize> {
    let mut v: Vec<usize> = p.iter().filter(|p| p.spot_check()).map(|p| p.pos).collect();
    v.sort();
    v
}

#[test]
fn spot_checks_are_seeded_and_come_from_outside_the_ranking() {
    // Budget 20, share 0.25: S = round(5.0) = 5, R = 15: positions 0..15 are
    // the ranking's picks, the five spot checks come from 15..100.
    let pol = |seed| Policy {
        spot_check: 0.25,
        seed,
        ..policy(20)
    };
    let p = select(&many(100), &pol(1));
    let s = spots(&p);
    assert_eq!(s.len(), 5);
    assert!(s.iter().all(|&i| i >= 15), "{s:?}");
    assert_eq!(budget_of(&p).len(), 20);
    assert_eq!(&budget_of(&p)[..15], &(0..15).collect::<Vec<_>>()[..]);
    for &i in &s {
        assert!(get(&p, i).in_budget);
    }
    // Same seed, same draw; other seeds, other draws.
    assert_eq!(select(&many(100), &pol(1)), p);
    assert_ne!(spots(&select(&many(100), &pol(2))), s);
    assert_ne!(spots(&select(&many(100), &pol(3))), s);
    // round(0.05 * 30) = round(1.5) = 2; round(0.05 * 20) = 1; round(0.05 * 9) = 0.
    for (budget, want) in [(30, 2), (20, 1), (9, 0)] {
        let p = select(
            &many(100),
            &Policy {
                spot_check: 0.05,
                ..policy(budget)
            },
        );
        assert_eq!(spots(&p).len(), want, "budget {budget}");
        assert_eq!(budget_of(&p).len(), budget);
    }
    // Spot checks never pick a de-duplicated copy: 0..10 each have a copy at
    // 10..20; budget 10 with share 0.5 ranks 0..5 and draws 5 from 5..10 and
    // 20..30 only.
    let mut c = many(30);
    for i in 0..10 {
        c[i].cluster = Some(i as u32);
        c[i + 10].cluster = Some(i as u32);
    }
    for seed in 0..20 {
        let p = select(
            &c,
            &Policy {
                spot_check: 0.5,
                seed,
                ..policy(10)
            },
        );
        let s = spots(&p);
        assert_eq!(s.len(), 5);
        assert!(
            s.iter()
                .all(|&i| (5..10).contains(&i) || (20..30).contains(&i)),
            "{s:?}"
        );
    }
}

/// A classification dataset (classes a, b, c) of ten items with two planted
/// near-duplicate clusters of the same label, {x0, x1} and {x4, x5} (so no
/// label conflict moves a priority). priority = 1 - normalized_margin:
///
/// | id | label | probs          | nm    | priority |
/// |----|-------|----------------|-------|----------|
/// | x0 | a     | .10 .80 .10    | .15   | .85      |
/// | x1 | a     | .15 .75 .10    | .20   | .80      |
/// | x2 | b     | .70 .20 .10    | .25   | .75      |
/// | x3 | a     | .30 .60 .10    | .35   | .65      |
/// | x4 | a     | .40 .50 .10    | .45   | .55      |
/// | x5 | a     | .45 .45 .10    | .50   | .50      |
/// | x6 | b     | .20 .60 .20    | .70   | .30      |
/// | x7 | c     | .30 .10 .60    | .65   | .35      |
/// | x8 | c     | .10 .10 .80    | .85   | .15      |
/// | x9 | b     | .05 .90 .05    | .925  | .075     |
///
/// x9 was annotated by "newbie", the rest by "alice".
pub fn small_dataset(d: &Path) {
    std::fs::write(
        d.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"a\", \"b\", \"c\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nembeddings = \"emb.npy\"\n",
    )
    .unwrap();
    let labels = ["a", "a", "b", "a", "a", "a", "b", "c", "c", "b"];
    let mut csv = String::from("id,label,annotator\n");
    for (i, l) in labels.iter().enumerate() {
        let who = if i == 9 { "newbie" } else { "alice" };
        csv.push_str(&format!("x{i},{l},{who}\n"));
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    let probs: [[f32; 3]; 10] = [
        [0.10, 0.80, 0.10],
        [0.15, 0.75, 0.10],
        [0.70, 0.20, 0.10],
        [0.30, 0.60, 0.10],
        [0.40, 0.50, 0.10],
        [0.45, 0.45, 0.10],
        [0.20, 0.60, 0.20],
        [0.30, 0.10, 0.60],
        [0.10, 0.10, 0.80],
        [0.05, 0.90, 0.05],
    ];
    let flat: Vec<f32> = probs.iter().flatten().copied().collect();
    write_f32(&d.join("probs.npy"), &[10, 3], &flat);
    // Embeddings: one basis direction per group; the copies lean 1 % towards
    // the next axis (cosine distance ~5e-5, far below the 0.05 threshold).
    let dim = 10;
    let group = [0, 0, 1, 2, 3, 3, 4, 5, 6, 7];
    let mut emb = vec![0.0f32; 10 * dim];
    for (i, &g) in group.iter().enumerate() {
        emb[i * dim + g] = 1.0;
        if i == 1 || i == 5 {
            emb[i * dim + g + 1] = 0.01;
        }
    }
    write_f32(&d.join("emb.npy"), &[10, dim], &emb);
}

fn ids(q: &[QueueRow<'_>]) -> Vec<String> {
    q.iter().map(|r| r.id.to_string()).collect()
}

#[test]
fn end_to_end_budget_dedup_stratification_and_review_all() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small_dataset(d);
    let out = d.join("out");
    run_ok(
        d,
        &out,
        &[
            "--knn-k",
            "3",
            "--budget",
            "4",
            "--min-per-class",
            "0.25",
            "--review-all-from",
            "newbie",
        ],
    );
    // K = 4, R = 4, q = floor(0.25 * 4) = 1. Eligible in priority order:
    // x0 x2 x3 x4 x7 x6 x8 (x1 and x5 are copies, x9 is review-all).
    // Reserved: a -> x0, b -> x2, c -> x7; the last slot goes to x3, so x4
    // drops out. x9 joins on top. Budget in priority order: x0 x2 x3 x7 x9;
    // below: x1 x4 x5 x6 x8.
    let q = read_queue_rows(&out);
    assert_eq!(
        ids(&q),
        ["x0", "x2", "x3", "x7", "x9", "x1", "x4", "x5", "x6", "x8"]
    );
    let in_budget: Vec<bool> = q.iter().map(|r| r.in_budget).collect();
    assert_eq!(
        in_budget,
        [
            true, true, true, true, true, false, false, false, false, false
        ]
    );
    let ranks: Vec<usize> = q.iter().map(|r| r.rank).collect();
    assert_eq!(ranks, (1..=10).collect::<Vec<usize>>());
    assert_eq!(q[0].also_in_cluster, ["x1"]);
    assert_eq!(q[6].also_in_cluster, ["x5"]);
    assert!(q[1].also_in_cluster.is_empty());
    assert_eq!(
        q[3].reasons[0],
        "minimum share for class \"c\" (--min-per-class)"
    );
    assert!(q[4].review_all);
    assert_eq!(
        q[4].reasons[0],
        "new annotator \"newbie\": every item reviewed (--review-all-from)"
    );
    assert!(q[5].reasons[0].contains("represented by x0"), "{:?}", q[5]);
    assert!(q.iter().all(|r| !r.spot_check));
    let r = read_report_typed(&out);
    let qp = &r.queue_policy;
    assert_eq!(qp.budget, Some(4));
    assert_eq!(qp.in_budget, 5);
    assert_eq!(qp.per_class_minimum, 1);
    assert_eq!(qp.review_all_items, 1);
    assert_eq!(r.options.budget, Some(4));
    assert_eq!(r.options.min_per_class, 0.25);
    // Views: wrong_label flags 1 - nm > 0.5: x0 .85, x1 .80, x2 .75, x3 .65,
    // x4 .55 (x5 at exactly .5 is not flagged), ranked by the score.
    let wl = &r.views["wrong_label"];
    assert_eq!(wl.flagged, 5);
    let v: Vec<&str> = wl.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(v, ["x0", "x1", "x2", "x3", "x4"]);
    assert_eq!(wl.items[1].rank, 6, "x1 sits at queue rank 6");
    assert_eq!(r.views["duplicate_conflict"].flagged, 0);
    assert_eq!(r.views["boundary_disagreement"].flagged, 0);
    let csv = std::fs::read_to_string(out.join("queue.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains(",in_budget,spot_check,review_all,also_in_cluster,"),
        "{header}"
    );

    // The same run with a spot check: round(0.5 * 4) = 2 slots, R = 2,
    // q = floor(0.25 * 2) = 0; ranking x0 x2; two spot checks drawn from
    // x3 x4 x7 x6 x8 x9 (no review-all this time); identical with the same seed.
    let spot = |seed: &str, out: &Path| {
        run_ok(
            d,
            out,
            &[
                "--knn-k",
                "3",
                "--budget",
                "4",
                "--spot-check",
                "0.5",
                "--seed",
                seed,
            ],
        );
        read_queue_rows(out)
    };
    let a = spot("7", &d.join("s1"));
    let b = spot("7", &d.join("s2"));
    assert_eq!(a, b);
    let picked: Vec<&str> = a
        .iter()
        .filter(|r| r.spot_check)
        .map(|r| r.id.as_ref())
        .collect();
    assert_eq!(picked.len(), 2);
    let pool: HashSet<&str> = ["x3", "x4", "x7", "x6", "x8", "x9"].into_iter().collect();
    assert!(picked.iter().all(|id| pool.contains(id)), "{picked:?}");
    assert_eq!(&ids(&a)[..2], ["x0", "x2"]);
    assert!(a.iter().take(4).all(|r| r.in_budget));
    let sr = a.iter().find(|r| r.spot_check).unwrap();
    assert_eq!(
        sr.reasons[0],
        "spot check (random draw among items the ranking did not pick)"
    );
}

#[test]
fn policy_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    small_dataset(d);
    let out = d.join("out");
    let o = d.to_str().unwrap();
    let outs = out.to_str().unwrap();
    for (extra, needle) in [
        (vec!["--budget", "0"], "--budget"),
        (vec!["--spot-check", "1.5"], "--spot-check"),
        (
            vec!["--budget", "4", "--min-per-class", "0.5"],
            "--min-per-class",
        ),
        (vec!["--spot-check", "0.1"], "give --budget"),
    ] {
        let mut args = vec!["run", o, "--out", outs];
        args.extend(extra);
        let r = triage(&args);
        assert_eq!(r.status.code(), Some(2), "{}", describe(&args, &r));
        assert!(
            String::from_utf8_lossy(&r.stderr).contains(needle),
            "{}",
            describe(&args, &r)
        );
    }
    // --review-all-from without an annotator column.
    std::fs::write(
        d.join("items.csv"),
        "id,label\nx0,a\nx1,a\nx2,b\nx3,a\nx4,a\nx5,a\nx6,b\nx7,c\nx8,c\nx9,b\n",
    )
    .unwrap();
    let args = ["run", o, "--out", outs, "--review-all-from", "newbie"];
    let r = triage(&args);
    assert_eq!(r.status.code(), Some(2), "{}", describe(&args, &r));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("`annotator` column"), "{err}");
    assert!(!out.exists(), "nothing written on error");
}
