import pytest

from rag_vqa.kb.records import Passage


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
