//! `triage review-import`: reviewers' decisions stored in the dataset, and the
//! content hashes that tell a later run whether an item changed since.
//!
//! # The decisions file: `DATASET/reviews.jsonl`
//!
//! One JSON object per line, one line per item id (a later import of the same
//! id replaces its line in place; new ids are appended in CSV order):
//!
//! ```json
//! {"id":"x3","decision":"error","corrected_label":"dog","probs_hash":"fnv1a64:…","annotation_hash":"fnv1a64:…","source":"decisions.csv"}
//! ```
//!
//! - `decision`: `error` (the label is wrong), `ok` (it is right), `unsure`.
//! - `corrected_label`: the class name, or `null`.
//! - `probs_hash`: FNV-1a 64 of the item's raw probability bytes as stored
//!   (its slice of a stacked `.npy`, or its whole `<id>.npy`).
//! - `annotation_hash`: FNV-1a 64 of the annotation: the mask PNG file's bytes
//!   (segmentation) or the annotated class index as 4 little-endian bytes
//!   (classification).
//! - `source`: the file name of the CSV it came from.
//!
//! The file is replaced through a temporary file and a rename, so an import
//! either lands completely or leaves the previous file byte-identical.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{DatasetConfig, Task};
use crate::error::{Error, Result};
use crate::io::atomic::AtomicOutputs;
use crate::io::manifest::Manifest;
use crate::io::npy::NpyArray;

/// Name of the decisions file inside the dataset directory.
pub const REVIEWS_FILE: &str = "reviews.jsonl";

/// A reviewer's verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The annotation is wrong.
    Error,
    /// The annotation is right.
    Ok,
    /// The reviewer could not tell.
    Unsure,
}

impl Decision {
    fn parse(s: &str) -> Option<Decision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Decision::Error),
            "ok" => Some(Decision::Ok),
            "unsure" => Some(Decision::Unsure),
            _ => None,
        }
    }
}

/// One line of `reviews.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub id: String,
    pub decision: Decision,
    pub corrected_label: Option<String>,
    pub probs_hash: String,
    pub annotation_hash: String,
    pub source: String,
}

/// Content hashes of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemHashes {
    pub probs: String,
    pub annotation: String,
}

/// FNV-1a, 64 bits: small, dependency-free and stable across platforms.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// `fnv1a64:` and 16 hex digits.
    pub fn hex(&self) -> String {
        format!("fnv1a64:{:016x}", self.0)
    }
}

fn fnv(bytes: &[u8]) -> String {
    let mut h = Fnv::default();
    h.update(bytes);
    h.hex()
}

/// Computes [`ItemHashes`] for items of one dataset.
pub struct ContentHasher<'a> {
    cfg: &'a DatasetConfig,
    manifest: &'a Manifest,
    stacked: Option<NpyArray>,
    mask_col: Option<usize>,
}

impl<'a> ContentHasher<'a> {
    /// Open the dataset's probabilities (once) for hashing.
    pub fn new(cfg: &'a DatasetConfig, manifest: &'a Manifest) -> Result<Self> {
        let stacked = if crate::io::inputs::probs_dir(cfg) {
            None
        } else {
            Some(crate::io::inputs::open(cfg, &cfg.probs)?)
        };
        Ok(ContentHasher {
            cfg,
            manifest,
            stacked,
            mask_col: manifest.column("mask"),
        })
    }

    /// Hashes of item `index`; `label` is its class (classification).
    pub fn hashes(&mut self, index: usize, label: Option<u32>) -> Result<ItemHashes> {
        let id = &self.manifest.ids[index];
        let probs = match &mut self.stacked {
            Some(arr) => {
                let per_item: usize = arr.shape.iter().skip(1).product();
                fnv(&arr
                    .read_bytes(index * per_item, per_item)
                    .map_err(|e| e.item(id))?)
            }
            None => fnv_file(&self.cfg.item_probs(id)?)?,
        };
        let annotation = match (self.cfg.task, self.mask_col) {
            (Task::Segmentation, Some(col)) => fnv_file(&self.cfg.item_file(
                id,
                "mask",
                &self.manifest.rows[index][col],
            )?)?,
            _ => fnv(&label.unwrap_or(u32::MAX).to_le_bytes()),
        };
        Ok(ItemHashes { probs, annotation })
    }
}

/// FNV-1a 64 of the regular file `path`'s bytes, streamed (never more than
/// the length it had when opened).
fn fnv_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let file = crate::fsx::open_input(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut file = file.take(len);
    let mut h = Fnv::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(h.hex());
        }
        h.update(&buf[..n]);
    }
}

/// The largest `reviews.jsonl` read, in bytes (1 GiB: several million
/// decisions).
pub const MAX_REVIEWS_BYTES: u64 = 1 << 30;

/// The largest decisions CSV imported, in bytes.
pub const MAX_DECISIONS_BYTES: u64 = 1 << 30;

/// The decisions stored in `dataset`, or `None` when it has no decisions
/// file. The file must be a regular file of at most [`MAX_REVIEWS_BYTES`];
/// it is streamed.
pub fn load(dataset: &Path) -> Result<Option<Vec<ReviewRecord>>> {
    let path = dataset.join(REVIEWS_FILE);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let mut out = Vec::new();
    crate::queue::previous::for_each_line(&path, MAX_REVIEWS_BYTES, "reviews.jsonl", |i, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let rec: ReviewRecord = serde_json::from_str(line)
            .map_err(|e| Error::input(&path, format!("line {}: {e}", i + 1)))?;
        out.push(rec);
        Ok(())
    })?;
    Ok(Some(out))
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Decisions read from the CSV.
    pub imported: usize,
    /// Of those, ids that had no decision before.
    pub new: usize,
    /// Decisions in the file afterwards.
    pub total: usize,
    pub file: PathBuf,
}

struct Row {
    line: u64,
    id: String,
    index: usize,
    decision: Decision,
    corrected_label: Option<String>,
}

fn read_decisions(cfg: &DatasetConfig, manifest: &Manifest, csv_path: &Path) -> Result<Vec<Row>> {
    let bad = |msg: String| Error::input(csv_path, msg);
    let file = crate::fsx::open_input(csv_path)?;
    let len = file.metadata().map_err(|e| Error::io(csv_path, e))?.len();
    if len > MAX_DECISIONS_BYTES {
        return Err(bad(format!(
            "the decisions CSV is {len} bytes, over the limit of {MAX_DECISIONS_BYTES} bytes \
             (docs/threat-model.md)"
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(crate::fsx::line_limited(
            std::io::Read::take(file, MAX_DECISIONS_BYTES),
            crate::fsx::MAX_LINE_BYTES,
        ));
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_err(csv_path, e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(bad(
            "empty CSV: expected a header with `id` and `decision`".into()
        ));
    }
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no `{name}` column in the header")).field(name))
    };
    let id_col = col("id")?;
    let dec_col = col("decision")?;
    let fix_col = header.iter().position(|h| h == "corrected_label");
    let index: HashMap<&str, usize> = manifest
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| csv_err(csv_path, e))?;
        let line = rec.position().map_or(i as u64 + 2, |p| p.line());
        let id = rec.get(id_col).unwrap_or("").trim().to_string();
        if id.is_empty() {
            return Err(bad(format!("line {line}: empty id")).field("id"));
        }
        let Some(&ix) = index.get(id.as_str()) else {
            return Err(bad(format!(
                "line {line}: id {id:?} is not an item of the dataset {}",
                cfg.dir.display()
            ))
            .item(id)
            .field("id"));
        };
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(bad(format!(
                "duplicate id: lines {first} and {line} both decide it"
            ))
            .item(id)
            .field("id"));
        }
        let raw = rec.get(dec_col).unwrap_or("");
        let decision = Decision::parse(raw).ok_or_else(|| {
            bad(format!(
                "line {line}: decision {raw:?} is not one of error, ok, unsure"
            ))
            .item(&id)
            .field("decision")
        })?;
        let corrected_label = match fix_col.map(|j| rec.get(j).unwrap_or("").trim()) {
            None | Some("") => None,
            Some(text) => {
                let k = cfg.parse_class(text).ok_or_else(|| {
                    bad(format!(
                        "line {line}: corrected_label {text:?} is neither a class index in 0..{} nor a class name",
                        cfg.num_classes()
                    ))
                    .item(&id)
                    .field("corrected_label")
                })?;
                Some(cfg.class_names[k as usize].clone())
            }
        };
        rows.push(Row {
            line,
            id,
            index: ix,
            decision,
            corrected_label,
        });
    }
    if rows.is_empty() {
        return Err(bad("no decisions: the CSV has a header but no rows".into()));
    }
    Ok(rows)
}

fn csv_err(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        kind => {
            let msg = match kind {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("a row has {len} fields, the header has {expected_len}"),
                other => format!("{other:?}"),
            };
            match line {
                Some(l) => Error::input(path, format!("line {l}: {msg}")),
                None => Error::input(path, msg),
            }
        }
    }
}

/// Import `csv_path` into `dataset`'s decisions file. Nothing is written
/// unless every row is valid.
pub fn import(dataset: &Path, csv_path: &Path) -> Result<ImportSummary> {
    let cfg = DatasetConfig::load(dataset)?;
    let manifest = Manifest::of_dataset(&cfg)?;
    let rows = read_decisions(&cfg, &manifest, csv_path)?;
    let labels = match cfg.task {
        Task::Classification => Some(crate::io::labels::class_labels(&cfg, &manifest)?),
        Task::Segmentation => None,
    };
    let source = csv_path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut hasher = ContentHasher::new(&cfg, &manifest)?;
    let mut records = load(dataset)?.unwrap_or_default();
    let mut at: HashMap<String, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();
    let mut new = 0;
    for row in &rows {
        let h = hasher
            .hashes(row.index, labels.as_ref().map(|l| l[row.index]))
            .map_err(|e| match e {
                Error::Input { .. } => e.field(format!("line {}", row.line)),
                e => e,
            })?;
        let rec = ReviewRecord {
            id: row.id.clone(),
            decision: row.decision,
            corrected_label: row.corrected_label.clone(),
            probs_hash: h.probs,
            annotation_hash: h.annotation,
            source: source.clone(),
        };
        match at.get(&row.id) {
            Some(&i) => records[i] = rec,
            None => {
                at.insert(row.id.clone(), records.len());
                records.push(rec);
                new += 1;
            }
        }
    }
    let mut out = AtomicOutputs::new(dataset);
    out.write(REVIEWS_FILE, |w| {
        for r in &records {
            serde_json::to_writer(&mut *w, r)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    out.commit()?;
    Ok(ImportSummary {
        imported: rows.len(),
        new,
        total: records.len(),
        file: dataset.join(REVIEWS_FILE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // FNV-1a 64 test vectors (Fowler/Noll/Vo): "" and "a".
        assert_eq!(fnv(b""), "fnv1a64:cbf29ce484222325");
        assert_eq!(fnv(b"a"), "fnv1a64:af63dc4c8601ec8c");
    }

    #[test]
    fn decisions_parse_case_insensitively() {
        assert_eq!(Decision::parse(" Error "), Some(Decision::Error));
        assert_eq!(Decision::parse("ok"), Some(Decision::Ok));
        assert_eq!(Decision::parse("maybe"), None);
    }
}
