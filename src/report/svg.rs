//! Inline SVG chart primitives. Every chart is one `<svg>` element carrying
//! `data-chart="KIND"`; its marks carry classes (`rel-bar`, `hist-bar`,
//! `bar`, `cm-cell`, ...) so tests can count them. Every label is escaped.

use std::fmt::Write;

use super::escape::html;

/// Bar colours, colour-blind friendly (Tableau 10).
pub const BLUE: &str = "#4e79a7";
pub const ORANGE: &str = "#f28e2b";
pub const GREEN: &str = "#59a14f";
pub const RED: &str = "#e15759";
pub const TEAL: &str = "#76b7b2";
pub const GREY: &str = "#bab0ac";
/// The rug ticks of top items below the evidence cut.
pub const MARK_GREY: &str = "#8c8c8c";

const W: f64 = 520.0;
const H: f64 = 280.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 56.0;

fn open(kind: &str, title: &str, w: f64, h: f64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" data-chart="{kind}" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="{t}"><title>{t}</title><text class="ctitle" x="{x:.1}" y="16" text-anchor="middle">{t}</text>"#,
        t = html(title),
        x = w / 2.0
    );
    s
}

/// A number for display: 3 decimals, or `–` when missing.
pub fn fmt3(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

/// An axis label for value `v` on an axis spanning `span` (the distance
/// from its lowest to its highest label; `|v|` when not positive and
/// finite), written with just enough digits for that range:
///
/// - `d = clamp(2 − ⌊log₁₀ span⌋, 0, 6)` decimals, i.e. three significant
///   digits of the span, then trailing zeros (and a bare point) dropped:
///   `0.25` on a unit axis, `1` rather than `1.00`, `0.1235` on a span of
///   0.05;
/// - the integer part grouped by thousands with `,` (`16,128`);
/// - when the value or the span reaches a million, in millions (`M`) or
///   billions (`G`), the decimals taken from the span in that unit
///   (`2.5M`, and `0.5M` on a span of 2 M);
/// - zero (also a negative value that rounds to it) is `0`; a value that
///   is not finite is `–`.
pub fn tick(v: f64, span: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let span = if span.is_finite() && span > 0.0 {
        span
    } else if v != 0.0 {
        v.abs()
    } else {
        1.0
    };
    let magnitude = v.abs().max(span);
    let (scale, unit) = if magnitude >= 1e9 {
        (1e9, "G")
    } else if magnitude >= 1e6 {
        (1e6, "M")
    } else {
        (1.0, "")
    };
    let (v, span) = (v / scale, span / scale);
    let d = (2.0 - span.log10().floor()).clamp(0.0, 6.0) as usize;
    let mut text = format!("{v:.d$}");
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    if text == "-0" {
        text = "0".into();
    }
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (int, frac) = digits.split_at(digits.find('.').unwrap_or(digits.len()));
    let mut grouped = String::with_capacity(text.len() + int.len() / 3 + unit.len());
    grouped.push_str(sign);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    grouped.push_str(frac);
    grouped.push_str(unit);
    grouped
}

fn y_axis(s: &mut String, x0: f64, y0: f64, plot_h: f64, x1: f64, max: f64) {
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let y = y0 + plot_h * (1.0 - f);
        let label = tick(max * f, max);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            x0 - 4.0,
            y + 4.0
        );
    }
}

/// One reliability bin: `[lo, hi)` with its sample count and, when it holds
/// samples, mean confidence and accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: u64,
    pub confidence: Option<f64>,
    pub accuracy: Option<f64>,
}

/// Reliability diagram: one `rel-bar` (accuracy) per non-empty bin, a
/// `rel-gap` marker at its mean confidence, the diagonal, and the bin counts
/// written above the bars and drawn as a `rel-count` strip below.
pub fn reliability(bins: &[Bin]) -> String {
    let (w, h) = (W, H + 50.0);
    let mut s = open(
        "reliability",
        "Reliability: accuracy per confidence bin (counts above)",
        w,
        h,
    );
    let (x0, y0) = (LEFT, TOP);
    let pw = w - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    y_axis(&mut s, x0, y0, ph, x0 + pw, 1.0);
    let px = |v: f64| x0 + pw * v.clamp(0.0, 1.0);
    let py = |v: f64| y0 + ph * (1.0 - v.clamp(0.0, 1.0));
    let _ = write!(
        s,
        r#"<line class="diag" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
        px(0.0),
        py(0.0),
        px(1.0),
        py(1.0)
    );
    let max_count = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let strip_top = y0 + ph + 34.0;
    let strip_h = 40.0;
    for b in bins.iter().filter(|b| b.count > 0) {
        let (xa, xb) = (px(b.lo), px(b.hi));
        let bw = (xb - xa - 1.0).max(1.0);
        let acc = b.accuracy.unwrap_or(0.0);
        let _ = write!(
            s,
            r#"<rect class="rel-bar" x="{:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{BLUE}"><title>[{:.2}, {:.2}): {} samples, accuracy {}, confidence {}</title></rect>"#,
            xa + 0.5,
            py(acc),
            py(0.0) - py(acc),
            b.lo,
            b.hi,
            b.count,
            fmt3(b.accuracy),
            fmt3(b.confidence)
        );
        if let Some(c) = b.confidence {
            let _ = write!(
                s,
                r#"<line class="rel-gap" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
                xa + 0.5,
                py(c),
                xa + 0.5 + bw,
                py(c)
            );
        }
        let _ = write!(
            s,
            r#"<text class="count" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            xa + 0.5 + bw / 2.0,
            py(acc) - 3.0,
            compact(b.count)
        );
        let ch = strip_h * (b.count as f64 / max_count).sqrt();
        let _ = write!(
            s,
            r#"<rect class="rel-count" x="{:.1}" y="{:.1}" width="{bw:.1}" height="{ch:.1}" fill="{GREY}"/>"#,
            xa + 0.5,
            strip_top + strip_h - ch
        );
    }
    let _ = write!(
        s,
        r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">confidence (red: mean confidence; dashed: perfect calibration; grey: √count)</text>"#,
        x0 + pw / 2.0,
        y0 + ph + 18.0
    );
    s.push_str("</svg>");
    s
}

/// A value marked on a histogram: where one of the queue's top items lies.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub value: f64,
    /// Its tooltip (escaped when drawn), e.g. `#1 item7: 0.93`.
    pub label: String,
    /// Above the queue's evidence cut (red), or below it (grey).
    pub evidence: bool,
}

/// Histogram of `values` (finite ones) in `nbins` equal bins over their
/// range; one `hist-bar` per non-empty bin. Each of `marks` with a finite
/// value is drawn as a `top-mark` tick (a rug) just under the axis, at its
/// value (clamped to the range), red above the evidence cut and grey below
/// it, with its label as a tooltip.
pub fn histogram(name: &str, values: &[f64], nbins: usize, marks: &[Mark]) -> String {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let (w, h) = (300.0, 180.0);
    let mut s = open("histogram", name, w, h);
    let (x0, y0, pw, ph) = (36.0, 24.0, w - 44.0, h - 66.0);
    if v.is_empty() {
        let _ = write!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">no values</text></svg>"#,
            w / 2.0,
            h / 2.0
        );
        return s;
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let nb = if hi > lo { nbins.max(1) } else { 1 };
    let mut counts = vec![0u64; nb];
    for &x in &v {
        let k = if hi > lo {
            (((x - lo) / (hi - lo)) * nb as f64) as usize
        } else {
            0
        };
        counts[k.min(nb - 1)] += 1;
    }
    // Axis top: the largest count rounded up to a multiple of 4 (whole ticks).
    let max = (counts.iter().max().copied().unwrap_or(1).max(1).div_ceil(4) * 4) as f64;
    y_axis(&mut s, x0, y0, ph, x0 + pw, max);
    let bw = pw / nb as f64;
    let span = hi - lo;
    for (k, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let bh = ph * c as f64 / max;
        let a = lo + span * k as f64 / nb as f64;
        let b = lo + span * (k + 1) as f64 / nb as f64;
        let _ = write!(
            s,
            r#"<rect class="hist-bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{BLUE}"><title>[{}, {}]: {c}</title></rect>"#,
            x0 + bw * k as f64 + 0.5,
            y0 + ph - bh,
            (bw - 1.0).max(0.5),
            tick(a, span / nb as f64),
            tick(b, span / nb as f64)
        );
    }
    // The rug: a short tick per marked value, under the axis.
    let rug = y0 + ph + 2.0;
    let (mut red, mut grey) = (0, 0);
    // Grey first, so the red ticks are drawn over them.
    let mut shown: Vec<&Mark> = marks.iter().filter(|m| m.value.is_finite()).collect();
    shown.sort_by_key(|m| m.evidence);
    for m in shown {
        let f = if hi > lo {
            ((m.value - lo) / span).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let x = x0 + pw * f;
        let colour = if m.evidence {
            red += 1;
            RED
        } else {
            grey += 1;
            MARK_GREY
        };
        let _ = write!(
            s,
            r#"<line class="top-mark" x1="{x:.1}" y1="{rug:.1}" x2="{x:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1.5"><title>{}</title></line>"#,
            rug + 8.0,
            html(&m.label)
        );
    }
    let _ = write!(
        s,
        r#"<text class="tick" x="{x0:.1}" y="{:.1}">{}</text><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        rug + 20.0,
        tick(lo, span),
        x0 + pw,
        rug + 20.0,
        tick(hi, span),
    );
    let note = match (red, grey) {
        (0, 0) => format!("n = {}", v.len()),
        (r, 0) => format!("n = {} · red: top {r} of the queue", v.len()),
        (0, g) => format!("n = {} · grey: top {g}, below the evidence cut", v.len()),
        (r, g) => format!(
            "n = {} · top {}: {r} red, {g} grey (below the cut)",
            v.len(),
            r + g
        ),
    };
    let _ = write!(
        s,
        r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></svg>"#,
        x0 + pw / 2.0,
        rug + 36.0,
        html(&note)
    );
    s
}

/// One series of a bar chart: name, colour, a value per category.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub values: Vec<Option<f64>>,
}

/// Grouped vertical bars, one group per category, one `bar` per defined
/// value; `max` is the top of the y axis.
pub fn grouped_bars(
    kind: &str,
    title: &str,
    categories: &[String],
    series: &[Series<'_>],
    max: f64,
) -> String {
    let n = categories.len().max(1);
    let group_w = (40.0 * series.len().max(1) as f64).clamp(16.0, 90.0);
    let pw = (group_w * n as f64).max(W - LEFT - RIGHT);
    let w = pw + LEFT + RIGHT;
    let h = H + 20.0;
    let mut s = open(kind, title, w, h);
    let (x0, y0, ph) = (LEFT, TOP + 14.0, H - TOP - BOTTOM - 14.0);
    let max = if max > 0.0 { max } else { 1.0 };
    y_axis(&mut s, x0, y0, ph, x0 + pw, max);
    let gw = pw / n as f64;
    let bw = (gw * 0.8 / series.len().max(1) as f64).max(1.0);
    for (j, ser) in series.iter().enumerate() {
        let lx = x0 + 110.0 * j as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
            TOP - 6.0,
            ser.colour,
            lx + 14.0,
            TOP + 3.0,
            html(ser.name)
        );
    }
    for (i, cat) in categories.iter().enumerate() {
        let gx = x0 + gw * i as f64 + gw * 0.1;
        for (j, ser) in series.iter().enumerate() {
            let Some(v) = ser
                .values
                .get(i)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let bh = ph * (v / max).clamp(0.0, 1.0);
            let _ = write!(
                s,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{bw:.1}" height="{bh:.1}" fill="{}"><title>{}: {} = {}</title></rect>"#,
                gx + bw * j as f64,
                y0 + ph - bh,
                ser.colour,
                html(cat),
                html(ser.name),
                if max >= 10.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.3}")
                }
            );
        }
        let cx = x0 + gw * (i as f64 + 0.5);
        let ty = y0 + ph + 12.0;
        let _ = write!(
            s,
            r#"<text class="tick" x="{cx:.1}" y="{ty:.1}" text-anchor="end" transform="rotate(-30 {cx:.1} {ty:.1})">{}</text>"#,
            html(&truncate(cat, 18))
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars, one row per label from top to bottom; within a row one
/// `bar` per defined value of each series, stacked in series order;
/// `notes[i]` is written to the right of row `i`; `max` is the right end of
/// the axis. Labels are shortened for display (their bars' tooltips keep up
/// to 80 characters), so the chart's size depends only on the row count.
pub fn hbars(
    kind: &str,
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    max: f64,
    notes: &[String],
) -> String {
    let ns = series.len().max(1);
    let bar_h = 9.0;
    let row_h = bar_h * ns as f64 + 6.0;
    let (w, left, right) = (580.0, 176.0, 104.0);
    let top = if series.len() > 1 { TOP + 14.0 } else { TOP };
    let ph = row_h * labels.len().max(1) as f64;
    let h = top + ph + 24.0;
    let pw = w - left - right;
    let mut s = open(kind, title, w, h);
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    if series.len() > 1 {
        for (j, ser) in series.iter().enumerate() {
            let lx = left + 110.0 * j as f64;
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
                TOP - 6.0,
                ser.colour,
                lx + 14.0,
                TOP + 3.0,
                html(ser.name)
            );
        }
    }
    // Whole numbers in a count's tooltip (the axis top is a multiple of 4).
    let whole = |v: f64| max >= 10.0 || (max >= 4.0 && max.fract() == 0.0 && v.fract() == 0.0);
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let x = left + pw * f;
        let _ = write!(
            s,
            r#"<line class="grid" x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + ph,
            top + ph + 12.0,
            tick(max * f, max)
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let y = top + row_h * i as f64 + 3.0;
        let _ = write!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 4.0,
            y + row_h / 2.0 + 1.0,
            html(&truncate(label, 30))
        );
        for (j, ser) in series.iter().enumerate() {
            let Some(v) = ser
                .values
                .get(i)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let bw = pw * (v / max).clamp(0.0, 1.0);
            let _ = write!(
                s,
                r#"<rect class="bar" x="{left:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{}"><title>{}: {} = {}</title></rect>"#,
                y + bar_h * j as f64,
                bar_h - 1.0,
                ser.colour,
                html(&truncate(label, 80)),
                html(ser.name),
                if whole(v) {
                    format!("{v:.0}")
                } else {
                    format!("{v:.3}")
                }
            );
        }
        if let Some(note) = notes.get(i) {
            let _ = write!(
                s,
                r#"<text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
                left + pw + 6.0,
                y + row_h / 2.0 + 1.0,
                html(&truncate(note, 24))
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Shorten `s` to at most `n` characters (with an ellipsis).
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Confusion-matrix heatmap: rows are annotated classes, columns predicted;
/// each `cm-cell` is shaded by its share of the row.
pub fn heatmap(labels: &[String], rows: &[Vec<u64>]) -> String {
    let c = labels.len().max(1);
    let cell = (360.0 / c as f64).clamp(4.0, 48.0);
    let left = 110.0;
    let top = 40.0;
    let w = left + cell * c as f64 + 20.0;
    let h = top + cell * c as f64 + 90.0;
    let mut s = open(
        "confusion",
        "Confusion (rows: annotated, columns: predicted)",
        w.max(440.0),
        h,
    );
    let show_text = c <= 12;
    for (i, row) in rows.iter().enumerate().take(c) {
        let total: u64 = row.iter().sum();
        for (j, &n) in row.iter().enumerate().take(c) {
            let f = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            // White to dark blue.
            let r = (255.0 - f * (255.0 - 33.0)) as u8;
            let g = (255.0 - f * (255.0 - 80.0)) as u8;
            let b = (255.0 - f * (255.0 - 140.0)) as u8;
            let (x, y) = (left + cell * j as f64, top + cell * i as f64);
            let _ = write!(
                s,
                r#"<rect class="cm-cell" x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgb({r},{g},{b})"><title>annotated {} → predicted {}: {n} ({:.1}% of row)</title></rect>"#,
                html(&labels[i]),
                html(&labels[j]),
                100.0 * f
            );
            if show_text {
                let fill = if f > 0.5 { "#fff" } else { "#222" };
                let _ = write!(
                    s,
                    r#"<text class="cm-text" x="{:.1}" y="{:.1}" text-anchor="middle" fill="{fill}">{}</text>"#,
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0,
                    compact(n)
                );
            }
        }
        if show_text || i % (c / 12 + 1) == 0 {
            let _ = write!(
                s,
                r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 4.0,
                top + cell * i as f64 + cell / 2.0 + 4.0,
                html(&truncate(&labels[i], 16))
            );
        }
    }
    for (j, l) in labels.iter().enumerate() {
        if show_text || j % (c / 12 + 1) == 0 {
            let cx = left + cell * j as f64 + cell / 2.0;
            let ty = top + cell * c as f64 + 10.0;
            let _ = write!(
                s,
                r#"<text class="tick" x="{cx:.1}" y="{ty:.1}" text-anchor="end" transform="rotate(-40 {cx:.1} {ty:.1})">{}</text>"#,
                html(&truncate(l, 16))
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn compact(n: u64) -> String {
    if n >= 10_000_000 {
        format!("{:.0}M", n as f64 / 1e6)
    } else if n >= 10_000 {
        format!("{:.0}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

/// Horizontal bars of a classification item's top probabilities; the bar
/// of the annotated class is red (`prob-bar label`), the others blue.
pub fn top_probs(entries: &[(String, f64)], label: &str) -> String {
    let (w, h) = (240.0, 40.0 + 30.0 * entries.len() as f64);
    let mut s = open("top-probs", &format!("top-3 (label: {label})"), w, h);
    for (i, (name, p)) in entries.iter().enumerate() {
        let y = 28.0 + 30.0 * i as f64;
        let is_label = name == label;
        let (class, fill) = if is_label {
            ("prob-bar label", RED)
        } else {
            ("prob-bar", BLUE)
        };
        let bw = 120.0 * p.clamp(0.0, 1.0);
        let _ = write!(
            s,
            r#"<text class="tick" x="76" y="{:.1}" text-anchor="end">{}</text><rect class="{class}" x="80" y="{y:.1}" width="{bw:.1}" height="18" fill="{fill}"/><text class="tick" x="{:.1}" y="{:.1}">{p:.3}</text>"#,
            y + 13.0,
            html(&truncate(name, 12)),
            84.0 + bw,
            y + 13.0
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_count_their_marks() {
        let bins = vec![
            Bin {
                lo: 0.0,
                hi: 0.5,
                count: 0,
                confidence: None,
                accuracy: None,
            },
            Bin {
                lo: 0.5,
                hi: 1.0,
                count: 7,
                confidence: Some(0.8),
                accuracy: Some(0.6),
            },
        ];
        let s = reliability(&bins);
        assert_eq!(s.matches("class=\"rel-bar\"").count(), 1);
        assert!(s.contains(">7</text>") && s.contains("7 samples"));
        assert_eq!(compact(400_141), "400k");
        let s = histogram("x", &[0.0, 1.0, 1.0, f64::NAN], 4, &[]);
        assert_eq!(s.matches("class=\"hist-bar\"").count(), 2);
        assert!(s.contains("n = 3<") && !s.contains("top-mark"));
        let s = heatmap(&["a".into(), "<b>".into()], &[vec![1, 2], vec![0, 3]]);
        assert_eq!(s.matches("class=\"cm-cell\"").count(), 4);
        assert!(!s.contains("<b>") && s.contains("&lt;b&gt;"));
    }

    #[test]
    fn ticks_have_just_enough_digits_for_their_range() {
        // Hand-worked: (value, span) → label.
        for (v, span, want) in [
            (0.0, 1.0, "0"),
            (0.0, 16128.0, "0"),
            (-0.0001, 1.0, "0"),
            (16128.0, 16128.0, "16,128"),
            (4032.0, 16128.0, "4,032"),
            (16128.0, 0.0, "16,128"),
            (999.0, 999.0, "999"),
            (1000.0, 4000.0, "1,000"),
            (0.25, 1.0, "0.25"),
            (0.5, 1.0, "0.5"),
            (1.0, 1.0, "1"),
            (0.75, 1.0, "0.75"),
            (2.0, 8.0, "2"),
            (2.5, 10.0, "2.5"),
            (12.0, 48.0, "12"),
            (0.123456, 0.05, "0.1235"),
            (0.98765, 0.9, "0.988"),
            (-0.5, 2.0, "-0.5"),
            (-12345.0, 20000.0, "-12,345"),
            (2_500_000.0, 4_000_000.0, "2.5M"),
            (500_000.0, 2_000_000.0, "0.5M"),
            (123_456_789.0, 123_456_789.0, "123M"),
            (3.2e9, 4e9, "3.2G"),
            (1e-9, 1e-9, "0"),
            (0.000_002, 0.000_01, "0.000002"),
            (f64::NAN, 1.0, "–"),
            (f64::INFINITY, 1.0, "–"),
        ] {
            assert_eq!(tick(v, span), want, "tick({v}, {span})");
        }
        // Never the old fixed-decimals forms.
        assert!(!tick(16128.0, 16128.0).contains(".000"));
    }

    #[test]
    fn histogram_marks_the_top_items_in_a_rug() {
        let values: Vec<f64> = (0..=100).map(|i| i as f64).collect();
        let marks = [
            Mark {
                value: 100.0,
                label: "#1 <a>: 100".into(),
                evidence: true,
            },
            Mark {
                value: 25.0,
                label: "#2 b: 25".into(),
                evidence: true,
            },
            Mark {
                value: f64::NAN,
                label: "#3 c".into(),
                evidence: true,
            },
            Mark {
                value: 500.0,
                label: "#4 d: 500".into(),
                evidence: true,
            },
        ];
        let s = histogram("score", &values, 20, &marks);
        // Finite values only; the plot spans x 36..292 over [0, 100].
        assert_eq!(s.matches("class=\"top-mark\"").count(), 3);
        assert!(
            s.contains(r#"class="top-mark" x1="292.0""#),
            "100 at the right end"
        );
        assert!(
            s.contains(r#"class="top-mark" x1="100.0""#),
            "25 a quarter along"
        );
        assert_eq!(
            s.matches(r#"x1="292.0""#).count(),
            2,
            "500 clamped to the end"
        );
        assert!(s.contains("<title>#1 &lt;a&gt;: 100</title>") && !s.contains("<a>"));
        assert!(s.contains("red: top 3 of the queue"));
        // Below the evidence cut: grey, drawn first.
        let mut below = marks.to_vec();
        below[1].evidence = false;
        let s = histogram("score", &values, 20, &below);
        assert!(s.contains("top 3: 2 red, 1 grey (below the cut)"));
        let first = s.find("class=\"top-mark\"").unwrap();
        assert!(s[first..].starts_with(&format!(
            r#"class="top-mark" x1="100.0" y1="140.0" x2="100.0" y2="148.0" stroke="{MARK_GREY}""#
        )));
        // The range's ends, formatted for the range.
        assert!(s.contains(">0</text>") && s.contains(">100</text>"));
        let s = histogram("pixels", &[16000.0, 16128.0], 20, &[]);
        assert!(s.contains(">16,128</text>") && !s.contains("16128.000"));
    }

    #[test]
    fn horizontal_bars_count_marks_and_bound_long_labels() {
        let long = format!("<i>{}</i>", "\"".repeat(5000));
        let labels = vec!["a".to_string(), long.clone(), "c".to_string()];
        let series = [
            Series {
                name: "p",
                colour: BLUE,
                values: vec![Some(0.5), None, Some(f64::NAN)],
            },
            Series {
                name: "r",
                colour: RED,
                values: vec![Some(1.5), Some(0.25), Some(0.0)],
            },
        ];
        let notes = vec!["n1".to_string(), long.clone()];
        let s = hbars("k", "t & u", &labels, &series, 1.0, &notes);
        assert!(s.starts_with(r#"<svg class="chart" data-chart="k""#) && s.ends_with("</svg>"));
        // Defined, finite values only: 0.5, 1.5 (clamped), 0.25, 0.0.
        assert_eq!(s.matches(r#"class="bar""#).count(), 4);
        assert!(s.contains(r##"width="300.0" height="8.0" fill="#e15759"><title>a: r = 1.500"##));
        assert!(s.contains(">n1</text>") && s.contains("t &amp; u"));
        assert!(!s.contains("<i>") && s.contains("&lt;i&gt;"));
        assert!(
            s.len() < 4000,
            "labels and notes are shortened: {}",
            s.len()
        );
        // Whole numbers on a count axis.
        let s = hbars(
            "k",
            "t",
            &labels[..1],
            &[Series {
                name: "count",
                colour: RED,
                values: vec![Some(3.0)],
            }],
            8.0,
            &[],
        );
        assert!(s.contains(">2</text>") && s.contains("count = 3</title>"));
    }
}
