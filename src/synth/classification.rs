//! `triage synth --task classification`: a seeded synthetic classification
//! dataset, `(N, C)` probabilities and `(N,)` labels, with planted label
//! errors, written in bounded memory (rows are generated and written in
//! chunks, so 200 000 × 1000 needs a few MiB, not 800 MB).
//!
//! Row `i` depends only on `(seed, i, C)` (ChaCha8 seeded with `seed` on
//! stream `i`), so a smaller dataset is a prefix of a larger one and the
//! output is byte-identical across runs and machines.
//!
//! Each row has a true class `t` (uniform). The model predicts `t` with
//! probability 0.9, otherwise the "confusable" class `(t + 1) mod C`, with a
//! top probability drawn uniformly in [0.35, 0.995]; a confused row gives
//! the true class a share in [0.3, 0.8] of the remaining mass (it ranks
//! second, as a real confusion does); the rest is spread over the other classes with weights `u³` (u uniform), so rows look
//! like a real softmax: one peak, a long tail. With probability 0.03 the
//! annotated label is a uniformly drawn class other than `t` (a planted
//! `wrong_label`, listed in `truth.json`); otherwise it is `t`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::{SynthDtype, SynthOptions, SynthSummary};
use crate::error::{Error, Result};
use crate::io::atomic::AtomicOutputs;

/// Probability that a row's label is wrong.
const P_WRONG: f64 = 0.03;
/// Probability that the model predicts the confusable class instead of the truth.
const P_CONFUSED: f64 = 0.1;
/// Rows generated per chunk (bounded memory).
const CHUNK_ROWS: usize = 4096;

#[derive(Serialize)]
struct Planted {
    id: String,
    kind: &'static str,
    true_class: u32,
    label: u32,
}

#[derive(Serialize)]
struct Truth<'a> {
    seed: u64,
    items: usize,
    classes: usize,
    planted: &'a [Planted],
}

/// One row: its probabilities (f32), true class and annotated label.
fn row(seed: u64, i: usize, c: usize, p: &mut [f32]) -> (u32, u32) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i as u64);
    let t = rng.random_range(0..c);
    let pred = if rng.random_bool(P_CONFUSED) {
        (t + 1) % c
    } else {
        t
    };
    let top: f64 = rng.random_range(0.35..0.995);
    // A confused prediction still ranks the true class second: it holds a
    // share `r` of the mass left over by the top class.
    let second = if pred != t {
        let r: f64 = rng.random_range(0.3..0.8);
        r * (1.0 - top)
    } else {
        0.0
    };
    let mut rest = 0.0f64;
    for (k, v) in p.iter_mut().enumerate() {
        let u: f32 = rng.random();
        let w = if k == pred || (pred != t && k == t) {
            0.0
        } else {
            u * u * u
        };
        *v = w;
        rest += w as f64;
    }
    let scale = if rest > 0.0 {
        (1.0 - top - second) / rest
    } else {
        0.0
    };
    for (k, v) in p.iter_mut().enumerate() {
        *v = if k == pred {
            top as f32
        } else if pred != t && k == t {
            second as f32
        } else {
            (*v as f64 * scale) as f32
        };
    }
    let label = if rng.random_bool(P_WRONG) {
        let o = rng.random_range(0..c - 1);
        if o >= t { o + 1 } else { o }
    } else {
        t
    };
    (t as u32, label as u32)
}

/// The 128-byte-aligned `.npy` v1 header for a little-endian C-order array.
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

/// Write the classification dataset described by `opts` (`height`/`width`
/// are unused): `probs.npy` (N, C), `labels.npy` (N,) int32, `triage.toml`
/// and `truth.json`, all renamed into place together at the end.
pub fn synth(opts: &SynthOptions) -> Result<SynthSummary> {
    let (n, c, seed) = (opts.items, opts.classes, opts.seed);
    if n == 0 {
        return Err(Error::Usage("--items: need at least 1 item".into()));
    }
    if !(2..=1_000_000).contains(&c) {
        return Err(Error::Usage(format!(
            "--classes: {c} is outside 2 to 1000000"
        )));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let mut outputs = AtomicOutputs::new(&opts.out);
    let mut labels: Vec<i32> = Vec::with_capacity(n);
    let mut planted = Vec::new();
    let (descr, width) = match opts.dtype {
        SynthDtype::F16 => ("<f2", 2),
        SynthDtype::F32 => ("<f4", 4),
    };
    outputs.write("probs.npy", |w| {
        w.write_all(&npy_header(descr, &[n, c]))?;
        let mut probs = vec![0.0f32; CHUNK_ROWS * c];
        let mut bytes: Vec<u8> = Vec::with_capacity(CHUNK_ROWS * c * width);
        let mut meta = vec![(0u32, 0u32); CHUNK_ROWS];
        for start in (0..n).step_by(CHUNK_ROWS) {
            let rows = (n - start).min(CHUNK_ROWS);
            probs[..rows * c]
                .par_chunks_mut(c)
                .zip(meta[..rows].par_iter_mut())
                .enumerate()
                .for_each(|(j, (p, m))| *m = row(seed, start + j, c, p));
            bytes.clear();
            match opts.dtype {
                SynthDtype::F32 => {
                    for v in &probs[..rows * c] {
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                }
                SynthDtype::F16 => {
                    for v in &probs[..rows * c] {
                        bytes.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
                    }
                }
            }
            w.write_all(&bytes)?;
            for (j, &(t, l)) in meta[..rows].iter().enumerate() {
                labels.push(l as i32);
                if t != l {
                    planted.push(Planted {
                        id: (start + j).to_string(),
                        kind: "wrong_label",
                        true_class: t,
                        label: l,
                    });
                }
            }
        }
        Ok(())
    })?;
    outputs.write("labels.npy", |w| {
        w.write_all(&npy_header("<i4", &[n]))?;
        for l in &labels {
            w.write_all(&l.to_le_bytes())?;
        }
        Ok(())
    })?;
    let toml = format!(
        "# Made by `triage synth --task classification --items {n} --classes {c} --seed {seed}`.\n\
         task = \"classification\"\n\
         num_classes = {c}\n\n\
         [inputs]\n\
         probs = \"probs.npy\"\n\
         labels = \"labels.npy\"\n"
    );
    let truth = serde_json::to_string_pretty(&Truth {
        seed,
        items: n,
        classes: c,
        planted: &planted,
    })
    .map_err(|e| Error::Internal(format!("cannot serialise truth.json: {e}")))?;
    outputs.write("triage.toml", |w| w.write_all(toml.as_bytes()))?;
    outputs.write("truth.json", |w| {
        w.write_all(truth.as_bytes())?;
        w.write_all(b"\n")
    })?;
    outputs.commit()?;
    let bytes = (n * c * width + n * 4 + toml.len() + truth.len() + 1) as u64;
    Ok(SynthSummary {
        items: n,
        planted: planted.len(),
        bytes_written: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_distributions_with_the_planned_peak() {
        let c = 1000;
        let mut p = vec![0.0f32; c];
        let mut wrong = 0;
        for i in 0..2000 {
            let (t, l) = row(7, i, c, &mut p);
            let s: f64 = p.iter().map(|&v| v as f64).sum();
            assert!((s - 1.0).abs() < 1e-4, "row {i} sums to {s}");
            assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0));
            let top = (0..c).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap() as u32;
            assert!(top == t || top == (t + 1) % c as u32, "row {i}");
            if top != t {
                // A confusion ranks the true class second.
                let above = p.iter().filter(|&&v| v > p[t as usize]).count();
                assert_eq!(above, 1, "row {i}: true class ranks {}", above + 1);
            }
            wrong += (t != l) as usize;
        }
        // 3 % of 2000 = 60; a binomial sd of ~7.6.
        assert!((30..=90).contains(&wrong), "{wrong} wrong labels");
        // Row i depends only on the seed and i.
        let mut q = vec![0.0f32; c];
        row(7, 1234, c, &mut p);
        row(7, 1234, c, &mut q);
        assert_eq!(p, q);
    }
}
