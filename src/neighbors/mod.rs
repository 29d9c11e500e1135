//! Near-duplicates whose labels disagree, and clusters of disagreeing labels.
//!
//! 1. Embeddings are L2-normalised ([`embeddings`]); the distance is the
//!    cosine distance `1 − cos(u, v)`.
//! 2. One k-nearest-neighbour graph per run ([`knn`]), exact for small N and
//!    HNSW with exact re-checks beyond.
//! 3. **Near-duplicate pairs**: neighbours at distance ≤ the threshold, which
//!    is absolute (`--dup-threshold`, default 0.05) or relative
//!    (`--dup-relative f`: f × the median nearest-neighbour distance), plus
//!    every pair of byte-identical embedding rows or image files, whatever k.
//! 4. **Conflicts**: a pair whose labels differ (classification), or whose
//!    annotation masks have mean IoU below `--conflict-iou` (segmentation,
//!    same-size masks).
//! 5. **Clusters without chaining**: repeatedly take the unassigned item with
//!    the most unassigned near-duplicates (ties: lower index) as a centre and
//!    give it those near-duplicates. Every member paired through the graph
//!    lies within the threshold `t` of its centre. Cosine distance is not a
//!    metric, but the angle is: such members are at most `2·acos(1 − t)`
//!    apart, i.e. no cluster is wider than [`diameter_bound`]`(t) = 4t − 2t²`
//!    in cosine distance (≈ 4t). A partner paired because its image file is
//!    byte-identical joins at whatever embedding distance it has.
//! 6. Per item: `dup_conflict = 1 − d/(2·threshold)` for its closest
//!    conflicting partner at distance `d` (so in [0.5, 1]; 0 without one), and
//!    `knn_disagreement`, the fraction of its k neighbours whose label
//!    (segmentation: set of annotated classes) differs.

pub mod stage;

// The embeddings and the kNN graph live below the backends (`crate::io`,
// `crate::index`), which build graphs too; re-exported here under the names
// the neighbour stage has always used.
pub use crate::index as knn;
pub use crate::io::embeddings;

use std::collections::HashMap;

pub use embeddings::Embeddings;
pub use knn::{KnnGraph, KnnMethod};

/// The near-duplicate threshold rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Pairs at cosine distance ≤ this value.
    Absolute(f32),
    /// Pairs at ≤ f × the median nearest-neighbour distance.
    Relative(f32),
}

/// Default absolute threshold (cosine similarity ≥ 0.95).
pub const DEFAULT_THRESHOLD: f32 = 0.05;
/// Default number of neighbours.
pub const DEFAULT_K: usize = 10;

/// The most neighbours per item (`--knn-k`). The graph holds `N × k`
/// neighbour ids and distances (8 bytes each: 2 KiB per item at this
/// bound, 2 GiB at a million items), the exact search keeps `k + 8`
/// candidates per item and HNSW searches `4k` wide; the GPU's exact kernel
/// keeps at most [`crate::backend::gpu::KNN_MAX_K`] (56) and refuses more
/// (`--knn hnsw` or `--backend cpu` then). A larger `k` is refused as a
/// usage error before anything is allocated.
pub const MAX_K: usize = 256;

/// Check `k` (`--knn-k`): `1 ..= MAX_K`. Run before anything is sized by
/// it.
pub fn check_k(k: usize) -> crate::error::Result<()> {
    if !(1..=MAX_K).contains(&k) {
        return Err(crate::error::Error::Usage(format!(
            "--knn-k must be from 1 to {MAX_K}, got {k} (the graph holds N x k neighbours)"
        )));
    }
    Ok(())
}

/// The number of entries of a graph of `n` items and `k` neighbours each,
/// and its bytes (`n · k · 8`), checked: an error, not a wrapped product,
/// when they do not fit.
pub fn graph_len(n: usize, k: usize) -> crate::error::Result<usize> {
    n.checked_mul(k)
        .filter(|len| len.checked_mul(8).is_some_and(|b| b <= isize::MAX as usize))
        .ok_or_else(|| {
            crate::error::Error::Usage(format!(
                "a kNN graph of {n} items x {k} neighbours does not fit in memory; lower --knn-k"
            ))
        })
}

/// A flagged near-duplicate pair, `a < b`.
#[derive(Debug, Clone, PartialEq)]
pub struct DupPair {
    pub a: usize,
    pub b: usize,
    pub distance: f32,
    /// How it was found: `knn`, `embedding_hash` or `image_hash`.
    pub found_by: &'static str,
    /// Labels (or masks) disagree.
    pub conflict: bool,
    /// Segmentation: mean IoU between the two annotations, when compared.
    pub mask_iou: Option<f64>,
}

/// A cluster of near-duplicates (at least two members).
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub id: usize,
    /// The centre first, then the others by index.
    pub members: Vec<usize>,
    pub centre: usize,
    /// Largest exact distance between two members.
    pub max_distance: f32,
}

/// Everything the neighbour stage found.
#[derive(Debug, Clone)]
pub struct NeighborResult {
    pub graph: KnnGraph,
    /// The absolute threshold in force (after resolving a relative rule).
    pub threshold: f32,
    pub rule: Threshold,
    pub median_nn: f32,
    pub pairs: Vec<DupPair>,
    pub clusters: Vec<Cluster>,
    /// Cluster id per item.
    pub cluster_of: Vec<Option<usize>>,
    pub dup_conflict: Vec<f64>,
    pub knn_disagreement: Vec<f64>,
    /// The embedding rows that could not be normalised, left out of the
    /// graph ([`crate::io::embeddings::NullRow`]), and the dimension.
    pub null: Vec<(usize, crate::io::embeddings::NullRow)>,
    pub dim: usize,
}

/// Take the null rows of `emb` ([`Embeddings::null`]) out of `graph`: their
/// own rows emptied, and every row's neighbours among them removed (the
/// rest kept in order, the padding at the end).
pub fn without_null(graph: &mut KnnGraph, emb: &Embeddings) {
    if emb.null.is_empty() || graph.k == 0 {
        return;
    }
    let k = graph.k;
    let rows = graph.ids.len() / k;
    for i in 0..rows {
        let (ids, dist) = (
            &mut graph.ids[i * k..(i + 1) * k],
            &mut graph.dist[i * k..(i + 1) * k],
        );
        if emb.is_null(i) {
            ids.fill(u32::MAX);
            continue;
        }
        let mut w = 0;
        for r in 0..k {
            let j = ids[r];
            if j != u32::MAX && !emb.is_null(j as usize) {
                ids[w] = j;
                dist[w] = dist[r];
                w += 1;
            }
        }
        ids[w..].fill(u32::MAX);
    }
}

/// What the neighbour stage needs to know about labels.
pub trait LabelOracle: Sync {
    /// Whether items `a` and `b` carry the same label (segmentation: the same
    /// set of annotated classes), for kNN disagreement.
    fn same_label(&self, a: usize, b: usize) -> bool;
    /// Whether near-duplicates `a` and `b` conflict, with the mask IoU when one
    /// was computed.
    fn conflict(&self, a: usize, b: usize) -> crate::Result<(bool, Option<f64>)>;
    /// Whether item `i` has a label: an unlabelled item neither conflicts
    /// nor counts in a neighbour's kNN disagreement.
    fn labelled(&self, _i: usize) -> bool {
        true
    }
}

/// Centre-bounded greedy clustering of the pair graph `adj` (sorted
/// adjacency lists): repeatedly take as centre the unassigned item with the
/// most unassigned neighbours (ties to the lower index), and make it and
/// those neighbours a cluster; stop when no unassigned item has an
/// unassigned neighbour. Each cluster is returned centre first, then its
/// members in index order. Members are all within one edge of the centre, so
/// clusters never chain.
///
/// Degrees are kept up to date and the next centre taken from a max-heap
/// with lazy deletion: O((N + E) log N), not a scan of every item per cluster.
pub fn greedy_clusters(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = adj.len();
    let mut deg: Vec<usize> = adj.iter().map(Vec::len).collect();
    let mut taken = vec![false; n];
    let mut heap: BinaryHeap<(usize, Reverse<usize>)> = (0..n)
        .filter(|&i| deg[i] > 0)
        .map(|i| (deg[i], Reverse(i)))
        .collect();
    let mut out = Vec::new();
    while let Some((d, Reverse(centre))) = heap.pop() {
        // Stale entries: the item was taken, or its degree has dropped since
        // (its current degree has an entry of its own).
        if taken[centre] || d != deg[centre] || d == 0 {
            continue;
        }
        let mut members = vec![centre];
        members.extend(adj[centre].iter().copied().filter(|&j| !taken[j]));
        for &m in &members {
            taken[m] = true;
        }
        for &m in &members {
            for &j in &adj[m] {
                if !taken[j] {
                    deg[j] -= 1;
                    if deg[j] > 0 {
                        heap.push((deg[j], Reverse(j)));
                    }
                }
            }
        }
        out.push(members);
    }
    out
}

/// The largest cosine distance between two members of a cluster built with
/// threshold `t`: two vectors within angle `θ = acos(1 − t)` of a centre are
/// within `2θ` of each other, and `1 − cos 2θ = 4t − 2t²`.
pub fn diameter_bound(t: f32) -> f32 {
    let t = f64::from(t.clamp(0.0, 1.0));
    (4.0 * t - 2.0 * t * t) as f32
}

/// Hash groups of identical byte strings: pairs `(a, b)` with `a < b` among
/// items whose key bytes are equal (confirmed byte by byte). The tests'
/// form of [`identical_pairs_by`].
#[cfg(test)]
pub fn identical_pairs(keys: &[Option<Vec<u8>>]) -> Vec<(usize, usize)> {
    let hashes: Vec<Option<u64>> = keys.iter().map(|k| k.as_deref().map(hash_bytes)).collect();
    identical_pairs_by(&hashes, |a, b| keys[a] == keys[b])
}

/// The hash [`identical_pairs_by`] groups byte strings by (std's
/// `DefaultHasher`, fixed keys, so the same in every run).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// The pairs of items with identical keys, from one hash per item (`None`:
/// no key) and an exact comparison `same(a, b)`, called only for items whose
/// hashes collide, so the keys themselves need never be held in memory at
/// once.
pub fn identical_pairs_by(
    hashes: &[Option<u64>],
    same: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize)> {
    let mut groups: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, h) in hashes.iter().enumerate() {
        if let Some(h) = h {
            groups.entry(*h).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for members in groups.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                if same(a, b) {
                    out.push((a.min(b), a.max(b)));
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// Median of the items' nearest-neighbour distances.
pub fn median_nn(graph: &KnnGraph) -> f32 {
    let n = graph.ids.len() / graph.k.max(1);
    let mut d: Vec<f32> = (0..n)
        .filter_map(|i| graph.neighbours(i).next().map(|(_, d)| d))
        .collect();
    if d.is_empty() {
        return 0.0;
    }
    d.sort_by(f32::total_cmp);
    let m = d.len() / 2;
    if d.len() % 2 == 1 {
        d[m]
    } else {
        0.5 * (d[m - 1] + d[m])
    }
}

/// Run the neighbour stage over a built graph.
pub fn analyse(
    emb: &Embeddings,
    graph: KnnGraph,
    rule: Threshold,
    extra_identical: &[(usize, usize, &'static str)],
    labels: &dyn LabelOracle,
) -> crate::Result<NeighborResult> {
    let n = emb.n;
    let median = median_nn(&graph);
    let threshold = match rule {
        Threshold::Absolute(t) => t,
        Threshold::Relative(f) => f * median,
    };
    // Candidate pairs: graph edges within the threshold, and identical items.
    let mut found: HashMap<(usize, usize), &'static str> = HashMap::new();
    for i in 0..n {
        for (j, d) in graph.neighbours(i) {
            if d <= threshold {
                found.entry((i.min(j), i.max(j))).or_insert("knn");
            }
        }
    }
    for &(a, b, how) in extra_identical {
        found.insert((a.min(b), a.max(b)), how);
    }
    let mut keys: Vec<(usize, usize)> = found.keys().copied().collect();
    keys.sort_unstable();
    // Each pair's check (segmentation: two masks decoded and compared) is
    // independent: in parallel, then the first error in pair order.
    let checked: Vec<crate::Result<(bool, Option<f64>)>> = {
        use rayon::prelude::*;
        keys.par_iter()
            .map(|&(a, b)| match labels.labelled(a) && labels.labelled(b) {
                true => labels.conflict(a, b),
                false => Ok((false, None)),
            })
            .collect()
    };
    let mut pairs = Vec::with_capacity(keys.len());
    for ((a, b), check) in keys.into_iter().zip(checked) {
        let distance = embeddings::cosine_distance(emb.row(a), emb.row(b));
        let (conflict, mask_iou) = check?;
        pairs.push(DupPair {
            a,
            b,
            distance,
            found_by: found[&(a, b)],
            conflict,
            mask_iou,
        });
    }

    // Clusters: centre-bounded greedy.
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    for p in &pairs {
        adj[p.a].push(p.b);
        adj[p.b].push(p.a);
    }
    for a in adj.iter_mut() {
        a.sort_unstable();
    }
    let mut cluster_of: Vec<Option<usize>> = vec![None; n];
    let mut clusters = Vec::new();
    for members in greedy_clusters(&adj) {
        let id = clusters.len();
        let centre = members[0];
        for &m in &members {
            cluster_of[m] = Some(id);
        }
        let mut max_distance = 0f32;
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                max_distance =
                    max_distance.max(embeddings::cosine_distance(emb.row(a), emb.row(b)));
            }
        }
        clusters.push(Cluster {
            id,
            members,
            centre,
            max_distance,
        });
    }

    let mut dup_conflict = vec![0f64; n];
    for p in pairs.iter().filter(|p| p.conflict) {
        let v = if threshold > 0.0 {
            (1.0 - f64::from(p.distance) / (2.0 * f64::from(threshold))).clamp(0.5, 1.0)
        } else {
            1.0
        };
        dup_conflict[p.a] = dup_conflict[p.a].max(v);
        dup_conflict[p.b] = dup_conflict[p.b].max(v);
    }
    let knn_disagreement: Vec<f64> = (0..n)
        .map(|i| {
            let (mut diff, mut total) = (0usize, 0usize);
            for (j, _) in graph.neighbours(i).filter(|&(j, _)| labels.labelled(j)) {
                total += 1;
                diff += usize::from(!labels.same_label(i, j));
            }
            if total == 0 {
                0.0
            } else {
                diff as f64 / total as f64
            }
        })
        .collect();
    Ok(NeighborResult {
        graph,
        threshold,
        rule,
        median_nn: median,
        pairs,
        clusters,
        cluster_of,
        dup_conflict,
        knn_disagreement,
        null: emb.null.clone(),
        dim: emb.d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The greedy rule as first written: scan every item for the next centre.
    fn greedy_by_scan(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
        let n = adj.len();
        let mut taken = vec![false; n];
        let mut out = Vec::new();
        loop {
            let best = (0..n)
                .filter(|&i| !taken[i])
                .map(|i| (adj[i].iter().filter(|&&j| !taken[j]).count(), i))
                .filter(|&(deg, _)| deg > 0)
                .max_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
            let Some((_, centre)) = best else { break };
            let mut members = vec![centre];
            members.extend(adj[centre].iter().copied().filter(|&j| !taken[j]));
            for &m in &members {
                taken[m] = true;
            }
            out.push(members);
        }
        out
    }

    #[test]
    fn greedy_clusters_hand_worked_and_as_the_scan_on_random_graphs() {
        // A star 0-{1,2,3} and a path 3-4-5-6. Degrees: 0:3, 3:2, 4:2, 5:2,
        // the rest 1.
        let edges = [(0, 1), (0, 2), (0, 3), (3, 4), (4, 5), (5, 6)];
        let mut adj = vec![Vec::new(); 7];
        for &(a, b) in &edges {
            adj[a].push(b);
            adj[b].push(a);
        }
        adj.iter_mut().for_each(|a| a.sort_unstable());
        // Centre 0 takes {1, 2, 3}. Left: 4 (free neighbour 5), 5 (4 and
        // 6), 6 (5): centre 5 takes {4, 6}. (Centre 3 first would have
        // chained the star to the path.)
        assert_eq!(greedy_clusters(&adj), vec![vec![0, 1, 2, 3], vec![5, 4, 6]]);
        assert_eq!(greedy_by_scan(&adj), greedy_clusters(&adj));

        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m as u64) as usize
        };
        for trial in 0..200 {
            let n = 2 + next(60);
            let m = next(3 * n);
            let mut adj = vec![Vec::new(); n];
            for _ in 0..m {
                let (a, b) = (next(n), next(n));
                if a != b && !adj[a].contains(&b) {
                    adj[a].push(b);
                    adj[b].push(a);
                }
            }
            adj.iter_mut().for_each(|a| a.sort_unstable());
            assert_eq!(greedy_clusters(&adj), greedy_by_scan(&adj), "trial {trial}");
        }
    }

    struct Labels(Vec<u32>);
    impl LabelOracle for Labels {
        fn same_label(&self, a: usize, b: usize) -> bool {
            self.0[a] == self.0[b]
        }
        fn conflict(&self, a: usize, b: usize) -> crate::Result<(bool, Option<f64>)> {
            Ok((self.0[a] != self.0[b], None))
        }
    }

    fn unit(deg: f32) -> [f32; 2] {
        [deg.to_radians().cos(), deg.to_radians().sin()]
    }

    #[test]
    fn a_chain_is_cut_at_the_centre_bound() {
        // Items every 10° along an arc: each neighbour pair is at
        // 1 − cos 10° = 0.0152; with threshold 0.02 only adjacent items pair
        // up, so a chaining method would make one 6-item cluster spanning
        // 50°. Centre-bounded clusters hold at most a centre and its two
        // direct neighbours.
        let rows: Vec<f32> = (0..6).flat_map(|i| unit(10.0 * i as f32)).collect();
        let ids = crate::io::manifest::Ids::numbered(6);
        let e = Embeddings::from_rows(Path::new("e"), rows, 6, 2, &ids).unwrap();
        let g = knn::exact(&e, 3);
        let r = analyse(
            &e,
            g,
            Threshold::Absolute(0.02),
            &[],
            &Labels(vec![0, 0, 1, 1, 0, 0]),
        )
        .unwrap();
        assert_eq!(r.pairs.len(), 5);
        for c in &r.clusters {
            // 0 and 2 are 20° apart: 1 − cos 20° = 0.0603 > 2 × 0.02, since
            // cosine distance breaks the triangle inequality; the angular
            // bound 4t − 2t² = 0.0792 holds.
            assert!(c.max_distance <= diameter_bound(0.02), "{c:?}");
            assert!(c.members.len() <= 3);
        }
        assert!((r.clusters[0].max_distance - (1.0 - 20f32.to_radians().cos())).abs() < 1e-6);
        // Item 1 has two unassigned partners (0 and 2), as do 2, 3, 4; the
        // lowest index wins: {1, 0, 2}, then {4, 3, 5}.
        assert_eq!(r.clusters[0].members, vec![1, 0, 2]);
        assert_eq!(r.clusters[1].members, vec![4, 3, 5]);
        // Conflicting pairs: (1,2) and (3,4).
        let conflicts: Vec<(usize, usize)> = r
            .pairs
            .iter()
            .filter(|p| p.conflict)
            .map(|p| (p.a, p.b))
            .collect();
        assert_eq!(conflicts, vec![(1, 2), (3, 4)]);
        assert_eq!(r.dup_conflict[0], 0.0);
        let d = 1.0 - 10f64.to_radians().cos();
        assert!((r.dup_conflict[1] - (1.0 - d / 0.04)).abs() < 1e-6);
    }

    #[test]
    fn identical_rows_pair_beyond_k_and_relative_threshold() {
        assert_eq!(
            identical_pairs(&[
                Some(vec![1]),
                None,
                Some(vec![1]),
                Some(vec![2]),
                Some(vec![1])
            ]),
            vec![(0, 2), (0, 4), (2, 4)]
        );
        let ids = crate::io::manifest::Ids::numbered(4);
        let rows: Vec<f32> = [unit(0.0), unit(1.0), unit(60.0), unit(120.0)].concat();
        let e = Embeddings::from_rows(Path::new("e"), rows, 4, 2, &ids).unwrap();
        let g = knn::exact(&e, 1);
        // NN distances: 1−cos1°, 1−cos1°, 1−cos59°, 1−cos60°; median = mean of the middle two.
        let m = median_nn(&g);
        let want = 0.5 * ((1.0 - 1f32.to_radians().cos()) + (1.0 - 59f32.to_radians().cos()));
        assert!((m - want).abs() < 1e-6);
        let r = analyse(
            &e,
            g,
            Threshold::Relative(0.01),
            &[],
            &Labels(vec![0, 1, 0, 0]),
        )
        .unwrap();
        assert!((r.threshold - 0.01 * want).abs() < 1e-7);
        assert_eq!(r.pairs.len(), 1);
        assert!(r.pairs[0].conflict);
    }
}
