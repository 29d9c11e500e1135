#!/usr/bin/env python3
"""A real Label Studio server between `triage export labelstudio` and
`triage review-import`, driving triage's own commands end to end.

1. installs `label-studio` into target/ls-venv (once; about 1 GB, 1 to 4 minutes;
   it brings label-studio-sdk, numpy and Pillow, which this script imports
   from there);
2. per task kind, with the `triage` binary (`--triage PATH`): `triage synth`
   (segmentation: 12 items of 48 x 40, 4 classes, seed 1; classification: 40
   items, 4 classes), `triage run DATA --backend cpu` and `triage export
   labelstudio RUN_OUT --top 6` (tasks.json and label_config.xml beside it);
3. starts Label Studio on 127.0.0.1 (a free port) with a temporary data
   directory and a fixed user and legacy API token, analytics, Sentry and the
   version check off;
4. per task kind: creates a project with label_config.xml, imports
   tasks.json (each task's two predictions: the current annotation and the
   model's), then reviews through the API as a person would, by the task's
   place in the queue: 1st and 6th accepted as they are (an annotation equal
   to the current annotation's result), 2nd changed (a rectangle painted
   another class in the brush RLE, or another choice: the model's), 3rd
   skipped (`was_cancelled`), 4th left untouched, 5th annotated twice (first
   accepted, then, later, changed);
5. exports the project (`exportType=JSON`, all tasks) and runs `triage
   review-import DATA export.json`: its message must say "2 confirmed, 2
   relabelled", and DATA/reviews.jsonl must hold `ok` for the accepted tasks'
   `triage_id`s, `error` for the changed ones (with `corrected_mask` of the
   image's size, or `corrected_label` = the new class name), nothing for the
   skipped and untouched ones;
6. `triage apply DATA --out DATA-v2`: exactly the changed items differ from
   the original, and as the reviewer left them (masks/*.png compared pixel
   for pixel with Pillow against the label map painted, decoded with
   label-studio-sdk's `decode_rle`; the labels of items.csv against
   labels.npy); then `triage run DATA-v2` must succeed.

Prints the time of each step. The work files (`--keep DIR`, new or empty):
the datasets (`data`, `cls`), the runs (`out`, `cls-out`), the tasks, configs
and exports (`ls/`, `cls-ls/`), what the reviewer did (`{kind}_review.json`:
per triage id the action and, when changed, the label map or choice left),
the new datasets (`data-v2`, `cls-v2`) and their runs (`out2`, `cls-out2`),
and the server's log. Network: 127.0.0.1 only (and the package registry for
the install). Usage: python3 benches/labelstudio_roundtrip.py [--keep DIR]
[--triage PATH]
"""
import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "ls-venv"
USER = "reviewer@example.com"
PASSWORD = "triage-bench-password"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
IGNORE = None  # a pixel in no region
# What the reviewer does to the task at each place of the queue (6 tasks).
PLAN = ["accept", "change", "skip", "untouched", "twice", "accept"]
KINDS = {
    "seg": {
        "synth": ["--items", "12", "--size", "48", "40", "--classes", "4", "--seed", "1"],
        "data": "data", "out": "out", "ls": "ls", "v2": "data-v2", "out2": "out2",
    },
    "cls": {
        "synth": ["--task", "classification", "--items", "40", "--classes", "4"],
        "data": "cls", "out": "cls-out", "ls": "cls-ls", "v2": "cls-v2", "out2": "cls-out2",
    },
}


def step(name, t0):
    print(f"  {name}: {time.time() - t0:.2f} s", flush=True)


def ensure_venv():
    exe = VENV / "bin" / "label-studio"
    if exe.exists():
        return
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "label-studio"], check=True)
    step("pip install label-studio", t0)


class Triage:
    def __init__(self, exe):
        self.exe = str(exe)

    def __call__(self, *args):
        """Runs `triage ARGS`; exits with its output unless it succeeds.
        Returns its stderr."""
        p = subprocess.run([self.exe, *map(str, args)], capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(
                f"triage {' '.join(map(str, args))}: exit {p.returncode}\n{p.stdout}{p.stderr}"
            )
        return p.stderr


class Api:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method, path, body=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Token {TOKEN}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                out = r.read()
        except urllib.error.HTTPError as e:
            raise SystemExit(f"{method} {path}: HTTP {e.code}: {e.read()[:2000]!r}")
        return out if raw else json.loads(out or b"null")


def start_server(data_dir, log):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(
        os.environ,
        LABEL_STUDIO_USERNAME=USER,
        LABEL_STUDIO_PASSWORD=PASSWORD,
        LABEL_STUDIO_USER_TOKEN=TOKEN,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    proc = subprocess.Popen(
        [
            str(VENV / "bin" / "label-studio"), "start", "--no-browser",
            "--internal-host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), "--username", USER, "--password", PASSWORD,
            "--user-token", TOKEN, "--enable-legacy-api-token",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"label-studio exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return proc, Api(port)
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(1)
    stop(proc)
    raise SystemExit(f"label-studio did not answer within 300 s; see {log.name}")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the reviewer's side: label maps from results, with the SDK's decoder


def label_map(results, h, w):
    """Row-major class names (IGNORE where no region) of brush results."""
    import numpy as np
    from label_studio_sdk.converter import brush

    out = [IGNORE] * (h * w)
    for r in results:
        alpha = np.reshape(brush.decode_rle(r["value"]["rle"]), [h, w, 4])[:, :, 3].reshape(-1)
        for p in np.nonzero(alpha)[0]:
            assert out[p] is IGNORE, "overlapping regions"
            out[p] = r["value"]["brushlabels"][0]
    return out


def brush_results(lmap, h, w, tag):
    """Brush results, one per class present, as the SDK's `mask2rle` writes."""
    import numpy as np
    from label_studio_sdk.converter import brush

    names = sorted({n for n in lmap if n is not IGNORE})
    out = []
    for i, n in enumerate(names):
        m = np.array([255 if v == n else 0 for v in lmap], dtype=np.uint8).reshape(h, w)
        out.append({
            "id": f"{tag}{i}", "type": "brushlabels", "from_name": "label", "to_name": "image",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": [int(b) for b in brush.mask2rle(m)], "brushlabels": [n]},
        })
    return out


def review(api, kind, pid, sent, classes):
    """Annotates the project's tasks after PLAN, by each task's place in
    `sent` (tasks.json, queue order). Returns {triage_id: {"action": ...,
    "label": the label map or choice left when changed}}."""
    place = {t["data"]["triage_id"]: k for k, t in enumerate(sent)}
    listing = api.call("GET", f"/api/tasks?project={pid}&page_size=1000")
    listing = listing["tasks"] if isinstance(listing, dict) else listing
    assert len(listing) == len(sent), (len(listing), len(sent))
    done = {}
    for t in listing:
        t = api.call("GET", f"/api/tasks/{t['id']}")
        tid = t["data"]["triage_id"]
        action = PLAN[place[tid]]
        preds = {p["model_version"]: p for p in t["predictions"]}
        cur, model = preds["current annotation"], preds["model"]

        def post(result, cancelled=False, parent=None):
            body = {"result": result, "was_cancelled": cancelled, "ground_truth": False, "lead_time": 1.5}
            if parent is not None:
                body["parent_prediction"] = parent["id"]
            api.call("POST", f"/api/tasks/{t['id']}/annotations?project={pid}", body)

        if kind == "seg":
            h, w = cur["result"][0]["original_height"], cur["result"][0]["original_width"]

            def changed(lmap, y0, x0):
                # a 5 x 9 rectangle at (y0, x0) painted a class the top left
                # pixel is not
                new = next(c for c in classes if c != lmap[y0 * w + x0])
                lmap = list(lmap)
                for y in range(y0, y0 + 5):
                    for x in range(x0, x0 + 9):
                        lmap[y * w + x] = new
                return lmap

            def new_label(at):
                return changed(label_map(cur["result"], h, w), *at)

            def results(lmap):
                return brush_results(lmap, h, w, "r")
        else:
            def new_label(_):
                c = cur["result"][0]["value"]["choices"][0]
                m = model["result"][0]["value"]["choices"][0]
                return m if m != c else next(x for x in classes if x != c)

            def results(choice):
                return [{"id": "c", "type": "choices", "from_name": "label", "to_name": "image",
                         "value": {"choices": [choice]}}]

        entry = {"action": action}
        if action == "accept":
            post(cur["result"], parent=cur)
        elif action == "change":
            entry["label"] = new_label((0, 0))
            post(results(entry["label"]))
        elif action == "skip":
            post([], cancelled=True)
        elif action == "twice":  # two passes, the second (later) corrects
            post(cur["result"], parent=cur)
            time.sleep(0.05)
            entry["label"] = new_label((h - 5, w - 9) if kind == "seg" else None)
            post(results(entry["label"]))
        done[tid] = entry
    return done


# --- triage's side: review-import and apply, checked


def check_reviews(kind, dataset, stderr, done):
    changed = {t for t, e in done.items() if "label" in e}
    accepted = {t for t, e in done.items() if e["action"] == "accept"}
    m = re.search(r"(\d+) confirmed, (\d+) relabelled", stderr)
    assert m, stderr
    assert (int(m[1]), int(m[2])) == (len(accepted), len(changed)), (stderr, len(accepted), len(changed))
    records = [json.loads(line) for line in (dataset / "reviews.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == len(records), "one record per item"
    assert set(by_id) == accepted | changed, (sorted(by_id), sorted(accepted | changed))
    for tid in accepted:
        r = by_id[tid]
        assert r["decision"] == "ok", r
        assert r.get("corrected_label") is None and r.get("corrected_mask") is None, r
    for tid in changed:
        r = by_id[tid]
        assert r["decision"] == "error", r
        if kind == "seg":
            lmap = done[tid]["label"]
            assert r.get("corrected_mask") is not None, r
            assert r["corrected_mask"]["size"] == [48, 40] and len(lmap) == 48 * 40, r["corrected_mask"]["size"]
        else:
            assert r["corrected_label"] == done[tid]["label"], (r, done[tid])
    print(f"  {kind}: reviews.jsonl: {len(accepted)} ok, {len(changed)} error "
          f"({', '.join(sorted(changed))}), {len(done) - len(by_id)} absent", flush=True)


def check_apply(kind, dataset, v2, sent, done):
    import numpy as np
    from PIL import Image

    changed = {t for t, e in done.items() if "label" in e}
    cfg = tomllib.loads((v2 / "triage.toml").read_text())
    classes = cfg["classes"]
    new_rows = list(csv.DictReader(open(v2 / "items.csv", newline="")))
    differ = set()
    if kind == "seg":
        old_rows = {r["id"]: r for r in csv.DictReader(open(dataset / "items.csv", newline=""))}
        assert sorted(old_rows) == sorted(r["id"] for r in new_rows)
        ignore = cfg.get("ignore_index", 255)
        for r in new_rows:
            old = np.array(Image.open(dataset / old_rows[r["id"]]["mask"]))
            new = np.array(Image.open(v2 / r["mask"]))
            assert old.shape == new.shape == (48, 40), (r["id"], old.shape, new.shape)
            if r["id"] in changed:
                want = np.array(
                    [ignore if n is IGNORE else classes.index(n) for n in done[r["id"]]["label"]]
                ).reshape(48, 40)
                assert (new == want).all(), f"{r['id']}: the new mask is not the reviewer's"
            if not (old == new).all():
                differ.add(r["id"])
    else:
        labels = np.load(dataset / "labels.npy")
        assert len(new_rows) == len(labels)
        # the ids of a dataset without items.csv are the row numbers
        for t in sent:
            cur = t["predictions"][0]["result"][0]["value"]["choices"][0]
            assert cur == classes[int(labels[int(t["data"]["triage_id"])])], t["data"]
        for r in new_rows:
            old = classes[int(labels[int(r["id"])])]
            if r["id"] in changed:
                assert r["label"] == done[r["id"]]["label"], (r, done[r["id"]])
            if r["label"] != old:
                differ.add(r["id"])
    assert differ == changed, (sorted(differ), sorted(changed))
    print(f"  {kind}: {v2.name}: exactly the {len(changed)} changed items differ", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="keep the work files (datasets, runs, tasks, exports, server log) here")
    ap.add_argument("--triage", help="the triage binary (default: target/release/triage if it exists, "
                    "else target/debug/triage)")
    args = ap.parse_args()
    exe = Path(args.triage) if args.triage else next(
        (p for p in [ROOT / "target" / "release" / "triage"] if p.exists()),
        ROOT / "target" / "debug" / "triage")
    exe = exe.resolve()
    if not exe.exists():
        raise SystemExit(f"no triage binary at {exe} (build it, or pass --triage PATH)")
    triage = Triage(exe)
    t_all = time.time()
    ensure_venv()
    sys.path.insert(0, str(next((VENV / "lib").glob("python3*/site-packages"))))
    work = Path(args.keep or tempfile.mkdtemp(prefix="triage-ls-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise SystemExit(f"--keep {work}: not empty")
    sent = {}
    for kind, k in KINDS.items():
        data, out, tasks = work / k["data"], work / k["out"], work / k["ls"] / "tasks.json"
        t0 = time.time()
        triage("synth", *k["synth"], "--out", data)
        step(f"{kind}: triage synth", t0)
        t0 = time.time()
        triage("run", data, "--out", out, "--backend", "cpu")
        step(f"{kind}: triage run", t0)
        t0 = time.time()
        tasks.parent.mkdir()
        triage("export", "labelstudio", out, "--out", tasks, "--top", len(PLAN))
        sent[kind] = json.loads(tasks.read_text())
        assert len(sent[kind]) == len(PLAN), len(sent[kind])
        queue = [json.loads(line) for line in (out / "queue.jsonl").read_text().splitlines()]
        for t, row in zip(sent[kind], queue):
            assert t["data"]["triage_id"] == row["id"], "tasks in queue order"
            assert t["predictions"][0]["model_version"] == "current annotation"
            assert t["predictions"][0]["score"] == row["priority"]
            assert t["predictions"][1]["model_version"] == "model"
        step(f"{kind}: triage export labelstudio", t0)
    data_dir = Path(tempfile.mkdtemp(prefix="triage-ls-data-"))
    log = open(work / "label-studio.log", "w")
    t0 = time.time()
    proc, api = start_server(data_dir, log)
    step("label-studio start (fresh database)", t0)
    done = {}
    try:
        for kind, k in KINDS.items():
            ls = work / k["ls"]
            t0 = time.time()
            config = (ls / "label_config.xml").read_text()
            classes = re.findall(r'<(?:Label|Choice) value="([^"]*)"', config)
            pid = api.call("POST", "/api/projects", {"title": f"triage {kind}", "label_config": config})["id"]
            imp = api.call("POST", f"/api/projects/{pid}/import", sent[kind])
            assert imp.get("task_count") == len(sent[kind]), imp
            step(f"{kind}: project + import of {len(sent[kind])} tasks", t0)
            t0 = time.time()
            done[kind] = review(api, kind, pid, sent[kind], classes)
            (work / f"{kind}_review.json").write_text(json.dumps(done[kind]))
            step(f"{kind}: review through the API", t0)
            t0 = time.time()
            export = api.call("GET", f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=true", raw=True)
            (ls / "export.json").write_bytes(export)
            step(f"{kind}: export", t0)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    for kind, k in KINDS.items():
        data, v2 = work / k["data"], work / k["v2"]
        t0 = time.time()
        err = triage("review-import", data, work / k["ls"] / "export.json")
        step(f"{kind}: triage review-import", t0)
        check_reviews(kind, data, err, done[kind])
        t0 = time.time()
        triage("apply", data, "--out", v2)
        step(f"{kind}: triage apply", t0)
        check_apply(kind, data, v2, sent[kind], done[kind])
        t0 = time.time()
        triage("run", v2, "--out", work / k["out2"], "--backend", "cpu")
        step(f"{kind}: triage run on {v2.name}", t0)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"ok: Label Studio round trip in {time.time() - t_all:.1f} s")


if __name__ == "__main__":
    main()
