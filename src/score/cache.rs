//! The score cache of `triage run --cache DIR`: items whose inputs are
//! unchanged since an earlier run are not scored again.
//!
//! **Contract.** An item's scores are a pure function of what the score
//! stage reads for it, under the run's score options: its probabilities as
//! scored (after the float16/float64 → float32 read), its annotation (the
//! class index, or the decoded mask with its size) and the options of
//! [`fingerprint`]. The cache is keyed by that content, a 128-bit xxh3 hash
//! ([`row_key`], [`seg_key`]), not by id: an item renamed, moved in the
//! manifest or copied keeps its entry. A reused item gets exactly the bits a
//! fresh scoring would give (the row's seven scores, or the segmentation
//! item's result and its pooled sums, which add exactly), so the outputs of
//! a run that reused items equal those of a full re-run. Embeddings are not
//! in the key: the neighbour stage always runs over every embedding (one
//! changed item can change another's neighbours), as do the checks, the
//! priority order and the queue.
//!
//! **Files.** `DIR/scores-all.cache` (or `scores-I-of-N.cache` for shard
//! I/N, so shards may share one directory): a header line (format
//! `triage-score-cache/2`, version, fingerprint, task, entries), then the
//! entries: classification, fixed-size records ([`RowEntry`],
//! [`ROW_ENTRY_BYTES`] = 32 + 4 per declared per-sample score,
//! little-endian, the last 8 bytes the xxh3-64 checksum of the rest); segmentation,
//! one line per item ([`SegEntry`]). The header and the segmentation
//! entries are sealed lines ([`crate::io::sealed`]: the xxh3-64 of the
//! JSON in 16 hex digits, a space, the JSON). Every cache file in `DIR`
//! whose fingerprint matches is read; each run rewrites its own file (to a
//! temporary file, renamed) with the entries of its items, so the cache
//! holds the last run's items. A file of other options or version, or one
//! that cannot be read, is not used (said on stderr): the items are scored.
//! Deleting `DIR` is always safe.
//!
//! **Nothing in a cache is trusted.** Files are read as regular files
//! ([`crate::fsx::open_input`]), streaming (an entry at a time). The
//! header's `entries` must match the file's size (classification: exactly
//! `entries × 52` bytes after the header) or its lines (segmentation),
//! else the file is not used; nothing is sized by it before that check.
//! An entry whose checksum does not match, or with a field that does not
//! fit the run (a class index at or above the class count, a non-finite
//! score, pooled sums that are not its item's: see
//! [`crate::records::ItemResult::validate`], [`crate::records::check_sums`]), is
//! damaged: it is not used, its item is scored again, the count of damaged
//! entries is said on stderr, and the run writes the item's fresh entry in
//! its place. The checksum detects damage, not forgery: a forged entry
//! with valid fields gives its item the forged scores, as the cache is the
//! user's own.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{Xxh3Default, xxh3_128_with_seed};

use crate::backend::BackendInfo;
use crate::config::{DatasetConfig, Task};
use crate::error::{Error, Result};
use crate::io::probs::ProbBuf;
use crate::io::sealed;
use crate::metrics::boundary_iou::BandCounts;
use crate::metrics::calibration::PooledBins;
use crate::metrics::pixel_stats::SampleScores;
use crate::records::{DatasetStats, ItemResult, RunDims, Shard, SumsRef, Tally};
use crate::scores::{N_SAMPLE, PerSample};

/// The header's `format`.
pub const FORMAT: &str = "triage-score-cache/2";

/// The content key of one item.
pub type Key = u128;

/// The fingerprint of the options an item's scores depend on: the version,
/// the task, the class count, the ignore index (segmentation), `--logits`,
/// and the backend that scores (its name; on the CPU its SIMD level, on a
/// GPU its adapter), as backends agree only within a tolerance.
pub fn fingerprint(cfg: &DatasetConfig, logits: bool, backend: &BackendInfo) -> String {
    let simd = match backend.name.as_str() {
        "cpu" => format!("{:?}", crate::backend::simd::level()),
        _ => backend.adapter.clone().unwrap_or_default(),
    };
    let parts = [
        env!("CARGO_PKG_VERSION").to_string(),
        format!("{:?}", cfg.task),
        cfg.num_classes().to_string(),
        cfg.ignore_index.to_string(),
        logits.to_string(),
        backend.name.clone(),
        simd,
        cfg!(target_endian = "little").to_string(),
        crate::scores::table_id(),
    ];
    let text = parts.join("\0");
    format!("{:032x}", xxh3_128_with_seed(text.as_bytes(), 0))
}

/// The bytes of values `range` of `buf` and a tag of its dtype.
fn bytes_of(buf: &ProbBuf, range: std::ops::Range<usize>) -> (&[u8], u64) {
    match buf {
        ProbBuf::F32(v) => (bytemuck::cast_slice(&v[range]), 32),
        ProbBuf::F16(v) => (bytemuck::cast_slice(&v[range]), 16),
    }
}

/// The key of a classification row: values `range` of `buf` (as scored)
/// and its label.
pub fn row_key(buf: &ProbBuf, range: std::ops::Range<usize>, label: u32) -> Key {
    let (bytes, tag) = bytes_of(buf, range);
    xxh3_128_with_seed(bytes, (tag << 32) | label as u64)
}

/// Values per chunk of a segmentation item's key: its values are hashed
/// in chunks of this many, in parallel, and the key hashes the chunks'
/// hashes in order.
pub const SEG_CHUNK: usize = 1 << 18;

/// The key of a segmentation item: `len` values, float16 (`f16`) or
/// float32, each chunk of [`SEG_CHUNK`] values hashed by `chunk(start,
/// values)` (called in parallel, in any order); then its mask
/// (`height × width` labels) and size.
pub fn seg_key(
    f16: bool,
    len: usize,
    chunk: impl Fn(usize, usize) -> Result<u128> + Sync,
    labels: &[u16],
    height: usize,
    width: usize,
) -> Result<Key> {
    use rayon::prelude::*;
    let hashes: Vec<u128> = (0..len.div_ceil(SEG_CHUNK))
        .into_par_iter()
        .map(|k| {
            let at = k * SEG_CHUNK;
            chunk(at, SEG_CHUNK.min(len - at))
        })
        .collect::<Result<_>>()?;
    let mut h = Xxh3Default::new();
    h.update(if f16 { b"f16\0" } else { b"f32\0" });
    for x in &hashes {
        h.update(&x.to_le_bytes());
    }
    h.update(b"mask\0");
    h.update(bytemuck::cast_slice(labels));
    h.update(&(height as u64).to_le_bytes());
    h.update(&(width as u64).to_le_bytes());
    Ok(h.digest128())
}

/// The hash of one chunk of values `range` of `buf` (see [`seg_key`]).
pub fn chunk_hash(buf: &ProbBuf, range: std::ops::Range<usize>) -> u128 {
    xxh3_128_with_seed(bytes_of(buf, range).0, 0)
}

/// The hash of raw float32 or float16 values (see [`seg_key`]).
pub fn raw_hash<T: Pod>(v: &[T]) -> u128 {
    xxh3_128_with_seed(bytemuck::cast_slice(v), 0)
}

/// A classification row's entry: its key, what the result and the pooled
/// sums are built from ([`SampleScores`]: the prediction, the confidence
/// and the declared per-sample scores in score-table order), and the
/// xxh3-64 checksum of the bytes before it (little-endian, as two `u32`s
/// low first).
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct RowEntry {
    key: [u32; 4],
    pred: u32,
    confidence: f32,
    scores: [f32; N_SAMPLE],
    check: [u32; 2],
}

/// Bytes of a [`RowEntry`] in a cache file.
pub const ROW_ENTRY_BYTES: usize = std::mem::size_of::<RowEntry>();
/// The bytes its checksum covers: all but the checksum.
const ROW_CHECKED_BYTES: usize = ROW_ENTRY_BYTES - 8;

impl RowEntry {
    /// The entry of a row scored `s` under `key`.
    pub fn new(key: Key, s: &SampleScores) -> Self {
        let mut e = RowEntry {
            key: bytemuck::cast(key.to_le_bytes()),
            pred: s.pred,
            confidence: s.confidence,
            scores: s.scores.to_array(),
            check: [0; 2],
        };
        e.check = bytemuck::cast(e.checksum().to_le_bytes());
        e
    }

    /// The xxh3-64 of the entry's bytes but its checksum.
    fn checksum(&self) -> u64 {
        sealed::checksum(&bytemuck::bytes_of(self)[..ROW_CHECKED_BYTES])
    }

    /// Whether the entry, as read, is whole and fits a run of `classes`
    /// classes: its checksum matches, its predicted class is below
    /// `classes` and its scores are finite.
    pub fn is_valid(&self, classes: usize) -> bool {
        let stored = u64::from_le_bytes(bytemuck::cast(self.check));
        let s = self.scores();
        stored == self.checksum()
            && (s.pred as usize) < classes
            && s.confidence.is_finite()
            && self.scores.iter().all(|x| x.is_finite())
    }

    pub fn key(&self) -> Key {
        u128::from_le_bytes(bytemuck::cast(self.key))
    }

    /// The scores, as the backend gave them.
    pub fn scores(&self) -> SampleScores {
        SampleScores {
            pred: self.pred,
            confidence: self.confidence,
            scores: PerSample::from_array(self.scores),
        }
    }
}

/// A segmentation item's entry: its result (the score stage's, before
/// reasons, neighbours or clusters) and its pooled sums.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegEntry {
    pub key: Key,
    pub item: ItemResult,
    pub bins: PooledBins,
    /// `(label, pred, count)`, the non-zero cells.
    pub confusion: Vec<(u32, u32, u64)>,
    pub bands: BandCounts,
}

impl SegEntry {
    /// Add the item's sums to `stats` (an unlabelled item's are not pooled,
    /// as when it is scored).
    pub fn add_to(&self, stats: &mut DatasetStats) {
        if self.item.unlabelled {
            return;
        }
        stats.add_sums(self.sums());
    }

    fn sums(&self) -> SumsRef<'_> {
        SumsRef {
            bins: &self.bins,
            cells: &self.confusion,
            bands: Some(&self.bands),
        }
    }

    /// Check an entry read back against a run of `classes` classes: its
    /// item ([`ItemResult::validate`]) and its sums, which must be those of
    /// the item's pixels ([`crate::records::check_sums`]; an unlabelled item
    /// is scored against class 0, so its sums are kept too).
    pub fn validate(&self, classes: usize) -> std::result::Result<(), crate::records::Invalid> {
        let dims = RunDims {
            classes,
            segmentation: true,
        };
        self.item.validate(dims).map_err(|e| e.under("item"))?;
        let mut tally = Tally::default();
        let (_, pixels) = self.item.pooled();
        let area = match self.item.dims() {
            Some((h, w)) => (h as u64).saturating_mul(w as u64),
            None => pixels,
        };
        let samples = self.item.scores.pixels();
        tally.add((samples, area))?;
        crate::records::check_sums(self.sums(), dims, tally)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: String,
    fingerprint: String,
    task: Task,
    entries: usize,
}

/// The keys are hashes already: use their low bits.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// The entries read from a cache directory.
#[derive(Default)]
pub struct Cache {
    rows: KeyMap<RowEntry>,
    segs: KeyMap<SegEntry>,
}

impl Cache {
    /// Read every cache file in `dir` made under `fingerprint` for `task`
    /// with `classes` classes (none yet, or no such directory: an empty
    /// cache). Damaged entries are left out and counted on stderr.
    pub fn load(dir: &Path, fingerprint: &str, task: Task, classes: usize) -> Cache {
        let mut cache = Cache::default();
        let Ok(listing) = std::fs::read_dir(dir) else {
            return cache;
        };
        let mut files: Vec<PathBuf> = listing
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("scores-") && n.ends_with(".cache"))
            })
            .collect();
        files.sort();
        for path in files {
            match cache.read(&path, fingerprint, task, classes) {
                Ok(0) => {}
                Ok(damaged) => eprintln!(
                    "triage: score cache {}: {damaged} damaged entries (a checksum that does not match or a field out of range) not used; their items are scored again",
                    path.display()
                ),
                Err(why) => {
                    eprintln!("triage: score cache {}: {why}; not used", path.display())
                }
            }
        }
        cache
    }

    /// Read one cache file; the number of damaged entries left out, or why
    /// the whole file is not used.
    fn read(
        &mut self,
        path: &Path,
        fingerprint: &str,
        task: Task,
        classes: usize,
    ) -> std::result::Result<usize, String> {
        let file = crate::fsx::open_input(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        let header_len = match sealed::read_line(&mut r, &mut line, 1 << 16) {
            Ok(sealed::Line::Whole(n)) => n as u64,
            Ok(_) => return Err("no header line".into()),
            Err(e) => return Err(e.to_string()),
        };
        let json = sealed::open(&line).map_err(|d| format!("header: {d}"))?;
        let h: Header = serde_json::from_slice(json).map_err(|e| format!("bad header: {e}"))?;
        if h.format != FORMAT || h.fingerprint != fingerprint || h.task != task {
            return Err(format!(
                "made by triage {} under other score options, backend or task",
                h.version
            ));
        }
        let mut damaged = 0;
        match task {
            Task::Classification => {
                let body = len.saturating_sub(header_len);
                let size = ROW_ENTRY_BYTES as u64;
                let want = (h.entries as u64).checked_mul(size);
                if want != Some(body) {
                    return Err(format!(
                        "{body} bytes of entries, but the header says {} entries of {size} bytes",
                        h.entries
                    ));
                }
                // `entries` fits the file: it may size the map.
                self.rows.reserve(h.entries);
                let mut buf = [0u8; ROW_ENTRY_BYTES];
                let mut rows = Vec::new();
                for _ in 0..h.entries {
                    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
                    let e: RowEntry = bytemuck::pod_read_unaligned(&buf);
                    if e.is_valid(classes) {
                        rows.push(e);
                    } else {
                        damaged += 1;
                    }
                }
                for e in rows {
                    self.rows.insert(e.key(), e);
                }
            }
            Task::Segmentation => {
                let limit = crate::io::sealed::record_limit(classes);
                let mut n = 0usize;
                let mut segs = Vec::new();
                loop {
                    match sealed::read_line(&mut r, &mut line, limit) {
                        Ok(sealed::Line::Whole(_)) => {}
                        Ok(sealed::Line::End) => break,
                        Ok(sealed::Line::Torn(_)) => return Err("a torn last entry".into()),
                        Ok(sealed::Line::TooLong) => {
                            return Err(format!("entry {n}: longer than {limit} bytes"));
                        }
                        Ok(sealed::Line::NotSealed) => {
                            return Err(format!("entry {n}: {}", sealed::Damage::NoChecksum));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                    n += 1;
                    if n > h.entries {
                        return Err(format!("more than the {} entries expected", h.entries));
                    }
                    let entry = sealed::open(&line)
                        .ok()
                        .and_then(|json| serde_json::from_slice::<SegEntry>(json).ok())
                        .filter(|e| e.validate(classes).is_ok());
                    match entry {
                        Some(e) => segs.push(e),
                        None => damaged += 1,
                    }
                }
                if n != h.entries {
                    return Err(format!("{n} entries, {} expected", h.entries));
                }
                for e in segs {
                    self.segs.insert(e.key, e);
                }
            }
        }
        Ok(damaged)
    }

    /// Entries read.
    pub fn len(&self) -> usize {
        self.rows.len() + self.segs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The classification row of `key`.
    pub fn row(&self, key: Key) -> Option<RowEntry> {
        self.rows.get(&key).copied()
    }

    /// The segmentation item of `key`.
    pub fn seg(&self, key: Key) -> Option<&SegEntry> {
        self.segs.get(&key)
    }
}

/// This run's entries (reused and scored), in items order, and its counts.
#[derive(Default)]
pub struct Recorder {
    rows: Vec<RowEntry>,
    segs: Vec<SegEntry>,
    /// Items reused from the cache.
    pub reused: usize,
    /// Items scored.
    pub scored: usize,
}

impl Recorder {
    /// Record a classification row (`reused` from the cache, or scored).
    pub fn row(&mut self, e: RowEntry, reused: bool) {
        self.rows.push(e);
        self.count(reused);
    }

    /// Record a segmentation item.
    pub fn seg(&mut self, e: SegEntry, reused: bool) {
        self.segs.push(e);
        self.count(reused);
    }

    fn count(&mut self, reused: bool) {
        if reused {
            self.reused += 1;
        } else {
            self.scored += 1;
        }
    }

    /// Items counted as reused while resuming from a checkpoint are
    /// neither: they were scored by the run that was killed.
    pub fn resumed(&mut self, n: usize) {
        self.scored += n;
    }

    /// The cache file of a run of `shard` (`None`: the whole dataset).
    pub fn file_name(shard: Option<Shard>) -> String {
        match shard {
            Some(s) => format!("scores-{}-of-{}.cache", s.index, s.count),
            None => "scores-all.cache".into(),
        }
    }

    /// Write this run's entries to `dir` (created if missing), replacing
    /// the run's earlier file.
    pub fn write(
        &self,
        dir: &Path,
        shard: Option<Shard>,
        fingerprint: &str,
        task: Task,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let header = Header {
            format: FORMAT.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            fingerprint: fingerprint.into(),
            task,
            entries: self.rows.len() + self.segs.len(),
        };
        let name = Self::file_name(shard);
        let mut files = crate::io::atomic::AtomicOutputs::new(dir);
        files.write(&name, |w| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
            sealed::write(&mut w, &header)?;
            w.write_all(bytemuck::cast_slice(&self.rows))?;
            for e in &self.segs {
                sealed::write(&mut w, e)?;
            }
            w.flush()
        })?;
        files.commit()?;
        Ok(dir.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(k: u32) -> SampleScores {
        SampleScores {
            pred: k,
            confidence: 0.5 + k as f32 * 0.01,
            scores: PerSample::from_array(std::array::from_fn(|a| {
                f32::from_bits(0x3e00_0001 + a as u32 * 0x0100_0000)
            })),
        }
    }

    #[test]
    fn row_keys_see_values_label_and_dtype() {
        let a = ProbBuf::F32(vec![0.25, 0.75, 0.5, 0.5]);
        let k0 = row_key(&a, 0..2, 1);
        assert_eq!(k0, row_key(&ProbBuf::F32(vec![0.25, 0.75]), 0..2, 1));
        assert_ne!(k0, row_key(&a, 0..2, 0), "the label is in the key");
        assert_ne!(k0, row_key(&a, 2..4, 1), "the values are in the key");
        // float16 bits that happen to equal a float32's bytes differ by tag.
        let b = ProbBuf::F16(bytemuck::cast_slice(&[0.25f32, 0.75]).to_vec());
        assert_ne!(k0, row_key(&b, 0..4, 1));
    }

    #[test]
    fn seg_keys_see_every_chunk_the_mask_and_the_size() {
        let len = 2 * SEG_CHUNK + 7;
        let v = ProbBuf::F32((0..len).map(|i| i as f32 / len as f32).collect());
        let key = |v: &ProbBuf, labels: &[u16], h, w| {
            seg_key(
                false,
                len,
                |at, n| Ok(chunk_hash(v, at..at + n)),
                labels,
                h,
                w,
            )
            .unwrap()
        };
        let a = key(&v, &[0, 1], 1, 2);
        assert_eq!(a, key(&v, &[0, 1], 1, 2), "the same content, the same key");
        let raw = seg_key(
            false,
            len,
            |at, n| match &v {
                ProbBuf::F32(x) => Ok(raw_hash(&x[at..at + n])),
                ProbBuf::F16(_) => unreachable!(),
            },
            &[0, 1],
            1,
            2,
        )
        .unwrap();
        assert_eq!(a, raw, "values in memory or read from the file: one key");
        assert_ne!(a, key(&v, &[1, 1], 1, 2), "the mask is in the key");
        assert_ne!(a, key(&v, &[0, 1], 2, 1), "the size is in the key");
        // One value changed in the last (short) chunk.
        let mut w = v.clone();
        if let ProbBuf::F32(x) = &mut w {
            x[len - 1] = 0.5;
        }
        assert_ne!(a, key(&w, &[0, 1], 1, 2), "every chunk is in the key");
    }

    #[test]
    fn entries_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recorder::default();
        for k in 0..3u32 {
            rec.row(
                RowEntry::new(1000 + k as u128 * (1 << 70), &scores(k)),
                k == 1,
            );
        }
        assert_eq!((rec.reused, rec.scored), (1, 2));
        rec.write(dir.path(), None, "fp", Task::Classification)
            .unwrap();
        let c = Cache::load(dir.path(), "fp", Task::Classification, 10);
        assert_eq!(c.len(), 3);
        let e = c.row(1000 + 2 * (1 << 70)).unwrap();
        assert_eq!(e.scores(), scores(2));
        // Every per-sample score comes back bit for bit.
        let back = e.scores().scores.to_array();
        for (a, v) in back.iter().enumerate() {
            assert_eq!(v.to_bits(), 0x3e00_0001 + a as u32 * 0x0100_0000);
        }
        assert!(c.row(999).is_none());
        // Other options: not used.
        assert!(Cache::load(dir.path(), "other", Task::Classification, 10).is_empty());
        assert!(Cache::load(dir.path(), "fp", Task::Segmentation, 10).is_empty());
        // A cut file: not used.
        let path = dir.path().join(Recorder::file_name(None));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Cache::load(dir.path(), "fp", Task::Classification, 10).is_empty());
        // No directory: empty.
        assert!(Cache::load(&dir.path().join("none"), "fp", Task::Classification, 10).is_empty());
    }

    #[test]
    fn damaged_or_out_of_range_entries_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = Recorder::default();
        for k in 0..4u32 {
            rec.row(RowEntry::new(7 + k as u128, &scores(k)), false);
        }
        rec.write(dir.path(), None, "fp", Task::Classification)
            .unwrap();
        let path = dir.path().join(Recorder::file_name(None));
        let clean = std::fs::read(&path).unwrap();
        let body = clean.len() - 4 * ROW_ENTRY_BYTES;
        assert_eq!(ROW_ENTRY_BYTES, 32 + 4 * crate::scores::N_SAMPLE);
        // Entry 1's confidence (bytes 20..24) zeroed: its checksum fails.
        let mut b = clean.clone();
        b[body + ROW_ENTRY_BYTES + 20..body + ROW_ENTRY_BYTES + 24].fill(0);
        std::fs::write(&path, &b).unwrap();
        let c = Cache::load(dir.path(), "fp", Task::Classification, 10);
        assert_eq!(c.len(), 3);
        assert!(c.row(8).is_none() && c.row(7).is_some() && c.row(9).is_some());
        // Entry 3 predicts class 3: fine for 4 classes, out of range for 3.
        std::fs::write(&path, &clean).unwrap();
        assert_eq!(
            Cache::load(dir.path(), "fp", Task::Classification, 4).len(),
            4
        );
        let c = Cache::load(dir.path(), "fp", Task::Classification, 3);
        assert_eq!(c.len(), 3);
        assert!(c.row(10).is_none());
        // A header whose `entries` does not fit the file: not used, and
        // nothing is sized by it.
        let text = String::from_utf8_lossy(&clean[..body]).into_owned();
        let json = text.trim_end().split_once(' ').unwrap().1;
        let huge = json.replace("\"entries\":4", "\"entries\":18446744073709551615");
        assert_ne!(huge, json);
        let mut b = Vec::new();
        sealed::write_json(&mut b, huge.as_bytes()).unwrap();
        b.extend_from_slice(&clean[body..]);
        std::fs::write(&path, &b).unwrap();
        assert!(Cache::load(dir.path(), "fp", Task::Classification, 10).is_empty());
    }
}
