//! Boundary IoU (Cheng, Girshick, Dollár, Berg, Kirillov, CVPR 2021) for
//! semantic label maps.
//!
//! Contract (see `docs/definitions.md`, "Boundary IoU"):
//!
//! * band width `d = max(1, round(0.02 · sqrt(H² + W²)))`, rounding half to
//!   even like the reference code's Python `round` (14 px at 512×512);
//! * the inner boundary band of a binary mask `M` is `B(M) = M \ erode_d(M)`,
//!   erosion by a (2d+1)×(2d+1) square with **pixels outside the image counted
//!   as background**: a pixel of `M` is in the band iff its window contains a
//!   pixel not in `M` or reaches outside the image;
//! * per class `c`, `BoundaryIoU_c = |B(G_c) ∩ B(P_c)| / |B(G_c) ∪ B(P_c)|`,
//!   with bands computed on the full maps and pixels labelled `ignore_index`
//!   removed from both bands *after* banding;
//! * a class whose union is empty is left out; the item value is the mean over
//!   the remaining classes; dataset values sum intersections and unions per
//!   class before dividing.
//!
//! For a label map, "the window around `x` holds only the value `L(x)`" is
//! separable, so one pass finds every class's band at once: a horizontal pass
//! over equal-value runs marks pixels whose row window is uniform, and a
//! vertical pass over runs of those marks finishes the square. Both passes are
//! O(H·W) whatever `d` is. The GPU kernel `shaders/boundary_iou.wgsl` mirrors
//! the same two passes.

use crate::metrics::confusion::mean_defined;

/// Band width in pixels for an `h`×`w` image: `max(1, round(0.02·diag))`,
/// ties to even.
pub fn band_width(h: usize, w: usize) -> usize {
    let diag = ((h * h + w * w) as f64).sqrt();
    ((0.02 * diag).round_ties_even() as usize).max(1)
}

/// Mark the boundary band of every class of `map` (row-major, `h`×`w`) into
/// `band` (1 = in the band of the class `map[i]`, 0 = interior).
///
/// A pixel is interior iff the (2d+1)² window centred on it lies inside the
/// image and holds only its own value.
///
/// # Panics
/// If `map` or `band` is not `h*w` long.
pub fn band_mask(map: &[u16], h: usize, w: usize, d: usize, band: &mut [u8]) {
    assert_eq!(map.len(), h * w, "map is not h*w");
    assert_eq!(band.len(), h * w, "band is not h*w");
    // Horizontal pass: `band[i] = 0` marks a row-uniform pixel (window
    // [x-d, x+d] inside the row and inside one equal-value run).
    for y in 0..h {
        let row = &map[y * w..(y + 1) * w];
        let out = &mut band[y * w..(y + 1) * w];
        let mut start = 0;
        while start < w {
            let v = row[start];
            let mut end = start + 1;
            while end < w && row[end] == v {
                end += 1;
            }
            // Uniform: x ≥ start + d and x + d < end, i.e. the run minus d
            // at each end (two memsets instead of a test per pixel).
            out[start..end].fill(1);
            if end - start > 2 * d {
                out[start + d..end - d].fill(0);
            }
            start = end;
        }
    }
    // Vertical pass: a pixel is interior iff the 2d+1 rows centred on it are
    // all row-uniform with its value. Per column, `run` counts the
    // consecutive row-uniform equal-value pixels ending at the current row:
    // a forward sweep marks (bit 1 of `band`) the pixels with at least d+1
    // such rows ending at them, a backward sweep counts the same downwards
    // and writes the answer. Two `w`-long counters, no `h × w` scratch, and
    // branch-free rows the compiler vectorises.
    let need = d as u32 + 1;
    let mut run = vec![0u32; w];
    for y in 0..h {
        let (above, rest) = map.split_at(y * w);
        let row = &rest[..w];
        let out = &mut band[y * w..(y + 1) * w];
        let prev = if y > 0 { &above[(y - 1) * w..] } else { row };
        let not_first = u32::from(y > 0);
        for (((o, r), &a), &b) in out.iter_mut().zip(run.iter_mut()).zip(prev).zip(row) {
            // r' = uniform ? (same as above ? r + 1 : 1) : 0, in arithmetic
            // (`r` is 0 when the pixel above was not row-uniform), capped at
            // `need` so it never overflows.
            // As masks (all ones for true), so the row vectorises without
            // a multiply.
            let uniform = 0u32.wrapping_sub(u32::from(*o == 0));
            let same = 0u32.wrapping_sub(u32::from(a == b) & not_first);
            let v = (((*r & same) + 1) & uniform).min(need);
            *r = v;
            *o |= u8::from(v >= need) << 1;
        }
    }
    run.fill(0);
    for y in (0..h).rev() {
        let (head, below) = map.split_at((y + 1) * w);
        let row = &head[y * w..];
        let next = if y + 1 < h { &below[..w] } else { row };
        let not_last = u32::from(y + 1 < h);
        let out = &mut band[y * w..(y + 1) * w];
        for (((o, r), &a), &b) in out.iter_mut().zip(run.iter_mut()).zip(next).zip(row) {
            let uniform = 0u32.wrapping_sub(u32::from(*o & 1 == 0));
            let same = 0u32.wrapping_sub(u32::from(a == b) & not_last);
            let v = (((*r & same) + 1) & uniform).min(need);
            *r = v;
            let interior = (*o >> 1) & u8::from(v >= need);
            *o = interior ^ 1;
        }
    }
}

/// Per-class band counts: `inter[c] = |B(G_c) ∩ B(P_c)|`, `gt[c] = |B(G_c)|`,
/// `pred[c] = |B(P_c)|`, each after removing ignored pixels.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BandCounts {
    /// Pixels in both bands, per class.
    pub inter: Vec<u64>,
    /// Pixels in the annotation's band, per class.
    pub gt: Vec<u64>,
    /// Pixels in the prediction's band, per class.
    pub pred: Vec<u64>,
}

impl BandCounts {
    /// All-zero counts for `c` classes.
    pub fn zeros(c: usize) -> Self {
        Self {
            inter: vec![0; c],
            gt: vec![0; c],
            pred: vec![0; c],
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.inter.len()
    }

    /// Check counts read from a file against a run of `classes` classes,
    /// for items of `area` pixels in all: three arrays of `classes` counts,
    /// `inter ≤ gt`, `inter ≤ pred`, and no band larger than `area`.
    pub fn check(&self, classes: usize, area: u64) -> Result<(), String> {
        for (name, v) in [
            ("inter", &self.inter),
            ("gt", &self.gt),
            ("pred", &self.pred),
        ] {
            if v.len() != classes {
                return Err(format!(
                    "{name}: {} counts, expected {classes} (one a class)",
                    v.len()
                ));
            }
            if let Some(k) = v.iter().position(|&x| x > area) {
                return Err(format!(
                    "{name}[{k}]: {} pixels, more than the items' {area}",
                    v[k]
                ));
            }
        }
        for k in 0..classes {
            if self.inter[k] > self.gt[k] || self.inter[k] > self.pred[k] {
                return Err(format!(
                    "inter[{k}]: {} pixels, more than gt {} or pred {}",
                    self.inter[k], self.gt[k], self.pred[k]
                ));
            }
        }
        Ok(())
    }

    /// [`BandCounts::add`], saturating instead of overflowing (for counts
    /// read from a file, whose totals are checked beforehand).
    pub fn add_saturating(&mut self, other: &BandCounts) {
        for (dst, src) in [
            (&mut self.inter, &other.inter),
            (&mut self.gt, &other.gt),
            (&mut self.pred, &other.pred),
        ] {
            for (a, b) in dst.iter_mut().zip(src) {
                *a = a.saturating_add(*b);
            }
        }
    }

    /// `|B(G_c) ∪ B(P_c)| = gt + pred − inter`.
    pub fn union(&self, c: usize) -> u64 {
        self.gt[c] + self.pred[c] - self.inter[c]
    }

    /// Add another item's (or batch's) counts, class by class.
    pub fn add(&mut self, other: &BandCounts) {
        for (a, b) in self.inter.iter_mut().zip(&other.inter) {
            *a += b;
        }
        for (a, b) in self.gt.iter_mut().zip(&other.gt) {
            *a += b;
        }
        for (a, b) in self.pred.iter_mut().zip(&other.pred) {
            *a += b;
        }
    }

    /// Boundary IoU of class `c`; `None` when its union is empty.
    pub fn iou(&self, c: usize) -> Option<f64> {
        let u = self.union(c);
        (u > 0).then(|| self.inter[c] as f64 / u as f64)
    }

    /// Mean Boundary IoU over the classes with a non-empty union; `None` when
    /// there are none.
    pub fn mean_iou(&self) -> Option<f64> {
        mean_defined((0..self.classes()).map(|c| self.iou(c)))
    }
}

/// Boundary IoU counts between an annotation `labels` and a prediction `pred`
/// (row-major `h`×`w` class maps). Pixels whose label is `ignore_index` are
/// removed from both bands after banding; label values ≥ `num_classes` other
/// than `ignore_index` are not counted for any class. `d = None` uses
/// [`band_width`].
pub fn band_counts(
    labels: &[u16],
    pred: &[u16],
    h: usize,
    w: usize,
    num_classes: usize,
    ignore_index: u16,
    d: Option<usize>,
) -> BandCounts {
    let d = d.unwrap_or_else(|| band_width(h, w));
    let mut bg = vec![0u8; h * w];
    let mut bp = vec![0u8; h * w];
    band_mask(labels, h, w, d, &mut bg);
    band_mask(pred, h, w, d, &mut bp);
    count_bands(labels, &bg, pred, &bp, num_classes, ignore_index)
}

/// [`band_counts`] from bands already marked by [`band_mask`]: `bg` of
/// `labels`, `bp` of `pred` (so a caller can mark the annotation's band
/// while the prediction is still being computed).
///
/// # Panics
/// If the four slices differ in length.
pub fn count_bands(
    labels: &[u16],
    bg: &[u8],
    pred: &[u16],
    bp: &[u8],
    num_classes: usize,
    ignore_index: u16,
) -> BandCounts {
    let n = labels.len();
    assert!(bg.len() == n && pred.len() == n && bp.len() == n);
    let mut counts = BandCounts::zeros(num_classes);
    for i in 0..n {
        let l = labels[i];
        if l == ignore_index {
            continue;
        }
        let p = pred[i] as usize;
        let in_g = bg[i] != 0 && (l as usize) < num_classes;
        let in_p = bp[i] != 0 && p < num_classes;
        if in_g {
            counts.gt[l as usize] += 1;
        }
        if in_p {
            counts.pred[p] += 1;
        }
        if in_g && in_p && l as usize == p {
            counts.inter[p] += 1;
        }
    }
    counts
}

/// Boundary IoU counts between two annotators' maps `a` and `b`: each
/// map's bands are marked on the full map (as [`band_counts`]), and a pixel
/// counts only where neither map is `ignore_index` (removed from both bands
/// after banding), so the counts are symmetric (`gt` is `a`'s band, `pred`
/// is `b`'s). `d = None` uses [`band_width`].
pub fn pair_band_counts(
    a: &[u16],
    b: &[u16],
    h: usize,
    w: usize,
    num_classes: usize,
    ignore_index: u16,
    d: Option<usize>,
) -> BandCounts {
    let d = d.unwrap_or_else(|| band_width(h, w));
    let mut ba = vec![0u8; h * w];
    let mut bb = vec![0u8; h * w];
    band_mask(a, h, w, d, &mut ba);
    band_mask(b, h, w, d, &mut bb);
    let mut counts = BandCounts::zeros(num_classes);
    for i in 0..h * w {
        let (x, y) = (a[i], b[i]);
        if x == ignore_index || y == ignore_index {
            continue;
        }
        let in_a = ba[i] != 0 && (x as usize) < num_classes;
        let in_b = bb[i] != 0 && (y as usize) < num_classes;
        if in_a {
            counts.gt[x as usize] += 1;
        }
        if in_b {
            counts.pred[y as usize] += 1;
        }
        if in_a && in_b && x == y {
            counts.inter[x as usize] += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Reference: the definition read literally, for one binary mask. Erode
    /// `d` times with a 3×3 square, zero padding outside the image, then take
    /// `M \ erode(M)`.
    fn naive_band(mask: &[bool], h: usize, w: usize, d: usize) -> Vec<bool> {
        let mut cur = mask.to_vec();
        for _ in 0..d {
            let mut next = vec![false; h * w];
            for y in 0..h {
                for x in 0..w {
                    let mut all = true;
                    for dy in -1i64..=1 {
                        for dx in -1i64..=1 {
                            let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                            let inside = yy >= 0 && xx >= 0 && yy < h as i64 && xx < w as i64;
                            if !inside || !cur[yy as usize * w + xx as usize] {
                                all = false;
                            }
                        }
                    }
                    next[y * w + x] = all;
                }
            }
            cur = next;
        }
        mask.iter().zip(&cur).map(|(&m, &e)| m && !e).collect()
    }

    fn naive_counts(
        labels: &[u16],
        pred: &[u16],
        h: usize,
        w: usize,
        c: usize,
        ignore: u16,
        d: usize,
    ) -> BandCounts {
        let mut out = BandCounts::zeros(c);
        for k in 0..c {
            let g: Vec<bool> = labels.iter().map(|&v| v as usize == k).collect();
            let p: Vec<bool> = pred.iter().map(|&v| v as usize == k).collect();
            let bg = naive_band(&g, h, w, d);
            let bp = naive_band(&p, h, w, d);
            for i in 0..h * w {
                if labels[i] == ignore {
                    continue;
                }
                out.gt[k] += u64::from(bg[i]);
                out.pred[k] += u64::from(bp[i]);
                out.inter[k] += u64::from(bg[i] && bp[i]);
            }
        }
        out
    }

    #[test]
    fn band_width_follows_the_published_examples() {
        assert_eq!(band_width(512, 512), 14); // 0.02·724.08 = 14.48
        assert_eq!(band_width(1024, 2048), 46); // 0.02·2289.7 = 45.79
        assert_eq!(band_width(4, 4), 1); // clamped to at least 1
        assert_eq!(band_width(25, 0), 1); // 0.5 rounds to even 0, clamped to 1
        assert_eq!(band_width(75, 0), 2); // 1.5 rounds to even 2
        assert_eq!(band_width(125, 0), 2); // 2.5 rounds to even 2
    }

    #[test]
    fn hand_worked_square_in_a_6x6_image() {
        // A 4×4 square of class 1 at rows/cols 1..5 on background 0, d = 1.
        // Class 1 band: the square's 12 border pixels (interior 2×2 survives).
        // Class 0 band: every background pixel, since each touches the image
        // edge or the square (20 pixels).
        let (h, w) = (6, 6);
        let mut m = vec![0u16; h * w];
        for y in 1..5 {
            for x in 1..5 {
                m[y * w + x] = 1;
            }
        }
        let mut band = vec![0u8; h * w];
        band_mask(&m, h, w, 1, &mut band);
        let interior: Vec<usize> = (0..h * w).filter(|&i| band[i] == 0).collect();
        assert_eq!(interior, vec![2 * 6 + 2, 2 * 6 + 3, 3 * 6 + 2, 3 * 6 + 3]);
        let c = band_counts(&m, &m, h, w, 2, 255, Some(1));
        assert_eq!(c.gt, vec![20, 12]);
        assert_eq!(c.inter, vec![20, 12]);
        assert_eq!(c.mean_iou(), Some(1.0));
    }

    /// 8×8: class 1 on rows 2..6, cols 2..6 (`g`), and the same square
    /// shifted right by one (`p`, cols 3..7), on background 0.
    fn shifted_square() -> (Vec<u16>, Vec<u16>) {
        let w = 8;
        let mut g = vec![0u16; 8 * w];
        let mut p = vec![0u16; 8 * w];
        for y in 2..6 {
            for x in 2..6 {
                g[y * w + x] = 1;
                p[y * w + x + 1] = 1;
            }
        }
        (g, p)
    }

    #[test]
    fn hand_worked_shifted_square() {
        // 8×8, d = 1. Annotation: class 1 on rows 2..6, cols 2..6 (4×4).
        // Prediction: the same square shifted right by one (cols 3..7).
        // Band(G_1): rows 2 and 5 at cols 2..6 plus rows 3, 4 at cols 2 and 5
        // (12 pixels); Band(P_1) likewise at cols 3..7 (12 pixels). Shared:
        // rows 2 and 5 at cols 3, 4, 5 (6 pixels); the side columns never
        // coincide. Intersection 6, union 12 + 12 − 6 = 18.
        let (h, w) = (8, 8);
        let (g, p) = shifted_square();
        let c = band_counts(&g, &p, h, w, 2, 255, Some(1));
        assert_eq!(c.gt[1], 12);
        assert_eq!(c.pred[1], 12);
        assert_eq!(c.inter[1], 6);
        assert_eq!(c.iou(1), Some(6.0 / 18.0));
    }

    #[test]
    fn pair_counts_are_symmetric_and_drop_either_ignore() {
        // Without ignored pixels the pair counts are the annotation-vs-
        // prediction counts of the shifted square (hand-worked above).
        let (h, w) = (8, 8);
        let (g, p) = shifted_square();
        let clean = pair_band_counts(&g, &p, h, w, 2, 255, Some(1));
        assert_eq!((clean.gt[1], clean.pred[1], clean.inter[1]), (12, 12, 6));
        assert_eq!(clean, band_counts(&g, &p, h, w, 2, 255, Some(1)));
        // Random maps with pixels ignored on either side, against the
        // definition read literally (naive erosion per class).
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (h, w, c, d) = (20, 17, 3, 2);
        for _ in 0..20 {
            let mut pick = |n: usize| -> Vec<u16> {
                (0..n)
                    .map(|_| match rng.random_range(0..20) {
                        0 => 255,
                        k => (k % c) as u16,
                    })
                    .collect()
            };
            let (x, y) = (pick(h * w), pick(h * w));
            let got = pair_band_counts(&x, &y, h, w, c, 255, Some(d));
            let mut want = BandCounts::zeros(c);
            for k in 0..c {
                let bx = naive_band(
                    &x.iter().map(|&v| v as usize == k).collect::<Vec<_>>(),
                    h,
                    w,
                    d,
                );
                let by = naive_band(
                    &y.iter().map(|&v| v as usize == k).collect::<Vec<_>>(),
                    h,
                    w,
                    d,
                );
                for i in 0..h * w {
                    if x[i] == 255 || y[i] == 255 {
                        continue;
                    }
                    want.gt[k] += bx[i] as u64;
                    want.pred[k] += by[i] as u64;
                    want.inter[k] += (bx[i] && by[i]) as u64;
                }
            }
            assert_eq!(got, want);
            let r = pair_band_counts(&y, &x, h, w, c, 255, Some(d));
            assert_eq!(
                (r.gt, r.pred, r.inter),
                (got.pred, got.gt, got.inter),
                "symmetric"
            );
        }
    }

    #[test]
    fn empty_union_class_is_left_out() {
        let m = vec![0u16; 16];
        let c = band_counts(&m, &m, 4, 4, 3, 255, Some(1));
        assert_eq!(c.iou(1), None);
        assert_eq!(c.iou(2), None);
        assert_eq!(c.mean_iou(), Some(1.0));
        let none = BandCounts::zeros(2);
        assert_eq!(none.mean_iou(), None);
    }

    #[test]
    fn ignored_pixels_shape_bands_but_are_not_counted() {
        // Class 0 everywhere except an ignored 2×2 block: the block makes its
        // neighbours band pixels, and the block itself is not counted.
        let (h, w) = (8, 8);
        let mut g = vec![0u16; h * w];
        for y in 3..5 {
            for x in 3..5 {
                g[y * w + x] = 255;
            }
        }
        let p = vec![0u16; h * w];
        let c = band_counts(&g, &p, h, w, 1, 255, Some(1));
        // G's class-0 band: the 28-pixel image border + the 12-pixel ring
        // around the block = 40. P's band: the 28-pixel border only; the
        // 4 block pixels would be interior in P anyway.
        assert_eq!(c.gt[0], 40);
        assert_eq!(c.pred[0], 28);
        assert_eq!(c.inter[0], 28);
        assert_eq!(c, naive_counts(&g, &p, h, w, 1, 255, 1));
    }

    #[test]
    fn separable_pass_matches_iterated_erosion_on_random_maps() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..60 {
            let h = rng.random_range(1..24);
            let w = rng.random_range(1..24);
            let c = rng.random_range(1..4);
            let d = rng.random_range(1..5);
            // Blocky maps (so interiors exist) with occasional noise.
            let cell = rng.random_range(1..6);
            let blocks: Vec<u16> = (0..(h / cell + 1) * (w / cell + 1))
                .map(|_| rng.random_range(0..c as u16))
                .collect();
            let mk = |rng: &mut ChaCha8Rng| -> Vec<u16> {
                (0..h * w)
                    .map(|i| {
                        let (y, x) = (i / w, i % w);
                        if rng.random_bool(0.05) {
                            if rng.random_bool(0.3) {
                                255
                            } else {
                                rng.random_range(0..c as u16)
                            }
                        } else {
                            blocks[(y / cell) * (w / cell + 1) + x / cell]
                        }
                    })
                    .collect()
            };
            let g = mk(&mut rng);
            let p: Vec<u16> = mk(&mut rng)
                .into_iter()
                .map(|v| if v == 255 { 0 } else { v })
                .collect();
            let fast = band_counts(&g, &p, h, w, c, 255, Some(d));
            let slow = naive_counts(&g, &p, h, w, c, 255, d);
            assert_eq!(fast, slow, "case {case}: {h}x{w} c={c} d={d}");
        }
    }
}
