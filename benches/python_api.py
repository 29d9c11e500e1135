#!/usr/bin/env python3
"""Python API benchmark (issue 27): on the same arrays in memory,

- ``triage.classification`` at 200 000 x 1000 (float32, Dirichlet-like
  probabilities with about 3 % planted wrong labels) against cleanlab's calls
  that compute one score each (``rank.get_label_quality_scores`` with
  self_confidence, normalized_margin, confidence_weighted_entropy;
  ``filter.find_label_issues``), and against the CLI ``triage run`` on the same
  data saved to a dataset directory (read from a warm file);
- ``triage.segmentation`` at 32 x 19 x 512^2 (float32) against cleanlab's
  ``segmentation.rank.get_label_quality_scores`` (softmin) and the CLI.

Median of ``--repeats`` (3) runs each; prints a table. ``--small`` shrinks the
sizes (20 000 x 100 and 4 x 19 x 128^2) to check the script works.

Needs: the ``triage`` package (``pip install ./python``), cleanlab, and the
CLI binary (``--cli``, ``$TRIAGE_BIN`` or ``target/release/triage``).

Usage: python3 benches/python_api.py [--small] [--backend auto|cpu|gpu] [--cli PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

import triage

ROOT = Path(__file__).resolve().parents[1]


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired_times(fa, fb, repeats):
    """Medians of ``fa`` and ``fb`` timed alternately (a, b, a, b, ...), so
    that the machine's drift falls on both alike: a same-run ratio."""
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((fa, ta), (fb, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def classification_data(n, c, seed=0):
    """Dirichlet-like rows (a peaked true class, noise elsewhere), float32,
    built in chunks; about 3 % of the labels replaced by a wrong class."""
    rng = np.random.default_rng(seed)
    probs = np.empty((n, c), np.float32)
    truth = rng.integers(0, c, size=n)
    step = max(1, (1 << 24) // c)
    for s in range(0, n, step):
        e = min(n, s + step)
        x = rng.standard_exponential((e - s, c), dtype=np.float32)
        x[np.arange(e - s), truth[s:e]] += rng.uniform(2, 30, size=e - s).astype(np.float32) * c / 10
        x /= x.sum(axis=1, keepdims=True)
        probs[s:e] = x
    labels = truth.copy()
    wrong = rng.random(n) < 0.03
    labels[wrong] = (truth[wrong] + rng.integers(1, c, size=int(wrong.sum()))) % c
    return probs, labels.astype(np.int64)


def segmentation_data(n, c, h, w, seed=0):
    rng = np.random.default_rng(seed)
    probs = np.empty((n, c, h, w), np.float32)
    masks = np.empty((n, h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        k = ((xx // max(1, w // 4)) + (yy // max(1, h // 4)) + i) % c
        x = rng.standard_exponential((c, h, w), dtype=np.float32)
        np.put_along_axis(x, k[None], 20.0, axis=0)
        x /= x.sum(axis=0, keepdims=True)
        probs[i] = x
        m = k.astype(np.uint8)
        if i % 4 == 0:
            m[h // 8 : h // 4, w // 8 : w // 4] = (m[h // 8 : h // 4, w // 8 : w // 4] + 1) % c
        masks[i] = m
    return probs, masks


def png_gray8(path, image):
    h, w = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def cls_dir(d, probs, labels):
    d.mkdir(parents=True)
    np.save(d / "probs.npy", probs)
    np.save(d / "labels.npy", labels)
    c = probs.shape[1]
    (d / "triage.toml").write_text(
        'task = "classification"\nclasses = [' + ", ".join(f'"{k}"' for k in range(c))
        + ']\n\n[inputs]\nprobs = "probs.npy"\nlabels = "labels.npy"\n'
    )
    return d


def seg_dir(d, probs, masks):
    (d / "masks").mkdir(parents=True)
    np.save(d / "probs.npy", probs)
    lines = ["id,mask"]
    for i in range(len(masks)):
        png_gray8(d / "masks" / f"{i}.png", masks[i])
        lines.append(f"{i},masks/{i}.png")
    (d / "items.csv").write_text("\n".join(lines) + "\n")
    c = probs.shape[1]
    (d / "triage.toml").write_text(
        'task = "segmentation"\nclasses = [' + ", ".join(f'"{k}"' for k in range(c))
        + ']\nignore_index = 255\n\n[inputs]\nitems = "items.csv"\nprobs = "probs.npy"\n'
    )
    return d


def limits(arr, npy_path, repeats):
    """The read limits of the same run: copying the array once in memory
    (the arrays' source) and reading its .npy file once from the warm page
    cache (the CLI's source), medians of ``repeats``."""
    buf = np.empty_like(arr)
    t_copy = median_time(lambda: np.copyto(buf, arr), repeats)
    del buf

    def read():
        with open(npy_path, "rb", buffering=0) as f:
            chunk = bytearray(16 << 20)
            while f.readinto(chunk):
                pass

    return t_copy, median_time(read, repeats)


def cli_run(cli, dataset, out, backend):
    """A function running the CLI on ``dataset``, after one warm-up run
    (the file cache and the binary)."""
    cmd = [str(cli), "run", str(dataset), "--out", str(out), "--backend", backend]
    subprocess.run(cmd, check=True, capture_output=True)

    def go():
        subprocess.run(cmd, check=True, capture_output=True)

    return go


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small sizes, to check the script")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="auto", help="triage backend for the API and the CLI")
    ap.add_argument("--cli", default=os.environ.get("TRIAGE_BIN") or str(ROOT / "target" / "release" / "triage"))
    ap.add_argument("--skip-find-label-issues", action="store_true",
                    help="leave out cleanlab's filter.find_label_issues (the slowest call)")
    a = ap.parse_args()
    from cleanlab import filter as cl_filter, rank as cl_rank
    from cleanlab.segmentation import rank as cl_seg

    n, c = (20_000, 100) if a.small else (200_000, 1000)
    sn, sc, sh, sw = (4, 19, 128, 128) if a.small else (32, 19, 512, 512)
    cli = Path(a.cli)
    if not cli.is_file():
        sys.exit(f"no triage binary at {cli}: build it (cargo build --release) or pass --cli")
    rows = []

    def row(task, what, secs, base=None):
        rows.append((task, what, secs, base))

    print(f"classification {n} x {c} float32; segmentation {sn} x {sc} x {sh} x {sw} float32; "
          f"backend {a.backend}; median of {a.repeats}", flush=True)
    probs, labels = classification_data(n, c)
    tmp_cls = tempfile.TemporaryDirectory(prefix="triage-bench-")
    cli_cls = cli_run(cli, cls_dir(Path(tmp_cls.name) / "cls", probs, labels), Path(tmp_cls.name) / "out", a.backend)
    t_api, t_cli = paired_times(
        lambda: triage.classification(probs, labels, backend=a.backend, progress=False), cli_cls, a.repeats
    )
    row("classification", "triage.classification (every score, checks, queue)", t_api)
    copy, read = limits(probs, Path(tmp_cls.name) / "cls" / "probs.npy", a.repeats)
    row("classification", "  limit: one copy of the probabilities in memory (np.copyto)", copy)
    row("classification", "  limit: one read of probs.npy from the warm page cache", read)
    res = triage.classification(probs, labels, backend=a.backend, progress=False)
    t = time.perf_counter()
    frame = res.queue
    row("classification", f"  then Result.queue, a DataFrame of {len(frame)} rows (first access)",
        time.perf_counter() - t)
    del res, frame
    sums = 0.0
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        t = median_time(lambda: cl_rank.get_label_quality_scores(labels, probs, method=method), a.repeats)
        sums += t
        row("classification", f"cleanlab rank.get_label_quality_scores({method})", t)
    if not a.skip_find_label_issues:
        t = median_time(lambda: cl_filter.find_label_issues(labels, probs), a.repeats)
        sums += t
        row("classification", "cleanlab filter.find_label_issues", t)
    row("classification", "cleanlab, the calls above together", sums)
    tmp_cls.cleanup()
    row("classification", "CLI triage run (warm file), timed alternately with the API call", t_cli)
    cls_ratio = (t_api / sums, t_api / t_cli)
    del probs, labels

    sprobs, smasks = segmentation_data(sn, sc, sh, sw)
    tmp_seg = tempfile.TemporaryDirectory(prefix="triage-bench-")
    cli_seg = cli_run(cli, seg_dir(Path(tmp_seg.name) / "seg", sprobs, smasks), Path(tmp_seg.name) / "out", a.backend)
    t_sapi, t_scli = paired_times(
        lambda: triage.segmentation(sprobs, smasks, backend=a.backend, progress=False), cli_seg, a.repeats
    )
    row("segmentation", "triage.segmentation (every score, checks, queue)", t_sapi)
    copy, read = limits(sprobs, Path(tmp_seg.name) / "seg" / "probs.npy", a.repeats)
    row("segmentation", "  limit: one copy of the probabilities in memory (np.copyto)", copy)
    row("segmentation", "  limit: one read of probs.npy from the warm page cache", read)
    t_cl = median_time(lambda: cl_seg.get_label_quality_scores(smasks, sprobs, verbose=False), a.repeats)
    row("segmentation", "cleanlab segmentation.rank.get_label_quality_scores(softmin)", t_cl)
    t_helper = median_time(lambda: triage.segmentation_label_quality(smasks, sprobs), a.repeats)
    row("segmentation", "triage.segmentation_label_quality (the same score)", t_helper)
    tmp_seg.cleanup()
    row("segmentation", "CLI triage run (warm file), timed alternately with the API call", t_scli)

    print()
    print(f"| {'task':<14} | {'what':<68} | {'seconds':>8} |")
    print(f"|{'-' * 16}|{'-' * 70}|{'-' * 10}|")
    for task, what, secs, _ in rows:
        print(f"| {task:<14} | {what:<68} | {secs:>8.3f} |")
    print()
    print(f"classification: triage / cleanlab = {cls_ratio[0]:.2f}x (goal <= 0.5), "
          f"API / CLI = {cls_ratio[1]:.2f}x (goal <= 1.2)")
    print(f"segmentation:   triage / cleanlab = {t_sapi / t_cl:.2f}x (goal <= 0.5), "
          f"API / CLI = {t_sapi / t_scli:.2f}x (goal <= 1.2)")


if __name__ == "__main__":
    main()
