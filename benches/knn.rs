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
//! Output: one JSON line per case on stdout.

use std::time::Instant;

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
    let sigma = 0.5 / (d as f32).sqrt() * 3f32.sqrt();
    let mut data = Vec::with_capacity(n * d);
    for _ in 0..n {
        let c = rng.random_range(0..centres);
        for j in 0..d {
            data.push(cdata[c * d + j] + sigma * rng.random_range(-1.0f32..1.0));
        }
    }
    let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    match Embeddings::from_rows(std::path::Path::new("bench"), data, n, d, &ids) {
        Ok(e) => e,
        Err(e) => panic!("bench data: {e}"),
    }
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
    let mut hit = 0;
    for &q in &s {
        let want = brute(&e, q, K);
        let got: Vec<usize> = g.neighbours(q).map(|(j, _)| j).collect();
        hit += want.iter().filter(|j| got.contains(j)).count();
    }
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
    let run = |m: &str, n: usize, d: usize| -> String {
        let out = std::process::Command::new(&exe)
            .args(["--child", m, &n.to_string(), &d.to_string()])
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Err(e) => format!("{{\"method\":\"{m}\",\"error\":\"{e}\"}}"),
        }
    };
    for size in sizes.split(',') {
        let Some((n, d)) = size.split_once('x') else {
            continue;
        };
        let (n, d): (usize, usize) = (n.parse().unwrap_or(0), d.parse().unwrap_or(0));
        if n == 0 || d == 0 {
            continue;
        }
        if n <= exact_max {
            println!("{}", run("exact-cpu", n, d));
        }
        if software.is_some() && n <= gpu_max {
            println!("{}", run("exact-gpu", n, d));
        }
        println!("{}", run("hnsw", n, d));
        let dir = run("dump", n, d);
        let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/knn_peers.py");
        let out = std::process::Command::new("python3")
            .arg(&py)
            .args([&dir, &n.to_string(), &d.to_string(), &K.to_string()])
            .output();
        match out {
            Ok(o) => {
                println!("{}", String::from_utf8_lossy(&o.stdout).trim());
                let err = String::from_utf8_lossy(&o.stderr);
                if !o.status.success() {
                    eprintln!("knn_peers.py failed: {err}");
                }
            }
            Err(e) => eprintln!("python3 unavailable: {e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
