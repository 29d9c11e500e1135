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

use crate::config::LabelFormat;
use crate::config::{DatasetConfig, Task};
use crate::error::{Error, Result};
use crate::io::atomic::AtomicOutputs;
use crate::io::labelfile::ItemLabel;
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
    /// Segmentation: the reviewer's corrected mask (imported from Label
    /// Studio or CVAT); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected_mask: Option<CorrectedMask>,
    pub probs_hash: String,
    pub annotation_hash: String,
    pub source: String,
}

/// A corrected label map in `reviews.jsonl`: `size` = `[H, W]`, and per
/// value (a class name, or `"ignore"` for the ignore index) the COCO
/// compressed RLE `counts` of its pixels ([`crate::io::coco_rle`], as
/// pycocotools writes them). Every pixel has exactly one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectedMask {
    pub size: [usize; 2],
    pub rle: std::collections::BTreeMap<String, String>,
}

/// The name of the ignore index in a [`CorrectedMask`].
pub const IGNORE_NAME: &str = "ignore";

impl CorrectedMask {
    /// The map `map` (`h × w`, row-major; class ids or the ignore index).
    pub fn from_map(cfg: &DatasetConfig, map: &[u16], h: usize, w: usize) -> Result<Self> {
        let mut rle = std::collections::BTreeMap::new();
        let mut present = vec![false; cfg.num_classes() + 1];
        for &v in map {
            let k = if v == cfg.ignore_index {
                cfg.num_classes()
            } else {
                v as usize
            };
            if let Some(p) = present.get_mut(k) {
                *p = true;
            }
        }
        for (k, _) in present.iter().enumerate().filter(|(_, p)| **p) {
            let (name, value) = match cfg.class_names.get(k) {
                Some(n) => (n.clone(), k as u16),
                None => (IGNORE_NAME.to_string(), cfg.ignore_index),
            };
            let bits: Vec<u8> = map.iter().map(|&v| u8::from(v == value)).collect();
            let r = crate::io::coco_rle::encode(&bits, h, w).map_err(Error::Internal)?;
            rle.insert(name, crate::io::coco_rle::to_string(&r));
        }
        Ok(CorrectedMask { size: [h, w], rle })
    }

    /// The map back, checked: known names, counts that decode to `H × W`,
    /// every pixel covered once. Errors name `path` (the decisions file),
    /// the item and the field.
    pub fn to_map(&self, cfg: &DatasetConfig, path: &Path, id: &str) -> Result<Vec<u16>> {
        let [h, w] = self.size;
        let bad = |msg: String| Error::input(path, msg).item(id).field("corrected_mask");
        let n = h
            .checked_mul(w)
            .filter(|&n| n <= crate::io::coco_rle::MAX_PIXELS)
            .ok_or_else(|| bad(format!("size {h}x{w} is too large")))?;
        let unset = u32::MAX;
        let mut out = vec![unset; n];
        for (name, counts) in &self.rle {
            let value = if name == IGNORE_NAME {
                cfg.ignore_index
            } else {
                cfg.class_names
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| bad(format!("{name:?} is not a class")))? as u16
            };
            let r = crate::io::coco_rle::from_string(counts, h, w).map_err(&bad)?;
            let bits = crate::io::coco_rle::decode(&r).map_err(&bad)?;
            for (o, b) in out.iter_mut().zip(bits) {
                if b != 0 {
                    if *o != unset {
                        return Err(bad(format!("{name:?} covers pixels another value covers")));
                    }
                    *o = u32::from(value);
                }
            }
        }
        if out.contains(&unset) {
            return Err(bad("some pixels have no value".into()));
        }
        Ok(out.into_iter().map(|v| v as u16).collect())
    }
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
            (Task::Segmentation, Some(col)) if self.cfg.label_set.is_some() => {
                // The map painted from the labels file, its values as
                // 16-bit little-endian; unlabelled: no bytes.
                let set = self.cfg.label_set.as_ref();
                let dims = set
                    .and_then(|s| s.items.get(index))
                    .map_or((0, 0), |it| (it.height, it.width));
                let _ = col;
                match crate::io::labelfile::mask(self.cfg, id, index, dims) {
                    Some(m) => {
                        let bytes: Vec<u8> = m?.iter().flat_map(|v| v.to_le_bytes()).collect();
                        fnv(&bytes)
                    }
                    None => fnv(b""),
                }
            }
            (Task::Segmentation, Some(col)) => fnv_file(&self.cfg.item_file(
                id,
                "mask",
                self.manifest.rows.cell(index, col),
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
    /// From a tool's export: items whose annotation came back as sent.
    pub confirmed: usize,
    /// From a tool's export: items whose annotation came back changed.
    pub relabelled: usize,
    pub file: PathBuf,
}

struct Row {
    line: u64,
    id: String,
    index: usize,
    decision: Decision,
    corrected_label: Option<String>,
    corrected_mask: Option<CorrectedMask>,
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
    let index: HashMap<&str, usize> = manifest.positions();
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
                        "line {line}: {}",
                        cfg.unknown_class("corrected_label", text)
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
            corrected_mask: None,
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

/// Import `file` into `dataset`'s decisions file: a decisions CSV, or a
/// reviewers' tool export (`.json`: Label Studio, `.xml`: CVAT;
/// [`read_tool_export`]). Nothing is written unless every row is valid.
/// `dataset` may name its `triage.toml` ([`crate::config::dataset_dir`]).
pub fn import(dataset: &Path, file: &Path) -> Result<ImportSummary> {
    let csv_path = file;
    let cfg = crate::io::load_dataset(dataset)?;
    let dataset = cfg.dir.as_path();
    let manifest = Manifest::of_dataset(&cfg)?;
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let (rows, confirmed, relabelled) = match ext.as_deref() {
        Some("json") => read_tool_export(&cfg, &manifest, file, LabelFormat::LabelStudio)?,
        Some("xml") => read_tool_export(&cfg, &manifest, file, LabelFormat::Cvat)?,
        _ => (read_decisions(&cfg, &manifest, csv_path)?, 0, 0),
    };
    let labels = crate::io::labels::class_labels_of_task(&cfg, &manifest)?;
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
            corrected_mask: row.corrected_mask.clone(),
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
        confirmed,
        relabelled,
        imported: rows.len(),
        new,
        total: records.len(),
        file: dataset.join(REVIEWS_FILE),
    })
}

/// The decisions in a reviewers' tool export: for each task (Label Studio)
/// or image (CVAT) of `path` that has an annotation, its latest
/// annotation against the item's current one: the same is `ok`
/// ("confirmed"), a changed one `error` with the new label
/// (`corrected_label`) or mask (`corrected_mask`; pixels no region covers
/// are the ignore index, as `triage export` sends every class, class 0
/// included, as a region). Tasks map to items by the `data.triage_id`
/// `triage export` wrote, else by the image's file name (its stem is an
/// id, or it ends an item's `image` cell). Categories are classes by
/// name. Returns the rows and the counts confirmed and relabelled.
fn read_tool_export(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    path: &Path,
    format: LabelFormat,
) -> Result<(Vec<Row>, usize, usize)> {
    let doc = crate::io::labelfile::parse(format, path)?;
    let at: HashMap<&str, usize> = manifest.positions();
    let by_image: HashMap<&str, usize> = match manifest.column("image") {
        Some(col) => manifest
            .rows
            .column(col)
            .enumerate()
            .map(|(i, c)| (c.trim(), i))
            .filter(|(c, _)| !c.is_empty())
            .collect(),
        None => HashMap::new(),
    };
    // The image cells' last components (the first row of each wins), for
    // a tool that keeps only the file name.
    let mut by_file_name: HashMap<&std::ffi::OsStr, usize> = HashMap::new();
    if let Some(col) = manifest.column("image") {
        for (i, c) in manifest.rows.column(col).enumerate() {
            if let Some(f) = Path::new(c.trim()).file_name() {
                by_file_name.entry(f).or_insert(i);
            }
        }
    }
    let mut class_of = Vec::with_capacity(doc.categories.len());
    for cat in &doc.categories {
        let k = cfg
            .class_names
            .iter()
            .position(|n| *n == cat.name)
            .ok_or_else(|| {
                Error::input(
                    path,
                    format!("the label {:?} is not a class of the dataset", cat.name),
                )
                .field("label")
            })?;
        class_of.push(k as u16);
    }
    let labels = crate::io::labels::class_labels_of_task(cfg, manifest)?;
    let mut rows = Vec::new();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let (mut confirmed, mut relabelled) = (0, 0);
    for (t, img) in doc.images.iter().enumerate() {
        let Some(k) = img.official else {
            continue;
        };
        let Some(ann) = img.annotations.get(k) else {
            continue;
        };
        let name = img.file_name.split(['?', '#']).next().unwrap_or("");
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let index = img
            .item
            .as_deref()
            .and_then(|id| at.get(id))
            .or_else(|| at.get(stem.as_str()))
            .or_else(|| by_image.get(name))
            .or_else(|| {
                Path::new(name)
                    .file_name()
                    .and_then(|f| by_file_name.get(f))
            })
            .copied();
        let Some(index) = index else {
            return Err(Error::input(
                path,
                format!(
                    "task {} (image {:?}) is no item of the dataset {}",
                    img.key,
                    img.file_name,
                    cfg.dir.display()
                ),
            )
            .item(img.key.clone())
            .field("image"));
        };
        let id = manifest.ids[index].to_string();
        if let Some(first) = seen.insert(index, t) {
            return Err(Error::input(
                path,
                format!(
                    "tasks {} and {} both review the item",
                    doc.images[first].key, img.key
                ),
            )
            .item(id)
            .field("image"));
        }
        let (new, dims) = match cfg.task {
            Task::Classification => match ann.tags.first() {
                Some(&c) => (ItemLabel::Class(u32::from(class_of[c])), (0, 0)),
                None => continue,
            },
            Task::Segmentation => {
                let (h, w) = (img.height, img.width);
                let painted = crate::labelset::ItemAnnotation {
                    annotator: None,
                    label: None,
                    fill: cfg.ignore_index,
                    regions: ann
                        .regions
                        .iter()
                        .map(|r| crate::labelset::Painted {
                            value: if r.crowd {
                                cfg.ignore_index
                            } else {
                                class_of[r.category]
                            },
                            counts: r.rle.counts.clone(),
                        })
                        .collect(),
                };
                let map = painted.paint(h, w).ok_or_else(|| {
                    Error::input(path, "a region does not fit its image")
                        .item(&id)
                        .field("rle")
                })?;
                (ItemLabel::Mask(map), (h, w))
            }
        };
        let current =
            crate::io::labelfile::current_label(cfg, manifest, labels.as_deref(), index, dims)?;
        let (decision, corrected_label, corrected_mask) = if current.as_ref() == Some(&new) {
            confirmed += 1;
            (Decision::Ok, None, None)
        } else {
            relabelled += 1;
            match new {
                ItemLabel::Class(c) => (
                    Decision::Error,
                    Some(cfg.class_names[c as usize].clone()),
                    None,
                ),
                ItemLabel::Mask(m) => (
                    Decision::Error,
                    None,
                    Some(CorrectedMask::from_map(cfg, &m, dims.0, dims.1)?),
                ),
            }
        };
        rows.push(Row {
            line: t as u64 + 1,
            id,
            index,
            decision,
            corrected_label,
            corrected_mask,
        });
    }
    if rows.is_empty() {
        return Err(Error::input(
            path,
            "no reviewed task: no task or image in the export has an annotation",
        ));
    }
    Ok((rows, confirmed, relabelled))
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
