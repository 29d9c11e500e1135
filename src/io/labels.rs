//! The annotated class of each classification item: from `labels.npy` or
//! the items' `label` column (an index or a class name), checked against
//! the class count.

use std::path::Path;

use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::manifest::Manifest;
use crate::io::npy::NpyArray;

/// The class of every item, in manifest order; an out-of-range or unknown
/// label is an error naming the file, the item and the field.
pub fn class_labels(cfg: &DatasetConfig, manifest: &Manifest) -> Result<Vec<u32>> {
    let c = cfg.num_classes() as i64;
    if let Some(path) = &cfg.labels {
        let mut arr = NpyArray::open(path)?;
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
        let col = manifest.column("label").ok_or_else(|| {
            Error::input(items_path, "no `label` column and no `labels` input").field("label")
        })?;
        manifest
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
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
