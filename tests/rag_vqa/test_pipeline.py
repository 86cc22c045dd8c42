"""RagVQA end to end with the tiny profile on the bundled sample knowledge base."""

import json

import numpy as np
import pytest
from PIL import Image

from rag_vqa import RagVQA
from rag_vqa.components import IncompatibleIndexError, MissingResourceError
from rag_vqa.quickstart import sample_pipeline
from rag_vqa.samples import question_image, sample_passages, sample_questions
from retriever import CheckpointError
from retriever.index import MultiVectorIndex


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def pipe(cache):
    return sample_pipeline("tiny", cache, k=4)


def test_answer_has_evidence_in_rank_order_and_timings(pipe):
    q = sample_questions()[0]
    answer = pipe.answer(question_image(q), q.question)
    assert answer.question == q.question and answer.raw and answer.error is None
    assert [e.rank for e in answer.evidence] == [1, 2, 3, 4]
    scores = [e.score for e in answer.evidence]
    assert scores == sorted(scores, reverse=True)
    texts = {p.passage_id: p for p in sample_passages()}
    for ev in answer.evidence:
        assert ev.text == texts[ev.passage_id].text and ev.title == texts[ev.passage_id].title
        assert ev.image_path and ev.image_path.endswith(".png") and ev.article_id
    assert set(answer.timings) == {"encode_query", "search", "fetch", "generate", "total"}
    assert all(v >= 0 for v in answer.timings.values())
    assert "meaningless" in answer.note and answer.models["retriever"].endswith("tiny-random-ret")
    # the prompt carries the evidence it has room for, in rank order
    used = answer.used_passages
    assert used and used == [e.passage_id for e in answer.evidence][:len(used)]
    positions = [answer.prompt.index(ev.text[:30]) for ev in answer.evidence[:len(used)]]
    assert positions == sorted(positions)
    json.dumps(answer.to_dict())


def test_retrieve_matches_direct_search(pipe):
    q = sample_questions()[1]
    evidence = pipe.retrieve(question_image(q), q.question, k=3)
    model = pipe.components.retriever.model
    features = model.encode_queries([q.question], [question_image(q)],
                                    instruction=pipe.config.retriever.instruction)
    hits = pipe.components.index.search(features, k=3)[0]
    assert [e.passage_id for e in evidence] == [h.doc_id for h in hits]


def test_image_as_pil_path_or_bytes_gives_the_same_answer(pipe):
    q = sample_questions()[2]
    path = question_image(q)
    by_path = pipe.answer(path, q.question)
    by_pil = pipe.answer(Image.open(path), q.question)
    by_bytes = pipe.answer(path.read_bytes(), q.question)
    assert by_path.answer == by_pil.answer == by_bytes.answer
    assert [e.passage_id for e in by_path.evidence] == [e.passage_id for e in by_bytes.evidence]


def test_batch_equals_single_and_stream_equals_answer(pipe):
    items = [(question_image(q), q.question) for q in sample_questions()[:3]]
    batch = pipe.answer_batch(items, batch_size=3)
    single = [pipe.answer(image, question) for image, question in items]
    assert [a.raw for a in batch] == [a.raw for a in single]
    assert [[e.passage_id for e in a.evidence] for a in batch] == \
        [[e.passage_id for e in a.evidence] for a in single]
    stream = pipe.stream(*items[0])
    assert [e.passage_id for e in stream.evidence] == [e.passage_id for e in single[0].evidence]
    assert "".join(stream) == single[0].raw and stream.result.answer == single[0].answer


def test_bad_inputs(pipe, tmp_path):
    with pytest.raises(ValueError, match="question is empty"):
        pipe.answer(question_image(sample_questions()[0]), "  ")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    with pytest.raises(ValueError, match="broken.jpg"):
        pipe.answer(broken, "What is this?")


def test_missing_and_incompatible_resources_fail_fast(cache, tmp_path):
    with pytest.raises(MissingResourceError, match="no index configured"):
        RagVQA.from_config({"profile": "tiny"}).check()
    with pytest.raises(MissingResourceError, match="does not exist"):
        RagVQA.from_pretrained(index=tmp_path / "nothing", profile="tiny").check()
    index_dir = next(cache.glob("index-*"))
    # an index built with another retriever configuration
    other = tmp_path / "other"
    rng = np.random.default_rng(0)
    MultiVectorIndex.build(other, [f"p{i}" for i in range(4)],
                           rng.standard_normal((4, 32, 128)).astype(np.float16), method="exact",
                           metadata={"retriever": {"name": "someone/else",
                                                   "config_sha256": "0" * 64}})
    with pytest.raises(IncompatibleIndexError, match="was built with retriever 'someone/else'"):
        RagVQA.from_pretrained(index=other, kb=cache / "kb", profile="tiny",
                               retriever="tiny").check()
    # without a retriever, the one the index names is used: here one that is not available
    with pytest.raises(MissingResourceError, match="was built with retriever 'someone/else', "
                                                   "which cannot be loaded here"):
        RagVQA.from_pretrained(index=other, kb=cache / "kb", profile="tiny").check()
    tiny_config = sample_pipeline("tiny", cache).components.retriever.model.config_fingerprint()
    small = tmp_path / "small"
    MultiVectorIndex.build(small, [f"p{i}" for i in range(4)],
                           rng.standard_normal((4, 32, 128)).astype(np.float16), method="exact",
                           metadata={"retriever": {"name": "tiny", "config_sha256": tiny_config}})
    with pytest.raises(IncompatibleIndexError, match="has 60 passages"):
        RagVQA.from_pretrained(index=small, kb=cache / "kb", profile="tiny",
                               retriever="tiny").check()
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        RagVQA.from_pretrained(index=index_dir, kb=cache / "kb",
                               retriever="nobody/missing-ret").check()


def test_the_index_retriever_is_used_and_other_weights_are_refused(cache, tmp_path):
    """An index records its retriever's name and weights: without --retriever the pipeline loads
    that one; the same architecture with other weights (a fine-tuned copy) is refused unless
    allowed explicitly."""
    from rag_vqa.indexing import build_index
    from rag_vqa.loading import load_retriever
    from retriever.tiny import build_tiny_retriever

    folder = tmp_path / "ret-seed1"
    build_tiny_retriever(seed=1).save_pretrained(folder)
    index = tmp_path / "ix-seed1"
    build_index(cache / "kb", load_retriever(str(folder)), index, method="exact", workers=0)
    pipe = RagVQA.from_pretrained(index=index, profile="tiny").check()
    assert pipe.components.retriever.name == str(folder)
    with pytest.raises(IncompatibleIndexError, match=r"has other weights.*--retriever "
                                                     f"{folder}.*allow-retriever-mismatch"):
        RagVQA.from_pretrained(index=index, profile="tiny", retriever="tiny").check()
    allowed = RagVQA.from_config({"profile": "tiny", "retriever": {"model": "tiny"},
                                  "index": {"path": str(index),
                                            "allow_retriever_mismatch": True}})
    assert allowed.check().components.retriever.name == "rag-vqa/tiny-random-ret"


def test_from_pretrained_with_a_saved_tiny_retriever(cache, tmp_path):
    from retriever.tiny import build_tiny_retriever

    folder = tmp_path / "tiny-ret"
    build_tiny_retriever(seed=0).save_pretrained(folder)
    index_dir = next(cache.glob("index-*"))
    pipe = RagVQA.from_pretrained(retriever=str(folder), generator="rag-vqa/tiny-random-llava",
                                  index=index_dir, kb=cache / "kb", k=2).check()
    q = sample_questions()[0]
    reference = sample_pipeline("tiny", cache, k=2).retrieve(question_image(q), q.question)
    assert [e.passage_id for e in pipe.retrieve(question_image(q), q.question)] == \
        [e.passage_id for e in reference]


def test_model_names_that_cannot_load_fail_when_the_pipeline_is_made(cache, pipe, tmp_path):
    """Not at the first answer: a pipeline that is returned can load its models."""
    from generator import GeneratorLoadError

    _ = pipe  # the sample index exists
    index_dir = next(cache.glob("index-*"))
    with pytest.raises(GeneratorLoadError, match="'nobody/uncached' is not in the Hugging Face "
                                                 "cache and HF_HUB_OFFLINE=1"):
        RagVQA.from_pretrained(retriever="tiny", generator="nobody/uncached", index=index_dir)
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        RagVQA.from_pretrained(retriever=str(tmp_path / "nope"), generator="tiny",
                               index=index_dir)
    with pytest.raises(MissingResourceError, match="does not exist"):
        RagVQA.from_pretrained(retriever="tiny", generator="tiny", index=tmp_path / "none")
    # "tiny" names the tiny generator as it names the tiny retriever
    made = RagVQA.from_pretrained(retriever="tiny", generator="tiny", index=index_dir, k=2)
    q = sample_questions()[1]
    answer = made.answer(question_image(q), q.question)
    assert answer.error is None and answer.models["generator"] == "rag-vqa/tiny-random-llava"


def test_one_bad_item_of_a_batch_costs_only_itself(pipe, tmp_path):
    questions = sample_questions()[:2]
    good = [(question_image(q), q.question) for q in questions]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    answers = pipe.answer_batch([good[0], (question_image(questions[0]), {"a": 1}),
                                 (broken, "What is this?"), (tmp_path, "A folder?"), good[1]])
    assert "must be text, got dict" in answers[1].error and answers[1].question == "{'a': 1}"
    assert "broken.jpg" in answers[2].error and "is a folder" in answers[3].error
    alone = pipe.answer_batch(good)
    for got, want in ((answers[0], alone[0]), (answers[4], alone[1])):
        assert got.error is None and got.raw == want.raw
        assert [e.passage_id for e in got.evidence] == [e.passage_id for e in want.evidence]
