//! A shard's partial result: what `triage run --shard I/N` writes and
//! `triage merge` reads back.
//!
//! `PART/partial.jsonl` holds one [`Header`] line (format, version, the
//! inputs' fingerprint, the shard, the score options, the backend, the
//! shard's pooled sums) and then one [`ItemResult`] line per item of the
//! shard, in manifest order. Floats round-trip to the same bits (the
//! pooled calibration sums are exact integers, see
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

use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendInfo;
use crate::config::DatasetConfig;
use crate::error::{Error, Result};
use crate::model::{DatasetStats, ItemResult, Shard};
use crate::schema::Options;

/// The partial's file name inside a shard's `--out`.
pub const FILE: &str = "partial.jsonl";
/// The header's `format`.
pub const FORMAT: &str = "triage-partial/1";

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
    ] {
        h.write(part.as_bytes());
        h.write_u8(0);
    }
    let whole = |h: &mut std::hash::DefaultHasher, p: &Path| -> Result<()> {
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        h.write(&bytes);
        h.write_u64(bytes.len() as u64);
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
        ends(&mut h, p).map_err(|e| Error::io(p, e))?;
    }
    Ok(format!("{:016x}", h.finish()))
}

/// Hash a file's name, size and its first and last 64 KiB.
fn ends(h: &mut std::hash::DefaultHasher, p: &Path) -> std::io::Result<()> {
    use std::hash::Hasher;
    const END: u64 = 64 << 10;
    let mut f = std::fs::File::open(p)?;
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
        serde_json::to_writer(&mut w, header)?;
        w.write_all(b"\n")?;
        for it in items {
            serde_json::to_writer(&mut w, it)?;
            w.write_all(b"\n")?;
        }
        w.flush()
    })?;
    files.commit()
}

/// A partial opened for merging: its header, read; its items, by
/// [`Opened::items`].
pub struct Opened {
    pub path: PathBuf,
    pub header: Header,
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
}

/// Open `part` (a shard's `--out` directory, or its `partial.jsonl`) and
/// read its header.
pub fn open(part: &Path) -> Result<Opened> {
    let path = if part.is_dir() {
        part.join(FILE)
    } else {
        part.to_path_buf()
    };
    let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, f).lines();
    let first = lines
        .next()
        .ok_or_else(|| Error::input(&path, "empty: not a triage partial"))?
        .map_err(|e| Error::io(&path, e))?;
    let header: Header = serde_json::from_str(&first)
        .map_err(|e| Error::input(&path, format!("not a triage partial: {e}")).field("line 1"))?;
    if header.format != FORMAT {
        return Err(Error::input(
            &path,
            format!("format {:?}, expected {FORMAT:?}", header.format),
        )
        .field("format"));
    }
    Ok(Opened {
        path,
        header,
        lines,
    })
}

impl Opened {
    /// Read the partial's items (exactly `header.items` lines).
    pub fn items(mut self) -> Result<Vec<ItemResult>> {
        let mut out = Vec::with_capacity(self.header.items);
        for (k, line) in self.lines.by_ref().enumerate() {
            let line = line.map_err(|e| Error::io(&self.path, e))?;
            let it: ItemResult = serde_json::from_str(&line).map_err(|e| {
                Error::input(&self.path, format!("bad item row: {e}"))
                    .field(format!("line {}", k + 2))
            })?;
            out.push(it);
        }
        if out.len() != self.header.items {
            return Err(Error::input(
                &self.path,
                format!(
                    "{} item rows, but the header says {} (truncated?)",
                    out.len(),
                    self.header.items
                ),
            ));
        }
        Ok(out)
    }
}
