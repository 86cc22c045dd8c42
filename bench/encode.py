"""Benchmark ``ReTRetriever.encode_documents``: documents/second and peak memory (RSS).

Configurations: ``tiny`` (the test model) and ``mid`` (d=1024 cells on randomly initialised CLIP
ViT-B/16-sized towers, 224 px, layer_strategy clip_vit_b). Each (configuration, batch size) runs
in a fresh process so its peak RSS is its own. The baseline is the reference's computation on
the same weights: batches in input order, both backbones run on every row (a missing image is
encoded as the black placeholder, as the authors' code does), then the same recurrent head.
Outputs are identical; one document in four has no image, as in knowledge bases.

    python bench/encode.py                      # tiny and mid, batch sizes 1/8/32
    python bench/encode.py --configs mid --batch-sizes 8 --docs 64
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
from _fresh import run_fresh


def make_documents(n: int, seed: int = 0):
    """Passages of varied length; three in four have an image (random pixels, 320x240)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    words = ("the cathedral bridge river tower museum painting bird species flower mountain "
             "city built century architect king battle island lake painting station").split()
    texts, images = [], []
    for i in range(n):
        texts.append(" ".join(rng.choice(words, size=int(rng.integers(5, 70)))))
        if i % 4 == 3:
            images.append(None)
        else:
            pixels = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
            images.append(Image.fromarray(pixels))
    return texts, images


def build(config_name: str):
    from retriever.tiny import build_tiny_retriever, clip_b_sized_retriever_config

    if config_name == "tiny":
        return build_tiny_retriever(seed=0)
    return build_tiny_retriever(seed=0, config=clip_b_sized_retriever_config())


def baseline_encode(model, texts, images, batch_size):
    import torch

    from retriever.modeling_ret import run_backbones

    proc, enc = model.document_processor, model.document_encoder
    cfg = enc.config
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            x = proc(texts[start:start + batch_size], images[start:start + batch_size])
            x = x.to(model.device, model.dtype)
            states = run_backbones(enc.text_model, enc.vision_model, x.input_ids,
                                   x.attention_mask, x.pixel_values)
            states = states.select(cfg.text_layer_indices, cfg.vision_layer_indices)
            out.append(enc.head(states, x.text_mask, x.image_mask).float())
    return torch.cat(out)


def _worker(config_name: str, batch_size: int, n_docs: int, mode: str, threads: int, dtype: str,
            queue) -> None:
    import torch

    torch.set_num_threads(threads)
    model = build(config_name).to(getattr(torch, dtype))
    params = sum(p.numel() for p in model.parameters())
    texts, images = make_documents(n_docs)
    warm = min(batch_size, 4)
    model.encode_documents(texts[:warm], images[:warm], batch_size=batch_size)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if mode == "ours":
        model.encode_documents(texts, images, batch_size=batch_size, show_progress=False)
    else:
        baseline_encode(model, texts, images, batch_size)
    seconds = time.perf_counter() - start
    queue.put({"config": config_name, "mode": mode, "batch": batch_size, "docs": n_docs,
               "dtype": dtype,
               "seconds": seconds, "docs_per_s": n_docs / seconds, "params_m": params / 1e6,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "rss_after_load_mb": rss_model})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,mid")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--docs", type=int, default=None,
                        help="documents per run (default: 256 tiny, 48 mid)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", default="float32", help="e.g. float32,bfloat16")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    modes = ["ours"] if args.no_baseline else ["ours", "baseline"]
    for config_name in args.configs.split(","):
        n_docs = args.docs or (256 if config_name == "tiny" else 48)
        for dtype in args.dtypes.split(","):
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                for mode in modes:
                    rows.append(run_fresh(_worker, config_name, batch, n_docs, mode,
                                          args.threads, dtype))
                    r = rows[-1]
                    print(f"  done {config_name} {dtype} batch={batch} {mode}: "
                          f"{r['docs_per_s']:.2f} docs/s", flush=True)
    print(f"\nencode_documents on {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, CPU")
    header = (f"{'config':6} {'dtype':8} {'params':>8} {'batch':>5} {'docs':>5} "
              f"{'ours docs/s':>12} {'baseline docs/s':>16} {'speed-up':>8} "
              f"{'peak RSS MB':>12} {'RSS after load':>15}")
    print(header)
    print("-" * len(header))
    for r in (r for r in rows if r["mode"] == "ours"):
        base = next((b for b in rows if b["mode"] == "baseline" and b["config"] == r["config"]
                     and b["batch"] == r["batch"] and b["dtype"] == r["dtype"]), None)
        base_rate = f"{base['docs_per_s']:16.2f}" if base else f"{'-':>16}"
        speedup = f"{r['docs_per_s'] / base['docs_per_s']:8.2f}" if base else f"{'-':>8}"
        print(f"{r['config']:6} {r['dtype']:8} {r['params_m']:7.1f}M {r['batch']:5d} "
              f"{r['docs']:5d} {r['docs_per_s']:12.2f} {base_rate} {speedup} "
              f"{r['peak_rss_mb']:12.0f} {r['rss_after_load_mb']:15.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
