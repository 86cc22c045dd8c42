"""The demo over HTTP on the loopback interface: what it serves, to whom, and what a visitor sees
when the input is wrong or the queue is full. ``python app.py`` runs as a process for the
serving tests; the queue and failure tests serve an app with stand-in pipelines in-process."""

from __future__ import annotations

import io
import json
import re
import stat
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from PIL import Image

import app
from rag_vqa.samples import SAMPLE_KB, question_image, sample_questions
from tests.test_app_process import demo_process, free_port

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with demo_process(tmp_path_factory.mktemp("demo")) as run:
        yield run


def client(url: str):
    return gradio_client.Client(f"{url}/", download_files=False, verbose=False)


def ask(c, image, question, k=3, tokens=4, profile="tiny") -> list[tuple]:
    """Every update of one question, as the client saw them."""
    job = c.submit(image, question, k, tokens, profile, api_name="/ask")
    job.result(timeout=60)
    return job.outputs()


def raw_ask(http: httpx.Client, data: list) -> dict:
    """A question sent as raw JSON (as any HTTP client may), without gradio_client's help;
    returns the final queue message."""
    config = http.get("/config").json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "ask")
    join = http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn,
                                                     "session_hash": "raw", "trigger_id": None,
                                                     "event_data": None})
    assert join.status_code == 200, join.text
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": "raw"}) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message["msg"] == "process_completed":
                    return message
    raise AssertionError("the question never completed")


def file_url(url: str, path: str | Path) -> str:
    return f"{url}/gradio_api/file={path}"


def thumbnails_in(evidence: str) -> list[str]:
    """The thumbnail files an evidence list shows."""
    return [unquote(p) for p in re.findall(r'<img src="gradio_api/file=([^"]+)"', evidence)]


def test_evidence_thumbnails_are_served_and_nothing_else_of_the_sample(demo):
    c = client(demo.url)
    q = sample_questions()[0]
    updates = ask(c, gradio_client.handle_file(str(question_image(q))), q.question)
    thumbnails = thumbnails_in(updates[0][1])
    assert len(thumbnails) == 3 and "meaningless" in updates[-1][0]
    with httpx.Client(cookies=c.cookies) as http:
        for path in thumbnails:
            resp = http.get(file_url(demo.url, path))
            assert resp.status_code == 200
            assert int(resp.headers["content-length"]) == len(resp.content)
            assert Image.open(io.BytesIO(resp.content)).format == "WEBP"
        for secret in (SAMPLE_KB / "questions.jsonl", SAMPLE_KB / "passages.jsonl",
                       SAMPLE_KB / "images" / "japan.png", question_image(q),
                       Path(app.__file__), Path("/etc/passwd")):
            resp = http.get(file_url(demo.url, secret))
            assert resp.status_code in (403, 404), f"{secret} was served"


def _upload(http: httpx.Client, name: str, data: bytes) -> str:
    http.get("/config")  # the first response gives the session cookie
    resp = http.post("/gradio_api/upload", files={"files": (name, data)})
    assert resp.status_code == 200, resp.text
    (path,) = resp.json()
    return path


def _png(colour=(200, 10, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format="PNG")
    return out.getvalue()


def test_an_upload_is_readable_only_by_the_session_that_made_it(demo):
    with httpx.Client(base_url=demo.url) as alice, httpx.Client(base_url=demo.url) as bob:
        path = _upload(alice, "holiday.png", _png())
        assert alice.get(file_url("", path)).content == _png()
        bob.get("/config")
        assert bob.get(file_url("", path)).status_code == 404
        assert bob.head(file_url("", path)).status_code == 404
        assert httpx.get(file_url(demo.url, path)).status_code == 404  # no session at all
        assert bob.get(f"/gradio_api/file/{path}").status_code == 404  # the older route
        # nor may another session name it as its photo
        done = raw_ask(bob, [{"path": path, "meta": {"_type": "gradio.FileData"}}, "q?", 3, 4,
                             "tiny"])
        answer, evidence = done["output"]["data"]
        assert answer.startswith("**Error:**") and "not available" in answer and evidence == ""
        done = raw_ask(alice, [{"path": path, "meta": {"_type": "gradio.FileData"}}, "q?", 3, 4,
                               "tiny"])
        assert "meaningless" in done["output"]["data"][0]


def test_a_huge_upload_is_refused(demo):
    with httpx.Client(base_url=demo.url) as http:
        http.get("/config")
        resp = http.post("/gradio_api/upload", files={"files": ("big.png", b"\0" * (21 << 20))})
    assert resp.status_code == 413
    assert not [p for p in demo.tmp.rglob("big.png")]


def test_the_session_cookie_is_http_only_and_given_once(demo):
    with httpx.Client(base_url=demo.url) as http:
        first = http.get("/config")
        assert "httponly" in first.headers["set-cookie"].lower()
        assert "set-cookie" not in http.get("/config").headers


def test_uploads_live_in_a_private_launch_folder(demo):
    with httpx.Client(base_url=demo.url) as http:
        path = Path(_upload(http, "p.png", _png((1, 2, 3))))
    (folder,) = demo.launch_folders()
    assert path.is_relative_to(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_payload_naming_a_server_file_is_refused_and_nothing_is_copied(demo):
    secret = SAMPLE_KB / "questions.jsonl"
    with httpx.Client(base_url=demo.url) as http:
        done = raw_ask(http, [{"path": str(secret), "meta": {"_type": "gradio.FileData"}},
                              "q?", 3, 4, "tiny"])
    assert not done["success"] or done["output"]["data"][0].startswith("**Error:**")
    assert not [p for p in demo.tmp.rglob(secret.name)], "the file was copied for serving"


def test_an_example_photo_can_be_asked_about(demo):
    with httpx.Client(base_url=demo.url) as http:
        config = http.get("/config").json()
        (examples,) = [c for c in config["components"] if c.get("type") == "dataset"]
        photo = examples["props"]["samples"][0][0]
        assert http.get(file_url("", photo["path"])).status_code == 200  # shown in the page
        done = raw_ask(http, [photo, sample_questions()[0].question, 3, 4, "tiny"])
    assert "meaningless" in done["output"]["data"][0]


def test_uploading_a_copy_of_a_shown_image_does_not_hide_it_from_others(demo):
    c = client(demo.url)
    q = sample_questions()[2]
    evidence = ask(c, gradio_client.handle_file(str(question_image(q))), q.question)[0][1]
    with httpx.Client(base_url=demo.url) as mallory, httpx.Client(base_url=demo.url) as other:
        config = mallory.get("/config").json()
        (examples,) = [c for c in config["components"] if c.get("type") == "dataset"]
        shown = [examples["props"]["samples"][0][0]["path"], thumbnails_in(evidence)[0]]
        for path in shown:
            _upload(mallory, Path(path).name, mallory.get(file_url("", path)).content)
        other.get("/config")
        for path in shown:
            assert other.get(file_url("", path)).status_code == 200


@pytest.mark.parametrize("question, k, message", [
    ({"text": "q?"}, 3, "must be text, not dict"),
    (42, 3, "must be text, not int"),
    ("q?", "three", "whole numbers"),
    ("q?", [3], "whole numbers"),
])
def test_wrong_typed_inputs_are_shown_as_errors(demo, question, k, message):
    c = client(demo.url)
    photo = gradio_client.handle_file(str(question_image(sample_questions()[0])))
    answer, evidence = ask(c, photo, question, k=k)[-1]
    assert answer.startswith("**Error:**") and message in answer and evidence == ""


def test_a_file_that_is_not_an_image_is_shown_as_an_error(demo, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("certainly not a PNG")
    answer, evidence = ask(client(demo.url), gradio_client.handle_file(str(notes)), "q?")[-1]
    assert answer.startswith("**Error:**") and "not a recognised image format" in answer
    assert evidence == "" and "Traceback" not in answer


# -- in-process: stand-in pipelines ---------------------------------------------------------------

class _Gated:
    """A pipeline whose answers wait for a gate: questions pile up in the queue."""

    def __init__(self, real) -> None:
        self.config = real.config
        self.note = real.note
        self.components = real.components
        self._real = real
        self.entered = threading.Event()
        self.gate = threading.Event()

    def stream(self, *args, **kwargs):
        self.entered.set()
        assert self.gate.wait(30)
        return self._real.stream(*args, **kwargs)


class _Failing:
    def __init__(self, real) -> None:
        self.config = real.config
        self.note = real.note

    def stream(self, *args, **kwargs):
        raise RuntimeError("the index went away")


@pytest.fixture()
def serve_in_process(tmp_path, monkeypatch):
    """Serves build_app(...) on a free loopback port in a thread; yields its URL."""
    import uvicorn

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    servers = []

    def start(choices, **options) -> str:
        owners = app.UploadOwners()
        blocks = app.build_app(choices, app.Thumbnails(tmp_path / "gradio" / "shown"), owners,
                               **options)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app.create_server_app(blocks, owners),
                                               host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rag_vqa.quickstart import sample_pipeline

    return sample_pipeline("tiny", tmp_path_factory.mktemp("cache"))


def test_a_full_queue_tells_the_visitor_it_is_busy(serve_in_process, tiny):
    gated = _Gated(tiny)
    url = serve_in_process(app.PipelineChoices("tiny", gated), concurrency=1, max_queue=1)
    photo = gradio_client.handle_file(str(question_image(sample_questions()[0])))
    running = client(url).submit(photo, "q?", 3, 4, "tiny", api_name="/ask")
    assert gated.entered.wait(30)                                      # being answered
    waiting = client(url).submit(photo, "q?", 3, 4, "tiny", api_name="/ask")
    deadline = time.monotonic() + 30                                   # ... and one waits
    while waiting.status().code != gradio_client.utils.Status.IN_QUEUE:
        assert time.monotonic() < deadline, waiting.status()
        time.sleep(0.05)
    with pytest.raises(gradio_client.utils.QueueError, match="Queue is full"):
        client(url).submit(photo, "q?", 3, 4, "tiny", api_name="/ask").result(timeout=30)
    gated.gate.set()
    assert "meaningless" in running.result(timeout=60)[0]
    assert "meaningless" in waiting.result(timeout=60)[0]


def test_a_failing_pipeline_is_an_error_message_not_gradios(serve_in_process, tiny):
    url = serve_in_process(app.PipelineChoices("tiny", tiny, lambda name: _Failing(tiny),
                                               available=lambda name: None))
    c = client(url)
    photo = gradio_client.handle_file(str(question_image(sample_questions()[0])))
    assert "meaningless" in ask(c, photo, "q?")[-1][0]
    answer, evidence = ask(c, photo, "q?", profile="small")[-1]
    assert answer == ("**Error:** sorry, that did not work (RuntimeError: the index went "
                      "away).")
    assert evidence == ""
