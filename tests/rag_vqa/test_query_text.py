"""The query text a retriever is trained on is the text the pipeline queries it with."""

import json

import pytest

from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import question_image, sample_questions
from retriever import DEFAULT_QUERY_INSTRUCTION
from retriever.processing_ret import query_text
from retriever.training import load_train_queries

CASES = [  # (instruction, question): plain, padded, empty and missing parts
    ("Find it:", "what is this?"),
    ("  Find it:  ", " what is this?\n"),
    ("Describe:", ""),
    ("Describe:", "   "),
    (None, "only a question"),
    ("", " only a question "),
    (DEFAULT_QUERY_INSTRUCTION, "Which country's flag is this?"),
]


def test_query_text_joins_stripped_non_empty_parts():
    assert [query_text(i, q) for i, q in CASES] == [
        "Find it: what is this?", "Find it: what is this?", "Describe:", "Describe:",
        "only a question", "only a question",
        f"{DEFAULT_QUERY_INSTRUCTION} Which country's flag is this?"]
    assert query_text(None, None) == query_text("", " ") == ""


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return sample_pipeline("tiny", tmp_path_factory.mktemp("cache"), k=2)


def test_training_text_equals_the_text_the_pipeline_encodes(pipe, tmp_path, monkeypatch):
    rows = [{"data_id": f"q{n}", "passage_id": "p", "question": q,
             **({} if i is None else {"instruction": i})} for n, (i, q) in enumerate(CASES)]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    trained = [q.text for q in load_train_queries(path)]

    model = pipe.components.retriever.model
    encoded: list[str] = []
    original = model.encode_queries

    def spy(texts, *args, **kwargs):
        encoded.extend(texts)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode_queries", spy)
    image = question_image(sample_questions()[0])
    for instruction, question in CASES:
        if instruction and question.strip():  # the pipeline needs a question; None: configured
            pipe.retrieve_batch([(image, question)], instructions=[instruction])
    expected = [text for text, (i, q) in zip(trained, CASES) if i and q.strip()]
    assert encoded == expected and len(expected) == 3
    # a missing instruction is the configured one, joined the same way
    encoded.clear()
    pipe.retrieve(image, " only a question ")
    assert encoded == [query_text(pipe.config.retriever.instruction, "only a question")]
