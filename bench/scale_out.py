"""Benchmark the scale-out path: passages/s of a local index build vs Ray (a local runtime) with
1 and 2 workers, for the tiny retriever and a mid-size one (randomly initialised CLIP ViT-B/16-
sized towers, loaded from a saved folder as a cluster would); Ray's overhead with 1 worker as a
ratio against the local build; the driver's own rates (taking in shards, assembling the index);
and a projection to 8 and 64 workers (GPUs) from the per-worker and the driver's rates.

Every case runs in a fresh process (the Ray runtime is started there, outside the timing); each
is repeated, modes interleaved, and the median reported. Each encoder gets ``--threads`` torch
threads (default 1: on a 2-core machine shared with other work, 2-thread parallel regions stall
whenever the other thread is descheduled, which makes 2-thread timings swing by 10x).

Two rates per case: "wall" is passages / encoding time (on Ray from the start of the Dataset's
execution: actor start-up and model loads included, the up-front storage check, seconds per
node, not), "steady" is measured between the first and the last shard written (start-up
excluded: what a long build runs at). ``--from-json`` reprints the tables of a saved run, and
``--worker-rate`` projects with another per-worker rate (one GPU's).

    python bench/scale_out.py          # tiny and mid, 1 repeat: minutes (20 on 2 busy cores)
    python bench/scale_out.py --configs tiny --passages 600 --json out.json
    python bench/scale_out.py --from-json out.json --worker-rate R   # R: one GPU's passages/s
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _fresh import run_fresh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = [("local", 0, 0), ("local", 0, 1), ("ray", 1, 0), ("ray", 2, 0)]  # engine, workers, dl
# sized to take a few minutes on a 2-core machine (raise --passages / --repeats on a bigger one)
SIZES = {"tiny": {"passages": 1200, "shard": 100, "batch": 32},
         "mid": {"passages": 48, "shard": 8, "batch": 8}}
PROJECTED = 6_000_000   # InfoSeek's Wikipedia: passages to encode and index


def _kb(folder: Path, n: int) -> Path:
    from tests.scale_out.scale_helpers import generated_kb

    return generated_kb(folder, n) if not (folder / "kb").exists() else folder / "kb"


def _retriever(config: str, folder: Path):
    from rag_vqa.loading import load_retriever
    from retriever.tiny import build_tiny_retriever, clip_b_sized_retriever_config

    if config == "tiny":
        return load_retriever("tiny")
    saved = folder / "mid-retriever"
    if not saved.exists():
        build_tiny_retriever(seed=0, config=clip_b_sized_retriever_config()).save_pretrained(
            saved)
    return load_retriever(str(saved))


def _steady(out: Path) -> float:
    """Passages/s between the first and the last shard written (start-up excluded)."""
    infos = [(p.stat().st_mtime, json.loads(p.read_text())) for p in
             (out / "encode").glob("shard-*.json")]
    infos.sort(key=lambda x: x[0])
    rows = sum(i["stop"] - i["start"] for _, i in infos[1:])
    span = infos[-1][0] - infos[0][0]
    return rows / span if span > 0 else float("nan")


def _case(config: str, engine: str, workers: int, loader_workers: int, size: dict, threads: int,
          folder: str, rep: int, queue) -> None:
    import logging
    import multiprocessing

    import torch

    from rag_vqa.indexing import build_index

    # a spawned process makes spawn its default: the local build's DataLoader would then
    # start each shard's worker as a fresh interpreter; fork, as the CLI gets on Linux
    multiprocessing.set_start_method("fork", force=True)
    from rag_vqa.ray_runtime import RayOptions

    folder_path = Path(folder)
    kb = _kb(folder_path / f"kb-{config}", size["passages"])
    loaded = _retriever(config, folder_path)
    options = None
    if engine == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 _node_ip_address="127.0.0.1")
        options = RayOptions("local", workers=workers, cpus_per_worker=threads, quiet=True)
    else:
        torch.set_num_threads(threads)
    out = folder_path / f"out-{config}-{engine}{workers}-{loader_workers}-{rep}"
    report = build_index(kb, loaded, out, method="plaid", batch_size=size["batch"],
                         shard_size=size["shard"], workers=loader_workers, keep_shards=True,
                         show_progress=False, ray=options)
    wall = report.engine.get("wall_seconds") or report.encode_seconds
    queue.put({"config": config, "engine": engine, "workers": workers,
               "loader_workers": loader_workers, "passages": report.passages,
               "wall_rate": report.passages / wall, "steady_rate": _steady(out),
               "index_seconds": report.index_seconds})


def _driver(n_docs: int, folder: str, queue) -> None:
    """The driver's own work per passage: taking a shard in (ShardFeatures + ShardSet.write,
    digest included) and the index assembly (MultiVectorIndex.build, plaid) over the shards."""
    import numpy as np

    from rag_vqa.indexing.encode import ShardFeatures
    from rag_vqa.indexing.shards import ShardSet
    from retriever.index import MultiVectorIndex

    rng = np.random.default_rng(0)
    shards = ShardSet(Path(folder) / f"driver-{n_docs}" / "encode", n_docs, 1000)
    shards.check_plan({"bench": n_docs})
    intake = 0.0
    for index in range(shards.count):
        start, stop = shards.bounds(index)
        x = rng.standard_normal((stop - start, 32, 128)).astype(np.float32)
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        t0 = time.perf_counter()
        shard = ShardFeatures(index, start, stop, (32, 128))
        shard.add(np.arange(start, stop), x.astype(np.float16), ["none"] * (stop - start), [])
        shard.write(shards)
        intake += time.perf_counter() - t0
    t0 = time.perf_counter()
    MultiVectorIndex.build(Path(folder) / f"driver-{n_docs}", [f"P{i}" for i in range(n_docs)],
                           shards.arrays(), method="plaid", show_progress=False)
    queue.put({"docs": n_docs, "intake_rate": n_docs / intake,
               "assembly_rate": n_docs / (time.perf_counter() - t0)})


def _assembly_model(driver: list[dict]) -> tuple[float, float]:
    """(fixed seconds, seconds per document) of the index assembly: a line through the measured
    sizes (k-means on a sample is most of the time at small sizes; per-document work grows
    linearly); with one size, all of it per document."""
    points = sorted((d["docs"], d["docs"] / d["assembly_rate"]) for d in driver)
    (n1, t1), (n2, t2) = points[0], points[-1]
    if n2 > n1 and t2 > t1:
        per_doc = (t2 - t1) / (n2 - n1)
        return max(0.0, t1 - per_doc * n1), per_doc
    return 0.0, t2 / n2


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _report(rows: list[dict], driver: list[dict], threads: int, worker_rate: float | None
            ) -> None:
    """The tables: rates per mode, Ray's overhead, the driver's rates, the projection."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["config"], row["engine"], row["workers"], row["loader_workers"])
        groups.setdefault(key, []).append(row)
    configs = list(dict.fromkeys(row["config"] for row in rows))
    repeats = max(len(g) for g in groups.values())
    print(f"\nindex build on {platform.processor() or platform.machine()}, 2 CPUs, Ray local "
          f"runtime (num_cpus=2), {threads} torch thread(s) per encoder; medians of {repeats}")
    head = f"{'config':6} {'mode':22} {'passages':>8} {'wall p/s':>9} {'steady p/s':>10} " \
           f"{'steady vs local':>15}"
    print(head + "\n" + "-" * len(head))
    for config in configs:
        local = max(_median(groups[(config, "local", 0, d)], "steady_rate") for d in (0, 1))
        for (c, engine, workers, loaders), group in groups.items():
            if c != config:
                continue
            mode = f"local (--workers {loaders})" if engine == "local" else \
                f"ray, {workers} worker{'s' if workers > 1 else ''}"
            steady = _median(group, "steady_rate")
            print(f"{config:6} {mode:22} {group[0]['passages']:8d} "
                  f"{_median(group, 'wall_rate'):9.1f} {steady:10.1f} {steady / local:15.2f}")
        ray1 = groups[(config, "ray", 1, 0)]
        best = max((groups[(config, "local", 0, d)] for d in (0, 1)),
                   key=lambda g: _median(g, "steady_rate"))
        print(f"{config:6} Ray 1 worker vs the faster local build: steady "
              f"{_median(best, 'steady_rate') / _median(ray1, 'steady_rate'):.2f}x the time, "
              f"wall (start-up included) "
              f"{_median(best, 'wall_rate') / _median(ray1, 'wall_rate'):.2f}x (target <= 1.15)")
    print(f"\n{'driver: docs':>14} {'shard intake p/s':>17} {'index assembly docs/s':>22}")
    for d in driver:
        print(f"{d['docs']:14d} {d['intake_rate']:17.0f} {d['assembly_rate']:22.0f}")
    intake = driver[-1]["intake_rate"]
    fixed, per_doc = _assembly_model(driver)
    assembly_h = (fixed + per_doc * PROJECTED) / 3600
    print(f"index assembly modelled as {fixed:.0f} s fixed (centroid training) + "
          f"{per_doc * 1000:.2f} ms per document (a line through the measured sizes): "
          f"{1 / per_doc:.0f} docs/s at scale")
    for config in configs:
        measured = _median(groups[(config, "ray", 1, 0)], "steady_rate")
        per_worker = worker_rate or measured
        source = f"given (--worker-rate; measured here: {measured:.1f}/s)" if worker_rate else \
            f"measured: Ray, 1 worker of {threads} CPU thread(s); --worker-rate R projects a " \
            "GPU's rate"
        print(f"\nprojection, {config} retriever, {PROJECTED:,} passages: per-worker rate "
              f"{per_worker:.1f}/s ({source}), driver intake {intake:.0f}/s")
        print(f"{'workers':>8} {'encode p/s':>11} {'encode h':>9} {'assembly h':>11} "
              f"{'total h':>8}  bottleneck")
        for workers in (1, 2, 8, 64):
            rate = min(workers * per_worker, intake)
            encode_h = PROJECTED / rate / 3600
            limits = (["index assembly (driver)"] if assembly_h > encode_h else []) + \
                (["shard intake (driver)"] if workers * per_worker > intake else [])
            print(f"{workers:8d} {rate:11.1f} {encode_h:9.2f} {assembly_h:11.2f} "
                  f"{encode_h + assembly_h:8.2f}  {', '.join(limits) or 'workers'}")
        print(f"  the driver's index assembly outlasts the encoding beyond "
              f"{PROJECTED / (assembly_h * 3600) / per_worker:.1f} workers; its shard intake "
              f"caps the encoding at {intake / per_worker:.0f} workers")
    print("  what lifts the driver: assembly: build one index per KB slice on the workers with "
          "shared centroids (index build --centroids) and join them (index merge), or run the "
          "assembly on a big node; intake: workers writing their shards to shared storage "
          "themselves (the driver then only checks digests)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,mid")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--passages", type=int, default=None, help="override the KB size")
    parser.add_argument("--driver-docs", default="2000,8000")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per encoder")
    parser.add_argument("--worker-rate", type=float, default=None,
                        help="project with this per-worker passages/s (e.g. one GPU's, from "
                             "bench/encode.py there) instead of the measured CPU worker's")
    parser.add_argument("--json", default=None, help="also write every row to this JSON file")
    parser.add_argument("--from-json", default=None,
                        help="only print the tables of an earlier run's --json file")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        _report(saved["cases"], saved["driver"], saved.get("threads", args.threads),
                args.worker_rate)
        return
    if args.passages:
        for size in SIZES.values():
            size["passages"] = args.passages
    folder = tempfile.mkdtemp(prefix="scale-out-")
    rows = []
    for config in args.configs.split(","):
        for rep in range(args.repeats):
            for engine, workers, loaders in MODES:  # interleaved: load changes hit all modes
                row = run_fresh(_case, config, engine, workers, loaders, SIZES[config],
                                args.threads, folder, rep)
                rows.append(row)
                print(f"  {config} {engine} x{workers} (loader workers {loaders}) #{rep}: "
                      f"wall {row['wall_rate']:.1f}/s, steady {row['steady_rate']:.1f}/s",
                      flush=True)
    driver = [run_fresh(_driver, int(n), folder) for n in args.driver_docs.split(",")]
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": rows, "driver": driver,
                                               "threads": args.threads}, indent=2))
    _report(rows, driver, args.threads, args.worker_rate)


if __name__ == "__main__":
    main()
