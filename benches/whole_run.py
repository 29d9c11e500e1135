#!/usr/bin/env python3
"""The whole `triage run`, timed as a user waits for it, beside its limits and
its peers, all in one run on one machine.

What it does:
  1. builds the release binary (skip with --no-build);
  2. makes the inputs with `triage synth` (kept in --work between runs):
       seg-f32  32 x 19 x 512 x 512 float32 segmentation (608 MB)
       seg-f16  the same in float16 (304 MB)
       cls      200 000 x 1000 float32 classification (800 MB)
  3. installs the peer (cleanlab, numpy, pillow) with pip in a venv;
  4. times, --reps times each, interleaved, warm page cache:
       read     `cat probs.npy > /dev/null` (reading the file: the limit)
       triage   the whole `triage run --backend cpu` process (read, score,
                queue, report, overlays, writing), with its peak RSS
       cleanlab segmentation: np.load(probs) + np.load(labels) +
                `cleanlab.segmentation.rank.get_label_quality_scores`;
                classification: np.load + `cleanlab.rank.get_label_quality_scores`
                and np.load + `cleanlab.filter.find_label_issues`.
                Timed inside the Python process from before np.load to the
                result (interpreter start and imports excluded: generous to
                the peer).
  5. prints medians and the same-run ratios BENCHMARKS.md quotes, and writes
     them as JSON (--json).

Usage: python3 benches/whole_run.py [--reps 5] [--work /tmp/triage-bench]
       [--only seg|cls] [--json out.json] [--no-build]

Options for a GPU machine (the defaults keep the run above unchanged):
  --backends cpu,gpu   time the segmentation `triage run` with each backend
                       (default: cpu; classification stays on the default
                       backend); prints `ratio whole_run cpu/gpu` (goal >= 5)
  --items N            segmentation items (default 32; the dataset is then
                       seg-f32-nN instead of seg-f32)
  --dtypes f32         which segmentation dtypes (default f32,f16)
  --no-peer            skip cleanlab (no venv, no pip)
  --bin PATH           the triage binary (default target/release/triage)
  --h2d-gbps X         host-to-device bandwidth (GB/s, 1e9 bytes) measured
                       on this machine (`limit gpu_h2d_dma` of
                       `cargo bench --bench throughput`): prints the whole
                       GPU run against it and against reading the file
  --run-args "..."     extra arguments for every `triage run`
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "triage"

PEER_SEG = r"""
import sys, time, numpy as np
from cleanlab.segmentation.rank import get_label_quality_scores
d = sys.argv[1]
t = time.perf_counter()
probs = np.load(d + "/probs.npy")
labels = np.load(d + "/peer_labels.npy")
t_load = time.perf_counter() - t
s = get_label_quality_scores(labels, probs, verbose=False)
total = time.perf_counter() - t
print(t_load, total, float(np.mean(s[0])))
"""

PEER_CLS = r"""
import sys, time, numpy as np
import cleanlab.rank, cleanlab.filter
d, what = sys.argv[1], sys.argv[2]
t = time.perf_counter()
probs = np.load(d + "/probs.npy")
labels = np.load(d + "/labels.npy")
t_load = time.perf_counter() - t
if what == "rank":
    r = cleanlab.rank.get_label_quality_scores(labels, probs)
else:
    r = cleanlab.filter.find_label_issues(labels, probs)
total = time.perf_counter() - t
print(t_load, total, int(np.sum(r < 0.5)) if what == "rank" else int(np.sum(r)))
"""


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def timed(cmd, stdout=subprocess.DEVNULL):
    """Wall time and peak RSS (bytes) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{err}")
    return wall, ru.ru_maxrss * 1024


def read_time(path):
    """`cat FILE > /dev/null`: reading the file from the page cache, the limit
    the issue names (a Python read loop into a large buffer is ~4x slower)."""
    with open(os.devnull, "wb") as null:
        t = time.perf_counter()
        subprocess.run(["cat", str(path)], stdout=null, check=True)
        return time.perf_counter() - t


def venv_python(work):
    venv = work / "venv"
    py = venv / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(venv)])
    have = subprocess.run([str(py), "-c", "import cleanlab, PIL"], capture_output=True)
    if have.returncode != 0:
        sh([str(py), "-m", "pip", "install", "-q", "cleanlab", "numpy", "pillow"])
    return py


def synth(work, name, args):
    d = work / name
    if not (d / "triage.toml").exists():
        sh([str(BIN), "synth", "--out", str(d), *args])
        # Write the new files back now, not during the timed runs.
        os.sync()
    return d


def peer_labels(py, d):
    """The masks as one (N, H, W) int array for cleanlab (ignore -> 0), made once, untimed."""
    out = d / "peer_labels.npy"
    if out.exists():
        return
    code = (
        "import sys, csv, numpy as np; from PIL import Image\n"
        "d=sys.argv[1]; rows=list(csv.DictReader(open(d+'/items.csv')))\n"
        "m=np.stack([np.array(Image.open(d+'/'+r['mask'])) for r in rows]).astype(np.int64)\n"
        "m[m==255]=0; np.save(d+'/peer_labels.npy', m)\n"
    )
    sh([str(py), "-c", code, str(d)])


RUN_ARGS = []


def triage_run(d, out, backend="cpu"):
    return timed([str(BIN), "run", str(d), "--out", str(out), "--backend", backend, *RUN_ARGS])


def peer(py, script, *args):
    r = subprocess.run([str(py), "-c", script, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"peer failed: {r.stderr}")
    # The last line is ours; cleanlab may print notes before it.
    load, total, _ = r.stdout.strip().splitlines()[-1].split()
    return float(load), float(total)


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/triage-bench"))
    ap.add_argument("--only", choices=["seg", "cls"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--backends", default="cpu")
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--dtypes", default="f32,f16")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--bin", type=Path)
    ap.add_argument("--h2d-gbps", type=float)
    ap.add_argument("--run-args", default="")
    a = ap.parse_args()
    global BIN
    if a.bin:
        BIN = a.bin.resolve()
    RUN_ARGS.extend(shlex.split(a.run_args))
    backends = [b for b in a.backends.split(",") if b]
    others = [b for b in backends if b != "cpu"]
    dtypes = [t for t in a.dtypes.split(",") if t]
    a.work.mkdir(parents=True, exist_ok=True)
    if not a.no_build:
        sh(["cargo", "build", "--release", "--quiet"], cwd=ROOT)
    py = None if a.no_peer else venv_python(a.work)
    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
        platform.processor(),
    )
    res = {"machine": f"{os.cpu_count()} CPUs, {cpu}", "date": time.strftime("%Y-%m-%d"), "reps": a.reps}
    print(f"# {res['machine']}, {res['date']}, medians of {a.reps}")

    if a.only in (None, "seg"):
        n = a.items
        tag = "" if n == 32 else f"-n{n}"
        shape = ["--items", str(n), "--size", "512", "512", "--classes", "19"]
        f32 = synth(a.work, "seg-f32" + tag, [*shape, "--dtype", "f32"])
        f16 = synth(a.work, "seg-f16" + tag, [*shape, "--dtype", "f16"]) if "f16" in dtypes else None
        if py:
            peer_labels(py, f32)
        keys = ["read32", "read16", "run32", "rss32", "run16", "rss16", "peer", "peer_load"]
        keys += [f"{k}_{b}" for b in others for k in ["run32", "rss32", "run16", "rss16"]]
        rows = {k: [] for k in keys}
        sfx = lambda b: "" if b == "cpu" else f"_{b}"
        for _ in range(a.reps):
            if "f32" in dtypes:
                rows["read32"].append(read_time(f32 / "probs.npy"))
                for b in backends:
                    w, m = triage_run(f32, a.work / f"out-seg-f32{tag}{sfx(b).replace('_', '-')}", b)
                    rows["run32" + sfx(b)].append(w)
                    rows["rss32" + sfx(b)].append(m)
            if f16:
                rows["read16"].append(read_time(f16 / "probs.npy"))
                for b in backends:
                    w, m = triage_run(f16, a.work / f"out-seg-f16{tag}{sfx(b).replace('_', '-')}", b)
                    rows["run16" + sfx(b)].append(w)
                    rows["rss16" + sfx(b)].append(m)
            if py:
                load, total = peer(py, PEER_SEG, f32)
                rows["peer"].append(total)
                rows["peer_load"].append(load)
        size = (f32 / "probs.npy").stat().st_size
        s = {k: med(v) for k, v in rows.items() if v}
        main_b = backends[0]
        rep = json.load(open(a.work / f"out-seg-f32{tag}{sfx(main_b).replace('_', '-')}" / "report.json")) if "f32" in dtypes else {}
        s["timings_f32"] = rep.get("timings")
        s["file_bytes"] = size
        if "run32" in s and "peer" in s:
            s["ratio_vs_cleanlab"] = s["run32"] / s["peer"]
        if "run32" in s:
            s["ratio_vs_read"] = s["run32"] / s["read32"]
        if "run16" in s and "run32" in s:
            s["ratio_f16_vs_f32"] = s["run16"] / s["run32"]
        for b in others:
            backend = json.load(open(a.work / f"out-seg-f32{tag}-{b}" / "report.json")).get("backend") if "f32" in dtypes else None
            s[f"backend_{b}"] = backend
            if f"run32_{b}" in s:
                s[f"ratio_vs_read_{b}"] = s[f"run32_{b}"] / s["read32"]
                if "run32" in s:
                    s[f"speedup_cpu_vs_{b}"] = s["run32"] / s[f"run32_{b}"]
        res["segmentation"] = s
        print(f"segmentation {n}x19x512x512 ({size / 1e6:.0f} MB f32)")
        if "read32" in s:
            print(f"  read the file            {s['read32']:.3f} s ({size / s['read32'] / 1e9:.1f} GB/s)")
        for b in backends:
            x = sfx(b)
            name = "" if b == "cpu" else f" --backend {b}"
            if "run32" + x in s:
                print(f"  triage run, f32{name:9} {s['run32' + x]:.3f} s, peak RSS {s['rss32' + x] / 2**20:.0f} MiB")
            if "run16" + x in s:
                print(f"  triage run, f16{name:9} {s['run16' + x]:.3f} s, peak RSS {s['rss16' + x] / 2**20:.0f} MiB (read {s['read16']:.3f} s)")
        if "peer" in s:
            print(f"  cleanlab load + score    {s['peer']:.3f} s ({s['peer_load']:.3f} s of it loading)")
        if "ratio_vs_cleanlab" in s and "ratio_f16_vs_f32" in s:
            print(f"  ratios: triage/cleanlab {s['ratio_vs_cleanlab']:.2f} (goal <= 0.5), "
                  f"triage/read {s['ratio_vs_read']:.1f} (goal <= 4), f16/f32 {s['ratio_f16_vs_f32']:.2f} (goal <= 0.65)")
        print(f"  stages (f32, last run): {s['timings_f32']}")
        for b in others:
            if f"run32_{b}" not in s:
                continue
            run_bw = size / s[f"run32_{b}"] / 1e9
            read_bw = size / s["read32"] / 1e9
            bk = s.get(f"backend_{b}") or {}
            print(f"  backend {b}: {bk.get('name')} on {bk.get('adapter')} ({bk.get('api')}, {bk.get('device_type')})")
            print(f"ratio whole_run_{b}/read {run_bw / read_bw:.4f} "
                  f"(whole run {run_bw:.2f} GB/s of probabilities vs reading the file {read_bw:.2f} GB/s)")
            if a.h2d_gbps:
                limit = min(a.h2d_gbps, read_bw)
                which = "host-to-device" if a.h2d_gbps <= read_bw else "file read"
                s[f"ratio_vs_h2d_{b}"] = run_bw / a.h2d_gbps
                s[f"ratio_vs_limit_{b}"] = run_bw / limit
                print(f"ratio whole_run_{b}/h2d {run_bw / a.h2d_gbps:.4f} (host-to-device {a.h2d_gbps:.2f} GB/s)")
                print(f"ratio whole_run_{b}/limit {run_bw / limit:.4f} (goal >= 0.7; the limit is the slower of "
                      f"upload and file read: {which}, {limit:.2f} GB/s)")
            if f"speedup_cpu_vs_{b}" in s:
                print(f"ratio whole_run cpu/{b} {s[f'speedup_cpu_vs_{b}']:.3f} (goal >= 5; "
                      f"{s['run32']:.3f} s vs {s[f'run32_{b}']:.3f} s, {os.cpu_count()} CPUs)")

    if a.only in (None, "cls"):
        cls = synth(a.work, "cls", ["--task", "classification", "--items", "200000", "--classes", "1000", "--dtype", "f32"])
        rows = {k: [] for k in ["read", "run", "rss", "rank", "find", "load"]}
        for _ in range(a.reps):
            rows["read"].append(read_time(cls / "probs.npy"))
            w, m = triage_run(cls, a.work / "out-cls")
            rows["run"].append(w)
            rows["rss"].append(m)
            if not py:
                continue
            load, total = peer(py, PEER_CLS, cls, "rank")
            rows["rank"].append(total)
            rows["load"].append(load)
            _, total = peer(py, PEER_CLS, cls, "find")
            rows["find"].append(total)
        size = (cls / "probs.npy").stat().st_size
        s = {k: med(v) for k, v in rows.items() if v}
        rep = json.load(open(a.work / "out-cls" / "report.json"))
        s["timings"] = rep.get("timings")
        s["file_bytes"] = size
        s["html_bytes"] = (a.work / "out-cls" / "report.html").stat().st_size
        if py:
            s["ratio_vs_find_label_issues"] = s["run"] / s["find"]
            s["ratio_vs_rank"] = s["run"] / s["rank"]
        s["ratio_vs_read"] = s["run"] / s["read"]
        s["rss_vs_file"] = s["rss"] / size
        res["classification"] = s
        print(f"classification 200000x1000 ({size / 1e6:.0f} MB f32)")
        print(f"  read the file                    {s['read']:.3f} s")
        print(f"  triage run                       {s['run']:.3f} s, peak RSS {s['rss'] / 2**20:.0f} MiB, "
              f"report.html {s['html_bytes'] / 1e6:.2f} MB")
        if py:
            print(f"  cleanlab load + rank scores      {s['rank']:.3f} s ({s['load']:.3f} s of it loading)")
            print(f"  cleanlab load + find_label_issues {s['find']:.3f} s")
            print(f"  ratios: triage/find_label_issues {s['ratio_vs_find_label_issues']:.2f} (goal <= 0.5), "
                  f"triage/rank {s['ratio_vs_rank']:.2f}, triage/read {s['ratio_vs_read']:.1f}, "
                  f"RSS/file {s['rss_vs_file']:.3f} (goal <= 0.25)")
        else:
            print(f"  ratios: triage/read {s['ratio_vs_read']:.1f}, RSS/file {s['rss_vs_file']:.3f} (goal <= 0.25)")
        print(f"  stages (last run): {s['timings']}")

    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
