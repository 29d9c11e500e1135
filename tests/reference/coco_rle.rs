//! COCO RLE (`triage::io::coco_rle`) bit for bit against pycocotools
//! itself: random masks of odd sizes (counts strings and decoded pixels),
//! random polygon lists, self-intersecting and partly outside the image
//! (`frPyObjects` + `merge` + `decode`), and uncompressed RLE
//! (`frPyObjects` on `{"counts": [...]}`), all computed by
//! `py/coco_rle_ref.py` with `TRIAGE_REF_PYTHON`. Skipped without it, a
//! failure when `TRIAGE_REQUIRE_REF=1`.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use triage::io::coco_rle::{
    decode, encode, from_polygons, from_string, from_uncompressed, to_string,
};

/// A random row-major `h × w` mask of one of several textures: empty, full,
/// sparse, dense, noise, or a few rectangles (long runs: multi-character
/// counts and negative deltas).
fn random_mask(rng: &mut ChaCha8Rng, h: usize, w: usize) -> Vec<u8> {
    let n = h * w;
    match rng.random_range(0..6) {
        0 => vec![0; n],
        1 => vec![1; n],
        2 => (0..n).map(|_| rng.random_bool(0.05) as u8).collect(),
        3 => (0..n).map(|_| rng.random_bool(0.95) as u8).collect(),
        4 => (0..n).map(|_| rng.random_bool(0.5) as u8).collect(),
        _ => {
            let mut m = vec![0; n];
            for _ in 0..rng.random_range(1..4) {
                let (y0, x0) = (rng.random_range(0..h), rng.random_range(0..w));
                let (y1, x1) = (rng.random_range(y0..h), rng.random_range(x0..w));
                for y in y0..=y1 {
                    for x in x0..=x1 {
                        m[y * w + x] ^= 1;
                    }
                }
            }
            m
        }
    }
}

/// A random coordinate along an axis of `len` pixels, from 30% before the
/// image to 30% after it: a float, an integer, a half, or a tenth (values
/// whose ×5 + .5 rounding sits on or near a tie).
fn coord(rng: &mut ChaCha8Rng, len: usize) -> f64 {
    let len = len as f64;
    let v = rng.random_range(-0.3 * len..1.3 * len + 1.0);
    match rng.random_range(0..4) {
        0 => v,
        1 => v.round(),
        2 => (v * 2.0).round() / 2.0,
        _ => (v * 10.0).round() / 10.0,
    }
}

fn random_polygons(rng: &mut ChaCha8Rng, h: usize, w: usize) -> Vec<Vec<f64>> {
    (0..rng.random_range(1..5))
        .map(|j| {
            // Later polygons may have 1 or 2 points (pycocotools walks them).
            let k = rng.random_range(if j == 0 { 3 } else { 1 }..13);
            let mut p = Vec::with_capacity(2 * k);
            for _ in 0..k {
                if p.len() >= 2 && rng.random_bool(0.1) {
                    // a repeated vertex
                    let (x, y) = (p[p.len() - 2], p[p.len() - 1]);
                    p.extend([x, y]);
                } else {
                    p.extend([coord(rng, w), coord(rng, h)]);
                }
            }
            p
        })
        .collect()
}

const SIZES: [(usize, usize); 10] = [
    (1, 1),
    (7, 13),
    (64, 33),
    (100, 1),
    (1, 100),
    (2, 2),
    (13, 7),
    (31, 64),
    (257, 300),
    (5, 5),
];

fn pixels_string(m: &[u8]) -> String {
    m.iter().map(|&v| char::from(b'0' + v)).collect()
}

#[test]
fn coco_rle_matches_pycocotools() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the pycocotools reference: set TRIAGE_REF_PYTHON");
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(28);
    let size = |rng: &mut ChaCha8Rng, i: usize| {
        if i < 4 * SIZES.len() {
            SIZES[i % SIZES.len()]
        } else {
            (rng.random_range(1..70), rng.random_range(1..70))
        }
    };
    let mut masks = Vec::new();
    for i in 0..1000 {
        let (h, w) = size(&mut rng, i);
        masks.push((h, w, random_mask(&mut rng, h, w)));
    }
    let mut polys = Vec::new();
    for i in 0..2000 {
        let (h, w) = size(&mut rng, i);
        polys.push((h, w, random_polygons(&mut rng, h, w)));
    }
    let cases = json!({
        "masks": masks.iter().map(|(h, w, m)| json!({"h": h, "w": w, "data": m})).collect::<Vec<_>>(),
        "polys": polys.iter().map(|(h, w, p)| json!({"h": h, "w": w, "polys": p})).collect::<Vec<_>>(),
        "uncompressed": masks.iter().map(|(h, w, m)| json!({"h": h, "w": w, "counts": encode(m, *h, *w).unwrap().counts})).collect::<Vec<_>>(),
    });
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cases.json");
    std::fs::write(&file, cases.to_string()).unwrap();
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/py/coco_rle_ref.py"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Value = serde_json::from_slice(&o.stdout).unwrap();

    for (i, (h, w, m)) in masks.iter().enumerate() {
        let (h, w) = (*h, *w);
        let r = &want["masks"][i];
        let rle = encode(m, h, w).unwrap();
        let s = to_string(&rle);
        assert_eq!(s, r["counts"].as_str().unwrap(), "mask {i} ({h} x {w})");
        let pix = decode(&from_string(r["counts"].as_str().unwrap(), h, w).unwrap()).unwrap();
        assert_eq!(
            pixels_string(&pix),
            r["pixels"].as_str().unwrap(),
            "mask {i}"
        );
        assert_eq!(&pix, m, "mask {i}: decode(encode(m))");
        let wide: Vec<u64> = rle.counts.iter().map(|&c| u64::from(c)).collect();
        assert_eq!(
            to_string(&from_uncompressed(&wide, h, w).unwrap()),
            want["uncompressed"][i].as_str().unwrap(),
            "uncompressed {i}"
        );
    }
    for (i, (h, w, p)) in polys.iter().enumerate() {
        let (h, w) = (*h, *w);
        let r = &want["polys"][i];
        for (j, one) in p.iter().enumerate() {
            if one.len() < 6 {
                // A later polygon of 1 or 2 points: only the merged mask
                // (below) reads it, as pycocotools' list does.
                continue;
            }
            let got = to_string(&from_polygons(std::slice::from_ref(one), h, w).unwrap());
            assert_eq!(
                got,
                r["each"][j].as_str().unwrap(),
                "polygons {i} ({h} x {w}), polygon {j}: {one:?}"
            );
        }
        let rle = from_polygons(p, h, w).unwrap();
        assert_eq!(
            to_string(&rle),
            r["merged"].as_str().unwrap(),
            "polygons {i} ({h} x {w}) merged: {p:?}"
        );
        assert_eq!(
            pixels_string(&decode(&rle).unwrap()),
            r["pixels"].as_str().unwrap(),
            "polygons {i} pixels"
        );
    }
    eprintln!(
        "pycocotools agreed on {} masks (encode, decode, uncompressed) and {} polygon lists ({} polygons)",
        masks.len(),
        polys.len(),
        polys.iter().map(|p| p.2.len()).sum::<usize>()
    );
}
