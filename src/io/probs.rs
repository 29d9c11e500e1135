//! Probabilities as stored, in memory ([`ProbBuf`]) or left in their file
//! ([`PlaneSource`]): the types the readers produce and the backends score.

use crate::error::Result;

/// Probabilities (or logits) as stored: `f32`, or `f16` kept as raw bits so a
/// GPU can read them packed.
#[derive(Debug, Clone)]
pub enum ProbBuf {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl ProbBuf {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ProbBuf::F32(v) => v.len(),
            ProbBuf::F16(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as `f32`.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            ProbBuf::F32(v) => v[i],
            ProbBuf::F16(v) => half::f16::from_bits(v[i]).to_f32(),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            ProbBuf::F32(v) => v.len() * 4,
            ProbBuf::F16(v) => v.len() * 2,
        }
    }

    /// Copy values `src` to start at `dest` (as [`slice::copy_within`]).
    pub fn copy_within(&mut self, src: std::ops::Range<usize>, dest: usize) {
        match self {
            ProbBuf::F32(v) => v.copy_within(src, dest),
            ProbBuf::F16(v) => v.copy_within(src, dest),
        }
    }

    /// Keep the first `n` values.
    pub fn truncate(&mut self, n: usize) {
        match self {
            ProbBuf::F32(v) => v.truncate(n),
            ProbBuf::F16(v) => v.truncate(n),
        }
    }
}

/// The stored values of one segmentation item, read in pieces
/// (positioned reads: safe from several threads at once).
///
/// Contract: element `e` is the item's `e`-th value in C order
/// (`k · h · w + pixel`); a read fills all of `out` or fails with an error
/// naming the file and the item.
pub trait PlaneSource: Send + Sync + std::fmt::Debug {
    /// True when the values are float16 (read them with `read_f16`), false
    /// for float32 (`read_f32`).
    fn is_f16(&self) -> bool;
    /// Read `out.len()` float32 values starting at element `start`.
    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()>;
    /// Read `out.len()` float16 values (raw bits) starting at element `start`.
    fn read_f16(&self, start: usize, out: &mut [u16]) -> Result<()>;
}
