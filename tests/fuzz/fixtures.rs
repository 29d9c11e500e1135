//! The valid inputs the fuzzer starts from: three tiny datasets written
//! here (not by `triage synth`, so every value is known), and the state
//! files the binary itself makes from them (reviews.jsonl by
//! `review-import`, a previous run's queue, two shards' partials, a score
//! cache and a checkpoint of `--resume`).
//!
//! A template is laid out as `ROOT/outside/` (files a hostile path may point
//! at) and `ROOT/l1/l2/l3/l4/` (the base: every command runs there, with
//! relative paths, so the state files name no absolute path and a template
//! copied elsewhere stays valid; `--out` is `w/x/y/out`, so `../` from it
//! stays inside ROOT for up to eight levels).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{copy_dir, triage_measured};
use crate::mutate::{Model, Npy};
use crate::png::{self, PngImage};

pub const BASE: &str = "l1/l2/l3/l4";
pub const OUT: &str = "w/x/y/out";
/// The options of every `run` (and `merge`).
pub const RUN: &[&str] = &["--backend", "cpu", "--deterministic", "--budget", "3"];
/// Where the template keeps the checkpoint a case copies into `--out`.
pub const CHECKPOINT: &str = "state/checkpoint.jsonl";

/// Which dataset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fx {
    /// Segmentation: 4 items of 6 × 8 pixels, 3 classes, masks, images,
    /// embeddings, two annotators.
    Seg,
    /// Classification with items.csv (labels by name and index, one
    /// unlabelled item), float32 probabilities, embeddings, annotators.
    Cls,
    /// Classification without items.csv: float16 probabilities, int64
    /// labels.npy with -1, `num_classes`.
    ClsN,
}

pub const H: usize = 6;
pub const W: usize = 8;
const C: usize = 3;

/// A built template: the directory and the models of its files.
pub struct Template {
    pub fx: Fx,
    pub dir: tempfile::TempDir,
    pub models: BTreeMap<String, Model>,
}

impl Template {
    pub fn base(&self) -> PathBuf {
        self.dir.path().join(BASE)
    }
    pub fn model(&self, rel: &str) -> Model {
        self.models.get(rel).cloned().unwrap_or(Model::Bytes)
    }
    /// Copy the template to a fresh directory.
    pub fn instantiate(&self) -> tempfile::TempDir {
        let d = tempfile::Builder::new()
            .prefix("triage-fuzz-")
            .tempdir()
            .unwrap();
        copy_dir(self.dir.path(), d.path());
        d
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn put(models: &mut BTreeMap<String, Model>, base: &Path, rel: &str, bytes: Vec<u8>, model: Model) {
    let p = base.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    models.insert(rel.to_string(), model);
}

fn npy(
    models: &mut BTreeMap<String, Model>,
    base: &Path,
    rel: &str,
    descr: &str,
    shape: &[u64],
    data: Vec<u8>,
) {
    let n = Npy {
        descr: descr.into(),
        shape: shape.to_vec(),
        fortran: false,
        data,
    };
    put(models, base, rel, n.encode(), Model::Npy(n));
}

fn png_file(
    models: &mut BTreeMap<String, Model>,
    base: &Path,
    rel: &str,
    values: Vec<u16>,
    color: u8,
) {
    let img = PngImage::from_values(W, H, 8, color, &values);
    put(
        models,
        base,
        rel,
        img.encode(),
        Model::Png {
            w: W,
            h: H,
            values,
            depth: 8,
            color,
        },
    );
}

/// Dyadic probabilities (exact sums of 1 in float16/32).
const ROWS: [[f32; 3]; 8] = [
    [0.5, 0.25, 0.25],
    [0.25, 0.5, 0.25],
    [0.75, 0.125, 0.125],
    [0.125, 0.75, 0.125],
    [0.25, 0.25, 0.5],
    [0.125, 0.125, 0.75],
    [0.5, 0.25, 0.25],
    [0.25, 0.25, 0.5],
];

fn embeddings(n: usize, d: usize) -> Vec<f32> {
    let mut e: Vec<f32> = (0..n * d)
        .map(|i| ((i * 7 + 3) % 11) as f32 / 10.0 + 0.1)
        .collect();
    // Items 0 and 1 are near-duplicates.
    for k in 0..d {
        e[d + k] = e[k] + 1e-4;
    }
    e
}

fn write_seg(ds: &str, base: &Path, m: &mut BTreeMap<String, Model>) {
    let n = 4;
    std::fs::create_dir_all(base.join(ds)).unwrap();
    std::fs::write(
        base.join(ds).join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"bg\", \"road\", \"car\"]\nignore_index = 255\n\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nembeddings = \"embeddings.npy\"\nannotations = \"annotations.csv\"\n",
    )
    .unwrap();
    let mut items = String::from("id,mask,image,annotator\n");
    let mut ann = String::from("id,annotator,mask\n");
    let mut probs = vec![0f32; n * C * H * W];
    for i in 0..n {
        items.push_str(&format!(
            "s{i},masks/s{i}.png,images/s{i}.png,ann{}\n",
            i % 2
        ));
        let mask: Vec<u16> = (0..H * W)
            .map(|p| {
                let (y, x) = (p / W, p % W);
                if i == 0 && p == 0 {
                    255
                } else if i == 3 {
                    // Two classes only: a 1-bit mask holds it exactly.
                    ((x + 2 * y) % 2) as u16
                } else {
                    ((x + 2 * y + i) % C) as u16
                }
            })
            .collect();
        png_file(m, base, &format!("{ds}/masks/s{i}.png"), mask, png::GRAY);
        let image: Vec<u16> = (0..H * W)
            .map(|p| ((p * 37 + i * 11) % 256) as u16)
            .collect();
        png_file(m, base, &format!("{ds}/images/s{i}.png"), image, png::RGB);
        for y in 0..H {
            for x in 0..W {
                let top = (x + y + i) % C;
                for k in 0..C {
                    probs[((i * C + k) * H + y) * W + x] = if k == top { 0.75 } else { 0.125 };
                }
            }
        }
        if i < 3 {
            for a in ["a", "b"] {
                let mask: Vec<u16> = (0..H * W)
                    .map(|p| {
                        let (y, x) = (p / W, p % W);
                        ((x + 2 * y + i + usize::from(a == "b" && x == y)) % C) as u16
                    })
                    .collect();
                let rel = format!("ann/s{i}-{a}.png");
                png_file(m, base, &format!("{ds}/{rel}"), mask, png::GRAY);
                ann.push_str(&format!("s{i},{a},{rel}\n"));
            }
        }
    }
    put(
        m,
        base,
        &format!("{ds}/items.csv"),
        items.into_bytes(),
        Model::Bytes,
    );
    put(
        m,
        base,
        &format!("{ds}/annotations.csv"),
        ann.into_bytes(),
        Model::Bytes,
    );
    npy(
        m,
        base,
        &format!("{ds}/probs.npy"),
        "<f4",
        &[n as u64, C as u64, H as u64, W as u64],
        f32s(&probs),
    );
    npy(
        m,
        base,
        &format!("{ds}/embeddings.npy"),
        "<f4",
        &[n as u64, 5],
        f32s(&embeddings(n, 5)),
    );
}

fn write_cls(ds: &str, base: &Path, m: &mut BTreeMap<String, Model>) {
    std::fs::create_dir_all(base.join(ds)).unwrap();
    std::fs::write(
        base.join(ds).join("triage.toml"),
        "task = \"classification\"\nclasses = [\"cat\", \"dog\", \"fox\"]\n\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\nembeddings = \"embeddings.npy\"\nannotations = \"annotations.csv\"\n",
    )
    .unwrap();
    let labels = ["cat", "dog", "0", "fox", "2", "dog", "cat", ""];
    let mut items = String::from("id,label,annotator,split\n");
    let mut ann = String::from("id,annotator,label\n");
    for (i, l) in labels.iter().enumerate() {
        items.push_str(&format!("c{i},{l},ann{},train\n", i % 3));
        if i < 6 {
            ann.push_str(&format!("c{i},a,{}\n", i % 3));
            ann.push_str(&format!("c{i},b,{}\n", (i + usize::from(i == 4)) % 3));
        }
    }
    put(
        m,
        base,
        &format!("{ds}/items.csv"),
        items.into_bytes(),
        Model::Bytes,
    );
    put(
        m,
        base,
        &format!("{ds}/annotations.csv"),
        ann.into_bytes(),
        Model::Bytes,
    );
    let flat: Vec<f32> = ROWS.iter().flatten().copied().collect();
    npy(
        m,
        base,
        &format!("{ds}/probs.npy"),
        "<f4",
        &[8, 3],
        f32s(&flat),
    );
    npy(
        m,
        base,
        &format!("{ds}/embeddings.npy"),
        "<f4",
        &[8, 4],
        f32s(&embeddings(8, 4)),
    );
}

fn f16_bits(x: f32) -> u16 {
    // Exact for the dyadic values of ROWS (normal float16 numbers).
    let b = x.to_bits();
    let e = ((b >> 23) & 0xff) as i32 - 127 + 15;
    (((b >> 16) & 0x8000) | ((e as u32) << 10) | ((b >> 13) & 0x3ff)) as u16
}

fn write_clsn(ds: &str, base: &Path, m: &mut BTreeMap<String, Model>) {
    std::fs::create_dir_all(base.join(ds)).unwrap();
    std::fs::write(
        base.join(ds).join("triage.toml"),
        "task = \"classification\"\nnum_classes = 3\n\n[inputs]\nprobs = \"probs.npy\"\nlabels = \"labels.npy\"\nannotations = \"annotations.csv\"\n",
    )
    .unwrap();
    let data: Vec<u8> = ROWS
        .iter()
        .flatten()
        .flat_map(|&x| f16_bits(x).to_le_bytes())
        .collect();
    npy(m, base, &format!("{ds}/probs.npy"), "<f2", &[8, 3], data);
    let labels: [i64; 8] = [0, 1, 0, 2, 2, 2, 1, -1];
    npy(
        m,
        base,
        &format!("{ds}/labels.npy"),
        "<i8",
        &[8],
        labels.iter().flat_map(|l| l.to_le_bytes()).collect(),
    );
    let mut ann = String::from("id,annotator,label\n");
    for (i, l) in labels.iter().enumerate().take(6) {
        ann.push_str(&format!("{i},a,{l}\n{i},b,{}\n", (i + 1) % 3));
    }
    put(
        m,
        base,
        &format!("{ds}/annotations.csv"),
        ann.into_bytes(),
        Model::Bytes,
    );
}

/// Run the binary in `base` with `args`; assert the exit code.
pub fn run_in(base: &Path, args: &[&str], code: i32) -> String {
    let m = triage_measured(args, Some(base), Duration::from_secs(120));
    let err = String::from_utf8_lossy(&m.output.stderr).into_owned();
    assert_eq!(
        m.output.status.code(),
        Some(code),
        "fixture: triage {} (in {})\n{err}",
        args.join(" "),
        base.display()
    );
    err
}

fn run_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "ds", "--out", out];
    a.extend_from_slice(RUN);
    a.extend_from_slice(extra);
    a
}

/// Build the template of `fx`: dataset, reviews, previous run, partials,
/// score cache and (segmentation) checkpoint.
pub fn build(fx: Fx) -> Template {
    let dir = tempfile::Builder::new()
        .prefix("triage-fuzz-template-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    let base = root.join(BASE);
    std::fs::create_dir_all(root.join("outside/dir")).unwrap();
    std::fs::write(root.join("outside/canary.txt"), "canary: never written\n").unwrap();
    std::fs::write(root.join("outside/dir/kept.txt"), "kept\n").unwrap();
    // A valid image and mask outside the dataset, for paths that lead out.
    let outside_png: Vec<u16> = (0..H * W).map(|p| (p % C) as u16).collect();
    std::fs::write(
        root.join("outside/image.png"),
        PngImage::from_values(W, H, 8, png::GRAY, &outside_png).encode(),
    )
    .unwrap();
    std::fs::create_dir_all(base.join("state")).unwrap();
    std::fs::create_dir_all(base.join(OUT).parent().unwrap()).unwrap();
    let mut models = BTreeMap::new();
    match fx {
        Fx::Seg => write_seg("ds", &base, &mut models),
        Fx::Cls => write_cls("ds", &base, &mut models),
        Fx::ClsN => write_clsn("ds", &base, &mut models),
    }
    let (first, second) = match fx {
        Fx::Seg => (
            "id,decision\ns0,error\ns2,ok\n",
            "id,decision\ns1,unsure\ns2,error\ns3,ok\n",
        ),
        Fx::Cls => (
            "id,decision,corrected_label\nc0,error,dog\nc2,ok,\n",
            "id,decision,corrected_label\nc1,error,fox\nc2,unsure,\nc3,ok,2\n",
        ),
        Fx::ClsN => (
            "id,decision\n0,error\n2,ok\n",
            "id,decision,corrected_label\n1,error,2\n3,ok,\n",
        ),
    };
    std::fs::write(base.join("decisions0.csv"), first).unwrap();
    std::fs::write(base.join("decisions.csv"), second).unwrap();
    run_in(&base, &["review-import", "ds", "decisions0.csv"], 0);
    run_in(&base, &run_args("prev", &[]), 0);
    run_in(&base, &run_args("parts/p0", &["--shard", "0/2"]), 0);
    run_in(&base, &run_args("parts/p1", &["--shard", "1/2"]), 0);
    run_in(&base, &run_args("cache-run", &["--cache", "cache"]), 0);
    std::fs::remove_dir_all(base.join("cache-run")).unwrap();
    if fx == Fx::Seg {
        // A checkpoint of the first three batches: the last item's mask
        // fails to decode after they were written (masks are not part of
        // the inputs' fingerprint), then the mask is put back.
        let mask = base.join("ds/masks/s3.png");
        let good = std::fs::read(&mask).unwrap();
        std::fs::write(&mask, b"not a png").unwrap();
        run_in(
            &base,
            &run_args("ck", &["--resume", "--batch-size", "1"]),
            2,
        );
        std::fs::write(&mask, good).unwrap();
        let cp = base.join("ck/.triage-checkpoint.jsonl");
        let text = std::fs::read_to_string(&cp).unwrap_or_default();
        assert!(
            text.lines().count() >= 2,
            "fixture: no checkpoint with scored batches was left in ck/: {text:?}"
        );
        std::fs::rename(&cp, base.join(CHECKPOINT)).unwrap();
        std::fs::remove_dir_all(base.join("ck")).unwrap();
    }
    Template { fx, dir, models }
}

/// Files of the template a kind mutates, per fixture.
pub fn files(t: &Template, pick: impl Fn(&str) -> bool) -> Vec<String> {
    let mut v = Vec::new();
    walk(&t.base(), &t.base(), &mut v);
    v.retain(|p| pick(p));
    v.sort();
    v
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, base, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}
