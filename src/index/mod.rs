//! The k-nearest-neighbour graph, built once per run and shared by every
//! neighbour-based check.
//!
//! * **Exact** (N ≤ [`EXACT_MAX`] by default): blocked brute force with a
//!   vectorised dot product, rayon over query blocks. It is also the recall
//!   oracle in tests.
//! * **IVF** ([`ivf`], N > [`EXACT_MAX`] by default): k-means cells with
//!   spill, each cell joined by the exact kernel, candidates re-scored
//!   exactly, recall checked against brute force on a sample in the run.
//! * **HNSW** (`hnsw_rs`, `DistL2` on unit vectors, where L2² = 2·(1 − cos);
//!   `--knn hnsw`, and `auto` with `--index`, the one saved index):
//!   candidates from the index, widened by one round of neighbours of
//!   neighbours (a point close to many others, such as a cluster centre,
//!   hid about 2/3 of planted near-duplicate pairs from a plain search, and
//!   neither a larger `ef` nor keeping pruned links helped), then every
//!   candidate is re-scored exactly. Distances in the graph are always exact
//!   cosine distances.
//!
//! Ties are broken by the lower item index, so the graph is deterministic
//! given the candidates.

use std::path::Path;

use hnsw_rs::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::io::embeddings::{Embeddings, cosine_distance};

mod ivf;
pub use ivf::{IvfParams, SPILL, ivf};

/// Whether the AVX2 + FMA kernels can run here.
#[cfg(target_arch = "x86_64")]
fn simd_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Largest N for which `auto` uses the exact path: above it the IVF
/// self-join is 4× faster and more (20 000 × 128: 0.46 s against 1.9 s;
/// 100 000 × 128: 3.3 s against 41 s, both at recall 1.0 on clustered
/// data; BENCHMARKS.md), and its recall is checked in the run.
pub const EXACT_MAX: usize = 20_000;

/// How the graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KnnMethod {
    /// Exact up to `EXACT_MAX` items, IVF beyond (HNSW with `--index`).
    #[default]
    Auto,
    /// Brute force.
    Exact,
    /// `hnsw_rs` plus exact re-checks (the one index `--index` saves).
    Hnsw,
    /// An inverted-file self-join on the exact kernel, re-scored exactly.
    Ivf,
}

/// `k` neighbours per item, nearest first: `ids[i*k..]`, `dist[i*k..]`.
/// Items with fewer than `k` others hold `u32::MAX` / `f32::INFINITY` padding.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    pub k: usize,
    pub ids: Vec<u32>,
    pub dist: Vec<f32>,
    /// `exact`, `hnsw` or `ivf` (`exact-gpu` on the GPU backend).
    pub method: &'static str,
    /// Items that came from a saved index instead of being inserted.
    pub loaded: usize,
}

impl KnnGraph {
    /// Neighbours of `i`: `(index, distance)`, nearest first, padding skipped.
    pub fn neighbours(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.ids[i * self.k..(i + 1) * self.k]
            .iter()
            .zip(&self.dist[i * self.k..(i + 1) * self.k])
            .filter(|(j, _)| **j != u32::MAX)
            .map(|(&j, &d)| (j as usize, d))
    }
}

/// A bounded, sorted top-k list (ascending by `(distance, index)`).
struct TopK {
    k: usize,
    items: Vec<(f32, u32)>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    #[inline]
    fn push(&mut self, d: f32, j: u32) {
        if self.items.len() == self.k {
            let worst = self.items[self.k - 1];
            if (d, j) >= worst {
                return;
            }
        }
        let pos = self.items.partition_point(|&x| x < (d, j));
        if self.items.get(pos) == Some(&(d, j)) {
            return; // already present
        }
        self.items.insert(pos, (d, j));
        self.items.truncate(self.k);
    }
}

fn finish(k: usize, lists: Vec<TopK>, method: &'static str) -> KnnGraph {
    let mut ids = Vec::with_capacity(lists.len() * k);
    let mut dist = Vec::with_capacity(lists.len() * k);
    for l in lists {
        for m in 0..k {
            match l.items.get(m) {
                Some(&(d, j)) => {
                    ids.push(j);
                    dist.push(d);
                }
                None => {
                    ids.push(u32::MAX);
                    dist.push(f32::INFINITY);
                }
            }
        }
    }
    KnnGraph {
        k,
        ids,
        dist,
        method,
        loaded: 0,
    }
}

/// The graph from per-item candidate lists (any order, duplicates allowed):
/// every candidate is re-scored with [`cosine_distance`] and the `k` best
/// kept. The GPU backend's exact path ends here, so its distances are the CPU
/// reference's bit for bit.
pub fn from_candidates(
    emb: &Embeddings,
    k: usize,
    candidates: &[Vec<u32>],
    method: &'static str,
) -> KnnGraph {
    let lists: Vec<TopK> = candidates
        .par_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut top = TopK::new(k);
            let q = emb.row(i);
            for &j in c {
                if j as usize != i && (j as usize) < emb.n {
                    top.push(cosine_distance(q, emb.row(j as usize)), j);
                }
            }
            top
        })
        .collect();
    finish(k, lists, method)
}

/// Candidates kept beyond `k` by the SIMD pass before the exact re-score, so
/// that its FMA rounding cannot push a true neighbour out.
const SIMD_MARGIN: usize = 8;

/// Exact kNN by blocked brute force: the CPU reference of the graph.
///
/// On x86-64 with AVX2 and FMA (detected at run time) a register-blocked
/// kernel computes 4 × 2 dot products at a time and keeps `k + 8`
/// candidates per item, which are then re-scored with [`cosine_distance`]
/// ([`from_candidates`]); the result equals [`exact_reference`] (tested) but
/// runs several times faster. Elsewhere it is [`exact_reference`].
pub fn exact(emb: &Embeddings, k: usize) -> KnnGraph {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        let kk = (k + SIMD_MARGIN).min(emb.n.saturating_sub(1));
        let candidates = simd::candidates(emb, kk);
        return from_candidates(emb, k, &candidates, "exact");
    }
    exact_reference(emb, k)
}

/// Exact kNN, one [`cosine_distance`] per ordered pair: the definition the
/// faster paths are tested against.
pub fn exact_reference(emb: &Embeddings, k: usize) -> KnnGraph {
    const QB: usize = 32;
    const CB: usize = 512;
    let n = emb.n;
    let lists: Vec<TopK> = (0..n)
        .step_by(QB)
        .collect::<Vec<_>>()
        .into_par_iter()
        .flat_map_iter(|q0| {
            let q1 = (q0 + QB).min(n);
            let mut tops: Vec<TopK> = (q0..q1).map(|_| TopK::new(k)).collect();
            for c0 in (0..n).step_by(CB) {
                let c1 = (c0 + CB).min(n);
                for (qi, top) in (q0..q1).zip(tops.iter_mut()) {
                    let q = emb.row(qi);
                    for j in c0..c1 {
                        if j != qi {
                            top.push(cosine_distance(q, emb.row(j)), j as u32);
                        }
                    }
                }
            }
            tops
        })
        .collect();
    finish(k, lists, "exact")
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! AVX2 + FMA brute force: 4 query rows × 2 candidate rows per kernel
    //! call (8 accumulators, 6 loads per 8 dimensions), query blocks of 64
    //! rows in parallel, candidate blocks of ~128 KiB so they stay in cache,
    //! each unordered pair computed once.

    use std::arch::x86_64::*;

    use super::{Embeddings, TopK};
    use rayon::prelude::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Dot products of 4 query rows with 2 candidate rows, all of length `d`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot4x2(q: [&[f32]; 4], c: [&[f32]; 2], d: usize) -> [[f32; 2]; 4] {
        let chunks = d / 8;
        let mut a = [[_mm256_setzero_ps(); 2]; 4];
        for t in 0..chunks {
            let o = t * 8;
            // SAFETY: o + 8 <= d and every row holds d values.
            unsafe {
                let c0 = _mm256_loadu_ps(c[0].as_ptr().add(o));
                let c1 = _mm256_loadu_ps(c[1].as_ptr().add(o));
                for r in 0..4 {
                    let qv = _mm256_loadu_ps(q[r].as_ptr().add(o));
                    a[r][0] = _mm256_fmadd_ps(qv, c0, a[r][0]);
                    a[r][1] = _mm256_fmadd_ps(qv, c1, a[r][1]);
                }
            }
        }
        let mut out = [[0f32; 2]; 4];
        for r in 0..4 {
            for s in 0..2 {
                let mut v = hsum(a[r][s]);
                for o in chunks * 8..d {
                    v += q[r][o] * c[s][o];
                }
                out[r][s] = v;
            }
        }
        out
    }

    /// The `kk` best candidates of every row (unordered lists).
    pub fn candidates(emb: &Embeddings, kk: usize) -> Vec<Vec<u32>> {
        const QB: usize = 64;
        let (n, d) = (emb.n, emb.d);
        let cb = ((32 * 1024) / d.max(1)).clamp(16, 1024) & !1;
        let blocks = n.div_ceil(QB);
        // The distance is symmetric, so each unordered pair is computed once
        // (block I against rows from I's first row on) and offered to both
        // rows' lists. Workers take interleaved blocks (equal triangular
        // work) and keep one list per row of the dataset; the lists are
        // merged at the end, so memory is workers × N × kk entries.
        let workers = (2 * rayon::current_num_threads()).clamp(1, blocks.max(1));
        let partial: Vec<Vec<TopK>> = (0..workers)
            .into_par_iter()
            .map(|w| {
                let mut tops: Vec<TopK> = (0..n).map(|_| TopK::new(kk)).collect();
                for b in (w..blocks).step_by(workers) {
                    let (q0, q1) = (b * QB, (b * QB + QB).min(n));
                    for c0 in (q0..n).step_by(cb) {
                        let c1 = (c0 + cb).min(n);
                        for g in (q0..q1).step_by(4) {
                            let qi = [g, g + 1, g + 2, g + 3].map(|i| i.min(q1 - 1));
                            let qrows = qi.map(|i| emb.row(i));
                            for j in (c0.max(g + 1)..c1).step_by(2) {
                                let cj = [j, (j + 1).min(c1 - 1)];
                                // SAFETY: `candidates` is only called after
                                // AVX2 and FMA were detected.
                                let dots = unsafe { dot4x2(qrows, cj.map(|c| emb.row(c)), d) };
                                for (r, row) in dots.iter().enumerate() {
                                    let i = g + r;
                                    if i >= q1 {
                                        break;
                                    }
                                    for (s, dot) in row.iter().enumerate() {
                                        let c = j + s;
                                        if c < c1 && c > i {
                                            let dist = 1.0 - dot;
                                            tops[i].push(dist, c as u32);
                                            tops[c].push(dist, i as u32);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                tops
            })
            .collect();
        (0..n)
            .into_par_iter()
            .map(|i| {
                let mut top = TopK::new(kk);
                for p in &partial {
                    for &(dist, j) in &p[i].items {
                        top.push(dist, j);
                    }
                }
                top.items.into_iter().map(|(_, j)| j).collect()
            })
            .collect()
    }
}

/// HNSW parameters.
const MAX_CONN: usize = 24;
const EF_CONSTRUCTION: usize = 200;
/// hnsw_rs's `file_dump` (the saved index of `--index`) fails unless the
/// index has exactly 16 layers.
const MAX_LAYER: usize = 16;
const INDEX_BASE: &str = "triage";

/// Approximate kNN with `hnsw_rs`, re-checked exactly. With `index_dir`, an
/// index saved there by an earlier run over `known` leading items is loaded
/// and only the items after them are inserted; the updated index is saved
/// back. `deterministic` inserts serially.
pub fn hnsw(
    emb: &Embeddings,
    k: usize,
    index_dir: Option<(&Path, usize)>,
    deterministic: bool,
) -> Result<KnnGraph> {
    let n = emb.n;
    let build_fresh = || {
        let h = Hnsw::<f32, DistL2>::new(MAX_CONN, n.max(1), MAX_LAYER, EF_CONSTRUCTION, DistL2 {});
        insert(&h, emb, 0, deterministic);
        h
    };
    let ef = (4 * k).max(64);
    let search = |h: &Hnsw<f32, DistL2>| -> Vec<Vec<usize>> {
        (0..n)
            .into_par_iter()
            .map(|i| {
                h.search(emb.row(i), k + 1, ef)
                    .into_iter()
                    .map(|nb| nb.d_id)
                    .filter(|&j| j != i && j < n)
                    .collect()
            })
            .collect()
    };
    let mut loaded_items = 0;
    let candidates = match index_dir {
        Some((dir, known)) if known > 0 && known <= n => {
            // The caller loads only a dump whose files still hash to what
            // its manifest recorded, so damage never reaches hnsw_rs's
            // reader; a forged dump may still make that reader (or the
            // graph it built) panic, which is caught here: the index is
            // rebuilt, as for a dump that does not load.
            let reused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut io = hnsw_rs::hnswio::HnswIo::new(dir, INDEX_BASE);
                let loaded: std::result::Result<Hnsw<f32, DistL2>, _> = io.load_hnsw();
                match loaded {
                    Ok(h) if h.get_nb_point() == known => {
                        insert(&h, emb, known, deterministic);
                        Some(save(&h, dir).map(|()| search(&h)))
                    }
                    _ => None,
                }
            }));
            match reused {
                Ok(Some(candidates)) => {
                    loaded_items = known;
                    candidates?
                }
                // Unreadable, inconsistent with its manifest, or its reader
                // panicked: rebuild.
                other => {
                    if other.is_err() {
                        eprintln!(
                            "triage: {}: the saved index could not be read; rebuilding it",
                            dir.display()
                        );
                    }
                    let h = build_fresh();
                    save(&h, dir)?;
                    search(&h)
                }
            }
        }
        Some((dir, _)) => {
            let h = build_fresh();
            save(&h, dir)?;
            search(&h)
        }
        None => search(&build_fresh()),
    };
    // Widen with neighbours of neighbours and the reverse edges, then rank
    // every candidate exactly.
    let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, c) in candidates.iter().enumerate() {
        for &j in c {
            reverse[j].push(i);
        }
    }
    let lists: Vec<TopK> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut top = TopK::new(k);
            let q = emb.row(i);
            let mut consider = |j: usize| {
                if j != i {
                    top.push(cosine_distance(q, emb.row(j)), j as u32);
                }
            };
            for &j in candidates[i].iter().chain(&reverse[i]) {
                consider(j);
                for &m in &candidates[j] {
                    consider(m);
                }
            }
            top
        })
        .collect();
    let mut g = finish(k, lists, "hnsw");
    g.loaded = loaded_items;
    Ok(g)
}

fn insert(h: &Hnsw<f32, DistL2>, emb: &Embeddings, from: usize, deterministic: bool) {
    if deterministic {
        for i in from..emb.n {
            h.insert_slice((emb.row(i), i));
        }
    } else {
        let data: Vec<(&[f32], usize)> = (from..emb.n).map(|i| (emb.row(i), i)).collect();
        h.parallel_insert_slice(&data);
    }
}

fn save(h: &Hnsw<f32, DistL2>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // hnsw_rs never overwrites a dump (it picks a new name), so clear ours.
    for ext in ["hnsw.graph", "hnsw.data"] {
        let p = dir.join(format!("{INDEX_BASE}.{ext}"));
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    let base = h
        .file_dump(dir, INDEX_BASE)
        .map_err(|e| Error::io(dir, std::io::Error::other(e.to_string())))?;
    if base != INDEX_BASE {
        return Err(Error::io(
            dir,
            std::io::Error::other(format!("hnsw_rs wrote {base} instead of {INDEX_BASE}")),
        ));
    }
    Ok(())
}

/// Mean fraction of the exact k nearest neighbours that `approx` found.
pub fn recall(approx: &KnnGraph, exact: &KnnGraph) -> f64 {
    let n = exact.ids.len() / exact.k.max(1);
    let mut hit = 0usize;
    let mut total = 0usize;
    for i in 0..n {
        let a: std::collections::HashSet<usize> = approx.neighbours(i).map(|(j, _)| j).collect();
        for (j, _) in exact.neighbours(i) {
            total += 1;
            hit += usize::from(a.contains(&j));
        }
    }
    if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(rows: &[[f32; 2]]) -> Embeddings {
        let ids = crate::io::manifest::Ids::numbered(rows.len());
        Embeddings::from_rows(
            Path::new("e"),
            rows.iter().flatten().copied().collect(),
            rows.len(),
            2,
            &ids,
        )
        .unwrap()
    }

    #[test]
    fn exact_hand_worked() {
        // Angles 0°, 10°, 90°, 180°: nearest of 0 is 1 (1 − cos 10°), then 2.
        let r = |deg: f32| [deg.to_radians().cos(), deg.to_radians().sin()];
        let e = emb(&[r(0.0), r(10.0), r(90.0), r(180.0)]);
        let g = exact(&e, 2);
        let n0: Vec<(usize, f32)> = g.neighbours(0).collect();
        assert_eq!(n0[0].0, 1);
        assert!((n0[0].1 - (1.0 - 10f32.to_radians().cos())).abs() < 1e-6);
        assert_eq!(n0[1].0, 2);
        let n3: Vec<usize> = g.neighbours(3).map(|(j, _)| j).collect();
        assert_eq!(n3, vec![2, 1], "180° is closest to 90°, then 10°");
    }

    /// The SIMD path (when the CPU has AVX2 + FMA) equals the one-pair-at-a-time
    /// definition: random rows with a dimension that is not a multiple of 8,
    /// odd N, and exact duplicate rows (ties to the lower index).
    #[test]
    fn exact_equals_the_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (n, d) in [(301usize, 37usize), (130, 8), (7, 3), (257, 64)] {
            let mut raw: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            // Rows 1 and 2 duplicate row 0.
            for r in 1..3.min(n) {
                let (a, b) = raw.split_at_mut(r * d);
                b[..d].copy_from_slice(&a[..d]);
            }
            let ids = crate::io::manifest::Ids::numbered(n);
            let e = Embeddings::from_rows(Path::new("e"), raw, n, d, &ids).unwrap();
            for k in [1, 10] {
                let want = exact_reference(&e, k);
                let got = exact(&e, k);
                assert_eq!(got.ids, want.ids, "n={n} d={d} k={k}");
                assert_eq!(got.dist, want.dist, "n={n} d={d} k={k}");
            }
        }
    }

    #[test]
    fn fewer_items_than_k_are_padded() {
        let e = emb(&[[1.0, 0.0], [0.0, 1.0]]);
        let g = exact(&e, 3);
        assert_eq!(g.neighbours(0).count(), 1);
    }
}
