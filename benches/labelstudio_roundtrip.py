#!/usr/bin/env python3
"""A real Label Studio server between triage's writer and reader.

1. installs `label-studio` into target/ls-venv (once; about 1 GB, 4 minutes);
2. writes segmentation and classification tasks with triage's writer
   (`io::labelfile::labelstudio::write` and `label_config`, through the
   ignored unit test `real_label_studio_hook`; to be replaced by `triage
   export labelstudio` once that command exists);
3. starts Label Studio on 127.0.0.1 (a free port) with a temporary data
   directory and a fixed user and legacy API token, analytics, Sentry and the
   version check off;
4. per task kind: creates a project with the config, imports the tasks
   (their two predictions: the current annotation and the model's), then
   reviews through the API as a person would: accepts the current
   annotation, changes it (a rectangle painted another class, or another
   choice), skips one (`was_cancelled`), annotates one task twice (the
   second, later, changes it), accepts the model's prediction on an
   unlabelled task and leaves another untouched;
5. exports the project (`exportType=JSON`, all tasks) and reads the export
   with triage's reader (`io::labelfile::labelstudio::parse`, the same hook),
   checking for each task that the official annotation is what the reviewer
   left: the label maps pixel for pixel (decoded on this side with
   label-studio-sdk's `decode_rle`), the choices, the annotators, the
   unlabelled tasks.

Prints the time of each step. The work files (`--keep DIR`): the tasks and
configs written, the exports, `{kind}_expected.json` (the reviewer's label
per triage id: a row-major list of class names, null where no region, or the
choice; null for an unlabelled task; and the number of annotations kept),
the reader's dump and the server's log; tests/data/labelstudio/ keeps a pair
of them as fixtures. Network: 127.0.0.1 only (and the package
registry for the install). Usage: python3 benches/labelstudio_roundtrip.py
[--keep DIR]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "ls-venv"
USER = "reviewer@example.com"
PASSWORD = "triage-bench-password"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
HOOK = "io::labelfile::labelstudio::tests::real_label_studio_hook"
IGNORE = None  # a pixel in no region


def step(name, t0):
    print(f"  {name}: {time.time() - t0:.1f} s", flush=True)


def ensure_venv():
    exe = VENV / "bin" / "label-studio"
    if exe.exists():
        return
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "label-studio"], check=True)
    step("pip install label-studio", t0)


def hook(phase, d):
    env = dict(os.environ, TRIAGE_LS_BENCH=phase, TRIAGE_LS_BENCH_DIR=str(d))
    subprocess.run(
        ["cargo", "test", "-q", "--lib", HOOK, "--", "--ignored", "--exact"],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


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


def review(api, kind, pid):
    """Annotates the project's tasks; returns {triage_id: expected} with
    expected None (unlabelled), a label map (segmentation) or a choice, and
    the number of kept annotations per task."""
    tasks = api.call("GET", f"/api/tasks?project={pid}&page_size=1000")["tasks"]
    details = [api.call("GET", f"/api/tasks/{t['id']}") for t in tasks]
    labelled = sum(1 for t in details if any(p["model_version"] == "current annotation" for p in t["predictions"]))
    expected, kept = {}, {}
    for t in details:
        tid = t["data"]["triage_id"]
        k = int(tid[3:])
        preds = {p["model_version"]: p for p in t["predictions"]}
        cur, model = preds.get("current annotation"), preds["model"]

        def post(result, cancelled=False, parent=None):
            body = {"result": result, "was_cancelled": cancelled, "ground_truth": False, "lead_time": 1.5}
            if parent is not None:
                body["parent_prediction"] = parent["id"]
            api.call("POST", f"/api/tasks/{t['id']}/annotations?project={pid}", body)

        if kind == "seg":
            h = w = None
            for r in model["result"]:
                h, w = r["original_height"], r["original_width"]

            def lm(pred):
                return label_map(pred["result"], h, w)

            def changed(lmap):
                lmap = list(lmap)
                for y in range(0, 5):
                    for x in range(0, 9):
                        lmap[y * w + x] = "road"
                return lmap
        else:
            def lm(pred):
                return pred["result"][0]["value"]["choices"][0]

            def changed(choice):
                return "<bird>" if choice != "<bird>" else "cat"

        def results(label):
            if kind == "seg":
                return brush_results(label, h, w, "r")
            return [{"id": "c", "type": "choices", "from_name": "label", "to_name": "image",
                     "value": {"choices": [label]}}]

        if cur is None and k == labelled:  # unlabelled: accept the model
            post(model["result"], parent=model)
            expected[tid], kept[tid] = lm(model), 1
        elif cur is None:  # unlabelled, untouched
            expected[tid], kept[tid] = None, 0
        elif k == 0:  # accept the current annotation
            post(cur["result"], parent=cur)
            expected[tid], kept[tid] = lm(cur), 1
        elif k == 1:  # correct it
            lab = changed(lm(cur))
            post(results(lab))
            expected[tid], kept[tid] = lab, 1
        elif k == 2:  # skip
            post([], cancelled=True)
            expected[tid], kept[tid] = None, 0
        else:  # two passes, the second (later) corrects
            post(cur["result"], parent=cur)
            time.sleep(0.05)
            lab = changed(lm(cur))
            post(results(lab))
            expected[tid], kept[tid] = lab, 2
    return expected, kept


def check(kind, doc, tasks_file, expected, kept):
    images = {t["data"]["image"]: t["data"]["triage_id"] for t in json.load(open(tasks_file))}
    assert len(doc) == len(expected), (len(doc), len(expected))
    for im in doc:
        tid = images[im["file_name"]]
        want = expected[tid]
        assert len(im["annotations"]) == kept[tid], (tid, len(im["annotations"]), kept[tid])
        if want is None:
            assert im["official"] is None, (tid, im["official"])
            continue
        a = im["annotations"][im["official"]]
        assert a["annotator"] is not None, tid
        if kind == "seg":
            h, w = im["height"], im["width"]
            got = [IGNORE] * (h * w)
            for r in a["regions"]:
                for p, c in enumerate(r["pixels"]):
                    if c == "1":
                        assert got[p] is IGNORE, (tid, p)
                        got[p] = r["name"]
            assert got == want, f"{tid}: the label map differs"
        else:
            assert a["tags"] == [want], (tid, a["tags"], want)
    print(f"  {kind}: {len(doc)} tasks read back as reviewed", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="keep the work files (tasks, exports, server log) here")
    args = ap.parse_args()
    t_all = time.time()
    ensure_venv()
    sys.path.insert(0, str(next((VENV / "lib").glob("python3*/site-packages"))))
    work = Path(args.keep or tempfile.mkdtemp(prefix="triage-ls-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    hook("write", work)
    step("triage writes the tasks", t0)
    data_dir = Path(tempfile.mkdtemp(prefix="triage-ls-data-"))
    log = open(work / "label-studio.log", "w")
    t0 = time.time()
    proc, api = start_server(data_dir, log)
    step("label-studio start (fresh database)", t0)
    try:
        results = {}
        for kind in ["seg", "cls"]:
            t0 = time.time()
            config = (work / f"{kind}_config.xml").read_text()
            pid = api.call("POST", "/api/projects", {"title": f"triage {kind}", "label_config": config})["id"]
            tasks = json.load(open(work / f"{kind}_tasks.json"))
            imp = api.call("POST", f"/api/projects/{pid}/import", tasks)
            assert imp.get("task_count") == len(tasks), imp
            step(f"{kind}: project + import of {len(tasks)} tasks", t0)
            t0 = time.time()
            results[kind] = review(api, kind, pid)
            expected, kept = results[kind]
            (work / f"{kind}_expected.json").write_text(json.dumps({"expected": expected, "kept": kept}))
            step(f"{kind}: review through the API", t0)
            t0 = time.time()
            export = api.call("GET", f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=true", raw=True)
            (work / f"{kind}_export.json").write_bytes(export)
            step(f"{kind}: export", t0)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    t0 = time.time()
    hook("parse", work)
    step("triage reads the exports", t0)
    for kind in ["seg", "cls"]:
        doc = json.load(open(work / f"{kind}_doc.json"))
        check(kind, doc, work / f"{kind}_tasks.json", *results[kind])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"ok: Label Studio round trip in {time.time() - t_all:.1f} s")


if __name__ == "__main__":
    main()
