//! `report.html`: one self-contained page (inline CSS, inline SVG charts, no
//! scripts, no network) plus PNG overlays under `overlays/`.
//!
//! It is built from the typed records of [`crate::schema`] (the final
//! `report.json`, the head of `queue.jsonl`, the `clusters.jsonl` rows) and
//! the dataset description, so it depends on nothing inside the pipeline. Optional
//! row fields (`status`, `consensus_label`, `cluster`) and report sections
//! (`views`, `review`, `previous`) are shown when present.

pub mod drift;
pub mod escape;
pub mod history;
pub mod html;
pub mod overlay;
pub mod svg;

use std::collections::HashMap;

use crate::config::{DatasetConfig, Task};
use crate::io::manifest::Manifest;
use crate::io::npy::NpyArray;
use crate::schema::{ClusterRow, QueueRow, Report};

/// Items shown in the top gallery.
pub const GALLERY_TOP: usize = 12;
/// Queue rows shown in the table.
pub const TABLE_ROWS: usize = 100;
/// Conflicting clusters shown.
pub const MAX_CLUSTERS: usize = 12;
/// At most this many overlay / image files are written per run.
pub const MAX_OVERLAYS: usize = 24;
/// Folder (inside the output directory) of the overlay PNGs.
pub const OVERLAY_DIR: &str = "overlays";

/// What the page is built from.
pub struct Inputs<'a> {
    pub cfg: &'a DatasetConfig,
    pub manifest: &'a Manifest,
    /// The final `report.json`.
    pub report: &'a Report,
    /// The head of `queue.jsonl` (at least [`TABLE_ROWS`] rows when the
    /// queue has them), in rank order.
    pub queue: &'a [QueueRow<'a>],
    /// The `clusters.jsonl` rows, when the dataset has embeddings.
    pub clusters: Option<&'a [ClusterRow]>,
    /// Names of the per-item scores, in queue-file order.
    pub score_names: Vec<&'static str>,
    /// The finite values of one score over every item (one histogram's input;
    /// called once per name, so only one score's values are held at a time).
    pub score_values: &'a dyn Fn(&str) -> Vec<f64>,
    /// Predicted class maps kept while scoring (segmentation, CPU backend);
    /// an overlay whose item is not among them reads the item again.
    pub preds: Option<&'a overlay::PredMaps>,
    /// Segmentation with annotations: the items drawn with every
    /// annotator's outline.
    pub annotator_items: &'a [AnnotatedItem],
    /// With unlabelled items: the head of `to_label.jsonl`, in rank order.
    pub to_label: &'a [ToLabelRow],
}

/// A row of the page's "To label next" table.
#[derive(Debug, Clone)]
pub struct ToLabelRow {
    pub rank: usize,
    pub id: String,
    pub score: Option<f64>,
    pub predicted: String,
    pub reasons: Vec<String>,
}

/// A segmentation item drawn with its annotators' outlines: its row, its
/// size, and `(annotator, mask file)` in the item's annotator order.
#[derive(Debug, Clone)]
pub struct AnnotatedItem {
    pub index: usize,
    pub dims: (usize, usize),
    pub masks: Vec<(String, crate::io::annotations::Annotation)>,
}

/// Items drawn with their annotators' outlines, at most.
pub const MAX_ANNOTATED: usize = 8;

/// The key of item `id`'s own picture in the visuals.
pub fn visual_key(id: &str) -> String {
    format!("item:{id}")
}

/// The key of item `id`'s annotator overlay in the visuals: never another
/// item's [`visual_key`], whatever the ids (the prefixes differ).
pub fn annotators_key(id: &str) -> String {
    format!("annotators:{id}")
}

/// How long the page and the overlays took.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageTimes {
    /// Rendering and writing `report.html`.
    pub page: std::time::Duration,
    /// Drawing, encoding and writing the overlay PNGs.
    pub overlays: std::time::Duration,
}

/// Files to write: `(path relative to the output directory, bytes)`.
pub type Files = Vec<(String, Vec<u8>)>;

/// How an item is pictured in a gallery.
#[derive(Debug, Clone)]
pub enum Visual {
    /// A PNG under `overlays/` (relative path).
    Png(String),
    /// An inline SVG (classification items without an image).
    Svg(String),
    /// Nothing could be drawn; the reason.
    None(String),
}

/// Ids pictured in the galleries, in order: the top of the queue, then the
/// members of conflicting clusters.
pub fn gallery_ids(queue: &[QueueRow<'_>], clusters: Option<&[ClusterRow]>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let mut push = |id: &str| {
        if !ids.iter().any(|x| x == id) {
            ids.push(id.to_string());
        }
    };
    for row in queue.iter().take(GALLERY_TOP) {
        push(&row.id);
    }
    for c in conflicting(clusters) {
        for m in &c.members {
            push(&m.id);
        }
    }
    ids
}

/// Conflicting cluster rows (at most [`MAX_CLUSTERS`]).
pub fn conflicting(clusters: Option<&[ClusterRow]>) -> Vec<&ClusterRow> {
    clusters
        .unwrap_or(&[])
        .iter()
        .filter(|c| c.conflict)
        .take(MAX_CLUSTERS)
        .collect()
}

/// Draw every gallery item's picture (at most [`MAX_OVERLAYS`] files).
/// A picture that cannot be drawn is reported, never fatal.
fn visuals(inp: &Inputs<'_>) -> (HashMap<String, Visual>, Files) {
    let cfg = inp.cfg;
    let ids = gallery_ids(inp.queue, inp.clusters);
    // Where the gallery's few ids are in the manifest: one scan, no map of
    // every id.
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let index: HashMap<&str, usize> = inp
        .manifest
        .ids
        .iter()
        .enumerate()
        .filter(|(_, id)| wanted.contains(id))
        .map(|(i, id)| (id, i))
        .collect();
    let mut stacked = if crate::io::inputs::probs_dir(cfg) {
        None
    } else {
        crate::io::inputs::open(cfg, &cfg.probs).ok()
    };
    let logits = inp.report.options.logits;
    let mut out = HashMap::new();
    let mut files = Vec::new();
    if cfg.task == Task::Segmentation {
        // Overlays are independent: draw them in parallel, each from the
        // prediction map kept while scoring, or else by reading its item
        // once more (never the whole dataset).
        use rayon::prelude::*;
        let mut todo = Vec::new();
        for id in ids {
            match index.get(id.as_str()) {
                None => {
                    out.insert(visual_key(&id), Visual::None("not in the manifest".into()));
                }
                Some(_) if todo.len() >= MAX_OVERLAYS => {
                    out.insert(visual_key(&id), Visual::None("overlay budget spent".into()));
                }
                Some(&i) => todo.push((id, i)),
            }
        }
        let preds = inp.preds;
        let drawn: Vec<(String, String, crate::Result<Vec<u8>>)> = todo
            .into_par_iter()
            .map(|(id, i)| {
                let rel = format!("{OVERLAY_DIR}/{}.png", escape::file_stem(&id));
                let kept = preds.and_then(|p| p.get(i));
                // Each overlay opens the probabilities itself (in parallel).
                let img = overlay::segmentation_overlay(cfg, inp.manifest, i, None, kept);
                (id, rel, img.and_then(|img| overlay::png_bytes(&img)))
            })
            .collect();
        for (id, rel, png) in drawn {
            let visual = match png {
                Ok(png) => {
                    files.push((rel.clone(), png));
                    Visual::Png(rel)
                }
                Err(e) => Visual::None(e.to_string()),
            };
            out.insert(visual_key(&id), visual);
        }
        return (out, files);
    }
    for id in ids {
        let Some(&i) = index.get(id.as_str()) else {
            out.insert(visual_key(&id), Visual::None("not in the manifest".into()));
            continue;
        };
        let rel = format!("{OVERLAY_DIR}/{}.png", escape::file_stem(&id));
        let budget = files.len() < MAX_OVERLAYS;
        let png = budget
            .then(|| overlay::classification_image(cfg, inp.manifest, i))
            .flatten()
            .and_then(|img| overlay::png_bytes(&img).ok());
        let visual = match png {
            Some(png) => {
                files.push((rel.clone(), png));
                Visual::Png(rel)
            }
            None => top3_svg(inp, &mut stacked, i, logits),
        };
        out.insert(visual_key(&id), visual);
    }
    (out, files)
}

fn top3_svg(inp: &Inputs<'_>, arr: &mut Option<NpyArray>, i: usize, logits: bool) -> Visual {
    let Some(arr) = arr.as_mut() else {
        return Visual::None("cannot open probs".into());
    };
    let c = inp.cfg.num_classes();
    match overlay::classification_probs(arr, i, c, logits) {
        Ok(p) => {
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let top: Vec<(String, f64)> = order
                .iter()
                .take(3)
                .map(|&k| (inp.cfg.class_names[k].clone(), p[k]))
                .collect();
            let label = inp
                .queue
                .iter()
                .find(|r| r.id == inp.manifest.ids[i])
                .and_then(|r| r.label.as_deref())
                .unwrap_or("");
            Visual::Svg(svg::top_probs(&top, label))
        }
        Err(e) => Visual::None(e.to_string()),
    }
}

/// Draw the annotator overlays (in parallel), under
/// [`annotators_key`]; one that cannot be drawn is reported, never fatal.
fn annotator_visuals(inp: &Inputs<'_>, out: &mut HashMap<String, Visual>, files: &mut Files) {
    use rayon::prelude::*;
    let drawn: Vec<(String, String, crate::Result<Vec<u8>>)> = inp
        .annotator_items
        .par_iter()
        .take(MAX_ANNOTATED)
        .map(|a| {
            let id = &inp.manifest.ids[a.index];
            let rel = format!("{OVERLAY_DIR}/{}.annotators.png", escape::file_stem(id));
            let img = overlay::annotators_overlay(inp.cfg, inp.manifest, a.index, a.dims, &a.masks);
            (
                id.to_string(),
                rel,
                img.and_then(|img| overlay::png_bytes(&img)),
            )
        })
        .collect();
    for (id, rel, png) in drawn {
        let visual = match png {
            Ok(png) => {
                files.push((rel.clone(), png));
                Visual::Png(rel)
            }
            Err(e) => Visual::None(e.to_string()),
        };
        out.insert(annotators_key(&id), visual);
    }
}

/// Render the page and add it and its overlays to `files`.
pub fn write(
    files: &mut crate::io::atomic::AtomicOutputs,
    inp: &Inputs<'_>,
) -> crate::Result<PageTimes> {
    let t = std::time::Instant::now();
    let (mut vis, mut pngs) = visuals(inp);
    annotator_visuals(inp, &mut vis, &mut pngs);
    for (name, png) in &pngs {
        files.write(name, |w| w.write_all(png))?;
    }
    let overlays = t.elapsed();
    let t = std::time::Instant::now();
    let html = html::page(inp, &vis);
    files.write("report.html", |w| w.write_all(html.as_bytes()))?;
    Ok(PageTimes {
        page: t.elapsed(),
        overlays,
    })
}
