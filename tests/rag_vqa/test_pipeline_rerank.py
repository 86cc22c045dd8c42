"""The reranking stage inside RagVQA (tiny profile, sample KB): more candidates retrieved, the
best k shown, both stages' ranks kept, confidence, abstention and citations on the Answer."""

import json

import pytest

from generator import AnswerStream
from rag_vqa import RagVQA
from rag_vqa.config import load_config
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import question_image, sample_questions
from retriever.rerank import build_pipeline
from retriever.rerank.tiny import build_tiny_reranker

STAGES = [{"kind": "article", "articles": 2},
          {"kind": "causal-lm", "model": "rag-vqa/tiny-random-llama", "top": 4}]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return sample_pipeline("tiny", tmp_path_factory.mktemp("cache"), k=3)


def reranked(base, **answer):
    config = load_config(None, profile="tiny", k=3, index=base.config.index.__dict__,
                         reranker={"k_retrieve": 10, "stages": STAGES}, answer=answer)
    stages = build_pipeline([STAGES[0], build_tiny_reranker("causal-lm", top=4)])
    c = base.components
    return RagVQA(config, retriever=c.retriever, generator=c.generator, index=c.index,
                  store=c.store, reranker=stages)


def test_answer_shows_the_reranked_best_k(base):
    pipe = reranked(base)
    q = sample_questions()[0]
    answer = pipe.answer(question_image(q), q.question)
    first_stage = base.retrieve(question_image(q), q.question, k=10)
    assert len(answer.candidates) == 4          # the last stage keeps 4 of the 10
    assert [e.passage_id for e in answer.evidence] == \
        [c["passage_id"] for c in answer.candidates[:3]]
    assert [e.rank for e in answer.evidence] == [1, 2, 3]
    by_id = {e.passage_id: e for e in first_stage}
    for e in answer.evidence:
        assert e.first_stage_rank == by_id[e.passage_id].rank
        assert e.first_stage_score == by_id[e.passage_id].score
        assert 0 < e.rerank_probability < 1
    articles = {by_id[c["passage_id"]].article_id for c in answer.candidates}
    assert len(articles) <= 2                   # the article stage kept two articles
    assert [s["stage"] for s in answer.candidates[0]["stages"]] == \
        ["article", "causal-lm:rag-vqa/tiny-random-llama"]
    assert "rerank" in answer.timings and 0 < answer.confidence < 1
    assert not answer.abstained
    assert [e.passage_id for e in pipe.retrieve(question_image(q), q.question)] == \
        [e.passage_id for e in answer.evidence]
    assert [r["passage_id"] for r in answer.first_stage] == [e.passage_id for e in first_stage]
    assert base.answer(question_image(q), q.question).first_stage == []
    assert pipe.identity()["reranker"]["stages"] == STAGES
    assert "reranker" not in base.identity()
    json.dumps(answer.to_dict())


def test_abstains_below_the_threshold_and_cites_what_it_was_shown(base):
    pipe = reranked(base, abstain_below=1.0, abstain_text="no idea", cite=True)
    q = sample_questions()[1]
    answer = pipe.answer(question_image(q), q.question)
    assert answer.abstained and answer.answer == "no idea"
    assert set(answer.citations) <= set(answer.used_passages)
    streamed = pipe.stream(question_image(q), q.question)
    for _ in streamed:
        pass
    assert streamed.result.abstained and streamed.result.candidates


def _never(*args, **kwargs):
    raise AssertionError("the generator ran for an answer that abstains")


def test_abstention_is_decided_before_generation_streamed_or_not(base, monkeypatch):
    pipe = reranked(base, abstain_below=1.0, abstain_text="no idea")
    monkeypatch.setattr(pipe.components.generator, "stream", _never)
    monkeypatch.setattr(pipe.components.generator, "answer_batch", _never)
    q = sample_questions()[2]
    streamed = pipe.stream(question_image(q), q.question)
    assert isinstance(streamed, AnswerStream)     # one shape with the generator's stream
    assert len(streamed.evidence) == 3 and streamed.used_passages == streamed.passage_ids == []
    assert list(streamed) == ["no idea"]          # never the model's words
    answer = pipe.answer(question_image(q), q.question)
    for got in (streamed.result, answer):
        assert got.abstained and got.answer == "no idea" and got.raw == got.prompt == ""
        assert got.confidence < 1 and got.candidates and got.error is None
    assert [e.passage_id for e in streamed.result.evidence] == \
        [e.passage_id for e in answer.evidence]


def test_a_batch_generates_only_the_answers_that_do_not_abstain(base):
    items = [(question_image(q), q.question) for q in sample_questions()[:4]]
    sure = reranked(base).answer_batch(items)
    ranked = sorted(sure, key=lambda a: a.confidence)
    low, high = ranked[0].confidence, ranked[-1].confidence
    assert low < high
    picky = reranked(base, abstain_below=(low + high) / 2).answer_batch(items)
    for before, after in zip(sure, picky):
        assert after.confidence == before.confidence
        if after.confidence < (low + high) / 2:
            assert after.abstained and after.prompt == "" and after.used_passages == []
        else:
            assert not after.abstained and after.prompt == before.prompt
            assert after.answer == before.answer and after.used_passages == before.used_passages
    assert any(a.abstained for a in picky) and not all(a.abstained for a in picky)


def test_identity_names_the_cite_settings_only_when_citing(base):
    assert "cite" not in base.identity()["generator"]["prompt"]   # older runs' identity
    prompt = reranked(base, cite=True).identity()["generator"]["prompt"]
    assert prompt["cite"] and prompt["cite_instruction"]
