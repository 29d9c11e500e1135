//! Probabilities however they are saved (`.npz` archives, `probs_key`,
//! `probs_layout = "nhwc"`) give the very same queue: a segmentation and a
//! classification dataset are run with their probabilities as a `.npy`
//! `(N, C, H, W)` (the reference), channels-last `(N, H, W, C)`, in `.npz`
//! archives stored (`np.savez`) and deflated (`np.savez_compressed`), and
//! as per-item files, in float32, float16 and float64; every run's
//! `queue.jsonl` and `queue.csv` (and a segmentation run's overlays) must be
//! byte-identical to the reference's.
//! With `TRIAGE_REF_PYTHON`, numpy itself writes the archives too. Bad
//! archives and layouts exit 2 with a named error and no output.

use std::io::{Cursor, Write};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zip::CompressionMethod::{self, Deflated, Stored};
use zip::write::SimpleFileOptions;

use crate::common::*;

const N: usize = 5;
const C: usize = 3;
const H: usize = 5;
const W: usize = 7;
const IDS: [&str; N] = ["a", "b", "c", "d", "e"];

/// Softmax-like probabilities `(N, C, H, W)`, seeded: most pixels agree
/// with their mask, some do not.
fn seg_probs() -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut p = vec![0.0; N * C * H * W];
    for n in 0..N {
        for i in 0..H * W {
            let raw: Vec<f64> = (0..C)
                .map(|_| rng.random_range(0.01..1.0f64).powi(3))
                .collect();
            let s: f64 = raw.iter().sum();
            for k in 0..C {
                p[(n * C + k) * H * W + i] = raw[k] / s;
            }
        }
    }
    p
}

/// `(N, C, H, W)` values in `(N, H, W, C)` order.
fn to_nhwc(p: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; p.len()];
    for b in 0..n {
        for k in 0..C {
            for i in 0..H * W {
                out[(b * H * W + i) * C + k] = p[(b * C + k) * H * W + i];
            }
        }
    }
    out
}

/// `.npy` bytes of `v` as `descr` (`<f4`, `<f2`, `<f8`) and `shape`.
fn npy(descr: &str, shape: &[usize], v: &[f64]) -> Vec<u8> {
    let data: Vec<u8> = match descr {
        "<f4" => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
        "<f8" => v.iter().flat_map(|&x| x.to_le_bytes()).collect(),
        "<f2" => v
            .iter()
            .flat_map(|&x| half::f16::from_f64(x).to_bits().to_le_bytes())
            .collect(),
        _ => panic!("{descr}"),
    };
    let tmp = tempfile::NamedTempFile::new().unwrap();
    write_npy_raw(tmp.path(), descr, shape, &data);
    std::fs::read(tmp.path()).unwrap()
}

fn zip_of(members: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in members {
        w.start_file(
            *name,
            SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A segmentation dataset in `d` (items, masks), its `[inputs]` probs
/// lines `probs`.
fn seg_dataset(d: &Path, probs: &str) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        format!(
            "task = \"segmentation\"\nclasses = [\"bg\", \"road\", \"car\"]\n[inputs]\nitems = \"items.csv\"\n{probs}\n"
        ),
    )
    .unwrap();
    let mut items = "id,mask\n".to_string();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for id in IDS {
        items.push_str(&format!("{id},masks/{id}.png\n"));
        let mask: Vec<u8> = (0..H * W).map(|_| rng.random_range(0..C as u8)).collect();
        write_mask(&d.join(format!("masks/{id}.png")), H, W, &mask);
    }
    std::fs::write(d.join("items.csv"), items).unwrap();
}

/// `queue.jsonl` and `queue.csv` of a run on `d`.
fn queue_of(d: &Path) -> Queue {
    let out = d.join("out");
    run_ok(d, &out, &["--backend", "cpu", "--budget", "3"]);
    let mut overlays: Vec<(String, Vec<u8>)> = std::fs::read_dir(out.join("overlays"))
        .map(|d| {
            d.map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
        })
        .unwrap_or_default();
    overlays.sort();
    let q = (
        std::fs::read(out.join("queue.jsonl")).unwrap(),
        std::fs::read(out.join("queue.csv")).unwrap(),
        overlays,
    );
    assert!(!q.0.is_empty());
    q
}

/// Files to write into a dataset directory: (relative path, bytes).
type Files<'a> = Vec<(&'a str, Vec<u8>)>;

/// A run's `queue.jsonl`, `queue.csv` and overlays (segmentation: the
/// prediction drawn over the mask, `overlays/<id>.png`).
type Queue = (Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Runs each variant (a name, what it writes into the dataset directory and
/// its `[inputs]` probs lines) and insists every queue is the first's.
fn same_queues(variants: Vec<(&str, Files<'_>, &str)>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut first: Option<(String, Queue)> = None;
    for (name, files, probs) in variants {
        let d = tmp.path().join(name);
        seg_dataset(&d, probs);
        for (rel, bytes) in &files {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let q = queue_of(&d);
        match &first {
            None => first = Some((name.to_string(), q)),
            Some((f, want)) => {
                assert!(
                    q.0 == want.0,
                    "{name}: queue.jsonl differs from {f}'s:\n{}\n---\n{}",
                    String::from_utf8_lossy(&q.0),
                    String::from_utf8_lossy(&want.0)
                );
                assert!(q.1 == want.1, "{name}: queue.csv differs from {f}'s");
                assert!(!q.2.is_empty(), "{name}: no overlays");
                assert!(q.2 == want.2, "{name}: the overlays differ from {f}'s");
            }
        }
    }
}

const NHWC: &str = "probs_layout = \"nhwc\"";

/// The segmentation variants of one dtype.
fn seg_variants(descr: &str) {
    let p = seg_probs();
    let nhwc = to_nhwc(&p, N);
    let nchw_npy = npy(descr, &[N, C, H, W], &p);
    let nhwc_npy = npy(descr, &[N, H, W, C], &nhwc);
    let other = npy("<f4", &[2], &[1.0, 2.0]);
    let per_item = |v: &[f64], shape: [usize; 3]| -> Files<'static> {
        let k = C * H * W;
        let names = [
            "dir/a.npy",
            "dir/b.npy",
            "dir/c.npy",
            "dir/d.npy",
            "dir/e.npy",
        ];
        (0..N)
            .map(|n| (names[n], npy(descr, &shape, &v[n * k..(n + 1) * k])))
            .collect()
    };
    let nhwc_probs = format!("probs = \"probs.npz\"\n{NHWC}\nprobs_key = \"p\"");
    let dir_nhwc = format!("probs = \"dir\"\n{NHWC}");
    same_queues(vec![
        (
            "nchw_npy",
            vec![("probs.npy", nchw_npy.clone())],
            "probs = \"probs.npy\"",
        ),
        (
            "nhwc_npy",
            vec![("probs.npy", nhwc_npy.clone())],
            &format!("probs = \"probs.npy\"\n{NHWC}"),
        ),
        (
            "nchw_stored",
            vec![("probs.npz", zip_of(&[("probs.npy", &nchw_npy)], Stored))],
            "probs = \"probs.npz\"",
        ),
        (
            "nchw_deflated",
            vec![(
                "probs.npz",
                zip_of(&[("x.npy", &other), ("probs.npy", &nchw_npy)], Deflated),
            )],
            "probs = \"probs.npz\"",
        ),
        (
            "nhwc_stored",
            vec![(
                "probs.npz",
                zip_of(&[("probs.npy", &other), ("p.npy", &nhwc_npy)], Stored),
            )],
            &nhwc_probs,
        ),
        (
            "nhwc_deflated",
            vec![("probs.npz", zip_of(&[("p.npy", &nhwc_npy)], Deflated))],
            &nhwc_probs,
        ),
        ("nchw_dir", per_item(&p, [C, H, W]), "probs = \"dir\""),
        ("nhwc_dir", per_item(&nhwc, [H, W, C]), &dir_nhwc),
    ]);
}

#[test]
fn segmentation_queues_are_the_same_however_the_probabilities_are_saved_f32() {
    seg_variants("<f4");
}

#[test]
fn segmentation_queues_are_the_same_however_the_probabilities_are_saved_f16_f64() {
    seg_variants("<f2");
    seg_variants("<f8");
}

#[test]
fn classification_npz_gives_the_npy_queue() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 40;
    let p: Vec<f64> = (0..n)
        .flat_map(|_| {
            let raw: Vec<f64> = (0..C)
                .map(|_| rng.random_range(0.01..1.0f64).powi(4))
                .collect();
            let s: f64 = raw.iter().sum();
            raw.into_iter().map(move |x| x / s)
        })
        .collect();
    let labels: String = (0..n)
        .map(|i| format!("x{i},{}\n", rng.random_range(0..C)))
        .collect();
    let arr = npy("<f4", &[n, C], &p);
    let tmp = tempfile::tempdir().unwrap();
    let mut first = None;
    for (name, file, bytes) in [
        ("npy", "probs.npy", arr.clone()),
        (
            "stored",
            "probs.npz",
            zip_of(&[("probs.npy", &arr)], Stored),
        ),
        (
            "deflated",
            "probs.npz",
            zip_of(&[("probs.npy", &arr)], Deflated),
        ),
    ] {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("triage.toml"),
            format!(
                "task = \"classification\"\nclasses = [\"cat\", \"dog\", \"fox\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"{file}\"\n"
            ),
        )
        .unwrap();
        std::fs::write(d.join("items.csv"), format!("id,label\n{labels}")).unwrap();
        std::fs::write(d.join(file), bytes).unwrap();
        let q = queue_of(&d);
        match &first {
            None => first = Some(q),
            Some(want) => assert!(&q == want, "{name}: the queue differs from the .npy one's"),
        }
    }
}

/// numpy's own `np.save`, `np.savez` and `np.savez_compressed` (zip64
/// headers and all), channels-first and -last: the same queue as the
/// reference `.npy` this test writes.
#[test]
fn numpy_written_archives_give_the_same_queue() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped numpy's archives: set TRIAGE_REF_PYTHON");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.npy");
    std::fs::write(&src, npy("<f4", &[N, C, H, W], &seg_probs())).unwrap();
    let script = "import sys, numpy as np\n\
        p = np.load(sys.argv[1]); d = sys.argv[2]\n\
        q = np.ascontiguousarray(p.transpose(0, 2, 3, 1))\n\
        np.save(d + '/nchw.npy', p)\n\
        np.savez(d + '/stored.npz', probs=p, other=np.arange(3))\n\
        np.savez_compressed(d + '/deflated.npz', logits=q)\n\
        np.savez(d + '/nhwc_stored.npz', probs=q)\n";
    let o = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&src)
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |f: &str| std::fs::read(tmp.path().join(f)).unwrap();
    same_queues(vec![
        (
            "ref",
            vec![("probs.npy", read("src.npy"))],
            "probs = \"probs.npy\"",
        ),
        (
            "np_save",
            vec![("probs.npy", read("nchw.npy"))],
            "probs = \"probs.npy\"",
        ),
        (
            "np_savez",
            vec![("p.npz", read("stored.npz"))],
            "probs = \"p.npz\"",
        ),
        (
            "np_savez_compressed_nhwc",
            vec![("p.npz", read("deflated.npz"))],
            &format!("probs = \"p.npz\"\nprobs_key = \"logits\"\n{NHWC}"),
        ),
        (
            "np_savez_nhwc",
            vec![("p.npz", read("nhwc_stored.npz"))],
            &format!("probs = \"p.npz\"\n{NHWC}"),
        ),
    ]);
}

/// A run on a dataset whose probabilities are `files` fails: exit 2, every
/// `needles` on stderr, no panic, no output.
fn fails(files: Files<'_>, probs: &str, needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    seg_dataset(d, probs);
    for (rel, bytes) in &files {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let out = d.join("out");
    let args = cpu_args(d, &out, &[]);
    let o = triage(&args);
    let msg = describe(&args, &o);
    assert_eq!(o.status.code(), Some(2), "{msg}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}\n{msg}");
    }
    assert!(!stderr.contains("panicked"), "{msg}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a failed run left files: {left:?}");
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_archives_exit_2_with_named_errors() {
    let p = seg_probs();
    let arr = npy("<f4", &[N, C, H, W], &p);
    let npz = "probs = \"probs.npz\"";
    // A missing key: the keys there are listed.
    fails(
        vec![("probs.npz", zip_of(&[("logits.npy", &arr)], Stored))],
        npz,
        &["probs.npz", "probs_key", "no array \"probs\"", "\"logits\""],
    );
    fails(
        vec![("probs.npz", zip_of(&[("probs.npy", &arr)], Stored))],
        &format!("{npz}\nprobs_key = \"scores\""),
        &["probs.npz", "no array \"scores\"", "\"probs\""],
    );
    // A key for a file that is no archive.
    fails(
        vec![("probs.npy", arr.clone())],
        "probs = \"probs.npy\"\nprobs_key = \"probs\"",
        &["triage.toml", "inputs.probs_key", "not one"],
    );
    // Not a zip; a .npy named .npz.
    fails(
        vec![("probs.npz", arr.clone())],
        npz,
        &["probs.npz", "not a valid .npz archive"],
    );
    // A zip named .npy: the message says what it is.
    fails(
        vec![("probs.npy", zip_of(&[("probs.npy", &arr)], Stored))],
        "probs = \"probs.npy\"",
        &["probs.npy", "it is a zip archive"],
    );
    // Sizes that lie.
    let good = zip_of(&[("probs.npy", &arr)], Stored);
    let find = |b: &[u8], sig: &[u8]| b.windows(4).position(|w| w == sig).unwrap();
    let (local, central) = (find(&good, b"PK\x03\x04"), find(&good, b"PK\x01\x02"));
    let mut b = good.clone();
    for at in [local + 18, local + 22, central + 20, central + 24] {
        put32(&mut b, at, 0x7fff_0000);
    }
    fails(
        vec![("probs.npz", b)],
        npz,
        &["probs.npz", "probs.npy", "past the archive's end"],
    );
    let defl = zip_of(&[("probs.npy", &arr)], Deflated);
    let (local, central) = (find(&defl, b"PK\x03\x04"), find(&defl, b"PK\x01\x02"));
    let mut b = defl.clone();
    put32(&mut b, local + 22, 0xffff_0000);
    put32(&mut b, central + 24, 0xffff_0000);
    fails(
        vec![("probs.npz", b)],
        npz,
        &["probs.npz", "probs.npy", "over the limit", "np.savez"],
    );
    // A cut archive.
    fails(
        vec![("probs.npz", good[..good.len() - 30].to_vec())],
        npz,
        &["probs.npz", "not a valid .npz archive"],
    );
}

#[test]
fn the_wrong_layout_names_the_fix() {
    let p = seg_probs();
    // Channels-last saved, channels-first read: set probs_layout.
    fails(
        vec![("probs.npy", npy("<f4", &[N, H, W, C], &to_nhwc(&p, N)))],
        "probs = \"probs.npy\"",
        &[
            "probs.npy",
            "shape",
            "the last axis has 3 entries and triage.toml says 3 classes: the array looks \
             channels-last, (N, H, W, C); set probs_layout = \"nhwc\" in triage.toml's [inputs]",
        ],
    );
    // Channels-first saved, channels-last read.
    fails(
        vec![("probs.npy", npy("<f4", &[N, C, H, W], &p))],
        &format!("probs = \"probs.npy\"\n{NHWC}"),
        &[
            "probs.npy",
            "the second axis has 3 entries",
            "remove probs_layout = \"nhwc\"",
        ],
    );
    // The same per item.
    let k = C * H * W;
    let files = |shape: [usize; 3], v: &[f64]| -> Files<'static> {
        let names = [
            "dir/a.npy",
            "dir/b.npy",
            "dir/c.npy",
            "dir/d.npy",
            "dir/e.npy",
        ];
        (0..N)
            .map(|n| (names[n], npy("<f4", &shape, &v[n * k..(n + 1) * k])))
            .collect()
    };
    fails(
        files([H, W, C], &to_nhwc(&p, N)),
        "probs = \"dir\"",
        &[
            "a.npy",
            "\"a\"",
            "looks channels-last, (H, W, C); set probs_layout = \"nhwc\"",
        ],
    );
    fails(
        files([C, H, W], &p),
        &format!("probs = \"dir\"\n{NHWC}"),
        &[
            "a.npy",
            "\"a\"",
            "the first axis has 3 entries",
            "remove probs_layout",
        ],
    );
    // A 3-D stacked array.
    fails(
        vec![("probs.npy", npy("<f4", &[N, H, W * C], &p))],
        &format!("probs = \"probs.npy\"\n{NHWC}"),
        &["probs.npy", "expected shape (N, H, W, C)"],
    );
}
