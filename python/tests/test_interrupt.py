"""Ctrl-C: SIGINT during `triage.run(dataset, out=...)` raises
KeyboardInterrupt within about a second and leaves `out` as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import write_seg_dataset

CHILD = r"""
import sys, triage
started = []
def progress(done, total):
    if not started:
        started.append(1)
        print("started", done, total, flush=True)
try:
    triage.run(sys.argv[1], out=sys.argv[2], progress=progress, backend="cpu", batch_size="512KiB", logits=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
print("finished", flush=True)
"""


def listing(d: Path):
    return sorted((str(p.relative_to(d)), p.stat().st_size) for p in d.rglob("*"))


def big_dataset(d: Path, n: int = 320, c: int = 5, h: int = 256, w: int = 256) -> Path:
    """A segmentation dataset that takes seconds to score on one thread
    (200 MB of float16 probabilities, read as logits)."""
    probs = np.lib.format.open_memmap(d.parent / "tmp_probs.npy", mode="w+", dtype=np.float16, shape=(n, c, h, w))
    masks = np.zeros((n, h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        k = (xx * c // w + i) % c
        p = np.full((c, h, w), 0.1 / (c - 1), np.float32)
        np.put_along_axis(p, k[None], 0.9, axis=0)
        probs[i] = p
        masks[i] = k
    probs.flush()
    ids = [f"im{i:04d}" for i in range(n)]
    write_seg_dataset(d, np.asarray(probs), masks, None, ids, [f"c{j}" for j in range(c)])
    del probs
    os.unlink(d.parent / "tmp_probs.npy")
    return d


def test_sigint_stops_the_run_and_writes_nothing(tmp_path):
    data = big_dataset(tmp_path / "big")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    before = listing(out)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, RAYON_NUM_THREADS="1"),  # a slower run: seconds, not a fraction
    )
    try:
        line = child.stdout.readline()
        assert line.startswith("started"), f"{line!r} {child.stderr.read() if child.poll() is not None else ''}"
        time.sleep(0.3)
        assert child.poll() is None, "the run finished before the signal: make the dataset bigger"
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    assert "finished" not in rest, "the run finished before the signal: make the dataset bigger"
    assert child.returncode == 130 and "interrupted" in rest, (child.returncode, rest, err)
    print(f"stopped {took:.3f} s after SIGINT")
    assert took < 2.0, f"stopped {took:.2f} s after SIGINT"
    assert listing(out) == before, "out holds no new or partial file"
