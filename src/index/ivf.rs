//! An inverted-file (IVF) self-join for the kNN graph at large N, built on
//! the exact path's dot-product kernel.
//!
//! 1. **Coarse centroids**: spherical k-means (unit centroids, nearest by
//!    dot product) with `lists` centroids, trained for `iters` rounds on a
//!    fixed sample of `train` items (every `n/train`-th item), started from
//!    evenly spaced sample items. Deterministic: every step is a function of
//!    the data, independent of the thread count.
//! 2. **Assignment with spill**: every item joins the lists of its `spill`
//!    nearest centroids; its first is its *home* list.
//! 3. **Join**: for every list, every home item is compared with every item
//!    in the list (spilled ones included) by the blocked 4 × 2 dot-product
//!    kernel of [`super::exact`], keeping `k + 8` candidates, which are
//!    re-scored with [`cosine_distance`] ([`super::from_candidates`]'s rule):
//!    distances in the graph are exact, ties go to the lower index, and only
//!    the candidate set is approximate.
//!
//! An item near the border of two cells sits in both lists (the spill), so
//! its neighbours across the border are found from either side. The work
//! is `N · spill · N/lists · D` multiply-adds for the join plus
//! `N · lists · D` for the assignment, against `N² · D / 2` for the exact
//! graph; recall against the exact graph is measured in `benches/knn.rs`
//! and tested in `tests/reference/neighbors.rs`.

use rayon::prelude::*;

use super::{KnnGraph, SIMD_MARGIN, TopK, finish};
use crate::io::embeddings::{Embeddings, cosine_distance};

/// The index's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IvfParams {
    /// Coarse centroids.
    pub lists: usize,
    /// Lists each item joins (its nearest centroids).
    pub spill: usize,
    /// Items the centroids are trained on.
    pub train: usize,
    /// k-means rounds.
    pub iters: usize,
    /// The recall@k the check asks for on its sample (0.995 by default:
    /// above 0.99 by about two of the sample's standard errors, so that the
    /// whole graph's is at least 0.99), and the most rounds of [`refine`]
    /// it may add to reach it.
    pub recall_target: f64,
    pub max_refine: usize,
}

impl IvfParams {
    /// The defaults for `n` items: each item in [`SPILL`] lists, and
    /// `lists = √(SPILL · n)`, which balances the assignment's
    /// `n · lists` dot products against the join's `n · SPILL · n/lists`;
    /// 32 training items per centroid, 10 rounds (chosen by measurement,
    /// `benches/knn.rs`).
    pub fn for_size(n: usize) -> IvfParams {
        let lists = ((SPILL * n) as f64).sqrt().round().clamp(1.0, 65536.0) as usize;
        IvfParams {
            lists,
            spill: SPILL.min(lists),
            train: (lists * 32).clamp(lists, n.max(1)),
            iters: 10,
            recall_target: 0.995,
            max_refine: 2,
        }
    }
}

/// Lists per item (the default spill).
pub const SPILL: usize = 3;

/// Dot product of two rows (the reference order: one accumulator).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The `s` centroids of largest dot product with each of `rows`, best
/// first (ties to the lower centroid), for every row.
fn nearest_centroids(
    emb: &Embeddings,
    rows: &[usize],
    cent: &[f32],
    lists: usize,
    s: usize,
) -> Vec<u32> {
    let d = emb.d;
    let mut out = vec![0u32; rows.len() * s];
    out.par_chunks_mut(s * 64)
        .enumerate()
        .for_each(|(b, chunk)| {
            let r0 = b * 64;
            let nr = chunk.len() / s;
            // (dot, centroid) best first, per row of the block.
            let mut best: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(s + 1); nr];
            let mut offer = |r: usize, v: f32, c: u32| {
                let l = &mut best[r];
                if l.len() == s && v.partial_cmp(&l[s - 1].0) != Some(std::cmp::Ordering::Greater) {
                    return;
                }
                let pos = l.partition_point(|&(x, y)| x > v || (x == v && y < c));
                l.insert(pos, (v, c));
                l.truncate(s);
            };
            #[cfg(target_arch = "x86_64")]
            let simd = super::simd_available();
            #[cfg(not(target_arch = "x86_64"))]
            let simd = false;
            if simd {
                #[cfg(target_arch = "x86_64")]
                for g in (0..nr).step_by(4) {
                    let q = [g, g + 1, g + 2, g + 3].map(|r| emb.row(rows[r0 + r.min(nr - 1)]));
                    for c in (0..lists).step_by(2) {
                        let c1 = (c + 1).min(lists - 1);
                        let cs = [&cent[c * d..(c + 1) * d], &cent[c1 * d..(c1 + 1) * d]];
                        // SAFETY: AVX2 and FMA were detected.
                        let v = unsafe { super::simd::dot4x2(q, cs, d) };
                        for (r, row) in v.iter().enumerate().take(nr - g) {
                            offer(g + r, row[0], c as u32);
                            if c1 != c {
                                offer(g + r, row[1], c1 as u32);
                            }
                        }
                    }
                }
            } else {
                for r in 0..nr {
                    for c in 0..lists {
                        let v = dot(emb.row(rows[r0 + r]), &cent[c * d..(c + 1) * d]);
                        offer(r, v, c as u32);
                    }
                }
            }
            for (r, l) in best.iter().enumerate() {
                for (t, &(_, c)) in l.iter().enumerate() {
                    chunk[r * s + t] = c;
                }
            }
        });
    out
}

/// Spherical k-means centroids (`lists × d`, unit rows).
fn train(emb: &Embeddings, p: &IvfParams) -> Vec<f32> {
    let (n, d, lists) = (emb.n, emb.d, p.lists);
    let t = p.train.clamp(lists, n);
    let sample: Vec<usize> = (0..t).map(|i| i * n / t).collect();
    let mut cent = vec![0f32; lists * d];
    for c in 0..lists {
        let r = emb.row(sample[c * t / lists]);
        cent[c * d..(c + 1) * d].copy_from_slice(r);
    }
    for _ in 0..p.iters {
        let label = nearest_centroids(emb, &sample, &cent, lists, 1);
        // Members of each centroid in sample order, summed per centroid.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); lists];
        for (s, &c) in label.iter().enumerate() {
            members[c as usize].push(sample[s]);
        }
        cent.par_chunks_mut(d)
            .zip(members.par_iter())
            .for_each(|(out, m)| {
                if m.is_empty() {
                    return; // an empty cell keeps its centroid
                }
                let mut sum = vec![0f64; d];
                for &i in m {
                    for (a, &x) in sum.iter_mut().zip(emb.row(i)) {
                        *a += f64::from(x);
                    }
                }
                let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm > 0.0 {
                    for (o, v) in out.iter_mut().zip(&sum) {
                        *o = (v / norm) as f32;
                    }
                }
            });
    }
    cent
}

/// The approximate kNN graph of `emb` (unit rows) by the IVF self-join; see
/// the module documentation.
///
/// The graph's recall@k is then checked on [`CHECK_SAMPLE`] items against
/// brute force; while it is under `p.recall_target`, rounds of [`refine`]
/// follow (at most `p.max_refine`). The check's figures come back with
/// the graph.
pub fn ivf(emb: &Embeddings, k: usize, p: &IvfParams) -> (KnnGraph, Check) {
    let n = emb.n;
    if n < 2 || k == 0 {
        let g = finish(k, (0..n).map(|_| TopK::new(k)).collect(), "ivf");
        return (
            g,
            Check {
                sample: 0,
                recall: 1.0,
                rounds: 0,
            },
        );
    }
    let lists = p.lists.clamp(1, n);
    let spill = p.spill.clamp(1, lists);
    let cent = train(emb, &IvfParams { lists, spill, ..*p });
    let all: Vec<usize> = (0..n).collect();
    let near = nearest_centroids(emb, &all, &cent, lists, spill);
    drop(cent);
    // CSR lists: every member (home first: they are the queries), then
    // where each list's home members end.
    let mut home: Vec<Vec<u32>> = vec![Vec::new(); lists];
    let mut spilled: Vec<Vec<u32>> = vec![Vec::new(); lists];
    for i in 0..n {
        let cs = &near[i * spill..(i + 1) * spill];
        home[cs[0] as usize].push(i as u32);
        for &c in &cs[1..] {
            spilled[c as usize].push(i as u32);
        }
    }
    drop(near);
    let kk = (k + SIMD_MARGIN).min(n - 1);
    // Largest lists first, for the load balance.
    let mut order: Vec<usize> = (0..lists).collect();
    order.sort_by_key(|&l| std::cmp::Reverse(home[l].len() * (home[l].len() + spilled[l].len())));
    let parts: Vec<Vec<(u32, TopK)>> = order
        .par_iter()
        .map(|&l| join_list(emb, &home[l], &spilled[l], k, kk))
        .collect();
    let mut lists_out: Vec<TopK> = (0..n).map(|_| TopK::new(k)).collect();
    for part in parts {
        for (i, top) in part {
            lists_out[i as usize] = top;
        }
    }
    let mut g = finish(k, lists_out, "ivf");
    let sample = check_sample(n);
    let truth = brute_force(emb, &sample, k);
    let mut check = Check {
        sample: sample.len(),
        recall: sample_recall(&g, &sample, &truth, k),
        rounds: 0,
    };
    while check.recall < p.recall_target && check.rounds < p.max_refine {
        g = refine(emb, &g);
        check.rounds += 1;
        check.recall = sample_recall(&g, &sample, &truth, k);
    }
    (g, check)
}

/// The recall check of an IVF graph (`report.json` `duplicates.ivf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// Items checked against brute force.
    pub sample: usize,
    /// Recall@k on them.
    pub recall: f64,
    /// Rounds of [`refine`] it took.
    pub rounds: usize,
}

/// Items checked against brute force: [`CHECK_SAMPLE`] rows drawn without
/// replacement (ChaCha8, a fixed seed), not evenly spaced: item order often
/// follows the classes or the source, and a stride would see few of them.
fn check_sample(n: usize) -> Vec<usize> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1f5);
    let mut s = rand::seq::index::sample(&mut rng, n, CHECK_SAMPLE.min(n)).into_vec();
    s.sort_unstable();
    s
}

/// Items of the recall check.
pub const CHECK_SAMPLE: usize = 1000;

/// The `k` nearest of each `rows` item by brute force (largest dot product
/// on unit rows, the item itself left out).
fn brute_force(emb: &Embeddings, rows: &[usize], k: usize) -> Vec<Vec<u32>> {
    let kk = (k + 1).min(emb.n);
    let near = nearest_centroids(emb, rows, &emb.data, emb.n, kk);
    rows.iter()
        .enumerate()
        .map(|(r, &i)| {
            near[r * kk..(r + 1) * kk]
                .iter()
                .copied()
                .filter(|&j| j as usize != i)
                .take(k)
                .collect()
        })
        .collect()
}

/// The share of `truth` (per sampled item) that `g` holds.
fn sample_recall(g: &KnnGraph, sample: &[usize], truth: &[Vec<u32>], k: usize) -> f64 {
    let mut hit = 0usize;
    let mut total = 0usize;
    for (&i, t) in sample.iter().zip(truth) {
        let got: Vec<usize> = g.neighbours(i).map(|(j, _)| j).collect();
        total += t.len().min(k);
        hit += t.iter().filter(|&&j| got.contains(&(j as usize))).count();
    }
    if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    }
}

/// One round of the local join of NN-descent (Dong et al., WWW 2011): every
/// item's neighbours, its reverse neighbours and their neighbours, re-scored
/// exactly, the best `k` kept. Neighbours across a cell border that both
/// sides missed are usually a neighbour's neighbour.
pub fn refine(emb: &Embeddings, g: &KnnGraph) -> KnnGraph {
    let (n, k) = (emb.n, g.k);
    let mut reverse: Vec<Vec<u32>> = vec![Vec::new(); n];
    for i in 0..n {
        for (j, _) in g.neighbours(i) {
            reverse[j].push(i as u32);
        }
    }
    let lists: Vec<TopK> = (0..n)
        .into_par_iter()
        .map(|i| {
            let q = emb.row(i);
            let mut top = TopK::new(k);
            for (j, d) in g.neighbours(i) {
                top.push(d, j as u32);
            }
            let mut consider = |m: usize| {
                if m != i {
                    top.push(cosine_distance(q, emb.row(m)), m as u32);
                }
            };
            for j in g
                .neighbours(i)
                .map(|(j, _)| j)
                .chain(reverse[i].iter().map(|&j| j as usize))
            {
                consider(j);
                for (m, _) in g.neighbours(j) {
                    consider(m);
                }
            }
            top
        })
        .collect();
    finish(k, lists, g.method)
}

/// The `k` nearest of every home item among the list's members (`home`
/// then `spilled`), re-scored exactly.
fn join_list(
    emb: &Embeddings,
    home: &[u32],
    spilled: &[u32],
    k: usize,
    kk: usize,
) -> Vec<(u32, TopK)> {
    let members: Vec<u32> = home.iter().chain(spilled).copied().collect();
    let mut tops: Vec<TopK> = home.iter().map(|_| TopK::new(kk)).collect();
    let d = emb.d;
    let row = |i: u32| emb.row(i as usize);
    #[cfg(target_arch = "x86_64")]
    let simd = super::simd_available();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    if simd {
        #[cfg(target_arch = "x86_64")]
        {
            let nh = home.len();
            let cb = ((32 * 1024) / d.max(1)).clamp(16, 1024) & !1;
            for c0 in (0..members.len()).step_by(cb) {
                let c1 = (c0 + cb).min(members.len());
                for g in (0..nh).step_by(4) {
                    let q = [g, g + 1, g + 2, g + 3].map(|r| row(home[r.min(nh - 1)]));
                    for j in (c0..c1).step_by(2) {
                        let j1 = (j + 1).min(c1 - 1);
                        let cs = [row(members[j]), row(members[j1])];
                        // SAFETY: AVX2 and FMA were detected.
                        let v = unsafe { super::simd::dot4x2(q, cs, d) };
                        for (r, pair) in v.iter().enumerate().take(nh - g) {
                            let qi = home[g + r];
                            for (s, &dv) in pair.iter().enumerate().take(j1 - j + 1) {
                                let m = members[j + s];
                                if m != qi {
                                    tops[g + r].push(1.0 - dv, m);
                                }
                            }
                        }
                    }
                }
            }
        }
    } else {
        for (t, &qi) in tops.iter_mut().zip(home) {
            for &m in &members {
                if m != qi {
                    t.push(cosine_distance(row(qi), row(m)), m);
                }
            }
        }
    }
    home.iter()
        .zip(tops)
        .map(|(&qi, t)| {
            let mut exact = TopK::new(k);
            for (_, m) in t.items {
                exact.push(cosine_distance(row(qi), row(m)), m);
            }
            (qi, exact)
        })
        .collect()
}
