"""Arbitrary JSON in every field of every knowledge-base format: a record is either read or
refused with a KBFormatError naming file, location and field; nothing else is ever raised, and
an import with skip_bad keeps every good record around the bad ones (hypothesis)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_vqa.kb.errors import KBError, KBFormatError
from rag_vqa.kb.importer import import_kb
from rag_vqa.kb.readers import iter_records
from rag_vqa.kb.records import id_problem
from rag_vqa.kb.splitting import PassageSplitter
from rag_vqa.kb.store import PassageStore

from .kbdata import evqa_article, ret_records, wiki_records

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SPLITTER = PassageSplitter(max_tokens=40, overlap=8)

# text with what breaks naive readers: control characters, separators, lone surrogates
ODD_TEXT = st.lists(st.sampled_from(["a", " ", "\x00", "\n", "\u2028", "\ud800", "\udfff",
                                     "é", ":", "/", "..", "javascript:", "data:", "\ufeff",
                                     "x" * 1001]), max_size=6).map("".join)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(max_size=12) | ODD_TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5) | ODD_TEXT, inner, max_size=3),
                    max_leaves=8)
DEEP = st.integers(101, 3000).map(lambda n: "[" * n + "]" * n)

BASE = {
    "ret-jsonl": lambda i: ret_records(i + 1, i)[0],
    "m2kr": lambda i: {"passage_id": f"m{i}", "passage_content": f"text {i}", "language": "en",
                       "title": f"T{i}"},
    "infoseek-wiki": lambda i: wiki_records(i + 1)[i],
    "evqa-kb": lambda i: evqa_article(i, sections=2),
}
FIELDS = {
    "ret-jsonl": ["passage_id", "passage_text", "passage_image_path", "title", "article_id"],
    "m2kr": ["passage_id", "passage_content", "language", "title"],
    "infoseek-wiki": ["wikidata_id", "wikipedia_title", "wikipedia_content",
                      "wikipedia_image_url", "wikipedia_url"],
    "evqa-kb": ["title", "url", "section_titles", "section_texts", "image_urls",
                "image_reference_descriptions", "image_section_indices"],
}
FORMATS = list(BASE)


@st.composite
def mutated(draw, fmt: str, index: int) -> tuple[dict | str, bool]:
    """(record or raw JSON text, whether it was changed) for record ``index`` of ``fmt``."""
    record = BASE[fmt](index)
    how = draw(st.sampled_from(["keep", "keep", "value", "value", "drop", "extra", "deep",
                                "whole"]))
    if how == "keep":
        return record, False
    if how == "whole":
        return json.dumps(draw(JSON)), True
    if how == "deep":
        return json.dumps(record)[:-1] + f', "{draw(st.sampled_from(FIELDS[fmt]))}": ' + \
            draw(DEEP) + "}", True
    if how == "extra":
        record[draw(st.text(max_size=5) | ODD_TEXT)] = draw(JSON)
        return record, True
    name = draw(st.sampled_from(FIELDS[fmt]))
    if how == "drop":
        record.pop(name, None)
    else:
        record[name] = draw(JSON | st.lists(JSON, max_size=3))
    return record, True


def write_source(folder: Path, fmt: str, records: list) -> Path:
    texts = [r if isinstance(r, str) else json.dumps(r) for r in records]
    if fmt == "evqa-kb":
        keys = [f"https://en.wikipedia.org/wiki/Entity_{i}" for i in range(len(texts))]
        path = folder / "kb.json"
        path.write_text("{" + ", ".join(f"{json.dumps(k)}: {t}" for k, t in zip(keys, texts))
                        + "}")
        return path
    path = folder / "kb.jsonl"
    path.write_text("\ufeff" + "".join(t + "\n" for t in texts))  # a BOM, as Windows tools add
    return path


def check_records(fmt: str, path: Path) -> list:
    records = list(iter_records(fmt, path, splitter=SPLITTER, chunk_size=7))
    for record in records:
        if record.error is not None:
            assert isinstance(record.error, KBFormatError)
            assert str(record.error).startswith(f"{path}, {record.location}")
            continue
        assert record.passages
        for passage in record.passages:
            assert id_problem(passage.passage_id) is None or fmt == "evqa-kb"
            assert isinstance(passage.text, str)
            assert passage.image is None or isinstance(passage.image, str)
            json.dumps(passage.extra)  # storable
    return records


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(data=st.data())
def test_any_json_in_any_field_is_read_or_a_located_record_error(fmt, data):
    records = [data.draw(mutated(fmt, i)) for i in range(4)]
    with tempfile.TemporaryDirectory() as folder:
        path = write_source(Path(folder), fmt, [r for r, _ in records])
        read = check_records(fmt, path)
        assert len(read) == len(records)
        for (_, changed), record in zip(records, read):
            assert changed or record.error is None  # untouched neighbours always survive


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_import_with_skip_bad_keeps_every_good_record(fmt, data):
    records = [data.draw(mutated(fmt, i)) for i in range(6)]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        path = write_source(folder, fmt, [r for r, _ in records])
        read = check_records(fmt, path)
        (folder / "images").mkdir()
        report = import_kb(fmt, path, folder / "kb", folder / "images", skip_bad=True,
                           splitter=SPLITTER, batch_size=2, progress=False)
        kept, duplicates = set(), 0  # the rule: a record whose id was seen before is refused
        for record in (r for r in read if r.error is None):
            ids = [p.passage_id for p in record.passages]
            if len(set(ids)) < len(ids) or kept & set(ids):
                duplicates += 1
            else:
                kept |= set(ids)
        with PassageStore.open(folder / "kb") as store:
            assert {p.passage_id for _, p in store.iter_rows()} == kept
        assert report.bad_records == sum(r.error is not None for r in read) + duplicates
        try:
            import_kb(fmt, path, folder / "strict", splitter=SPLITTER, progress=False)
        except KBError as exc:
            assert not isinstance(exc, RecursionError)
