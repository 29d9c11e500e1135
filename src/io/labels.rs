//! The annotated class of each classification item: from `labels.npy` or
//! the items' `label` column (an index or a class name), checked against
//! the class count.

use std::path::Path;

use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::records::UNLABELLED;

/// Classification: [`class_labels`]; segmentation: `None`.
pub fn class_labels_of_task(cfg: &DatasetConfig, manifest: &Manifest) -> Result<Option<Vec<u32>>> {
    match cfg.task {
        crate::config::Task::Classification => class_labels(cfg, manifest).map(Some),
        crate::config::Task::Segmentation => Ok(None),
    }
}

/// The class of every item, in manifest order, [`UNLABELLED`] for an item
/// without one: -1 in `labels.npy`, an empty `label` cell, or every item
/// when there is neither a `labels` input nor a `label` column. Any other
/// out-of-range or unknown label is an error naming the file, the item and
/// the field.
pub fn class_labels(cfg: &DatasetConfig, manifest: &Manifest) -> Result<Vec<u32>> {
    let c = cfg.num_classes() as i64;
    if let Some(path) = &cfg.labels {
        let mut arr = crate::io::inputs::open(cfg, path)?;
        let n = match arr.shape.as_slice() {
            [n] | [n, 1] => *n,
            s => {
                return Err(Error::input(
                    path,
                    format!("labels must have shape (N,), found {s:?}"),
                )
                .field("shape"));
            }
        };
        if n != manifest.len() {
            return Err(
                Error::input(path, format!("{n} labels but {} items", manifest.len()))
                    .field("shape"),
            );
        }
        let raw = arr.read_ints()?;
        raw.iter()
            .enumerate()
            .map(|(i, &v)| {
                if (0..c).contains(&v) {
                    Ok(v as u32)
                } else if v == -1 {
                    Ok(UNLABELLED)
                } else {
                    Err(
                        Error::input(path, format!("class id {v} out of range 0..{c}"))
                            .item(&manifest.ids[i])
                            .field("label"),
                    )
                }
            })
            .collect()
    } else {
        let items_path = cfg.items.as_deref().unwrap_or(Path::new("items.csv"));
        let Some(col) = manifest.column("label") else {
            return Ok(vec![UNLABELLED; manifest.len()]);
        };
        manifest
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                if row[col].trim().is_empty() {
                    return Ok(UNLABELLED);
                }
                cfg.parse_class(&row[col]).ok_or_else(|| {
                    Error::input(
                        items_path,
                        format!(
                            "label {:?} is neither a class index in 0..{c} nor a class name",
                            row[col]
                        ),
                    )
                    .item(&manifest.ids[i])
                    .field("label")
                })
            })
            .collect()
    }
}
