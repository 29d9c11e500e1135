"""cleanlab Datalab's outlier, non_iid, underperforming_group and
data_valuation issues on a
dataset directory written by tests/reference/datalab.rs (embeddings.npy,
labels in items.csv order as labels.npy, probs.npy), as JSON on stdout:
per item (in items order) each issue's quality score q and flag, and the
non-IID p-value.

Datalab builds its own exact kNN graph from the features (k = 10, cosine
for more than 3 dimensions), so the test compares two independent graphs
as well as the formulas."""
import json
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore")
from cleanlab import Datalab  # noqa: E402

d = sys.argv[1]
emb = np.load(f"{d}/embeddings.npy").astype(np.float64)
labels = np.load(f"{d}/labels.npy")
probs = np.load(f"{d}/probs.npy").astype(np.float64)
lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
lab.find_issues(
    features=emb,
    pred_probs=probs,
    issue_types={"outlier": {}, "non_iid": {}, "underperforming_group": {}, "data_valuation": {}},
)
issues = lab.get_issues()
out = {"p_value": float(lab.get_info("non_iid")["p-value"])}
for name in ["outlier", "non_iid", "underperforming_group", "data_valuation"]:
    out[name] = {
        "score": issues[f"{name}_score"].astype(float).tolist(),
        "flag": issues[f"is_{name}_issue"].astype(bool).tolist(),
    }
json.dump(out, sys.stdout)
