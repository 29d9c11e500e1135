//! `triage._triage`: the native half of the `triage` Python package.
//!
//! The pure-Python layer (`python/triage/__init__.py`) turns keyword options
//! into CLI tokens and numpy memmaps into `(path, offset, dtype, shape)`
//! tuples; this module hands both to the engine unchanged:
//!
//! - [`_run_dataset`] and [`_run_arrays`] run the same pipeline as
//!   `triage run` (options parsed by the CLI's own clap parser, so option
//!   errors carry the CLI's text) on a worker thread with the GIL released.
//!   The calling thread polls every ~100 ms: it delivers Python signals
//!   (Ctrl-C sets the run's cancel flag, waits for the run to stop within one
//!   batch, and re-raises `KeyboardInterrupt`) and calls the progress
//!   callback with `(done, total)`.
//! - numpy arrays are never copied: C-contiguous arrays are borrowed in place
//!   (a strong reference to the array keeps the buffer alive for the run),
//!   memmaps are read from their file by the engine with positioned reads.
//! - [`_get_label_quality_scores`] and [`_segmentation_label_quality`] are
//!   cleanlab's `rank.get_label_quality_scores` (self-confidence) and
//!   `segmentation.rank.get_label_quality_scores` (softmin), computed with the
//!   GIL released.
//!
//! Every error is a `triage.TriageError` (a `ValueError`) whose `str()` is the
//! message the CLI prints after `triage: error: `; a cancelled run is a
//! `KeyboardInterrupt`.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use numpy::ndarray::{Array3, ArrayView2, ArrayView3, ArrayView4, ArrayViewD, Ix2, Ix3, Ix4};
use numpy::prelude::*;
use numpy::{Element, PyArray1, PyArray3, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rayon::prelude::*;

use triage::config::{DatasetConfig, Task};
use triage::error::Error;
use triage::memory::{ArraySource, Dtype, MemArray, MemElement, MemoryInputs};
use triage::pipeline::{RunOptions, RunSummary};

pyo3::create_exception!(
    triage,
    TriageError,
    PyValueError,
    "A triage error: bad input, a bad option or a failed backend. str(e) is the message \
     the CLI prints after `triage: error: `."
);

/// How often the calling thread wakes to check signals and report progress.
const POLL: Duration = Duration::from_millis(100);

/// An engine error as a Python exception: `Cancelled` is a
/// `KeyboardInterrupt`, everything else a `TriageError` with the CLI's text,
/// its hints in Python's spelling ([`python_spelling`]).
fn to_py(e: Error) -> PyErr {
    match e {
        Error::Cancelled => PyKeyboardInterrupt::new_err("the triage run was cancelled"),
        other => TriageError::new_err(python_spelling(other.to_string())),
    }
}

/// The engine's hints that name a command-line option, and the keyword
/// argument that does the same here.
const HINTS: [(&str, &str); 3] = [
    ("pass --logits", "pass logits=True"),
    ("use --backend cpu", "use backend=\"cpu\""),
    ("use --knn hnsw", "use knn=\"hnsw\""),
];

/// `msg` with each hint of [`HINTS`] in Python's spelling: a user of the
/// Python API is told `logits=True`, not `--logits`.
fn python_spelling(mut msg: String) -> String {
    for (cli, py) in HINTS {
        if msg.contains(cli) {
            msg = msg.replace(cli, py);
        }
    }
    msg
}

/// A `TriageError` with `msg`.
fn triage_err(msg: impl Into<String>) -> PyErr {
    TriageError::new_err(msg.into())
}

/// Sets its flag when dropped: the worker's "finished" signal, also on a
/// panic, so the poll loop never waits for a thread that is gone.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Run `job(opts)` on a worker thread with the GIL released, polling every
/// [`POLL`] for signals and progress (see the module docs). `opts` gets this
/// call's cancel flag and progress hook; the CLI's progress bar is off.
///
/// On `KeyboardInterrupt` (or any exception from a signal handler or the
/// progress callback) the run is cancelled, joined, and that exception is
/// raised: the engine commits its outputs all-or-nothing, so nothing new is
/// left in `--out`.
fn run_detached<F>(
    py: Python<'_>,
    opts: &mut RunOptions,
    progress_cb: Option<&Bound<'_, PyAny>>,
    job: F,
) -> PyResult<RunSummary>
where
    F: FnOnce(&RunOptions) -> triage::error::Result<RunSummary> + Send,
{
    let cancel = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    opts.control.cancel = Some(cancel.clone());
    let hook = counts.clone();
    opts.control.on_progress = Some(Arc::new(move |done: u64, total: u64| {
        hook[1].store(total, Ordering::Relaxed);
        hook[0].store(done, Ordering::Relaxed);
    }));
    opts.progress = false;
    let opts: &RunOptions = opts;
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let _done = SetOnDrop(&finished);
            job(opts)
        });
        let mut shown = (u64::MAX, u64::MAX);
        let mut report = || -> PyResult<()> {
            let Some(cb) = progress_cb else { return Ok(()) };
            let now = (
                counts[0].load(Ordering::Relaxed),
                counts[1].load(Ordering::Relaxed),
            );
            if now != shown && now.1 > 0 {
                shown = now;
                cb.call1(now)?;
            }
            Ok(())
        };
        let mut interrupted: Option<PyErr> = None;
        loop {
            py.detach(|| {
                let step = POLL / 10;
                for _ in 0..10 {
                    if finished.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(step);
                }
            });
            if finished.load(Ordering::Acquire) {
                break;
            }
            if let Err(e) = py.check_signals().and_then(|()| report()) {
                cancel.store(true, Ordering::Release);
                interrupted = Some(e);
                break;
            }
        }
        let joined = py.detach(|| worker.join());
        if let Some(e) = interrupted {
            return Err(e);
        }
        let result = joined.map_err(|_| {
            PyRuntimeError::new_err("triage: internal error: the run's thread panicked")
        })?;
        let summary = result.map_err(to_py)?;
        report()?;
        Ok(summary)
    })
}

/// The written files as strings.
fn file_list(summary: &RunSummary) -> Vec<String> {
    summary
        .files
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Run `triage run DATASET ARGS...` in this process.
///
/// `args` are CLI tokens (`["--out", "/tmp/x", "--budget", "10"]`), parsed
/// and validated by the CLI's parser. `progress_cb(done, total)` is called
/// from this thread with the GIL held. Returns the paths of the files written.
/// Raises `TriageError` (the CLI's message) or `KeyboardInterrupt`.
#[pyfunction]
#[pyo3(signature = (dataset, args, progress_cb=None))]
fn _run_dataset(
    py: Python<'_>,
    dataset: PathBuf,
    args: Vec<String>,
    progress_cb: Option<Bound<'_, PyAny>>,
) -> PyResult<Vec<String>> {
    let mut opts = triage::cli::run_options(dataset, &args).map_err(to_py)?;
    let summary = run_detached(py, &mut opts, progress_cb.as_ref(), |o| {
        triage::pipeline::run(o)
    })?;
    Ok(file_list(&summary))
}

/// Keeps a numpy array (and so its buffer) alive while a [`MemArray`]
/// borrows it.
struct PyOwner(#[allow(dead_code)] Py<PyAny>);

/// Borrow `obj` as a `MemArray` of `T` when its dtype is `T`'s; `Ok(None)`
/// when it is another dtype, `Err` when it is `T` but not C-contiguous.
fn borrow_as<T: MemElement + Element>(
    obj: &Bound<'_, PyAny>,
    name: &str,
) -> PyResult<Option<MemArray>> {
    let Ok(ro) = obj.extract::<PyReadonlyArrayDyn<'_, T>>() else {
        return Ok(None);
    };
    if !ro.is_c_contiguous() {
        return Err(triage_err(format!(
            "{name}: the array is not C-contiguous; pass np.ascontiguousarray({name}) (a copy) \
             or save it in C order"
        )));
    }
    let owner: Arc<dyn Any + Send + Sync> = Arc::new(PyOwner(obj.clone().unbind()));
    // SAFETY: `owner` holds a strong reference to the numpy array, so its
    // buffer stays allocated while the MemArray (and its clones) live; the
    // Python API documents that the arrays must not be modified during the
    // call (the engine only reads them).
    let m = unsafe { MemArray::borrowed(ro.as_array(), owner) }
        .map_err(|why| triage_err(format!("{name}: {why}")))?;
    Ok(Some(m))
}

/// One of the [`borrow_as`] instances.
type Borrower = fn(&Bound<'_, PyAny>, &str) -> PyResult<Option<MemArray>>;

/// The source of argument `name`: a memmap tuple `(path, offset, dtype,
/// shape)` from the Python layer, or a numpy array of any dtype the engine
/// reads (the engine checks which dtypes and shapes each argument takes).
fn source(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<ArraySource> {
    if obj.is_instance_of::<PyTuple>() {
        let (path, offset, descr, shape): (PathBuf, u64, String, Vec<usize>) = obj.extract()?;
        let dtype = Dtype::from_numpy(&descr).map_err(|why| {
            triage_err(format!(
                "{name}: dtype {descr:?}{why} is not supported: use float16, float32, float64 \
                 or a little-endian integer type"
            ))
        })?;
        return Ok(ArraySource::File {
            path,
            offset,
            dtype,
            shape,
        });
    }
    let tries: [Borrower; 11] = [
        borrow_as::<f32>,
        borrow_as::<f64>,
        borrow_as::<half::f16>,
        borrow_as::<i64>,
        borrow_as::<i32>,
        borrow_as::<u8>,
        borrow_as::<u16>,
        borrow_as::<i16>,
        borrow_as::<i8>,
        borrow_as::<u32>,
        borrow_as::<u64>,
    ];
    for t in tries {
        if let Some(m) = t(obj, name)? {
            return Ok(ArraySource::Memory(m));
        }
    }
    let dtype = obj
        .getattr("dtype")
        .and_then(|d| d.str())
        .map(|d| d.to_string())
        .unwrap_or_else(|_| "unknown".into());
    Err(triage_err(format!(
        "{name}: a numpy array of dtype {dtype} is not supported: use float16, float32, float64 \
         or a native-endian integer type"
    )))
}

/// The optional source of argument `name`.
fn opt_source(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<ArraySource>> {
    obj.filter(|o| !o.is_none())
        .map(|o| source(o, name))
        .transpose()
}

/// Score arrays in memory (or memmaps in files) with the pipeline of
/// `triage run`.
///
/// `task`: "classification" or "segmentation". Arrays as the Python layer
/// passes them (see [`source`]); `ids` and `class_names` default to "0".."N-1"
/// and "0".."C-1"; `annotations` is an annotations CSV (id, annotator,
/// label). `args` are CLI tokens and must hold `--out`. Returns the paths of
/// the files written. Raises `TriageError` naming the argument (`probs`,
/// `labels`, ...) and item, or `KeyboardInterrupt`.
#[pyfunction]
#[pyo3(signature = (task, probs, labels, masks, embeddings, ids, class_names, ignore_index, annotations, args, progress_cb=None))]
#[allow(clippy::too_many_arguments)]
fn _run_arrays(
    py: Python<'_>,
    task: &str,
    probs: Bound<'_, PyAny>,
    labels: Option<Bound<'_, PyAny>>,
    masks: Option<Bound<'_, PyAny>>,
    embeddings: Option<Bound<'_, PyAny>>,
    ids: Option<Vec<String>>,
    class_names: Option<Vec<String>>,
    ignore_index: Option<u32>,
    annotations: Option<PathBuf>,
    args: Vec<String>,
    progress_cb: Option<Bound<'_, PyAny>>,
) -> PyResult<Vec<String>> {
    let task = match task {
        "classification" => Task::Classification,
        "segmentation" => Task::Segmentation,
        other => {
            return Err(triage_err(format!(
                "task {other:?}: use \"classification\" or \"segmentation\""
            )));
        }
    };
    // Options first: a bad option fails before any array is looked at.
    let mut opts = triage::cli::run_options(PathBuf::from(IN_MEMORY), &args).map_err(to_py)?;
    let inputs = MemoryInputs {
        probs: source(&probs, "probs")?,
        labels: opt_source(labels.as_ref(), "labels")?,
        masks: opt_source(masks.as_ref(), "masks")?,
        embeddings: opt_source(embeddings.as_ref(), "embeddings")?,
        ids,
    };
    let cfg = DatasetConfig::in_memory(task, class_names, ignore_index, annotations, inputs)
        .map_err(to_py)?;
    let summary = run_detached(py, &mut opts, progress_cb.as_ref(), |o| {
        triage::pipeline::run_config(&cfg, o)
    })?;
    // `cfg` (and with it the references to the numpy arrays) is dropped
    // here, with the GIL held.
    drop(cfg);
    Ok(file_list(&summary))
}

/// The dataset path recorded for in-memory runs (report.json
/// `options.dataset`).
const IN_MEMORY: &str = "<memory>";

/// A numpy element read as `f64` (the cleanlab helpers' accumulation type).
trait AsF64: Copy + Send + Sync {
    fn as_f64(self) -> f64;
}

impl AsF64 for f32 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl AsF64 for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

impl AsF64 for half::f16 {
    fn as_f64(self) -> f64 {
        self.to_f64()
    }
}

/// An integer label read as `i64` (values past `i64::MAX` read as -1, which
/// is out of range for any class count).
trait AsLabel: Copy + Send + Sync {
    fn as_label(self) -> i64;
}

macro_rules! as_label {
    ($($t:ty),*) => {$(
        impl AsLabel for $t {
            fn as_label(self) -> i64 {
                i64::try_from(self).unwrap_or(-1)
            }
        }
    )*};
}

as_label!(i8, i16, i32, i64, u8, u16, u32, u64);

/// `label` as a class index below `classes`; `Err` names `what` (the item
/// or pixel, built only on error) and the range.
fn class_of(label: i64, classes: usize, what: impl FnOnce() -> String) -> Result<usize, String> {
    match usize::try_from(label) {
        Ok(c) if c < classes => Ok(c),
        _ => Err(format!(
            "labels: {}: label {label} is out of range for {classes} classes (0 to {})",
            what(),
            classes.saturating_sub(1)
        )),
    }
}

/// Self-confidence `p[i, labels[i]]` of every row.
fn self_confidence<P: AsF64, L: AsLabel>(
    labels: ArrayViewD<'_, L>,
    probs: ArrayView2<'_, P>,
) -> Result<Vec<f64>, String> {
    let (n, classes) = probs.dim();
    if labels.ndim() != 1 || labels.len() != n {
        return Err(format!(
            "labels: shape {:?} does not match pred_probs' {n} rows (shape {:?})",
            labels.shape(),
            probs.shape()
        ));
    }
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let c = class_of(l.as_label(), classes, || format!("item {i}"))?;
            Ok(probs[[i, c]].as_f64())
        })
        .collect()
}

/// cleanlab's softmin of one image's pixel scores: `Σ s·softmax((1 − s)/T)`
/// with the softmax shifted by its largest exponent (the smallest score), in
/// `f64`, as `cleanlab.internal.multilabel_scorer.softmin`.
fn softmin(scores: &[f64], temperature: f64) -> f64 {
    let smin = scores.iter().copied().fold(f64::INFINITY, f64::min);
    let (mut weighted, mut total) = (0.0, 0.0);
    for &s in scores {
        let w = ((smin - s) / temperature).exp();
        weighted += s * w;
        total += w;
    }
    weighted / total
}

/// Per-image softmin scores and the per-pixel self-confidences.
fn segmentation_scores<P: AsF64, L: AsLabel>(
    labels: ArrayView3<'_, L>,
    probs: ArrayView4<'_, P>,
    temperature: f64,
    keep_pixels: bool,
) -> Result<(Vec<f64>, Option<Array3<f64>>), String> {
    let (n, classes, h, w) = probs.dim();
    if labels.dim() != (n, h, w) {
        return Err(format!(
            "labels: shape {:?} does not match pred_probs' (N, H, W) = ({n}, {h}, {w})",
            labels.shape()
        ));
    }
    if h * w == 0 {
        return Err("pred_probs: images have no pixels".into());
    }
    let per_image: Vec<(f64, Vec<f64>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut s = Vec::with_capacity(h * w);
            for y in 0..h {
                for x in 0..w {
                    let l = labels[[i, y, x]].as_label();
                    let c = class_of(l, classes, || format!("image {i}: pixel (x={x}, y={y})"))?;
                    s.push(probs[[i, c, y, x]].as_f64());
                }
            }
            let score = softmin(&s, temperature);
            Ok((score, if keep_pixels { s } else { Vec::new() }))
        })
        .collect::<Result<_, String>>()?;
    let scores = per_image.iter().map(|(s, _)| *s).collect();
    let pixels = if keep_pixels {
        let flat: Vec<f64> = per_image.into_iter().flat_map(|(_, p)| p).collect();
        Some(Array3::from_shape_vec((n, h, w), flat).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok((scores, pixels))
}

/// Try each integer element type for `$labels` (a `&Bound<PyAny>`),
/// binding a read-only view `$l` for `$body`.
macro_rules! by_label {
    ($labels:expr, $l:ident, $body:expr, $($lt:ty),*) => {{
        $(
            if let Ok(lro) = $labels.extract::<PyReadonlyArrayDyn<'_, $lt>>() {
                let $l = lro.as_array();
                $body
            } else
        )*
        {
            Err(triage_err("labels: use a numpy array of integers"))
        }
    }};
}

/// Dispatch on the float dtype of `$probs` and the integer dtype of
/// `$labels` (both `&Bound<PyAny>`), binding read-only views `$p` and `$l`.
macro_rules! with_views {
    ($labels:expr, $probs:expr, |$l:ident, $p:ident| $body:expr) => {{
        if let Ok(pro) = $probs.extract::<PyReadonlyArrayDyn<'_, f64>>() {
            let $p = pro.as_array();
            by_label!($labels, $l, $body, i64, i32, u8, u16, i16, i8, u32, u64)
        } else if let Ok(pro) = $probs.extract::<PyReadonlyArrayDyn<'_, f32>>() {
            let $p = pro.as_array();
            by_label!($labels, $l, $body, i64, i32, u8, u16, i16, i8, u32, u64)
        } else if let Ok(pro) = $probs.extract::<PyReadonlyArrayDyn<'_, half::f16>>() {
            let $p = pro.as_array();
            by_label!($labels, $l, $body, i64, i32, u8, u16, i16, i8, u32, u64)
        } else {
            Err(triage_err(
                "pred_probs: use a numpy array of float16, float32 or float64",
            ))
        }
    }};
}

/// cleanlab's `rank.get_label_quality_scores(labels, pred_probs)` with its
/// default method, self-confidence: `pred_probs[i, labels[i]]` as float64.
/// `labels` (N,) integers in [0, C), `pred_probs` (N, C) floats.
#[pyfunction]
fn _get_label_quality_scores<'py>(
    py: Python<'py>,
    labels: Bound<'py, PyAny>,
    pred_probs: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let scores = with_views!(labels, pred_probs, |l, p| {
        let p = p
            .into_dimensionality::<Ix2>()
            .map_err(|_| triage_err("pred_probs: must have shape (N, C)"))?;
        py.detach(|| self_confidence(l, p)).map_err(triage_err)
    })?;
    Ok(PyArray1::from_vec(py, scores))
}

/// cleanlab's `segmentation.rank.get_label_quality_scores(labels,
/// pred_probs, method="softmin", temperature=T)`: per-pixel scores
/// `pred_probs[i, labels[i, y, x], y, x]` (float64, (N, H, W)) and per image
/// their softmin. Returns `(image_scores, pixel_scores or None)`.
#[pyfunction]
#[pyo3(signature = (labels, pred_probs, temperature=0.1, return_pixel_scores=false))]
#[allow(clippy::type_complexity)]
fn _segmentation_label_quality<'py>(
    py: Python<'py>,
    labels: Bound<'py, PyAny>,
    pred_probs: Bound<'py, PyAny>,
    temperature: f64,
    return_pixel_scores: bool,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Option<Bound<'py, PyArray3<f64>>>)> {
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(triage_err(format!(
            "temperature: must be a positive number, not {temperature}"
        )));
    }
    let (scores, pixels) = with_views!(labels, pred_probs, |l, p| {
        let p = p
            .into_dimensionality::<Ix4>()
            .map_err(|_| triage_err("pred_probs: must have shape (N, C, H, W)"))?;
        let l = l
            .into_dimensionality::<Ix3>()
            .map_err(|_| triage_err("labels: must have shape (N, H, W)"))?;
        py.detach(|| segmentation_scores(l, p, temperature, return_pixel_scores))
            .map_err(triage_err)
    })?;
    Ok((
        PyArray1::from_vec(py, scores),
        pixels.map(|a| PyArray3::from_owned_array(py, a)),
    ))
}

/// The extension module `triage._triage`.
#[pymodule]
fn _triage(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TriageError", m.py().get_type::<TriageError>())?;
    m.add_function(wrap_pyfunction!(_run_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(_run_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(_get_label_quality_scores, m)?)?;
    m.add_function(wrap_pyfunction!(_segmentation_label_quality, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
