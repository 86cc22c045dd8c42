"""Gradio handlers over a real (tiny) pipeline on the bundled sample, without a browser."""

import logging
import os

import pytest
from PIL import Image

import app
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import SAMPLE_KB, question_image, sample_questions


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return sample_pipeline("tiny", tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def thumbnails(tmp_path):
    return app.Thumbnails(tmp_path / "thumbnails")


def test_ask_handler_sends_the_evidence_once_then_only_the_answer(pipeline, thumbnails):
    q = sample_questions()[0]
    image = Image.open(question_image(q))
    steps = list(app.ask_handler(pipeline, thumbnails, image, q.question, k=4, max_new_tokens=8))
    first_answer, gallery, rows = steps[0]
    assert first_answer.startswith("…") and len(rows) == 4 and len(gallery) == 4
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert [r[2] for r in rows] == sorted([r[2] for r in rows], reverse=True)
    assert all(r[1] for r in rows) and all(caption.startswith(f"{i}. ")
                                           for i, (_, caption) in enumerate(gallery, 1))
    assert all(step[1] is None and step[2] is None for step in steps[1:])  # not sent again
    final = steps[-1][0]
    assert "meaningless" in final and "generation" in final
    expected = pipeline.answer(image, q.question, k=4, max_new_tokens=8).answer
    assert f"**{expected}**" in final or not expected


def test_evidence_images_are_thumbnails_we_wrote_once(pipeline, thumbnails):
    q = sample_questions()[1]
    first = next(app.ask_handler(pipeline, thumbnails, str(question_image(q)), q.question, 3, 4))
    paths = [path for path, _ in first[1]]
    assert paths and all(isinstance(path, str) for path in paths)  # files, never PIL objects
    for path in paths:
        assert os.path.dirname(path) == str(thumbnails.folder) and path.endswith(".webp")
        with Image.open(path) as image:
            assert image.format == "WEBP" and max(image.size) <= app.THUMBNAIL_SIZE
    stamps = [os.stat(path).st_mtime_ns for path in paths]
    again = next(app.ask_handler(pipeline, thumbnails, str(question_image(q)), q.question, 3, 4))
    assert [path for path, _ in again[1]] == paths
    assert [os.stat(path).st_mtime_ns for path in paths] == stamps  # never rewritten


def test_large_evidence_images_are_shrunk_and_broken_ones_left_out(tmp_path, thumbnails):
    big = tmp_path / "big.png"
    Image.new("RGB", (1600, 900), (10, 200, 30)).save(big)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with Image.open(thumbnails.path_for(str(big))) as image:
        assert image.size == (app.THUMBNAIL_SIZE, app.THUMBNAIL_SIZE * 900 // 1600)
    assert thumbnails.path_for(str(broken)) is None
    assert thumbnails.path_for(str(tmp_path / "missing.png")) is None


@pytest.mark.parametrize("image, question, k, tokens, message", [
    (None, "q?", 5, 8, "upload a photo"),
    ("img", "   ", 5, 8, "type a question"),
    ("img", None, 5, 8, "type a question"),
    ("img", {"text": "q?"}, 5, 8, "must be text, not dict"),
    ("img", 42, 5, 8, "must be text, not int"),
    ("img", ["q?"], 5, 8, "must be text, not list"),
    ("img", "q?", 0, 8, "k must be"),
    ("img", "q?", 5, 999, "max tokens"),
    ("img", "x" * 1001, 5, 8, "too long"),
    ("img", "q?", "five", 8, "whole numbers"),
    ("img", "q?", 2.5, 8, "whole numbers"),
    ("img", "q?", True, 8, "whole numbers"),
    ("img", "q?", {"k": 5}, 8, "whole numbers"),
    ("img", "q?", 5, None, "whole numbers"),
])
def test_bad_inputs_become_messages(pipeline, thumbnails, image, question, k, tokens, message):
    image = Image.new("RGB", (10, 10)) if image == "img" else image
    with pytest.raises(app.InputError, match=message):
        next(app.ask_handler(pipeline, thumbnails, image, question, k, tokens))


def test_slider_and_api_numbers_are_accepted(pipeline, thumbnails):
    image = Image.new("RGB", (10, 10))
    answer, gallery, rows = next(app.ask_handler(pipeline, thumbnails, image, "q?", 3.0, "4"))
    assert len(rows) == 3


class _Exploding:
    """A pipeline whose retrieval fails after the evidence would have been shown."""

    def __init__(self, pipeline, fail_in_stream: bool) -> None:
        self.config = pipeline.config
        self._pipeline = pipeline
        self._fail_in_stream = fail_in_stream

    def stream(self, *args, **kwargs):
        if not self._fail_in_stream:
            raise RuntimeError("the index went away")
        stream = self._pipeline.stream(*args, **kwargs)

        def pieces():
            yield "partial"
            raise RuntimeError("the generator ran out of memory")

        stream._pieces = pieces()
        return stream


def _run(steps):
    return list(app.respond(steps))


def test_input_errors_are_shown_in_the_answer_area_with_the_evidence_cleared(pipeline,
                                                                             thumbnails):
    updates = _run(lambda: app.ask_handler(pipeline, thumbnails, None, "q?"))
    assert updates == [("**Error:** Please upload a photo first.", [], [])]


@pytest.mark.parametrize("in_stream", [False, True])
def test_failures_are_logged_and_shown_as_errors_never_leaving_stale_evidence(
        pipeline, thumbnails, caplog, in_stream):
    exploding = _Exploding(pipeline, in_stream)
    image = Image.open(question_image(sample_questions()[0]))
    with caplog.at_level(logging.ERROR, logger="app"):
        updates = _run(lambda: app.ask_handler(exploding, thumbnails, image, "q?", 3, 4))
    answer, gallery, rows = updates[-1]
    assert answer.startswith("**Error:**") and "RuntimeError" in answer
    assert ("out of memory" if in_stream else "went away") in answer
    assert "Traceback" not in answer and gallery == [] and rows == []
    if in_stream:
        assert len(updates[0][1]) == 3  # the evidence had been shown, and is cleared now
    assert any(record.exc_info for record in caplog.records)  # the traceback stays here


def test_a_failed_generation_is_an_error_not_an_answer(pipeline, thumbnails, monkeypatch):
    image = Image.open(question_image(sample_questions()[0]))
    stream = pipeline.stream(image, "q?", k=2, max_new_tokens=4)
    finish = stream._finish

    def failed():
        result = finish()
        result.error = "CUDA out of memory"
        return result

    stream._finish = failed
    monkeypatch.setattr(pipeline, "stream", lambda *a, **k: stream)
    updates = list(app.ask_handler(pipeline, thumbnails, image, "q?", 2, 4))
    assert updates[-1][0] == "**Error:** the answer could not be generated: CUDA out of memory"


def test_uploaded_photos_are_checked_before_they_are_opened(tmp_path, monkeypatch):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    photo, text = uploads / "photo.png", uploads / "notes.txt"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(photo)
    text.write_text("not an image")
    owners = app.UploadOwners()
    owners.record("alice", [str(photo), str(text)])
    assert app.uploaded_image(None, "alice", owners) is None
    assert app.uploaded_image({"path": str(photo)}, "alice", owners).size == (20, 10)
    cases = [({"path": str(photo)}, "bob", "not available"),
             ({"path": str(photo)}, None, "not available"),
             ({"path": str(SAMPLE_KB / "images" / "japan.png")}, "alice", "not available"),
             ({"path": str(text)}, "alice", "not a recognised image format"),
             ("photo.png", "alice", "must be an uploaded image"),
             (42, "alice", "must be an uploaded image"),
             ({"path": None}, "alice", "must be an uploaded image")]
    for payload, session, message in cases:
        with pytest.raises(app.InputError, match=message):
            app.uploaded_image(payload, session, owners)


def test_upload_owners_compare_real_paths(tmp_path):
    owners = app.UploadOwners()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.jpg").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    owners.record("alice", [str(tmp_path / "a" / "f.jpg")])
    for spelling in (tmp_path / "a" / "f.jpg", f"{tmp_path}/a/./f.jpg",
                     f"{tmp_path}/link/../a/f.jpg", tmp_path / "link" / "f.jpg"):
        assert owners.refuses("bob", str(spelling)) and not owners.refuses("alice", str(spelling))
    assert not owners.refuses("bob", str(tmp_path / "a" / "other.jpg"))  # not an upload


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
    for bad in ("huge", 3, {"profile": "tiny"}):
        with pytest.raises(app.InputError, match="unknown profile"):
            choices.get(bad)


def test_build_app_constructs_the_blocks(pipeline, thumbnails, tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # not the shared /tmp/gradio
    demo = app.build_app(app.PipelineChoices("tiny", pipeline), thumbnails, app.UploadOwners(),
                         concurrency=2, max_queue=7)
    assert demo.title.startswith("rag-vqa")
    assert demo._queue.max_size == 7
    ask = [fn for fn in demo.fns.values() if fn.api_name == "ask"]
    assert len(ask) == 1 and ask[0].concurrency_limit == 2 and not ask[0].preprocess
    assert len(ask[0].targets) == 2  # the button and the question box share one limit
