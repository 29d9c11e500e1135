//! The run's outputs: `queue.jsonl`, `queue.csv`, `report.json` and
//! `report.html` (with `overlays/`, see [`crate::report`]), written
//! through [`crate::io::atomic::AtomicOutputs`] so they appear together or not
//! at all.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::backend::BackendInfo;
use crate::config::{DatasetConfig, Task};
use crate::error::Result;
use crate::io::atomic::AtomicOutputs;
use crate::io::manifest::Manifest;
use crate::pipeline::{DatasetStats, ItemResult, RunOptions, Timings};
use crate::priority;
use crate::queue::{QueuePlan, RowPlan};

/// Keys of a queue row that carried columns may not take.
const RESERVED: [&str; 12] = [
    "rank",
    "id",
    "priority",
    "reasons",
    "scores",
    "label",
    "predicted",
    "in_budget",
    "spot_check",
    "review_all",
    "also_in_cluster",
    "status",
];

/// `report.json` before the write timings are known.
pub struct Report(Map<String, Value>);

fn num(x: Option<f64>) -> Value {
    x.filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!(v))
}

impl Report {
    /// Summarise the run.
    pub fn build(
        cfg: &DatasetConfig,
        opts: &RunOptions,
        backend: &BackendInfo,
        items: &[ItemResult],
        stats: &DatasetStats,
        timings: &Timings,
    ) -> Report {
        let c = cfg.num_classes();
        let conf = &stats.confusion;
        let total = conf.total();
        let per_class: Vec<Value> = (0..c)
            .map(|k| {
                let mut o = Map::new();
                o.insert("class".into(), json!(k));
                o.insert("name".into(), json!(cfg.class_names[k]));
                o.insert("support".into(), json!(conf.label_count(k)));
                o.insert("predicted".into(), json!(conf.pred_count(k)));
                match cfg.task {
                    Task::Classification => {
                        let i = conf.intersection(k) as f64;
                        let ratio = |d: u64| (d > 0).then(|| i / d as f64);
                        o.insert("precision".into(), num(ratio(conf.pred_count(k))));
                        o.insert("recall".into(), num(ratio(conf.label_count(k))));
                    }
                    Task::Segmentation => {
                        o.insert("iou".into(), num(conf.iou(k)));
                        o.insert("dice".into(), num(conf.dice(k)));
                        let b = stats.bands.as_ref().and_then(|b| b.iou(k));
                        o.insert("boundary_iou".into(), num(b));
                    }
                }
                Value::Object(o)
            })
            .collect();
        let mut r = Map::new();
        r.insert("n_items".into(), json!(items.len()));
        r.insert("task".into(), json!(cfg.task));
        r.insert("num_classes".into(), json!(c));
        r.insert("classes".into(), json!(cfg.class_names));
        r.insert("samples".into(), json!(total));
        r.insert(
            "accuracy".into(),
            num((total > 0).then(|| conf.correct() as f64 / total as f64)),
        );
        r.insert("ece".into(), num(stats.bins.ece()));
        r.insert("mce".into(), num(stats.bins.mce()));
        r.insert("reliability".into(), json!(stats.bins.table()));
        r.insert("confusion".into(), json!(conf.rows()));
        r.insert("per_class".into(), Value::Array(per_class));
        if cfg.task == Task::Segmentation {
            let mean_of = |f: fn(&priority::SegScores) -> Option<f64>| {
                crate::metrics::confusion::mean_defined(
                    items.iter().map(|i| i.scores.seg.as_ref().and_then(f)),
                )
            };
            r.insert(
                "segmentation".into(),
                json!({
                    "miou": num(conf.mean_iou()),
                    "mdice": num(conf.mean_dice()),
                    "mboundary_iou": num(stats.bands.as_ref().and_then(|b| b.mean_iou())),
                    "mean_item_miou": num(mean_of(|s| s.miou)),
                    "mean_item_boundary_iou": num(mean_of(|s| s.boundary_iou)),
                    "ignore_index": cfg.ignore_index,
                    "boundary_band": "d = max(1, round(0.02 * image diagonal)) per item",
                }),
            );
        }
        r.insert("priority".into(), json!(priority::formula(cfg.task)));
        r.insert("backend".into(), json!(backend));
        r.insert(
            "options".into(),
            json!({
                "dataset": opts.dataset,
                "batch_size": opts.batch_size,
                "top": opts.top,
                "logits": opts.logits,
                "backend": opts.backend,
                "gpu_fallback": if opts.gpu_fallback { "cpu" } else { "fail" },
                "budget": opts.queue.policy.budget,
                "dedup": opts.queue.policy.dedup,
                "min_per_class": opts.queue.policy.min_per_class,
                "spot_check": opts.queue.policy.spot_check,
                "seed": opts.queue.policy.seed,
                "review_all_from": opts.queue.policy.review_all_from,
                "previous": opts.queue.previous,
            }),
        );
        r.insert(
            "timings".into(),
            json!({
                "read_s": timings.read.as_secs_f64(),
                "score_s": timings.score.as_secs_f64(),
                "neighbors_s": timings.neighbors.map(|d| d.as_secs_f64()),
            }),
        );
        Report(r)
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

struct QueueRow<'a> {
    rank: usize,
    item: &'a ItemResult,
    plan: &'a RowPlan,
}

impl QueueRow<'_> {
    /// The policy's reasons, then the scores' reasons.
    fn reasons(&self) -> Vec<String> {
        let mut r = self.plan.policy_reasons.clone();
        r.extend(self.item.reasons.iter().cloned());
        r
    }
}

fn carried(cfg: &DatasetConfig, manifest: &Manifest) -> Vec<(usize, String)> {
    manifest
        .columns
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            name.as_str() != "id" && !(cfg.task == Task::Classification && name.as_str() == "label")
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
    /// `report.json`'s `duplicates` section, when embeddings were given.
    pub duplicates: Option<Value>,
    /// `clusters.jsonl` rows, when embeddings were given.
    pub clusters: Option<Vec<Value>>,
    /// Leave out run-dependent fields (timings, memory) for byte-identical output.
    pub deterministic: bool,
}

fn json_row(
    row: &QueueRow<'_>,
    cfg: &DatasetConfig,
    manifest: &Manifest,
    carry: &[(usize, String)],
    with_neighbors: bool,
    with_status: bool,
) -> Value {
    let it = row.item;
    let mut o = Map::new();
    o.insert("rank".into(), json!(row.rank));
    o.insert("id".into(), json!(manifest.ids[it.index]));
    o.insert("priority".into(), json!(it.priority));
    o.insert("in_budget".into(), json!(row.plan.in_budget));
    o.insert("spot_check".into(), json!(row.plan.spot_check));
    o.insert("review_all".into(), json!(row.plan.review_all));
    o.insert("also_in_cluster".into(), json!(row.plan.also_in_cluster));
    if with_status {
        o.insert("status".into(), json!(row.plan.status.map(|s| s.as_str())));
    }
    o.insert("reasons".into(), json!(row.reasons()));
    if let Some(f) = &it.row {
        o.insert("label".into(), json!(cfg.class_names[f.label as usize]));
        o.insert("predicted".into(), json!(cfg.class_names[f.pred as usize]));
    }
    o.insert(
        "scores".into(),
        Value::Object(crate::queue::scores_json(it)),
    );
    if with_neighbors {
        o.insert("cluster".into(), json!(it.cluster));
        let nbs: Vec<Value> = it
            .neighbors
            .iter()
            .map(|n| {
                json!({
                    "id": manifest.ids[n.index],
                    "distance": n.distance,
                    "label": n.label,
                    "conflict": n.conflict,
                })
            })
            .collect();
        o.insert("neighbors".into(), Value::Array(nbs));
    }
    for (j, key) in carry {
        o.insert(key.clone(), json!(manifest.rows[it.index][*j]));
    }
    Value::Object(o)
}

/// Write `queue.jsonl`, `queue.csv`, `report.json`, `report.html` and its
/// overlays into `out`, all or none.
/// The queue rows follow `plan` (queue order); `items` is priority-sorted.
#[allow(clippy::too_many_arguments)]
pub fn write_all(
    out: &Path,
    cfg: &DatasetConfig,
    manifest: &Manifest,
    items: &[ItemResult],
    plan: &QueuePlan,
    top: Option<usize>,
    report: Report,
    extras: Extras,
    t_write: Instant,
    t0: Instant,
) -> Result<Vec<PathBuf>> {
    let with_neighbors = extras.clusters.is_some();
    let with_status = plan.with_status;
    let shown = top.unwrap_or(plan.rows.len()).min(plan.rows.len());
    let rows: Vec<QueueRow<'_>> = plan.rows[..shown]
        .iter()
        .enumerate()
        .map(|(i, p)| QueueRow {
            rank: i + 1,
            item: &items[p.item],
            plan: p,
        })
        .collect();
    let carry = carried(cfg, manifest);
    let mut files = AtomicOutputs::new(out);

    let queue_values: Vec<Value> = rows
        .iter()
        .map(|row| json_row(row, cfg, manifest, &carry, with_neighbors, with_status))
        .collect();
    files.write("queue.jsonl", |w| {
        for row in &queue_values {
            serde_json::to_writer(&mut *w, row)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;

    files.write("queue.csv", |w| {
        let mut csv = csv::Writer::from_writer(w);
        let mut header: Vec<String> = ["rank", "id", "priority", "reasons"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if cfg.task == Task::Classification {
            header.extend(["label".to_string(), "predicted".to_string()]);
        }
        if let Some(first) = items.first() {
            header.extend(first.scores.fields().iter().map(|(k, _)| k.to_string()));
        }
        if with_neighbors {
            header.extend(["cluster".to_string(), "neighbors".to_string()]);
        }
        header
            .extend(["in_budget", "spot_check", "review_all", "also_in_cluster"].map(String::from));
        if with_status {
            header.push("status".into());
        }
        header.extend(carry.iter().map(|(_, k)| k.clone()));
        csv.write_record(&header).map_err(std::io::Error::other)?;
        for row in &rows {
            let it = row.item;
            let mut rec = vec![
                row.rank.to_string(),
                manifest.ids[it.index].clone(),
                format!("{}", it.priority),
                row.reasons().join("; "),
            ];
            if let Some(f) = &it.row {
                rec.push(cfg.class_names[f.label as usize].clone());
                rec.push(cfg.class_names[f.pred as usize].clone());
            }
            rec.extend(
                it.scores
                    .fields()
                    .iter()
                    .map(|(_, v)| v.map_or(String::new(), |x| format!("{x}"))),
            );
            if with_neighbors {
                rec.push(it.cluster.map_or(String::new(), |c| c.to_string()));
                rec.push(
                    it.neighbors
                        .iter()
                        .map(|n| format!("{}@{:.4}", manifest.ids[n.index], n.distance))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            let p = row.plan;
            rec.extend([
                p.in_budget.to_string(),
                p.spot_check.to_string(),
                p.review_all.to_string(),
                p.also_in_cluster.join("; "),
            ]);
            if with_status {
                rec.push(p.status.map_or("", |s| s.as_str()).to_string());
            }
            rec.extend(
                carry
                    .iter()
                    .map(|(j, _)| manifest.rows[it.index][*j].clone()),
            );
            csv.write_record(&rec).map_err(std::io::Error::other)?;
        }
        csv.flush()
    })?;

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
    if let Some(d) = extras.duplicates {
        report.insert("duplicates".into(), d);
    }
    for (k, v) in &plan.sections {
        report.insert(k.clone(), v.clone());
    }
    if extras.deterministic {
        report.remove("timings");
    } else {
        if let Some(Value::Object(t)) = report.get_mut("timings") {
            t.insert("write_s".into(), json!(t_write.elapsed().as_secs_f64()));
            t.insert("total_s".into(), json!(t0.elapsed().as_secs_f64()));
        }
        report.insert(
            "memory".into(),
            json!({ "peak_rss_bytes": peak_rss_bytes() }),
        );
    }
    let report = Value::Object(report);
    files.write("report.json", |w| {
        serde_json::to_writer_pretty(&mut *w, &report)?;
        w.write_all(b"\n")
    })?;
    crate::report::write(
        &mut files,
        &crate::report::Inputs {
            cfg,
            manifest,
            report: &report,
            queue: &queue_values,
            clusters: extras.clusters.as_deref(),
        },
    )?;
    files.commit()
}
