//! `.npy` arrays: header validation up front, then bounded reads of any slice.
//!
//! The header is parsed with `npyz`; the data is read with plain positioned
//! reads into a caller-sized buffer, so a 100 GB file never needs 100 GB of
//! RAM and no memory-mapped pages pile up.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use npyz::{DType, Endianness, NpyHeader, Order, TypeChar};

use crate::error::{Error, Result};
use crate::io::probs::{PlaneSource, ProbBuf};

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
}

/// An opened, validated `.npy` file: its dtype, shape and where the data starts.
#[derive(Debug)]
pub struct NpyArray {
    pub path: PathBuf,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    data_offset: u64,
    file: File,
    /// A second handle on the file for [`NpyPlanes`], opened on first use.
    shared: Option<Arc<File>>,
}

impl NpyArray {
    /// Open `path`, parse and validate the header, and check that the file
    /// holds every byte the header promises (a truncated file fails here).
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let header = NpyHeader::from_reader(&mut file)
            .map_err(|e| Error::input(path, format!("not a valid .npy file ({e})")))?;
        let data_offset = file.stream_position().map_err(|e| Error::io(path, e))?;
        let dtype = match header.dtype() {
            DType::Plain(ts) => {
                let little = !matches!(ts.endianness(), Endianness::Big) || ts.size_field() == 1;
                let size = ts.size_field() as usize;
                let dt = match (ts.type_char(), size) {
                    (TypeChar::Float, 2) => Some(Dtype::F16),
                    (TypeChar::Float, 4) => Some(Dtype::F32),
                    (TypeChar::Float, 8) => Some(Dtype::F64),
                    (TypeChar::Int, 1 | 2 | 4 | 8) => Some(Dtype::Int(size)),
                    (TypeChar::Uint, 1 | 2 | 4 | 8) => Some(Dtype::Uint(size)),
                    _ => None,
                };
                match dt {
                    Some(dt) if little => dt,
                    _ => {
                        return Err(Error::input(
                            path,
                            format!(
                                "unsupported dtype {ts}; expected little-endian float16, float32 or float64 (or an integer type for labels)"
                            ),
                        )
                        .field("dtype"));
                    }
                }
            }
            other => {
                return Err(
                    Error::input(path, format!("unsupported dtype {}", other.descr()))
                        .field("dtype"),
                );
            }
        };
        if header.order() == Order::Fortran && header.shape().len() > 1 {
            return Err(Error::input(
                path,
                "Fortran-order arrays are not supported; save with C order (np.ascontiguousarray)",
            )
            .field("order"));
        }
        let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
        let n: u128 = shape.iter().map(|&d| d as u128).product();
        let need = data_offset as u128 + n * dtype.size() as u128;
        let have = file.metadata().map_err(|e| Error::io(path, e))?.len() as u128;
        if have < need {
            return Err(Error::input(
                path,
                format!(
                    "truncated: the header promises shape {shape:?} ({need} bytes in all) but the file has {have} bytes"
                ),
            ));
        }
        Ok(NpyArray {
            path: path.to_path_buf(),
            dtype,
            shape,
            data_offset,
            file,
            shared: None,
        })
    }

    /// The float16 or float32 values from element `start` on, left in the
    /// file for positioned reads from any thread ([`PlaneSource`]); each
    /// read adds its time (nanoseconds) to `clock`. `None` for other dtypes
    /// (float64 is converted on a normal read).
    pub fn planes(&mut self, start: usize, clock: &Arc<AtomicU64>) -> Result<Option<NpyPlanes>> {
        if !matches!(self.dtype, Dtype::F16 | Dtype::F32) {
            return Ok(None);
        }
        let file = match &self.shared {
            Some(f) => Arc::clone(f),
            None => {
                let f = Arc::new(
                    self.file
                        .try_clone()
                        .map_err(|e| Error::io(&self.path, e))?,
                );
                self.shared = Some(Arc::clone(&f));
                f
            }
        };
        Ok(Some(NpyPlanes {
            file,
            path: self.path.clone(),
            offset: self.data_offset + (start * self.dtype.size()) as u64,
            f16: self.dtype == Dtype::F16,
            clock: Arc::clone(clock),
        }))
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the array holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw little-endian bytes of `count` elements from element `start`.
    pub fn read_bytes(&mut self, start: usize, count: usize) -> Result<Vec<u8>> {
        let size = self.dtype.size();
        let mut buf = vec![0u8; count * size];
        self.file
            .seek(SeekFrom::Start(self.data_offset + (start * size) as u64))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    /// Read `count` float elements from element `start` into `buf`, reusing
    /// its allocation: one positioned, sequential `read` straight into the
    /// typed buffer for float16 and float32 (no intermediate copy, no fresh
    /// pages once the buffer has grown), a conversion for float64 (rounded to
    /// float32). float16 stays float16 (raw bits), so a GPU reads it packed.
    pub fn read_probs_into(&mut self, start: usize, count: usize, buf: &mut ProbBuf) -> Result<()> {
        let size = self.dtype.size();
        self.file
            .seek(SeekFrom::Start(self.data_offset + (start * size) as u64))
            .map_err(|e| Error::io(&self.path, e))?;
        match self.dtype {
            Dtype::F16 => {
                let v = f16_vec(buf);
                v.resize(count, 0);
                self.file
                    .read_exact(bytemuck::cast_slice_mut(v.as_mut_slice()))
                    .map_err(|e| Error::io(&self.path, e))?;
                from_le_in_place_u16(v);
            }
            Dtype::F32 => {
                let v = f32_vec(buf);
                v.resize(count, 0.0);
                self.file
                    .read_exact(bytemuck::cast_slice_mut(v.as_mut_slice()))
                    .map_err(|e| Error::io(&self.path, e))?;
                from_le_in_place_f32(v);
            }
            Dtype::F64 => {
                let v = f32_vec(buf);
                v.clear();
                v.reserve(count);
                // Convert in 1 MiB pieces so the byte scratch stays small.
                let mut scratch = vec![0u8; (1 << 20).min(count * 8)];
                let mut left = count;
                while left > 0 {
                    let n = left.min(scratch.len() / 8);
                    let bytes = &mut scratch[..n * 8];
                    self.file
                        .read_exact(bytes)
                        .map_err(|e| Error::io(&self.path, e))?;
                    v.extend(bytes.chunks_exact(8).map(|b| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        f64::from_le_bytes(a) as f32
                    }));
                    left -= n;
                }
            }
            Dtype::Int(_) | Dtype::Uint(_) => {
                return Err(Error::input(
                    &self.path,
                    "expected float16, float32 or float64 probabilities, found an integer dtype",
                )
                .field("dtype"));
            }
        }
        Ok(())
    }

    /// Read `count` float elements from element `start`: float16 stays
    /// float16, float32 stays, float64 is rounded to float32.
    pub fn read_probs(&mut self, start: usize, count: usize) -> Result<ProbBuf> {
        let mut buf = ProbBuf::F32(Vec::new());
        self.read_probs_into(start, count, &mut buf)?;
        Ok(buf)
    }

    /// Read the whole array as integers (labels). Floats are rejected.
    pub fn read_ints(&mut self) -> Result<Vec<i64>> {
        let n = self.len();
        let bytes = self.read_bytes(0, n)?;
        let v = match self.dtype {
            Dtype::Int(1) => bytes.iter().map(|&b| b as i8 as i64).collect(),
            Dtype::Uint(1) => bytes.iter().map(|&b| b as i64).collect(),
            Dtype::Int(2) => bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
                .collect(),
            Dtype::Uint(2) => bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as i64)
                .collect(),
            Dtype::Int(4) => bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
            Dtype::Uint(4) => bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
            Dtype::Int(8) | Dtype::Uint(8) => bytes
                .chunks_exact(8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    // u64 above i64::MAX wraps negative and is rejected as out of range.
                    i64::from_le_bytes(a)
                })
                .collect(),
            _ => {
                return Err(Error::input(
                    &self.path,
                    format!("labels must have an integer dtype, found {:?}", self.dtype),
                )
                .field("dtype"));
            }
        };
        Ok(v)
    }
}

/// One item's float16 or float32 values, read in pieces by positioned reads
/// (`pread`, so several threads share the handle); see [`NpyArray::planes`].
#[derive(Debug)]
pub struct NpyPlanes {
    file: Arc<File>,
    path: PathBuf,
    /// Byte offset of the item's element 0.
    offset: u64,
    f16: bool,
    clock: Arc<AtomicU64>,
}

impl NpyPlanes {
    /// Fill `out` from element `start` on (`size` bytes per element).
    fn read_at(&self, start: usize, size: usize, out: &mut [u8]) -> Result<()> {
        let t = Instant::now();
        let at = self.offset + (start * size) as u64;
        let r = read_exact_at(&self.file, out, at);
        self.clock
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r.map_err(|e| Error::io(&self.path, e))
    }
}

impl NpyPlanes {
    /// [`NpyPlanes::read_at`] into `out` as the stored type (`f16`: float16
    /// bits); asking for the other type is an error, not a conversion.
    fn read_as<T: bytemuck::Pod>(&self, start: usize, out: &mut [T], f16: bool) -> Result<()> {
        if self.f16 != f16 {
            return Err(Error::Internal(format!(
                "{}: values read as the wrong float type",
                self.path.display()
            )));
        }
        self.read_at(
            start,
            std::mem::size_of::<T>(),
            bytemuck::cast_slice_mut(out),
        )
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, out: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, at)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, out: &mut [u8], at: u64) -> std::io::Result<()> {
    // No positioned reads here: seek and read a fresh handle (correct, slower).
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(out)
}

impl PlaneSource for NpyPlanes {
    fn is_f16(&self) -> bool {
        self.f16
    }

    fn read_f32(&self, start: usize, out: &mut [f32]) -> Result<()> {
        self.read_as(start, out, false)?;
        from_le_in_place_f32(out);
        Ok(())
    }

    fn read_f16(&self, start: usize, out: &mut [u16]) -> Result<()> {
        self.read_as(start, out, true)?;
        from_le_in_place_u16(out);
        Ok(())
    }
}

/// The `f32` vector of `buf`, replacing an `f16` one (its capacity is lost).
fn f32_vec(buf: &mut ProbBuf) -> &mut Vec<f32> {
    if let ProbBuf::F16(_) = buf {
        *buf = ProbBuf::F32(Vec::new());
    }
    match buf {
        ProbBuf::F32(v) => v,
        ProbBuf::F16(_) => unreachable!("replaced above"),
    }
}

/// The `f16` vector of `buf`, replacing an `f32` one.
fn f16_vec(buf: &mut ProbBuf) -> &mut Vec<u16> {
    if let ProbBuf::F32(_) = buf {
        *buf = ProbBuf::F16(Vec::new());
    }
    match buf {
        ProbBuf::F16(v) => v,
        ProbBuf::F32(_) => unreachable!("replaced above"),
    }
}

/// `.npy` data is little-endian; on a big-endian host swap in place.
#[inline]
fn from_le_in_place_u16(v: &mut [u16]) {
    if cfg!(target_endian = "big") {
        for x in v {
            *x = u16::from_le(*x);
        }
    }
}

/// See [`from_le_in_place_u16`].
#[inline]
fn from_le_in_place_f32(v: &mut [f32]) {
    if cfg!(target_endian = "big") {
        for x in v {
            *x = f32::from_bits(u32::from_le(x.to_bits()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_npy(path: &Path, descr: &str, shape: &str, data: &[u8]) {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - total % 64) % 64));
        header.push('\n');
        let mut f = File::create(path).unwrap();
        f.write_all(b"\x93NUMPY\x01\x00").unwrap();
        f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
        f.write_all(header.as_bytes()).unwrap();
        f.write_all(data).unwrap();
    }

    #[test]
    fn reads_slices_of_f32_f64_and_f16() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let vals = [0.25f32, 0.5, 0.75, 1.0];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&p, "<f4", "(2, 2)", &bytes);
        let mut a = NpyArray::open(&p).unwrap();
        assert_eq!(a.shape, vec![2, 2]);
        let b = a.read_probs(1, 2).unwrap();
        assert_eq!((b.get(0), b.get(1)), (0.5, 0.75));

        let bytes: Vec<u8> = [0.1f64, 0.9].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&p, "<f8", "(2,)", &bytes);
        let mut a = NpyArray::open(&p).unwrap();
        assert_eq!(a.read_probs(0, 2).unwrap().get(1), 0.9f32);

        let bytes: Vec<u8> = [half::f16::from_f32(0.5).to_bits()]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write_npy(&p, "<f2", "(1,)", &bytes);
        let mut a = NpyArray::open(&p).unwrap();
        assert!(matches!(a.read_probs(0, 1).unwrap(), ProbBuf::F16(_)));
    }

    #[test]
    fn rejects_truncated_garbage_and_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        write_npy(&p, "<f4", "(2, 2)", &[0u8; 12]);
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("t.npy"), "{e}");

        std::fs::write(&p, b"id,label\n1,2\n").unwrap();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("not a valid .npy"), "{e}");

        write_npy(&p, "<c8", "(1,)", &[0u8; 8]);
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype"), "{e}");

        write_npy(&p, ">f4", "(1,)", &[0u8; 4]);
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype"), "{e}");
    }

    #[test]
    fn reads_integer_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.npy");
        let bytes: Vec<u8> = [3u16, 0, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&p, "<u2", "(3,)", &bytes);
        assert_eq!(
            NpyArray::open(&p).unwrap().read_ints().unwrap(),
            vec![3, 0, 9]
        );
        write_npy(&p, "|i1", "(2,)", &[0xff, 2]);
        assert_eq!(
            NpyArray::open(&p).unwrap().read_ints().unwrap(),
            vec![-1, 2]
        );
    }
}
