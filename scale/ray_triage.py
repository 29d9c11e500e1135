#!/usr/bin/env python3
"""Run a triage job on Ray: one task per shard, then the merge.

    python3 scale/ray_triage.py DATASET --out DIR --shards N
        [--address ADDR] [--gpus-per-shard G] [--parts DIR] [--retries R]
        [-- extra triage options]

Each shard is a Ray task that runs the `triage` binary (`$TRIAGE_BIN`, else
`triage` on PATH) as `triage run DATASET --out PARTS/part-I --shard I/N`,
asking Ray for `--gpus-per-shard` GPUs when given. Ray retries a failed
shard up to `--retries` times; one that keeps failing fails the job, with its
stderr. Then `triage merge` combines the partials into DIR: exactly what one
`triage run` writes. Options after `--` go to every shard and to the merge
(the merge applies the queue, neighbour and output options, and takes the
score options from the partials).

Without `--address` a local Ray cluster is started (and stopped). PARTS
(default: DIR.parts) must be visible to every node, e.g. on a shared file
system, as must DATASET.

Install: `pip install ray`.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time


def triage_binary():
    found = os.environ.get("TRIAGE_BIN") or shutil.which("triage")
    if not found:
        sys.exit("ray_triage: no triage binary: put it on PATH or set TRIAGE_BIN")
    return os.path.abspath(found)


def parse(argv):
    extra = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--gpus-per-shard", type=float, default=0.0)
    p.add_argument("--parts", help="where the shards write their partials (default: OUT.parts)")
    p.add_argument("--retries", type=int, default=2, help="Ray retries of a failed shard")
    args = p.parse_args(argv)
    if args.shards < 1:
        p.error("--shards must be at least 1")
    if "--shard" in extra:
        p.error("--shard is set per task; do not pass it after --")
    args.extra = extra
    return args


def main(argv):
    args = parse(argv)
    import ray  # imported here so --help works without Ray

    binary = triage_binary()
    dataset = os.path.abspath(args.dataset)
    parts = os.path.abspath(args.parts or args.out.rstrip("/") + ".parts")
    os.makedirs(parts, exist_ok=True)

    @ray.remote(max_retries=args.retries, retry_exceptions=True)
    def shard(i):
        out = os.path.join(parts, f"part-{i}")
        cmd = [binary, "run", dataset, "--out", out, "--shard", f"{i}/{args.shards}", *args.extra]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"shard {i}/{args.shards} failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr}"
            )
        return out

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(include_dashboard=False)
    t0 = time.time()
    try:
        tasks = [
            shard.options(num_gpus=args.gpus_per_shard).remote(i) if args.gpus_per_shard else shard.remote(i)
            for i in range(args.shards)
        ]
        try:
            outs = ray.get(tasks)
        except ray.exceptions.RayTaskError as e:
            print(f"ray_triage: {e.cause if hasattr(e, 'cause') else e}", file=sys.stderr)
            return 1
    finally:
        ray.shutdown()
    t_shards = time.time() - t0
    merge = [binary, "merge", *outs, "--out", os.path.abspath(args.out), *args.extra]
    done = subprocess.run(merge)
    if done.returncode != 0:
        print(f"ray_triage: merge failed (exit {done.returncode})", file=sys.stderr)
        return done.returncode
    print(
        f"ray_triage: {args.shards} shards in {t_shards:.2f} s, merge in {time.time() - t0 - t_shards:.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
