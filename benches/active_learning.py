#!/usr/bin/env python3
"""An active-learning loop on real data: scikit-learn's bundled digits (1797
8x8 handwritten digits, UCI; BSD-3 with scikit-learn), choosing each round's
labels with `triage run --label-budget K`.

For every seed: a stratified 30 % test split is held out; the rest is the pool,
of which a random --seed-labels items start labelled. Each round a logistic
regression is trained on the labelled items, its probabilities for every pool
item and the items' embeddings (the pixels, centred, L2-normalised) are written
as a triage dataset (unlabelled items have an empty `label` cell), and
`triage run --label-budget K --label-strategy S` chooses the K to label next;
their true labels are added and the next round starts. Test accuracy is
recorded after each round.

Strategies: triage's `diverse` (the default), `margin`, `entropy` and `random`,
and a peer: modAL's `uncertainty_sampling` (least confidence) on the same
model, from pip (modAL-python).

Pools: `plain` (the digits once) and `redundant` (every pool image 5 times, each
copy with Gaussian pixel noise of sd 0.02 of the range: frames of a video, a
web crawl). The test split is the same for both.

Goals (issue 15): `diverse` above `random` at every round after the seed;
above `margin` on the redundant pool; level with it on the plain one.

Usage: python3 benches/active_learning.py [--bin target/release/triage]
       [--seeds 5] [--rounds 10] [--batch 20] [--seed-labels 20]
       [--work /tmp/triage-al] [--json out.json] [--svg docs/active_learning.svg]
Needs numpy, scikit-learn and modAL-python (e.g. target/ci-ref-venv/bin/python
after `pip install modAL-python`).
"""

import argparse
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

STRATEGIES = ["diverse", "margin", "entropy", "random", "modAL"]


def write_npy(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (tuple(arr.shape),)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(arr.tobytes())


def model():
    return LogisticRegression(max_iter=3000, C=1.0)


def choose(args, work, strategy, probs, emb, labels, k, seed):
    """The K pool positions triage chooses (labels: -1 for unlabelled)."""
    d = os.path.join(work, "ds")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "items.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        for i, l in enumerate(labels):
            w.writerow([f"p{i}", "" if l < 0 else int(l)])
    write_npy(os.path.join(d, "probs.npy"), probs)
    write_npy(os.path.join(d, "embeddings.npy"), emb)
    with open(os.path.join(d, "triage.toml"), "w") as f:
        f.write(
            'task = "classification"\nclasses = [%s]\n[inputs]\nitems = "items.csv"\n'
            'probs = "probs.npy"\nembeddings = "embeddings.npy"\n'
            % ", ".join(f'"{c}"' for c in range(10))
        )
    out = os.path.join(work, "out")
    cmd = [args.bin, "run", d, "--out", out, "--backend", "cpu", "--label-budget", str(k),
           "--label-strategy", strategy, "--seed", str(seed)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(out, "to_label.jsonl")) as f:
        return [int(json.loads(line)["id"][1:]) for line in f]


def modal_choose(clf, X, labels, k):
    from modAL.uncertainty import uncertainty_sampling
    unl = np.flatnonzero(labels < 0)
    idx = uncertainty_sampling(clf, X[unl], n_instances=k)
    idx = idx[0] if isinstance(idx, tuple) else idx
    return [int(unl[i]) for i in np.asarray(idx).ravel()]


def loop(args, work, strategy, X, y, emb, Xt, yt, seed):
    rng = np.random.default_rng(seed)
    labels = np.full(len(y), -1)
    start = rng.choice(len(y), args.seed_labels, replace=False)
    labels[start] = y[start]
    acc, secs = [], 0.0
    for r in range(args.rounds + 1):
        lab = labels >= 0
        clf = model().fit(X[lab], labels[lab])
        acc.append(float((clf.predict(Xt) == yt).mean()))
        if r == args.rounds:
            break
        probs = np.zeros((len(y), 10), dtype=np.float32)
        probs[:, clf.classes_] = clf.predict_proba(X)
        t = time.perf_counter()
        if strategy == "modAL":
            picked = modal_choose(clf, X, labels, args.batch)
        else:
            picked = choose(args, work, strategy, probs, emb, labels, args.batch, seed)
        secs += time.perf_counter() - t
        assert len(picked) == args.batch and all(labels[p] < 0 for p in picked), picked
        labels[picked] = y[picked]
    return acc, secs


COLOURS = {"diverse": "#d62728", "margin": "#1f77b4", "entropy": "#9467bd",
           "random": "#7f7f7f", "modAL": "#2ca02c"}


def svg_plot(results, labels, path):
    """Two panels (plain, redundant): mean test accuracy against labels."""
    w, h, pad = 360, 260, 44
    lo = min(min(min(c) for c in r["mean_accuracy"].values()) for r in results.values())
    lo = max(0.0, int(lo * 10) / 10)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 30}" '
           'font-family="sans-serif" font-size="11">']
    for p, (pool, res) in enumerate(results.items()):
        x0 = p * w
        X = lambda n: x0 + pad + (n - labels[0]) / (labels[-1] - labels[0]) * (w - pad - 10)
        Y = lambda a: 10 + (1 - (a - lo) / (1 - lo)) * (h - pad)
        out.append(f'<text x="{x0 + w / 2}" y="{h + 4}" text-anchor="middle">labels ({pool} pool)</text>')
        out.append(f'<line x1="{X(labels[0])}" y1="{Y(lo)}" x2="{X(labels[-1])}" y2="{Y(lo)}" stroke="#000"/>')
        out.append(f'<line x1="{X(labels[0])}" y1="{Y(lo)}" x2="{X(labels[0])}" y2="{Y(1)}" stroke="#000"/>')
        for t in range(int(lo * 10), 11):
            a = t / 10
            out.append(f'<text x="{X(labels[0]) - 4}" y="{Y(a) + 4}" text-anchor="end">{a:.1f}</text>')
        for n in labels[::2]:
            out.append(f'<text x="{X(n)}" y="{Y(lo) + 14}" text-anchor="middle">{n}</text>')
        for i, (s, curve) in enumerate(res["mean_accuracy"].items()):
            pts = " ".join(f"{X(n):.1f},{Y(a):.1f}" for n, a in zip(labels, curve))
            out.append(f'<polyline fill="none" stroke="{COLOURS[s]}" stroke-width="2" points="{pts}"/>')
            out.append(f'<text x="{x0 + w - 80}" y="{Y(lo) - 12 - 14 * i}" fill="{COLOURS[s]}">{s}</text>')
    out.append(f'<text x="6" y="{h / 2}" transform="rotate(-90 10 {h / 2})">test accuracy</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/triage")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--seed-labels", type=int, default=20)
    ap.add_argument("--copies", type=int, default=5)
    ap.add_argument("--work", default="/tmp/triage-al")
    ap.add_argument("--json")
    ap.add_argument("--svg", help="write the curves as a small SVG plot")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    digits = load_digits()
    X_all, y_all = digits.data / 16.0, digits.target
    t0 = time.perf_counter()
    results = {}
    for pool in ["plain", "redundant"]:
        curves = {s: [] for s in STRATEGIES}
        secs = {s: 0.0 for s in STRATEGIES}
        for seed in range(args.seeds):
            X, Xt, y, yt = train_test_split(
                X_all, y_all, test_size=0.3, stratify=y_all, random_state=seed)
            if pool == "redundant":
                rng = np.random.default_rng(100 + seed)
                X = np.repeat(X, args.copies, axis=0)
                X = np.clip(X + rng.normal(0, 0.02, X.shape), 0, 1)
                y = np.repeat(y, args.copies)
            e = X - X.mean(axis=0)
            emb = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            for s in STRATEGIES:
                acc, t = loop(args, args.work, s, X, y, emb, Xt, yt, seed)
                curves[s].append(acc)
                secs[s] += t
        results[pool] = {
            "mean_accuracy": {s: np.mean(curves[s], axis=0).tolist() for s in STRATEGIES},
            "selection_seconds_per_round": {
                s: secs[s] / (args.seeds * args.rounds) for s in STRATEGIES},
            "pool_items": int(len(y)),
        }
    wall = time.perf_counter() - t0
    labels = [args.seed_labels + r * args.batch for r in range(args.rounds + 1)]
    for pool, res in results.items():
        m = res["mean_accuracy"]
        print(f"\n{pool} pool ({res['pool_items']} items), mean test accuracy over "
              f"{args.seeds} seeds, by number of labels:")
        print("| labels | " + " | ".join(STRATEGIES) + " |")
        print("|---" * (len(STRATEGIES) + 1) + "|")
        for r, n in enumerate(labels):
            print(f"| {n} | " + " | ".join(f"{100 * m[s][r]:.1f}" for s in STRATEGIES) + " |")
        print("selection time per round (s): " + ", ".join(
            f"{s} {res['selection_seconds_per_round'][s]:.3f}" for s in STRATEGIES))
        d = np.array(m["diverse"][1:])
        print(f"  diverse > random at every round: {bool((d > np.array(m['random'][1:])).all())}")
        gap = d - np.array(m["margin"][1:])
        print(f"  diverse - margin: mean {100 * gap.mean():+.2f} pts, "
              f"min {100 * gap.min():+.2f}, max {100 * gap.max():+.2f}")
    print(f"\nwhole bench: {wall:.0f} s")
    if args.svg:
        svg_plot(results, labels, args.svg)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "wall_s": wall}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
