//! The neighbour stage of a run: load embeddings, build the graph (optionally
//! through a saved index), find near-duplicates, conflicts and clusters, and
//! fold them into the items' scores, partners and clusters, from which
//! [`conflict`] gives the priority raise of
//! [`crate::priority::conflict_raise`] (applied by the pipeline, in
//! [`crate::priority::priorities`]). The reasons they give are
//! written by the check that reads them,
//! [`crate::checks::near_duplicate::DuplicateConflict`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::knn::{self, EXACT_MAX, KnnMethod};
use super::{
    Embeddings, LabelOracle, NeighborResult, Threshold, analyse, hash_bytes, identical_pairs_by,
};
use crate::backend::Backend;
use crate::config::{DatasetConfig, Task};
use crate::error::{Error, Result};
use crate::io::manifest::Ids;
use crate::io::manifest::Manifest;
use crate::io::mask::read_dataset_mask;
use crate::records::{ItemResult, NeighborRef};
use crate::schema;
use crate::scores::Score;

/// Options of the neighbour stage (flags of `triage run`).
#[derive(Debug, Clone)]
pub struct NeighborOptions {
    pub k: usize,
    pub threshold: Threshold,
    /// Segmentation: near-duplicate masks with mean IoU below this conflict.
    pub conflict_iou: f64,
    pub method: KnnMethod,
    /// Save the HNSW index here and reuse it on the next run.
    pub index_dir: Option<PathBuf>,
    /// Serial index construction, so outputs are byte-identical across runs.
    pub deterministic: bool,
}

impl Default for NeighborOptions {
    fn default() -> Self {
        NeighborOptions {
            k: super::DEFAULT_K,
            threshold: Threshold::Absolute(super::DEFAULT_THRESHOLD),
            conflict_iou: 0.5,
            method: KnnMethod::Auto,
            index_dir: None,
            deterministic: false,
        }
    }
}

struct Oracle<'a> {
    cfg: &'a DatasetConfig,
    manifest: &'a Manifest,
    items: &'a [ItemResult],
    conflict_iou: f64,
    backend: &'a dyn Backend,
}

impl Oracle<'_> {
    fn mask(&self, i: usize) -> Result<Option<Vec<u16>>> {
        let Some(col) = self.manifest.column("mask") else {
            return Ok(None);
        };
        let Some(dims) = self.items[i].dims() else {
            return Ok(None);
        };
        let id = &self.manifest.ids[i];
        if let Some(m) = crate::io::inputs::given_mask(self.cfg, id, i, dims) {
            return m.map(Some);
        }
        let path = self
            .cfg
            .item_file(id, "mask", self.manifest.rows.cell(i, col).trim())?;
        read_dataset_mask(self.cfg, &path, &self.manifest.ids[i], dims).map(Some)
    }
}

impl LabelOracle for Oracle<'_> {
    fn labelled(&self, i: usize) -> bool {
        !self.items[i].unlabelled
    }

    fn same_label(&self, a: usize, b: usize) -> bool {
        self.items[a].label_set() == self.items[b].label_set()
    }

    fn conflict(&self, a: usize, b: usize) -> Result<(bool, Option<f64>)> {
        if self.cfg.task == Task::Classification {
            return Ok((self.items[a].label_set() != self.items[b].label_set(), None));
        }
        if self.items[a].dims() != self.items[b].dims() {
            return Ok((false, None)); // masks of different sizes are not compared
        }
        let (Some(ma), Some(mb)) = (self.mask(a)?, self.mask(b)?) else {
            return Ok((false, None));
        };
        let conf =
            self.backend
                .mask_confusion(&ma, &mb, self.cfg.num_classes(), self.cfg.ignore_index)?;
        let iou = conf.mean_iou();
        Ok((iou.is_some_and(|v| v < self.conflict_iou), iou))
    }
}

/// `--index DIR/index.json`: the items the saved dump holds, in insertion
/// order, and the xxh3-64 of each dump file ([`DUMP_FILES`]) as committed.
/// The dump is loaded only when both files still hash to these (a damaged
/// dump is rebuilt, said on stderr); the manifest itself is read as an
/// untrusted regular file of at most [`MAX_INDEX_MANIFEST_BYTES`].
#[derive(Serialize, Deserialize)]
struct IndexManifest {
    ids: Vec<String>,
    row_hashes: Vec<u64>,
    /// Absent in a manifest of an older version: its dump is not trusted.
    #[serde(default)]
    dump: Option<[u64; 2]>,
}

/// The largest `index.json` read (about 40 bytes an item, so room for
/// tens of millions of items).
pub const MAX_INDEX_MANIFEST_BYTES: u64 = 4 << 30;

/// The xxh3-64 of the regular file `path`, streamed.
fn file_xxh3(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut f = crate::fsx::open_input(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.digest())
}

/// The items of the saved index in `dir` that the run may reuse: the
/// manifest's prefix that matches `ids` and `hashes`, when the dump files
/// still hash to what the manifest recorded; 0 (rebuild) otherwise.
fn reusable_prefix(dir: &Path, ids: &Ids, hashes: &[u64]) -> Result<usize> {
    let manifest_path = dir.join("index.json");
    match std::fs::symlink_metadata(&manifest_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(&manifest_path, e)),
        Ok(_) => {}
    }
    let text = crate::fsx::read_input(&manifest_path, MAX_INDEX_MANIFEST_BYTES, "index.json")?;
    let m: IndexManifest = serde_json::from_slice(&text)
        .map_err(|e| Error::input(&manifest_path, format!("not an index manifest: {e}")))?;
    let m_len = m.ids.len();
    let same_prefix = m_len <= ids.len()
        && m.row_hashes.len() == m_len
        && m.ids.iter().map(String::as_str).eq(ids.iter().take(m_len))
        && m.row_hashes[..] == hashes[..m_len];
    if !same_prefix || m_len == 0 {
        return Ok(0);
    }
    let intact = match m.dump {
        Some(want) => DUMP_FILES
            .iter()
            .zip(want)
            .all(|(name, w)| file_xxh3(&dir.join(name)).is_ok_and(|h| h == w)),
        None => false,
    };
    if !intact {
        eprintln!(
            "triage: {}: the saved index does not match its checksums (damaged or of an older version); rebuilding it",
            dir.display()
        );
        return Ok(0);
    }
    Ok(m_len)
}

fn row_hash(row: &[f32]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    bytemuck::cast_slice::<f32, u8>(row).hash(&mut h);
    h.finish()
}

fn build_graph(
    emb: &Embeddings,
    ids: &Ids,
    o: &NeighborOptions,
    backend: &dyn Backend,
) -> Result<(super::KnnGraph, Option<schema::IvfSummary>)> {
    let method = match o.method {
        KnnMethod::Auto if o.index_dir.is_some() => KnnMethod::Hnsw,
        KnnMethod::Auto if emb.n > EXACT_MAX => KnnMethod::Ivf,
        KnnMethod::Auto => KnnMethod::Exact,
        m => m,
    };
    match method {
        KnnMethod::Exact | KnnMethod::Auto => return Ok((backend.knn_exact(emb, o.k)?, None)),
        KnnMethod::Ivf => {
            let p = knn::IvfParams::for_size(emb.n);
            let (g, check) = knn::ivf(emb, o.k, &p);
            return Ok((
                g,
                Some(schema::IvfSummary {
                    lists: p.lists,
                    spill: p.spill,
                    refine_rounds: check.rounds,
                    recall_sample: check.sample,
                    recall_estimate: check.recall,
                    recall_target: p.recall_target,
                }),
            ));
        }
        KnnMethod::Hnsw => {}
    }
    let Some(dir) = &o.index_dir else {
        return Ok((knn::hnsw(emb, o.k, None, o.deterministic)?, None));
    };
    let hashes: Vec<u64> = (0..emb.n).map(|i| row_hash(emb.row(i))).collect();
    let manifest_path = dir.join("index.json");
    let known = reusable_prefix(dir, ids, &hashes)?;
    let (graph, mut out, dump) = saved_hnsw(dir, |work| {
        knn::hnsw(emb, o.k, Some((work, known)), o.deterministic)
    })?;
    let m = IndexManifest {
        ids: ids.to_vec(),
        row_hashes: hashes,
        dump: Some(dump),
    };
    let text = serde_json::to_string(&m).map_err(|e| Error::io(&manifest_path, e.into()))?;
    out.write("index.json", |w| w.write_all(text.as_bytes()))?;
    out.commit()?;
    Ok((graph, None))
}

/// The files of hnsw_rs's dump in an index directory (`knn`'s base name
/// `triage`).
const DUMP_FILES: [&str; 2] = ["triage.hnsw.graph", "triage.hnsw.data"];

/// Build the `--index DIR` graph through `build(work)` in a private temp
/// directory inside `dir` (`.triage-index.triage-tmp-XXXXXX`, created
/// exclusively, locked while it lives): hnsw_rs opens its dump files with a
/// plain create (which would follow a link planted at the name in `dir`),
/// so it loads from and dumps to `work` only. The saved dump of `dir`
/// (regular files only, never a link) is linked (or copied) into `work`
/// first. The new dump files are returned in an [`AtomicOutputs`] of `dir`,
/// to commit as one set with `index.json`, with their xxh3-64 (for
/// [`IndexManifest::dump`]); a killed run's temp directory is removed by
/// the next commit there.
///
/// [`AtomicOutputs`]: crate::io::atomic::AtomicOutputs
fn saved_hnsw(
    dir: &Path,
    build: impl FnOnce(&Path) -> Result<knn::KnnGraph>,
) -> Result<(knn::KnnGraph, crate::io::atomic::AtomicOutputs, [u64; 2])> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let work = tempfile::Builder::new()
        .prefix(&format!(".triage-index{}", crate::io::atomic::TEMP_TAG))
        .rand_bytes(6)
        .tempdir_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let lock = std::fs::File::open(work.path()).map_err(|e| Error::io(work.path(), e))?;
    let _ = lock.try_lock();
    for name in DUMP_FILES {
        let saved = dir.join(name);
        if std::fs::symlink_metadata(&saved).is_ok_and(|m| m.is_file()) {
            let copy = work.path().join(name);
            if std::fs::hard_link(&saved, &copy).is_err() {
                // Unreadable or unlinkable: the index is rebuilt.
                let _ = std::fs::copy(&saved, &copy);
            }
        }
    }
    let graph = build(work.path())?;
    let mut out = crate::io::atomic::AtomicOutputs::new(dir);
    let mut dump = [0u64; 2];
    for (name, h) in DUMP_FILES.iter().zip(&mut dump) {
        *h = file_xxh3(&work.path().join(name))?;
        out.adopt(name, &work.path().join(name))?;
    }
    drop(lock);
    work.close().map_err(|e| Error::io(dir, e))?;
    Ok((graph, out, dump))
}

/// The largest `image` file read, in bytes, by the identical-image check
/// (streamed) and by the report's overlays (decoded).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// The `image` files of the items, when the items CSV has that column
/// (`None` for an empty cell), each resolved inside the dataset and its
/// roots ([`DatasetConfig::item_file`]).
fn image_paths(cfg: &DatasetConfig, manifest: &Manifest) -> Result<Option<Vec<Option<PathBuf>>>> {
    use rayon::prelude::*;
    let Some(col) = manifest.column("image") else {
        return Ok(None);
    };
    (0..manifest.len())
        .into_par_iter()
        .map(|i| {
            let cell = manifest.rows.cell(i, col).trim();
            if cell.is_empty() {
                return Ok(None);
            }
            cfg.item_file(&manifest.ids[i], "image", cell).map(Some)
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Open an `image` file for reading: a regular file
/// ([`crate::fsx::open_input`]) of at most [`MAX_IMAGE_BYTES`]; returns
/// it with its length.
pub fn open_image(path: &Path) -> Result<(std::fs::File, u64)> {
    let f = crate::fsx::open_input(path).map_err(|e| match e {
        Error::Io { source, .. } => Error::input(path, format!("cannot open the image: {source}")),
        e => e,
    })?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_IMAGE_BYTES {
        return Err(Error::input(
            path,
            format!(
                "the image is {len} bytes, over the limit of {MAX_IMAGE_BYTES} bytes \
                 (docs/threat-model.md)"
            ),
        ));
    }
    Ok((f, len))
}

/// Every named `image` file lies inside the dataset or its roots and can
/// be opened as a regular file of at most [`MAX_IMAGE_BYTES`]; the error
/// names the file, the item and the field. Run on every run's items before
/// the first batch (the overlays draw the images, the neighbour stage
/// hashes them).
pub fn check_images(cfg: &DatasetConfig, manifest: &Manifest) -> Result<()> {
    use rayon::prelude::*;
    let Some(paths) = image_paths(cfg, manifest)? else {
        return Ok(());
    };
    paths.par_iter().enumerate().try_for_each(|(i, p)| match p {
        Some(p) => open_image(p)
            .map(drop)
            .map_err(|e| e.item(&manifest.ids[i]).field("image")),
        None => Ok(()),
    })
}

/// Without embeddings: the items whose `image` files are identical, as
/// near-duplicate pairs at distance 0 found by `image_hash` (no conflict
/// is judged), for the `leakage` check; `None` without an `image` column.
/// The files are hashed as [`apply`] hashes them (an unreadable one is an
/// error naming it).
pub fn identical_images(
    cfg: &DatasetConfig,
    manifest: &Manifest,
) -> Result<Option<Vec<super::DupPair>>> {
    let Some(paths) = image_paths(cfg, manifest)? else {
        return Ok(None);
    };
    Ok(Some(
        identical_files(&paths)?
            .into_iter()
            .map(|(a, b)| super::DupPair {
                a,
                b,
                distance: 0.0,
                found_by: "image_hash",
                conflict: false,
                mask_iou: None,
            })
            .collect(),
    ))
}

/// Identical items by file content of the `image` column, when present.
fn image_pairs(cfg: &DatasetConfig, manifest: &Manifest) -> Result<Vec<(usize, usize)>> {
    match image_paths(cfg, manifest)? {
        Some(paths) => identical_files(&paths),
        None => Ok(Vec::new()),
    }
}

/// Pairs `(a, b)`, `a < b`, of files with identical bytes (`None` pairs
/// with nothing). One streamed hash per file (its bytes and length), in
/// parallel; only files whose hashes collide are compared, again streamed.
/// Memory is a few bytes per item, not the files. A file that cannot be
/// read, is not a regular file or is over [`MAX_IMAGE_BYTES`] is an error
/// naming it.
fn identical_files(paths: &[Option<PathBuf>]) -> Result<Vec<(usize, usize)>> {
    use rayon::prelude::*;
    let hashes: Vec<Option<u64>> = paths
        .par_iter()
        .map(|p| p.as_deref().map(hash_file).transpose())
        .collect::<Result<_>>()?;
    let failed = std::sync::Mutex::new(None);
    let pairs = identical_pairs_by(&hashes, |a, b| match (&paths[a], &paths[b]) {
        (Some(x), Some(y)) => same_file_bytes(x, y).unwrap_or_else(|e| {
            if let Ok(mut f) = failed.lock() {
                f.get_or_insert(e);
            }
            false
        }),
        _ => false,
    });
    match failed.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(pairs),
    }
}

/// A hash of the file's bytes and length, read in 64 KiB pieces, never
/// more than the length the file had when opened.
fn hash_file(path: &Path) -> Result<u64> {
    use std::hash::Hasher;
    use std::io::Read;
    let (f, len) = open_image(path)?;
    let mut f = f.take(len);
    let mut h = std::hash::DefaultHasher::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut read = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
        read += n as u64;
    }
    h.write_u64(read);
    Ok(h.finish())
}

/// Whether two files hold the same bytes, read side by side in pieces.
fn same_file_bytes(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let ((fa, la), (fb, lb)) = (open_image(a)?, open_image(b)?);
    if la != lb {
        return Ok(false);
    }
    let (mut fa, mut fb) = (fa.take(la), fb.take(lb));
    let (mut x, mut y) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = fa.read(&mut x).map_err(|e| Error::io(a, e))?;
        if n == 0 {
            return Ok(fb.read(&mut y[..1]).map_err(|e| Error::io(b, e))? == 0);
        }
        fb.read_exact(&mut y[..n]).map_err(|e| Error::io(b, e))?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// What the stage found, and what the report says about it.
pub struct NeighborSummary {
    pub result: NeighborResult,
    /// `report.json` `duplicates`.
    pub duplicates: schema::Duplicates,
}

fn label_text(cfg: &DatasetConfig, it: &ItemResult) -> String {
    it.label_set()
        .iter()
        .map(|&k| cfg.class_names[k as usize].as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// The check of the stage's input that needs no score (the embeddings'
/// header against the items), run before the scoring pass; the `image`
/// files are checked for every run ([`check_images`]), its options with
/// the run's ([`NeighborOptions::validate`]).
pub fn check(cfg: &DatasetConfig, manifest: &Manifest, path: &Path) -> Result<()> {
    Embeddings::check_array(crate::io::inputs::open(cfg, path)?, &manifest.ids).map(|_| ())
}

impl NeighborOptions {
    /// `--knn-k` is in `1..=`[`super::MAX_K`], a relative threshold is
    /// positive, an absolute one a cosine distance in [0, 2],
    /// `--conflict-iou` in [0, 1].
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::Usage("--knn-k must be at least 1".into()));
        }
        super::check_k(self.k)?;
        match self.threshold {
            Threshold::Relative(f) if !(f.is_finite() && f > 0.0) => {
                return Err(Error::Usage(format!("--dup-relative must be > 0, got {f}")));
            }
            Threshold::Absolute(d) if !(0.0..=2.0).contains(&d) => {
                return Err(Error::Usage(format!(
                    "--dup-threshold is a cosine distance in [0, 2], got {d}"
                )));
            }
            _ => {}
        }
        if !(0.0..=1.0).contains(&self.conflict_iou) {
            return Err(Error::Usage(format!(
                "--conflict-iou must be in [0, 1], got {}",
                self.conflict_iou
            )));
        }
        Ok(())
    }
}

/// Run the stage on `items` (in items order) and update them.
pub fn apply(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    items: &mut [ItemResult],
    path: &Path,
    o: &NeighborOptions,
    backend: &dyn Backend,
) -> Result<NeighborSummary> {
    o.validate()?;
    let emb = Embeddings::load_array(crate::io::inputs::open(cfg, path)?, &manifest.ids)?;
    super::graph_len(emb.n, o.k)?;
    let (mut graph, ivf) = build_graph(&emb, &manifest.ids, o, backend)?;
    super::without_null(&mut graph, &emb);
    // Rows hashed and compared as bytes in place (no copy of the matrix);
    // the null rows (zeroed) are no one's twin.
    let row_bytes = |i: usize| bytemuck::cast_slice::<f32, u8>(emb.row(i));
    let emb_hashes: Vec<Option<u64>> = (0..emb.n)
        .map(|i| (!emb.is_null(i)).then(|| hash_bytes(row_bytes(i))))
        .collect();
    let mut extra: Vec<(usize, usize, &'static str)> =
        identical_pairs_by(&emb_hashes, |a, b| row_bytes(a) == row_bytes(b))
            .into_iter()
            .map(|(a, b)| (a, b, "embedding_hash"))
            .collect();
    extra.extend(
        image_pairs(cfg, manifest)?
            .into_iter()
            .map(|(a, b)| (a, b, "image_hash")),
    );
    let result = {
        let oracle = Oracle {
            cfg,
            manifest,
            items,
            conflict_iou: o.conflict_iou,
            backend,
        };
        analyse(&emb, graph, o.threshold, &extra, &oracle)?
    };
    // Fold into the items.
    let labels: Vec<String> = items.iter().map(|it| label_text(cfg, it)).collect();
    for p in &result.pairs {
        for (me, other) in [(p.a, p.b), (p.b, p.a)] {
            items[me].extra_mut().neighbors.push(NeighborRef {
                index: other,
                distance: p.distance,
                label: labels[other].clone(),
                conflict: p.conflict,
            });
        }
    }
    for (i, it) in items.iter_mut().enumerate() {
        it.cluster = result.cluster_of[i];
        if it.unlabelled {
            // Both compare labels.
            continue;
        }
        let dc = result.dup_conflict[i];
        let kd = result.knn_disagreement[i];
        it.scores.set(Score::DupConflict, Some(dc));
        it.scores.set(Score::KnnDisagreement, Some(kd));
    }
    let conflicting_clusters = result
        .clusters
        .iter()
        .filter(|c| c.members.iter().any(|&m| result.dup_conflict[m] > 0.0))
        .count();
    let by = |m: &str| result.pairs.iter().filter(|p| p.found_by == m).count();
    let duplicates = schema::Duplicates {
        method: result.graph.method.to_string(),
        index: o.index_dir.as_ref().map(|d| schema::SavedIndex {
            dir: d.display().to_string(),
            loaded: result.graph.loaded,
            inserted: emb.n - result.graph.loaded,
        }),
        k: result.graph.k,
        distance: "cosine, 1 - cos(u, v) on L2-normalised embeddings".into(),
        rule: match result.rule {
            Threshold::Absolute(v) => schema::ThresholdRule::Absolute {
                absolute: f64::from(v),
            },
            Threshold::Relative(f) => schema::ThresholdRule::Relative {
                relative: f64::from(f),
                of: "median nearest-neighbour distance".into(),
            },
        },
        threshold: f64::from(result.threshold),
        median_nn_distance: f64::from(result.median_nn),
        pairs: result.pairs.len(),
        conflicting_pairs: result.pairs.iter().filter(|p| p.conflict).count(),
        pairs_by_method: schema::PairsByMethod {
            knn: by("knn"),
            embedding_hash: by("embedding_hash"),
            image_hash: by("image_hash"),
        },
        clusters: result.clusters.len(),
        conflicting_clusters,
        cluster_rule: "every member within the threshold of the cluster centre".into(),
        cluster_diameter_bound: f64::from(super::diameter_bound(result.threshold)),
        priority: crate::priority::CONFLICT_RAISE.into(),
        ivf,
    };
    Ok(NeighborSummary { result, duplicates })
}

/// What the conflict raise of `it` needs (after [`apply`]): the row of its
/// closest conflicting near-duplicate (ties to the lower row) and its
/// `dup_conflict`; `None` for an item without one, or unlabelled.
pub fn conflict(it: &ItemResult) -> Option<(usize, f64)> {
    if it.unlabelled {
        return None;
    }
    let partner = it
        .neighbors()
        .iter()
        .filter(|n| n.conflict)
        .min_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then(a.index.cmp(&b.index))
        })?;
    Some((partner.index, it.scores.get(Score::DupConflict)?))
}

/// `clusters.jsonl` rows, of the labelled `items` and the `unlabelled`
/// ones (listed with an empty label, counted in no majority).
pub fn cluster_rows(
    cfg: &DatasetConfig,
    manifest: &Manifest,
    items: &[ItemResult],
    unlabelled: &[ItemResult],
    r: &NeighborResult,
) -> Vec<schema::ClusterRow> {
    let by_index: std::collections::HashMap<usize, &ItemResult> = items
        .iter()
        .chain(unlabelled)
        .map(|it| (it.index, it))
        .collect();
    r.clusters
        .iter()
        .map(|c| {
            let labels: Vec<String> = c
                .members
                .iter()
                .map(|m| label_text(cfg, by_index[m]))
                .collect();
            // Unlabelled members (label "") are listed but not counted.
            let labelled = c.members.iter().filter(|m| !by_index[m].unlabelled);
            let n_labelled = labelled.count();
            let mut counts: Vec<(String, usize)> = Vec::new();
            for (l, m) in labels.iter().zip(&c.members) {
                if by_index[m].unlabelled {
                    continue;
                }
                match counts.iter_mut().find(|(x, _)| x == l) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((l.clone(), 1)),
                }
            }
            // Majority: most members; ties go to the label seen first (the centre's).
            let (majority, top) = counts.iter().fold((String::new(), 0), |acc, (l, n)| {
                if *n > acc.1 { (l.clone(), *n) } else { acc }
            });
            let conflict = c.members.iter().any(|&m| r.dup_conflict[m] > 0.0);
            schema::ClusterRow {
                cluster: c.id,
                members: c
                    .members
                    .iter()
                    .zip(&labels)
                    .map(|(&m, l)| schema::ClusterMember {
                        id: manifest.ids[m].to_string(),
                        label: l.clone(),
                    })
                    .collect(),
                centre: manifest.ids[c.centre].to_string(),
                majority_label: majority,
                conflict,
                conflict_fraction: match n_labelled {
                    0 => 0.0,
                    n => 1.0 - top as f64 / n as f64,
                },
                max_distance: f64::from(c.max_distance),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_files_are_paired_by_content_only() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut other = big.clone();
        other[150_000] ^= 1; // same length, one byte differs past the first piece
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            Some(p)
        };
        let paths = vec![
            write("a.png", &big),
            write("b.png", &other),
            None,
            write("c.png", &big),
            Some(dir.path().join("missing.png")),
            write("d.png", &big[..199_999]),
            write("e.png", &big),
            write("f.png", b""),
            write("g.png", b""),
        ];
        let missing = paths
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| !p.exists()));
        let mut found: Vec<Option<PathBuf>> = paths.clone();
        found[missing.unwrap()] = None;
        assert_eq!(
            identical_files(&found).unwrap(),
            vec![(0, 3), (0, 6), (3, 6), (7, 8)]
        );
        // A file that cannot be read is an error naming it.
        let err = identical_files(&paths).unwrap_err().to_string();
        assert!(err.contains("missing.png"), "{err}");
    }
}
