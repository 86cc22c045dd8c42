"""Benchmark ``ReTTrainer``: optimiser steps/second and peak memory (RSS).

Configurations: ``tiny`` (the test model) and ``mid`` (d=1024 cells on frozen, randomly
initialised CLIP ViT-B/16-sized towers, 224 px). The baseline runs the frozen backbones on every
step (the plain way to train with frozen towers); ours reuses cached backbone states
(``cache_features``), so after the first epoch a step runs only the ReT heads. Data: the
synthetic colour x word task (ReT JSONL files and PNG images, decoded by the real data path).
Each case runs in a fresh process so its peak RSS is its own; the rate is measured over the steps
after the first epoch (the cache is then full), the first epoch's rate is shown too.

    python bench/train.py                       # tiny and mid, both modes
    python bench/train.py --configs mid --batch-size 8 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time

from _fresh import run_fresh


def _worker(config_name: str, cache: bool, batch_size: int, epochs: int, threads: int,
            queue) -> None:
    import logging

    import torch

    from retriever.tiny import build_tiny_retriever, clip_b_sized_retriever_config
    from retriever.training import JsonlPassages, ReTTrainer, TrainConfig, load_train_queries
    from retriever.training.synthetic import write_synthetic_task

    logging.disable(logging.WARNING)
    torch.set_num_threads(threads)
    config = None if config_name == "tiny" else clip_b_sized_retriever_config()
    model = build_tiny_retriever(seed=0, config=config)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for name, p in model.named_parameters()
                    if "text_model" not in name and "vision_model" not in name)
    with tempfile.TemporaryDirectory() as tmp:
        # mid: 8 entities, two batches per epoch (the first epoch fills the cache)
        per_entity = max(1, batch_size * 2 // 8) if config_name == "mid" else 8
        paths = write_synthetic_task(tmp, colours=2 if config_name == "mid" else 8,
                                     words=4 if config_name == "mid" else 8,
                                     train_per_entity=per_entity, val_per_entity=1)
        train = load_train_queries(paths["train"], paths["images"])
        passages = JsonlPassages(paths["passages"], paths["images"])
        steps_per_epoch = len(train) // batch_size
        trainer = ReTTrainer(model, TrainConfig(
            output_dir=f"{tmp}/out", max_steps=steps_per_epoch * epochs, batch_size=batch_size,
            warmup_steps=1, cache_features=cache, log_every=10 ** 6, report_to=["jsonl"]),
            train, passages)
        start = time.perf_counter()
        trainer.train(stop_at=steps_per_epoch)
        first = time.perf_counter() - start
        start = time.perf_counter()
        trainer.train()
        rest = time.perf_counter() - start
    queue.put({"config": config_name, "cache": cache, "batch": batch_size,
               "params_m": params / 1e6, "trainable_m": trainable / 1e6,
               "steps": steps_per_epoch * epochs,
               "first_epoch_steps_per_s": steps_per_epoch / first,
               "steps_per_s": steps_per_epoch * (epochs - 1) / rest,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,mid")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="queries per step (default: 32 tiny, 8 mid)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per case, the first fills the cache (default 4 tiny, 3 mid)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    for name in args.configs.split(","):
        batch = args.batch_size or (32 if name == "tiny" else 8)
        epochs = args.epochs or (4 if name == "tiny" else 3)
        for cache in (False, True):
            rows.append(run_fresh(_worker, name, cache, batch, max(2, epochs), args.threads))
            print(f"  done {name} cache={cache}: {rows[-1]['steps_per_s']:.3f} steps/s",
                  flush=True)
    print(f"\nReTTrainer on {platform.processor() or platform.machine()}, {args.threads} threads, "
          "CPU, float32; baseline = backbones run every step, ours = cached backbone features")
    header = (f"{'config':6} {'params':>8} {'trained':>8} {'batch':>5} {'mode':>9} "
              f"{'epoch-1 steps/s':>15} {'steps/s':>9} {'speed-up':>8} {'peak RSS MB':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        base = next(b for b in rows if b["config"] == r["config"] and not b["cache"])
        print(f"{r['config']:6} {r['params_m']:7.1f}M {r['trainable_m']:7.1f}M {r['batch']:5d} "
              f"{'ours' if r['cache'] else 'baseline':>9} {r['first_epoch_steps_per_s']:15.3f} "
              f"{r['steps_per_s']:9.3f} {r['steps_per_s'] / base['steps_per_s']:8.2f} "
              f"{r['peak_rss_mb']:12.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
