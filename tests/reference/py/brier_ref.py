"""Reference per-row and mean Brier scores of a classification dataset with scikit-learn.

Usage: brier_ref.py PROBS.npy LABELS.npy ROWS  (ROWS: comma-separated row numbers)
Prints JSON: {"mean": multiclass Brier over every row, "rows": {row: Brier of that row}}.
`scale_by_half=False` gives sum_k (p_k - [k = y])^2, in [0, 2].
"""

import json
import sys

import numpy as np
from sklearn.metrics import brier_score_loss

probs = np.load(sys.argv[1]).astype(np.float64)
labels = np.load(sys.argv[2]).astype(np.int64)
classes = list(range(probs.shape[1]))
rows = [int(r) for r in sys.argv[3].split(",")]
out = {
    "mean": float(brier_score_loss(labels, probs, labels=classes, scale_by_half=False)),
    "rows": {
        str(r): float(
            brier_score_loss(labels[r : r + 1], probs[r : r + 1], labels=classes, scale_by_half=False)
        )
        for r in rows
    },
}
print(json.dumps(out))
