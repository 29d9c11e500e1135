//! One parity suite over every backend configuration, after ripgrep's
//! `SearcherTester` (`crates/searcher/src/testutil.rs`): a case is computed
//! once by the reference, the scalar CPU path ([`CpuBackend::scalar`],
//! whose kernels state the formulas), then run through every configuration,
//! each failure naming the configuration and the case.
//!
//! Configurations: the CPU backend at the best SIMD level this CPU has
//! (`cpu-avx2` on x86-64 with AVX2 and FMA; none when that level is the
//! scalar one, e.g. under `TRIAGE_SIMD=off`, as it would only repeat the
//! reference); the GPU backend; [`Fallback`]
//! wrapping the GPU (which must not have fallen back); and the GPU with small
//! tiles, upload chunks, bindings and kNN chunks ([`SizeLimits`]), so that
//! small inputs span several tiles, chunks, slot groups and kNN chunks.
//!
//! Integer counts must be bit-exact, float scores within [`FLOAT_TOLERANCE`].
//! [`Tester::finish`] fails when a configuration compared nothing. Without
//! an adapter the GPU configurations are skipped with a message, unless
//! `TRIAGE_REQUIRE_GPU=1`: then a missing adapter fails.

use std::fmt::Debug;

use std::collections::BTreeSet;
use triage::backend::cpu::CpuBackend;
use triage::backend::fallback::Fallback;
use triage::backend::gpu::{AdapterPolicy, FLOAT_TOLERANCE, GpuBackend, SizeLimits};
use triage::backend::{Backend, RowBatch, RowScores, SegBatch, SegItemStats};
use triage::neighbors::{Embeddings, KnnGraph};
use triage::score;
use triage::scores::{Stage, TABLE};

/// Open a GPU backend with `sizes`: `None` (with a message) when there is no
/// adapter, a panic when `TRIAGE_REQUIRE_GPU=1` and there is none or when
/// the adapter is unusable.
pub fn gpu_with(sizes: SizeLimits) -> Option<GpuBackend> {
    let required = std::env::var("TRIAGE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match GpuBackend::with_limits(AdapterPolicy::AnyAdapter, sizes) {
        Ok(Some(g)) => {
            let info = g.info();
            assert_eq!(info.name, "gpu");
            assert!(info.adapter.is_some(), "the GPU backend names its adapter");
            Some(g)
        }
        Ok(None) if required => panic!("TRIAGE_REQUIRE_GPU=1 but no GPU adapter was found"),
        Ok(None) => {
            eprintln!("skipped: no GPU adapter (install mesa-vulkan-drivers for lavapipe)");
            None
        }
        Err(e) => panic!("GPU adapter found but unusable: {e}"),
    }
}

/// The GPU backend with the default sizes (see [`gpu_with`]).
pub fn gpu() -> Option<GpuBackend> {
    gpu_with(SizeLimits::default())
}

/// What kind of backend a configuration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cpu,
    Gpu,
    Fallback,
}

/// One backend configuration.
pub struct Config {
    pub name: String,
    pub kind: Kind,
    /// The sizes a GPU configuration cuts work into.
    pub sizes: Option<SizeLimits>,
    pub backend: Box<dyn Backend>,
}

/// Small sizes: one tile per 256 samples, one tile per upload chunk, 1 MiB
/// bindings (so C = 150 groups hold a few items), 37 kNN rows per chunk.
pub const SMALL_TILES: SizeLimits = SizeLimits {
    max_tile: 256,
    chunk_bytes: 1,
    binding: 1 << 20,
    knn_rows: 37,
};

/// Small chunks: 512-sample tiles, 48 KiB upload chunks (several tiles per
/// chunk at few classes), 2 MiB bindings, 64 kNN rows per chunk.
pub const SMALL_CHUNKS: SizeLimits = SizeLimits {
    max_tile: 512,
    chunk_bytes: 48 << 10,
    binding: 2 << 20,
    knn_rows: 64,
};

/// Counts the comparisons made for one (configuration, case) and labels
/// every failure with both. `want` is the CPU reference's value (or a
/// hand-worked one).
pub struct Check<'a> {
    at: String,
    count: &'a mut usize,
    covered: &'a mut BTreeSet<&'static str>,
}

impl Check<'_> {
    /// `got == want`, exactly.
    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        *self.count += 1;
        assert!(
            got == want,
            "{}: {what}: got {got:?}, want {want:?}",
            self.at
        );
    }

    /// `|got − want| ≤ FLOAT_TOLERANCE`.
    pub fn close(&mut self, what: &str, got: f64, want: f64) {
        *self.count += 1;
        assert!(
            (got - want).abs() <= FLOAT_TOLERANCE,
            "{}: {what}: got {got}, want {want} (the CPU reference; tolerance {FLOAT_TOLERANCE})",
            self.at
        );
    }

    /// Declared score `name` of one item: defined on both sides or on
    /// neither, and within [`FLOAT_TOLERANCE`] when defined (then counted
    /// as covered for [`Tester::finish_covering_every_score`]).
    pub fn score(&mut self, what: &str, name: &'static str, got: Option<f64>, want: Option<f64>) {
        self.eq(
            &format!("{what}: {name} defined"),
            got.is_some(),
            want.is_some(),
        );
        if let (Some(g), Some(w)) = (got, want) {
            if g.is_nan() && w.is_nan() {
                return;
            }
            self.close(&format!("{what}: {name}"), g, w);
            self.covered.insert(name);
        }
    }

    /// `cond`, a hand-worked expectation.
    pub fn holds(&mut self, what: &str, cond: bool) {
        *self.count += 1;
        assert!(cond, "{}: {what}", self.at);
    }

    /// Where this check is: `[configuration] case`.
    pub fn at(&self) -> &str {
        &self.at
    }
}

/// Runs cases through every configuration.
pub struct Tester {
    configs: Vec<Config>,
    counts: Vec<usize>,
    covered: Vec<BTreeSet<&'static str>>,
    reference: CpuBackend,
}

impl Tester {
    /// Every configuration this machine offers (see the module docs).
    pub fn new() -> Tester {
        let mut configs = Vec::new();
        let cpu = CpuBackend::new();
        if cpu.level() != triage::backend::simd::Level::Scalar {
            configs.push(Config {
                name: format!("cpu-{}", cpu.level().name()),
                kind: Kind::Cpu,
                sizes: None,
                backend: Box::new(cpu),
            });
        }
        if let Some(g) = gpu() {
            configs.push(Config {
                name: "gpu".into(),
                kind: Kind::Gpu,
                sizes: Some(SizeLimits::default()),
                backend: Box::new(g),
            });
            if let Some(g) = gpu() {
                configs.push(Config {
                    name: "fallback(gpu)".into(),
                    kind: Kind::Fallback,
                    sizes: Some(SizeLimits::default()),
                    backend: Box::new(Fallback::new(Box::new(g))),
                });
            }
            for (name, sizes) in [
                ("gpu small tiles", SMALL_TILES),
                ("gpu small chunks", SMALL_CHUNKS),
            ] {
                if let Some(g) = gpu_with(sizes) {
                    configs.push(Config {
                        name: name.into(),
                        kind: Kind::Gpu,
                        sizes: Some(sizes),
                        backend: Box::new(g),
                    });
                }
            }
        }
        let counts = vec![0; configs.len()];
        let covered = vec![BTreeSet::new(); configs.len()];
        Tester {
            configs,
            counts,
            covered,
            reference: CpuBackend::scalar(),
        }
    }

    /// The configurations, to reason about their sizes.
    pub fn configs(&self) -> &[Config] {
        &self.configs
    }

    /// The CPU reference.
    pub fn reference(&self) -> &CpuBackend {
        &self.reference
    }

    /// Run `f` once per configuration with a labelled [`Check`]; afterwards
    /// insist that a GPU configuration still runs on the GPU (a
    /// [`Fallback`] that fell back would pass every comparison on the CPU).
    pub fn each(&mut self, case: &str, mut f: impl FnMut(&mut Check<'_>, &Config)) {
        for ((config, count), covered) in self
            .configs
            .iter()
            .zip(&mut self.counts)
            .zip(&mut self.covered)
        {
            let mut check = Check {
                at: format!("[{}] {case}", config.name),
                count,
                covered,
            };
            f(&mut check, config);
            let info = config.backend.info();
            let want = if config.kind == Kind::Cpu {
                "cpu"
            } else {
                "gpu"
            };
            check.eq(
                "backend that produced the numbers",
                info.name.as_str(),
                want,
            );
        }
    }

    /// A segmentation batch: every item's counts and scores.
    pub fn seg(&mut self, case: &str, batch: &SegBatch) -> Vec<SegItemStats> {
        let want = self
            .reference
            .score_items(batch)
            .unwrap_or_else(|e| panic!("[reference] {case}: {e}"));
        self.each(case, |check, config| {
            let got = config
                .backend
                .score_items(batch)
                .unwrap_or_else(|e| panic!("{}: score_items failed: {e}", check.at()));
            compare_items(check, batch, &got, &want);
        });
        want
    }

    /// A classification batch: every row's scores and the reliability table.
    pub fn rows(&mut self, case: &str, batch: &RowBatch) -> RowScores {
        let want = self
            .reference
            .score_rows(batch)
            .unwrap_or_else(|e| panic!("[reference] {case}: {e}"));
        self.each(case, |check, config| {
            let got = config
                .backend
                .score_rows(batch)
                .unwrap_or_else(|e| panic!("{}: score_rows failed: {e}", check.at()));
            compare_rows(check, batch, &got, &want);
        });
        want
    }

    /// The exact kNN graph: the same neighbours in the same order and
    /// bit-identical distances; the method says who built it.
    pub fn knn(&mut self, case: &str, emb: &Embeddings, k: usize) -> KnnGraph {
        let want = self
            .reference
            .knn_exact(emb, k)
            .unwrap_or_else(|e| panic!("[reference] {case}: {e}"));
        self.each(case, |check, config| {
            let got = config
                .backend
                .knn_exact(emb, k)
                .unwrap_or_else(|e| panic!("{}: knn_exact failed: {e}", check.at()));
            let method = if config.kind == Kind::Cpu {
                "exact"
            } else {
                "exact-gpu"
            };
            check.eq("method", got.method, method);
            check.eq("k", got.k, want.k);
            check.eq("neighbour ids", &got.ids, &want.ids);
            check.eq("distances", &got.dist, &want.dist);
        });
        want
    }

    /// The label × label counts of a mask pair, bit for bit.
    pub fn mask(&mut self, case: &str, a: &[u16], b: &[u16], classes: usize, ignore: u16) {
        let want = self
            .reference
            .mask_confusion(a, b, classes, ignore)
            .unwrap_or_else(|e| panic!("[reference] {case}: {e}"));
        self.each(case, |check, config| {
            let got = config
                .backend
                .mask_confusion(a, b, classes, ignore)
                .unwrap_or_else(|e| panic!("{}: mask_confusion failed: {e}", check.at()));
            check.eq("counts", got.rows(), want.rows());
        });
    }

    /// The Boundary IoU band counts of two annotators' maps, bit for bit.
    #[allow(clippy::too_many_arguments)]
    pub fn bands(
        &mut self,
        case: &str,
        a: &[u16],
        b: &[u16],
        dims: (usize, usize),
        classes: usize,
        ignore: u16,
    ) {
        let want = self
            .reference
            .mask_bands(a, b, dims, classes, ignore)
            .unwrap_or_else(|e| panic!("[reference] {case}: {e}"));
        self.each(case, |check, config| {
            let got = config
                .backend
                .mask_bands(a, b, dims, classes, ignore)
                .unwrap_or_else(|e| panic!("{}: mask_bands failed: {e}", check.at()));
            check.eq("band intersections", &got.inter, &want.inter);
            check.eq("first map's bands", &got.gt, &want.gt);
            check.eq("second map's bands", &got.pred, &want.pred);
        });
    }

    /// [`Tester::finish`], and fail unless every configuration compared
    /// every score of the score table that the score stage computes from a
    /// backend's numbers ([`Stage::Score`]) with a defined value.
    pub fn finish_covering_every_score(self) {
        for (config, covered) in self.configs.iter().zip(&self.covered) {
            for d in TABLE.iter().filter(|d| d.stage == Stage::Score) {
                assert!(
                    covered.contains(d.name),
                    "[{}] never compared the declared score {}",
                    config.name,
                    d.name
                );
            }
        }
        self.finish();
    }

    /// Fail when a configuration compared nothing; report what ran.
    pub fn finish(self) {
        for (config, &n) in self.configs.iter().zip(&self.counts) {
            eprintln!("parity: [{}] {n} comparisons", config.name);
            assert!(n > 0, "[{}] tested nothing", config.name);
        }
    }
}

fn compare_items(
    check: &mut Check<'_>,
    batch: &SegBatch,
    got: &[SegItemStats],
    want: &[SegItemStats],
) {
    check.eq("items", got.len(), want.len());
    for (i, (g, c)) in got.iter().zip(want).enumerate() {
        let it = |what: &str| format!("item {i}: {what}");
        check.eq(&it("first invalid"), g.first_invalid, c.first_invalid);
        check.eq(&it("pixels"), g.pixels, c.pixels);
        check.eq(&it("confusion"), &g.confusion, &c.confusion);
        check.eq(&it("bin counts"), g.bins.count, c.bins.count);
        check.eq(&it("bin correct"), g.bins.correct, c.bins.correct);
        check.eq(&it("Boundary IoU band counts"), &g.bands, &c.bands);
        if c.first_invalid.is_some() {
            continue;
        }
        // Every declared score, as the score stage reports it from these
        // sums and counts.
        let (gs, cs) = match batch.items[i].unlabelled {
            true => (
                score::unlabelled_seg_item_scores(g),
                score::unlabelled_seg_item_scores(c),
            ),
            false => (score::seg_item_scores(g).0, score::seg_item_scores(c).0),
        };
        for d in &TABLE {
            check.score(&it("score"), d.name, gs.get(d.score), cs.get(d.score));
        }
        for m in 0..15 {
            let k = c.bins.count[m].max(1) as f64;
            check.close(
                &it(&format!("bin {m} mean confidence")),
                g.bins.confidence_sum[m] / k,
                c.bins.confidence_sum[m] / k,
            );
        }
        match (g.bins.ece(), c.bins.ece()) {
            (Some(a), Some(b)) => check.close(&it("ece"), a, b),
            (a, b) => check.eq(&it("ece defined"), a.is_some(), b.is_some()),
        }
    }
}

fn compare_rows(check: &mut Check<'_>, batch: &RowBatch, got: &RowScores, want: &RowScores) {
    check.eq("first invalid", got.first_invalid, want.first_invalid);
    check.eq("bin counts", got.bins.count, want.bins.count);
    check.eq("bin correct", got.bins.correct, want.bins.correct);
    for m in 0..15 {
        let k = want.bins.count[m].max(1) as f64;
        check.close(
            &format!("bin {m} mean confidence"),
            got.bins.confidence_sum[m] / k,
            want.bins.confidence_sum[m] / k,
        );
    }
    check.eq("rows", got.samples.len(), want.samples.len());
    let valid = want.first_invalid.unwrap_or(want.samples.len());
    for (r, (g, c)) in got
        .samples
        .iter()
        .zip(&want.samples)
        .take(valid)
        .enumerate()
    {
        check.eq(&format!("row {r}: pred"), g.pred, c.pred);
        check.close(
            &format!("row {r}: confidence"),
            g.confidence as f64,
            c.confidence as f64,
        );
        // Every declared score a row has, as the score stage reports it:
        // labelled (against the row's label) and unlabelled.
        for labelled in [true, false] {
            let y = batch.labels[r];
            let gs = score::row_scores(g, y, labelled);
            let cs = score::row_scores(c, y, labelled);
            for d in &TABLE {
                check.score(
                    &format!("row {r}"),
                    d.name,
                    gs.get(d.score),
                    cs.get(d.score),
                );
            }
        }
    }
}
