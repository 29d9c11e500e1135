"""The cleanlab-shaped helpers against cleanlab itself (to 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

import triage
from conftest import need


def _probs(rng, shape, axis):
    x = rng.normal(0, 2.0, size=shape)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("classes", [2, 3, 10, 57])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_quality_scores_equal_cleanlab(classes, dtype):
    rank = need("cleanlab.rank")
    rng = np.random.default_rng(classes)
    n = 1000
    probs = _probs(rng, (n, classes), 1).astype(dtype)
    labels = rng.integers(0, classes, size=n)
    want = rank.get_label_quality_scores(labels, probs)
    got = triage.get_label_quality_scores(labels, probs)
    assert got.dtype == np.float64 and got.shape == (n,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # Lists and other integer dtypes give the same.
    np.testing.assert_array_equal(triage.get_label_quality_scores(labels.astype(np.uint8).tolist(), probs), got)
    np.testing.assert_array_equal(triage.get_label_quality_scores(labels.astype(np.int32), probs), got)


def test_label_quality_errors():
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(triage.TriageError, match=r"item 2: label 3 is out of range"):
        triage.get_label_quality_scores([0, 1, 3, 2], probs)
    with pytest.raises(triage.TriageError, match="labels"):
        triage.get_label_quality_scores([0, 1], probs)


@pytest.mark.parametrize("classes", [2, 5, 19])
@pytest.mark.parametrize("temperature", [0.1, 0.03, 0.5])
def test_segmentation_label_quality_equals_cleanlab(classes, temperature):
    seg = need("cleanlab.segmentation.rank")
    rng = np.random.default_rng(classes * 7)
    n, h, w = 5, 13, 17
    probs = _probs(rng, (n, classes, h, w), 1).astype(np.float32)
    labels = probs.argmax(axis=1)
    flip = rng.random((n, h, w)) < 0.1
    labels[flip] = rng.integers(0, classes, size=int(flip.sum()))
    want_img, want_px = seg.get_label_quality_scores(
        labels, probs, method="softmin", temperature=temperature, verbose=False
    )
    img, px = triage.segmentation_label_quality(labels, probs, temperature, return_pixel_scores=True)
    np.testing.assert_allclose(img, want_img, rtol=0, atol=1e-6)
    assert px.dtype == np.float64 and px.shape == (n, h, w)
    np.testing.assert_allclose(px, want_px, rtol=0, atol=1e-6)
    img2, none = triage.segmentation_label_quality(labels.astype(np.uint8), probs, temperature)
    assert none is None
    np.testing.assert_array_equal(img2, img)


def test_segmentation_label_quality_float64_and_default_temperature():
    seg = need("cleanlab.segmentation.rank")
    rng = np.random.default_rng(1)
    probs = _probs(rng, (3, 4, 8, 8), 1)
    labels = rng.integers(0, 4, size=(3, 8, 8))
    want, _ = seg.get_label_quality_scores(labels, probs, verbose=False)
    got, _ = triage.segmentation_label_quality(labels, probs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_segmentation_label_quality_errors():
    probs = np.full((2, 3, 4, 4), 1 / 3, dtype=np.float32)
    labels = np.zeros((2, 4, 4), dtype=np.int64)
    labels[1, 2, 3] = 7
    with pytest.raises(triage.TriageError, match=r"image 1: pixel \(x=3, y=2\): label 7"):
        triage.segmentation_label_quality(labels, probs)
    with pytest.raises(triage.TriageError, match="labels"):
        triage.segmentation_label_quality(labels[:, :3], probs)
    with pytest.raises(triage.TriageError, match="temperature"):
        triage.segmentation_label_quality(np.zeros((2, 4, 4), int), probs, 0.0)
