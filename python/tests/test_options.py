"""Every `triage run` option as a keyword argument: it reaches the engine
(report.json records it, or its effect shows), and a bad one raises
TriageError with the CLI's own message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import triage
from conftest import cli_error, run_cli, write_cls_dataset, seg_arrays

N = 400


@pytest.fixture()
def small(cifar, tmp_path):
    probs = np.load(cifar / "probs.npy")[:N]
    labels = np.load(cifar / "labels.npy")[:N].astype(np.int64)
    labels[[5, 6, 7, 8, 9]] = -1
    emb = np.random.default_rng(0).normal(size=(N, 16)).astype(np.float32)
    emb[1] = emb[0] + 1e-4
    return probs, labels, emb


def run_small(small, **kw):
    probs, labels, emb = small
    return triage.classification(probs, labels, embeddings=emb, backend="cpu", **kw)


RECORDED = [
    ({"batch_size": "64KiB"}, "batch_size", 65536),
    ({"top": 5}, "top", 5),
    ({"logits": True}, "logits", True),
    ({"backend": "cpu"}, "backend", "cpu"),
    ({"gpu_fallback": "cpu"}, "gpu_fallback", "cpu"),
    ({"budget": 20}, "budget", 20),
    ({"no_dedup": True}, "dedup", False),
    ({"budget": 50, "min_per_class": 0.05}, "min_per_class", 0.05),
    ({"budget": 50, "spot_check": 0.2}, "spot_check", 0.2),
    ({"seed": 7}, "seed", 7),
    ({"checks": ["outlier", "non_iid"]}, "checks", ["outlier", "non_iid"]),
]


@pytest.mark.parametrize("kw,key,want", RECORDED, ids=[r[1] for r in RECORDED])
def test_option_recorded(small, kw, key, want):
    kw = dict(kw)
    kw.pop("backend", None)
    res = run_small(small, **kw)
    assert res.report["options"][key] == want


def test_checks_run_exactly_those_named(small):
    res = run_small(small, checks=["outlier", "non_iid"])
    # (select_for_labelling, the unlabelled items' selection, is no check of --checks.)
    ran = sorted(
        k for k, c in res.report["checks"].items() if c["status"] == "ran" and k != "select_for_labelling"
    )
    assert ran == ["non_iid", "outlier"]
    assert res.report["checks"]["wrong_label"]["reason"] == "not selected"
    assert list(res.queue_records()[0]["check_scores"]) == ["outlier", "non_iid"]


def test_top_cuts_the_queue(small):
    assert len(run_small(small, top=5).queue_records()) == 5


def test_budget_marks_the_head(small):
    rows = run_small(small, budget=20).queue_records()
    assert sum(r["in_budget"] for r in rows) == 20


def test_label_budget_and_strategy(small):
    res = run_small(small, label_budget=3)
    assert len(res.to_label_records()) == 3
    a = run_small(small, label_budget=3, label_strategy="random", seed=1).to_label_records()
    b = run_small(small, label_budget=3, label_strategy="random", seed=2).to_label_records()
    assert len(a) == len(b) == 3
    assert {r["id"] for r in a} <= {"5", "6", "7", "8", "9"}
    sel = json.dumps(run_small(small, label_budget=3, label_strategy="entropy").report["selection"])
    assert "entropy" in sel


def test_neighbour_options(small):
    d = run_small(small, knn_k=3, knn="exact", dup_threshold=0.01).report["duplicates"]
    assert d["k"] == 3 and d["method"] == "exact"
    assert abs(d["threshold"] - 0.01) < 1e-6
    r = run_small(small, dup_relative=0.5).report["duplicates"]
    assert "relative" in r["rule"]


def test_index_option(small, tmp_path):
    idx = tmp_path / "idx"
    res = run_small(small, knn="hnsw", index=idx)
    assert res.report["duplicates"]["method"] == "hnsw"
    assert idx.exists() and any(idx.iterdir())


def test_conflict_iou_option(tmp_path):
    probs, masks, emb = seg_arrays(n=6, c=3, h=16, w=16)
    a = triage.segmentation(probs, masks, embeddings=emb, backend="cpu", conflict_iou=0.99)
    assert a.report["n_items"] == 6
    with pytest.raises(triage.TriageError):
        triage.segmentation(probs, masks, embeddings=emb, backend="cpu", conflict_iou="x")


def test_deterministic_and_timings(small):
    a = run_small(small, deterministic=True)
    b = run_small(small, deterministic=True)
    assert a.bytes("queue.jsonl") == b.bytes("queue.jsonl")
    assert a.bytes("report.json") == b.bytes("report.json"), "byte-identical with --deterministic"
    assert "timings" in run_small(small, timings=True).report


def test_annotator_thresholds(small):
    probs, labels, _ = small
    rows = [{"id": str(i), "annotator": a, "label": str(int(labels[i]) % 10 if a != "c" else (i % 10))}
            for i in range(N) if labels[i] >= 0 for a in ("a", "b", "c")]
    lo = triage.classification(probs, labels, annotations=rows, backend="cpu", min_annotator_kappa=-1)
    hi = triage.classification(probs, labels, annotations=rows, backend="cpu", min_annotator_kappa=0.99)
    assert json.dumps(lo.report["agreement"]) != json.dumps(hi.report["agreement"])
    probs_s, masks, _ = seg_arrays(n=4, c=3, h=8, w=8)
    triage.segmentation(probs_s, masks, backend="cpu", min_annotator_iou=0.3)


def test_previous(small, tmp_path):
    prev = tmp_path / "prev"
    run_small(small, out=prev)
    res = run_small(small, previous=prev)
    assert res.report["options"]["previous"] == str(prev)


def test_review_all_from_reaches_the_engine(cli, cifar, small, tmp_path):
    """Arrays carry no per-item annotator, so the engine refuses
    --review-all-from for them (saying what to do instead), as the CLI
    refuses it for a dataset without an `annotator` column."""
    p = run_cli(cli, "run", cifar, "--out", tmp_path / "o", "--review-all-from=x,y", check=False)
    assert p.returncode == 2
    assert "needs an `annotator` column" in cli_error(p.stderr)
    with pytest.raises(triage.TriageError) as e:
        run_small(small, review_all_from=["x", "y"])
    assert str(e.value) == (
        "--review-all-from needs each item's annotator, which arrays in memory do not "
        "carry: run a dataset directory whose items CSV has an `annotator` column"
    )


def test_dataset_only_options(cifar, tmp_path):
    """--shard, --resume and --cache work on a dataset directory, and are
    refused for arrays in memory with the engine's message."""
    part = triage.run(cifar, out=tmp_path / "s0", shard="0/2", backend="cpu")
    assert any("partial" in f for f in part.files)
    triage.run(cifar, out=tmp_path / "r", resume=True, backend="cpu")
    cache = tmp_path / "cache"
    c = triage.run(cifar, cache=cache, backend="cpu")
    assert "score_cache" in json.dumps(c.report)
    probs = np.load(cifar / "probs.npy")[:50]
    for kw in ({"shard": "0/2"}, {"resume": True}, {"cache": cache}):
        with pytest.raises(triage.TriageError, match="dataset directory"):
            triage.classification(probs, None, backend="cpu", **kw)


BAD = [
    {"budget": -1},
    {"min_per_class": 2, "budget": 10},
    {"foo": 1},
    {"knn": "bogus"},
    {"batch_size": "12XB"},
    {"knn_k": 0},
    {"top": 0},
    {"dup_threshold": 0.1, "dup_relative": 0.5},
    {"backend": "tpu"},
    {"checks": ["outlier", "outliers"]},
]


@pytest.mark.parametrize("kw", BAD, ids=[",".join(k) for k in BAD])
def test_bad_option_has_the_cli_message(cli, cifar, tmp_path, kw):
    tokens = triage._cli_tokens(kw)
    p = run_cli(cli, "run", cifar, "--out", tmp_path / "cli", *tokens, check=False)
    assert p.returncode == 2, p.stderr
    want = cli_error(p.stderr)
    with pytest.raises(triage.TriageError) as e:
        triage.run(cifar, out=tmp_path / "py", **kw)
    assert str(e.value) == want
    with pytest.raises(triage.TriageError) as e2:
        triage.classification(np.load(cifar / "probs.npy"), np.load(cifar / "labels.npy"), **kw)
    assert str(e2.value) == want
    assert not (tmp_path / "py").exists() or not any((tmp_path / "py").iterdir())


def test_option_spelling():
    assert triage._cli_tokens({"min_per_class": 0.1, "no_dedup": True, "deterministic": False,
                               "top": None, "review_all_from": ["a", "b"], "knn": "auto"}) == [
        "--min-per-class=0.1", "--no-dedup", "--review-all-from=a,b", "--knn=auto"]
    with pytest.raises(TypeError):
        triage._cli_tokens({"out": "x"})


def test_hints_name_the_keyword_argument():
    # Logits passed as probabilities: the CLI says `--logits`, Python
    # `logits=True` (and the hint works).
    logits = np.array([[-2.0, 1.0, 0.5], [1.5, -0.5, 0.0]], dtype=np.float32)
    labels = np.array([1, 0])
    with pytest.raises(triage.TriageError) as e:
        triage.classification(logits, labels)
    assert "pass logits=True" in str(e.value) and "--logits" not in str(e.value), str(e.value)
    res = triage.classification(logits, labels, logits=True)
    assert len(res.queue) == 2
