#!/usr/bin/env python3
"""Incremental runs (`triage run --cache DIR`), timed as a user waits for them,
beside reading the file and a full run, interleaved in one run on one machine.

For each dataset (made by `benches/whole_run.py` under --work, or by
`triage synth` here when missing):
  read      `cat probs.npy > /dev/null` (the file is read in every case)
  full      `triage run` without a cache
  cold      `triage run --cache EMPTY` (a full run that also writes the cache)
  warm      `triage run --cache C`, nothing changed (every item reused)
  changed   classification only: `--cache C` on a copy whose probabilities
            differ in 1 % of the rows (every 100th row rotated)
Medians of --reps interleaved repetitions, warm page cache, CPU backend.

Usage: python3 benches/incremental.py [--reps 5] [--work /tmp/triage-bench]
       [--bin target/release/triage] [--json out.json]
"""

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import time


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")})
    return time.perf_counter() - t


def npy_offset(path):
    with open(path, "rb") as f:
        head = f.read(12)
    if head[6] == 1:
        return 10 + struct.unpack("<H", head[8:10])[0]
    return 12 + struct.unpack("<I", head[8:12])[0]


def changed_copy(src, dst, width, rows, every=100):
    """A copy of dataset `src` whose probabilities differ in every
    `every`-th row (`width` bytes a row, values rotated by 4 bytes)."""
    if os.path.isdir(dst):
        return
    os.makedirs(dst)
    # Copies, not links: a link out of the dataset directory is refused
    # (docs/threat-model.md) unless triage.toml lists its root.
    for name in os.listdir(src):
        if name != "probs.npy":
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    shutil.copyfile(os.path.join(src, "probs.npy"), os.path.join(dst, "probs.npy"))
    off = npy_offset(os.path.join(dst, "probs.npy"))
    with open(os.path.join(dst, "probs.npy"), "r+b") as f:
        for r in range(0, rows, every):
            f.seek(off + r * width)
            row = f.read(width)
            f.seek(off + r * width)
            f.write(row[4:] + row[:4])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--work", default="/tmp/triage-bench")
    ap.add_argument("--bin", default="target/release/triage")
    ap.add_argument("--json")
    a = ap.parse_args()
    tb = os.path.abspath(a.bin)
    cls = os.path.join(a.work, "cls")
    seg = os.path.join(a.work, "seg-f16")
    if not os.path.isdir(cls):
        subprocess.run([tb, "synth", "--task", "classification", "--items", "200000",
                        "--classes", "1000", "--dtype", "f32", "--out", cls], check=True)
    if not os.path.isdir(seg):
        subprocess.run([tb, "synth", "--items", "32", "--size", "512", "512", "--classes", "19",
                        "--dtype", "f16", "--out", seg], check=True)
    changed = os.path.join(a.work, "cls-changed-1pct")
    changed_copy(cls, changed, 1000 * 4, 200000)
    tmp = tempfile.mkdtemp(prefix="triage-incr-")
    results = {}
    for name, ds, extra in [("cls 200000x1000 f32", cls, changed), ("seg 32x19x512x512 f16", seg, None)]:
        cache = os.path.join(tmp, name.split()[0] + "-cache")
        out = os.path.join(tmp, "out")
        run = lambda d, *more: [tb, "run", d, "--out", out, "--backend", "cpu", *more]
        timed(run(ds, "--cache", cache))  # fill the cache
        t = {k: [] for k in ["read", "full", "cold", "warm"] + (["changed"] if extra else [])}
        for _ in range(a.reps):
            t["read"].append(timed(["sh", "-c", f"cat {ds}/probs.npy > /dev/null"]))
            t["full"].append(timed(run(ds)))
            empty = os.path.join(tmp, "empty")
            shutil.rmtree(empty, ignore_errors=True)
            t["cold"].append(timed(run(ds, "--cache", empty)))
            t["warm"].append(timed(run(ds, "--cache", cache)))
            if extra:
                # From the unchanged dataset's cache to the changed copy:
                # 1 % scored. Then back, so each repetition starts the same.
                c2 = os.path.join(tmp, "c2")
                shutil.rmtree(c2, ignore_errors=True)
                shutil.copytree(cache, c2)
                t["changed"].append(timed(run(extra, "--cache", c2)))
        med = {k: statistics.median(v) for k, v in t.items()}
        results[name] = med
        line = ", ".join(f"{k} {v:.3f} s" for k, v in med.items())
        print(f"{name}: {line}")
        print(f"  ratio full/warm {med['full'] / med['warm']:.2f}, warm/read {med['warm'] / med['read']:.2f}"
              + (f", full/changed {med['full'] / med['changed']:.2f}" if extra else ""))
    shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
