//! The checkpoint of `triage run --resume`: the batches scored so far, so a
//! run killed at any point (even `kill -9`) continues where it stopped.
//!
//! `OUT/.triage-checkpoint.jsonl` is append-only: a header line (format,
//! the inputs' fingerprint as in [`crate::partial::fingerprint`], the shard)
//! and then one line per scored batch (its first and last item, its items'
//! rows, its pooled sums with the confusion cells listed sparsely), each
//! `fdatasync`ed before the next batch is scored. On `--resume`, the lines
//! that parse and follow on from each other are kept; a torn last line (the
//! kill came mid-write) is cut off. Pooled sums add exactly
//! ([`crate::metrics::calibration::PooledBins`]), so a resumed run writes
//! the same bytes as an uninterrupted one. The file is removed once the
//! run's outputs are in place.
//!
//! A checkpoint of other inputs, options or shard is discarded (said on
//! stderr) and the run starts afresh; no checkpoint: a fresh start.

use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::boundary_iou::BandCounts;
use crate::metrics::calibration::PooledBins;
use crate::model::{DatasetStats, ItemResult, Shard};

/// The checkpoint's file name inside `--out`.
pub const FILE: &str = ".triage-checkpoint.jsonl";
const FORMAT: &str = "triage-checkpoint/1";

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
    /// starts at its first item.
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
        let zeros = DatasetStats::zeros(classes, segmentation);
        let (kept_bytes, resumed) = match Self::read(&path, &header, classes, zeros) {
            Ok(found) => found,
            Err(why) => {
                if path.exists() {
                    eprintln!("triage: {}: {why}; starting afresh", path.display());
                }
                (0, None)
            }
        };
        let io = |e| Error::io(&path, e);
        let mut header_line = serde_json::to_vec(&header).map_err(|e| io(e.into()))?;
        header_line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if resumed.is_none() {
            file.set_len(0).map_err(io)?;
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

    /// The batches of an existing checkpoint that match `header` and follow
    /// on from `start`, and the byte length they take; `Err(why)` when the
    /// file is missing or belongs to another run.
    fn read(
        path: &Path,
        header: &Header,
        classes: usize,
        mut stats: DatasetStats,
    ) -> std::result::Result<(u64, Option<Resumed>), String> {
        let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut r = std::io::BufReader::new(f);
        let mut line = String::new();
        let mut kept = r.read_line(&mut line).map_err(|e| e.to_string())? as u64;
        let found: Header =
            serde_json::from_str(line.trim_end()).map_err(|_| "not a checkpoint".to_string())?;
        if found != *header {
            return Err("a checkpoint of other inputs, options or shard".into());
        }
        let mut next = None;
        let mut items = Vec::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line).map_err(|e| e.to_string())?;
            if n == 0 || !line.ends_with('\n') {
                break; // the end, or a torn last line
            }
            let Ok(b) = serde_json::from_str::<Batch>(&line) else {
                break;
            };
            let follows = next.is_none_or(|n| b.start == n)
                && b.end >= b.start
                && b.items.len() == b.end - b.start
                && b.items
                    .iter()
                    .enumerate()
                    .all(|(j, it)| it.index == b.start + j)
                && b.sums
                    .confusion
                    .iter()
                    .all(|&(l, p, _)| (l as usize) < classes && (p as usize) < classes)
                && b.sums.bands.as_ref().map(|x| x.inter.len())
                    == stats.bands.as_ref().map(|x| x.inter.len());
            if !follows {
                break;
            }
            stats.bins.merge(&b.sums.bins);
            for &(l, p, c) in &b.sums.confusion {
                stats.confusion.add_count(l as usize, p as usize, c);
            }
            if let (Some(a), Some(x)) = (&mut stats.bands, &b.sums.bands) {
                a.add(x);
            }
            items.extend(b.items);
            next = Some(b.end);
            kept += n as u64;
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
        let mut line = serde_json::to_vec(&batch).map_err(|e| io(e.into()))?;
        line.push(b'\n');
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
