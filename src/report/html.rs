//! The page itself: sections of escaped text, tables and inline SVG.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write;

use serde_json::Value;

use super::escape::html as esc;
use super::svg::{self, Series};
use super::{Inputs, TABLE_ROWS, Visual, conflicting, overlay};
use crate::config::Task;
use crate::schema::{AgreementSection, ClassMetric, PerClass, QueueRow, Report};

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
figcaption{font-size:12px;overflow-wrap:break-word;word-break:normal;hyphens:auto}
.cluster{margin:10px 0;padding:8px;background:#fff3f3;border:1px solid #e8c4c4;border-radius:6px}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #999;vertical-align:middle;margin:0 3px 0 10px}
.muted{color:#777}.tag{display:inline-block;background:#e8eef6;border-radius:3px;padding:0 4px;margin:1px;font-size:12px}
pre{white-space:pre-wrap;background:#fff;border:1px solid #ddd;padding:6px;font-size:12px}
td{overflow-wrap:break-word;word-break:normal;hyphens:auto}
tr.no-issue td{color:#8a8a8a;background:#fafafa}.no-issue-label{color:#666;font-weight:600}
tr.cut td{background:#fff4e5;border-top:3px solid #e15759;color:#a33;font-weight:600;text-align:center}
.caption{margin:4px 0 8px}
@media (max-width:700px){main{padding:10px 8px 40px}th{position:static}.gallery{gap:6px}figure{width:calc(50% - 3px);box-sizing:border-box;padding:4px}figure img{width:100%}svg.chart{width:100%}
table{display:block;overflow-x:auto}
table.review,table.review tbody,table.review tr{display:block}table.review thead{display:none}
table.review tr{border:1px solid #ddd;margin:0 0 8px;background:#fff}table.review tr.no-issue{background:#fafafa}table.review td{display:inline-block;border:none;padding:2px 6px}
table.review td.reasons,table.review td.item{display:block}table.review tr.cut{border:none}table.review tr.cut td{display:block;border-top:3px solid #e15759}
table.review tr:not(.cut) td:nth-child(1)::before{content:'#'}table.review td:nth-child(3)::before{content:'priority '}
table.review td[data-k]::before{content:attr(data-k) ': ';color:#777}}
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

/// Any JSON value as nested HTML tables (escaped); an empty list as `–`.
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
        // An empty list is shown as nothing there: "–", never `[]`.
        Value::Array(a) if a.is_empty() => text(&Value::Null),
        Value::Array(a) if depth < 4 && a.len() <= 50 => {
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
    let [a, b] = [overlay::IGNORE, overlay::IGNORE_HATCH];
    let hatch = format!(
        r#"<span class="sw ignore" style="background:repeating-linear-gradient(45deg,rgb({},{},{}) 0 3px,rgb({},{},{}) 3px 5px)"></span>"#,
        a[0], a[1], a[2], b[0], b[1], b[2]
    );
    match task {
        Task::Segmentation => format!(
            "<p class=\"muted\">Overlays: {}annotated boundary{}predicted boundary (argmax){}both{}disagreeing Boundary-IoU band (50 %){hatch}ignore (not scored: no boundary, no band), on the item's image or, without one, a grey rendering of the annotation.</p>",
            sw(overlay::ANNOTATED),
            sw(overlay::PREDICTED),
            sw(overlay::BOTH),
            sw(overlay::BAND)
        ),
        Task::Classification => "<p class=\"muted\">The item's image when the manifest has one, otherwise its top-3 predicted probabilities (red: the annotated class).</p>".into(),
    }
}

/// A field of a queue row the table shows as a column of its own when
/// some row has a value for it, or else as a tag in the row's "item" cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowField {
    Label,
    Predicted,
    ConsensusLabel,
    InBudget,
    SpotCheck,
    ReviewAll,
    Status,
    Cluster,
    AlsoInCluster,
}

impl RowField {
    /// The fields that get a column when some row has a value, in column order.
    const COLUMNS: [RowField; 8] = [
        RowField::Label,
        RowField::Predicted,
        RowField::ConsensusLabel,
        RowField::InBudget,
        RowField::SpotCheck,
        RowField::Status,
        RowField::Cluster,
        RowField::AlsoInCluster,
    ];

    /// The fields that may be tags, in the order of the `queue.jsonl` keys.
    const TAGS: [RowField; 7] = [
        RowField::InBudget,
        RowField::SpotCheck,
        RowField::ReviewAll,
        RowField::AlsoInCluster,
        RowField::Status,
        RowField::ConsensusLabel,
        RowField::Cluster,
    ];

    /// Its `queue.jsonl` key.
    fn name(self) -> &'static str {
        match self {
            RowField::Label => "label",
            RowField::Predicted => "predicted",
            RowField::ConsensusLabel => "consensus_label",
            RowField::InBudget => "in_budget",
            RowField::SpotCheck => "spot_check",
            RowField::ReviewAll => "review_all",
            RowField::Status => "status",
            RowField::Cluster => "cluster",
            RowField::AlsoInCluster => "also_in_cluster",
        }
    }

    /// Its value in row `r`, for [`block`]: `None` when the run has no such
    /// field, `Value::Null` where the row has none.
    fn value(self, r: &QueueRow<'_>) -> Option<Value> {
        let text = |s: &Option<Cow<'_, str>>| s.as_deref().map_or(Value::Null, |s| s.into());
        match self {
            RowField::Label => r.label.as_deref().map(Value::from),
            RowField::Predicted => r.predicted.as_deref().map(Value::from),
            RowField::ConsensusLabel => r.consensus_label.as_ref().map(text),
            RowField::InBudget => Some(r.in_budget.into()),
            RowField::SpotCheck => Some(r.spot_check.into()),
            RowField::ReviewAll => Some(r.review_all.into()),
            RowField::Status => r.status.as_ref().map(text),
            RowField::Cluster => r.cluster.map(|c| c.map_or(Value::Null, Value::from)),
            // An empty list is no value (never a literal `[]`).
            RowField::AlsoInCluster => Some(if r.also_in_cluster.is_empty() {
                Value::Null
            } else {
                r.also_in_cluster
                    .iter()
                    .map(|s| Value::from(s.as_ref()))
                    .collect()
            }),
        }
    }

    /// Whether the run gives the field a meaning: the policy flags only
    /// with their options (`in_budget` with `--budget`, `spot_check` with
    /// `--spot-check`, `review_all` with `--review-all-from`); without one
    /// every row would say the same (`in_budget: yes`).
    fn applies(self, t: &TableView) -> bool {
        match self {
            RowField::InBudget => t.budget,
            RowField::SpotCheck => t.spot_check,
            RowField::ReviewAll => t.review_all,
            _ => true,
        }
    }
}

/// What the queue table needs besides its rows: which policy flags the
/// run used, and where the queue's evidence ends.
#[derive(Debug, Clone, Default)]
pub struct TableView {
    /// `--budget` was given.
    pub budget: bool,
    /// `--spot-check` above 0.
    pub spot_check: bool,
    /// `--review-all-from` names an annotator.
    pub review_all: bool,
    /// `report.json` `queue`: rows ranked below `evidence_ends_at` are
    /// shown as "no issue found".
    pub evidence: Option<crate::schema::QueueSummary>,
}

impl TableView {
    /// The run's view: its `queue_policy` options and its `queue` section.
    pub fn of(r: &Report) -> Self {
        let q = &r.queue_policy;
        TableView {
            budget: q.budget.is_some(),
            spot_check: q.spot_check > 0.0,
            review_all: !q.review_all_from.is_empty(),
            evidence: Some(r.queue.clone()),
        }
    }

    /// Whether the row of rank `rank` lies below the cut.
    fn no_issue(&self, rank: usize) -> bool {
        self.evidence
            .as_ref()
            .is_some_and(|e| rank > e.evidence_ends_at)
    }

    /// The label of row `r` below the cut: [`NO_ISSUE`], or [`WEAK`] when a
    /// check flags it; `None` above the cut.
    fn below_cut(&self, r: &QueueRow<'_>) -> Option<&'static str> {
        let label = if r.flags.is_empty() { NO_ISSUE } else { WEAK };
        self.no_issue(r.rank).then_some(label)
    }

    /// [`TableView::below_cut`] as the table's HTML: a [`WEAK`] label
    /// names the checks that flag the row.
    fn below_cut_html(&self, r: &QueueRow<'_>) -> Option<String> {
        let label = self.below_cut(r)?;
        Some(if r.flags.is_empty() {
            format!(r#"<b class="no-issue-label">{label}</b>"#)
        } else {
            let by: Vec<&str> = r.flags.iter().map(|f| f.as_ref()).collect();
            format!(
                r#"<b class="no-issue-label">{label}</b> <span class="muted">(flagged by {} at the clean items' priority)</span>"#,
                esc(&by.join(", "))
            )
        })
    }
}

/// The optional fields the run uses and some row of `queue` has a value for.
fn row_columns(queue: &[QueueRow<'_>], t: &TableView) -> Vec<RowField> {
    RowField::COLUMNS
        .into_iter()
        .filter(|f| f.applies(t))
        .filter(|f| {
            queue
                .iter()
                .any(|r| f.value(r).is_some_and(|v| !v.is_null()))
        })
        .collect()
}

/// The label of a row below the evidence cut that no check flags.
pub const NO_ISSUE: &str = "no issue found";

/// The label of a row below the evidence cut that a check flags: its
/// priority sits at the clean items' level.
pub const WEAK: &str = "weak evidence";

/// The caption above the queue table: the evidence cut's rule and where
/// it falls.
fn evidence_caption(t: &TableView, shown: usize) -> String {
    let Some(e) = &t.evidence else {
        return String::new();
    };
    let place = if e.evidence_ends_at == 0 {
        format!("No row has evidence: every row is marked “{NO_ISSUE}”.")
    } else if e.evidence_ends_at >= shown {
        format!(
            "The evidence ends at rank {}, past the {shown} rows shown.",
            e.evidence_ends_at
        )
    } else {
        format!(
            "The evidence ends at rank {}: the rows below the cut are greyed and marked “{NO_ISSUE}”, or “{WEAK}” where a check flags them at the clean items' priority (their reasons kept).",
            e.evidence_ends_at
        )
    };
    format!(
        r#"<p class="caption evidence">{} {} <span class="muted">(report.json <code>queue.evidence_ends_at</code>)</span></p>"#,
        esc(&e.evidence_rule),
        esc(&place)
    )
}

/// A row's "item" cell: the fields without a column that have a value,
/// then the carried manifest columns (annotator, paths, split, ...), as
/// tags; empty when it has none.
fn item_cell(r: &QueueRow<'_>, cols: &[RowField], t: &TableView) -> String {
    let tags = RowField::TAGS
        .into_iter()
        .filter(|f| f.applies(t) && !cols.contains(f))
        .filter_map(|f| Some((f.name(), f.value(r)?)))
        .filter(|(_, v)| !v.is_null());
    let carried = r
        .carried
        .0
        .iter()
        .map(|(k, v)| (k.as_ref(), Value::from(v.as_ref())));
    let mut s = String::new();
    for (k, v) in tags.chain(carried) {
        let _ = write!(
            s,
            r#"<span class="tag">{}: {}</span> "#,
            esc(k),
            block(&v, 3)
        );
    }
    s
}

fn queue_table(queue: &[QueueRow<'_>], t: &TableView) -> String {
    let cols = row_columns(queue, t);
    let rows = &queue[..queue.len().min(TABLE_ROWS)];
    let shown = rows.len();
    let items: Vec<String> = rows.iter().map(|r| item_cell(r, &cols, t)).collect();
    // No "item" column when no row has anything to put in it.
    let with_item = items.iter().any(|c| !c.is_empty());
    let mut s = evidence_caption(t, shown);
    s.push_str(
        "<table class=\"queue review\"><thead><tr><th>rank</th><th>id</th><th>priority</th>",
    );
    for c in &cols {
        let _ = write!(s, "<th>{}</th>", esc(c.name()));
    }
    s.push_str("<th>reasons</th>");
    if with_item {
        s.push_str("<th>item</th>");
    }
    s.push_str("</tr></thead><tbody>");
    let width = 4 + cols.len() + usize::from(with_item);
    for (r, item) in rows.iter().zip(&items) {
        let below = t.below_cut_html(r);
        let _ = write!(
            s,
            r#"<tr{}><td class="num">{}</td><td>{}</td><td class="num">{}</td>"#,
            if below.is_some() {
                r#" class="no-issue""#
            } else {
                ""
            },
            r.rank,
            esc(&r.id),
            svg::fmt3(r.priority)
        );
        for c in &cols {
            let v = c.value(r).unwrap_or(Value::Null);
            let _ = write!(s, r#"<td data-k="{}">{}</td>"#, c.name(), block(&v, 2));
        }
        s.push_str(r#"<td class="reasons">"#);
        if let Some(label) = &below {
            s.push_str(label);
        }
        s.push_str("<ul>");
        for reason in &r.reasons {
            let _ = write!(s, "<li>{}</li>", esc(reason));
        }
        s.push_str("</ul></td>");
        if with_item {
            let _ = write!(s, r#"<td class="item">{item}</td>"#);
        }
        s.push_str("</tr>");
        if let Some(e) = &t.evidence
            && e.evidence_ends_at == r.rank
            && r.rank < shown
        {
            let _ = write!(
                s,
                r#"<tr class="cut"><td colspan="{width}">▲ evidence ends at rank {} · below: {NO_ISSUE} or {WEAK} ▼</td></tr>"#,
                r.rank
            );
        }
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

/// Above this many classes the "Per class" section stops drawing every
/// class: instead of the C × C confusion heatmap and one bar group per class
/// it shows the [`TOP_PAIRS`] most-confused (annotated → predicted) pairs,
/// the [`WORST_K`] classes with the lowest recall (classification) or IoU
/// (segmentation), and the [`BALANCE_EACH`] smallest and largest classes, so
/// the section's size no longer grows with C. The full numbers stay in
/// `report.json` (`per_class`, `confusion`). At or below it the section is
/// unchanged: every class, the full heatmap.
pub const MANY_CLASSES: usize = 30;
/// Most-confused class pairs listed when there are more than
/// [`MANY_CLASSES`] classes.
pub const TOP_PAIRS: usize = 20;
/// Classes in the per-class chart and table when there are more than
/// [`MANY_CLASSES`] classes: the worst by recall / IoU.
pub const WORST_K: usize = 30;
/// Smallest and (as many) largest classes in the class-balance charts when
/// there are more than [`MANY_CLASSES`] classes.
pub const BALANCE_EACH: usize = 15;
/// Longest class name (in characters) written in the many-class tables.
const NAME_CHARS: usize = 80;

// The smallest and the largest classes never overlap.
const _: () = assert!(2 * BALANCE_EACH <= MANY_CLASSES);

/// One off-diagonal cell of the confusion matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Row: the annotated class.
    pub label: usize,
    /// Column: the predicted class.
    pub predicted: usize,
    /// Items (pixels) annotated `label` and predicted `predicted`.
    pub count: u64,
    /// The row's total: items (pixels) annotated `label`.
    pub support: u64,
}

impl Pair {
    /// `count` as a share of the annotated class's support.
    pub fn share(&self) -> f64 {
        if self.support > 0 {
            self.count as f64 / self.support as f64
        } else {
            0.0
        }
    }
}

/// The `k` largest non-zero off-diagonal cells of `matrix` (rows annotated,
/// columns predicted), largest count first; ties by row, then column.
pub fn confused_pairs(matrix: &[Vec<u64>], k: usize) -> Vec<Pair> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    // Larger key = more confused; the heap keeps the k largest (its top is
    // the least of them), so memory stays O(k) at any C.
    type Key = (u64, Reverse<usize>, Reverse<usize>);
    let mut heap: BinaryHeap<Reverse<Key>> = BinaryHeap::with_capacity(k + 1);
    let mut support = Vec::with_capacity(matrix.len());
    for (label, row) in matrix.iter().enumerate() {
        support.push(row.iter().sum::<u64>());
        for (predicted, &count) in row.iter().enumerate() {
            if predicted == label || count == 0 || k == 0 {
                continue;
            }
            let key = (count, Reverse(label), Reverse(predicted));
            if heap.len() < k {
                heap.push(Reverse(key));
            } else if heap.peek().is_some_and(|least| key > least.0) {
                heap.pop();
                heap.push(Reverse(key));
            }
        }
    }
    // Ascending `Reverse<Key>` is descending `Key`: largest first.
    heap.into_sorted_vec()
        .into_iter()
        .map(
            |Reverse((count, Reverse(label), Reverse(predicted)))| Pair {
                label,
                predicted,
                count,
                support: support[label],
            },
        )
        .collect()
}

/// `a` before `b` when smaller; missing and non-finite values after every
/// defined one (and equal among themselves).
fn defined_first(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a.filter(|v| v.is_finite()), b.filter(|v| v.is_finite())) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Indices of `values` in ascending order (missing and non-finite values
/// last, ties by index), the first `k` of them.
pub fn lowest(values: &[Option<f64>], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| defined_first(values[a], values[b]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The `k` worst classes: ascending by `metric` (recall or IoU; classes
/// where it is undefined last), ties broken by the larger `support` (a
/// class missed over more items first), then by index.
pub fn worst(metric: &[Option<f64>], support: &[Option<f64>], k: usize) -> Vec<usize> {
    let sup = |i: usize| support.get(i).copied().flatten();
    let mut idx: Vec<usize> = (0..metric.len()).collect();
    idx.sort_by(|&a, &b| {
        defined_first(metric[a], metric[b])
            .then(defined_first(sup(b), sup(a)))
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

fn name_of(classes: &[String], k: usize) -> String {
    classes
        .get(k)
        .map_or_else(|| k.to_string(), |n| svg::truncate(n, NAME_CHARS))
}

fn percent(f: f64) -> String {
    format!("{:.1}%", 100.0 * f)
}

/// Axis top for counts: the largest rounded up to a multiple of 4.
fn count_axis(max: f64) -> f64 {
    ((max.max(1.0) / 4.0).ceil() * 4.0).max(4.0)
}

/// The "Per class" section: per-class bars, class balance and confusion.
/// See [`MANY_CLASSES`] for what it shows with many classes.
pub fn classes_section(
    task: Task,
    classes: &[String],
    per_class: &[PerClass],
    matrix: &[Vec<u64>],
) -> String {
    let mut s = String::new();
    if classes.len() > MANY_CLASSES {
        many_classes(&mut s, task, classes, per_class, matrix);
        return s;
    }
    let col = |m: ClassMetric| -> Vec<Option<f64>> { per_class.iter().map(|p| p.get(m)).collect() };
    s.push_str(r#"<section id="classes"><h2>Per class</h2><div class="charts">"#);
    let series = match task {
        Task::Segmentation => vec![
            Series {
                name: "IoU",
                colour: svg::BLUE,
                values: col(ClassMetric::Iou),
            },
            Series {
                name: "Dice",
                colour: svg::GREEN,
                values: col(ClassMetric::Dice),
            },
            Series {
                name: "Boundary IoU",
                colour: svg::ORANGE,
                values: col(ClassMetric::BoundaryIou),
            },
        ],
        Task::Classification => vec![
            Series {
                name: "precision",
                colour: svg::BLUE,
                values: col(ClassMetric::Precision),
            },
            Series {
                name: "recall",
                colour: svg::RED,
                values: col(ClassMetric::Recall),
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
        classes,
        &series,
        1.0,
    ));
    let support = col(ClassMetric::Support);
    let max = support.iter().flatten().copied().fold(0.0, f64::max);
    let unit = if task == Task::Segmentation {
        "pixels"
    } else {
        "items"
    };
    s.push_str(&svg::grouped_bars(
        "support",
        &format!("Class balance: annotated {unit} per class"),
        classes,
        &[Series {
            name: "support",
            colour: svg::TEAL,
            values: support,
        }],
        max,
    ));
    s.push_str(&svg::heatmap(classes, matrix));
    s.push_str("</div></section>");
    s
}

fn many_classes(
    s: &mut String,
    task: Task,
    classes: &[String],
    per_class: &[PerClass],
    matrix: &[Vec<u64>],
) {
    let c = classes.len();
    let col = |m: ClassMetric| -> Vec<Option<f64>> {
        (0..c)
            .map(|i| per_class.get(i).and_then(|p| p.get(m)))
            .collect()
    };
    let unit = match task {
        Task::Segmentation => "pixels",
        Task::Classification => "items",
    };
    let (sort_key, sort_name) = match task {
        Task::Segmentation => (ClassMetric::Iou, "IoU"),
        Task::Classification => (ClassMetric::Recall, "recall"),
    };
    let _ = write!(
        s,
        r#"<section id="classes"><h2>Per class</h2><p class="muted many-classes">{c} classes (more than {MANY_CLASSES}): this section shows the {TOP_PAIRS} most-confused class pairs, the {WORST_K} classes with the lowest {sort_name}, and the {BALANCE_EACH} smallest and largest classes. The full per-class table is in report.json <code>per_class</code> and the full confusion matrix in <code>confusion</code>.</p>"#
    );

    confused_pairs_block(s, classes, matrix, unit);
    let support = col(ClassMetric::Support);
    worst_classes_block(
        s,
        task,
        classes,
        &col,
        &support,
        (sort_key, sort_name),
        unit,
    );
    balance_block(s, classes, &support, unit);
    s.push_str("</div></section>");
}

/// The most-confused class pairs (annotated → predicted), largest first.
fn confused_pairs_block(s: &mut String, classes: &[String], matrix: &[Vec<u64>], unit: &str) {
    let pairs = confused_pairs(matrix, TOP_PAIRS);
    let _ = write!(
        s,
        r#"<h3 id="confused-pairs">Most-confused class pairs (annotated → predicted)</h3><p class="muted">The {TOP_PAIRS} largest off-diagonal cells of the confusion matrix, largest first; share: of the annotated class's {unit}.</p>"#
    );
    if pairs.is_empty() {
        s.push_str(r#"<p class="muted">No confusions: everything is predicted as annotated.</p>"#);
    } else {
        let labels: Vec<String> = pairs
            .iter()
            .map(|p| {
                format!(
                    "{} → {}",
                    svg::truncate(&name_of(classes, p.label), 14),
                    svg::truncate(&name_of(classes, p.predicted), 14)
                )
            })
            .collect();
        let notes: Vec<String> = pairs
            .iter()
            .map(|p| format!("{} · {}", p.count, percent(p.share())))
            .collect();
        let max = count_axis(pairs[0].count as f64);
        s.push_str(r#"<div class="charts">"#);
        s.push_str(&svg::hbars(
            "confused-pairs",
            &format!("The {} most-confused pairs: {unit}", pairs.len()),
            &labels,
            &[Series {
                name: "count",
                colour: svg::RED,
                values: pairs.iter().map(|p| Some(p.count as f64)).collect(),
            }],
            max,
            &notes,
        ));
        s.push_str("</div>");
        let _ = write!(
            s,
            r#"<table class="confused-pairs"><thead><tr><th>#</th><th>annotated</th><th>predicted</th><th>{unit}</th><th>share of annotated</th></tr></thead><tbody>"#
        );
        for (i, p) in pairs.iter().enumerate() {
            let _ = write!(
                s,
                r#"<tr class="pair"><td class="num">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                i + 1,
                esc(&name_of(classes, p.label)),
                esc(&name_of(classes, p.predicted)),
                p.count,
                percent(p.share())
            );
        }
        s.push_str("</tbody></table>");
    }
}

/// The classes with the lowest `sort_key` (IoU or recall), as bars and a
/// table.
fn worst_classes_block(
    s: &mut String,
    task: Task,
    classes: &[String],
    col: &dyn Fn(ClassMetric) -> Vec<Option<f64>>,
    support: &[Option<f64>],
    (sort_key, sort_name): (ClassMetric, &str),
    unit: &str,
) {
    let key = col(sort_key);
    let worst = worst(&key, support, WORST_K);
    let pick = |v: &[Option<f64>]| -> Vec<Option<f64>> { worst.iter().map(|&i| v[i]).collect() };
    let metrics: Vec<(&str, ClassMetric, &str)> = match task {
        Task::Segmentation => vec![
            ("IoU", ClassMetric::Iou, svg::BLUE),
            ("Dice", ClassMetric::Dice, svg::GREEN),
            ("Boundary IoU", ClassMetric::BoundaryIou, svg::ORANGE),
        ],
        Task::Classification => vec![
            ("recall", ClassMetric::Recall, svg::RED),
            ("precision", ClassMetric::Precision, svg::BLUE),
        ],
    };
    let columns: Vec<Vec<Option<f64>>> = metrics.iter().map(|m| col(m.1)).collect();
    let series: Vec<Series<'_>> = metrics
        .iter()
        .zip(&columns)
        .map(|(m, v)| Series {
            name: m.0,
            colour: m.2,
            values: pick(v),
        })
        .collect();
    let labels: Vec<String> = worst.iter().map(|&i| name_of(classes, i)).collect();
    let notes: Vec<String> = worst
        .iter()
        .map(|&i| format!("{sort_name} {}", svg::fmt3(key[i])))
        .collect();
    let _ = write!(
        s,
        r#"<h3 id="worst-classes">The {n} classes with the lowest {sort_name}</h3><p class="muted">Sorted by {sort_name}, ascending (ties: the larger class first; classes where it is undefined last). The full per-class table is in report.json <code>per_class</code>.</p><div class="charts">"#,
        n = worst.len()
    );
    s.push_str(&svg::hbars(
        "per-class",
        &format!(
            "{} of the {} classes with the lowest {sort_name}",
            metrics.iter().map(|m| m.0).collect::<Vec<_>>().join(", "),
            worst.len()
        ),
        &labels,
        &series,
        1.0,
        &notes,
    ));
    s.push_str("</div>");
    let _ = write!(
        s,
        r#"<table class="worst-classes"><thead><tr><th>#</th><th>class</th><th>support ({unit})</th>"#
    );
    for m in &metrics {
        let _ = write!(s, "<th>{}</th>", esc(m.0));
    }
    s.push_str("</tr></thead><tbody>");
    for (rank, &i) in worst.iter().enumerate() {
        let _ = write!(
            s,
            r#"<tr class="worst"><td class="num">{}</td><td>{}</td><td class="num">{}</td>"#,
            rank + 1,
            esc(&name_of(classes, i)),
            support[i].map_or("–".into(), |v| format!("{v:.0}"))
        );
        for v in &columns {
            let _ = write!(s, r#"<td class="num">{}</td>"#, svg::fmt3(v[i]));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
}

/// The class balance: the smallest and the largest classes by support.
fn balance_block(s: &mut String, classes: &[String], support: &[Option<f64>], unit: &str) {
    let c = classes.len();
    let smallest = lowest(support, BALANCE_EACH);
    let negated: Vec<Option<f64>> = support.iter().map(|v| v.map(|x| -x)).collect();
    let largest = lowest(&negated, BALANCE_EACH);
    let mut sorted: Vec<f64> = support.iter().flatten().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.is_empty() {
        None
    } else {
        Some(sorted[sorted.len() / 2])
    };
    let empty = sorted.iter().filter(|&&v| v == 0.0).count();
    let _ = write!(
        s,
        r#"<h3 id="class-balance">Class balance</h3><p class="muted">Annotated {unit} per class: smallest {}, median {}, largest {}; {empty} of {c} classes have none.</p><div class="charts">"#,
        sorted.first().map_or("–".into(), |v| format!("{v:.0}")),
        median.map_or("–".into(), |v| format!("{v:.0}")),
        sorted.last().map_or("–".into(), |v| format!("{v:.0}")),
    );
    let max = count_axis(sorted.last().copied().unwrap_or(0.0));
    for (which, idx) in [("smallest", &smallest), ("largest", &largest)] {
        s.push_str(&svg::hbars(
            "support",
            &format!("The {} {which} classes: annotated {unit}", idx.len()),
            &idx.iter().map(|&i| name_of(classes, i)).collect::<Vec<_>>(),
            &[Series {
                name: "support",
                colour: svg::TEAL,
                values: idx.iter().map(|&i| support[i]).collect(),
            }],
            max,
            &idx.iter()
                .map(|&i| support[i].map_or("–".into(), |v| format!("{v:.0}")))
                .collect::<Vec<_>>(),
        ));
    }
}

/// The summary: counts, pooled scores, the backend, the duplicates found.
fn summary_section(s: &mut String, r: &Report, classes: usize) {
    s.push_str(r#"<section id="summary"><div class="stats">"#);
    stat(s, "items", r.n_items.to_string());
    stat(s, "task", esc(r.task.name()));
    stat(s, "classes", classes.to_string());
    stat(s, "accuracy", svg::fmt3(r.accuracy));
    stat(s, "ECE", svg::fmt3(r.ece));
    stat(s, "MCE", svg::fmt3(r.mce));
    if let Some(seg) = &r.segmentation {
        stat(s, "mIoU", svg::fmt3(seg.miou));
        stat(s, "mDice", svg::fmt3(seg.mdice));
        stat(s, "mBoundary IoU", svg::fmt3(seg.mboundary_iou));
    }
    stat(s, "backend", esc(&r.backend.name));
    if let Some(d) = &r.duplicates {
        stat(s, "near-duplicate pairs", d.pairs.to_string());
        stat(
            s,
            "conflicting clusters",
            d.conflicting_clusters.to_string(),
        );
    }
    s.push_str("</div></section>");
}

/// The top of the queue as pictures with their first reason.
fn gallery_section(s: &mut String, inp: &Inputs<'_>, vis: &HashMap<String, Visual>) {
    let task = inp.cfg.task;
    s.push_str(r#"<section id="gallery"><h2>Top of the queue</h2>"#);
    s.push_str(&legend(task));
    s.push_str(r#"<div class="gallery">"#);
    let view = TableView::of(inp.report);
    for row in inp.queue.iter().take(super::GALLERY_TOP) {
        let id = row.id.as_ref();
        let reason = row.reasons.first().map_or("", |r| r.as_ref());
        let mut cap = format!(
            "#{} <b>{}</b> priority {}",
            row.rank,
            esc(id),
            svg::fmt3(row.priority)
        );
        if let (Some(l), Some(p)) = (&row.label, &row.predicted) {
            let _ = write!(cap, "<br>label {} · predicted {}", esc(l), esc(p));
        }
        // Below the evidence cut: labelled so, its first reason greyed.
        let reason = if let Some(label) = view.below_cut(row) {
            format!(
                r#"<b class="no-issue-label">{label}</b> <span class="muted">{}</span>"#,
                esc(reason)
            )
        } else {
            esc(reason)
        };
        let _ = write!(
            *s,
            r#"<figure class="item">{}<figcaption>{cap}<br>{reason}</figcaption></figure>"#,
            picture(vis.get(&super::visual_key(id)), id),
        );
    }
    s.push_str("</div></section>");
}

/// The reliability diagram with counts, and a histogram per score over
/// every item.
fn charts_section(s: &mut String, inp: &Inputs<'_>) {
    let r = inp.report;
    s.push_str(r#"<section id="calibration"><h2>Calibration and scores</h2><div class="charts">"#);
    let table = &r.reliability;
    let n = table.len().max(1) as f64;
    let bins: Vec<svg::Bin> = table
        .iter()
        .enumerate()
        .map(|(i, b)| svg::Bin {
            lo: i as f64 / n,
            hi: (i + 1) as f64 / n,
            count: b.count,
            confidence: b.confidence,
            accuracy: b.accuracy,
        })
        .collect();
    s.push_str(&svg::reliability(&bins));
    s.push_str("</div>");
    // Over every item (not only the queue rows passed in), one score at a
    // time; the items of "Top of the queue" marked where they lie.
    let top = &inp.queue[..inp.queue.len().min(super::GALLERY_TOP)];
    let view = TableView::of(r);
    let _ = write!(
        s,
        r#"<p class="muted">Every item's scores. The ticks under each axis are the {} items at the top of the queue: red above the evidence cut, grey below it; hover for rank and id.</p>"#,
        top.len()
    );
    s.push_str(r#"<div class="charts">"#);
    for key in &inp.score_names {
        let values = (inp.score_values)(key);
        let marks: Vec<svg::Mark> = top
            .iter()
            .filter_map(|r| {
                let v = r.scores.get(key)?;
                Some(svg::Mark {
                    value: v,
                    label: format!("#{} {}: {}", r.rank, r.id, svg::tick(v, v.abs())),
                    evidence: !view.no_issue(r.rank),
                })
            })
            .collect();
        s.push_str(&svg::histogram(key, &values, 20, &marks));
    }
    s.push_str("</div></section>");
}

/// The galleries of near-duplicate clusters whose labels disagree.
fn clusters_section(s: &mut String, inp: &Inputs<'_>, vis: &HashMap<String, Visual>) {
    s.push_str(r#"<section id="clusters"><h2>Conflicting near-duplicate clusters</h2>"#);
    let conf = conflicting(inp.clusters);
    if conf.is_empty() {
        s.push_str(r#"<p class="muted">No near-duplicate cluster has disagreeing labels.</p>"#);
    }
    for c in conf {
        let _ = write!(
            *s,
            r#"<div class="cluster"><p>cluster {} · majority label <b>{}</b> · {:.0}% of members disagree · max distance {}</p><div class="gallery">"#,
            c.cluster,
            esc(&c.majority_label),
            100.0 * c.conflict_fraction,
            svg::fmt3(Some(c.max_distance))
        );
        for m in &c.members {
            let (id, label) = (m.id.as_str(), m.label.as_str());
            let mark = if id == c.centre { " (centre)" } else { "" };
            let odd = if label != c.majority_label {
                " ⚠ disagrees"
            } else {
                ""
            };
            let _ = write!(
                *s,
                r#"<figure class="member">{}<figcaption><b>{}</b>{mark}<br>label {}{odd}</figcaption></figure>"#,
                picture(vis.get(&super::visual_key(id)), id),
                esc(id),
                esc(label)
            );
        }
        s.push_str("</div></div>");
    }
    s.push_str("</section>");
}

/// The whole page.
/// Items of the queue listed in the annotator section, lowest agreement first.
const WORST_AGREEMENT: usize = 12;
/// The row score the annotator section ranks by: the share of an item's
/// annotator pairs that agree ([`crate::scores::ItemScores::annotator_agreement`]).
const ANNOTATOR_AGREEMENT: &str = "annotator_agreement";

/// The annotator section (with `[inputs] annotations`): the dataset
/// figures, the per-class agreement bars, the per-annotator table (those
/// under the threshold marked) and the queue's items with the lowest
/// agreement, with their reasons.
fn annotators_section(
    s: &mut String,
    ag: &AgreementSection,
    classes: &[String],
    inp: &Inputs<'_>,
    vis: &HashMap<String, Visual>,
) {
    let queue = inp.queue;
    s.push_str(r#"<section id="annotators"><h2>Annotators</h2><div class="stats">"#);
    let below: &[String] = match ag {
        AgreementSection::Classification(a) => {
            stat(s, "annotators", a.annotators.to_string());
            stat(s, "items with 2+", a.items_with_2plus.to_string());
            stat(s, "Krippendorff α", svg::fmt3(a.krippendorff_alpha));
            stat(
                s,
                &format!("Fleiss κ ({} items × {})", a.fleiss_items, a.fleiss_m),
                svg::fmt3(a.fleiss_kappa),
            );
            &a.below_threshold
        }
        AgreementSection::Segmentation(a) => {
            stat(s, "annotators", a.annotators.to_string());
            stat(s, "items with 2+", a.items_with_2plus.to_string());
            stat(s, "pairs compared", a.pairs.to_string());
            &a.below_threshold
        }
    };
    s.push_str(r#"</div><div class="charts">"#);
    match ag {
        AgreementSection::Classification(a) => {
            s.push_str(&svg::grouped_bars(
                "agreement-per-class",
                "One-vs-rest Krippendorff α per class",
                classes,
                &[Series {
                    name: "alpha",
                    colour: svg::BLUE,
                    values: a.per_class.iter().map(|p| p.alpha).collect(),
                }],
                1.0,
            ));
        }
        AgreementSection::Segmentation(a) => {
            let col = |f: &dyn Fn(&crate::schema::SegClassAgreement) -> Option<f64>| {
                a.per_class.iter().map(f).collect::<Vec<_>>()
            };
            s.push_str(&svg::grouped_bars(
                "agreement-per-class",
                "Agreement between annotators per class (pooled over pairs)",
                classes,
                &[
                    Series {
                        name: "IoU",
                        colour: svg::BLUE,
                        values: col(&|p| p.iou),
                    },
                    Series {
                        name: "Dice",
                        colour: svg::GREEN,
                        values: col(&|p| p.dice),
                    },
                    Series {
                        name: "Boundary IoU",
                        colour: svg::ORANGE,
                        values: col(&|p| p.boundary_iou),
                    },
                ],
                1.0,
            ));
        }
    }
    s.push_str("</div>");
    let mark = |name: &str| {
        if below.iter().any(|b| b == name) {
            r#" <span class="tag">below threshold</span>"#
        } else {
            ""
        }
    };
    match ag {
        AgreementSection::Classification(a) => {
            let _ = write!(
                s,
                r#"<table class="annotators"><thead><tr><th>annotator</th><th>items</th><th>agreement with consensus</th><th>κ with consensus (threshold {})</th><th>agreement with model</th><th>agreement with official label</th></tr></thead><tbody>"#,
                a.min_annotator_kappa
            );
            for r in &a.per_annotator {
                let _ = write!(
                    s,
                    r#"<tr><td>{}{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                    esc(&r.annotator),
                    mark(&r.annotator),
                    r.items,
                    svg::fmt3(r.agreement_with_consensus),
                    svg::fmt3(r.kappa_with_consensus),
                    svg::fmt3(r.agreement_with_model),
                    svg::fmt3(r.agreement_with_official)
                );
            }
        }
        AgreementSection::Segmentation(a) => {
            let _ = write!(
                s,
                r#"<table class="annotators"><thead><tr><th>annotator</th><th>items</th><th>mIoU with others (threshold {})</th><th>Boundary IoU with others</th><th>area bias per class</th></tr></thead><tbody>"#,
                a.min_annotator_iou
            );
            for r in &a.per_annotator {
                let bias: Vec<String> = r
                    .area_bias
                    .iter()
                    .enumerate()
                    .filter_map(|(k, b)| {
                        b.map(|b| format!("{} {:+.0}%", name_of(classes, k), 100.0 * b))
                    })
                    .collect();
                let _ = write!(
                    s,
                    r#"<tr><td>{}{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                    esc(&r.annotator),
                    mark(&r.annotator),
                    r.items,
                    svg::fmt3(r.miou_with_others),
                    svg::fmt3(r.boundary_iou_with_others),
                    esc(&bias.join(", "))
                );
            }
        }
    }
    s.push_str("</tbody></table>");
    let agreement = |r: &QueueRow<'_>| r.scores.get(ANNOTATOR_AGREEMENT);
    let mut worst: Vec<&QueueRow<'_>> = queue.iter().filter(|r| agreement(r).is_some()).collect();
    worst.sort_by(|a, b| {
        agreement(a)
            .partial_cmp(&agreement(b))
            .unwrap_or(Ordering::Equal)
            .then(a.rank.cmp(&b.rank))
    });
    if !worst.is_empty() {
        let _ = write!(
            s,
            r#"<h3>Lowest agreement among the first {} queue rows</h3><table class="worst-agreement"><thead><tr><th>rank</th><th>id</th><th>agreement</th><th>reasons</th></tr></thead><tbody>"#,
            queue.len()
        );
        for r in worst.iter().take(WORST_AGREEMENT) {
            let _ = write!(
                s,
                r#"<tr><td class="num">{}</td><td>{}</td><td class="num">{}</td><td><ul>"#,
                r.rank,
                esc(&r.id),
                svg::fmt3(agreement(r))
            );
            for reason in &r.reasons {
                let _ = write!(s, "<li>{}</li>", esc(reason));
            }
            s.push_str("</ul></td></tr>");
        }
        s.push_str("</tbody></table>");
    }
    if !inp.annotator_items.is_empty() {
        s.push_str(r#"<h3>Lowest agreement: every annotator's outline</h3><div class="gallery">"#);
        for a in inp.annotator_items.iter().take(super::MAX_ANNOTATED) {
            let id = &inp.manifest.ids[a.index];
            let _ = write!(
                s,
                "<figure>{}<figcaption>{}",
                picture(vis.get(&super::annotators_key(id)), id),
                esc(id)
            );
            for (k, (name, _)) in a.masks.iter().enumerate() {
                let [r, g, b] = overlay::annotator_colour(k);
                let _ = write!(
                    s,
                    r#"<br><span class="sw" style="background:rgb({r},{g},{b})"></span>{}"#,
                    esc(name)
                );
            }
            s.push_str("</figcaption></figure>");
        }
        s.push_str("</div>");
    }
    s.push_str("</section>");
}

/// "To label next": the selection's strategy and spread, and the head of
/// `to_label.jsonl` with each row's reasons.
fn to_label_section(s: &mut String, sel: &crate::schema::Selection, rows: &[super::ToLabelRow]) {
    let _ = write!(
        s,
        r#"<section id="to-label"><h2>To label next</h2><p>{} of {} unlabelled items, chosen by <b>{}</b>{}. Score: {}.</p>"#,
        sel.selected,
        sel.unlabelled,
        esc(&sel.strategy),
        sel.note
            .as_ref()
            .map_or(String::new(), |n| format!(" ({})", esc(n))),
        esc(&sel.score)
    );
    if !sel.per_class.is_empty() {
        s.push_str("<p>By predicted class: ");
        let parts: Vec<String> = sel
            .per_class
            .iter()
            .map(|(k, v)| format!("{} {v}", esc(k)))
            .collect();
        s.push_str(&parts.join(", "));
        s.push_str("</p>");
    }
    s.push_str("<table class=\"queue\"><thead><tr><th>rank</th><th>id</th><th>score</th><th>predicted</th><th>reasons</th></tr></thead><tbody>");
    for r in rows.iter().take(TABLE_ROWS) {
        let _ = write!(
            s,
            r#"<tr><td class="num">{}</td><td>{}</td><td class="num">{}</td><td>{}</td><td><ul>"#,
            r.rank,
            esc(&r.id),
            svg::fmt3(r.score),
            esc(&r.predicted)
        );
        for why in &r.reasons {
            let _ = write!(s, "<li>{}</li>", esc(why));
        }
        s.push_str("</ul></td></tr>");
    }
    s.push_str("</tbody></table></section>");
}

pub fn page(inp: &Inputs<'_>, vis: &HashMap<String, Visual>) -> String {
    let r = inp.report;
    let task = inp.cfg.task;
    let classes: Vec<String> = inp.cfg.class_names.clone();
    let mut s = String::with_capacity(1 << 18);
    // The dataset directory's name, not its full (machine-specific) path.
    let d = &r.options.dataset;
    let dataset = d.file_name().map_or_else(
        || d.to_string_lossy().into_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let title = format!("triage report: {dataset}");
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"><title>{t}</title><style>{CSS}</style></head><body><main id="triage-report"><h1>{t}</h1>"#,
        t = esc(&title)
    );

    summary_section(&mut s, r, classes.len());

    gallery_section(&mut s, inp, vis);

    charts_section(&mut s, inp);

    s.push_str(&classes_section(task, &classes, &r.per_class, &r.confusion));

    if inp.clusters.is_some() {
        clusters_section(&mut s, inp, vis);
    }

    if let Some(ag) = &r.agreement {
        annotators_section(&mut s, ag, &classes, inp, vis);
    }

    if let Some(d) = &r.drift {
        s.push_str(&super::drift::section(d, &classes));
    }

    if let Some(h) = &r.history {
        s.push_str(&super::history::section(h));
    }

    // Queue.
    s.push_str(r#"<section id="queue"><h2>Review queue</h2>"#);
    s.push_str(&queue_table(inp.queue, &TableView::of(r)));
    s.push_str("</section>");

    if let Some(sel) = &r.selection {
        to_label_section(&mut s, sel, inp.to_label);
    }

    // Other sections, shown as they are.
    let shown = |v: Result<Value, serde_json::Error>| v.ok().filter(|v| !v.is_null());
    for (key, v) in [
        ("views", shown(serde_json::to_value(&r.views))),
        ("checks", shown(serde_json::to_value(&r.checks))),
        ("review", shown(serde_json::to_value(&r.review))),
        ("previous", shown(serde_json::to_value(&r.previous))),
        ("duplicates", shown(serde_json::to_value(&r.duplicates))),
        ("segmentation", shown(serde_json::to_value(&r.segmentation))),
        ("priority", shown(serde_json::to_value(&r.priority))),
    ] {
        if let Some(v) = v {
            let _ = write!(
                s,
                r#"<section id="sec-{k}"><h2>{k}</h2>{}</section>"#,
                block(&v, 0),
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
            json!({"rank": 1, "id": "a", "priority": 0.5, "in_budget": true,
                   "spot_check": false, "review_all": false, "also_in_cluster": [],
                   "status": "new", "reasons": ["r <1>"], "scores": {},
                   "annotator": "<i>x</i>"}),
            json!({"rank": 2, "id": "b", "priority": 0.25, "in_budget": false,
                   "spot_check": false, "review_all": true, "also_in_cluster": [],
                   "status": null, "reasons": [], "scores": {}, "annotator": "y"}),
        ];
        let rows: Vec<QueueRow> = rows
            .into_iter()
            .map(|r| serde_json::from_value(r).unwrap())
            .collect();
        let all = TableView {
            budget: true,
            spot_check: true,
            review_all: true,
            evidence: None,
        };
        let t = queue_table(&rows, &all);
        for h in [
            "<th>in_budget</th>",
            "<th>spot_check</th>",
            "<th>status</th>",
        ] {
            assert!(t.contains(h), "{h}");
        }
        assert!(!t.contains("<th>label</th>") && !t.contains("<th>cluster</th>"));
        assert!(t.contains(
            r#"<td data-k="in_budget">yes</td><td data-k="spot_check">no</td><td data-k="status">new</td>"#
        ));
        assert!(
            t.contains(r#"<td data-k="in_budget">no</td><td data-k="spot_check">no</td><td data-k="status">–</td>"#),
            "a null status"
        );
        assert!(t.contains("review_all: no") && t.contains("review_all: yes"));
        assert!(t.contains("annotator: &lt;i&gt;x&lt;/i&gt;") && !t.contains("<i>"));
        assert!(t.contains("<li>r &lt;1&gt;</li>"));
        assert_eq!(t.matches("<tr><td class=\"num\">").count(), 2);
        // Empty `also_in_cluster` lists: no column, no tag, never `[]`.
        assert!(!t.contains("also_in_cluster") && !t.contains("[]"));
    }

    fn rows(n: usize, also: &[&str]) -> Vec<QueueRow<'static>> {
        (1..=n)
            .map(|rank| {
                serde_json::from_value(json!({
                    "rank": rank, "id": format!("i{rank}"), "priority": 1.0 / rank as f64,
                    "in_budget": true, "spot_check": false, "review_all": false,
                    "also_in_cluster": if rank == 2 { also.to_vec() } else { vec![] },
                    "reasons": [format!("mIoU 0.99{rank}")], "scores": {}
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn policy_flags_show_only_when_the_run_used_their_option() {
        let r = rows(3, &[]);
        // No budget, no spot check, no review-all: no such column or tag,
        // though every row says `in_budget: true`.
        let t = queue_table(&r, &TableView::default());
        for f in [
            "in_budget",
            "spot_check",
            "review_all",
            "also_in_cluster",
            "[]",
        ] {
            assert!(!t.contains(f), "{f}:\n{t}");
        }
        // Nothing left for the "item" column: none.
        assert!(!t.contains("<th>item</th>") && !t.contains("class=\"item\""));
        let t = queue_table(
            &r,
            &TableView {
                budget: true,
                ..Default::default()
            },
        );
        assert!(t.contains("<th>in_budget</th>") && !t.contains("spot_check"));
        // A non-empty list gets its column; the empty ones show "–".
        let r = rows(3, &["x<1>", "y"]);
        let t = queue_table(&r, &TableView::default());
        assert!(t.contains("<th>also_in_cluster</th>") && !t.contains("[]"));
        assert!(t.contains(r#"<td data-k="also_in_cluster">x&lt;1&gt;, y</td>"#));
        assert_eq!(
            t.matches(r#"<td data-k="also_in_cluster">–</td>"#).count(),
            2
        );
    }

    #[test]
    fn rows_below_the_evidence_cut_read_no_issue_found_or_weak_evidence() {
        let mut r = rows(5, &[]);
        // Rank 4 is flagged by a check, though at the clean level.
        r[3].flags = vec!["duplicate_conflict".into()];
        let view = |at| TableView {
            evidence: Some(crate::schema::QueueSummary {
                rows: 5,
                flagged: at,
                evidence_ends_at: at,
                evidence_rule: "Rule <b>.".into(),
            }),
            ..Default::default()
        };
        let t = queue_table(&r, &view(2));
        assert!(t.contains("Rule &lt;b&gt;. The evidence ends at rank 2"));
        assert_eq!(t.matches("<tr class=\"cut\">").count(), 1);
        // The cut sits right after rank 2; ranks 3 to 5 are greyed and
        // labelled, their readouts kept.
        let cut = t.find("<tr class=\"cut\">").unwrap();
        assert!(t[..cut].contains(">i2<") && !t[..cut].contains(">i3<"));
        assert_eq!(t.matches("<tr class=\"no-issue\">").count(), 3);
        assert_eq!(t[cut..].matches(&format!(">{NO_ISSUE}<")).count(), 2);
        let weak = t.find(&format!(">{WEAK}<")).unwrap();
        assert!(weak > t.find(">i4<").unwrap() && weak < t.find(">i5<").unwrap());
        assert!(t[weak..].contains("(flagged by duplicate_conflict at the clean items"));
        assert!(!t[..cut].contains("no-issue") && t[cut..].contains("mIoU 0.995"));
        // No evidence at all: every row labelled, no cut line; the evidence
        // past the table: no cut line, no label.
        let t = queue_table(&r, &view(0));
        assert_eq!(t.matches("<tr class=\"no-issue\">").count(), 5);
        assert!(!t.contains("<tr class=\"cut\">"));
        let t = queue_table(&r, &view(5));
        assert!(!t.contains("<tr class=\"cut\">") && !t.contains("class=\"no-issue\""));
    }

    #[test]
    fn captions_wrap_between_words_never_inside_one() {
        assert!(
            CSS.contains("figcaption{font-size:12px;overflow-wrap:break-word;word-break:normal")
        );
        assert!(!CSS.contains("break-all") && !CSS.contains("overflow-wrap:anywhere"));
    }

    #[test]
    fn confused_pairs_are_the_largest_off_diagonal_cells_in_order() {
        let m = vec![
            vec![50, 3, 0, 7],
            vec![9, 40, 9, 0],
            vec![0, 1, 30, 2],
            vec![7, 0, 12, 20],
        ];
        let p = |label, predicted, count, support| Pair {
            label,
            predicted,
            count,
            support,
        };
        assert_eq!(
            confused_pairs(&m, 5),
            vec![
                p(3, 2, 12, 39),
                p(1, 0, 9, 58),
                p(1, 2, 9, 58),
                p(0, 3, 7, 60),
                p(3, 0, 7, 39),
            ]
        );
        // A cut inside a tie keeps the earlier row.
        assert_eq!(confused_pairs(&m, 4)[3], p(0, 3, 7, 60));
        assert!((confused_pairs(&m, 1)[0].share() - 12.0 / 39.0).abs() < 1e-12);
        // Every non-zero off-diagonal cell, never the diagonal or a zero.
        let all = confused_pairs(&m, 100);
        assert_eq!(all.len(), 8);
        assert_eq!(all[7], p(2, 1, 1, 33));
        assert!(confused_pairs(&[vec![5, 0], vec![0, 5]], 20).is_empty());
        assert!(confused_pairs(&m, 0).is_empty());
    }

    #[test]
    fn worst_classes_sort_ascending_with_undefined_last() {
        let metric = [
            Some(0.5),
            None,
            Some(0.1),
            Some(f64::NAN),
            Some(0.1),
            Some(0.0),
            Some(0.9),
        ];
        let support = [
            Some(10.0),
            Some(0.0),
            Some(5.0),
            Some(3.0),
            Some(8.0),
            Some(1.0),
            None,
        ];
        // 0.0, then the two 0.1 (class 4 is larger), 0.5, 0.9, then the
        // undefined ones (NaN counts as undefined), again the larger first.
        assert_eq!(worst(&metric, &support, 4), vec![5, 4, 2, 0]);
        assert_eq!(worst(&metric, &support, 10), vec![5, 4, 2, 0, 6, 3, 1]);
        assert_eq!(lowest(&metric, 3), vec![5, 2, 4]);
        assert_eq!(lowest(&support, 3), vec![1, 5, 3]);
    }

    /// A classification report with `c` classes: class `k` has support
    /// `10 + k`, recall `(k % 97) / 100` except the planted classes; the
    /// matrix has a planted top pair 7 → 9 (500) and a few smaller ones.
    fn many_report(
        c: usize,
        name: impl Fn(usize) -> String,
    ) -> (Vec<String>, Vec<PerClass>, Vec<Vec<u64>>) {
        let names: Vec<String> = (0..c).map(name).collect();
        let mut m = vec![vec![0u64; c]; c];
        for (k, row) in m.iter_mut().enumerate() {
            row[k] = 10 + k as u64;
            row[(k + 1) % c] += 1;
        }
        m[7][9] = 500;
        m[3][1] = 400;
        m[c - 1][0] = 300;
        let per_class: Vec<PerClass> = (0..c)
            .map(|k| {
                let recall = match k {
                    5 => None,
                    11 => Some(0.0),
                    _ => Some((k % 97) as f64 / 100.0 + 0.001),
                };
                PerClass {
                    class: k,
                    name: names[k].clone(),
                    support: 10 + k as u64,
                    precision: Some(Some(0.5)),
                    recall: Some(recall),
                    ..Default::default()
                }
            })
            .collect();
        (names, per_class, m)
    }

    #[test]
    fn many_classes_show_top_pairs_and_worst_classes_bounded_in_size() {
        // Hostile, very long class names.
        let (names, pc, m) = many_report(1000, |k| {
            format!("<script>\"c{k}\"</script>{}", "&'".repeat(3000))
        });
        let sec = classes_section(Task::Classification, &names, &pc, &m);
        assert!(sec.len() < 200_000, "{} bytes", sec.len());
        assert!(!sec.contains("data-chart=\"confusion\"") && !sec.contains("cm-cell"));
        assert!(!sec.contains("<script") && sec.contains("&lt;script&gt;&quot;c7&quot;"));
        assert!(sec.contains("report.json <code>per_class</code>"));
        assert!(sec.contains("<code>confusion</code>"));
        // The top pairs, in order: 7 → 9, 3 → 1, 999 → 0, then the
        // one-count cells (0 → 1, 1 → 2, ...).
        assert_eq!(sec.matches("<tr class=\"pair\">").count(), TOP_PAIRS);
        let rows: Vec<&str> = sec.split("<tr class=\"pair\">").skip(1).collect();
        let first = |row: &str| row.split("</td><td>").nth(1).unwrap().to_string();
        assert!(first(rows[0]).contains("&quot;c7&quot;"), "{}", rows[0]);
        assert!(rows[0].contains("&quot;c9&quot;") && rows[0].contains(">500<"));
        // 500 of the 518 items annotated 7 (17 + 1 + 500): 96.5 %.
        assert!(rows[0].contains(">96.5%<"));
        assert!(rows[1].contains("&quot;c3&quot;") && rows[1].contains(">400<"));
        assert!(rows[2].contains("&quot;c999&quot;") && rows[2].contains(">300<"));
        assert!(rows[3].contains("&quot;c0&quot;") && rows[3].contains(">1<"));
        let pairs = chart_of(&sec, "confused-pairs");
        assert_eq!(pairs.matches("class=\"bar\"").count(), TOP_PAIRS);
        // The worst 30 by recall: class 11 (0.0), then 0, 97, 194, ...
        // (k % 97 = 0; recall 0.001, the larger class first), then the
        // k % 97 = 1 classes; class 5 (undefined) never.
        assert_eq!(sec.matches("<tr class=\"worst\">").count(), WORST_K);
        let expected: Vec<usize> = [11]
            .into_iter()
            .chain([970, 873, 776, 679, 582, 485, 388, 291, 194, 97, 0])
            .chain([971, 874, 777, 680, 583, 486, 389, 292, 195, 98, 1])
            .chain([972, 875, 778, 681, 584, 487, 390])
            .collect();
        let got: Vec<usize> = sec
            .split("<tr class=\"worst\">")
            .skip(1)
            .map(|row| {
                let q = row.find("&quot;c").unwrap() + 7;
                let end = q + row[q..].find('&').unwrap();
                row[q..end].parse().unwrap()
            })
            .collect();
        assert_eq!(got, expected);
        assert!(sec.contains("lowest recall"));
        let pc = chart_of(&sec, "per-class");
        assert_eq!(pc.matches("class=\"bar\"").count(), 2 * WORST_K);
        // Class balance: the 15 smallest and the 15 largest.
        assert_eq!(sec.matches("data-chart=\"support\"").count(), 2);
        assert!(sec.contains("smallest 10, median 510, largest 1009; 0 of 1000 classes"));
    }

    #[test]
    fn many_segmentation_classes_sort_by_iou_with_undefined_last() {
        let c = 150;
        let names: Vec<String> = (0..c).map(|k| format!("s{k}")).collect();
        let per_class: Vec<PerClass> = (0..c)
            .map(|k| {
                let iou = if k % 2 == 0 {
                    None
                } else {
                    Some(k as f64 / 200.0)
                };
                PerClass {
                    support: k as u64,
                    iou: Some(iou),
                    dice: Some(Some(0.5)),
                    boundary_iou: Some(None),
                    ..Default::default()
                }
            })
            .collect();
        let mut m = vec![vec![0u64; c]; c];
        m[4][2] = 9;
        let sec = classes_section(Task::Segmentation, &names, &per_class, &m);
        assert!(!sec.contains("cm-cell") && sec.contains("lowest IoU"));
        let got: Vec<&str> = sec
            .split("<tr class=\"worst\"><td class=\"num\">")
            .skip(1)
            .map(|row| {
                let a = row.find("<td>").unwrap() + 4;
                &row[a..a + row[a..].find('<').unwrap()]
            })
            .collect();
        let want: Vec<String> = (0..WORST_K).map(|i| format!("s{}", 2 * i + 1)).collect();
        assert_eq!(got, want);
        assert!(sec.contains("<th>IoU</th><th>Dice</th><th>Boundary IoU</th>"));
        assert_eq!(sec.matches("<tr class=\"pair\">").count(), 1);
        assert!(sec.contains("<td>s4</td><td>s2</td><td class=\"num\">9</td>"));
        // 30 IoU bars, 30 Dice bars, no Boundary IoU bars.
        assert_eq!(
            chart_of(&sec, "per-class").matches("class=\"bar\"").count(),
            60
        );
    }

    #[test]
    fn few_classes_keep_every_class_and_the_heatmap() {
        for c in [20, MANY_CLASSES] {
            let (names, pc, m) = many_report(c, |k| format!("k{k}"));
            let sec = classes_section(Task::Classification, &names, &pc, &m);
            assert_eq!(sec.matches("data-chart=\"confusion\"").count(), 1, "{c}");
            assert_eq!(sec.matches("class=\"cm-cell\"").count(), c * c);
            assert_eq!(
                chart_of(&sec, "support").matches("class=\"bar\"").count(),
                c
            );
            assert!(!sec.contains("confused-pairs") && !sec.contains("worst"));
        }
        let (names, pc, m) = many_report(MANY_CLASSES + 1, |k| format!("k{k}"));
        let sec = classes_section(Task::Classification, &names, &pc, &m);
        assert!(!sec.contains("cm-cell") && sec.contains("id=\"confused-pairs\""));
    }

    fn chart_of<'a>(html: &'a str, kind: &str) -> &'a str {
        let start = html.find(&format!("data-chart=\"{kind}\"")).unwrap();
        &html[start..start + html[start..].find("</svg>").unwrap()]
    }
}
