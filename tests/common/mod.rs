//! Helpers shared by the integration tests: write `.npy`/PNG/CSV fixtures and
//! run the real `triage` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Write a little-endian `.npy` with the given descr (`<f4`, `<f8`, `<f2`, `<u2`, ...).
pub fn write_npy_raw(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

pub fn write_f32(path: &Path, shape: &[usize], v: &[f32]) {
    assert_eq!(shape.iter().product::<usize>(), v.len());
    let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy_raw(path, "<f4", shape, &data);
}

pub fn write_f64(path: &Path, shape: &[usize], v: &[f64]) {
    let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy_raw(path, "<f8", shape, &data);
}

pub fn write_u16(path: &Path, shape: &[usize], v: &[u16]) {
    let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy_raw(path, "<u2", shape, &data);
}

/// Write an 8-bit grayscale PNG label map (row-major, `h × w`).
pub fn write_mask(path: &Path, h: usize, w: usize, v: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let img = image::GrayImage::from_raw(w as u32, h as u32, v.to_vec()).unwrap();
    img.save(path).unwrap();
}

/// Run the `triage` binary with `args`.
pub fn triage(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_triage"))
        .args(args)
        .output()
        .expect("the triage binary runs")
}

/// Describe a finished command for assertion messages.
pub fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "triage {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Write `triage synth --task classification` with `items` items and
/// `classes` classes to `d`, and insist it succeeds.
pub fn synth_classification(d: &Path, items: usize, classes: usize) {
    let a = [
        "synth",
        "--task",
        "classification",
        "--items",
        &items.to_string(),
        "--classes",
        &classes.to_string(),
        "--out",
        d.to_str().unwrap(),
    ];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
}

/// The arguments `run DATASET --out OUT [extra]`.
pub fn run_args<'a>(dataset: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        dataset.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// The arguments `run DATASET --out OUT --backend cpu [extra]`.
pub fn cpu_args<'a>(dataset: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = run_args(dataset, out, &["--backend", "cpu"]);
    args.extend_from_slice(extra);
    args
}

/// Run `triage run DATASET --out OUT [extra]` and insist it succeeds.
pub fn run_ok(dataset: &Path, out: &Path, extra: &[&str]) -> Output {
    let args = run_args(dataset, out, extra);
    let o = triage(&args);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&args, &o));
    o
}

/// Run `triage run DATASET --out OUT --backend gpu [extra]`: `true` when it
/// succeeded (and `report.json` names the GPU), `false` when it failed and
/// a GPU is not required (no adapter here); a failure when
/// `TRIAGE_REQUIRE_GPU=1` (CI, with lavapipe) fails the test.
pub fn run_gpu(dataset: &Path, out: &Path, extra: &[&str]) -> bool {
    let mut args = run_args(dataset, out, &["--backend", "gpu"]);
    args.extend_from_slice(extra);
    let o = triage(&args);
    if o.status.code() != Some(0) {
        let required = std::env::var("TRIAGE_REQUIRE_GPU").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "TRIAGE_REQUIRE_GPU=1 but the GPU run failed: {}",
            describe(&args, &o)
        );
        eprintln!("skipped: no GPU adapter");
        return false;
    }
    assert_eq!(read_report(out)["backend"]["name"], "gpu", "the GPU ran");
    true
}

/// Read `queue.jsonl` into JSON values.
pub fn read_queue(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("queue.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Read `report.json`, checking on the way that it reads into the typed
/// schema the page uses (`triage::schema::Report`) and that the schema
/// writes every key back unchanged (none unknown, none renamed).
pub fn read_report(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let typed: triage::schema::Report = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("report.json does not read as the schema: {e}"));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        value,
        "report.json and its typed schema differ"
    );
    value
}

/// Read `queue.jsonl` into the typed rows the writer builds
/// (`triage::schema::QueueRow`), checking on the way that each row writes
/// back to exactly its line (no key unknown to the schema, none renamed or
/// reordered).
pub fn read_queue_rows(out: &Path) -> Vec<triage::schema::QueueRow<'static>> {
    std::fs::read_to_string(out.join("queue.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let row: triage::schema::QueueRow<'static> = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a queue row does not read as the schema: {e}\n{l}"));
            assert_eq!(
                serde_json::to_string(&row).unwrap(),
                l,
                "a queue row and its typed schema differ"
            );
            row
        })
        .collect()
}

/// Read `report.json` into the typed schema (`triage::schema::Report`),
/// checked as [`read_report`] checks it.
pub fn read_report_typed(out: &Path) -> triage::schema::Report {
    serde_json::from_value(read_report(out)).unwrap()
}

/// The project's `../shared/data` directory, if present. A test over it
/// skips without it, except with `TRIAGE_REQUIRE_DATA=1` (set by `.ci/run`
/// when the directory is there): then a missing directory fails the test.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var("TRIAGE_REQUIRE_DATA").as_deref() != Ok("1"),
        "TRIAGE_REQUIRE_DATA=1 but {} is not a directory",
        p.display()
    );
    None
}

/// Area under the ROC curve of `score` (higher = positive) for the labels
/// `positive`, with tied scores counted as half (Mann-Whitney U).
pub fn auroc(score: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut ranks = vec![0.0; score.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let npos = positive.iter().filter(|&&p| p).count() as f64;
    let nneg = score.len() as f64 - npos;
    let sum_pos: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (sum_pos - npos * (npos + 1.0) / 2.0) / (npos * nneg)
}

/// Copy directory `from` (recursively) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A finished run of the binary with its peak resident memory.
pub struct Measured {
    pub output: Output,
    /// Peak resident set of the child (`ru_maxrss`), bytes.
    pub peak_rss: u64,
    /// It ran past the time limit and was killed.
    pub timed_out: bool,
}

/// Run the `triage` binary with `args` (in `cwd` when given), killing it
/// after `timeout`; returns its output, its peak RSS and whether it had to
/// be killed. For the bounded-memory and never-hang tests of hostile input.
#[cfg(unix)]
#[allow(clippy::zombie_processes)] // reaped by wait4, which std cannot see
pub fn triage_measured(
    args: &[&str],
    cwd: Option<&Path>,
    timeout: std::time::Duration,
) -> Measured {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triage"));
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("the triage binary runs");
    let pid = child.id() as libc::pid_t;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let start = std::time::Instant::now();
    let mut timed_out = false;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // The child's own high-water mark, read while it runs: `ru_maxrss`
    // also counts the memory of the process it was spawned from (Linux
    // keeps the pre-exec peak across exec, and a vfork'd spawn runs on this
    // test process's memory), so it is only the fallback.
    let status_path = format!("/proc/{pid}/status");
    let mut hwm: Option<u64> = None;
    loop {
        if let Some(kb) = std::fs::read_to_string(&status_path).ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            hwm = Some(hwm.unwrap_or(0).max(kb * 1024));
        }
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4 failed: {}", std::io::Error::last_os_error());
        if start.elapsed() > timeout && !timed_out {
            timed_out = true;
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    };
    Measured {
        output,
        peak_rss: hwm.unwrap_or(usage.ru_maxrss as u64 * 1024),
        timed_out,
    }
}

/// `triage run dataset --out dataset/refused-out --backend cpu extra…`
/// must exit 2 with every needle in stderr, no panic, and no file left in
/// the output directory. Returns stderr.
pub fn refused_run(dataset: &Path, extra: &[&str], needles: &[&str]) -> String {
    let out = dataset.join("refused-out");
    let args = cpu_args(dataset, &out, extra);
    let o = triage(&args);
    let msg = describe(&args, &o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}\n{msg}");
    }
    assert!(!stderr.contains("panicked"), "{msg}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a refused run left files: {left:?}\n{msg}");
    stderr
}

/// A seeded stream of uniform `f64` in [0, 1) for generated test data
/// (ChaCha8, as `triage synth` uses: the same stream on every platform).
pub struct Rng(rand_chacha::ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(rand::SeedableRng::seed_from_u64(seed))
    }
    pub fn next(&mut self) -> f64 {
        rand::Rng::random(&mut self.0)
    }
}
