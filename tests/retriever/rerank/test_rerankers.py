"""Model rerankers over tiny random models: scores recomputed by hand from the model's logits,
batching that changes nothing, ranks and both stages' scores kept, stages composed."""

import math

import pytest
import torch
from PIL import Image

from retriever.rerank import (
    Candidate,
    RerankerConfig,
    RerankerLoadError,
    build_pipeline,
    build_reranker,
)
from retriever.rerank.modeling_yesno import answer_token_ids
from retriever.rerank.tiny import build_tiny_reranker

QUESTION = "What is the capital of the country with this flag?"


def candidates(n=7):
    return [Candidate(f"p{i}", f"Passage {i}: the capital is City{i} and it has {i} rivers.",
                      round(1.0 - i / 10, 3), i + 1, f"Country{i % 3}", None, f"a{i % 3}")
            for i in range(n)]


@pytest.fixture(scope="module")
def image():
    return Image.new("RGB", (40, 30), (200, 30, 30))


@pytest.fixture(scope="module")
def causal():
    return build_tiny_reranker("causal-lm", batch_size=3)


def yes_no_margin(reranker, inputs):
    """log-odds of yes vs no at the last position of one unpadded prompt."""
    with torch.no_grad():
        logits = reranker.model(**inputs).logits[0, -1].float()
    return float(torch.logsumexp(logits[reranker.yes_ids], -1) -
                 torch.logsumexp(logits[reranker.no_ids], -1))


def test_causal_lm_scores_are_the_yes_log_odds_of_each_prompt_alone(causal):
    cands = candidates()
    out = causal.rerank(QUESTION, None, cands)
    by_id = {r.passage_id: r for r in out}
    for c in cands:
        text = causal.render(causal.body(QUESTION, by_id[c.passage_id]))
        inputs = causal.tokenizer([text], return_tensors="pt", add_special_tokens=False)
        ref = yes_no_margin(causal, dict(inputs))
        got = by_id[c.passage_id]
        assert got.score == pytest.approx(ref, abs=1e-4)   # left padding changes nothing
        assert got.probability == pytest.approx(1 / (1 + math.exp(-ref)), abs=1e-5)
        assert (got.first_stage_score, got.first_stage_rank) == (c.score, c.rank)
    assert [r.rank for r in out] == list(range(1, len(cands) + 1))
    assert [r.score for r in out] == sorted((r.score for r in out), reverse=True)
    assert "Country1: Passage 1" in causal.body(QUESTION, by_id["p1"])


def test_batch_size_does_not_change_scores(causal):
    one = build_tiny_reranker("causal-lm", batch_size=1).rerank(QUESTION, None, candidates())
    many = causal.rerank(QUESTION, None, candidates())
    assert [r.passage_id for r in one] == [r.passage_id for r in many]
    for a, b in zip(one, many):
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_top_cuts_and_stage_is_named(causal):
    reranker = build_tiny_reranker("causal-lm", top=2)
    out = reranker.rerank(QUESTION, None, candidates())
    full = causal.rerank(QUESTION, None, candidates())
    assert [r.passage_id for r in out] == [r.passage_id for r in full[:2]]
    assert out[0].stages[0].stage == "causal-lm:rag-vqa/tiny-random-llama"


def test_mllm_reads_the_image(image):
    reranker = build_tiny_reranker("mllm", batch_size=4)
    with_image = reranker.rerank(QUESTION, image, candidates(5))
    without = reranker.rerank(QUESTION, None, candidates(5))
    scores = {r.passage_id: r.score for r in with_image}
    assert any(abs(scores[r.passage_id] - r.score) > 1e-6 for r in without)
    item = with_image[0]
    text = reranker.render(reranker.body(QUESTION, item), True)
    inputs = reranker.processor(text=[text], images=[image], return_tensors="pt",
                                add_special_tokens=False)
    assert item.score == pytest.approx(yes_no_margin(reranker, dict(inputs)), abs=1e-4)


@pytest.mark.parametrize("labels", [1, 2])
def test_cross_encoder_scores_the_question_passage_pair(labels):
    from retriever.rerank.modeling_cross_encoder import CrossEncoderReranker
    from retriever.rerank.tiny import tiny_cross_encoder

    model, tokenizer = tiny_cross_encoder(seed=1, num_labels=labels)
    config = RerankerConfig(kind="cross-encoder", model="tiny", batch_size=2)
    reranker = CrossEncoderReranker.from_components(config, model, tokenizer)
    cands = candidates(5)
    out = {r.passage_id: r for r in reranker.rerank(QUESTION, None, cands)}
    for c in cands:
        enc = tokenizer([QUESTION], [f"{c.title}: {c.text}"], return_tensors="pt")
        assert enc["token_type_ids"][0].max() == 1   # the pair is two segments
        with torch.no_grad():
            logits = model(**enc).logits[0]
        ref = float(logits[0]) if labels == 1 else float(logits[1] - logits[0])
        assert out[c.passage_id].score == pytest.approx(ref, abs=1e-4)
        assert 0 < out[c.passage_id].probability < 1


def test_stages_compose_article_then_model(causal):
    cands = candidates(9)
    pipeline = build_pipeline([{"kind": "article", "articles": 1}, causal])
    out = pipeline.rerank(QUESTION, None, cands, top=2)
    best_article = cands[0].article_id           # p0 has the best first-stage score
    kept = [c for c in cands if c.article_id == best_article]
    expected = causal.rerank(QUESTION, None, kept)
    assert [r.passage_id for r in out] == [r.passage_id for r in expected[:2]]
    assert [s.stage for s in out[0].stages] == ["article", causal.name]
    assert out[0].first_stage_rank == next(c.rank for c in cands
                                           if c.passage_id == out[0].passage_id)
    assert pipeline.names == ["article", causal.name]


def test_candidates_from_evidence_like_objects_and_dicts(causal):
    rows = [{"passage_id": "x", "text": "Paris is the capital.", "score": 0.5},
            {"passage_id": "y", "text": "Rome is the capital.", "score": 0.4, "rank": 7}]
    out = causal.rerank(QUESTION, None, rows)
    assert sorted(r.first_stage_rank for r in out) == [1, 7]
    assert causal.rerank(QUESTION, None, []) == []
    with pytest.raises(ValueError, match="no passage_id"):
        causal.rerank(QUESTION, None, [{"text": "t"}])
    with pytest.raises(ValueError, match="empty"):
        causal.rerank("  ", None, rows)


def test_yes_and_no_tokens_never_overlap(causal):
    yes, no = answer_token_ids(causal.tokenizer, ["yes"], ["no"])
    assert not set(yes) & set(no)
    assert causal.tokenizer.convert_ids_to_tokens(yes) == ["y"]   # " yes" starts with "Ġ"
    with pytest.raises(ValueError, match="tells"):
        answer_token_ids(causal.tokenizer, ["yes"], ["yak"])


def test_a_missing_model_fails_with_the_stage_named(tmp_path):
    with pytest.raises(RerankerLoadError, match="reranker model .*causal-lm"):
        build_reranker({"kind": "causal-lm", "model": str(tmp_path / "nothing-here"),
                        "local_files_only": True})


def test_query_likelihood_is_the_mean_log_probability_of_the_question():
    reranker = build_tiny_reranker("causal-lm", scoring="query-likelihood", batch_size=4)
    cands = candidates(5)
    out = {r.passage_id: r for r in reranker.rerank(QUESTION, None, cands)}
    for c in cands:
        prefix = reranker.body(QUESTION, out[c.passage_id], reranker.config.question_prompt)
        ids = reranker.tokenizer(prefix + " " + QUESTION, return_tensors="pt")["input_ids"]
        n_prefix = len(reranker.tokenizer(prefix)["input_ids"])
        with torch.no_grad():
            logprobs = torch.log_softmax(reranker.model(input_ids=ids).logits[0].float(), -1)
        ref = torch.stack([logprobs[t - 1, ids[0, t]] for t in range(n_prefix, ids.shape[1])])
        assert out[c.passage_id].score == pytest.approx(float(ref.mean()), abs=1e-4)
        assert out[c.passage_id].probability is None
    with pytest.raises(ValueError, match="for causal-lm"):
        RerankerConfig(kind="mllm", model="m", scoring="query-likelihood")
