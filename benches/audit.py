#!/usr/bin/env python3
"""The full audit: `triage run` with every default check against cleanlab's
`Datalab.find_issues` (its default issue types) on the same arrays, in one
run on one machine; and triage without the audit checks, for what they add.

What it does:
  1. per size, makes a 10-class classification set with 128-d float32
     embeddings (Gaussian blobs, one per class; 1 % outliers in random
     directions; 3 % flipped labels; probabilities from a noisy softmax),
     kept in --work between runs;
  2. per size, --reps times, interleaved, warm page cache:
       triage    the whole `triage run --backend cpu` process (default
                 checks: label quality, near-duplicates, leakage, outlier,
                 non_iid, underperforming_group, class_imbalance), with its
                 peak RSS (wait4) and report.json `timings`;
       base      the same with `--checks` naming only the checks that were
                 there before the audit (wrong_label, uncertain,
                 miscalibrated, duplicate_conflict, class_imbalance): the
                 audit checks' added time is triage - base;
       datalab   np.load of the three arrays and `Datalab(...).find_issues(
                 features=emb, pred_probs=probs)` (defaults: label, outlier,
                 near_duplicate, non_iid, class_imbalance,
                 underperforming_group, null), timed inside the Python
                 process (interpreter start and imports excluded: generous
                 to the peer), with its peak RSS;
       read      the read limit: the three input files read once, start to
                 end, into a reused buffer (warm page cache), the least any
                 run over these arrays can take;
  3. prints medians and the same-run ratios; writes JSON with --json.

The peer needs cleanlab[datalab] in --python (default: the reference venv
.ci/run makes, target/ci-ref-venv).

Usage: target/ci-ref-venv/bin/python benches/audit.py [--sizes 20000,200000] [--reps 3]
       [--work /tmp/triage-audit] [--bin target/release/triage]
       [--python target/ci-ref-venv/bin/python] [--no-peer] [--json out.json]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIM, CLASSES = 128, 10
BASE_CHECKS = "wrong_label,uncertain,miscalibrated,duplicate_conflict,class_imbalance"

PEER = r"""
import sys, time, resource, json, warnings
warnings.filterwarnings("ignore")
import numpy as np
from cleanlab import Datalab
d = sys.argv[1]
t = time.perf_counter()
emb = np.load(d + "/embeddings.npy")
probs = np.load(d + "/probs.npy")
labels = np.load(d + "/labels.npy")
lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
lab.find_issues(features=emb, pred_probs=probs)
s = time.perf_counter() - t
print(json.dumps({"seconds": s, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "issues": sorted(lab.get_issue_summary()["issue_type"].tolist())}))
"""


def make(d: Path, n: int) -> None:
    if (d / "triage.toml").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    centres = rng.normal(0, 1, (CLASSES, DIM)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    emb = centres[y] + rng.normal(0, 0.6, (n, DIM)).astype(np.float32)
    out = rng.random(n) < 0.01
    emb[out] = rng.normal(0, 1, (out.sum(), DIM)).astype(np.float32) * 2
    logits = rng.normal(0, 1, (n, CLASSES)).astype(np.float32)
    logits[np.arange(n), y] += 3.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = y.copy()
    flip = rng.random(n) < 0.03
    labels[flip] = (labels[flip] + rng.integers(1, CLASSES, flip.sum())) % CLASSES
    np.save(d / "embeddings.npy", emb.astype(np.float32))
    np.save(d / "probs.npy", probs.astype(np.float32))
    np.save(d / "labels.npy", labels.astype(np.int64))
    names = ", ".join(f'"c{k}"' for k in range(CLASSES))
    (d / "triage.toml").write_text(
        f'task = "classification"\nclasses = [{names}]\n[inputs]\nprobs = "probs.npy"\n'
        'labels = "labels.npy"\nembeddings = "embeddings.npy"\n'
    )


def timed(cmd):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    s = time.perf_counter() - t
    out, err = p.stdout.read(), p.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd}: {err.decode()}")
    return s, ru.ru_maxrss * 1024, out


def read_floor(d: Path) -> float:
    buf = bytearray(1 << 20)
    t = time.perf_counter()
    for name in ["embeddings.npy", "probs.npy", "labels.npy"]:
        with open(d / name, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,200000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", default="/tmp/triage-audit")
    ap.add_argument("--bin", default=str(ROOT / "target/release/triage"))
    ap.add_argument("--python", default=str(ROOT / "target/ci-ref-venv/bin/python"))
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    results = {}
    for n in [int(s) for s in a.sizes.split(",")]:
        d = Path(a.work) / f"n{n}"
        make(d, n)
        runs = {"triage": [], "base": [], "datalab": [], "read": []}
        for _ in range(a.reps):
            runs["read"].append({"seconds": read_floor(d), "rss": 0})
            for kind in ["triage", "base"]:
                out = d / "out"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [a.bin, "run", str(d), "--out", str(out), "--backend", "cpu"]
                if kind == "base":
                    cmd += ["--checks", BASE_CHECKS]
                s, rss, _ = timed(cmd)
                report = json.loads((out / "report.json").read_text())
                runs[kind].append({"seconds": s, "rss": rss, "timings": report.get("timings")})
            if not a.no_peer:
                s, rss, out = timed([a.python, "-c", PEER, str(d)])
                runs["datalab"].append(json.loads(out))
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items() if v}
        rss = {k: statistics.median(r["rss"] for r in v) for k, v in runs.items() if v}
        line = f"{n:>9} items: read limit {med['read']:.3f} s; "
        line += f"triage {med['triage']:.2f} s ({rss['triage'] / 1e6:.0f} MB), "
        line += f"without the audit checks {med['base']:.2f} s (+{100 * (med['triage'] / med['base'] - 1):.0f} %)"
        if "datalab" in med:
            line += f"; Datalab {med['datalab']:.2f} s ({rss['datalab'] / 1e6:.0f} MB): "
            line += f"{med['triage'] / med['datalab']:.3f}x its time"
        print(line, flush=True)
        results[n] = {"runs": runs, "median_seconds": med, "median_rss": rss}
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
