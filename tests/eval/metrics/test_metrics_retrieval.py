"""Retrieval metrics with the M2KR / ReT conventions, checked by hand."""

from __future__ import annotations

import pytest

from eval.metrics import (
    KS,
    MissingPredictionsError,
    entity_recall_at_k,
    pseudo_recall_at_k,
    recall_at_k,
    score_retrieval,
)


def test_recall_at_k():
    ranked = ["p9", "p3", "p7", "p1"]
    assert recall_at_k(ranked, ["p7"], ks=(1, 2, 3, 5)) == {1: 0.0, 2: 0.0, 3: 1.0, 5: 1.0}
    assert recall_at_k(ranked, "p9", ks=(1,)) == {1: 1.0}          # a single positive id
    assert recall_at_k(ranked, ["x", "p1"], ks=(3, 4)) == {3: 0.0, 4: 1.0}
    assert recall_at_k([1, 2], [2], ks=(2,)) == {2: 1.0}           # ids compared as strings
    assert recall_at_k([], ["p1"]) == {k: 0.0 for k in KS}
    assert KS == (1, 5, 10, 20, 50, 100)


def test_pseudo_recall_at_k():
    texts = ["Nothing here.", None, "The tower is 330 metres TALL, built by Gustave Eiffel."]
    assert pseudo_recall_at_k(texts, ["  gustave eiffel "], ks=(1, 2, 3)) == \
        {1: 0.0, 2: 0.0, 3: 1.0}
    # numerical InfoSeek answers use str(wikidata value), as the ReT authors' code
    assert pseudo_recall_at_k(texts, [{"wikidata": 330, "range": [297, 363]}], ks=(3,)) == \
        {3: 1.0}
    assert pseudo_recall_at_k(texts, [{"wikidata": 330.0}], ks=(3,)) == {3: 0.0}  # "330.0"
    assert pseudo_recall_at_k(texts, ["Paris", "tall"], ks=(3,)) == {3: 1.0}
    assert pseudo_recall_at_k(texts, [""], ks=(1,)) == {1: 1.0}   # empty answer: the quirk


def test_entity_recall_counts_passages_then_dedupes_articles():
    # passages of articles A, A, A, B, C: by default K counts passages (metrics.md)
    arts = ["A", "A", "A", "B", "C"]
    assert entity_recall_at_k(arts, "B", ks=(2, 4)) == {2: 0.0, 4: 1.0}
    assert entity_recall_at_k(arts, ["X", "C"], ks=(4, 5)) == {4: 0.0, 5: 1.0}
    # the distinct-articles variant
    assert entity_recall_at_k(arts, "B", ks=(1, 2, 3), unique_articles=True) == \
        {1: 0.0, 2: 1.0, 3: 1.0}
    assert entity_recall_at_k(arts, ["X", "C"], ks=(2, 3), unique_articles=True) == \
        {2: 0.0, 3: 1.0}


def test_score_retrieval_averages_over_queries():
    rankings = {"q1": ["p1", "p2"], "q2": ["p3", "p1"]}
    texts = {"p1": "Paris is big", "p2": "Lyon", "p3": None}
    articles = {"p1": "Paris", "p2": "Lyon", "p3": "Paris"}
    result = score_retrieval(
        rankings, positives={"q1": "p2", "q2": ["p3"]}, answers={"q1": ["lyon"], "q2": ["rome"]},
        passage_texts=texts, gold_articles={"q1": "Paris", "q2": "Lyon"},
        passage_articles=articles, ks=(1, 2))
    assert result.recall == {1: 0.5, 2: 1.0}           # q1 hit at 2, q2 at 1
    assert result.pseudo_recall == {1: 0.0, 2: 0.5}    # q1 "lyon" in p2; q2 never
    assert result.entity_recall == {1: 0.5, 2: 0.5}    # q2: articles [Paris] only
    assert result.count == 2
    assert result.to_dict()["recall"] == {"@1": 0.5, "@2": 1.0}


def test_score_retrieval_missing_rankings_and_inputs():
    with pytest.raises(MissingPredictionsError, match="1 of 2 queries"):
        score_retrieval({"q1": ["p1"]}, positives={"q1": "p1", "q2": "p2"})
    result = score_retrieval({"q1": ["p1"]}, positives={"q1": "p1", "q2": "p2"}, ks=(1,),
                             allow_missing=True)
    assert result.recall == {1: 0.5} and result.missing_ids == ["q2"]
    assert result.pseudo_recall is None and result.entity_recall is None
    with pytest.raises(ValueError, match="passage_texts"):
        score_retrieval({}, answers={"q1": ["x"]})
    with pytest.raises(ValueError, match="not in passage_articles"):
        score_retrieval({"q1": ["p9"]}, gold_articles={"q1": "A"}, passage_articles={})
