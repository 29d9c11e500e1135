//! `annotations.csv`: several annotators' labels per item, beside the
//! item's own (official) `label` / `mask`, which the scores keep using.
//!
//! Columns `id`, `annotator`, and `label` (classification: a class index
//! or name) or `mask` (segmentation: a PNG label map path relative to the
//! dataset, read by the same rules as items.csv's). One row per (item,
//! annotator); an item may have any number of annotators and an annotator
//! any subset of the items.
//!
//! Optional `batch` and `annotated_at` columns give a row its own time,
//! by the rules of items.csv's ([`crate::io::campaign`]: any non-empty
//! batch name; an ISO 8601 date, or date and time, read as its calendar
//! date): a column that is there must be filled in every row. The drift
//! stage places the row by them
//! ([`crate::io::campaign::Campaign::place_annotations`]); without them a
//! row takes its item's batch.
//!
//! Refused with the file, the item (its id or row) and the field named:
//! an id not in the manifest, an empty annotator, the same (id, annotator)
//! twice, an empty `batch` or `annotated_at` cell while another row has
//! one, a date that does not parse, a class out of range or unknown, an empty mask cell, a mask path
//! that leads outside the dataset and its roots
//! ([`crate::config::DatasetRoots::check`]). The file must be a regular
//! file; it is streamed. (A mask of
//! the wrong size is refused when it is read, by the agreement stage.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::{DatasetConfig, Task};
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;

/// One item's annotation by one annotator.
#[derive(Debug, Clone, PartialEq)]
pub enum Annotation {
    /// Classification: the class.
    Label(u32),
    /// Segmentation: the mask file (resolved against the dataset).
    Mask(PathBuf),
    /// Segmentation: annotation `k` of the item in the dataset's labels
    /// file ([`crate::labelset::ItemLabels::annotations`]).
    Given(usize),
}

impl Annotation {
    /// Segmentation: item `index`'s (id `id`) map of this annotation,
    /// `dims` = the probabilities' `(H, W)`; `None` for a class label.
    pub fn mask(
        &self,
        cfg: &DatasetConfig,
        index: usize,
        id: &str,
        dims: (usize, usize),
    ) -> Result<Option<Vec<u16>>> {
        match self {
            Annotation::Label(_) => Ok(None),
            Annotation::Mask(path) => {
                crate::io::mask::read_dataset_mask(cfg, path, id, dims).map(Some)
            }
            Annotation::Given(k) => {
                let set = cfg
                    .label_set
                    .as_ref()
                    .ok_or_else(|| Error::Internal("no labels file".into()))?;
                let it = set.items.get(index).ok_or_else(|| {
                    Error::Internal(format!("no item {index} in the labels file"))
                })?;
                crate::io::labelfile::paint(cfg, it, *k, id, dims).map(Some)
            }
        }
    }
}

/// The annotations of a labels file that names at least two annotators
/// ([`crate::io::labelfile::attach`]): each item's annotation by each
/// annotator (classification: those with a tag), as `annotations.csv`
/// would give them. `None` when the dataset has no labels file or it
/// names fewer than two annotators.
pub fn from_label_set(cfg: &DatasetConfig) -> Option<Annotations> {
    let set = cfg.label_set.as_ref()?;
    if set.annotators.len() < 2 {
        return None;
    }
    let items = set
        .items
        .iter()
        .map(|it| {
            let mut v: Vec<(u32, Annotation)> = it
                .annotations
                .iter()
                .enumerate()
                .filter_map(|(k, a)| {
                    let who = a.annotator?;
                    match cfg.task {
                        Task::Classification => a.label.map(|c| (who, Annotation::Label(c))),
                        Task::Segmentation => Some((who, Annotation::Given(k))),
                    }
                })
                .collect();
            v.sort_by_key(|(a, _)| *a);
            // One annotation per annotator: the first of each.
            v.dedup_by_key(|(a, _)| *a);
            v
        })
        .collect();
    Some(Annotations {
        path: set.path.clone(),
        annotators: set.annotators.clone(),
        items,
        ..Annotations::default()
    })
}

/// The annotations of a dataset, by item.
#[derive(Debug, Clone, Default)]
pub struct Annotations {
    pub path: PathBuf,
    /// Annotator names, in order of first appearance.
    pub annotators: Vec<String>,
    /// Per item (manifest order): `(annotator, annotation)`, sorted by
    /// annotator index.
    pub items: Vec<Vec<(u32, Annotation)>>,
    /// With a `batch` or `annotated_at` column: per item, each row's time,
    /// in the order of `items`; empty without either column.
    pub times: Vec<Vec<RowTime>>,
    /// The names in the `batch` column, in order of first appearance
    /// ([`RowTime::batch`] indexes them).
    pub batch_names: Vec<String>,
    /// Which time columns the file has: `batch`, `annotated_at`.
    pub time_columns: (bool, bool),
}

/// An annotation row's own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowTime {
    /// Its `batch` (an index into [`Annotations::batch_names`]).
    pub batch: Option<u32>,
    /// Its `annotated_at` day (days since 1970-01-01).
    pub day: Option<i32>,
}

impl Annotations {
    /// Classification: item `i`'s labels, by annotator, as `(annotator,
    /// class)`.
    pub fn labels(&self, i: usize) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.items[i].iter().filter_map(|(a, x)| match x {
            Annotation::Label(c) => Some((*a, *c)),
            Annotation::Mask(_) | Annotation::Given(_) => None,
        })
    }

    /// Rows read.
    pub fn rows(&self) -> usize {
        self.items.iter().map(Vec::len).sum()
    }
}

/// Read `path` for the items of `manifest`.
pub fn load(cfg: &DatasetConfig, manifest: &Manifest, path: &Path) -> Result<Annotations> {
    let file = crate::fsx::open_text(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::input(path, e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let id_col =
        col("id").ok_or_else(|| Error::input(path, "no `id` column in the header").field("id"))?;
    let who_col = col("annotator").ok_or_else(|| {
        Error::input(path, "no `annotator` column in the header").field("annotator")
    })?;
    let (value_col, field) = match cfg.task {
        Task::Classification => (col("label"), "label"),
        Task::Segmentation => (col("mask"), "mask"),
    };
    let value_col = value_col.ok_or_else(|| {
        Error::input(path, format!("no `{field}` column in the header")).field(field)
    })?;
    let batch_col = col("batch");
    let at_col = col("annotated_at");
    let timed = batch_col.is_some() || at_col.is_some();
    let index: HashMap<&str, usize> = manifest.positions();
    let mut annotators: Vec<String> = Vec::new();
    let mut by_name: HashMap<String, u32> = HashMap::new();
    let mut items: Vec<Vec<(u32, Annotation)>> = vec![Vec::new(); manifest.len()];
    let mut times: Vec<Vec<RowTime>> = if timed {
        vec![Vec::new(); manifest.len()]
    } else {
        Vec::new()
    };
    let mut batch_names: Vec<String> = Vec::new();
    let mut batch_index: HashMap<String, u32> = HashMap::new();
    // Per time column: the first filled line, and the first empty row
    // (line, id), refused once the file is read.
    let mut filled: [Option<usize>; 2] = [None; 2];
    let mut empty: [Option<(usize, String)>; 2] = [None, None];
    for (row, rec) in reader.records().enumerate() {
        let line = row + 2;
        let rec = rec.map_err(|e| Error::input(path, e.to_string()))?;
        let id = rec.get(id_col).unwrap_or("").trim();
        let at = |msg: String, field: &str| {
            let e = Error::input(path, format!("line {line}: {msg}")).field(field.to_string());
            if id.is_empty() { e } else { e.item(id) }
        };
        let &i = index
            .get(id)
            .ok_or_else(|| at(format!("id {id:?} is not an item of the manifest"), "id"))?;
        let who = rec.get(who_col).unwrap_or("").trim();
        if who.is_empty() {
            return Err(at("empty annotator".into(), "annotator"));
        }
        let next = annotators.len() as u32;
        let a = *by_name.entry(who.to_string()).or_insert(next);
        if a == next {
            annotators.push(who.to_string());
        }
        let cell = rec.get(value_col).unwrap_or("").trim();
        let value = match cfg.task {
            Task::Classification => Annotation::Label(
                cfg.parse_class(cell)
                    .ok_or_else(|| at(cfg.unknown_class("label", cell), "label"))?,
            ),
            Task::Segmentation => {
                if cell.is_empty() {
                    return Err(at("empty mask path".into(), "mask"));
                }
                Annotation::Mask(cfg.resolve(Path::new(cell), path, Some(id), "mask")?)
            }
        };
        if items[i].iter().any(|(b, _)| *b == a) {
            return Err(at(
                format!("annotator {who:?} labels this item twice"),
                "annotator",
            ));
        }
        items[i].push((a, value));
        if timed {
            let mut time = RowTime::default();
            for (slot, col) in [batch_col, at_col].into_iter().enumerate() {
                let Some(col) = col else { continue };
                let text = rec.get(col).unwrap_or("").trim();
                if text.is_empty() {
                    if empty[slot].is_none() {
                        empty[slot] = Some((line, id.to_string()));
                    }
                    continue;
                }
                filled[slot].get_or_insert(line);
                if slot == 0 {
                    let next = batch_names.len() as u32;
                    let b = *batch_index.entry(text.to_string()).or_insert(next);
                    if b == next {
                        batch_names.push(text.to_string());
                    }
                    time.batch = Some(b);
                } else {
                    let day = crate::io::campaign::parse_day(text).map_err(|why| {
                        at(
                            format!(
                                "annotated_at {text:?} is not an ISO date \
                                 (YYYY-MM-DD, or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]): {why}"
                            ),
                            "annotated_at",
                        )
                    })?;
                    time.day = Some(day);
                }
            }
            times[i].push(time);
        }
    }
    for (slot, field) in ["batch", "annotated_at"].into_iter().enumerate() {
        if let Some((line, id)) = &empty[slot] {
            let also = match filled[slot] {
                Some(first) => format!(", while line {first} has one"),
                None => String::new(),
            };
            return Err(Error::input(
                path,
                format!(
                    "line {line}: empty {field}{also}: \
                     give every row its {field}, or leave the column out"
                ),
            )
            .item(id.clone())
            .field(field));
        }
    }
    if timed {
        // Sort each item's rows and times together, by annotator.
        for (v, t) in items.iter_mut().zip(&mut times) {
            let mut both: Vec<((u32, Annotation), RowTime)> = std::mem::take(v)
                .into_iter()
                .zip(t.iter().copied())
                .collect();
            both.sort_by_key(|((a, _), _)| *a);
            (*v, *t) = both.into_iter().unzip();
        }
    } else {
        for v in &mut items {
            v.sort_by_key(|(a, _)| *a);
        }
    }
    let time_columns = (batch_col.is_some(), at_col.is_some());
    Ok(Annotations {
        path: path.to_path_buf(),
        annotators,
        items,
        times,
        batch_names,
        time_columns,
    })
}
