//! Mutations and their proptest strategies: byte-level (bit flips,
//! insertions, deletions, duplications, truncation, interesting values
//! spliced in), text-aware (numbers, lines, CSV fields and columns, JSON
//! scalars and arrays, TOML values and keys), and model-level for `.npy`
//! (header fields, descr, shape) and PNG (IHDR, chunks and raw scanlines
//! rewritten with valid CRCs and Adler-32, decompression bombs). Positions
//! are stored unreduced and taken modulo the input's length when applied,
//! so proptest's shrinking (towards 0) stays meaningful.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::select;

use crate::png::{self, Chunk, PngImage};

/// Values that break parsers and sizes, as text.
pub const TEXT: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "255",
    "256",
    "65535",
    "65536",
    "1000000",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "4000000000000",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1e8",
    "1e18",
    "1e308",
    "-1e308",
    "1e-320",
    "0.5",
    "-0",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "",
    " ",
    "\"",
    "'",
    ",",
    ";",
    "\n",
    "\r\n",
    "\t",
    "\0",
    "{",
    "}",
    "[",
    "]",
    "null",
    "true",
    "[]",
    "{}",
    "../",
    "../../../../../../../../x",
    "..",
    "/",
    "/dev/zero",
    "/dev/stdin",
    "/proc/self/mem",
    "@ROOT@/outside/canary.txt",
    "@ROOT@/outside/new-file",
    "@ROOT@/outside/dir/x",
    "=cmd|' /C calc'!A0",
    "=HYPERLINK(\"http://x.invalid\",\"x\")",
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\tx",
    "\rx",
    "a/b",
    "a\\b",
    "x.annotators",
    "s0",
    "s1",
    "c0",
    "c1",
    "cat",
    "road",
    "error",
    "ok",
    "\u{202e}gnp.exe",
    "\u{feff}id",
    "é",
    "%s%n%x",
];

/// Machine numbers, spliced as little-endian bytes or written as text.
#[derive(Clone, Copy, Debug)]
pub enum Bin {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    /// float16 bits.
    F16(u16),
    F32(f32),
    F64(f64),
}

pub const BINS: &[Bin] = &[
    Bin::U8(0),
    Bin::U8(0x7f),
    Bin::U8(0x80),
    Bin::U8(0xff),
    Bin::U16(0),
    Bin::U16(0x8000),
    Bin::U16(0xffff),
    Bin::U32(0),
    Bin::U32(0x7fff_ffff),
    Bin::U32(0x8000_0000),
    Bin::U32(0xffff_fff0),
    Bin::U32(0xffff_ffff),
    Bin::U64(1 << 63),
    Bin::U64(u64::MAX),
    Bin::U64(1_000_000_000_000_000_000),
    Bin::U64(1_000_000),
    Bin::F16(0x7c00),
    Bin::F16(0x7e00),
    Bin::F16(0xfc00),
    Bin::F16(0x8000),
    Bin::F16(0x7bff),
    Bin::F32(f32::NAN),
    Bin::F32(f32::INFINITY),
    Bin::F32(f32::NEG_INFINITY),
    Bin::F32(-0.0),
    Bin::F32(-1.0),
    Bin::F32(1e38),
    Bin::F32(1e-45),
    Bin::F64(f64::NAN),
    Bin::F64(f64::INFINITY),
    Bin::F64(-1.0),
    Bin::F64(1e308),
];

impl Bin {
    pub fn bytes(self) -> Vec<u8> {
        match self {
            Bin::U8(v) => vec![v],
            Bin::U16(v) | Bin::F16(v) => v.to_le_bytes().to_vec(),
            Bin::U32(v) => v.to_le_bytes().to_vec(),
            Bin::U64(v) => v.to_le_bytes().to_vec(),
            Bin::F32(v) => v.to_le_bytes().to_vec(),
            Bin::F64(v) => v.to_le_bytes().to_vec(),
        }
    }
    pub fn text(self) -> String {
        match self {
            Bin::U8(v) => v.to_string(),
            Bin::U16(v) => v.to_string(),
            Bin::U32(v) => v.to_string(),
            Bin::U64(v) => v.to_string(),
            Bin::F16(v) => format!("{}", half_to_f32(v)),
            Bin::F32(v) => format!("{v:e}"),
            Bin::F64(v) => format!("{v:e}"),
        }
    }
    /// As a value of `width` bytes (the element size of an array).
    pub fn sized(self, width: usize) -> Vec<u8> {
        let mut b = match (self, width) {
            (Bin::F32(v), 8) => f64::from(v).to_le_bytes().to_vec(),
            (Bin::F64(v), 4) => (v as f32).to_le_bytes().to_vec(),
            _ => self.bytes(),
        };
        b.resize(
            width,
            if b.last().is_some_and(|&x| x >= 0x80) {
                0xff
            } else {
                0
            },
        );
        b
    }
}

fn half_to_f32(h: u16) -> f32 {
    let (s, e, m) = (
        (h >> 15) as u32,
        ((h >> 10) & 0x1f) as u32,
        (h & 0x3ff) as u32,
    );
    let bits = match e {
        0 if m == 0 => s << 31,
        0 => return if s == 1 { -1.0 } else { 1.0 } * m as f32 * 2f32.powi(-24),
        31 => (s << 31) | 0x7f80_0000 | (m << 13),
        _ => (s << 31) | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// An interesting value, rendered for the context it lands in.
#[derive(Clone, Debug)]
pub enum Val {
    T(&'static str),
    /// `n` copies of a character: a very long string, or a number with a
    /// million digits.
    Long(char, usize),
    B(Bin),
}

impl Val {
    pub fn text(&self) -> String {
        match self {
            Val::T(s) => s.to_string(),
            Val::Long(c, n) => std::iter::repeat_n(*c, *n).collect(),
            Val::B(b) => b.text(),
        }
    }
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Val::B(b) => b.bytes(),
            v => v.text().into_bytes(),
        }
    }
    /// As a JSON value: numbers and literals bare, anything else a string.
    pub fn json(&self) -> String {
        let t = self.text();
        let bare = matches!(self, Val::B(_) | Val::Long('9', _))
            || serde_json::from_str::<serde_json::Value>(&t).is_ok_and(|v| !v.is_string());
        if bare {
            t
        } else {
            serde_json::to_string(&t).unwrap()
        }
    }
    /// As a TOML value: numbers bare (TOML's own `nan`/`inf` too), anything
    /// else a basic string.
    pub fn toml(&self) -> String {
        let t = self.text();
        let number = matches!(self, Val::B(_) | Val::Long('9', _))
            || toml::from_str::<toml::Table>(&format!("x = {t}"))
                .is_ok_and(|v| v["x"].is_integer() || v["x"].is_float());
        if number {
            t
        } else {
            serde_json::to_string(&t).unwrap()
        }
    }
}

pub fn val() -> BoxedStrategy<Val> {
    prop_oneof![
        6 => select(TEXT).prop_map(Val::T),
        1 => (select(&['A', '9', '/', '.'][..]), select(&[300usize, 4096, 70_000, 1_000_000][..]))
            .prop_map(|(c, n)| Val::Long(c, n)),
        3 => select(BINS).prop_map(Val::B),
    ]
    .boxed()
}

/// TOML values beyond single scalars: class lists and raw snippets.
#[derive(Clone, Debug)]
pub enum TomlVal {
    V(Val),
    Raw(&'static str),
    /// `["c0", "c1", ...]` with this many names.
    Classes(usize),
}

pub const TOML_RAW: &[&str] = &[
    "[\"1\", \"0\", \"2\"]",
    "[\"0\", \"1\"]",
    "[\"a\", \"a\", \"b\"]",
    "[\"\", \"b\", \"c\"]",
    "[\"=cmd|' /C calc'!A0\", \"+x\", \"@y\"]",
    "[]",
    "{}",
    "[[1]]",
    "[1, 2, 3]",
    "true",
    "1979-05-27",
    "'''x'''",
    "0x10",
    "1_000",
    "-0.0",
    "\"segmentation\"",
    "\"classification\"",
    "\"regression\"",
];

pub const TOML_KEYS: &[&str] = &[
    "task",
    "num_classes",
    "classes",
    "ignore_index",
    "items",
    "probs",
    "labels",
    "embeddings",
    "annotations",
    "roots",
    "zzz",
    "[inputs]",
    "[other]",
];

impl TomlVal {
    pub fn render(&self) -> String {
        match self {
            TomlVal::V(v) => v.toml(),
            TomlVal::Raw(s) => s.to_string(),
            TomlVal::Classes(n) => {
                let names: Vec<String> = (0..*n).map(|i| format!("\"c{i}\"")).collect();
                format!("[{}]", names.join(", "))
            }
        }
    }
}

fn toml_val() -> BoxedStrategy<TomlVal> {
    prop_oneof![
        4 => val().prop_map(TomlVal::V),
        3 => select(TOML_RAW).prop_map(TomlVal::Raw),
        1 => select(&[4usize, 256, 70_000][..]).prop_map(TomlVal::Classes),
    ]
    .boxed()
}

#[derive(Clone, Copy, Debug)]
pub enum ArrayOp {
    /// Drop the last element.
    Shorten,
    /// Repeat the last element once.
    Extend,
    Empty,
    /// Append 100 000 zeros.
    Grow,
    /// Wrap the array in another.
    Nest,
}

/// Mutations of a PNG, applied to its model (before encoding) or to its
/// chunks (CRCs recomputed).
#[derive(Clone, Debug)]
pub enum PngMut {
    /// Re-encode the same class values at another bit depth / colour type.
    Reformat {
        depth: u8,
        color: u8,
    },
    RawByte {
        at: usize,
        val: u8,
    },
    FilterByte {
        row: usize,
        val: u8,
    },
    RawTruncate {
        at: usize,
    },
    RawExtend {
        n: usize,
    },
    /// A valid PNG of zeros with these dimensions, data compressed ~160:1.
    Bomb {
        w: u32,
        h: u32,
        depth: u8,
        color: u8,
    },
    /// IHDR field 0 width, 1 height, 2 bit depth, 3 colour type,
    /// 4 compression, 5 filter, 6 interlace.
    Ihdr {
        field: u8,
        val: u32,
    },
    ChunkByte {
        chunk: usize,
        at: usize,
        xor: u8,
    },
    ChunkLen {
        chunk: usize,
        len: u32,
    },
    DropChunk(usize),
    DupChunk(usize),
    SwapChunks(usize, usize),
    InsertChunk {
        at: usize,
        ty: [u8; 4],
        len: usize,
        fill: u8,
    },
}

impl PngMut {
    fn on_model(&self) -> bool {
        matches!(
            self,
            PngMut::Reformat { .. }
                | PngMut::RawByte { .. }
                | PngMut::FilterByte { .. }
                | PngMut::RawTruncate { .. }
                | PngMut::RawExtend { .. }
                | PngMut::Bomb { .. }
        )
    }
}

const DIMS: &[u32] = &[
    0,
    1,
    5,
    6,
    7,
    8,
    9,
    255,
    256,
    20_000,
    65_535,
    65_536,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];
const DEPTHS: &[u32] = &[0, 1, 2, 3, 4, 8, 16, 32, 255];
const COLORS: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7, 255];
const FORMATS: &[(u8, u8)] = &[
    (1, png::GRAY),
    (2, png::GRAY),
    (4, png::GRAY),
    (8, png::GRAY),
    (16, png::GRAY),
    (1, png::PALETTE),
    (2, png::PALETTE),
    (4, png::PALETTE),
    (8, png::PALETTE),
    (8, png::GRAY_ALPHA),
    (16, png::GRAY_ALPHA),
    (8, png::RGB),
    (8, png::RGBA),
    (16, png::RGB),
];
const CHUNK_TYPES: &[[u8; 4]] = &[
    *b"IHDR", *b"PLTE", *b"IDAT", *b"IEND", *b"tRNS", *b"sBIT", *b"gAMA", *b"iCCP", *b"zTXt",
    *b"acTL", *b"fcTL", *b"zzZZ", *b"ZZZZ",
];

fn png_mut() -> BoxedStrategy<PngMut> {
    let field_val = (0u8..7).prop_flat_map(|f| {
        let vals = match f {
            0 | 1 => DIMS,
            2 => DEPTHS,
            3 => COLORS,
            _ => &[0, 1, 2, 255][..],
        };
        select(vals).prop_map(move |v| PngMut::Ihdr { field: f, val: v })
    });
    prop_oneof![
        4 => select(FORMATS).prop_map(|(depth, color)| PngMut::Reformat { depth, color }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, val)| PngMut::RawByte { at, val }),
        1 => (any::<usize>(), select(&[1u8, 2, 3, 4, 5, 0x80, 0xff][..]))
            .prop_map(|(row, val)| PngMut::FilterByte { row, val }),
        1 => any::<usize>().prop_map(|at| PngMut::RawTruncate { at }),
        1 => select(&[1usize, 7, 1000, 100_000][..]).prop_map(|n| PngMut::RawExtend { n }),
        1 => (
            select(&[8u32, 4096, 20_000, 65_535, 0x7fff_ffff][..]),
            select(&[8u32, 4096, 20_000, 65_535, 0x7fff_ffff][..]),
            select(&[(1u8, png::GRAY), (8, png::GRAY), (16, png::GRAY), (8, png::PALETTE), (8, png::RGBA)][..]),
        )
            .prop_map(|(w, h, (depth, color))| PngMut::Bomb { w, h, depth, color }),
        4 => field_val,
        3 => (any::<usize>(), any::<usize>(), 1u8..=255).prop_map(|(chunk, at, xor)| PngMut::ChunkByte { chunk, at, xor }),
        1 => (any::<usize>(), select(&[0u32, 1, 12, 0x7fff_ffff, 0xffff_ffff][..]))
            .prop_map(|(chunk, len)| PngMut::ChunkLen { chunk, len }),
        1 => any::<usize>().prop_map(PngMut::DropChunk),
        1 => any::<usize>().prop_map(PngMut::DupChunk),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| PngMut::SwapChunks(a, b)),
        2 => (any::<usize>(), select(CHUNK_TYPES), select(&[0usize, 1, 3, 13, 768, 100_000][..]), any::<u8>())
            .prop_map(|(at, ty, len, fill)| PngMut::InsertChunk { at, ty, len, fill }),
    ]
    .boxed()
}

/// The whole file replaced by something that is not a small regular file.
#[derive(Clone, Copy, Debug)]
pub enum FileMut {
    Empty,
    /// A symlink to /dev/zero.
    DevZero,
    /// A symlink to a copy of the file outside the dataset (and `--out`).
    OutsideCopy,
    /// A symlink to a path outside that does not exist.
    Dangling,
    Dir,
    Fifo,
    /// A sparse file of 8 GiB (its first bytes the original).
    Sparse,
}

/// What is planted at a name inside `--out` before the run.
#[derive(Clone, Copy, Debug)]
pub enum Plant {
    /// A symlink to an existing file outside (`ROOT/outside/canary.txt`).
    LinkFile,
    /// A symlink to a directory outside (`ROOT/outside/dir`).
    LinkDir,
    /// A symlink to a path outside that does not exist yet.
    Dangling,
    Dir,
    Junk,
    Fifo,
}

pub const PLANT_NAMES: &[&str] = &[
    "queue.jsonl",
    "queue.csv",
    "report.json",
    "report.html",
    "clusters.jsonl",
    "to_label.csv",
    "to_label.jsonl",
    "partial.jsonl",
    "overlays",
    "overlays/s0.png",
    ".triage-checkpoint.jsonl",
    ".tmpQx7Yz0",
    "reviews.jsonl",
];

/// Where `--out` points (relative to the case's base directory).
pub const OUT_AT: &[&str] = &[
    crate::fixtures::OUT,
    "ds",
    ".",
    "ds/out",
    "prev",
    "parts/p0",
    "ds/../w/x/y/out",
];

pub const FLAGS: &[&[&str]] = &[
    &["--resume"],
    &["--shard", "1/2"],
    &["--cache", "cache"],
    &["--top", "1"],
    &["--budget", "1"],
    &["--label-budget", "1"],
    &["--index", "idx", "--knn", "hnsw"],
    &["--knn", "ivf"],
    &["--knn", "exact"],
    &["--logits"],
    &["--no-dedup"],
    &["--label-strategy", "random"],
    &["--previous", "prev"],
];

/// Items file names that collide with outputs (`--out` = the dataset).
pub const ITEMS_AS: &[&str] = &[
    "queue.csv",
    "queue.jsonl",
    "report.json",
    "clusters.jsonl",
    "to_label.csv",
];

pub const OPTIONS: &[&str] = &[
    "--knn-k",
    "--budget",
    "--top",
    "--batch-size",
    "--label-budget",
    "--min-per-class",
    "--spot-check",
    "--seed",
    "--dup-threshold",
    "--dup-relative",
    "--conflict-iou",
    "--min-annotator-kappa",
    "--min-annotator-iou",
    "--review-all-from",
    "--shard",
];

/// One mutation.
#[derive(Clone, Debug)]
pub enum Mut {
    BitFlip {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
        to: usize,
    },
    Truncate {
        at: usize,
    },
    Splice {
        at: usize,
        val: Val,
        overwrite: bool,
    },
    /// Replace the nth number in the text.
    Number {
        nth: usize,
        val: Val,
    },
    DropLine(usize),
    DupLine(usize),
    SwapLines(usize, usize),
    Field {
        row: usize,
        col: usize,
        val: Val,
        quoted: bool,
    },
    DropColumn(usize),
    DupColumn(usize),
    /// Append `n` rows: the data rows again and again, column `col` made
    /// new each round (`x0_0`, `x0_1`, `x1_0`, ...: the fixtures' annotation
    /// rows alternate between two annotators per item): thousands of
    /// annotators, ids or decisions from a small file.
    Rows {
        col: usize,
        n: usize,
    },
    /// Replace the nth JSON scalar (number, string value or literal).
    Scalar {
        nth: usize,
        val: Val,
    },
    Array {
        nth: usize,
        op: ArrayOp,
    },
    /// Replace the value of the nth `key = value` line.
    TomlSet {
        nth: usize,
        val: TomlVal,
    },
    TomlInsert {
        line: usize,
        key: &'static str,
        val: TomlVal,
    },
    /// Set a known key: its line rewritten, or one added where it belongs
    /// (top level, or under `[inputs]`).
    TomlKey {
        key: &'static str,
        val: TomlVal,
    },
    NpyDescr(&'static str),
    NpyShape(Vec<u64>),
    NpyFortran,
    /// Set the format version byte and (when given) the header-length field.
    NpyVersion {
        version: u8,
        len: Option<u32>,
    },
    /// Overwrite the nth data element with a value of the element's width.
    NpyElem {
        nth: usize,
        val: Bin,
    },
    Png(PngMut),
    File(FileMut),
    Plant {
        name: usize,
        what: Plant,
    },
    OutAt(usize),
    Flag(usize),
    ItemsAs(usize),
    Opt {
        opt: usize,
        val: Val,
    },
}

/// What a kind's files look like, which picks the mutations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Format {
    Npy,
    Png,
    Csv,
    Toml,
    Jsonl,
    OutDir,
    Options,
}

fn pos() -> BoxedStrategy<usize> {
    any::<usize>().boxed()
}

fn byte_muts() -> BoxedStrategy<Mut> {
    let len = select(&[1usize, 2, 4, 8, 64, 4096][..]);
    prop_oneof![
        3 => (pos(), 0u8..8).prop_map(|(at, bit)| Mut::BitFlip { at, bit }),
        1 => (pos(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Mut::Insert { at, bytes }),
        1 => (pos(), len.clone()).prop_map(|(at, len)| Mut::Delete { at, len }),
        1 => (pos(), len, pos()).prop_map(|(at, len, to)| Mut::Duplicate { at, len, to }),
        1 => pos().prop_map(|at| Mut::Truncate { at }),
        3 => (pos(), val(), any::<bool>()).prop_map(|(at, val, overwrite)| Mut::Splice { at, val, overwrite }),
    ]
    .boxed()
}

fn text_muts() -> BoxedStrategy<Mut> {
    prop_oneof![
        3 => (pos(), val()).prop_map(|(nth, val)| Mut::Number { nth, val }),
        1 => pos().prop_map(Mut::DropLine),
        1 => pos().prop_map(Mut::DupLine),
        1 => (pos(), pos()).prop_map(|(a, b)| Mut::SwapLines(a, b)),
    ]
    .boxed()
}

/// Paths a hostile dataset may name (`@ROOT@` is the case's root).
pub const PATHS: &[&str] = &[
    "/dev/zero",
    "/dev/stdin",
    "/proc/self/mem",
    "/",
    ".",
    "",
    "masks",
    "../ds/masks/s1.png",
    "masks/../../ds/masks/s2.png",
    "../../../../../../../../../../etc/hostname",
    "@ROOT@/outside/canary.txt",
    "@ROOT@/outside/image.png",
    "@ROOT@/outside/dir",
    "probs.npy",
    "items.csv",
    "reviews.jsonl",
];

fn csv_muts() -> BoxedStrategy<Mut> {
    let path = (pos(), pos(), select(PATHS)).prop_map(|(row, col, p)| Mut::Field {
        row,
        col,
        val: Val::T(p),
        quoted: false,
    });
    prop_oneof![
        5 => (pos(), pos(), val(), any::<bool>()).prop_map(|(row, col, val, quoted)| Mut::Field { row, col, val, quoted }),
        2 => path,
        1 => pos().prop_map(Mut::DropColumn),
        1 => pos().prop_map(Mut::DupColumn),
        2 => (
            0usize..4,
            select(&[100usize, 4000, 30_000, 100_000][..])).prop_map(|(col, n)| Mut::Rows { col, n }),
    ]
    .boxed()
}

fn json_muts() -> BoxedStrategy<Mut> {
    let op = select(
        &[
            ArrayOp::Shorten,
            ArrayOp::Extend,
            ArrayOp::Empty,
            ArrayOp::Grow,
            ArrayOp::Nest,
        ][..],
    );
    prop_oneof![
        4 => (pos(), val()).prop_map(|(nth, val)| Mut::Scalar { nth, val }),
        2 => (pos(), op).prop_map(|(nth, op)| Mut::Array { nth, op }),
    ]
    .boxed()
}

const TOML_NUMS: &[&str] = &[
    "4000000000000",
    "100000000",
    "1e8",
    "0",
    "-1",
    "1",
    "2",
    "3",
    "255",
    "256",
    "65535",
    "65536",
    "4294967296",
    "18446744073709551616",
    "1e18",
    "3.5",
    "nan",
    "inf",
];

/// A known manifest key set to a value of its kind (or a wrong one).
fn toml_key() -> BoxedStrategy<Mut> {
    let nums = (
        select(&["num_classes", "ignore_index"][..]),
        select(TOML_NUMS),
    )
        .prop_map(|(key, v)| Mut::TomlKey {
            key,
            val: TomlVal::Raw(v),
        });
    let classes = prop_oneof![
        3 => select(TOML_RAW).prop_map(TomlVal::Raw),
        1 => select(&[1usize, 2, 4, 256, 70_000][..]).prop_map(TomlVal::Classes),
    ]
    .prop_map(|val| Mut::TomlKey {
        key: "classes",
        val,
    });
    let paths = (
        select(&["items", "probs", "labels", "embeddings", "annotations"][..]),
        select(PATHS),
    )
        .prop_map(|(key, p)| Mut::TomlKey {
            key,
            val: TomlVal::V(Val::T(p)),
        });
    let task = select(
        &[
            "\"segmentation\"",
            "\"classification\"",
            "\"detection\"",
            "1",
        ][..],
    )
    .prop_map(|v| Mut::TomlKey {
        key: "task",
        val: TomlVal::Raw(v),
    });
    prop_oneof![3 => nums, 3 => classes, 3 => paths, 1 => task].boxed()
}

fn toml_muts() -> BoxedStrategy<Mut> {
    prop_oneof![
        3 => (pos(), toml_val()).prop_map(|(nth, val)| Mut::TomlSet { nth, val }),
        1 => (pos(), select(TOML_KEYS), toml_val()).prop_map(|(line, key, val)| Mut::TomlInsert { line, key, val }),
        4 => toml_key(),
    ]
    .boxed()
}

pub const DESCRS: &[&str] = &[
    "<f4",
    "<f8",
    "<f2",
    "<u2",
    "<i4",
    "<i8",
    "<u8",
    "|u1",
    "|i1",
    "|b1",
    ">f4",
    ">i8",
    "<c8",
    "<f16",
    "O",
    "<U10",
    "|V8",
    "<M8[D]",
    "",
    "<f0",
    "<f4294967296",
];

fn shape_dim() -> BoxedStrategy<u64> {
    select(
        &[
            0u64,
            1,
            2,
            3,
            4,
            5,
            6,
            8,
            1 << 31,
            (1 << 32) - 1,
            1 << 32,
            (1 << 32) + 1,
            1 << 62,
            1 << 63,
            u64::MAX,
            1_000_000_000_000_000_000,
        ][..],
    )
    .boxed()
}

fn npy_muts() -> BoxedStrategy<Mut> {
    prop_oneof![
        2 => select(DESCRS).prop_map(Mut::NpyDescr),
        3 => prop::collection::vec(shape_dim(), 0..5).prop_map(Mut::NpyShape),
        1 => Just(Mut::NpyFortran),
        2 => (select(&[0u8, 1, 2, 3, 4, 255][..]), prop::option::of(select(&[0u32, 1, 10, 0xffff, 0x8000_0000, 0xffff_fff0, 0xffff_ffff][..])))
            .prop_map(|(version, len)| Mut::NpyVersion { version, len }),
        3 => (pos(), select(BINS)).prop_map(|(nth, val)| Mut::NpyElem { nth, val }),
    ]
    .boxed()
}

fn file_mut() -> BoxedStrategy<Mut> {
    select(
        &[
            FileMut::Empty,
            FileMut::DevZero,
            FileMut::OutsideCopy,
            FileMut::Dangling,
            FileMut::Dir,
            FileMut::Fifo,
            FileMut::Sparse,
        ][..],
    )
    .prop_map(Mut::File)
    .boxed()
}

fn out_muts() -> BoxedStrategy<Mut> {
    let plant = select(
        &[
            Plant::LinkFile,
            Plant::LinkDir,
            Plant::Dangling,
            Plant::Dir,
            Plant::Junk,
            Plant::Fifo,
        ][..],
    );
    // The overlays directory and the checkpoint (with --resume) are where
    // a planted link is most likely followed: drawn more often.
    let name = prop_oneof![
        3 => Just(8usize),
        3 => Just(10usize),
        4 => 0..PLANT_NAMES.len(),
    ];
    let flag = prop_oneof![2 => Just(0usize), 3 => 0..FLAGS.len()];
    prop_oneof![
        5 => (name, plant).prop_map(|(name, what)| Mut::Plant { name, what }),
        2 => (0..OUT_AT.len()).prop_map(Mut::OutAt),
        2 => flag.prop_map(Mut::Flag),
        1 => (0..ITEMS_AS.len()).prop_map(Mut::ItemsAs),
    ]
    .boxed()
}

fn option_muts() -> BoxedStrategy<Mut> {
    prop_oneof![
        4 => (0..OPTIONS.len(), val()).prop_map(|(opt, val)| Mut::Opt { opt, val }),
        1 => (0..FLAGS.len()).prop_map(Mut::Flag),
    ]
    .boxed()
}

/// The mutations for files of `format`.
pub fn mutation(format: Format) -> BoxedStrategy<Mut> {
    match format {
        Format::Npy => prop_oneof![
            20 => byte_muts(), 5 => text_muts(), 30 => npy_muts(), 2 => file_mut()
        ]
        .boxed(),
        Format::Png => {
            prop_oneof![15 => byte_muts(), 40 => png_mut().prop_map(Mut::Png), 2 => file_mut()]
                .boxed()
        }
        Format::Csv => prop_oneof![
            15 => byte_muts(), 15 => text_muts(), 40 => csv_muts(), 2 => file_mut()
        ]
        .boxed(),
        Format::Toml => prop_oneof![
            15 => byte_muts(), 10 => text_muts(), 40 => toml_muts(), 2 => file_mut()
        ]
        .boxed(),
        Format::Jsonl => prop_oneof![
            15 => byte_muts(), 15 => text_muts(), 40 => json_muts(), 2 => file_mut()
        ]
        .boxed(),
        Format::OutDir => out_muts(),
        Format::Options => option_muts(),
    }
}

/// A `.npy` file as the fuzzer models it.
#[derive(Clone, Debug)]
pub struct Npy {
    pub descr: String,
    pub shape: Vec<u64>,
    pub fortran: bool,
    pub data: Vec<u8>,
}

impl Npy {
    pub fn encode(&self) -> Vec<u8> {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let shape = match dims.len() {
            1 => format!("({},)", dims[0]),
            _ => format!("({})", dims.join(", ")),
        };
        let fortran = if self.fortran { "True" } else { "False" };
        let mut header = format!(
            "{{'descr': '{}', 'fortran_order': {fortran}, 'shape': {shape}, }}",
            self.descr
        );
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - total % 64) % 64));
        header.push('\n');
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(&self.data);
        v
    }
}

/// When `muts` only re-encode the PNG `model` in another format that holds
/// its values exactly (grayscale or palette indices of enough bits), the
/// name of that format: a decoder must then read the same class ids, or
/// refuse the file.
pub fn lossless_reformat(model: &Model, muts: &[Mut]) -> Option<String> {
    let Model::Png { values, .. } = model else {
        return None;
    };
    let mut last = None;
    for m in muts {
        match m {
            Mut::Png(PngMut::Reformat { depth, color }) => last = Some((*depth, *color)),
            _ => return None,
        }
    }
    let (depth, color) = last?;
    let max = values.iter().copied().max().unwrap_or(0);
    let fits = depth >= 16 || u32::from(max) < (1u32 << depth);
    let kind = match color {
        png::GRAY => "gray",
        png::PALETTE => "palette",
        _ => return None,
    };
    fits.then(|| format!("{depth}-bit {kind}"))
}

/// What the fuzzer knows about a target file beyond its bytes.
#[derive(Clone, Debug)]
pub enum Model {
    Bytes,
    Npy(Npy),
    /// The class values (or gray levels) of an `h × w` image, and its
    /// format in the fixture.
    Png {
        w: usize,
        h: usize,
        values: Vec<u16>,
        depth: u8,
        color: u8,
    },
}

fn at(i: usize, len: usize) -> usize {
    i % (len + 1)
}

/// Byte ranges of the JSON scalars (values, not keys) and arrays in `b`.
fn scan_json(b: &[u8]) -> (Vec<std::ops::Range<usize>>, Vec<(usize, usize)>) {
    let (mut scalars, mut arrays, mut stack) = (Vec::new(), Vec::new(), Vec::new());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(b.len());
                let mut k = end;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                if k >= b.len() || b[k] != b':' {
                    scalars.push(i..end);
                }
                i = end;
                continue;
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b"+-.".contains(&b[j])) {
                    j += 1;
                }
                scalars.push(i..j);
                i = j;
                continue;
            }
            b'[' => stack.push(i),
            b']' => {
                if let Some(o) = stack.pop() {
                    arrays.push((o, i));
                }
            }
            b'\n' => stack.clear(),
            _ => {}
        }
        i += 1;
    }
    arrays.sort();
    (scalars, arrays)
}

/// Positions of the top-level commas strictly inside the array `(o, c)`.
fn top_commas(b: &[u8], o: usize, c: usize) -> Vec<usize> {
    let (mut depth, mut v, mut i) = (0i32, Vec::new(), o + 1);
    while i < c {
        match b[i] {
            b'"' => {
                i += 1;
                while i < c && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth -= 1,
            b',' if depth == 0 => v.push(i),
            _ => {}
        }
        i += 1;
    }
    v
}

/// Byte ranges of the numbers in a text (digits with an optional sign,
/// fraction and exponent).
fn numbers(b: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let mut s = i;
            if s > 0 && b[s - 1] == b'-' {
                s -= 1;
            }
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
                let mut k = j + 1;
                if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
                    k += 1;
                }
                if k < b.len() && b[k].is_ascii_digit() {
                    j = k;
                    while j < b.len() && b[j].is_ascii_digit() {
                        j += 1;
                    }
                }
            }
            v.push(s..j);
            i = j;
        } else {
            i += 1;
        }
    }
    v
}

/// The most bytes [`Mut::Rows`] adds to a file.
const ROWS_BYTES: usize = 4 << 20;

fn lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split_inclusive(|&c| c == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn csv_cell(val: &Val, quoted: bool) -> Vec<u8> {
    let t = val.text();
    if quoted {
        format!("\"{}\"", t.replace('"', "\"\"")).into_bytes()
    } else {
        t.into_bytes()
    }
}

/// Split a line (without its newline) at commas; returns the cells and the
/// line ending.
fn cells(line: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let body_len = line
        .iter()
        .rposition(|&c| c != b'\n' && c != b'\r')
        .map_or(0, |p| p + 1);
    let (body, end) = line.split_at(body_len);
    (
        body.split(|&c| c == b',').map(<[u8]>::to_vec).collect(),
        end.to_vec(),
    )
}

fn join_cells(cells: &[Vec<u8>], end: &[u8]) -> Vec<u8> {
    let mut v = cells.join(&b","[..]);
    v.extend_from_slice(end);
    v
}

/// Width in bytes of an npy element, from its descr (`<f4` → 4).
fn elem_width(descr: &str) -> usize {
    descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|s| s.parse().ok())
        .filter(|&w| (1..=16).contains(&w))
        .unwrap_or(4)
}

fn png_model_op(img: &mut PngImage, m: &PngMut, values: &[u16], bomb: &mut Option<Vec<u8>>) {
    match *m {
        PngMut::Reformat { depth, color } => {
            let (w, h) = (img.width as usize, img.height as usize);
            *img = PngImage::from_values(w, h, depth, color, values);
        }
        PngMut::RawByte { at: a, val } if !img.raw.is_empty() => {
            let i = a % img.raw.len();
            img.raw[i] = val;
        }
        PngMut::FilterByte { row, val } => {
            let stride = PngImage::row_bytes(img.width, img.depth, img.color) + 1;
            let i = (row % img.height.max(1) as usize) * stride;
            if i < img.raw.len() {
                img.raw[i] = val;
            }
        }
        PngMut::RawTruncate { at: a } => {
            let n = a % (img.raw.len() + 1);
            img.raw.truncate(n);
        }
        PngMut::RawExtend { n } => img.raw.extend(std::iter::repeat_n(0x01, n)),
        PngMut::Bomb { w, h, depth, color } => {
            *bomb = Some(png::zero_bomb(w, h, depth, color, 256 << 20));
        }
        _ => {}
    }
}

fn png_chunk_op(bytes: &mut Vec<u8>, m: &PngMut) {
    let Some((mut chunks, tail)) = png::parse_chunks(bytes) else {
        return;
    };
    if chunks.is_empty() {
        return;
    }
    let n = chunks.len();
    match *m {
        PngMut::Ihdr { field, val } => {
            if let Some(c) = chunks.iter_mut().find(|c| &c.ty == b"IHDR") {
                c.data.resize(13.max(c.data.len()), 0);
                match field {
                    0 => c.data[0..4].copy_from_slice(&val.to_be_bytes()),
                    1 => c.data[4..8].copy_from_slice(&val.to_be_bytes()),
                    f => c.data[6 + f as usize] = val as u8,
                }
            }
        }
        PngMut::ChunkByte { chunk, at: a, xor } => {
            let c = &mut chunks[chunk % n];
            if !c.data.is_empty() {
                let i = a % c.data.len();
                c.data[i] ^= xor;
            }
        }
        PngMut::ChunkLen { chunk, len } => chunks[chunk % n].len = Some(len),
        PngMut::DropChunk(i) => {
            chunks.remove(i % n);
        }
        PngMut::DupChunk(i) => {
            let c = chunks[i % n].clone();
            chunks.insert(i % n, c);
        }
        PngMut::SwapChunks(a, b) => chunks.swap(a % n, b % n),
        PngMut::InsertChunk {
            at: a,
            ty,
            len,
            fill,
        } => chunks.insert(
            a % (n + 1),
            Chunk {
                ty,
                data: vec![fill; len],
                len: None,
            },
        ),
        _ => return,
    }
    *bytes = png::write_chunks(&chunks, &tail);
}

/// Apply the content mutations of `muts` to the file `bytes` (the fixture's
/// content, described by `model`): model-level ones first (the file is
/// re-encoded from the mutated model), then the others in order. Returns
/// the whole-file replacement, if any, for the caller to make.
pub fn apply(bytes: &mut Vec<u8>, model: &Model, muts: &[Mut], root: &Path) -> Option<FileMut> {
    match model {
        Model::Npy(npy) => {
            let mut npy = npy.clone();
            let mut touched = false;
            for m in muts {
                touched |= match m {
                    Mut::NpyDescr(d) => {
                        npy.descr = d.to_string();
                        true
                    }
                    Mut::NpyShape(s) => {
                        npy.shape = s.clone();
                        true
                    }
                    Mut::NpyFortran => {
                        npy.fortran = !npy.fortran;
                        true
                    }
                    _ => false,
                };
            }
            if touched {
                *bytes = npy.encode();
            }
        }
        Model::Png {
            w,
            h,
            values,
            depth,
            color,
        } => {
            let mut img = PngImage::from_values(*w, *h, *depth, *color, values);
            let mut bomb = None;
            let mut touched = false;
            for m in muts {
                if let Mut::Png(p) = m
                    && p.on_model()
                {
                    png_model_op(&mut img, p, values, &mut bomb);
                    touched = true;
                }
            }
            if let Some(b) = bomb {
                *bytes = b;
            } else if touched {
                *bytes = img.encode();
            }
        }
        Model::Bytes => {}
    }
    let mut file = None;
    for m in muts {
        apply_one(bytes, m, model);
        if let Mut::File(f) = m {
            file = Some(*f);
        }
    }
    let root = root.to_string_lossy();
    let needle = b"@ROOT@";
    if bytes.windows(needle.len()).any(|w| w == needle) {
        let text = String::from_utf8_lossy(bytes).replace("@ROOT@", &root);
        *bytes = text.into_bytes();
    }
    file
}

fn apply_one(bytes: &mut Vec<u8>, m: &Mut, model: &Model) {
    let len = bytes.len();
    match m {
        Mut::BitFlip { at: a, bit } if len > 0 => bytes[a % len] ^= 1 << (bit % 8),
        Mut::Insert { at: a, bytes: b } => {
            let i = at(*a, len);
            bytes.splice(i..i, b.iter().copied());
        }
        Mut::Delete { at: a, len: n } => {
            let i = at(*a, len);
            let j = (i + n).min(len);
            bytes.drain(i..j);
        }
        Mut::Duplicate { at: a, len: n, to } => {
            let i = at(*a, len);
            let piece = bytes[i..(i + n).min(len)].to_vec();
            let t = at(*to, len);
            bytes.splice(t..t, piece);
        }
        Mut::Truncate { at: a } => bytes.truncate(at(*a, len)),
        Mut::Splice {
            at: a,
            val,
            overwrite,
        } => {
            let i = at(*a, len);
            let v = val.bytes();
            let j = if *overwrite {
                (i + v.len()).min(len)
            } else {
                i
            };
            bytes.splice(i..j, v);
        }
        Mut::Number { nth, val } => {
            let nums = numbers(bytes);
            if !nums.is_empty() {
                let r = nums[nth % nums.len()].clone();
                bytes.splice(r, val.text().into_bytes());
            }
        }
        Mut::DropLine(n) | Mut::DupLine(n) => {
            let mut ls = lines(bytes);
            if !ls.is_empty() {
                let i = n % ls.len();
                if matches!(m, Mut::DropLine(_)) {
                    ls.remove(i);
                } else {
                    let l = ls[i].clone();
                    ls.insert(i, l);
                }
                *bytes = ls.concat();
            }
        }
        Mut::SwapLines(a, b) => {
            let mut ls = lines(bytes);
            if !ls.is_empty() {
                let n = ls.len();
                ls.swap(a % n, b % n);
                *bytes = ls.concat();
            }
        }
        Mut::Field {
            row,
            col,
            val,
            quoted,
        } => {
            let mut ls = lines(bytes);
            if !ls.is_empty() {
                let r = row % ls.len();
                let (mut cs, end) = cells(&ls[r]);
                let c = col % cs.len();
                cs[c] = csv_cell(val, *quoted);
                ls[r] = join_cells(&cs, &end);
                *bytes = ls.concat();
            }
        }
        Mut::DropColumn(col) | Mut::DupColumn(col) => {
            let mut ls = lines(bytes);
            let width = ls.first().map_or(1, |l| cells(l).0.len());
            let c = col % width;
            for l in &mut ls {
                let (mut cs, end) = cells(l);
                if c < cs.len() {
                    if matches!(m, Mut::DropColumn(_)) {
                        cs.remove(c);
                    } else {
                        let x = cs[c].clone();
                        cs.insert(c, x);
                    }
                    *l = join_cells(&cs, &end);
                }
            }
            *bytes = ls.concat();
        }
        Mut::Rows { col, n } => {
            let mut ls = lines(bytes);
            if let Some(last) = ls.last_mut()
                && !last.ends_with(b"\n")
            {
                last.push(b'\n');
            }
            let data: Vec<Vec<u8>> = ls.iter().skip(1).cloned().collect();
            if !data.is_empty() {
                let width = cells(&ls[0]).0.len();
                // At most ROWS_BYTES added (a row may hold a long value).
                let mut added = 0;
                for i in 0..*n {
                    let (mut cs, end) = cells(&data[i % data.len()]);
                    let c = col % width;
                    if c < cs.len() {
                        cs[c] = format!("x{}_{}", i / data.len(), i % 2).into_bytes();
                    }
                    let row = join_cells(&cs, &end);
                    added += row.len();
                    if added > ROWS_BYTES {
                        break;
                    }
                    ls.push(row);
                }
                *bytes = ls.concat();
            }
        }
        Mut::Scalar { nth, val } => {
            let (scalars, _) = scan_json(bytes);
            if !scalars.is_empty() {
                let r = scalars[nth % scalars.len()].clone();
                bytes.splice(r, val.json().into_bytes());
            }
        }
        Mut::Array { nth, op } => {
            let (_, arrays) = scan_json(bytes);
            if arrays.is_empty() {
                return;
            }
            let (o, c) = arrays[nth % arrays.len()];
            let commas = top_commas(bytes, o, c);
            let last_start = commas.last().map_or(o + 1, |&k| k + 1);
            let empty = bytes[o + 1..c].iter().all(u8::is_ascii_whitespace);
            match op {
                ArrayOp::Shorten => {
                    let from = commas.last().copied().unwrap_or(o + 1);
                    bytes.drain(from..c);
                }
                ArrayOp::Extend => {
                    if !empty {
                        let mut piece = b",".to_vec();
                        piece.extend_from_slice(&bytes[last_start..c]);
                        bytes.splice(c..c, piece);
                    }
                }
                ArrayOp::Empty => {
                    bytes.drain(o + 1..c);
                }
                ArrayOp::Grow => {
                    let mut piece = if empty { b"0".to_vec() } else { b",0".to_vec() };
                    piece.extend(",0".repeat(99_999).into_bytes());
                    bytes.splice(c..c, piece);
                }
                ArrayOp::Nest => {
                    bytes.insert(c, b']');
                    bytes.insert(o, b'[');
                }
            }
        }
        Mut::TomlSet { nth, val } => {
            let mut ls = lines(bytes);
            let keyed: Vec<usize> = (0..ls.len())
                .filter(|&i| ls[i].contains(&b'=') && !ls[i].starts_with(b"#"))
                .collect();
            if !keyed.is_empty() {
                let i = keyed[nth % keyed.len()];
                let eq = ls[i].iter().position(|&c| c == b'=').unwrap();
                let mut l = ls[i][..=eq].to_vec();
                l.push(b' ');
                l.extend_from_slice(val.render().as_bytes());
                l.push(b'\n');
                ls[i] = l;
                *bytes = ls.concat();
            }
        }
        Mut::TomlInsert { line, key, val } => {
            let mut ls = lines(bytes);
            if let Some(last) = ls.last_mut()
                && !last.ends_with(b"\n")
            {
                last.push(b'\n');
            }
            let l = if key.starts_with('[') {
                format!("{key}\n")
            } else {
                format!("{key} = {}\n", val.render())
            };
            let i = line % (ls.len() + 1);
            ls.insert(i, l.into_bytes());
            *bytes = ls.concat();
        }
        Mut::TomlKey { key, val } => {
            let mut ls = lines(bytes);
            if let Some(last) = ls.last_mut()
                && !last.ends_with(b"\n")
            {
                last.push(b'\n');
            }
            let line = format!("{key} = {}\n", val.render()).into_bytes();
            let is_key = |l: &[u8]| {
                l.strip_prefix(key.as_bytes())
                    .is_some_and(|r| r.trim_ascii_start().starts_with(b"="))
            };
            if let Some(i) = ls.iter().position(|l| is_key(l)) {
                ls[i] = line;
            } else if ["task", "num_classes", "classes", "ignore_index"].contains(key) {
                ls.insert(0, line);
            } else if let Some(i) = ls.iter().position(|l| l.starts_with(b"[inputs]")) {
                ls.insert(i + 1, line);
            } else {
                ls.push(b"[inputs]\n".to_vec());
                ls.push(line);
            }
            *bytes = ls.concat();
        }
        Mut::NpyVersion { version, len: hl } if len >= 12 => {
            bytes[6] = *version;
            match hl {
                Some(v) if *version == 1 => {
                    bytes[8..10].copy_from_slice(&(*v as u16).to_le_bytes())
                }
                Some(v) => bytes[8..12].copy_from_slice(&v.to_le_bytes()),
                None => {}
            }
        }
        Mut::NpyElem { nth, val } => {
            if let Model::Npy(npy) = model {
                let off = npy.encode().len() - npy.data.len();
                let w = elem_width(&npy.descr);
                let count = npy.data.len() / w;
                if count > 0 && bytes.len() >= off + count * w {
                    let i = off + (nth % count) * w;
                    bytes[i..i + w].copy_from_slice(&val.sized(w));
                }
            }
        }
        Mut::Png(p) if !p.on_model() => png_chunk_op(bytes, p),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_scan_finds_values_not_keys() {
        let t = br#"{"a":1,"b":[2,"x",[3,4]],"c":null}"#;
        let (s, arrays) = scan_json(t);
        let got: Vec<&str> = s
            .iter()
            .map(|r| std::str::from_utf8(&t[r.clone()]).unwrap())
            .collect();
        assert_eq!(got, ["1", "2", "\"x\"", "3", "4", "null"]);
        assert_eq!(arrays.len(), 2);
        let (o, c) = arrays[0];
        assert_eq!(top_commas(t, o, c).len(), 2);
    }

    #[test]
    fn numbers_are_found_whole() {
        let t = b"a,-12.5e-3,x7,1e9";
        let got: Vec<&[u8]> = numbers(t).into_iter().map(|r| &t[r]).collect();
        assert_eq!(got, [&b"-12.5e-3"[..], b"7", b"1e9"]);
    }
}
