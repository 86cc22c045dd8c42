"""The article stage against a reference grouping written out in the test."""

import pytest

from retriever.rerank import ArticleReranker, Candidate, RerankerConfig

SCORES = [("a1", "A", 0.9), ("b1", "B", 0.85), ("b2", "B", 0.8), ("c1", "C", 0.7),
          ("b3", "B", 0.6), ("a2", "A", 0.5), ("n1", None, 0.95), ("c2", "C", 0.4)]


def cands():
    return [Candidate(pid, f"text {pid}", s, r, None, None, art)
            for r, (pid, art, s) in enumerate(SCORES, start=1)]


def reference(aggregate, articles):
    groups = {}
    for pid, art, s in SCORES:
        groups.setdefault(art or f"p:{pid}", []).append((pid, s))
    agg = {k: (max if aggregate == "max" else sum)(s for _, s in v) for k, v in groups.items()}
    best = sorted(groups, key=lambda k: -agg[k])[:articles]
    return [pid for k in best for pid, _ in sorted(groups[k], key=lambda x: -x[1])], agg


@pytest.mark.parametrize("aggregate", ["max", "sum"])
def test_articles_then_sections(aggregate):
    stage = ArticleReranker(RerankerConfig(kind="article", aggregate=aggregate, articles=2))
    out = stage.rerank("q", None, cands())
    expected, agg = reference(aggregate, 2)
    assert [r.passage_id for r in out] == expected
    assert [r.rank for r in out] == list(range(1, len(out) + 1))
    for r in out:
        key = r.candidate.article_id or f"p:{r.passage_id}"
        assert r.score == pytest.approx(agg[key]) and r.probability is None
        assert r.first_stage_score == dict((p, s) for p, _, s in SCORES)[r.passage_id]


def test_max_and_sum_disagree_here():
    # B has three good passages: it wins on the sum, the lone passage n1 wins on the best
    assert reference("max", 1)[0] == ["n1"]
    assert reference("sum", 1)[0] == ["b1", "b2", "b3"]


def test_top_cuts_after_grouping():
    stage = ArticleReranker(RerankerConfig(kind="article", aggregate="sum", articles=3, top=4))
    assert [r.passage_id for r in stage.rerank("q", None, cands())] == \
        reference("sum", 3)[0][:4]
