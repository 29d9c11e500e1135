//! `triage synth`: a seeded synthetic segmentation dataset with planted
//! annotation errors, in the dataset-directory contract layout.
//!
//! Each item is a scene of one to three elliptical objects (classes `1..C`) on
//! background class 0. The *truth* map is what the model sees: its
//! probabilities are a softmax over a box-blurred one-hot of the truth plus
//! noise, so it is confident inside objects and uncertain along their edges.
//! About a fifth of the items get a *hard* model (a lower softmax temperature,
//! uncertain everywhere but still right), so uncertainty alone is not the same
//! as a wrong label.
//!
//! About a fifth of the items (each independently, probability 0.2) get a
//! planted annotation error on their top-most object:
//! * `shifted_boundary`: the annotated object is displaced by a few pixels;
//! * `missing_object`: the object is not annotated at all;
//! * `swapped_classes`: the object is annotated with another class.
//!
//! The annotation (mask PNG) carries the error; the model follows the truth.
//! Every planted error, with its pixel count, is listed in `truth.json`.
//!
//! Item `i` depends only on `(seed, i, size, classes)`: its random stream is
//! ChaCha8 seeded with `seed` on stream `i`. So a dataset of `N` items is a
//! prefix of the dataset of `4N` items with the same seed, and the output is
//! byte-identical across runs and machines. Memory is one item at a time.

pub mod classification;

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::io::atomic::AtomicOutputs;

/// Probability dtype of the written `probs.npy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthDtype {
    /// IEEE half precision (`<f2`), half the bytes.
    F16,
    /// IEEE single precision (`<f4`).
    F32,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Output dataset directory (created if missing).
    pub out: PathBuf,
    /// Number of items (≥ 1).
    pub items: usize,
    /// Image height in pixels (8..=16384).
    pub height: usize,
    /// Image width in pixels (8..=16384).
    pub width: usize,
    /// Number of classes including background (2..=255).
    pub classes: usize,
    /// dtype of `probs.npy`.
    pub dtype: SynthDtype,
    /// Seed of every random choice.
    pub seed: u64,
    /// Segmentation (the default) or classification
    /// ([`classification::synth`]; `height` and `width` unused).
    pub task: crate::config::Task,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            out: PathBuf::from("synth"),
            items: 32,
            height: 128,
            width: 128,
            classes: 5,
            dtype: SynthDtype::F16,
            seed: 0,
            task: crate::config::Task::Segmentation,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// Items written.
    pub items: usize,
    /// Items with a planted annotation error.
    pub planted: usize,
    /// Total bytes of all files written.
    pub bytes_written: u64,
}

/// One planted annotation error, as listed in `truth.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Planted {
    /// Item id.
    pub id: String,
    /// `shifted_boundary`, `missing_object` or `swapped_classes`.
    pub kind: &'static str,
    /// True class of the affected object.
    pub class: u16,
    /// Human-readable description.
    pub detail: String,
    /// Pixels whose annotation differs from the truth.
    pub pixels: u64,
    /// For `duplicate_conflict`: the near-duplicate source item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

#[derive(Serialize)]
struct Truth<'a> {
    seed: u64,
    items: usize,
    height: usize,
    width: usize,
    classes: &'a [String],
    planted: &'a [Planted],
    clean: &'a [String],
    /// Near-duplicate items: `{id, of, conflict}`.
    duplicates: &'a [DupTruth],
}

#[derive(Serialize)]
struct DupTruth {
    id: String,
    of: String,
    conflict: bool,
}

/// Softmax temperature of ordinary and hard items.
const SHARP: f32 = 9.0;
const HARD: f32 = 3.0;
/// Probability that an item carries a planted error / a hard model.
const P_PLANTED: f64 = 0.2;
const P_HARD: f64 = 0.2;

#[derive(Debug, Clone, Copy)]
struct Ellipse {
    cy: f32,
    cx: f32,
    ry: f32,
    rx: f32,
    class: u16,
}

impl Ellipse {
    fn contains(&self, y: usize, x: usize, dy: f32, dx: f32) -> bool {
        let u = (y as f32 + 0.5 - self.cy - dy) / self.ry;
        let v = (x as f32 + 0.5 - self.cx - dx) / self.rx;
        u * u + v * v <= 1.0
    }
}

/// One generated item.
struct Item {
    id: String,
    annotation: Vec<u8>,
    image: Vec<u8>,
    probs: Vec<f32>,
    planted: Option<Planted>,
}

fn class_names(c: usize) -> Vec<String> {
    const NAMES: [&str; 8] = [
        "background",
        "cell",
        "vessel",
        "nucleus",
        "membrane",
        "debris",
        "fiber",
        "lumen",
    ];
    (0..c)
        .map(|k| match NAMES.get(k) {
            Some(n) => (*n).to_string(),
            None => format!("class{k}"),
        })
        .collect()
}

fn validate(o: &SynthOptions) -> Result<()> {
    let bad = |field: &str, msg: String| Err(Error::Usage(format!("--{field}: {msg}")));
    if o.items == 0 {
        return bad("items", "need at least 1 item".into());
    }
    if !(8..=16384).contains(&o.height) || !(8..=16384).contains(&o.width) {
        return bad(
            "size",
            format!("{}x{} is outside 8 to 16384", o.height, o.width),
        );
    }
    if !(2..=255).contains(&o.classes) {
        return bad(
            "classes",
            format!(
                "{} is outside 2 to 255 (masks are 8-bit with 255 = ignore)",
                o.classes
            ),
        );
    }
    Ok(())
}

/// Generate the dataset described by `opts` into `opts.out`.
///
/// Writes `triage.toml`, `items.csv` (`id,mask,image,split`),
/// `masks/<id>.png`, `images/<id>.png`, `probs.npy` of shape (N, C, H, W) and
/// `truth.json`. The manifest, table, probabilities and truth appear together
/// (temporary files renamed at the end).
pub fn synth(opts: &SynthOptions) -> Result<SynthSummary> {
    if opts.task == crate::config::Task::Classification {
        return classification::synth(opts);
    }
    validate(opts)?;
    let (n, h, w, c) = (opts.items, opts.height, opts.width, opts.classes);
    let out = &opts.out;
    for sub in ["masks", "images"] {
        let d = out.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let names = class_names(c);
    let mut outputs = AtomicOutputs::new(out);
    let mut planted = Vec::new();
    let mut clean = Vec::new();
    let mut csv = String::from("id,mask,image,split\n");
    let mut bytes = 0u64;
    let mut first_err: Option<Error> = None;

    let shape = [n as u64, c as u64, h as u64, w as u64];
    outputs
        .write("probs.npy", |sink| {
            let mut writer = NpyOut::begin(sink, opts.dtype, &shape)?;
            for i in 0..n {
                let item = generate(opts.seed, i, h, w, c);
                let written = write_pngs(out, &item, h, w);
                match written {
                    Ok(b) => bytes += b,
                    Err(e) => {
                        first_err = Some(e);
                        return Err(std::io::Error::other("PNG write failed"));
                    }
                }
                writer.push(&item.probs)?;
                let split = if i % 5 == 4 { "val" } else { "train" };
                csv.push_str(&format!(
                    "{id},masks/{id}.png,images/{id}.png,{split}\n",
                    id = item.id
                ));
                match item.planted {
                    Some(p) => planted.push(p),
                    None => clean.push(item.id),
                }
            }
            writer.finish()
        })
        .map_err(|e| first_err.take().unwrap_or(e))?;
    bytes += (n * c * h * w) as u64
        * match opts.dtype {
            SynthDtype::F16 => 2,
            SynthDtype::F32 => 4,
        };
    outputs.write("embeddings.npy", |sink| {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[n as u64, EMBED_DIM as u64])
            .writer(sink)
            .begin_nd()?;
        for i in 0..n {
            w.extend(embedding(opts.seed, i))?;
        }
        w.finish()
    })?;
    bytes += (n * EMBED_DIM * 4) as u64;
    let duplicates: Vec<DupTruth> = (0..n)
        .filter_map(|i| {
            dup_source(opts.seed, i).map(|j| DupTruth {
                id: format!("item{i:05}"),
                of: format!("item{j:05}"),
                conflict: dup_conflict_roll(opts.seed, i),
            })
        })
        .collect();

    let toml = format!(
        "# Made by `triage synth --items {n} --size {h} {w} --classes {c} --seed {seed}`.\n\
         task = \"segmentation\"\n\
         classes = [{classes}]\n\
         ignore_index = 255\n\n\
         [inputs]\n\
         items = \"items.csv\"\n\
         probs = \"probs.npy\"\n\
         embeddings = \"embeddings.npy\"\n",
        seed = opts.seed,
        classes = names
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let truth = Truth {
        seed: opts.seed,
        items: n,
        height: h,
        width: w,
        classes: &names,
        planted: &planted,
        clean: &clean,
        duplicates: &duplicates,
    };
    let truth_json = serde_json::to_string_pretty(&truth)
        .map_err(|e| Error::Internal(format!("cannot serialise truth.json: {e}")))?;
    for (name, text) in [
        ("items.csv", csv),
        ("truth.json", truth_json + "\n"),
        ("triage.toml", toml),
    ] {
        bytes += text.len() as u64;
        outputs.write(name, |wr| wr.write_all(text.as_bytes()))?;
    }
    outputs.commit()?;
    Ok(SynthSummary {
        items: n,
        planted: planted.len(),
        bytes_written: bytes,
    })
}

/// A streaming `.npy` writer for either dtype.
enum NpyOut<'a> {
    F16(npyz::NpyWriter<half::f16, &'a mut dyn Write>),
    F32(npyz::NpyWriter<f32, &'a mut dyn Write>),
}

impl<'a> NpyOut<'a> {
    fn begin(sink: &'a mut dyn Write, dtype: SynthDtype, shape: &[u64]) -> std::io::Result<Self> {
        use npyz::WriterBuilder;
        Ok(match dtype {
            SynthDtype::F16 => NpyOut::F16(
                npyz::WriteOptions::<half::f16>::new()
                    .default_dtype()
                    .shape(shape)
                    .writer(sink)
                    .begin_nd()?,
            ),
            SynthDtype::F32 => NpyOut::F32(
                npyz::WriteOptions::<f32>::new()
                    .default_dtype()
                    .shape(shape)
                    .writer(sink)
                    .begin_nd()?,
            ),
        })
    }

    fn push(&mut self, values: &[f32]) -> std::io::Result<()> {
        match self {
            NpyOut::F16(w) => w.extend(values.iter().map(|&v| half::f16::from_f32(v))),
            NpyOut::F32(w) => w.extend(values.iter().copied()),
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            NpyOut::F16(w) => w.finish(),
            NpyOut::F32(w) => w.finish(),
        }
    }
}

fn write_pngs(out: &Path, item: &Item, h: usize, w: usize) -> Result<u64> {
    let mask_path = out.join("masks").join(format!("{}.png", item.id));
    let image_path = out.join("images").join(format!("{}.png", item.id));
    let (hh, ww) = (h as u32, w as u32);
    image::save_buffer(
        &mask_path,
        &item.annotation,
        ww,
        hh,
        image::ExtendedColorType::L8,
    )
    .map_err(|e| Error::input(&mask_path, format!("cannot write PNG: {e}")))?;
    image::save_buffer(
        &image_path,
        &item.image,
        ww,
        hh,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Error::input(&image_path, format!("cannot write PNG: {e}")))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    Ok(size(&mask_path) + size(&image_path))
}

fn rasterise(
    objects: &[Ellipse],
    h: usize,
    w: usize,
    shift: Option<(usize, f32, f32)>,
) -> Vec<u16> {
    let mut map = vec![0u16; h * w];
    for (k, o) in objects.iter().enumerate() {
        let (dy, dx) = match shift {
            Some((j, dy, dx)) if j == k => (dy, dx),
            _ => (0.0, 0.0),
        };
        let y0 = (o.cy + dy - o.ry - 1.0).max(0.0) as usize;
        let y1 = ((o.cy + dy + o.ry + 1.0).max(0.0) as usize).min(h);
        let x0 = (o.cx + dx - o.rx - 1.0).max(0.0) as usize;
        let x1 = ((o.cx + dx + o.rx + 1.0).max(0.0) as usize).min(w);
        for y in y0..y1 {
            for x in x0..x1 {
                if o.contains(y, x, dy, dx) {
                    map[y * w + x] = o.class;
                }
            }
        }
    }
    map
}

/// Random streams beyond the per-item ones (which use stream `i`).
const DUP_STREAM: u64 = 1 << 40;
const EMB_STREAM: u64 = 2 << 40;
/// Probability that an item is a near-duplicate of one of the 3 items before it.
const P_DUP: f64 = 0.15;
/// Embedding dimension.
pub const EMBED_DIM: usize = 32;

fn stream(seed: u64, s: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(s);
    rng
}

/// One to three ellipses of classes `1..c`.
fn scene(rng: &mut ChaCha8Rng, h: usize, w: usize, c: usize) -> Vec<Ellipse> {
    let side = h.min(w) as f32;
    let n_obj = rng.random_range(1..=3);
    (0..n_obj)
        .map(|_| {
            let ry = rng.random_range(0.12..0.28) * side;
            let rx = rng.random_range(0.12..0.28) * side;
            Ellipse {
                cy: rng.random_range(ry..(h as f32 - ry).max(ry + 1.0)),
                cx: rng.random_range(rx..(w as f32 - rx).max(rx + 1.0)),
                ry,
                rx,
                class: rng.random_range(1..c as u16),
            }
        })
        .collect()
}

/// The item that item `i` is a near-duplicate of, if any (always earlier).
fn dup_source(seed: u64, i: usize) -> Option<usize> {
    let mut rng = stream(seed, DUP_STREAM + i as u64);
    (i > 0 && rng.random_bool(P_DUP)).then(|| i - 1 - rng.random_range(0..i.min(3)))
}

/// Whether near-duplicate `i` gets a conflicting annotation.
fn dup_conflict_roll(seed: u64, i: usize) -> bool {
    let mut rng = stream(seed, DUP_STREAM + i as u64);
    let _ = rng.random_bool(P_DUP);
    let _: usize = rng.random_range(0..3);
    rng.random_bool(0.5)
}

/// The scene of item `j`, following near-duplicate links.
fn scene_of(seed: u64, j: usize, h: usize, w: usize, c: usize) -> Vec<Ellipse> {
    match dup_source(seed, j) {
        Some(k) => scene_of(seed, k, h, w, c)
            .into_iter()
            .map(|o| Ellipse {
                cx: o.cx + 1.0,
                ..o
            })
            .collect(),
        None => scene(&mut stream(seed, j as u64), h, w, c),
    }
}

/// The unit embedding of item `i`: random for ordinary items, a small
/// perturbation (cosine distance about 0.002) of the source for near-duplicates.
pub fn embedding(seed: u64, i: usize) -> Vec<f32> {
    let mut rng = stream(seed, EMB_STREAM + i as u64);
    let mut v: Vec<f32> = (0..EMBED_DIM)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let unit = |v: &mut Vec<f32>| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
    };
    unit(&mut v);
    if let Some(j) = dup_source(seed, i) {
        let mut e = embedding(seed, j);
        for (a, b) in e.iter_mut().zip(&v) {
            *a += 0.06 * b;
        }
        unit(&mut e);
        return e;
    }
    v
}

/// Item `i` of the dataset with `seed`.
fn generate(seed: u64, i: usize, h: usize, w: usize, c: usize) -> Item {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i as u64);
    let id = format!("item{i:05}");
    let side = h.min(w) as f32;

    let own = scene(&mut rng, h, w, c);
    let dup = dup_source(seed, i);
    // A near-duplicate shows its source's scene, shifted by a pixel.
    let objects = match dup {
        Some(j) => scene_of(seed, j, h, w, c)
            .into_iter()
            .map(|o| Ellipse {
                cx: o.cx + 1.0,
                ..o
            })
            .collect(),
        None => own,
    };
    let truth = rasterise(&objects, h, w, None);

    // Planted error on the top-most (last drawn, fully visible) object.
    let plant = rng.random_bool(P_PLANTED);
    let kind_roll: u32 = rng.random_range(0..if c > 2 { 3 } else { 2 });
    let shift_px = (0.06 * side).round().max(2.0);
    let dir = rng.random_range(0..4);
    let hard = rng.random_bool(P_HARD);
    let ignore_box = rng.random_bool(0.15);
    let top = objects.len() - 1;
    // Near-duplicates never get the ordinary planted errors; half of them get
    // an annotation that conflicts with their source (another class).
    let dup_conflict = dup.is_some() && dup_conflict_roll(seed, i);
    let kind_roll = match dup {
        Some(_) => {
            if c > 2 {
                2
            } else {
                1
            }
        }
        None => kind_roll,
    };
    let plant = if dup.is_some() { dup_conflict } else { plant };
    let (annotation_map, planted) = if plant {
        let o = objects[top];
        let (kind, map, detail) = match kind_roll {
            0 => {
                let (dy, dx, way) = match dir {
                    0 => (0.0, shift_px, "right"),
                    1 => (0.0, -shift_px, "left"),
                    2 => (shift_px, 0.0, "down"),
                    _ => (-shift_px, 0.0, "up"),
                };
                (
                    "shifted_boundary",
                    rasterise(&objects, h, w, Some((top, dy, dx))),
                    format!("class {} object annotated {shift_px} px {way}", o.class),
                )
            }
            1 => (
                "missing_object",
                rasterise(&objects[..top], h, w, None),
                format!("class {} object not annotated", o.class),
            ),
            _ => {
                let mut swapped = objects.clone();
                let mut to = rng.random_range(1..c as u16 - 1);
                if to >= o.class {
                    to += 1;
                }
                swapped[top].class = to;
                (
                    "swapped_classes",
                    rasterise(&swapped, h, w, None),
                    format!("class {} object annotated as class {to}", o.class),
                )
            }
        };
        let pixels = map.iter().zip(&truth).filter(|(a, b)| a != b).count() as u64;
        (
            map,
            Some(Planted {
                id: id.clone(),
                kind: if dup.is_some() {
                    "duplicate_conflict"
                } else {
                    kind
                },
                class: o.class,
                detail: match dup {
                    Some(j) => format!("near-duplicate of item{j:05}: {detail}"),
                    None => detail,
                },
                pixels,
                duplicate_of: dup.map(|j| format!("item{j:05}")),
            }),
        )
    } else {
        (truth.clone(), None)
    };
    let mut annotation: Vec<u8> = annotation_map.iter().map(|&v| v as u8).collect();
    if ignore_box {
        // An "unlabelled" rectangle, as annotation tools leave them.
        let bh = (h / 8).max(1);
        let bw = (w / 8).max(1);
        let y0 = rng.random_range(0..h - bh);
        let x0 = rng.random_range(0..w - bw);
        for y in y0..y0 + bh {
            annotation[y * w + x0..y * w + x0 + bw].fill(255);
        }
    }

    let temperature = if hard { HARD } else { SHARP };
    let probs = model_probs(&truth, h, w, c, temperature, &mut rng);
    let image = render(&truth, h, w, &mut rng);
    Item {
        id,
        annotation,
        image,
        probs,
        planted,
    }
}

/// Planar (C, H, W) probabilities: softmax of `t · blur(onehot(truth)) + noise`
/// with a 5×5 box blur, so confidence falls off near object edges. The largest
/// class takes `1 − Σ others` so half-precision rounding keeps every sum
/// within 2.5e-4 of 1.
fn model_probs(
    truth: &[u16],
    h: usize,
    w: usize,
    c: usize,
    t: f32,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    const R: usize = 2;
    let hw = h * w;
    let mut blurred = vec![0f32; c * hw];
    // Separable box blur of each class's indicator via running sums.
    let mut tmp = vec![0f32; hw];
    for k in 0..c {
        for y in 0..h {
            let row = &truth[y * w..(y + 1) * w];
            for x in 0..w {
                let lo = x.saturating_sub(R);
                let hi = (x + R + 1).min(w);
                let count = row[lo..hi].iter().filter(|&&v| v as usize == k).count();
                tmp[y * w + x] = count as f32 / (hi - lo) as f32;
            }
        }
        let plane = &mut blurred[k * hw..(k + 1) * hw];
        for y in 0..h {
            let lo = y.saturating_sub(R);
            let hi = (y + R + 1).min(h);
            for x in 0..w {
                let s: f32 = (lo..hi).map(|yy| tmp[yy * w + x]).sum();
                plane[y * w + x] = s / (hi - lo) as f32;
            }
        }
    }
    let mut probs = vec![0f32; c * hw];
    let mut logits = vec![0f32; c];
    for i in 0..hw {
        for k in 0..c {
            logits[k] = t * blurred[k * hw + i] + rng.random_range(-0.6..0.6);
        }
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = logits.iter().map(|&l| (l - m).exp()).sum();
        let mut best = 0;
        for k in 0..c {
            let p = half::f16::from_f32((logits[k] - m).exp() / z).to_f32();
            probs[k * hw + i] = p;
            if p > probs[best * hw + i] {
                best = k;
            }
        }
        let others: f32 = (0..c)
            .filter(|&k| k != best)
            .map(|k| probs[k * hw + i])
            .sum();
        probs[best * hw + i] = 1.0 - others;
    }
    probs
}

/// An RGB picture of the truth: a colour per class with a soft shading
/// pattern and a little noise.
fn render(truth: &[u16], h: usize, w: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    const PALETTE: [[u8; 3]; 8] = [
        [40, 40, 48],
        [200, 80, 80],
        [80, 170, 90],
        [80, 110, 210],
        [220, 190, 70],
        [170, 90, 200],
        [70, 190, 200],
        [230, 140, 60],
    ];
    let mut img = vec![0u8; h * w * 3];
    let phase: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    for y in 0..h {
        for x in 0..w {
            let k = truth[y * w + x] as usize;
            let base = PALETTE[k % PALETTE.len()];
            let shade = 0.85 + 0.15 * ((x as f32 * 0.11 + y as f32 * 0.07 + phase).sin());
            for (ch, &b) in base.iter().enumerate() {
                let v = b as f32 * shade + rng.random_range(-6.0..6.0);
                img[(y * w + x) * 3 + ch] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_depend_only_on_seed_and_index() {
        let a = generate(3, 5, 32, 40, 4);
        let b = generate(3, 5, 32, 40, 4);
        let other = generate(3, 6, 32, 40, 4);
        assert_eq!(a.annotation, b.annotation);
        assert_eq!(a.probs, b.probs);
        assert_ne!(a.probs, other.probs);
    }

    #[test]
    fn probabilities_sum_to_one_after_half_rounding() {
        for i in 0..6 {
            let it = generate(11, i, 24, 24, 5);
            let hw = 24 * 24;
            for p in 0..hw {
                let s: f32 = (0..5)
                    .map(|k| half::f16::from_f32(it.probs[k * hw + p]).to_f32())
                    .sum();
                assert!((s - 1.0).abs() < 5e-4, "item {i} pixel {p}: sum {s}");
            }
        }
    }

    #[test]
    fn planted_pixels_count_the_annotation_differences() {
        // Find a planted item and recount its differences from the truth.
        let (h, w, c) = (48, 48, 4);
        let mut found = 0;
        for i in 0..60 {
            let it = generate(1, i, h, w, c);
            if let Some(p) = &it.planted {
                found += 1;
                assert!(p.pixels > 0, "{p:?}");
                let model_pred: Vec<u16> = (0..h * w)
                    .map(|px| {
                        (0..c)
                            .max_by(|&a, &b| {
                                it.probs[a * h * w + px].total_cmp(&it.probs[b * h * w + px])
                            })
                            .unwrap_or(0) as u16
                    })
                    .collect();
                let disagree = it
                    .annotation
                    .iter()
                    .zip(&model_pred)
                    .filter(|&(&a, &m)| a != 255 && a as u16 != m)
                    .count() as u64;
                // The model follows the truth, so it disagrees with the
                // annotation on most of the planted pixels.
                assert!(
                    disagree * 2 >= p.pixels,
                    "{p:?}: model disagrees on {disagree}"
                );
            }
        }
        assert!(
            found >= 5,
            "expected about 12 planted items in 60, got {found}"
        );
    }

    #[test]
    fn rejects_bad_options() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for (items, size, classes) in [(0, 16, 3), (4, 4, 3), (4, 16, 1), (4, 16, 300)] {
            let o = SynthOptions {
                out: tmp.path().join("x"),
                items,
                height: size,
                width: size,
                classes,
                ..SynthOptions::default()
            };
            assert!(matches!(synth(&o), Err(Error::Usage(_))));
        }
    }
}
