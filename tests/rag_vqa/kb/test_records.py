import pytest

from rag_vqa.kb.records import MAX_ID_LENGTH, Passage, id_problem


def test_passage_defaults_and_dict():
    passage = Passage("p1", "text")
    assert passage.to_dict() == {"passage_id": "p1", "text": "text", "title": None,
                                 "section": None, "article_id": None, "url": None, "image": None,
                                 "language": None, "extra": None}
    assert Passage("p1", "", extra={"a": [1]}) == Passage("p1", "", extra={"a": [1]})


@pytest.mark.parametrize("pid,text", [("", "x"), (3, "x"), (None, "x"), ("p", None), ("p", 1)])
def test_passage_rejects_wrong_types(pid, text):
    with pytest.raises(TypeError):
        Passage(pid, text)


@pytest.mark.parametrize("value,words", [
    ("", "blank"), ("  ", "blank"), ("a\x00b", "'\\x00'"), ("a\nb", "'\\n'"), ("a\tb", "'\\t'"),
    ("a\u2028b", "'\\u2028'"), ("a\x85b", "'\\x85'"), ("a\ud800", "'\\ud800'"),
    ("x" * (MAX_ID_LENGTH + 1), f"{MAX_ID_LENGTH + 1} characters"), (True, "got bool"),
    (1.5, "got float"), (None, "got NoneType"), (["a"], "got list"), ({"a": 1}, "got dict"),
])
def test_id_problem_names_what_is_wrong(value, words):
    assert words in id_problem(value)


@pytest.mark.parametrize("value", ["p1", "https://en.wikipedia.org/wiki/Caf%C3%A9", "é中",
                                   "x" * MAX_ID_LENGTH, 7, 0])
def test_ids_that_are_fine(value):
    assert id_problem(value) is None
