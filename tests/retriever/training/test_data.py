"""Training data: queries joined with passages, the collator's tensors and labels, and clear
errors for ids and files that cannot be used."""

import json

import pytest
import torch

from retriever.losses import label_ids
from retriever.processing_ret import ReTInputs
from retriever.tiny import build_tiny_retriever
from retriever.training import (
    JsonlPassages,
    ReTCollator,
    RetrievalPairs,
    TrainingDataError,
    load_train_queries,
)
from tests.helpers import random_image


@pytest.fixture()
def files(tmp_path):
    random_image(0).save(tmp_path / "q0.png")
    random_image(1).save(tmp_path / "p0.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    passages = [{"passage_id": "p0", "passage_text": "zero", "passage_image_path": "p0.png"},
                {"passage_id": "p1", "passage_text": "one", "passage_image_path": "broken.png"},
                {"passage_id": "p2", "passage_text": "two"}]
    queries = [
        {"data_id": "a", "instruction": "Find it:", "question": "what?", "image_path": "q0.png",
         "passage_id": ["p0"], "entity_id": "E1", "hard_negatives": ["p2", "p0"]},
        {"data_id": "b", "question": "", "instruction": "Describe:", "image_path": "q0.png",
         "passage_id": "p1", "entity_id": "E1"},
        {"data_id": "c", "question": "and this?", "passage_id": ["p2", "p0"]},
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(map(json.dumps, passages)) + "\n")
    (tmp_path / "q.jsonl").write_text("\n".join(map(json.dumps, queries)) + "\n")
    return tmp_path


def test_queries_join_instruction_question_and_drop_positive_negatives(files):
    a, b, c = load_train_queries(files / "q.jsonl", files)
    assert (a.text, b.text, c.text) == ("Find it: what?", "Describe:", "and this?")
    assert a.image == files / "q0.png" and c.image is None
    assert a.hard_negatives == ["p2"]               # p0 is a positive of a
    assert (a.label, b.label, c.label) == ("E1", "E1", "p2")
    assert c.positives == ["p2", "p0"]


def test_collated_batch_matches_the_processor_and_labels_share_entities(files):
    model = build_tiny_retriever(seed=0)
    queries = load_train_queries(files / "q.jsonl", files)
    pairs = RetrievalPairs(queries, JsonlPassages(files / "p.jsonl", files),
                           hard_negatives_per_query=1)
    items = [pairs[i] for i in range(3)]
    assert pairs.bad_images == 1                    # p1's image is broken: text-only, counted
    batch = ReTCollator(model.query_processor)(items)
    direct = model.query_processor([q.text for q in queries],
                                   [items[0].query_image, items[1].query_image, None])
    assert all(torch.equal(getattr(batch.query, k), v) for k, v in direct.as_kwargs().items())
    assert batch.passage.image_mask.tolist() == [1, 0, int(items[2].passage.image is not None)]
    assert torch.equal(batch.query_labels, label_ids(["E1", "E1", "p2"]))
    assert torch.equal(batch.passage_labels, batch.query_labels)
    assert batch.negatives.input_ids.shape[0] == 1
    assert torch.equal(batch.negative_labels, label_ids(["p2"]))


def test_concat_and_rows_round_trip():
    model = build_tiny_retriever(seed=0)
    a = model.document_processor(["short", "a much longer passage text here"], [None, None])
    b = model.document_processor(["x"], [random_image(3)])
    both = ReTInputs.concat([a, b])
    assert both.input_ids.shape == (3, a.input_ids.shape[1])
    back = both.rows([2])
    assert torch.equal(back.input_ids[:, : b.input_ids.shape[1]], b.input_ids)
    assert torch.equal(back.pixel_values, b.pixel_values)
    features = model.document_encoder(**both.as_kwargs())
    torch.testing.assert_close(features[2:], model.document_encoder(**b.as_kwargs()),
                               atol=1e-5, rtol=1e-5)


def test_unknown_passage_ids_and_escaping_paths_are_refused(files):
    (files / "bad.jsonl").write_text(json.dumps({"data_id": "z", "passage_id": "nope"}) + "\n")
    with pytest.raises(TrainingDataError, match="'nope' \\(query z\\)"):
        RetrievalPairs(load_train_queries(files / "bad.jsonl"),
                       JsonlPassages(files / "p.jsonl", files))
    (files / "esc.jsonl").write_text(json.dumps({"data_id": "z", "passage_id": "p0",
                                                 "image_path": "../x.png"}) + "\n")
    with pytest.raises(TrainingDataError, match="relative to the image root"):
        load_train_queries(files / "esc.jsonl", files)
    (files / "junk.jsonl").write_text("{not json\n")
    with pytest.raises(TrainingDataError, match="junk.jsonl:1: invalid JSON"):
        load_train_queries(files / "junk.jsonl")
