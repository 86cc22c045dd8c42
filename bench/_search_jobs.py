"""The jobs of bench/search.py, each run in a fresh (spawned) process: building an index,
searching it, the exact ground truth (cached beside the data) and the plain torch MaxSim
baseline. A job started with ``engine`` imports ``retriever`` from that source tree instead
(the previous release: ``git archive a7388d9 retriever | tar -x -C /tmp/prev-engine``).

Latencies are wall-clock; the CPU seconds of the process per query are recorded beside them,
because on a shared machine the wall clock also counts the time other work held the cores."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Peak RSS of this process's own memory image (VmHWM). Not ``ru_maxrss``: Linux carries it
    across fork + exec, so a spawned job would report its parent's peak (the parent maps the
    documents to hash them: 8 GB at 1M)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def setup(threads: int, engine: str | None = None) -> None:
    if engine:
        sys.path.insert(0, str(Path(engine).resolve()))
        for name in [m for m in sys.modules if m == "retriever" or m.startswith("retriever.")]:
            del sys.modules[name]
    import torch

    torch.set_num_threads(threads)
    if engine:  # the previous release assigned centroids with faiss
        import faiss

        faiss.omp_set_num_threads(threads)


def build_job(docs: str, out: str, params: dict, threads: int, engine: str | None,
              queue) -> None:
    setup(threads, engine)
    from retriever.index import MultiVectorIndex

    emb = np.load(docs, mmap_mode="r")
    load = load_average()
    start = time.perf_counter()
    index = MultiVectorIndex.build(out, list(range(emb.shape[0])), emb, overwrite=True,
                                   show_progress=False, **params)
    queue.put({"build_s": time.perf_counter() - start, "build_peak_rss_mb": rss_mb(),
               "load_avg_build": (load + load_average()) / 2,
               "params": index.manifest["params"]})  # also the previous engine


def index_facts(out: str) -> dict:
    """Bytes per document of each component of a built index (from its manifest)."""
    import json

    manifest = json.loads((Path(out) / "manifest.json").read_text())
    rows = manifest["counts"]["rows"]
    groups = {"codes": ("codes-",), "residuals": ("residuals-",), "postings": ("postings-",),
              "float16 copy": ("embeddings-",), "ids": ("ids",),
              "centroids+codec": ("centroids", "coarse", "codec_"), "tombstones": ("deleted-",)}
    sizes = {group: 0 for group in groups}
    for name, entry in manifest["files"].items():
        for group, prefixes in groups.items():
            if name.startswith(prefixes):
                sizes[group] += entry["bytes"]
    return {"rows": rows, "component_bytes": sizes, "build_s_recorded":
            manifest.get("build_seconds"), "params": manifest["params"],
            "method": manifest["method"]}


def search_job(out: str, queries: str, num_queries: int, timed: int, batch: int, k: int,
               warmup: int, threads: int, engine: str | None, params: dict, warm: str | None,
               queue) -> None:
    """Latency at batch 1, queries/s at ``batch``, and memory: "before" is taken after a few
    searches of the small index ``warm`` (same method, 2,000 documents), so the code pages of
    torch's kernels (about 15 MB, the same for any index size) are not counted as the index's;
    the peak RSS is read after the batch-1 searches (the targets' setting) and at the end."""
    setup(threads, engine)
    import gc

    import torch

    from retriever.index import MultiVectorIndex

    q = np.load(queries, mmap_mode="r")[:num_queries].astype(np.float32)
    torch.from_numpy(q[:1]) @ torch.from_numpy(q[0]).T  # torch's own start-up, not the index's
    if warm:
        small = MultiVectorIndex.load(warm, verify="size")
        for i in range(min(5, len(q))):
            small.search(q[i:i + 1], k, **params)
        small.search(q[:batch], k, **params)
        del small
        gc.collect()
    before = current_rss_mb()
    load = load_average()
    index = MultiVectorIndex.load(out, verify="size")
    loaded = current_rss_mb()
    for i in range(min(warmup, len(q))):  # page in the memory-mapped arrays, untimed
        index.search(q[i:i + 1], k, **params)
    latencies, cpu, ranked = [], [], []
    for i in range(min(timed, len(q))):
        t0, c0 = time.perf_counter(), time.process_time()
        hits = index.search(q[i:i + 1], k, **params)[0]
        latencies.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        ranked.append([int(h.doc_id) if not isinstance(h.doc_id, str) else
                       int(h.doc_id.lstrip("p")) for h in hits])
    peak_b1 = rss_mb()
    batched = None
    if batch > 1:
        t0 = time.perf_counter()
        done = 0
        for start in range(0, len(q), batch):
            index.search(q[start:start + batch], k, **params)
            done += len(q[start:start + batch])
        batched = done / (time.perf_counter() - t0)
    queue.put({"ranked": ranked, "p50_ms": 1000 * float(np.median(latencies)),
               "p95_ms": 1000 * float(np.percentile(latencies, 95)),
               "cpu_p50_ms": 1000 * float(np.median(cpu)),
               "qps_1": 1 / float(np.mean(latencies)), "qps_batch": batched,
               "rss_before_load_mb": before, "rss_loaded_mb": loaded,
               "search_peak_rss_mb": rss_mb(), "search_peak_rss_b1_mb": peak_b1,
               "load_avg_search": (load + load_average()) / 2})


def _docs_blocks(docs: np.ndarray):
    return lambda rows: ((s, docs[s:s + rows]) for s in range(0, len(docs), rows))


def plain_maxsim(docs: np.ndarray, query, k: int, chunk: int = 4096):
    """The baseline: retriever.scoring.maxsim (chunked torch MaxSim, float32) over the whole
    float16 array, then a top-k: what scoring every document plainly costs."""
    from retriever.index.segments import readonly_tensor
    from retriever.scoring import maxsim

    top = maxsim(query, readonly_tensor(docs), chunk_size=chunk)[0].topk(k)
    return top.values[None], top.indices[None]


def ground_truth_job(docs: str, queries: str, num_queries: int, k: int, threads: int,
                     batch: int, out: str, queue) -> None:
    """Exact top-k of every query, batched (the bfloat16 pre-pass with its exact re-check)."""
    setup(threads)
    import torch

    from retriever.index.exact import exact_search

    emb = np.load(docs, mmap_mode="r")
    q = torch.from_numpy(np.load(queries, mmap_mode="r")[:num_queries].astype(np.float32))
    norm = 0.0
    for start in range(0, len(emb), 65536):  # the index would record it at build
        block = torch.from_numpy(np.asarray(emb[start:start + 65536], dtype=np.float32))
        norm = max(norm, float(block.norm(dim=-1).max()))
    start = time.perf_counter()
    ids = np.full((len(q), k), -1, dtype=np.int64)
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    for lo in range(0, len(q), batch):
        found = exact_search(q[lo:lo + batch], _docs_blocks(emb), lambda rows: emb[rows], k,
                             None, norm, 4096)
        for i, (rows, values) in enumerate(found):
            ids[lo + i, :len(rows)], scores[lo + i, :len(rows)] = rows, values
    seconds = time.perf_counter() - start
    np.savez(out, ids=ids, scores=scores, max_norm=norm, seconds=seconds)
    queue.put({"seconds": seconds})


def exact_timing_job(docs: str, queries: str, timed: int, k: int, threads: int, max_norm: float,
                     queue) -> None:
    """Single-query latency of the exact engine's scan against the plain torch baseline, on
    the same float16 array in the same process, alternating so both see the same machine."""
    setup(threads)
    import torch

    from retriever.index.exact import exact_search

    emb = np.load(docs, mmap_mode="r")
    q = torch.from_numpy(np.load(queries, mmap_mode="r")[:timed].astype(np.float32))
    norm = max_norm  # what an exact index of these documents records at build
    ours, plain, ours_cpu, plain_cpu = [], [], [], []
    exact_search(q[:1], _docs_blocks(emb), lambda rows: emb[rows], k, None, norm)  # warm
    for i in range(len(q)):
        t0, c0 = time.perf_counter(), time.process_time()
        got = exact_search(q[i:i + 1], _docs_blocks(emb), lambda rows: emb[rows], k, None, norm)
        ours.append(time.perf_counter() - t0)
        ours_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        ref = plain_maxsim(emb, q[i:i + 1], k)
        plain.append(time.perf_counter() - t0)
        plain_cpu.append(time.process_time() - c0)
        assert got[0][0].tolist() == ref[1][0].tolist(), "exact search differs from MaxSim"
    queue.put({"ours_p50_ms": 1000 * float(np.median(ours)),
               "ours_p95_ms": 1000 * float(np.percentile(ours, 95)),
               "plain_p50_ms": 1000 * float(np.median(plain)),
               "plain_p95_ms": 1000 * float(np.percentile(plain, 95)),
               "ours_cpu_p50_ms": 1000 * float(np.median(ours_cpu)),
               "plain_cpu_p50_ms": 1000 * float(np.median(plain_cpu)),
               "search_peak_rss_mb": rss_mb(), "load_avg": load_average()})
