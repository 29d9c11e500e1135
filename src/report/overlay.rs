//! Per-item pictures for the HTML report.
//!
//! A segmentation overlay is drawn on the item's image (or, without one, on a
//! grey rendering of the annotation, one grey level per class):
//!
//! 1. the *disagreeing band* is blended in magenta at 50 %: every pixel that
//!    lies in the annotation's or the prediction's Boundary IoU band
//!    ([`crate::metrics::boundary_iou::band_mask`], same width `d`) and does
//!    not count towards the Boundary IoU intersection, i.e. it is in one band
//!    but not the other, or in both with annotation ≠ prediction;
//! 2. the annotated boundary is drawn in yellow, the predicted boundary in
//!    cyan, and white where the two coincide. A boundary pixel is one with a
//!    4-neighbour inside the image of a different value;
//! 3. *ignored* pixels (annotated `ignore_index`, which no score counts) are
//!    drawn as ignore and nothing else: grey hatching ([`ignore_colour`]),
//!    never a class's colour, never band, never boundary. An ignore region
//!    is not an annotated object, so it makes no annotated boundary (a
//!    pixel's ignored neighbours do not count) and no band of its own: the
//!    annotation's band is taken with every ignored pixel given the
//!    prediction's class ([`disagreement`]). (The metric bands the raw
//!    annotation, whose edge along an ignore region may lower Boundary IoU;
//!    the picture shows the disagreements about annotated objects only.)
//!
//! The prediction is the per-pixel argmax of the item's probabilities (the
//! same under a softmax, so `--logits` does not matter).

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::io::npy::NpyArray;
use crate::io::probs::{PlaneSource, ProbBuf};
use crate::metrics::boundary_iou::{band_mask, band_width};

/// Colour of the annotated boundary.
pub const ANNOTATED: [u8; 3] = [255, 215, 0];
/// Colour of the predicted boundary.
pub const PREDICTED: [u8; 3] = [0, 200, 255];
/// Colour where both boundaries coincide.
pub const BOTH: [u8; 3] = [255, 255, 255];
/// Colour of the disagreeing band, blended at [`BAND_ALPHA`].
pub const BAND: [u8; 3] = [255, 0, 255];
/// Opacity of the disagreeing band.
pub const BAND_ALPHA: f32 = 0.5;
/// Ground of the hatching of ignored pixels.
pub const IGNORE: [u8; 3] = [150, 150, 150];
/// Lines of the hatching of ignored pixels: every 4th diagonal.
pub const IGNORE_HATCH: [u8; 3] = [96, 96, 96];

/// The colour of an ignored pixel at `(x, y)`: [`IGNORE_HATCH`] on the
/// diagonals `x + y ≡ 0 (mod 4)`, else [`IGNORE`] (grey hatching, never a
/// class colour).
pub fn ignore_colour(x: usize, y: usize) -> [u8; 3] {
    if (x + y).is_multiple_of(4) {
        IGNORE_HATCH
    } else {
        IGNORE
    }
}

/// `a` blended over by `c` at opacity `alpha`.
pub fn blend(a: [u8; 3], c: [u8; 3], alpha: f32) -> [u8; 3] {
    let mix = |x: u8, y: u8| (x as f32 * (1.0 - alpha) + y as f32 * alpha).round() as u8;
    [mix(a[0], c[0]), mix(a[1], c[1]), mix(a[2], c[2])]
}

/// Grey level of class `k` out of `classes` in the annotation rendering;
/// ignored pixels (`k >= classes`) are near-black.
pub fn class_grey(k: u16, classes: usize) -> u8 {
    if k as usize >= classes {
        return 16;
    }
    let span = classes.saturating_sub(1).max(1) as f32;
    (60.0 + 160.0 * k as f32 / span).round() as u8
}

pub use crate::records::PredMaps;

/// Per-pixel argmax over `classes` planes of `probs` (`classes × h × w`,
/// C order); ties go to the lower class. Plane by plane, so each pass is a
/// straight (vectorisable) sweep over contiguous memory.
pub fn argmax_map(probs: &ProbBuf, classes: usize, h: usize, w: usize) -> Vec<u16> {
    let hw = h * w;
    let mut best = vec![f32::NEG_INFINITY; hw];
    let mut arg = vec![0u16; hw];
    let mut plane = vec![0.0f32; hw];
    for k in 0..classes {
        let values: &[f32] = match probs {
            ProbBuf::F32(v) => &v[k * hw..(k + 1) * hw],
            ProbBuf::F16(v) => {
                widen_f16(&v[k * hw..(k + 1) * hw], &mut plane);
                &plane
            }
        };
        for ((b, a), &v) in best.iter_mut().zip(arg.iter_mut()).zip(values) {
            // Strictly greater: ties keep the lower class. The first plane
            // always wins over -inf (NaN never does, as before).
            if v > *b || k == 0 {
                *b = v;
                *a = k as u16;
            }
        }
    }
    arg
}

/// float16 bits to f32, with the CPU's vector conversion where it has one.
fn widen_f16(bits: &[u16], out: &mut [f32]) {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    bits.reinterpret_cast::<half::f16>()
        .convert_to_f32_slice(out);
}

/// [`argmax_map`] of an item left in its file: blocks of pixels in
/// parallel, each block's class pieces read straight into a small buffer
/// (no copy of the whole item), the same result.
pub fn argmax_planes(
    src: &dyn PlaneSource,
    classes: usize,
    h: usize,
    w: usize,
) -> Result<Vec<u16>> {
    use rayon::prelude::*;
    const BLOCK: usize = 4096;
    let hw = h * w;
    let mut arg = vec![0u16; hw];
    arg.par_chunks_mut(BLOCK)
        .enumerate()
        .try_for_each(|(bi, arg)| -> Result<()> {
            let start = bi * BLOCK;
            let n = arg.len();
            let mut best = vec![f32::NEG_INFINITY; n];
            let mut plane = vec![0.0f32; n];
            let mut bits = vec![0u16; if src.is_f16() { n } else { 0 }];
            for k in 0..classes {
                if src.is_f16() {
                    src.read_f16(k * hw + start, &mut bits)?;
                    widen_f16(&bits, &mut plane);
                } else {
                    src.read_f32(k * hw + start, &mut plane)?;
                }
                for ((b, a), &v) in best.iter_mut().zip(arg.iter_mut()).zip(&plane) {
                    // As in `argmax_map`.
                    if v > *b || k == 0 {
                        *b = v;
                        *a = k as u16;
                    }
                }
            }
            Ok(())
        })?;
    Ok(arg)
}

/// Thin boundary of a label map: pixels with a 4-neighbour (inside the
/// image) of a different value.
pub fn boundary(map: &[u16], h: usize, w: usize) -> Vec<bool> {
    assert_eq!(map.len(), h * w, "map is not h*w");
    let mut out = vec![false; h * w];
    // Row by row, each neighbour as a whole-row comparison (no per-pixel
    // bounds tests, so the loops vectorise); a missing row above or below
    // is the row itself, which differs nowhere.
    for y in 0..h {
        let row = &map[y * w..(y + 1) * w];
        let up = if y > 0 { &map[(y - 1) * w..y * w] } else { row };
        let down = if y + 1 < h {
            &map[(y + 1) * w..(y + 2) * w]
        } else {
            row
        };
        let o = &mut out[y * w..(y + 1) * w];
        for (((o, &v), &a), &b) in o.iter_mut().zip(row).zip(up).zip(down) {
            *o = v != a || v != b;
        }
        if w > 1 {
            for ((o, &v), &l) in o[1..].iter_mut().zip(&row[1..]).zip(row) {
                *o |= v != l;
            }
            for ((o, &v), &r) in o.iter_mut().zip(row).zip(&row[1..]) {
                *o |= v != r;
            }
        }
    }
    out
}

/// The disagreeing band: pixels in `B(gt′) ∪ B(pred)` but not in the
/// Boundary IoU intersection (`B(gt′) ∩ B(pred)` with `gt′ == pred`), minus
/// ignored pixels, where `gt′` is `gt` with every ignored pixel given the
/// prediction's class (so an ignore region makes no band of its own; `gt′ =
/// gt` where nothing is ignored). Bands use width `d`.
pub fn disagreement(
    gt: &[u16],
    pred: &[u16],
    h: usize,
    w: usize,
    d: usize,
    ignore_index: u16,
) -> Vec<bool> {
    let filled: Vec<u16> = gt
        .iter()
        .zip(pred)
        .map(|(&g, &p)| if g == ignore_index { p } else { g })
        .collect();
    let mut bg = vec![0u8; h * w];
    let mut bp = vec![0u8; h * w];
    band_mask(&filled, h, w, d, &mut bg);
    band_mask(pred, h, w, d, &mut bp);
    (0..h * w)
        .map(|i| {
            let (a, b) = (bg[i] != 0, bp[i] != 0);
            gt[i] != ignore_index && (a || b) && !(a && b && filled[i] == pred[i])
        })
        .collect()
}

/// The annotated boundary: [`boundary`] of `gt` where ignored pixels are
/// neither on it nor count as a differing neighbour (an ignore region is
/// not an annotated object).
pub fn annotated_boundary(gt: &[u16], h: usize, w: usize, ignore_index: u16) -> Vec<bool> {
    let mut out = boundary(gt, h, w);
    for i in 0..h * w {
        if !out[i] {
            continue;
        }
        let v = gt[i];
        if v == ignore_index {
            out[i] = false;
            continue;
        }
        let (y, x) = (i / w, i % w);
        let differs = |j: usize| gt[j] != v && gt[j] != ignore_index;
        out[i] = (x > 0 && differs(i - 1))
            || (x + 1 < w && differs(i + 1))
            || (y > 0 && differs(i - w))
            || (y + 1 < h && differs(i + w));
    }
    out
}

/// Annotators' outline colours in the annotator overlays, by annotator
/// (cycled past the eighth).
pub const ANNOTATOR_COLOURS: [[u8; 3]; 8] = [
    [230, 25, 75],
    [0, 130, 200],
    [60, 180, 75],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [255, 225, 25],
];

/// The colour of the `k`-th annotator of an item.
pub fn annotator_colour(k: usize) -> [u8; 3] {
    ANNOTATOR_COLOURS[k % ANNOTATOR_COLOURS.len()]
}

/// Segmentation item `index` with each annotator's mask outline (the
/// pixels where its map changes, as [`boundary`]) in its own colour
/// ([`annotator_colour`] of its position in `masks`; the outline with the
/// most pixels is drawn first and the sparsest last, on top, so a noisy
/// annotator's outline does not hide the others; ties in annotator order),
/// on the item's image or a grey rendering of its official mask. Every mask must have the item's size `dims`.
pub fn annotators_overlay(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    index: usize,
    dims: (usize, usize),
    masks: &[(String, crate::io::annotations::Annotation)],
) -> Result<RgbImage> {
    let (h, w) = dims;
    let c = cfg.num_classes();
    let id = &manifest.ids[index];
    let official = manifest
        .column("mask")
        .map(|col| cfg.item_file(id, "mask", manifest.rows.cell(index, col)))
        .ok_or_else(|| Error::Internal("an annotator overlay without a `mask` column".into()))??;
    let gt = match crate::io::inputs::given_mask(cfg, id, index, dims) {
        Some(m) => m?,
        None => crate::io::mask::read_dataset_mask(cfg, &official, id, dims)?,
    };
    let mut img = base_image(cfg, manifest, index, &gt, h, w, c);
    let mut outlines = Vec::with_capacity(masks.len());
    for (k, (_, ann)) in masks.iter().enumerate() {
        if let Some(m) = ann.mask(cfg, index, id, dims)? {
            let b = boundary(&m, h, w);
            outlines.push((b.iter().filter(|&&on| on).count(), k, b));
        }
    }
    // The busiest outline first (a noisy annotator's may cover the whole
    // item), so the sparser ones stay visible over it; ties in order.
    outlines.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, k, b) in outlines {
        let colour = annotator_colour(k);
        for (px, on) in img.pixels_mut().zip(b) {
            if on {
                px.0 = colour;
            }
        }
    }
    Ok(img)
}

/// A grey rendering of the annotation.
pub fn grey_base(gt: &[u16], h: usize, w: usize, classes: usize) -> RgbImage {
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let g = class_grey(gt[y as usize * w + x as usize], classes);
        Rgb([g, g, g])
    })
}

/// Draw the overlay onto `base` (`w × h`): band, then boundaries; ignored
/// pixels hatched, nothing else on them (see the module's notes).
pub fn draw(
    mut base: RgbImage,
    gt: &[u16],
    pred: &[u16],
    h: usize,
    w: usize,
    ignore_index: u16,
) -> RgbImage {
    assert_eq!((base.width() as usize, base.height() as usize), (w, h));
    let band = disagreement(gt, pred, h, w, band_width(h, w), ignore_index);
    let bg = annotated_boundary(gt, h, w, ignore_index);
    let bp = boundary(pred, h, w);
    for (i, px) in base.pixels_mut().enumerate() {
        if gt[i] == ignore_index {
            px.0 = ignore_colour(i % w, i / w);
            continue;
        }
        let mut c = px.0;
        if band[i] {
            c = blend(c, BAND, BAND_ALPHA);
        }
        c = match (bg[i], bp[i]) {
            (true, true) => BOTH,
            (true, false) => ANNOTATED,
            (false, true) => PREDICTED,
            (false, false) => c,
        };
        px.0 = c;
    }
    base
}

/// Encode `img` as PNG with fast compression and the `Up` filter (overlays
/// are written on every run: measured on the 512 × 512 synthetic overlays,
/// `Up` encodes in half the time of `Adaptive` for 3 % more bytes).
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Up)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Internal(format!("cannot encode overlay PNG: {e}")))?;
    Ok(out)
}

/// The widest and tallest background image decoded, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// The most memory the decoder of a background image may hold (its pixels
/// included), in bytes.
pub const MAX_IMAGE_DECODE_BYTES: u64 = 256 << 20;

/// Load an RGB PNG (any PNG colour type), `None` when it cannot be read:
/// not a regular file, over [`crate::neighbors::stage::MAX_IMAGE_BYTES`],
/// wider or taller than [`MAX_IMAGE_SIDE`], or needing more than
/// [`MAX_IMAGE_DECODE_BYTES`] to decode.
pub fn load_rgb(path: &Path) -> Option<RgbImage> {
    let (file, _) = crate::neighbors::stage::open_image(path).ok()?;
    let mut reader =
        image::ImageReader::with_format(std::io::BufReader::new(file), image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_DECODE_BYTES);
    reader.limits(limits);
    Some(reader.decode().ok()?.into_rgb8())
}

/// The item's image, from the manifest's `image` column, if it lies inside
/// the dataset or its roots ([`DatasetConfig::item_file`]; a run refuses
/// one that does not before scoring) and loads ([`load_rgb`]).
pub fn item_image(cfg: &DatasetConfig, manifest: &Manifest, index: usize) -> Option<RgbImage> {
    let col = manifest.column("image")?;
    let rel = manifest.rows.get(index, col)?.trim();
    if rel.is_empty() {
        return None;
    }
    load_rgb(&cfg.item_file(manifest.ids.get(index)?, "image", rel).ok()?)
}

/// Segmentation item `index`'s predicted label map (the argmax of its
/// probabilities, ties to the lower class) with its `(H, W)`.
pub fn predicted_map(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    index: usize,
    probs: &mut crate::io::seg_probs::SegProbs,
) -> Result<(Vec<u16>, usize, usize)> {
    let c = cfg.num_classes();
    let (arr, start, h, w) = probs.item(index, &manifest.ids[index])?;
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let map = match arr.planes(start, &clock)? {
        Some(src) => argmax_planes(&src, c, h, w)?,
        None => argmax_map(&arr.read_probs(start, c * h * w)?, c, h, w),
    };
    Ok((map, h, w))
}

/// The overlay of segmentation item `index` (its mask, the argmax of its
/// probabilities, its image when there is one).
pub fn segmentation_overlay(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    index: usize,
    probs: Option<&mut crate::io::seg_probs::SegProbs>,
    kept: Option<(usize, usize, &[u16])>,
) -> Result<RgbImage> {
    let c = cfg.num_classes();
    let id = &manifest.ids[index];
    let mask_col = manifest
        .column("mask")
        .ok_or_else(|| Error::Internal("an overlay of an item without a `mask` column".into()))?;
    let mask_path = cfg.item_file(id, "mask", manifest.rows.cell(index, mask_col))?;
    // The kept map, or the item read once more and its argmax.
    let computed;
    let (pred, h, w): (&[u16], usize, usize) = match kept {
        Some((h, w, pred)) => (pred, h, w),
        None => {
            let mut opened;
            let probs = match probs {
                Some(p) => p,
                None => {
                    opened = crate::io::seg_probs::open(cfg, manifest)?;
                    &mut opened
                }
            };
            let (arr, start, h, w) = probs.item(index, id)?;
            let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            computed = match arr.planes(start, &clock)? {
                Some(src) => argmax_planes(&src, c, h, w)?,
                None => argmax_map(&arr.read_probs(start, c * h * w)?, c, h, w),
            };
            (&computed, h, w)
        }
    };
    let gt = match crate::io::inputs::given_mask(cfg, id, index, (h, w)) {
        Some(m) => m?,
        None => crate::io::mask::read_dataset_mask(cfg, &mask_path, id, (h, w))?,
    };
    let base = base_image(cfg, manifest, index, &gt, h, w, c);
    Ok(draw(base, &gt, pred, h, w, cfg.ignore_index))
}

/// The item's image at `h × w` (resized if needed), or a grey rendering of
/// the annotation when it has none.
fn base_image(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    index: usize,
    gt: &[u16],
    h: usize,
    w: usize,
    c: usize,
) -> RgbImage {
    match item_image(cfg, manifest, index) {
        Some(img) if (img.width() as usize, img.height() as usize) == (w, h) => img,
        Some(img) => image::imageops::resize(
            &img,
            w as u32,
            h as u32,
            image::imageops::FilterType::Triangle,
        ),
        None => grey_base(gt, h, w, c),
    }
}

/// A classification item's image, shrunk to at most 256 px on its longer
/// side, when the manifest names one that loads.
pub fn classification_image(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    index: usize,
) -> Option<RgbImage> {
    let img = item_image(cfg, manifest, index)?;
    let (w, h) = (img.width(), img.height());
    let long = w.max(h);
    if long <= 256 {
        return Some(img);
    }
    let s = 256.0 / long as f64;
    let (nw, nh) = (
        ((w as f64 * s).round() as u32).max(1),
        ((h as f64 * s).round() as u32).max(1),
    );
    Some(image::imageops::resize(
        &img,
        nw,
        nh,
        image::imageops::FilterType::Triangle,
    ))
}

/// A classification row's probabilities (softmaxed when `logits`).
pub fn classification_probs(
    arr: &mut NpyArray,
    index: usize,
    classes: usize,
    logits: bool,
) -> Result<Vec<f64>> {
    let row = arr.read_probs(index * classes, classes)?;
    let mut p: Vec<f64> = (0..classes).map(|k| row.get(k) as f64).collect();
    if logits {
        let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for v in &mut p {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in &mut p {
            *v /= sum;
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pred_maps_keep_the_highest_priorities_ties_to_the_lower_index() {
        let mut m = PredMaps::new(3);
        let offers = [
            (0.2, 0),
            (0.9, 1),
            (f64::NAN, 2),
            (0.5, 3),
            (0.9, 4),
            (0.1, 5),
            (0.5, 6),
        ];
        for (p, i) in offers {
            m.offer(p, i, 1, 2, vec![i as u16; 2]);
        }
        let kept: Vec<usize> = (0..10).filter(|&i| m.get(i).is_some()).collect();
        // 0.9 (1), 0.9 (4), then 0.5: item 3 before item 6.
        assert_eq!(kept, vec![1, 3, 4]);
        assert_eq!(m.get(4), Some((1, 2, &[4u16, 4][..])));
        assert_eq!(m.get(6), None);
        // A map of the wrong size is not kept; capacity 0 keeps nothing.
        m.offer(1.0, 9, 2, 2, vec![0; 3]);
        assert_eq!(m.get(9), None);
        let mut none = PredMaps::new(0);
        none.offer(1.0, 0, 1, 1, vec![0]);
        assert_eq!(none.get(0), None);
    }

    #[test]
    fn argmax_map_breaks_ties_to_the_lower_class() {
        // 2 classes, 1 × 3: (0.5, 0.5) → 0, (0.2, 0.8) → 1, (0.9, 0.1) → 0.
        let p = ProbBuf::F32(vec![0.5, 0.2, 0.9, 0.5, 0.8, 0.1]);
        assert_eq!(argmax_map(&p, 2, 1, 3), vec![0, 1, 0]);
    }

    #[test]
    fn boundary_marks_pixels_with_a_differing_4_neighbour() {
        // Hand-worked: a 2 × 2 block of 1 in a 4 × 4 field of 0 marks the
        // block and its 4-neighbours, not the corners of the 4 × 4.
        #[rustfmt::skip]
        let m = [
            0, 0, 0, 0,
            0, 1, 1, 0,
            0, 1, 1, 0,
            0, 0, 0, 0,
        ];
        let b: Vec<u8> = boundary(&m, 4, 4).into_iter().map(u8::from).collect();
        #[rustfmt::skip]
        let want = [
            0, 1, 1, 0,
            1, 1, 1, 1,
            1, 1, 1, 1,
            0, 1, 1, 0,
        ];
        assert_eq!(b, want);
        // The definition, pixel by pixel, on pseudo-random maps of several
        // shapes (one row, one column, a single pixel).
        let mut st = 7u64;
        for (h, w) in [(1, 1), (1, 9), (9, 1), (5, 7), (16, 33)] {
            let map: Vec<u16> = (0..h * w)
                .map(|_| {
                    st = st.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((st >> 61) % 3) as u16
                })
                .collect();
            let got = boundary(&map, h, w);
            for y in 0..h {
                for x in 0..w {
                    let v = map[y * w + x];
                    let want = (x > 0 && map[y * w + x - 1] != v)
                        || (x + 1 < w && map[y * w + x + 1] != v)
                        || (y > 0 && map[(y - 1) * w + x] != v)
                        || (y + 1 < h && map[(y + 1) * w + x] != v);
                    assert_eq!(got[y * w + x], want, "{h}x{w} at ({y}, {x})");
                }
            }
        }
    }
}
