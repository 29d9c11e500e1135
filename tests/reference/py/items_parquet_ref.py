"""Read a run's items.parquet with pyarrow and with polars, and compare it with queue.jsonl.

Usage: items_parquet_ref.py OUT_DIR
Prints JSON: {"rows": items in the file, "polars_rows": the same read by polars,
"columns": [[name, arrow type, nullable], ...], "queue_rows": rows of queue.jsonl,
"mismatches": the first differences found (empty when the file agrees with queue.jsonl)}.
Every queue.jsonl row must have its item in the file with the same rank, priority, label,
prediction and scores (exact floats: both files hold the same float64), and flag_<check>
true exactly for the checks in its "flags".
"""

import json
import math
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

out = Path(sys.argv[1])
table = pq.read_table(out / "items.parquet")
cols = [[f.name, str(f.type), f.nullable] for f in table.schema]
by_id = {r["id"]: r for r in table.to_pylist()}
frame = pl.read_parquet(out / "items.parquet")
flag_cols = [c for c in table.column_names if c.startswith("flag_")]

mismatches = []


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


queue_rows = 0
for line in (out / "queue.jsonl").read_text().splitlines():
    q = json.loads(line)
    queue_rows += 1
    r = by_id.get(q["id"])
    if r is None:
        mismatches.append(f"{q['id']}: not in items.parquet")
        continue
    want = {"rank": q["rank"], "priority": q["priority"], "unlabelled": False}
    for k in ("label", "predicted"):
        if k in q:
            want[k] = q[k]
    for k, v in q["scores"].items():
        want[k] = v
    for c in flag_cols:
        want[c] = c[len("flag_"):] in q["flags"]
    for k, v in want.items():
        if k not in r:
            mismatches.append(f"{q['id']}: no column {k}")
        elif not same(r[k], v):
            mismatches.append(f"{q['id']}: {k} = {r[k]!r} in items.parquet, {v!r} in queue.jsonl")
    if len(mismatches) > 20:
        break

print(json.dumps({
    "rows": table.num_rows,
    "polars_rows": frame.height,
    "polars_ids_unique": frame["id"].n_unique(),
    "columns": cols,
    "queue_rows": queue_rows,
    "mismatches": mismatches[:20],
}))
