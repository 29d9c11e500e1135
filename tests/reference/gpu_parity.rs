//! Every metric on every backend configuration: the CPU reference against
//! itself, the wgpu backend, `Fallback` over the wgpu backend, and the wgpu
//! backend cut into small tiles, chunks and bindings ([`parity::Tester`]).
//! Integer counts (pixels, confusion, calibration bin counts, Boundary IoU
//! band counts, first invalid pixel, kNN ids and distances, mask counts) must
//! agree bit for bit, float scores within `FLOAT_TOLERANCE` (2e-5 absolute).
//!
//! Without an adapter the GPU configurations report themselves skipped,
//! unless `TRIAGE_REQUIRE_GPU=1` (set in CI, which installs lavapipe): then a
//! missing adapter is a failure. Every case also checks that the numbers of a
//! GPU configuration really came from the GPU backend, and every test fails
//! when a configuration compared nothing.

use crate::common;
use crate::parity::{self, Kind, Tester, gpu};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triage::backend::gpu::{AdapterPolicy, FLOAT_TOLERANCE, GpuBackend};
use triage::backend::{Backend, ProbBuf, RowBatch, SegBatch, SegItem};

fn close(what: &str, g: f64, c: f64) {
    assert!(
        (g - c).abs() <= FLOAT_TOLERANCE,
        "{what}: gpu {g} vs cpu {c} (tolerance {FLOAT_TOLERANCE})"
    );
}

/// Softmax-like random probabilities, planar (C, H, W), with the label map
/// mostly agreeing with the argmax; `ignore` pixels sprinkled in.
fn random_item(
    rng: &mut ChaCha8Rng,
    c: usize,
    h: usize,
    w: usize,
    f16: bool,
    ignore_rate: f64,
) -> SegItem {
    let hw = h * w;
    let mut p = vec![0f32; c * hw];
    let mut labels = vec![0u16; hw];
    // Blocky "objects" so bands have interiors, in a class subset so some
    // classes are absent from one side.
    let cell = rng.random_range(2..12);
    let present: Vec<usize> = (0..c).filter(|_| rng.random_bool(0.6)).collect();
    let present = if present.is_empty() { vec![0] } else { present };
    let cols = w / cell + 1;
    let blocks: Vec<usize> = (0..(h / cell + 1) * cols)
        .map(|_| present[rng.random_range(0..present.len())])
        .collect();
    for i in 0..hw {
        let (y, x) = (i / w, i % w);
        let truth = blocks[(y / cell) * cols + x / cell];
        let sharp = rng.random_range(0.5f32..8.0);
        let mut sum = 0.0;
        for k in 0..c {
            let v = if k == truth { sharp } else { 0.0 } + rng.random_range(0.0f32..1.5);
            let e = v.exp();
            p[k * hw + i] = e;
            sum += e;
        }
        for k in 0..c {
            p[k * hw + i] /= sum;
        }
        labels[i] = if rng.random_bool(ignore_rate) {
            255
        } else if rng.random_bool(0.1) {
            rng.random_range(0..c as u16)
        } else {
            truth as u16
        };
    }
    SegItem {
        probs: to_buf(p, f16),
        planes: None,
        labels,
        height: h,
        width: w,
        unlabelled: false,
    }
}

fn to_buf(p: Vec<f32>, f16: bool) -> ProbBuf {
    if f16 {
        ProbBuf::F16(
            p.iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect(),
        )
    } else {
        ProbBuf::F32(p)
    }
}

fn seg_batch(items: Vec<SegItem>, classes: usize, logits: bool) -> SegBatch {
    SegBatch {
        items,
        classes,
        ignore_index: 255,
        logits,
    }
}

#[test]
fn random_segmentation_batches_f32_and_f16() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (classes, sizes) in [
        (2usize, vec![(1usize, 1usize), (37, 1031), (64, 64)]),
        (19, vec![(17, 23), (128, 96), (1, 300)]),
        (150, vec![(40, 33), (3, 7)]),
    ] {
        for f16 in [false, true] {
            let items = sizes
                .iter()
                .map(|&(h, w)| random_item(&mut rng, classes, h, w, f16, 0.05))
                .collect();
            t.seg(
                &format!("C={classes} f16={f16}"),
                &seg_batch(items, classes, false),
            );
        }
    }
    t.finish();
}

#[test]
fn tiles_and_chunks_split_inside_items() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // 300×300 = 90 000 pixels: two tiles of at most 65 536 by default. With
    // C = 150 a tile is 39 MB, so every tile is its own upload chunk and chunk
    // boundaries fall inside items; 5 items make 10 chunks. The small
    // configurations cut each item into hundreds of tiles and the batch into
    // several slot groups.
    let (h, w, c) = (300usize, 300usize, 150usize);
    for config in t.configs() {
        if let Some(sizes) = config.sizes {
            let max_tile = sizes.max_tile.min(1 << 16);
            assert!(
                ((h * w) as u64) > max_tile,
                "[{}] items span several tiles",
                config.name
            );
        }
    }
    assert!(
        5 * (h * w * 4) as u64 > parity::SMALL_TILES.binding,
        "the small binding splits the batch into slot groups"
    );
    let items = (0..5)
        .map(|_| random_item(&mut rng, c, h, w, true, 0.02))
        .collect();
    t.seg("C=150 300x300 x5", &seg_batch(items, c, false));
    // Few classes: several tiles per upload chunk in the small-chunk
    // configuration (512 samples of 2 × f32 = 4 KiB per tile, 48 KiB chunks).
    let items = (0..3)
        .map(|_| random_item(&mut rng, 2, 97, 211, false, 0.05))
        .collect();
    t.seg("C=2 97x211 x3", &seg_batch(items, 2, false));
    t.finish();
}

#[test]
fn edge_cases_exact_one_bin_edges_ignore_and_edges() {
    let mut t = Tester::new();
    // 3 classes, 6×5 image. Confidences exactly 1.0 and exactly on bin edges
    // (k/15 rounded to f32, and 0.6, 0.4 which land on edges 9 and 6), a
    // mask touching every image edge, an ignored column, a class absent from
    // the prediction.
    let (h, w, c) = (6usize, 5usize, 3usize);
    let hw = h * w;
    let confs = [
        1.0f32,
        0.6,
        0.4,
        2.0 / 3.0,
        1.0 / 3.0 + 1e-7,
        0.8,
        0.2 + 0.4,
        14.0 / 15.0,
    ];
    let mut p = vec![0f32; c * hw];
    let mut labels = vec![0u16; hw];
    for i in 0..hw {
        let (y, x) = (i / w, i % w);
        let top = confs[i % confs.len()];
        let pred = usize::from(x >= 2); // class 2 never predicted
        let rest = 1.0 - top;
        p[pred * hw + i] = top;
        p[((pred + 1) % 2) * hw + i] = rest;
        labels[i] = if x == 4 {
            255
        } else if y == 0 || y == h - 1 {
            2
        } else {
            u16::from(x >= 3)
        };
    }
    // Hand-checked: the confidences of exactly 1.0 (pixels 0, 8, 16, 24,
    // the ignored ones excluded) fall in bin 14, never a 16th bin.
    let ones = (0..hw)
        .filter(|&i| i % confs.len() == 0 && labels[i] != 255)
        .count() as u64;
    for f16 in [false, true] {
        let item = SegItem {
            probs: to_buf(p.clone(), f16),
            planes: None,
            labels: labels.clone(),
            height: h,
            width: w,
            unlabelled: false,
        };
        let batch = seg_batch(vec![item], c, false);
        let case = format!("edge f16={f16}");
        t.seg(&case, &batch);
        t.each(&format!("{case}, hand-checked bins"), |check, config| {
            let stats = config.backend.score_items(&batch).unwrap();
            check.holds("exact 1.0 in bin 14", stats[0].bins.count[14] >= ones);
            check.eq(
                "every scored pixel binned",
                stats[0].bins.count.iter().sum::<u64>(),
                stats[0].pixels,
            );
        });
    }
    t.finish();
}

#[test]
fn invalid_probabilities_report_the_same_first_pixel() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (bad, value) in [
        (77usize, f32::NAN),
        (5, -0.25),
        (130, f32::INFINITY),
        (200, 0.9),
    ] {
        for f16 in [false, true] {
            let mut it = random_item(&mut rng, 4, 16, 16, false, 0.0);
            if let ProbBuf::F32(v) = &mut it.probs {
                v[256 + bad] = value; // class 1 of pixel `bad`
                v[256 + bad + 3] = value;
            }
            if f16 {
                let ProbBuf::F32(v) = &it.probs else {
                    unreachable!()
                };
                it.probs = to_buf(v.clone(), true);
            }
            let want = t.seg(
                &format!("invalid {value} f16={f16}"),
                &seg_batch(vec![it], 4, false),
            );
            assert_eq!(want[0].first_invalid, Some(bad), "value {value} f16={f16}");
        }
    }
    t.finish();
}

/// Unlabelled items (scored against their own prediction: the
/// self-confidence is the top probability, the normalised-margin sums hold
/// the margin) mixed with annotated ones in one batch, their label maps
/// (ignore pixels included) not read; C = 150 passes the private counters.
#[test]
fn unlabelled_items_in_a_batch() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    for (classes, f16) in [(2usize, false), (7, true), (150, false)] {
        let items: Vec<SegItem> = (0..4)
            .map(|i| {
                let mut it = random_item(&mut rng, classes, 23 + i, 41, f16, 0.1);
                it.unlabelled = i % 2 == 0;
                it
            })
            .collect();
        let got = t.seg(
            &format!("C={classes} unlabelled"),
            &seg_batch(items, classes, false),
        );
        // The reference's own definitions, on the first unlabelled item.
        let st = &got[0];
        assert_eq!(
            st.pixels,
            23 * 41,
            "every pixel of an unlabelled item counts"
        );
        assert_eq!(
            st.confusion.correct(),
            st.pixels,
            "scored against its prediction"
        );
        assert!(
            (st.sums.self_confidence - (st.pixels as f64 - st.sums.least_confidence)).abs() < 1e-3
        );
        assert!((st.sums.normalized_margin - st.sums.margin).abs() < 1e-9);
    }
    t.finish();
}

#[test]
fn logits_segmentation() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut it = random_item(&mut rng, 5, 33, 41, false, 0.05);
    if let ProbBuf::F32(v) = &mut it.probs {
        for x in v.iter_mut() {
            *x = x.ln() * 1.7 - 3.0; // logits, some negative
        }
    }
    t.seg("logits", &seg_batch(vec![it], 5, true));
    t.finish();
}

#[test]
fn classification_rows() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (n, c, f16, logits) in [
        (1000usize, 2usize, false, false),
        (70_000, 10, false, false), // more rows than one tile
        (3000, 150, true, false),
        (500, 7, false, true),
    ] {
        let mut p = vec![0f32; n * c];
        let mut labels = vec![0u32; n];
        for r in 0..n {
            let row = &mut p[r * c..(r + 1) * c];
            let mut s = 0.0;
            for x in row.iter_mut() {
                *x = rng.random_range(0.0f32..1.0).powi(4);
                s += *x;
            }
            for x in row.iter_mut() {
                *x = if logits { (*x / s).ln() } else { *x / s };
            }
            labels[r] = rng.random_range(0..c as u32);
        }
        if !logits {
            p[c * 3] = 1.0; // an exact 1.0 confidence
            p[c * 4] = 1.0; // 1.0 with a sum 1 ulp above 1: kept, not divided
            for k in 1..c {
                p[c * 3 + k] = 0.0;
                p[c * 4 + k] = if k == 1 { 1e-7 } else { 0.0 };
            }
        }
        let batch = RowBatch {
            probs: to_buf(p, f16),
            labels,
            classes: c,
            logits,
        };
        let case = format!("rows n={n} C={c} f16={f16} logits={logits}");
        let want = t.rows(&case, &batch);
        assert_eq!(want.samples.len(), n, "{case}");
        if !logits {
            t.each(&format!("{case}, hand-checked"), |check, config| {
                let got = config.backend.score_rows(&batch).unwrap();
                check.eq("exact 1.0 survives", got.samples[3].confidence, 1.0);
                if !f16 {
                    // f16 cannot hold 1e-7; in f32 the sum is 1 + 2^-23, within C·ε.
                    check.eq(
                        "rounding-level sums are not divided",
                        got.samples[4].confidence,
                        1.0,
                    );
                }
            });
        }
    }
    t.finish();
}

/// End to end: `--backend gpu` writes the same queue and report as `--backend
/// cpu`, and says it ran on the GPU.
#[test]
fn cli_gpu_matches_cpu_on_the_demo() {
    if gpu().is_none() {
        return;
    }
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo");
    let tmp = tempfile::tempdir().unwrap();
    let (g, c) = (tmp.path().join("g"), tmp.path().join("c"));
    common::run_ok(&demo, &g, &["--backend", "gpu", "--batch-size", "3"]);
    common::run_ok(&demo, &c, &["--backend", "cpu"]);
    let rg = common::read_report(&g);
    assert_eq!(rg["backend"]["name"], "gpu", "the GPU path ran");
    assert!(rg["backend"]["adapter"].is_string());
    let rc = common::read_report(&c);
    assert_eq!(rg["confusion"], rc["confusion"]);
    assert_eq!(rg["samples"], rc["samples"]);
    for (a, b) in rg["reliability"]
        .as_array()
        .unwrap()
        .iter()
        .zip(rc["reliability"].as_array().unwrap())
    {
        assert_eq!(a["count"], b["count"]);
    }
    for key in ["accuracy", "ece", "mce"] {
        close(key, rg[key].as_f64().unwrap(), rc[key].as_f64().unwrap());
    }
    assert_eq!(
        rg["per_class"], rc["per_class"],
        "pooled IoU, Dice and Boundary IoU come from exact counts"
    );
    let qg = common::read_queue(&g);
    let qc = common::read_queue(&c);
    let by_id: std::collections::HashMap<_, _> = qc
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect();
    for (rank, r) in qg.iter().enumerate() {
        let cr = by_id[r["id"].as_str().unwrap()];
        close(
            "priority",
            r["priority"].as_f64().unwrap(),
            cr["priority"].as_f64().unwrap(),
        );
        // Ranks may only swap between items whose priorities tie within tolerance.
        let cp = qc[rank]["priority"].as_f64().unwrap();
        close(
            "priority at the same rank",
            r["priority"].as_f64().unwrap(),
            cp,
        );
        for (k, v) in r["scores"].as_object().unwrap() {
            match (v.as_f64(), cr["scores"][k].as_f64()) {
                (Some(a), Some(b)) => close(k, a, b),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{k} defined on one side only"),
            }
        }
        assert_eq!(
            r["reasons"].as_array().unwrap().len(),
            cr["reasons"].as_array().unwrap().len()
        );
        assert_eq!(r["neighbors"], cr["neighbors"], "near-duplicate partners");
        assert_eq!(r["cluster"], cr["cluster"]);
    }
    // The neighbour stage ran its exact kNN and mask comparisons on the GPU.
    assert_eq!(rg["duplicates"]["method"], "exact-gpu");
    assert_eq!(rc["duplicates"]["method"], "exact");
    assert!(rg["duplicates"]["conflicting_pairs"].as_u64().unwrap() > 0);
    for key in [
        "pairs",
        "conflicting_pairs",
        "clusters",
        "median_nn_distance",
    ] {
        assert_eq!(rg["duplicates"][key], rc["duplicates"][key], "{key}");
    }
    assert_eq!(
        std::fs::read(g.join("clusters.jsonl")).unwrap(),
        std::fs::read(c.join("clusters.jsonl")).unwrap(),
        "clusters.jsonl is identical on both backends"
    );
}

fn unit_rows(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    for r in v.chunks_mut(d) {
        let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= norm.max(1e-12));
    }
    v
}

fn embeddings(rows: Vec<f32>, n: usize, d: usize) -> triage::neighbors::Embeddings {
    let ids: triage::io::manifest::Ids = (0..n).map(|i| format!("e{i}")).collect();
    triage::neighbors::Embeddings::from_rows(std::path::Path::new("emb.npy"), rows, n, d, &ids)
        .unwrap()
}

/// The exact kNN gives the CPU reference's graph on every configuration: the
/// same neighbours in the same order and bit-identical distances, for
/// dimensions that are not a multiple of the shader's 32-wide chunks, for
/// fewer items than `k`, for duplicate rows (exact ties, broken by the lower
/// index), and when the rows are split into several bindings whose
/// candidate lists are merged (the small configurations: 37 and 64 rows per
/// chunk).
#[test]
fn knn_exact_matches_cpu() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut cases: Vec<(&str, triage::neighbors::Embeddings, usize)> = vec![
        (
            "random 300x48",
            embeddings(unit_rows(&mut rng, 300, 48), 300, 48),
            10,
        ),
        ("d = 1", embeddings(unit_rows(&mut rng, 40, 1), 40, 1), 5),
        ("n < k", embeddings(unit_rows(&mut rng, 4, 8), 4, 8), 10),
        (
            "d = 130, k = 56",
            embeddings(unit_rows(&mut rng, 150, 130), 150, 130),
            56,
        ),
        // Split into two dispatches per query chunk (896 candidates each at
        // d = 160), the second continuing the lists the first left.
        (
            "random 1000x160",
            embeddings(unit_rows(&mut rng, 1000, 160), 1000, 160),
            10,
        ),
    ];
    // Duplicate rows: items 2i and 2i+1 are identical, so every item has a
    // neighbour at distance exactly 0 and the rest tie in pairs.
    let base = unit_rows(&mut rng, 50, 16);
    let dup: Vec<f32> = base
        .chunks(16)
        .flat_map(|r| r.iter().chain(r))
        .copied()
        .collect();
    cases.push(("duplicate rows", embeddings(dup, 100, 16), 7));
    assert_eq!(triage::backend::gpu::candidates_per_dispatch(160, 18), 896);
    for config in t.configs() {
        if let Some(sizes) = config.sizes
            && sizes.knn_rows < 300
        {
            assert!(sizes.knn_rows < 100, "[{}] several kNN chunks", config.name);
        }
    }
    for (name, e, k) in &cases {
        let want = t.knn(name, e, *k);
        assert_eq!(want.method, "exact");
    }
    // Hand-worked: on the unit circle at 0°, 10°, 90°, 180°, item 3's nearest
    // are 2 (90° away) then 1 (170° away).
    let r = |deg: f32| [deg.to_radians().cos(), deg.to_radians().sin()];
    let rows: Vec<f32> = [0.0, 10.0, 90.0, 180.0]
        .iter()
        .flat_map(|&a| r(a))
        .collect();
    let e = embeddings(rows, 4, 2);
    t.knn("unit circle", &e, 2);
    t.each("unit circle, hand-worked", |check, config| {
        let got = config.backend.knn_exact(&e, 2).unwrap();
        let ids = |i| got.neighbours(i).map(|(j, _)| j).collect::<Vec<_>>();
        check.eq("item 3's neighbours", ids(3), vec![2, 1]);
        check.eq("item 0's neighbours", ids(0), vec![1, 2]);
    });
    // Beyond the shader's list length the GPU refuses instead of truncating
    // (a Fallback would finish on the CPU, so only the plain GPU ones).
    t.each("k = 57", |check, config| {
        if config.kind == Kind::Gpu {
            let err = config.backend.knn_exact(&cases[0].1, 57).unwrap_err();
            let err = err.to_string();
            check.holds(&format!("refused ({err})"), err.contains("at most 56"));
        }
    });
    if let Some(g) = gpu() {
        // The explicit-chunk entry point the benchmarks use.
        let want = t.reference().knn_exact(&cases[0].1, 10).unwrap();
        for chunk in [37, 64] {
            let got = g.knn_exact_chunked(&cases[0].1, 10, chunk).unwrap();
            assert_eq!(got.ids, want.ids, "knn_exact_chunked({chunk}): ids");
            assert_eq!(got.dist, want.dist, "knn_exact_chunked({chunk}): distances");
        }
    }
    t.finish();
}

/// The near-duplicate mask counts equal the CPU's bit for bit on every
/// configuration: random maps with ignore pixels, C = 2 and C = 150, an odd
/// pixel count (the packed u16 tail), 37 × 1031, and a hand-worked 2 × 4 pair.
#[test]
fn mask_confusion_matches_cpu() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (classes, n) in [(2usize, 1usize), (2, 4097), (19, 37 * 1031), (150, 300_001)] {
        let ig = 255u16;
        let mut map = |same: &[u16]| -> Vec<u16> {
            (0..n)
                .map(|i| {
                    if rng.random_bool(0.05) {
                        ig
                    } else if !same.is_empty() && rng.random_bool(0.8) {
                        same[i]
                    } else {
                        rng.random_range(0..classes as u16)
                    }
                })
                .collect()
        };
        let a = map(&[]);
        let b = map(&a);
        t.mask(&format!("C = {classes}, {n} pixels"), &a, &b, classes, ig);
    }
    // Hand-worked (src/metrics/mask_iou.rs): rows [[2, 1], [1, 3]].
    let a = [0, 0, 1, 1, 0, 1, 1, 255];
    let b = [0, 1, 1, 1, 0, 0, 1, 1];
    t.mask("hand-worked 2 x 4", &a, &b, 2, 255);
    t.each("hand-worked 2 x 4, values", |check, config| {
        let got = config.backend.mask_confusion(&a, &b, 2, 255).unwrap();
        check.eq("rows", got.rows(), vec![vec![2, 1], vec![1, 3]]);
        check.eq("mean IoU", got.mean_iou(), Some(0.55));
    });
    t.finish();
}

/// Two annotators' Boundary IoU band counts (segmentation agreement) equal
/// the CPU's bit for bit on every configuration: random blocky maps with
/// pixels ignored on either side, C = 3 and C = 1500 (past the shader's
/// private counters), odd sizes; and the hand-worked shifted square of
/// `src/metrics/boundary_iou.rs` (intersection 6, bands 12 and 12).
#[test]
fn annotator_pair_bands_match_cpu() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (classes, h, w) in [
        (3usize, 1usize, 1usize),
        (3, 37, 53),
        (19, 128, 96),
        (1500, 64, 65),
    ] {
        let ig = if classes > 255 { u16::MAX } else { 255 };
        let mut map = || -> Vec<u16> {
            let block = 1 + rng.random_range(0..6);
            let mut cells = std::collections::HashMap::new();
            (0..h * w)
                .map(|p| {
                    let key = ((p / w) / block, (p % w) / block);
                    let v = *cells
                        .entry(key)
                        .or_insert_with(|| rng.random_range(0..classes as u16));
                    if rng.random_bool(0.03) { ig } else { v }
                })
                .collect()
        };
        let (a, b) = (map(), map());
        t.bands(
            &format!("C = {classes}, {h} x {w}"),
            &a,
            &b,
            (h, w),
            classes,
            ig,
        );
    }
    let (h, w) = (8, 8);
    let mut g = vec![0u16; h * w];
    let mut p = vec![0u16; h * w];
    for y in 2..6 {
        for x in 2..6 {
            g[y * w + x] = 1;
            p[y * w + x + 1] = 1;
        }
    }
    t.each("shifted square, values", |check, config| {
        let got = config.backend.mask_bands(&g, &p, (h, w), 2, 255).unwrap();
        check.eq(
            "class 1",
            (got.inter[1], got.gt[1], got.pred[1]),
            (6, 12, 12),
        );
    });
    t.finish();
}

/// Every score of the score table that the score stage computes from a
/// backend's numbers is compared, with a defined value, on every
/// configuration: labelled and unlabelled segmentation items and
/// classification rows. A score added to the table is compared here
/// without a line of this file changing; one a backend leaves undefined or
/// wrong fails.
#[test]
fn every_declared_score_is_compared_on_every_configuration() {
    let mut t = Tester::new();
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    let items: Vec<SegItem> = (0..4)
        .map(|i| {
            let mut it = random_item(&mut rng, 5, 19 + i, 23, false, 0.1);
            it.unlabelled = i == 1;
            it
        })
        .collect();
    t.seg("every score, segmentation", &seg_batch(items, 5, false));
    let (n, c) = (300usize, 4usize);
    let mut p = vec![0f32; n * c];
    for row in p.chunks_mut(c) {
        let mut s = 0.0;
        for x in row.iter_mut() {
            *x = rng.random::<f32>() + 1e-3;
            s += *x;
        }
        row.iter_mut().for_each(|x| *x /= s);
    }
    let batch = RowBatch {
        probs: ProbBuf::F32(p),
        labels: (0..n as u32).map(|r| r % c as u32).collect(),
        classes: c,
        logits: false,
    };
    t.rows("every score, rows", &batch);
    t.finish_covering_every_score();
}

/// The suite itself: a configuration that compared no score fails the
/// coverage check.
#[test]
#[should_panic(expected = "never compared the declared score")]
fn a_configuration_that_leaves_a_score_out_fails() {
    Tester::new().finish_covering_every_score();
}

/// The suite itself: a configuration that compared nothing fails it.
#[test]
#[should_panic(expected = "tested nothing")]
fn a_configuration_that_tests_nothing_fails() {
    Tester::new().finish();
}

/// `auto` takes a hardware GPU only: on a machine whose sole adapter is a
/// software one (lavapipe in CI) it runs on the CPU.
#[test]
fn auto_skips_software_adapters() {
    if gpu().is_none() {
        return;
    }
    let hardware = GpuBackend::new(AdapterPolicy::HardwareOnly).expect("adapter query");
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo");
    let tmp = tempfile::tempdir().unwrap();
    common::run_ok(&demo, tmp.path(), &["--backend", "auto"]);
    let r = common::read_report(tmp.path());
    match hardware {
        Some(g) => {
            assert_eq!(r["backend"]["name"], "gpu");
            assert_ne!(g.info().device_type.as_deref(), Some("cpu (software)"));
        }
        None => assert_eq!(
            r["backend"]["name"], "cpu",
            "auto must not pick a software adapter"
        ),
    }
}

/// A GPU failure mid-run: by default a clear exit-2 error naming the GPU;
/// with `--gpu-fallback cpu`, a logged warning, the rest of the run on the
/// CPU, and `report.json` saying so. The failure used is real: the GPU exact
/// kNN serves at most 56 neighbours, so `--knn-k 60` fails on the GPU after
/// every item has been scored there.
#[test]
fn gpu_failure_fails_or_falls_back_when_asked() {
    if gpu().is_none() {
        return;
    }
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo");
    let tmp = tempfile::tempdir().unwrap();
    let ds = demo.to_str().unwrap();
    let (a, b, c) = (
        tmp.path().join("fail"),
        tmp.path().join("fallback"),
        tmp.path().join("cpu"),
    );
    let knn = ["--knn", "exact", "--knn-k", "60"];
    let mut args = vec!["run", ds, "--out", a.to_str().unwrap(), "--backend", "gpu"];
    args.extend(knn);
    let out = common::triage(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("backend gpu") && err.contains("at most 56"),
        "{err}"
    );
    assert!(
        !a.join("report.json").exists(),
        "nothing written on failure"
    );

    let mut args = vec!["run", ds, "--out", b.to_str().unwrap(), "--backend", "gpu"];
    args.extend(knn);
    args.extend(["--gpu-fallback", "cpu"]);
    let out = common::triage(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("warning: the GPU failed"), "{err}");
    let r = common::read_report(&b);
    assert_eq!(r["backend"]["name"], "gpu, then cpu");
    assert!(
        r["backend"]["fallback"]
            .as_str()
            .unwrap()
            .contains("at most 56")
    );
    assert!(r["backend"]["adapter"].is_string());
    assert_eq!(r["options"]["gpu_fallback"], "cpu");
    assert_eq!(r["duplicates"]["method"], "exact", "the kNN ran on the CPU");

    common::run_ok(&demo, &c, &["--backend", "cpu", "--knn-k", "60"]);
    let rc = common::read_report(&c);
    assert_eq!(r["per_class"], rc["per_class"]);
    assert_eq!(r["duplicates"]["pairs"], rc["duplicates"]["pairs"]);
    assert!(rc["backend"].get("fallback").is_none());
}
