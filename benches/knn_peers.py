#!/usr/bin/env python3
"""Time hnswlib on the embeddings written by `cargo bench --bench knn`.

Usage: knn_peers.py DIR N D K. DIR holds emb.f32 (N x D unit rows),
queries.u32 (sampled query rows) and truth.u32 (their brute-force K nearest).
Installs hnswlib and numpy with pip when missing. Prints one JSON line with
build plus query time (all N rows queried for K+1 neighbours, self dropped),
peak memory and recall@K on the sampled queries. Parameters match triage's
HNSW: M = 24, ef_construction = 200, ef = max(4K, 64), all cores.
"""
import json
import subprocess
import sys
import time


def need(module, package):
    try:
        return __import__(module)
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", package],
                       check=True, stdout=sys.stderr)
        return __import__(module)


def main():
    directory, n, d, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    np = need("numpy", "numpy")
    hnswlib = need("hnswlib", "hnswlib")
    import resource

    emb = np.fromfile(f"{directory}/emb.f32", dtype=np.float32).reshape(n, d)
    queries = np.fromfile(f"{directory}/queries.u32", dtype=np.uint32).astype(np.int64)
    truth = np.fromfile(f"{directory}/truth.u32", dtype=np.uint32).reshape(-1, k)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=d)
    index.init_index(max_elements=n, ef_construction=200, M=24)
    index.add_items(emb, np.arange(n))
    index.set_ef(max(4 * k, 64))
    labels, _ = index.knn_query(emb, k=k + 1)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hit = 0
    for row, q in enumerate(queries):
        got = [j for j in labels[q] if j != q][:k]
        hit += len(set(got) & set(truth[row].tolist()))
    print(json.dumps({
        "method": f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}".strip(),
        "n": n, "d": d,
        "build_query_s": round(secs, 3),
        "peak_rss_mib": round(peak / 1024),
        "extra_over_data_mib": round((peak - base) / 1024),
        "recall_at_10": round(hit / (len(queries) * k), 4),
    }))


if __name__ == "__main__":
    main()
