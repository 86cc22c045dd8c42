"""Benchmark multi-vector search: build every method on the same arrays and report build time,
memory (on disk, resident, peak RSS), latency at batch size 1, queries/s at batch 64 and
quality against exact MaxSim, for the published data and a harder distribution.

    # the published data (../shared/bench/gen_data.py defaults, seed 1234)
    python ../shared/bench/gen_data.py --n 100000 --out /work/bench-data
    # the harder distribution: 4x larger and tighter topics, twice the near-duplicates, noisier
    # queries with fewer matching tokens
    python ../shared/bench/gen_data.py --n 100000 --out /work/bench-data/hard --seed 4321 \\
        --docs-per-topic 200 --tau 0.7 --dup-frac 0.3 --sigma-q 1.0 --eta-q 0.8 --p-match 0.25
    mkdir /tmp/prev-engine && git archive a7388d9 retriever | tar -x -C /tmp/prev-engine
    python bench/search.py --data /work/bench-data --n 100000 --prev-engine /tmp/prev-engine
    python bench/search.py --data /work/bench-data --n 1000000 --methods plaid,prev \\
        --prev-engine /tmp/prev-engine --work /work/bench-data/work-1m --keep

Each build and each search runs in a fresh process (spawn): the peak RSS of a search is that of
a process that only loaded the index and searched; "idx RSS" is its peak after the batch-1
searches minus the RSS it had before loading (Python, torch, the queries, and torch's kernels
paged in by searching a 2,000-document index of the same kind first: ~15 MB of code that
does not grow with the index), per document; "b64 +MB" is what the batched searches added to
the peak. The exact top-100 of every query is
computed once (batched) and cached beside the documents, keyed by the digests of documents and
queries, so reruns at 1M skip it. Recall@10 is against that exact top-10; "pos@1" is how often
the known positive ranks first. The exact engine's scan is timed against a plain chunked torch
MaxSim over the same float16 array, in the same process. The 1-minute load average before and
after each job says whether the machine was busy (2 cores shared with other work).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import numpy as np
from _fresh import run_fresh
from _search_jobs import (
    build_job,
    exact_timing_job,
    ground_truth_job,
    index_facts,
    load_average,
    search_job,
)

VARIANTS = {  # method name in the table -> (build parameters, uses the previous engine)
    "exact": ({"method": "exact"}, False),
    "plaid": ({"method": "plaid", "nbits": 4}, False),
    "plaid-nof16": ({"method": "plaid", "nbits": 4, "keep_float16": False}, False),
    "plaid-2bit": ({"method": "plaid", "nbits": 2}, False),
    "prev": ({"method": "plaid", "nbits": 4}, True),
}


def ground_truth(args, docs: str, queries: str) -> dict:
    from retriever.fileio import bytes_digest, file_digest

    key = bytes_digest(f"{file_digest(docs)}|{file_digest(queries)}|{args.num_queries}|"
                       f"{args.gt_k}".encode())[:16]
    path = Path(docs).with_name(f"{Path(docs).stem}.exact-top{args.gt_k}-q{args.num_queries}-"
                                f"{key}.npz")
    if not path.exists():
        print(f"computing the exact ground truth into {path} ...", flush=True)
        tmp = path.with_name(f".{path.name}")
        run_fresh(ground_truth_job, docs, queries, args.num_queries, args.gt_k, args.threads,
                  16, str(tmp))
        tmp.rename(path)
    with np.load(path) as data:
        return {"ids": data["ids"], "scores": data["scores"], "max_norm": float(data["max_norm"]),
                "seconds": float(data["seconds"]), "path": str(path)}


def quality(ranked: list[list[int]], exact: np.ndarray, targets: np.ndarray | None
            ) -> tuple[float, float | None]:
    recall = float(np.mean([len(set(r[:10]) & set(e[:10].tolist())) / 10
                            for r, e in zip(ranked, exact)]))
    pos1 = None
    if targets is not None:
        pos1 = float(np.mean([bool(r) and r[0] == t for r, t in zip(ranked, targets)]))
    return recall, pos1


def run_method(args, name: str, docs: str, queries: str, efforts: list[float]) -> list[dict]:
    params, previous = VARIANTS[name]
    engine = args.prev_engine if previous else None
    if previous and not engine:
        return [{"method": name, "skipped": "pass --prev-engine (retriever/ of a7388d9)"}]
    out = str(Path(args.work) / f"index-{name}")
    warm = str(Path(args.work) / f"warm-{name}")  # 2,000 documents: see search_job
    if not (Path(warm) / "manifest.json").exists():
        run_fresh(build_job, args.warm_docs, warm, params, args.threads, engine)
    if args.reuse and (Path(out) / "manifest.json").exists():
        built = {"build_s": None, "reused": True}
    else:
        print(f"building {name} ...", flush=True)
        built = run_fresh(build_job, docs, out, params, args.threads, engine)
    facts = index_facts(out)
    if built.get("build_s") is None:
        built["build_s"] = facts["build_s_recorded"]
    rows = []
    for effort in efforts if name.startswith("plaid") else [None]:
        search_params = {} if effort in (None, 1.0) else {"effort": effort}
        label = name if effort in (None, 1.0) else f"{name} e={effort:g}"
        timed = args.exact_timed if name == "exact" else args.num_queries
        print(f"searching {label} ...", flush=True)
        found = run_fresh(search_job, out, queries, args.num_queries, timed,
                          args.batch if name != "exact" else min(args.batch, 16), 10,
                          args.warmup, args.threads, engine, search_params, warm)
        rows.append({**built, **facts, **found, "method": label})
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return rows


def exact_timing_line(args, t: dict) -> str:
    return (f"exact scan vs plain chunked torch MaxSim (retriever.scoring.maxsim) over the same "
            f"float16 array, batch 1, {args.exact_timed} queries: ours p50 "
            f"{t['ours_p50_ms']:.0f} ms / p95 {t['ours_p95_ms']:.0f} ms (CPU "
            f"{t.get('ours_cpu_p50_ms', float('nan')):.0f} ms), plain p50 "
            f"{t['plain_p50_ms']:.0f} ms / p95 {t['plain_p95_ms']:.0f} ms (CPU "
            f"{t.get('plain_cpu_p50_ms', float('nan')):.0f} ms): "
            f"{t['plain_p50_ms'] / t['ours_p50_ms']:.2f}x (load {t['load_avg']:.1f})")


def print_tables(args, rows: list[dict], gt: dict, targets, n_docs: int, exact_time: dict | None
                 ) -> None:
    print(f"\n{n_docs} documents ({args.label}), {args.num_queries} queries, k=10, "
          f"{args.threads} threads, {platform.machine()}; exact top-100 cached in {gt['path']} "
          f"({gt['seconds']:.0f} s to compute, batched)")
    head = (f"{'method':16} {'build s':>8} {'disk B/doc':>10} {'RAM B/doc':>9} {'RSS MB':>7} "
            f"{'idx RSS B/d':>11} {'b64 +MB':>7} {'p50 ms':>7} {'p95 ms':>7} {'cpu ms':>6} "
            f"{'q/s b1':>7} "
            f"{'q/s b64':>8} "
            f"{'x':>5} {'recall@10':>9} {'pos@1':>6} {'load':>5}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        if "skipped" in r:
            print(f"{r['method']:16} skipped: {r['skipped']}")
            continue
        recall, pos1 = quality(r["ranked"], gt["ids"], targets)
        r["recall_at_10"], r["pos_at_1"] = recall, pos1
        sizes = r["component_bytes"]
        disk = sum(sizes.values()) / r["rows"]
        ram = (sum(sizes.values()) - (sizes["float16 copy"] if r["method"] != "exact" else 0)) \
            / r["rows"]
        peak_b1 = r.get("search_peak_rss_b1_mb", r["search_peak_rss_mb"])
        idx_rss = (peak_b1 - r["rss_before_load_mb"]) * 2**20 / r["rows"]
        batch_extra = r["search_peak_rss_mb"] - peak_b1
        batch, nan = r.get("qps_batch"), float("nan")
        ratio = f"{batch / r['qps_1']:5.1f}" if batch else f"{'-':>5}"
        build = f"{r['build_s']:8.1f}" if r.get("build_s") is not None else f"{'?':>8}"
        print(f"{r['method']:16} {build} {disk:10.0f} {ram:9.0f} {r['search_peak_rss_mb']:7.0f} "
              f"{idx_rss:11.0f} {batch_extra:7.0f} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f} "
              f"{r.get('cpu_p50_ms', nan):6.1f} "
              f"{r['qps_1']:7.1f} "
              f"{batch or float('nan'):8.1f} {ratio} {recall:9.3f} "
              f"{pos1 if pos1 is not None else float('nan'):6.3f} "
              f"{r['load_avg_search']:5.1f}")
    exact_pos1 = quality([list(e[:10]) for e in gt["ids"]], gt["ids"], targets)[1]
    print(f"{'(exact top-10)':16} pos@1 {exact_pos1:.3f} over all {len(gt['ids'])} queries")
    for r in rows:
        if "ranked" in r and len(r["ranked"]) < len(gt["ids"]):
            print(f"({r['method']}: recall@10 and pos@1 over its {len(r['ranked'])} timed "
                  "queries only)")
    if exact_time:
        print("\n" + exact_timing_line(args, exact_time))
    print("\nbytes per document by component (on disk; all but the float16 copy stay "
          "resident when searched)")
    names = list(rows[0].get("component_bytes", {})) if rows else []
    print(f"{'method':16} " + " ".join(f"{n:>15}" for n in names))
    for r in rows:
        if "component_bytes" in r and "e=" not in r["method"]:
            print(f"{r['method']:16} " + " ".join(f"{r['component_bytes'][n] / r['rows']:15.1f}"
                                                  for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data",
                        help="folder of docs_N{n}.npy, queries_N{n}.npy, targets_N{n}.npy")
    parser.add_argument("--n", type=int, help="collection size (with --data)")
    parser.add_argument("--docs")
    parser.add_argument("--queries")
    parser.add_argument("--targets", default=None)
    parser.add_argument("--label", default=None, help="name of the distribution in the table")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default: exact,plaid "
                             "and prev with --prev-engine)")
    parser.add_argument("--prev-engine", default=None,
                        help="source tree of the previous release (retriever/ of a7388d9)")
    parser.add_argument("--efforts", default="1",
                        help="search efforts to run for plaid variants, e.g. 0.5,1,2")
    parser.add_argument("--num-queries", type=int, default=500)
    parser.add_argument("--exact-timed", type=int, default=10,
                        help="single queries timed for exact search (each scans everything)")
    parser.add_argument("--no-exact-timing", action="store_true",
                        help="skip timing the exact scan against the plain torch MaxSim")
    parser.add_argument("--batch", type=int, default=64, help="batch size for queries/s")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed queries first, so memory-mapped pages are resident")
    parser.add_argument("--gt-k", type=int, default=100)
    parser.add_argument("--work", default="bench-work")
    parser.add_argument("--keep", action="store_true", help="keep the built indexes")
    parser.add_argument("--reuse", action="store_true",
                        help="search indexes already in --work instead of building them")
    parser.add_argument("--json", default=None)
    parser.add_argument("--gt-only", action="store_true",
                        help="compute (or check) the cached exact ground truth and stop")
    args = parser.parse_args()

    if args.data:
        data = Path(args.data)
        args.docs = args.docs or str(data / f"docs_N{args.n}.npy")
        args.queries = args.queries or str(data / f"queries_N{args.n}.npy")
        targets_path = data / f"targets_N{args.n}.npy"
        args.targets = args.targets or (str(targets_path) if targets_path.exists() else None)
    if not args.docs or not args.queries:
        parser.error("give --data and --n, or --docs and --queries")
    args.label = args.label or Path(args.docs).parent.name
    methods = (args.methods or ("exact,plaid,prev" if args.prev_engine else "exact,plaid")
               ).split(",")
    unknown = set(methods) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    n_docs = np.load(args.docs, mmap_mode="r").shape[0]
    args.warm_docs = str(Path(args.work) / "warm-docs.npy")
    if not Path(args.warm_docs).exists():
        np.save(args.warm_docs, np.load(args.docs, mmap_mode="r")[:2000])
    targets = np.load(args.targets)[: args.num_queries] if args.targets else None
    print(f"load average at start: {load_average():.1f}", flush=True)
    gt = ground_truth(args, args.docs, args.queries)
    if args.gt_only:
        print(f"exact top-{args.gt_k} of {args.num_queries} queries: {gt['path']} "
              f"({gt['seconds']:.0f} s)")
        return
    exact_time = None
    if not args.no_exact_timing:
        print("timing the exact scan against plain torch MaxSim ...", flush=True)
        exact_time = run_fresh(exact_timing_job, args.docs, args.queries, args.exact_timed, 10,
                               args.threads, gt["max_norm"])
        print(exact_timing_line(args, exact_time), flush=True)
    efforts = [float(e) for e in args.efforts.split(",")]
    rows = []
    for name in methods:
        rows += run_method(args, name, args.docs, args.queries, efforts)
    print_tables(args, rows, gt, targets, n_docs, exact_time)
    if args.json:
        for r in rows:
            r.pop("ranked", None)
        Path(args.json).write_text(json.dumps({"rows": rows, "exact_timing": exact_time,
                                               "ground_truth_s": gt["seconds"],
                                               "docs": args.docs, "n": n_docs}, indent=2))


if __name__ == "__main__":
    main()
