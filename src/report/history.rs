//! The page's "Night over night" panel (`report.json` `history`): one
//! small line chart per figure (flagged share, ECE, mIoU, review
//! precision), the nights in time order left to right, tonight (the last
//! night) marked, with its value and the night before's in the chart's
//! title.
//!
//! Readable with many nights: each chart is one polyline per run of
//! defined values (a `null` night breaks the line, it is not drawn as 0),
//! with no mark per night but tonight's, so 365 nights (or the
//! [`crate::io::history::MAX_NIGHTS`] the reader allows) are one path of
//! that many points. A figure `null` on every night gets no chart; the
//! panel says which. Every name is escaped.

use std::fmt::Write;

use super::escape::html;
use super::svg::{BLUE, GREY, RED, fmt3, tick};
use crate::schema::Night;

const PW: f64 = 260.0;
const PH: f64 = 110.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 18.0;

/// The figures charted: name, CSS-safe key, value of a night.
type Figure = (&'static str, &'static str, fn(&Night) -> Option<f64>);

const FIGURES: [Figure; 4] = [
    ("flagged share", "flagged_share", |n| n.flagged_share),
    ("ECE", "ece", |n| n.ece),
    ("mIoU", "miou", |n| n.miou),
    ("review precision", "review_precision", |n| {
        n.review_precision
    }),
];

/// One chart: `values[i]` the figure on night `i` (of `values.len()`, the
/// last tonight).
fn chart(title: &str, key: &str, values: &[Option<f64>], first: &str, last: &str) -> String {
    let n = values.len();
    let defined = values.iter().flatten().copied().filter(|v| v.is_finite());
    let (lo, hi) = defined.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    // The axis: from the lowest to the highest value, widened to at least
    // 0.01 around them, clamped to [0, 1] (every figure is a share).
    let (mut lo, mut hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    if hi - lo < 0.01 {
        let mid = (hi + lo) / 2.0;
        lo = mid - 0.005;
        hi = mid + 0.005;
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let (x0, x1) = (LEFT, PW - RIGHT);
    let (y0, y1) = (TOP, PH - BOTTOM);
    let x = |i: usize| {
        if n <= 1 {
            (x0 + x1) / 2.0
        } else {
            x0 + (x1 - x0) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| y1 - (y1 - y0) * ((v - lo) / span).clamp(0.0, 1.0);
    let tonight = values.last().copied().flatten();
    let before = n
        .checked_sub(2)
        .and_then(|i| values.get(i).copied().flatten());
    let heading = format!(
        "{title}: {} tonight{}",
        fmt3(tonight),
        if n > 1 {
            format!(", {} the night before", fmt3(before))
        } else {
            String::new()
        }
    );
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart history-chart" data-chart="history" data-figure="{key}" viewBox="0 0 {PW:.0} {PH:.0}" width="{PW:.0}" height="{PH:.0}" role="img" aria-label="{t}"><title>{t}</title><text x="4" y="13" font-size="11">{t}</text>"#,
        t = html(&heading)
    );
    for v in [lo, hi] {
        let _ = write!(
            s,
            r#"<line class="grid" x1="{x0:.1}" y1="{yy:.1}" x2="{x1:.1}" y2="{yy:.1}" stroke="{GREY}" stroke-width="0.5"/><text class="tick" x="{tx:.1}" y="{ty:.1}" text-anchor="end" font-size="9">{label}</text>"#,
            yy = y(v),
            tx = x0 - 3.0,
            ty = y(v) + 3.0,
            label = tick(v, hi - lo)
        );
    }
    let _ = write!(
        s,
        r#"<text class="tick" x="{x0:.1}" y="{b:.1}" font-size="9">{f}</text><text class="tick" x="{x1:.1}" y="{b:.1}" text-anchor="end" font-size="9">{l}</text>"#,
        b = PH - 4.0,
        f = html(first),
        l = html(last)
    );
    // One polyline per run of defined values.
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, s: &mut String| {
        if run.len() > 1 {
            let _ = write!(
                s,
                r#"<polyline class="history-line" points="{}" fill="none" stroke="{BLUE}" stroke-width="1.2"/>"#,
                run.join(" ")
            );
        } else if let Some(p) = run.first() {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                s,
                r#"<circle class="history-point" cx="{cx}" cy="{cy}" r="1.5" fill="{BLUE}"/>"#
            );
        }
        run.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(v))),
            None => flush(&mut run, &mut s),
        }
    }
    flush(&mut run, &mut s);
    if let Some(v) = tonight.filter(|v| v.is_finite()) {
        let _ = write!(
            s,
            r#"<circle class="history-tonight" cx="{:.1}" cy="{:.1}" r="3" fill="{RED}"><title>tonight: {}</title></circle>"#,
            x(n - 1),
            y(v),
            fmt3(Some(v))
        );
    }
    s.push_str("</svg>");
    s
}

/// A night's label on the time axis: the date of its `at`, else its name.
fn label(n: &Night) -> String {
    match &n.at {
        Some(at) if at.len() >= 10 && at.is_char_boundary(10) => at[..10].to_string(),
        _ => super::svg::truncate(&n.run, 24),
    }
}

/// The panel; empty without nights.
pub fn section(nights: &[Night]) -> String {
    let (Some(first), Some(last)) = (nights.first(), nights.last()) else {
        return String::new();
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<section id="history"><h2>Night over night</h2><p class="muted">{} nights, from {} to tonight ({}); tonight marked in red.</p><div class="history-grid" style="display:flex;flex-wrap:wrap;gap:8px">"#,
        nights.len(),
        html(&label(first)),
        html(&label(last))
    );
    let mut absent = Vec::new();
    for (title, key, get) in FIGURES {
        let values: Vec<Option<f64>> = nights.iter().map(get).collect();
        if values.iter().all(Option::is_none) {
            absent.push(title);
            continue;
        }
        s.push_str(&chart(title, key, &values, &label(first), &label(last)));
    }
    s.push_str("</div>");
    if !absent.is_empty() {
        let _ = write!(
            s,
            r#"<p class="muted">Not charted (no night has them): {}.</p>"#,
            absent.join(", ")
        );
    }
    s.push_str("</section>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn night(i: usize, share: Option<f64>) -> Night {
        Night {
            run: format!("n{i}"),
            at: Some(format!("2026-01-01T00:00:{:02}.000Z", i % 60)),
            items: 10,
            flagged_share: share,
            flagged_share_by_check: Default::default(),
            ece: Some(0.1),
            miou: None,
            review_precision: None,
        }
    }

    #[test]
    fn a_year_of_nights_is_one_line_per_figure_with_tonight_marked() {
        let nights: Vec<Night> = (0..365)
            .map(|i| night(i, Some((i % 7) as f64 / 10.0)))
            .collect();
        let s = section(&nights);
        assert_eq!(s.matches(r#"data-chart="history""#).count(), 2, "{s}");
        assert_eq!(s.matches("history-line").count(), 2);
        assert_eq!(s.matches("history-tonight").count(), 2);
        assert!(s.contains("Not charted (no night has them): mIoU, review precision."));
        assert!(s.contains("365 nights"));
    }

    #[test]
    fn a_null_night_breaks_the_line() {
        let nights = [
            night(0, Some(0.1)),
            night(1, Some(0.2)),
            night(2, None),
            night(3, Some(0.3)),
            night(4, Some(0.4)),
        ];
        let s = chart(
            "flagged share",
            "flagged_share",
            &nights.iter().map(|n| n.flagged_share).collect::<Vec<_>>(),
            "a",
            "b",
        );
        assert_eq!(s.matches("history-line").count(), 2, "{s}");
        assert!(s.contains("0.400 tonight, 0.300 the night before"));
        assert!(section(&[]).is_empty());
    }
}
