//! The run's outputs: `queue.jsonl`, `queue.csv`, `report.json` and
//! `report.html` (with `overlays/`, see [`crate::report`]), written
//! through [`crate::io::atomic::AtomicOutputs::replacing_set`] so they
//! appear together or not at all, and the files of the previous run's set
//! that this run does not write (`clusters.jsonl`, overlays) go in the
//! same commit. Text cells of the CSVs are neutralised against
//! spreadsheet formulas ([`csv_text`]); `--out` never holds an input
//! ([`check_out`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::BackendInfo;
use crate::checks::Reasons;
use crate::config::{DatasetConfig, Task};
use crate::error::Result;
use crate::io::atomic::AtomicOutputs;
use crate::io::items_parquet;
use crate::io::jsonw;
use crate::io::manifest::Manifest;
use crate::priority;
use crate::queue::{QueuePlan, RowPlan};
use crate::records::{DatasetStats, ItemResult, Timings};
use crate::schema::{self, finite};
use crate::scores::Score;
use indexmap::IndexMap;

/// Keys of a queue row that carried columns may not take (a carried
/// column of one of these names is written as `item_<name>`).
const RESERVED: [&str; 17] = [
    "rank",
    "id",
    "priority",
    "reasons",
    "flags",
    "scores",
    "check_scores",
    "label",
    "predicted",
    "consensus_label",
    "in_budget",
    "spot_check",
    "review_all",
    "also_in_cluster",
    "status",
    "cluster",
    "neighbors",
];

/// A text cell of a CSV a person may open in a spreadsheet: a value that
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return is written
/// with a leading `'`, so Excel, LibreOffice and Google Sheets show it as
/// text instead of running it as a formula (OWASP's rule against CSV
/// injection). Applied to every cell that can hold data or names from
/// the input (ids, labels, class names, reasons, neighbours, carried
/// columns, header cells); not to the numbers triage formats itself
/// (rank, priority, scores, cluster), so a negative score stays a number.
/// JSON outputs keep the raw value.
pub fn csv_text(s: &str) -> std::borrow::Cow<'_, str> {
    if starts_formula(s) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// `s` begins with a character a spreadsheet reads as a formula's start.
fn starts_formula(s: &str) -> bool {
    matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// Refuse an output directory `out` that is, or contains, an input of the
/// run: the dataset directory, its `triage.toml` and every `[inputs]` file
/// (paths compared canonicalised; a part of `out` that does not exist
/// yet is resolved by its name). `--previous` and `--cache` may be `out`.
pub fn check_out(out: &Path, cfg: &DatasetConfig) -> Result<()> {
    let out_real = canonical_or_planned(out);
    let inputs: Vec<PathBuf> = match &cfg.memory {
        // Arrays in memory name no file but those given as file ranges.
        Some(_) => crate::io::inputs::memory_files(cfg)
            .into_iter()
            .chain(cfg.annotations.clone())
            .collect(),
        None => [
            Some(cfg.dir.clone()),
            Some(cfg.dir.join(crate::config::MANIFEST)),
            cfg.items.clone(),
            Some(cfg.probs.clone()),
            cfg.labels.clone(),
            cfg.embeddings.clone(),
            cfg.annotations.clone(),
            cfg.labels_file.as_ref().map(|l| l.path.clone()),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    for input in inputs {
        let Ok(real) = std::fs::canonicalize(&input) else {
            continue;
        };
        if real.starts_with(&out_real) {
            let how = if real == out_real { "is" } else { "contains" };
            return Err(crate::Error::Usage(format!(
                "--out {} {how} an input of the run ({}); the outputs would overwrite it: choose another output directory",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// `path` canonicalised: its longest existing ancestor resolved, the
/// rest appended by name (`..` taken off lexically, as creating it would).
fn canonical_or_planned(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path))
    };
    let mut base = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(base) {
            let mut p = real;
            for c in rest.iter().rev() {
                match c {
                    std::path::Component::ParentDir => {
                        p.pop();
                    }
                    std::path::Component::CurDir => {}
                    c => p.push(c),
                }
            }
            return p;
        }
        match (base.parent(), base.components().next_back()) {
            (Some(up), Some(last)) => {
                rest.push(last);
                base = up;
            }
            _ => return abs,
        }
    }
}

/// `report.json` before the write timings are known.
pub struct Report(schema::Report);

/// The sections of `report.json` that stages before the writer built.
pub struct Sections<'a> {
    /// The run's options as recorded.
    pub options: schema::Options,
    /// What the priority ranks by (`--rank-by`).
    pub rank: priority::RankBy,
    pub backend: &'a BackendInfo,
    /// The neighbour stage's, with embeddings.
    pub duplicates: Option<schema::Duplicates>,
    /// The agreement stage's, with annotations.
    pub agreement: Option<schema::AgreementSection>,
    pub plan: &'a QueuePlan,
    /// `checks`.
    pub checks: IndexMap<String, schema::CheckSummary>,
    /// `score_cache`, with `--cache`.
    pub score_cache: Option<schema::ScoreCache>,
    /// `selection`, with unlabelled items.
    pub selection: Option<schema::Selection>,
    /// `drift`, with a time column.
    pub drift: Option<schema::Drift>,
    /// `started_at`: when the run started (`None` with `--deterministic`).
    pub started_at: Option<String>,
    /// With `--history`: the earlier nights, in time order
    /// ([`crate::io::history::load`]), and this run's name (its `--out`
    /// directory's).
    pub history: Option<(Vec<crate::io::history::Night>, String)>,
}

impl Report {
    /// Summarise the run: the pooled scores of `stats` and the sections of
    /// the other stages.
    pub fn build(
        cfg: &DatasetConfig,
        items: &[ItemResult],
        stats: &DatasetStats,
        sections: Sections<'_>,
    ) -> Report {
        let c = cfg.num_classes();
        let conf = &stats.confusion;
        let total = conf.total();
        let per_class = (0..c)
            .map(|k| {
                let mut o = schema::PerClass {
                    class: k,
                    name: cfg.class_names[k].clone(),
                    support: conf.label_count(k),
                    predicted: conf.pred_count(k),
                    ..Default::default()
                };
                match cfg.task {
                    Task::Classification => {
                        let i = conf.intersection(k) as f64;
                        let ratio = |d: u64| finite((d > 0).then(|| i / d as f64));
                        o.precision = Some(ratio(conf.pred_count(k)));
                        o.recall = Some(ratio(conf.label_count(k)));
                    }
                    Task::Segmentation => {
                        o.iou = Some(finite(conf.iou(k)));
                        o.dice = Some(finite(conf.dice(k)));
                        o.boundary_iou = Some(finite(stats.bands.as_ref().and_then(|b| b.iou(k))));
                    }
                }
                o
            })
            .collect();
        let segmentation = (cfg.task == Task::Segmentation).then(|| {
            let mean_of = |score: Score| {
                finite(crate::metrics::confusion::mean_defined(
                    items.iter().map(|i| i.scores.get(score)),
                ))
            };
            schema::Segmentation {
                miou: finite(conf.mean_iou()),
                mdice: finite(conf.mean_dice()),
                mboundary_iou: finite(stats.bands.as_ref().and_then(|b| b.mean_iou())),
                mean_item_miou: mean_of(Score::Miou),
                mean_item_boundary_iou: mean_of(Score::BoundaryIou),
                ignore_index: cfg.ignore_index,
                boundary_band: "d = max(1, round(0.02 * image diagonal)) per item".into(),
            }
        });
        let plan = sections.plan;
        let bins = stats.bins.bins();
        let mut report = schema::Report {
            n_items: items.len() + sections.selection.as_ref().map_or(0, |s| s.unlabelled),
            task: cfg.task,
            num_classes: c,
            classes: cfg.class_names.clone(),
            samples: total,
            accuracy: finite((total > 0).then(|| conf.correct() as f64 / total as f64)),
            ece: finite(bins.ece()),
            mce: finite(bins.mce()),
            reliability: bins.table(),
            confusion: conf.rows(),
            per_class,
            segmentation,
            priority: priority::formula(
                cfg.task,
                sections.duplicates.is_some(),
                &sections
                    .checks
                    .iter()
                    .filter(|(name, c)| {
                        c.status == schema::CheckStatus::Ran && crate::checks::raises_priority(name)
                    })
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
                sections.rank,
            ),
            backend: sections.backend.clone(),
            options: sections.options,
            score_cache: sections.score_cache,
            started_at: sections.started_at,
            timings: None,
            duplicates: sections.duplicates,
            agreement: sections.agreement,
            queue_policy: plan.queue_policy.clone(),
            queue: plan.evidence.clone(),
            views: plan.views.clone(),
            review: plan.review.clone(),
            previous: plan.previous.clone(),
            checks: sections.checks,
            selection: sections.selection,
            memory: None,
            drift: sections.drift,
            history: None,
        };
        if let Some((earlier, run)) = sections.history {
            let mut nights: Vec<schema::Night> = earlier.iter().map(schema::Night::of).collect();
            nights.push(schema::Night::tonight(&report, run));
            report.history = Some(nights);
        }
        Report(report)
    }
}

/// Peak resident memory of this process in bytes (Linux), from
/// `/proc/self/status`'s `VmHWM`.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn carried(cfg: &DatasetConfig, manifest: &Manifest) -> Vec<(usize, String)> {
    if cfg.memory.is_some() {
        // Arrays in memory carry no columns (their `mask` column only
        // points the readers at the `masks` array).
        return Vec::new();
    }
    manifest
        .columns
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            name.as_str() != "id"
                && !(cfg.task == Task::Classification && name.as_str() == "label")
                // A labels file's `mask` column only points the readers at it.
                && !(cfg.label_set.is_some() && name.as_str() == "mask")
        })
        .map(|(j, name)| {
            let key = if RESERVED.contains(&name.as_str()) {
                format!("item_{name}")
            } else {
                name.clone()
            };
            (j, key)
        })
        .collect()
}

/// Outputs beyond the queue and report: the neighbour stage's results.
#[derive(Debug, Default)]
pub struct Extras {
    /// `clusters.jsonl` rows, when embeddings were given.
    pub clusters: Option<Vec<schema::ClusterRow>>,
    /// Leave out run-dependent fields (timings, memory) for byte-identical output.
    pub deterministic: bool,
    /// Predicted class maps kept while scoring, for the overlays.
    pub preds: Option<crate::report::overlay::PredMaps>,
    /// Segmentation with annotations: the lowest-agreement items to draw
    /// with every annotator's outline (`report.html` Annotators).
    pub annotator_items: Vec<crate::report::AnnotatedItem>,
    /// With unlabelled items: the selection for labelling and the
    /// unlabelled items its rows point into (`to_label.jsonl`, `.csv`).
    pub to_label: Option<(Vec<ItemResult>, Vec<crate::queue::selection::ToLabel>)>,
    /// A cancelled run commits nothing: checked once more before the commit.
    pub control: crate::records::Control,
}

/// One line of `to_label.jsonl`.
#[derive(serde::Serialize)]
struct ToLabelRow<'a> {
    rank: usize,
    id: &'a str,
    /// The strategy's score (higher: label sooner; `null` for `random`).
    score: Option<f64>,
    predicted: Option<&'a str>,
    /// Its near-duplicate cluster, with embeddings.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<usize>,
    scores: serde_json::Map<String, serde_json::Value>,
    reasons: &'a [String],
}

/// The `to_label` row at `rank` (from 0) of the selection's row `r`.
fn as_row<'a>(
    cfg: &'a DatasetConfig,
    manifest: &'a Manifest,
    pool: &'a [ItemResult],
    rank: usize,
    r: &'a crate::queue::selection::ToLabel,
) -> ToLabelRow<'a> {
    let it = &pool[r.pos];
    ToLabelRow {
        rank: rank + 1,
        id: &manifest.ids[it.index],
        score: r.score.filter(|v| v.is_finite()),
        predicted: it
            .class
            .and_then(|c| cfg.class_names.get(c as usize))
            .map(String::as_str),
        cluster: it.cluster,
        // Only the scores it has: never a label-quality one.
        scores: crate::queue::scores_json(it)
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect(),
        reasons: &r.reasons,
    }
}

/// Write `to_label.jsonl` and `to_label.csv`: the selection's rows in rank
/// order (CSV columns `rank,id,score,predicted,cluster,reasons`, reasons
/// joined by `; `).
fn write_to_label(
    files: &mut AtomicOutputs,
    cfg: &DatasetConfig,
    manifest: &Manifest,
    pool: &[ItemResult],
    rows: &[crate::queue::selection::ToLabel],
) -> Result<()> {
    files.write("to_label.jsonl", |w| {
        for (rank, r) in rows.iter().enumerate() {
            serde_json::to_writer(&mut *w, &as_row(cfg, manifest, pool, rank, r))?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    files.write("to_label.csv", |w| {
        let mut csv = csv::Writer::from_writer(w);
        let err = std::io::Error::other;
        csv.write_record(["rank", "id", "score", "predicted", "cluster", "reasons"])
            .map_err(err)?;
        for (rank, r) in rows.iter().enumerate() {
            let row = as_row(cfg, manifest, pool, rank, r);
            csv.write_record([
                row.rank.to_string(),
                csv_text(row.id).into_owned(),
                row.score.map_or(String::new(), |v| v.to_string()),
                csv_text(row.predicted.unwrap_or("")).into_owned(),
                row.cluster.map_or(String::new(), |c| c.to_string()),
                csv_text(&row.reasons.join("; ")).into_owned(),
            ])
            .map_err(err)?;
        }
        csv.flush()
    })?;
    Ok(())
}

/// Formats the rows of a range into one buffer per output file.
type ChunkFormatter<'a, const K: usize> =
    dyn Fn(std::ops::Range<usize>, &mut [Vec<u8>; K]) -> std::io::Result<()> + Sync + 'a;

/// Format rows `0..n` in parallel chunks (each chunk into its own buffer per
/// output, by `fmt(range, bufs)`) and write the buffers to the `K` writers in
/// row order, so one pass over the rows feeds several files. Rows go in
/// windows of `2 × threads` chunks: while one window is formatted, the
/// previous one is written by another thread, and the two windows' buffers
/// are reused throughout (no page faults or regrowth after the first), so
/// memory stays bounded at any N. A write error is tagged with its writer's
/// index ([`crate::io::atomic::in_file`]): pass the first `K` writers of an
/// `AtomicOutputs::write_many`, in its order, so the error names its file.
fn write_parallel<const K: usize>(
    mut w: [&mut (dyn Write + Send); K],
    n: usize,
    fmt: &ChunkFormatter<'_, K>,
) -> std::io::Result<()> {
    use rayon::prelude::*;
    const CHUNK: usize = 1024;
    let chunks = 2 * rayon::current_num_threads().max(1);
    let window = CHUNK * chunks;
    let fill = |start: usize, bufs: &mut Vec<[Vec<u8>; K]>| -> std::io::Result<()> {
        let end = (start + window).min(n);
        bufs.resize_with(chunks, || std::array::from_fn(|_| Vec::new()));
        bufs.par_iter_mut().enumerate().try_for_each(|(k, b)| {
            b.iter_mut().for_each(Vec::clear);
            let s = start + k * CHUNK;
            if s < end {
                fmt(s..(s + CHUNK).min(end), b)?;
            }
            Ok(())
        })
    };
    let (mut ready, mut spare) = (Vec::new(), Vec::new());
    let mut start = 0;
    if n > 0 {
        fill(0, &mut ready)?;
        start = window;
    }
    while !ready.is_empty() {
        let more = start < n;
        let (written, filled) = std::thread::scope(|scope| {
            let writer = scope.spawn(|| -> std::io::Result<()> {
                for b in &ready {
                    for (k, (out, bytes)) in w.iter_mut().zip(b).enumerate() {
                        out.write_all(bytes)
                            .map_err(|e| crate::io::atomic::in_file(k, e))?;
                    }
                }
                Ok(())
            });
            let filled = if more {
                fill(start, &mut spare)
            } else {
                Ok(())
            };
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("queue writer thread panicked")));
            (written, filled)
        });
        written?;
        filled?;
        std::mem::swap(&mut ready, &mut spare);
        if !more {
            break;
        }
        start += window;
    }
    Ok(())
}

/// Write `row` as a JSON object onto `out` ([`jsonw`]): the bytes
/// `serde_json::to_vec(row)` gives (tested below), without serde's
/// token-by-token writes.
fn write_json_row(out: &mut Vec<u8>, row: &schema::QueueRow<'_>) {
    let mut o = jsonw::Obj::new(out);
    o.uint("rank", row.rank as u64);
    o.str("id", &row.id);
    o.float("priority", row.priority);
    o.bool("in_budget", row.in_budget);
    o.bool("spot_check", row.spot_check);
    o.bool("review_all", row.review_all);
    jsonw::array(o.key("also_in_cluster"), &row.also_in_cluster, |w, s| {
        jsonw::string(w, s)
    });
    if let Some(status) = &row.status {
        o.opt_str("status", status.as_deref());
    }
    jsonw::array(o.key("reasons"), &row.reasons, |w, s| jsonw::string(w, s));
    jsonw::array(o.key("flags"), &row.flags, |w, s| jsonw::string(w, s));
    if let Some(label) = &row.label {
        o.str("label", label);
    }
    if let Some(predicted) = &row.predicted {
        o.str("predicted", predicted);
    }
    if let Some(consensus) = &row.consensus_label {
        o.opt_str("consensus_label", consensus.as_deref());
    }
    {
        let mut scores = jsonw::Obj::new(o.key("scores"));
        for (k, v) in &row.scores.0 {
            scores.float(k, *v);
        }
        scores.end();
    }
    {
        let mut scores = jsonw::Obj::new(o.key("check_scores"));
        for (k, v) in &row.check_scores.0 {
            scores.float(k, *v);
        }
        scores.end();
    }
    if let Some(cluster) = row.cluster {
        o.opt_uint("cluster", cluster.map(|c| c as u64));
    }
    if let Some(neighbors) = &row.neighbors {
        jsonw::array(o.key("neighbors"), neighbors, |w, n| {
            let mut m = jsonw::Obj::new(w);
            m.str("id", &n.id);
            m.float("distance", Some(n.distance));
            m.str("label", &n.label);
            m.bool("conflict", n.conflict);
            m.end();
        });
    }
    for (k, v) in &row.carried.0 {
        o.str(k, v);
    }
    o.end();
}

/// The columns of the queue files for one run, the rows they come from,
/// and how to build a row ([`QueueColumns::row`]) and write it as a
/// `queue.jsonl` line or a `queue.csv` record.
struct QueueColumns<'a> {
    cfg: &'a DatasetConfig,
    manifest: &'a Manifest,
    /// Priority-sorted.
    items: &'a [ItemResult],
    /// The queue order (`items` indices) and each row's policy fields.
    plan: &'a QueuePlan,
    carry: &'a [(usize, String)],
    /// The items' score names (every item has the same).
    score_names: Vec<&'static str>,
    with_neighbors: bool,
    with_status: bool,
    /// Classification with annotations: a `consensus_label` column.
    with_consensus: bool,
    /// Every row's reasons, the checks' included.
    reasons: &'a Reasons<'a>,
    /// The checks that ran ([`Reasons::ran`]): each row's `check_scores`.
    checks: Vec<&'static str>,
}

impl<'a> QueueColumns<'a> {
    /// The row of rank `i + 1`: built once, then written to every output
    /// that shows it.
    fn row(&self, i: usize) -> schema::QueueRow<'a> {
        let (cfg, manifest) = (self.cfg, self.manifest);
        let p: &'a RowPlan = &self.plan.rows[i];
        let it: &'a ItemResult = &self.items[p.item()];
        let name = |k: u32| Cow::Borrowed(cfg.class_names[k as usize].as_str());
        let check_reasons = self.reasons.of(p.item(), it, &cfg.class_names);
        let policy_reasons = p.policy_reasons();
        let mut reasons = Vec::with_capacity(policy_reasons.len() + check_reasons.len());
        reasons.extend(policy_reasons.iter().map(|r| Cow::Borrowed(r.as_str())));
        reasons.extend(check_reasons.into_iter().map(Cow::Owned));
        schema::QueueRow {
            rank: i + 1,
            id: Cow::Borrowed(&manifest.ids[it.index]),
            priority: finite(Some(it.priority)),
            in_budget: p.in_budget,
            spot_check: p.spot_check,
            review_all: p.review_all,
            also_in_cluster: p
                .also_in_cluster()
                .iter()
                .map(|s| Cow::Borrowed(s.as_str()))
                .collect(),
            status: self
                .with_status
                .then(|| p.status.map(|s| Cow::Borrowed(s.as_str()))),
            reasons,
            flags: self
                .reasons
                .flagged_by(it)
                .into_iter()
                .map(Cow::Borrowed)
                .collect(),
            label: it.row.as_ref().map(|f| name(f.label)),
            predicted: it.row.as_ref().map(|f| name(f.pred)),
            consensus_label: (self.with_consensus && it.row.is_some())
                .then(|| it.consensus.map(name)),
            scores: schema::RowScores::of(&it.scores),
            check_scores: schema::RowScores(
                self.checks
                    .iter()
                    .zip(self.reasons.score_row(it))
                    .map(|(&k, v)| (Cow::Borrowed(k), v))
                    .collect(),
            ),
            cluster: self.with_neighbors.then_some(it.cluster),
            neighbors: self.with_neighbors.then(|| {
                it.neighbors()
                    .iter()
                    .map(|n| schema::RowNeighbor {
                        id: Cow::Borrowed(&manifest.ids[n.index]),
                        // `json!(f32)` widened to f64 before printing; keep those digits.
                        distance: n.distance as f64,
                        label: Cow::Borrowed(n.label.as_str()),
                        conflict: n.conflict,
                    })
                    .collect()
            }),
            carried: schema::Carried(
                self.carry
                    .iter()
                    .map(|(j, key)| {
                        (
                            Cow::Borrowed(key.as_str()),
                            Cow::Borrowed(manifest.rows.cell(it.index, *j)),
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// The header: rank, id, priority, reasons, flags, (label, predicted), the
    /// scores, the checks' scores (`check_<name>`), (cluster, neighbors), the
    /// queue flags, (status), carried columns.
    fn header(&self) -> Vec<String> {
        let mut header: Vec<String> = ["rank", "id", "priority", "reasons", "flags"]
            .map(String::from)
            .to_vec();
        if self.cfg.task == Task::Classification {
            header.extend(["label", "predicted"].map(String::from));
            if self.with_consensus {
                header.push("consensus_label".into());
            }
        }
        header.extend(self.score_names.iter().map(|k| k.to_string()));
        header.extend(self.checks.iter().map(|k| format!("check_{k}")));
        if self.with_neighbors {
            header.extend(["cluster", "neighbors"].map(String::from));
        }
        header
            .extend(["in_budget", "spot_check", "review_all", "also_in_cluster"].map(String::from));
        if self.with_status {
            header.push("status".into());
        }
        header.extend(self.carry.iter().map(|(_, k)| k.clone()));
        header
    }
}

/// `items.parquet` ([`items_parquet`]): every item, the queue's (`cols`)
/// and the unlabelled ones (`pool`), in items order (`ItemResult::index`),
/// with its rank in the queue (`null` for an unlabelled item), its
/// priority, label and prediction, a flag per check that ran and the
/// queue's score columns. [`ItemsParquet::new`] lays it out;
/// [`ItemsParquet::write`] writes it (on its own thread, beside the queue
/// files).
struct ItemsParquet<'a> {
    cols: &'a QueueColumns<'a>,
    pool: &'a [ItemResult],
    layout: items_parquet::Layout,
    score_of: Vec<Option<Score>>,
    /// By position in `cols.items`: the 1-based rank in the queue (0: not
    /// in it).
    rank: Vec<u32>,
    /// By row in the items file: where the item is (`< items.len()`: that
    /// position in `cols.items`, else in `pool` after them; `u32::MAX`:
    /// neither).
    at: Vec<u32>,
}

impl<'a> ItemsParquet<'a> {
    /// Two tables of 4 bytes an item (`items.len() + pool.len() < 2^32` is
    /// checked) instead of a row list.
    fn new(cols: &'a QueueColumns<'a>, pool: &'a [ItemResult]) -> Result<Self> {
        let (cfg, manifest, items) = (cols.cfg, cols.manifest, cols.items);
        let layout = items_parquet::Layout {
            classification: cfg.task == Task::Classification,
            checks: cols.checks.clone(),
            scores: cols.score_names.clone(),
        };
        let score_of = layout.scores.iter().map(|n| Score::from_name(n)).collect();
        let n = items.len() + pool.len();
        let narrow = |v: usize| {
            u32::try_from(v).map_err(|_| {
                crate::Error::Internal(format!("{n} items: more than items.parquet's 2^32 rows"))
            })
        };
        let mut rank = vec![0u32; items.len()];
        for (i, p) in cols.plan.rows.iter().enumerate() {
            if let Some(r) = rank.get_mut(p.item()) {
                *r = narrow(i + 1)?;
            }
        }
        let mut at = vec![u32::MAX; manifest.ids.len()];
        for (pos, it) in items.iter().chain(pool).enumerate() {
            if let Some(a) = at.get_mut(it.index) {
                *a = narrow(pos)?;
            }
        }
        Ok(ItemsParquet {
            cols,
            pool,
            layout,
            score_of,
            rank,
            at,
        })
    }

    fn write(&self, w: &mut (dyn Write + Send)) -> std::io::Result<()> {
        let (cfg, manifest, items) = (self.cols.cfg, self.cols.manifest, self.cols.items);
        let (pool, layout) = (self.pool, &self.layout);
        let name = |k: u32| cfg.class_names.get(k as usize).map(String::as_str);
        items_parquet::write(
            w,
            layout,
            self.at
                .iter()
                .filter(|&&a| a != u32::MAX)
                .map(|&a| {
                    let a = a as usize;
                    match items.get(a) {
                        Some(it) => (it, u64::from(self.rank[a])),
                        None => (&pool[a - items.len()], 0),
                    }
                })
                .map(|(it, rank)| items_parquet::ItemRow {
                    id: &manifest.ids[it.index],
                    rank: (rank > 0).then_some(rank),
                    priority: Some(it.priority),
                    label: it.row.as_ref().and_then(|f| name(f.label)),
                    // An unlabelled item's class is its predicted class.
                    predicted: match (&it.row, it.unlabelled) {
                        (Some(f), _) => name(f.pred),
                        (None, true) if layout.classification => it.class.and_then(name),
                        (None, _) => None,
                    },
                    unlabelled: it.unlabelled,
                    flags: self.cols.reasons.flag_row(it),
                    check_scores: self.cols.reasons.score_row(it),
                    scores: self
                        .score_of
                        .iter()
                        .map(|s| s.and_then(|s| it.scores.get(s)))
                        .collect(),
                }),
        )
    }
}

/// Write `row`'s `queue.csv` record in the columns of
/// [`QueueColumns::header`], field by field through one reused `scratch`
/// buffer; floats in their shortest round-trip form, as in `queue.jsonl`
/// (a `null` is an empty cell); text cells through [`csv_text`]'s rule.
fn write_csv_row<W: Write>(
    csv: &mut csv::Writer<W>,
    scratch: &mut String,
    row: &schema::QueueRow<'_>,
) -> std::io::Result<()> {
    let mut floats = zmij::Buffer::new();
    // `text`: a cell that may hold data ([`csv_text`]); the numbers and
    // flags triage formats itself are not.
    let mut field = |text: bool, f: &mut dyn FnMut(&mut String)| -> std::io::Result<()> {
        scratch.clear();
        f(scratch);
        if text && starts_formula(scratch) {
            scratch.insert(0, '\'');
        }
        csv.write_field(scratch.as_bytes())
            .map_err(std::io::Error::other)
    };
    let join = |b: &mut String, parts: &[Cow<'_, str>]| {
        for (k, part) in parts.iter().enumerate() {
            if k > 0 {
                b.push_str("; ");
            }
            b.push_str(part);
        }
    };
    field(false, &mut |b| {
        let _ = write!(b, "{}", row.rank);
    })?;
    field(true, &mut |b| b.push_str(&row.id))?;
    field(false, &mut |b| {
        if let Some(x) = row.priority {
            b.push_str(floats.format(x));
        }
    })?;
    field(true, &mut |b| join(b, &row.reasons))?;
    field(false, &mut |b| join(b, &row.flags))?;
    if let Some(label) = &row.label {
        field(true, &mut |b| b.push_str(label))?;
    }
    if let Some(predicted) = &row.predicted {
        field(true, &mut |b| b.push_str(predicted))?;
    }
    if let Some(consensus) = &row.consensus_label {
        field(true, &mut |b| {
            b.push_str(consensus.as_deref().unwrap_or(""))
        })?;
    }
    for (_, v) in row.scores.0.iter().chain(&row.check_scores.0) {
        field(false, &mut |b| {
            if let Some(x) = v {
                b.push_str(floats.format(*x));
            }
        })?;
    }
    if let Some(cluster) = row.cluster {
        field(false, &mut |b| {
            if let Some(c) = cluster {
                let _ = write!(b, "{c}");
            }
        })?;
    }
    if let Some(neighbors) = &row.neighbors {
        field(true, &mut |b| {
            for (k, n) in neighbors.iter().enumerate() {
                if k > 0 {
                    b.push_str("; ");
                }
                let _ = write!(b, "{}@{:.4}", n.id, n.distance);
            }
        })?;
    }
    for flag in [row.in_budget, row.spot_check, row.review_all] {
        field(false, &mut |b| {
            b.push_str(if flag { "true" } else { "false" })
        })?;
    }
    field(true, &mut |b| join(b, &row.also_in_cluster))?;
    if let Some(status) = &row.status {
        field(true, &mut |b| b.push_str(status.as_deref().unwrap_or("")))?;
    }
    for (_, v) in &row.carried.0 {
        field(true, &mut |b| b.push_str(v))?;
    }
    csv.write_record(None::<&[u8]>)
        .map_err(std::io::Error::other)
}

/// `report.json` `timings`: every stage so far, and the total up to now.
fn timings_json(timings: &Timings, t0: Instant) -> schema::Timings {
    schema::Timings {
        read_s: timings.read.as_secs_f64(),
        score_s: timings.score.as_secs_f64(),
        neighbors_s: timings.neighbors.map(|d| d.as_secs_f64()),
        queue_s: timings.queue.as_secs_f64(),
        write_s: timings.write.as_secs_f64(),
        report_s: timings.report.as_secs_f64(),
        overlays_s: timings.overlays.as_secs_f64(),
        total_s: t0.elapsed().as_secs_f64(),
        checks_s: timings
            .checks
            .iter()
            .map(|(name, d)| (name.to_string(), d.as_secs_f64()))
            .collect(),
    }
}

/// Write `queue.jsonl` and `queue.csv` (the first `shown` queue rows of
/// `listed`, every row when `None`, in rank order) in one parallel pass,
/// each row built once ([`QueueColumns::row`]) and written to both files,
/// and `items.parquet` on a thread of its own beside them; return the first
/// [`HEAD_ROWS`] queue rows for the page.
fn write_queue_files<'a>(
    files: &mut AtomicOutputs,
    cols: &QueueColumns<'a>,
    parquet: &ItemsParquet<'_>,
    listed: Option<&[usize]>,
    shown: usize,
) -> Result<Vec<schema::QueueRow<'a>>> {
    use crate::io::atomic::in_file;
    let head_rows = HEAD_ROWS.min(shown);
    let head = std::sync::Mutex::new(Vec::with_capacity(head_rows));
    // One pass over the rows feeds both queue files: each row is built
    // once, its JSON line and CSV record formatted side by side, and the
    // page's rows kept as they go by.
    let rows = |range: std::ops::Range<usize>, bufs: &mut [Vec<u8>; 2]| -> std::io::Result<()> {
        let [jb, cb] = bufs;
        let mut csv = csv::WriterBuilder::new().from_writer(cb);
        let mut scratch = String::new();
        let mut kept = Vec::new();
        for i in range {
            let row = cols.row(listed.map_or(i, |l| l[i]));
            write_json_row(jb, &row);
            jb.push(b'\n');
            write_csv_row(&mut csv, &mut scratch, &row)?;
            if i < head_rows {
                kept.push(row);
            }
        }
        if !kept.is_empty() {
            head.lock()
                .map_err(|_| std::io::Error::other("a queue formatter panicked"))?
                .append(&mut kept);
        }
        csv.flush()
    };
    files.write_many(
        ["queue.jsonl", "queue.csv", "items.parquet"],
        |[wj, wc, wp]| {
            std::thread::scope(|scope| {
                // The Parquet encoder is one thread's work; it overlaps the
                // queue files' formatting and their copy into the page cache.
                let items = scope.spawn(|| parquet.write(wp).map_err(|e| in_file(2, e)));
                let queue = (|| {
                    let mut csv = csv::Writer::from_writer(&mut *wc);
                    csv.write_record(cols.header().iter().map(|h| csv_text(h).into_owned()))
                        .map_err(|e| in_file(1, std::io::Error::other(e)))?;
                    csv.flush().map_err(|e| in_file(1, e))?;
                    drop(csv);
                    write_parallel([wj, wc], shown, &rows)
                })();
                let items = items.join().unwrap_or_else(|_| {
                    Err(in_file(
                        2,
                        std::io::Error::other("the items.parquet writer panicked"),
                    ))
                });
                queue.and(items)
            })
        },
    )?;
    let mut head = head.into_inner().map_err(|_| {
        crate::Error::io(
            files.dir_path(),
            std::io::Error::other("a queue formatter panicked"),
        )
    })?;
    // Chunks may hand their rows in out of order.
    head.sort_by_key(|r| r.rank);
    Ok(head)
}

/// The review queue as [`write_all`] writes it: where, for which dataset,
/// the items, their order and reasons.
#[derive(Clone, Copy)]
pub struct Queue<'a> {
    /// `--out`.
    pub out: &'a Path,
    pub cfg: &'a DatasetConfig,
    pub manifest: &'a Manifest,
    /// Priority-sorted.
    pub items: &'a [ItemResult],
    /// The queue order and budget (`items` indices).
    pub plan: &'a QueuePlan,
    /// Every item's reasons, from the checks.
    pub reasons: &'a Reasons<'a>,
    /// `--top K`: only the first K rows in the queue files.
    pub top: Option<usize>,
    /// `--queue-rows`: which rows the queue files list (before `top`).
    pub rows: crate::queue::QueueRows,
}

/// Queue rows kept for the page (its table and gallery).
pub const HEAD_ROWS: usize = crate::report::TABLE_ROWS;

/// Write `queue.jsonl`, `queue.csv`, `clusters.jsonl`, `report.html` with its
/// overlays, and `report.json` last (so its `timings` cover the other
/// writes) into `out`, all or none.
/// The queue rows follow `plan` (queue order); `items` is priority-sorted.
/// Rows are serialized straight to the files, one at a time: memory is the
/// items themselves plus [`HEAD_ROWS`] rows kept for the page.
pub fn write_all(
    queue: Queue<'_>,
    report: Report,
    extras: Extras,
    timings: &mut Timings,
    t0: Instant,
) -> Result<Vec<PathBuf>> {
    let Queue {
        out,
        cfg,
        manifest,
        items,
        plan,
        reasons,
        top,
        rows,
    } = queue;
    let t_write = Instant::now();
    let with_neighbors = extras.clusters.is_some();
    let with_status = plan.with_status;
    let listed =
        crate::queue::listed_rows(rows, &plan.rows, plan.queue_policy.budget.is_some(), |p| {
            reasons.any_flags(&items[p])
        });
    let listable = listed.as_ref().map_or(plan.rows.len(), Vec::len);
    let shown = top.unwrap_or(listable).min(listable);
    let carry = carried(cfg, manifest);
    // The run's outputs replace the last run's set: files of it that this
    // run does not write (clusters.jsonl, overlays) go in the same commit.
    let mut files = AtomicOutputs::replacing_set(out);

    let cols = QueueColumns {
        cfg,
        manifest,
        items,
        plan,
        carry: &carry,
        score_names: items
            .first()
            .map(|it| it.scores.fields().iter().map(|(k, _)| *k).collect())
            .unwrap_or_default(),
        with_neighbors,
        with_status,
        with_consensus: matches!(
            report.0.agreement,
            Some(schema::AgreementSection::Classification(_))
        ),
        reasons,
        checks: reasons.ran(),
    };
    let pool = extras
        .to_label
        .as_ref()
        .map_or(&[][..], |(pool, _)| &pool[..]);
    let parquet = ItemsParquet::new(&cols, pool)?;
    let head = write_queue_files(&mut files, &cols, &parquet, listed.as_deref(), shown)?;
    drop(parquet);

    if let Some((pool, rows)) = &extras.to_label {
        write_to_label(&mut files, cfg, manifest, pool, rows)?;
    }
    if let Some(rows) = &extras.clusters {
        files.write("clusters.jsonl", |w| {
            for r in rows {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    let mut report = report.0;
    timings.write = t_write.elapsed();
    // The page is built from the report before the run-dependent fields go in.
    let score_values = |name: &str| -> Vec<f64> {
        items
            .iter()
            .filter_map(|it| it.scores.finite_value(name))
            .collect()
    };
    let to_label_head: Vec<crate::report::ToLabelRow> = match &extras.to_label {
        Some((pool, rows)) => rows
            .iter()
            .take(crate::report::TABLE_ROWS)
            .enumerate()
            .map(|(rank, r)| {
                let row = as_row(cfg, manifest, pool, rank, r);
                crate::report::ToLabelRow {
                    rank: row.rank,
                    id: row.id.to_string(),
                    score: row.score,
                    predicted: row.predicted.unwrap_or("").to_string(),
                    reasons: row.reasons.to_vec(),
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let page = crate::report::write(
        &mut files,
        &crate::report::Inputs {
            cfg,
            manifest,
            report: &report,
            queue: &head,
            clusters: extras.clusters.as_deref(),
            score_names: cols.score_names.clone(),
            score_values: &score_values,
            preds: extras.preds.as_ref(),
            annotator_items: &extras.annotator_items,
            to_label: &to_label_head,
        },
    )?;
    // Building the report's sections (timed by the caller) and the page.
    timings.report += page.page;
    timings.overlays = page.overlays;
    if !extras.deterministic {
        report.timings = Some(timings_json(timings, t0));
        report.memory = Some(schema::Memory {
            peak_rss_bytes: peak_rss_bytes(),
        });
    }
    files.write("report.json", |w| {
        crate::io::jsonw::to_writer_layered(&mut *w, &report)?;
        w.write_all(b"\n")
    })?;
    // Waiting for the background fsyncs and renaming: after report.json is
    // written, so only the `--timings` line can show it.
    let t_sync = Instant::now();
    // Dropped uncommitted, the set leaves nothing in `out`.
    extras.control.check()?;
    let done = files.commit();
    timings.sync = t_sync.elapsed();
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with every optional column, text needing every escape class,
    /// and a `null` in each nullable field.
    fn full_row(nulls: bool) -> schema::QueueRow<'static> {
        let text = |s: &str| Cow::Owned(s.to_string());
        schema::QueueRow {
            rank: 7,
            id: text("a\"b\\c\n\t\u{1}é"),
            priority: (!nulls).then_some(0.1 + 0.2),
            in_budget: true,
            spot_check: false,
            review_all: true,
            also_in_cluster: vec![text("x"), text("=y")],
            status: Some((!nulls).then(|| text("still"))),
            reasons: vec![text("first \"quoted\""), text("-second")],
            flags: vec![text("wrong_label"), text("duplicate_conflict")],
            label: Some(text("cat")),
            predicted: Some(text("dog")),
            consensus_label: Some((!nulls).then(|| text("cat"))),
            scores: schema::RowScores(vec![
                (Cow::Borrowed("entropy"), Some(1e-7)),
                (Cow::Borrowed("margin"), None),
                (Cow::Borrowed("ece"), Some(-0.5)),
            ]),
            check_scores: schema::RowScores(vec![
                (Cow::Borrowed("wrong_label"), Some(0.75)),
                (Cow::Borrowed("leakage"), None),
            ]),
            cluster: Some((!nulls).then_some(3)),
            neighbors: Some(vec![schema::RowNeighbor {
                id: text("n1"),
                distance: 0.125f32 as f64 + f64::from(f32::EPSILON),
                label: text("dog"),
                conflict: true,
            }]),
            carried: schema::Carried(vec![
                (text("annotator"), text("@bob")),
                (text("item_label"), text("")),
            ]),
        }
    }

    #[test]
    fn json_rows_are_the_bytes_serde_writes_and_read_back_the_same() {
        for nulls in [false, true] {
            let row = full_row(nulls);
            let mut fast = Vec::new();
            write_json_row(&mut fast, &row);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                serde_json::to_string(&row).unwrap()
            );
            let back: schema::QueueRow<'static> = serde_json::from_slice(&fast).unwrap();
            assert_eq!(back, row);
        }
        // A run without the optional columns writes none of their keys.
        let mut row = full_row(false);
        (row.status, row.label, row.predicted, row.consensus_label) = (None, None, None, None);
        (row.cluster, row.neighbors) = (None, None);
        row.carried.0.clear();
        let mut fast = Vec::new();
        write_json_row(&mut fast, &row);
        let text = String::from_utf8_lossy(&fast);
        for key in ["status", "label", "consensus_label", "cluster", "neighbors"] {
            assert!(!text.contains(&format!("\"{key}\"")), "{key}: {text}");
        }
        assert_eq!(text, serde_json::to_string(&row).unwrap());
    }

    #[test]
    fn csv_records_follow_the_header_and_neutralise_text() {
        let mut csv = csv::WriterBuilder::new().from_writer(Vec::new());
        let mut scratch = String::new();
        write_csv_row(&mut csv, &mut scratch, &full_row(false)).unwrap();
        write_csv_row(&mut csv, &mut scratch, &full_row(true)).unwrap();
        let bytes = csv.into_inner().unwrap();
        let records: Vec<Vec<String>> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes.as_slice())
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        let id = "a\"b\\c\n\t\u{1}é";
        let reasons = "first \"quoted\"; -second";
        let row = |priority, consensus, cluster, status| {
            [
                "7",
                id,
                priority,
                reasons,
                "wrong_label; duplicate_conflict",
                "cat",
                "dog",
                consensus,
                "1e-7",
                "",
                "-0.5",
                "0.75",
                "",
                cluster,
                "n1@0.1250",
                "true",
                "false",
                "true",
                "x; =y",
                status,
                "'@bob",
                "",
            ]
            .map(String::from)
            .to_vec()
        };
        assert_eq!(records[0], row("0.30000000000000004", "cat", "3", "still"));
        assert_eq!(records[1], row("", "", "", ""));
    }
}
