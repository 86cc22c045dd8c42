"""The step between retrieval and generation: settings, flags, and evidence reordered with the
first-stage numbers kept."""

import pytest

from rag_vqa.confidence import Calibration
from rag_vqa.pipeline import Evidence
from rag_vqa.reranking import AnswerSettings, Reranking, RerankSettings, stage_from_flags
from retriever.rerank import ArticleReranker, RerankerConfig, RerankPipeline


def evidence():
    rows = [("a1", "A", 0.9), ("b1", "B", 0.85), ("b2", "B", 0.8), ("a2", "A", 0.3)]
    return [Evidence(rank, pid, score, f"text {pid}", article_id=art)
            for rank, (pid, art, score) in enumerate(rows, start=1)]


def test_rerank_reorders_and_cuts_to_k():
    stage = ArticleReranker(RerankerConfig(kind="article", aggregate="sum", articles=1))
    reranking = Reranking(RerankSettings(stages=[{"kind": "article"}], k_retrieve=30),
                          pipeline=RerankPipeline([stage]))
    assert reranking.retrieve_depth(5) == 30
    shown, ranked = reranking.rerank("q", None, evidence(), k=1)
    # B sums to 1.65 > A's 1.2: its best passage is shown first
    assert [e.passage_id for e in shown] == ["b1"] and shown[0].rank == 1
    assert shown[0].score == pytest.approx(1.65)
    assert [r.passage_id for r in ranked] == ["b1", "b2"]
    assert ranked[0].first_stage_rank == 2 and ranked[0].first_stage_score == 0.85


def test_without_stages_nothing_changes():
    reranking = Reranking(RerankSettings())
    assert reranking.retrieve_depth(5) == 5
    shown, ranked = reranking.rerank("q", None, evidence(), k=2)
    assert shown == evidence()[:2] and ranked == []


def test_confidence_and_abstention(tmp_path):
    Calibration(["margin"], [10.0], -1.0).save(tmp_path / "c.json")
    reranking = Reranking(RerankSettings(), AnswerSettings(calibration=str(tmp_path / "c.json"),
                                                           abstain_below=0.5))
    # margin 0.05 -> sigmoid(-0.5) < 0.5: abstain; margin 0.2 -> sigmoid(1) > 0.5: answer
    low = reranking.confidence(evidence())
    assert low == pytest.approx(1 / (1 + 2.718281828 ** 0.5), abs=1e-6)
    assert reranking.abstains(low)
    high = reranking.confidence([Evidence(1, "x", 1.0, ""), Evidence(2, "y", 0.8, "")])
    assert not reranking.abstains(high)
    assert not Reranking(RerankSettings()).abstains(0.0)   # no threshold: always answer


@pytest.mark.parametrize("flags, stage", [
    ((None, None, None), None),
    (("BAAI/bge-reranker-base", None, 5),
     {"kind": "cross-encoder", "model": "BAAI/bge-reranker-base", "top": 5}),
    ((None, "article", 3), {"kind": "article", "top": 3}),
    (("m", "mllm", None), {"kind": "mllm", "model": "m"}),
])
def test_flags_make_a_stage(flags, stage):
    assert stage_from_flags(*flags) == stage


@pytest.mark.parametrize("flags, message", [
    ((None, None, 5), "--rerank-top needs"),
    ((None, "mllm", None), "needs reranker.model"),
])
def test_bad_flags(flags, message):
    with pytest.raises(ValueError, match=message):
        stage_from_flags(*flags)


@pytest.mark.parametrize("reranker, answer, message", [
    ({"k_retrieve": 0}, {}, "k_retrieve"),
    ({"stages": [{"kind": "nope"}]}, {}, r"stages\[0\]: reranker.kind"),
    ({"stages": {"kind": "article"}}, {}, "list of tables"),
    ({}, {"abstain_below": 2}, "abstain_below"),
    ({}, {"abstain_text": " "}, "abstain_text"),
])
def test_bad_settings(reranker, answer, message):
    with pytest.raises(ValueError, match=message):
        Reranking.from_mapping(reranker, answer)
