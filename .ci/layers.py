#!/usr/bin/env python3
"""The house stays one-way: no module of `src/` imports from a module above it.

Each top-level module of the crate has a layer (below, bottom first). A module
may name (`crate::x`, in code, not in comments or tests) only modules of a
lower layer. The imports that still go upwards are listed in KNOWN with the
issue that removes them: a new upward import fails, and so does a KNOWN entry
that no longer occurs (so the list only shrinks).

Usage: python3 .ci/layers.py [SRC_DIR]   (exit 1 on a violation)
"""

import os
import re
import sys

LAYERS = [
    ["error"],
    ["scores"],
    ["fsx", "memory", "labelset"],
    ["config"],
    ["metrics"],
    ["priority"],
    ["records"],
    ["io"],
    ["index"],
    ["backend"],
    ["schema"],
    ["score"],
    ["neighbors", "agreement", "drift"],
    ["checks"],
    ["queue", "report", "synth"],
    ["output"],
    ["export"],
    ["pipeline"],
    ["cli"],
]

# (module, imported module): upward imports still to be removed, each with
# the issue that removes it. Empty: keep it so.
KNOWN = set()


def layer_of(module):
    for i, group in enumerate(LAYERS):
        if module in group:
            return i
    return None


def code_of(path):
    """The file's code: comments, strings' doc text and `#[cfg(test)]` tails dropped."""
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        lines.append(line.split("//")[0])
    return "\n".join(lines)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    errors = []
    seen = set()
    for root, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            module = rel.split(os.sep)[0].removesuffix(".rs")
            if module in ("main", "lib"):
                continue
            own = layer_of(module)
            if own is None:
                errors.append(f"{rel}: module `{module}` has no layer in .ci/layers.py")
                continue
            for m in re.finditer(r"\bcrate::([a-z_]+)", code_of(path)):
                target = m.group(1)
                if target == module:
                    continue
                their = layer_of(target)
                if their is None:
                    errors.append(f"{rel}: `crate::{target}` has no layer in .ci/layers.py")
                elif their >= own:
                    if (module, target) in KNOWN:
                        seen.add((module, target))
                    else:
                        errors.append(
                            f"{rel}: `{module}` (layer {own}) imports `crate::{target}` "
                            f"(layer {their}): only lower layers may be imported"
                        )
    for pair in sorted(KNOWN - seen):
        errors.append(f"KNOWN lists {pair[0]} -> {pair[1]}, which no longer occurs: remove it")
    for e in errors:
        print(e)
    if errors:
        sys.exit(1)
    print(f"layers: one-way ({len(KNOWN)} known upward imports left)")


if __name__ == "__main__":
    main()
