#!/usr/bin/env python3
"""CVAT's answers for tests/reference/cvat.rs: reads CVAT for images 1.1 XML
files and prints, for each image, its regions as CVAT's export to mask
formats makes them (each a full-image pycocotools RLE), stacked by z_order.

The conversions follow CVAT and the Datumaro it ships (written here from
their behaviour, not copied):

- every shape's coordinates are rounded to 2 decimals (Datumaro's shapes
  keep `np.around(points, 2)`);
- polygon: `frPyObjects([points], h, w)` (Datumaro's PolygonsToMasks);
- box: CVAT hands Datumaro `Bbox(x0, y0, x1 - x0, y1 - y0)`, which keeps
  `[x, y, x + w, y + h]` (rounded) and rasterises `as_polygon()`:
  `x, y, x + w, y, x + w, y + h, x, y + h` with `w` recomputed from the kept
  points (BoxesToMasks); a box with a rotation first has its corners turned
  about its centre by that many degrees, the result a (rounded) polygon
  (CVAT's RotatedBoxesToPolygons);
- mask: CVAT's runs over the `width x height` box, row-major from a run of
  0s, read as an uncompressed COCO RLE of a (width, height) array, decoded,
  transposed, pasted at (top, left) into a zero image and encoded (CVAT's
  MaskConverter.cvat_rle_to_dm_rle);
- the regions are sorted by z_order, a stable sort (Datumaro's CompiledMask
  stacks them so).

Usage: cvat_ref.py FILE.xml...   (prints one JSON list per file, in a list)
"""
import json
import math
import sys
import xml.etree.ElementTree as ET

import numpy as np
from pycocotools import mask as maskUtils


def r2(v):
    return np.around(np.asarray(v, dtype=np.float64), 2).tolist()


def poly_rle(points, h, w):
    return maskUtils.frPyObjects([points], h, w)[0]


def box_points(el):
    x0, y0, x1, y1 = (float(el.attrib[k]) for k in ("xtl", "ytl", "xbr", "ybr"))
    bw, bh = x1 - x0, y1 - y0
    kept = r2([x0, y0, x0 + bw, y0 + bh])
    rotation = float(el.attrib.get("rotation", 0))
    if rotation:
        a = math.radians(rotation)
        px0, py0, px1, py1 = kept
        cx, cy = px0 + (px1 - px0) / 2, py0 + (py1 - py0) / 2
        out = []
        for x, y in [(px0, py0), (px1, py0), (px1, py1), (px0, py1)]:
            out.append(cx + math.cos(a) * (x - cx) - math.sin(a) * (y - cy))
            out.append(cy + math.sin(a) * (x - cx) + math.cos(a) * (y - cy))
        return r2(out)
    x, y = kept[0], kept[1]
    w, h = kept[2] - kept[0], kept[3] - kept[1]
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def mask_rle(el, h, w):
    runs = [int(v) for v in el.attrib["rle"].split(",")]
    left, top = int(el.attrib["left"]), int(el.attrib["top"])
    bw, bh = int(el.attrib["width"]), int(el.attrib["height"])
    as_coco = maskUtils.frPyObjects([{"counts": runs, "size": [bw, bh]}], bw, bh)[0]
    tight = maskUtils.decode(as_coco).transpose()
    full = np.zeros((h, w), dtype=np.uint8)
    full[top : top + bh, left : left + bw] = tight
    return maskUtils.encode(np.asfortranarray(full))


def counts(rle):
    c = rle["counts"]
    return c.decode("ascii") if isinstance(c, bytes) else c


def read(path):
    images = []
    for img in ET.parse(path).getroot().iter("image"):
        h, w = int(img.attrib["height"]), int(img.attrib["width"])
        regions = []
        for el in img:
            if el.tag == "polygon":
                pts = []
                for pair in el.attrib["points"].split(";"):
                    pts.extend(float(v) for v in pair.split(","))
                rle = poly_rle(r2(pts), h, w)
            elif el.tag == "box":
                rle = poly_rle(box_points(el), h, w)
            elif el.tag == "mask":
                rle = mask_rle(el, h, w)
            else:
                continue
            regions.append((int(el.attrib.get("z_order", 0)), el.attrib["label"], counts(rle)))
        regions.sort(key=lambda r: r[0])
        images.append([[label, c] for _, label, c in regions])
    return images


def main():
    json.dump([read(p) for p in sys.argv[1:]], sys.stdout)


if __name__ == "__main__":
    main()
