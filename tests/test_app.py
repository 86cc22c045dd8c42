"""Gradio handlers over a real (tiny) pipeline on the bundled sample, without a browser."""

import pytest
from PIL import Image

import app
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import question_image, sample_questions


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return sample_pipeline("tiny", tmp_path_factory.mktemp("cache"))


def test_ask_handler_streams_evidence_then_the_answer(pipeline):
    q = sample_questions()[0]
    image = Image.open(question_image(q))
    steps = list(app.ask_handler(pipeline, image, q.question, k=4, max_new_tokens=8))
    first_answer, gallery, rows = steps[0]
    assert first_answer.startswith("…") and len(rows) == 4 and len(gallery) == 4
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert [r[2] for r in rows] == sorted([r[2] for r in rows], reverse=True)
    assert all(r[1] for r in rows) and all(caption.startswith(f"{i}. ")
                                           for i, (_, caption) in enumerate(gallery, 1))
    final, _, final_rows = steps[-1]
    assert final_rows == rows
    assert "meaningless" in final and "generation" in final
    expected = pipeline.answer(image, q.question, k=4, max_new_tokens=8).answer
    assert f"**{expected}**" in final or not expected


@pytest.mark.parametrize("image, question, k, tokens, message", [
    (None, "q?", 5, 8, "upload a photo"),
    ("img", "   ", 5, 8, "type a question"),
    ("img", "q?", 0, 8, "k must be"),
    ("img", "q?", 5, 999, "max tokens"),
    ("img", "x" * 1001, 5, 8, "too long"),
    ("img", "q?", "five", 8, "whole numbers"),
])
def test_bad_inputs_become_messages(pipeline, image, question, k, tokens, message):
    image = Image.new("RGB", (10, 10)) if image == "img" else image
    with pytest.raises(app.InputError, match=message):
        next(app.ask_handler(pipeline, image, question, k, tokens))


def test_profiles_are_built_on_first_use_and_shared(pipeline):
    built = []

    def factory(name):
        built.append(name)
        return pipeline

    choices = app.PipelineChoices("tiny", pipeline, factory)
    assert choices.names[0] == "tiny" and "default" in choices.names
    assert choices.get(None) is pipeline and built == []
    assert choices.get("small") is pipeline and choices.get("small") is pipeline
    assert built == ["small"]
    with pytest.raises(app.InputError, match="unknown profile"):
        choices.get("huge")


def test_only_knowledge_base_images_and_examples_are_served(pipeline):
    choices = app.PipelineChoices("tiny", pipeline)
    paths = app.allowed_paths(choices)
    assert len(paths) == 2 and paths[0].endswith("sample_kb")
    assert paths[1].endswith("question_images")


def test_build_app_constructs_the_blocks(pipeline):
    pytest.importorskip("gradio")
    demo = app.build_app(app.PipelineChoices("tiny", pipeline))
    assert demo.title.startswith("rag-vqa")
