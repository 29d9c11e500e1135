//! The page itself: sections of escaped text, tables and inline SVG.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::Value;

use super::escape::html as esc;
use super::svg::{self, Series};
use super::{Inputs, TABLE_ROWS, Visual, conflicting, members, overlay};
use crate::config::Task;

const CSS: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f6f4;color:#222}
main{max-width:1240px;margin:0 auto;padding:16px 20px 60px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccc;padding-bottom:4px}
.stats{display:flex;flex-wrap:wrap;gap:8px}.stat{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px 10px}
.stat b{display:block;font-size:16px}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
svg.chart{background:#fff;border:1px solid #ddd;border-radius:6px;max-width:100%;height:auto}
svg .ctitle{font-size:12px;font-weight:600}svg .tick,svg .count,svg .cm-text{font-size:10px;fill:#444}
svg .cm-text{fill:inherit}svg .grid{stroke:#eee}svg .diag{stroke:#888;stroke-dasharray:4 3}
svg .rel-gap{stroke:#e15759;stroke-width:2}
table{border-collapse:collapse;background:#fff;width:100%}th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eee;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
td ul{margin:0;padding-left:16px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px;width:268px}
figure img{width:256px;height:auto;image-rendering:pixelated;display:block}
figcaption{font-size:12px;word-break:break-all}
.cluster{margin:10px 0;padding:8px;background:#fff3f3;border:1px solid #e8c4c4;border-radius:6px}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #999;vertical-align:middle;margin:0 3px 0 10px}
.muted{color:#777}.tag{display:inline-block;background:#e8eef6;border-radius:3px;padding:0 4px;margin:1px;font-size:12px}
pre{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:6px;font-size:12px}
"#;

/// A JSON scalar (or small value) as escaped text.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// Any JSON value as nested HTML tables (escaped).
pub fn block(v: &Value, depth: usize) -> String {
    match v {
        Value::Object(m) if depth < 4 => {
            let mut s = String::from("<table class=\"kv\">");
            for (k, x) in m {
                let _ = write!(
                    s,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    esc(k),
                    block(x, depth + 1)
                );
            }
            s.push_str("</table>");
            s
        }
        Value::Array(a) if depth < 4 && !a.is_empty() && a.len() <= 50 => {
            if a.iter().all(|x| !x.is_object() && !x.is_array()) {
                a.iter().map(text).collect::<Vec<_>>().join(", ")
            } else {
                a.iter()
                    .map(|x| block(x, depth + 1))
                    .collect::<Vec<_>>()
                    .join("")
            }
        }
        Value::Object(_) | Value::Array(_) => format!("<pre>{}</pre>", esc(&v.to_string())),
        scalar => text(scalar),
    }
}

fn f64_at(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn stat(s: &mut String, name: &str, value: String) {
    let _ = write!(
        s,
        r#"<div class="stat">{}<b>{}</b></div>"#,
        esc(name),
        value
    );
}

fn picture(vis: Option<&Visual>, id: &str) -> String {
    match vis {
        Some(Visual::Png(rel)) => format!(
            r#"<img src="{}" alt="overlay of {}" loading="lazy">"#,
            esc(rel),
            esc(id)
        ),
        Some(Visual::Svg(svg)) => svg.clone(),
        Some(Visual::None(why)) => format!(r#"<p class="muted">no picture: {}</p>"#, esc(why)),
        None => r#"<p class="muted">no picture</p>"#.into(),
    }
}

fn legend(task: Task) -> String {
    let sw = |c: [u8; 3]| {
        format!(
            r#"<span class="sw" style="background:rgb({},{},{})"></span>"#,
            c[0], c[1], c[2]
        )
    };
    match task {
        Task::Segmentation => format!(
            "<p class=\"muted\">Overlays: {}annotated boundary{}predicted boundary (argmax){}both{}disagreeing Boundary-IoU band (50 %), on the item's image or, without one, a grey rendering of the annotation.</p>",
            sw(overlay::ANNOTATED),
            sw(overlay::PREDICTED),
            sw(overlay::BOTH),
            sw(overlay::BAND)
        ),
        Task::Classification => "<p class=\"muted\">The item's image when the manifest has one, otherwise its top-3 predicted probabilities (red: the annotated class).</p>".into(),
    }
}

fn row_columns(queue: &[Value]) -> Vec<&'static str> {
    let optional = [
        "label",
        "predicted",
        "in_budget",
        "spot_check",
        "status",
        "cluster",
        "also_in_cluster",
    ];
    optional
        .into_iter()
        .filter(|k| {
            queue
                .iter()
                .any(|r| r.get(*k).is_some_and(|v| !v.is_null()))
        })
        .collect()
}

/// Row keys with a column (or a chart) of their own.
const KNOWN: [&str; 6] = ["rank", "id", "priority", "reasons", "scores", "neighbors"];

fn queue_table(queue: &[Value]) -> String {
    let cols = row_columns(queue);
    let mut s =
        String::from("<table class=\"queue\"><thead><tr><th>rank</th><th>id</th><th>priority</th>");
    for c in &cols {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("<th>reasons</th><th>item</th></tr></thead><tbody>");
    for r in queue.iter().take(TABLE_ROWS) {
        let _ = write!(
            s,
            r#"<tr><td class="num">{}</td><td>{}</td><td class="num">{}</td>"#,
            r.get("rank").map_or("–".into(), text),
            r.get("id").map_or("–".into(), text),
            svg::fmt3(f64_at(r, "priority"))
        );
        for c in &cols {
            let v = r.get(*c).unwrap_or(&Value::Null);
            let _ = write!(s, "<td>{}</td>", block(v, 2));
        }
        s.push_str("<td><ul>");
        for reason in r
            .get("reasons")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let _ = write!(s, "<li>{}</li>", text(reason));
        }
        s.push_str("</ul></td><td>");
        // Carried manifest columns (annotator, paths, split, ...).
        for (k, v) in r.as_object().into_iter().flatten() {
            if !KNOWN.contains(&k.as_str()) && !cols.contains(&k.as_str()) {
                let _ = write!(
                    s,
                    r#"<span class="tag">{}: {}</span> "#,
                    esc(k),
                    block(v, 3)
                );
            }
        }
        s.push_str("</td></tr>");
    }
    s.push_str("</tbody></table>");
    if queue.len() > TABLE_ROWS {
        let _ = write!(
            s,
            r#"<p class="muted">{} more rows in queue.jsonl / queue.csv.</p>"#,
            queue.len() - TABLE_ROWS
        );
    }
    s
}

/// The whole page.
pub fn page(inp: &Inputs<'_>, vis: &HashMap<String, Visual>) -> String {
    let r = inp.report;
    let task = inp.cfg.task;
    let classes: Vec<String> = inp.cfg.class_names.clone();
    let mut s = String::with_capacity(1 << 18);
    // The dataset directory's name, not its full (machine-specific) path.
    let dataset = r
        .pointer("/options/dataset")
        .and_then(Value::as_str)
        .map(|d| {
            std::path::Path::new(d)
                .file_name()
                .map_or(d.to_string(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "dataset".into());
    let title = format!("triage report: {dataset}");
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"><title>{t}</title><style>{CSS}</style></head><body><main id="triage-report"><h1>{t}</h1>"#,
        t = esc(&title)
    );

    // Summary.
    s.push_str(r#"<section id="summary"><div class="stats">"#);
    stat(&mut s, "items", r.get("n_items").map_or("–".into(), text));
    stat(&mut s, "task", r.get("task").map_or("–".into(), text));
    stat(&mut s, "classes", classes.len().to_string());
    stat(&mut s, "accuracy", svg::fmt3(f64_at(r, "accuracy")));
    stat(&mut s, "ECE", svg::fmt3(f64_at(r, "ece")));
    stat(&mut s, "MCE", svg::fmt3(f64_at(r, "mce")));
    if let Some(seg) = r.get("segmentation") {
        stat(&mut s, "mIoU", svg::fmt3(f64_at(seg, "miou")));
        stat(&mut s, "mDice", svg::fmt3(f64_at(seg, "mdice")));
        stat(
            &mut s,
            "mBoundary IoU",
            svg::fmt3(f64_at(seg, "mboundary_iou")),
        );
    }
    if let Some(b) = r.pointer("/backend/name") {
        stat(&mut s, "backend", text(b));
    }
    if let Some(d) = r.get("duplicates") {
        stat(
            &mut s,
            "near-duplicate pairs",
            d.get("pairs").map_or("–".into(), text),
        );
        stat(
            &mut s,
            "conflicting clusters",
            d.get("conflicting_clusters").map_or("–".into(), text),
        );
    }
    s.push_str("</div></section>");

    // Galleries.
    s.push_str(r#"<section id="gallery"><h2>Top of the queue</h2>"#);
    s.push_str(&legend(task));
    s.push_str(r#"<div class="gallery">"#);
    for row in inp.queue.iter().take(super::GALLERY_TOP) {
        let id = row.get("id").and_then(Value::as_str).unwrap_or("");
        let reason = row
            .pointer("/reasons/0")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut cap = format!(
            "#{} <b>{}</b> priority {}",
            row.get("rank").map_or("–".into(), text),
            esc(id),
            svg::fmt3(f64_at(row, "priority"))
        );
        if let (Some(l), Some(p)) = (row.get("label"), row.get("predicted")) {
            let _ = write!(cap, "<br>label {} · predicted {}", text(l), text(p));
        }
        let _ = write!(
            s,
            r#"<figure class="item">{}<figcaption>{cap}<br>{}</figcaption></figure>"#,
            picture(vis.get(id), id),
            esc(reason)
        );
    }
    s.push_str("</div></section>");

    // Charts.
    s.push_str(r#"<section id="calibration"><h2>Calibration and scores</h2><div class="charts">"#);
    let table = r
        .get("reliability")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let n = table.len().max(1) as f64;
    let bins: Vec<svg::Bin> = table
        .iter()
        .enumerate()
        .map(|(i, b)| svg::Bin {
            lo: i as f64 / n,
            hi: (i + 1) as f64 / n,
            count: b.get("count").and_then(Value::as_u64).unwrap_or(0),
            confidence: f64_at(b, "confidence"),
            accuracy: f64_at(b, "accuracy"),
        })
        .collect();
    s.push_str(&svg::reliability(&bins));
    s.push_str("</div><div class=\"charts\">");
    // Over every item (not only the queue rows passed in), one score at a time.
    for key in &inp.score_names {
        let values = (inp.score_values)(key);
        s.push_str(&svg::histogram(key, &values, 20));
    }
    s.push_str("</div></section>");

    let per_class: Vec<Value> = r
        .get("per_class")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let col = |k: &str| -> Vec<Option<f64>> { per_class.iter().map(|p| f64_at(p, k)).collect() };
    s.push_str(r#"<section id="classes"><h2>Per class</h2><div class="charts">"#);
    let series = match task {
        Task::Segmentation => vec![
            Series {
                name: "IoU",
                colour: svg::BLUE,
                values: col("iou"),
            },
            Series {
                name: "Dice",
                colour: svg::GREEN,
                values: col("dice"),
            },
            Series {
                name: "Boundary IoU",
                colour: svg::ORANGE,
                values: col("boundary_iou"),
            },
        ],
        Task::Classification => vec![
            Series {
                name: "precision",
                colour: svg::BLUE,
                values: col("precision"),
            },
            Series {
                name: "recall",
                colour: svg::RED,
                values: col("recall"),
            },
        ],
    };
    let title = match task {
        Task::Segmentation => "IoU, Dice and Boundary IoU per class",
        Task::Classification => "Precision and recall per class",
    };
    s.push_str(&svg::grouped_bars(
        "per-class",
        title,
        &classes,
        &series,
        1.0,
    ));
    let support = col("support");
    let max = support.iter().flatten().copied().fold(0.0, f64::max);
    let unit = if task == Task::Segmentation {
        "pixels"
    } else {
        "items"
    };
    s.push_str(&svg::grouped_bars(
        "support",
        &format!("Class balance: annotated {unit} per class"),
        &classes,
        &[Series {
            name: "support",
            colour: svg::TEAL,
            values: support,
        }],
        max,
    ));
    let matrix: Vec<Vec<u64>> = r
        .get("confusion")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    s.push_str(&svg::heatmap(&classes, &matrix));
    s.push_str("</div></section>");

    if inp.clusters.is_some() {
        s.push_str(r#"<section id="clusters"><h2>Conflicting near-duplicate clusters</h2>"#);
        let conf = conflicting(inp.clusters);
        if conf.is_empty() {
            s.push_str(r#"<p class="muted">No near-duplicate cluster has disagreeing labels.</p>"#);
        }
        for c in conf {
            let _ = write!(
                s,
                r#"<div class="cluster"><p>cluster {} · majority label <b>{}</b> · {} of members disagree · max distance {}</p><div class="gallery">"#,
                c.get("cluster").map_or("–".into(), text),
                c.get("majority_label").map_or("–".into(), text),
                f64_at(c, "conflict_fraction")
                    .map_or("–".into(), |f| format!("{:.0}%", 100.0 * f)),
                svg::fmt3(f64_at(c, "max_distance"))
            );
            let centre = c.get("centre").and_then(Value::as_str);
            let majority = c.get("majority_label").and_then(Value::as_str);
            for (id, label) in members(c) {
                let mark = if Some(id) == centre { " (centre)" } else { "" };
                let odd = if Some(label) != majority {
                    " ⚠ disagrees"
                } else {
                    ""
                };
                let _ = write!(
                    s,
                    r#"<figure class="member">{}<figcaption><b>{}</b>{mark}<br>label {}{odd}</figcaption></figure>"#,
                    picture(vis.get(id), id),
                    esc(id),
                    esc(label)
                );
            }
            s.push_str("</div></div>");
        }
        s.push_str("</section>");
    }

    // Queue.
    s.push_str(r#"<section id="queue"><h2>Review queue</h2>"#);
    s.push_str(&queue_table(inp.queue));
    s.push_str("</section>");

    // Other sections, shown as they are.
    for key in [
        "views",
        "review",
        "previous",
        "duplicates",
        "segmentation",
        "priority",
    ] {
        if let Some(v) = r.get(key) {
            let _ = write!(
                s,
                r#"<section id="sec-{k}"><h2>{k}</h2>{}</section>"#,
                block(v, 0),
                k = esc(key)
            );
        }
    }
    s.push_str(
        r#"<p class="muted">Made by triage. Self-contained: no scripts, no network; overlays are in overlays/.</p></main></body></html>
"#,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_row_fields_get_columns_and_carried_fields_are_escaped() {
        let rows = vec![
            json!({"rank": 1, "id": "a", "priority": 0.5, "reasons": ["r <1>"],
                   "scores": {}, "in_budget": true, "spot_check": false,
                   "status": "new", "annotator": "<i>x</i>"}),
            json!({"rank": 2, "id": "b", "priority": 0.25, "reasons": [], "scores": {}}),
        ];
        let t = queue_table(&rows);
        for h in [
            "<th>in_budget</th>",
            "<th>spot_check</th>",
            "<th>status</th>",
        ] {
            assert!(t.contains(h), "{h}");
        }
        assert!(!t.contains("<th>label</th>") && !t.contains("<th>cluster</th>"));
        assert!(t.contains("<td>yes</td><td>no</td><td>new</td>"));
        assert!(t.contains("annotator: &lt;i&gt;x&lt;/i&gt;") && !t.contains("<i>"));
        assert!(t.contains("<li>r &lt;1&gt;</li>"));
        assert_eq!(t.matches("<tr><td class=\"num\">").count(), 2);
    }
}
