#!/usr/bin/env python3
"""Agreement between annotators at 10 000 items x 50 annotators, timed as a user
waits for it, beside reading the input files and the reference packages, in one
run (interleaved repetitions, medians).

Makes (under --work, kept between runs) a classification dataset with
`triage synth` and an annotations.csv of 50 annotators per item (each right 90 %
of the time, seeded), plus a copy without the annotations. Then, --reps times:
  read     `cat` of annotations.csv, probs.npy, labels.npy (page cache)
  triage   the whole `triage run --backend cpu` with the annotations
  plain    the same run without them
  peers    the reference packages in a child Python process (krippendorff alpha,
           statsmodels fleiss_kappa, 1225 scikit-learn cohen_kappa_score calls on
           the CSV read into an annotator x item matrix): its whole process time,
           and the time it reports after its imports.

Usage: python3 benches/agreement.py [--reps 3] [--work /tmp/triage-agreement]
       [--bin target/release/triage] [--python PY]   (PY has krippendorff,
       statsmodels, scikit-learn; e.g. target/ci-ref-venv/bin/python)
"""

import argparse
import os
import random
import shutil
import statistics
import struct
import subprocess
import time

PEER = r'''
import csv, sys, time
import numpy as np
import krippendorff
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
t1 = time.perf_counter()
rows = list(csv.reader(open(sys.argv[1])))[1:]
m = np.full((50, 10000), np.nan)
for i, a, l in rows:
    m[int(a[3:]), int(i)] = int(l)
al = krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
table, _ = aggregate_raters(m.T.astype(int), n_cat=10)
fk = fleiss_kappa(table)
ks = [cohen_kappa_score(m[a], m[b]) for a in range(50) for b in range(a + 1, 50)]
print(time.perf_counter() - t1, al, fk)
'''


def timed(cmd, **kw):
    t = time.perf_counter()
    r = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t, r.stdout


def make(work, tb):
    ds, plain = os.path.join(work, "ds"), os.path.join(work, "plain")
    if os.path.isdir(ds):
        return ds, plain
    subprocess.run([tb, "synth", "--task", "classification", "--items", "10000", "--classes", "10",
                    "--out", ds], check=True, stderr=subprocess.DEVNULL)
    shutil.copytree(ds, plain)
    b = open(os.path.join(ds, "labels.npy"), "rb").read()
    off = 10 + struct.unpack("<H", b[8:10])[0]
    labels = struct.unpack("<10000i", b[off:off + 40000])
    rng = random.Random(1)
    with open(os.path.join(ds, "annotations.csv"), "w") as f:
        f.write("id,annotator,label\n")
        for i in range(10000):
            for a in range(50):
                l = labels[i] if rng.random() < 0.9 else rng.randrange(10)
                f.write(f"{i},ann{a:02d},{l}\n")
    with open(os.path.join(ds, "triage.toml"), "a") as f:
        f.write('annotations = "annotations.csv"\n')
    return ds, plain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default="/tmp/triage-agreement")
    ap.add_argument("--bin", default="target/release/triage")
    ap.add_argument("--python", default=os.environ.get("TRIAGE_REF_PYTHON", "python3"))
    a = ap.parse_args()
    tb = os.path.abspath(a.bin)
    ds, plain = make(a.work, tb)
    out = os.path.join(a.work, "out")
    csv_path = os.path.join(ds, "annotations.csv")
    t = {k: [] for k in ["read", "triage", "plain", "peers process", "peers after imports"]}
    for _ in range(a.reps):
        files = " ".join(os.path.join(ds, f) for f in ["annotations.csv", "probs.npy", "labels.npy"])
        t["read"].append(timed(["sh", "-c", f"cat {files} > /dev/null"])[0])
        t["triage"].append(timed([tb, "run", ds, "--out", out, "--backend", "cpu"])[0])
        t["plain"].append(timed([tb, "run", plain, "--out", out, "--backend", "cpu"])[0])
        wall, stdout = timed([a.python, "-c", PEER, csv_path])
        t["peers process"].append(wall)
        t["peers after imports"].append(float(stdout.split()[0]))
    for k, v in t.items():
        print(f"{k:20s} " + "  ".join(f"{x:.2f} s" for x in v) + f"   median {statistics.median(v):.2f} s")


if __name__ == "__main__":
    main()
