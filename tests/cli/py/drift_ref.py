#!/usr/bin/env python3
"""Reference drift statistics for tests/cli/drift.rs, from scipy: Pearson's
chi-square test of homogeneity (scipy.stats.chi2_contingency, no continuity
correction) and Fisher's exact test, one-sided (scipy.stats.fisher_exact,
alternative="greater"). Independent of triage: it reads the counts as JSON on
stdin and prints JSON.

Input: {"chi": [[now_counts, before_counts], ...], "fisher": [[x, n, X, N], ...]}
Output: {"chi": [[stat, df, p], ...], "fisher": [p, ...]}
"""
import json
import sys

import numpy as np
from scipy.stats import chi2_contingency, fisher_exact

case = json.load(sys.stdin)
chi = []
for now, before in case["chi"]:
    table = np.array([now, before], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    stat, p, df, _ = chi2_contingency(table, correction=False)
    chi.append([float(stat), int(df), float(p)])
fisher = []
for x, n, big_x, big_n in case["fisher"]:
    _, p = fisher_exact([[x, n - x], [big_x, big_n - big_x]], alternative="greater")
    fisher.append(float(p))
json.dump({"chi": chi, "fisher": fisher}, sys.stdout)
