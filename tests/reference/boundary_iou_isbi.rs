//! Boundary IoU on real expert masks with thin, winding boundaries: the ISBI
//! 2012 membrane sections in `../shared/data/isbi2012-membrane` (tests only;
//! never shipped). Adjacent sections act as annotation and prediction.
//!
//! The expected counts come from an independent reading of the definition: a
//! pixel of class `c` is in the band iff its (2d+1)² window, clipped to the
//! image, holds fewer than (2d+1)² pixels of class `c` (it either reaches
//! outside the image, i.e. background padding, or holds another value).
//! Window counts use a summed-area table, not the library's run-length passes.

use crate::common::*;
use triage::metrics::boundary_iou::{BandCounts, band_counts, band_width};

const IGNORE: u16 = 255;

fn load(dir: &std::path::Path, k: usize) -> Vec<u16> {
    let img = image::open(dir.join(format!("label/{k}.png")))
        .unwrap()
        .into_luma8();
    assert_eq!(img.dimensions(), (512, 512));
    // 255 = cell interior (class 1), 0 = membrane (class 0).
    img.into_raw()
        .into_iter()
        .map(|v| u16::from(v == 255))
        .collect()
}

/// Band of class `c` by window counting on a summed-area table.
fn band_by_window_count(map: &[u16], h: usize, w: usize, c: u16, d: usize) -> Vec<bool> {
    let mut sat = vec![0u32; (h + 1) * (w + 1)];
    for y in 0..h {
        for x in 0..w {
            sat[(y + 1) * (w + 1) + x + 1] = u32::from(map[y * w + x] == c)
                + sat[y * (w + 1) + x + 1]
                + sat[(y + 1) * (w + 1) + x]
                - sat[y * (w + 1) + x];
        }
    }
    let full = ((2 * d + 1) * (2 * d + 1)) as u32;
    (0..h * w)
        .map(|i| {
            let (y, x) = (i / w, i % w);
            if map[i] != c {
                return false;
            }
            let (y0, y1) = (y.saturating_sub(d), (y + d + 1).min(h));
            let (x0, x1) = (x.saturating_sub(d), (x + d + 1).min(w));
            let n = sat[y1 * (w + 1) + x1] + sat[y0 * (w + 1) + x0]
                - sat[y0 * (w + 1) + x1]
                - sat[y1 * (w + 1) + x0];
            n < full
        })
        .collect()
}

fn reference(g: &[u16], p: &[u16], h: usize, w: usize, d: usize) -> BandCounts {
    let mut out = BandCounts::zeros(2);
    for c in 0..2u16 {
        let bg = band_by_window_count(g, h, w, c, d);
        let bp = band_by_window_count(p, h, w, c, d);
        for i in 0..h * w {
            if g[i] == IGNORE {
                continue;
            }
            let k = c as usize;
            out.gt[k] += u64::from(bg[i]);
            out.pred[k] += u64::from(bp[i]);
            out.inter[k] += u64::from(bg[i] && bp[i]);
        }
    }
    out
}

#[test]
fn adjacent_sections_match_the_definition() {
    let Some(data) = shared_data() else {
        eprintln!("skipped: ../shared/data not present");
        return;
    };
    let dir = data.join("isbi2012-membrane");
    let (h, w) = (512, 512);
    let d = band_width(h, w);
    assert_eq!(d, 14, "0.02 · 724.08 rounds to 14");
    let maps: Vec<Vec<u16>> = (0..30).map(|k| load(&dir, k)).collect();
    let mut ious = Vec::new();
    for k in 0..29 {
        let got = band_counts(&maps[k], &maps[k + 1], h, w, 2, IGNORE, None);
        let want = reference(&maps[k], &maps[k + 1], h, w, d);
        assert_eq!(got, want, "sections {k} and {}", k + 1);
        ious.push(got.iou(1).unwrap());
    }
    // A mask against itself: every band pixel is shared.
    let same = band_counts(&maps[0], &maps[0], h, w, 2, IGNORE, None);
    assert_eq!(same.inter, same.gt);
    assert_eq!(same.mean_iou(), Some(1.0));
    // Membranes are thin (< 2d wide), so every membrane pixel is in the band.
    let membrane = maps[0].iter().filter(|&&v| v == 0).count() as u64;
    assert_eq!(same.gt[0], membrane);
    // The data's README quotes Boundary IoU about 0.55 between adjacent
    // sections' cell masks (the binary reference-code setting).
    let mean = ious.iter().sum::<f64>() / ious.len() as f64;
    eprintln!("mean cell-class Boundary IoU of adjacent ISBI sections: {mean:.4}");
    assert!((0.5..0.6).contains(&mean), "mean Boundary IoU {mean}");
}

#[test]
fn ignore_square_is_removed_after_banding() {
    let Some(data) = shared_data() else {
        eprintln!("skipped: ../shared/data not present");
        return;
    };
    let dir = data.join("isbi2012-membrane");
    let (h, w) = (512, 512);
    let mut g = load(&dir, 3);
    let p = load(&dir, 4);
    let before = band_counts(&g, &p, h, w, 2, IGNORE, None);
    // Plant a 40×40 ignored square at rows 200..240, cols 300..340.
    for y in 200..240 {
        for x in 300..340 {
            g[y * w + x] = IGNORE;
        }
    }
    let got = band_counts(&g, &p, h, w, 2, IGNORE, None);
    assert_eq!(got, reference(&g, &p, h, w, 14));
    // The square's pixels are gone from the prediction's band counts.
    let pred_band_in_square: u64 = {
        let b0 = band_by_window_count(&p, h, w, 0, 14);
        let b1 = band_by_window_count(&p, h, w, 1, 14);
        (200..240)
            .flat_map(|y| (300..340).map(move |x| y * w + x))
            .map(|i| u64::from(b0[i] || b1[i]))
            .sum()
    };
    assert!(pred_band_in_square > 0);
    assert_eq!(
        before.pred[0] + before.pred[1] - pred_band_in_square,
        got.pred[0] + got.pred[1],
        "only the prediction's band pixels inside the square are removed"
    );
    // And the annotation's band grows around it: pixels next to the ignored
    // square (value 255 ≠ c) now see a foreign value in their window.
    assert!(got.gt[1] > before.gt[1] - 1600);
}

/// End to end: the queue's `boundary_iou` for an item whose annotation is one
/// section and whose (one-hot) prediction is the next.
#[test]
fn pipeline_reports_the_same_boundary_iou() {
    let Some(data) = shared_data() else {
        eprintln!("skipped: ../shared/data not present");
        return;
    };
    let dir = data.join("isbi2012-membrane");
    let (h, w) = (512, 512);
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path();
    std::fs::write(
        ds.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"membrane\", \"cell\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
    )
    .unwrap();
    std::fs::write(ds.join("items.csv"), "id,mask\ns7,s7.png\ns20,s20.png\n").unwrap();
    let mut probs = Vec::with_capacity(2 * 2 * h * w);
    let mut want = Vec::new();
    for k in [7usize, 20] {
        let g = load(&dir, k);
        let p = load(&dir, k + 1);
        let mask: Vec<u8> = g.iter().map(|&v| v as u8).collect();
        write_mask(&ds.join(format!("s{k}.png")), h, w, &mask);
        for c in 0..2u16 {
            probs.extend(p.iter().map(|&v| if v == c { 0.9f32 } else { 0.1 }));
        }
        want.push(reference(&g, &p, h, w, 14).mean_iou().unwrap());
    }
    write_f32(&ds.join("probs.npy"), &[2, 2, h, w], &probs);
    let out = ds.join("out");
    run_ok(ds, &out, &["--backend", "cpu"]);
    for row in read_queue(&out) {
        let k = if row["id"] == "s7" { 0 } else { 1 };
        let got = row["scores"]["boundary_iou"].as_f64().unwrap();
        assert!(
            (got - want[k]).abs() < 1e-12,
            "{}: {got} vs {}",
            row["id"],
            want[k]
        );
    }
}
