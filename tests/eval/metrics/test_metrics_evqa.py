"""E-VQA scorer: the official preprocessing, EM, multi-answer IoU and aggregation by hand."""

from __future__ import annotations

import json

import pytest

from eval.metrics import (
    EVQAReference,
    MetricsInputError,
    MissingPredictionsError,
    load_evqa_references,
    multi_answer_em,
    preprocess_answer,
    score_evqa,
    single_answer_em,
)
from eval.metrics.evqa_tables import CONTRACTIONS


@pytest.mark.parametrize("text, expected", [
    ("The Eiffel Tower", "eiffel tower"),
    ("3.0", "30"),                                    # punctuation deleted, not spaced
    ("Two", "2"), ("ten", "10"), ("None", "0"), ("zero", "0"),
    ("True", "yes"), ("false", "no"), ("entailment", "yes"), ("contradiction", "no"),
    ("dont", "don't"), ("don't", "don't"),           # apostrophe deleted, then restored
    ("maam", "ma'am"), ("twas", "'twas"), ("yall", "y'all"),
    ("somebody'd", "somebodyd"),                      # the "somebody'd" key can never match
    ("Im", "im"), ("I've", "ive"),                    # capitalised keys never match
    ("The answer is Paris", "paris"),
    ("<extra_id_0> Paris", "paris"),
    ("<EXTRA_ID_0> Paris", "paris"),                  # lowercased before the prefix check
    ("<extra_id_0> x <extra_id_0> y", "x y"),         # every occurrence is removed
    ("x <extra_id_0> y", "x extraid0 y"),             # not a prefix: just punctuation
    ("  \tA\nred   car ", "red car"),
    ("‘quoted’ `tick´ snake_case", "quoted tick snakecase"),
    ("an", ""),
])
def test_preprocess_answer(text, expected):
    assert preprocess_answer(text) == expected


def test_contraction_table_quirks_are_kept():
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["somebody'd"] == "somebodyd"
    assert {"Im", "Ive", "Id've", "I'dve"} <= set(CONTRACTIONS)


def test_single_answer_em():
    assert single_answer_em("Paris", "paris!")
    assert single_answer_em("2", "two")
    assert not single_answer_em("Paris", "Lyon")
    with pytest.raises(ValueError, match="empty after preprocessing"):
        single_answer_em("the", "anything")


@pytest.mark.parametrize("candidate, expected", [
    ("Red, blue and green", True),            # IoU 3/3
    ("red & blue", True),                     # 2/3
    ("red and blue", True),                   # 2/3
    ("red, red, blue", True),                 # duplicates collapse: {red, blue} -> 2/3
    ("red", False),                           # 1/3
    ("red, red, purple", False),              # {red, purple} vs 3 -> 1/4
    ("red AND blue", False),                  # ' and ' is case-sensitive: one item
    ("The red, a blue, an orange, green", True),   # {red, blue, orange, green} -> 3/4
    ("", False),
])
def test_multi_answer_em(candidate, expected):
    assert multi_answer_em("red&&blue&&Green", candidate) is expected


def test_multi_answer_boundary_and_errors():
    assert multi_answer_em("x&&y", "x")                   # 1/2 reaches the 0.5 threshold
    assert not multi_answer_em("x&&y", "x, z")            # 1/3
    with pytest.raises(ValueError, match="no item left"):
        multi_answer_em("&&the", "x")


def rows(*spec):
    return {str(i): EVQAReference(str(i), q, a.split("|"), t) for i, (q, a, t) in enumerate(spec)}


REFS = rows(
    ("Which city?", "Paris", "templated"),
    ("When built?", "1889|in 1889", "automatic"),
    ("Which colours?", "red&&blue&&green", "multi_answer"),
    ("How many?", "two", "2_hop"),
    ("Known?", "dont know", "automatic"),
)
PREDS = [{"data_id": "0", "prediction": "paris"}, {"data_id": "1", "prediction": "1890"},
         {"data_id": "2", "prediction": "red and blue"}, {"data_id": 3, "prediction": "2"},
         {"data_id": "4", "prediction": "don't know"}]


def test_end_to_end_by_hand():
    # 0 templated  "paris" == "paris"                                  -> 1
    # 1 automatic  "1890" vs "1889" / "in 1889"                        -> 0
    # 2 multi      {red, blue} vs {red, blue, green}: IoU 2/3 >= 0.5   -> 1
    # 3 2_hop      "2" vs "two" -> "2" (an int data_id is accepted)    -> 1
    # 4 automatic  "don't know" -> "dont know" -> "don't know"         -> 1
    # single-hop (not 2_hop): 3/4 = 75.0 ; all: 4/5 = 80.0
    result = score_evqa(PREDS, REFS)
    assert result.single_hop.accuracy == 75.0 and result.single_hop.count == 4
    assert result.all.accuracy == 80.0 and result.all.count == 5
    assert {k: (v.accuracy, v.count) for k, v in result.per_type.items()} == {
        "templated": (100.0, 1), "automatic": (50.0, 2), "multi_answer": (100.0, 1),
        "2_hop": (100.0, 1)}
    assert result.method == "EM"
    d = {x.data_id: x for x in result.details}
    assert d["2"].normalized_prediction == ["red", "blue"]
    assert d["2"].normalized_references == [["red", "blue", "green"]]
    assert d["1"].normalized_references == ["1889", "in 1889"]
    out = result.to_json()
    assert set(out) == {"single_hop", "all", "per_type", "method", "coverage"}
    assert out["single_hop"] == {"accuracy": 75.0, "count": 4}
    json.dumps(out)


def test_accuracy_keeps_full_precision():
    refs = rows(*[("q", "yes", "templated")] * 3)
    result = score_evqa([{"data_id": "0", "prediction": "yes"},
                         {"data_id": "1", "prediction": "no"},
                         {"data_id": "2", "prediction": "no"}], refs)
    assert result.all.accuracy == (1 / 3) * 100


def test_alternatives_take_the_max():
    refs = rows(("q", "Paris|Lyon", "automatic"))
    assert score_evqa([{"data_id": "0", "prediction": "lyon"}], refs).all.accuracy == 100.0


def test_empty_references_are_errors_naming_the_question():
    with pytest.raises(ValueError, match=r"data_id '0'.*empty"):
        score_evqa([{"data_id": "0", "prediction": "x"}], rows(("q", "Paris|", "automatic")))
    with pytest.raises(ValueError, match=r"data_id '0'.*empty after preprocessing"):
        score_evqa([{"data_id": "0", "prediction": "x"}], rows(("q", "The", "templated")))


def test_unknown_question_type_is_an_error():
    with pytest.raises(ValueError, match=r"data_id '0'.*unknown question_type 'list'"):
        score_evqa([{"data_id": "0", "prediction": "x"}], rows(("q", "x", "list")))


def test_missing_duplicate_and_unknown_ids():
    with pytest.raises(MissingPredictionsError, match=r"1 of 5 .*automatic: 1"):
        score_evqa(PREDS[:-1], REFS)
    result = score_evqa(PREDS[:-1] + [{"data_id": "0", "prediction": "lyon"},
                                      {"data_id": "99", "prediction": "x"}],
                        REFS, allow_missing=True)
    cov = result.coverage
    assert cov.missing == 1 and cov.missing_by_split["automatic"] == 1
    assert cov.duplicate_ids == ["0"] and cov.unknown_ids == ["99"]
    # 0 scored twice (1 then 0), 1: 0, 2: 1, 3: 1 -> 3/5 ; single hop 2/4
    assert result.all.count == 5 and result.all.accuracy == 60.0
    assert result.single_hop.accuracy == 50.0


class FakeBEM:
    """Stands in for BEMScorer: P(equivalent) from a table of (question, reference,
    candidate)."""

    model_id = "fake/bem"

    def __init__(self, table):
        self.table = table
        self.calls = []

    def probabilities(self, examples):
        self.calls.extend(examples)
        return [self.table.get(e, 0.0) for e in examples]


def test_bem_fallback_only_when_em_fails():
    bem = FakeBEM({("When built?", "1889", "1890"): 0.7,        # rescues question 1
                   ("Which colours?", "red,blue,green", "red and blue"): 0.9})
    result = score_evqa(PREDS, REFS, bem=bem)
    assert result.method == "EM+BEM (fake/bem)"
    assert result.all.accuracy == 100.0
    # BEM is asked about question 1 only (both alternatives); EM hits are never sent
    assert bem.calls == [("When built?", "1889", "1890"), ("When built?", "in 1889", "1890")]
    d = {x.data_id: x for x in result.details}
    assert d["1"].em == 0 and d["1"].correct == 1
    assert d["1"].bem_probabilities == [0.7, 0.0]


def test_bem_threshold_and_multi_answer_reference():
    refs = rows(("Which colours?", "red&&blue&&green", "multi_answer"))
    pred = [{"data_id": "0", "prediction": "crimson"}]
    key = ("Which colours?", "red,blue,green", "crimson")      # '&&' -> ',' for BEM
    assert score_evqa(pred, refs, bem=FakeBEM({key: 0.5})).all.accuracy == 100.0
    assert score_evqa(pred, refs, bem=FakeBEM({key: 0.4999})).all.accuracy == 0.0


def test_load_csv_with_quoted_commas_and_newlines(tmp_path, evqa_csv):
    path = evqa_csv(tmp_path / "test.csv", [
        ("Where is this, exactly?\nSecond line", "Paris|Lyon", "templated"),
        ("Which colours?", "red&&blue", "multi_answer"),
        ("How tall?", "300 m", "2_hop"),
    ])
    refs = load_evqa_references(path)
    assert list(refs) == ["0", "1", "2"]
    assert refs["0"].question == "Where is this, exactly?\nSecond line"
    assert refs["0"].answers == ["Paris", "Lyon"]
    assert refs["2"].question_type == "2_hop" and not refs["2"].single_hop


def test_load_csv_errors(tmp_path, evqa_csv):
    path = evqa_csv(tmp_path / "test.csv", [("q", "a", "templated"), ("q", "a", "yes_no")])
    with pytest.raises(MetricsInputError, match=r"test.csv:\d+ \(row 1\): unknown question_type "
                                                r"'yes_no'"):
        load_evqa_references(path)
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nq,a\n")
    with pytest.raises(MetricsInputError, match="missing column.*question_type"):
        load_evqa_references(bad)
    with pytest.raises(FileNotFoundError):
        load_evqa_references(tmp_path / "nope.csv")
