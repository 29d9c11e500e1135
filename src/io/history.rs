//! `--history DIR`: the dataset figures of earlier runs, night over night.
//!
//! # Contract
//!
//! `DIR` must be a directory (a missing one, or a file, is an input error).
//! An earlier run is either
//!
//! - a file directly in `DIR` whose name ends in `.json` (an earlier run's
//!   `report.json`, kept under any name), or
//! - a directory directly in `DIR` holding a `report.json` (an earlier
//!   run's `--out`).
//!
//! Every other entry (other files, directories without a `report.json`) is
//! left alone. `skip` (this run's own `--out/report.json`, about to be
//! replaced) is not read when `DIR` holds it.
//!
//! Every file read is untrusted:
//!
//! - it is read only where its real path (links resolved) is inside `DIR`'s
//!   real path: a symbolic link leading out of `DIR` (or to nothing) is
//!   refused, never followed; a link to another run inside `DIR` is read
//!   once (under the first name in byte order);
//! - it must be a regular file ([`crate::fsx::open_input`]) of at most
//!   [`MAX_REPORT_BYTES`] bytes (checked before reading, never more read);
//! - at most [`MAX_NIGHTS`] earlier runs are read (more is refused, before
//!   any is read), and at most [`MAX_CHECKS`] checks a report;
//! - only the fields below are parsed, the rest is skipped: `n_items`
//!   (required), `queue.flagged` (required), `started_at`, `ece`,
//!   `segmentation.miou`, `review.overall.precision`,
//!   `selection.unlabelled`, `checks.NAME.flagged` (optional, `null`
//!   allowed; [`LABELLING_CHECK`], which counts unlabelled items, is
//!   skipped). A file that is not JSON, a missing required field, a value
//!   of the wrong type, a count larger than the items it counts in, a
//!   figure outside `[0, 1]` or a `started_at` that is not RFC 3339 UTC
//!   (`YYYY-MM-DDThh:mm:ss[.f]Z`, as `report.json` writes it) is an input
//!   error naming the file and the field (exit 2).
//!
//! The nights come back in time order: by `started_at` when every earlier
//! report has one (ties by name), else all by their names in `DIR` (byte
//! order: nightly names such as `2026-12-03` sort by date).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};

use crate::error::{Error, Result};

/// The most earlier runs `--history` reads (about 27 years of nights).
pub const MAX_NIGHTS: usize = 10_000;
/// The largest earlier `report.json` read, in bytes.
pub const MAX_REPORT_BYTES: u64 = 64 << 20;
/// The most checks read from one earlier report's `checks`.
pub const MAX_CHECKS: usize = 256;
/// The `checks` entry that counts unlabelled items (the selection for
/// labelling, `crate::queue::selection::NAME`), not flagged labelled
/// ones: left out of the per-check shares, its count unchecked.
pub const LABELLING_CHECK: &str = "select_for_labelling";

/// One earlier run's dataset figures, as its `report.json` recorded them
/// (checked: every count within the items it counts in, every figure in
/// `[0, 1]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Night {
    /// Its name in `DIR` (the file's or the run directory's).
    pub run: String,
    /// `started_at`, as written (RFC 3339 UTC); `None` when it has none.
    pub at: Option<String>,
    /// `n_items`: every item, labelled or not.
    pub items: usize,
    /// Labelled items: `n_items − selection.unlabelled`.
    pub labelled: usize,
    /// `queue.flagged`: the queue's rows that at least one check flags.
    pub flagged: usize,
    /// `checks.NAME.flagged`, for the checks that report a count, in the
    /// report's order ([`LABELLING_CHECK`] left out).
    pub flagged_by_check: Vec<(String, usize)>,
    pub ece: Option<f64>,
    /// `segmentation.miou`.
    pub miou: Option<f64>,
    /// `review.overall.precision`.
    pub review_precision: Option<f64>,
}

impl Night {
    /// `flagged / labelled`; `None` without a labelled item.
    pub fn flagged_share(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.flagged as f64 / self.labelled as f64)
    }

    /// `checks.NAME.flagged / labelled`, per check; empty without a
    /// labelled item.
    pub fn flagged_share_by_check(&self) -> Vec<(String, f64)> {
        if self.labelled == 0 {
            return Vec::new();
        }
        self.flagged_by_check
            .iter()
            .map(|(name, n)| (name.clone(), *n as f64 / self.labelled as f64))
            .collect()
    }
}

/// Read the earlier runs in `dir` (see the module's contract), in time
/// order; `skip` is this run's own `report.json`, left out when `dir`
/// holds it.
pub fn load(dir: &Path, skip: Option<&Path>) -> Result<Vec<Night>> {
    let md = match std::fs::metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::input(
                dir,
                "the --history directory does not exist (give a directory of earlier runs' \
                 report.json files or output directories; an empty one starts the history)",
            ));
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    if !md.is_dir() {
        return Err(Error::input(
            dir,
            format!(
                "--history names a {}, not a directory of earlier runs",
                crate::fsx::kind_name(&md.file_type())
            ),
        ));
    }
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let skip = skip.and_then(|p| p.canonicalize().ok());
    let mut found: Vec<(OsString, PathBuf, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(file) = report_of(&entry.path(), &name)? else {
            continue;
        };
        let real = inside(&root, &file)?;
        if skip.as_ref() == Some(&real) {
            continue;
        }
        if found.len() == MAX_NIGHTS {
            return Err(Error::input(
                dir,
                format!(
                    "more than {MAX_NIGHTS} earlier runs, the most --history reads: move the \
                     older ones out of the directory"
                ),
            ));
        }
        found.push((name, file, real));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut nights = Vec::with_capacity(found.len());
    let mut keys = Vec::with_capacity(found.len());
    for (name, file, real) in found {
        if !seen.insert(real.clone()) {
            continue;
        }
        let (night, key) = read_one(&name.to_string_lossy(), &file, &real)?;
        nights.push(night);
        keys.push(key);
    }
    if keys.iter().all(Option::is_some) {
        let mut order: Vec<usize> = (0..nights.len()).collect();
        // Stable: ties keep the name order.
        order.sort_by_key(|&i| keys[i]);
        let mut slots: Vec<Option<Night>> = nights.into_iter().map(Some).collect();
        nights = order.into_iter().filter_map(|i| slots[i].take()).collect();
    }
    Ok(nights)
}

/// The `report.json` the entry `path` (named `name` in the history
/// directory) stands for: itself for a `*.json` file, `path/report.json`
/// for a directory that holds one; `None` for anything else. A symbolic
/// link is only looked through here (its target's type); whether it may
/// be read is [`inside`]'s decision.
fn report_of(path: &Path, name: &std::ffi::OsStr) -> Result<Option<PathBuf>> {
    let json = name.to_string_lossy().ends_with(".json");
    let lmd = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    let is_dir = if lmd.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(md) => md.is_dir(),
            // A dangling link: refused by `inside` if it would be read.
            Err(_) => false,
        }
    } else {
        lmd.is_dir()
    };
    if is_dir {
        let report = path.join("report.json");
        return match std::fs::symlink_metadata(&report) {
            Ok(_) => Ok(Some(report)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&report, e)),
        };
    }
    Ok(json.then(|| path.to_path_buf()))
}

/// The real path of `file`, which must lie inside `root` (a real path).
fn inside(root: &Path, file: &Path) -> Result<PathBuf> {
    let real = file.canonicalize().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::input(
                file,
                "a symbolic link to nothing in the --history directory",
            )
        } else {
            Error::io(file, e)
        }
    })?;
    if !real.starts_with(root) {
        return Err(Error::input(
            file,
            format!(
                "a symbolic link leading outside the --history directory (to {}); triage reads \
                 only the files inside it",
                real.display()
            ),
        ));
    }
    Ok(real)
}

/// The fields of an earlier `report.json` that the history reads.
#[derive(Deserialize)]
struct Raw {
    n_items: usize,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    ece: Option<f64>,
    queue: RawQueue,
    #[serde(default)]
    segmentation: Option<RawSegmentation>,
    #[serde(default)]
    review: Option<RawReview>,
    #[serde(default)]
    selection: Option<RawSelection>,
    #[serde(default)]
    checks: RawChecks,
}

#[derive(Deserialize)]
struct RawQueue {
    flagged: usize,
}

#[derive(Deserialize)]
struct RawSegmentation {
    #[serde(default)]
    miou: Option<f64>,
}

#[derive(Deserialize)]
struct RawReview {
    overall: RawTally,
}

#[derive(Deserialize)]
struct RawTally {
    #[serde(default)]
    precision: Option<f64>,
}

#[derive(Deserialize)]
struct RawSelection {
    unlabelled: usize,
}

#[derive(Deserialize)]
struct RawCheck {
    #[serde(default)]
    flagged: Option<usize>,
}

/// `checks`: at most [`MAX_CHECKS`] entries, each's `flagged`.
#[derive(Default)]
struct RawChecks(Vec<(String, Option<usize>)>);

impl<'de> Deserialize<'de> for RawChecks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawChecks;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a map of check names to their summaries")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawChecks, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if out.len() == MAX_CHECKS {
                        return Err(A::Error::custom(format!(
                            "more than {MAX_CHECKS} checks, the most --history reads"
                        )));
                    }
                    let c: RawCheck = map.next_value()?;
                    out.push((name, c.flagged));
                }
                Ok(RawChecks(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Read and check one earlier report: `file` as named in the history
/// directory (errors name it), `real` its real path (the one opened).
/// Returns the night and its `started_at` as a sort key.
fn read_one(run: &str, file: &Path, real: &Path) -> Result<(Night, Option<(i64, u32)>)> {
    let bytes =
        crate::fsx::read_input(real, MAX_REPORT_BYTES, "an earlier report.json").map_err(|e| {
            match e {
                Error::Input { message, .. } => Error::input(file, message),
                other => other,
            }
        })?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: Raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("not an earlier report.json: not valid JSON: {inner}")
        } else {
            format!("not an earlier report.json: {inner}")
        };
        let err = Error::input(file, msg);
        if at == "." { err } else { err.field(at) }
    })?;
    de.end().map_err(|e| {
        Error::input(
            file,
            format!("not an earlier report.json: not valid JSON: {e}"),
        )
    })?;
    let bad = |field: &str, msg: String| Error::input(file, msg).field(field.to_string());
    let unlabelled = raw.selection.map_or(0, |s| s.unlabelled);
    let labelled = raw.n_items.checked_sub(unlabelled).ok_or_else(|| {
        bad(
            "selection.unlabelled",
            format!("{unlabelled} unlabelled items of {} in all", raw.n_items),
        )
    })?;
    if raw.queue.flagged > labelled {
        return Err(bad(
            "queue.flagged",
            format!(
                "{} flagged rows of {labelled} labelled items",
                raw.queue.flagged
            ),
        ));
    }
    let mut flagged_by_check = Vec::new();
    for (name, flagged) in raw.checks.0 {
        let Some(n) = flagged.filter(|_| name != LABELLING_CHECK) else {
            continue;
        };
        if n > labelled {
            return Err(bad(
                &format!("checks.{name}.flagged"),
                format!("{n} flagged items of {labelled} labelled items"),
            ));
        }
        flagged_by_check.push((name, n));
    }
    let unit = |field: &str, v: Option<f64>| -> Result<Option<f64>> {
        match v {
            Some(x) if !(0.0..=1.0).contains(&x) => {
                Err(bad(field, format!("{x} is not in [0, 1]")))
            }
            _ => Ok(v),
        }
    };
    let ece = unit("ece", raw.ece)?;
    let miou = unit("segmentation.miou", raw.segmentation.and_then(|s| s.miou))?;
    let review_precision = unit(
        "review.overall.precision",
        raw.review.and_then(|r| r.overall.precision),
    )?;
    let key = match &raw.started_at {
        Some(t) => Some(parse_utc(t).map_err(|why| bad("started_at", why))?),
        None => None,
    };
    Ok((
        Night {
            run: run.to_string(),
            at: raw.started_at,
            items: raw.n_items,
            labelled,
            flagged: raw.queue.flagged,
            flagged_by_check,
            ece,
            miou,
            review_precision,
        },
        key,
    ))
}

/// `t` (an instant after 1970) as RFC 3339 UTC with milliseconds,
/// `YYYY-MM-DDThh:mm:ss.sssZ`: `report.json`'s `started_at`.
pub fn format_utc(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let day = (secs / 86_400) as i32;
    let s = secs % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        super::campaign::format_day(day),
        s / 3600,
        s % 3600 / 60,
        s % 60,
        since.subsec_millis()
    )
}

/// Parse RFC 3339 UTC as [`format_utc`] writes it (any number of
/// fraction digits, or none; the `Z` required) into seconds since
/// 1970-01-01 and nanoseconds: a key that sorts in time order. `Err` says
/// what is wrong.
pub fn parse_utc(text: &str) -> std::result::Result<(i64, u32), String> {
    let want = "not RFC 3339 UTC (YYYY-MM-DDThh:mm:ss[.f]Z)";
    let b = text.as_bytes();
    if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b.last() != Some(&b'Z') {
        return Err(format!("{text:?} is {want}"));
    }
    let day = super::campaign::parse_day(&text[..10]).map_err(|why| format!("{text:?}: {why}"))?;
    let num = |s: &[u8]| -> Option<u32> {
        if s.len() != 2 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(u32::from(s[0] - b'0') * 10 + u32::from(s[1] - b'0'))
    };
    let (Some(h), Some(m), Some(s)) = (num(&b[11..13]), num(&b[14..16]), num(&b[17..19])) else {
        return Err(format!("{text:?} is {want}"));
    };
    if h > 23 || m > 59 || s > 60 {
        return Err(format!("{text:?}: the time is out of range"));
    }
    let rest = &b[19..b.len() - 1];
    let nanos = match rest {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            let mut n = 0u32;
            for k in 0..9 {
                n = n * 10 + digits.get(k).map_or(0, |d| u32::from(d - b'0'));
            }
            n
        }
        _ => return Err(format!("{text:?} is {want}")),
    };
    let secs = i64::from(day) * 86_400 + i64::from(h * 3600 + m * 60 + s);
    Ok((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_sort() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_342_898_123);
        let text = format_utc(t);
        assert_eq!(text, "2026-12-04T00:08:18.123Z");
        assert_eq!(parse_utc(&text), Ok((1_796_342_898, 123_000_000)));
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Ok((0, 0)));
        assert!(parse_utc("2026-12-03T10:00:00Z") < parse_utc("2026-12-03T10:00:00.5Z"));
        assert!(parse_utc("2026-12-03T23:59:59.999Z") < parse_utc("2026-12-04T00:00:00Z"));
        for bad in [
            "",
            "2026-12-03",
            "2026-12-03T10:00:00",
            "2026-12-03T10:00:00+01:00",
            "2026-13-03T10:00:00Z",
            "2026-12-03T24:00:00Z",
            "2026-12-03T10:00:00.Z",
            "2026-12-03T1a:00:00Z",
            "2026-12-03 10:00:00Z",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad:?}");
        }
    }
}
