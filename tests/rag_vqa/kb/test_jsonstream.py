import io
import json

import pytest

from rag_vqa.kb.jsonstream import JSONStreamError, iter_object_items
from retriever.fileio import JSONRecordError

TRICKY = {
    "https://en.wikipedia.org/wiki/A": {"title": "A {not a brace}", "texts": ["x}", "{y", "]["],
                                        "q": "she said \"}\" and \\\"{\\\"", "n": [1, 2.5e-3, -7]},
    "key with \"quotes\" and }{": {"nested": {"deep": [{"a": {}}, [], ""]},
                                   "u": "\u00e9\u4e2d\U0001f600"},
    "number": 1234567890123,
    "float": -0.000125,
    "literals": [True, False, None],
    "t": True, "f": False, "nothing": None,
    "empty": {},
    "": "empty key",
}


class CountingReader:
    """A text stream that records how far it has been read."""

    def __init__(self, text: str) -> None:
        self.stream = io.StringIO(text)
        self.position = 0

    def read(self, size: int = -1) -> str:
        chunk = self.stream.read(size)
        self.position += len(chunk)
        return chunk


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_items_equal_json_load_whatever_the_chunk_size(chunk_size, indent):
    text = json.dumps(TRICKY, indent=indent, ensure_ascii=bool(indent))
    assert list(iter_object_items(io.StringIO(text), chunk_size=chunk_size)) == \
        list(json.loads(text).items())


@pytest.mark.parametrize("chunk_size", [1, 3, 4])
def test_top_level_numbers_and_literals_split_across_reads(chunk_size):
    # a number cut by a chunk boundary must not be returned early ("12" of "12345")
    text = '{"a":12345,"b":-6.75e+2,"c":true,"d":null,"e":0}'
    assert dict(iter_object_items(io.StringIO(text), chunk_size=chunk_size)) == json.loads(text)


@pytest.mark.parametrize("text", ["{}", "  {  }  ", "\ufeff{}", "\n{\n}\n"])
def test_empty_object(text):
    assert list(iter_object_items(io.StringIO(text), chunk_size=2)) == []


def test_streams_lazily_with_a_bounded_buffer():
    articles = {f"k{i}": {"text": "x" * 200, "i": i} for i in range(500)}
    text = json.dumps(articles)
    reader = CountingReader(text)
    items = iter_object_items(reader, chunk_size=256)
    assert next(items) == ("k0", articles["k0"])
    assert reader.position < 1024 < len(text)
    assert dict([("k0", articles["k0"]), *items]) == articles


def _error(text: str, chunk_size: int = 4) -> JSONStreamError:
    with pytest.raises(JSONStreamError) as info:
        list(iter_object_items(io.StringIO(text), chunk_size=chunk_size))
    return info.value


@pytest.mark.parametrize("chunk_size", [1, 4, 1 << 20])
def test_malformed_value_names_its_key_and_offset(chunk_size):
    text = '{"good": {"x": 1}, "bad": {"x": 1 "y": 2}, "later": 3}'
    error = _error(text, chunk_size)
    assert error.key == "bad"
    assert abs(error.offset - text.index('"y"')) <= 1
    assert "'bad'" in str(error) and "near character" in str(error)


def test_malformed_input_is_reported_without_reading_the_rest():
    text = '{"a": [1, 2 3], ' + ", ".join(f'"k{i}": {i}' for i in range(20000)) + "}"
    reader = CountingReader(text)
    with pytest.raises(JSONStreamError) as info:
        list(iter_object_items(reader, chunk_size=64))
    assert info.value.key == "a"
    assert reader.position < 1000


@pytest.mark.parametrize("text,key,words", [
    ('{"a": 1 "b": 2}', "a", "expected ','"),
    ('{"a": 1,}', "a", "property name"),
    ('{"a" 1}', "a", "expected ':'"),
    ('{a: 1}', None, "property name"),
    ('[1, 2]', None, "expected a JSON object"),
    ('', None, "empty input"),
    ('{"a": 1} {"b": 2}', "a", "extra data"),
    ('{"a": {"b": [1, 2]}, "c": "unterminated', "c", "truncated"),
    ('{"a": {"b": [1, 2]}', "a", "truncated"),
    ('{"a": tru}', "a", "malformed"),
])
def test_structure_errors(text, key, words):
    error = _error(text)
    assert error.key == key
    assert words in str(error)
    assert error.offset is not None and 0 <= error.offset <= len(text)


def test_truncated_file_names_the_last_key():
    text = json.dumps({"a": {"x": list(range(50))}, "b": {"y": "z" * 100}})
    error = _error(text[:-30], chunk_size=16)
    assert error.key == "b" and "truncated" in str(error)


@pytest.mark.parametrize("chunk_size", [1, 3, 64, 1 << 20])
@pytest.mark.parametrize("bad,reason", [
    ("[" * 3000 + '"]}\\"[{"' + "]" * 3000, "nested too deeply"),
    ('{"x": ' + "[" * 150 + "]" * 150 + "}", "nested more than"),
    ('"\\ud800"', "lone surrogate"),
    ('{"\\udfff": 1}', "lone surrogate"),
    ("9" * 5000, "number too long"),
])
def test_an_unusable_value_is_yielded_as_an_error_and_the_stream_goes_on(chunk_size, bad, reason):
    text = '{"a": {"x": [1, "}"]}, "bad": ' + bad + ', "b": [true, "\\"]"]}'
    items = list(iter_object_items(io.StringIO(text), chunk_size=chunk_size))
    assert [k for k, _ in items] == ["a", "bad", "b"]
    assert items[0][1] == {"x": [1, "}"]} and items[2][1] == [True, '"]']
    assert isinstance(items[1][1], JSONRecordError) and reason in str(items[1][1])


def test_a_deep_value_cut_by_the_end_of_the_file_is_still_fatal():
    error = _error('{"a": ' + "[" * 3000 + "]" * 10, chunk_size=16)
    assert error.key == "a" and "truncated" in str(error)
