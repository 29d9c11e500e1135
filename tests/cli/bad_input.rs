//! Bad input never crashes and never corrupts: each case exits with status 2,
//! names the file, the item and the field, and leaves no output files.

use std::path::Path;

use crate::common::*;

const H: usize = 4;
const W: usize = 5;
const C: usize = 3;

/// A valid 2-item segmentation dataset: probabilities (2, 3, 4, 5) float32.
fn seg_dataset(dir: &Path) -> Vec<f32> {
    std::fs::write(
        dir.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"bg\", \"road\", \"car\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("items.csv"),
        "id,mask,annotator\nimg_a,masks/a.png,ann1\nimg_b,masks/b.png,ann2\n",
    )
    .unwrap();
    let mut probs = vec![0.0f32; 2 * C * H * W];
    for n in 0..2 {
        for i in 0..H * W {
            let top = (i + n) % C;
            for k in 0..C {
                probs[(n * C + k) * H * W + i] = if k == top { 0.8 } else { 0.1 };
            }
        }
    }
    write_f32(&dir.join("probs.npy"), &[2, C, H, W], &probs);
    let mask: Vec<u8> = (0..H * W).map(|i| (i % C) as u8).collect();
    write_mask(&dir.join("masks/a.png"), H, W, &mask);
    write_mask(&dir.join("masks/b.png"), H, W, &mask);
    probs
}

/// A valid 3-item classification dataset with a `label` column of names.
fn cls_dataset(dir: &Path) {
    std::fs::write(
        dir.join("triage.toml"),
        "task = \"classification\"\nclasses = [\"cat\", \"dog\", \"fox\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("items.csv"), "id,label\nx1,cat\nx2,dog\nx3,2\n").unwrap();
    write_f64(
        &dir.join("probs.npy"),
        &[3, 3],
        &[0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4],
    );
}

/// Run on `dataset`, expect exit 2 with every `needles` in stderr and no files in the output.
fn expect_failure(dataset: &Path, needles: &[&str]) {
    expect_failure_with(dataset, &[], needles, None);
}

fn with_seg(edit: impl FnOnce(&Path, &mut Vec<f32>), needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let mut probs = seg_dataset(tmp.path());
    // The valid dataset runs.
    let ok = tmp.path().join("ok");
    run_ok(tmp.path(), &ok, &["--backend", "cpu"]);
    std::fs::remove_dir_all(&ok).unwrap();
    edit(tmp.path(), &mut probs);
    expect_failure(tmp.path(), needles);
}

fn with_cls(edit: impl FnOnce(&Path), needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    cls_dataset(tmp.path());
    let ok = tmp.path().join("ok");
    run_ok(tmp.path(), &ok, &["--backend", "cpu"]);
    std::fs::remove_dir_all(&ok).unwrap();
    edit(tmp.path());
    expect_failure(tmp.path(), needles);
}

/// Index of probability (item n, class k, pixel x, y).
fn at(n: usize, k: usize, x: usize, y: usize) -> usize {
    ((n * C + k) * H + y) * W + x
}

#[test]
fn missing_probs_file() {
    with_seg(
        |d, _| std::fs::remove_file(d.join("probs.npy")).unwrap(),
        &["probs.npy", "No such file"],
    );
}

#[test]
fn missing_mask_file() {
    with_seg(
        |d, _| std::fs::remove_file(d.join("masks/b.png")).unwrap(),
        &["b.png", "No such file"],
    );
}

#[test]
fn missing_manifest() {
    with_seg(
        |d, _| std::fs::remove_file(d.join("triage.toml")).unwrap(),
        &["triage.toml"],
    );
}

#[test]
fn truncated_npy() {
    with_seg(
        |d, _| {
            let p = d.join("probs.npy");
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
        },
        &["probs.npy", "truncated"],
    );
}

#[test]
fn not_an_npy_file() {
    with_seg(
        |d, _| std::fs::write(d.join("probs.npy"), "id,x\n1,2\n").unwrap(),
        &["probs.npy", "not a valid .npy"],
    );
}

#[test]
fn unsupported_dtype() {
    with_seg(
        |d, _| {
            write_npy_raw(
                &d.join("probs.npy"),
                "<c8",
                &[2, C, H, W],
                &vec![0u8; 2 * C * H * W * 8],
            )
        },
        &["probs.npy", "dtype", "unsupported dtype"],
    );
    with_cls(
        |d| write_npy_raw(&d.join("probs.npy"), "<i4", &[3, 3], &[0u8; 36]),
        &["probs.npy", "dtype"],
    );
}

#[test]
fn item_count_mismatch() {
    with_seg(
        |d, _| std::fs::write(d.join("items.csv"), "id,mask\nimg_a,masks/a.png\n").unwrap(),
        &["probs.npy", "shape", "2 items of probabilities but 1 rows"],
    );
    with_cls(
        |d| std::fs::write(d.join("items.csv"), "id,label\nx1,cat\nx2,dog\n").unwrap(),
        &["probs.npy", "shape", "3 rows of probabilities but 2 items"],
    );
}

#[test]
fn mask_size_mismatch() {
    with_seg(
        |d, _| write_mask(&d.join("masks/b.png"), H, W + 1, &[0; H * (W + 1)]),
        &["b.png", "\"img_b\"", "mask", "4x6", "4x5"],
    );
}

#[test]
fn channels_last_probabilities_get_the_fix() {
    // The same values saved (N, H, W, C): the message says how to read them.
    with_seg(
        |d, p| {
            let mut nhwc = vec![0.0f32; p.len()];
            for n in 0..2 {
                for k in 0..C {
                    for i in 0..H * W {
                        nhwc[(n * H * W + i) * C + k] = p[(n * C + k) * H * W + i];
                    }
                }
            }
            write_f32(&d.join("probs.npy"), &[2, H, W, C], &nhwc);
        },
        &[
            "probs.npy",
            "shape",
            "the last axis has 3 entries and triage.toml says 3 classes: the array looks \
             channels-last, (N, H, W, C); set probs_layout = \"nhwc\" in triage.toml's [inputs]",
        ],
    );
}

#[test]
fn class_count_mismatch() {
    with_seg(
        |d, p| {
            p.extend(vec![0.0; 2 * H * W]);
            write_f32(&d.join("probs.npy"), &[2, C + 1, H, W], p);
        },
        &["probs.npy", "shape", "4 classes in the probabilities but 3"],
    );
}

#[test]
fn nan_probability() {
    with_seg(
        |d, p| {
            p[at(1, 2, 3, 2)] = f32::NAN;
            write_f32(&d.join("probs.npy"), &[2, C, H, W], p);
        },
        &[
            "probs.npy",
            "\"img_b\"",
            "pixel (x=3, y=2)",
            "class 2",
            "not finite",
        ],
    );
}

#[test]
fn infinite_probability() {
    with_seg(
        |d, p| {
            p[at(0, 0, 0, 0)] = f32::INFINITY;
            write_f32(&d.join("probs.npy"), &[2, C, H, W], p);
        },
        &["\"img_a\"", "pixel (x=0, y=0)", "class 0", "inf"],
    );
}

#[test]
fn negative_probability() {
    with_seg(
        |d, p| {
            p[at(0, 1, 4, 3)] = -0.25;
            write_f32(&d.join("probs.npy"), &[2, C, H, W], p);
        },
        &[
            "\"img_a\"",
            "pixel (x=4, y=3)",
            "class 1",
            "negative (-0.25)",
        ],
    );
    with_cls(
        |d| {
            write_f64(
                &d.join("probs.npy"),
                &[3, 3],
                &[0.7, 0.2, 0.1, 1.1, -0.1, 0.0, 0.3, 0.3, 0.4],
            )
        },
        &["probs.npy", "\"x2\"", "class 1", "negative"],
    );
}

#[test]
fn unnormalised_probability() {
    with_seg(
        |d, p| {
            p[at(1, 0, 1, 1)] += 0.5;
            write_f32(&d.join("probs.npy"), &[2, C, H, W], p);
        },
        &["\"img_b\"", "pixel (x=1, y=1)", "sum to 1.5", "--logits"],
    );
    with_cls(
        |d| {
            write_f64(
                &d.join("probs.npy"),
                &[3, 3],
                &[0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.41],
            )
        },
        &["\"x3\"", "sum to 1.01"],
    );
}

#[test]
fn class_id_out_of_range() {
    with_seg(
        |d, _| {
            let mut mask: Vec<u8> = (0..H * W).map(|i| (i % C) as u8).collect();
            mask[2 * W + 1] = 7;
            write_mask(&d.join("masks/a.png"), H, W, &mask);
        },
        &[
            "a.png",
            "\"img_a\"",
            "pixel (x=1, y=2)",
            "class id 7 out of range",
        ],
    );
    with_cls(
        |d| std::fs::write(d.join("items.csv"), "id,label\nx1,cat\nx2,wolf\nx3,2\n").unwrap(),
        &["items.csv", "\"x2\"", "label", "\"wolf\""],
    );
    with_cls(
        |d| {
            std::fs::write(d.join("items.csv"), "id\nx1\nx2\nx3\n").unwrap();
            write_u16(&d.join("labels.npy"), &[3], &[0, 1, 3]);
            let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
            std::fs::write(d.join("triage.toml"), toml + "labels = \"labels.npy\"\n").unwrap();
        },
        &["labels.npy", "\"x3\"", "label", "class id 3 out of range"],
    );
}

#[test]
fn corrupt_png() {
    with_seg(
        |d, _| {
            let p = d.join("masks/b.png");
            let mut bytes = std::fs::read(&p).unwrap();
            let n = bytes.len();
            for b in &mut bytes[n / 2..n - 12] {
                *b ^= 0x5a;
            }
            std::fs::write(&p, bytes).unwrap();
        },
        &["b.png", "\"img_b\"", "mask", "PNG"],
    );
    with_seg(
        |d, _| std::fs::write(d.join("masks/a.png"), b"not a png").unwrap(),
        &["a.png", "\"img_a\"", "cannot decode PNG"],
    );
}

#[test]
fn duplicate_ids() {
    with_seg(
        |d, _| {
            std::fs::write(
                d.join("items.csv"),
                "id,mask\nimg_a,masks/a.png\nimg_a,masks/b.png\n",
            )
            .unwrap()
        },
        &["items.csv", "\"img_a\"", "id", "duplicate id"],
    );
}

#[test]
fn empty_dataset() {
    with_seg(
        |d, _| std::fs::write(d.join("items.csv"), "id,mask\n").unwrap(),
        &["items.csv", "empty dataset"],
    );
    with_cls(
        |d| {
            std::fs::write(d.join("items.csv"), "id,label\n").unwrap();
            write_f64(&d.join("probs.npy"), &[0, 3], &[]);
        },
        &["empty dataset"],
    );
}

#[test]
fn bad_manifest() {
    with_seg(
        |d, _| {
            std::fs::write(
                d.join("triage.toml"),
                "task = \"detection\"\nnum_classes = 3\n[inputs]\nprobs = \"p.npy\"\n",
            )
            .unwrap()
        },
        &["triage.toml", "detection"],
    );
    with_seg(
        |d, _| {
            std::fs::write(d.join("triage.toml"), "task = \"segmentation\"\nnum_classes = 3\nclasses = [\"a\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n").unwrap()
        },
        &["triage.toml", "classes", "num_classes = 3"],
    );
}

#[test]
fn a_failed_run_leaves_the_previous_outputs_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let mut probs = seg_dataset(tmp.path());
    let out = tmp.path().join("out");
    run_ok(tmp.path(), &out, &["--backend", "cpu"]);
    let before = std::fs::read(out.join("queue.jsonl")).unwrap();
    probs[at(1, 0, 0, 0)] = f32::NAN;
    write_f32(&tmp.path().join("probs.npy"), &[2, C, H, W], &probs);
    let args = [
        "run",
        tmp.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    assert_eq!(triage(&args).status.code(), Some(2));
    assert_eq!(std::fs::read(out.join("queue.jsonl")).unwrap(), before);
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".triage-outputs.json",
            "items.parquet",
            "overlays",
            "queue.csv",
            "queue.jsonl",
            "report.html",
            "report.json"
        ],
        "no temporary files left behind"
    );
    let overlays: Vec<String> = std::fs::read_dir(out.join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        overlays
            .iter()
            .all(|n| n.ends_with(".png") && !n.starts_with('.')),
        "no temporary overlays left behind: {overlays:?}"
    );
}

#[test]
fn gpu_backend_without_an_adapter_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    seg_dataset(tmp.path());
    let out = tmp.path().join("out");
    let args = [
        "run",
        tmp.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "gpu",
    ];
    // Only the GL backend, which this build leaves out: no adapter at all.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(args)
        .env("WGPU_BACKEND", "gl")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", describe(&args, &o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("backend gpu") && err.contains("no GPU adapter"),
        "{err}"
    );
    assert!(
        err.contains("--backend cpu"),
        "the error says what to do: {err}"
    );
    assert!(!out.exists());
    // `auto` falls back to the CPU and says so in the report.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(&args[..4])
        .env("WGPU_BACKEND", "gl")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", describe(&args, &o));
    assert_eq!(read_report_typed(&out).backend.name, "cpu");
}

/// Run with `extra` arguments; expect exit 2, every `needles` in stderr,
/// no panic, nothing of `not` (with `Some`: the error the scoring pass
/// would have reported) and no output files.
fn expect_failure_with(dataset: &Path, extra: &[&str], needles: &[&str], not: Option<&str>) {
    let stderr = refused_run(dataset, extra, needles);
    if let Some(not) = not {
        assert!(
            !stderr.contains(not),
            "the scoring pass ran first\n{stderr}"
        );
    }
}

/// Every option and side input that can fail is checked before the first
/// batch is scored: with a NaN planted in the last item, each bad option
/// fails with its own error, not the NaN's (which only scoring finds).
#[test]
fn options_and_side_inputs_fail_before_the_first_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    cls_dataset(d);
    // The NaN alone: found by the scoring pass.
    write_f64(
        &d.join("probs.npy"),
        &[3, 3],
        &[0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, f64::NAN, 0.4],
    );
    expect_failure_with(d, &[], &["\"x3\"", "NaN"], Some("--min-per-class"));
    let nan = Some("NaN");
    expect_failure_with(
        d,
        &["--budget", "2", "--min-per-class", "0.5"],
        &["--min-per-class 0.5 x 3 classes"],
        nan,
    );
    expect_failure_with(
        d,
        &["--review-all-from", "bob"],
        &["--review-all-from needs an `annotator` column"],
        nan,
    );
    let nowhere = d.join("nowhere");
    expect_failure_with(
        d,
        &["--previous", nowhere.to_str().unwrap()],
        &["nowhere", "queue.jsonl"],
        nan,
    );
    std::fs::write(d.join("reviews.jsonl"), "{not json\n").unwrap();
    expect_failure_with(d, &[], &["reviews.jsonl", "line 1"], nan);
    std::fs::remove_file(d.join("reviews.jsonl")).unwrap();
    // Embeddings with a row too few, and a zero --knn-k.
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        format!("{toml}embeddings = \"emb.npy\"\n"),
    )
    .unwrap();
    write_f32(&d.join("emb.npy"), &[2, 4], &[1.0; 8]);
    expect_failure_with(
        d,
        &[],
        &["emb.npy", "embeddings have 2 rows but there are 3 items"],
        nan,
    );
    write_f32(&d.join("emb.npy"), &[3, 4], &[1.0; 12]);
    expect_failure_with(d, &["--knn-k", "0"], &["--knn-k must be at least 1"], nan);
    // An `image` file that cannot be opened (read by the neighbour stage's
    // identical-file check, after scoring) is named before the first batch.
    std::fs::create_dir_all(d.join("img")).unwrap();
    std::fs::write(d.join("img/x1.png"), b"one").unwrap();
    std::fs::write(d.join("img/x2.png"), b"two").unwrap();
    std::fs::write(
        d.join("items.csv"),
        "id,label,image\nx1,cat,img/x1.png\nx2,dog,img/x2.png\nx3,2,img/missing.png\n",
    )
    .unwrap();
    expect_failure_with(
        d,
        &[],
        &[
            "img/missing.png",
            "item \"x3\"",
            "image",
            "cannot open the image",
        ],
        nan,
    );

    // Segmentation: the same order.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut probs = seg_dataset(d);
    probs[at(1, 2, 4, 3)] = f32::NAN;
    write_f32(&d.join("probs.npy"), &[2, C, H, W], &probs);
    expect_failure_with(d, &[], &["\"img_b\"", "NaN"], Some("--min-per-class"));
    expect_failure_with(
        d,
        &["--budget", "2", "--min-per-class", "0.5"],
        &["--min-per-class 0.5 x 3 classes"],
        nan,
    );
}
