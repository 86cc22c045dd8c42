"""One bad record of a question file: a failed question when it can be identified, otherwise
one DatasetError for the whole file before anything runs (or skipped and counted)."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval.datasets import DatasetError, ImageLocator, read_questions
from retriever import ImageLoadError
from tests.eval.evaldata import evqa_files, infoseek_files

DEEP = "[" * 5000 + "]" * 5000
RET = {"data_id": "q", "instruction": "Retrieve.", "question": "What?",
       "image_path": "question_images/q1.jpg", "passage_id": ["p1"], "answer": "x"}
INFOSEEK = {"data_id": "q", "image_id": "oven_1", "question": "What?", "answer": ["x", 3],
            "answer_eval": ["x"], "data_split": "val_unseen_entity"}


def write(path, rows, bom=False):
    lines = [r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()
             for r in rows]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"".join(x + b"\n" for x in lines))
    return path


@pytest.mark.parametrize("dataset,base,name,value", [
    ("ret-jsonl", RET, "question", {"a": 1}), ("ret-jsonl", RET, "question", ["a"]),
    ("ret-jsonl", RET, "image_path", 7), ("ret-jsonl", RET, "image_path", ["a.jpg"]),
    ("ret-jsonl", RET, "image_path", "javascript:alert(1)"),
    ("ret-jsonl", RET, "image_path", "data:image/png;base64,AAAA"),
    ("ret-jsonl", RET, "image_path", "../../etc/passwd"),
    ("ret-jsonl", RET, "instruction", ["x"]), ("ret-jsonl", RET, "passage_id", {"a": 1}),
    ("ret-jsonl", RET, "passage_id", ["ok", "new\nline"]), ("ret-jsonl", RET, "answer", {}),
    ("ret-jsonl", RET, "answer", [[[[[["deep"]]]]]] ),
    ("ret-jsonl", RET, "extra", json.loads("[" * 150 + "]" * 150)),
    ("ret-jsonl", RET, "question", "\ud800"), ("ret-jsonl", RET, "instruction", "\udfff"),
    ("infoseek", INFOSEEK, "question", 5), ("infoseek", INFOSEEK, "image_id", None),
    ("infoseek", INFOSEEK, "image_id", ["oven_1"]), ("infoseek", INFOSEEK, "data_split", 1),
    ("infoseek", INFOSEEK, "answer", [True]),
])
def test_a_wrong_typed_field_is_a_failed_question_naming_file_line_and_field(
        tmp_path, dataset, base, name, value):
    rows = [{**base, "data_id": "a"}, {**base, "data_id": "b", name: value},
            {**base, "data_id": "c"}]
    path = write(tmp_path / "q.jsonl", rows)
    questions = read_questions(dataset, path).questions
    assert [q.data_id for q in questions] == ["a", "b", "c"]
    assert questions[0].error is None and questions[2].error is None
    assert questions[1].error.startswith(f"{path}:2: field {name!r}: ")


@pytest.mark.parametrize("line", [
    "not json", "[1, 2]", '"text"', "null", DEEP, '{"data_id": "\\ud800"}', b"\xff\xfe",
    '{"question": "no id"}', '{"data_id": {"a": 1}}', '{"data_id": true}', '{"data_id": 1.5}',
    '{"data_id": ""}', '{"data_id": "a\\u0000b"}', '{"data_id": "a\\nb"}',
    '{"data_id": "a\\u2028b"}', json.dumps({"data_id": "x" * 100_000}),
    '{"data_id": ' + "9" * 5000 + "}",
])
def test_an_unidentifiable_record_stops_the_file_up_front_unless_skipped(tmp_path, line):
    path = write(tmp_path / "q.jsonl", [{**RET, "data_id": "a"}, line, line,
                                        {**RET, "data_id": "b"}])
    with pytest.raises(DatasetError) as info:
        read_questions("ret-jsonl", path)
    message = str(info.value)
    assert f"{path}:2: " in message and f"{path}:3: " in message and "--skip-bad" in message
    assert len(message) < 2000  # a 100k-character id is not echoed back
    kept = read_questions("ret-jsonl", path, skip_bad=True)
    assert [q.data_id for q in kept.questions] == ["a", "b"] and kept.skipped == 2


def test_repeated_data_ids_are_refused_with_their_lines(tmp_path):
    path = write(tmp_path / "q.jsonl", [{**RET, "data_id": d} for d in "abcab"] +
                 [{**RET, "data_id": 7}, {**RET, "data_id": "7"}])
    with pytest.raises(DatasetError, match=r"3 repeated data_id\(s\)") as info:
        read_questions("ret-jsonl", path, skip_bad=True)
    for text in ("'a' on lines 1, 4", "'b' on lines 2, 5", "'7' on lines 6, 7"):
        assert text in str(info.value)


def test_a_byte_order_mark_is_accepted_in_jsonl_and_csv(tmp_path):
    path = write(tmp_path / "q.jsonl", [RET], bom=True)
    assert [q.data_id for q in read_questions("ret-jsonl", path).questions] == ["q"]
    files = evqa_files(tmp_path)
    data = files["questions"].read_bytes()
    files["questions"].write_bytes(b"\xef\xbb\xbf" + data)
    assert len(read_questions("evqa", files["questions"]).questions) == 6


def test_side_files_are_checked_whole_before_anything_runs(tmp_path):
    files = infoseek_files(tmp_path)
    bad = write(tmp_path / "qtype.jsonl", ['{"data_id": "a", "question_type": "String"}',
                                            '{"question_type": "String"}', "[]",
                                            '{"data_id": "b", "question_type": 5}'])
    with pytest.raises(DatasetError) as info:
        read_questions("infoseek", files["questions"], qtypes=bad)
    for text in (":2: field 'data_id': missing", ":3: expected a JSON object",
                 ":4: field 'question_type': expected a string"):
        assert text in str(info.value)
    with pytest.raises(DatasetError, match="entity file .* does not exist"):
        read_questions("infoseek", files["questions"], withkb=tmp_path / "none.jsonl")


def test_evqa_rows_with_problems_are_failed_questions_with_their_row(tmp_path):
    files = evqa_files(tmp_path)
    lines = files["questions"].read_bytes().split(b"\r\n")
    header = lines[0]
    path = tmp_path / "odd.csv"
    path.write_bytes(header + b"\r\n" + b"short row,only\r\n"
                     + b"q \xff,a,img,landmarks,1,templated,u,t,e,0,s,test,q,False\r\n"
                     + b"fine,a,img,landmarks,1,templated,u,t,e,0,s,test,q,False\r\n")
    questions = read_questions("evqa", path).questions
    assert [q.data_id for q in questions] == ["0", "1", "2"]
    assert "(row 0): field 'dataset_image_ids': the row has fewer fields" in questions[0].error
    assert "(row 1): field 'question': not valid UTF-8" in questions[1].error
    assert questions[2].error is None


def test_image_map_is_checked_whole(tmp_path):
    (tmp_path / "img").mkdir()
    cases = {"[1]": "expected a JSON object", "{oops": "invalid JSON",
             '{"a": 5}': "entry 'a': field 'a': expected a path string",
             '{"a": "../x.jpg"}': "entry 'a': refused image path",
             '{"a": "javascript:x"}': "'javascript' scheme",
             '\ufeff{"a": "b"': "invalid JSON"}
    for text, words in cases.items():
        mapping = tmp_path / "map.json"
        mapping.write_text(text)
        with pytest.raises(DatasetError, match=words):
            ImageLocator("infoseek", tmp_path / "img", mapping)
    mapping.write_bytes(b'\xef\xbb\xbf{"a": "b.jpg"}')
    assert ImageLocator("infoseek", tmp_path / "img", mapping).map == {"a": "b.jpg"}


def test_images_that_are_not_files_say_what_they_are(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    locator = ImageLocator("ret-jsonl", tmp_path)
    with pytest.raises(ImageLoadError, match=r"is a FIFO \(named pipe\)"):
        locator.find("pipe.jpg")
    with pytest.raises(ImageLoadError, match="is a folder"):
        locator.find("folder.jpg")
    with pytest.raises(ImageLoadError, match="is a character device"):
        ImageLocator("ret-jsonl", "/dev").find("zero")
    with pytest.raises(ImageLoadError, match="File name too long"):
        locator.find("x" * 300 + ".jpg")
    assert locator.find("missing.jpg") is None
    with pytest.raises(DatasetError, match=r"is a FIFO \(named pipe\), not a folder"):
        ImageLocator("ret-jsonl", tmp_path / "pipe.jpg")


FIELD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
    | st.sampled_from(["\x00", "a\nb", "\ud800", "javascript:x", "../x", "x" * 1001]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3), max_leaves=6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dataset=st.sampled_from(["ret-jsonl", "infoseek"]), name=st.sampled_from(
    ["data_id", "question", "image_path", "image_id", "instruction", "passage_id", "answer",
     "data_split", "entity_id", "other"]), value=FIELD_VALUES)
def test_any_json_in_any_field_is_a_question_a_failed_question_or_a_dataset_error(
        tmp_path_factory, dataset, name, value):
    base = RET if dataset == "ret-jsonl" else INFOSEEK
    path = tmp_path_factory.mktemp("q") / "q.jsonl"
    path.write_text(json.dumps({**base, "data_id": "a"}) + "\n" +
                    json.dumps({**base, "data_id": "b", name: value}) + "\n")
    try:
        questions = read_questions(dataset, path).questions
    except DatasetError as exc:
        assert name == "data_id" and f"{path}:2: " in str(exc)
        return
    assert questions[0].error is None
    for q in questions:
        assert isinstance(q.question, str) and (q.image is None or isinstance(q.image, str))
        assert all(isinstance(a, str) for a in q.answers)
        assert all(isinstance(p, str) for p in q.positives)
