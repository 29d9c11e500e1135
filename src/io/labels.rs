//! The annotated class of each classification item: from `labels.npy` or
//! the items' `label` column (an index or a class name), checked against
//! the class count.

use std::path::Path;

use crate::config::{DatasetConfig, class_range};
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
/// the field; so is a manifest without a `label` column whose header has a
/// column that looks like one ([`LABEL_LOOKALIKES`]) with a value in it.
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
                    Err(Error::input(
                        path,
                        format!(
                            "class id {v} out of range {} (-1 marks an unlabelled item)",
                            class_range(c as usize)
                        ),
                    )
                    .item(&manifest.ids[i])
                    .field("label"))
                }
            })
            .collect()
    } else {
        let items_path = cfg.items.as_deref().unwrap_or(Path::new("items.csv"));
        let Some(col) = manifest.column("label") else {
            if let Some(err) = lookalike_label_column(manifest, items_path) {
                return Err(err);
            }
            return Ok(vec![UNLABELLED; manifest.len()]);
        };
        manifest
            .rows
            .column(col)
            .enumerate()
            .map(|(i, cell)| {
                if cell.trim().is_empty() {
                    return Ok(UNLABELLED);
                }
                cfg.parse_class(cell).ok_or_else(|| {
                    Error::input(items_path, cfg.unknown_class("label", cell))
                        .item(&manifest.ids[i])
                        .field("label")
                })
            })
            .collect()
    }
}

/// Column names (compared case-insensitively) that hold the labels in
/// someone's items table but are not `triage`'s `label`: a manifest that
/// has one of them (with a value in it) and no `label` column is refused,
/// not read as unlabelled.
pub const LABEL_LOOKALIKES: &[&str] = &[
    "label",
    "labels",
    "label_id",
    "target",
    "class",
    "y",
    "category",
    "gt",
    "ground_truth",
    "annotation",
];

/// The error for a manifest without a `label` column that has a column
/// named like one ([`LABEL_LOOKALIKES`]) holding at least one value: it
/// names the column and says to rename it. `None` when there is no such
/// column (or it is empty throughout: nothing would be read from it).
fn lookalike_label_column(manifest: &Manifest, items_path: &Path) -> Option<Error> {
    let (col, name) = manifest.columns.iter().enumerate().find(|(j, name)| {
        let folded = name.trim().to_lowercase();
        LABEL_LOOKALIKES.contains(&folded.as_str())
            && manifest.rows.column(*j).any(|c| !c.trim().is_empty())
    })?;
    let filled = manifest
        .rows
        .column(col)
        .filter(|c| !c.trim().is_empty())
        .count();
    Some(
        Error::input(
            items_path,
            format!(
                "no `label` column, but a `{name}` column ({filled} of {} items filled): \
                 triage reads each item's class from a column named exactly `label`; rename \
                 `{name}` to `label` in the header (triage.toml has no setting for the \
                 column's name), or rename it to something else if it does not hold the \
                 labels",
                manifest.len()
            ),
        )
        .field(name.clone()),
    )
}

/// When no item is labelled (`labels` all [`UNLABELLED`], at least one
/// item): the warning to print, without the `triage: warning: ` prefix,
/// naming where the labels were looked for and where to give them. The run
/// goes on: its review queue is empty and every item is ranked for
/// labelling. `None` when some item is labelled.
pub fn none_labelled(cfg: &DatasetConfig, manifest: &Manifest, labels: &[u32]) -> Option<String> {
    if labels.is_empty() || labels.iter().any(|&l| l != UNLABELLED) {
        return None;
    }
    let (file, why, fix) = if let Some(path) = &cfg.labels {
        let file = path.display().to_string();
        let fix = format!("as class ids in {file}");
        (file, "every value is -1", fix)
    } else if cfg.memory.is_some() {
        (
            "the arrays".to_string(),
            "no `labels` were given",
            "as `labels`".to_string(),
        )
    } else if let Some(set) = &cfg.label_set {
        let file = set.path.display().to_string();
        let fix = format!("as class tags in {file}");
        (file, "no image has a class tag", fix)
    } else {
        let file = cfg.items_file().display().to_string();
        match manifest.column("label") {
            Some(_) => {
                let fix = format!("in the `label` column of {file}");
                (file, "every `label` cell is empty", fix)
            }
            None => {
                let fix = format!(
                    "in a `label` column of {file} (a class index or name), or as \
                     `labels = \"labels.npy\"` in triage.toml's [inputs]"
                );
                (file, "no `label` column", fix)
            }
        }
    };
    Some(format!(
        "no item in {file} is labelled ({why}): the review queue is empty and every item is \
         ranked for labelling (to_label.jsonl); to review the labels, give them {fix}"
    ))
}
