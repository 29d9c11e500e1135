//! The kNN graph behind near-duplicate detection: build plus query time, peak
//! memory and recall@10 of the exact (CPU, and GPU when an adapter exists) and
//! HNSW paths on clustered embeddings, beside `hnswlib` timed on the same data
//! by `benches/knn_peers.py`.
//!
//! Run: `cargo bench --bench knn` (sizes from `TRIAGE_KNN_SIZES`, default
//! `50000x512,1000000x128`; the exact CPU path is skipped above
//! `TRIAGE_KNN_EXACT_MAX` items, default 100000, and the GPU exact path above
//! `TRIAGE_KNN_GPU_MAX`, default 5000 on a software adapter). Every
//! (method, size) runs in a child process so its peak resident memory is its
//! own. Recall@10 is measured on 1000 random queries against brute force.
//! Output: one JSON line per case on stdout, then `ratio knn ...` lines per
//! size comparing every method's build + query time and peak memory with
//! hnswlib's, and its build + query time with the GPU exact path's
//! (and a `goal knn ...` line for the GPU exact path at 1 000 000 × 128: under
//! 30 s).
//!
//! More environment, for runs on a GPU machine with a time limit:
//! `TRIAGE_KNN_METHODS` (comma list and order of `exact-cpu`, `exact-gpu`,
//! `ivf`, `hnsw`, `peers`; default `exact-cpu,exact-gpu,ivf,hnsw,peers`; `peers` is
//! hnswlib through `benches/knn_peers.py`, which installs it with pip), and
//! `TRIAGE_KNN_TIMEOUT_S` (kill a child after this many seconds, data
//! generation included, and report `timed_out_after_s`; default: no limit).

use std::io::Read;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triage::backend::Backend;
use triage::backend::gpu::{AdapterPolicy, GpuBackend};
use triage::neighbors::Embeddings;
use triage::neighbors::embeddings::cosine_distance;
use triage::neighbors::knn;

const K: usize = 10;
const SAMPLE: usize = 1000;

/// Clustered unit vectors: N/50 random centres, each point its centre plus
/// Gaussian-ish noise (σ ≈ 0.5/√D per coordinate), normalised.
fn clustered(n: usize, d: usize) -> Embeddings {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let centres = (n / 50).max(1);
    let cdata: Vec<f32> = (0..centres * d)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    // TRIAGE_KNN_NOISE scales the noise (robustness runs: looser clusters).
    let scale: f32 = std::env::var("TRIAGE_KNN_NOISE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let sigma = scale * 0.5 / (d as f32).sqrt() * 3f32.sqrt();
    let mut data = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.random_range(0..centres);
        for j in 0..d {
            data.push(cdata[c * d + j] + sigma * rng.random_range(-1.0f32..1.0));
        }
    }
    let ids = triage::io::manifest::Ids::numbered(n);
    match Embeddings::from_rows(std::path::Path::new("bench"), data, n, d, &ids) {
        Ok(e) => e,
        Err(e) => panic!("bench data: {e}"),
    }
}

/// The IVF parameters: the defaults for `n`, or `TRIAGE_KNN_IVF` =
/// `LISTS,SPILL` (tuning runs).
fn ivf_params(n: usize) -> knn::IvfParams {
    let mut p = knn::IvfParams::for_size(n);
    if let Some((l, s)) = std::env::var("TRIAGE_KNN_IVF").ok().and_then(|v| {
        v.split_once(',')
            .map(|(a, b)| (a.to_string(), b.to_string()))
    }) {
        p.lists = l.parse().unwrap_or(p.lists);
        p.spill = s.parse().unwrap_or(p.spill);
        p.train = (p.lists * 32).min(n);
    }
    if let Some(r) = std::env::var("TRIAGE_KNN_IVF_REFINE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        p.max_refine = r;
    }
    p
}

fn rss(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Brute-force k nearest of `q` (ties to the lower index).
fn brute(e: &Embeddings, q: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<(f32, usize)> = (0..e.n)
        .filter(|&j| j != q)
        .map(|j| (cosine_distance(e.row(q), e.row(j)), j))
        .collect();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    all.into_iter().take(k).map(|(_, j)| j).collect()
}

fn sample(n: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..SAMPLE.min(n)).map(|_| rng.random_range(0..n)).collect()
}

fn child(method: &str, n: usize, d: usize) {
    let e = clustered(n, d);
    let base = rss("VmRSS:");
    let t = Instant::now();
    let g = match method {
        "exact-cpu" => knn::exact(&e, K),
        "exact-gpu" => match GpuBackend::new(AdapterPolicy::AnyAdapter) {
            Ok(Some(b)) => match b.knn_exact(&e, K) {
                Ok(g) => g,
                Err(err) => panic!("gpu knn: {err}"),
            },
            _ => return,
        },
        "ivf" => {
            let (g, check) = knn::ivf(&e, K, &ivf_params(n));
            eprintln!("ivf check: {check:?}");
            g
        }
        "hnsw" => match knn::hnsw(&e, K, None, false) {
            Ok(g) => g,
            Err(err) => panic!("hnsw: {err}"),
        },
        "dump" => {
            // Data and ground truth for the Python peers.
            let dir = std::env::temp_dir().join(format!("triage-knn-{n}x{d}"));
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(
                dir.join("emb.f32"),
                bytemuck::cast_slice::<f32, u8>(&e.data),
            );
            let s = sample(n);
            let truth: Vec<u32> = s
                .iter()
                .flat_map(|&q| brute(&e, q, K))
                .map(|j| j as u32)
                .collect();
            let q: Vec<u32> = s.iter().map(|&q| q as u32).collect();
            let _ = std::fs::write(dir.join("queries.u32"), bytemuck::cast_slice::<u32, u8>(&q));
            let _ = std::fs::write(
                dir.join("truth.u32"),
                bytemuck::cast_slice::<u32, u8>(&truth),
            );
            println!("{}", dir.display());
            return;
        }
        other => panic!("unknown method {other}"),
    };
    let secs = t.elapsed().as_secs_f64();
    let peak = rss("VmHWM:");
    let s = sample(n);
    // Untimed; in parallel (1000 brute-force queries over 10^6 rows).
    let hit: usize = s
        .par_iter()
        .map(|&q| {
            let want = brute(&e, q, K);
            let got: Vec<usize> = g.neighbours(q).map(|(j, _)| j).collect();
            want.iter().filter(|j| got.contains(j)).count()
        })
        .sum();
    println!(
        "{{\"method\":\"{method}\",\"n\":{n},\"d\":{d},\"build_query_s\":{secs:.3},\
         \"peak_rss_mib\":{:.0},\"extra_over_data_mib\":{:.0},\"recall_at_10\":{:.4}}}",
        peak as f64 / 1048576.0,
        peak.saturating_sub(base) as f64 / 1048576.0,
        hit as f64 / (s.len() * K) as f64
    );
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let m = &args[pos + 1];
        let n: usize = args[pos + 2].parse().unwrap_or(0);
        let d: usize = args[pos + 3].parse().unwrap_or(0);
        child(m, n, d);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let sizes = std::env::var("TRIAGE_KNN_SIZES").unwrap_or("50000x512,1000000x128".into());
    let exact_max = env_usize("TRIAGE_KNN_EXACT_MAX", 100_000);
    let adapter = GpuBackend::new(AdapterPolicy::AnyAdapter).ok().flatten();
    if let Some(g) = &adapter {
        eprintln!("GPU adapter: {:?}", g.info().adapter);
    }
    let software = adapter.map(|g| g.info().device_type.as_deref() == Some("cpu (software)"));
    let gpu_max = env_usize(
        "TRIAGE_KNN_GPU_MAX",
        if software == Some(true) {
            5_000
        } else {
            usize::MAX
        },
    );
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => panic!("current exe: {e}"),
    };
    let timeout = std::env::var("TRIAGE_KNN_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .map(Duration::from_secs_f64);
    let methods =
        std::env::var("TRIAGE_KNN_METHODS").unwrap_or("exact-cpu,exact-gpu,ivf,hnsw,peers".into());
    let run = |m: &str, n: usize, d: usize| child_process(&exe, m, n, d, timeout);
    let mut lines: Vec<String> = Vec::new();
    let mut emit = |line: String| {
        println!("{line}");
        lines.push(line);
    };
    for size in sizes.split(',') {
        let Some((n, d)) = size.split_once('x') else {
            continue;
        };
        let (n, d): (usize, usize) = (n.parse().unwrap_or(0), d.parse().unwrap_or(0));
        if n == 0 || d == 0 {
            continue;
        }
        for method in methods.split(',').map(str::trim) {
            match method {
                "exact-cpu" if n <= exact_max => emit(run("exact-cpu", n, d)),
                "exact-gpu" if software.is_some() && n <= gpu_max => emit(run("exact-gpu", n, d)),
                "hnsw" => emit(run("hnsw", n, d)),
                "ivf" => emit(run("ivf", n, d)),
                "peers" => {
                    let dir = run("dump", n, d);
                    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("benches/knn_peers.py");
                    let out = std::process::Command::new("python3")
                        .arg(&py)
                        .args([&dir, &n.to_string(), &d.to_string(), &K.to_string()])
                        .output();
                    match out {
                        Ok(o) => {
                            emit(String::from_utf8_lossy(&o.stdout).trim().to_string());
                            let err = String::from_utf8_lossy(&o.stderr);
                            if !o.status.success() {
                                eprintln!("knn_peers.py failed: {err}");
                            }
                        }
                        Err(e) => eprintln!("python3 unavailable: {e}"),
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
                _ => {}
            }
        }
    }
    summary(&lines);
}

/// Run `exe --child METHOD N D`, killed after `timeout`; its stdout line, or
/// a JSON line saying it timed out or failed.
fn child_process(
    exe: &std::path::Path,
    m: &str,
    n: usize,
    d: usize,
    timeout: Option<Duration>,
) -> String {
    let spawned = std::process::Command::new(exe)
        .args(["--child", m, &n.to_string(), &d.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return format!("{{\"method\":\"{m}\",\"error\":\"{e}\"}}"),
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if timeout.is_some_and(|t| start.elapsed() > t) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    match status {
        None => format!(
            "{{\"method\":\"{m}\",\"n\":{n},\"d\":{d},\"timed_out_after_s\":{:.0}}}",
            start.elapsed().as_secs_f64()
        ),
        Some(s) if !s.success() => {
            eprintln!("{m} {n}x{d} failed ({s}): {}", err.trim());
            format!("{{\"method\":\"{m}\",\"n\":{n},\"d\":{d},\"error\":\"{s}\"}}")
        }
        Some(_) => out.trim().to_string(),
    }
}

/// `ratio knn NxD METHOD/exact-gpu` for every method timed at a size where
/// the GPU exact path ran, and the 1M x 128 goal.
fn summary(lines: &[String]) {
    let rows: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let num = |r: &serde_json::Value, k: &str| r.get(k).and_then(serde_json::Value::as_f64);
    let mut sizes: Vec<(u64, u64)> = rows
        .iter()
        .filter_map(|r| Some((r.get("n")?.as_u64()?, r.get("d")?.as_u64()?)))
        .collect();
    sizes.dedup();
    for (n, d) in sizes {
        let at: Vec<&serde_json::Value> = rows
            .iter()
            .filter(|r| {
                r.get("n").and_then(|v| v.as_u64()) == Some(n)
                    && r.get("d").and_then(|v| v.as_u64()) == Some(d)
            })
            .collect();
        let method = |r: &serde_json::Value| {
            r.get("method")
                .and_then(|m| m.as_str())
                .unwrap_or("?")
                .to_string()
        };
        // Every method beside hnswlib, same run (issue 16's goal: the whole
        // neighbour stage within 1.2× hnswlib's build + query, recall ≥ 0.99).
        if let Some(peer) = at.iter().find(|r| method(r).starts_with("hnswlib")) {
            let (pt, pm) = (num(peer, "build_query_s"), num(peer, "peak_rss_mib"));
            for r in at.iter().filter(|r| !method(r).starts_with("hnswlib")) {
                if let (Some(t), Some(pt)) = (num(r, "build_query_s"), pt) {
                    println!(
                        "ratio knn {n}x{d} {}/hnswlib time {:.3} ({t:.2} s vs {pt:.2} s), peak rss {:.2}, recall {} vs {}",
                        method(r),
                        t / pt,
                        num(r, "peak_rss_mib")
                            .zip(pm)
                            .map_or(f64::NAN, |(a, b)| a / b),
                        num(r, "recall_at_10").unwrap_or(f64::NAN),
                        num(peer, "recall_at_10").unwrap_or(f64::NAN)
                    );
                }
            }
        }
        let gpu = at
            .iter()
            .find(|r| method(r) == "exact-gpu")
            .and_then(|r| num(r, "build_query_s"));
        let Some(gpu) = gpu else {
            continue;
        };
        for r in &at {
            let m = method(r);
            if m == "exact-gpu" {
                continue;
            }
            if let Some(t) = num(r, "build_query_s") {
                println!(
                    "ratio knn {n}x{d} {m}/exact-gpu {:.2} ({t:.2} s vs {gpu:.2} s)",
                    t / gpu
                );
            } else if let Some(t) = num(r, "timed_out_after_s") {
                println!(
                    "ratio knn {n}x{d} {m}/exact-gpu > {:.2} ({m} killed after {t:.0} s, data generation included, vs {gpu:.2} s)",
                    t / gpu
                );
            }
        }
        if (n, d) == (1_000_000, 128) {
            println!(
                "goal knn 1000000x128 exact-gpu {gpu:.2} s < 30 s: {}",
                if gpu < 30.0 { "met" } else { "NOT met" }
            );
        }
    }
}
