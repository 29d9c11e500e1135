//! The budget selection: which items go into tonight's review budget, as a
//! pure function of the items in priority order.
//!
//! # Contract of [`select`]
//!
//! Input: candidates **in priority order** (highest first), each with its
//! stratification class, its near-duplicate cluster and its annotator; a
//! [`Policy`]. Output: one [`Pick`] per candidate, in queue order: every
//! in-budget pick first (in priority order), then every other candidate (in
//! priority order). With `N` candidates:
//!
//! 1. `K = min(budget, N)`. **Without a budget** every candidate is in it,
//!    in priority order, and steps 2, 4, 5 and 6 do nothing: the queue is the
//!    plain ranking (only `review_all` flags are set).
//! 2. **De-duplication** (`dedup`): within a cluster the first candidate (the
//!    highest priority) is the representative; later members are
//!    [`Why::Duplicate`], outside the budget, and listed in the
//!    representative's `also_in_cluster`.
//! 3. **Review-all**: a candidate whose annotator is in `review_all_from` is
//!    in the budget *in addition to* `K` ([`Why::ReviewAll`]; it never takes
//!    one of the `K` slots and the other rules skip it), duplicates included.
//!    `review_all` is set on every such candidate.
//! 4. `S = round(spot_check · K)` slots go to spot checks, `R = K − S` to the
//!    ranking.
//! 5. **Per-class minimum**: `q = floor(min_per_class · R)`. For each class
//!    present (ascending index) the first `q` eligible candidates of that class
//!    are reserved. The remaining `R − reserved` slots are filled with the
//!    highest-priority eligible candidates not yet reserved. A reserved
//!    candidate that the plain ranking (the first `R` eligible candidates)
//!    would also have picked is [`Why::Ranking`]; one it would not is
//!    [`Why::MinShare`].
//! 6. **Spot check**: `min(S, pool)` candidates drawn uniformly without
//!    replacement (ChaCha8 seeded with `seed`) from the eligible candidates
//!    the previous steps did not pick ([`Why::SpotCheck`]).
//!
//! "Eligible" means: not a de-duplicated cluster member and not review-all.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One item offered to the selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Stratification class (classification: the annotated label;
    /// segmentation: the class with the lowest IoU in the item).
    pub class: Option<u32>,
    /// Near-duplicate cluster id (`u32`, so a candidate is 32 bytes:
    /// [`crate::queue::plan`] refuses 2^32 items or more).
    pub cluster: Option<u32>,
    /// The `annotator` column, when there is one (borrowed from the
    /// manifest: no string per candidate).
    pub annotator: Option<&'a str>,
}

const _: () = assert!(std::mem::size_of::<Candidate>() <= 32);
const _: () = assert!(std::mem::size_of::<Option<Why>>() <= 8);

/// The queue policy (flags of `triage run`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Budget size `K`; `None` = every item.
    pub budget: Option<usize>,
    /// At most one item per near-duplicate cluster inside the budget.
    pub dedup: bool,
    /// Minimum share of the ranked part of the budget per class, in [0, 1].
    pub min_per_class: f64,
    /// Share of the budget drawn at random from items the ranking skips, in [0, 1].
    pub spot_check: f64,
    /// Seed of the spot-check draw.
    pub seed: u64,
    /// Annotators whose every item is reviewed.
    pub review_all_from: Vec<String>,
}

impl Policy {
    /// `--budget` is at least 1; `--min-per-class` and `--spot-check` lie in
    /// [0, 1] and need a budget; `--review-all-from` names are non-empty.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if self.budget == Some(0) {
            return Err(Error::Usage("--budget must be at least 1".into()));
        }
        for (flag, v) in [
            ("--min-per-class", self.min_per_class),
            ("--spot-check", self.spot_check),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Usage(format!("{flag} must be in [0, 1], got {v}")));
            }
        }
        if self.budget.is_none() && (self.min_per_class > 0.0 || self.spot_check > 0.0) {
            return Err(Error::Usage(
                "--min-per-class and --spot-check share out a budget: give --budget K".into(),
            ));
        }
        if self.review_all_from.iter().any(|a| a.trim().is_empty()) {
            return Err(Error::Usage(
                "--review-all-from takes non-empty annotator names".into(),
            ));
        }
        Ok(())
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            budget: None,
            dedup: true,
            min_per_class: 0.0,
            spot_check: 0.0,
            seed: 0,
            review_all_from: Vec::new(),
        }
    }
}

/// Why a candidate sits where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// In the budget by priority.
    Ranking,
    /// In the budget to meet the minimum share of this class.
    MinShare(u32),
    /// In the budget as a random spot check.
    SpotCheck,
    /// In the budget because of its annotator.
    ReviewAll,
    /// Outside the budget: a near-duplicate of the candidate at this
    /// position (`u32`, so a pick is 24 bytes: [`crate::queue::plan`]
    /// refuses 2^32 items or more).
    Duplicate(u32),
    /// Outside the budget: ranked below it.
    Below,
}

/// The selection's verdict on one candidate (24 bytes: one per item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Position of the candidate in the input.
    pub pos: usize,
    pub in_budget: bool,
    pub why: Why,
    /// Its annotator is in `review_all_from`.
    pub review_all: bool,
}

const _: () = assert!(std::mem::size_of::<Pick>() <= 24);

impl Pick {
    /// Picked as a random spot check.
    pub fn spot_check(&self) -> bool {
        self.why == Why::SpotCheck
    }
}

/// What [`select`] chose: the picks in queue order (read as a slice of
/// [`Pick`]), and the representatives' cluster members, kept apart from
/// the picks because few candidates have any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    picks: Vec<Pick>,
    /// By representative's position: the other members of its cluster
    /// (only representatives of clusters with more than one member).
    also: HashMap<usize, Vec<usize>>,
}

impl Selection {
    /// Representatives: positions of the other members of the cluster of
    /// the candidate at `pos` (empty for every other candidate).
    pub fn also_in_cluster(&self, pos: usize) -> &[usize] {
        self.also.get(&pos).map_or(&[], Vec::as_slice)
    }
}

impl std::ops::Deref for Selection {
    type Target = [Pick];
    fn deref(&self) -> &[Pick] {
        &self.picks
    }
}

/// The selection's sizes, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `K`.
    pub budget: usize,
    /// `S`.
    pub spot_slots: usize,
    /// `q`.
    pub per_class_minimum: usize,
}

/// The sizes [`select`] derives from `policy` for `n` candidates.
pub fn counts(n: usize, policy: &Policy) -> Counts {
    let Some(budget) = policy.budget else {
        return Counts {
            budget: n,
            spot_slots: 0,
            per_class_minimum: 0,
        };
    };
    let k = budget.min(n);
    let s = ((policy.spot_check * k as f64).round() as usize).min(k);
    let q = (policy.min_per_class * (k - s) as f64).floor() as usize;
    Counts {
        budget: k,
        spot_slots: s,
        per_class_minimum: q,
    }
}

/// A set of candidate indices as flags, with its size.
struct Picked {
    set: Vec<bool>,
    len: usize,
}

impl Picked {
    /// Add `i`; whether it was new.
    fn insert(&mut self, i: usize) -> bool {
        let new = !self.set[i];
        self.set[i] = true;
        self.len += usize::from(new);
        new
    }
}

/// Each class's first `q` entries of `order` (`(position, class)`, in
/// rank order; entries without a class skipped), by class in class order:
/// one pass, O(N log C), not a pass per class. The per-class minimum of
/// the review budget and of the labelling batch reserve from it.
pub fn first_per_class(
    order: impl IntoIterator<Item = (usize, Option<u32>)>,
    q: usize,
) -> BTreeMap<u32, Vec<usize>> {
    let mut firsts: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, class) in order {
        if let Some(c) = class {
            let v = firsts.entry(c).or_default();
            if v.len() < q {
                v.push(i);
            }
        }
    }
    firsts
}

/// De-duplication (with `--dedup` and a budget): each near-duplicate
/// cluster is represented by its best-ranked member. Returns, per
/// candidate, the representative it is a duplicate of (empty, no memory
/// per candidate, when nothing is de-duplicated: read it with `get`), and,
/// by representative, the other members of its cluster (only for clusters
/// of more than one member: no memory for the others).
fn duplicates(
    cands: &[Candidate],
    policy: &Policy,
) -> (Vec<Option<usize>>, HashMap<usize, Vec<usize>>) {
    let n = cands.len();
    let mut duplicate_of: Vec<Option<usize>> = Vec::new();
    let mut also: HashMap<usize, Vec<usize>> = HashMap::new();
    if policy.dedup && policy.budget.is_some() {
        duplicate_of = vec![None; n];
        let mut members: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, c) in cands.iter().enumerate() {
            if let Some(cl) = c.cluster {
                members.entry(cl).or_default().push(i);
            }
        }
        for m in members.into_values().filter(|m| m.len() > 1) {
            let rep = m[0];
            for &i in &m[1..] {
                duplicate_of[i] = Some(rep);
            }
            also.insert(rep, m[1..].to_vec());
        }
    }
    (duplicate_of, also)
}

/// Select the budget; see the module documentation for the exact rules.
///
/// Memory: besides the candidates (32 bytes each) and the picks (24), 10
/// bytes a candidate while choosing (its verdict and two flags; 16 more
/// when near-duplicates are de-duplicated within a budget); the per-class
/// and spot-check lists only when their option asks for them.
/// [`select_owned`] frees the candidates before the picks are built.
pub fn select(cands: &[Candidate], policy: &Policy) -> Selection {
    verdicts(cands, policy).picks()
}

/// [`select`], dropping the candidates (32 bytes each) once every verdict
/// is in, before the picks are built: the queue stage's peak is then the
/// larger of the two, not their sum.
pub fn select_owned(cands: Vec<Candidate>, policy: &Policy) -> Selection {
    let v = verdicts(&cands, policy);
    drop(cands);
    v.picks()
}

/// Every candidate's verdict, before the picks are built from them.
struct Verdicts {
    why: Vec<Option<Why>>,
    forced: Vec<bool>,
    duplicate_of: Vec<Option<usize>>,
    also: HashMap<usize, Vec<usize>>,
}

fn verdicts(cands: &[Candidate], policy: &Policy) -> Verdicts {
    let n = cands.len();
    let Counts {
        budget: _,
        spot_slots: s,
        per_class_minimum: q,
    } = counts(n, policy);
    let r = counts(n, policy).budget - s;
    let review_all: HashSet<&str> = policy.review_all_from.iter().map(String::as_str).collect();
    let mut why: Vec<Option<Why>> = vec![None; n];
    let forced: Vec<bool> = cands
        .iter()
        .map(|c| c.annotator.is_some_and(|a| review_all.contains(a)))
        .collect();
    let (duplicate_of, also) = duplicates(cands, policy);
    let duplicate = |i: usize| duplicate_of.get(i).copied().flatten();
    let eligible = || (0..n).filter(|&i| duplicate(i).is_none() && !forced[i]);
    {
        // Flags indexed by candidate (not hash or tree sets: O(1) per item
        // at 200 000 items and more).
        let mut picked = Picked {
            set: vec![false; n],
            len: 0,
        };
        // Per-class minimum, then fill by rank.
        if q > 0 {
            let mut plain = vec![false; n];
            for i in eligible().take(r) {
                plain[i] = true;
            }
            // Each class's first `q` eligible items, reserved class by class.
            let firsts = first_per_class(eligible().map(|i| (i, cands[i].class)), q);
            for (c, members) in firsts {
                for i in members {
                    if picked.len < r && picked.insert(i) {
                        why[i] = Some(if plain[i] {
                            Why::Ranking
                        } else {
                            Why::MinShare(c)
                        });
                    }
                }
            }
        }
        for i in eligible() {
            if picked.len >= r {
                break;
            }
            if picked.insert(i) {
                why[i] = Some(Why::Ranking);
            }
        }
        // Spot checks from what the ranking left.
        if s > 0 {
            let pool: Vec<usize> = eligible().filter(|&i| !picked.set[i]).collect();
            let m = s.min(pool.len());
            if m > 0 {
                let mut rng = ChaCha8Rng::seed_from_u64(policy.seed);
                for j in rand::seq::index::sample(&mut rng, pool.len(), m) {
                    why[pool[j]] = Some(Why::SpotCheck);
                }
            }
        }
    }
    for i in 0..n {
        if forced[i] && why[i].is_none() {
            why[i] = Some(Why::ReviewAll);
        }
    }
    Verdicts {
        why,
        forced,
        duplicate_of,
        also,
    }
}

impl Verdicts {
    /// The picks in queue order, built once: the in-budget candidates, then
    /// the others, each in priority order (no partition into two more
    /// vectors).
    fn picks(self) -> Selection {
        let Verdicts {
            why,
            forced,
            duplicate_of,
            also,
        } = self;
        let n = why.len();
        let duplicate = |i: usize| duplicate_of.get(i).copied().flatten();
        let mut picks: Vec<Pick> = Vec::with_capacity(n);
        for inside in [true, false] {
            for i in (0..n).filter(|&i| why[i].is_some() == inside) {
                let (in_budget, w) = match (why[i], duplicate(i)) {
                    (Some(w), _) => (true, w),
                    (None, Some(rep)) => match u32::try_from(rep) {
                        Ok(rep) => (false, Why::Duplicate(rep)),
                        // Past what `plan` admits: no representative to name.
                        Err(_) => (false, Why::Below),
                    },
                    (None, None) => (false, Why::Below),
                };
                picks.push(Pick {
                    pos: i,
                    in_budget,
                    why: w,
                    review_all: forced[i],
                });
            }
        }
        Selection { picks, also }
    }
}
