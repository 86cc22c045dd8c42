import json

import pytest

from eval.datasets import DatasetError, ImageLocator, load_questions
from rag_vqa.kb.errors import UnsafeImagePath
from rag_vqa.samples import SAMPLE_KB, sample_questions
from tests.eval.evaldata import evqa_files, infoseek_files


def test_infoseek_with_question_types_and_entities(tmp_path):
    files = infoseek_files(tmp_path)
    questions = load_questions("infoseek", files["questions"], qtypes=files["qtypes"],
                               withkb=files["withkb"])
    assert len(questions) == 6
    first = questions[0]
    assert first.data_id == "infoseek_val_00000" and first.image == "oven_00000"
    assert first.question_type == "String" and first.split == "val_unseen_question"
    assert first.gold_articles == ["japan"] and first.answers == ["Tokyo"]


def test_evqa_rows_are_numbered_from_zero_and_keep_quoted_fields(tmp_path):
    files = evqa_files(tmp_path)
    questions = load_questions("evqa", files["questions"])
    assert [q.data_id for q in questions] == [str(i) for i in range(6)]
    assert questions[1].answers == ["Irish and English", "Irish", "English"]
    assert questions[3].question_type == "2_hop" and questions[0].gold_articles == ["japan"]
    assert questions[0].image == "0000f00d0"  # the first of the '|'-separated image ids


def test_ret_jsonl_queries():
    questions = load_questions("ret-jsonl", SAMPLE_KB / "questions.jsonl")
    assert [q.data_id for q in questions] == [q.data_id for q in sample_questions()]
    assert questions[0].positives == ["japan-0"] and questions[0].instruction
    assert questions[0].image == "question_images/q1.jpg"


def test_malformed_files_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"data_id": "a", "question": "q", "image_id": "x"}\nnot json\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: invalid JSON"):
        load_questions("infoseek", bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"data_id": "a", "image_id": "x"}) + "\n")
    [question] = load_questions("infoseek", missing)  # identified: a failed question, not fatal
    assert question.error == f"{missing}:1: field 'question': missing required field"
    csv_file = tmp_path / "wrong.csv"
    csv_file.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="no column 'question'"):
        load_questions("evqa", csv_file)
    with pytest.raises(DatasetError, match="does not exist"):
        load_questions("evqa", tmp_path / "nope.csv")


def test_image_locator_layouts(tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "abc123.jpg").write_bytes(b"x")
    (tmp_path / "oven_1.JPEG").write_bytes(b"x")
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "pic.png").write_bytes(b"x")
    assert ImageLocator("evqa", tmp_path).find("abc123").name == "abc123.jpg"
    assert ImageLocator("infoseek", tmp_path).find("oven_1").name == "oven_1.JPEG"
    assert ImageLocator("infoseek", tmp_path).find("oven_2") is None
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"oven_2": "custom/pic.png"}))
    assert ImageLocator("infoseek", tmp_path, mapping).find("oven_2").name == "pic.png"
    with pytest.raises(UnsafeImagePath):
        ImageLocator("ret-jsonl", tmp_path).find("../../etc/passwd")
    with pytest.raises(DatasetError, match="image folder"):
        ImageLocator("evqa", tmp_path / "none")
