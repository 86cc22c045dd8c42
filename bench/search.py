"""Benchmark multi-vector search: build every method on the same arrays and report build time,
bytes per document, peak RSS, query latency (batch size 1) and quality against exact MaxSim.

    python ../shared/bench/gen_data.py --n 100000 --out bench-data
    python bench/search.py --docs bench-data/docs_N100000.npy \\
        --queries bench-data/queries_N100000.npy --targets bench-data/targets_N100000.npy

Each build and each search runs in a fresh process (spawn), so the peak RSS reported for a search
is that of a process that only loaded the index and searched. Recall@10 is measured against the
exact top-10; "pos@1" is how often the known positive document ranks first. The PyPI package
fast-plaid runs in the same table when it is importable next to this torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np
from _fresh import run_fresh


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _setup(threads: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def build_job(method: str, docs: str, out: str, nbits: int, threads: int, queue) -> None:
    _setup(threads)
    from retriever.index import MultiVectorIndex

    emb = np.load(docs, mmap_mode="r")
    start = time.perf_counter()
    index = MultiVectorIndex.build(out, list(range(emb.shape[0])), emb, method=method,
                                   nbits=nbits, overwrite=True, show_progress=False)
    seconds = time.perf_counter() - start
    queue.put({"build_s": seconds, "bytes_per_doc": index.resident_bytes()["per_document"],
               "build_peak_rss_mb": _rss_mb(), "params": index.manifest["params"]})


def search_job(method: str, out: str, queries: str, num_queries: int, timed: int, threads: int,
               k: int, warmup: int, exact_batch: int, queue) -> None:
    _setup(threads)
    from retriever.index import MultiVectorIndex

    index = MultiVectorIndex.load(out, verify="size")
    rss_loaded = _current_rss_mb()
    q = np.load(queries, mmap_mode="r")[:num_queries].astype(np.float32)
    ranked = []
    if method == "exact":  # ground truth in batches (not timed), latency on a few single queries
        for start in range(0, len(q), exact_batch):
            ranked += [[h.doc_id for h in hits]
                       for hits in index.search(q[start:start + exact_batch], k)]
        sample = q[:timed]
    else:
        sample = q
    for i in range(min(warmup, len(q))):  # page in the memory-mapped arrays, untimed
        index.search(q[i:i + 1], k)
    latencies = []
    for i in range(len(sample)):
        t0 = time.perf_counter()
        hits = index.search(sample[i:i + 1], k)[0]
        latencies.append(time.perf_counter() - t0)
        if method != "exact":
            ranked.append([h.doc_id for h in hits])
    queue.put({"ranked": ranked, "p50_ms": 1000 * float(np.median(latencies)),
               "p95_ms": 1000 * float(np.percentile(latencies, 95)),
               "rss_loaded_mb": rss_loaded, "search_peak_rss_mb": _rss_mb()})


def fast_plaid_job(docs: str, queries: str, out: str, num_queries: int, threads: int, k: int,
                   queue) -> None:
    _setup(threads)
    import torch
    from fast_plaid import search as fp_search

    emb = np.load(docs, mmap_mode="r")
    start = time.perf_counter()
    index = fp_search.FastPlaid(index=out, device="cpu")
    index.create(documents_embeddings=[torch.from_numpy(np.asarray(emb[i], dtype=np.float32))
                                       for i in range(emb.shape[0])], nbits=4)
    build_s = time.perf_counter() - start
    q = torch.from_numpy(np.load(queries, mmap_mode="r")[:num_queries].astype(np.float32))
    latencies, ranked = [], []
    for i in range(len(q)):
        t0 = time.perf_counter()
        res = index.search(queries_embeddings=q[i:i + 1], top_k=k)
        latencies.append(time.perf_counter() - t0)
        ranked.append([int(doc) for doc, _ in res[0]])
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    queue.put({"build_s": build_s, "bytes_per_doc": size // emb.shape[0], "ranked": ranked,
               "p50_ms": 1000 * float(np.median(latencies)),
               "p95_ms": 1000 * float(np.percentile(latencies, 95)),
               "search_peak_rss_mb": _rss_mb(), "build_peak_rss_mb": _rss_mb()})


def quality(ranked: list[list[int]], exact: list[list[int]], targets: np.ndarray | None
            ) -> tuple[float, float | None]:
    recall = float(np.mean([len(set(r[:10]) & set(e[:10])) / max(1, len(e[:10]))
                            for r, e in zip(ranked, exact)]))
    pos1 = None
    if targets is not None:
        pos1 = float(np.mean([bool(r) and r[0] == t for r, t in zip(ranked, targets)]))
    return recall, pos1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--targets", default=None)
    parser.add_argument("--methods", default="exact,plaid")
    parser.add_argument("--nbits", type=int, default=4)
    parser.add_argument("--num-queries", type=int, default=300)
    parser.add_argument("--exact-timed", type=int, default=20,
                        help="single queries timed for the exact method (each takes ~0.3 s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--exact-batch", type=int, default=16,
                        help="queries per batch when computing the exact ground truth")
    parser.add_argument("--warmup", type=int, default=10,
                        help="untimed queries first, so memory-mapped pages are resident")
    parser.add_argument("--work", default="bench-work")
    parser.add_argument("--keep", action="store_true", help="keep the built indexes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n_docs = np.load(args.docs, mmap_mode="r").shape[0]
    targets = np.load(args.targets)[: args.num_queries] if args.targets else None
    rows: dict[str, dict] = {}
    for method in args.methods.split(","):
        out = str(work / f"index-{method}")
        print(f"building {method} ...", flush=True)
        rows[method] = run_fresh(build_job, method, args.docs, out, args.nbits, args.threads)
        print(f"searching {method} ...", flush=True)
        rows[method].update(run_fresh(search_job, method, out, args.queries, args.num_queries,
                                args.exact_timed, args.threads, args.k, args.warmup,
                                args.exact_batch))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    try:
        import fast_plaid  # noqa: F401
        print("building and searching fast-plaid ...", flush=True)
        rows["fast-plaid"] = run_fresh(fast_plaid_job, args.docs, args.queries,
                                 str(work / "index-fast-plaid"), args.num_queries, args.threads,
                                 args.k)
    except ImportError:
        rows["fast-plaid"] = {"skipped": "not importable: its PyPI wheels pin torch==2.11.0 and "
                                         "none is built for torch 2.13.0"}
    exact = rows.get("exact", {}).get("ranked")
    print(f"\n{n_docs} documents, {args.num_queries} queries, k={args.k}, "
          f"{args.threads} threads, {platform.machine()}, latency after {args.warmup} "
          "untimed queries")
    header = (f"{'method':11} {'build s':>8} {'B/doc':>7} {'build RSS MB':>12} {'search RSS MB':>13}"
              f" {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>9} {'pos@1':>6} {'speed-up':>8}")
    print(header)
    print("-" * len(header))
    exact_p50 = rows.get("exact", {}).get("p50_ms")
    for method, r in rows.items():
        if "skipped" in r:
            print(f"{method:11} skipped: {r['skipped']}")
            continue
        recall, pos1 = quality(r["ranked"], exact, targets) if exact else (float("nan"), None)
        r["recall_at_10"], r["pos_at_1"] = recall, pos1
        speed = f"{exact_p50 / r['p50_ms']:7.1f}x" if exact_p50 else f"{'-':>8}"
        print(f"{method:11} {r['build_s']:8.1f} {r['bytes_per_doc']:7d} "
              f"{r['build_peak_rss_mb']:12.0f} {r['search_peak_rss_mb']:13.0f} "
              f"{r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {recall:9.3f} "
              f"{pos1 if pos1 is not None else float('nan'):6.3f} {speed}")
    if args.json:
        for r in rows.values():
            r.pop("ranked", None)
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
