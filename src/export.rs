//! The reviewers' side of a run: `triage export` sends the review queue
//! to Label Studio or CVAT, and `triage apply` writes a new version of
//! the dataset with the reviewers' corrections
//! ([`crate::queue::review`], `reviews.jsonl`) in place.
//!
//! **Export contract.** One task per queue row (the first `--top K`), in
//! queue order, then with `--to-label` one per `to_label.jsonl` row; each
//! carries the item's image (its `image` cell joined to `--images-root`,
//! else its id), its current annotation (the label or the painted mask, as
//! the run read it) for the reviewer to correct, the model's prediction
//! (argmax), its rank, priority and reasons. The dataset is the one named
//! in the run's `report.json` (`options.dataset`) unless `--dataset` names
//! it. Files are written all or nothing, never through a link.
//!
//! **Apply contract.** `triage apply DATASET --out NEW`: `NEW` gets
//! `items.csv` (the items in order, `id`, `label` (class names) or `mask`
//! (a PNG under `masks/`), and the other columns of the items CSV), the
//! masks, and a `triage.toml` with the same classes whose `probs` and
//! `embeddings` name the original files (by absolute path, the original
//! dataset listed in `[inputs] roots`), so `triage run NEW` works at once.
//! Items whose latest decision carries a correction (`corrected_label` or
//! `corrected_mask`) get it; every other item keeps its label or mask.
//! The original dataset is only read. `NEW` must not exist or be empty.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::Task;
use crate::error::{Error, Result};
use crate::io::labelfile::{ExportItem, ExportMeta, ItemLabel};
use crate::io::manifest::Manifest;

/// The reviewers' tools `triage export` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Label Studio: a JSON task list, and `label_config.xml` beside it.
    LabelStudio,
    /// CVAT for images 1.1 XML.
    Cvat,
}

/// `triage export`'s options.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub tool: Tool,
    /// The run's `--out` directory.
    pub run_out: PathBuf,
    /// The file to write.
    pub out: PathBuf,
    /// The dataset, when not the one `report.json` names.
    pub dataset: Option<PathBuf>,
    /// Prefix of the images' paths: a URL (joined with `/`) or a directory.
    pub images_root: Option<String>,
    /// Only the first K queue rows.
    pub top: Option<usize>,
    /// Also the `to_label.jsonl` rows (unlabelled items to label).
    pub to_label: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Items written.
    pub items: usize,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// The largest `report.json` read to find the dataset, in bytes.
const MAX_REPORT_BYTES: u64 = 1 << 30;

/// The largest queue file read, in bytes.
const MAX_QUEUE_BYTES: u64 = 4 << 30;

#[derive(serde::Deserialize)]
struct Row {
    id: String,
    #[serde(default)]
    rank: usize,
    #[serde(default)]
    priority: Option<f64>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    reasons: Vec<String>,
}

fn read_rows(path: &Path, what: &str, limit: Option<usize>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let cap = limit.unwrap_or(usize::MAX);
    crate::queue::previous::for_each_line(path, MAX_QUEUE_BYTES, what, |i, line| {
        if line.trim().is_empty() || rows.len() >= cap {
            return Ok(());
        }
        let row: Row = serde_json::from_str(line)
            .map_err(|e| Error::input(path, format!("line {}: {e}", i + 1)))?;
        rows.push(row);
        Ok(())
    })?;
    Ok(rows)
}

/// The dataset a run read: `--dataset`, else `report.json`'s
/// `options.dataset`.
pub fn run_dataset(run_out: &Path, dataset: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = dataset {
        return Ok(d.to_path_buf());
    }
    let path = run_out.join("report.json");
    let text = crate::fsx::read_input_string(&path, MAX_REPORT_BYTES, "report.json")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::input(&path, e.to_string()))?;
    v.pointer("/options/dataset")
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty() && *d != "(arrays)")
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::input(
                &path,
                "no dataset directory (options.dataset): pass --dataset DATASET",
            )
            .field("options.dataset")
        })
}

fn join_root(root: Option<&str>, rel: &str) -> String {
    match root {
        None => rel.to_string(),
        Some(r) if r.contains("://") => {
            format!(
                "{}/{}",
                r.trim_end_matches('/'),
                rel.trim_start_matches('/')
            )
        }
        Some(r) => Path::new(r).join(rel).to_string_lossy().into_owned(),
    }
}

/// Write the review queue of the run in `opts.run_out` for `opts.tool`.
pub fn export(opts: &ExportOptions) -> Result<ExportSummary> {
    let dataset = run_dataset(&opts.run_out, opts.dataset.as_deref())?;
    let cfg = crate::io::load_dataset(&dataset)?;
    let manifest = Manifest::of_dataset(&cfg)?;
    let mut rows = read_rows(&opts.run_out.join("queue.jsonl"), "queue.jsonl", opts.top)?;
    if opts.to_label {
        let path = opts.run_out.join("to_label.jsonl");
        if path.exists() {
            rows.extend(read_rows(&path, "to_label.jsonl", None)?);
        }
    }
    let at: HashMap<&str, usize> = manifest.positions();
    let labels = crate::io::labels::class_labels_of_task(&cfg, &manifest)?;
    let mut seg_probs = match cfg.task {
        Task::Segmentation => Some(crate::io::seg_probs::open(&cfg, &manifest)?),
        Task::Classification => None,
    };
    let mut class_probs = match cfg.task {
        Task::Classification => Some(crate::io::inputs::open(&cfg, &cfg.probs)?),
        Task::Segmentation => None,
    };
    let image_col = manifest.column("image");
    let queue_file = opts.run_out.join("queue.jsonl");
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(&i) = at.get(row.id.as_str()) else {
            return Err(Error::input(
                &queue_file,
                format!(
                    "the item {:?} is not in the dataset {}: was the run made from another \
                     dataset? (pass --dataset)",
                    row.id,
                    dataset.display()
                ),
            )
            .item(&row.id)
            .field("id"));
        };
        let (predicted, dims) = match (&mut seg_probs, &mut class_probs) {
            (Some(p), _) => {
                let (m, h, w) = crate::report::overlay::predicted_map(&cfg, &manifest, i, p)?;
                (ItemLabel::Mask(m), (h, w))
            }
            (None, Some(arr)) => {
                let c = cfg.num_classes();
                let probs = arr.read_probs(i * c, c)?;
                let mut best = 0usize;
                for k in 1..c {
                    if probs.get(k) > probs.get(best) {
                        best = k;
                    }
                }
                (ItemLabel::Class(best as u32), (0, 0))
            }
            (None, None) => return Err(Error::Internal("no probabilities".into())),
        };
        let current =
            crate::io::labelfile::current_label(&cfg, &manifest, labels.as_deref(), i, dims)?;
        let rel = image_col
            .map(|c| manifest.rows.cell(i, c).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| row.id.clone());
        items.push(ExportItem {
            id: row.id.clone(),
            image: join_root(opts.images_root.as_deref(), &rel),
            height: dims.0,
            width: dims.1,
            rank: row.rank,
            priority: row.priority.or(row.score).unwrap_or(0.0),
            reasons: row.reasons.clone(),
            current,
            predicted,
        });
    }
    let meta = ExportMeta {
        task: cfg.task,
        class_names: cfg.class_names.clone(),
        ignore_index: cfg.ignore_index,
    };
    let dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = opts
        .out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("--out {} names no file", opts.out.display())))?
        .to_string_lossy()
        .into_owned();
    let mut out = crate::io::atomic::AtomicOutputs::new(&dir);
    let mut files = vec![opts.out.clone()];
    match opts.tool {
        Tool::LabelStudio => {
            let bytes = crate::io::labelfile::labelstudio::write(&meta, &items)?;
            out.write(&name, |w| w.write_all(&bytes))?;
            let config = crate::io::labelfile::labelstudio::label_config(&meta);
            out.write(LABEL_CONFIG, |w| w.write_all(config.as_bytes()))?;
            files.push(dir.join(LABEL_CONFIG));
        }
        Tool::Cvat => {
            let bytes = crate::io::labelfile::cvat::write(&meta, &items)?;
            out.write(&name, |w| w.write_all(&bytes))?;
        }
    }
    out.commit()?;
    Ok(ExportSummary {
        items: items.len(),
        files,
    })
}

/// The Label Studio labelling config written beside the tasks.
pub const LABEL_CONFIG: &str = "label_config.xml";

/// What `triage apply` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplySummary {
    /// Items written.
    pub items: usize,
    /// Of those, items whose label or mask a decision replaced.
    pub corrected: usize,
    /// The new dataset's directory.
    pub out: PathBuf,
}

/// A mask's file name in the new dataset: `masks/<id>.png` when the id is
/// a plain file name, else `masks/item<row>.png`.
fn mask_name(id: &str, row: usize) -> String {
    let plain = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        format!("masks/{id}.png")
    } else {
        format!("masks/item{row}.png")
    }
}

/// A label map as a grayscale PNG: 8 bits when every value fits, else 16.
fn png_bytes(map: &[u16], h: usize, w: usize) -> Result<Vec<u8>> {
    let wide = map.iter().any(|&v| v > 255);
    let mut out = Vec::new();
    let enc_err = |e: png::EncodingError| Error::Internal(format!("PNG encoding: {e}"));
    {
        let mut enc = png::Encoder::new(
            &mut out,
            u32::try_from(w).map_err(|_| Error::Internal("width".into()))?,
            u32::try_from(h).map_err(|_| Error::Internal("height".into()))?,
        );
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(if wide {
            png::BitDepth::Sixteen
        } else {
            png::BitDepth::Eight
        });
        let mut writer = enc.write_header().map_err(enc_err)?;
        let data: Vec<u8> = if wide {
            map.iter().flat_map(|v| v.to_be_bytes()).collect()
        } else {
            map.iter().map(|&v| v as u8).collect()
        };
        writer.write_image_data(&data).map_err(enc_err)?;
    }
    Ok(out)
}

/// A TOML string (basic string, escaped).
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `triage apply DATASET --out NEW` (see the module doc). `dataset` may
/// name its `triage.toml` ([`crate::config::dataset_dir`]).
pub fn apply(dataset: &Path, out_dir: &Path) -> Result<ApplySummary> {
    let cfg = crate::io::load_dataset(dataset)?;
    let dataset = cfg.dir.as_path();
    if cfg.memory.is_some() {
        return Err(Error::Usage("apply needs a dataset directory".into()));
    }
    match std::fs::symlink_metadata(out_dir) {
        Ok(md) if md.is_dir() => {
            let empty = std::fs::read_dir(out_dir)
                .map_err(|e| Error::io(out_dir, e))?
                .next()
                .is_none();
            if !empty {
                return Err(Error::Usage(format!(
                    "--out {} is not empty: apply writes a new dataset into a new or empty directory",
                    out_dir.display()
                )));
            }
        }
        Ok(_) => {
            return Err(Error::Usage(format!(
                "--out {} exists and is not a directory",
                out_dir.display()
            )));
        }
        Err(_) => {}
    }
    crate::output::check_out(out_dir, &cfg)?;
    let manifest = Manifest::of_dataset(&cfg)?;
    let reviews_path = dataset.join(crate::queue::review::REVIEWS_FILE);
    let reviews = crate::queue::review::load(dataset)?.unwrap_or_default();
    let mut fixes: HashMap<&str, &crate::queue::review::ReviewRecord> = HashMap::new();
    for r in &reviews {
        if r.corrected_label.is_some() || r.corrected_mask.is_some() {
            fixes.insert(r.id.as_str(), r);
        } else {
            fixes.remove(r.id.as_str());
        }
    }
    let labels = crate::io::labels::class_labels_of_task(&cfg, &manifest)?;
    let mut seg_probs = match cfg.task {
        Task::Segmentation => Some(crate::io::seg_probs::open(&cfg, &manifest)?),
        Task::Classification => None,
    };
    // Columns carried over: all but id and the label / mask column.
    let label_col = match cfg.task {
        Task::Classification => "label",
        Task::Segmentation => "mask",
    };
    let carried: Vec<usize> = if cfg.label_set.is_some() && cfg.items.is_none() {
        manifest.column("image").into_iter().collect()
    } else {
        manifest
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_str() != "id" && c.as_str() != label_col)
            .map(|(j, _)| j)
            .collect()
    };
    let original = cfg.dir.canonicalize().map_err(|e| Error::io(&cfg.dir, e))?;
    let mut out = crate::io::atomic::AtomicOutputs::new(out_dir);
    let mut table: Vec<Vec<String>> = Vec::with_capacity(manifest.len());
    let mut corrected = 0;
    for i in 0..manifest.len() {
        let id = &manifest.ids[i];
        let fix = fixes.get(id);
        let cell = match cfg.task {
            Task::Classification => match fix.and_then(|r| r.corrected_label.clone()) {
                Some(name) => {
                    corrected += 1;
                    name
                }
                None => labels
                    .as_ref()
                    .and_then(|l| l.get(i).copied())
                    .filter(|&c| c != UNLABELLED_CLASS)
                    .map_or_else(String::new, |c| cfg.class_names[c as usize].clone()),
            },
            Task::Segmentation => {
                let probs = seg_probs
                    .as_mut()
                    .ok_or_else(|| Error::Internal("no probabilities".into()))?;
                let (_, _, h, w) = probs.item(i, id)?;
                let map = match fix.and_then(|r| r.corrected_mask.as_ref()) {
                    Some(m) => {
                        if m.size != [h, w] {
                            return Err(Error::input(
                                &reviews_path,
                                format!(
                                    "the corrected mask is {}x{} but the probabilities are {h}x{w}",
                                    m.size[0], m.size[1]
                                ),
                            )
                            .item(id)
                            .field("corrected_mask"));
                        }
                        corrected += 1;
                        Some(m.to_map(&cfg, &reviews_path, id)?)
                    }
                    None => {
                        match crate::io::labelfile::current_label(&cfg, &manifest, None, i, (h, w))?
                        {
                            Some(ItemLabel::Mask(m)) => Some(m),
                            _ => None,
                        }
                    }
                };
                match map {
                    Some(map) => {
                        let name = mask_name(id, i);
                        let bytes = png_bytes(&map, h, w)?;
                        out.write(&name, |wr| wr.write_all(&bytes))?;
                        name
                    }
                    None => String::new(),
                }
            }
        };
        let mut row = vec![id.to_string(), cell];
        row.extend(carried.iter().map(|&j| {
            let v = manifest.rows.cell(i, j).trim();
            // Paths stay valid from the new directory: absolute, inside
            // the original dataset (a root of the new one).
            if manifest.columns[j] == "image" && !v.is_empty() && Path::new(v).is_relative() {
                original.join(v).to_string_lossy().into_owned()
            } else {
                manifest.rows.cell(i, j).to_string()
            }
        }));
        table.push(row);
    }
    let mut header = vec!["id".to_string(), label_col.to_string()];
    header.extend(carried.iter().map(|&j| manifest.columns[j].clone()));
    let mut csv_bytes = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut csv_bytes);
        w.write_record(&header)
            .and_then(|()| table.iter().try_for_each(|r| w.write_record(r)))
            .map_err(|e| Error::Internal(format!("CSV: {e}")))?;
        w.flush()
            .map_err(|e| Error::io(out_dir.join("items.csv"), e))?;
    }
    out.write("items.csv", |w| w.write_all(&csv_bytes))?;
    let abs = |p: &Path| -> Result<String> {
        let real = p.canonicalize().map_err(|e| Error::io(p, e))?;
        Ok(toml_str(&real.to_string_lossy()))
    };
    let mut toml = String::new();
    toml.push_str(&format!(
        "# Written by `triage apply {}`: the dataset with the reviewers' corrections.\n",
        dataset.display()
    ));
    toml.push_str(&format!("task = \"{}\"\n", cfg.task.name()));
    let names: Vec<String> = cfg.class_names.iter().map(|n| toml_str(n)).collect();
    toml.push_str(&format!("classes = [{}]\n", names.join(", ")));
    if cfg.task == Task::Segmentation {
        toml.push_str(&format!("ignore_index = {}\n", cfg.ignore_index));
    }
    toml.push_str("\n[inputs]\nitems = \"items.csv\"\n");
    toml.push_str(&format!("probs = {}\n", abs(&cfg.probs)?));
    if let Some(e) = &cfg.embeddings {
        toml.push_str(&format!("embeddings = {}\n", abs(e)?));
    }
    if cfg.probs_layout == crate::config::ProbsLayout::Nhwc {
        toml.push_str("probs_layout = \"nhwc\"\n");
    }
    if let Some(k) = &cfg.probs_key {
        toml.push_str(&format!("probs_key = {}\n", toml_str(k)));
    }
    let mut roots = vec![toml_str(&original.to_string_lossy())];
    roots.extend(
        cfg.roots
            .extra
            .iter()
            .map(|r| toml_str(&r.to_string_lossy())),
    );
    toml.push_str(&format!("roots = [{}]\n", roots.join(", ")));
    out.write(crate::config::MANIFEST, |w| w.write_all(toml.as_bytes()))?;
    out.commit()?;
    Ok(ApplySummary {
        items: manifest.len(),
        corrected,
        out: out_dir.to_path_buf(),
    })
}

const UNLABELLED_CLASS: u32 = crate::records::UNLABELLED;
