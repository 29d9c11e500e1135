//! Mistakes users make, and errors that say how to fix them (issue 30):
//! each case exits with status 2 (or, for a run without labels, 0 with a
//! warning) and names the fix on stderr.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// A classification dataset of 3 items over `classes` (a `triage.toml`
/// line), `items.csv` of `header` and `rows`, probabilities `probs` (3, 3).
fn cls(d: &Path, classes: &str, header: &str, rows: &[&str], probs: &[f64]) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        format!(
            "task = \"classification\"\n{classes}\n[inputs]\nitems = \"items.csv\"\n\
             probs = \"probs.npy\"\n"
        ),
    )
    .unwrap();
    let mut csv = format!("{header}\n");
    for r in rows {
        csv.push_str(r);
        csv.push('\n');
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    write_f64(&d.join("probs.npy"), &[3, 3], probs);
}

const PROBS: [f64; 9] = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4];
const NAMES: &str = "classes = [\"cat\", \"dog\", \"fox\"]";

/// `triage run d --out d/out --backend cpu [extra]`: its exit code and stderr.
fn run(d: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = d.join("out");
    let args = cpu_args(d, &out, extra);
    let o = triage(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.code(), stderr, describe(&args, &o))
}

/// Exit 2 with every one of `needles` on stderr.
fn refused(d: &Path, extra: &[&str], needles: &[&str]) -> String {
    let (code, stderr, msg) = run(d, extra);
    assert_eq!(code, Some(2), "{msg}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}\n{msg}");
    }
    stderr
}

#[test]
fn a_label_column_named_otherwise_is_refused_with_the_rename() {
    let tmp = tempfile::tempdir().unwrap();
    for (k, name) in ["target", "Class", "y", "ground_truth", "LABEL"]
        .into_iter()
        .enumerate()
    {
        let d = tmp.path().join(format!("d{k}"));
        cls(
            &d,
            NAMES,
            &format!("id,{name}"),
            &["a,cat", "b,dog", "c,"],
            &PROBS,
        );
        refused(
            &d,
            &[],
            &[
                "items.csv",
                &format!(
                    ": {name}: no `label` column, but a `{name}` column (2 of 3 items filled)"
                ),
                &format!("rename `{name}` to `label` in the header"),
                "triage.toml has no setting for the column's name",
            ],
        );
    }
    // Renamed, it runs.
    let d = tmp.path().join("renamed");
    cls(&d, NAMES, "id,label", &["a,cat", "b,dog", "c,"], &PROBS);
    let (code, _, msg) = run(&d, &[]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn a_run_where_no_item_is_labelled_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let warning = "triage: warning: no item in ";
    // No label column (a metadata column beside the id), an empty lookalike
    // column (nothing to read from it, so not refused), an empty `label`
    // column.
    for (k, header, rows, why) in [
        (0, "id,note", ["a,x", "b,y", "c,z"], "(no `label` column)"),
        (1, "id,target", ["a,", "b,", "c,"], "(no `label` column)"),
        (
            2,
            "id,label",
            ["a,", "b,", "c,"],
            "(every `label` cell is empty)",
        ),
    ] {
        let d = tmp.path().join(format!("d{k}"));
        cls(&d, NAMES, header, &rows, &PROBS);
        let (code, stderr, msg) = run(&d, &[]);
        assert_eq!(code, Some(0), "{msg}");
        let want = format!(
            "{warning}{} is labelled {why}: the review queue is empty",
            d.join("items.csv").display()
        );
        assert!(stderr.contains(&want), "stderr lacks {want:?}\n{msg}");
        assert!(stderr.contains("to review the labels, give them"), "{msg}");
        assert!(read_queue(&d.join("out")).is_empty(), "{msg}");
    }
    // labels.npy of -1 only.
    let d = tmp.path().join("npy");
    cls(&d, NAMES, "id", &["a", "b", "c"], &PROBS);
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(d.join("triage.toml"), toml + "labels = \"labels.npy\"\n").unwrap();
    write_npy_raw(
        &d.join("labels.npy"),
        "<i8",
        &[3],
        &[-1i64, -1, -1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let (code, stderr, msg) = run(&d, &[]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(
        stderr.contains("labels.npy is labelled (every value is -1)"),
        "{msg}"
    );
    // One labelled item: no warning.
    let d = tmp.path().join("one");
    cls(&d, NAMES, "id,label", &["a,", "b,dog", "c,"], &PROBS);
    let (code, stderr, msg) = run(&d, &[]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(!stderr.contains(warning), "{msg}");
}

#[test]
fn logits_given_as_probabilities_get_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let logits = [2.1, -0.3, 0.5, -2.14, 1.2, 0.3, 0.2, 0.1, 3.0];
    cls(&d, NAMES, "id,label", &["a,cat", "b,dog", "c,fox"], &logits);
    refused(
        &d,
        &[],
        &[
            "probs.npy: item \"a\": probs: class 1: probability is negative (-0.3); \
             these look like logits: pass --logits to apply a softmax",
        ],
    );
    let (code, _, msg) = run(&d, &["--logits"]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn unknown_class_labels_say_the_range_and_where_names_go() {
    let tmp = tempfile::tempdir().unwrap();
    // No names in triage.toml: the range, inclusive, and the `classes` key.
    let d = tmp.path().join("numbered");
    cls(
        &d,
        "num_classes = 3",
        "id,label",
        &["a,0", "b,cat", "c,2"],
        &PROBS,
    );
    refused(
        &d,
        &[],
        &[
            "items.csv: item \"b\": label: label \"cat\" is neither a class index 0 to 2 nor a \
             class name: triage.toml names no classes (num_classes = 3); to label by name, list \
             the names in class index order in triage.toml: classes = [\"cat\", \"dog\", ...]",
        ],
    );
    // An integer out of range: the range, not a name hint.
    cls(
        &d,
        "num_classes = 3",
        "id,label",
        &["a,0", "b,3", "c,2"],
        &PROBS,
    );
    let e = refused(
        &d,
        &[],
        &["label \"3\" is not a class index 0 to 2 (3 classes)"],
    );
    assert!(!e.contains("classes = ["), "{e}");
    // Named classes: the first five listed, then how many.
    let d = tmp.path().join("named");
    let seven = "classes = [\"cat\", \"dog\", \"fox\", \"owl\", \"bat\", \"elk\", \"yak\"]";
    cls(&d, seven, "id,label", &["a,cat", "b,wolf", "c,yak"], &PROBS);
    std::fs::write(d.join("items.csv"), "id,label\na,cat\nb,wolf\nc,yak\n").unwrap();
    write_f64(
        &d.join("probs.npy"),
        &[3, 7],
        &[
            0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, //
            0.1, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1, //
            0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4,
        ],
    );
    refused(
        &d,
        &[],
        &[
            "label \"wolf\" is neither a class index 0 to 6 nor a class name; triage.toml's \
             classes are \"cat\", \"dog\", \"fox\", \"owl\", \"bat\", … (7 in all)",
        ],
    );
    // A name in another case: the one meant.
    std::fs::write(d.join("items.csv"), "id,label\na,cat\nb,Dog\nc,yak\n").unwrap();
    refused(
        &d,
        &[],
        &["(did you mean \"dog\"? a name must match exactly)"],
    );
    // The same words for a review's corrected_label.
    std::fs::write(d.join("items.csv"), "id,label\na,cat\nb,dog\nc,yak\n").unwrap();
    let decisions = d.join("decisions.csv");
    std::fs::write(&decisions, "id,decision,corrected_label\nb,error,wolf\n").unwrap();
    let args = [
        "review-import",
        d.to_str().unwrap(),
        decisions.to_str().unwrap(),
    ];
    let o = triage(&args);
    let msg = describe(&args, &o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(
            "line 2: corrected_label \"wolf\" is neither a class index 0 to 6 nor a class name; \
             triage.toml's classes are \"cat\", \"dog\""
        ),
        "{msg}"
    );
}

#[test]
fn labels_npy_out_of_range_says_the_range_inclusively() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    cls(&d, NAMES, "id", &["a", "b", "c"], &PROBS);
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(d.join("triage.toml"), toml + "labels = \"labels.npy\"\n").unwrap();
    write_u16(&d.join("labels.npy"), &[3], &[0, 3, 1]);
    refused(
        &d,
        &[],
        &[
            "labels.npy: item \"b\": label: class id 3 out of range 0 to 2 (-1 marks an unlabelled item)",
        ],
    );
}

const H: usize = 4;
const W: usize = 5;

/// A 2-item segmentation dataset of 3 classes, `H × W`, masks `a.png`
/// (valid) and `b.png` (written by the caller).
fn seg(d: &Path) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        "task = \"segmentation\"\nnum_classes = 3\n[inputs]\nitems = \"items.csv\"\n\
         probs = \"probs.npy\"\n",
    )
    .unwrap();
    std::fs::write(d.join("items.csv"), "id,mask\na,a.png\nb,b.png\n").unwrap();
    let mut probs = vec![0.0f32; 2 * 3 * H * W];
    for (i, p) in probs.iter_mut().enumerate() {
        *p = if (i / (H * W)).is_multiple_of(3) {
            0.6
        } else {
            0.2
        };
    }
    write_f32(&d.join("probs.npy"), &[2, 3, H, W], &probs);
    let v: Vec<u8> = (0..H * W).map(|i| (i % 3) as u8).collect();
    write_mask(&d.join("a.png"), H, W, &v);
}

/// Write `path`, `W × H`, of `color` (8-bit), rows `data`.
fn png_file(path: &Path, color: png::ColorType, palette: Option<Vec<u8>>, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), W as u32, H as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    if let Some(p) = palette {
        enc.set_palette(p);
    }
    enc.write_header().unwrap().write_image_data(data).unwrap();
}

#[test]
fn colour_masks_say_what_they_are_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    seg(&d);
    let b = d.join("b.png");
    let accepted = "save the class ids as a grayscale PNG (1, 2, 4, 8 or 16-bit) or a \
                    palette-indexed PNG (the palette index is the class id, whatever its colour)";
    // A colour-coded mask (class 1 red, class 2 green).
    let colours: Vec<u8> = (0..H * W)
        .flat_map(|i| match i % 3 {
            0 => [0, 0, 0],
            1 => [255, 0, 0],
            _ => [0, 255, 0],
        })
        .collect();
    png_file(&b, png::ColorType::Rgb, None, &colours);
    refused(
        &d,
        &[],
        &[
            "b.png: item \"b\": mask: an RGB colour PNG (8-bit, 3 channels); a mask holds one \
             class id per pixel",
            accepted,
            "a colour-coded mask must be mapped to class ids first (each colour to its class \
             index)",
        ],
    );
    // Class ids saved as RGB (R = G = B).
    let gray: Vec<u8> = (0..H * W).flat_map(|i| [(i % 3) as u8; 3]).collect();
    png_file(&b, png::ColorType::Rgb, None, &gray);
    let e = refused(
        &d,
        &[],
        &[
            "an RGB colour PNG (8-bit, 3 channels)",
            accepted,
            "every pixel has R = G = B, so these look like class ids saved as colour: save the \
             one channel as a grayscale PNG",
        ],
    );
    assert!(!e.contains("colour-coded"), "{e}");
    let rgba: Vec<u8> = (0..H * W)
        .flat_map(|i| [(i % 3) as u8, 0, 9, 255])
        .collect();
    png_file(&b, png::ColorType::Rgba, None, &rgba);
    refused(
        &d,
        &[],
        &[
            "an RGBA colour PNG (8-bit, 4 channels)",
            "a colour-coded mask must be mapped",
        ],
    );
    let ga: Vec<u8> = (0..H * W).flat_map(|i| [(i % 3) as u8, 255]).collect();
    png_file(&b, png::ColorType::GrayscaleAlpha, None, &ga);
    refused(
        &d,
        &[],
        &[
            "a grayscale PNG with an alpha channel (8-bit, 2 channels)",
            "drop the alpha channel: save the gray channel alone",
        ],
    );
    // What the message offers is read: a palette PNG's indices are the ids.
    let idx: Vec<u8> = (0..H * W).map(|i| (i % 3) as u8).collect();
    png_file(
        &b,
        png::ColorType::Indexed,
        Some(vec![0, 0, 0, 255, 0, 0, 0, 255, 0]),
        &idx,
    );
    let (code, _, msg) = run(&d, &[]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn channels_last_probabilities_name_the_layout_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    seg(&d);
    let v: Vec<u8> = (0..H * W).map(|i| (i % 3) as u8).collect();
    write_mask(&d.join("b.png"), H, W, &v);
    let p = vec![1.0f32 / 3.0; 2 * H * W * 3];
    write_f32(&d.join("probs.npy"), &[2, H, W, 3], &p);
    refused(
        &d,
        &[],
        &[
            "probs.npy: shape: 4 classes in the probabilities but 3 in triage.toml",
            "the last axis has 3 entries and triage.toml says 3 classes: the array looks \
             channels-last, (N, H, W, C); set probs_layout = \"nhwc\" in triage.toml's [inputs]",
        ],
    );
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(d.join("triage.toml"), toml + "probs_layout = \"nhwc\"\n").unwrap();
    let (code, _, msg) = run(&d, &[]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn a_path_to_triage_toml_is_its_dataset_and_other_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    cls(&d, NAMES, "id,label", &["a,cat", "b,dog", "c,fox"], &PROBS);
    let out = tmp.path().join("out");
    let toml = d.join("triage.toml");
    let args = cpu_args(&toml, &out, &[]);
    let o = triage(&args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&args, &o));
    // The run records the directory.
    assert_eq!(
        read_report(&out)["options"]["dataset"].as_str(),
        Some(d.to_str().unwrap())
    );
    // Another file: what to pass instead.
    let items = d.join("items.csv");
    let out2 = tmp.path().join("out2");
    let args = cpu_args(&items, &out2, &[]);
    let o = triage(&args);
    let msg = describe(&args, &o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    let want = format!(
        "{}: this is a file, not a dataset directory; pass the directory holding triage.toml: {}",
        items.display(),
        d.display()
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains(&want), "{msg}");
    // A bare `triage.toml` in the working directory is `.`.
    let o = Command::new(env!("CARGO_BIN_EXE_triage"))
        .current_dir(&d)
        .args(["run", "triage.toml", "--out", "o3", "--backend", "cpu"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(d.join("o3/queue.jsonl").is_file());
}

/// A normal run on the default backend prints no stray `error:` lines
/// (Mesa's Vulkan layer, probing the Wayland display without
/// `XDG_RUNTIME_DIR`, printed `error: XDG_RUNTIME_DIR is invalid or not set
/// in the environment.` twice).
#[test]
fn a_normal_run_prints_no_driver_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_triage"))
        .env_remove("XDG_RUNTIME_DIR")
        .args(["run", "datasets/demo", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let bad: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error:") || l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert!(bad.is_empty(), "stray lines on stderr: {bad:?}\n{stderr}");
}
