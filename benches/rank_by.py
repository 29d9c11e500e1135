#!/usr/bin/env python3
"""Which label-quality score should order the queue (`triage run --rank-by`)?

Runs the triage binary once per score on each dataset and measures how well
its queue puts the known label errors first, from queue.jsonl's `priority`:

- AUROC of the priority for the errors, over every item;
- precision at k, k = the number of errors (the share of errors in the
  queue's first k rows);
- the errors among the queue's first 100 rows.

Datasets:
- the four sets of Northcutt et al. (NeurIPS 2021) with human-verified label
  errors (MNIST, CIFAR-10, 20 Newsgroups, IMDB), from ../shared/data/label-errors
  (out-of-sample probabilities; a test-only copy, never shipped). Only items
  that confident learning flagged were shown to humans, so these figures
  favour scores like the one it ranked candidates by (the normalised margin);
- scikit-learn's digits (1797 images) with 5 % of the labels flipped to
  another class at random, one seed per repeat, with out-of-sample
  probabilities of a logistic regression (5-fold cross_val_predict): errors
  whose position is known exactly and that no tool chose.

Usage: python3 benches/rank_by.py [--bin target/release/triage]
       [--data ../shared/data/label-errors] [--seeds 10] [--work /tmp/triage-rank]
Needs numpy and scikit-learn (target/ci-ref-venv/bin/python after .ci/run).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

SCORES = ["normalized_margin", "self_confidence", "brier"]


def auroc(score, positive):
    """AUROC by ranks (ties count one half)."""
    score = np.asarray(score, float)
    positive = np.asarray(positive, bool)
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos = positive.sum()
    n_neg = len(score) - n_pos
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def write_dataset(d, probs, labels):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    np.save(os.path.join(d, "probs.npy"), probs.astype(np.float32))
    np.save(os.path.join(d, "labels.npy"), labels.astype(np.int64))
    with open(os.path.join(d, "triage.toml"), "w") as f:
        f.write(
            f'task = "classification"\nnum_classes = {probs.shape[1]}\n\n'
            '[inputs]\nprobs = "probs.npy"\nlabels = "labels.npy"\n'
        )


def measure(binary, d, out, errors, n):
    row = {}
    for score in SCORES:
        o = f"{out}-{score}"
        subprocess.run(
            [binary, "run", d, "--out", o, "--backend", "cpu", "--rank-by", score],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        prio = np.full(n, np.nan)
        order = []
        with open(os.path.join(o, "queue.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                i = int(r["id"])
                prio[i] = r["priority"]
                order.append(i)
        pos = np.zeros(n, bool)
        pos[list(errors)] = True
        k = int(pos.sum())
        row[score] = {
            "auroc": auroc(prio, pos),
            "p_at_k": float(pos[order[:k]].mean()),
            "top100": int(pos[order[:100]].sum()),
        }
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/triage")
    ap.add_argument("--data", default="../shared/data/label-errors")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--work", default="/tmp/triage-rank")
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    results = {}

    verified = json.load(open(os.path.join(a.data, "verified_errors.json")))
    for ds in ["mnist", "cifar10", "20news", "imdb"]:
        probs = np.load(os.path.join(a.data, "pred_probs", f"{ds}.npy"))
        labels = np.load(os.path.join(a.data, "labels", f"{ds}.npy")).astype(np.int64)
        # IMDB's rows sum to 1 + 1e-5: renormalise, as a user would.
        probs = probs / probs.sum(axis=1, keepdims=True)
        d = os.path.join(a.work, ds)
        write_dataset(d, probs, labels)
        errors = verified[ds]["verified_errors"]
        results[ds] = measure(a.bin, d, d + "-out", errors, len(labels))
        results[ds]["errors"] = len(errors)
        print(ds, json.dumps(results[ds]), file=sys.stderr)

    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    x, y = load_digits(return_X_y=True)
    flips = []
    for seed in range(a.seeds):
        rng = np.random.default_rng(seed)
        n = len(y)
        idx = rng.choice(n, int(0.05 * n), replace=False)
        noisy = y.copy()
        noisy[idx] = (y[idx] + rng.integers(1, 10, len(idx))) % 10
        probs = cross_val_predict(
            LogisticRegression(max_iter=2000), x / 16, noisy, cv=5, method="predict_proba"
        )
        d = os.path.join(a.work, f"digits-{seed}")
        write_dataset(d, probs, noisy)
        flips.append(measure(a.bin, d, d + "-out", idx.tolist(), n))
    results["digits-flips"] = {
        s: {m: float(np.median([f[s][m] for f in flips])) for m in ["auroc", "p_at_k", "top100"]}
        for s in SCORES
    }
    results["digits-flips"]["errors"] = int(0.05 * len(y))
    results["digits-flips"]["seeds"] = a.seeds

    sets = ["mnist", "cifar10", "20news", "imdb", "digits-flips"]
    print("| score | " + " | ".join(sets) + " | mean over the 4 real sets | the flips |")
    print("|---|" + "---|" * (len(sets) + 2))
    for s in SCORES:
        cells = [
            f"{results[d][s]['auroc']:.4f} / {results[d][s]['p_at_k']:.3f} / {results[d][s]['top100']:g}"
            for d in sets
        ]
        real = np.mean([results[d][s]["auroc"] for d in sets[:4]])
        print(
            f"| `{s}` | " + " | ".join(cells) + f" | {real:.4f} | {results['digits-flips'][s]['auroc']:.4f} |"
        )
    print("(each cell: AUROC / precision at k = #errors / errors in the first 100; digits: median of seeds)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
