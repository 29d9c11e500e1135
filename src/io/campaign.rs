//! Time in the inputs: the optional `batch` and `annotated_at` columns of
//! `items.csv`, read into the campaign's ordered batches ([`Campaign`]) for
//! the drift stage ([`crate::drift`]).
//!
//! - `batch`: any non-empty string naming the item's labelling batch.
//! - `annotated_at`: an ISO 8601 calendar date `YYYY-MM-DD`, optionally
//!   followed by `T` (or a space) and a time `hh:mm`, `hh:mm:ss` or
//!   `hh:mm:ss.fff`, optionally with `Z` or an offset `±hh:mm` / `±hhmm`
//!   ([`parse_day`]). The *calendar date as written* is the item's day: an
//!   offset is checked but not applied (a campaign's day is the
//!   annotator's).
//!
//! Batches are ordered by their earliest `annotated_at` (ties, and without
//! that column: by first appearance in the file). Without a `batch` column,
//! items are grouped by `annotated_at` into windows ([`Window`]: a day, or
//! an ISO week from Monday), each named by its first date. A column that is
//! there must be filled in every row: an empty cell, or a date that does
//! not parse, is refused naming the file, the line, the item and the field.
//! The `annotator` column (already allowed in items.csv) names each item's
//! annotator; an empty cell puts the item in no annotator's series.
//!
//! annotations.csv may have the same two columns, by the same rules
//! ([`crate::io::annotations`]); [`Campaign::place_annotations`] puts each
//! of its rows in its own batch.
//!
//! Bounds: at most [`MAX_BATCHES`] batches (the class-mix tests cost
//! `batches × classes`); more is refused, naming the field.

use std::collections::HashMap as StdHashMap;

/// A hash map with foldhash's per-process seeded hasher.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::path::Path;

use crate::error::{Error, Result};
use crate::io::annotations::Annotations;
use crate::io::manifest::Manifest;

/// The most batches a campaign may have.
pub const MAX_BATCHES: usize = 10_000;

/// How `annotated_at` groups items when there is no `batch` column
/// (`--drift-window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Window {
    /// One batch per calendar day.
    #[default]
    Day,
    /// One batch per ISO week (Monday to Sunday), named by its Monday.
    Week,
}

impl Window {
    /// `"day"` or `"week"`.
    pub fn name(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Week => "week",
        }
    }
}

/// One batch of the campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// As written in `batch`, or the window's first date (`YYYY-MM-DD`).
    pub name: String,
    /// Its earliest `annotated_at` day (days since 1970-01-01), with that
    /// column.
    pub first_day: Option<i32>,
}

/// The campaign's time: its batches in order, and each item's batch and
/// annotator.
#[derive(Debug, Clone, Default)]
pub struct Campaign {
    /// `"batch"` (the column) or the window (`"day"`, `"week"`).
    pub grouping: String,
    /// In campaign order.
    pub batches: Vec<Batch>,
    /// Per manifest row: its batch (an index into `batches`).
    pub of_row: Vec<u32>,
    /// The names in the `annotator` column, in order of first appearance.
    pub annotators: Vec<String>,
    /// Per manifest row: its annotator (an index into `annotators`), with
    /// that column; `None` for an empty cell.
    pub annotator_of_row: Option<Vec<Option<u32>>>,
    /// With a time column in annotations.csv: per item, each annotation
    /// row's batch, in the order of [`Annotations::items`]
    /// ([`Campaign::place_annotations`]); `None`: every row is in its
    /// item's batch.
    pub of_annotation: Option<Vec<Vec<u32>>>,
}

impl Campaign {
    /// The batch of annotation row `k` of item `row` (its position in
    /// [`Annotations::items`]`[row]`): its own, placed by
    /// [`Campaign::place_annotations`], else its item's.
    pub fn annotation_batch(&self, row: usize, k: usize) -> Option<u32> {
        match &self.of_annotation {
            Some(v) => v.get(row)?.get(k).copied(),
            None => self.of_row.get(row).copied(),
        }
    }

    /// Place the rows of annotations.csv by their own time columns
    /// ([`Annotations::times`]):
    /// - a `batch` cell puts the row in that batch (this needs items.csv's
    ///   `batch` column: refused, naming the file and the field, when the
    ///   items are grouped by `annotated_at` windows); a name items.csv
    ///   does not have is a new batch;
    /// - without `batch`, an `annotated_at` date puts the row in its
    ///   window (`day`, `week`) when the items are grouped by windows, a
    ///   new one if no item falls in it; when they are grouped by `batch`
    ///   the date cannot name a batch and the row keeps its item's.
    ///
    /// Rows' dates count towards their batch's first date, and the batches
    /// are ordered again as [`load`] orders them (earliest date, then
    /// first appearance: items.csv's batches before the new ones); at
    /// most [`MAX_BATCHES`] in all. Without time columns, nothing changes.
    pub fn place_annotations(&mut self, ann: &Annotations) -> Result<()> {
        let (has_batch, has_day) = ann.time_columns;
        if ann.times.is_empty() || !(has_batch || has_day) {
            return Ok(());
        }
        let by_batch = self.grouping == "batch";
        if has_batch && !by_batch {
            return Err(Error::input(
                &ann.path,
                format!(
                    "a batch column, but the items are grouped by annotated_at ({} windows: \
                     items.csv has no batch column): give items.csv a batch column too, or \
                     leave it out here",
                    self.grouping
                ),
            )
            .field("batch"));
        }
        if !has_batch && by_batch {
            // Dates alone cannot name a batch: every row keeps its item's.
            return Ok(());
        }
        let week = self.grouping == "week";
        // Keys of the existing batches: the name, or the window's first day.
        let mut index: HashMap<String, u32> = HashMap::default();
        let mut window_index: HashMap<i32, u32> = HashMap::default();
        for (b, batch) in self.batches.iter().enumerate() {
            if by_batch {
                index.insert(batch.name.clone(), b as u32);
            } else if let Some(d) = batch.first_day {
                window_index.insert(d, b as u32);
            }
        }
        let mut placed: Vec<Vec<u32>> = Vec::with_capacity(ann.times.len());
        for (row, times) in ann.times.iter().enumerate() {
            let mut v = Vec::with_capacity(times.len());
            for t in times {
                let next = self.batches.len() as u32;
                let b = if by_batch {
                    match t.batch.and_then(|i| ann.batch_names.get(i as usize)) {
                        Some(name) => {
                            let b = *index.entry(name.clone()).or_insert(next);
                            if b == next {
                                self.batches.push(Batch {
                                    name: name.clone(),
                                    first_day: None,
                                });
                            }
                            if let Some(d) = t.day {
                                let fd = &mut self.batches[b as usize].first_day;
                                *fd = Some(fd.map_or(d, |x| x.min(d)));
                            }
                            b
                        }
                        None => self.of_row.get(row).copied().unwrap_or(0),
                    }
                } else {
                    match t.day {
                        Some(d) => {
                            let key = if week { d - weekday(d) as i32 } else { d };
                            let b = *window_index.entry(key).or_insert(next);
                            if b == next {
                                self.batches.push(Batch {
                                    name: format_day(key),
                                    first_day: Some(key),
                                });
                            }
                            b
                        }
                        None => self.of_row.get(row).copied().unwrap_or(0),
                    }
                };
                v.push(b);
            }
            placed.push(v);
        }
        if self.batches.len() > MAX_BATCHES {
            return Err(Error::input(
                &ann.path,
                format!(
                    "{} distinct batches with items.csv's, at most {MAX_BATCHES}: group them \
                     coarser (--drift-window week)",
                    self.batches.len()
                ),
            )
            .field(if has_batch { "batch" } else { "annotated_at" }));
        }
        // Campaign order again: earliest day, then the order so far.
        let mut order: Vec<usize> = (0..self.batches.len()).collect();
        order.sort_by_key(|&b| (self.batches[b].first_day.unwrap_or(i32::MIN), b));
        let mut rank = vec![0u32; order.len()];
        for (pos, &b) in order.iter().enumerate() {
            rank[b] = pos as u32;
        }
        self.batches = order.iter().map(|&b| self.batches[b].clone()).collect();
        for b in self.of_row.iter_mut().chain(placed.iter_mut().flatten()) {
            *b = rank[*b as usize];
        }
        self.of_annotation = Some(placed);
        Ok(())
    }
}

/// Read the campaign of `manifest` (read from `path`): `None` when it has
/// neither a `batch` nor an `annotated_at` column. `window` groups by
/// `annotated_at` when there is no `batch` column (default: a day); asking
/// for one without `annotated_at` is a usage error.
pub fn load(path: &Path, manifest: &Manifest, window: Option<Window>) -> Result<Option<Campaign>> {
    let batch_col = manifest.column("batch");
    let at_col = manifest.column("annotated_at");
    if batch_col.is_none() && at_col.is_none() {
        if let Some(w) = window {
            return Err(Error::Usage(format!(
                "--drift-window {} groups items by their annotated_at column, and {} has none",
                w.name(),
                path.display()
            )));
        }
        return Ok(None);
    }
    let cell = |row: usize, col: usize| -> &str {
        manifest.rows.get(row, col).map(str::trim).unwrap_or("")
    };
    let filled = |col: usize, field: &str| -> Result<()> {
        let first = (0..manifest.len()).find(|&r| !cell(r, col).is_empty());
        if let Some(r) = (0..manifest.len()).find(|&r| cell(r, col).is_empty()) {
            let also = match first {
                Some(f) => format!(", while line {} has one", f + 2),
                None => String::new(),
            };
            return Err(Error::input(
                path,
                format!(
                    "line {}: empty {field}{also}: give every row its {field}, or leave the column out",
                    r + 2
                ),
            )
            .item(manifest.ids[r].to_string())
            .field(field));
        }
        Ok(())
    };
    let mut days: Option<Vec<i32>> = None;
    if let Some(col) = at_col {
        filled(col, "annotated_at")?;
        let mut v = Vec::with_capacity(manifest.len());
        for r in 0..manifest.len() {
            let text = cell(r, col);
            let day = parse_day(text).map_err(|why| {
                Error::input(
                    path,
                    format!(
                        "line {}: annotated_at {text:?} is not an ISO date \
                         (YYYY-MM-DD, or YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]): {why}",
                        r + 2
                    ),
                )
                .item(manifest.ids[r].to_string())
                .field("annotated_at")
            })?;
            v.push(day);
        }
        days = Some(v);
    }
    // Batches by key, in first-appearance order; then sorted.
    let mut names: Vec<Batch> = Vec::new();
    let mut of_row: Vec<u32> = Vec::with_capacity(manifest.len());
    let grouping;
    match batch_col {
        Some(col) => {
            filled(col, "batch")?;
            grouping = "batch".to_string();
            let mut index: HashMap<&str, u32> = HashMap::default();
            for r in 0..manifest.len() {
                let name = cell(r, col);
                let next = names.len() as u32;
                let b = *index.entry(name).or_insert(next);
                if b == next {
                    names.push(Batch {
                        name: name.to_string(),
                        first_day: None,
                    });
                }
                if let Some(d) = days.as_ref().map(|d| d[r]) {
                    let fd = &mut names[b as usize].first_day;
                    *fd = Some(fd.map_or(d, |x| x.min(d)));
                }
                of_row.push(b);
            }
        }
        None => {
            let w = window.unwrap_or_default();
            grouping = w.name().to_string();
            let days = days.as_deref().unwrap_or(&[]);
            let mut index: HashMap<i32, u32> = HashMap::default();
            for &d in days {
                let key = match w {
                    Window::Day => d,
                    Window::Week => d - weekday(d) as i32,
                };
                let next = names.len() as u32;
                let b = *index.entry(key).or_insert(next);
                if b == next {
                    names.push(Batch {
                        name: format_day(key),
                        first_day: Some(key),
                    });
                }
                of_row.push(b);
            }
        }
    }
    if names.len() > MAX_BATCHES {
        return Err(Error::input(
            path,
            format!(
                "{} distinct batches, at most {MAX_BATCHES}: group them coarser \
                 (a batch column, or --drift-window week)",
                names.len()
            ),
        )
        .field(if batch_col.is_some() {
            "batch"
        } else {
            "annotated_at"
        }));
    }
    // Campaign order: earliest day, then first appearance.
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&b| (names[b].first_day.unwrap_or(i32::MIN), b));
    let mut rank = vec![0u32; names.len()];
    for (pos, &b) in order.iter().enumerate() {
        rank[b] = pos as u32;
    }
    let batches: Vec<Batch> = order.iter().map(|&b| names[b].clone()).collect();
    for b in &mut of_row {
        *b = rank[*b as usize];
    }
    let (annotators, annotator_of_row) = match manifest.column("annotator") {
        Some(col) => {
            let mut names: Vec<String> = Vec::new();
            let mut index: HashMap<&str, u32> = HashMap::default();
            let rows = (0..manifest.len())
                .map(|r| {
                    let who = cell(r, col);
                    (!who.is_empty()).then(|| {
                        let next = names.len() as u32;
                        let a = *index.entry(who).or_insert(next);
                        if a == next {
                            names.push(who.to_string());
                        }
                        a
                    })
                })
                .collect();
            (names, Some(rows))
        }
        None => (Vec::new(), None),
    };
    Ok(Some(Campaign {
        grouping,
        batches,
        of_row,
        annotators,
        annotator_of_row,
        of_annotation: None,
    }))
}

/// Days since 1970-01-01 of the proleptic Gregorian date `y-m-d`
/// (Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a day since 1970-01-01 (Hinnant's `civil_from_days`).
pub fn format_day(z: i32) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i32::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Day of the week, Monday = 0 (1970-01-01 was a Thursday).
pub fn weekday(day: i32) -> u32 {
    (day + 3).rem_euclid(7) as u32
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The calendar day (days since 1970-01-01) of an ISO 8601 date or date
/// and time as written (see the module's documentation); `Err` says what
/// is wrong.
pub fn parse_day(text: &str) -> std::result::Result<i32, String> {
    let b = text.as_bytes();
    let num = |s: &[u8]| -> Option<u32> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("the date must be YYYY-MM-DD".into());
    }
    let (y, m, d) = match (num(&b[0..4]), num(&b[5..7]), num(&b[8..10])) {
        (Some(y), Some(m), Some(d)) => (y as i32, m, d),
        _ => return Err("the date must be YYYY-MM-DD (digits)".into()),
    };
    if !(1..=12).contains(&m) {
        return Err(format!("month {m} is not 1 to 12"));
    }
    if d < 1 || d > days_in_month(y, m) {
        return Err(format!("day {d} is not in {y:04}-{m:02}"));
    }
    let rest = &b[10..];
    if !rest.is_empty() {
        if rest[0] != b'T' && rest[0] != b' ' {
            return Err("after the date comes T and a time".into());
        }
        let t = &rest[1..];
        if t.len() < 5 || t[2] != b':' {
            return Err("the time must be hh:mm[:ss[.fff]]".into());
        }
        let (h, mi) = match (num(&t[0..2]), num(&t[3..5])) {
            (Some(h), Some(mi)) => (h, mi),
            _ => return Err("the time must be hh:mm[:ss[.fff]] (digits)".into()),
        };
        if h > 23 || mi > 59 {
            return Err(format!("time {h:02}:{mi:02} is out of range"));
        }
        let mut t = &t[5..];
        if t.first() == Some(&b':') {
            match t.get(1..3).and_then(num) {
                Some(s) if s <= 60 => t = &t[3..],
                _ => return Err("the seconds must be two digits, 00 to 60".into()),
            }
            if t.first() == Some(&b'.') {
                let digits = t[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return Err("a fraction of a second needs digits".into());
                }
                t = &t[1 + digits..];
            }
        }
        match t {
            [] | [b'Z'] => {}
            [s, rest @ ..] if *s == b'+' || *s == b'-' => {
                let (hh, mm) = match rest {
                    [a, b, b':', c, d] | [a, b, c, d] => (num(&[*a, *b]), num(&[*c, *d])),
                    _ => (None, None),
                };
                match (hh, mm) {
                    (Some(hh), Some(mm)) if hh <= 23 && mm <= 59 => {}
                    _ => return Err("the offset must be ±hh:mm or ±hhmm".into()),
                }
            }
            _ => return Err("after the time comes nothing, Z or an offset ±hh:mm".into()),
        }
    }
    Ok(days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_their_calendar_day() {
        assert_eq!(parse_day("1970-01-01"), Ok(0));
        assert_eq!(parse_day("1970-01-02T00:00"), Ok(1));
        assert_eq!(parse_day("2000-03-01"), Ok(11_017));
        assert_eq!(parse_day("1969-12-31T23:59:59.5-05:00"), Ok(-1));
        assert_eq!(parse_day("2024-02-29 12:00:00Z"), Ok(19_782));
        assert_eq!(
            parse_day("2026-11-08T10:00:00+0100"),
            parse_day("2026-11-08")
        );
        for bad in [
            "",
            "2026-11",
            "2026/11/08",
            "2026-13-01",
            "2023-02-29",
            "2026-11-08x",
            "2026-11-08T25:00",
            "2026-11-08T10:00:61",
            "2026-11-08T10:00+5",
            "2026-11-08T10:00:00.",
            "26-11-08",
            "２０２６-11-08",
        ] {
            assert!(parse_day(bad).is_err(), "{bad:?}");
        }
        // 0000-01-01 to 9999-12-31: the four-digit years.
        for d in [-719_528, -1, 0, 1, 19_782, 20_400, 2_932_896] {
            let s = format_day(d);
            assert_eq!(parse_day(&s), Ok(d), "{s}");
        }
        // 2026-11-09 is a Monday.
        let monday = parse_day("2026-11-09").unwrap();
        assert_eq!(weekday(monday), 0);
        assert_eq!(weekday(monday + 6), 6);
        assert_eq!(
            format_day(monday + 3 - weekday(monday + 3) as i32),
            "2026-11-09"
        );
    }

    fn manifest(columns: &[&str], rows: &[&[&str]]) -> Manifest {
        Manifest::of_table(columns, rows)
    }

    #[test]
    fn batches_are_ordered_by_date_then_first_appearance() {
        let p = Path::new("items.csv");
        let m = manifest(
            &["id", "batch", "annotated_at", "annotator"],
            &[
                &["a", "late", "2026-11-09", "x"],
                &["b", "early", "2026-11-01T09:00", ""],
                &["c", "late", "2026-11-08", "y"],
                &["d", "early", "2026-11-02", "x"],
            ],
        );
        let c = load(p, &m, None).unwrap().unwrap();
        let names: Vec<&str> = c.batches.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["early", "late"]);
        assert_eq!(c.of_row, [1, 0, 1, 0]);
        assert_eq!(c.annotators, ["x", "y"]);
        assert_eq!(
            c.annotator_of_row,
            Some(vec![Some(0), None, Some(1), Some(0)])
        );
        // Windows: 2026-11-01 is a Sunday, 2026-11-02 a Monday.
        let m = manifest(
            &["id", "annotated_at"],
            &[
                &["a", "2026-11-09"],
                &["b", "2026-11-01"],
                &["c", "2026-11-02T23:00"],
            ],
        );
        let c = load(p, &m, Some(Window::Week)).unwrap().unwrap();
        let names: Vec<&str> = c.batches.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["2026-10-26", "2026-11-02", "2026-11-09"]);
        assert_eq!(c.of_row, [2, 0, 1]);
        assert_eq!(c.grouping, "week");
        let c = load(p, &m, None).unwrap().unwrap();
        assert_eq!(c.batches.len(), 3);
        assert_eq!(c.grouping, "day");
        // No time column.
        let m = manifest(&["id"], &[&["a"]]);
        assert!(load(p, &m, None).unwrap().is_none());
        assert!(load(p, &m, Some(Window::Day)).is_err());
    }

    #[test]
    fn half_filled_columns_and_bad_dates_are_named() {
        let p = Path::new("items.csv");
        let m = manifest(&["id", "batch"], &[&["a", "1"], &["b", " "], &["c", "2"]]);
        let e = load(p, &m, None).unwrap_err().to_string();
        assert!(
            e.contains("items.csv: item \"b\": batch: line 3: empty batch, while line 2 has one"),
            "{e}"
        );
        let m = manifest(&["id", "annotated_at"], &[&["a", "2026-02-30"]]);
        let e = load(p, &m, None).unwrap_err().to_string();
        assert!(
            e.contains("item \"a\": annotated_at: line 2: annotated_at \"2026-02-30\"")
                && e.contains("day 30 is not in 2026-02"),
            "{e}"
        );
    }

    fn annotations(
        times: Vec<Vec<crate::io::annotations::RowTime>>,
        names: &[&str],
    ) -> Annotations {
        use crate::io::annotations::Annotation;
        let columns = (
            times.iter().flatten().any(|t| t.batch.is_some()),
            times.iter().flatten().any(|t| t.day.is_some()),
        );
        Annotations {
            path: "annotations.csv".into(),
            annotators: vec!["x".into(), "y".into()],
            items: times
                .iter()
                .map(|v| {
                    (0..v.len())
                        .map(|a| (a as u32, Annotation::Label(0)))
                        .collect()
                })
                .collect(),
            times,
            batch_names: names.iter().map(|s| s.to_string()).collect(),
            time_columns: columns,
        }
    }

    /// Rows placed by name (a new batch dated before the others comes
    /// first; a row's date moves its batch's first date) and by window
    /// (a new week); a batch name against date windows is refused; dates
    /// alone against named batches leave the rows in their items'.
    #[test]
    fn annotation_rows_are_placed_in_their_own_batches() {
        use crate::io::annotations::RowTime;
        let p = Path::new("items.csv");
        let day = |s: &str| parse_day(s).ok();
        let m = manifest(
            &["id", "batch", "annotated_at"],
            &[&["a", "w1", "2026-11-02"], &["b", "w2", "2026-11-09"]],
        );
        let mut c = load(p, &m, None).unwrap().unwrap();
        // a: x in w2, y in new batch w0 (2026-10-01); b: x in w1.
        let ann = annotations(
            vec![
                vec![
                    RowTime {
                        batch: Some(1),
                        day: None,
                    },
                    RowTime {
                        batch: Some(2),
                        day: day("2026-10-01"),
                    },
                ],
                vec![RowTime {
                    batch: Some(0),
                    day: day("2026-11-01"),
                }],
            ],
            &["w1", "w2", "w0"],
        );
        c.place_annotations(&ann).unwrap();
        let names: Vec<&str> = c.batches.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["w0", "w1", "w2"]);
        assert_eq!(c.batches[1].first_day, day("2026-11-01"));
        assert_eq!(c.of_row, [1, 2]);
        assert_eq!(c.of_annotation, Some(vec![vec![2, 0], vec![1]]));
        assert_eq!(
            (c.annotation_batch(0, 1), c.annotation_batch(1, 0)),
            (Some(0), Some(1))
        );
        // Dates alone against named batches: the items' batches.
        let mut c = load(p, &m, None).unwrap().unwrap();
        let dated = annotations(
            vec![
                vec![RowTime {
                    batch: None,
                    day: day("2026-12-25"),
                }],
                vec![],
            ],
            &[],
        );
        c.place_annotations(&dated).unwrap();
        assert_eq!(c.of_annotation, None);
        assert_eq!(c.annotation_batch(0, 0), Some(0));
        // Weeks: a row on 2026-11-12 joins the week of 2026-11-09; one on
        // 2026-10-28 opens the week of 2026-10-26, first.
        let m = manifest(
            &["id", "annotated_at"],
            &[&["a", "2026-11-02"], &["b", "2026-11-10"]],
        );
        let mut c = load(p, &m, Some(Window::Week)).unwrap().unwrap();
        let weeks = annotations(
            vec![
                vec![RowTime {
                    batch: None,
                    day: day("2026-11-12"),
                }],
                vec![RowTime {
                    batch: None,
                    day: day("2026-10-28T23:59"),
                }],
            ],
            &[],
        );
        c.place_annotations(&weeks).unwrap();
        let names: Vec<&str> = c.batches.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["2026-10-26", "2026-11-02", "2026-11-09"]);
        assert_eq!(c.of_row, [1, 2]);
        assert_eq!(c.of_annotation, Some(vec![vec![2], vec![0]]));
        // A batch name against windows.
        let e = c.place_annotations(&ann).unwrap_err().to_string();
        assert!(
            e.contains("annotations.csv: batch: a batch column, but the items are grouped by annotated_at (week windows"),
            "{e}"
        );
    }
}
