#!/usr/bin/env python3
"""pycocotools' answers for tests/reference/coco_rle.rs: reads the cases JSON
the test wrote, prints JSON with, for each case, what pycocotools gives.

- masks: `mask.encode` of the (row-major) mask as a Fortran-order array (the
  counts string), and `mask.decode` of that string (row-major pixels, as a
  string of '0'/'1').
- polys: `frPyObjects(polys, h, w)` (one counts string per polygon), then
  `merge` of them (the annotation's RLE, as `COCO.annToRLE`) and its
  `decode`.
- uncompressed: `frPyObjects([{"counts": [...], "size": [h, w]}], h, w)`.

Usage: coco_rle_ref.py CASES.JSON
"""
import json
import sys

import numpy as np
from pycocotools import mask as maskUtils


def s(counts):
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def pixels(rle):
    m = maskUtils.decode(rle)
    return (np.ascontiguousarray(m).reshape(-1) + 48).astype(np.uint8).tobytes().decode("ascii")


def main():
    cases = json.load(open(sys.argv[1]))
    out = {"masks": [], "polys": [], "uncompressed": []}
    for c in cases["masks"]:
        m = np.array(c["data"], dtype=np.uint8).reshape(c["h"], c["w"])
        rle = maskUtils.encode(np.asfortranarray(m))
        out["masks"].append({"counts": s(rle["counts"]), "pixels": pixels(rle)})
    for c in cases["polys"]:
        each = maskUtils.frPyObjects(c["polys"], c["h"], c["w"])
        merged = maskUtils.merge(each)
        out["polys"].append(
            {
                "each": [s(r["counts"]) for r in each],
                "merged": s(merged["counts"]),
                "pixels": pixels(merged),
            }
        )
    for c in cases["uncompressed"]:
        r = maskUtils.frPyObjects([{"counts": c["counts"], "size": [c["h"], c["w"]]}], c["h"], c["w"])[0]
        out["uncompressed"].append(s(r["counts"]))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
