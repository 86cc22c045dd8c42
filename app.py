"""Gradio demo: upload a photo, ask a question, watch the answer stream in with its evidence.

    python app.py --sample                      # the bundled sample knowledge base
    python app.py --config rag.toml             # your index, knowledge base and models
    rag-vqa demo ...                            # the same, from the command line

The handlers are plain functions over an injected pipeline, tested without a browser. The
evidence is one list: each passage's thumbnail beside its rank, score, title, section, URL and
full text, marked when the prompt held it and highlighted when the answer cites it (the
answer's confidence is shown with it; one that abstains streams only the abstain text). Only
decoded image content leaves the server: evidence images are re-encoded as thumbnails in a
private (0700) per-launch folder that also holds Gradio's uploads and cache (removed at exit),
and an upload is readable only by the browser session that made it. The queue is bounded (one
question at a time by default: the models are shared; a full queue says "busy, retry"), and
every failure is an error message in the answer area with the evidence cleared. The profile menu
lists only profiles that can load here, and the examples appear only over the bundled sample.
"""

# No `from __future__ import annotations`: Gradio finds the gr.Request parameter of a handler
# by its evaluated annotation.
import argparse
import hashlib
import html
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from demo_server import (
    SESSION_COOKIE,
    UploadOwners,
    create_server_app,
    launch_folder,
    serve,
    stop_on_signals,
)
from rag_vqa import Evidence, RagVQA
from rag_vqa.cli import USER_ERRORS
from rag_vqa.cli_pipeline import add_demo_options, add_pipeline_options, pipeline_from_args
from rag_vqa.config import PROFILES
from rag_vqa.quickstart import profile_available, sample_pipeline, uses_sample_kb
from rag_vqa.samples import question_image, sample_questions
from retriever.fileio import atomic_write
from retriever.images import ImageInput, ImageLoadError, load_image

logger = logging.getLogger("app")

MAX_K = 20
MAX_NEW_TOKENS = 64
MAX_QUESTION = 1000
THUMBNAIL_SIZE = 320                  # longest side of an evidence thumbnail, in pixels
SHOWN_SIZE = 112                      # ... and as shown beside its passage, in CSS pixels
FILE_ROUTE = "gradio_api/file="       # Gradio's file route (relative: works behind a proxy)

Update = tuple[str, str | None]       # answer markdown, evidence HTML (None: unchanged)


class InputError(ValueError):
    """Bad user input: shown as a message in the page, never as a stack trace."""


class PipelineChoices:
    """The configured pipeline plus one per other profile over the sample that can load here
    (``available`` says which), built on first use and then shared by every visitor."""

    def __init__(self, default_name: str, default: RagVQA,
                 factory: Callable[[str], RagVQA] = sample_pipeline,
                 available: Callable[[str], str | None] = profile_available) -> None:
        self.default_name = default_name
        self._pipelines = {default_name: default}
        self._factory = factory
        self._lock = threading.Lock()
        self._names = [default_name] + [p for p in PROFILES
                                        if p != default_name and available(p) is None]

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def default(self) -> RagVQA:
        return self._pipelines[self.default_name]

    def get(self, name: Any) -> RagVQA:
        name = name or self.default_name
        if not isinstance(name, str) or name not in self.names:
            raise InputError(f"unknown profile {name!r}")
        with self._lock:
            if name not in self._pipelines:
                try:
                    self._pipelines[name] = self._factory(name)
                except (OSError, ValueError, RuntimeError) as exc:
                    raise InputError(f"profile {name!r} is not available here: {exc}") from exc
            return self._pipelines[name]


# -- input ---------------------------------------------------------------------------------------

def _whole(value: Any) -> int:
    """A whole number from a slider or an API client (5, 5.0, "5"); anything else is refused."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{type(value).__name__} is not a whole number")
    return int(value)


def check_inputs(image: Any, question: Any, k: Any, max_new_tokens: Any
                 ) -> tuple[str, int, int]:
    """The question, k and the token limit, checked: anything wrong is an :class:`InputError`."""
    if image is None:
        raise InputError("Please upload a photo first.")
    if question is not None and not isinstance(question, str):
        raise InputError(f"The question must be text, not {type(question).__name__}.")
    question = (question or "").strip()
    if not question:
        raise InputError("Please type a question about the photo.")
    if len(question) > MAX_QUESTION:
        raise InputError(f"The question is too long ({MAX_QUESTION} characters at most).")
    try:
        k, max_new_tokens = _whole(k), _whole(max_new_tokens)
    except (TypeError, ValueError) as exc:
        raise InputError("k and max tokens must be whole numbers.") from exc
    if not 1 <= k <= MAX_K or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise InputError(f"k must be 1-{MAX_K} and max tokens 1-{MAX_NEW_TOKENS}.")
    return question, k, max_new_tokens


def uploaded_image(payload: Any, session: str | None, owners: UploadOwners) -> ImageInput:
    """The photo of a question, from Gradio's raw file payload, decoded safely. Only files in
    Gradio's upload folder that this session may read are opened."""
    from gradio.utils import get_upload_folder, is_in_or_equal

    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else None
    if not isinstance(path, str) or not path:
        raise InputError("The photo must be an uploaded image file.")
    if not is_in_or_equal(path, get_upload_folder()) or owners.refuses(session, path):
        raise InputError("That photo is not available; please upload it again.")
    try:
        return load_image(path, label="the uploaded photo")
    except ImageLoadError as exc:
        raise InputError(f"{exc} - please upload a photo (JPEG, PNG, WebP ...).") from exc


# -- output --------------------------------------------------------------------------------------

class Thumbnails:
    """The images the page shows (evidence, example photos) as small WebP files of our own: each
    is decoded safely and written once, atomically, under a name derived from its path and
    version, so a file being downloaded is never rewritten. The folder lies in Gradio's upload
    folder, which Gradio then serves it from as is; uploads go to folders named by a digest."""

    def __init__(self, folder: str | os.PathLike, size: int = THUMBNAIL_SIZE) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.size = size

    def path_for(self, image_path: str) -> str | None:
        try:
            real = os.path.realpath(image_path)
            st = os.stat(real)
            key = hashlib.sha256(f"{real}\0{st.st_mtime_ns}\0{st.st_size}".encode()).hexdigest()
            out = self.folder / f"{key[:32]}.webp"
            if not out.exists():
                image = load_image(real, label=f"evidence image {Path(real).name}")
                image.thumbnail((self.size, self.size))
                atomic_write(out, lambda tmp: image.save(tmp, format="WEBP", quality=85),
                             durable=False)
            return str(out)
        except (OSError, ValueError) as exc:  # ImageLoadError is a ValueError
            logger.warning("evidence image %s left out: %s", image_path, exc)
            return None


def _safe_url(url: str | None) -> str | None:
    """http(s) links only (a KB may hold anything, ``javascript:`` included)."""
    return url if url and urlsplit(url).scheme in ("http", "https") else None


CITED_STYLE = "background:#f59e0b1f;box-shadow:inset 4px 0 #f59e0b;padding-left:10px"


def evidence_html(evidence: Sequence[Evidence], thumbnails: Thumbnails,
                  used: Sequence[str] = (), cited: Sequence[str] = ()) -> str:
    """The evidence as one list: each passage's thumbnail beside its rank, score, title,
    section, URL and whole text; the passages the prompt held are marked, and those the answer
    cites highlighted (as the CLI stars them). Everything from the knowledge base is escaped."""
    if not evidence:
        return ""
    used_ids, cited_ids, rows = set(used), set(cited), []
    for ev in evidence:
        thumbnail = thumbnails.path_for(ev.image_path) if ev.image_path else None
        image = (f'<img src="{FILE_ROUTE}{quote(thumbnail)}" alt="" loading="lazy" style="width:'
                 f'{SHOWN_SIZE}px;max-height:{SHOWN_SIZE}px;object-fit:contain;flex:none;'
                 'border-radius:4px;border:1px solid #8886;background:#8881">' if thumbnail else
                 f'<div style="width:{SHOWN_SIZE}px;flex:none"></div>')
        head = [f"<b>#{ev.rank}</b>", f"<b>{html.escape(ev.title or ev.passage_id)}</b>"]
        if ev.section:
            head.append(html.escape(ev.section))
        head = [" · ".join(head), f'<span style="opacity:0.75">score {ev.score:.3f}</span>']
        if ev.passage_id in used_ids:
            head.append('<span class="in-prompt" style="background:#2563eb;color:#fff;'
                        'padding:0 6px;border-radius:8px">in the prompt</span>')
        mark = highlight = ""
        if ev.passage_id in cited_ids:
            head.append('<span class="cited" style="background:#f59e0b;color:#000;'
                        'padding:0 6px;border-radius:8px">cited</span>')
            mark, highlight = 'data-cited="true" ', f";{CITED_STYLE}"
        url = _safe_url(ev.url)
        meta = html.escape(ev.passage_id)
        if url:
            meta = (f'<a href="{html.escape(url)}" target="_blank" rel="noopener noreferrer">'
                    f"{html.escape(url)}</a> · {meta}")
        rows.append(
            f'<div class="evidence-item" data-passage="{html.escape(ev.passage_id)}" '
            f'{mark}style="display:flex;gap:12px;align-items:flex-start;padding:8px 0;'
            f'border-bottom:1px solid #8883{highlight}">'
            f'{image}<div style="min-width:0">'
            f'<div style="display:flex;flex-wrap:wrap;gap:8px;align-items:center">'
            f'{"".join(head)}</div>'
            f'<div style="font-size:0.85em;opacity:0.75">{meta}</div>'
            f'<div class="evidence-text" style="white-space:pre-wrap;overflow-wrap:anywhere">'
            f"{html.escape(ev.text)}</div></div></div>")
    return ('<div class="evidence-list"><div style="font-weight:600;margin-bottom:4px">Evidence'
            "</div>" + "".join(rows) + "</div>")


def _answer_markdown(text: str, note: str = "", done: bool = False, timings=None,
                     confidence: float | None = None, abstained: bool = False) -> str:
    lines = [f"**{text}**" if done and text else (text or "…")]
    if note:
        lines.append(f"\n> {note}")
    if done and timings:
        extra = "" if confidence is None else f" · confidence {confidence:.3f}" + (
            " (under the abstention threshold)" if abstained else "")
        lines.append(f"\n<sub>retrieval {1000 * (timings['encode_query'] + timings['search']):.0f}"
                     f" ms · generation {1000 * timings['generate']:.0f} ms{extra}</sub>")
    return "\n".join(lines)


def error_update(message: str) -> Update:
    """The answer area shows the error; the evidence is emptied, so nothing stale stays."""
    return f"**Error:** {message}", ""


def ask_handler(pipeline: RagVQA, thumbnails: Thumbnails, image: ImageInput, question: Any,
                k: Any = 5, max_new_tokens: Any = 32) -> Iterator[Update]:
    """Yields (answer markdown, evidence HTML): the evidence once, then only the growing answer
    (evidence None: unchanged), and the evidence again at the end when the answer cites
    passages, now highlighted. Bad input raises :class:`InputError`."""
    question, k, max_new_tokens = check_inputs(image, question, k, max_new_tokens)
    max_new_tokens = min(max_new_tokens, pipeline.config.generator.max_new_tokens)
    stream = pipeline.stream(image, question, k=k, max_new_tokens=max_new_tokens)
    note = pipeline.note  # from the models loaded (rag_vqa.notes)
    text = ""
    yield (_answer_markdown("", note),
           evidence_html(stream.evidence, thumbnails, stream.used_passages))
    for piece in stream:
        text += piece
        yield _answer_markdown(text.strip(), note), None
    result = stream.result
    if result.error is not None:
        yield f"**Error:** the answer could not be generated: {result.error}", None
    else:
        cited = evidence_html(result.evidence, thumbnails, result.used_passages,
                              result.citations) if result.citations else None
        yield _answer_markdown(result.answer, note, done=True, timings=result.timings,
                               confidence=result.confidence, abstained=result.abstained), cited


def respond(steps: Callable[[], Iterator[Update]]) -> Iterator[Update]:
    """Runs a handler so that nothing escapes: bad input becomes its message, a failure is
    logged with its traceback here and shown as a short error, never as Gradio's generic one."""
    try:
        yield from steps()
    except InputError as exc:
        yield error_update(str(exc))
    except Exception as exc:  # noqa: BLE001 - the page's last line of defence
        logger.exception("question failed")
        yield error_update(f"sorry, that did not work ({type(exc).__name__}: {exc}).")


def build_app(choices: PipelineChoices, thumbnails: Thumbnails, owners: UploadOwners,
              concurrency: int = 1, max_queue: int = 32):
    """The Blocks UI. Inputs reach the handler unprocessed (``preprocess=False``), so a value of
    any type is checked by :func:`check_inputs` and :func:`uploaded_image`, not by Gradio."""
    import gradio as gr

    def on_ask(image, question, k, max_new_tokens, profile, request: gr.Request = None):
        session = request.cookies.get(SESSION_COOKIE) if request is not None else None

        def steps() -> Iterator[Update]:
            photo = uploaded_image(image, session, owners)
            return ask_handler(choices.get(profile), thumbnails, photo, question, k,
                               max_new_tokens)

        for answer, evidence in respond(steps):
            yield answer, gr.skip() if evidence is None else evidence

    default = choices.default
    sample = uses_sample_kb(default)
    with gr.Blocks(title="rag-vqa: ask about a photo") as demo:
        gr.Markdown("## Ask a question about a photo\nReT retrieves passages from the knowledge "
                    "base; the model answers from them and shows its evidence.")
        if default.note:
            gr.Markdown(f"**Models:** {default.note}"
                        + (" · **knowledge base:** the bundled 30-country sample" if sample
                           else ""), elem_id="models")
        question = gr.Textbox(label="Question", elem_id="question", render=False,
                              placeholder="What is the capital of this country?" if sample
                              else "When was this building completed?")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=280):  # the photo, and what to try
                image = gr.Image(type="filepath", label="Photo", sources=["upload"],
                                 elem_id="photo", height=260)
                if sample:  # the examples are the sample's own photos and questions
                    gr.Examples([[thumbnails.path_for(str(question_image(q))), q.question]
                                 for q in sample_questions()], [image, question],
                                label="Examples (bundled sample)")
            with gr.Column(scale=3, min_width=360):  # the question, its answer and evidence
                question.render()
                button = gr.Button("Ask", variant="primary", elem_id="ask")
                answer = gr.Markdown(elem_id="answer")
                with gr.Accordion("Settings", open=False):
                    k = gr.Slider(1, MAX_K, value=5, step=1, label="Passages to retrieve (k)")
                    max_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1,
                                           label="Max answer tokens")
                    profile = gr.Dropdown(choices.names, value=choices.default_name,
                                          label="Profile")
                evidence = gr.HTML(label="Evidence", elem_id="evidence")
        gr.on([button.click, question.submit], on_ask, [image, question, k, max_tokens, profile],
              [answer, evidence], api_name="ask", preprocess=False,
              concurrency_limit=concurrency, concurrency_id="ask")
    return demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pipeline_options(parser)
    add_demo_options(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop_on_signals()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if not (args.config or args.index or args.sample):
        args.sample = True  # nothing configured: the bundled sample
    folder = None
    try:
        pipeline, note = pipeline_from_args(args)
        if note:
            logger.warning(note)
        pipeline.check()
        folder, owners = launch_folder(), UploadOwners()
        blocks = build_app(PipelineChoices(pipeline.config.profile, pipeline),
                           Thumbnails(folder / "gradio" / "shown"), owners, args.concurrency,
                           args.max_queue)
        serve(create_server_app(blocks, owners), args.host, args.port)
    except USER_ERRORS as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
