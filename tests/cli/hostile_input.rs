//! Hostile input (issue 25): crafted files a few bytes long must not cost
//! gigabytes, hang, crash or be read from outside the dataset; every case
//! exits 2 with the file (and item and field) named, quickly, in bounded
//! memory, and writes nothing.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// Peak resident memory allowed to a refused run (the binary alone is far
/// below; the refused inputs would cost gigabytes).
const RSS_LIMIT: u64 = 300 << 20;
/// A refused run ends well inside this; a hang is killed at it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `triage run DATASET --out DATASET/out --backend cpu [extra]`, measured.
fn run_measured(dataset: &Path, extra: &[&str]) -> (Measured, String) {
    let out = dataset.join("out");
    let args = cpu_args(dataset, &out, extra);
    let m = triage_measured(&args, None, TIMEOUT);
    let msg = format!(
        "{}\npeak RSS {} MB, timed out: {}",
        describe(&args, &m.output),
        m.peak_rss >> 20,
        m.timed_out
    );
    (m, msg)
}

/// The run was refused (exit 2) quickly, in bounded memory, with every
/// needle in stderr, no panic, and nothing written to `--out`.
fn assert_refused(dataset: &Path, m: &Measured, msg: &str, needles: &[&str]) {
    assert!(!m.timed_out, "timed out\n{msg}");
    assert_eq!(m.output.status.code(), Some(2), "{msg}");
    let stderr = String::from_utf8_lossy(&m.output.stderr);
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}\n{msg}");
    }
    assert!(!stderr.contains("panicked"), "{msg}");
    assert!(
        m.peak_rss < RSS_LIMIT,
        "peak RSS {} bytes\n{msg}",
        m.peak_rss
    );
    let left: Vec<_> = std::fs::read_dir(dataset.join("out"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a refused run left files: {left:?}\n{msg}");
}

/// `triage run DATASET --out DATASET/out --backend cpu [extra]` under an
/// address-space limit of [`AS_LIMIT`] (`RLIMIT_AS`, with few malloc
/// arenas so the limit is the heap's): an allocation sized by a hostile
/// number fails there (abort, 134) instead of being left untouched by a
/// lazy kernel; a refused input exits 2. Returns the exit code and the
/// command with its output.
#[cfg(unix)]
fn run_capped(dataset: &Path, extra: &[&str]) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let out = dataset.join("out");
    let args = cpu_args(dataset, &out, extra);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_triage"));
    cmd.args(&args)
        .env("MALLOC_ARENA_MAX", "2")
        .env("RUST_BACKTRACE", "0");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: AS_LIMIT,
                rlim_max: AS_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    (o.status.code(), describe(&args, &o))
}

/// The address space a capped run may use (the debug binary maps about
/// 300 MB; a refused run needs little more).
#[cfg(unix)]
const AS_LIMIT: u64 = 2 << 30;

/// Run and insist on exit 0.
fn assert_runs(dataset: &Path, extra: &[&str]) {
    let _ = std::fs::remove_dir_all(dataset.join("out"));
    let (m, msg) = run_measured(dataset, extra);
    assert!(!m.timed_out, "{msg}");
    assert_eq!(m.output.status.code(), Some(0), "{msg}");
}

/// `roots = [..]` for triage.toml's `[inputs]`, or nothing.
fn roots_line(roots: &[&Path]) -> String {
    if roots.is_empty() {
        return String::new();
    }
    let list: Vec<String> = roots
        .iter()
        .map(|r| format!("{:?}", r.to_str().unwrap()))
        .collect();
    format!("roots = [{}]\n", list.join(", "))
}

const H: usize = 3;
const W: usize = 5;

/// A segmentation dataset of `masks.len()` items over `c` classes, `H × W`
/// pixels, items `i0`, `i1`, ... with the mask cells given (relative to the
/// dataset), probabilities stacked in `probs.npy`, extra `[inputs]` lines.
fn seg_dataset(d: &Path, c: usize, masks: &[&str], inputs: &str) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        format!(
            "task = \"segmentation\"\nnum_classes = {c}\nignore_index = 255\n[inputs]\n\
             items = \"items.csv\"\nprobs = \"probs.npy\"\n{inputs}"
        ),
    )
    .unwrap();
    let mut csv = String::from("id,mask\n");
    for (i, m) in masks.iter().enumerate() {
        csv.push_str(&format!("i{i},{m}\n"));
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    let n = masks.len();
    let mut probs = vec![0.0f32; n * c * H * W];
    for i in 0..n {
        for px in 0..H * W {
            let top = (px + i) % c;
            for k in 0..c {
                probs[(i * c + k) * H * W + px] = if k == top { 0.6 } else { 0.4 / (c - 1) as f32 };
            }
        }
    }
    write_f32(&d.join("probs.npy"), &[n, c, H, W], &probs);
}

/// A valid `H × W` mask of class ids `px % c`.
fn plain_mask(path: &Path, c: usize) {
    let v: Vec<u8> = (0..H * W).map(|i| (i % c) as u8).collect();
    write_mask(path, H, W, &v);
}

/// A classification dataset: 3 items, classes cat/dog/fox, `probs.npy`
/// (3, 3), items.csv with `header` and `rows`; `inputs` adds `[inputs]`
/// lines.
fn cls_dataset(d: &Path, inputs: &str, header: &str, rows: &[&str]) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        format!(
            "task = \"classification\"\nclasses = [\"cat\", \"dog\", \"fox\"]\n[inputs]\n\
             items = \"items.csv\"\nprobs = \"probs.npy\"\n{inputs}"
        ),
    )
    .unwrap();
    let mut csv = format!("{header}\n");
    for r in rows {
        csv.push_str(r);
        csv.push('\n');
    }
    std::fs::write(d.join("items.csv"), csv).unwrap();
    write_f64(
        &d.join("probs.npy"),
        &[3, 3],
        &[0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4],
    );
}

/// Write a PNG with the png crate: `data` holds the rows as PNG stores them.
fn write_png(
    path: &Path,
    (w, h): (u32, u32),
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<Vec<u8>>,
    data: &[u8],
) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    if let Some(p) = palette {
        enc.set_palette(p);
    }
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(data).unwrap();
}

/// Pack one row of `bits`-bit samples, most significant first, as PNG does.
fn pack(row: &[u16], bits: usize) -> Vec<u8> {
    match bits {
        16 => row.iter().flat_map(|v| v.to_be_bytes()).collect(),
        8 => row.iter().map(|&v| v as u8).collect(),
        _ => {
            let per = 8 / bits;
            let mut out = vec![0u8; row.len().div_ceil(per)];
            for (x, &v) in row.iter().enumerate() {
                out[x / per] |= (v as u8) << (8 - bits * (x % per + 1));
            }
            out
        }
    }
}

/// A `w × h` 1-bit grayscale PNG of zeros, streamed (never held whole).
fn huge_png(path: &Path, w: u32, h: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::One);
    enc.set_compression(png::Compression::Fast);
    let mut wr = enc.write_header().unwrap();
    let mut s = wr.stream_writer().unwrap();
    let row = vec![0u8; (w as usize).div_ceil(8)];
    for _ in 0..h {
        std::io::Write::write_all(&mut s, &row).unwrap();
    }
    s.finish().unwrap();
}

// ------------------------------------------------------------------ npy

/// Issue row "memory from a few bytes": an npy header-length field of
/// 0xFFFFFFF0 cost ~16 GB before the abort.
#[test]
fn an_npy_header_length_of_4_gib_is_refused_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    cls_dataset(d, "", "id,label", &["x1,cat", "x2,dog", "x3,fox"]);
    assert_runs(d, &[]);
    let _ = std::fs::remove_dir_all(d.join("out"));
    // Version 2.0: a u32 header length; the file holds 4 KiB.
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    bytes.extend_from_slice(&[b' '; 4096]);
    std::fs::write(d.join("probs.npy"), &bytes).unwrap();
    let (m, msg) = run_measured(d, &[]);
    assert_refused(d, &m, &msg, &["probs.npy", "4294967280 bytes", "limit"]);
    // Nothing is allocated for the field: the run fits 2 GiB of address
    // space (a 4 GiB buffer would abort).
    #[cfg(unix)]
    {
        let (code, msg) = run_capped(d, &[]);
        assert_eq!(code, Some(2), "{msg}");
    }
}

/// Issue row "panics": a shape whose product wraps (2·2·2^63·2^63 = 2^128,
/// 0 in 64 and 128 bits) passed the size check, then panicked.
#[test]
fn an_npy_shape_whose_product_wraps_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    seg_dataset(d, 2, &["m0.png", "m1.png"], "");
    plain_mask(&d.join("m0.png"), 2);
    plain_mask(&d.join("m1.png"), 2);
    assert_runs(d, &[]);
    let _ = std::fs::remove_dir_all(d.join("out"));
    let big = 1u64 << 63;
    let header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, {big}, {big}), }}\n");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(d.join("probs.npy"), &bytes).unwrap();
    let (m, msg) = run_measured(d, &[]);
    assert_refused(d, &m, &msg, &["probs.npy", "shape", "64 bits"]);
}

// ------------------------------------------------------------ triage.toml

/// Issue row "memory from a few bytes": `num_classes = 4000000000000`
/// aborted, `100000000` cost 5.4 GB.
#[test]
fn class_counts_are_bounded_by_a_stated_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_f64(&d.join("probs.npy"), &[2, 2], &[0.9, 0.1, 0.2, 0.8]);
    write_u16(&d.join("labels.npy"), &[2], &[0, 1]);
    for n in ["4000000000000", "100000000", "4097"] {
        std::fs::write(
            d.join("triage.toml"),
            format!(
                "task = \"classification\"\nnum_classes = {n}\n[inputs]\nprobs = \"probs.npy\"\nlabels = \"labels.npy\"\n"
            ),
        )
        .unwrap();
        let (m, msg) = run_measured(d, &[]);
        assert_refused(d, &m, &msg, &["triage.toml", "num_classes", "at most 4096"]);
        #[cfg(unix)]
        {
            let (code, msg) = run_capped(d, &[]);
            assert_eq!(code, Some(2), "{msg}");
        }
    }
}

/// Issue row "silently wrong": `classes = ["1","0","2"]` with label `1`
/// was read as index 1 (the class named "0").
#[test]
fn numeral_class_names_that_name_another_index_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    cls_dataset(d, "", "id,label", &["x1,1", "x2,0", "x3,2"]);
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        toml.replace(r#"["cat", "dog", "fox"]"#, r#"["1", "0", "2"]"#),
    )
    .unwrap();
    let (m, msg) = run_measured(d, &[]);
    assert_refused(d, &m, &msg, &["triage.toml", "classes", "\"1\"", "index 1"]);
    // Numerals equal to their index read the same either way.
    std::fs::write(
        d.join("triage.toml"),
        toml.replace(r#"["cat", "dog", "fox"]"#, r#"["0", "1", "2"]"#),
    )
    .unwrap();
    assert_runs(d, &[]);
}

// ---------------------------------------------------------------- paths

/// Issue row "files outside the dataset": `../`, absolute and symlinked mask
/// paths, an annotations mask and an `[inputs]` path leading out are refused
/// (file, item, field named); each is read once its directory is a root.
#[cfg(unix)]
#[test]
fn paths_leading_out_of_the_dataset_are_refused_unless_under_a_root() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    plain_mask(&outside.join("m.png"), 3);
    let abs = outside.join("m.png");
    let abs = abs.to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, &str, Vec<&str>)> = vec![
        // (mask cell of item i1, needles, [inputs] extra, annotations rows)
        (
            "../outside/m.png",
            vec![
                "items.csv",
                "item \"i1\"",
                "mask",
                "../outside/m.png",
                "outside the dataset",
            ],
            "",
            vec![],
        ),
        (
            abs,
            vec!["items.csv", "item \"i1\"", "mask", "outside the dataset"],
            "",
            vec![],
        ),
        (
            "masks/link.png",
            vec![
                "items.csv",
                "item \"i1\"",
                "mask",
                "masks/link.png",
                "outside the dataset",
            ],
            "",
            vec![],
        ),
        (
            "masks/b.png",
            vec![
                "annotations.csv",
                "item \"i1\"",
                "mask",
                "outside the dataset",
            ],
            "annotations = \"annotations.csv\"\n",
            vec!["i0,ann1,masks/a.png", "i1,ann2,../outside/m.png"],
        ),
    ];
    for (k, (cell, needles, inputs, ann)) in cases.iter().enumerate() {
        let d = tmp.path().join(format!("ds{k}"));
        seg_dataset(&d, 3, &["masks/a.png", cell], inputs);
        plain_mask(&d.join("masks/a.png"), 3);
        plain_mask(&d.join("masks/b.png"), 3);
        std::os::unix::fs::symlink(outside.join("m.png"), d.join("masks/link.png")).unwrap();
        if !ann.is_empty() {
            let mut csv = String::from("id,annotator,mask\n");
            for r in ann {
                csv.push_str(r);
                csv.push('\n');
            }
            std::fs::write(d.join("annotations.csv"), csv).unwrap();
        }
        let (m, msg) = run_measured(&d, &[]);
        assert_refused(&d, &m, &msg, needles);
        // Allowed once the directory is listed in `roots`.
        seg_dataset(
            &d,
            3,
            &["masks/a.png", cell],
            &format!("{inputs}{}", roots_line(&[&outside])),
        );
        assert_runs(&d, &[]);
    }

    // An [inputs] path: the probabilities outside the dataset.
    let d = tmp.path().join("ds-inputs");
    seg_dataset(&d, 3, &["masks/a.png", "masks/a.png"], "");
    plain_mask(&d.join("masks/a.png"), 3);
    std::fs::rename(d.join("probs.npy"), outside.join("probs.npy")).unwrap();
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    let toml = toml.replace("probs = \"probs.npy\"", "probs = \"../outside/probs.npy\"");
    std::fs::write(d.join("triage.toml"), &toml).unwrap();
    let (m, msg) = run_measured(&d, &[]);
    assert_refused(
        &d,
        &m,
        &msg,
        &[
            "triage.toml",
            "inputs.probs",
            "../outside/probs.npy",
            "outside the dataset",
        ],
    );
    std::fs::write(
        d.join("triage.toml"),
        format!("{toml}{}", roots_line(&[&outside])),
    )
    .unwrap();
    assert_runs(&d, &[]);
}

/// Issue row "files outside the dataset": an id `../x` read
/// `<probs>/../x.npy`; a per-item file that is a symlink leading out is
/// refused unless under a root.
#[cfg(unix)]
#[test]
fn per_item_probability_files_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(d.join("probs")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let c = 2;
    let one: Vec<f32> = (0..c * H * W)
        .map(|e| {
            if e / (H * W) == e % (H * W) % 2 {
                0.7
            } else {
                0.3
            }
        })
        .collect();
    write_f32(&d.join("probs/a.npy"), &[c, H, W], &one);
    write_f32(&d.join("x.npy"), &[c, H, W], &one);
    write_f32(&outside.join("b.npy"), &[c, H, W], &one);
    plain_mask(&d.join("m.png"), c);
    let toml = |roots: &str| {
        format!(
            "task = \"segmentation\"\nnum_classes = 2\n[inputs]\nitems = \"items.csv\"\n\
             probs = \"probs\"\n{roots}"
        )
    };
    std::fs::write(d.join("triage.toml"), toml("")).unwrap();
    std::fs::write(d.join("items.csv"), "id,mask\na,m.png\n../x,m.png\n").unwrap();
    let (m, msg) = run_measured(&d, &[]);
    assert_refused(
        &d,
        &m,
        &msg,
        &["item \"../x\"", "id", "probabilities directory"],
    );

    std::os::unix::fs::symlink(outside.join("b.npy"), d.join("probs/b.npy")).unwrap();
    std::fs::write(d.join("items.csv"), "id,mask\na,m.png\nb,m.png\n").unwrap();
    let (m, msg) = run_measured(&d, &[]);
    assert_refused(&d, &m, &msg, &["item \"b\"", "outside the dataset"]);
    std::fs::write(d.join("triage.toml"), toml(&roots_line(&[&outside]))).unwrap();
    assert_runs(&d, &[]);
}

/// Issue row "files outside the dataset": an outside image was drawn into
/// the overlays. Refused (nothing written); once under a root it is drawn.
#[cfg(unix)]
#[test]
fn an_outside_image_is_refused_and_never_drawn() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("ds");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A flat colour no grey rendering of a mask has.
    let colour = [10u8, 200, 30];
    let img = image::RgbImage::from_pixel(W as u32, H as u32, image::Rgb(colour));
    img.save(outside.join("pic.png")).unwrap();
    seg_dataset(&d, 3, &["masks/a.png", "masks/a.png"], "");
    // One class everywhere, annotated and predicted: no outline or band
    // covers the picture.
    write_mask(&d.join("masks/a.png"), H, W, &[0u8; H * W]);
    let probs: Vec<f32> = (0..2 * 3 * H * W)
        .map(|e| {
            if (e / (H * W)).is_multiple_of(3) {
                0.8
            } else {
                0.1
            }
        })
        .collect();
    write_f32(&d.join("probs.npy"), &[2, 3, H, W], &probs);
    for cell in ["../outside/pic.png", "img/link.png"] {
        std::fs::create_dir_all(d.join("img")).unwrap();
        let _ = std::fs::remove_file(d.join("img/link.png"));
        std::os::unix::fs::symlink(outside.join("pic.png"), d.join("img/link.png")).unwrap();
        std::fs::write(
            d.join("items.csv"),
            format!("id,mask,image\ni0,masks/a.png,\ni1,masks/a.png,{cell}\n"),
        )
        .unwrap();
        let (m, msg) = run_measured(&d, &[]);
        assert_refused(
            &d,
            &m,
            &msg,
            &["items.csv", "item \"i1\"", "image", "outside the dataset"],
        );
        assert!(!d.join("out/overlays").exists());
    }
    let toml = std::fs::read_to_string(d.join("triage.toml")).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        format!("{toml}{}", roots_line(&[&outside])),
    )
    .unwrap();
    assert_runs(&d, &[]);
    // Drawn: some overlay pixel has the picture's colour.
    let drawn = std::fs::read_dir(d.join("out/overlays"))
        .unwrap()
        .map(|e| image::open(e.unwrap().path()).unwrap().to_rgb8())
        .any(|o| o.pixels().any(|p| p.0 == colour));
    assert!(drawn, "the image under a root is not drawn");
}

// --------------------------------------------------------- special files

/// What one special file is made of.
#[derive(Clone, Copy, Debug)]
enum Special {
    Fifo,
    DevZero,
    Dir,
    /// A regular file of 8 GiB of zeros (sparse: no disk used), without a
    /// newline.
    Sparse,
}

#[cfg(unix)]
fn plant(path: &Path, kind: Special) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir_all(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    match kind {
        Special::Fifo => {
            let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        Special::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        Special::Dir => std::fs::create_dir(path).unwrap(),
        Special::Sparse => std::fs::File::create(path)
            .unwrap()
            .set_len(8 << 30)
            .unwrap(),
    }
}

/// Issue row "memory from a few bytes": `/dev/zero` (or a FIFO, or a
/// directory) as a mask, items.csv, annotations.csv, the probabilities,
/// labels, embeddings, an image, reviews.jsonl, `--previous`'s queue.jsonl
/// or a review-import decisions CSV cost GBs or hung (an image looped
/// forever). Each is refused, naming it, at once, in bounded memory; so is
/// an 8 GiB sparse file of zeros in their place (a text table without a
/// newline is refused at its line limit, a file over its size limit before
/// it is read).
#[cfg(unix)]
#[test]
fn special_files_are_refused_quickly_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // `/dev` is a root, so the paths pass the dataset rule and meet the
    // regular-file rule.
    let dev = roots_line(&[Path::new("/dev")]);
    let kinds = [
        Special::Fifo,
        Special::DevZero,
        Special::Dir,
        Special::Sparse,
    ];
    // Classification: (file planted, [inputs] lines, items header, rows).
    let cls_inputs = format!(
        "labels = \"labels.npy\"\nembeddings = \"emb.npy\"\nannotations = \"annotations.csv\"\n{dev}"
    );
    let cls = |d: &Path| {
        cls_dataset(
            d,
            &cls_inputs,
            "id,image",
            &["x1,img/1.png", "x2,img/2.png", "x3,img/3.png"],
        );
        write_u16(&d.join("labels.npy"), &[3], &[0, 1, 2]);
        write_f32(&d.join("emb.npy"), &[3, 2], &[1.0, 0.0, 0.0, 1.0, 0.7, 0.7]);
        std::fs::write(
            d.join("annotations.csv"),
            "id,annotator,label\nx1,a,cat\nx2,a,dog\n",
        )
        .unwrap();
        for i in 1..=3 {
            let img = image::RgbImage::from_pixel(4, 4, image::Rgb([i as u8, 0, 0]));
            std::fs::create_dir_all(d.join("img")).unwrap();
            img.save(d.join(format!("img/{i}.png"))).unwrap();
        }
    };
    let mut n = 0;
    for target in [
        "items.csv",
        "probs.npy",
        "labels.npy",
        "emb.npy",
        "annotations.csv",
        "img/2.png",
        "reviews.jsonl",
    ] {
        for kind in kinds {
            let d = tmp.path().join(format!("c{n}"));
            n += 1;
            cls(&d);
            assert_runs(&d, &[]);
            let _ = std::fs::remove_dir_all(d.join("out"));
            plant(&d.join(target), kind);
            let (m, msg) = run_measured(&d, &[]);
            let name = Path::new(target).file_name().unwrap().to_str().unwrap();
            assert_refused(&d, &m, &msg, &[name]);
        }
    }
    // An image without embeddings (read only by the overlays) too.
    for kind in kinds {
        let d = tmp.path().join(format!("s{n}"));
        n += 1;
        seg_dataset(&d, 3, &["masks/a.png", "masks/a.png"], &dev);
        plain_mask(&d.join("masks/a.png"), 3);
        std::fs::write(
            d.join("items.csv"),
            "id,mask,image\ni0,masks/a.png,\ni1,masks/a.png,img/x.png\n",
        )
        .unwrap();
        plant(&d.join("img/x.png"), kind);
        let (m, msg) = run_measured(&d, &[]);
        assert_refused(&d, &m, &msg, &["x.png", "item \"i1\"", "image"]);
        // ... and as a mask.
        std::fs::write(
            d.join("items.csv"),
            "id,mask\ni0,masks/a.png\ni1,masks/b.png\n",
        )
        .unwrap();
        plant(&d.join("masks/b.png"), kind);
        let (m, msg) = run_measured(&d, &[]);
        assert_refused(&d, &m, &msg, &["b.png", "item \"i1\"", "mask"]);
    }
    // `--previous DIR` whose queue.jsonl is special, and a review-import
    // decisions CSV.
    let d = tmp.path().join("prev");
    cls_dataset(&d, "", "id,label", &["x1,cat", "x2,dog", "x3,fox"]);
    for kind in kinds {
        let prev = tmp.path().join(format!("p{n}"));
        n += 1;
        plant(&prev.join("queue.jsonl"), kind);
        let (m, msg) = run_measured(&d, &["--previous", prev.to_str().unwrap()]);
        assert_refused(&d, &m, &msg, &["queue.jsonl"]);

        let csv = tmp.path().join(format!("decisions{n}.csv"));
        plant(&csv, kind);
        let args = ["review-import", d.to_str().unwrap(), csv.to_str().unwrap()];
        let m = triage_measured(&args, None, TIMEOUT);
        let msg = describe(&args, &m.output);
        assert!(!m.timed_out, "{msg}");
        assert_eq!(m.output.status.code(), Some(2), "{msg}");
        assert!(
            String::from_utf8_lossy(&m.output.stderr).contains(&format!("decisions{n}.csv")),
            "{msg}"
        );
        assert!(m.peak_rss < RSS_LIMIT, "{} bytes\n{msg}", m.peak_rss);
        assert!(!d.join("reviews.jsonl").exists());
    }
}

// ------------------------------------------------------------- PNG masks

/// Issue row "silently wrong": a 1-bit mask counted half its pixels, a
/// 4-bit one reported a wrong class id. Masks of every depth, and palette
/// masks (their indices, whatever the colours), give report.json's
/// per-class support as planted.
#[test]
fn png_masks_of_every_bit_depth_read_as_class_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let c = 12;
    // (file, bit depth, palette, values < 2^depth and < c)
    let planted: Vec<(&str, usize, bool, Vec<u16>)> = vec![
        (
            "g1.png",
            1,
            false,
            (0..H * W).map(|i| (i % 3 == 0) as u16).collect(),
        ),
        (
            "g2.png",
            2,
            false,
            (0..H * W).map(|i| (i * 7 % 4) as u16).collect(),
        ),
        (
            "g4.png",
            4,
            false,
            (0..H * W).map(|i| (i * 5 % 12) as u16).collect(),
        ),
        (
            "g8.png",
            8,
            false,
            (0..H * W).map(|i| (11 - i % 12) as u16).collect(),
        ),
        (
            "g16.png",
            16,
            false,
            (0..H * W).map(|i| (i % 2 * 9 + 1) as u16).collect(),
        ),
        (
            "p2.png",
            2,
            true,
            (0..H * W).map(|i| (i % 4) as u16).collect(),
        ),
        (
            "p4.png",
            4,
            true,
            (0..H * W).map(|i| (10 - i % 6) as u16).collect(),
        ),
        (
            "p8.png",
            8,
            true,
            (0..H * W).map(|i| (i * 3 % 11) as u16).collect(),
        ),
    ];
    let cells: Vec<&str> = planted.iter().map(|p| p.0).collect();
    seg_dataset(d, c, &cells, "");
    let mut want = vec![0u64; c];
    for (name, bits, palette, values) in &planted {
        let mut data = Vec::new();
        for row in values.chunks(W) {
            data.extend(pack(row, *bits));
        }
        let (color, pal) = if *palette {
            // Colours unrelated to the indices (index k is grey 255 - 20k).
            let n = 1usize << bits;
            let pal: Vec<u8> = (0..n)
                .flat_map(|k| {
                    let g = 255usize.saturating_sub(20 * k) as u8;
                    [g, g, g]
                })
                .collect();
            (png::ColorType::Indexed, Some(pal))
        } else {
            (png::ColorType::Grayscale, None)
        };
        let depth = match bits {
            1 => png::BitDepth::One,
            2 => png::BitDepth::Two,
            4 => png::BitDepth::Four,
            8 => png::BitDepth::Eight,
            _ => png::BitDepth::Sixteen,
        };
        write_png(
            &d.join(name),
            (W as u32, H as u32),
            color,
            depth,
            pal,
            &data,
        );
        for &v in values {
            want[v as usize] += 1;
        }
    }
    assert_runs(d, &[]);
    let report = read_report_typed(&d.join("out"));
    let got: Vec<u64> = report.per_class.iter().map(|k| k.support).collect();
    assert_eq!(got, want);
    assert_eq!(want.iter().sum::<u64>(), (planted.len() * H * W) as u64);
}

/// Colour masks are refused with what the file is.
#[test]
fn colour_png_masks_are_refused_saying_what_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    for (k, (color, samples, what)) in [
        (
            png::ColorType::Rgb,
            3,
            "an RGB colour PNG (8-bit, 3 channels)",
        ),
        (
            png::ColorType::Rgba,
            4,
            "an RGBA colour PNG (8-bit, 4 channels)",
        ),
        (
            png::ColorType::GrayscaleAlpha,
            2,
            "a grayscale PNG with an alpha channel (8-bit, 2 channels)",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let d = tmp.path().join(format!("d{k}"));
        seg_dataset(&d, 3, &["a.png", "b.png"], "");
        plain_mask(&d.join("a.png"), 3);
        write_png(
            &d.join("b.png"),
            (W as u32, H as u32),
            color,
            png::BitDepth::Eight,
            None,
            &vec![1u8; H * W * samples],
        );
        let (m, msg) = run_measured(&d, &[]);
        assert_refused(
            &d,
            &m,
            &msg,
            &["b.png", "item \"i1\"", "mask", what, "palette-indexed PNG"],
        );
    }
}

/// Issue row "memory from a few bytes": a small 20000² PNG mask cost
/// 1.18 GB before the size refusal; an overlay background that large is
/// not decoded either.
#[test]
fn a_huge_png_is_refused_before_its_pixels_are_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("mask");
    seg_dataset(&d, 2, &["a.png", "big.png"], "");
    plain_mask(&d.join("a.png"), 2);
    huge_png(&d.join("big.png"), 20_000, 20_000);
    assert!(std::fs::metadata(d.join("big.png")).unwrap().len() < 4 << 20);
    let (m, msg) = run_measured(&d, &[]);
    assert_refused(
        &d,
        &m,
        &msg,
        &[
            "big.png",
            "item \"i1\"",
            "20000x20000",
            "probabilities are 3x5",
        ],
    );

    // The same PNG as an item's image: the run draws a grey overlay
    // instead, in bounded memory.
    let d = tmp.path().join("image");
    seg_dataset(&d, 2, &["a.png", "a.png"], "");
    plain_mask(&d.join("a.png"), 2);
    std::fs::rename(tmp.path().join("mask/big.png"), d.join("big.png")).unwrap();
    std::fs::write(
        d.join("items.csv"),
        "id,mask,image\ni0,a.png,big.png\ni1,a.png,\n",
    )
    .unwrap();
    let (m, msg) = run_measured(&d, &[]);
    assert!(!m.timed_out, "{msg}");
    assert_eq!(m.output.status.code(), Some(0), "{msg}");
    assert!(
        m.peak_rss < RSS_LIMIT,
        "peak RSS {} bytes\n{msg}",
        m.peak_rss
    );
}

// ----------------------------------------------------------------- knn-k

/// Issue rows "memory" and "panics": `--knn-k 1000000000` aborted and
/// `--knn-k 18446744073709551615` panicked. Both are usage errors before
/// anything is allocated; the bound itself runs.
#[test]
fn knn_k_is_bounded_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    cls_dataset(
        d,
        "embeddings = \"emb.npy\"\n",
        "id,label",
        &["x1,cat", "x2,dog", "x3,fox"],
    );
    write_f32(&d.join("emb.npy"), &[3, 2], &[1.0, 0.0, 0.0, 1.0, 0.7, 0.7]);
    for k in ["1000000000", "18446744073709551615", "257"] {
        let (m, msg) = run_measured(d, &["--knn-k", k]);
        assert_refused(d, &m, &msg, &["--knn-k", "256"]);
        #[cfg(unix)]
        {
            let (code, msg) = run_capped(d, &["--knn-k", k]);
            assert_eq!(code, Some(2), "{msg}");
        }
    }
    assert_runs(d, &["--knn-k", "256"]);
}
