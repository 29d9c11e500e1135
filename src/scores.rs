//! Every score triage reports, declared once: [`TABLE`].
//!
//! A score is one line of the [`declare_scores!`] invocation below: its
//! name, whether it is computed per sample (a classification row or a
//! segmentation pixel) and averaged over the item's samples, or computed
//! once per item; the task it applies to, when it appears in the outputs,
//! whether it needs a label, which direction is worse, how it is
//! aggregated and what it means. Everything that lists scores follows from
//! that line:
//!
//! * [`Score`], the id of each score, and [`TABLE`], its [`Decl`];
//! * [`PerSample`], the per-sample values every backend computes (the
//!   scalar reference [`crate::metrics::pixel_stats::finish`], the SIMD
//!   lanes of `backend::simd`, the WGSL array `s.v[S_NAME]` of
//!   `shaders/pixel_stats.wgsl`), and [`ScoreSums`], their per-item sums;
//! * the GPU record offsets and the WGSL constants
//!   (`backend::gpu::kernels::score_pixels`), which hold the per-sample
//!   scores as one block of [`N_SAMPLE`] words;
//! * [`ItemScores`], the record each item carries to the outputs, with
//!   [`ItemScores::fields`] (the queue files' score columns and their
//!   order) and [`ItemScores::finite_value`] (the sort keys of views and
//!   strategies);
//! * the score cache's entry layout and the fingerprint of partials,
//!   checkpoints and caches ([`table_id`]), so files written under another
//!   table are refused;
//! * the parity matrix (`tests/reference/parity`), which compares every
//!   declared score on every backend configuration, and the list of scores
//!   in `docs/definitions.md`, which a test keeps equal to [`TABLE`].
//!
//! **Adding a per-sample score** is its formula three times (the scalar
//! `finish`, the SIMD `finish8`, the WGSL `sample_scores`) and one line in
//! `sample { .. }` below. **Adding a per-item score** is one line in
//! `item { .. }` and its formula where the item's other scores are computed
//! (`score::seg_item_scores`, or the stage or check that owns it).

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether a score is computed per sample or per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Per sample (row or pixel), reported as the mean over the item's
    /// scored samples.
    Sample,
    /// Once per item.
    Item,
}

/// The task a score applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applies {
    Any,
    Segmentation,
}

/// When a score is one of an item's output fields (a queue column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Show {
    /// Always (written `null` when undefined).
    Always,
    /// For every segmentation item.
    Segmentation,
    /// Only when the item has it.
    IfSet,
    /// When the item has any score of the neighbour stage.
    Neighbours,
}

/// The stage that computes a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The score stage, from a backend's per-item sums and counts (so the
    /// parity matrix compares it on every backend configuration).
    Score,
    /// The neighbour stage, from the kNN graph.
    Neighbours,
    /// The agreement stage, from the annotators' labels.
    Agreement,
}

/// Which values of a score call for a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher: more uncertain, or more likely an issue.
    HigherWorse,
    /// Lower: more uncertain, or more likely an issue.
    LowerWorse,
    /// A count, neither.
    Neither,
}

/// The declaration of one score (one line of [`TABLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decl {
    #[serde(skip)]
    pub score: Score,
    pub name: &'static str,
    pub level: Level,
    pub applies: Applies,
    #[serde(skip)]
    pub show: Show,
    /// Needs the item's label (not computed for unlabelled items).
    pub needs_label: bool,
    /// Who computes it.
    pub stage: Stage,
    pub direction: Direction,
    /// How the per-item value is formed.
    pub aggregation: &'static str,
    pub description: &'static str,
}

/// Declares every score; see the module documentation. Each line:
/// `Variant name: needs_label, Direction, "description";` for per-sample
/// scores, and `Variant name: Applies, Show, needs_label, Direction, Stage,
/// "aggregation", "description";` for per-item scores.
macro_rules! declare_scores {
    (
        sample {
            $( $SV:ident $sn:ident : $sl:literal, $sd:ident, $sdesc:literal; )*
        }
        item {
            $( $IV:ident $iname:ident : $ia:ident, $ishow:ident, $il:literal, $id:ident,
               $ist:ident, $iagg:literal, $idesc:literal; )*
        }
    ) => {
        /// The id of a declared score: its position in [`TABLE`] (per-sample
        /// scores first, in [`PerSample`] order).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Score {
            $( $SV, )*
            $( $IV, )*
        }

        /// Every declared score, in output order.
        pub const TABLE: [Decl; N_SCORES] = [
            $( Decl {
                score: Score::$SV,
                name: stringify!($sn),
                level: Level::Sample,
                applies: Applies::Any,
                show: Show::Always,
                needs_label: $sl,
                stage: Stage::Score,
                direction: Direction::$sd,
                aggregation: "mean over the item's scored samples",
                description: $sdesc,
            }, )*
            $( Decl {
                score: Score::$IV,
                name: stringify!($iname),
                level: Level::Item,
                applies: Applies::$ia,
                show: Show::$ishow,
                needs_label: $il,
                stage: Stage::$ist,
                direction: Direction::$id,
                aggregation: $iagg,
                description: $idesc,
            }, )*
        ];

        /// The number of per-sample scores.
        pub const N_SAMPLE: usize = [$( stringify!($sn) ),*].len();
        /// The number of declared scores.
        pub const N_SCORES: usize = N_SAMPLE + [$( stringify!($iname) ),*].len();

        /// One value per per-sample score, named as declared: `f32` per
        /// sample on every backend, `f64` sums per item ([`ScoreSums`]),
        /// `__m256` lanes in the SIMD kernels.
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct PerSample<T> {
            $( pub $sn: T, )*
        }

        impl<T: Copy> PerSample<T> {
            /// The values in [`TABLE`] order.
            #[inline]
            pub fn to_array(&self) -> [T; N_SAMPLE] {
                [$( self.$sn ),*]
            }

            /// From values in [`TABLE`] order.
            #[inline]
            pub fn from_array(a: [T; N_SAMPLE]) -> Self {
                let [$( $sn ),*] = a;
                PerSample { $( $sn ),* }
            }

            /// Apply `f` to every value.
            #[inline]
            pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> PerSample<U> {
                PerSample { $( $sn: f(self.$sn) ),* }
            }
        }
    };
}

declare_scores! {
    sample {
        Entropy entropy: false, HigherWorse,
            "normalised entropy `−Σ_k p_k ln p_k / ln C`";
        Margin margin: false, LowerWorse,
            "top-1 minus top-2 probability `p_(1) − p_(2)`";
        LeastConfidence least_confidence: false, HigherWorse,
            "`1 − p_(1)`";
        SelfConfidence self_confidence: true, LowerWorse,
            "the probability of the annotated label `p_y`";
        NormalizedMargin normalized_margin: true, LowerWorse,
            "`(p_y − max_{k≠y} p_k + 1) / 2`";
        Brier brier: true, HigherWorse,
            "Brier score `Σ_k (p_k − [k = y])²`, in [0, 2]";
    }
    item {
        Ece ece: Any, Always, true, HigherWorse, Score,
            "15 equal-width bins, right-closed, over the item's samples",
            "expected calibration error of the item's samples (a classification row: `|correct − p_(1)|`)";
        Miou miou: Segmentation, Segmentation, true, LowerWorse, Score,
            "from the item's label × prediction counts",
            "mean IoU over the classes present in the annotation or the prediction";
        Dice dice: Segmentation, Segmentation, true, LowerWorse, Score,
            "from the item's label × prediction counts",
            "mean Dice over the same classes";
        BoundaryIou boundary_iou: Segmentation, Segmentation, true, LowerWorse, Score,
            "from the item's boundary-band counts",
            "mean Boundary IoU over the classes whose band union is non-empty";
        PixelAccuracy pixel_accuracy: Segmentation, Segmentation, true, LowerWorse, Score,
            "correct / scored pixels",
            "fraction of non-ignored pixels where the prediction equals the label";
        SelfConfidenceSoftmin self_confidence_softmin: Segmentation, Segmentation, true, LowerWorse, Score,
            "softmin, T = 0.1, over the scored pixels",
            "softmin of the per-pixel self-confidence (cleanlab's image score)";
        NormalizedMarginSoftmin normalized_margin_softmin: Segmentation, Segmentation, true, LowerWorse, Score,
            "softmin, T = 0.1, over the scored pixels",
            "softmin of the per-pixel normalised margin";
        Pixels pixels: Segmentation, Segmentation, false, Neither, Score,
            "count",
            "the number of non-ignored (scored) pixels";
        MarginSoftmin margin_softmin: Segmentation, IfSet, false, LowerWorse, Score,
            "softmin, T = 0.1, over every pixel",
            "unlabelled items: softmin of the per-pixel margin `p_(1) − p_(2)`";
        DupConflict dup_conflict: Any, Neighbours, true, HigherWorse, Neighbours,
            "from the closest conflicting near-duplicate",
            "`1 − d/(2·threshold)` for the closest near-duplicate at cosine distance `d` whose label disagrees, 0 without one";
        KnnDisagreement knn_disagreement: Any, Neighbours, true, HigherWorse, Neighbours,
            "over the k nearest neighbours",
            "fraction of the k nearest neighbours whose label differs";
        AnnotatorAgreement annotator_agreement: Any, IfSet, false, LowerWorse, Agreement,
            "over the item's annotator pairs",
            "the share of the item's annotator pairs that agree (`null` with fewer than 2 annotations)";
    }
}

impl Score {
    /// Its declaration.
    pub fn decl(self) -> &'static Decl {
        &TABLE[self as usize]
    }

    /// Its name, as written in the outputs.
    pub fn name(self) -> &'static str {
        self.decl().name
    }

    /// The score named `name`.
    pub fn from_name(name: &str) -> Option<Score> {
        TABLE.iter().find(|d| d.name == name).map(|d| d.score)
    }
}

/// A digest of [`TABLE`] (names, levels, order): part of the fingerprint
/// of partials, checkpoints and score caches, so that files written under
/// another table are refused instead of misread.
pub fn table_id() -> String {
    let mut s = String::new();
    for d in &TABLE {
        s.push_str(d.name);
        s.push(if d.level == Level::Sample { 's' } else { 'i' });
        s.push(',');
    }
    s
}

/// The list of scores in `docs/definitions.md` ("Every score"), written
/// from [`TABLE`]: one row per score with its level, task, direction,
/// aggregation and meaning. A unit test keeps the page's block equal to it.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| score | level | task | worse when | per item | meaning |\n|---|---|---|---|---|---|\n",
    );
    for d in &TABLE {
        let level = match d.level {
            Level::Sample => "per sample",
            Level::Item => "per item",
        };
        let task = match (d.applies, d.needs_label) {
            (Applies::Any, true) => "any, labelled",
            (Applies::Any, false) => "any",
            (Applies::Segmentation, true) => "segmentation, labelled",
            (Applies::Segmentation, false) => "segmentation",
        };
        let worse = match d.direction {
            Direction::HigherWorse => "higher",
            Direction::LowerWorse => "lower",
            Direction::Neither => "n/a",
        };
        out.push_str(&format!(
            "| `{}` | {level} | {task} | {worse} | {} | {} |\n",
            d.name,
            d.aggregation.replace('|', "\\|"),
            d.description.replace('|', "\\|")
        ));
    }
    out
}

/// Per-item sums of the per-sample scores over an item's scored samples
/// (`f64`).
pub type ScoreSums = PerSample<f64>;

impl ScoreSums {
    /// Add one sample's scores.
    #[inline]
    pub fn add(&mut self, s: &PerSample<f32>) {
        let (mut a, b) = (self.to_array(), s.to_array());
        for (x, y) in a.iter_mut().zip(b) {
            *x += y as f64;
        }
        *self = PerSample::from_array(a);
    }

    /// Add another set of sums.
    pub fn merge(&mut self, o: &ScoreSums) {
        let (mut a, b) = (self.to_array(), o.to_array());
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
        *self = PerSample::from_array(a);
    }
}

/// The scores of one item: a value (or none) for each declared score.
/// `None` is written as `null` (a score undefined for the item, e.g. mIoU
/// when every pixel is ignored); so is a set value that is not finite.
///
/// Every item holds one through the queue and write stages, so only the
/// scores every item of the score stage has (`Applies::Any`,
/// `Stage::Score`) are kept inline; the segmentation-only scores
/// ([`Applies::Segmentation`]) and those of the later stages (neighbours,
/// agreement) are kept apart, each group allocated once one of its scores
/// is set. The per-sample scores are kept as `f32` while their value is
/// one exactly, as a classification row's always is (the mean of one `f32`
/// sample); a value that is not (a mean over a segmentation item's pixels)
/// goes to a boxed `f64` slot instead, so every value reads back as set. A
/// classification item holds 64 bytes, not 152. Two score sets are equal
/// when the same scores are set, the flags agree and every value compares
/// equal (an unset value reads 0).
#[derive(Debug, Clone, Default)]
pub struct ItemScores {
    /// The per-sample scores' values that are `f32` exactly, at their
    /// [`SLOTS`] index.
    sample: [f32; N_SAMPLE],
    /// The per-sample scores' values that are not (bit `j` of `wide_mask`
    /// set), at the same index.
    wide: Option<Box<[f64; N_SAMPLE]>>,
    /// Bit `j`: per-sample score `j` is in `wide`.
    wide_mask: u8,
    /// The values of the other inline scores, at their [`SLOTS`] index.
    common: [f64; N_COMMON],
    /// The values of the segmentation-only scores, at their [`SLOTS`] index.
    seg: Option<Box<[f64; N_SEG]>>,
    /// The values of the later stages' scores, at their [`SLOTS`] index.
    late: Option<Box<[f64; N_LATE]>>,
    /// Bit `i`: score `i` is set.
    set: u32,
    /// A segmentation item (its [`Show::Segmentation`] scores are fields).
    segmentation: bool,
}

const _: () = assert!(N_SCORES <= 32, "ItemScores::set holds one bit per score");

/// Where score `i` is kept: the per-sample scores inline as `f32` (or in
/// their boxed `f64` slots), the other inline scores, the boxed
/// segmentation-only scores, or the boxed later stages' scores.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    Sample,
    Common,
    Seg,
    Late,
}

const fn group(d: &Decl) -> Group {
    match (d.level, d.applies, d.stage) {
        (Level::Sample, _, _) => Group::Sample,
        (_, Applies::Segmentation, _) => Group::Seg,
        (_, _, Stage::Score) => Group::Common,
        _ => Group::Late,
    }
}

const _: () = assert!(
    N_SAMPLE <= 8,
    "ItemScores::wide_mask holds one bit per sample score"
);
const _: () = assert!(count(Group::Sample) == N_SAMPLE);

/// How many declared scores `g` holds.
const fn count(g: Group) -> usize {
    let (mut n, mut i) = (0, 0);
    while i < N_SCORES {
        if group(&TABLE[i]) as u8 == g as u8 {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The number of scores that apply to segmentation only.
const N_SEG: usize = count(Group::Seg);
/// The number of the later stages' scores.
const N_LATE: usize = count(Group::Late);
/// The number of inline scores.
const N_COMMON: usize = count(Group::Common);

/// Where the value of score `i` is kept: its group and `j`, its index in
/// the group's array, counting the group's scores in [`TABLE`] order.
const SLOTS: [(Group, usize); N_SCORES] = {
    let mut out = [(Group::Common, 0); N_SCORES];
    let mut next = [0usize; 4];
    let mut i = 0;
    while i < N_SCORES {
        let g = group(&TABLE[i]);
        out[i] = (g, next[g as usize]);
        next[g as usize] += 1;
        i += 1;
    }
    out
};

impl PartialEq for ItemScores {
    fn eq(&self, o: &Self) -> bool {
        self.set == o.set
            && self.segmentation == o.segmentation
            && (0..N_SCORES).all(|i| self.value(i) == o.value(i))
    }
}

impl ItemScores {
    /// A segmentation item's scores, with its scored-pixel count.
    pub fn segmentation(pixels: u64) -> Self {
        let mut s = ItemScores {
            segmentation: true,
            ..Default::default()
        };
        s.set(Score::Pixels, Some(pixels as f64));
        s
    }

    /// Whether these are a segmentation item's scores.
    pub fn is_segmentation(&self) -> bool {
        self.segmentation
    }

    /// The stored value of score `i` (0 when unset).
    #[inline]
    fn value(&self, i: usize) -> f64 {
        match SLOTS[i] {
            (Group::Sample, j) => match self.wide_mask >> j & 1 {
                0 => f64::from(self.sample[j]),
                _ => self.wide.as_ref().map_or(0.0, |v| v[j]),
            },
            (Group::Common, j) => self.common[j],
            (Group::Seg, j) => self.seg.as_ref().map_or(0.0, |v| v[j]),
            (Group::Late, j) => self.late.as_ref().map_or(0.0, |v| v[j]),
        }
    }

    /// The value of `score`, when set.
    #[inline]
    pub fn get(&self, score: Score) -> Option<f64> {
        let i = score as usize;
        (self.set >> i & 1 != 0).then(|| self.value(i))
    }

    /// Set (`Some`) or clear (`None`) `score`.
    #[inline]
    pub fn set(&mut self, score: Score, v: Option<f64>) {
        let i = score as usize;
        let x = v.unwrap_or(0.0);
        /// Store `x` at `j` of a group kept apart, allocating it for a
        /// value that is set (`v`), not for a cleared one.
        fn put<const N: usize>(group: &mut Option<Box<[f64; N]>>, j: usize, x: f64, v: bool) {
            match group {
                Some(g) => g[j] = x,
                None if v => {
                    let mut g = Box::new([0.0; N]);
                    g[j] = x;
                    *group = Some(g);
                }
                None => {}
            }
        }
        match SLOTS[i] {
            (Group::Sample, j) => {
                let narrow = x as f32;
                if f64::from(narrow).to_bits() == x.to_bits() {
                    self.sample[j] = narrow;
                    self.wide_mask &= !(1 << j);
                } else {
                    self.sample[j] = 0.0;
                    put(&mut self.wide, j, x, true);
                    self.wide_mask |= 1 << j;
                }
            }
            (Group::Common, j) => self.common[j] = x,
            (Group::Seg, j) => put(&mut self.seg, j, x, v.is_some()),
            (Group::Late, j) => put(&mut self.late, j, x, v.is_some()),
        }
        match v {
            Some(_) => self.set |= 1 << i,
            None => self.set &= !(1 << i),
        }
    }

    /// `self` with `score` set to `v`.
    pub fn with(mut self, score: Score, v: Option<f64>) -> Self {
        self.set(score, v);
        self
    }

    /// The scored-pixel count of a segmentation item (0 for others).
    pub fn pixels(&self) -> u64 {
        self.get(Score::Pixels).map_or(0, |p| p as u64)
    }

    /// Set every per-sample score to its mean over `n` samples with sums
    /// `sums` (`None` when `n = 0`); with `labelled` false, only the scores
    /// that need no label.
    pub fn set_sample_means(&mut self, sums: &ScoreSums, n: u64, labelled: bool) {
        for (d, s) in TABLE.iter().zip(sums.to_array()) {
            if labelled || !d.needs_label {
                self.set(d.score, (n > 0).then(|| s / n as f64));
            }
        }
    }

    /// Whether `d` is one of this item's output fields.
    fn shows(&self, d: &Decl) -> bool {
        match d.show {
            Show::Always => true,
            Show::Segmentation => self.segmentation,
            Show::IfSet => self.get(d.score).is_some(),
            Show::Neighbours => TABLE
                .iter()
                .any(|o| o.show == Show::Neighbours && self.get(o.score).is_some()),
        }
    }

    /// `(name, value)` for every reported score, in output order ([`TABLE`]
    /// order, each shown as its [`Show`] says).
    pub fn fields(&self) -> Fields {
        let mut f = Fields::default();
        for d in TABLE.iter().filter(|d| self.shows(d)) {
            f.push((d.name, self.get(d.score)));
        }
        f
    }

    /// The finite value of score `name` (as in [`ItemScores::finite_fields`]):
    /// `None` when the item has no such score or its value is not finite.
    pub fn finite_value(&self, name: &str) -> Option<f64> {
        let d = TABLE.iter().find(|d| d.name == name)?;
        if !self.shows(d) {
            return None;
        }
        self.get(d.score).filter(|x| x.is_finite())
    }

    /// [`ItemScores::fields`] with every non-finite value as `None` (the
    /// queue files and the report write it as `null`).
    pub fn finite_fields(&self) -> Fields {
        let mut f = self.fields();
        for (_, v) in f.items[..f.len].iter_mut() {
            *v = v.filter(|x| x.is_finite());
        }
        f
    }
}

/// Serialised as a map: `"segmentation": true` for a segmentation item,
/// then every set score by name (a non-finite value as `null`).
impl Serialize for ItemScores {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let n = self.set.count_ones() as usize + self.segmentation as usize;
        let mut m = ser.serialize_map(Some(n))?;
        if self.segmentation {
            m.serialize_entry("segmentation", &true)?;
        }
        for d in &TABLE {
            if let Some(v) = self.get(d.score) {
                m.serialize_entry(d.name, &v.is_finite().then_some(v))?;
            }
        }
        m.end()
    }
}

/// The inverse of the [`Serialize`] impl; an unknown or repeated score
/// name is an error naming it (partials and caches are untrusted).
impl<'de> Deserialize<'de> for ItemScores {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ItemScores;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of score names to numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemScores, A::Error> {
                let mut s = ItemScores::default();
                let mut seen_seg = false;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "segmentation" {
                        if seen_seg {
                            return Err(de::Error::duplicate_field("segmentation"));
                        }
                        seen_seg = true;
                        s.segmentation = map.next_value()?;
                        continue;
                    }
                    let Some(score) = Score::from_name(&key) else {
                        return Err(de::Error::custom(format!("unknown score `{key}`")));
                    };
                    if s.get(score).is_some() {
                        return Err(de::Error::custom(format!("score `{key}` given twice")));
                    }
                    let v: Option<f64> = map.next_value()?;
                    s.set(score, Some(v.unwrap_or(f64::NAN)));
                }
                Ok(s)
            }
        }
        de.deserialize_map(V)
    }
}

/// The most score fields an item has.
pub const MAX_FIELDS: usize = N_SCORES;

/// An item's `(name, value)` score fields in their documented order, held
/// inline: the queue files format one set per row, so no allocation per
/// row. Reads as a slice; iterates by value.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    items: [(&'static str, Option<f64>); MAX_FIELDS],
    len: usize,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            items: [("", None); MAX_FIELDS],
            len: 0,
        }
    }
}

impl Fields {
    fn push(&mut self, kv: (&'static str, Option<f64>)) {
        self.items[self.len] = kv;
        self.len += 1;
    }
}

impl std::ops::Deref for Fields {
    type Target = [(&'static str, Option<f64>)];
    fn deref(&self) -> &Self::Target {
        &self.items[..self.len]
    }
}

impl IntoIterator for Fields {
    type Item = (&'static str, Option<f64>);
    type IntoIter = std::iter::Take<std::array::IntoIter<Self::Item, MAX_FIELDS>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/definitions.md` lists every declared score between the
    /// `scores:begin` and `scores:end` markers, as [`markdown_table`]
    /// writes it. To refresh the page after changing the table:
    /// `TRIAGE_BLESS=1 cargo test --lib scores::tests::docs`.
    #[test]
    fn docs_list_every_declared_score() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/definitions.md");
        let page = std::fs::read_to_string(path).expect("docs/definitions.md");
        let (begin, end) = ("<!-- scores:begin -->\n", "<!-- scores:end -->");
        let a = page.find(begin).expect("scores:begin marker") + begin.len();
        let b = page.find(end).expect("scores:end marker");
        let want = markdown_table();
        if std::env::var("TRIAGE_BLESS").is_ok_and(|v| v == "1") {
            let fresh = format!("{}{want}{}", &page[..a], &page[b..]);
            std::fs::write(path, fresh).expect("write docs/definitions.md");
            return;
        }
        assert_eq!(
            &page[a..b],
            want,
            "docs/definitions.md's score list differs from the score table; \
             run TRIAGE_BLESS=1 cargo test --lib scores::tests::docs"
        );
    }

    /// Every score reads back what was set, whichever storage holds it;
    /// a classification item allocates none for the segmentation scores;
    /// equality ignores where an unset value is (not) stored.
    #[test]
    fn every_score_round_trips_through_its_slot() {
        let seg_only: Vec<Score> = TABLE
            .iter()
            .filter(|d| d.applies == Applies::Segmentation)
            .map(|d| d.score)
            .collect();
        assert_eq!(seg_only.len(), N_SEG);
        assert!(seg_only.contains(&Score::Miou) && !seg_only.contains(&Score::Ece));
        // Inline: the six per-sample scores (as f32) and the item's ECE.
        assert_eq!(N_COMMON, 1);
        assert_eq!(N_LATE, 3);
        let mut s = ItemScores::default();
        for (i, d) in TABLE.iter().enumerate() {
            s.set(d.score, Some(i as f64 + 0.5));
        }
        for (i, d) in TABLE.iter().enumerate() {
            assert_eq!(s.get(d.score), Some(i as f64 + 0.5), "{}", d.name);
        }
        for d in &TABLE {
            s.set(d.score, None);
            assert_eq!(s.get(d.score), None, "{}", d.name);
        }
        // Every value cleared: equal to a fresh set, though its
        // segmentation values are still allocated.
        assert!(s.seg.is_some());
        assert_eq!(s, ItemScores::default());
        assert_ne!(s.clone().with(Score::Miou, Some(0.0)), s);
        let c = ItemScores::default()
            .with(Score::Entropy, Some(0.1))
            .with(Score::Ece, Some(0.2))
            .with(Score::Miou, None)
            .with(Score::AnnotatorAgreement, None);
        assert!(c.seg.is_none() && c.late.is_none());
        let d = c.clone().with(Score::DupConflict, Some(0.3));
        assert!(d.seg.is_none() && d.late.is_some());
        assert_eq!(d.get(Score::DupConflict), Some(0.3));
        assert_eq!(d.get(Score::KnnDisagreement), None);
        assert_eq!(std::mem::size_of::<ItemScores>(), 64);
        // A per-sample value that is an f32 exactly stays narrow; one that
        // is not reads back exactly from the wide slot; setting an exact
        // one again narrows it; NaN and the signed zeros keep their bits.
        let f32_exact = f64::from(0.1f32);
        let mut w = ItemScores::default().with(Score::Entropy, Some(f32_exact));
        assert!(w.wide.is_none());
        assert_eq!(w.get(Score::Entropy), Some(f32_exact));
        w.set(Score::Margin, Some(0.1));
        assert!(w.wide.is_some() && w.wide_mask == 0b10);
        assert_eq!(w.get(Score::Margin), Some(0.1));
        assert_eq!(w.get(Score::Entropy), Some(f32_exact));
        w.set(Score::Margin, Some(0.25));
        assert_eq!((w.wide_mask, w.get(Score::Margin)), (0, Some(0.25)));
        w.set(Score::Brier, Some(-0.0));
        assert_eq!(
            w.get(Score::Brier).map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
        w.set(Score::Brier, Some(f64::NAN));
        assert!(w.get(Score::Brier).is_some_and(f64::is_nan));
        w.set(Score::Brier, Some(1e-300));
        assert_eq!(w.get(Score::Brier), Some(1e-300));
        assert_eq!(
            w.clone().with(Score::Margin, Some(0.1)),
            w.clone().with(Score::Margin, Some(0.1))
        );
    }

    #[test]
    fn table_names_are_unique_and_ids_are_positions() {
        for (i, d) in TABLE.iter().enumerate() {
            assert_eq!(d.score as usize, i, "{}", d.name);
            assert_eq!(Score::from_name(d.name), Some(d.score));
            assert!(d.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(d.level == Level::Sample, i < N_SAMPLE, "{}", d.name);
        }
        let mut names: Vec<_> = TABLE.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N_SCORES);
    }

    #[test]
    fn fields_follow_the_show_rules() {
        // A classification item: the per-sample scores and the ECE always,
        // written null when unset; nothing else.
        let c = ItemScores::default().with(Score::NormalizedMargin, Some(0.25));
        let names: Vec<_> = c.fields().iter().map(|(k, _)| *k).collect();
        let mut want: Vec<_> = TABLE[..N_SAMPLE].iter().map(|d| d.name).collect();
        want.push("ece");
        assert_eq!(names, want);
        assert_eq!(
            &names[..5],
            [
                "entropy",
                "margin",
                "least_confidence",
                "self_confidence",
                "normalized_margin"
            ]
        );
        assert_eq!(c.fields()[4].1, Some(0.25));
        assert_eq!(c.fields()[0].1, None);
        // One neighbour score brings its group; agreement only when set.
        let n = c
            .clone()
            .with(Score::KnnDisagreement, Some(0.5))
            .with(Score::AnnotatorAgreement, Some(f64::NAN));
        let names: Vec<_> = n.fields().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            &names[N_SAMPLE + 1..],
            ["dup_conflict", "knn_disagreement", "annotator_agreement"]
        );
        assert_eq!(n.finite_value("annotator_agreement"), None, "NaN is null");
        assert_eq!(n.finite_fields()[N_SAMPLE + 3].1, None);
        // A segmentation item: its seven scores, margin_softmin only when set.
        let s = ItemScores::segmentation(4096).with(Score::Miou, Some(0.75));
        assert_eq!(s.fields().len(), N_SAMPLE + 1 + 7);
        assert_eq!(s.finite_value("pixels"), Some(4096.0));
        assert_eq!(s.finite_value("miou"), Some(0.75));
        assert_eq!(s.finite_value("margin_softmin"), None);
        assert_eq!(s.finite_value("no_such_score"), None);
        let u = s.with(Score::MarginSoftmin, Some(0.1));
        assert_eq!(u.fields().len(), N_SAMPLE + 1 + 8);
        // A classification item never shows segmentation scores.
        assert_eq!(c.with(Score::Miou, Some(0.5)).finite_value("miou"), None);
    }

    #[test]
    fn sample_means_skip_label_scores_of_unlabelled_items() {
        let sums = ScoreSums::from_array(std::array::from_fn(|i| i as f64 * 4.0));
        let mut s = ItemScores::default();
        s.set_sample_means(&sums, 4, false);
        for d in &TABLE[..N_SAMPLE] {
            let want = (!d.needs_label).then_some(d.score as usize as f64);
            assert_eq!(s.get(d.score), want, "{}", d.name);
        }
        s.set_sample_means(&sums, 0, true);
        assert!(TABLE[..N_SAMPLE].iter().all(|d| s.get(d.score).is_none()));
    }

    #[test]
    fn serde_round_trips_and_refuses_unknown_or_repeated_names() {
        let s = ItemScores::segmentation(12)
            .with(Score::Entropy, Some(0.5))
            .with(Score::AnnotatorAgreement, Some(f64::NAN));
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            r#"{"segmentation":true,"entropy":0.5,"pixels":12.0,"annotator_agreement":null}"#
        );
        let back: ItemScores = serde_json::from_str(&text).unwrap();
        assert_eq!(back.fields().len(), s.fields().len());
        assert!(back.get(Score::AnnotatorAgreement).unwrap().is_nan());
        let e = serde_json::from_str::<ItemScores>(r#"{"entropy":1,"bogus":2}"#).unwrap_err();
        assert!(e.to_string().contains("unknown score `bogus`"), "{e}");
        let e = serde_json::from_str::<ItemScores>(r#"{"entropy":1,"entropy":2}"#).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }
}
