//! The page's drift section (`report.json` `drift`): small multiples, one
//! panel per annotator and per class, each the share per batch with its
//! control limit and its alarmed batches marked, then the alarms.
//! Segmentation: a class's panel is the batch's mean annotated-area bias
//! on it (signed, about a zero line), with the batches of any `area_bias`
//! alarm on the class marked; an annotator whose alarm is an area bias
//! or its mIoU gets that series instead of a check's share.
//!
//! Bounded for large campaigns: at most [`MAX_PANELS`] panels of each
//! kind (alarmed series first, then by their smallest adjusted p-value;
//! the page says how many are left out) and at most [`MAX_BATCHES`]
//! batches a panel (the latest; said too), at most [`MAX_ALARM_ROWS`]
//! alarms listed. Every name is escaped.

use std::collections::HashMap;
use std::fmt::Write;

use super::escape::html;
use super::svg::{BLUE, GREY, RED};
use crate::schema::{Drift, DriftCell};

/// Panels shown per kind (annotators; classes).
pub const MAX_PANELS: usize = 50;
/// Batches drawn per panel (the latest).
pub const MAX_BATCHES: usize = 100;
/// Alarms listed.
pub const MAX_ALARM_ROWS: usize = 100;

const PW: f64 = 180.0;
const PH: f64 = 64.0;

/// What a panel's values are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    /// A share, from 0 (its maximum said in %).
    Share,
    /// A value from 0 (an mIoU; its maximum said).
    Value,
    /// A signed value about 0 (an area bias; drawn from `−m` to `m`).
    Signed,
}

/// One panel: `values[i]` the share at batch position `i` (of `n`),
/// `limits[i]` its limit, `alarm[i]` whether it alarms.
fn panel(title: &str, n: usize, points: &[(usize, f64, Option<f64>, bool)]) -> String {
    panel_scaled(title, n, points, Scale::Share)
}

/// [`panel`], of values on `scale`.
fn panel_scaled(
    title: &str,
    n: usize,
    points: &[(usize, f64, Option<f64>, bool)],
    scale: Scale,
) -> String {
    let top = points
        .iter()
        .flat_map(|&(_, v, l, _)| [v.abs(), l.unwrap_or(0.0).abs()])
        .fold(0.0f64, f64::max)
        .max(0.01);
    let x = |i: usize| 4.0 + (PW - 8.0) * (i as f64 + 0.5) / n.max(1) as f64;
    let y = |v: f64| match scale {
        Scale::Signed => PH - 4.0 - (PH - 20.0) * (0.5 + 0.5 * v / top).clamp(0.0, 1.0),
        _ => PH - 4.0 - (PH - 20.0) * (v / top).clamp(0.0, 1.0),
    };
    let range = match scale {
        Scale::Share => format!("max {:.0} %", 100.0 * top),
        Scale::Value => format!("max {top:.2}"),
        Scale::Signed => format!("±{top:.2}"),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart drift-panel" data-chart="drift-panel" viewBox="0 0 {PW:.0} {PH:.0}" width="{PW:.0}" height="{PH:.0}" role="img" aria-label="{t}"><title>{t}</title><text x="4" y="11" font-size="10">{t} ({range})</text>"#,
        t = html(title),
    );
    if scale == Scale::Signed {
        let _ = write!(
            s,
            r#"<line class="drift-zero" x1="4" x2="{:.1}" y1="{y0:.1}" y2="{y0:.1}" stroke="{GREY}" stroke-width="0.5"/>"#,
            PW - 4.0,
            y0 = y(0.0)
        );
    }
    let line: Vec<String> = points
        .iter()
        .map(|&(i, v, _, _)| format!("{:.1},{:.1}", x(i), y(v)))
        .collect();
    let limit: Vec<String> = points
        .iter()
        .filter_map(|&(i, _, l, _)| l.map(|l| format!("{:.1},{:.1}", x(i), y(l))))
        .collect();
    if limit.len() > 1 {
        let _ = write!(
            s,
            r#"<polyline class="drift-limit" points="{}" fill="none" stroke="{GREY}" stroke-dasharray="3 2" stroke-width="1"/>"#,
            limit.join(" ")
        );
    }
    let _ = write!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{BLUE}" stroke-width="1.2"/>"#,
        line.join(" ")
    );
    for &(i, v, _, alarm) in points {
        if alarm {
            let _ = write!(
                s,
                r#"<circle class="drift-alarm" cx="{:.1}" cy="{:.1}" r="2.5" fill="{RED}"/>"#,
                x(i),
                y(v)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// The section.
pub fn section(d: &Drift, classes: &[String]) -> String {
    let mut s = String::new();
    let nb = d.batches.len();
    let from = nb.saturating_sub(MAX_BATCHES);
    let shown = nb - from;
    let pos: HashMap<&str, usize> = d
        .batches
        .iter()
        .enumerate()
        .map(|(i, b)| (b.batch.as_str(), i))
        .collect();
    let _ = write!(
        s,
        r#"<section id="drift"><h2>Drift over the campaign</h2><p class="muted">{} batches (grouped by {}), {} tests in {} families, {} alarms; false alarms controlled by two-level Benjamini–Hochberg at {} %. Each panel: the share per batch (blue), its control limit (dashed), alarmed batches (red).{}</p>"#,
        nb,
        html(&d.grouping),
        d.tests,
        d.families,
        d.alarms.len(),
        100.0 * d.fdr,
        if from > 0 {
            format!(" Showing the latest {shown} batches of {nb}.")
        } else {
            String::new()
        }
    );
    // Annotators: the quantity of its alarm, else the first followed check.
    let mut by_annotator: Vec<(&str, Vec<&DriftCell>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for c in &d.annotators {
        let i = *index.entry(c.annotator.as_str()).or_insert_with(|| {
            by_annotator.push((c.annotator.as_str(), Vec::new()));
            by_annotator.len() - 1
        });
        by_annotator[i].1.push(c);
    }
    let key = |cells: &[&DriftCell]| {
        let alarmed = cells.iter().any(|c| c.alarm);
        let q = cells
            .iter()
            .filter_map(|c| c.q)
            .fold(f64::INFINITY, f64::min);
        (!alarmed, q)
    };
    by_annotator.sort_by(|a, b| {
        let (ka, kb) = (key(&a.1), key(&b.1));
        ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    });
    if !by_annotator.is_empty() && !d.checks.is_empty() {
        let _ = write!(
            s,
            r#"<h3>Per annotator</h3><p class="muted">{} annotators{}; alarmed first, then by the smallest adjusted p-value.</p><div class="drift-grid" style="display:flex;flex-wrap:wrap;gap:6px">"#,
            by_annotator.len(),
            if by_annotator.len() > MAX_PANELS {
                format!(", the first {MAX_PANELS} shown")
            } else {
                String::new()
            }
        );
        for (name, cells) in by_annotator.iter().take(MAX_PANELS) {
            let mine = || {
                d.alarms
                    .iter()
                    .filter(|a| a.annotator.as_deref() == Some(*name))
            };
            // Segmentation: its first alarm on an area bias or its mIoU.
            let seg_alarm = mine().next().and_then(|a| match a.metric.as_str() {
                "mean:area_bias" => {
                    let k = classes
                        .iter()
                        .position(|c| Some(c.as_str()) == a.class.as_deref())?;
                    Some((Some(k), format!("area bias, {}", classes[k])))
                }
                "mean:miou" => Some((None, "mean mIoU".to_string())),
                _ => None,
            });
            if let Some((class, what)) = seg_alarm {
                let points: Vec<(usize, f64, Option<f64>, bool)> = cells
                    .iter()
                    .filter_map(|c| {
                        let i = *pos.get(c.batch.as_str())?;
                        let seg = c.segmentation.as_ref()?;
                        let v = match class {
                            Some(k) => (*seg.area_bias.get(k)?)?,
                            None => seg.mean_miou?,
                        };
                        (i >= from).then_some((i - from, v, None, c.alarm))
                    })
                    .collect();
                let scale = if class.is_some() {
                    Scale::Signed
                } else {
                    Scale::Value
                };
                s.push_str(&panel_scaled(
                    &format!("{name}: {what}"),
                    shown,
                    &points,
                    scale,
                ));
                continue;
            }
            let check = mine()
                .find_map(|a| {
                    let q = a.metric.split_once(':')?.1;
                    d.checks.iter().find(|c| c.as_str() == q)
                })
                .unwrap_or(&d.checks[0]);
            let points: Vec<(usize, f64, Option<f64>, bool)> = cells
                .iter()
                .filter_map(|c| {
                    let i = *pos.get(c.batch.as_str())?;
                    let v = *c.flagged.get(check.as_str())?;
                    (i >= from).then(|| {
                        (
                            i - from,
                            v,
                            c.limits.get(check.as_str()).copied().flatten(),
                            c.alarm,
                        )
                    })
                })
                .collect();
            s.push_str(&panel(&format!("{name}: {check}"), shown, &points));
        }
        s.push_str("</div>");
    }
    // Classes.
    let c = classes.len();
    if c > 0 && nb > 0 {
        let alarmed: Vec<bool> = (0..c)
            .map(|k| {
                d.alarms
                    .iter()
                    .any(|a| a.class.as_deref() == Some(classes[k].as_str()))
            })
            .collect();
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by_key(|&k| (!alarmed[k], k));
        let _ = write!(
            s,
            r#"<h3>Per class</h3><p class="muted">{c} classes{}; alarmed first.{}</p><div class="drift-grid" style="display:flex;flex-wrap:wrap;gap:6px">"#,
            if c > MAX_PANELS {
                format!(", the first {MAX_PANELS} shown")
            } else {
                String::new()
            },
            if d.batches.iter().any(|b| b.segmentation.is_some()) {
                " Segmentation: the batch's mean annotated-area bias (a − p)/(a + p) on the class (a, p its annotated and predicted pixels in an item), about zero; red: an area_bias alarm on the class."
            } else {
                ""
            }
        );
        // Segmentation: the batch's mean area bias on the class.
        let seg = d.batches.iter().any(|b| b.segmentation.is_some());
        for &k in order.iter().take(MAX_PANELS).filter(|_| seg) {
            let points: Vec<(usize, f64, Option<f64>, bool)> = d.batches[from..]
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let v = (*b.segmentation.as_ref()?.area_bias.get(k)?)?;
                    let alarm = d.alarms.iter().any(|a| {
                        a.batch == b.batch
                            && a.metric == "mean:area_bias"
                            && a.class.as_deref() == Some(classes[k].as_str())
                    });
                    Some((i, v, None, alarm))
                })
                .collect();
            s.push_str(&panel_scaled(
                &format!("{}: area bias", classes[k]),
                shown,
                &points,
                Scale::Signed,
            ));
        }
        for &k in order.iter().take(MAX_PANELS).filter(|_| !seg) {
            let points: Vec<(usize, f64, Option<f64>, bool)> = d.batches[from..]
                .iter()
                .enumerate()
                .filter(|(_, b)| b.items > 0)
                .map(|(i, b)| {
                    let alarm = d.alarms.iter().any(|a| {
                        a.batch == b.batch && a.class.as_deref() == Some(classes[k].as_str())
                    });
                    (
                        i,
                        b.class_share.get(k).copied().unwrap_or(0.0),
                        b.class_limit.get(k).copied().flatten(),
                        alarm,
                    )
                })
                .collect();
            s.push_str(&panel(&classes[k], shown, &points));
        }
        s.push_str("</div>");
    }
    // Alarms.
    if !d.alarms.is_empty() {
        s.push_str(r#"<h3>Alarms</h3><table class="drift-alarms"><thead><tr><th>kind</th><th>annotator</th><th>class</th><th>batch</th><th>metric</th><th>value</th><th>baseline</th><th>limit</th><th>p</th></tr></thead><tbody>"#);
        let num = |x: Option<f64>| x.map_or_else(|| "–".to_string(), |v| format!("{v:.4}"));
        for a in d.alarms.iter().take(MAX_ALARM_ROWS) {
            let kind = serde_json::to_value(a.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1e}</td></tr>",
                html(&kind),
                html(a.annotator.as_deref().unwrap_or("–")),
                html(a.class.as_deref().unwrap_or("–")),
                html(&a.batch),
                html(&a.metric),
                num(Some(a.value)),
                num(a.baseline),
                num(a.limit),
                a.p
            );
        }
        s.push_str("</tbody></table>");
        if d.alarms.len() > MAX_ALARM_ROWS {
            let _ = write!(
                s,
                r#"<p class="muted">The first {MAX_ALARM_ROWS} of {} alarms (all in report.json).</p>"#,
                d.alarms.len()
            );
        }
    }
    s.push_str("</section>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DriftAlarm, DriftBatch, DriftKind, DriftSeg};
    use indexmap::IndexMap;

    /// 60 annotators × 120 batches, a hostile name: 50 annotator panels, the
    /// latest 100 batches, the name escaped, the alarm marked.
    #[test]
    fn many_annotators_and_batches_are_capped_and_escaped() {
        let batches: Vec<DriftBatch> = (0..120)
            .map(|b| DriftBatch {
                batch: format!("b{b:03}"),
                first_date: None,
                items: 10,
                flagged: IndexMap::new(),
                limits: IndexMap::new(),
                mean_label_quality: None,
                mean_confidence: None,
                alpha: None,
                annotations: 0,
                agreement_with_consensus: None,
                class_share: vec![0.5, 0.5],
                class_limit: vec![Some(0.7), None],
                chi_square: None,
                chi_square_df: None,
                chi_square_p: None,
                psi: None,
                alarm: false,
                segmentation: None,
            })
            .collect();
        let mut annotators = Vec::new();
        for a in 0..60 {
            for b in 0..120 {
                let name = if a == 7 {
                    "<b>x</b>".to_string()
                } else {
                    format!("a{a}")
                };
                annotators.push(DriftCell {
                    annotator: name,
                    batch: format!("b{b:03}"),
                    items: 10,
                    flagged: [("wrong_label".into(), 0.1)].into_iter().collect(),
                    limits: [("wrong_label".into(), Some(0.3))].into_iter().collect(),
                    mean_label_quality: None,
                    annotations: 0,
                    agreement_with_consensus: None,
                    q: Some(0.5),
                    alarm: a == 7 && b == 110,
                    segmentation: None,
                });
            }
        }
        let d = Drift {
            grouping: "batch".into(),
            method: String::new(),
            fdr: 0.01,
            tests: 1,
            families: 1,
            families_alarmed: 1,
            checks: vec!["wrong_label".into()],
            batches,
            annotators,
            alarms: vec![DriftAlarm {
                kind: DriftKind::Annotator,
                annotator: Some("<b>x</b>".into()),
                class: None,
                batch: "b110".into(),
                metric: "p_chart:wrong_label".into(),
                value: 0.5,
                baseline: Some(0.1),
                limit: Some(0.3),
                p: 1e-6,
            }],
        };
        let page = section(&d, &["c0".into(), "c1".into()]);
        assert_eq!(
            page.matches("data-chart=\"drift-panel\"").count(),
            MAX_PANELS + 2
        );
        assert!(page.contains("Showing the latest 100 batches of 120"));
        assert!(page.contains("60 annotators, the first 50 shown"));
        assert!(!page.contains("<b>x</b>") && page.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert_eq!(page.matches("class=\"drift-alarm\"").count(), 1);
        // The alarmed annotator comes first.
        let first = page.find("drift-panel").unwrap();
        assert!(page[first..].find("&lt;b&gt;x").unwrap() < 600);
    }

    /// Segmentation: 2 annotators × 4 batches, a1's bias on "cell" jumps at
    /// b2 (an `area_bias` alarm): a1's panel draws its area bias on cell
    /// about a zero line, each class's panel the batch's bias, the cell
    /// panel marks b2 and the alarm is listed.
    #[test]
    fn segmentation_panels_draw_the_area_bias() {
        let classes: Vec<String> = vec!["background".into(), "cell".into()];
        let seg = |bias: f64| {
            Some(DriftSeg {
                mean_miou: Some(0.8),
                mean_boundary_iou: Some(0.6),
                area_bias: vec![Some(-bias / 4.0), Some(bias)],
            })
        };
        let batches: Vec<DriftBatch> = (0..4)
            .map(|b| DriftBatch {
                batch: format!("b{b}"),
                first_date: None,
                items: 40,
                flagged: IndexMap::new(),
                limits: IndexMap::new(),
                mean_label_quality: None,
                mean_confidence: None,
                alpha: None,
                annotations: 0,
                agreement_with_consensus: None,
                class_share: vec![0.0, 0.0],
                class_limit: vec![None, None],
                chi_square: None,
                chi_square_df: None,
                chi_square_p: None,
                psi: None,
                alarm: false,
                segmentation: seg(if b >= 2 { 0.2 } else { 0.0 }),
            })
            .collect();
        let mut annotators = Vec::new();
        for a in 0..2 {
            for b in 0..4 {
                let jump = a == 1 && b >= 2;
                annotators.push(DriftCell {
                    annotator: format!("a{a}"),
                    batch: format!("b{b}"),
                    items: 20,
                    flagged: [("boundary_disagreement".into(), 0.1)]
                        .into_iter()
                        .collect(),
                    limits: IndexMap::new(),
                    mean_label_quality: None,
                    annotations: 0,
                    agreement_with_consensus: None,
                    q: Some(if jump { 1e-6 } else { 0.5 }),
                    alarm: jump,
                    segmentation: seg(if jump { 0.4 } else { 0.0 }),
                });
            }
        }
        let d = Drift {
            grouping: "batch".into(),
            method: String::new(),
            fdr: 0.01,
            tests: 10,
            families: 5,
            families_alarmed: 1,
            checks: vec!["boundary_disagreement".into()],
            batches,
            annotators,
            alarms: vec![DriftAlarm {
                kind: DriftKind::AreaBias,
                annotator: Some("a1".into()),
                class: Some("cell".into()),
                batch: "b2".into(),
                metric: "mean:area_bias".into(),
                value: 0.4,
                baseline: Some(0.0),
                limit: Some(0.1),
                p: 1e-7,
            }],
        };
        let page = section(&d, &classes);
        // 2 annotator panels, 2 class panels.
        assert_eq!(page.matches("data-chart=\"drift-panel\"").count(), 4);
        assert!(page.contains("a1: area bias, cell (±0.40)"), "{page}");
        assert!(page.contains("a0: boundary_disagreement (max 10 %)"));
        assert!(page.contains("cell: area bias (±0.20)"));
        assert!(page.contains("background: area bias"));
        assert_eq!(page.matches("class=\"drift-zero\"").count(), 3);
        // a1's b2 and b3 cells alarm; the cell panel marks b2 (the alarm's batch).
        assert_eq!(page.matches("class=\"drift-alarm\"").count(), 3);
        assert!(page.contains(
            "<td>area_bias</td><td>a1</td><td>cell</td><td>b2</td><td>mean:area_bias</td>"
        ));
        // The alarmed class comes first.
        assert!(
            page.find("cell: area bias").unwrap() < page.find("background: area bias").unwrap()
        );
    }
}
