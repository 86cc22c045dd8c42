"""Gradio handlers over a real (tiny) retriever, without a browser."""

import pytest

import app
from rag_vqa.loading import load_retriever
from rag_vqa.retriever_demo import SampleSearcher


@pytest.fixture(scope="module")
def searcher():
    return SampleSearcher(load_retriever("tiny"))


def test_search_handler_returns_gallery_and_rows(searcher):
    image = searcher.documents[2].image
    gallery, rows = app.search_handler(searcher, image, "Which country is this?", 3)
    assert len(gallery) == len(rows) == 3
    assert [r[0] for r in rows] == [1, 2, 3]
    scores = [r[2] for r in rows]
    assert scores == sorted(scores, reverse=True)
    titles = {d.title for d in searcher.documents}
    assert all(r[1] in titles for r in rows) and gallery[0][1].startswith("1. ")


def test_search_handler_input_errors(searcher):
    with pytest.raises(app.InputError, match="upload an image"):
        app.search_handler(searcher, None, "q", 3)
    with pytest.raises(app.InputError, match="type a question"):
        app.search_handler(searcher, searcher.documents[0].image, "   ", 3)
    gallery, _ = app.search_handler(searcher, searcher.documents[0].image, "q", 99)
    assert len(gallery) == app.MAX_K


def test_build_app_constructs_the_blocks(searcher):
    pytest.importorskip("gradio")
    demo = app.build_app(searcher)
    assert demo.title.startswith("ReT retriever playground")
