"""Runs through the Python API against the CLI on the same data: same queue,
same files; memmaps, unlabelled items, errors, Result."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import triage
from conftest import (
    CIFAR_CLASSES,
    cli_error,
    need,
    read_jsonl,
    run_cli,
    seg_arrays,
    write_cls_dataset,
    write_seg_dataset,
)

CPU = {"backend": "cpu"}


def test_classification_queue_equals_cli(cli, cifar, tmp_path):
    out = tmp_path / "cli"
    run_cli(cli, "run", cifar, "--out", out, "--backend", "cpu")
    want = read_jsonl(out / "queue.jsonl")
    assert len(want) == 10000
    res = triage.classification(
        np.load(cifar / "probs.npy"), np.load(cifar / "labels.npy"), class_names=CIFAR_CLASSES, **CPU
    )
    assert res.queue_records() == want
    assert res.bytes("queue.jsonl") == (out / "queue.jsonl").read_bytes()
    assert res.bytes("queue.csv") == (out / "queue.csv").read_bytes()
    pd = need("pandas")
    q = res.queue
    assert isinstance(q, pd.DataFrame)
    assert list(q["id"]) == [r["id"] for r in want]
    assert list(q.columns) == list(want[0].keys())
    assert q["reasons"].iloc[0] == want[0]["reasons"]  # nested values stay Python objects


def test_memmap_and_slices_equal_memory(cifar):
    probs = np.load(cifar / "probs.npy")
    labels = np.load(cifar / "labels.npy")
    mm = np.load(cifar / "probs.npy", mmap_mode="r")
    assert isinstance(triage._array(mm, "probs"), tuple), "a memmap is read from its file"
    a = triage.classification(mm, labels, **CPU)
    b = triage.classification(probs, labels, **CPU)
    assert a.queue_records() == b.queue_records()
    # A C-contiguous slice of a memmap: its own offset in the file.
    part = mm[1234:5678]
    src = triage._array(part, "probs")
    assert isinstance(src, tuple) and src[1] == mm.offset + 1234 * 10 * 8
    c = triage.classification(part, labels[1234:5678], **CPU)
    d = triage.classification(np.ascontiguousarray(probs[1234:5678]), labels[1234:5678], **CPU)
    assert c.queue_records() == d.queue_records()
    # A plain ndarray viewing the memmap counts as the memmap too.
    assert isinstance(triage._array(np.asarray(mm)[10:], "probs"), tuple)


def test_non_contiguous_is_refused(cifar):
    probs = np.load(cifar / "probs.npy")
    labels = np.load(cifar / "labels.npy")
    f = np.asfortranarray(probs)
    with pytest.raises(triage.TriageError, match=r"ascontiguousarray\(probs\)"):
        triage.classification(f, labels, **CPU)
    mm = np.load(cifar / "probs.npy", mmap_mode="r")
    with pytest.raises(triage.TriageError, match=r"ascontiguousarray\(probs\)"):
        triage.classification(mm[::2], labels[::2], **CPU)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_dtypes(dtype, cli, cifar, tmp_path):
    probs = np.load(cifar / "probs.npy")[:2000].astype(dtype)
    labels = np.load(cifar / "labels.npy")[:2000].astype(np.int64)
    d = write_cls_dataset(tmp_path / "d", probs, labels, CIFAR_CLASSES)
    run_cli(cli, "run", d, "--out", tmp_path / "o", "--backend", "cpu")
    res = triage.classification(probs, labels, class_names=CIFAR_CLASSES, **CPU)
    assert res.queue_records() == read_jsonl(tmp_path / "o" / "queue.jsonl")


def test_run_equals_cli_bytes(cli, cifar, tmp_path):
    out = tmp_path / "cli"
    run_cli(cli, "run", cifar, "--out", out, "--backend", "cpu", "--budget", "50", "--deterministic")
    kept = tmp_path / "py"
    res = triage.run(cifar, out=kept, backend="cpu", budget=50, deterministic=True)
    assert res.out == os.fspath(kept)
    for name in ("queue.jsonl", "queue.csv"):
        assert res.bytes(name) == (out / name).read_bytes() == (kept / name).read_bytes()
    assert set(res.files) >= {"queue.jsonl", "queue.csv", "report.json", "report.html"}
    # report.json: identical but for the peak memory and the run's own
    # timings and start time.
    a, b = json.loads((out / "report.json").read_text()), res.report
    for r in (a, b):
        r.pop("memory", None)
        r.pop("timings", None)
        r.pop("started_at", None)
    assert a == b
    # .write() writes what the run wrote, byte for byte.
    again = tmp_path / "again"
    res.write(again)
    for name in res.files:
        assert (again / name).read_bytes() == (kept / name).read_bytes(), name


def test_segmentation_equals_cli(cli, tmp_path):
    probs, masks, emb = seg_arrays(n=9, c=4)
    ids = [f"img{i:02d}" for i in range(len(probs))]
    classes = ["bg", "a", "b", "c"]
    d = write_seg_dataset(tmp_path / "seg", probs, masks, emb, ids, classes)
    out = tmp_path / "cli"
    run_cli(cli, "run", d, "--out", out, "--backend", "cpu")
    want = read_jsonl(out / "queue.jsonl")
    res = triage.segmentation(probs, masks, embeddings=emb, ids=ids, class_names=classes, **CPU)
    got = res.queue_records()
    assert [r["id"] for r in got] == [r["id"] for r in want]
    files = ("mask", "image", "split")  # a dataset directory's file columns
    assert not set(files) & set(got[0]), "arrays in memory carry no file columns"
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k not in files} == {k: v for k, v in w.items() if k not in files}
    assert res.cluster_records() == read_jsonl(out / "clusters.jsonl")
    assert any(f.startswith("overlays/") for f in res.files) == any(
        f.startswith("overlays/") for f in json.loads((out / ".triage-outputs.json").read_text())["files"]
    )
    # The dataset directory through triage.run: the CLI's bytes.
    again = triage.run(d, backend="cpu")
    assert again.bytes("queue.jsonl") == (out / "queue.jsonl").read_bytes()
    # Memmapped float16 probabilities read from the file give the same queue.
    np.save(tmp_path / "p16.npy", probs.astype(np.float16))
    a = triage.segmentation(np.load(tmp_path / "p16.npy", mmap_mode="r"), masks, ids=ids, **CPU)
    b = triage.segmentation(probs.astype(np.float16), masks, ids=ids, **CPU)
    assert a.queue_records() == b.queue_records()


def test_synth_dataset_run_equals_cli(cli, tmp_path):
    d = tmp_path / "synth"
    run_cli(cli, "synth", "--out", d, "--items", 8, "--size", 32, 32)
    out = tmp_path / "cli"
    run_cli(cli, "run", d, "--out", out, "--backend", "cpu")
    res = triage.run(d, backend="cpu")
    assert res.bytes("queue.jsonl") == (out / "queue.jsonl").read_bytes()
    assert res.cluster_records() == read_jsonl(out / "clusters.jsonl")


def test_unlabelled_items_go_to_to_label(cifar):
    probs = np.load(cifar / "probs.npy")[:500]
    labels = np.load(cifar / "labels.npy")[:500].astype(np.int64)
    unl = [3, 17, 250, 499]
    labels[unl] = -1
    res = triage.classification(probs, labels, **CPU)
    assert sorted(int(r["id"]) for r in res.to_label_records()) == unl
    assert not {r["id"] for r in res.queue_records()} & {str(i) for i in unl}
    # A list with None entries means the same.
    as_list = [None if i in unl else int(v) for i, v in enumerate(labels)]
    res2 = triage.classification(probs, as_list, **CPU)
    assert res2.to_label_records() == res.to_label_records()
    assert res2.queue_records() == res.queue_records()
    pd = need("pandas")
    assert isinstance(res.to_label, pd.DataFrame) and len(res.to_label) == len(unl)
    # labels=None: every item is unlabelled.
    res3 = triage.classification(probs[:50], None, **CPU)
    assert len(res3.to_label_records()) == 50
    # Nothing unlabelled: to_label is an empty DataFrame.
    full = triage.classification(probs[:50], np.load(cifar / "labels.npy")[:50], **CPU)
    assert full.to_label_records() == [] and len(full.to_label) == 0


def test_label_out_of_range_names_item_and_field(cli, cifar, tmp_path):
    probs = np.load(cifar / "probs.npy")[:100]
    labels = np.load(cifar / "labels.npy")[:100].astype(np.int64)
    labels[42] = 10
    ids = [f"img{i}" for i in range(100)]
    with pytest.raises(triage.TriageError) as e:
        triage.classification(probs, labels, ids=ids, **CPU)
    msg = str(e.value)
    assert '"img42"' in msg and "label" in msg, msg
    assert isinstance(e.value, ValueError)
    # The CLI reports the same problem in the same words (its file name aside).
    d = write_cls_dataset(tmp_path / "d", probs, labels, [str(k) for k in range(10)])
    p = run_cli(cli, "run", d, "--out", tmp_path / "o", check=False)
    assert p.returncode == 2
    theirs = cli_error(p.stderr)
    assert theirs.split(": ")[-1] == msg.split(": ")[-1], (theirs, msg)


def test_shape_errors_name_the_argument(cifar):
    probs = np.load(cifar / "probs.npy")[:100]
    labels = np.load(cifar / "labels.npy")[:99]
    with pytest.raises(triage.TriageError, match="labels"):
        triage.classification(probs, labels, **CPU)
    with pytest.raises(triage.TriageError, match="probs"):
        triage.classification(probs[:, :, None], labels, **CPU)
    with pytest.raises(triage.TriageError, match="embeddings"):
        triage.classification(probs, None, embeddings=np.zeros((7, 4), np.float32), **CPU)
    with pytest.raises(triage.TriageError, match="ids"):
        triage.classification(probs, np.load(cifar / "labels.npy")[:100], ids=["a"] * 100, **CPU)
    with pytest.raises(triage.TriageError, match="probs"):
        triage.classification(probs.astype(np.complex64), labels, **CPU)


def test_annotations_from_records(cifar):
    probs = np.load(cifar / "probs.npy")[:60]
    labels = np.load(cifar / "labels.npy")[:60]
    rows = []
    for i in range(60):
        for a, flip in (("ann1", 0), ("ann2", 0), ("noisy", 1 if i % 2 else 0)):
            rows.append({"id": str(i), "annotator": a, "label": str((int(labels[i]) + flip) % 10)})
    a = triage.classification(probs, labels, annotations=rows, **CPU)
    assert "agreement" in a.report
    pd = need("pandas")
    b = triage.classification(probs, labels, annotations=pd.DataFrame(rows), **CPU)
    c = triage.classification(probs, labels, annotations=[(r["id"], r["annotator"], r["label"]) for r in rows], **CPU)
    assert a.report["agreement"] == b.report["agreement"] == c.report["agreement"]


def test_result_accessors(cifar, tmp_path):
    res = triage.classification(np.load(cifar / "probs.npy")[:300], np.load(cifar / "labels.npy")[:300], **CPU)
    assert res.out is None
    assert res.report["n_items"] == 300 and res.report["task"] == "classification"
    assert "300 items" in repr(res)
    assert len(res.queue_records()) == 300
    assert [r["rank"] for r in res.queue_records()] == list(range(1, 301))
    assert len(res.clusters) == 0
    with pytest.raises(KeyError):
        res.bytes("nope.txt")


def test_items_frame_reads_items_parquet_with_queue_jsonl_values(cifar, tmp_path):
    """``Result.items`` is items.parquet: every item in items order, the
    unlabelled ones with no rank, and for each queue row the same rank,
    priority, classes and scores as queue.jsonl, from the private directory
    (out=None) and from bytes read back (out=DIR) alike."""
    need("pyarrow")
    probs = np.load(cifar / "probs.npy")[:400]
    labels = np.load(cifar / "labels.npy")[:400].astype(np.int64)
    unl = [5, 123, 399]
    labels[unl] = -1
    for res in (
        triage.classification(probs, labels, top=50, **CPU),
        triage.classification(probs, labels, out=tmp_path / "o", top=50, **CPU),
    ):
        items = res.items
        assert list(items["id"]) == [str(i) for i in range(400)]
        assert sorted(np.flatnonzero(items["unlabelled"].to_numpy())) == unl
        assert items["rank"].iloc[unl].isna().all()
        # --top cuts the queue files, never items.parquet.
        queue = res.queue_records()
        assert len(queue) == 50
        ranked = items.dropna(subset=["rank"]).sort_values("rank")
        assert list(ranked["rank"].astype(int)) == list(range(1, 398))
        by_id = items.set_index("id")
        for q in queue:
            row = by_id.loc[q["id"]]
            assert int(row["rank"]) == q["rank"]
            assert row["priority"] == q["priority"]
            assert (row["label"], row["predicted"]) == (q["label"], q["predicted"])
            for k, v in q["scores"].items():
                assert row[k] == v, (q["id"], k)
            for check in q["flags"]:
                assert bool(row[f"flag_{check}"]), (q["id"], check)
        # The predicted class of an unlabelled row is the arg-max of its probabilities.
        for i in unl:
            assert by_id.loc[str(i), "predicted"] == str(int(probs[i].argmax()))


def test_progress_callback(cifar):
    seen = []
    triage.classification(
        np.load(cifar / "probs.npy"), np.load(cifar / "labels.npy"), progress=lambda d, t: seen.append((d, t)),
        batch_size="64KiB", **CPU,
    )
    assert seen, "the callback was called"
    assert seen[-1] == (10000, 10000)
    assert all(d <= t for d, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_progress_callback_exception_stops_the_run(cifar, tmp_path):
    out = tmp_path / "o"

    def boom(done, total):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        triage.run(cifar, out=out, progress=boom, batch_size="16KiB", backend="cpu")


def test_private_output_dir_lives_as_long_as_the_result(cifar, tmp_path):
    """out=None: the files stay in a private directory, read on first use,
    and the directory goes with the Result; .write() still gives the bytes."""
    import gc

    res = triage.classification(np.load(cifar / "probs.npy"), np.load(cifar / "labels.npy"), **CPU)
    root = Path(res._contents._root)
    assert root.is_dir() and res.out is None
    assert "queue.jsonl" not in res._contents._read, "nothing is read before it is asked for"
    res.write(tmp_path / "copy")
    assert (tmp_path / "copy" / "queue.csv").read_bytes() == (root / "queue.csv").read_bytes()
    assert "10000 queue rows" in repr(res)
    del res
    gc.collect()
    assert not root.exists(), "the private directory outlived its Result"


def test_history_keyword_lists_the_earlier_nights(cifar, tmp_path):
    """``history=`` is ``--history``: the earlier run's figures, then this run's."""
    nights = tmp_path / "nights"
    first = triage.run(cifar, out=nights / "2026-12-01", backend="cpu")
    res = triage.run(cifar, backend="cpu", history=nights)
    hist = res.report["history"]
    assert len(hist) == 2
    r = first.report
    labelled = r["n_items"] - r["selection"]["unlabelled"] if r.get("selection") else r["n_items"]
    assert hist[0]["flagged_share"] == pytest.approx(r["queue"]["flagged"] / labelled)
    assert hist[0]["items"] == r["n_items"]
    # Tonight last, at this run's start.
    assert hist[1]["at"] == res.report["started_at"]
    with pytest.raises(triage.TriageError, match="no-such-dir"):
        triage.run(cifar, backend="cpu", history=tmp_path / "no-such-dir")
