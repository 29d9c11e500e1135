#!/usr/bin/env python3
"""Reference agreement figures for tests/cli/agreement.rs, from the published
packages: krippendorff (alpha), statsmodels (Fleiss' kappa), scikit-learn
(Cohen's kappa). Independent of triage: it reads annotations.csv and the
official labels, and prints JSON.

Usage: agreement_ref.py ANNOTATIONS.CSV OFFICIAL.JSON NUM_CLASSES
"""
import csv
import json
import sys
from collections import Counter, defaultdict

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa


def alpha(matrix):
    # Fewer than two distinct values among pairable units: undefined.
    vals = set()
    for u in range(matrix.shape[1]):
        col = matrix[:, u]
        col = col[~np.isnan(col)]
        if len(col) >= 2:
            vals.update(col.tolist())
    if len(vals) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))


def main():
    path, official_path, c = sys.argv[1], sys.argv[2], int(sys.argv[3])
    official = json.load(open(official_path))  # {"ids": [...], "labels": [...], "pred": [...]}
    ids = official["ids"]
    pos = {i: k for k, i in enumerate(ids)}
    rows = list(csv.DictReader(open(path)))
    annotators = []
    for r in rows:
        if r["annotator"] not in annotators:
            annotators.append(r["annotator"])
    by_item = defaultdict(dict)
    for r in rows:
        by_item[pos[r["id"]]][r["annotator"]] = int(r["label"])
    m = np.full((len(annotators), len(ids)), np.nan)
    for i, d in by_item.items():
        for a, l in d.items():
            m[annotators.index(a), i] = l
    out = {"alpha": alpha(m)}
    per_class = []
    for k in range(c):
        b = np.where(np.isnan(m), np.nan, (m == k).astype(float))
        per_class.append(alpha(b))
    out["per_class"] = per_class
    counts = Counter(len(d) for d in by_item.values() if len(d) >= 2)
    fm = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
    units = [list(d.values()) for i, d in sorted(by_item.items()) if len(d) == fm]
    table, _ = aggregate_raters(np.array(units), n_cat=c)
    out["fleiss"] = float(fleiss_kappa(table, method="fleiss"))
    out["fleiss_items"] = len(units)
    out["fleiss_m"] = fm
    cohen = {}
    for x in range(len(annotators)):
        for y in range(x + 1, len(annotators)):
            a, b = annotators[x], annotators[y]
            shared = [i for i, d in by_item.items() if a in d and b in d]
            if len(shared) >= 20:
                la = [by_item[i][a] for i in shared]
                lb = [by_item[i][b] for i in shared]
                cohen[f"{a}|{b}"] = [len(shared), float(cohen_kappa_score(la, lb))]
    out["cohen"] = cohen
    per_ann = {}
    for a in annotators:
        mine, cons, model, offi = [], [], 0, 0
        n = 0
        for i, d in by_item.items():
            if a not in d:
                continue
            n += 1
            model += d[a] == official["pred"][i]
            offi += d[a] == official["labels"][i]
            others = Counter(l for b, l in d.items() if b != a)
            if not others:
                continue
            top = others.most_common()
            if len(top) > 1 and top[0][1] == top[1][1]:
                continue
            mine.append(d[a])
            cons.append(top[0][0])
        agree = sum(p == q for p, q in zip(mine, cons)) / len(mine) if mine else None
        kappa = float(cohen_kappa_score(mine, cons)) if mine else None
        per_ann[a] = {"items": n, "agreement_with_consensus": agree, "kappa_with_consensus": kappa,
                      "agreement_with_model": model / n, "agreement_with_official": offi / n}
    out["per_annotator"] = per_ann
    print(json.dumps(out))


if __name__ == "__main__":
    main()
