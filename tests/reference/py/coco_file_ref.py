#!/usr/bin/env python3
"""pycocotools' answers for tests/reference/coco_file.rs: loads the COCO file
the test wrote with `pycocotools.coco.COCO` and prints JSON with

- cat_ids: `getCatIds()`, the ids of the categories pycocotools read;
- masks: for every annotation with a non-empty `segmentation`, its
  `annToMask(ann)` as row-major pixels (a string of '0'/'1'), keyed by the
  annotation id.

Usage: coco_file_ref.py INSTANCES.JSON
"""
import contextlib
import json
import sys

import numpy as np
from pycocotools.coco import COCO


def main():
    # COCO() prints progress on stdout: keep stdout for the answer.
    with contextlib.redirect_stdout(sys.stderr):
        coco = COCO(sys.argv[1])
    masks = {}
    for ann in coco.dataset["annotations"]:
        if not ann.get("segmentation"):
            continue
        m = coco.annToMask(ann)
        masks[str(ann["id"])] = (
            (np.ascontiguousarray(m).reshape(-1) + 48).astype(np.uint8).tobytes().decode("ascii")
        )
    json.dump({"cat_ids": coco.getCatIds(), "masks": masks}, sys.stdout)


if __name__ == "__main__":
    main()
