"""Shared helpers of the Python test suite.

Tests that need something optional (pandas, cleanlab, the CLI binary, a GPU
adapter) skip without it, unless ``TRIAGE_REQUIRE_PYTHON=1`` (set by
``.ci/run``): then a missing piece is a failure. The CLI binary is
``$TRIAGE_BIN`` (the Rust test target sets it), else ``target/debug/triage``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("TRIAGE_REQUIRE_PYTHON") == "1"
CIFAR = REPO / "datasets" / "cifar10-label-errors"


def need(module: str) -> Any:
    """Import ``module``, skipping the test without it (failing when required)."""
    if REQUIRE:
        return importlib.import_module(module)
    return pytest.importorskip(module)


def missing(why: str) -> None:
    """Skip, or fail under TRIAGE_REQUIRE_PYTHON=1."""
    if REQUIRE:
        pytest.fail(f"{why} (TRIAGE_REQUIRE_PYTHON=1)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `triage` binary."""
    path = Path(os.environ.get("TRIAGE_BIN") or REPO / "target" / "debug" / "triage")
    if not path.is_file():
        missing(f"no triage binary at {path}: set TRIAGE_BIN or run cargo build")
    return path


def run_cli(cli: Path, *args: Any, check: bool = True) -> subprocess.CompletedProcess:
    """Run the CLI with ``args``; on ``check``, fail with its stderr unless it succeeded."""
    p = subprocess.run(
        [str(cli), *[str(a) for a in args]], capture_output=True, text=True, timeout=600
    )
    if check and p.returncode != 0:
        pytest.fail(f"triage {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr}")
    return p


def cli_error(stderr: str) -> str:
    """The message of a failed CLI run: after `triage: error: `, or clap's
    first line without `error: `."""
    for line in stderr.splitlines():
        if line.startswith("triage: error: "):
            return line[len("triage: error: "):]
    first = stderr.strip().splitlines()[0]
    return first[len("error: "):] if first.startswith("error: ") else first


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture()
def cifar(tmp_path: Path) -> Path:
    """A copy of the CIFAR-10 label-errors dataset (10 000 × 10) in tmp."""
    d = tmp_path / "cifar"
    d.mkdir()
    for name in ("probs.npy", "labels.npy", "triage.toml"):
        shutil.copy(CIFAR / name, d / name)
    return d


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def png_gray8(path: Path, image: np.ndarray) -> None:
    """Write an 8-bit grayscale PNG of ``image`` (H, W) uint8 (no PIL needed)."""
    h, w = image.shape
    raw = b"".join(b"\x00" + image[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def seg_arrays(n: int = 8, c: int = 4, h: int = 32, w: int = 32, seed: int = 0, dtype: Any = np.float32):
    """Random softmax probabilities (N, C, H, W), masks (N, H, W) uint8 that
    mostly follow the argmax (some items with a planted wrong blob), and
    embeddings (N, 8) with two near-duplicate pairs."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, size=(n, c, h, w))
    # Smooth regions: a class per quadrant, plus noise.
    for i in range(n):
        k = (i + np.arange(4)) % c
        logits[i, k[0], : h // 2, : w // 2] += 4
        logits[i, k[1], : h // 2, w // 2 :] += 4
        logits[i, k[2], h // 2 :, : w // 2] += 4
        logits[i, k[3], h // 2 :, w // 2 :] += 4
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (e / e.sum(axis=1, keepdims=True)).astype(dtype)
    masks = probs.argmax(axis=1).astype(np.uint8)
    for i in range(0, n, 3):
        masks[i, 2:10, 2:10] = (masks[i, 2:10, 2:10] + 1) % c
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    if n >= 4:
        emb[1] = emb[0] + 1e-3
        emb[3] = emb[2] + 1e-3
    return probs, masks, emb


def write_seg_dataset(d: Path, probs: np.ndarray, masks: np.ndarray, emb: Optional[np.ndarray],
                      ids: Sequence[str], classes: Sequence[str]) -> Path:
    """A segmentation dataset directory holding the arrays (masks as PNGs)."""
    (d / "masks").mkdir(parents=True)
    np.save(d / "probs.npy", probs)
    lines = ["id,mask"]
    for i, item in enumerate(ids):
        png_gray8(d / "masks" / f"{item}.png", masks[i])
        lines.append(f"{item},masks/{item}.png")
    (d / "items.csv").write_text("\n".join(lines) + "\n")
    toml = [
        'task = "segmentation"',
        "classes = [" + ", ".join(f'"{c}"' for c in classes) + "]",
        "ignore_index = 255",
        "",
        "[inputs]",
        'items = "items.csv"',
        'probs = "probs.npy"',
    ]
    if emb is not None:
        np.save(d / "embeddings.npy", emb)
        toml.append('embeddings = "embeddings.npy"')
    (d / "triage.toml").write_text("\n".join(toml) + "\n")
    return d


def write_cls_dataset(d: Path, probs: np.ndarray, labels: Optional[np.ndarray], classes: Sequence[str]) -> Path:
    """A classification dataset directory holding the arrays."""
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "probs.npy", probs)
    toml = [
        'task = "classification"',
        "classes = [" + ", ".join(f'"{c}"' for c in classes) + "]",
        "",
        "[inputs]",
        'probs = "probs.npy"',
    ]
    if labels is not None:
        np.save(d / "labels.npy", labels)
        toml.append('labels = "labels.npy"')
    (d / "triage.toml").write_text("\n".join(toml) + "\n")
    return d
