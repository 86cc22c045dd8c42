"""InfoSeek scorer: hand-checked cases for every rule and quirk of the official scorer."""

from __future__ import annotations

import json
import logging

import pytest

from eval.metrics import (
    InfoSeekReference,
    MetricsInputError,
    MissingPredictionsError,
    harmonic_mean,
    load_infoseek_references,
    normalize_answer,
    numerical_correct,
    parse_numerical,
    score_infoseek,
)

UQ, UE = "val_unseen_question", "val_unseen_entity"


def ref(data_id, qtype, split, answer):
    if qtype == "Numerical":
        return InfoSeekReference(data_id, qtype, split, answer_range=tuple(answer))
    return InfoSeekReference(data_id, qtype, split, answers=list(answer))


def preds(*pairs):
    return [{"data_id": d, "prediction": p} for d, p in pairs]


# ------------------------------------------------------------------ normalisation

@pytest.mark.parametrize("text, expected", [
    ("the Eiffel Tower", "eiffel tower"),
    ("Eiffel Tower", "eiffel tower"),
    ("  The   Beatles! ", "beatles"),
    ("A.M.", "am"),                       # punctuation goes before articles: "am" survives
    ("a", ""),
    ("an-apple", "anapple"),              # hyphen deleted, words glued
    ("U.S.A.", "usa"),
    ("rock 'n' roll", "rock n roll"),
    ("Theatre", "theatre"),               # whole words only
    ("the the\tthe\nend", "end"),
    ("Ünïcode Café", "ünïcode café"),     # only ASCII punctuation is removed
    ("1,998", "1998"),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


# ------------------------------------------------------------------ numbers

@pytest.mark.parametrize("text, expected", [
    ("9-10", [9.0, 10.0]),                # '-' after a digit splits a range
    ("10-9", 10.0),                       # reversed: the first number alone
    ("1,234", 1234.0),
    ("1,234,567.5 m", 1234567.5),
    ("1,23", [1.0, 23.0]),                # ",23" is no thousands group: two numbers, 1 and 23
    ("1.2.3", [1.2, 3.0]),                # the regex reads "1.2" then ".3" (-> "3")
    (".5.6", 5.6),                        # ".5.6" stripped of its leading dot
    ("about 5 km", 5.0),
    ("-5", -5.0),
    ("-5 to -3", [-5.0, -3.0]),
    ("1e3", 1000.0),
    ("between 3 and 5, maybe 7", [3.0, 5.0]),   # first two numbers only
    ("no idea", [0.0, 0.0]),              # no number: the [0, 0] quirk
    ("", [0.0, 0.0]),
    ("5.", 5.0),
])
def test_parse_numerical(text, expected):
    assert parse_numerical(text) == expected


def test_parse_numerical_crash_case_is_a_clear_error():
    with pytest.raises(ValueError, match="official InfoSeek scorer fails on it too"):
        parse_numerical("-.1.2")


@pytest.mark.parametrize("pred, lo_hi, expected", [
    (5.0, (4.5, 5.5), True),
    (4.5, (4.5, 5.5), True),              # inclusive
    (5.6, (4.5, 5.5), False),
    ([0.0, 0.0], (-1.0, 1.0), True),      # "no number" is right when 0 is in range
    ([0.0, 0.0], (1.0, 2.0), False),
    ([4.6, 5.4], (4.5, 5.5), True),       # both ends inside
    ([0.0, 20.0], (0.0, 10.0), True),     # IoU 10/20 = 0.5 - ~5e-14: within the 1e-12 slack
    ([0.0, 21.0], (0.0, 10.0), False),    # IoU 10/21
    ([-5.0, 10.0], (0.0, 10.0), True),    # IoU 10/15
    ([5.0, 15.0], (0.0, 10.0), False),    # IoU 5/15
    ([4.0, 6.0], (5.0, 5.0), False),      # zero-length reference: no overlap
    ([5.0, 5.0], (5.0, 5.0), True),
    (5.0, (10.0, 0.0), False),            # reversed reference: lo <= x <= hi taken literally
    ([2.0, 8.0], (10.0, 0.0), True),      # ... but IoU uses min/max: 6/10
])
def test_numerical_correct(pred, lo_hi, expected):
    assert numerical_correct(pred, lo_hi) is expected


def test_harmonic_mean_zero_is_replaced():
    assert harmonic_mean(50.0, 50.0) == 50.0
    assert harmonic_mean(0, 75.0) == pytest.approx(2e-12)
    assert round(harmonic_mean(66.67, 75.0), 2) == 70.59


# ------------------------------------------------------------------ scoring

REFS = {r.data_id: r for r in [
    ref("q1", "String", UQ, ["Eiffel Tower", "Tour Eiffel"]),
    ref("q2", "Numerical", UQ, (9.0, 11.0)),
    ref("q3", "Time", UQ, ["1889"]),
    ref("e1", "String", UE, ["Paris"]),
    ref("e2", "Numerical", UE, (100.0, 120.0)),
    ref("e3", "Time", UE, ["1999"]),
    ref("e4", "String", UE, ["blue"]),
    ref("e5", "String", UE, ["Mount Everest"]),
]}
PREDS = preds(("q1", "the Eiffel Tower."), ("q2", "9-10"), ("q3", "in 1889"),
              ("e1", "PARIS"), ("e2", "I don't know"), ("e3", "1999"), ("e4", "red"),
              ("e5", "Mount Everest!"))


def test_end_to_end_by_hand():
    # unseen question: q1 right (articles, punctuation), q2 right ([9, 10] inside [9, 11]),
    #   q3 wrong ("in 1889" != "1889")                 -> 2/3 -> 66.67
    #   per type: time 0/1 = 0, numerical 1/1 = 100, string 1/1 = 100
    # unseen entity: e1 right (case), e2 wrong ([0, 0] outside [100, 120]), e3 right,
    #   e4 wrong, e5 right (punctuation)              -> 3/5 -> 60.0
    #   per type: time 1/1 = 100, numerical 0/1 = 0, string 2/3 = 66.67
    # final = round(2 / (1/66.67 + 1/60.0), 2) = round(63.1594..., 2) = 63.16
    # overall accuracy = 5/8 = 62.5 (plain accuracy, not the official headline)
    result = score_infoseek(PREDS, REFS)
    uq, ue = result.unseen_question, result.unseen_entity
    assert (uq.score, uq.score_time, uq.score_num, uq.score_string, uq.count) == \
        (66.67, 0.0, 100.0, 100.0, 3)
    assert (ue.score, ue.score_time, ue.score_num, ue.score_string, ue.count) == \
        (60.0, 100.0, 0.0, 66.67, 5)
    assert (ue.count_time, ue.count_num, ue.count_string) == (1, 1, 3)
    assert result.final_score == 63.16
    assert result.overall_accuracy == 62.5
    assert result.coverage.complete and result.coverage.scored == 8
    detail = {d.data_id: d for d in result.details}
    assert detail["q1"].normalized_prediction == "eiffel tower"
    assert detail["q1"].normalized_references == ["eiffel tower", "tour eiffel"]
    assert detail["q2"].normalized_prediction == [9.0, 10.0]
    assert detail["e2"].normalized_prediction == [0.0, 0.0] and detail["e2"].correct == 0
    out = result.to_json()
    assert set(out) == {"final_score", "overall_accuracy", "unseen_question", "unseen_entity",
                        "coverage"}
    assert out["unseen_question"] == {"score": 66.67, "score_time": 0.0, "score_num": 100.0,
                                      "score_string": 100.0, "count": 3}
    json.dumps(out)


def test_duplicates_count_twice_and_are_reported(caplog):
    # e4 answered twice: "red" (wrong) then "blue" (right) -> unseen entity 4/6 = 66.67
    with caplog.at_level(logging.WARNING):
        result = score_infoseek(PREDS + preds(("e4", "blue")), REFS)
    assert result.unseen_entity.count == 6 and result.unseen_entity.score == 66.67
    assert result.coverage.duplicate_ids == ["e4"] and result.coverage.num_duplicate_ids == 1
    assert result.coverage.scored == 9
    assert "more than once" in caplog.text


def test_unknown_ids_are_skipped_and_listed():
    result = score_infoseek(PREDS + preds(("nope", "x"), ("nope2", "y")), REFS)
    assert result.final_score == 63.16
    assert result.coverage.unknown_ids == ["nope", "nope2"]
    assert result.coverage.predictions == 10 and result.coverage.scored == 8


def test_missing_predictions_refused_then_allowed():
    partial = [p for p in PREDS if p["data_id"] not in ("q3", "e2")]
    with pytest.raises(MissingPredictionsError, match=r"2 of 8 .*unseen_question: 1, "
                                                      r"unseen_entity: 1"):
        score_infoseek(partial, REFS)
    result = score_infoseek(partial, REFS, allow_missing=True)
    # as the official scorer: only the predicted questions count: 2/2 and 3/4
    assert result.unseen_question.score == 100.0 and result.unseen_entity.score == 75.0
    assert result.final_score == 85.71   # round(2 / (1/100 + 1/75), 2)
    assert result.coverage.missing == 2
    assert result.coverage.missing_by_split == {"unseen_question": 1, "unseen_entity": 1}
    assert result.coverage.missing_ids == ["q3", "e2"]


def test_zero_split_makes_final_score_zero():
    wrong = [dict(p, prediction="zzz") if p["data_id"].startswith("q") else p for p in PREDS]
    result = score_infoseek(wrong, REFS)
    # unseen question: q2 "zzz" -> [0, 0], outside [9, 11] -> 0/3 = 0 -> replaced by 1e-12
    assert result.unseen_question.score == 0.0
    assert result.final_score == 0.0


def test_split_without_predictions_scores_zero():
    result = score_infoseek([p for p in PREDS if p["data_id"].startswith("e")], REFS,
                            allow_missing=True)
    assert result.unseen_question.count == 0 and result.unseen_question.score == 0.0
    assert result.final_score == 0.0


def test_rounding_follows_the_official_order_of_operations():
    # (23/160)*100 = 14.374999... -> 14.37, whereas 100*23/160 = 14.375 -> 14.38
    refs = {f"u{i}": ref(f"u{i}", "String", UE, ["yes"]) for i in range(160)}
    refs["q"] = ref("q", "String", UQ, ["yes"])
    answers = preds(*[(f"u{i}", "yes" if i < 23 else "no") for i in range(160)], ("q", "yes"))
    result = score_infoseek(answers, refs)
    assert result.unseen_entity.score == 14.37
    assert result.unseen_entity.score_string == 14.37
    # 1/32 = 3.125 exactly: round-half-even gives 3.12
    refs = {f"u{i}": ref(f"u{i}", "Time", UE, ["1"]) for i in range(32)}
    result = score_infoseek(preds(*[(f"u{i}", "1" if i == 0 else "2") for i in range(32)]), refs)
    assert result.unseen_entity.score_time == 3.12


# ------------------------------------------------------------------ reference files

def test_load_references_in_the_official_layout(infoseek_files, jsonl, tmp_path):
    ref_path, qtype_path = infoseek_files([
        ("val_0", "String", UQ, ["Eiffel Tower"]),
        ("val_1", "Numerical", UE, (9, 11)),
        ("val_2", "Time", UE, ["1889"]),
    ])
    # a bare-dict numerical answer_eval is accepted too
    rows = [json.loads(line) for line in ref_path.read_text().splitlines()]
    rows[1]["answer_eval"] = {"wikidata": 10, "range": [9, 11]}
    jsonl(ref_path, rows)
    refs = load_infoseek_references(ref_path, qtype_path)
    assert refs["val_0"].answers == ["Eiffel Tower"] and refs["val_0"].split == "unseen_question"
    assert refs["val_1"].answer_range == (9.0, 11.0) and refs["val_1"].split == "unseen_entity"
    assert refs["val_2"].question_type == "Time"


def test_qtype_missing_is_a_clear_error(infoseek_files, jsonl):
    ref_path, qtype_path = infoseek_files([("val_0", "String", UQ, ["x"]),
                                           ("val_1", "String", UQ, ["y"])])
    jsonl(qtype_path, [{"data_id": "val_0", "question_type": "String"}])
    with pytest.raises(MetricsInputError, match=r"infoseek_val.jsonl:2: data_id 'val_1' is not "
                                                r"in the question type file"):
        load_infoseek_references(ref_path, qtype_path)


def test_malformed_lines_name_file_and_line(infoseek_files):
    ref_path, qtype_path = infoseek_files([("val_0", "String", UQ, ["x"])])
    ref_path.write_text(ref_path.read_text() + "{not json\n")
    with pytest.raises(MetricsInputError, match=r"infoseek_val.jsonl:2: not valid JSON"):
        load_infoseek_references(ref_path, qtype_path)
    ref_path.write_text('{"data_id": "val_0", "answer_eval": ["x"]}\n')
    with pytest.raises(MetricsInputError, match=r":1: missing required field 'data_split'"):
        load_infoseek_references(ref_path, qtype_path)
    ref_path.write_text('{"data_id": "val_0", "answer_eval": [], "data_split": "x"}\n')
    with pytest.raises(MetricsInputError, match="non-empty list of strings"):
        load_infoseek_references(ref_path, qtype_path)


def test_bad_prediction_records_are_errors():
    with pytest.raises(MetricsInputError, match="missing required field 'prediction'"):
        score_infoseek([{"data_id": "q1"}], REFS, allow_missing=True)
    with pytest.raises(MetricsInputError, match="'prediction' must be a string"):
        score_infoseek([{"data_id": "q1", "prediction": None}], REFS, allow_missing=True)


def test_final_score_reproduces_the_published_blip2_reference():
    # metrics.md: the official scorer reports final 12.51 for split scores 12.74 / 12.28
    assert round(harmonic_mean(12.74, 12.28), 2) == 12.51
