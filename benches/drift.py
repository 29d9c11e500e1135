#!/usr/bin/env python3
"""The cost of drift at scale: one classification campaign of --items items,
--annotators annotators and --batches batches (issue 31: 1M x 200 x 365), run
with its `batch` column and without it (the same column renamed `lot`, so that
both runs read, carry and write the same bytes), interleaved --reps times;
medians of the wall time, of the CPU time and of report.json `timings.queue_s` (the stage that
holds the checks, drift among them). Goal: drift costs at most 10 % of the run
without it.

Makes (under --work, kept between runs) probs.npy (float32, --classes classes;
the model right on 90 % of items) and items.csv (id, label, annotator, batch;
the label wrong on 3 % of items), seeded. Standard library only.

Usage: python3 benches/drift.py [--bin target/release/triage] [--items 1000000]
       [--annotators 200] [--batches 365] [--classes 10] [--reps 3]
       [--work /tmp/triage-drift] [--out-root /dev/shm] [--json out.json]
"""

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import time


def make(work, n, annotators, batches, classes, seed=31):
    stamp = os.path.join(work, f"made-{n}-{annotators}-{batches}-{classes}")
    with_batch = os.path.join(work, "with")
    without = os.path.join(work, "without")
    if os.path.exists(stamp):
        return with_batch, without
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(with_batch)
    os.makedirs(without)
    rng = random.Random(seed)
    toml = (
        'task = "classification"\nclasses = [%s]\n[inputs]\nitems = "items.csv"\nprobs = "probs.npy"\n'
        % ", ".join(f'"c{k}"' for k in range(classes))
    )
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, classes)
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    lo, hi = 0.1 / (classes - 1), 0.9
    rows_w = ["id,label,annotator,batch"]
    rows_o = ["id,label,annotator,lot"]
    with open(os.path.join(with_batch, "probs.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        for i in range(n):
            truth = rng.randrange(classes)
            pred = truth if rng.random() < 0.9 else rng.randrange(classes)
            label = truth if rng.random() >= 0.03 else (truth + 1) % classes
            row = [lo] * classes
            row[pred] = hi
            f.write(struct.pack(f"<{classes}f", *row))
            b = i * batches // n
            a = rng.randrange(annotators)
            rows_w.append(f"i{i},{label},a{a},d{b:03}")
            rows_o.append(f"i{i},{label},a{a},d{b:03}")
    shutil.copy(os.path.join(with_batch, "probs.npy"), os.path.join(without, "probs.npy"))
    for d, rows in ((with_batch, rows_w), (without, rows_o)):
        with open(os.path.join(d, "triage.toml"), "w") as f:
            f.write(toml)
        with open(os.path.join(d, "items.csv"), "w") as f:
            f.write("\n".join(rows) + "\n")
    open(stamp, "w").close()
    return with_batch, without


def run(binary, dataset, out):
    """Wall seconds, CPU seconds (user + system, of the run alone: a
    measure that a busy machine disturbs less than the wall time), the
    queue stage's seconds and report.json's drift section."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([binary, "run", dataset, "--out", out, "--backend", "cpu"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    with open(os.path.join(out, "report.json")) as f:
        r = json.load(f)
    return wall, cpu, r["timings"]["queue_s"], r.get("drift")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/triage")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--annotators", type=int, default=200)
    ap.add_argument("--batches", type=int, default=365)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default="/tmp/triage-drift")
    ap.add_argument("--out-root", help="where the runs write (default --work); a tmpfs such as "
                    "/dev/shm takes the disk's noise out of the comparison")
    ap.add_argument("--json")
    a = ap.parse_args()
    t = time.perf_counter()
    with_batch, without = make(a.work, a.items, a.annotators, a.batches, a.classes)
    print(f"dataset ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    walls = {"with": [], "without": []}
    cpus = {"with": [], "without": []}
    queue = {"with": [], "without": []}
    drift = None
    for _ in range(a.reps):
        for key, d in (("without", without), ("with", with_batch)):
            w, c, q, dr = run(a.bin, d, os.path.join(a.out_root or a.work, "out-" + key))
            walls[key].append(w)
            cpus[key].append(c)
            queue[key].append(q)
            if dr is not None:
                drift = dr
    med = {k: statistics.median(v) for k, v in walls.items()}
    medc = {k: statistics.median(v) for k, v in cpus.items()}
    medq = {k: statistics.median(v) for k, v in queue.items()}
    res = {
        "items": a.items,
        "annotators": a.annotators,
        "batches": a.batches,
        "classes": a.classes,
        "reps": a.reps,
        "wall_s": med,
        "cpu_s": medc,
        "queue_s": medq,
        "overhead": med["with"] / med["without"] - 1.0,
        "cpu_overhead": medc["with"] / medc["without"] - 1.0,
        # The least disturbed run of each (the queue files' 900 MB of writes
        # make single walls vary by a second or more on a shared disk).
        "wall_min_s": {k: min(v) for k, v in walls.items()},
        "overhead_min": min(walls["with"]) / min(walls["without"]) - 1.0,
        # Each rep's two runs are adjacent, so share the machine's state:
        # the median of their ratios is the steadiest figure here.
        "overhead_pairs": statistics.median(
            w / o for w, o in zip(walls["with"], walls["without"])) - 1.0,
        "cpu_overhead_pairs": statistics.median(
            w / o for w, o in zip(cpus["with"], cpus["without"])) - 1.0,
        "tests": drift["tests"] if drift else None,
        "families": drift["families"] if drift else None,
        "alarms": len(drift["alarms"]) if drift else None,
        "cells": len(drift["annotators"]) if drift else None,
    }
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
