//! The optional `embeddings` input: (N, D) float16/32/64 in items order,
//! validated and L2-normalised on load. A row that cannot be normalised
//! (a non-finite component, all zeros, or every component equal) does not
//! fail the run: it is recorded as a [`NullRow`], zeroed, and left out of
//! the neighbours (`crate::neighbors::stage::apply`); the `null` check
//! flags its item, which keeps the scores of its other inputs.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::manifest::Ids;
use crate::io::npy::NpyArray;
use crate::io::probs::ProbBuf;

/// Unit-length embeddings, row-major `n × d`; the [`NullRow`]s zeroed.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub n: usize,
    pub d: usize,
    pub data: Vec<f32>,
    /// The rows that could not be normalised, by row, ascending.
    pub null: Vec<(usize, NullRow)>,
}

/// Why an embedding row has no direction to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullRow {
    /// This many components are NaN or infinite.
    NonFinite(u32),
    /// Every component is 0.
    Zero,
    /// Every component is the same non-zero value, with `D ≥`
    /// [`CONSTANT_MIN_DIM`] (a broken extractor's output, not a direction).
    Constant,
}

/// A row of equal components is null from this dimension on (below it, as
/// in a 2-D toy set, `(1, 1)` is a direction like any other).
pub const CONSTANT_MIN_DIM: usize = 4;

impl NullRow {
    /// What is wrong with the row, for a reason.
    pub fn text(self, d: usize) -> String {
        match self {
            NullRow::NonFinite(k) => format!("{k} of its {d} components are not finite"),
            NullRow::Zero => "all zeros".into(),
            NullRow::Constant => format!("all {d} components equal"),
        }
    }

    /// The `null` check's score: the share of non-finite components (1 −
    /// Datalab's non-null share), 1 for a zero or constant row.
    pub fn score(self, d: usize) -> f64 {
        match self {
            NullRow::NonFinite(k) => f64::from(k) / d.max(1) as f64,
            NullRow::Zero | NullRow::Constant => 1.0,
        }
    }
}

impl Embeddings {
    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// Build from raw rows, normalising each; a row that cannot be is
    /// recorded in [`Embeddings::null`] and zeroed. `n × d` must be
    /// `raw.len()` (an internal error otherwise; `ids` and `path` name it).
    pub fn from_rows(path: &Path, raw: Vec<f32>, n: usize, d: usize, ids: &Ids) -> Result<Self> {
        if n.checked_mul(d) != Some(raw.len()) {
            return Err(Error::input(
                path,
                format!(
                    "{} values for {n} rows of {d} ({} items)",
                    raw.len(),
                    ids.len()
                ),
            )
            .field("embeddings"));
        }
        let mut data = raw;
        let mut null = Vec::new();
        for i in 0..n {
            let row = &mut data[i * d..(i + 1) * d];
            let bad = row.iter().filter(|v| !v.is_finite()).count();
            let norm = row
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            let why = if bad > 0 {
                Some(NullRow::NonFinite(u32::try_from(bad).unwrap_or(u32::MAX)))
            } else if norm == 0.0 {
                Some(NullRow::Zero)
            } else if d >= CONSTANT_MIN_DIM && row.iter().all(|&v| v == row[0]) {
                Some(NullRow::Constant)
            } else {
                None
            };
            match why {
                Some(why) => {
                    null.push((i, why));
                    row.fill(0.0);
                }
                None => {
                    for v in row.iter_mut() {
                        *v = (f64::from(*v) / norm) as f32;
                    }
                }
            }
        }
        Ok(Embeddings { n, d, data, null })
    }

    /// Whether row `i` is null ([`Embeddings::null`]).
    pub fn is_null(&self, i: usize) -> bool {
        self.null.binary_search_by_key(&i, |&(r, _)| r).is_ok()
    }

    /// Read and validate `path` against the item ids.
    pub fn load(path: &Path, ids: &Ids) -> Result<Self> {
        Self::load_array(NpyArray::open(path)?, ids)
    }

    /// Read and validate an opened array against the item ids.
    pub fn load_array(arr: NpyArray, ids: &Ids) -> Result<Self> {
        let (mut arr, n, d) = Self::check_array(arr, ids)?;
        let path = arr.path.clone();
        let path = path.as_path();
        let raw = match arr.read_probs(0, n * d)? {
            ProbBuf::F32(v) => v,
            ProbBuf::F16(v) => v
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect(),
        };
        Self::from_rows(path, raw, n, d, ids)
    }

    /// Open `path` and check its header against the items (2-D, `D > 0`,
    /// one row per item, every byte present) without reading the rows: the
    /// checks [`Embeddings::load`] makes first, run before scoring.
    pub fn check(path: &Path, ids: &Ids) -> Result<()> {
        Self::check_array(NpyArray::open(path)?, ids).map(|_| ())
    }

    /// The checks of [`Embeddings::check`] on an opened array; the array
    /// and its `(N, D)`.
    pub fn check_array(arr: NpyArray, ids: &Ids) -> Result<(NpyArray, usize, usize)> {
        let path = arr.path.clone();
        let path = path.as_path();
        let shape = arr.shape.clone();
        if shape.len() != 2 {
            return Err(Error::input(
                path,
                format!("embeddings must be 2-D (N, D), got shape {shape:?}"),
            )
            .field("embeddings"));
        }
        let (n, d) = (shape[0], shape[1]);
        if d == 0 {
            return Err(Error::input(path, "embedding dimension D is 0").field("embeddings"));
        }
        if n != ids.len() {
            return Err(Error::input(
                path,
                format!("embeddings have {n} rows but there are {} items", ids.len()),
            )
            .field("embeddings"));
        }
        Ok((arr, n, d))
    }
}

/// Cosine distance `1 − u·v` of unit vectors, clamped at 0. The dot product
/// uses 8 independent accumulators so the compiler vectorises it.
#[inline]
pub fn cosine_distance(u: &[f32], v: &[f32]) -> f32 {
    (1.0 - dot(u, v)).max(0.0)
}

/// `u·v` with 8 lanes.
#[inline]
pub fn dot(u: &[f32], v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (uc, ur) = u.split_at(u.len() / 8 * 8);
    let (vc, vr) = v.split_at(uc.len());
    for (a, b) in uc.chunks_exact(8).zip(vc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (a, b) in ur.iter().zip(vr) {
        s += a * b;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_normalised_and_null_rows_recorded() {
        let ids: Ids = ["a", "b"].into_iter().collect();
        let e = Embeddings::from_rows(Path::new("e.npy"), vec![3.0, 4.0, 0.0, 2.0], 2, 2, &ids)
            .unwrap();
        assert_eq!(e.row(0), &[0.6, 0.8]);
        assert_eq!(e.row(1), &[0.0, 1.0]);
        assert!((cosine_distance(e.row(0), e.row(1)) - 0.2).abs() < 1e-6);
        assert!(e.null.is_empty());
        let e = Embeddings::from_rows(
            Path::new("e.npy"),
            vec![1.0, 0.0, f32::NAN, 1.0],
            2,
            2,
            &ids,
        )
        .unwrap();
        assert_eq!(e.null, [(1, NullRow::NonFinite(1))]);
        assert_eq!(e.row(1), &[0.0, 0.0], "zeroed");
        assert_eq!(NullRow::NonFinite(1).score(2), 0.5);
        // Four rows of four: zeros, constant, an infinity, a direction;
        // (1, 1) in two dimensions stays a direction.
        let ids: Ids = ["a", "b", "c", "d"].into_iter().collect();
        let mut raw = vec![0.0; 4];
        raw.extend([0.3; 4]);
        raw.extend([1.0, f32::INFINITY, f32::NEG_INFINITY, 0.0]);
        raw.extend([1.0, 1.0, 1.0, 2.0]);
        let e = Embeddings::from_rows(Path::new("e.npy"), raw, 4, 4, &ids).unwrap();
        assert_eq!(
            e.null,
            [
                (0, NullRow::Zero),
                (1, NullRow::Constant),
                (2, NullRow::NonFinite(2))
            ]
        );
        assert!(e.is_null(1) && !e.is_null(3));
        assert_eq!(NullRow::Constant.score(4), 1.0);
        let two: Ids = ["a", "b"].into_iter().collect();
        let e = Embeddings::from_rows(Path::new("e.npy"), vec![1.0; 4], 2, 2, &two).unwrap();
        assert!(e.null.is_empty());
    }

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        for d in [1usize, 7, 8, 9, 33] {
            let u: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
            let v: Vec<f32> = (0..d).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = u
                .iter()
                .zip(&v)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            assert!((f64::from(dot(&u, &v)) - naive).abs() < 1e-5, "d={d}");
        }
    }
}
