"""Cached backbone states give exactly the features of the full forward pass, for every mix of
modalities, and are computed once per item."""

import torch

from retriever.tiny import build_tiny_retriever
from retriever.training.features import FeatureCache
from tests.helpers import random_image


def test_cached_states_give_the_same_features_as_the_forward_pass():
    model = build_tiny_retriever(seed=5)
    texts = ["a long question about the tower and its architect", "", "short", "bird"]
    images = [random_image(1), random_image(2), None, random_image(3, size=(20, 70))]
    query = model.query_processor(texts, images)
    passage = model.document_processor(texts[::-1], images[::-1])
    expected = model(query, passage)
    cache = FeatureCache()
    ids = ["a", "b", "c", "d"]
    for _ in range(2):  # the second pass reads everything from the cache
        got = model(query, passage,
                    query_states=cache.states(model.query_encoder, query, ids, "query"),
                    passage_states=cache.states(model.document_encoder, passage, ids, "document"))
        torch.testing.assert_close(got.query_features, expected.query_features,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.passage_features, expected.passage_features,
                                   atol=1e-5, rtol=1e-5)
    assert len(cache) == 8


def test_a_batch_mixing_cached_and_new_items_matches_too():
    model = build_tiny_retriever(seed=6)
    texts, images = ["one", "two words", "", "four"], [random_image(4), None, random_image(5),
                                                        random_image(6)]
    inputs = model.document_processor(texts, images)
    cache = FeatureCache()
    cache.states(model.document_encoder, inputs.rows([1, 2]), ["y", "z"], "document")
    states = cache.states(model.document_encoder, inputs, ["x", "y", "z", "w"], "document")
    torch.testing.assert_close(
        model.document_encoder.head(states, inputs.text_mask, inputs.image_mask),
        model.document_encoder(**inputs.as_kwargs()), atol=1e-5, rtol=1e-5)
