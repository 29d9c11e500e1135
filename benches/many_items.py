#!/usr/bin/env python3
"""Many items: the whole `triage run` on 10-class classification sets of
250 000 to 8 000 000 items, its stage times and peak RSS, beside cleanlab's
`find_label_issues` on the same arrays, in one run on one machine.

What it does:
  1. makes the inputs with `triage synth --task classification --classes 10
     --dtype f32` (kept in --work between runs; about 3 % planted wrong
     labels), one set per size;
  2. installs the peer (cleanlab, numpy) with pip in a venv (--venv, default
     target/bench-venv), unless --no-peer;
  3. per size, --reps times, interleaved, warm page cache:
       triage   the whole `triage run --backend cpu` process, once per
                `--queue-rows` listing asked (--listings, default all,flagged),
                with its peak RSS (wait4) and the stage times of report.json
                `timings` (read, score, queue, write, report, total);
       cleanlab np.load(probs) + np.load(labels) +
                `cleanlab.filter.find_label_issues(labels, probs)` (defaults),
                timed inside the Python process (interpreter start and imports
                excluded: generous to the peer), with the process's peak RSS;
     with --base OLD, also that binary's run (default listing), as `before`;
     and after each triage run, the write floor: the same bytes as its
     outputs (file by file) written by a plain sequential writer into the
     same directory and fdatasync'ed, as triage makes its outputs durable:
     no run that writes these files can be faster on this disk;
  4. prints medians, per-item bytes (peak RSS / items) and the same-run
     ratios triage / cleanlab and triage / floor; writes them as JSON
     (--json).

The outputs of each run are deleted before the next (8M items write about
7 GB with --queue-rows all).

Usage: python3 benches/many_items.py [--sizes 250000,1000000,4000000,8000000]
       [--reps 3] [--work /tmp/triage-many] [--listings all,flagged]
       [--bin target/release/triage] [--base OLD_BINARY] [--no-peer]
       [--json out.json]
       [--run-args "..."]
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PEER = r"""
import sys, time, numpy as np
import cleanlab.filter
d = sys.argv[1]
t = time.perf_counter()
probs = np.load(d + "/probs.npy")
labels = np.load(d + "/labels.npy")
t_load = time.perf_counter() - t
r = cleanlab.filter.find_label_issues(labels, probs)
total = time.perf_counter() - t
print(t_load, total, int(np.sum(r)))
"""

STAGES = ["read_s", "score_s", "queue_s", "write_s", "report_s", "total_s"]


def run_child(cmd):
    """Wall time, peak RSS (bytes), stdout of one child, via wait4."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Read the pipes fully before waiting (a full pipe would block the child).
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.stdout.close()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{err.decode(errors='replace')}")
    return wall, ru.ru_maxrss * 1024, out.decode()


def venv_python(venv):
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    have = subprocess.run([str(py), "-c", "import cleanlab"], capture_output=True)
    if have.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "cleanlab", "numpy"], check=True)
    return py


def synth(bin_, work, n):
    d = work / f"cls10-{n}"
    if not (d / "triage.toml").exists():
        subprocess.run(
            [str(bin_), "synth", "--task", "classification", "--items", str(n), "--classes", "10",
             "--dtype", "f32", "--out", str(d)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.sync()
    return d


def du(path):
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def write_floor(out):
    """Seconds to write the bytes of the files in `out` again, each into a
    new file beside it in 1 MiB writes, fdatasync'ed (the write floor of a
    run that leaves these files durable); the copies are removed."""
    sizes = [f.stat().st_size for f in out.iterdir() if f.is_file()]
    block = bytes(range(256)) * 4096
    t = time.perf_counter()
    for k, size in enumerate(sizes):
        path = out / f".floor-{k}"
        with open(path, "wb", buffering=0) as f:
            left = size
            while left > 0:
                left -= f.write(block[: min(left, len(block))])
            os.fdatasync(f.fileno())
    took = time.perf_counter() - t
    for k in range(len(sizes)):
        (out / f".floor-{k}").unlink()
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="250000,1000000,4000000,8000000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/triage-many"))
    ap.add_argument("--listings", default="all,flagged")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "triage")
    ap.add_argument("--venv", type=Path, default=ROOT / "target" / "bench-venv")
    ap.add_argument("--base", type=Path,
                    help="also time this (earlier) binary, default listing, as `before`")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--run-args", default="")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",") if s]
    listings = [x for x in a.listings.split(",") if x]
    if a.base:
        listings = ["before", *listings]
    a.work.mkdir(parents=True, exist_ok=True)
    py = None if a.no_peer else venv_python(a.venv)
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "bin": str(a.bin),
        "reps": a.reps,
        "sizes": {},
    }
    print(f"# {res['date']}, {res['cpus']} CPUs, load {res['load_before'][0]:.1f}, medians of {a.reps}")
    for n in sizes:
        d = synth(a.bin, a.work, n)
        out = a.work / "out"
        runs = {x: [] for x in listings}
        peer = []
        for _ in range(a.reps):
            for x in listings:
                shutil.rmtree(out, ignore_errors=True)
                bin_ = a.base if x == "before" else a.bin
                cmd = [str(bin_), "run", str(d), "--out", str(out), "--backend", "cpu",
                       *shlex.split(a.run_args)]
                if x not in ("before", "all"):  # `all` is the default
                    cmd += ["--queue-rows", x]
                wall, rss, _ = run_child(cmd)
                t = json.load(open(out / "report.json"))["timings"]
                runs[x].append({"wall_s": wall, "rss": rss, "outputs": du(out),
                                "floor_s": write_floor(out), **{k: t[k] for k in STAGES}})
                shutil.rmtree(out, ignore_errors=True)
            if py:
                wall, rss, stdout = run_child([str(py), "-c", PEER, str(d)])
                load, total, found = stdout.strip().splitlines()[-1].split()
                peer.append({"wall_s": wall, "rss": rss, "load_s": float(load),
                             "total_s": float(total), "found": int(found)})
        med = lambda rows, k: statistics.median(r[k] for r in rows)
        entry = {"probs_bytes": (d / "probs.npy").stat().st_size}
        print(f"\n## {n} items ({entry['probs_bytes'] / 1e6:.0f} MB of probabilities)")
        if peer:
            entry["cleanlab"] = {k: med(peer, k) for k in peer[0]}
            c = entry["cleanlab"]
            print(f"cleanlab find_label_issues: {c['total_s']:.2f} s (load {c['load_s']:.2f} s), "
                  f"peak RSS {c['rss'] / 1e6:.0f} MB, {c['found']} issues")
        for x in listings:
            m = {k: med(runs[x], k) for k in runs[x][0]}
            entry[x] = m
            what = f"before ({a.base.name})" if x == "before" else f"--queue-rows {x}"
            line = (f"triage {what}: whole {m['wall_s']:.2f} s "
                    f"(score {m['score_s']:.2f}, queue {m['queue_s']:.2f}, write {m['write_s']:.2f}, "
                    f"report {m['report_s']:.2f}), peak RSS {m['rss'] / 1e6:.0f} MB "
                    f"({m['rss'] / n:.0f} B/item), outputs {m['outputs'] / 1e6:.0f} MB, "
                    f"{m['wall_s'] / n * 1e6:.2f} µs/item; write floor {m['floor_s']:.2f} s "
                    f"({m['wall_s'] / m['floor_s']:.2f}x)")
            if peer:
                c = entry["cleanlab"]
                line += (f"; vs cleanlab: time {m['wall_s'] / c['total_s']:.2f}x, "
                         f"RSS {m['rss'] / c['rss']:.2f}x, the floor alone "
                         f"{m['floor_s'] / c['total_s']:.2f}x")
            print(line)
        res["sizes"][n] = entry
    res["load_after"] = os.getloadavg()
    print(f"\n# load after {res['load_after'][0]:.1f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
