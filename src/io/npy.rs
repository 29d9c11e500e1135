//! `.npy` arrays: header validation up front, then bounded reads of any slice.
//!
//! The preamble (magic, version, header length) is read and checked, then
//! the header text (at most [`MAX_HEADER_BYTES`], never beyond the file) is
//! parsed here, in one pass without recursion; the data is read with plain
//! positioned reads into a caller-sized buffer, so a 100 GB file never
//! needs 100 GB of RAM and no memory-mapped pages pile up. Every read is checked against the element
//! count, which is checked against the file's size on open, so no
//! allocation follows an unchecked number from the file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::io::probs::{PlaneSource, ProbBuf};
pub use crate::memory::Dtype;
use crate::memory::{ArraySource, MemArray};

/// The longest `.npy` header text read, in bytes: numpy's own default
/// `max_header_size` (10 000) rounded up to 16 KiB. A header length field
/// above it (or beyond the file's end) is refused before anything is
/// allocated for it.
pub const MAX_HEADER_BYTES: u64 = 16 << 10;

/// The element count and the byte size of an array of `shape` with
/// `elem`-byte elements, `None` when any partial product of the dimensions
/// (zeros skipped, so a zero dimension cannot hide an overflowing product
/// of the others) or the byte size overflows 64 bits (or `usize`).
pub fn checked_size(shape: &[usize], elem: usize) -> Option<(usize, u64)> {
    let mut len: usize = 1;
    let mut nonzero: usize = 1;
    for &d in shape {
        len = len.checked_mul(d)?;
        nonzero = nonzero.checked_mul(d.max(1))?;
    }
    let bytes = u64::try_from(nonzero.checked_mul(elem)?).ok()?;
    let bytes = if len == 0 { 0 } else { bytes };
    Some((len, bytes))
}

/// The three keys of a `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// Parse the header text, a Python dict literal with exactly the keys
/// `descr` (a string: structured dtypes are not supported), `fortran_order`
/// (`True`/`False`) and `shape` (a tuple of non-negative integers), as numpy
/// writes it. One pass over the bytes, no recursion, no allocation beyond
/// the (bounded) text's own size; any other form is an error message.
fn parse_header(text: &[u8]) -> std::result::Result<Header, String> {
    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }
        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.s.get(self.i).copied()
        }
        fn eat(&mut self, c: u8) -> bool {
            if self.peek() == Some(c) {
                self.i += 1;
                true
            } else {
                false
            }
        }
        fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
            if self.eat(c) {
                Ok(())
            } else {
                Err(format!(
                    "expected '{}' at byte {} of the header",
                    c as char, self.i
                ))
            }
        }
        fn string(&mut self) -> std::result::Result<String, String> {
            let q = match self.peek() {
                Some(q @ (b'\'' | b'"')) => q,
                _ => {
                    return Err(format!(
                        "expected a string at byte {} of the header",
                        self.i
                    ));
                }
            };
            self.i += 1;
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != q {
                if self.s[self.i] == b'\\' {
                    return Err("a string with an escape in the header".into());
                }
                self.i += 1;
            }
            if self.i >= self.s.len() {
                return Err("an unterminated string in the header".into());
            }
            let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
            self.i += 1;
            Ok(v)
        }
        fn word(&mut self) -> &[u8] {
            self.ws();
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                self.i += 1;
            }
            &self.s[start..self.i]
        }
        fn shape(&mut self) -> std::result::Result<Vec<u64>, String> {
            self.expect(b'(')?;
            let mut dims = Vec::new();
            loop {
                if self.eat(b')') {
                    return Ok(dims);
                }
                let w = self.word();
                // Python 2 wrote long integers with an `L`.
                let digits = w.strip_suffix(b"L").unwrap_or(w);
                let d = std::str::from_utf8(digits)
                    .ok()
                    .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!(
                            "shape dimension {:?} is not an integer below 2^64",
                            String::from_utf8_lossy(w)
                        )
                    })?;
                dims.push(d);
                if !self.eat(b',') {
                    self.expect(b')')?;
                    return Ok(dims);
                }
            }
        }
    }
    let mut p = P { s: text, i: 0 };
    let (mut descr, mut order, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" if descr.is_none() => {
                if p.peek() == Some(b'[') {
                    return Err("a structured dtype (a list of fields) is not supported".into());
                }
                descr = Some(p.string()?);
            }
            "fortran_order" if order.is_none() => {
                order = Some(match p.word() {
                    b"True" => true,
                    b"False" => false,
                    _ => return Err("'fortran_order' is not True or False".into()),
                });
            }
            "shape" if shape.is_none() => shape = Some(p.shape()?),
            k => {
                return Err(format!(
                    "the header has an unexpected or repeated key {k:?}"
                ));
            }
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    if p.peek().is_some() {
        return Err(format!("text after the header dict at byte {}", p.i));
    }
    match (descr, order, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header {
            descr,
            fortran_order,
            shape,
        }),
        _ => Err("the header lacks 'descr', 'fortran_order' or 'shape'".into()),
    }
}

/// Where an array's bytes lie: a file, memory given by the caller, or
/// bytes this reader holds (a deflated `.npz` member, inflated).
#[derive(Debug)]
pub(crate) enum Store {
    File(File),
    Memory(MemArray),
    Bytes(Vec<u8>),
}

impl Store {
    /// Fill `out` with the bytes from byte `at` on (positioned: any thread).
    fn read_exact_at(&self, out: &mut [u8], at: u64) -> std::io::Result<()> {
        let bytes = match self {
            Store::File(f) => return read_exact_at(f, out, at),
            Store::Memory(m) => m.bytes(),
            Store::Bytes(b) => b.as_slice(),
        };
        let range = usize::try_from(at)
            .ok()
            .and_then(|a| Some(a..a.checked_add(out.len())?))
            .filter(|r| r.end <= bytes.len())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "read past the end of the array",
                )
            })?;
        out.copy_from_slice(&bytes[range]);
        Ok(())
    }
}

/// An opened, validated array: its dtype, shape and where the data starts,
/// in a `.npy` file ([`NpyArray::open`]) or given in memory or at an offset
/// in a file ([`NpyArray::from_source`]). Every reader of the score stage
/// reads through it, whichever it is.
#[derive(Debug)]
pub struct NpyArray {
    pub path: PathBuf,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// The element count, the product of `shape` (checked on open).
    len: usize,
    data_offset: u64,
    /// The bytes, shared with the [`NpyPlanes`] handed out.
    store: Arc<Store>,
    /// `Some((c, hw))`: the array holds items of `c` classes and `hw`
    /// pixels stored channels-last, `(H, W, C)` each, which
    /// [`NpyArray::read_probs_into`] hands out as `(C, H, W)`
    /// ([`NpyArray::set_channels_last`]).
    channels_last: Option<(usize, usize)>,
}

impl NpyArray {
    /// Open `path`, parse and validate the header, and check that the file
    /// holds every byte the header promises (a truncated file fails here).
    ///
    /// The file is untrusted: it must be a regular file; the magic, the
    /// version (1.0, 2.0 or 3.0) and the header length are read and checked
    /// here (at most [`MAX_HEADER_BYTES`], and never beyond the file) before
    /// the header text is read and parsed; the shape's element count and byte size are
    /// computed with checked arithmetic (every partial product of the
    /// dimensions fits 64 bits), and the data must fit the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = crate::fsx::open_input(path)?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Self::parse_in(path, Store::File(file), 0, file_len, None)
    }

    /// The `.npy` bytes lying at `base..base + avail` of `store` (a whole
    /// file, or a member of a `.npz` archive named `member`, which errors
    /// then name beside `path`): the checks of [`NpyArray::open`], against
    /// `avail` bytes instead of the file's size.
    pub(crate) fn parse_in(
        path: &Path,
        store: Store,
        base: u64,
        avail: u64,
        member: Option<&str>,
    ) -> Result<Self> {
        let (what, holder) = match member {
            Some(m) => (
                format!("the member {m} is not a valid .npy file"),
                format!("the member {m}"),
            ),
            None => ("not a valid .npy file".to_string(), "the file".to_string()),
        };
        let bad = |msg: String| Error::input(path, format!("{what} ({msg})"));
        let read = |out: &mut [u8], at: u64| {
            store
                .read_exact_at(out, base + at)
                .map_err(|e| Error::io(path, e))
        };
        let mut pre = [0u8; 12];
        let head = avail.min(pre.len() as u64) as usize;
        read(&mut pre[..head], 0)?;
        if head < 10 || &pre[..6] != b"\x93NUMPY" {
            let zip = if member.is_none() && pre.starts_with(b"PK\x03\x04") {
                ": it is a zip archive; name a .npz file so (probs = \"x.npz\")"
            } else {
                ""
            };
            return Err(bad(format!("magic not found{zip}")));
        }
        let pre_len: usize = match (pre[6], pre[7]) {
            (1, 0) => 10,
            (2 | 3, 0) if head >= 12 => 12,
            (2 | 3, 0) => return Err(bad("the header is cut short".into())),
            (major, minor) => {
                return Err(bad(format!(
                    "format version {major}.{minor}; triage reads 1.0, 2.0 and 3.0"
                )));
            }
        };
        let header_len: u64 = if pre_len == 10 {
            u16::from_le_bytes([pre[8], pre[9]]) as u64
        } else {
            u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as u64
        };
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "the header length field says {header_len} bytes, over the limit of \
                 {MAX_HEADER_BYTES} bytes (docs/threat-model.md)"
            )));
        }
        let data_offset = pre_len as u64 + header_len;
        if data_offset > avail {
            return Err(bad(format!(
                "the header length field says {header_len} bytes but {holder} has {avail} bytes"
            )));
        }
        // Bounded by MAX_HEADER_BYTES and by the file's size, checked above.
        let mut text = vec![0u8; header_len as usize];
        read(&mut text, pre_len as u64)?;
        let header = parse_header(&text).map_err(bad)?;
        let dtype = Dtype::from_numpy(&header.descr).map_err(|msg| {
            Error::input(
                path,
                format!(
                    "unsupported dtype {:?}{msg}; expected little-endian float16, float32 or \
                     float64 (or an integer type for labels)",
                    header.descr
                ),
            )
            .field("dtype")
        })?;
        if header.fortran_order && header.shape.len() > 1 {
            return Err(Error::input(
                path,
                "Fortran-order arrays are not supported; save with C order (np.ascontiguousarray)",
            )
            .field("order"));
        }
        let shape: Vec<usize> = header
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::input(
                    path,
                    format!("shape {:?} does not fit this machine's sizes", header.shape),
                )
                .field("shape")
            })?;
        let (len, bytes) = checked_size(&shape, dtype.size()).ok_or_else(|| {
            Error::input(
                path,
                format!(
                    "shape {shape:?} of {dtype:?} holds more elements or bytes than fit 64 bits"
                ),
            )
            .field("shape")
        })?;
        let need = data_offset.checked_add(bytes);
        if need.is_none_or(|need| avail < need) {
            let need = need.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
            return Err(Error::input(
                path,
                format!(
                    "truncated: the header promises shape {shape:?} ({need} bytes in all) but {holder} has {avail} bytes"
                ),
            ));
        }
        Ok(NpyArray {
            path: path.to_path_buf(),
            dtype,
            shape,
            len,
            data_offset: base + data_offset,
            store: Arc::new(store),
            channels_last: None,
        })
    }

    /// An array given as an [`ArraySource`], named `name` in errors (the
    /// argument's name, as `probs`): a memory array as it is, a file range
    /// checked to lie inside the file (opened as an input,
    /// [`crate::fsx::open_input`]).
    pub fn from_source(name: &Path, source: &ArraySource) -> Result<Self> {
        let (len, bytes) =
            checked_size(source.shape(), source.dtype().size()).ok_or_else(|| {
                Error::input(name, "the shape holds more bytes than fit 64 bits").field("shape")
            })?;
        match source {
            ArraySource::Memory(m) => Ok(NpyArray {
                path: name.to_path_buf(),
                dtype: m.dtype(),
                shape: m.shape().to_vec(),
                len,
                data_offset: 0,
                store: Arc::new(Store::Memory(m.clone())),
                channels_last: None,
            }),
            ArraySource::File {
                path,
                offset,
                dtype,
                shape,
            } => {
                let file = crate::fsx::open_input(path)?;
                let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
                if offset.checked_add(bytes).is_none_or(|end| end > file_len) {
                    return Err(Error::input(
                        path,
                        format!(
                            "the array of shape {shape:?} at byte {offset} needs {bytes} bytes                              but the file has {file_len}"
                        ),
                    )
                    .field("shape"));
                }
                Ok(NpyArray {
                    path: path.clone(),
                    dtype: *dtype,
                    shape: shape.clone(),
                    len,
                    data_offset: *offset,
                    store: Arc::new(Store::File(file)),
                    channels_last: None,
                })
            }
        }
    }

    /// The float16 or float32 values from element `start` on, left in the
    /// file for positioned reads from any thread ([`PlaneSource`]); each
    /// read adds its time (nanoseconds) to `clock`. `None` when
    /// [`NpyArray::has_planes`] is false (float64 is converted, and
    /// channels-last items transposed, on a normal read).
    pub fn planes(&mut self, start: usize, clock: &Arc<AtomicU64>) -> Result<Option<NpyPlanes>> {
        if !self.has_planes() {
            return Ok(None);
        }
        let (offset, _) = self.span(start, 0)?;
        Ok(Some(NpyPlanes {
            store: Arc::clone(&self.store),
            path: self.path.clone(),
            offset,
            f16: self.dtype == Dtype::F16,
            clock: Arc::clone(clock),
        }))
    }

    /// True when [`NpyArray::planes`] leaves the values where they lie:
    /// float16 or float32, stored in the order they are read (not
    /// channels-last).
    pub fn has_planes(&self) -> bool {
        matches!(self.dtype, Dtype::F16 | Dtype::F32) && self.channels_last.is_none()
    }

    /// Read the array as items of `c` classes over `hw` pixels, each stored
    /// channels-last, `(H, W, C)` (`probs_layout = "nhwc"`): from now on
    /// [`NpyArray::read_probs_into`] (and `read_probs`) hand each item out
    /// as `(C, H, W)`, and must be asked for whole items; [`NpyArray::planes`]
    /// gives `None`. [`NpyArray::read_bytes`] still reads the bytes as
    /// stored.
    pub fn set_channels_last(&mut self, c: usize, hw: usize) {
        self.channels_last = Some((c, hw));
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the array holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte offset of element `start` and the byte length of `count`
    /// elements from there; an error unless they lie inside the array (so
    /// inside the file, checked on open).
    fn span(&self, start: usize, count: usize) -> Result<(u64, usize)> {
        let end = start.checked_add(count);
        if end.is_none_or(|end| end > self.len) {
            return Err(Error::input(
                &self.path,
                format!(
                    "elements {start}..{start}+{count} asked for, but the array holds {} (shape {:?})",
                    self.len, self.shape
                ),
            )
            .field("shape"));
        }
        // Both fit: len × size is at most the file's size (checked on open).
        let size = self.dtype.size();
        Ok((self.data_offset + (start * size) as u64, count * size))
    }

    /// The raw little-endian bytes of `count` elements from element `start`.
    pub fn read_bytes(&mut self, start: usize, count: usize) -> Result<Vec<u8>> {
        let (at, bytes) = self.span(start, count)?;
        let mut buf = vec![0u8; bytes];
        self.store
            .read_exact_at(&mut buf, at)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    /// Read `count` float elements from element `start` into `buf`, reusing
    /// its allocation: one positioned, sequential `read` straight into the
    /// typed buffer for float16 and float32 (no intermediate copy, no fresh
    /// pages once the buffer has grown), a conversion for float64 (rounded to
    /// float32). float16 stays float16 (raw bits), so a GPU reads it packed.
    ///
    /// Channels-last items ([`NpyArray::set_channels_last`]) are read in
    /// pieces of whole pixels (about 1 MiB) and written out transposed,
    /// `(C, H, W)`; `start` and `count` must then be whole items.
    pub fn read_probs_into(&mut self, start: usize, count: usize, buf: &mut ProbBuf) -> Result<()> {
        let (mut at, _) = self.span(start, count)?;
        if let Some((c, hw)) = self.channels_last {
            return self.read_channels_last(at, start, count, (c, hw), buf);
        }
        match self.dtype {
            Dtype::F16 => {
                let v = f16_vec(buf);
                v.resize(count, 0);
                self.store
                    .read_exact_at(bytemuck::cast_slice_mut(v.as_mut_slice()), at)
                    .map_err(|e| Error::io(&self.path, e))?;
                from_le_in_place_u16(v);
            }
            Dtype::F32 => {
                let v = f32_vec(buf);
                v.resize(count, 0.0);
                self.store
                    .read_exact_at(bytemuck::cast_slice_mut(v.as_mut_slice()), at)
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
                    self.store
                        .read_exact_at(bytes, at)
                        .map_err(|e| Error::io(&self.path, e))?;
                    at += bytes.len() as u64;
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

    /// [`NpyArray::read_probs_into`] of whole channels-last items from byte
    /// `at` (element `start`, `count` elements): each item's `(H, W, C)`
    /// values, read a piece of whole pixels at a time, land at `k · hw + p`.
    fn read_channels_last(
        &self,
        at: u64,
        start: usize,
        count: usize,
        (c, hw): (usize, usize),
        buf: &mut ProbBuf,
    ) -> Result<()> {
        let block = c.saturating_mul(hw);
        if count > 0 && (block == 0 || start % block != 0 || count % block != 0) {
            return Err(Error::Internal(format!(
                "{}: elements {start}..{start}+{count} are not whole channels-last items of {c} x {hw}",
                self.path.display()
            )));
        }
        let (store, path, esize) = (&*self.store, &self.path, self.dtype.size());
        match self.dtype {
            Dtype::F16 => {
                let v = f16_vec(buf);
                v.clear();
                v.resize(count, 0);
                transpose_in(store, path, at, v, (c, hw, esize), |b| {
                    u16::from_le_bytes([b[0], b[1]])
                })
            }
            Dtype::F32 => {
                let v = f32_vec(buf);
                v.clear();
                v.resize(count, 0.0);
                transpose_in(store, path, at, v, (c, hw, esize), |b| {
                    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
                })
            }
            Dtype::F64 => {
                let v = f32_vec(buf);
                v.clear();
                v.resize(count, 0.0);
                transpose_in(store, path, at, v, (c, hw, esize), |b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    f64::from_le_bytes(a) as f32
                })
            }
            Dtype::Int(_) | Dtype::Uint(_) => Err(Error::input(
                &self.path,
                "expected float16, float32 or float64 probabilities, found an integer dtype",
            )
            .field("dtype")),
        }
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
        self.read_ints_range(0, self.len())
    }

    /// Read `count` elements from element `start` as integers. Floats are
    /// rejected.
    pub fn read_ints_range(&mut self, start: usize, count: usize) -> Result<Vec<i64>> {
        let bytes = self.read_bytes(start, count)?;
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
    store: Arc<Store>,
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
        let at = (start as u64)
            .checked_mul(size as u64)
            .and_then(|b| self.offset.checked_add(b))
            .ok_or_else(|| {
                Error::Internal(format!(
                    "{}: element {start} is out of range",
                    self.path.display()
                ))
            })?;
        let r = self.store.read_exact_at(out, at);
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

/// Fill `out` (whole items of `c · hw` values) from the channels-last
/// elements of `esize` bytes at byte `at` of `store`: item `b`'s value of
/// pixel `p`, class `k`, stored at element `(b · hw + p) · c + k`, lands at
/// `b · c · hw + k · hw + p`. Read in pieces of whole pixels (about 1 MiB)
/// through one scratch buffer.
fn transpose_in<T: Copy>(
    store: &Store,
    path: &Path,
    mut at: u64,
    out: &mut [T],
    (c, hw, esize): (usize, usize, usize),
    decode: impl Fn(&[u8]) -> T,
) -> Result<()> {
    let pixel = c * esize;
    if out.is_empty() || pixel == 0 {
        return Ok(());
    }
    let per_piece = ((1 << 20) / pixel).clamp(1, hw.max(1));
    let mut scratch = vec![0u8; per_piece * pixel];
    for item in out.chunks_exact_mut(c * hw) {
        let mut p0 = 0;
        while p0 < hw {
            let n = per_piece.min(hw - p0);
            let bytes = &mut scratch[..n * pixel];
            store
                .read_exact_at(bytes, at)
                .map_err(|e| Error::io(path, e))?;
            at += bytes.len() as u64;
            for (j, px) in bytes.chunks_exact(pixel).enumerate() {
                for (k, e) in px.chunks_exact(esize).enumerate() {
                    item[k * hw + p0 + j] = decode(e);
                }
            }
            p0 += n;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn read_exact_at(file: &File, out: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, out, at)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, out: &mut [u8], at: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
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
    fn header_numbers_are_checked_before_anything_is_sized_by_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.npy");
        // Version 2.0 with a header length of 0xFFFFFFF0 in a 16-byte file.
        let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
        bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        bytes.extend_from_slice(b"{'descr'");
        std::fs::write(&p, &bytes).unwrap();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("4294967280 bytes") && e.contains("limit of 16384"),
            "{e}"
        );
        // Within the limit but beyond the file.
        bytes[8..12].copy_from_slice(&4000u32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("file has 20 bytes"), "{e}");
        // An unknown version.
        std::fs::write(&p, b"\x93NUMPY\x09\x00\x10\x00").unwrap();
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("version 9.0"), "{e}");
        // A shape whose product wraps 64 bits: 2^32 · 2^32 · 2 = 2^65 ≡ 0
        // would pass a wrapped size check.
        write_npy(&p, "<f4", "(4294967296, 4294967296, 2)", &[0u8; 8]);
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("shape") && e.contains("64 bits"), "{e}");
        // A zero dimension does not hide an overflowing product of the others.
        write_npy(&p, "<f4", "(0, 4294967296, 4294967296)", &[]);
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("64 bits"), "{e}");
        // Deep nesting is refused by the one-pass parser (no recursion).
        let deep = format!("{}{}", "(".repeat(5000), ")".repeat(5000));
        write_npy(&p, "<f4", &deep, &[]);
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("not a valid .npy") && e.contains("shape"), "{e}");
        // Keys numpy does not write are refused, as numpy does.
        write_npy(&p, "<f4", "(1,), 'extra': 1", &[0u8; 4]);
        let e = NpyArray::open(&p).unwrap_err().to_string();
        assert!(e.contains("unexpected or repeated key \"extra\""), "{e}");
    }

    #[test]
    fn headers_as_numpy_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        // Version 3.0 (u32 length), double quotes, no trailing comma, a
        // Python 2 long, a 0-d shape.
        let header = "{\"descr\": \"<i2\", \"fortran_order\": False, \"shape\": (2L, 1)}\n";
        let mut bytes = b"\x93NUMPY\x03\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[7, 0, 0xfe, 0xff]);
        std::fs::write(&p, &bytes).unwrap();
        let mut a = NpyArray::open(&p).unwrap();
        assert_eq!((a.shape.clone(), a.len()), (vec![2, 1], 2));
        assert_eq!(a.read_ints().unwrap(), vec![7, -2]);
        write_npy(&p, "<f8", "()", &0.5f64.to_le_bytes());
        let a = NpyArray::open(&p).unwrap();
        assert_eq!((a.shape.len(), a.len()), (0, 1));
        assert_eq!(Dtype::from_numpy("|u1"), Ok(Dtype::Uint(1)));
        assert_eq!(Dtype::from_numpy(">u1"), Ok(Dtype::Uint(1)));
        assert!(Dtype::from_numpy(">f4").is_err() && Dtype::from_numpy("<U5").is_err());
    }

    #[test]
    fn sizes_are_checked_products() {
        assert_eq!(checked_size(&[3, 4], 4), Some((12, 48)));
        assert_eq!(checked_size(&[], 8), Some((1, 8)));
        assert_eq!(checked_size(&[0, 7], 4), Some((0, 0)));
        assert_eq!(checked_size(&[1 << 32, 1 << 32], 1), None);
        assert_eq!(checked_size(&[1 << 62], 4), None);
    }

    #[test]
    fn reads_outside_the_array_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy(&p, "<f4", "(2,)", &[0u8; 8]);
        let mut a = NpyArray::open(&p).unwrap();
        assert!(a.read_bytes(1, 1).is_ok());
        assert!(a.read_bytes(1, 2).is_err());
        assert!(a.read_bytes(usize::MAX, 2).is_err());
        assert!(a.read_probs(3, 0).is_err());
    }

    /// An `(n, h, w, c)` array's values, `v(b, p, k)` at pixel `p`, class `k`
    /// of item `b`, in stored (channels-last) order.
    fn nhwc(n: usize, hw: usize, c: usize, v: impl Fn(usize, usize, usize) -> f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(n * hw * c);
        for b in 0..n {
            for p in 0..hw {
                for k in 0..c {
                    out.push(v(b, p, k));
                }
            }
        }
        out
    }

    #[test]
    fn channels_last_items_read_transposed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nhwc.npy");
        // 2 items of 2 x 3 pixels, 2 classes: value 100 b + 10 k + p.
        let v = nhwc(2, 6, 2, |b, p, k| (100 * b + 10 * k + p) as f64);
        let want: Vec<f32> = (0..2)
            .flat_map(|b| {
                (0..2).flat_map(move |k| (0..6).map(move |p| (100 * b + 10 * k + p) as f32))
            })
            .collect();
        type Enc = fn(f64) -> Vec<u8>;
        let encodings: [(&str, Enc); 3] = [
            ("<f4", |x| (x as f32).to_le_bytes().to_vec()),
            ("<f8", |x| x.to_le_bytes().to_vec()),
            ("<f2", |x| {
                half::f16::from_f64(x).to_bits().to_le_bytes().to_vec()
            }),
        ];
        for (descr, enc) in encodings {
            let bytes: Vec<u8> = v.iter().flat_map(|&x| enc(x)).collect();
            write_npy(&p, descr, "(2, 2, 3, 2)", &bytes);
            let mut a = NpyArray::open(&p).unwrap();
            assert!(a.has_planes() == (descr != "<f8"));
            a.set_channels_last(2, 6);
            assert!(!a.has_planes());
            let clock = Arc::new(AtomicU64::new(0));
            assert!(a.planes(0, &clock).unwrap().is_none());
            let all = a.read_probs(0, 24).unwrap();
            assert_eq!(
                (0..24).map(|i| all.get(i)).collect::<Vec<_>>(),
                want,
                "{descr}"
            );
            assert_eq!(matches!(all, ProbBuf::F16(_)), descr == "<f2");
            let second = a.read_probs(12, 12).unwrap();
            assert_eq!(
                (0..12).map(|i| second.get(i)).collect::<Vec<_>>(),
                want[12..],
                "{descr}"
            );
            // The bytes as stored, untouched.
            assert_eq!(a.read_bytes(0, 24).unwrap(), bytes);
            // Only whole items.
            let e = a.read_probs(6, 12).unwrap_err().to_string();
            assert!(e.contains("not whole channels-last items"), "{e}");
            assert!(a.read_probs(0, 5).is_err());
        }
    }

    #[test]
    fn channels_last_items_larger_than_a_piece() {
        // 3 classes over 200 000 pixels: three pieces of whole pixels.
        let (hw, c) = (200_000usize, 3usize);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.npy");
        let v = nhwc(1, hw, c, |_, p, k| ((p * 7 + k * 13) % 1000) as f64);
        let bytes: Vec<u8> = v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect();
        write_npy(&p, "<f4", &format!("(1, 400, 500, {c})"), &bytes);
        let mut a = NpyArray::open(&p).unwrap();
        a.set_channels_last(c, hw);
        let got = a.read_probs(0, c * hw).unwrap();
        for k in 0..c {
            for px in 0..hw {
                assert_eq!(got.get(k * hw + px), ((px * 7 + k * 13) % 1000) as f32);
            }
        }
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
