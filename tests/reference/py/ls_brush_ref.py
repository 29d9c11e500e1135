#!/usr/bin/env python3
"""label-studio-sdk's answers for tests/reference/ls_brush.rs: reads the cases
JSON the test wrote, prints JSON with, for each case, what the SDK's brush
converter (`label_studio_sdk.converter.brush`) gives.

- encode: `mask2rle` of the (row-major, uint8) mask: the list of bytes.
- decode: `decode_rle` of the bytes (the whole RGBA buffer, as hex) and its
  alpha channel as `decode_from_annotation` takes it (`reshape(h, w, 4)`,
  `[:, :, 3]`, as hex); `ok` false when the SDK raises (or when the header's
  value count is not 4 * h * w, where the reshape would raise: checked first
  so that a hostile count does not allocate). `overrun` tells that the SDK
  read a field past the end of the bit stream (it then reads what is left of
  the field, or raises on an empty one), which triage refuses.

Usage: ls_brush_ref.py CASES.JSON
"""
import json
import sys

import numpy as np
from label_studio_sdk.converter import brush

OVERRUN = [False]


class TrackingInputStream(brush.InputStream):
    """The SDK's bit reader, noting reads past the end."""

    def read(self, size):
        if self.i + size > len(self.data):
            OVERRUN[0] = True
        return super().read(size)


brush.InputStream = TrackingInputStream


def decode(rle, h, w):
    bits = brush.bytes2bit(rle)
    if len(bits) >= 32 and int(bits[:32], 2) != 4 * h * w:
        return {"ok": False, "overrun": False, "why": "count"}
    OVERRUN[0] = False
    try:
        out = brush.decode_rle(rle)
        alpha = np.reshape(out, [h, w, 4])[:, :, 3]
    except Exception as e:  # noqa: BLE001 - any failure of the SDK is the answer
        return {"ok": False, "overrun": OVERRUN[0], "why": type(e).__name__}
    return {
        "ok": True,
        "overrun": OVERRUN[0],
        "rgba": out.astype(np.uint8).tobytes().hex(),
        "alpha": np.ascontiguousarray(alpha).astype(np.uint8).tobytes().hex(),
    }


def main():
    cases = json.load(open(sys.argv[1]))
    out = {"encode": [], "decode": []}
    for c in cases["encode"]:
        m = np.array(c["data"], dtype=np.uint8).reshape(c["h"], c["w"])
        out["encode"].append([int(b) for b in brush.mask2rle(m)])
    for c in cases["decode"]:
        out["decode"].append(decode(bytes(c["rle"]), c["h"], c["w"]))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
