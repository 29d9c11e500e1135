//! A shard's partial result: what `triage run --shard I/N` writes and
//! `triage merge` reads back.
//!
//! `PART/partial.jsonl` holds one [`Header`] line (format
//! `triage-partial/2`, version, the inputs' fingerprint, the shard, the
//! score options, the backend, the shard's pooled sums) and then one
//! [`ItemResult`] line per item of the shard, in manifest order. Every line
//! is sealed with the xxh3-64 checksum of its JSON ([`crate::io::sealed`]:
//! 16 hex digits, a space, the JSON). Floats round-trip to the same bits
//! (the pooled calibration sums are exact integers, see
//! [`crate::metrics::calibration::PooledBins`]), so a merge assembles
//! exactly what a single run would. Probabilities are never in a partial:
//! merging needs the items' small rows, not their predictions.
//!
//! **Fingerprint.** A hash of the version, the score options
//! (`batch_size`, `logits`, `backend`, `gpu_fallback`), `triage.toml`, the
//! items CSV, and for every large input (probabilities, labels,
//! embeddings; each file of a per-item probabilities directory) its size
//! and its first and last 64 KiB. A merge recomputes it from the dataset
//! and refuses partials that disagree with it or with each other.
//!
//! **Nothing in a partial is trusted.** It is read as a regular file
//! ([`crate::fsx::open_input`]), line by line (an item row at most
//! [`crate::io::sealed::record_limit`] bytes), streaming. A line whose checksum does not
//! match, that is torn or is not a record, and any field that does not fit
//! the run, is refused (exit 2) naming the file, the line and the field:
//! the header's shard (`index < count`), its `items` (the shard's share of
//! `n_items`, checked before anything is sized by it), its pooled sums
//! (arrays of the run's class count, consistent with the items, see
//! [`crate::records::check_sums`]); every row ([`ItemResult::validate`]:
//! class indices below the class count, and so on) and its index (the
//! shard's items in order). The checksum detects damage, not forgery; the
//! field checks stop a forged record from crashing or skewing the merge.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendInfo;
use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::io::sealed;
use crate::records::{DatasetStats, ItemResult, RunDims, Shard, SumsRef, Tally};
use crate::schema::Options;

/// The partial's file name inside a shard's `--out`.
pub const FILE: &str = "partial.jsonl";
/// The header's `format`.
pub const FORMAT: &str = "triage-partial/2";

/// The first line of a partial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    /// The `triage` version that wrote it.
    pub version: String,
    /// See the module documentation.
    pub fingerprint: String,
    pub shard: Shard,
    /// Items in the whole dataset.
    pub n_items: usize,
    /// Items in this partial (the lines that follow).
    pub items: usize,
    /// The run's options as `report.json` records them.
    pub options: Options,
    /// The backend that scored the shard.
    pub backend: BackendInfo,
    /// The shard's pooled sums.
    pub stats: DatasetStats,
    /// With `--cache`: the shard's reused and scored items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_cache: Option<crate::schema::ScoreCache>,
}

/// The fingerprint of `cfg`'s inputs under `options` (hex).
pub fn fingerprint(cfg: &DatasetConfig, options: &Options) -> Result<String> {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    for part in [
        options.batch_size.to_string(),
        options.logits.to_string(),
        options.backend.clone(),
        options.gpu_fallback.clone(),
        crate::scores::table_id(),
    ] {
        h.write(part.as_bytes());
        h.write_u8(0);
    }
    // Streamed, from regular files only (a FIFO or a device named as the
    // items CSV is refused, not read forever).
    let whole = |h: &mut std::hash::DefaultHasher, p: &Path| -> Result<()> {
        let mut f = crate::fsx::open_input(p)?;
        let mut buf = vec![0u8; 1 << 16];
        let mut len = 0u64;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(p, e)),
            };
            h.write(&buf[..n]);
            len += n as u64;
        }
        h.write_u64(len);
        Ok(())
    };
    whole(&mut h, &cfg.dir.join(crate::config::MANIFEST))?;
    if let Some(items) = &cfg.items {
        whole(&mut h, items)?;
    }
    let mut large: Vec<PathBuf> = Vec::new();
    if cfg.probs.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cfg.probs)
            .map_err(|e| Error::io(&cfg.probs, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "npy"))
            .collect();
        files.sort();
        large.extend(files);
    } else {
        large.push(cfg.probs.clone());
    }
    large.extend(cfg.labels.iter().cloned());
    large.extend(cfg.embeddings.iter().cloned());
    for p in &large {
        let f = crate::fsx::open_input(p)?;
        ends(&mut h, p, f).map_err(|e| Error::io(p, e))?;
    }
    Ok(format!("{:016x}", h.finish()))
}

/// Hash a file's name, size and its first and last 64 KiB (`f`: `p`,
/// opened).
fn ends(h: &mut std::hash::DefaultHasher, p: &Path, mut f: std::fs::File) -> std::io::Result<()> {
    use std::hash::Hasher;
    const END: u64 = 64 << 10;
    let len = f.metadata()?.len();
    if let Some(name) = p.file_name() {
        h.write(name.as_encoded_bytes());
    }
    h.write_u64(len);
    let mut buf = vec![0u8; END.min(len) as usize];
    f.read_exact(&mut buf)?;
    h.write(&buf);
    if len > END {
        let tail = END.min(len - END);
        f.seek(SeekFrom::Start(len - tail))?;
        buf.resize(tail as usize, 0);
        f.read_exact(&mut buf)?;
        h.write(&buf);
    }
    Ok(())
}

/// Write `header` and `items` as `out/partial.jsonl`, atomically.
pub fn write(out: &Path, header: &Header, items: &[ItemResult]) -> Result<Vec<PathBuf>> {
    let mut files = crate::io::atomic::AtomicOutputs::new(out);
    files.write(FILE, |w| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
        sealed::write(&mut w, header)?;
        for it in items {
            sealed::write(&mut w, it)?;
        }
        w.flush()
    })?;
    files.commit()
}

/// A partial opened for merging: its header, read and checked; its items,
/// by [`Opened::items`].
pub struct Opened {
    pub path: PathBuf,
    pub header: Header,
    reader: std::io::BufReader<std::fs::File>,
}

/// Open `part` (a shard's `--out` directory, or its `partial.jsonl`), read
/// its header and check it on its own: the format, the shard (`index <
/// count`), and `items`, which must be the shard's share of `n_items` and
/// fit in the file (a row takes more than one byte).
pub fn open(part: &Path) -> Result<Opened> {
    let path = if part.is_dir() {
        part.join(FILE)
    } else {
        part.to_path_buf()
    };
    let f = crate::fsx::open_input(&path)?;
    let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    let limit = usize::try_from(len).unwrap_or(usize::MAX);
    let bad =
        |why: String| Error::input(&path, format!("not a triage partial: {why}")).field("line 1");
    match sealed::read_line(&mut reader, &mut line, limit) {
        Ok(sealed::Line::Whole(_)) => {}
        Ok(sealed::Line::End) => {
            return Err(Error::input(&path, "empty: not a triage partial"));
        }
        Ok(_) => return Err(bad("no whole header line".into())),
        Err(e) => return Err(Error::io(&path, e)),
    }
    let json = sealed::open(&line).map_err(|d| bad(d.to_string()))?;
    let header: Header = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if header.format != FORMAT {
        return Err(Error::input(
            &path,
            format!("format {:?}, expected {FORMAT:?}", header.format),
        )
        .field("format"));
    }
    let field =
        |name: &str, why: String| Err(Error::input(&path, why).field(format!("line 1: {name}")));
    let s = header.shard;
    if s.count == 0 || s.index >= s.count {
        return field(
            "shard",
            format!("shard {}/{}: need 0 <= I < N", s.index, s.count),
        );
    }
    let share = s.range(header.n_items).len();
    if header.items != share {
        return field(
            "items",
            format!(
                "{} items, but shard {}/{} of {} items has {share}",
                header.items, s.index, s.count, header.n_items
            ),
        );
    }
    if header.items as u64 > len {
        return field(
            "items",
            format!("{} items in a file of {len} bytes", header.items),
        );
    }
    Ok(Opened {
        path,
        header,
        reader,
    })
}

impl Opened {
    /// Read the partial's items (exactly `header.items` lines), each
    /// checked against the run (`dims`) and numbered in order from the
    /// shard's first item; check the header's pooled sums against the run
    /// and the items, and add them to `stats` (`total`: the tally of the
    /// partials read so far, kept under [`crate::records::MAX_POOLED`]).
    pub fn items(
        mut self,
        dims: RunDims,
        stats: &mut DatasetStats,
        total: &mut Tally,
    ) -> Result<Vec<ItemResult>> {
        let path = self.path.clone();
        let h = &self.header;
        let at_line = |n: usize, e: crate::records::Invalid| {
            Error::input(&path, e.message).field(format!("line {n}: {}", e.field))
        };
        let hs = &h.stats;
        hs.confusion
            .check(dims.classes)
            .map_err(|m| at_line(1, crate::records::Invalid::new("stats.confusion.counts", m)))?;
        let cells = hs.confusion.nonzero();
        let sums = SumsRef {
            bins: &hs.bins,
            cells: &cells,
            bands: hs.bands.as_ref(),
        };
        let range = h.shard.range(h.n_items);
        // Grown as rows come: `items` was checked against the file's size,
        // but a row in memory is larger than a byte.
        let mut out = Vec::with_capacity(h.items.min(1 << 16));
        let mut tally = Tally::default();
        let mut line = Vec::new();
        let limit = crate::io::sealed::record_limit(dims.classes);
        for n in 2.. {
            let bad = |why: String| {
                Error::input(&path, format!("bad item row: {why}")).field(format!("line {n}"))
            };
            match sealed::read_line(&mut self.reader, &mut line, limit) {
                Ok(sealed::Line::Whole(_)) => {}
                Ok(sealed::Line::End) => break,
                Ok(sealed::Line::Torn(_)) => {
                    return Err(bad("torn (no newline at the end of the file)".into()));
                }
                Ok(sealed::Line::TooLong) => {
                    return Err(bad(format!("longer than {limit} bytes")));
                }
                Ok(sealed::Line::NotSealed) => {
                    return Err(bad(sealed::Damage::NoChecksum.to_string()));
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
            if out.len() == h.items {
                return Err(bad(format!("more item rows than the header's {}", h.items)));
            }
            let json = sealed::open(&line).map_err(|d| bad(d.to_string()))?;
            let it: ItemResult = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
            let want = range.start + out.len();
            if it.index != want {
                return Err(at_line(
                    n,
                    crate::records::Invalid::new(
                        "index",
                        format!(
                            "item {}, expected {want} (the shard's items in order)",
                            it.index
                        ),
                    ),
                ));
            }
            it.validate(dims)
                .and_then(|()| tally.add(it.pooled()))
                .map_err(|e| at_line(n, e))?;
            out.push(it);
        }
        if out.len() != h.items {
            return Err(Error::input(
                &path,
                format!(
                    "{} item rows, but the header says {} (truncated?)",
                    out.len(),
                    h.items
                ),
            ));
        }
        crate::records::check_sums(sums, dims, tally)
            .and_then(|()| total.add_tally(tally))
            .map_err(|e| at_line(1, e.under("stats")))?;
        stats.add_sums(sums);
        Ok(out)
    }
}
