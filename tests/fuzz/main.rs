//! Fuzzing the real `triage` binary with hostile inputs (issue 25): every
//! file it reads (`.npy`, PNG masks and images, items.csv, annotations.csv,
//! the review decisions CSV, triage.toml, reviews.jsonl, `--previous`'s
//! queue.jsonl, shard partials, the `--resume` checkpoint, `--cache`
//! files), the contents of `--out` and the numeric options, mutated from
//! valid tiny datasets by proptest strategies (see `mutate.rs`). Each case
//! runs the binary (`--backend cpu`) and must keep the properties of
//! `check.rs`: exit 0 or 2, no panic, no signal, peak RSS under 512 MiB,
//! done within 20 s, nothing written outside `--out` but what the command
//! documents. The labels-file readers (COCO JSON, Label Studio JSON,
//! `labelfile.rs`) and `.npz` archives (`npz.rs`) are fuzzed in process, on
//! the same mutations.
//!
//! Knobs (environment):
//! - `TRIAGE_FUZZ_CASES`: cases per file kind (default [`DEFAULT_CASES`]);
//! - `TRIAGE_FUZZ_SEED`: the RNG seed, decimal or 0x-hex (default
//!   [`DEFAULT_SEED`]: CI is reproducible); printed with every failure;
//! - `TRIAGE_FUZZ_CASE`: run only case number N (to reproduce one);
//! - `TRIAGE_FUZZ_TIMEOUT_S` (20), `TRIAGE_FUZZ_RSS_MIB` (512),
//!   `TRIAGE_FUZZ_DATA_MIB` (1024, the RLIMIT_DATA of the binary, so that a
//!   hostile allocation fails fast instead of taking the machine),
//!   `TRIAGE_FUZZ_SHRINK` (64 shrink steps per new failure class);
//! - `TRIAGE_FUZZ_DEBUG=1`: one line per case and shrink step (with
//!   `--nocapture`).
//!
//! Every failing class is shrunk (proptest's value trees) and saved under
//! `target/fuzz-failures/<kind>/` (the whole case directory, the mutated
//! input and a README with the command); the test fails at the end with a
//! list of the classes. `benches/fuzz.sh` runs the same with more cases and
//! a random seed.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod fixtures;
mod labelfile;
mod mutate;
mod npz;
mod png;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use check::{Failure, Limits, Policy};
use common::Measured;
use fixtures::{BASE, Fx, OUT, RUN, Template};
use mutate::{FileMut, Format, Mut, Plant};

/// Cases per file kind in CI: 13 kinds, about 2 minutes for the whole
/// binary on 2 cores once every case is refused quickly.
pub const DEFAULT_CASES: u32 = 200;
pub const DEFAULT_SEED: u64 = 0x7472_6961_6765_0025;

/// What a kind runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmd {
    /// `triage run ds --out OUT`.
    Run,
    /// ... `--previous prev`.
    Previous,
    /// `triage review-import ds decisions.csv`.
    Import,
    /// `triage merge parts/p0 parts/p1 --out OUT`.
    Merge,
    /// `run ... --resume --batch-size 1` with the checkpoint in OUT.
    Resume,
    /// `run ... --cache cache`.
    Cache,
}

struct Kind {
    name: &'static str,
    format: Format,
    fixtures: &'static [Fx],
    cmd: Cmd,
    /// The files of a template this kind mutates (paths relative to the
    /// base); none for the out-dir and options kinds.
    targets: fn(&Template) -> Vec<String>,
    /// A run that exits 0 must write what a clean run writes: the damaged
    /// state was refused or not used (cache, checkpoint, partials), or the
    /// mask was re-encoded without loss.
    compare: bool,
}

/// One case: which fixture, which of its target files, what mutations.
#[derive(Clone, Debug)]
struct Spec {
    fixture: u8,
    target: u8,
    muts: Vec<Mut>,
}

fn spec(format: Format) -> BoxedStrategy<Spec> {
    (
        prop::collection::vec(mutate::mutation(format), 1..=3),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(muts, fixture, target)| Spec {
            fixture,
            target,
            muts,
        })
        .boxed()
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(env_num("TRIAGE_FUZZ_TIMEOUT_S", 20)),
        rss: env_num("TRIAGE_FUZZ_RSS_MIB", 512) << 20,
    }
}

/// Set up this test process once: limit its data segment (heap and
/// anonymous mappings), and so that of every `triage` it starts, so an
/// allocation sized by a hostile number fails at once (abort, reported as
/// OOM) instead of swapping the machine; peak RSS is judged separately,
/// against a much lower bound. And print panics without a backtrace:
/// symbolising one maps this binary's debug info (hundreds of MiB of RSS),
/// and a child's `ru_maxrss` starts from its parent's peak (exec records
/// the pre-exec image's high-water mark, which `posix_spawn` shares with
/// the parent), so one failing test would make every later case look over
/// the memory bound.
fn limit_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
        let bytes = env_num("TRIAGE_FUZZ_DATA_MIB", 1024) << 20;
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: plain setrlimit on this process.
        let r = unsafe { libc::setrlimit(libc::RLIMIT_DATA, &lim) };
        assert_eq!(r, 0, "setrlimit: {}", std::io::Error::last_os_error());
    });
}

/// The kind's RNG: ChaCha seeded from the seed and the kind's name.
fn rng(seed: u64, kind: &str) -> TestRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kind.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let mut st = seed ^ h;
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        // splitmix64
        st = st.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = st;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// The outputs a clean run wrote, to compare a run on damaged state with:
/// the queue files, clusters, to_label files and report.json (without its
/// `score_cache` counts).
type Outputs = Vec<(&'static str, Option<Vec<u8>>)>;

fn read_outputs(out: &Path) -> Outputs {
    [
        "queue.jsonl",
        "queue.csv",
        "clusters.jsonl",
        "to_label.jsonl",
        "to_label.csv",
        "report.json",
    ]
    .into_iter()
    .map(|f| {
        let b = std::fs::read(out.join(f)).ok();
        let b =
            match (f, b) {
                ("report.json", Some(b)) => serde_json::from_slice::<serde_json::Value>(&b)
                    .ok()
                    .map(|mut v| {
                        if let Some(o) = v.as_object_mut() {
                            o.shift_remove("score_cache");
                        }
                        serde_json::to_vec(&v).unwrap()
                    }),
                (_, b) => b,
            };
        (f, b)
    })
    .collect()
}

/// The fixtures of a kind, with what a clean run writes on each (for the
/// kinds whose state must never change the results: cache, checkpoint,
/// partials).
struct Ctx<'a> {
    kind: &'a Kind,
    templates: Vec<Template>,
    refs: Vec<Option<Outputs>>,
    limits: Limits,
}

/// A finished case; its directory is kept until dropped.
struct CaseRun {
    dir: tempfile::TempDir,
    fixture: Fx,
    target: Option<String>,
    args: Vec<String>,
    measured: Measured,
    writes: Vec<String>,
    failures: Vec<Failure>,
    /// Its outputs (exit 0) were compared with a clean run's.
    compared: bool,
}

/// An argument as exec can take it (no NUL, at most 100 000 bytes).
fn arg(s: &str) -> String {
    let mut s = s.replace('\0', "\\0");
    if s.len() > 100_000 {
        let mut cut = 100_000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn mkfifo(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; the result is checked.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn remove_any(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).unwrap(),
        Ok(_) => std::fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

/// Replace the file at `p` (whose mutated bytes are `bytes`) as `f` says.
fn replace_file(p: &Path, f: FileMut, root: &Path, bytes: &[u8]) {
    use std::os::unix::fs::symlink;
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    remove_any(p);
    match f {
        FileMut::Empty => std::fs::write(p, b"").unwrap(),
        FileMut::DevZero => symlink("/dev/zero", p).unwrap(),
        FileMut::OutsideCopy => {
            let copy = root.join("outside").join(format!("copy-{name}"));
            std::fs::write(&copy, bytes).unwrap();
            symlink(&copy, p).unwrap();
        }
        FileMut::Dangling => symlink(root.join("outside").join(format!("new-{name}")), p).unwrap(),
        FileMut::Dir => std::fs::create_dir_all(p).unwrap(),
        FileMut::Fifo => mkfifo(p),
        FileMut::Sparse => {
            std::fs::write(p, bytes).unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(8 << 30).unwrap();
        }
    }
}

fn plant(out: &Path, name: &str, what: Plant, root: &Path, n: usize) {
    use std::os::unix::fs::symlink;
    let p = out.join(name);
    if std::fs::create_dir_all(p.parent().unwrap()).is_err()
        || std::fs::symlink_metadata(&p).is_ok()
    {
        return;
    }
    let outside = root.join("outside");
    match what {
        Plant::LinkFile => symlink(outside.join("canary.txt"), &p).unwrap(),
        Plant::LinkDir => symlink(outside.join("dir"), &p).unwrap(),
        Plant::Dangling => symlink(outside.join(format!("planted-{n}")), &p).unwrap(),
        Plant::Dir => std::fs::create_dir_all(&p).unwrap(),
        Plant::Junk => std::fs::write(&p, "junk\n").unwrap(),
        Plant::Fifo => mkfifo(&p),
    }
}

/// Run one case: copy the template, mutate, run the binary, judge.
fn run_case(ctx: &Ctx, spec: &Spec) -> CaseRun {
    let (kind, limits) = (ctx.kind, &ctx.limits);
    let fi = spec.fixture as usize % ctx.templates.len();
    let t = &ctx.templates[fi];
    let dir = t.instantiate();
    let root = dir.path().to_path_buf();
    let base = root.join(BASE);
    if kind.cmd == Cmd::Resume {
        std::fs::create_dir_all(base.join(OUT)).unwrap();
        std::fs::copy(
            base.join(fixtures::CHECKPOINT),
            base.join(OUT).join(".triage-checkpoint.jsonl"),
        )
        .unwrap();
    }
    let t_model = |rel: &str| t.model(rel);
    let targets = (kind.targets)(t);
    let target =
        (!targets.is_empty()).then(|| targets[spec.target as usize % targets.len()].clone());
    if let Some(rel) = &target {
        let p = base.join(rel);
        let mut bytes = std::fs::read(&p).unwrap();
        let file = mutate::apply(&mut bytes, &t.model(rel), &spec.muts, &root);
        std::fs::write(&p, &bytes).unwrap();
        if let Some(f) = file {
            replace_file(&p, f, &root, &bytes);
        }
    }

    // The command line: option groups, a later group replacing an earlier
    // one of the same option.
    let mut out_rel = OUT.to_string();
    let mut groups: Vec<Vec<String>> = Vec::new();
    let add = |groups: &mut Vec<Vec<String>>, g: Vec<String>| {
        groups.retain(|x| x[0] != g[0]);
        groups.push(g);
    };
    let run_opts: &[&str] = if kind.format == Format::Options {
        &RUN[..3]
    } else {
        RUN
    };
    for pair in run_opts.chunk_by(|_, b| !b.starts_with("--")) {
        add(&mut groups, pair.iter().map(|s| s.to_string()).collect());
    }
    match kind.cmd {
        Cmd::Previous => add(&mut groups, vec!["--previous".into(), "prev".into()]),
        Cmd::Resume => {
            add(&mut groups, vec!["--resume".into()]);
            add(&mut groups, vec!["--batch-size".into(), "1".into()]);
        }
        Cmd::Cache => add(&mut groups, vec!["--cache".into(), "cache".into()]),
        _ => {}
    }
    let mut plants = Vec::new();
    for m in &spec.muts {
        match m {
            Mut::OutAt(i) => out_rel = mutate::OUT_AT[*i].to_string(),
            Mut::Flag(i) => add(
                &mut groups,
                mutate::FLAGS[*i].iter().map(|s| s.to_string()).collect(),
            ),
            Mut::Opt { opt, val } => {
                let name = mutate::OPTIONS[*opt];
                let v = if name == "--shard" {
                    format!("0/{}", val.text())
                } else {
                    val.text()
                };
                add(&mut groups, vec![name.to_string(), arg(&v)]);
            }
            Mut::ItemsAs(i) => {
                let ds = base.join("ds");
                if ds.join("items.csv").is_file() {
                    let name = mutate::ITEMS_AS[*i];
                    std::fs::rename(ds.join("items.csv"), ds.join(name)).unwrap();
                    let toml = std::fs::read_to_string(ds.join("triage.toml")).unwrap();
                    std::fs::write(
                        ds.join("triage.toml"),
                        toml.replace("items = \"items.csv\"", &format!("items = \"{name}\"")),
                    )
                    .unwrap();
                }
            }
            Mut::Plant { name, what } => plants.push((mutate::PLANT_NAMES[*name], *what)),
            _ => {}
        }
    }
    let out_abs = check::normalize(&base.join(&out_rel));
    let mut args: Vec<String> = match kind.cmd {
        Cmd::Import => vec!["review-import".into(), "ds".into(), "decisions.csv".into()],
        Cmd::Merge => vec![
            "merge".into(),
            "parts/p0".into(),
            "parts/p1".into(),
            "--out".into(),
            out_rel.clone(),
        ],
        _ => vec!["run".into(), "ds".into(), "--out".into(), out_rel.clone()],
    };
    if kind.cmd != Cmd::Import {
        args.extend(groups.iter().flatten().cloned());
    }

    let has = |opt: &str| args.iter().any(|a| a == opt);
    let mut policy = Policy {
        protected: vec![base.join("ds")],
        ..Policy::default()
    };
    if kind.cmd == Cmd::Import {
        policy.writable_files.push(base.join("ds/reviews.jsonl"));
        policy.protected.push(base.join("decisions.csv"));
    } else {
        policy.out = Some(out_abs.clone());
    }
    if kind.cmd == Cmd::Merge {
        policy.protected.push(base.join("parts"));
    }
    // `--previous DIR` may be `--out` itself (last night's outputs, replaced
    // by tonight's, as any run in that directory replaces them: documented
    // in docs/threat-model.md); otherwise it is an input.
    if has("--previous") && out_abs != check::normalize(&base.join("prev")) {
        policy.protected.push(base.join("prev"));
    }
    if has("--cache") {
        policy.writable.push(base.join("cache"));
    }
    if has("--index") {
        policy.writable.push(base.join("idx"));
    }

    policy.freeze_inputs();
    for (n, (name, what)) in plants.iter().enumerate() {
        std::fs::create_dir_all(&out_abs).unwrap();
        plant(&out_abs, name, *what, &root, n);
    }
    let before = check::snapshot(&root);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let measured = common::triage_measured(&argv, Some(&base), limits.timeout);
    let after = check::snapshot(&root);
    let writes = check::violations(&before, &after, &policy, &base);
    let mut failures = check::judge(&measured, &writes, limits);
    let exit0 = measured.output.status.code() == Some(0);
    let holds_input = policy
        .out
        .as_ref()
        .is_some_and(|o| policy.protected.iter().any(|p| p.starts_with(o)));
    if holds_input && exit0 {
        failures.push(Failure {
            class: "an --out that is or contains an input of the run is not refused (exit 0)"
                .into(),
            detail: format!("--out {out_rel}"),
        });
    }
    // Masks re-encoded without loss must read as the same class ids.
    let lossless = target
        .as_deref()
        .filter(|t| t.contains("/masks/") || t.contains("/ann/"))
        .and_then(|t| mutate::lossless_reformat(&t_model(t), &spec.muts));
    let want = ctx
        .refs
        .get(fi)
        .and_then(Option::as_ref)
        .filter(|_| kind.compare);
    let compared = want.is_some() && policy.out.is_some() && exit0;
    if let (Some(want), Some(out), true) = (want, &policy.out, exit0) {
        let got = read_outputs(out);
        let differ: Vec<&str> = want
            .iter()
            .zip(&got)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0)
            .collect();
        if !differ.is_empty() {
            let class = match &lossless {
                Some(f) => format!(
                    "a mask re-encoded losslessly as {f} PNG reads as other class ids (exit 0, other outputs)"
                ),
                None => {
                    "exit 0 with outputs that differ from a clean run's (damaged state trusted)"
                        .into()
                }
            };
            failures.push(Failure {
                class,
                detail: format!("differ: {}", differ.join(", ")),
            });
        }
    }
    CaseRun {
        dir,
        fixture: t.fx,
        target,
        args,
        measured,
        writes,
        failures,
        compared,
    }
}

fn failures_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("fuzz-failures")
        .join(kind)
}

/// Copy a case directory for the record: regular files up to 16 MiB,
/// symlinks as symlinks, anything else listed in `SPECIAL.txt`.
fn keep(from: &Path, to: &Path, special: &mut String) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (p, t) = (e.path(), to.join(e.file_name()));
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.file_type().is_symlink() {
            let l = std::fs::read_link(&p).unwrap_or_default();
            let _ = std::os::unix::fs::symlink(&l, &t);
            special.push_str(&format!("{} -> {} (symlink)\n", p.display(), l.display()));
        } else if m.is_dir() {
            keep(&p, &t, special);
        } else if m.is_file() && m.len() <= 16 << 20 {
            let _ = std::fs::copy(&p, &t);
        } else {
            special.push_str(&format!(
                "{}: {:?}, {} bytes (not copied)\n",
                p.display(),
                m.file_type(),
                m.len()
            ));
        }
    }
}

fn slug(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut v = v
        .split('-')
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    v.truncate(80);
    v
}

/// Save a failing case under target/fuzz-failures/<kind>/ and say where.
#[allow(clippy::too_many_arguments)]
fn save(
    kind: &Kind,
    n: usize,
    class: &str,
    spec: &Spec,
    run: &CaseRun,
    seed: u64,
    case: u32,
    shrunk: usize,
) -> PathBuf {
    let reproduce = if kind.name == "png_lossless" {
        "cargo test --test fuzz masks_reencoded_without_loss_read_the_same -- --nocapture"
            .to_string()
    } else {
        format!(
            "TRIAGE_FUZZ_SEED={seed:#x} TRIAGE_FUZZ_CASE={case} cargo test --test fuzz -- --exact {} --nocapture",
            kind.name
        )
    };
    let dir = failures_dir(kind.name).join(format!("{n:02}-{}", slug(class)));
    let _ = std::fs::remove_dir_all(&dir);
    let mut special = String::new();
    keep(run.dir.path(), &dir.join("case"), &mut special);
    let base = run.dir.path().join(BASE);
    if let Some(t) = &run.target {
        let p = base.join(t);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() <= 16 << 20) {
            let name = t.replace('/', "_");
            std::fs::copy(&p, dir.join(format!("input-{name}"))).unwrap();
        }
    }
    let stderr = String::from_utf8_lossy(&run.measured.output.stderr);
    let err_tail: String = stderr
        .chars()
        .rev()
        .take(4000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let details: Vec<String> = run
        .failures
        .iter()
        .map(|f| format!("- {}\n{}", f.class, f.detail))
        .collect();
    let readme = format!(
        "fuzz kind: {}\nclass: {class}\nseed: {seed:#018x}, case {case} (shrunk {shrunk} steps)\n\
         reproduce: {reproduce}\n\
         fixture: {:?}\ntarget: {}\nmutations: {:#?}\n\n\
         command (cd case/{BASE}): triage {}\nexit: {:?}, peak RSS {} MiB, timed out: {}\n\n\
         broken properties:\n{}\n\nwrites outside --out:\n{}\n\nspecial files:\n{special}\n\nstderr (tail):\n{err_tail}\n",
        kind.name,
        run.fixture,
        run.target.as_deref().unwrap_or("-"),
        spec.muts,
        run.args
            .iter()
            .map(|a| if a.len() > 200 {
                format!(
                    "'{}…({} bytes)'",
                    a.chars().take(60).collect::<String>(),
                    a.len()
                )
            } else {
                format!("'{a}'")
            })
            .collect::<Vec<_>>()
            .join(" "),
        run.measured.output.status,
        run.measured.peak_rss >> 20,
        run.measured.timed_out,
        details.join("\n"),
        run.writes.join("\n"),
    );
    std::fs::write(dir.join("README.txt"), readme).unwrap();
    dir
}

/// Run the unmutated command on each fixture: it must succeed (exit 0) and
/// keep every property, or the fuzzing would start from a refused input.
/// Returns, for the kinds whose state must not change the results, the
/// outputs of a clean run (without the cache, without the checkpoint; the
/// unmutated merge).
fn baseline(ctx: &Ctx) -> Vec<Option<Outputs>> {
    let kind = ctx.kind;
    let mut refs = Vec::new();
    for (i, t) in ctx.templates.iter().enumerate() {
        let spec = Spec {
            fixture: i as u8,
            target: 0,
            muts: Vec::new(),
        };
        let run = run_case(ctx, &spec);
        let err = String::from_utf8_lossy(&run.measured.output.stderr);
        assert!(
            run.failures.is_empty() && run.measured.output.status.code() == Some(0),
            "{}: the unmutated case of {:?} fails: triage {}\n{:?}\n{err}",
            kind.name,
            t.fx,
            run.args.join(" "),
            run.failures
        );
        let base = run.dir.path().join(BASE);
        let outputs = read_outputs(&base.join(OUT));
        let report = || -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(base.join(OUT).join("report.json")).unwrap())
                .unwrap()
        };
        // The state file under test is really used, and a clean run's
        // outputs are what the unmutated state gives.
        let clean = |extra: &[&str]| {
            let mut a = vec!["run", "ds", "--out", "clean"];
            a.extend_from_slice(RUN);
            a.extend_from_slice(extra);
            fixtures::run_in(&base, &a, 0);
            let o = read_outputs(&base.join("clean"));
            let differ: Vec<&str> = o
                .iter()
                .zip(&outputs)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0)
                .collect();
            assert!(
                differ.is_empty(),
                "{}: {:?}: the run with its state differs from a clean run in {differ:?} (kept: {})",
                kind.name,
                t.fx,
                run.dir.keep().display()
            );
            Some(o)
        };
        refs.push(match kind.cmd {
            Cmd::Resume => {
                assert!(
                    err.contains("resuming"),
                    "{}: checkpoint not used: {err}",
                    kind.name
                );
                clean(&["--batch-size", "1"])
            }
            Cmd::Cache => {
                let v = report();
                assert!(
                    v["score_cache"]["reused"].as_u64().unwrap_or(0) > 0,
                    "{}: the cache was not used: {}",
                    kind.name,
                    v["score_cache"]
                );
                clean(&[])
            }
            Cmd::Merge => Some(outputs),
            _ if kind.compare => Some(outputs),
            Cmd::Previous => {
                assert!(
                    report().get("previous").is_some(),
                    "{}: --previous not used",
                    kind.name
                );
                None
            }
            _ => None,
        });
    }
    refs
}

/// Shrink a failing case with proptest's value tree, keeping the class.
fn shrink(
    tree: &mut impl ValueTree<Value = Spec>,
    ctx: &Ctx,
    class: &str,
) -> (Option<(Spec, CaseRun)>, usize) {
    let max = env_num("TRIAGE_FUZZ_SHRINK", 64) as usize;
    let start = Instant::now();
    let mut best = None;
    let mut steps = 0;
    if class.starts_with("hang") || !tree.simplify() {
        return (None, 0);
    }
    for _ in 0..max {
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        let cand = tree.current();
        let r = run_case(ctx, &cand);
        if std::env::var_os("TRIAGE_FUZZ_DEBUG").is_some() {
            eprintln!(
                "shrink: {:?} -> {:?} ({:?}, stderr {} bytes, this process {} MiB)",
                cand.muts,
                r.failures.iter().map(|f| &f.class).collect::<Vec<_>>(),
                r.measured.output.status,
                r.measured.output.stderr.len(),
                check::own_peak_rss() >> 20
            );
        }
        if r.failures.iter().any(|f| f.class == class) {
            steps += 1;
            best = Some((cand, r));
            if !tree.simplify() {
                break;
            }
        } else if !tree.complicate() {
            break;
        }
    }
    (best, steps)
}

/// Fuzz one kind: baseline, then the cases; fails listing every class of
/// broken property found.
fn fuzz(kind: &Kind) {
    limit_memory();
    let seed = env_num("TRIAGE_FUZZ_SEED", DEFAULT_SEED);
    let cases = env_num("TRIAGE_FUZZ_CASES", u64::from(DEFAULT_CASES)) as u32;
    let only = std::env::var("TRIAGE_FUZZ_CASE")
        .ok()
        .map(|v| v.parse::<u32>().unwrap());
    let t0 = Instant::now();
    let mut ctx = Ctx {
        kind,
        templates: kind.fixtures.iter().map(|&f| fixtures::build(f)).collect(),
        refs: Vec::new(),
        limits: limits(),
    };
    ctx.refs = baseline(&ctx);
    let _ = std::fs::remove_dir_all(failures_dir(kind.name));
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng(seed, kind.name));
    let strategy = spec(kind.format);
    let (mut ok, mut refused, mut broken, mut ran, mut compared) = (0u32, 0u32, 0u32, 0u32, 0u32);
    let (mut in_cases, mut slowest) = (Duration::ZERO, (Duration::ZERO, 0u32));
    let mut classes: Vec<(String, u32, PathBuf)> = Vec::new();
    for case in 0..cases {
        let mut tree = strategy.new_tree(&mut runner).unwrap();
        if only.is_some_and(|n| n != case) {
            continue;
        }
        let spec = tree.current();
        let t = Instant::now();
        let run = run_case(&ctx, &spec);
        let took = t.elapsed();
        if std::env::var_os("TRIAGE_FUZZ_DEBUG").is_some() {
            eprintln!(
                "case {case}: {:?} {:?}: {:?} in {:.2} s, {} MiB (this process: {} MiB)",
                run.fixture,
                run.target,
                run.measured.output.status,
                took.as_secs_f64(),
                run.measured.peak_rss >> 20,
                check::own_peak_rss() >> 20
            );
            eprintln!("  {:?}", spec.muts);
        }
        in_cases += took;
        if took > slowest.0 {
            slowest = (took, case);
        }
        ran += 1;
        compared += u32::from(run.compared);
        match run.measured.output.status.code() {
            Some(0) if !run.measured.timed_out => ok += 1,
            Some(2) if !run.measured.timed_out => refused += 1,
            _ => {}
        }
        if run.failures.is_empty() {
            continue;
        }
        broken += 1;
        let mut shrunk = false;
        for f in &run.failures {
            if let Some(c) = classes.iter_mut().find(|c| c.0 == f.class) {
                c.1 += 1;
                continue;
            }
            // Shrink for the first new class of the case only (the tree
            // moves); the others are saved as found.
            let (min, steps) = if shrunk {
                (None, 0)
            } else {
                shrink(&mut tree, &ctx, &f.class)
            };
            shrunk = true;
            let (s, r) = min.as_ref().map_or((&spec, &run), |(s, r)| (s, r));
            let dir = save(kind, classes.len(), &f.class, s, r, seed, case, steps);
            eprintln!(
                "fuzz {}: case {case} (seed {seed:#x}): {}\n  mutations: {:?}\n  saved: {}",
                kind.name,
                f.class,
                s.muts,
                dir.display()
            );
            classes.push((f.class.clone(), 1, dir));
        }
    }
    eprintln!(
        "fuzz {}: seed {seed:#018x}: {ran} cases in {:.1} s: {ok} exit 0, {refused} exit 2, {broken} broke a property ({} classes), {compared} compared with a clean run; {:.1} s in the cases, slowest {:.2} s (case {})",
        kind.name,
        t0.elapsed().as_secs_f64(),
        classes.len(),
        in_cases.as_secs_f64(),
        slowest.0.as_secs_f64(),
        slowest.1,
    );
    assert!(
        classes.is_empty(),
        "fuzz {}: seed {seed:#x}: {} classes of broken properties:\n{}",
        kind.name,
        classes.len(),
        classes
            .iter()
            .map(|(c, n, d)| format!("- {c} ({n} cases; {})", d.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn npy_targets(t: &Template) -> Vec<String> {
    fixtures::files(t, |p| p.starts_with("ds/") && p.ends_with(".npy"))
}
fn png_targets(t: &Template) -> Vec<String> {
    fixtures::files(t, |p| p.starts_with("ds/") && p.ends_with(".png"))
}
fn items_targets(_: &Template) -> Vec<String> {
    vec!["ds/items.csv".into()]
}
fn annotations_targets(_: &Template) -> Vec<String> {
    vec!["ds/annotations.csv".into()]
}
fn decisions_targets(_: &Template) -> Vec<String> {
    vec!["decisions.csv".into()]
}
fn toml_targets(_: &Template) -> Vec<String> {
    vec!["ds/triage.toml".into()]
}
fn reviews_targets(_: &Template) -> Vec<String> {
    vec!["ds/reviews.jsonl".into()]
}
fn previous_targets(_: &Template) -> Vec<String> {
    vec!["prev/queue.jsonl".into()]
}
fn partial_targets(_: &Template) -> Vec<String> {
    vec![
        "parts/p0/partial.jsonl".into(),
        "parts/p1/partial.jsonl".into(),
    ]
}
fn checkpoint_targets(_: &Template) -> Vec<String> {
    vec![format!("{OUT}/.triage-checkpoint.jsonl")]
}
fn cache_targets(t: &Template) -> Vec<String> {
    fixtures::files(t, |p| p.starts_with("cache/"))
}
fn no_targets(_: &Template) -> Vec<String> {
    Vec::new()
}

const ALL: &[Fx] = &[Fx::Seg, Fx::Cls, Fx::ClsN];
const WITH_ITEMS: &[Fx] = &[Fx::Seg, Fx::Cls];

macro_rules! kind {
    ($test:ident, $format:expr, $fixtures:expr, $cmd:expr, $targets:expr) => {
        #[test]
        fn $test() {
            fuzz(&Kind {
                name: stringify!($test),
                format: $format,
                fixtures: $fixtures,
                cmd: $cmd,
                targets: $targets,
                compare: matches!($cmd, Cmd::Resume | Cmd::Cache | Cmd::Merge),
            });
        }
    };
}

kind!(npy, Format::Npy, ALL, Cmd::Run, npy_targets);
kind!(
    png_masks_and_images,
    Format::Png,
    &[Fx::Seg],
    Cmd::Run,
    png_targets
);
kind!(items_csv, Format::Csv, WITH_ITEMS, Cmd::Run, items_targets);
kind!(
    annotations_csv,
    Format::Csv,
    ALL,
    Cmd::Run,
    annotations_targets
);
kind!(
    decisions_csv,
    Format::Csv,
    ALL,
    Cmd::Import,
    decisions_targets
);
kind!(triage_toml, Format::Toml, ALL, Cmd::Run, toml_targets);
kind!(reviews_jsonl, Format::Jsonl, ALL, Cmd::Run, reviews_targets);
kind!(
    previous_queue,
    Format::Jsonl,
    ALL,
    Cmd::Previous,
    previous_targets
);
kind!(partial, Format::Jsonl, ALL, Cmd::Merge, partial_targets);
kind!(
    checkpoint,
    Format::Jsonl,
    &[Fx::Seg],
    Cmd::Resume,
    checkpoint_targets
);
kind!(score_cache, Format::Jsonl, ALL, Cmd::Cache, cache_targets);
kind!(out_dir, Format::OutDir, WITH_ITEMS, Cmd::Run, no_targets);
kind!(options, Format::Options, WITH_ITEMS, Cmd::Run, no_targets);

/// The snapshot check catches a real write of the binary outside `--out`:
/// `review-import` writes DATASET/reviews.jsonl, which its policy allows;
/// judged under the policy of `run` (only `--out` writable) the same run is
/// a write outside `--out`. A check that could never fail would pass both.
#[test]
fn a_write_outside_out_by_the_binary_is_caught() {
    let kind = Kind {
        name: "planted",
        format: Format::Csv,
        fixtures: &[Fx::Cls],
        cmd: Cmd::Import,
        targets: decisions_targets,
        compare: false,
    };
    let ctx = Ctx {
        kind: &kind,
        templates: vec![fixtures::build(Fx::Cls)],
        refs: Vec::new(),
        limits: limits(),
    };
    let limits = ctx.limits;
    let spec = Spec {
        fixture: 0,
        target: 0,
        muts: Vec::new(),
    };
    let run = run_case(&ctx, &spec);
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    assert_eq!(run.measured.output.status.code(), Some(0));
    // The same write, judged as if it had come from `run ds --out OUT`.
    let base = run.dir.path().join(BASE);
    let before = check::snapshot(run.dir.path());
    let imported = common::triage_measured(
        &["review-import", "ds", "decisions0.csv"],
        Some(&base),
        limits.timeout,
    );
    assert_eq!(imported.output.status.code(), Some(0));
    let after = check::snapshot(run.dir.path());
    let policy = Policy {
        out: Some(base.join(OUT)),
        protected: vec![base.join("ds")],
        ..Policy::default()
    };
    let writes = check::violations(&before, &after, &policy, &base);
    assert_eq!(writes, ["modified ds/reviews.jsonl"]);
    let classes: Vec<String> = check::judge(&imported, &writes, &limits)
        .into_iter()
        .map(|f| f.class)
        .collect();
    assert_eq!(classes, ["write outside --out: modified ds/reviews.jsonl"]);
}

/// The mutations change their inputs (a fuzzer whose mutations were no-ops
/// would pass everything): of 300 generated cases per format, at least 90 %
/// give bytes that differ from the fixture; PNG mutations on chunks keep
/// every CRC valid.
#[test]
fn mutations_change_their_inputs_and_png_crcs_stay_valid() {
    let seg = fixtures::build(Fx::Seg);
    let root = seg.dir.path();
    for (format, rel) in [
        (Format::Npy, "ds/probs.npy"),
        (Format::Png, "ds/masks/s1.png"),
        (Format::Csv, "ds/items.csv"),
        (Format::Toml, "ds/triage.toml"),
        (Format::Jsonl, "parts/p0/partial.jsonl"),
    ] {
        let orig = std::fs::read(seg.base().join(rel)).unwrap();
        let mut runner = TestRunner::new_with_rng(Config::default(), rng(1, rel));
        let strategy = spec(format);
        let mut changed = 0;
        for _ in 0..300 {
            let s = strategy.new_tree(&mut runner).unwrap().current();
            let mut b = orig.clone();
            let file = mutate::apply(&mut b, &seg.model(rel), &s.muts, root);
            changed += usize::from(b != orig || file.is_some());
            if format == Format::Png
                && s.muts.iter().all(
                    |m| matches!(m, Mut::Png(p) if !matches!(p, mutate::PngMut::ChunkLen { .. })),
                )
                && let Some((chunks, _)) = png::parse_chunks(&b)
            {
                let raw = png::write_chunks(&chunks, &[]);
                // Re-writing with fresh CRCs changes nothing when the
                // chunks (as far as they parse) already had valid ones.
                assert_eq!(
                    &b[..raw.len().min(b.len())],
                    &raw[..raw.len().min(b.len())],
                    "{s:?}"
                );
            }
        }
        assert!(
            changed >= 270,
            "{format:?}: only {changed} of 300 cases changed {rel}"
        );
    }
}

/// Every mask re-encoded without loss in each grayscale depth (1, 2, 4, 8,
/// 16 bits, where its values fit) and as palette indices (1, 2, 4, 8 bits)
/// reads as the same class ids: the run writes what the 8-bit original
/// gives, or refuses the file (exit 2). Exhaustive over masks and formats
/// rather than drawn at random, so that no format is left out.
#[test]
fn masks_reencoded_without_loss_read_the_same() {
    limit_memory();
    let kind = Kind {
        name: "png_lossless",
        format: Format::Png,
        fixtures: &[Fx::Seg],
        cmd: Cmd::Run,
        targets: png_targets,
        compare: true,
    };
    let mut ctx = Ctx {
        kind: &kind,
        templates: vec![fixtures::build(Fx::Seg)],
        refs: Vec::new(),
        limits: limits(),
    };
    // Without reviews.jsonl: a re-encoded mask is another file, and the
    // decisions stored for it (by its file's hash) would rightly be
    // called out of date.
    std::fs::remove_file(ctx.templates[0].base().join("ds/reviews.jsonl")).unwrap();
    ctx.refs = baseline(&ctx);
    let _ = std::fs::remove_dir_all(failures_dir(kind.name));
    let targets = png_targets(&ctx.templates[0]);
    let (mut compared, mut refused) = (0, 0);
    let mut classes: Vec<(String, u32, PathBuf)> = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        if !(t.contains("/masks/") || t.contains("/ann/")) {
            continue;
        }
        for depth in [1u8, 2, 4, 8, 16] {
            for color in [png::GRAY, png::PALETTE] {
                let muts = vec![Mut::Png(mutate::PngMut::Reformat { depth, color })];
                if (color == png::PALETTE && depth == 16)
                    || mutate::lossless_reformat(&ctx.templates[0].model(t), &muts).is_none()
                {
                    continue;
                }
                let spec = Spec {
                    fixture: 0,
                    target: ti as u8,
                    muts,
                };
                let run = run_case(&ctx, &spec);
                compared += u32::from(run.compared);
                refused += u32::from(run.measured.output.status.code() == Some(2));
                for f in &run.failures {
                    if let Some(c) = classes.iter_mut().find(|c| c.0 == f.class) {
                        c.1 += 1;
                        continue;
                    }
                    let dir = save(&kind, classes.len(), &f.class, &spec, &run, 0, 0, 0);
                    classes.push((f.class.clone(), 1, dir));
                }
            }
        }
    }
    eprintln!(
        "fuzz png_lossless: {compared} re-encoded masks compared with the original's run, {refused} refused"
    );
    assert!(
        compared + refused >= 40,
        "too few lossless re-encodings ran"
    );
    assert!(
        classes.is_empty(),
        "{} classes:\n{}",
        classes.len(),
        classes
            .iter()
            .map(|(c, n, d)| format!("- {c} ({n} masks; {})", d.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
