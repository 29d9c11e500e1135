//! Arrays given in memory (the Python API's way in) run through the same
//! score stage as the dataset's files: the queue is the CLI's, byte for
//! byte (classification) or value for value (segmentation, whose CLI rows
//! carry the items CSV's `mask` column), for arrays in memory and for
//! arrays read from a range of a file (a `np.memmap`'s).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use triage::config::{DatasetConfig, Task};
use triage::io::npy::NpyArray;
use triage::memory::{ArraySource, Dtype, MemArray, MemoryInputs};
use triage::pipeline::{RunOptions, run_config};

use crate::common::*;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The whole array of a `.npy` file as a typed vector and its shape.
fn npy<T: bytemuck::Pod>(path: &Path) -> (Vec<T>, Vec<usize>) {
    let mut a = NpyArray::open(path).unwrap();
    let bytes = a.read_bytes(0, a.len()).unwrap();
    (bytemuck::pod_collect_to_vec(&bytes), a.shape.clone())
}

fn array<T: triage::memory::MemElement>(v: Vec<T>, shape: &[usize]) -> ArraySource {
    ArraySource::Memory(MemArray::owned(
        ndarray::ArrayD::from_shape_vec(shape.to_vec(), v).unwrap(),
    ))
}

/// `path`'s data as a file range: where a memmap of it would point.
fn file_range(path: &Path, dtype: Dtype) -> ArraySource {
    let a = NpyArray::open(path).unwrap();
    let len = std::fs::metadata(path).unwrap().len();
    ArraySource::File {
        path: path.to_path_buf(),
        offset: len - (a.len() * dtype.size()) as u64,
        dtype,
        shape: a.shape.clone(),
    }
}

/// The options `triage run --out OUT --backend cpu [extra]` runs with.
fn cpu_opts(out: &Path, extra: &[&str]) -> RunOptions {
    let mut args = vec!["--out".to_string(), out.display().to_string()];
    args.extend(
        ["--backend", "cpu"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
    );
    triage::cli::run_options(PathBuf::from("(arrays)"), &args).unwrap()
}

fn cpu(out: &Path) -> RunOptions {
    cpu_opts(out, &[])
}

fn cifar() -> (PathBuf, DatasetConfig) {
    let dir = repo("datasets/cifar10-label-errors");
    let cfg = DatasetConfig::load(&dir).unwrap();
    (dir, cfg)
}

#[test]
fn classification_in_memory_and_from_a_file_range_writes_the_cli_queue() {
    let (dir, file_cfg) = cifar();
    let tmp = tempfile::tempdir().unwrap();
    let cli_out = tmp.path().join("cli");
    run_ok(&dir, &cli_out, &["--backend", "cpu", "--budget", "50"]);
    let want = std::fs::read(cli_out.join("queue.jsonl")).unwrap();
    let want_csv = std::fs::read(cli_out.join("queue.csv")).unwrap();

    let (probs, shape) = npy::<f64>(&dir.join("probs.npy"));
    let (labels, lshape) = npy::<u16>(&dir.join("labels.npy"));
    // Labels as int64, as numpy gives them: the values, not the dtype, count.
    let labels: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    let sources = [
        ("memory", array(probs, &shape)),
        ("file range", file_range(&dir.join("probs.npy"), Dtype::F64)),
    ];
    for (how, probs) in sources {
        let cfg = DatasetConfig::in_memory(
            Task::Classification,
            Some(file_cfg.class_names.clone()),
            None,
            None,
            MemoryInputs {
                probs,
                labels: Some(array(labels.clone(), &lshape)),
                masks: None,
                embeddings: None,
                ids: None,
            },
        )
        .unwrap();
        let out = tmp.path().join(how.replace(' ', "_"));
        run_config(&cfg, &cpu_opts(&out, &["--budget", "50"])).unwrap();
        assert!(
            std::fs::read(out.join("queue.jsonl")).unwrap() == want,
            "{how}: queue.jsonl differs from the CLI's"
        );
        assert!(
            std::fs::read(out.join("queue.csv")).unwrap() == want_csv,
            "{how}: queue.csv differs from the CLI's"
        );
    }
}

#[test]
fn segmentation_in_memory_scores_as_the_cli_does() {
    let demo = repo("datasets/demo");
    let tmp = tempfile::tempdir().unwrap();
    // The demo without its image and split columns (arrays carry none).
    let ds = tmp.path().join("ds");
    copy_dir(&demo, &ds);
    let csv = std::fs::read_to_string(ds.join("items.csv")).unwrap();
    let trimmed: String = csv
        .lines()
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    std::fs::write(ds.join("items.csv"), trimmed).unwrap();
    let cli_out = tmp.path().join("cli");
    run_ok(&ds, &cli_out, &["--backend", "cpu"]);
    let mut want = read_queue_rows(&cli_out);
    for row in &mut want {
        row.carried.0.retain(|(k, _)| k != "mask");
    }

    let file_cfg = DatasetConfig::load(&ds).unwrap();
    let manifest = triage::io::manifest::Manifest::load(&ds.join("items.csv")).unwrap();
    let (probs, shape) = npy::<u16>(&ds.join("probs.npy"));
    let probs: Vec<half::f16> = probs.into_iter().map(half::f16::from_bits).collect();
    let (emb, eshape) = npy::<f32>(&ds.join("embeddings.npy"));
    let (h, w) = (shape[2], shape[3]);
    let mut masks = Vec::with_capacity(shape[0] * h * w);
    for (i, id) in manifest.ids.iter().enumerate() {
        let path = ds.join(manifest.rows.cell(i, 1));
        masks.extend(triage::io::mask::read_mask(&path, id, (h, w), 5, 255).unwrap());
    }
    let cfg = DatasetConfig::in_memory(
        Task::Segmentation,
        Some(file_cfg.class_names.clone()),
        Some(255),
        None,
        MemoryInputs {
            probs: array(probs, &shape),
            labels: None,
            masks: Some(array(masks, &[shape[0], h, w])),
            embeddings: Some(array(emb, &eshape)),
            ids: Some(manifest.ids.to_vec()),
        },
    )
    .unwrap();
    let out = tmp.path().join("mem");
    run_config(&cfg, &cpu(&out)).unwrap();
    let got = read_queue_rows(&out);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "row of {}", w.id);
    }
    // The overlays were drawn from the arrays too.
    assert!(out.join("overlays").read_dir().unwrap().count() > 0);
}

#[test]
fn bad_arrays_name_the_argument_the_item_and_the_field() {
    let probs = || array(vec![0.5f32; 8], &[4, 2]);
    let inputs = |labels: Vec<i64>| MemoryInputs {
        probs: probs(),
        labels: Some(array(labels, &[4])),
        masks: None,
        embeddings: None,
        ids: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = DatasetConfig::in_memory(
        Task::Classification,
        None,
        None,
        None,
        inputs(vec![0, 1, 7, -1]),
    )
    .unwrap();
    let e = run_config(&cfg, &cpu(&tmp.path().join("o")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "labels: item \"c\": label: class id 7 out of range 0 to 1 (-1 marks an unlabelled item)"
    );
    assert!(!tmp.path().join("o").join("queue.jsonl").exists());

    // Shapes and dtypes are checked before anything runs.
    let mut bad = inputs(vec![0; 4]);
    bad.labels = Some(array(vec![0i64; 3], &[3]));
    let e = DatasetConfig::in_memory(Task::Classification, None, None, None, bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        "labels: shape: shape [3] does not have one row per item (4 items)"
    );
    let mut bad = inputs(vec![0; 4]);
    bad.ids = Some(vec!["a".into(), "b".into(), "a".into(), "d".into()]);
    let e = DatasetConfig::in_memory(Task::Classification, None, None, None, bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ids: item \"a\": duplicate id: items 0 and 2 both use it"
    );
    let e = DatasetConfig::in_memory(
        Task::Segmentation,
        None,
        None,
        None,
        MemoryInputs {
            masks: None,
            labels: None,
            ..inputs(vec![0; 4])
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("(N, C, H, W)"), "{e}");
    // Channels-last probabilities beside their masks: the fix is named.
    let e = DatasetConfig::in_memory(
        Task::Segmentation,
        None,
        None,
        None,
        MemoryInputs {
            probs: array(vec![0.25f32; 2 * 4 * 6 * 3], &[2, 4, 6, 3]),
            labels: None,
            masks: Some(array(vec![0u8; 2 * 4 * 6], &[2, 4, 6])),
            embeddings: None,
            ids: None,
        },
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "probs: shape: shape [2, 4, 6, 3] looks channels-last, (N, H, W, C), beside masks of \
         shape [2, 4, 6]; triage reads (N, C, H, W): pass \
         np.ascontiguousarray(probs.transpose(0, 3, 1, 2))"
    );
    // A pixel that is no class: the error names the pixel.
    let cfg = DatasetConfig::in_memory(
        Task::Segmentation,
        None,
        None,
        None,
        MemoryInputs {
            probs: array(vec![0.5f32; 2 * 2 * 2 * 2], &[2, 2, 2, 2]),
            labels: None,
            masks: Some(array(vec![0u8, 1, 1, 0, 0, 0, 9, 0], &[2, 2, 2])),
            embeddings: None,
            ids: None,
        },
    )
    .unwrap();
    let e = run_config(&cfg, &cpu(&tmp.path().join("s")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "masks: item \"1\": pixel (x=0, y=1): class id 9 out of range (class ids 0 to 1, ignore_index 255)"
    );
    // Options keyed on a dataset's files are refused for arrays.
    let mut o = cpu(&tmp.path().join("r"));
    o.resume = true;
    let cfg = DatasetConfig::in_memory(Task::Classification, None, None, None, inputs(vec![0; 4]))
        .unwrap();
    let e = run_config(&cfg, &o).unwrap_err().to_string();
    assert!(
        e.starts_with("--resume works on a dataset directory"),
        "{e}"
    );
}

/// `out` holds no file (or does not exist).
fn assert_nothing_in(out: &Path) {
    let left: Vec<_> = std::fs::read_dir(out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_cancelled_run_stops_before_its_next_batch_and_writes_nothing() {
    let (dir, _) = cifar();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut opts = RunOptions::new(&dir, &out);
    opts.backend = triage::backend::BackendKind::Cpu;
    // 100 rows per batch: the hook sets the flag after the first batch.
    opts.batch_size = 100 * 10 * 8;
    let (f, s) = (flag.clone(), seen.clone());
    opts.control = triage::records::Control {
        cancel: Some(flag),
        on_progress: Some(Arc::new(move |done, total| {
            assert_eq!(total, 10_000);
            s.store(done, std::sync::atomic::Ordering::SeqCst);
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        })),
    };
    let e = triage::pipeline::run(&opts).unwrap_err();
    assert!(matches!(e, triage::Error::Cancelled), "{e}");
    let done = seen.load(std::sync::atomic::Ordering::SeqCst);
    // Stopped within the batches already read ahead (two buffers).
    assert!((100..=300).contains(&done), "{done} items scored");
    assert_nothing_in(&out);
}

#[test]
fn options_parse_as_the_cli_parses_them() {
    let out = Path::new("o");
    let o = cpu_opts(
        out,
        &["--budget", "7", "--min-per-class", "0.1", "--no-dedup"],
    );
    assert_eq!(o.queue.policy.budget, Some(7));
    assert_eq!(o.queue.policy.min_per_class, 0.1);
    assert!(!o.queue.policy.dedup);
    assert!(!o.progress);
    let parse = |extra: &[&str]| {
        let mut args = vec!["--out".to_string(), "o".to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        triage::cli::run_options(PathBuf::from("d"), &args)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(parse(&["--foo"]), "unexpected argument '--foo' found");
    // clap's first line, as the CLI prints it after `error: `.
    assert_eq!(parse(&["--budget", "-1"]), "unexpected argument '-1' found");
    assert_eq!(
        parse(&["--budget=-1"]),
        "invalid value '-1' for '--budget <K>': invalid digit found in string"
    );
    // Checked by RunOptions::validate, as the CLI's are.
    assert_eq!(parse(&["--top", "0"]), "--top must be at least 1");
}

#[test]
fn a_run_cancelled_after_its_last_batch_still_writes_nothing() {
    let (dir, _) = cifar();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o");
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut opts = cpu_opts(&out, &[]);
    opts.dataset = dir.clone();
    let f = flag.clone();
    opts.control = triage::records::Control {
        cancel: Some(flag),
        // Set once every item is scored: the stages after scoring stop.
        on_progress: Some(Arc::new(move |done, total| {
            if done == total {
                f.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })),
    };
    let e = triage::pipeline::run(&opts).unwrap_err();
    assert!(matches!(e, triage::Error::Cancelled), "{e}");
    assert_nothing_in(&out);
}
