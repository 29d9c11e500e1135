//! COCO's run-length mask encoding, bit-exact with pycocotools.
//!
//! **Contract.** Pure functions, no file I/O. An [`Rle`] is COCO's: the
//! pixels of an `h × w` mask taken in column-major (Fortran) order, as run
//! lengths that alternate 0s and 1s, the first run being 0s (of length 0 when
//! the first pixel is set). Masks given to and returned by this module are
//! row-major `h × w` bytes (0 or 1), as the engine's label maps are.
//!
//! The functions mirror pycocotools (`pycocotools/_mask.pyx` over
//! `common/maskApi.c`) so that the same input gives the same counts and the
//! same pixels: [`encode`] is `rleEncode` (`mask.encode`), [`decode`] is
//! `rleDecode` (`mask.decode`), [`to_string`]/[`from_string`] are
//! `rleToString`/`rleFrString` (the `counts` string of compressed RLE),
//! [`from_polygons`] is `rleFrPoly` per polygon then `rleMerge` (union), as
//! `frPyObjects` + `merge` do for a polygon annotation (`COCO.annToRLE`), and
//! [`from_uncompressed`] is `frUncompressedRLE`.
//!
//! Why not a crate: `hotcoco` (a Rust port of pycocotools) was considered;
//! it brings COCO evaluation and its own dataset types, which `triage` does
//! not need, and the few functions used here are small, checked against
//! hostile input, and tested bit for bit against pycocotools in CI.
//!
//! Unlike pycocotools, every input is checked before use: `h · w` is at most
//! [`MAX_PIXELS`] (checked before anything is allocated), counts must sum to
//! `h · w`, strings must be well formed, and polygons must have an even
//! number of finite coordinates, at least 3 points. Hostile input gives an
//! `Err` saying what is wrong, never a panic.

/// The largest mask handled, in pixels (`h · w`): 2^28 (16384 × 16384).
/// Larger sizes are refused before any allocation.
pub const MAX_PIXELS: usize = 1 << 28;

/// The largest absolute polygon coordinate accepted, in pixels. pycocotools
/// scales coordinates by 5 into a C `int`; beyond this bound its arithmetic
/// would overflow (undefined behaviour in C).
pub const MAX_COORDINATE: f64 = 1e7;

/// The most boundary points a polygon list may walk (the sum over its edges
/// of the longest side, in 1/5 pixels, plus one per edge), to bound the time
/// a hostile polygon costs.
pub const MAX_POLYGON_STEPS: u64 = 1 << 28;

/// A COCO run-length encoded mask: `counts` are the lengths of the runs of
/// 0s and 1s, alternately, starting with 0s, over the pixels in column-major
/// order; they sum to `h · w` for a valid mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
    /// Run lengths, column-major, first run 0s.
    pub counts: Vec<u32>,
}

/// `h · w`, refused when it overflows or exceeds [`MAX_PIXELS`].
fn pixels(h: usize, w: usize) -> Result<usize, String> {
    match h.checked_mul(w) {
        Some(n) if n <= MAX_PIXELS => Ok(n),
        Some(n) => Err(format!(
            "a {h} x {w} mask has {n} pixels, above the limit of {MAX_PIXELS}"
        )),
        None => Err(format!("a {h} x {w} mask: h * w overflows")),
    }
}

/// The running sum of an RLE's counts against `h · w` (checked first):
/// every reader of counts adds them here, so an overlong RLE stops at the
/// run that overflows, before anything more is read or stored.
struct CountSum {
    n: usize,
    h: usize,
    w: usize,
    sum: u64,
}

impl CountSum {
    fn new(h: usize, w: usize) -> Result<Self, String> {
        Ok(CountSum {
            n: pixels(h, w)?,
            h,
            w,
            sum: 0,
        })
    }

    /// Add run `run`'s count `c`; `Err` once the sum passes `h · w`.
    fn add(&mut self, c: u64, run: usize) -> Result<(), String> {
        let (n, h, w) = (self.n, self.h, self.w);
        self.sum = self.sum.saturating_add(c);
        if self.sum > n as u64 {
            return Err(format!(
                "RLE counts sum to more than h * w = {n} ({h} x {w}) at run {run}"
            ));
        }
        Ok(())
    }

    /// `h · w`, when the counts summed to exactly it.
    fn finish(self) -> Result<usize, String> {
        let (n, h, w, sum) = (self.n, self.h, self.w, self.sum);
        if sum != n as u64 {
            return Err(format!(
                "RLE counts sum to {sum}, not h * w = {n} ({h} x {w})"
            ));
        }
        Ok(n)
    }
}

/// The sum of `counts`, checked to equal `h · w` (which is checked first).
fn check_counts(counts: &[u32], h: usize, w: usize) -> Result<usize, String> {
    let mut sum = CountSum::new(h, w)?;
    for (i, &c) in counts.iter().enumerate() {
        sum.add(u64::from(c), i)?;
    }
    sum.finish()
}

/// Decodes `rle` to a row-major `h × w` mask of 0s and 1s.
///
/// Mirrors pycocotools' `rleDecode` (`mask.decode`), whose column-major
/// (Fortran-order) array is transposed here to row-major. Errors, before
/// allocating, when `h · w` overflows or exceeds [`MAX_PIXELS`], or when the
/// counts do not sum to `h · w` (pycocotools would read or write out of
/// bounds). Zero-length runs anywhere are allowed, as in pycocotools.
pub fn decode(rle: &Rle) -> Result<Vec<u8>, String> {
    let (h, w) = (rle.h, rle.w);
    let n = check_counts(&rle.counts, h, w)?;
    let mut out = vec![0u8; n];
    let mut pos = 0usize;
    let mut one = false;
    for &c in &rle.counts {
        let end = pos + c as usize;
        if one {
            for p in pos..end {
                // column-major position p = col * h + row
                out[(p % h) * w + p / h] = 1;
            }
        }
        pos = end;
        one = !one;
    }
    Ok(out)
}

/// Encodes a row-major `h × w` mask (any nonzero byte is foreground) as COCO
/// RLE.
///
/// Mirrors pycocotools' `rleEncode` (`mask.encode` on the Fortran-order
/// array) for 0/1 masks; pycocotools starts a new run at each change of
/// value, so masks with values above 1 only agree once binarised. The counts
/// start with the run of 0s (0 when the first pixel, row 0 column 0, is set)
/// and have no other zero-length run; an empty mask (`h · w = 0`) gives
/// counts `[0]`, as pycocotools does.
///
/// `Err` when `mask.len() != h * w` or the mask has more than
/// [`MAX_PIXELS`] pixels (so every run fits the counts' `u32`).
pub fn encode(mask: &[u8], h: usize, w: usize) -> Result<Rle, String> {
    if Some(mask.len()) != h.checked_mul(w) {
        return Err(format!("the mask has {} values, not {h} × {w}", mask.len()));
    }
    if mask.len() > MAX_PIXELS {
        return Err(format!(
            "the mask has {} pixels, over the limit of {MAX_PIXELS}",
            mask.len()
        ));
    }
    let mut counts = Vec::new();
    let mut prev = false;
    let mut run: u32 = 0;
    for col in 0..w {
        for row in 0..h {
            let v = mask[row * w + col] != 0;
            if v != prev {
                counts.push(run);
                run = 0;
                prev = v;
            }
            run += 1;
        }
    }
    counts.push(run);
    Ok(Rle { h, w, counts })
}

/// The compressed `counts` string of `rle`, as pycocotools' `rleToString`
/// writes it (`mask.encode(...)["counts"]`).
///
/// Each count, from the fourth on minus the count two places before it, is
/// written as a signed little-endian sequence of 5-bit groups, one character
/// per group (`'0' + group`, plus 32 when another group follows), the last
/// group's top bit being the sign.
pub fn to_string(rle: &Rle) -> String {
    let mut s = String::with_capacity(rle.counts.len() * 2);
    for (i, &c) in rle.counts.iter().enumerate() {
        let mut x = i64::from(c);
        if i > 2 {
            x -= i64::from(rle.counts[i - 2]);
        }
        loop {
            let mut g = (x & 0x1f) as u8;
            x >>= 5;
            let more = if g & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                g |= 0x20;
            }
            s.push(char::from(g + 48));
            if !more {
                break;
            }
        }
    }
    s
}

/// Parses a compressed `counts` string for an `h × w` mask, as pycocotools'
/// `rleFrString` (`mask.decode`, `mask.merge` on compressed RLE) reads it.
///
/// Stricter than pycocotools, which trusts its input: errors when `h · w`
/// overflows or exceeds [`MAX_PIXELS`], on a character outside `'0'..='o'`
/// (including any non-ASCII byte), on a string that ends inside a count, on a
/// count of more than 7 characters, on a count outside `0..=u32::MAX`, and
/// when the counts do not sum to `h · w`. The counts vector is bounded by the
/// string's length (each count takes at least one character).
pub fn from_string(s: &str, h: usize, w: usize) -> Result<Rle, String> {
    let mut sum = CountSum::new(h, w)?;
    let bytes = s.as_bytes();
    let mut counts: Vec<u32> = Vec::with_capacity(bytes.len().min(sum.n + 1));
    let mut p = 0usize;
    while p < bytes.len() {
        let start = p;
        let mut x: i64 = 0;
        let mut k = 0u32;
        loop {
            let Some(&b) = bytes.get(p) else {
                return Err(format!(
                    "RLE string ends inside a count (at character {start})"
                ));
            };
            if !(48..=111).contains(&b) {
                return Err(format!(
                    "RLE string has byte {b:#04x} at {p}, outside the characters '0' to 'o'"
                ));
            }
            if k == 7 {
                return Err(format!(
                    "RLE string has a count longer than 7 characters at {start}"
                ));
            }
            let c = i64::from(b - 48);
            x |= (c & 0x1f) << (5 * k);
            p += 1;
            k += 1;
            if c & 0x20 == 0 {
                if c & 0x10 != 0 {
                    x |= -1i64 << (5 * k);
                }
                break;
            }
        }
        let m = counts.len();
        if m > 2 {
            x += i64::from(counts[m - 2]);
        }
        let c = u32::try_from(x).map_err(|_| {
            format!(
                "RLE string gives count {x} (run {m}, at character {start}), outside 0 to 2^32-1"
            )
        })?;
        sum.add(u64::from(c), m)?;
        counts.push(c);
    }
    sum.finish()?;
    Ok(Rle { h, w, counts })
}

/// COCO's uncompressed RLE (`{"counts": [...], "size": [h, w]}`) as an
/// [`Rle`], the counts kept as given (zero-length runs included).
///
/// Mirrors pycocotools' `frUncompressedRLE` (`frPyObjects` on such a dict),
/// which casts each count to `uint32` without a check; here a count above
/// `u32::MAX`, `h · w` overflowing or above [`MAX_PIXELS`], or counts not
/// summing to `h · w` are errors.
pub fn from_uncompressed(counts: &[u64], h: usize, w: usize) -> Result<Rle, String> {
    let mut sum = CountSum::new(h, w)?;
    for (i, &c) in counts.iter().enumerate() {
        sum.add(c, i)?;
    }
    sum.finish()?;
    // every count is at most the sum, itself at most MAX_PIXELS < 2^32
    let counts = counts.iter().map(|&c| c as u32).collect();
    Ok(Rle { h, w, counts })
}

/// The union of `polys` rasterised on an `h × w` image, each polygon a flat
/// list `[x0, y0, x1, y1, ...]` in pixel coordinates (COCO's `segmentation`
/// list).
///
/// Mirrors pycocotools exactly: `rleFrPoly` for each polygon (coordinates
/// upsampled by 5 and rounded, the edges walked point by point, the points
/// where the walk crosses a pixel column's centre turned into run
/// boundaries), then `rleMerge` with `intersect = 0` over them, as
/// `frPyObjects(polys, h, w)` + `merge` do (`COCO.annToRLE` for a polygon
/// annotation). Parts outside the image are clipped; self-intersecting
/// polygons follow pycocotools' even-odd crossing rule.
///
/// Errors (where pycocotools would misbehave, or fails: a first entry of 4
/// numbers it reads as a box): an empty list, a polygon with an odd number of
/// coordinates, a first polygon of fewer than 3 points or a later one of
/// none (later ones of 1 or 2 points are walked as pycocotools does), a
/// non-finite coordinate or one beyond ±[`MAX_COORDINATE`], an
/// empty image (`h` or `w` is 0), `h · w` above [`MAX_PIXELS`], or edges
/// longer in all than [`MAX_POLYGON_STEPS`] points.
pub fn from_polygons(polys: &[Vec<f64>], h: usize, w: usize) -> Result<Rle, String> {
    let n = pixels(h, w)?;
    if n == 0 {
        return Err(format!("polygons on an empty {h} x {w} image"));
    }
    if polys.is_empty() {
        return Err("an empty list of polygons".to_string());
    }
    let mut steps: u64 = 0;
    let mut scaled = Vec::with_capacity(polys.len());
    for (i, p) in polys.iter().enumerate() {
        if p.len() % 2 != 0 {
            return Err(format!(
                "polygon {i} has an odd number of coordinates ({})",
                p.len()
            ));
        }
        // pycocotools reads a first polygon of at least 3 points (a first
        // entry of 4 numbers it takes for a box and fails on, a TypeError
        // in frBbox, as of pycocotools 2.0.11); later polygons may have 1
        // or 2 points.
        if (i == 0 && p.len() < 6) || p.is_empty() {
            return Err(format!(
                "polygon {i} has {} points, fewer than {}",
                p.len() / 2,
                if i == 0 { 3 } else { 1 }
            ));
        }
        if let Some(c) = p
            .iter()
            .find(|c| !c.is_finite() || c.abs() > MAX_COORDINATE)
        {
            return Err(format!(
                "polygon {i} has coordinate {c}, not a finite number within ±{MAX_COORDINATE}"
            ));
        }
        // C: (int)(scale * v + .5), truncation towards zero
        let pts: Vec<(i32, i32)> = p
            .chunks_exact(2)
            .map(|xy| ((5.0 * xy[0] + 0.5) as i32, (5.0 * xy[1] + 0.5) as i32))
            .collect();
        for j in 0..pts.len() {
            let (a, b) = (pts[j], pts[(j + 1) % pts.len()]);
            let d = (a.0 - b.0).unsigned_abs().max((a.1 - b.1).unsigned_abs());
            steps += u64::from(d) + 1;
        }
        if steps > MAX_POLYGON_STEPS {
            return Err(format!(
                "polygons too long: their edges walk more than {MAX_POLYGON_STEPS} points"
            ));
        }
        scaled.push(pts);
    }
    let rles: Vec<Vec<u32>> = scaled.iter().map(|pts| fr_poly(pts, h, w)).collect();
    let mut merged = rles[0].clone();
    for b in &rles[1..] {
        merged = merge_union(&merged, b);
    }
    Ok(Rle {
        h,
        w,
        counts: merged,
    })
}

/// `rleFrPoly` on points already scaled by 5 and rounded: the counts, which
/// sum to `h · w` (`h, w ≥ 1`, `h · w ≤ MAX_PIXELS`). The boundary walk is
/// streamed (each point compared with the one before), not stored.
fn fr_poly(pts: &[(i32, i32)], h: usize, w: usize) -> Vec<u32> {
    const SCALE: f64 = 5.0;
    let k = pts.len();
    let mut bounds: Vec<u64> = Vec::new();
    let mut prev: Option<(i32, i32)> = None;
    let mut visit = |u: i32, v: i32| {
        if let Some((pu, pv)) = prev
            && u != pu
        {
            let xd = f64::from(if u < pu { u } else { u - 1 });
            let xd = (xd + 0.5) / SCALE - 0.5;
            if xd.floor() == xd && xd >= 0.0 && xd <= (w - 1) as f64 {
                let yd = f64::from(if v < pv { v } else { pv });
                let mut yd = (yd + 0.5) / SCALE - 0.5;
                if yd < 0.0 {
                    yd = 0.0;
                } else if yd > h as f64 {
                    yd = h as f64;
                }
                let yd = yd.ceil();
                bounds.push(xd as u64 * h as u64 + yd as u64);
            }
        }
        prev = Some((u, v));
    };
    for j in 0..k {
        let (mut xs, mut ys) = pts[j];
        let (mut xe, mut ye) = pts[(j + 1) % k];
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        if dx >= dy {
            // dx = dy = 0 (a repeated vertex): C divides 0 by 0 and walks one
            // point whose v is (int)NaN; that point shares its u with the
            // points either side, so its v is never read. v = ys here.
            let s = if dx == 0 {
                0.0
            } else {
                f64::from(ye - ys) / f64::from(dx)
            };
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                let v = if dx == 0 {
                    ys
                } else {
                    (f64::from(ys) + s * f64::from(t) + 0.5) as i32
                };
                visit(t + xs, v);
            }
        } else {
            let s = f64::from(xe - xs) / f64::from(dy);
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                visit((f64::from(xs) + s * f64::from(t) + 0.5) as i32, t + ys);
            }
        }
    }
    bounds.push((h * w) as u64);
    bounds.sort_unstable();
    let mut p = 0u64;
    for a in bounds.iter_mut() {
        let t = *a;
        *a -= p;
        p = t;
    }
    let mut out: Vec<u32> = Vec::with_capacity(bounds.len());
    out.push(bounds[0] as u32);
    let mut j = 1;
    while j < bounds.len() {
        if bounds[j] > 0 {
            out.push(bounds[j] as u32);
            j += 1;
        } else {
            j += 1;
            if j < bounds.len() {
                *out.last_mut().expect("out starts non-empty") += bounds[j] as u32;
                j += 1;
            }
        }
    }
    out
}

/// `rleMerge` of two RLEs of the same size with `intersect = 0`: the union,
/// computed run by run as pycocotools does (so its counts match bit for bit).
fn merge_union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut ca, mut cb) = (a[0], b[0]);
    let (mut v, mut va, mut vb) = (false, false, false);
    let (mut ia, mut ib) = (1usize, 1usize);
    let mut cc: u32 = 0;
    loop {
        let c = ca.min(cb);
        cc += c;
        ca -= c;
        if ca == 0 && ia < a.len() {
            ca = a[ia];
            ia += 1;
            va = !va;
        }
        cb -= c;
        if cb == 0 && ib < b.len() {
            cb = b[ib];
            ib += 1;
            vb = !vb;
        }
        let ct = u64::from(ca) + u64::from(cb);
        let vp = v;
        v = va || vb;
        if v != vp || ct == 0 {
            out.push(cc);
            cc = 0;
        }
        if ct == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Row-major 3 × 4:
    /// ```text
    /// 0 1 1 0
    /// 0 1 0 0
    /// 1 1 0 1
    /// ```
    /// Column-major: 0 0 1 | 1 1 1 | 1 0 0 | 0 0 1, so runs 2 zeros, 5 ones,
    /// 4 zeros, 1 one. String: 2, 5, 4 as themselves ('2', '5', '4'), then
    /// 1 - 5 = -4 = one group 0b11100 (28, sign bit set, no more): '0' + 28 =
    /// 'L'. (pycocotools: `mask.encode` gives b'254L'.)
    const MASK_3X4: [u8; 12] = [0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1];

    #[test]
    fn hand_worked_3x4_mask() {
        let rle = encode(&MASK_3X4, 3, 4).unwrap();
        assert_eq!(rle.counts, vec![2, 5, 4, 1]);
        assert_eq!(to_string(&rle), "254L");
        assert_eq!(from_string("254L", 3, 4).unwrap(), rle);
        assert_eq!(decode(&rle).unwrap(), MASK_3X4.to_vec());
        assert_eq!(from_uncompressed(&[2, 5, 4, 1], 3, 4).unwrap(), rle);
    }

    /// 16 = 0b10000: the low group's top bit would read as a sign, so a
    /// second group follows: '0' + (16 | 32) = '`', then '0'. 100 = 3·32 + 4:
    /// '0' + (4 | 32) = 'T', then '3'.
    #[test]
    fn hand_worked_multi_character_counts() {
        let zeros16 = encode(&[0; 16], 4, 4).unwrap();
        assert_eq!(zeros16.counts, vec![16]);
        assert_eq!(to_string(&zeros16), "`0");
        assert_eq!(from_string("`0", 4, 4).unwrap(), zeros16);
        let zeros100 = encode(&[0; 100], 10, 10).unwrap();
        assert_eq!(to_string(&zeros100), "T3");
        assert_eq!(from_string("T3", 10, 10).unwrap().counts, vec![100]);
        // first pixel set: an empty first run of zeros
        let ones = encode(&[1; 6], 2, 3).unwrap();
        assert_eq!(ones.counts, vec![0, 6]);
        assert_eq!(decode(&ones).unwrap(), vec![1; 6]);
        // an empty mask: counts [0], as pycocotools
        let empty = encode(&[], 0, 3).unwrap();
        assert_eq!(empty.counts, vec![0]);
        assert_eq!(to_string(&empty), "0");
        assert_eq!(decode(&empty).unwrap(), Vec::<u8>::new());
        // A mask whose length is not h × w is refused, not encoded.
        assert_eq!(
            encode(&[0; 5], 2, 3).unwrap_err(),
            "the mask has 5 values, not 2 × 3"
        );
    }

    /// The square with corners (1, 1) and (4, 4) on a 6 × 6 image covers the
    /// pixel centres 1, 2, 3 in x and y (4 lies on the edge and is out):
    /// scaled by 5 the top edge walks u = 5..20 at v = 5 and crosses the
    /// column centres at u = 8, 13, 18 (x = 1, 2, 3) at y = ceil(5.5/5 - .5)
    /// = 1; the bottom edge at y = ceil(20.5/5 - .5) = 4. Boundaries
    /// x·6 + y: 7, 13, 19 and 10, 16, 22, plus 36: counts 7, 3, 3, 3, 3, 3,
    /// 14 (pycocotools: b'733000;').
    #[test]
    fn hand_worked_square_polygon() {
        let rle = from_polygons(&[vec![1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]], 6, 6).unwrap();
        assert_eq!(rle.counts, vec![7, 3, 3, 3, 3, 3, 14]);
        assert_eq!(to_string(&rle), "733000;");
        let mask = decode(&rle).unwrap();
        for y in 0..6 {
            for x in 0..6 {
                let inside = (1..=3).contains(&x) && (1..=3).contains(&y);
                assert_eq!(mask[y * 6 + x], inside as u8, "pixel x={x} y={y}");
            }
        }
        // the same square twice: the union is the square
        let twice = from_polygons(
            &[
                vec![1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0],
                vec![1.0, 4.0, 4.0, 4.0, 4.0, 1.0, 1.0, 1.0],
            ],
            6,
            6,
        )
        .unwrap();
        assert_eq!(twice, rle);
        // two disjoint squares: the union has both
        let two = from_polygons(
            &[
                vec![0.0, 0.0, 2.0, 0.0, 2.0, 2.0, 0.0, 2.0],
                vec![3.0, 3.0, 6.0, 3.0, 6.0, 6.0, 3.0, 6.0],
            ],
            6,
            6,
        )
        .unwrap();
        let m = decode(&two).unwrap();
        assert_eq!(m.iter().filter(|&&v| v == 1).count(), 4 + 9);
    }

    #[test]
    fn hostile_sizes_and_counts_are_errors() {
        let bad_sum = Rle {
            h: 3,
            w: 4,
            counts: vec![2, 5, 4],
        };
        assert!(decode(&bad_sum).unwrap_err().contains("sum to 11"));
        let over = Rle {
            h: 3,
            w: 4,
            counts: vec![2, 5, 4, u32::MAX],
        };
        assert!(decode(&over).is_err());
        // 2^40 pixels: refused before allocating
        let huge = Rle {
            h: 1 << 20,
            w: 1 << 20,
            counts: vec![u32::MAX; 3],
        };
        assert!(decode(&huge).unwrap_err().contains("limit"));
        let overflow = Rle {
            h: usize::MAX,
            w: 2,
            counts: vec![],
        };
        assert!(decode(&overflow).unwrap_err().contains("overflows"));
        assert!(from_string("", 1 << 20, 1 << 20).is_err());
        assert!(from_uncompressed(&[u64::MAX, u64::MAX], 3, 4).is_err());
        assert!(from_uncompressed(&[1 << 33], 3, 4).is_err());
        assert!(from_uncompressed(&[2, 5, 4], 3, 4).is_err());
        assert!(from_uncompressed(&[], usize::MAX, usize::MAX).is_err());
        assert!(from_polygons(&[vec![0.0; 6]], 1 << 20, 1 << 20).is_err());
    }

    #[test]
    fn hostile_strings_are_errors() {
        for s in [
            "",          // sums to 0, not 12
            "254",       // sums to 11
            "254L1",     // sums to 17
            "T",         // ends inside a count
            "254l",      // 'l' has the "more" bit: truncated
            "25 4L",     // space
            "254Lé",     // non-ASCII
            "é",         // non-ASCII only
            "zzz",       // above 'o'
            "\0",        // NUL
            "oooooooo0", // a count of 9 characters
            "L",         // count -4
            "ooooooO",   // 7 characters, beyond u32 / the sum
        ] {
            assert!(from_string(s, 3, 4).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn hostile_polygons_are_errors() {
        let e = |p: &[Vec<f64>]| from_polygons(p, 10, 10).unwrap_err();
        assert!(e(&[]).contains("empty"));
        assert!(e(&[vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]).contains("odd"));
        assert!(e(&[vec![1.0, 2.0, 3.0, 4.0]]).contains("fewer than 3"));
        assert!(e(&[vec![]]).contains("fewer than 3"));
        let square = vec![0.0, 0.0, 4.0, 0.0, 4.0, 4.0];
        assert!(e(&[square.clone(), vec![]]).contains("polygon 1 has 0 points, fewer than 1"));
        assert!(from_polygons(&[square, vec![1.0, 1.0, 3.0, 3.0]], 5, 5).is_ok());
        assert!(e(&[vec![1.0, 2.0, 3.0, f64::NAN, 5.0, 6.0]]).contains("finite"));
        assert!(e(&[vec![1.0, 2.0, 3.0, f64::INFINITY, 5.0, 6.0]]).contains("finite"));
        assert!(e(&[vec![1.0, 2.0, 3.0, 1e9, 5.0, 6.0]]).contains("finite"));
        let long = vec![0.0, 0.0, 9e6, 0.0, 9e6, 9e6, 0.0, 9e6, 0.0, 0.0];
        assert!(from_polygons(&[long.clone(), long], 10, 10).is_err());
        assert!(from_polygons(&[vec![0.0; 6]], 0, 10).is_err());
        // a degenerate polygon (all points equal) is valid: no pixels
        let r = from_polygons(&[vec![2.0; 6]], 10, 10).unwrap();
        assert_eq!(r.counts, vec![100]);
    }

    fn mask_strategy() -> impl Strategy<Value = (usize, usize, Vec<u8>)> {
        (0usize..24, 0usize..24, 0u8..4).prop_flat_map(|(h, w, kind)| {
            let n = h * w;
            let bits = match kind {
                0 => Just(vec![0u8; n]).boxed(),
                1 => Just(vec![1u8; n]).boxed(),
                _ => proptest::collection::vec(0u8..2, n).boxed(),
            };
            (Just(h), Just(w), bits)
        })
    }

    proptest! {
        #[test]
        fn round_trip_through_the_string((h, w, mask) in mask_strategy()) {
            let rle = encode(&mask, h, w).unwrap();
            let s = to_string(&rle);
            let back = from_string(&s, h, w).unwrap();
            prop_assert_eq!(&back, &rle);
            prop_assert_eq!(decode(&back).unwrap(), mask);
            let wide: Vec<u64> = rle.counts.iter().map(|&c| u64::from(c)).collect();
            prop_assert_eq!(from_uncompressed(&wide, h, w).unwrap(), rle);
        }

        #[test]
        fn any_string_is_an_error_or_a_valid_rle(s in ".{0,40}", h in 0usize..8, w in 0usize..8) {
            if let Ok(rle) = from_string(&s, h, w) {
                prop_assert_eq!(decode(&rle).unwrap().len(), h * w);
            }
        }

        #[test]
        fn any_polygon_is_an_error_or_a_valid_rle(
            p in proptest::collection::vec(-20.0f64..40.0, 0..14),
            h in 1usize..16,
            w in 1usize..16,
        ) {
            if let Ok(rle) = from_polygons(&[p], h, w) {
                prop_assert_eq!(decode(&rle).unwrap().len(), h * w);
            }
        }
    }
}
