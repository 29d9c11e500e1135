"""Segmentation on the GPU backend (wgpu; lavapipe in CI) equals the CPU one.

Without an adapter the test skips, unless TRIAGE_REQUIRE_GPU=1 (as CI sets):
then it fails."""

from __future__ import annotations

import os

import numpy as np
import pytest

import triage
from conftest import seg_arrays

TOL = 2e-5  # the engine's GPU float tolerance (backend::gpu::FLOAT_TOLERANCE)


def close(what, g, c):
    assert abs(g - c) <= TOL, f"{what}: gpu {g} vs cpu {c}"


def test_segmentation_gpu_equals_cpu():
    probs, masks, emb = seg_arrays(n=10, c=5, h=48, w=40, seed=3)
    try:
        g = triage.segmentation(probs, masks, embeddings=emb, backend="gpu", batch_size="20KiB")
    except triage.TriageError as e:
        if os.environ.get("TRIAGE_REQUIRE_GPU") == "1":
            raise AssertionError(f"TRIAGE_REQUIRE_GPU=1 but the GPU backend failed: {e}") from e
        pytest.skip(f"no GPU adapter: {e}")
    c = triage.segmentation(probs, masks, embeddings=emb, backend="cpu")
    assert g.report["backend"]["name"] == "gpu", g.report["backend"]
    assert c.report["backend"]["name"] == "cpu"
    assert g.report["confusion"] == c.report["confusion"]
    assert g.report["per_class"] == c.report["per_class"]
    qg, qc = g.queue_records(), c.queue_records()
    assert len(qg) == len(qc) == 10
    by_id = {r["id"]: r for r in qc}
    for rank, r in enumerate(qg):
        cr = by_id[r["id"]]
        close("priority", r["priority"], cr["priority"])
        close("priority at the same rank", r["priority"], qc[rank]["priority"])
        assert r["scores"].keys() == cr["scores"].keys()
        for k, v in r["scores"].items():
            close(k, v, cr["scores"][k])
        assert r["reasons"] == cr["reasons"] or r["priority"] == pytest.approx(cr["priority"], abs=TOL)
