"""Gradio demo: upload a photo, ask a question, see what ReT retrieves from the built-in sample.

Run ``python app.py [--retriever ID|tiny|auto] [--port 7860]``. The handlers are plain functions
over an injected searcher, so they are tested without a browser. (The full question-answering
demo over a knowledge base builds on this once the pipeline exists.)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from PIL import Image

from rag_vqa.loading import load_retriever
from rag_vqa.retriever_demo import SampleSearcher

MAX_K = 8


class InputError(ValueError):
    """Bad user input; shown in the UI as a message, never as a stack trace."""


def search_handler(searcher: SampleSearcher, image: Image.Image | None, question: str,
                   k: float) -> tuple[list[tuple[Image.Image, str]], list[list[Any]]]:
    """Gallery items (image, caption) and table rows (rank, title, score, passage)."""
    if image is None:
        raise InputError("Please upload an image first.")
    question = (question or "").strip()
    if not question:
        raise InputError("Please type a question about the image.")
    k = max(1, min(MAX_K, int(k)))
    ranking = searcher.search(image, question, k)
    gallery, rows = [], []
    for rank, hit in enumerate(ranking, 1):
        doc = searcher.document(hit.doc_id)
        gallery.append((doc.image, f"{rank}. {doc.title} ({hit.score:.2f})"))
        rows.append([rank, doc.title, round(hit.score, 3), doc.text])
    return gallery, rows


def build_app(searcher: SampleSearcher):
    """The Blocks UI around :func:`search_handler`."""
    import gradio as gr

    def on_search(image, question, k):
        try:
            return search_handler(searcher, image, question, k)
        except InputError as exc:
            raise gr.Error(str(exc)) from exc

    title = f"ReT retriever playground ({searcher.loaded.name})"
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"## {title}")
        if searcher.loaded.note:
            gr.Markdown(f"**Note:** {searcher.loaded.note}")
        with gr.Row():
            image = gr.Image(type="pil", label="Photo")
            with gr.Column():
                question = gr.Textbox(label="Question",
                                      value="What is the capital of the country with this flag?")
                k = gr.Slider(1, MAX_K, value=3, step=1, label="Passages to retrieve")
                button = gr.Button("Retrieve", variant="primary")
        gallery = gr.Gallery(label="Retrieved passages", columns=4, height="auto")
        table = gr.Dataframe(headers=["rank", "title", "score", "passage"], wrap=True)
        button.click(on_search, [image, question, k], [gallery, table],
                     concurrency_limit=1)
        gr.Examples([[d.image, "What is the capital of the country with this flag?"]
                     for d in searcher.documents[:4]], [image, question])
    return demo.queue(default_concurrency_limit=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retriever", default="auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    searcher = SampleSearcher(load_retriever(args.retriever, args.device))
    build_app(searcher).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
