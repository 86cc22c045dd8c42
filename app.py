"""Gradio demo: upload a photo, ask a question, watch the answer stream in with its evidence.

    python app.py --sample                      # the bundled sample knowledge base
    python app.py --config rag.toml             # your index, knowledge base and models
    rag-vqa demo ...                            # the same, from the command line

The handlers are plain functions over an injected pipeline, so they are tested without a
browser. Only the knowledge base's images and the example photos can be served (besides the
user's own uploads).
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from PIL import Image

from rag_vqa import Evidence, RagVQA
from rag_vqa.pipeline import TINY_NOTE
from rag_vqa.cli_pipeline import add_pipeline_options, pipeline_from_args
from rag_vqa.config import PROFILES
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import SAMPLE_KB, question_image, sample_questions

logger = logging.getLogger("app")

MAX_K = 20
MAX_NEW_TOKENS = 64


class InputError(ValueError):
    """Bad user input: shown as a message in the page, never as a stack trace."""


class PipelineChoices:
    """The configured pipeline plus one per other profile over the sample, built on first use
    and then shared by every visitor."""

    def __init__(self, default_name: str, default: RagVQA,
                 factory: Callable[[str], RagVQA] = sample_pipeline) -> None:
        self.default_name = default_name
        self._pipelines = {default_name: default}
        self._factory = factory
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [self.default_name] + [p for p in PROFILES if p != self.default_name]

    def get(self, name: str | None) -> RagVQA:
        name = name or self.default_name
        if name not in self.names:
            raise InputError(f"unknown profile {name!r}")
        with self._lock:
            if name not in self._pipelines:
                try:
                    self._pipelines[name] = self._factory(name)
                except (OSError, ValueError, RuntimeError) as exc:
                    raise InputError(f"profile {name!r} is not available here: {exc}") from exc
            return self._pipelines[name]


def check_inputs(image: Any, question: str | None, k: Any, max_new_tokens: Any
                 ) -> tuple[str, int, int]:
    if image is None:
        raise InputError("Please upload a photo first.")
    question = (question or "").strip()
    if not question:
        raise InputError("Please type a question about the photo.")
    if len(question) > 1000:
        raise InputError("The question is too long (1000 characters at most).")
    try:
        k, max_new_tokens = int(k), int(max_new_tokens)
    except (TypeError, ValueError) as exc:
        raise InputError("k and max tokens must be whole numbers.") from exc
    if not 1 <= k <= MAX_K or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise InputError(f"k must be 1-{MAX_K} and max tokens 1-{MAX_NEW_TOKENS}.")
    return question, k, max_new_tokens


def evidence_views(evidence: Sequence[Evidence]) -> tuple[list[tuple[Any, str]], list[list]]:
    """Gallery items (image, caption) and table rows (rank, title, score, passage)."""
    gallery, rows = [], []
    for ev in evidence:
        caption = f"{ev.rank}. {ev.title or ev.passage_id} ({ev.score:.2f})"
        if ev.image_path:
            try:
                with Image.open(ev.image_path) as img:
                    gallery.append((img.convert("RGB"), caption))
            except OSError:
                logger.warning("evidence image %s could not be read", ev.image_path)
        rows.append([ev.rank, ev.title or "", round(ev.score, 3), ev.text])
    return gallery, rows


def _answer_markdown(text: str, note: str = "", done: bool = False, timings=None) -> str:
    lines = [f"**{text}**" if done and text else (text or "…")]
    if note:
        lines.append(f"\n> ⚠️ {note}")
    if done and timings:
        lines.append(f"\n<sub>retrieval {1000 * (timings['encode_query'] + timings['search']):.0f}"
                     f" ms · generation {1000 * timings['generate']:.0f} ms</sub>")
    return "\n".join(lines)


def ask_handler(pipeline: RagVQA, image: Any, question: str | None, k: Any = 5,
                max_new_tokens: Any = 32) -> Iterator[tuple[str, list, list]]:
    """Yields (answer markdown, gallery, rows): evidence first, then the answer as it grows."""
    question, k, max_new_tokens = check_inputs(image, question, k, max_new_tokens)
    max_new_tokens = min(max_new_tokens, pipeline.config.generator.max_new_tokens)
    stream = pipeline.stream(image, question, k=k, max_new_tokens=max_new_tokens)
    gallery, rows = evidence_views(stream.evidence)
    note = TINY_NOTE if pipeline.config.is_tiny else ""
    text = ""
    yield _answer_markdown("", note), gallery, rows
    for piece in stream:
        text += piece
        yield _answer_markdown(text.strip(), note), gallery, rows
    result = stream.result
    final = result.answer if result.error is None else f"(failed: {result.error})"
    yield _answer_markdown(final, note, done=True, timings=result.timings), gallery, rows


def build_app(choices: PipelineChoices):
    """The Blocks UI; every event goes through :func:`ask_handler`."""
    import gradio as gr

    def on_ask(image, question, k, max_new_tokens, profile):
        try:
            yield from ask_handler(choices.get(profile), image, question, k, max_new_tokens)
        except InputError as exc:
            raise gr.Error(str(exc)) from exc
        except (OSError, ValueError, RuntimeError) as exc:
            logger.exception("question failed")
            raise gr.Error(f"Sorry, that did not work: {exc}") from exc

    with gr.Blocks(title="rag-vqa: ask about a photo") as demo:
        gr.Markdown("## Ask a question about a photo\nReT retrieves passages from the knowledge "
                    "base; the model answers from them and shows its evidence.")
        with gr.Row():
            image = gr.Image(type="pil", label="Photo", sources=["upload"], elem_id="photo")
            with gr.Column():
                question = gr.Textbox(label="Question", elem_id="question",
                                      placeholder="When was this building completed?")
                button = gr.Button("Ask", variant="primary", elem_id="ask")
                answer = gr.Markdown(elem_id="answer")
        with gr.Accordion("Settings", open=False):
            k = gr.Slider(1, MAX_K, value=5, step=1, label="Passages to retrieve (k)")
            max_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=32, step=1, label="Max answer tokens")
            profile = gr.Dropdown(choices.names, value=choices.default_name, label="Profile")
        gallery = gr.Gallery(label="Evidence", columns=5, height="auto", elem_id="evidence")
        table = gr.Dataframe(headers=["rank", "title", "score", "passage"], wrap=True,
                             elem_id="evidence-table")
        inputs = [image, question, k, max_tokens, profile]
        button.click(on_ask, inputs, [answer, gallery, table], concurrency_limit=1)
        question.submit(on_ask, inputs, [answer, gallery, table], concurrency_limit=1)
        gr.Examples([[str(question_image(q)), q.question] for q in sample_questions()],
                    [image, question], label="Examples (bundled sample)")
    return demo.queue(default_concurrency_limit=1, max_size=32)


def allowed_paths(choices: PipelineChoices) -> list[str]:
    """The knowledge base's image folders and the example photos: nothing else is served."""
    roots = [str(path) for path in choices.get(None).image_roots]
    return roots + [str(SAMPLE_KB / "question_images")]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pipeline_options(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not (args.config or args.index or args.sample):
        args.sample = True  # nothing configured: the bundled sample
    pipeline, note = pipeline_from_args(args)
    if note:
        logger.warning(note)
    pipeline.check()
    choices = PipelineChoices(pipeline.config.profile, pipeline)
    build_app(choices).launch(server_name=args.host, server_port=args.port,
                              allowed_paths=allowed_paths(choices), show_error=False)


if __name__ == "__main__":
    main()
