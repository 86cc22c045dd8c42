"""Streaming readers for the four published knowledge-base formats.

``ret-jsonl`` and ``m2kr`` are passage formats: one record is one passage, never split (their ids
are what evaluation sets refer to). ``infoseek-wiki`` and ``evqa-kb`` are article formats: one
record is one article, split into passages by :class:`~rag_vqa.kb.splitting.PassageSplitter`.

:func:`iter_records` yields one :class:`SourceRecord` per source record, numbered the same way on
every run; a malformed record carries its :class:`KBFormatError` instead of passages, so the caller
decides whether to stop or to skip and count it. Unknown fields are kept in ``Passage.extra`` for
passage formats and ignored for article formats. Image references are passed on as written; the
importer checks them (:mod:`rag_vqa.kb.imagerefs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.fileio import JSONRecordError

from .errors import KBFormatError, KBSourceError
from .jsonstream import DEFAULT_CHUNK_SIZE, JSONStreamError, iter_object_items
from .records import Passage, id_problem
from .sources import (
    JSONL_SUFFIXES,
    PARQUET_SUFFIXES,
    iter_jsonl,
    iter_parquet,
    list_files,
    open_text,
)
from .splitting import PassageSplitter

__all__ = ["FORMATS", "PASSAGE_FORMATS", "ARTICLE_FORMATS", "SourceRecord", "check_format",
           "source_files", "iter_records", "iter_passages"]

FORMATS = ("ret-jsonl", "m2kr", "infoseek-wiki", "evqa-kb")
PASSAGE_FORMATS = frozenset({"ret-jsonl", "m2kr"})
ARTICLE_FORMATS = frozenset({"infoseek-wiki", "evqa-kb"})


@dataclass
class SourceRecord:
    """One record of the source: its passages, or the reason it is malformed."""

    index: int                      # 0-based, across shards
    path: str
    location: str                   # "line 12", "row 3", "key 'https://...'"
    passages: list[Passage] = field(default_factory=list)
    error: KBFormatError | None = None


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise KBSourceError(f"unknown knowledge-base format {fmt!r}; choose one of "
                            f"{', '.join(FORMATS)}")
    return fmt


def source_files(fmt: str, source: str | Path) -> list[Path]:
    """The files an import of ``source`` reads, in order (passage formats accept a shard folder)."""
    check_format(fmt)
    if fmt in PASSAGE_FORMATS:
        suffixes = JSONL_SUFFIXES + PARQUET_SUFFIXES if fmt == "m2kr" else JSONL_SUFFIXES
        return list_files(Path(source), suffixes, allow_dir=True)
    return list_files(Path(source), JSONL_SUFFIXES, allow_dir=False)


# -- field access -----------------------------------------------------------------------------

def check_id(value: Any, fail: Any) -> str:
    """``value`` as an id string, or ``fail(reason)`` raised (the rule:
    :func:`~rag_vqa.kb.records.id_problem`)."""
    problem = id_problem(value)
    if problem:
        raise fail(problem)
    return str(value)


class _Fields:
    """Typed access to one record's fields, raising :class:`KBFormatError` with its location."""

    def __init__(self, record: dict[str, Any], path: Path, location: str) -> None:
        self.record, self.path, self.location = record, path, location

    def fail(self, name: str | None, message: str) -> KBFormatError:
        return KBFormatError(self.path, self.location, name, message)

    def ident(self, name: str) -> str:
        """A required id: a string, or an integer turned into one, that passes
        :func:`~rag_vqa.kb.records.id_problem` (not blank, not too long, printable)."""
        if name not in self.record or self.record[name] is None:
            raise self.fail(name, "missing required field")
        return check_id(self.record[name], lambda reason: self.fail(name, reason))

    def text(self, name: str, required: bool = False) -> str:
        """A string that may be null (-> '')."""
        if required and name not in self.record:
            raise self.fail(name, "missing required field")
        value = self.record.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(name, f"expected a string, got {type(value).__name__}")
        return value

    def optional(self, name: str) -> str | None:
        """An optional string; null, absent and blank are None."""
        value = self.text(name)
        return value if value.strip() else None

    def str_list(self, name: str, required: bool = False, allow_null: bool = True) -> list:
        if name not in self.record or self.record[name] is None:
            if required:
                raise self.fail(name, "missing required field")
            return []
        value = self.record[name]
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            if not (isinstance(item, str) or (allow_null and item is None)):
                raise self.fail(name, f"item {i}: expected a string, got {type(item).__name__}")
        return value

    def extra(self, known: frozenset[str]) -> dict[str, Any] | None:
        kept = {k: v for k, v in self.record.items()
                if k not in known and not k.startswith("__index_level_")}
        return kept or None


# title and article_id are optional extensions (our bundled sample uses them)
_RET_FIELDS = frozenset({"passage_id", "passage_text", "passage_image_path", "title",
                         "article_id"})
_M2KR_FIELDS = frozenset({"passage_id", "passage_content", "language", "title"})


def _ret_passage(f: _Fields) -> list[Passage]:
    pid = f.ident("passage_id")
    return [Passage(passage_id=pid, text=f.text("passage_text"), title=f.optional("title"),
                    article_id=f.optional("article_id") or pid,
                    image=f.optional("passage_image_path"), extra=f.extra(_RET_FIELDS))]


def _m2kr_passage(f: _Fields) -> list[Passage]:
    # the title names the Wikipedia article (InfoSeek, E-VQA passages carry one): it is the
    # passage's article, so that entity recall counts a hit on any passage of the right article
    pid = f.ident("passage_id")
    title = f.optional("title")
    return [Passage(passage_id=pid, text=f.text("passage_content", required=True),
                    title=title, article_id=title or pid, language=f.optional("language"),
                    extra=f.extra(_M2KR_FIELDS))]


def _infoseek_passages(f: _Fields, splitter: PassageSplitter) -> list[Passage]:
    qid = f.ident("wikidata_id")
    title, url = f.optional("wikipedia_title"), f.optional("wikipedia_url")
    content, image = f.text("wikipedia_content"), f.optional("wikipedia_image_url")
    passages = splitter.split_section(content, article_id=qid, section_index=0, title=title,
                                      url=url)
    if not passages:
        passages = [splitter.context_passage(article_id=qid, section_index=0, title=title, url=url)]
    if image:
        passages[0] = dataclasses.replace(passages[0], image=image)
    return passages


def _evqa_passages(key: str, f: _Fields, splitter: PassageSplitter) -> list[Passage]:
    article_id = check_id(key, lambda reason: f.fail(None, f"the article key: {reason}")) \
        if key else f.ident("url")
    title = f.optional("title")
    texts = f.str_list("section_texts", required=True)
    titles = f.str_list("section_titles")
    if titles and len(titles) != len(texts):
        raise f.fail("section_titles", f"{len(titles)} titles for {len(texts)} section_texts")
    urls = f.str_list("image_urls", allow_null=False)
    descriptions = f.str_list("image_reference_descriptions")
    indices = f.record.get("image_section_indices") or []
    if not isinstance(indices, list):
        raise f.fail("image_section_indices", f"expected a list, got {type(indices).__name__}")
    images: dict[int, list[tuple[str, str | None]]] = {}
    for i, image_url in enumerate(urls):
        section = indices[i] if i < len(indices) else 0
        if isinstance(section, bool) or not isinstance(section, int) or \
                not 0 <= section < max(len(texts), 1):
            section = 0  # unknown section: the image still belongs to the article
        images.setdefault(section, []).append(
            (image_url, descriptions[i] if i < len(descriptions) else None))
    passages: list[Passage] = []
    for index in range(max(len(texts), 1)):
        section_title = (titles[index] or None) if titles else None
        common = dict(article_id=article_id, section_index=index, title=title,
                      section=section_title, url=article_id)
        found = splitter.split_section(texts[index] or "", **common) if texts else []
        section_images = images.get(index)
        if section_images and not found:
            found = [splitter.context_passage(**common)]
        if section_images:
            found[0] = dataclasses.replace(found[0], image=section_images[0][0], extra={
                "image_urls": [u for u, _ in section_images],
                "image_reference_descriptions": [d for _, d in section_images]})
        passages.extend(found)
    if not passages:
        passages = [splitter.context_passage(article_id=article_id, section_index=0, title=title,
                                             url=article_id)]
    return passages


# -- record streams ---------------------------------------------------------------------------

def _line_records(fmt: str, files: list[Path], start: int,
                  splitter: PassageSplitter | None) -> Iterator[SourceRecord]:
    offset = 0
    for path in files:
        is_parquet = path.name.lower().endswith(PARQUET_SUFFIXES)
        rows = iter_parquet(path, max(0, start - offset)) if is_parquet \
            else iter_jsonl(path, max(0, start - offset))
        while True:
            try:
                local, location, value, problem = next(rows)
            except StopIteration as stop:
                offset += stop.value
                break
            record = SourceRecord(index=offset + local, path=str(path), location=location)
            if problem is not None:
                record.error = KBFormatError(path, location, problem.field, problem.reason)
                yield record
                continue
            fields = _Fields(value, path, location)
            try:
                if fmt == "ret-jsonl":
                    record.passages = _ret_passage(fields)
                elif fmt == "m2kr":
                    record.passages = _m2kr_passage(fields)
                else:
                    record.passages = _infoseek_passages(fields, splitter)
            except KBFormatError as exc:
                record.error = exc
            yield record


def _evqa_records(path: Path, start: int, splitter: PassageSplitter,
                  chunk_size: int) -> Iterator[SourceRecord]:
    with open_text(path) as handle:
        items = iter_object_items(handle, chunk_size=chunk_size)
        index = -1
        while True:
            try:
                key, value = next(items)
            except StopIteration:
                return
            except JSONStreamError as exc:
                where = f"key {_short(exc.key)}" if exc.key is not None else "top level"
                raise KBFormatError(path, f"{where}, near character {exc.offset}", None,
                                    f"{exc.reason}; the stream cannot be resynchronised, so this "
                                    "is fatal even when skipping bad records") from exc
            except (OSError, EOFError, UnicodeDecodeError) as exc:
                raise KBFormatError(path, f"after record {index + 1}", None,
                                    f"corrupt or truncated file ({exc})") from exc
            index += 1
            if index < start:
                continue
            location = f"key {_short(key)}"
            record = SourceRecord(index=index, path=str(path), location=location)
            if isinstance(value, JSONRecordError):
                record.error = KBFormatError(path, location, value.field, value.reason)
            elif not isinstance(value, dict):
                record.error = KBFormatError(path, location, None, "expected a JSON object for "
                                             f"the article, got {type(value).__name__}")
            else:
                try:
                    record.passages = _evqa_passages(key, _Fields(value, path, location), splitter)
                except KBFormatError as exc:
                    record.error = exc
            yield record


def _short(key: str, limit: int = 120) -> str:
    """``repr(key)``, cut to ``limit`` characters: keys are untrusted and may be huge."""
    text = repr(key)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(key)} characters)"


def iter_records(fmt: str, source: str | Path, *, splitter: PassageSplitter | None = None,
                 start: int = 0, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[SourceRecord]:
    """Records of ``source`` from record number ``start`` on (earlier ones are skipped cheaply).

    ``splitter`` applies to article formats (default: ``PassageSplitter()``); ``chunk_size`` is
    the read size of the E-VQA streaming parser.
    """
    files = source_files(fmt, source)
    if fmt in ARTICLE_FORMATS and splitter is None:
        splitter = PassageSplitter()
    if fmt == "evqa-kb":
        return _evqa_records(files[0], start, splitter, chunk_size)
    return _line_records(fmt, files, start, splitter)


def iter_passages(fmt: str, source: str | Path, *, splitter: PassageSplitter | None = None,
                  skip_bad: bool = False) -> Iterator[Passage]:
    """All passages of ``source``; a malformed record raises unless ``skip_bad``."""
    for record in iter_records(fmt, source, splitter=splitter):
        if record.error is not None:
            if skip_bad:
                continue
            raise record.error
        yield from record.passages
