//! Arrays that are not `.npy` files in a dataset directory: held in memory
//! (the Python API's numpy arrays, which arrive as ndarray views), or lying
//! at an offset in a file (a `np.memmap`). The score stage reads both
//! through the same array type as the files ([`crate::io::npy::NpyArray`]),
//! so every backend, check and queue is shared code.
//!
//! # Contract
//!
//! - A [`MemArray`] is C-contiguous (standard layout), little-endian (the
//!   machine's order on every platform `triage` builds for) and immutable
//!   while it lives: the score stage copies batches out of it, never into it.
//! - Zero-copy: [`MemArray::borrowed`] keeps a pointer into the caller's
//!   memory and an `owner` that keeps that memory alive (for Python, a
//!   strong reference to the numpy array); nothing is copied whole.
//! - [`ArraySource::File`] names an array inside a file (a memory-mapped
//!   numpy array's file, offset, dtype and shape). It is read with bounded
//!   positioned reads, as a `.npy` file is, so the pages read do not stay
//!   resident in the process: the peak RSS follows the batch size, not the
//!   array.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

/// Element types `triage` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F16,
    F32,
    F64,
    Int(usize),
    Uint(usize),
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::Int(n) | Dtype::Uint(n) => n,
        }
    }

    /// True for float16/32/64.
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64)
    }

    /// The dtype of a numpy type string (`"<f4"`, `"|u1"`, `"<i8"`):
    /// little-endian (or single-byte) floats of 2, 4, 8 bytes and integers
    /// of 1, 2, 4, 8 bytes. `Err` says why not.
    pub fn from_numpy(descr: &str) -> std::result::Result<Dtype, String> {
        let (order, rest) = match descr.as_bytes().first() {
            Some(&c @ (b'<' | b'>' | b'|' | b'=')) => (c, &descr[1..]),
            _ => (b'|', descr),
        };
        let kind = rest.chars().next().unwrap_or('?');
        let size: usize = rest
            .get(kind.len_utf8()..)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let little = match order {
            b'<' => true,
            b'>' => false,
            b'=' => cfg!(target_endian = "little"),
            _ => size == 1,
        };
        let dt = match (kind, size) {
            ('f', 2) => Dtype::F16,
            ('f', 4) => Dtype::F32,
            ('f', 8) => Dtype::F64,
            ('i', 1 | 2 | 4 | 8) => Dtype::Int(size),
            ('u', 1 | 2 | 4 | 8) => Dtype::Uint(size),
            _ => return Err(String::new()),
        };
        if !little && size > 1 {
            return Err(" (big-endian)".into());
        }
        Ok(dt)
    }
}

/// An element type a [`MemArray`] may hold.
pub trait MemElement: Copy + Send + Sync + 'static {
    /// Its dtype.
    const DTYPE: Dtype;
}

macro_rules! mem_element {
    ($($t:ty => $d:expr),* $(,)?) => {
        $(impl MemElement for $t { const DTYPE: Dtype = $d; })*
    };
}

mem_element!(
    f32 => Dtype::F32,
    f64 => Dtype::F64,
    half::f16 => Dtype::F16,
    i8 => Dtype::Int(1),
    i16 => Dtype::Int(2),
    i32 => Dtype::Int(4),
    i64 => Dtype::Int(8),
    u8 => Dtype::Uint(1),
    u16 => Dtype::Uint(2),
    u32 => Dtype::Uint(4),
    u64 => Dtype::Uint(8),
);

/// A C-contiguous array in memory: its dtype, shape and bytes, and the
/// owner that keeps the bytes alive. Cheap to clone (shared).
#[derive(Clone)]
pub struct MemArray {
    dtype: Dtype,
    shape: Vec<usize>,
    ptr: *const u8,
    bytes: usize,
    _owner: Arc<dyn Any + Send + Sync>,
}

// SAFETY: the bytes are immutable while the array lives (the contract of
// `borrowed`, and `owned` owns them), and the owner is Send + Sync.
unsafe impl Send for MemArray {}
// SAFETY: as above; reads from several threads of immutable bytes.
unsafe impl Sync for MemArray {}

impl std::fmt::Debug for MemArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemArray")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .finish()
    }
}

impl MemArray {
    /// Borrow `view`'s memory without copying it; `owner` keeps it alive
    /// for as long as this array and its clones live.
    ///
    /// `Err` when the view is not in standard (C-contiguous) layout, saying
    /// how to make it so.
    ///
    /// # Safety
    ///
    /// The memory `view` points to must stay valid and unmodified for as
    /// long as `owner` lives (the returned array holds `owner`).
    pub unsafe fn borrowed<T: MemElement>(
        view: ndarray::ArrayViewD<'_, T>,
        owner: Arc<dyn Any + Send + Sync>,
    ) -> std::result::Result<MemArray, String> {
        if !view.is_standard_layout() {
            return Err(
                "the array is not C-contiguous; pass np.ascontiguousarray(x) (a copy) or save it \
                 in C order"
                    .into(),
            );
        }
        Ok(MemArray {
            dtype: T::DTYPE,
            shape: view.shape().to_vec(),
            ptr: view.as_ptr().cast(),
            bytes: view.len() * std::mem::size_of::<T>(),
            _owner: owner,
        })
    }

    /// An array that owns its values (laid out in C order first if needed).
    pub fn owned<T: MemElement>(array: ndarray::ArrayD<T>) -> MemArray {
        let array = if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned()
        };
        let owner = Arc::new(array);
        let (ptr, bytes, shape) = (
            owner.as_ptr().cast::<u8>(),
            owner.len() * std::mem::size_of::<T>(),
            owner.shape().to_vec(),
        );
        MemArray {
            dtype: T::DTYPE,
            shape,
            ptr,
            bytes,
            // The heap buffer does not move when the array moves into the Arc.
            _owner: owner,
        }
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values as bytes, in C order (`len × dtype.size()`).
    pub fn bytes(&self) -> &[u8] {
        if self.bytes == 0 {
            return &[];
        }
        // SAFETY: `ptr` points to `bytes` valid, immutable bytes kept alive
        // by `_owner` (the constructors' contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    /// The values as an ndarray view, when `T` is the element type.
    pub fn view<T: MemElement>(&self) -> Option<ndarray::ArrayViewD<'_, T>> {
        if T::DTYPE != self.dtype || !(self.ptr as usize).is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: dtype and alignment checked; `shape` describes exactly
        // `bytes / size_of::<T>()` elements in C order, alive and immutable
        // while `self` is borrowed.
        Some(unsafe {
            ndarray::ArrayViewD::from_shape_ptr(self.shape.clone(), self.ptr.cast::<T>())
        })
    }
}

/// Where an array given to [`crate::config::DatasetConfig::in_memory`]
/// lies.
#[derive(Debug, Clone)]
pub enum ArraySource {
    /// In memory.
    Memory(MemArray),
    /// In a file at `offset` (a memory-mapped numpy array's file): read with
    /// positioned reads, no mapping.
    File {
        path: PathBuf,
        offset: u64,
        dtype: Dtype,
        shape: Vec<usize>,
    },
}

impl ArraySource {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            ArraySource::Memory(m) => m.shape(),
            ArraySource::File { shape, .. } => shape,
        }
    }

    /// The array's element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            ArraySource::Memory(m) => m.dtype(),
            ArraySource::File { dtype, .. } => *dtype,
        }
    }
}

/// The arrays of a dataset given in memory (the Python API's arguments).
#[derive(Debug, Clone)]
pub struct MemoryInputs {
    /// `(N, C)` (classification) or `(N, C, H, W)` (segmentation), float16,
    /// float32 or float64.
    pub probs: ArraySource,
    /// Classification: `(N,)` integer class ids, -1 for unlabelled.
    pub labels: Option<ArraySource>,
    /// Segmentation: `(N, H, W)` integer class ids per pixel (the ignore
    /// index counts nowhere).
    pub masks: Option<ArraySource>,
    /// `(N, D)` floats.
    pub embeddings: Option<ArraySource>,
    /// The item ids, `"0"`, `"1"`, ... when absent.
    pub ids: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_borrowed_views_read_back_the_values_in_c_order() {
        let a = ndarray::Array::from_shape_vec((2, 3), vec![1.0f32, 2., 3., 4., 5., 6.])
            .unwrap()
            .into_dyn();
        let t = a.t().to_owned();
        let m = MemArray::owned(t.clone());
        assert_eq!(m.shape(), &[3, 2]);
        assert_eq!(m.dtype(), Dtype::F32);
        let v = m.view::<f32>().unwrap();
        assert_eq!(v[[0, 1]], 4.0);
        assert_eq!(v[[2, 0]], 3.0);
        // The bytes are C order: 1, 4, 2, 5, 3, 6.
        let vals: Vec<f32> = bytemuck::pod_collect_to_vec(m.bytes());
        assert_eq!(vals, vec![1., 4., 2., 5., 3., 6.]);
        assert!(m.view::<f64>().is_none());

        let owner: Arc<dyn Any + Send + Sync> = Arc::new(a.clone());
        let b = unsafe { MemArray::borrowed(a.view(), owner.clone()) }.unwrap();
        assert_eq!(b.bytes().len(), 24);
        // A transposed view is refused, with the fix in the message.
        let e = unsafe { MemArray::borrowed(a.t(), owner) }.unwrap_err();
        assert!(e.contains("np.ascontiguousarray"), "{e}");
    }

    #[test]
    fn numpy_type_strings() {
        assert_eq!(Dtype::from_numpy("<f4"), Ok(Dtype::F32));
        assert_eq!(Dtype::from_numpy("|u1"), Ok(Dtype::Uint(1)));
        assert_eq!(Dtype::from_numpy("<i8"), Ok(Dtype::Int(8)));
        assert_eq!(Dtype::from_numpy(">f4"), Err(" (big-endian)".into()));
        assert!(Dtype::from_numpy("<c8").is_err());
    }
}
