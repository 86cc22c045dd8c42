"""``rag-vqa eval score infoseek|evqa`` handlers, driven through a parser built here."""

from __future__ import annotations

import argparse
import csv
import json

import pytest

from eval.metrics import BEMLoadError, MetricsInputError, MissingPredictionsError
from eval.score_cli import register

UQ, UE = "val_unseen_question", "val_unseen_entity"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    s = p.add_subparsers(dest="cmd")
    register(s)
    return p


def run(argv, capsys):
    args = parser().parse_args(argv)
    assert args.handler(args) == 0
    return capsys.readouterr().out


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def infoseek(tmp_path):
    refs = [
        {"data_id": "v1", "image_id": "oven_1", "question": "q", "answer": ["Eiffel Tower"],
         "answer_eval": ["Eiffel Tower"], "data_split": UQ},
        {"data_id": "v2", "image_id": "oven_2", "question": "q", "answer": [10],
         "answer_eval": [{"wikidata": 10, "range": [9, 11]}], "data_split": UQ},
        {"data_id": "v3", "image_id": "oven_3", "question": "q", "answer": ["1889"],
         "answer_eval": ["1889"], "data_split": UE},
        {"data_id": "v4", "image_id": "oven_4", "question": "q", "answer": ["Paris"],
         "answer_eval": ["Paris", "City of Light"], "data_split": UE},
    ]
    qtypes = [{"data_id": "v1", "question_type": "String"},
              {"data_id": "v2", "question_type": "Numerical"},
              {"data_id": "v3", "question_type": "Time"},
              {"data_id": "v4", "question_type": "String"}]
    preds = [{"data_id": "v1", "prediction": "the eiffel tower", "retrieved": []},
             {"data_id": "v2", "prediction": "9-10"},
             {"data_id": "v3", "prediction": "1890"},
             {"data_id": "v4", "prediction": "city of light"}]
    return {"references": write_jsonl(tmp_path / "infoseek_val.jsonl", refs),
            "qtypes": write_jsonl(tmp_path / "infoseek_val_qtype.jsonl", qtypes),
            "predictions": write_jsonl(tmp_path / "preds.jsonl", preds), "dir": tmp_path}


def infoseek_argv(files, *extra, predictions=None):
    return ["score", "infoseek", "--predictions", predictions or files["predictions"],
            "--references", files["references"], "--qtypes", files["qtypes"], *extra]


def test_infoseek_json(infoseek, capsys):
    out = json.loads(run(infoseek_argv(infoseek, "--json"), capsys))
    # unseen question 2/2 = 100 ; unseen entity 1/2 = 50 ; hmean = 2/(1/100 + 1/50) = 66.67
    assert out["final_score"] == 66.67 and out["overall_accuracy"] == 75.0
    assert out["unseen_question"] == {"score": 100.0, "score_time": 0.0, "score_num": 100.0,
                                      "score_string": 100.0, "count": 2}
    assert out["unseen_entity"] == {"score": 50.0, "score_time": 0.0, "score_num": 0.0,
                                    "score_string": 100.0, "count": 2}
    assert out["coverage"]["missing"] == 0 and out["coverage"]["references"] == 4


def test_infoseek_table_and_details(infoseek, capsys):
    details = infoseek["dir"] / "details.jsonl"
    out = run(infoseek_argv(infoseek, "--details", str(details)), capsys)
    assert "final score (harmonic mean of split scores):  66.67" in out
    assert "overall accuracy (all questions):             75.00" in out
    assert "unseen question" in out and "unseen entity" in out
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert [(r["data_id"], r["correct"], r["type"]) for r in rows] == [
        ("v1", 1, "String"), ("v2", 1, "Numerical"), ("v3", 0, "Time"), ("v4", 1, "String")]
    assert rows[0]["normalized_prediction"] == "eiffel tower"
    assert rows[3]["normalized_references"] == ["paris", "city of light"]
    assert rows[1]["normalized_prediction"] == [9.0, 10.0]


def test_infoseek_missing_then_allowed(infoseek, capsys):
    partial = write_jsonl(infoseek["dir"] / "partial.jsonl",
                          [{"data_id": "v1", "prediction": "x"},
                           {"data_id": "zz", "prediction": "x"}])
    args = parser().parse_args(infoseek_argv(infoseek, predictions=partial))
    with pytest.raises(MissingPredictionsError, match=r"3 of 4 .*unseen_question: 1, "
                                                      r"unseen_entity: 2"):
        args.handler(args)
    out = json.loads(run(infoseek_argv(infoseek, "--allow-missing", "--json",
                                       predictions=partial), capsys))
    assert out["coverage"]["missing"] == 3 and out["coverage"]["unknown_ids"] == ["zz"]
    text = run(infoseek_argv(infoseek, "--allow-missing", predictions=partial), capsys)
    assert "MISSING 3" in text and "unknown data_id(s) ignored: zz" in text


def test_malformed_prediction_line_names_file_and_line(infoseek):
    bad = infoseek["dir"] / "bad.jsonl"
    bad.write_text('{"data_id": "v1", "prediction": "x"}\n\n{"data_id": "v2"}\n')
    args = parser().parse_args(infoseek_argv(infoseek, predictions=str(bad)))
    with pytest.raises(MetricsInputError, match=r"bad.jsonl:3: missing required field "
                                                r"'prediction'"):
        args.handler(args)


@pytest.fixture
def evqa(tmp_path):
    path = tmp_path / "test.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer", "dataset_image_ids", "dataset_name",
                         "question_type", "wikipedia_url", "evidence"])
        writer.writerow(["Which city, exactly?", "Paris", "a|b", "landmarks", "templated",
                         "https://en.wikipedia.org/wiki/Paris", "line one,\nline two"])
        writer.writerow(["Which colours?", "red&&blue&&green", "c", "inaturalist",
                         "multi_answer", "https://en.wikipedia.org/wiki/X", ""])
        writer.writerow(["How many?", "two|2 species", "d", "inaturalist", "2_hop",
                         "https://en.wikipedia.org/wiki/A|https://en.wikipedia.org/wiki/B", ""])
    preds = [{"data_id": 0, "prediction": "The Paris"}, {"data_id": "1", "prediction": "red"},
             {"data_id": "2", "prediction": "2"}]
    return {"references": str(path), "predictions": write_jsonl(tmp_path / "p.jsonl", preds),
            "dir": tmp_path}


def evqa_argv(files, *extra):
    return ["score", "evqa", "--predictions", files["predictions"], "--references",
            files["references"], *extra]


def test_evqa_json(evqa, capsys):
    out = json.loads(run(evqa_argv(evqa, "--json"), capsys))
    # row 0 right, row 1 wrong (IoU 1/3), row 2 (2_hop) right -> single hop 1/2, all 2/3
    assert out["single_hop"] == {"accuracy": 50.0, "count": 2}
    assert out["all"] == {"accuracy": (2 / 3) * 100, "count": 3}
    assert out["per_type"]["multi_answer"] == {"accuracy": 0.0, "count": 1}
    assert out["method"] == "EM"
    assert set(out) == {"single_hop", "all", "per_type", "method", "coverage"}
    assert json.loads(run(evqa_argv(evqa, "--no-bem", "--json"), capsys))["method"] == "EM"


def test_evqa_table_and_details(evqa, capsys):
    details = evqa["dir"] / "d.jsonl"
    out = run(evqa_argv(evqa, "--details", str(details)), capsys)
    assert "method: EM only" in out and "single-hop accuracy" in out
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert [(r["data_id"], r["correct"], r["type"]) for r in rows] == [
        ("0", 1, "templated"), ("1", 0, "multi_answer"), ("2", 1, "2_hop")]
    assert rows[2]["normalized_references"] == ["2", "2 species"]


def test_evqa_bem_flag(evqa, monkeypatch, capsys):
    p = parser()
    assert p.parse_args(evqa_argv(evqa)).bem is None
    assert p.parse_args(evqa_argv(evqa, "--bem")).bem == "kortukov/answer-equivalence-bem"
    assert p.parse_args(evqa_argv(evqa, "--bem", "my/bem")).bem == "my/bem"
    with pytest.raises(SystemExit):
        p.parse_args(evqa_argv(evqa, "--bem", "--no-bem"))

    import eval.metrics.bem as bem_module

    class Always:
        def __init__(self, model, device=None, batch_size=32):
            self.model_id = model

        def probabilities(self, examples):
            return [0.9] * len(examples)

    monkeypatch.setattr(bem_module, "BEMScorer", Always)
    out = json.loads(run(evqa_argv(evqa, "--bem", "my/bem", "--json"), capsys))
    assert out["method"] == "EM+BEM (my/bem)" and out["all"]["accuracy"] == 100.0


def test_evqa_unloadable_bem_is_a_user_error(evqa, tmp_path):
    args = parser().parse_args(evqa_argv(evqa, "--bem", str(tmp_path / "no-such-model")))
    with pytest.raises(BEMLoadError) as info:
        args.handler(args)
    assert isinstance(info.value, ValueError) and "--no-bem" in str(info.value)


def test_missing_file_is_a_user_error(evqa):
    args = parser().parse_args(["score", "evqa", "--predictions", evqa["predictions"],
                                "--references", str(evqa["dir"] / "nope.csv")])
    with pytest.raises(FileNotFoundError):
        args.handler(args)


def test_jsonl_files_with_a_byte_order_mark_are_read(infoseek, capsys):
    for key in ("references", "qtypes", "predictions"):
        path = infoseek["dir"] / f"bom-{key}.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + open(infoseek[key], "rb").read())
        infoseek = {**infoseek, key: str(path)}
    assert json.loads(run(infoseek_argv(infoseek, "--json"), capsys))["final_score"] == 66.67


@pytest.mark.parametrize("line,words", [
    ('{"data_id": "v1", "prediction": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"data_id": "v1", "prediction": "\\ud800"}', "lone surrogate"),
    ('{"data_id": "v\\u0000", "prediction": "x"}', "control character"),
    ('{"data_id": "v1", "prediction": ["x"]}', "'prediction' must be a string"),
])
def test_unusable_prediction_lines_are_named(infoseek, line, words):
    bad = infoseek["dir"] / "bad.jsonl"
    bad.write_text('{"data_id": "v2", "prediction": "x"}\n' + line + "\n")
    args = parser().parse_args(infoseek_argv(infoseek, predictions=str(bad)))
    with pytest.raises(MetricsInputError, match=rf"bad.jsonl:2: .*{words}"):
        args.handler(args)
