//! The CVAT for images 1.1 reader (`triage::io::labelfile::cvat`) against
//! CVAT's own conversion to masks, as `py/cvat_ref.py` performs it with
//! pycocotools (`TRIAGE_REF_PYTHON`): random polygons (partly outside the
//! image, coordinates with 0 to 4 decimals, which Datumaro rounds to 2),
//! boxes (some rotated), masks (CVAT's row-major box runs, boxes reaching
//! the image's edges) and z_orders, plus CVAT's documented example. Every
//! region must have the same label and the same pycocotools counts string,
//! in the same stacking order. Skipped without `TRIAGE_REF_PYTHON`, a
//! failure when `TRIAGE_REQUIRE_REF=1`.

use std::fmt::Write as _;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use triage::io::coco_rle::to_string;
use triage::io::labelfile::cvat;

const LABELS: [&str; 3] = ["road", "car & bus", "sky"];

/// A coordinate along an axis of `len` pixels, from 30% before the image
/// to 30% after it, written with 0 to 4 decimals.
fn coord(rng: &mut ChaCha8Rng, len: usize) -> String {
    let len = len as f64;
    let v = rng.random_range(-0.3 * len..1.3 * len + 1.0);
    let d = rng.random_range(0..5);
    format!("{v:.d$}")
}

fn shape(rng: &mut ChaCha8Rng, h: usize, w: usize) -> String {
    let label = LABELS[rng.random_range(0..LABELS.len())].replace('&', "&amp;");
    let z = match rng.random_range(0..4) {
        0 => String::new(),
        _ => format!(" z_order=\"{}\"", rng.random_range(-2..3)),
    };
    match rng.random_range(0..3) {
        0 => {
            let k = rng.random_range(3..10);
            let pts: Vec<String> = (0..k)
                .map(|_| format!("{},{}", coord(rng, w), coord(rng, h)))
                .collect();
            format!(
                "<polygon label=\"{label}\" points=\"{}\"{z}/>",
                pts.join(";")
            )
        }
        1 => {
            let (x0, y0) = (coord(rng, w), coord(rng, h));
            let (x1, y1) = (coord(rng, w), coord(rng, h));
            let rotation = if rng.random_bool(0.3) {
                format!(" rotation=\"{:.2}\"", rng.random_range(-180.0..180.0))
            } else {
                String::new()
            };
            format!(
                "<box label=\"{label}\" xtl=\"{x0}\" ytl=\"{y0}\" xbr=\"{x1}\" ybr=\"{y1}\"{rotation}{z}/>"
            )
        }
        _ => {
            let (top, left) = (rng.random_range(0..h), rng.random_range(0..w));
            let (bh, bw) = if rng.random_bool(0.3) {
                (h - top, w - left)
            } else {
                (
                    rng.random_range(1..=h - top),
                    rng.random_range(1..=w - left),
                )
            };
            let p = [0.0, 1.0, 0.1, 0.9, 0.5][rng.random_range(0..5)];
            let mut runs = Vec::new();
            let (mut v, mut n) = (false, 0u32);
            for _ in 0..bw * bh {
                let b = rng.random_bool(p);
                if b != v {
                    runs.push(n);
                    n = 0;
                    v = b;
                }
                n += 1;
            }
            runs.push(n);
            let sep = if rng.random_bool(0.8) { ", " } else { "," };
            let rle = runs
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(sep);
            format!(
                "<mask label=\"{label}\" rle=\"{rle}\" left=\"{left}\" top=\"{top}\" width=\"{bw}\" height=\"{bh}\"{z}/>"
            )
        }
    }
}

fn random_file(rng: &mut ChaCha8Rng, images: usize) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations><version>1.1</version><meta><task><labels>",
    );
    for l in LABELS {
        let _ = write!(s, "<label><name>{}</name></label>", l.replace('&', "&amp;"));
    }
    s.push_str("</labels></task></meta>\n");
    for i in 0..images {
        let (h, w) = if i % 5 == 0 {
            (rng.random_range(1..4), rng.random_range(1..4))
        } else {
            (rng.random_range(1..60), rng.random_range(1..60))
        };
        let _ = write!(
            s,
            "<image id=\"{i}\" name=\"{i}.png\" width=\"{w}\" height=\"{h}\">"
        );
        for _ in 0..rng.random_range(0..6) {
            s.push_str(&shape(rng, h, w));
        }
        s.push_str("</image>\n");
    }
    s.push_str("</annotations>\n");
    s
}

#[test]
fn cvat_reader_matches_cvats_own_conversion() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the CVAT reference: set TRIAGE_REF_PYTHON");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("tests/data/cvat/xml_format_example.xml"))
        .unwrap()
        .replacen(
            "      </labels>",
            "<label><name>good_frame</name></label></labels>",
            1,
        );
    let mut rng = ChaCha8Rng::seed_from_u64(28);
    let tmp = tempfile::tempdir().unwrap();
    let mut files = vec![tmp.path().join("example.xml")];
    std::fs::write(&files[0], &example).unwrap();
    for f in 0..4 {
        let p = tmp.path().join(format!("random{f}.xml"));
        std::fs::write(&p, random_file(&mut rng, 100)).unwrap();
        files.push(p);
    }
    let o = std::process::Command::new(python)
        .arg(root.join("tests/reference/py/cvat_ref.py"))
        .args(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Value = serde_json::from_slice(&o.stdout).unwrap();
    let (mut regions, mut kinds) = (0, [0usize; 3]);
    for (f, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).unwrap();
        for (k, tag) in ["<polygon", "<box", "<mask"].iter().enumerate() {
            kinds[k] += text.matches(tag).count();
        }
        let doc = cvat::parse(file, text.as_bytes()).unwrap();
        let want = want[f].as_array().unwrap();
        assert_eq!(doc.images.len(), want.len(), "{}", file.display());
        for (i, (img, w)) in doc.images.iter().zip(want).enumerate() {
            let w = w.as_array().unwrap();
            let got: Vec<(String, String)> = img
                .annotations
                .first()
                .map(|a| {
                    a.regions
                        .iter()
                        .map(|r| (doc.categories[r.category].name.clone(), to_string(&r.rle)))
                        .collect()
                })
                .unwrap_or_default();
            let w: Vec<(String, String)> = w
                .iter()
                .map(|r| {
                    (
                        r[0].as_str().unwrap().to_string(),
                        r[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            assert_eq!(got, w, "{} image {i}", file.display());
            regions += got.len();
        }
    }
    assert!(kinds.iter().all(|&k| k > 50), "{kinds:?}");
    eprintln!(
        "CVAT's conversion agreed on {regions} regions ({} polygons, {} boxes, {} masks)",
        kinds[0], kinds[1], kinds[2]
    );
}
