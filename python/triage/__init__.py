"""triage: rank a dataset's labels by how much a human should re-check them.

The Python package over the ``triage`` engine (the same code as the ``triage``
command line): numpy arrays in, pandas DataFrames out.

Entry points
------------
- :func:`classification` -- (N, C) probabilities and (N,) labels.
- :func:`segmentation` -- (N, C, H, W) probabilities and (N, H, W) masks.
- :func:`run` -- a dataset directory holding ``triage.toml``, as ``triage run``.
- :func:`get_label_quality_scores`, :func:`segmentation_label_quality` --
  cleanlab-shaped scores (self-confidence, softmin) for people migrating.

Each run returns a :class:`Result` (``.queue``, ``.to_label``, ``.clusters``,
``.report``, ``.write(dir)``). Every error is a :class:`TriageError` (a
``ValueError``) whose message is the one the CLI prints after
``triage: error:``; Ctrl-C stops a run within about a second and raises
``KeyboardInterrupt``.

Options
-------
Every option of ``triage run`` is a keyword argument, spelled in Python style:
``--min-per-class 0.1`` is ``min_per_class=0.1``, ``--no-dedup`` is
``no_dedup=True``, ``--review-all-from a,b`` is ``review_all_from=["a", "b"]``.
``True`` gives the bare flag, ``False`` and ``None`` leave the option out.
They are parsed and validated by the CLI's own parser before anything is
scored, so a bad value raises ``TriageError`` with the CLI's text.

Memory
------
float16/float32/float64 arrays are read in place, never copied whole, and
neither are integer masks: a C-contiguous array is borrowed for the duration
of the call (do not modify it from another thread meanwhile), and a
``np.memmap`` / ``np.load(..., mmap_mode="r")`` array (or a C-contiguous
slice of one) is read from its file in bounded windows, so peak memory follows
``batch_size``, not the array. A non-contiguous array is refused with a
``TriageError`` that says to pass ``np.ascontiguousarray(x)``.
"""

from __future__ import annotations

import csv
import json
import mmap
import os
import sys
import tempfile
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _triage
from ._triage import TriageError

__all__ = [
    "Result",
    "TriageError",
    "classification",
    "segmentation",
    "run",
    "get_label_quality_scores",
    "segmentation_label_quality",
    "__version__",
]

__version__: str = _triage.__version__

PathLike = Union[str, "os.PathLike[str]"]
Progress = Union[None, bool, Callable[[int, int], Any]]

# Files a run writes that Result reads (others are kept as bytes for .write).
_QUEUE = "queue.jsonl"
_TO_LABEL = "to_label.jsonl"
_CLUSTERS = "clusters.jsonl"
_REPORT = "report.json"
_ITEMS = "items.parquet"
# The CLI's record of the files it committed to --out (written with them).
_OUTPUTS_RECORD = ".triage-outputs.json"


# --------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------


def _jsonl(data: Optional[bytes]) -> List[Dict[str, Any]]:
    if not data:
        return []
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _frame(records: List[Dict[str, Any]]) -> "Any":
    import pandas as pd  # imported here: only the DataFrame accessors need pandas

    if not records:
        return pd.DataFrame()
    return pd.DataFrame.from_records(records)


class Result:
    """The outputs of one triage run, held in memory.

    Attributes
    ----------
    files : list of str
        The names of the files the run wrote, relative to its output
        directory (``queue.jsonl``, ``queue.csv``, ``report.json``,
        ``report.html``, ``clusters.jsonl``, ``to_label.jsonl``,
        ``overlays/*.png``, ... as the run produced them).
    out : str or None
        The output directory when one was given (the files stay there and
        were read into the Result), else ``None``: the run wrote to a private
        temporary directory that lives as long as the Result, and each file
        is read on first use (so a large queue costs nothing until asked for).
    report : dict
        ``report.json`` as a dict (parsed on first use).

    The DataFrame accessors (``items``, ``queue``, ``to_label``,
    ``clusters``) import pandas when first used (``items`` also pyarrow);
    ``queue_records()`` needs no pandas.
    """

    def __init__(self, contents: Mapping[str, bytes], out: Optional[str]) -> None:
        self._contents = contents
        self.out = out
        self.files: List[str] = list(self._contents)
        self._report: Optional[Dict[str, Any]] = None

    @property
    def report(self) -> Dict[str, Any]:
        """``report.json`` as a dict (parsed on first use)."""
        if self._report is None:
            data = self._contents.get(_REPORT)
            self._report = json.loads(data) if data else {}
        return self._report

    def bytes(self, name: str) -> bytes:
        """The exact bytes of output file ``name`` (e.g. ``"queue.csv"``)."""
        try:
            return self._contents[name]
        except KeyError:
            raise KeyError(f"{name!r} is not among the run's files: {self.files}") from None

    def queue_records(self) -> List[Dict[str, Any]]:
        """The review queue (``queue.jsonl``) as a list of dicts, in queue order."""
        return _jsonl(self._contents.get(_QUEUE))

    def to_label_records(self) -> List[Dict[str, Any]]:
        """The unlabelled items chosen for labelling (``to_label.jsonl``), as dicts."""
        return _jsonl(self._contents.get(_TO_LABEL))

    def cluster_records(self) -> List[Dict[str, Any]]:
        """The near-duplicate clusters (``clusters.jsonl``), as dicts."""
        return _jsonl(self._contents.get(_CLUSTERS))

    @property
    def queue(self) -> "Any":
        """The review queue as a pandas DataFrame: one row per ``queue.jsonl``
        line, in queue order, with its columns (``rank``, ``id``,
        ``priority``, ``in_budget``, ``reasons``, ``scores``, ...); nested
        values (lists, dicts) stay Python objects."""
        return _frame(self.queue_records())

    @property
    def items(self) -> "Any":
        """Every item of the run, the unlabelled ones included, as a pandas
        DataFrame read from ``items.parquet``: one row per item in the items'
        order, with ``id``, ``rank`` (null outside the review queue),
        ``priority``, ``label`` and ``predicted`` (classification),
        ``unlabelled``, a ``flag_<check>`` and a ``check_<check>`` (the
        check's score) column per check that ran and a
        float64 column per score, the same values as ``queue.jsonl``
        (docs/reference.md, ``items.parquet``). Unlike ``queue`` it is
        columnar: no JSON is parsed, and ``top=`` does not cut it. Needs
        pyarrow (``pip install "triage[parquet]"``); read on each access,
        from the private directory's file when the run had no ``out``."""
        import io

        import pandas as pd  # imported here: only the DataFrame accessors need pandas

        if _ITEMS not in self.files:
            raise KeyError(f"{_ITEMS!r} is not among the run's files: {self.files}")
        path = getattr(self._contents, "path", None)
        if path is not None:
            return pd.read_parquet(path(_ITEMS), engine="pyarrow")
        return pd.read_parquet(io.BytesIO(self._contents[_ITEMS]), engine="pyarrow")

    @property
    def to_label(self) -> "Any":
        """``to_label.jsonl`` as a DataFrame (empty when nothing is unlabelled)."""
        return _frame(self.to_label_records())

    @property
    def clusters(self) -> "Any":
        """``clusters.jsonl`` as a DataFrame (empty without embeddings or clusters)."""
        return _frame(self.cluster_records())

    def write(self, out_dir: PathLike) -> List[str]:
        """Write every output file, byte for byte as the run wrote it, under
        ``out_dir`` (created if needed; subdirectories such as ``overlays/``
        too). Returns the paths written."""
        out_dir = os.fspath(out_dir)
        written = []
        for name, data in self._contents.items():
            path = os.path.join(out_dir, *name.split("/"))
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            written.append(path)
        return written

    def __repr__(self) -> str:
        r = self.report
        backend = r.get("backend", {}).get("name") if isinstance(r.get("backend"), dict) else None
        lines = {name: _count_lines(self._contents.get(name)) for name in (_QUEUE, _TO_LABEL, _CLUSTERS)}
        return (
            f"<triage.Result {r.get('task', '?')}: {r.get('n_items', '?')} items, "
            f"{lines[_QUEUE]} queue rows, {lines[_TO_LABEL]} to label, "
            f"{lines[_CLUSTERS]} clusters, backend {backend}; files {self.files}>"
        )


def _count_lines(data: Optional[bytes]) -> int:
    """The JSON lines in ``data`` (one row each), without parsing them."""
    if not data:
        return 0
    return sum(1 for line in data.splitlines() if line.strip())


class _PrivateFiles(Mapping[str, bytes]):
    """The files of a run into a private temporary directory, read on first
    use: the directory lives as long as the Result (it is removed when the
    Result is garbage-collected, or at exit), so a run never waits to read
    back outputs nobody asks for (103 MB of queue.jsonl at 200 000 items)."""

    def __init__(self, tmp: "tempfile.TemporaryDirectory[str]", root: str, names: List[str]) -> None:
        self._tmp = tmp  # kept: its finaliser removes the directory
        self._root = root
        self._names = names
        self._read: Dict[str, bytes] = {}

    def __getitem__(self, name: str) -> bytes:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._read:
            with open(os.path.join(self._root, *name.split("/")), "rb") as fh:
                self._read[name] = fh.read()
        return self._read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def path(self, name: str) -> str:
        """Where output ``name`` lies in the private directory (read there
        by pyarrow without a copy of its bytes)."""
        if name not in self._names:
            raise KeyError(name)
        return os.path.join(self._root, *name.split("/"))

    def __len__(self) -> int:
        return len(self._names)


def _names(out: str, written: Sequence[str]) -> List[str]:
    """The files the run wrote under ``out`` (plus the CLI's record of
    them), as paths relative to ``out`` with ``/``."""
    names: List[str] = []
    root = os.path.realpath(out)
    for f in written:
        rel = os.path.relpath(os.path.realpath(f), root)
        if rel.startswith(os.pardir):
            continue  # --cache / --index entries live elsewhere
        names.append(rel.replace(os.sep, "/"))
    if _OUTPUTS_RECORD not in names and os.path.isfile(os.path.join(root, _OUTPUTS_RECORD)):
        names.append(_OUTPUTS_RECORD)
    return names


def _collect(out: str, written: Sequence[str]) -> Dict[str, bytes]:
    """The bytes of the files the run wrote under ``out``, keyed by
    :func:`_names`: read now, since ``out`` is the caller's and a later run
    may replace them."""
    contents: Dict[str, bytes] = {}
    for name in _names(out, written):
        with open(os.path.join(out, *name.split("/")), "rb") as fh:
            contents[name] = fh.read()
    return contents


# --------------------------------------------------------------------------
# Options and arrays
# --------------------------------------------------------------------------

_RESERVED = {"out": "out=", "dataset": "the dataset argument"}


def _cli_tokens(options: Mapping[str, Any]) -> List[str]:
    """Keyword options as CLI tokens (``min_per_class=0.1`` -> ``--min-per-class=0.1``).

    Not validated here: the engine parses them with the CLI's parser."""
    tokens: List[str] = []
    for key, value in options.items():
        if key in _RESERVED:
            raise TypeError(f"pass {key} as {_RESERVED[key]}, not as an option")
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            tokens.append(flag)
            continue
        if isinstance(value, (list, tuple, set, frozenset)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        # `--flag=value`: a value starting with '-' stays a value.
        tokens.append(f"{flag}={value}")
    return tokens


def _memmap_of(x: np.ndarray) -> Optional[np.memmap]:
    """The ``np.memmap`` whose file mapping ``x`` views, if any."""
    obj: Any = x
    while obj is not None:
        if isinstance(obj, np.memmap) and isinstance(getattr(obj, "base", None), mmap.mmap):
            return obj
        obj = getattr(obj, "base", None)
    return None


def _data_pointer(x: np.ndarray) -> int:
    return int(x.__array_interface__["data"][0])


def _array(x: Any, name: str) -> Any:
    """``x`` as the native layer takes it: a numpy array (borrowed in place)
    or, for a view of a file-backed memmap, ``(path, offset, dtype, shape)``
    so the engine reads the file in bounded windows instead of faulting the
    whole mapping into memory."""
    if x is None:
        return None
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    top = _memmap_of(x)
    if top is None or top.filename is None or getattr(top, "mode", "r") == "c":
        return x  # copy-on-write pages may differ from the file: read the memory
    if not x.flags.c_contiguous:
        raise TriageError(
            f"{name}: the array is not C-contiguous; pass np.ascontiguousarray({name}) (a copy) "
            "or save it in C order"
        )
    # np.memmap maps from an allocation-aligned start; `top.offset` is the
    # file offset of top's first byte, so x's is that plus the pointer gap.
    offset = int(top.offset) + (_data_pointer(x) - _data_pointer(top))
    return (os.fspath(top.filename), offset, x.dtype.str, tuple(int(d) for d in x.shape))


def _labels(labels: Any) -> Any:
    """Labels as an integer array; ``None`` entries become -1 (unlabelled)."""
    if labels is None or isinstance(labels, np.ndarray):
        return labels
    values = list(labels)
    if any(v is None for v in values):
        values = [-1 if v is None else v for v in values]
    return np.asarray(values)


def _strings(values: Any) -> Optional[List[str]]:
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        values = values.tolist()
    return [str(v) for v in values]


def _write_annotations(annotations: Any, directory: str) -> Optional[str]:
    """Write ``annotations`` (a DataFrame, a list of dicts or of
    ``(id, annotator, label)`` tuples, or a CSV path) as the annotations CSV
    the engine reads; returns its path."""
    if annotations is None:
        return None
    if isinstance(annotations, (str, os.PathLike)):
        return os.fspath(annotations)
    if hasattr(annotations, "to_dict") and hasattr(annotations, "columns"):
        rows: Iterable[Any] = annotations.to_dict("records")
    else:
        rows = annotations
    path = os.path.join(directory, "annotations.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "annotator", "label"])
        for row in rows:
            if isinstance(row, Mapping):
                w.writerow([row["id"], row["annotator"], row["label"]])
            else:
                item, annotator, label = row
                w.writerow([item, annotator, label])
    return path


def _progress(progress: Progress) -> Tuple[Optional[Callable[[int, int], Any]], Callable[[], None]]:
    """The callback to hand the engine and a function that closes any bar."""
    if progress is False:
        return None, lambda: None
    if callable(progress) and progress is not True:
        return progress, lambda: None
    if progress is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None, lambda: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None, lambda: None
    bars: List[Any] = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="item", desc="triage", dynamic_ncols=True))
        bar = bars[0]
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close() -> None:
        for bar in bars:
            bar.close()

    return update, close


def _run_into(out: Optional[PathLike], progress: Progress, go: Callable[[str, Any], List[str]]) -> Result:
    """Run ``go(out_dir, callback)`` into ``out`` (kept) or a private temp
    directory (read, then removed), and collect the outputs."""
    callback, close = _progress(progress)
    try:
        if out is not None:
            out = os.fspath(out)
            written = go(out, callback)
            return Result(_collect(out, written), out)
        tmp = tempfile.TemporaryDirectory(prefix="triage-")
        try:
            target = os.path.join(tmp.name, "out")
            written = go(target, callback)
        except BaseException:
            tmp.cleanup()
            raise
        return Result(_PrivateFiles(tmp, target, _names(target, written)), None)
    finally:
        close()


# --------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------


def run(dataset_dir: PathLike, out: Optional[PathLike] = None, *, progress: Progress = None, **options: Any) -> Result:
    """Run ``triage run DATASET_DIR`` in this process: identical outputs.

    Parameters
    ----------
    dataset_dir : path
        A dataset directory holding ``triage.toml``.
    out : path, optional
        Output directory (``--out``): the files stay there. Default: a private
        temporary directory, read into the Result and removed.
    progress : None, bool or callable, optional
        ``None``: a tqdm bar when tqdm is installed and stderr is a terminal;
        ``True``: a tqdm bar if tqdm is installed; ``False``: none; a callable
        ``progress(done, total)`` is called instead (items scored so far).
    **options
        ``triage run``'s options in Python spelling (see the module docs):
        ``budget=100``, ``backend="cpu"``, ``knn="auto"``, ``no_dedup=True``...

    Returns
    -------
    Result

    Raises
    ------
    TriageError
        A bad option or input, with the CLI's message.
    KeyboardInterrupt
        On Ctrl-C: the run stops within about a second, and ``out`` holds no
        new or partial file.

    Example
    -------
    >>> res = triage.run("datasets/cifar10-label-errors", budget=50)
    >>> res.queue[["rank", "id", "priority"]].head()
    """
    tokens = _cli_tokens(options)
    dataset = os.fspath(dataset_dir)

    def go(target: str, callback: Any) -> List[str]:
        return _triage._run_dataset(dataset, ["--out", target, *tokens], callback)

    return _run_into(out, progress, go)


def classification(
    probs: Any,
    labels: Any = None,
    *,
    embeddings: Any = None,
    annotations: Any = None,
    ids: Optional[Sequence[Any]] = None,
    class_names: Optional[Sequence[str]] = None,
    logits: bool = False,
    out: Optional[PathLike] = None,
    progress: Progress = None,
    **options: Any,
) -> Result:
    """Triage a classification dataset held in numpy arrays.

    The same engine, checks, priority and queue as ``triage run`` on a
    dataset directory with the same arrays: the queue is identical.

    Parameters
    ----------
    probs : array (N, C) of float16, float32 or float64
        Out-of-sample predicted probabilities (or logits with ``logits=True``).
        Read in place (C-contiguous), or from its file for a ``np.memmap`` /
        ``np.load(..., mmap_mode="r")`` array.
    labels : array (N,) of integers, or a list, optional
        Given labels in [0, C); -1 (or ``None`` in a list) is unlabelled.
        ``labels=None``: every item is unlabelled. Unlabelled items go to
        ``Result.to_label``.
    embeddings : array (N, D) of float, optional
        Item embeddings: near-duplicates, clusters and kNN checks.
    annotations : DataFrame, list of dicts or ``(id, annotator, label)``
        tuples, or a CSV path, optional
        Several annotators' labels (columns ``id``, ``annotator``, ``label``
        with class names or indices): agreement checks and ``report["agreement"]``.
    ids : sequence of str, optional
        Item ids (default ``"0"`` .. ``"N-1"``).
    class_names : sequence of str, optional
        One name per class (default ``"0"`` .. ``"C-1"``).
    logits : bool
        ``probs`` are logits: a softmax is applied first (``--logits``).
    out : path, optional
        Output directory; default: a private temporary one, removed after
        the run (the Result holds every file's bytes).
    progress : None, bool or callable
        See :func:`run`.
    **options
        ``triage run``'s options in Python spelling: ``budget=``,
        ``min_per_class=``, ``spot_check=``, ``seed=``, ``label_budget=``,
        ``label_strategy=``, ``knn="auto"``, ``knn_k=``, ``dup_threshold=``,
        ``backend="auto"|"cpu"|"gpu"``, ``batch_size="32MiB"``, ``top=``,
        ``no_dedup=True``, ``deterministic=True``, ``review_all_from=[...]``,
        ``previous=dir``, ``history=dir``... Validated by the CLI's parser before scoring.

    Returns
    -------
    Result
        ``.queue`` (DataFrame in queue order), ``.to_label``, ``.clusters``,
        ``.report`` (dict), ``.write(dir)``.

    Raises
    ------
    TriageError
        The CLI's message, naming the argument (``probs``, ``labels``,
        ``embeddings``, ``ids``), the item and the field: e.g. a label out of
        range, a shape mismatch, an unsupported dtype, a bad option.
    KeyboardInterrupt
        On Ctrl-C (the run stops within about a second).

    Example
    -------
    >>> import numpy as np, triage
    >>> probs = np.load("datasets/cifar10-label-errors/probs.npy", mmap_mode="r")
    >>> labels = np.load("datasets/cifar10-label-errors/labels.npy")
    >>> res = triage.classification(probs, labels, budget=100)
    >>> res.queue[["id", "priority", "reasons"]].head()
    """
    tokens = _cli_tokens(dict(options, logits=logits))
    probs_arg = _array(probs, "probs")
    labels_arg = _array(_labels(labels), "labels")
    emb_arg = _array(embeddings, "embeddings")
    ids_arg = _strings(ids)
    names_arg = _strings(class_names)

    def go(target: str, callback: Any) -> List[str]:
        with tempfile.TemporaryDirectory(prefix="triage-ann-") as tmp:
            ann = _write_annotations(annotations, tmp)
            return _triage._run_arrays(
                "classification", probs_arg, labels_arg, None, emb_arg, ids_arg, names_arg,
                None, ann, ["--out", target, *tokens], callback,
            )

    return _run_into(out, progress, go)


def segmentation(
    probs: Any,
    masks: Any,
    *,
    embeddings: Any = None,
    ignore_index: Optional[int] = 255,
    ids: Optional[Sequence[Any]] = None,
    class_names: Optional[Sequence[str]] = None,
    logits: bool = False,
    out: Optional[PathLike] = None,
    progress: Progress = None,
    **options: Any,
) -> Result:
    """Triage a semantic-segmentation dataset held in numpy arrays.

    Parameters
    ----------
    probs : array (N, C, H, W) of float16, float32 or float64
        Per-pixel predicted probabilities (or logits with ``logits=True``).
        Never copied whole: a C-contiguous array is borrowed, a memmap /
        ``np.load(..., mmap_mode="r")`` array is read from its file in
        windows of ``batch_size`` bytes (peak memory follows ``batch_size``).
    masks : array (N, H, W) of integers (uint8, uint16, int32, int64...)
        Annotated class per pixel; ``ignore_index`` pixels count nowhere.
    embeddings : array (N, D) of float, optional
        Image embeddings: near-duplicates whose masks conflict, clusters.
    ignore_index : int or None
        Mask value that counts nowhere (default 255).
    ids, class_names, logits, out, progress, **options
        As in :func:`classification`.

    Returns
    -------
    Result

    Raises
    ------
    TriageError
        The CLI's message naming the argument (``probs``, ``masks``...), the
        item and the field (e.g. a class id out of range at a pixel).
    KeyboardInterrupt
        On Ctrl-C.

    Example
    -------
    >>> res = triage.segmentation(probs, masks, class_names=["bg", "cell"], budget=20)
    >>> res.queue[["id", "priority", "reasons"]]
    """
    tokens = _cli_tokens(dict(options, logits=logits))
    probs_arg = _array(probs, "probs")
    masks_arg = _array(masks, "masks")
    emb_arg = _array(embeddings, "embeddings")
    ids_arg = _strings(ids)
    names_arg = _strings(class_names)

    def go(target: str, callback: Any) -> List[str]:
        return _triage._run_arrays(
            "segmentation", probs_arg, None, masks_arg, emb_arg, ids_arg, names_arg,
            ignore_index, None, ["--out", target, *tokens], callback,
        )

    return _run_into(out, progress, go)


# --------------------------------------------------------------------------
# cleanlab-shaped helpers
# --------------------------------------------------------------------------


def _native(x: Any) -> np.ndarray:
    """``x`` as a numpy array in native byte order (no copy when it is one)."""
    a = np.asarray(x)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def get_label_quality_scores(labels: Any, pred_probs: Any) -> np.ndarray:
    """cleanlab's ``rank.get_label_quality_scores(labels, pred_probs)`` with
    its default method, self-confidence: ``pred_probs[i, labels[i]]``.

    Parameters
    ----------
    labels : array-like (N,) of integers in [0, C)
    pred_probs : array (N, C) of float16, float32 or float64

    Returns
    -------
    numpy.ndarray (N,) of float64
        Higher is a more likely correct label.

    Raises
    ------
    TriageError
        A label out of range (naming the item), or shapes that disagree.
    """
    return _triage._get_label_quality_scores(_native(labels), _native(pred_probs))


def segmentation_label_quality(
    labels: Any,
    pred_probs: Any,
    temperature: float = 0.1,
    *,
    return_pixel_scores: bool = False,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """cleanlab's ``segmentation.rank.get_label_quality_scores(labels,
    pred_probs, method="softmin", temperature=temperature)``.

    Parameters
    ----------
    labels : array (N, H, W) of integers in [0, C)
    pred_probs : array (N, C, H, W) of float16, float32 or float64
    temperature : float
        Softmin temperature (cleanlab's default 0.1): lower values follow the
        worst pixel more closely.
    return_pixel_scores : bool
        Also return the per-pixel scores (an (N, H, W) float64 array, N·H·W·8
        bytes).

    Returns
    -------
    (image_scores, pixel_scores)
        ``image_scores``: (N,) float64, ``Σ s·softmax((1 − s)/T)`` over each
        image's pixel scores ``s = pred_probs[i, labels[i, y, x], y, x]``;
        ``pixel_scores``: those ``s`` as (N, H, W) float64, or ``None``
        unless ``return_pixel_scores``.
    """
    return _triage._segmentation_label_quality(
        _native(labels), _native(pred_probs), float(temperature), bool(return_pixel_scores)
    )
