//! Agreement between annotators on class labels: Krippendorff's alpha
//! (nominal), Fleiss' kappa, Cohen's kappa, and the per-item share of
//! agreeing pairs and majority.
//!
//! A *unit* is one item's labels, one per annotator who labelled it (any
//! number; missing annotators are simply absent).
//!
//! - **Krippendorff's alpha, nominal** (Krippendorff 2011, "Computing
//!   Krippendorff's Alpha-Reliability"), from the coincidence matrix: a unit
//!   with `m_u ≥ 2` values adds `n_uc · n_uk / (m_u − 1)` to `o_ck` for
//!   `c ≠ k` and `n_uc (n_uc − 1) / (m_u − 1)` to `o_cc` (`n_uc`: its values
//!   of class `c`); units with fewer than 2 values are left out. With
//!   `n_c = Σ_k o_ck` and `n = Σ_c n_c`,
//!   `α = 1 − (n − 1) · (n − Σ_c o_cc) / (n² − Σ_c n_c²)`.
//!   Undefined (`None`) when `n < 2` or every pairable value is one class
//!   (no expected disagreement). The `krippendorff` package computes the same.
//! - **Fleiss' kappa** (Fleiss 1971) over units with exactly `m` values:
//!   `P_i = (Σ_j n_ij² − m) / (m (m − 1))`, `P̄` their mean,
//!   `p_j = Σ_i n_ij / (N m)`, `P_e = Σ_j p_j²`, `κ = (P̄ − P_e) / (1 − P_e)`
//!   (statsmodels' `fleiss_kappa(table, method="fleiss")`).
//! - **Cohen's kappa** (Cohen 1960) of two label sequences over the same
//!   items: `p_o` the share equal, `p_e = Σ_c (a_c / n)(b_c / n)`,
//!   `κ = (p_o − p_e) / (1 − p_e)` (scikit-learn's `cohen_kappa_score`).
//!
//! Every kappa and alpha is `None` where its denominator is 0.

/// Krippendorff's alpha (nominal) of `units` over `classes` classes.
pub fn krippendorff_alpha<'a>(
    units: impl IntoIterator<Item = &'a [u32]>,
    classes: usize,
) -> Option<f64> {
    let mut n_c = vec![0f64; classes];
    let mut o_diag = 0f64;
    let mut counts = vec![0u32; classes];
    for unit in units {
        let m = unit.len();
        if m < 2 {
            continue;
        }
        for &v in unit {
            counts[v as usize] += 1;
        }
        let w = 1.0 / (m - 1) as f64;
        for &v in unit {
            let k = v as usize;
            let c = counts[k];
            if c > 0 {
                // Row c of the coincidence matrix sums to n_uc · (m − 1) · w = n_uc.
                n_c[k] += c as f64;
                o_diag += c as f64 * (c as f64 - 1.0) * w;
                counts[k] = 0;
            }
        }
    }
    let n: f64 = n_c.iter().sum();
    let expected = n * n - n_c.iter().map(|x| x * x).sum::<f64>();
    if n < 2.0 || expected <= 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * (n - o_diag) / expected)
}

/// Fleiss' kappa over the `units` with exactly `m ≥ 2` values; `None` when
/// there is none or `P_e = 1`. Also returns the number of units used.
pub fn fleiss_kappa<'a>(
    units: impl IntoIterator<Item = &'a [u32]>,
    classes: usize,
    m: usize,
) -> (Option<f64>, usize) {
    if m < 2 {
        return (None, 0);
    }
    let mut p_j = vec![0u64; classes];
    let mut sum_p_i = 0f64;
    let mut items = 0usize;
    let mut counts = vec![0u64; classes];
    for unit in units {
        if unit.len() != m {
            continue;
        }
        items += 1;
        for &v in unit {
            counts[v as usize] += 1;
        }
        let mut sq = 0u64;
        for &v in unit {
            let c = &mut counts[v as usize];
            if *c > 0 {
                sq += *c * *c;
                p_j[v as usize] += *c;
                *c = 0;
            }
        }
        sum_p_i += (sq - m as u64) as f64 / (m * (m - 1)) as f64;
    }
    if items == 0 {
        return (None, 0);
    }
    let total = (items * m) as f64;
    let p_e: f64 = p_j.iter().map(|&x| (x as f64 / total).powi(2)).sum();
    let p_bar = sum_p_i / items as f64;
    if 1.0 - p_e <= 0.0 {
        return (None, items);
    }
    (Some((p_bar - p_e) / (1.0 - p_e)), items)
}

/// The sums Cohen's kappa needs, added pair by pair: the count, the
/// agreements and both sides' class marginals.
#[derive(Debug, Clone)]
pub struct CohenSums {
    pub n: usize,
    pub agree: usize,
    a: Vec<u64>,
    b: Vec<u64>,
}

impl CohenSums {
    pub fn new(classes: usize) -> Self {
        CohenSums {
            n: 0,
            agree: 0,
            a: vec![0; classes],
            b: vec![0; classes],
        }
    }

    /// Add one item labelled `x` by one side and `y` by the other.
    pub fn add(&mut self, x: u32, y: u32) {
        self.n += 1;
        self.agree += (x == y) as usize;
        self.a[x as usize] += 1;
        self.b[y as usize] += 1;
    }

    /// Back to no items, keeping the class count.
    pub fn clear(&mut self) {
        self.n = 0;
        self.agree = 0;
        self.a.fill(0);
        self.b.fill(0);
    }

    /// Cohen's kappa; `None` when empty or `p_e = 1`.
    pub fn kappa(&self) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let p_o = self.agree as f64 / n;
        let p_e: f64 = self
            .a
            .iter()
            .zip(&self.b)
            .map(|(&x, &y)| (x as f64 / n) * (y as f64 / n))
            .sum();
        (1.0 - p_e > 0.0).then(|| (p_o - p_e) / (1.0 - p_e))
    }
}

/// Cohen's kappa of the label pairs `(a_i, b_i)`; `None` when empty or
/// `p_e = 1`.
pub fn cohen_kappa(pairs: &[(u32, u32)], classes: usize) -> Option<f64> {
    let mut s = CohenSums::new(classes);
    for &(x, y) in pairs {
        s.add(x, y);
    }
    s.kappa()
}

/// Cohen's kappa of the label pairs `(a_i, b_i)`, as [`cohen_kappa`] (the
/// same bits: `p_e` adds the classes' terms in class order) but with no
/// table sized by the class count: it sorts copies of the two sides
/// (`xs`, `ys`: reusable buffers), so its cost follows `pairs.len()`.
pub fn cohen_kappa_of(pairs: &[(u32, u32)], xs: &mut Vec<u32>, ys: &mut Vec<u32>) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let agree = pairs.iter().filter(|(x, y)| x == y).count();
    xs.clear();
    ys.clear();
    xs.extend(pairs.iter().map(|p| p.0));
    ys.extend(pairs.iter().map(|p| p.1));
    xs.sort_unstable();
    ys.sort_unstable();
    let run = |v: &[u32], at: usize| v[at..].iter().take_while(|&&c| c == v[at]).count();
    let (mut i, mut j, mut p_e) = (0, 0, 0f64);
    while i < xs.len() && j < ys.len() {
        let (a, b) = (xs[i], ys[j]);
        if a < b {
            i += run(xs, i);
        } else if b < a {
            j += run(ys, j);
        } else {
            let (na, nb) = (run(xs, i), run(ys, j));
            p_e += (na as f64 / n) * (nb as f64 / n);
            i += na;
            j += nb;
        }
    }
    let p_o = agree as f64 / n;
    (1.0 - p_e > 0.0).then(|| (p_o - p_e) / (1.0 - p_e))
}

/// One item's labels counted by class: `(class, count)` in class order, so
/// the share of agreeing pairs, the majority and each annotator's
/// leave-one-out majority take `O(m log m)` for `m` labels, not `O(m²)`.
#[derive(Debug, Clone, Default)]
pub struct ClassCounts {
    counts: Vec<(u32, usize)>,
    /// Positions in `counts` of the (at most) three largest counts, largest
    /// first (ties: lower class first).
    top: Vec<usize>,
    m: usize,
}

impl ClassCounts {
    /// Count `values` (any order).
    pub fn new(values: &[u32]) -> Self {
        let mut v = values.to_vec();
        v.sort_unstable();
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for x in v {
            match counts.last_mut() {
                Some(last) if last.0 == x => last.1 += 1,
                _ => counts.push((x, 1)),
            }
        }
        let mut top: Vec<usize> = (0..counts.len()).collect();
        top.sort_by(|&a, &b| counts[b].1.cmp(&counts[a].1).then(a.cmp(&b)));
        top.truncate(3);
        ClassCounts {
            counts,
            top,
            m: values.len(),
        }
    }

    /// The share of agreeing unordered pairs: `Σ_c n_c (n_c − 1) / 2` over
    /// `m (m − 1) / 2` (`None` below 2 labels).
    pub fn pair_agreement(&self) -> Option<f64> {
        if self.m < 2 {
            return None;
        }
        let agree: usize = self.counts.iter().map(|&(_, n)| n * (n - 1) / 2).sum();
        Some(agree as f64 / (self.m * (self.m - 1) / 2) as f64)
    }

    /// The strict majority (unique most frequent class); `None` when empty
    /// or tied.
    pub fn majority(&self) -> Option<u32> {
        self.majority_without(None)
    }

    /// The strict majority of the labels with one label of class `v`
    /// removed (an annotator's leave-one-out consensus); `None` when no
    /// other label is left or the rest tie.
    pub fn majority_without_one(&self, v: u32) -> Option<u32> {
        let at = self.counts.binary_search_by_key(&v, |c| c.0).ok()?;
        self.majority_without(Some(at))
    }

    fn majority_without(&self, less: Option<usize>) -> Option<u32> {
        // One count lowered by 1: the largest two of the rest are among the
        // three largest and the lowered one.
        let mut cand: Vec<(usize, u32)> = self
            .top
            .iter()
            .chain(less.iter())
            .map(|&i| {
                let (c, n) = self.counts[i];
                (if Some(i) == less { n - 1 } else { n }, c)
            })
            .collect();
        cand.sort_unstable_by(|a, b| b.cmp(a));
        cand.dedup();
        let best = cand.first().filter(|b| b.0 > 0)?;
        let tied = cand.iter().filter(|c| c.0 == best.0).count() > 1;
        (!tied).then_some(best.1)
    }
}

/// The share of agreeing unordered pairs among `values` (`None` below 2).
pub fn pair_agreement(values: &[u32]) -> Option<f64> {
    ClassCounts::new(values).pair_agreement()
}

/// The strict majority (most frequent value, unique); `None` when empty or
/// tied.
pub fn majority(values: impl IntoIterator<Item = u32>) -> Option<u32> {
    let v: Vec<u32> = values.into_iter().collect();
    ClassCounts::new(&v).majority()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Krippendorff (2011), section C: nominal data, 4 coders, 12 units,
    /// missing values; published α = 0.743.
    #[test]
    fn alpha_matches_krippendorffs_worked_example() {
        // Values 1..5 as classes 0..4; `None` is missing.
        let coders: [[Option<u32>; 12]; 4] = [
            [
                Some(1),
                Some(2),
                Some(3),
                Some(3),
                Some(2),
                Some(1),
                Some(4),
                Some(1),
                Some(2),
                None,
                None,
                None,
            ],
            [
                Some(1),
                Some(2),
                Some(3),
                Some(3),
                Some(2),
                Some(2),
                Some(4),
                Some(1),
                Some(2),
                Some(5),
                None,
                Some(3),
            ],
            [
                None,
                Some(3),
                Some(3),
                Some(3),
                Some(2),
                Some(3),
                Some(4),
                Some(2),
                Some(2),
                Some(5),
                Some(1),
                None,
            ],
            [
                Some(1),
                Some(2),
                Some(3),
                Some(3),
                Some(2),
                Some(4),
                Some(4),
                Some(1),
                Some(2),
                Some(5),
                Some(1),
                None,
            ],
        ];
        let units: Vec<Vec<u32>> = (0..12)
            .map(|u| coders.iter().filter_map(|c| c[u]).map(|v| v - 1).collect())
            .collect();
        let a = krippendorff_alpha(units.iter().map(|u| u.as_slice()), 5).unwrap();
        assert!((a - 0.743).abs() < 5e-4, "{a}");
    }

    /// Fleiss (1971) example as on Wikipedia's "Fleiss' kappa" page: 10
    /// subjects, 14 raters, 5 categories; κ = 0.210.
    #[test]
    fn fleiss_matches_the_published_example() {
        let table = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ];
        let units: Vec<Vec<u32>> = table
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .flat_map(|(k, &n)| std::iter::repeat_n(k as u32, n))
                    .collect()
            })
            .collect();
        let (k, items) = fleiss_kappa(units.iter().map(|u| u.as_slice()), 5, 14);
        assert_eq!(items, 10);
        assert!((k.unwrap() - 0.210).abs() < 5e-4, "{k:?}");
    }

    #[test]
    fn cohen_by_hand() {
        // 50 items: 20 both yes, 15 both no, 5 yes/no, 10 no/yes
        // (Wikipedia's "Cohen's kappa" example): p_o = 0.7, p_e = 0.5, κ = 0.4.
        let mut pairs = vec![(1, 1); 20];
        pairs.extend(vec![(0, 0); 15]);
        pairs.extend(vec![(1, 0); 5]);
        pairs.extend(vec![(0, 1); 10]);
        let k = cohen_kappa(&pairs, 2).unwrap();
        assert!((k - 0.4).abs() < 1e-12, "{k}");
        assert_eq!(cohen_kappa(&[(1, 1), (1, 1)], 2), None, "p_e = 1");
    }

    #[test]
    fn pairs_and_majority() {
        assert_eq!(pair_agreement(&[1]), None);
        assert_eq!(pair_agreement(&[1, 1, 2]), Some(1.0 / 3.0));
        assert_eq!(pair_agreement(&[3, 3, 3, 3]), Some(1.0));
        assert_eq!(majority([1, 2, 2]), Some(2));
        assert_eq!(majority([1, 2]), None, "a tie");
        assert_eq!(majority([]), None);
        // One class only: no expected disagreement, alpha undefined.
        assert_eq!(krippendorff_alpha([&[1u32, 1][..], &[1, 1]], 3), None);
    }

    /// The counted forms equal the plain definitions on random units: the
    /// pairs counted one by one, the majority and every leave-one-out
    /// majority by counting the others, Cohen's kappa with a dense table.
    #[test]
    fn counted_forms_equal_the_definitions() {
        let mut st = 5u64;
        let mut next = |k: u64| {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (st >> 33) % k
        };
        let dense_majority = |v: &[u32]| {
            let mut c = [0usize; 8];
            for &x in v {
                c[x as usize] += 1;
            }
            let best = *c.iter().max().unwrap();
            let at: Vec<usize> = (0..8).filter(|&k| c[k] == best).collect();
            (best > 0 && at.len() == 1).then(|| at[0] as u32)
        };
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for round in 0..2000 {
            let m = next(9) as usize;
            let k = 1 + next(5);
            let v: Vec<u32> = (0..m).map(|_| next(k) as u32).collect();
            let cc = ClassCounts::new(&v);
            let mut agree = 0;
            for i in 0..m {
                for j in i + 1..m {
                    agree += (v[i] == v[j]) as usize;
                }
            }
            let want = (m >= 2).then(|| agree as f64 / (m * (m - 1) / 2) as f64);
            assert_eq!(cc.pair_agreement(), want, "round {round}: {v:?}");
            assert_eq!(cc.majority(), dense_majority(&v), "round {round}: {v:?}");
            for x in 0..m {
                let others: Vec<u32> = (0..m).filter(|&y| y != x).map(|y| v[y]).collect();
                assert_eq!(
                    cc.majority_without_one(v[x]),
                    dense_majority(&others),
                    "round {round}: {v:?} without {x}"
                );
            }
            let pairs: Vec<(u32, u32)> = v.iter().map(|&a| (a, next(k) as u32)).collect();
            let a = cohen_kappa(&pairs, 8).map(f64::to_bits);
            let b = cohen_kappa_of(&pairs, &mut xs, &mut ys).map(f64::to_bits);
            assert_eq!(a, b, "round {round}: {pairs:?}");
        }
    }
}
