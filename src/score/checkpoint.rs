//! The checkpoint of `triage run --resume`: the batches scored so far, so a
//! run killed at any point (even `kill -9`) continues where it stopped.
//!
//! `OUT/.triage-checkpoint.jsonl` is append-only: a header line (format
//! `triage-checkpoint/2`, the inputs' fingerprint as in
//! [`crate::score::partial::fingerprint`], the shard) and then one line per scored
//! batch (its first and last item, its items' rows, its pooled sums with
//! the confusion cells listed sparsely), each `fdatasync`ed before the next
//! batch is scored. Every line is sealed with the xxh3-64 checksum of its
//! JSON ([`crate::io::sealed`]: 16 hex digits, a space, the JSON).
//!
//! **Reading it back** (`--resume`). The file is opened without following
//! a symbolic link ([`crate::fsx::open_state`]: a link planted at its
//! name is refused, exit 2, and nothing is written through it). A torn last
//! line (no newline: the kill came mid-write) is cut off and the whole
//! batches before it are kept. Any other damage (a checksum that does not
//! match, a line that is not a batch, a batch that does not follow on from
//! the one before) or a field that does not fit the run (checked by
//! [`ItemResult::validate`] and [`crate::records::check_sums`]: class indices
//! below the class count, items numbered in order, pooled sums consistent
//! with the items) discards the whole checkpoint, said on stderr, and the
//! run starts afresh: the checksum detects damage, not forgery, and a
//! forged record is caught by the field checks. Pooled sums add exactly
//! ([`crate::metrics::calibration::PooledBins`]), so a resumed run writes
//! the same bytes as an uninterrupted one. The file is removed (the name,
//! not a link's target) once the run's outputs are in place.
//!
//! A checkpoint of other inputs, options, shard or format is discarded
//! (said on stderr) and the run starts afresh; no checkpoint: a fresh
//! start.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::sealed;
use crate::metrics::boundary_iou::BandCounts;
use crate::metrics::calibration::PooledBins;
use crate::records::{DatasetStats, ItemResult, RunDims, Shard, SumsRef, Tally};

/// The checkpoint's file name inside `--out`.
pub const FILE: &str = ".triage-checkpoint.jsonl";
/// The longest header line read (it holds the format, a fingerprint and
/// the shard).
const HEADER_LIMIT: usize = 1 << 16;
const FORMAT: &str = "triage-checkpoint/2";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Header {
    format: String,
    fingerprint: String,
    shard: Option<Shard>,
}

/// A batch's pooled sums, with the confusion cells listed sparsely.
#[derive(Debug, Serialize, Deserialize)]
struct BatchSums {
    bins: PooledBins,
    /// `(label, pred, count)`.
    confusion: Vec<(u32, u32, u64)>,
    bands: Option<BandCounts>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    start: usize,
    end: usize,
    sums: BatchSums,
    items: Vec<ItemResult>,
}

/// What a checkpoint held: the items scored so far (from the first item of
/// the run's range up to `next`) and their pooled sums.
#[derive(Debug)]
pub struct Resumed {
    pub next: usize,
    pub items: Vec<ItemResult>,
    pub stats: DatasetStats,
}

/// An open checkpoint, appending.
pub struct Checkpoint {
    path: PathBuf,
    file: std::fs::File,
    resumed: Option<Resumed>,
    /// Bytes of the header line.
    header_len: u64,
}

impl Resumed {
    /// Put the resumed items and sums into a run's (empty) `items` and
    /// `stats`, advance `bar`; returns the next item to score.
    pub fn restore(
        self,
        items: &mut Vec<ItemResult>,
        stats: &mut DatasetStats,
        bar: &indicatif::ProgressBar,
    ) -> usize {
        bar.inc(self.items.len() as u64);
        items.extend(self.items);
        stats.merge(&self.stats);
        self.next
    }
}

impl Checkpoint {
    /// Open (or start) the checkpoint in `out` for a run of a dataset with
    /// `classes` classes (`segmentation`: with band counts). The score stage
    /// takes what it held ([`Checkpoint::take_resumed`]) and checks it
    /// starts at its first item. A symbolic link (or anything but a regular
    /// file) at the checkpoint's name is an error, never followed.
    pub fn open(
        out: &Path,
        fingerprint: &str,
        shard: Option<Shard>,
        classes: usize,
        segmentation: bool,
    ) -> Result<Checkpoint> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let path = out.join(FILE);
        let header = Header {
            format: FORMAT.into(),
            fingerprint: fingerprint.into(),
            shard,
        };
        let mut file = crate::fsx::open_state(&path)?;
        let io = |e| Error::io(&path, e);
        let existed = file.metadata().map_err(io)?.len() > 0;
        let dims = RunDims {
            classes,
            segmentation,
        };
        let zeros = DatasetStats::zeros(classes, segmentation);
        let (kept_bytes, resumed) = match Self::read(&file, &header, dims, zeros) {
            Ok(found) => found,
            Err(why) => {
                if existed {
                    eprintln!(
                        "triage: warning: {}: {why}; the checkpoint is discarded, starting afresh",
                        path.display()
                    );
                }
                (0, None)
            }
        };
        let header_line = sealed::line(&header).map_err(|e| io(e.into()))?;
        if resumed.is_none() {
            file.set_len(0).map_err(io)?;
            file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
            file.write_all(&header_line).map_err(io)?;
        } else {
            // Cut a torn tail, then append after the last whole batch.
            file.set_len(kept_bytes).map_err(io)?;
            file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        }
        file.sync_data().map_err(io)?;
        if let Some(r) = &resumed {
            eprintln!(
                "triage: resuming from {}: {} items already scored",
                path.display(),
                r.items.len()
            );
        }
        Ok(Checkpoint {
            path,
            file,
            resumed,
            header_len: header_line.len() as u64,
        })
    }

    /// The batches of an existing checkpoint (`file`, read from its start)
    /// that match `header`, and the byte length they take; `Err(why)` when
    /// it is empty, belongs to another run, or is damaged anywhere but in a
    /// torn last line.
    fn read(
        file: &std::fs::File,
        header: &Header,
        dims: RunDims,
        mut stats: DatasetStats,
    ) -> std::result::Result<(u64, Option<Resumed>), String> {
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        // No line is longer than the file.
        let limit = usize::try_from(len).unwrap_or(usize::MAX);
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        let mut kept = match sealed::read_line(&mut r, &mut line, limit.min(HEADER_LIMIT)) {
            Ok(sealed::Line::Whole(n)) => n as u64,
            Ok(_) => return Err("no whole header line".into()),
            Err(e) => return Err(e.to_string()),
        };
        let json = sealed::open(&line).map_err(|d| format!("line 1: {d}"))?;
        let found: Header =
            serde_json::from_slice(json).map_err(|_| "not a checkpoint".to_string())?;
        if found != *header {
            return Err("a checkpoint of other inputs, options, shard or format".into());
        }
        let mut next = None;
        let mut items = Vec::new();
        let mut total = Tally::default();
        for n in 2.. {
            let at = |why: String| format!("line {n}: {why}");
            let bytes = match sealed::read_line(&mut r, &mut line, limit) {
                Ok(sealed::Line::Whole(b)) => b,
                // The end, or a torn last line (cut off).
                Ok(sealed::Line::End | sealed::Line::Torn(_)) => break,
                Ok(sealed::Line::TooLong) => return Err(at("longer than the file".into())),
                Ok(sealed::Line::NotSealed) => {
                    return Err(at(sealed::Damage::NoChecksum.to_string()));
                }
                Err(e) => return Err(at(e.to_string())),
            };
            let json = sealed::open(&line).map_err(|d| at(d.to_string()))?;
            let b: Batch =
                serde_json::from_slice(json).map_err(|e| at(format!("not a batch record: {e}")))?;
            let sums = check_batch(&b, next, dims, &mut total).map_err(at)?;
            stats.add_sums(sums);
            items.extend(b.items);
            next = Some(b.end);
            kept += bytes as u64;
        }
        let Some(next) = next else {
            return Err("no scored batch".into());
        };
        Ok((kept, Some(Resumed { next, items, stats })))
    }

    /// What the checkpoint held when opened (once).
    pub fn take_resumed(&mut self) -> Option<Resumed> {
        self.resumed.take()
    }

    /// Forget the batches recorded (they do not fit the run): keep the
    /// header only.
    pub fn restart(&mut self) -> Result<()> {
        let io = |e| Error::io(&self.path, e);
        self.file.set_len(self.header_len).map_err(io)?;
        self.file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// Record the batch of items `[start, end)` (`items`, in order) and its
    /// pooled sums `delta`, durably.
    pub fn append(
        &mut self,
        start: usize,
        end: usize,
        items: &[ItemResult],
        delta: &DatasetStats,
    ) -> Result<()> {
        let batch = BatchRef {
            start,
            end,
            sums: BatchSums {
                bins: delta.bins.clone(),
                confusion: delta.confusion.nonzero(),
                bands: delta.bands.clone(),
            },
            items,
        };
        let io = |e| Error::io(&self.path, e);
        let line = sealed::line(&batch).map_err(|e| io(e.into()))?;
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)
    }

    /// Remove the checkpoint: the run's outputs are in place.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// [`Batch`] borrowing its items, for writing.
#[derive(Serialize)]
struct BatchRef<'a> {
    start: usize,
    end: usize,
    sums: BatchSums,
    items: &'a [ItemResult],
}

/// Check batch `b` (read back) against the run: it follows on from the
/// batch before (`after`: its end), holds its items `start..end` in order,
/// each valid for the run, and pooled sums that are theirs
/// ([`crate::records::check_sums`]; `total`, the sums' tally so far, stays
/// under [`crate::records::MAX_POOLED`]). Returns its sums, to add.
fn check_batch<'b>(
    b: &'b Batch,
    after: Option<usize>,
    dims: RunDims,
    total: &mut Tally,
) -> std::result::Result<SumsRef<'b>, String> {
    if after.is_some_and(|n| b.start != n) {
        return Err(format!(
            "start: batch {}..{} does not follow on from the batch before",
            b.start, b.end
        ));
    }
    if b.end < b.start || b.items.len() != b.end - b.start {
        return Err(format!(
            "items: {} items for batch {}..{}",
            b.items.len(),
            b.start,
            b.end
        ));
    }
    let mut tally = Tally::default();
    for (j, it) in b.items.iter().enumerate() {
        if it.index != b.start + j {
            return Err(format!(
                "items[{j}].index: {}, expected {}",
                it.index,
                b.start + j
            ));
        }
        it.validate(dims)
            .and_then(|()| tally.add(it.pooled()))
            .map_err(|e| format!("items[{j}].{e}"))?;
    }
    let sums = SumsRef {
        bins: &b.sums.bins,
        cells: &b.sums.confusion,
        bands: b.sums.bands.as_ref(),
    };
    crate::records::check_sums(sums, dims, tally).map_err(|e| format!("sums.{e}"))?;
    total.add_tally(tally).map_err(|e| e.to_string())?;
    Ok(sums)
}
