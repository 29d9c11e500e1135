//! Every metric on both backends: the CPU reference and the wgpu backend must
//! agree bit for bit on integer counts (pixels, confusion, calibration bin
//! counts, Boundary IoU band counts, first invalid pixel) and within
//! `FLOAT_TOLERANCE` (2e-5 absolute) on float scores.
//!
//! Without an adapter these tests report themselves skipped, unless
//! `TRIAGE_REQUIRE_GPU=1` (set in CI, which installs lavapipe): then a missing
//! adapter is a failure. Every test also checks that the numbers it compares
//! really came from the GPU backend.

use crate::common;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triage::backend::cpu::CpuBackend;
use triage::backend::gpu::{AdapterPolicy, FLOAT_TOLERANCE, GpuBackend};
use triage::backend::{Backend, ProbBuf, RowBatch, SegBatch, SegItem, SegItemStats};

fn gpu() -> Option<GpuBackend> {
    let required = std::env::var("TRIAGE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match GpuBackend::new(AdapterPolicy::AnyAdapter) {
        Ok(Some(g)) => {
            let info = g.info();
            assert_eq!(info.name, "gpu");
            assert!(info.adapter.is_some(), "the GPU backend names its adapter");
            Some(g)
        }
        Ok(None) if required => panic!("TRIAGE_REQUIRE_GPU=1 but no GPU adapter was found"),
        Ok(None) => {
            eprintln!("skipped: no GPU adapter (install mesa-vulkan-drivers for lavapipe)");
            None
        }
        Err(e) => panic!("GPU adapter found but unusable: {e}"),
    }
}

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

fn compare_items(label: &str, g: &[SegItemStats], c: &[SegItemStats]) {
    assert_eq!(g.len(), c.len());
    for (i, (g, c)) in g.iter().zip(c).enumerate() {
        let at = format!("{label} item {i}");
        assert_eq!(g.first_invalid, c.first_invalid, "{at}: first invalid");
        assert_eq!(g.pixels, c.pixels, "{at}: pixels");
        assert_eq!(g.confusion, c.confusion, "{at}: confusion");
        assert_eq!(g.bins.count, c.bins.count, "{at}: bin counts");
        assert_eq!(g.bins.correct, c.bins.correct, "{at}: bin correct");
        assert_eq!(g.bands, c.bands, "{at}: Boundary IoU band counts");
        if c.first_invalid.is_some() {
            continue;
        }
        let n = c.pixels.max(1) as f64;
        close(
            &format!("{at}: entropy"),
            g.sums.entropy / n,
            c.sums.entropy / n,
        );
        close(
            &format!("{at}: margin"),
            g.sums.margin / n,
            c.sums.margin / n,
        );
        close(
            &format!("{at}: least_confidence"),
            g.sums.least_confidence / n,
            c.sums.least_confidence / n,
        );
        close(
            &format!("{at}: self_confidence"),
            g.sums.self_confidence / n,
            c.sums.self_confidence / n,
        );
        close(
            &format!("{at}: normalized_margin"),
            g.sums.normalized_margin / n,
            c.sums.normalized_margin / n,
        );
        let (gs, cs) = (
            g.softmin_self_confidence.value(),
            c.softmin_self_confidence.value(),
        );
        assert_eq!(gs.is_some(), cs.is_some(), "{at}: softmin defined");
        if let (Some(a), Some(b)) = (gs, cs) {
            close(&format!("{at}: self_confidence_softmin"), a, b);
        }
        if let (Some(a), Some(b)) = (
            g.softmin_normalized_margin.value(),
            c.softmin_normalized_margin.value(),
        ) {
            close(&format!("{at}: normalized_margin_softmin"), a, b);
        }
        for m in 0..15 {
            let k = c.bins.count[m].max(1) as f64;
            close(
                &format!("{at}: bin {m} mean confidence"),
                g.bins.confidence_sum[m] / k,
                c.bins.confidence_sum[m] / k,
            );
        }
        match (g.bins.ece(), c.bins.ece()) {
            (Some(a), Some(b)) => close(&format!("{at}: ece"), a, b),
            (a, b) => assert_eq!(a.is_some(), b.is_some(), "{at}: ece defined"),
        }
    }
}

fn run_both(label: &str, gpu: &GpuBackend, batch: &SegBatch) {
    let c = CpuBackend::new().score_items(batch).expect("cpu");
    let g = gpu
        .score_items(batch)
        .unwrap_or_else(|e| panic!("{label}: gpu failed: {e}"));
    compare_items(label, &g, &c);
}

#[test]
fn random_segmentation_batches_f32_and_f16() {
    let Some(gpu) = gpu() else { return };
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
            let batch = SegBatch {
                items,
                classes,
                ignore_index: 255,
                logits: false,
            };
            run_both(&format!("C={classes} f16={f16}"), &gpu, &batch);
        }
    }
}

#[test]
fn tiles_and_chunks_split_inside_items() {
    let Some(gpu) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    // 300×300 = 90 000 pixels: two tiles of at most 65 536. With C = 150 a
    // tile is 39 MB, so every tile is its own upload chunk and chunk
    // boundaries fall inside items; 5 items make 10 chunks.
    let items = (0..5)
        .map(|_| random_item(&mut rng, 150, 300, 300, true, 0.02))
        .collect();
    let batch = SegBatch {
        items,
        classes: 150,
        ignore_index: 255,
        logits: false,
    };
    run_both("C=150 300x300 x5", &gpu, &batch);
}

#[test]
fn edge_cases_exact_one_bin_edges_ignore_and_edges() {
    let Some(gpu) = gpu() else { return };
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
    for f16 in [false, true] {
        let batch = SegBatch {
            items: vec![SegItem {
                probs: to_buf(p.clone(), f16),
                planes: None,
                labels: labels.clone(),
                height: h,
                width: w,
            }],
            classes: c,
            ignore_index: 255,
            logits: false,
        };
        run_both(&format!("edge f16={f16}"), &gpu, &batch);
        let stats = gpu.score_items(&batch).unwrap();
        // Hand-checked: the 6 confidences of exactly 1.0 (pixels 0, 8, 16, 24,
        // and the ignored ones excluded) fall in bin 14, never a 16th bin.
        let ones = (0..hw)
            .filter(|&i| i % confs.len() == 0 && labels[i] != 255)
            .count() as u64;
        assert!(stats[0].bins.count[14] >= ones);
        assert_eq!(stats[0].bins.count.iter().sum::<u64>(), stats[0].pixels);
    }
}

#[test]
fn invalid_probabilities_report_the_same_first_pixel() {
    let Some(gpu) = gpu() else { return };
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
            let batch = SegBatch {
                items: vec![it],
                classes: 4,
                ignore_index: 255,
                logits: false,
            };
            let g = gpu.score_items(&batch).unwrap();
            assert_eq!(g[0].first_invalid, Some(bad), "value {value} f16={f16}");
            run_both(&format!("invalid {value}"), &gpu, &batch);
        }
    }
}

#[test]
fn logits_segmentation() {
    let Some(gpu) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut it = random_item(&mut rng, 5, 33, 41, false, 0.05);
    if let ProbBuf::F32(v) = &mut it.probs {
        for x in v.iter_mut() {
            *x = x.ln() * 1.7 - 3.0; // logits, some negative
        }
    }
    let batch = SegBatch {
        items: vec![it],
        classes: 5,
        ignore_index: 255,
        logits: true,
    };
    run_both("logits", &gpu, &batch);
}

#[test]
fn classification_rows() {
    let Some(gpu) = gpu() else { return };
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
        let cs = CpuBackend::new().score_rows(&batch).unwrap();
        let gs = gpu.score_rows(&batch).unwrap();
        let at = format!("rows n={n} C={c} f16={f16} logits={logits}");
        assert_eq!(gs.first_invalid, cs.first_invalid, "{at}");
        assert_eq!(gs.bins.count, cs.bins.count, "{at}: bin counts");
        assert_eq!(gs.bins.correct, cs.bins.correct, "{at}: bin correct");
        assert_eq!(gs.samples.len(), n);
        for (r, (g, c)) in gs.samples.iter().zip(&cs.samples).enumerate() {
            assert_eq!(g.pred, c.pred, "{at} row {r}: pred");
            for (name, a, b) in [
                ("confidence", g.confidence, c.confidence),
                ("entropy", g.entropy, c.entropy),
                ("margin", g.margin, c.margin),
                ("least_confidence", g.least_confidence, c.least_confidence),
                ("self_confidence", g.self_confidence, c.self_confidence),
                (
                    "normalized_margin",
                    g.normalized_margin,
                    c.normalized_margin,
                ),
            ] {
                close(&format!("{at} row {r}: {name}"), a as f64, b as f64);
            }
        }
        if !logits {
            assert_eq!(gs.samples[3].confidence, 1.0, "{at}: exact 1.0 survives");
            if !f16 {
                // f16 cannot hold 1e-7; in f32 the sum is 1 + 2^-23, within C·ε.
                assert_eq!(
                    gs.samples[4].confidence, 1.0,
                    "{at}: rounding-level sums are not divided"
                );
                assert_eq!(cs.samples[4].confidence, 1.0, "{at}: (reference)");
            }
        }
    }
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
    let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
    triage::neighbors::Embeddings::from_rows(std::path::Path::new("emb.npy"), rows, n, d, &ids)
        .unwrap()
}

/// The GPU exact kNN gives the CPU reference's graph: the same neighbours in
/// the same order and bit-identical distances, for dimensions that are not a
/// multiple of the shader's 32-wide chunks, for fewer items than `k`, for
/// duplicate rows (exact ties, broken by the lower index), and when the rows
/// are split into several bindings whose candidate lists are merged.
#[test]
fn knn_exact_matches_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = CpuBackend::new();
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
    for (name, e, k) in &cases {
        let want = cpu.knn_exact(e, *k).unwrap();
        assert_eq!(want.method, "exact");
        for chunk in [usize::MAX, 37, 64] {
            let got = if chunk == usize::MAX {
                g.knn_exact(e, *k).unwrap()
            } else {
                g.knn_exact_chunked(e, *k, chunk).unwrap()
            };
            assert_eq!(got.method, "exact-gpu", "{name}: the GPU path ran");
            assert_eq!(got.ids, want.ids, "{name}, chunk {chunk}: neighbour ids");
            assert_eq!(got.dist, want.dist, "{name}, chunk {chunk}: distances");
        }
    }
    // Hand-worked: on the unit circle at 0°, 10°, 90°, 180°, item 3's nearest
    // are 2 (90° away) then 1 (170° away).
    let r = |deg: f32| [deg.to_radians().cos(), deg.to_radians().sin()];
    let rows: Vec<f32> = [0.0, 10.0, 90.0, 180.0]
        .iter()
        .flat_map(|&a| r(a))
        .collect();
    let e = embeddings(rows, 4, 2);
    let got = g.knn_exact(&e, 2).unwrap();
    assert_eq!(
        got.neighbours(3).map(|(j, _)| j).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(
        got.neighbours(0).map(|(j, _)| j).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Beyond the shader's list length the GPU refuses instead of truncating.
    let err = g.knn_exact(&cases[0].1, 57).unwrap_err().to_string();
    assert!(err.contains("at most 56"), "{err}");
}

/// The GPU's near-duplicate mask counts equal the CPU's bit for bit: random
/// maps with ignore pixels, C = 2 and C = 150, an odd pixel count (the packed
/// u16 tail), 37 × 1031, and a hand-worked 2 × 4 pair.
#[test]
fn mask_confusion_matches_cpu() {
    let Some(g) = gpu() else { return };
    let cpu = CpuBackend::new();
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
        let want = cpu.mask_confusion(&a, &b, classes, ig).unwrap();
        let got = g.mask_confusion(&a, &b, classes, ig).unwrap();
        assert_eq!(got.rows(), want.rows(), "C = {classes}, {n} pixels");
    }
    // Hand-worked (src/metrics/mask_iou.rs): rows [[2, 1], [1, 3]].
    let a = [0, 0, 1, 1, 0, 1, 1, 255];
    let b = [0, 1, 1, 1, 0, 0, 1, 1];
    let got = g.mask_confusion(&a, &b, 2, 255).unwrap();
    assert_eq!(got.rows(), vec![vec![2, 1], vec![1, 3]]);
    assert_eq!(got.mean_iou(), Some(0.55));
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
