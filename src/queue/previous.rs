//! `--previous DIR`: compare this run's budget with an earlier run's
//! `queue.jsonl`.
//!
//! # Contract
//!
//! The previous budget is the set of rows of `DIR/queue.jsonl` with
//! `in_budget: true` (every row, for a queue written before budgets existed,
//! i.e. without the field). Each in-budget row of this run gets a `status`:
//!
//! - `new`: its id is not in the previous budget;
//! - `changed`: it is, and its priority or any score present in both rows
//!   differs by more than [`TOLERANCE`] (absolute), or one of them is `null`
//!   where the other is not. Any change to an item's predictions or its
//!   annotation moves its scores, so this also catches content changes;
//! - `still`: it is, and nothing moved beyond the tolerance.
//!
//! `dropped` lists the previous budget's ids that are not in this budget, in
//! their old rank order, with the old rank and priority.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Absolute tolerance on priority and scores (above the 2e-5 CPU/GPU parity).
pub const TOLERANCE: f64 = 1e-4;

/// One row of the previous queue.
#[derive(Debug, Clone, PartialEq)]
pub struct PrevRow {
    pub id: String,
    pub rank: u64,
    pub priority: f64,
    pub in_budget: bool,
    pub scores: Map<String, Value>,
}

/// Status of an in-budget item against the previous budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    New,
    Still,
    Changed,
}

impl Status {
    /// `new`, `still` or `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Still => "still",
            Status::Changed => "changed",
        }
    }
}

/// The largest earlier `queue.jsonl` read, in bytes (1 GiB: about two
/// million rows with their scores).
pub const MAX_PREVIOUS_BYTES: u64 = 1 << 30;

/// Read `dir/queue.jsonl`: a regular file of at most
/// [`MAX_PREVIOUS_BYTES`], streamed line by line.
pub fn load(dir: &Path) -> Result<Vec<PrevRow>> {
    let path = dir.join("queue.jsonl");
    let mut rows = Vec::new();
    for_each_line(
        &path,
        MAX_PREVIOUS_BYTES,
        "the previous queue",
        |i, line| {
            if line.trim().is_empty() {
                return Ok(());
            }
            let bad = |what: &str| Error::input(&path, format!("line {}: {what}", i + 1));
            let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let id = v["id"].as_str().ok_or_else(|| bad("no string `id`"))?;
            rows.push(PrevRow {
                id: id.to_string(),
                rank: v["rank"].as_u64().unwrap_or(i as u64 + 1),
                priority: v["priority"]
                    .as_f64()
                    .ok_or_else(|| bad("no numeric `priority`").item(id))?,
                in_budget: v["in_budget"].as_bool().unwrap_or(true),
                scores: v["scores"].as_object().cloned().unwrap_or_default(),
            });
            Ok(())
        },
    )?;
    Ok(rows)
}

/// Call `f(index, line)` on every line of the text file `path` (without
/// its `\n`), streamed: the file must be a regular file
/// ([`crate::fsx::open_input`]) of at most `limit` bytes (checked
/// before reading, and never more read); `what` names it in errors.
pub(crate) fn for_each_line(
    path: &Path,
    limit: u64,
    what: &str,
    mut f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<()> {
    use std::io::{BufRead, Read};
    let file = crate::fsx::open_input(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > limit {
        return Err(Error::input(
            path,
            format!(
                "{what} is {len} bytes, over the limit of {limit} bytes (docs/threat-model.md)"
            ),
        ));
    }
    let mut reader = std::io::BufReader::new(file.take(limit));
    let mut buf = Vec::new();
    let mut i = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        let line = std::str::from_utf8(&buf).map_err(|e| {
            Error::input(
                path,
                format!(
                    "line {}: not UTF-8 text (byte {} is not)",
                    i + 1,
                    e.valid_up_to()
                ),
            )
        })?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        f(i, line.strip_suffix('\r').unwrap_or(line))?;
        i += 1;
    }
}

fn moved(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() > TOLERANCE,
        (None, None) => false,
        _ => true,
    }
}

/// Compares items of this run with the previous budget.
pub struct Comparison<'a> {
    budget: HashMap<&'a str, &'a PrevRow>,
    rows: &'a [PrevRow],
}

impl<'a> Comparison<'a> {
    pub fn new(rows: &'a [PrevRow]) -> Self {
        Comparison {
            budget: rows
                .iter()
                .filter(|r| r.in_budget)
                .map(|r| (r.id.as_str(), r))
                .collect(),
            rows,
        }
    }

    /// The status of an in-budget item with this priority and these scores.
    pub fn status(&self, id: &str, priority: f64, scores: &Map<String, Value>) -> Status {
        let Some(old) = self.budget.get(id) else {
            return Status::New;
        };
        let changed = (old.priority - priority).abs() > TOLERANCE
            || scores
                .iter()
                .any(|(k, v)| old.scores.get(k).is_some_and(|o| moved(o, v)));
        if changed {
            Status::Changed
        } else {
            Status::Still
        }
    }

    /// `previous.dropped`: previous in-budget ids not in `current`.
    pub fn dropped(&self, current: &HashSet<&str>) -> Vec<crate::schema::Dropped> {
        self.rows
            .iter()
            .filter(|r| r.in_budget && !current.contains(r.id.as_str()))
            .map(|r| crate::schema::Dropped {
                id: r.id.clone(),
                rank: r.rank,
                priority: r.priority,
            })
            .collect()
    }
}
